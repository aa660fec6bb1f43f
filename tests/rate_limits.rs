//! Rate limits (`[rate_limits]`, issue 14 item 5): each scope hammered past its limit with real
//! requests over real TLS (curl), on SQLite and PostgreSQL — 429 with `Retry-After`, one audit
//! record per burst, the `/metrics` counter, another key still served, and the limit lifting
//! after `Retry-After`. Other source addresses are other loopback addresses (`--interface`).
//! Limits meant not to refill during a test are one a minute; those meant to lift, one a second
//! (or one in five seconds where a refill between requests would change the count).
//! HPKI sign-in is paced per account once its card names it (the card signed here by the test
//! HPKI CA's key, as in `tests/signin.rs`). Plus: the stored enrollment secrets are neither the
//! code and PIN nor unkeyed hashes of them.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use sekisho_ca::hpki::{TestCert, TestHpki};

/// curl from source address `from` (a loopback address), headers in the body; (status, text).
fn curl_from(from: &str, url: &str, ca: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec!["--interface", from, "-D", "-"];
    args.extend_from_slice(extra);
    let (s, text, _) = curl(url, ca, &args);
    (s, text)
}

/// The `Retry-After` of a response read with `-D -`.
fn retry_after(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Retry-After in {text}"))
}

/// A counter from `/metrics`, read from a source address the tests do not limit.
fn metric(g: &Gateway, line_start: &str) -> f64 {
    let (s, text) = curl_from(
        "127.0.0.9",
        &format!("http://127.0.0.1:{}/metrics", g.mgmt_port),
        &g.ca(),
        &[],
    );
    assert_eq!(s, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The `rate_limited` records for `scope`.
fn limited_records(g: &Gateway, scope: &str) -> Vec<serde_json::Value> {
    g.audit_records()
        .into_iter()
        .filter(|r| {
            r["reason"] == "rate_limited"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(&format!("rate limit {scope}:")))
        })
        .collect()
}

fn one_limited_record(g: &Gateway, scope: &str) -> serde_json::Value {
    g.wait_audit(|r| {
        r["reason"] == "rate_limited"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("rate limit {scope}:")))
    });
    let recs = limited_records(g, scope);
    assert_eq!(recs.len(), 1, "one record per burst: {recs:#?}");
    recs.into_iter().next().unwrap()
}

fn limits(lines: &[(&'static str, &'static str)]) -> Options {
    Options {
        replace: lines.to_vec(),
        ..Default::default()
    }
}

const SIGNIN_ACCOUNT: &str = "[rate_limits.signin_account]\nper_minute = 10\nburst = 10";
const SIGNIN_TERMINAL: &str = "[rate_limits.signin_terminal]\nper_minute = 30\nburst = 15";
const SIGNIN_SOURCE: &str = "[rate_limits.signin_source]\nper_minute = 300\nburst = 100";

/// One password sign-in of `id` from terminal `term` at source `from`; (status, text).
fn login(g: &Gateway, term: &str, from: &str, id: &str, password: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    curl_from(
        from,
        &g.url("/.sekisho/login"),
        &g.ca(),
        &[
            "--cert",
            &c,
            "--key",
            &k,
            "--data-urlencode",
            &format!("id={id}"),
            "--data-urlencode",
            &format!("password={password}"),
        ],
    )
}

