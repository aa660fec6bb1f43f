//! HPKI sign-in at the gateway (R-ACCT-4, R-ACCT-5, R-ACCT-6): challenge and response over the
//! terminal's mTLS connection, the certificate checks, lockout and suspension, and requests
//! attributed to the person signed in. The card's part (an RSASSA-PKCS1-v1_5 signature by the
//! card's key) is done here by the test HPKI CA's key; `tests/card.rs` runs the real card chain.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use sekisho_ca::hpki::{TestCert, TestHpki};

const HPKI: &str = r#"
[[route]]
name = "my-page"
methods = ["GET"]
path = "/debug/me"
level = "user"
action = "view"

[[route]]
name = "write"
methods = ["POST"]
path = "/debug/write"
level = "user"
action = "write"

[hpki]
anchors = ["hpki/root.crt"]
intermediates = ["hpki/auth-ca.crt"]
crls = ["hpki/auth-ca.crl", "hpki/root.crl"]
"#;

fn gateway(db: Db) -> (Gateway, TestHpki) {
    let extra = format!("{}{HPKI}", Options::default().extra_config)
        .replace("/debug/me", "/debug/headers2");
    let mut g = Gateway::start_with(
        db,
        Options {
            extra_config: extra,
            ..Default::default()
        },
    );
    let hpki = TestHpki::generate(&g.data.join("hpki")).unwrap();
    // The trust files appeared after start: the gateway picks them up without a restart.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt
        .block_on(call(
            &g,
            "t1",
            "POST",
            "/.sekisho/auth/hpki/challenge",
            None,
        ))
        .0
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "HPKI trust was not picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    g.add_terminal_live("f1", "t2");
    for (id, cert) in [
        ("doctor0000001", "doctor"),
        ("pharma0000001", "pharmacist"),
        ("revoked000001", "revoked"),
    ] {
        let path = g.data.join(format!("hpki/{cert}.crt"));
        let args = [
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
        ];
        let o = run(&args);
        if cert == "revoked" {
            assert!(!o.status.success(), "a revoked card cannot be registered");
        } else {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }
    let _ = &mut g;
    (g, hpki)
}

/// Challenge, sign as the card would, log in; returns (status, body).
async fn login(g: &Gateway, terminal: &str, card: &TestCert) -> (u16, serde_json::Value) {
    let (s, ch) = call(g, terminal, "POST", "/.sekisho/auth/hpki/challenge", None).await;
    assert_eq!(s, 200, "{ch}");
    let to_sign = B64.decode(ch["to_sign"].as_str().unwrap()).unwrap();
    let sig = card.sign(&to_sign).unwrap();
    let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&card.der), "signature": B64.encode(sig)});
    call(g, terminal, "POST", "/.sekisho/auth/hpki/login", Some(body)).await
}

#[test]
fn physician_signs_in_with_the_card_and_requests_carry_them() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (s, me) = call(&g, "t1", "GET", "/debug/headers2", None).await;
            assert_eq!(
                (s, me["error"].as_str()),
                (401, Some("signin_required")),
                "{db:?}"
            );
            let (s, v) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!(s, 200, "{db:?}: {v}");
            assert_eq!(v["user"], "doctor0000001");
            assert_eq!(v["qualification"], "Medical Doctor");
            let (s, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!((s, st["signed_in"].as_bool()), (200, Some(true)));
            // A request over another connection of the same terminal is attributed to them.
            let (s, body, _) = g.curl_t1("/debug/headers", &[]);
            assert_eq!(s, 200);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["assertion_claims"]["user"], "doctor0000001", "{db:?}");
            assert_eq!(v["assertion_claims"]["qualification"], "Medical Doctor");
            assert_eq!(v["assertion_claims"]["auth_method"], "hpki");
            // Not another terminal's requests.
            let (s, _) = call(&g, "t2", "GET", "/debug/headers2", None).await;
            assert_eq!(s, 401, "{db:?}: the session belongs to t1 only");
            // Sign-out (the agent does this on card removal).
            let (s, v) = call(
                &g,
                "t1",
                "POST",
                "/.sekisho/auth/logout",
                Some(serde_json::json!({"reason": "card_removed"})),
            )
            .await;
            assert_eq!((s, v["ended"].as_bool()), (200, Some(true)));
            let (s, _) = call(&g, "t1", "GET", "/debug/headers2", None).await;
            assert_eq!(s, 401, "{db:?}: signed out");
        });
        g.wait_audit(|r| {
            r["event"] == "auth"
                && r["reason"] == "login"
                && r["user"] == "doctor0000001"
                && r["qualification"] == "Medical Doctor"
        });
        g.wait_audit(|r| r["event"] == "auth" && r["reason"] == "card_removed");
        assert!(run_ok(&["audit", "verify", "--data-dir", g.data_str()]).contains("audit log OK"));
    }
}

