//! Running a network (issue 13): notices to users and maintenance windows (R-OPS-1) through a
//! real gateway — a second replica on PostgreSQL — with curl as the terminal's browser.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// RFC 3339 for `secs` from now.
fn at(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn curl_as(g: &Gateway, term: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let (c, k) = g.cert(term);
    let mut args = vec!["--cert", &c, "--key", &k];
    args.extend_from_slice(extra);
    let (s, body, _) = g.curl(path, &args);
    (s, body)
}

/// Waits up to `within` for `f` to hold; returns how long it took.
fn until(within: Duration, f: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    started.elapsed()
}

#[test]
fn notices_reach_the_terminals_of_their_facilities_and_the_application() {
    for db in BOTH {
        let g = Gateway::start(db);
        g.add_terminal_live("f2", "t2");
        let until_1h = at(3600);
        let out = run_ok(&[
            "notice",
            "add",
            "--data-dir",
            g.data_str(),
            "--ja",
            "12月5日 22時から<システム>更新のため停止します",
            "--en",
            "Down for an update from 22:00 on 5 December & after",
            "--until",
            &until_1h,
        ]);
        assert!(out.starts_with("Notice N"), "{out}");
        run_ok(&[
            "notice",
            "add",
            "--data-dir",
            g.data_str(),
            "--ja",
            "f2だけへのお知らせ",
            "--en",
            "For f2 only",
            "--until",
            &until_1h,
            "--facility",
            "f2",
        ]);
        // A notice that starts later is not shown yet.
        run_ok(&[
            "notice",
            "add",
            "--data-dir",
            g.data_str(),
            "--ja",
            "来週のお知らせ",
            "--en",
            "Next week",
            "--from",
            &at(7 * 86_400),
            "--until",
            &at(8 * 86_400),
        ]);
        let rec = g.wait_audit(|r| r["event"] == "operation" && r["reason"] == "notice_added");
        assert!(
            rec["actor"].as_str().unwrap().starts_with(TEST_OPERATOR),
            "{rec}"
        );

        let (s, body) = within_a_poll(
            || {
                curl_as(
                    &g,
                    "t1",
                    "/.sekisho/notices",
                    &["-H", "Accept: application/json"],
                )
            },
            |(_, b)| b.contains("Down for an update"),
        );
        assert_eq!(s, 200, "{db:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let notices = v["notices"].as_array().unwrap();
        assert_eq!(
            notices.len(),
            1,
            "{db:?}: f1 sees the notice for all only: {v}"
        );
        assert_eq!(
            notices[0]["text_en"],
            "Down for an update from 22:00 on 5 December & after"
        );
        let (_, page) = curl_as(&g, "t1", "/.sekisho/notices", &[]);
        assert!(
            page.contains("&lt;システム&gt;") && !page.contains("<システム>"),
            "{page}"
        );
        // Each change reaches the gateway within a poll; t2 is asked until both are there.
        let (_, body) = within_a_poll(
            || curl_as(&g, "t2", "/.sekisho/notices?format=json", &[]),
            |(_, b)| b.contains("For f2 only") && b.contains("Down for an update"),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["notices"].as_array().unwrap().len(),
            2,
            "{db:?}: f2 sees both: {v}"
        );

        // The count goes with the application's answers and with the requests it gets; a
        // terminal's own header of that name does not.
        let (s, head) = curl_as(
            &g,
            "t1",
            "/debug/headers",
            &["-D", "-", "-H", "Sekisho-Notices: 99"],
        );
        assert_eq!(s, 200);
        let (head, body) = head.split_once("\r\n\r\n").unwrap();
        assert!(
            head.lines()
                .any(|l| l.eq_ignore_ascii_case("sekisho-notices: 1")),
            "{db:?}: {head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v["headers"]["sekisho-notices"],
            serde_json::json!(["1"]),
            "{db:?}: the application gets the gateway's count, not the terminal's"
        );

        // Taking one down.
        let id = out.split_whitespace().nth(1).unwrap();
        run_ok(&["notice", "remove", "--data-dir", g.data_str(), "--id", id]);
        let (_, body) = within_a_poll(
            || curl_as(&g, "t1", "/.sekisho/notices?format=json", &[]),
            |(_, b)| b.contains("\"notices\":[]"),
        );
        assert!(body.contains("\"notices\":[]"), "{db:?}: {body}");
        let (_, head) = curl_as(&g, "t1", "/", &["-D", "-"]);
        assert!(
            !head.to_ascii_lowercase().contains("sekisho-notices"),
            "{head}"
        );
        // Wrong input changes nothing.
        let o = run(&["notice", "remove", "--data-dir", g.data_str(), "--id", id]);
        assert!(!o.status.success());
        let o = run(&[
            "notice",
            "add",
            "--data-dir",
            g.data_str(),
            "--ja",
            "x",
            "--en",
            "x",
            "--until",
            "next tuesday",
        ]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("is not a time"));
        let o = run(&[
            "notice",
            "add",
            "--data-dir",
            g.data_str(),
            "--ja",
            "x",
            "--en",
            "x",
            "--until",
            &at(-60),
        ]);
        assert!(!o.status.success(), "an end in the past");
        let list = run_ok(&["notice", "list", "--data-dir", g.data_str(), "--days", "1"]);
        assert_eq!(
            list.lines().count(),
            1 + 3,
            "{db:?}: header and the three added: {list}"
        );
    }
}

/// An emergency maintenance stops the application's requests on every replica within a
/// second, with a 503 page that gives the expected end, except for the terminal named for the
/// maintenance; ending it lets them through again; a planned window starts on its own time.
#[test]
fn maintenance_stops_requests_on_every_replica_except_those_named_for_it() {
    let g = Gateway::start(Db::Postgres);
    g.add_terminal_live("f1", "t2");
    let r = g.replica("gw2");
    let t1_on = |gw: &Gateway| curl_as(gw, "t1", "/", &[]).0;
    assert_eq!((t1_on(&g), t1_on(&r)), (200, 200));

    let end = at(1800);
    run_ok(&[
        "maintenance",
        "start",
        "--data-dir",
        g.data_str(),
        "--end",
        &end,
        "--ja",
        "緊急メンテナンス中です",
        "--en",
        "Emergency maintenance",
        "--exempt-terminal",
        "t2",
    ]);
    let both = until(Duration::from_secs(2), || {
        t1_on(&r) == 503 && t1_on(&g) == 503
    });
    println!("maintenance in force on both replicas {both:?} after the command returned");
    let (s, page) = curl_as(&g, "t1", "/", &["-D", "-"]);
    assert_eq!(s, 503);
    assert!(
        page.contains("メンテナンス")
            && page.contains("終了予定")
            && page.contains("緊急メンテナンス中です"),
        "{page}"
    );
    assert!(
        page.to_ascii_lowercase().contains("retry-after: "),
        "{page}"
    );
    let (_, json) = curl_as(&g, "t1", "/", &["-H", "Accept: application/json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["error"], "maintenance");
    assert!(v["detail"]["ends_at"].as_i64().unwrap() > 0, "{v}");
    // The terminal named for the maintenance goes through; the gateway's own pages stay open.
    assert_eq!(curl_as(&g, "t2", "/", &[]).0, 200);
    assert_eq!(curl_as(&r, "t1", "/.sekisho/notices", &[]).0, 200);
    let rec = g.wait_audit(|x| x["event"] == "operation" && x["reason"] == "maintenance_started");
    assert!(rec["actor"].as_str().unwrap().starts_with(TEST_OPERATOR));
    g.wait_audit(|x| {
        x["event"] == "request" && x["reason"] == "maintenance" && x["terminal"] == "t1"
    });

    run_ok(&["maintenance", "end", "--data-dir", g.data_str()]);
    until(Duration::from_secs(2), || {
        t1_on(&r) == 200 && t1_on(&g) == 200
    });
    g.wait_audit(|x| x["event"] == "operation" && x["reason"] == "maintenance_ended");
    let o = run(&["maintenance", "end", "--data-dir", g.data_str()]);
    assert!(!o.status.success(), "nothing in force to end");

    // Planned: announced now, in force from its start without anyone acting.
    let o = run(&[
        "maintenance",
        "schedule",
        "--data-dir",
        g.data_str(),
        "--start",
        &at(3600),
        "--end",
        &at(60),
        "--ja",
        "x",
        "--en",
        "x",
    ]);
    assert!(!o.status.success(), "an end before the start");
    run_ok(&[
        "maintenance",
        "schedule",
        "--data-dir",
        g.data_str(),
        "--start",
        &at(8),
        "--end",
        &at(3600),
        "--ja",
        "定期メンテナンス",
        "--en",
        "Planned maintenance",
        "--facility",
        "f1",
    ]);
    let (_, body) = within_a_poll(
        || curl_as(&r, "t1", "/.sekisho/notices?format=json", &[]),
        |(_, b)| b.contains("定期メンテナンス"),
    );
    assert!(
        body.contains("\"kind\":\"maintenance\""),
        "announced beforehand: {body}"
    );
    assert_eq!(t1_on(&r), 200, "not yet in force");
    until(Duration::from_secs(12), || t1_on(&r) == 503);
    assert_eq!(
        curl_as(&g, "t2", "/", &[]).0,
        503,
        "t2 is not named for this one"
    );
    run_ok(&["maintenance", "end", "--data-dir", g.data_str()]);
    until(Duration::from_secs(2), || {
        t1_on(&r) == 200 && t1_on(&g) == 200
    });
    drop(r);
}

/// curl at the management listener: (status, body).
fn mgmt(
    g: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let url = format!("http://127.0.0.1:{}{path}", g.mgmt_port);
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, &url]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = String::from_utf8(c.output().unwrap().stdout).unwrap();
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// The management API (R-OPS-4): open health and metrics, but reading records or changing
/// anything needs a live operator token, and every call — refused ones too — is on record
/// with the token's name and the peer. Remote maintenance through it acts like the CLI's.
#[test]
fn remote_maintenance_goes_through_the_management_api_with_a_token_and_on_record() {
    for db in BOTH {
        let g = Gateway::start(db);
        assert_eq!(mgmt(&g, "GET", "/healthz", None, None).0, 200);
        assert_eq!(mgmt(&g, "GET", "/metrics", None, None).0, 200);
        // No token, a made-up one: refused, and on record.
        let (s, body) = mgmt(&g, "GET", "/api/v1/audit/records", None, None);
        assert_eq!(s, 401, "{db:?}: {body}");
        let fake = format!("skm_{}", "A".repeat(43));
        assert_eq!(mgmt(&g, "GET", "/api/v1/status", Some(&fake), None).0, 401);
        let rec = g.wait_audit(|r| r["reason"] == "management_token_invalid");
        assert_eq!(rec["decision"], "deny");
        assert!(
            rec["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{rec}"
        );

        let out = run_ok(&[
            "operator-token",
            "add",
            "--data-dir",
            g.data_str(),
            "--name",
            "vendor-ops",
            "--scope",
            "status,audit,maintenance",
            "--scope",
            "facilities",
        ]);
        let token = out.lines().nth(1).unwrap().trim().to_string();
        assert!(token.starts_with("skm_"), "{out}");
        // Only its hash is kept.
        let stored = g.sql_rows("SELECT token_hash FROM operator_tokens WHERE name = 'vendor-ops'");
        assert_ne!(stored[0][0], token);
        assert!(
            !format!("{:?}", g.audit_records()).contains(&token),
            "the token went on record"
        );

        let (s, body) = mgmt(&g, "GET", "/api/v1/status", Some(&token), None);
        assert_eq!(s, 200, "{db:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], true);
        assert!(v["audit"]["tree_size"].as_i64().unwrap() > 0, "{v}");

        // Reading records: the search, on record before it answers.
        assert_eq!(g.curl_t1("/", &[]).0, 200);
        let (s, body) = mgmt(
            &g,
            "GET",
            "/api/v1/audit/records?terminal=t1&event=request&limit=5",
            Some(&token),
            None,
        );
        assert_eq!(s, 200, "{db:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let recs = v["records"].as_array().unwrap();
        assert!(
            !recs.is_empty() && recs.iter().all(|r| r["record"]["terminal"] == "t1"),
            "{v}"
        );
        let rec = g.wait_audit(|r| {
            r["reason"] == "audit_search"
                && r["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("token:vendor-ops"))
        });
        assert!(
            rec["detail"].as_str().unwrap().contains("terminal=t1"),
            "{rec}"
        );
        assert_eq!(
            mgmt(
                &g,
                "GET",
                "/api/v1/audit/records?limit=9999",
                Some(&token),
                None
            )
            .0,
            400
        );

        // Remote maintenance: start, seen by the terminal, end.
        let ask = format!(
            r#"{{"end": "{}", "ja": "リモート保守中", "en": "Remote maintenance"}}"#,
            at(900)
        );
        let (s, body) = mgmt(
            &g,
            "POST",
            "/api/v1/maintenance/start",
            Some(&token),
            Some(&ask),
        );
        assert_eq!(s, 200, "{db:?}: {body}");
        let (s, _, _) = within_a_poll(|| g.curl_t1("/", &[]), |r| r.0 == 503);
        assert_eq!(s, 503, "{db:?}");
        let rec = g.wait_audit(|r| r["reason"] == "maintenance_started");
        assert!(
            rec["actor"]
                .as_str()
                .unwrap()
                .starts_with("token:vendor-ops (management from 127.0.0.1:"),
            "{rec}"
        );
        let (s, body) = mgmt(&g, "POST", "/api/v1/maintenance/end", Some(&token), None);
        assert_eq!(s, 200, "{db:?}: {body}");
        let (s, _, _) = within_a_poll(|| g.curl_t1("/", &[]), |r| r.0 == 200);
        assert_eq!(s, 200, "{db:?}");
        // Bad input changes nothing.
        let (s, _) = mgmt(
            &g,
            "POST",
            "/api/v1/maintenance/start",
            Some(&token),
            Some(r#"{"end": "soon", "ja": "x", "en": "x"}"#),
        );
        assert_eq!(s, 400);
        let (s, _) = mgmt(
            &g,
            "POST",
            "/api/v1/facilities/f1/suspend",
            Some(&token),
            Some(r#"{"reason": ""}"#),
        );
        assert_eq!(s, 400);
        assert_eq!(g.curl_t1("/", &[]).0, 200);
        // A facility suspended remotely.
        let (s, body) = mgmt(
            &g,
            "POST",
            "/api/v1/facilities/f1/suspend",
            Some(&token),
            Some(r#"{"reason": "遠隔で一時停止"}"#),
        );
        assert_eq!(s, 200, "{db:?}: {body}");
        let (s, _, _) = within_a_poll(|| g.curl_t1("/", &[]), |r| r.0 == 403);
        assert_eq!(s, 403);
        let (s, _) = mgmt(
            &g,
            "POST",
            "/api/v1/facilities/f1/resume",
            Some(&token),
            Some(r#"{"reason": "確認済み"}"#),
        );
        assert_eq!(s, 200);

        // A token may only what its scopes say.
        let out = run_ok(&[
            "operator-token",
            "add",
            "--data-dir",
            g.data_str(),
            "--name",
            "monitor",
            "--scope",
            "status",
        ]);
        let narrow = out.lines().nth(1).unwrap().trim().to_string();
        assert_eq!(
            mgmt(&g, "GET", "/api/v1/status", Some(&narrow), None).0,
            200
        );
        let (s, body) = mgmt(
            &g,
            "POST",
            "/api/v1/facilities/f1/suspend",
            Some(&narrow),
            Some(r#"{"reason": "x"}"#),
        );
        assert_eq!(s, 403, "{db:?}: {body}");
        assert_eq!(
            mgmt(&g, "GET", "/api/v1/audit/records", Some(&narrow), None).0,
            403
        );
        g.wait_audit(|r| {
            r["reason"] == "management_scope"
                && r["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("token:monitor"))
        });
        let (s, _, _) = within_a_poll(|| g.curl_t1("/", &[]), |r| r.0 == 200);
        assert_eq!(s, 200, "{db:?}: resumed, and nothing suspended since");
        let o = run(&[
            "operator-token",
            "add",
            "--data-dir",
            g.data_str(),
            "--name",
            "x-1",
            "--scope",
            "everything",
        ]);
        assert!(!o.status.success(), "an unknown scope");
        // The version is part of the path.
        assert_eq!(mgmt(&g, "GET", "/api/v2/status", Some(&token), None).0, 404);

        // Revoked: refused from then on.
        run_ok(&[
            "operator-token",
            "revoke",
            "--data-dir",
            g.data_str(),
            "--name",
            "vendor-ops",
        ]);
        assert_eq!(mgmt(&g, "GET", "/api/v1/status", Some(&token), None).0, 401);
        let list = run_ok(&["operator-token", "list", "--data-dir", g.data_str()]);
        assert!(
            list.lines()
                .any(|l| l.starts_with("vendor-ops") && l.contains("revoked")),
            "{list}"
        );
        let o = run(&[
            "operator-token",
            "add",
            "--data-dir",
            g.data_str(),
            "--name",
            "vendor-ops",
            "--scope",
            "status",
        ]);
        assert!(!o.status.success(), "{db:?}: names are not reused");
    }
}