#[test]
fn sign_in_is_paced_per_account_terminal_and_source() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            limits(&[
                (
                    SIGNIN_ACCOUNT,
                    "[rate_limits.signin_account]\nper_minute = 60\nburst = 2",
                ),
                (
                    SIGNIN_TERMINAL,
                    "[rate_limits.signin_terminal]\nper_minute = 1\nburst = 8",
                ),
                (
                    SIGNIN_SOURCE,
                    "[rate_limits.signin_source]\nper_minute = 1\nburst = 14",
                ),
            ]),
        );
        g.add_terminal_live("f1", "t2");
        g.add_terminal_live("f1", "t3");
        let users: Vec<(String, String)> = (1..=8)
            .map(|i| {
                let id = format!("nurse0000{i}");
                let pw = add_user(&g, &id, "jp-mhlw-qa-b");
                (id, pw)
            })
            .collect();
        let ok = |term: &str, from: &str, u: usize| {
            let (s, text) = login(&g, term, from, &users[u].0, &users[u].1);
            assert_eq!(s, 303, "{db:?}: {term} {} from {from}: {text}", users[u].0);
        };
        let lo = "127.0.0.1";

        // Per account: two at once, then one a second — even with the right password.
        ok("t1", lo, 0);
        ok("t1", lo, 0);
        let (s, text) = login(&g, "t1", lo, &users[0].0, &users[0].1);
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(text.contains("短い時間に試行が多すぎます") && text.contains("Too many attempts"));
        let wait = retry_after(&text);
        assert_eq!(wait, 1, "{text}");
        assert_eq!(login(&g, "t1", lo, &users[0].0, &users[0].1).0, 429);
        // Another account on the same terminal is served.
        ok("t1", lo, 1);
        let rec = one_limited_record(&g, "signin_account");
        assert_eq!(rec["event"], "auth");
        assert_eq!(rec["user"], users[0].0.as_str());
        assert_eq!(rec["terminal"], "t1");
        assert_eq!(
            metric(
                &g,
                r#"sekisho_rate_limited_total{scope="signin_account",cause="limit"}"#
            ),
            2.0
        );
        // Not a failure: nothing counted towards lockout.
        assert!(
            !g.audit_records()
                .iter()
                .any(|r| r["reason"] == "bad_password" || r["reason"] == "account_locked")
        );
        // After Retry-After the account may try again.
        std::thread::sleep(Duration::from_secs(wait));
        ok("t1", lo, 0);

        // Per terminal: t1 has made 6 attempts of its 8 (refused ones count: it tried).
        ok("t1", lo, 2);
        ok("t1", lo, 3);
        let (s, text) = login(&g, "t1", lo, &users[4].0, &users[4].1);
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(retry_after(&text) > 1, "one a minute: {text}");
        let rec = one_limited_record(&g, "signin_terminal");
        assert_eq!(rec["terminal"], "t1");
        assert!(rec["user"].is_null(), "{rec}");
        // Another terminal, from the same address, is served.
        ok("t2", lo, 4);

        // Per source: 127.0.0.1 has made 10 of its 14.
        for u in 5..8 {
            ok("t2", lo, u);
        }
        ok("t2", lo, 1);
        let (s, text) = login(&g, "t2", lo, &users[2].0, &users[2].1);
        assert_eq!(s, 429, "{db:?}: {text}");
        one_limited_record(&g, "signin_source");
        // Another source (and terminal) is served.
        ok("t3", "127.0.0.2", 2);
        assert_eq!(
            metric(
                &g,
                r#"sekisho_rate_limit_bursts_total{scope="signin_source"}"#
            ),
            1.0
        );
    }
}

/// The body of a response read with `-D -`.
fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

const HPKI: &str = r#"
[hpki]
anchors = ["hpki/root.crt"]
intermediates = ["hpki/auth-ca.crt"]
crls = ["hpki/auth-ca.crl", "hpki/root.crl"]
"#;