#[test]
fn bad_cards_and_replays_are_refused() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (card, code) in [
                (&hpki.expired, "hpki_expired"),
                (&hpki.revoked, "hpki_revoked"),
                (&hpki.signature, "hpki_signature_certificate"),
                (&hpki.norole, "user_unknown"),
            ] {
                let (s, v) = login(&g, "t1", card).await;
                assert_ne!(s, 200, "{db:?} {}", card.name);
                assert_eq!(v["error"], code, "{db:?} {}: {v}", card.name);
            }
            // A signature by another key than the certificate's.
            let (_, ch) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/challenge", None).await;
            let to_sign = B64.decode(ch["to_sign"].as_str().unwrap()).unwrap();
            let sig = hpki.pharmacist.sign(&to_sign).unwrap();
            let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&hpki.doctor.der), "signature": B64.encode(&sig)});
            let (s, v) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/login", Some(body)).await;
            assert_eq!((s, v["error"].as_str()), (401, Some("hpki_bad_signature")), "{db:?}");
            // A replayed challenge.
            let (_, ch) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/challenge", None).await;
            let sig = hpki.doctor.sign(&B64.decode(ch["to_sign"].as_str().unwrap()).unwrap()).unwrap();
            let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&hpki.doctor.der), "signature": B64.encode(&sig)});
            let (s, _) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/login", Some(body.clone())).await;
            assert_eq!(s, 200, "{db:?}");
            let (s, v) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/login", Some(body)).await;
            assert_eq!((s, v["error"].as_str()), (401, Some("challenge_invalid")), "{db:?}: replay");
            // A challenge issued to another terminal.
            let (_, ch) = call(&g, "t2", "POST", "/.sekisho/auth/hpki/challenge", None).await;
            let sig = hpki.doctor.sign(&B64.decode(ch["to_sign"].as_str().unwrap()).unwrap()).unwrap();
            let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&hpki.doctor.der), "signature": B64.encode(&sig)});
            let (s, v) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/login", Some(body)).await;
            assert_eq!((s, v["error"].as_str()), (401, Some("challenge_invalid")), "{db:?}: another terminal's challenge");
        });
        g.wait_audit(|r| r["event"] == "auth" && r["reason"] == "hpki_revoked");
    }
}