#[test]
fn hpki_sign_in_is_paced_per_account_and_is_no_failure() {
    for db in BOTH {
        let mut opts = limits(&[(
            SIGNIN_ACCOUNT,
            "[rate_limits.signin_account]\nper_minute = 60\nburst = 2",
        )]);
        opts.extra_config.push_str(HPKI);
        let g = Gateway::start_with(db, opts);
        let hpki = TestHpki::generate(&g.data.join("hpki")).unwrap();
        let (c, k) = g.cert("t1");
        let challenge = || {
            curl_from(
                "127.0.0.1",
                &g.url("/.sekisho/auth/hpki/challenge"),
                &g.ca(),
                &["--cert", &c, "--key", &k, "-X", "POST"],
            )
        };
        // The trust files appeared after start: picked up without a restart.
        assert_eq!(within_a_poll(challenge, |r| r.0 == 200).0, 200);
        for (id, cert) in [("doctor0000001", "doctor"), ("pharma0000001", "pharmacist")] {
            let path = g.data.join(format!("hpki/{cert}.crt"));
            run_ok(&[
                "user",
                "add",
                "--data-dir",
                g.data_str(),
                "--id",
                id,
                "--name",
                "テスト　医師",
                "--facility",
                "f1",
                "--roles",
                "physician",
                "--hpki-cert",
                path.to_str().unwrap(),
            ]);
        }
        // Challenge, sign as the card would, log in; (status, text with headers).
        let login = |card: &TestCert| {
            let (s, text) = challenge();
            assert_eq!(s, 200, "{text}");
            let ch: serde_json::Value = serde_json::from_str(body_of(&text)).unwrap();
            let sig = card
                .sign(&B64.decode(ch["to_sign"].as_str().unwrap()).unwrap())
                .unwrap();
            let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&card.der), "signature": B64.encode(sig)});
            curl_from(
                "127.0.0.1",
                &g.url("/.sekisho/auth/hpki/login"),
                &g.ca(),
                &[
                    "--cert",
                    &c,
                    "--key",
                    &k,
                    "-H",
                    "content-type: application/json",
                    "--data",
                    &body.to_string(),
                ],
            )
        };
        assert_eq!(login(&hpki.doctor).0, 200, "{db:?}");
        assert_eq!(login(&hpki.doctor).0, 200, "{db:?}");
        let (s, text) = login(&hpki.doctor);
        assert_eq!(s, 429, "{db:?}: {text}");
        let v: serde_json::Value = serde_json::from_str(body_of(&text)).unwrap();
        assert_eq!(v["error"], "rate_limited", "{v}");
        let wait = retry_after(&text);
        assert_eq!(wait, 1);
        // Another account on the same terminal is served.
        let (s, text) = login(&hpki.pharmacist);
        assert_eq!(s, 200, "{db:?}: {text}");
        let rec = one_limited_record(&g, "signin_account");
        assert_eq!(
            (rec["user"].as_str(), rec["method"].as_str()),
            (Some("doctor0000001"), Some("hpki"))
        );
        // A limited attempt is no failure: no refusal of the doctor's sign-in but this record.
        let denied: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["event"] == "auth" && r["decision"] == "deny")
            .collect();
        assert_eq!(denied.len(), 1, "{denied:#?}");
        std::thread::sleep(Duration::from_secs(wait));
        assert_eq!(login(&hpki.doctor).0, 200, "{db:?}: the limit lifted");
    }
}

const ENROLL_CODE: &str = "[rate_limits.enroll_code]\nper_minute = 10\nburst = 10";
const ENROLL_SOURCE: &str = "[rate_limits.enroll_source]\nper_minute = 60\nburst = 20";

#[test]
fn enrollment_is_paced_per_code_and_source() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            limits(&[
                (
                    ENROLL_CODE,
                    "[rate_limits.enroll_code]\nper_minute = 60\nburst = 2",
                ),
                (
                    ENROLL_SOURCE,
                    "[rate_limits.enroll_source]\nper_minute = 1\nburst = 7",
                ),
            ]),
        );
        let (code, pin) = enroll_code(&g, "f1", "t5");
        let (other, _) = enroll_code(&g, "f1", "t6");
        let url = format!("https://localhost:{}/enroll/p12", g.enroll_port);
        let post = |from: &str, code: &str, pin: &str| {
            curl_from(
                from,
                &url,
                &g.ca(),
                &[
                    "--data-urlencode",
                    &format!("code={code}"),
                    "--data-urlencode",
                    &format!("pin={pin}"),
                ],
            )
        };
        let lo = "127.0.0.1";

        // Per code: two tries at once, then one a second, whatever the PIN.
        let (s, text) = post(lo, &code, "00000000");
        assert_eq!(s, 403, "{db:?}: {text}");
        assert_eq!(post(lo, &code, "00000001").0, 403);
        let (s, text) = post(lo, &code, "00000002");
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(text.contains("短い時間に試行が多すぎます"), "{text}");
        let wait = retry_after(&text);
        assert_eq!(wait, 1);
        // The right PIN waits too: the limit does not look at the PIN.
        assert_eq!(post(lo, &code, &pin).0, 429);
        // Another code is served.
        assert_eq!(post(lo, &other, "00000000").0, 403);
        let rec = one_limited_record(&g, "enroll_code");
        assert_eq!(rec["event"], "enrollment");
        assert!(rec["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(
            !rec.to_string().contains(&code.replace('-', "")) && !rec.to_string().contains(&code),
            "the code went on record: {rec}"
        );
        assert_eq!(
            metric(
                &g,
                r#"sekisho_rate_limited_total{scope="enroll_code",cause="limit"}"#
            ),
            2.0
        );
        // After Retry-After the code still works (two wrong PINs of its five spent).
        std::thread::sleep(Duration::from_secs(wait));
        let (s, text) = post(lo, &code, &pin);
        assert_eq!(s, 200, "{db:?}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: application/x-pkcs12"),
            "{db:?}"
        );

        // Per source: 127.0.0.1 has posted 6 of its 7.
        assert_eq!(post(lo, "not-a-code", "1").0, 403);
        let (s, text) = post(lo, "not-a-code", "1");
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(retry_after(&text) > 1, "one a minute: {text}");
        let (s, _) = curl_from(
            lo,
            &format!("https://localhost:{}/enroll/csr", g.enroll_port),
            &g.ca(),
            &["-H", "content-type: application/json", "--data", "{}"],
        );
        assert_eq!(s, 429, "the JSON endpoint too");
        one_limited_record(&g, "enroll_source");
        // Another source is served.
        assert_eq!(post("127.0.0.2", "not-a-code", "1").0, 403);
    }
}

/// The enrollment secrets in the store: the code only as a hash, the PIN only as HMAC-SHA256
/// with the data dir's `enroll-pin.key` (computed here with openssl), so a copy of the database
/// alone cannot be tried against the 10^8 PINs.
#[test]
fn enrollment_pins_are_stored_keyed() {
    for db in BOTH {
        let g = Gateway::start(db);
        let (code, pin) = enroll_code(&g, "f1", "t7");
        let rows = g.sql_rows("SELECT code_hash, pin_hash FROM enroll_codes WHERE terminal = 't7'");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (code_hash, pin_hash) = (&rows[0][0], &rows[0][1]);
        let norm = code.replace('-', "");
        let message = format!("sekisho-enroll-pin:{norm}:{pin}");
        let sha256 = |s: &str| {
            let (ok, out) = openssl(&["dgst", "-sha256", "-r"], s);
            assert!(ok, "{out}");
            out.split_whitespace().next().unwrap().to_string()
        };
        for plain in [&code, &norm, &pin, &message] {
            assert!(!code_hash.contains(plain.as_str()) && !pin_hash.contains(plain.as_str()));
            assert_ne!(pin_hash, &sha256(plain), "an unkeyed hash of {plain}");
        }
        assert_ne!(pin_hash, &sha256(&format!("{norm}{pin}")));
        let key = std::fs::read(g.data.join("enroll-pin.key")).unwrap();
        assert_eq!(key.len(), 32);
        let hexkey: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let (ok, out) = openssl(
            &[
                "dgst",
                "-sha256",
                "-r",
                "-mac",
                "HMAC",
                "-macopt",
                &format!("hexkey:{hexkey}"),
            ],
            &message,
        );
        assert!(ok, "{out}");
        assert_eq!(pin_hash, out.split_whitespace().next().unwrap(), "{db:?}");

        // A code issued before PINs were keyed (its PIN stored as that unkeyed hash) is
        // refused as expired when its right PIN comes, and is not redeemed.
        g.sql(&format!(
            "UPDATE enroll_codes SET pin_hash = '{}' WHERE terminal = 't7'",
            sha256(&message)
        ));
        let (s, text, _) = curl(
            &format!("https://localhost:{}/enroll/p12", g.enroll_port),
            &g.ca(),
            &[
                "--data-urlencode",
                &format!("code={code}"),
                "--data-urlencode",
                &format!("pin={pin}"),
            ],
        );
        assert_eq!(s, 410, "{db:?}: {text}");
        assert!(text.contains("有効期限が切れています"), "{text}");
        let rows = g.sql_rows("SELECT used_at FROM enroll_codes WHERE terminal = 't7'");
        assert!(rows[0][0].is_empty() || rows[0][0] == "NULL", "{rows:?}");
    }
}