#[test]
fn lockout_after_repeated_failures_until_the_secretariat_unlocks() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Five signatures that do not match the doctor's card: the account locks.
            for _ in 0..5 {
                let (_, ch) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/challenge", None).await;
                let sig = hpki.pharmacist.sign(&B64.decode(ch["to_sign"].as_str().unwrap()).unwrap()).unwrap();
                let body = serde_json::json!({"nonce": ch["nonce"], "certificate": B64.encode(&hpki.doctor.der), "signature": B64.encode(&sig)});
                let (s, _) = call(&g, "t1", "POST", "/.sekisho/auth/hpki/login", Some(body)).await;
                assert_eq!(s, 401);
            }
            let (s, v) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!((s, v["error"].as_str()), (423, Some("account_locked")), "{db:?}: the right card is refused now");
            // Other physicians on the same terminal are not locked out.
            let (s, v) = login(&g, "t1", &hpki.pharmacist).await;
            assert_eq!(s, 200, "{db:?}: {v}");
        });
        // The lock survives a restart.
        let mut g = g;
        g.stop();
        g.serve();
        let list = run_ok(&["user", "list", "--data-dir", g.data_str()]);
        assert!(
            list.lines()
                .any(|l| l.starts_with("doctor0000001") && l.contains("locked")),
            "{list}"
        );
        run_ok(&[
            "user",
            "unlock",
            "--data-dir",
            g.data_str(),
            "--id",
            "doctor0000001",
        ]);
        g.wait_audit(|r| r["event"] == "registry" && r["reason"] == "account_unlocked");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (s, v) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!(s, 200, "{db:?}: unlocked: {v}");
        });
    }
}

#[test]
fn suspension_ends_a_live_session() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (s, _) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!(s, 200);
            let (s, _) = call(&g, "t1", "GET", "/debug/headers2", None).await;
            assert_eq!(s, 200);
        });
        run_ok(&[
            "user",
            "suspend",
            "--data-dir",
            g.data_str(),
            "--id",
            "doctor0000001",
        ]);
        std::thread::sleep(Duration::from_millis(800));
        rt.block_on(async {
            let (s, _) = call(&g, "t1", "GET", "/debug/headers2", None).await;
            assert_eq!(s, 401, "{db:?}: the session ended with the suspension");
            let (s, v) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (403, Some("user_suspended")),
                "{db:?}"
            );
        });
    }
}