const NO_CERT: &str = "[rate_limits.no_certificate]\nper_minute = 60\nburst = 30";

#[test]
fn handshakes_without_a_certificate_and_in_flight() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            limits(&[
                (
                    NO_CERT,
                    "[rate_limits.no_certificate]\nper_minute = 12\nburst = 4",
                ),
                ("handshakes_in_flight = 256", "handshakes_in_flight = 2"),
            ]),
        );
        let lo = "127.0.0.1";
        let (c, k) = g.cert("t1");
        let bare = |from: &str| curl_from(from, &g.url("/"), &g.ca(), &[]);
        // A visit is a handshake and its first request: four fit.
        for _ in 0..4 {
            let (s, text) = bare(lo);
            assert_eq!(s, 403, "{db:?}: {text}");
            assert!(text.contains("no_client_certificate"));
        }
        let (s, text) = bare(lo);
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(text.contains("rate_limited"));
        let wait = retry_after(&text);
        assert_eq!(bare(lo).0, 429);
        // Terminals with their certificate, from the same address, are not limited.
        for _ in 0..5 {
            assert_eq!(g.curl("/", &["--cert", &c, "--key", &k]).0, 200);
        }
        // Another address is served (its page says what to do).
        assert_eq!(bare("127.0.0.2").0, 403);
        let limited_from = |ip: &str| {
            limited_records(&g, "no_certificate")
                .into_iter()
                .filter(|r| r["peer"].as_str().unwrap().starts_with(&format!("{ip}:")))
                .count()
        };
        g.wait_audit(|r| r["reason"] == "rate_limited");
        assert_eq!(limited_from(lo), 1, "one record for the burst");
        let rec = &limited_records(&g, "no_certificate")[0];
        assert_eq!(rec["event"], "tls");

        // One connection kept open cannot buy more requests than the limit: the handshake with
        // its first request and three more, then 429 (and the connection closed; the next
        // handshakes refused).
        let urls: Vec<String> = (0..8).map(|_| g.url("/")).collect();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--interface", "127.0.0.3", "--cacert", &g.ca()])
            .args(["-w", "%{http_code} %{num_connects}\n"])
            .args(urls.iter().flat_map(|u| ["-o", "/dev/null", u.as_str()]))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let codes: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            codes,
            ["403", "403", "403", "403", "429", "429", "429", "429"],
            "{db:?}: {text}"
        );
        assert!(
            text.lines().take(5).skip(1).all(|l| l.ends_with(" 0")),
            "one connection: {text}"
        );
        assert_eq!(limited_from("127.0.0.3"), 1, "one record for the burst");

        // The refused requests wrote no record of their own.
        let refused_requests = g
            .audit_records()
            .iter()
            .filter(|r| r["reason"] == "no_client_certificate")
            .count();
        assert_eq!(
            refused_requests, 9,
            "four from .1, one from .2, four from .3"
        );
        assert_eq!(
            metric(
                &g,
                r#"sekisho_rate_limited_total{scope="no_certificate",cause="limit"}"#
            ),
            6.0
        );
        std::thread::sleep(Duration::from_secs(wait));
        assert_eq!(bare(lo).0, 403, "the limit lifted");

        // Two connections that never begin their handshakes fill the two places; a terminal is
        // then turned away before its handshake, until one of them goes.
        let stalled: Vec<std::net::TcpStream> = (0..2)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", g.port)).unwrap())
            .collect();
        let refused = within_a_poll(|| g.curl("/", &["--cert", &c, "--key", &k]).0, |s| *s == 0);
        assert_eq!(refused, 0);
        one_limited_record(&g, "handshakes_in_flight");
        assert!(
            metric(
                &g,
                r#"sekisho_rate_limited_total{scope="handshakes_in_flight",cause="limit"}"#
            ) >= 1.0
        );
        drop(stalled);
        let served = within_a_poll(
            || g.curl("/", &["--cert", &c, "--key", &k]).0,
            |s| *s == 200,
        );
        assert_eq!(served, 200);
    }
}