#[test]
fn hpki_crls_are_fetched_over_http_and_the_last_good_copy_is_kept() {
    // The CRL server: serves auth-ca.crl until told to fail.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let crl: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>> = Default::default();
    let served = crl.clone();
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = served.lock().unwrap().clone();
                    async move {
                        let mut r = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body.clone().unwrap_or_default()),
                        ));
                        if body.is_none() {
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let cfg = format!(
        "{}\n[hpki]\nanchors = [\"hpki/root.crt\"]\nintermediates = [\"hpki/auth-ca.crt\"]\ncrls = [\"hpki/root.crl\"]\ncrl_urls = [\"http://127.0.0.1:{port}/auth-ca.crl\"]\ncrl_refresh_minutes = 1\n",
        Options::default().extra_config
    );
    // Generate the CA first, so the CRL can be served from the start.
    let tmp = tempfile::tempdir().unwrap();
    let hpki = TestHpki::generate(tmp.path()).unwrap();
    *crl.lock().unwrap() = Some(hpki.auth_crl.clone());
    let mut g = Gateway::start_with(
        Db::Sqlite,
        Options {
            extra_config: cfg,
            ..Default::default()
        },
    );
    std::fs::create_dir_all(g.data.join("hpki")).unwrap();
    for f in ["root.crt", "auth-ca.crt", "root.crl"] {
        std::fs::copy(tmp.path().join(f), g.data.join("hpki").join(f)).unwrap();
    }
    // Restart so the fetcher runs at once with the trust in place.
    g.stop();
    g.serve();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = rt.block_on(login(&g, "t1", &hpki.revoked));
        if v["error"] == "hpki_revoked" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fetched CRL was not used: {s} {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The distribution point goes away: the cached copy still decides.
    *crl.lock().unwrap() = None;
    g.stop();
    g.serve();
    let (_, v) = rt.block_on(login(&g, "t1", &hpki.revoked));
    assert_eq!(v["error"], "hpki_revoked", "{v}");
    // One cached CRL; a dot-file is a write in progress (the atomic writer's temporary file),
    // which a fetch running at this moment may have open.
    let cached: Vec<String> = std::fs::read_dir(g.data.join("hpki-crl-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
}

/// A card session needs no cookie and the terminal's browser presents its certificate to any
/// page, so a page of another site could act for the physician: unsafe requests (to the
/// upstream, and sign-out) whose browser names another origin are refused and audited; the
/// agent and API clients, which send neither `Origin` nor `Sec-Fetch-Site`, are not affected.
#[test]
fn pages_of_other_sites_cannot_act_for_the_card_holder() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (s, v) = login(&g, "t1", &hpki.doctor).await;
            assert_eq!(s, 200, "{db:?}: {v}");
            let plain = ("content-type", "text/plain");
            let foreign: [&[(&str, &str)]; 5] = [
                &[plain, ("origin", "https://evil.example")],
                &[plain, ("origin", "https://localhost.evil.example")],
                &[plain, ("origin", "null")],
                &[plain, ("sec-fetch-site", "cross-site")],
                &[
                    plain,
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://a.localhost"),
                ],
            ];
            let hits = g.upstream.hits();
            for headers in foreign {
                let (s, body) = call_with(&g, "t1", "POST", "/debug/write", headers, "x").await;
                assert_eq!(s, 403, "{db:?} {headers:?}: {body}");
                assert!(body.contains("cross_site_request"), "{body}");
                // Sign-out is a change too: a foreign page cannot end the session.
                for path in ["/.sekisho/auth/logout", "/.sekisho/logout"] {
                    let (s, body) =
                        call_with(&g, "t1", "POST", path, headers, r#"{"reason":"logout"}"#).await;
                    assert_eq!(s, 403, "{db:?} {path} {headers:?}: {body}");
                }
            }
            assert_eq!(
                g.upstream.hits(),
                hits,
                "{db:?}: nothing reached the upstream"
            );
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], true, "{db:?}: still signed in");
            // From the gateway's own page, and from the agent or an API client (no claim).
            for headers in [
                &[
                    plain,
                    ("origin", "https://localhost"),
                    ("sec-fetch-site", "same-origin"),
                ][..],
                &[plain][..],
            ] {
                let (s, body) = call_with(&g, "t1", "POST", "/debug/write", headers, "x").await;
                assert_eq!(s, 200, "{db:?} {headers:?}: {body}");
            }
            assert_eq!(g.upstream.hits(), hits + 2);
            // Reads are not changed by this: a link from elsewhere still opens a page.
            let (s, _) = call_with(
                &g,
                "t1",
                "GET",
                "/debug/headers",
                &[("sec-fetch-site", "cross-site")],
                "",
            )
            .await;
            assert_eq!(s, 200, "{db:?}");
            // Sign-out from the gateway's own page works.
            let (s, _) = call_with(
                &g,
                "t1",
                "POST",
                "/.sekisho/logout",
                &[("origin", "https://localhost")],
                "",
            )
            .await;
            assert_eq!(s, 303, "{db:?}");
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], false, "{db:?}");
        });
        for path in ["/debug/write", "/.sekisho/auth/logout", "/.sekisho/logout"] {
            g.wait_audit(|r| {
                r["event"] == "request"
                    && r["decision"] == "deny"
                    && r["reason"] == "cross_site_request"
                    && r["path"] == path
                    && r["terminal"] == "t1"
            });
        }
    }
}