const MGMT_SOURCE: &str = "[rate_limits.management_source]\nper_minute = 600\nburst = 120";
const MGMT_TOKEN: &str = "[rate_limits.management_token]\nper_minute = 300\nburst = 60";

#[test]
fn management_is_paced_per_source_and_token() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            limits(&[
                (
                    MGMT_SOURCE,
                    "[rate_limits.management_source]\nper_minute = 60\nburst = 5",
                ),
                (
                    MGMT_TOKEN,
                    "[rate_limits.management_token]\nper_minute = 1\nburst = 3",
                ),
            ]),
        );
        let mgmt = |from: &str, path: &str, token: Option<&str>| {
            let auth = token.map(|t| format!("Authorization: Bearer {t}"));
            let mut extra = Vec::new();
            if let Some(a) = &auth {
                extra.extend(["-H", a.as_str()]);
            }
            curl_from(
                from,
                &format!("http://127.0.0.1:{}{path}", g.mgmt_port),
                &g.ca(),
                &extra,
            )
        };
        // Per source (monitoring included): five at once, then one a second.
        for _ in 0..5 {
            assert_eq!(mgmt("127.0.0.2", "/healthz", None).0, 200);
        }
        let (s, text) = mgmt("127.0.0.2", "/healthz", None);
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(text.contains("rate_limited"));
        let wait = retry_after(&text);
        assert_eq!(wait, 1);
        assert_eq!(mgmt("127.0.0.2", "/metrics", None).0, 429);
        assert_eq!(mgmt("127.0.0.3", "/healthz", None).0, 200);
        let rec = one_limited_record(&g, "management_source");
        assert!(rec["peer"].as_str().unwrap().starts_with("127.0.0.2:"));
        std::thread::sleep(Duration::from_secs(wait));
        assert_eq!(
            mgmt("127.0.0.2", "/healthz", None).0,
            200,
            "the limit lifted"
        );

        // Per token, wherever it comes from.
        let token = |name: &str| {
            let out = run_ok(&[
                "operator-token",
                "add",
                "--data-dir",
                g.data_str(),
                "--name",
                name,
                "--scope",
                "status",
            ]);
            out.lines().nth(1).unwrap().trim().to_string()
        };
        let (a, b) = (token("ops-a"), token("ops-b"));
        for from in ["127.0.0.4", "127.0.0.5", "127.0.0.4"] {
            let (s, text) = mgmt(from, "/api/v1/status", Some(&a));
            assert_eq!(s, 200, "{db:?}: {text}");
        }
        let (s, text) = mgmt("127.0.0.5", "/api/v1/status", Some(&a));
        assert_eq!(s, 429, "{db:?}: {text}");
        assert!(retry_after(&text) > 1);
        assert_eq!(mgmt("127.0.0.5", "/api/v1/status", Some(&b)).0, 200);
        let rec = one_limited_record(&g, "management_token");
        assert!(
            rec["actor"].as_str().unwrap().starts_with("token:ops-a"),
            "{rec}"
        );
        assert!(!rec.to_string().contains(&a), "the token went on record");
        assert_eq!(
            metric(
                &g,
                r#"sekisho_rate_limited_total{scope="management_token",cause="limit"}"#
            ),
            1.0
        );
    }
}