/// Every `POST` (and any other unsafe method) under `/.sekisho/` — sign-in and sign-out, the
/// password change, card presence, consent, emergency access, the officers' console — is
/// refused when the browser says a page of another site sent it, before anything is read or
/// changed; the same requests from the gateway's own page are not refused for that reason.
#[test]
fn every_state_changing_own_endpoint_refuses_pages_of_other_sites() {
    const OWN_POSTS: &[&str] = &[
        "/.sekisho/auth/hpki/challenge",
        "/.sekisho/auth/hpki/login",
        "/.sekisho/auth/presence/challenge",
        "/.sekisho/auth/presence",
        "/.sekisho/auth/logout",
        "/.sekisho/login",
        "/.sekisho/password",
        "/.sekisho/logout",
        "/.sekisho/consent/challenge",
        "/.sekisho/consent/card",
        "/.sekisho/consent/attest",
        "/.sekisho/emergency",
        "/.sekisho/emergency/declarations",
        "/.sekisho/emergency/declarations/bg-1/patient",
        "/.sekisho/emergency/declarations/bg-1/signature",
        "/.sekisho/emergency/declarations/bg-1/follow-up",
        "/.sekisho/console/findings/1",
        "/.sekisho/console/breakglass/bg-1",
        "/.sekisho/console/terminals",
        "/.sekisho/console/terminals/t2",
        "/.sekisho/console/users",
        "/.sekisho/console/users/doctor0000001",
        "/.sekisho/console/patients/P-0001",
        "/.sekisho/console/facilities",
        "/.sekisho/console/facilities/f1",
        "/.sekisho/notices",
    ];
    // What a refused request must leave as it was.
    const TABLES: &[&str] = &[
        "sessions",
        "users",
        "password_history",
        "lockouts",
        "challenges",
        "consent_challenges",
        "consent_windows",
        "break_glass",
        "terminals",
        "facilities",
        "patients",
        "anomaly_findings",
    ];
    let snapshot = |g: &Gateway| -> Vec<Vec<Vec<String>>> {
        TABLES
            .iter()
            .map(|t| g.sql_rows(&format!("SELECT * FROM {t} ORDER BY 1")))
            .collect()
    };
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (s, v) = rt.block_on(login(&g, "t1", &hpki.doctor));
        assert_eq!(s, 200, "{db:?}: {v}");
        let form = ("content-type", "application/x-www-form-urlencoded");
        let before = snapshot(&g);
        let refused = rt.block_on(async {
            let foreign: [&[(&str, &str)]; 3] = [
                &[form, ("origin", "https://evil.example")],
                &[form, ("sec-fetch-site", "cross-site")],
                &[form, ("origin", "null")],
            ];
            let mut refused = 0;
            for path in OWN_POSTS {
                for headers in foreign {
                    for method in ["POST", "PUT", "DELETE"] {
                        let (s, body) =
                            call_with(&g, "t1", method, path, headers, "id=x&csrf=y").await;
                        assert_eq!(s, 403, "{db:?} {method} {path} {headers:?}: {body}");
                        assert!(
                            body.contains("cross_site_request"),
                            "{db:?} {method} {path}: {body}"
                        );
                        refused += 1;
                    }
                }
            }
            refused
        });
        assert_eq!(
            before,
            snapshot(&g),
            "{db:?}: a refused request changed something"
        );
        rt.block_on(async {
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], true, "{db:?}: still signed in");
            // The refusal is the header's doing: from the gateway's own page, none of these is
            // refused as cross-site (sign-out last, since it ends the session).
            let own: &[(&str, &str)] = &[
                form,
                ("origin", "https://localhost"),
                ("sec-fetch-site", "same-origin"),
            ];
            for path in OWN_POSTS.iter().filter(|p| !p.ends_with("logout")) {
                let (_, body) = call_with(&g, "t1", "POST", path, own, "id=x&csrf=y").await;
                assert!(
                    !body.contains("cross_site_request"),
                    "{db:?} {path}: {body}"
                );
            }
            let (s, _) = call_with(&g, "t1", "POST", "/.sekisho/logout", own, "").await;
            assert_eq!(s, 303, "{db:?}");
        });
        let audited = g
            .audit_records()
            .into_iter()
            .filter(|r| r["reason"] == "cross_site_request" && r["terminal"] == "t1")
            .count();
        assert_eq!(audited, refused, "{db:?}: every refusal is on record");
    }
}

/// A presence proof counts only when the session's own card signed the gateway's fresh
/// presence nonce: a replayed proof is refused and changes nothing; another card, or a
/// signature over anything else (a sign-in text with the same nonce), ends the session at
/// once, on record as `card_absent`.
#[test]
fn presence_proofs_must_be_the_sessions_card_signing_a_fresh_nonce() {
    for db in BOTH {
        let (g, hpki) = gateway(db);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let path = "/.sekisho/auth/presence";
            let (s, v) = call(&g, "t1", "POST", "/.sekisho/auth/presence/challenge", None).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (401, Some("not_signed_in")),
                "{db:?}"
            );
            let proof = |card: &TestCert,
                         signed: &dyn Fn(&[u8], &str) -> Vec<u8>,
                         ch: &serde_json::Value| {
                let to_sign = B64.decode(ch["to_sign"].as_str().unwrap()).unwrap();
                let text = signed(&to_sign, ch["nonce"].as_str().unwrap());
                serde_json::json!({
                    "nonce": ch["nonce"],
                    "certificate": B64.encode(&card.der),
                    "signature": B64.encode(card.sign(&text).unwrap()),
                })
            };
            let as_given = |t: &[u8], _: &str| t.to_vec();
            let challenge = || call(&g, "t1", "POST", "/.sekisho/auth/presence/challenge", None);

            assert_eq!(login(&g, "t1", &hpki.doctor).await.0, 200);
            let (s, ch) = challenge().await;
            assert_eq!(s, 200, "{db:?}: {ch}");
            assert!(ch["to_sign"].as_str().is_some_and(|t| {
                B64.decode(t)
                    .unwrap()
                    .starts_with(b"sekisho-hpki-presence:v1\n")
            }));
            let body = proof(&hpki.doctor, &as_given, &ch);
            let (s, a) = call(&g, "t1", "POST", path, Some(body.clone())).await;
            assert_eq!(s, 200, "{db:?}: {a}");
            assert_eq!(
                (a["next_in"].as_u64(), a["ends_in"].as_u64()),
                (Some(20), Some(60))
            );
            let (s, a) = call(&g, "t1", "POST", path, Some(body)).await;
            assert_eq!(
                (s, a["error"].as_str()),
                (401, Some("challenge_invalid")),
                "{db:?}"
            );
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], true, "{db:?}: a replay ends nothing");

            // Another card in the reader.
            let (_, ch) = challenge().await;
            let (s, a) = call(
                &g,
                "t1",
                "POST",
                path,
                Some(proof(&hpki.pharmacist, &as_given, &ch)),
            )
            .await;
            assert_eq!(
                (s, a["error"].as_str()),
                (403, Some("presence_card_mismatch")),
                "{db:?}"
            );
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], false, "{db:?}");

            // The right card, the wrong text.
            assert_eq!(login(&g, "t1", &hpki.doctor).await.0, 200);
            let (_, ch) = challenge().await;
            let login_text = |_: &[u8], nonce: &str| {
                sekisho_protocol::wire::hpki_login_to_sign(
                    "localhost",
                    "urn:sekisho:terminal:f1:t1",
                    nonce,
                )
            };
            let (s, a) = call(
                &g,
                "t1",
                "POST",
                path,
                Some(proof(&hpki.doctor, &login_text, &ch)),
            )
            .await;
            assert_eq!(
                (s, a["error"].as_str()),
                (401, Some("hpki_bad_signature")),
                "{db:?}"
            );
            let (_, st) = call(&g, "t1", "GET", "/.sekisho/auth/status", None).await;
            assert_eq!(st["signed_in"], false, "{db:?}");
        });
        let ended = g
            .audit_records()
            .into_iter()
            .filter(|r| {
                r["event"] == "auth" && r["reason"] == "card_absent" && r["user"] == "doctor0000001"
            })
            .count();
        assert_eq!(ended, 2, "{db:?}");
    }
}
