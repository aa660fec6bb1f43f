//! The officers' and secretariat's console (`/.sekisho/console/`) over real TLS with terminal
//! certificates, curl as the browser with a cookie jar, on SQLite and PostgreSQL: who gets in
//! (the policy set's console actions), the headers that keep patient data out of caches and
//! frames, the audit search with its paging and each record's standing in the Merkle tree, a
//! patient's access history as a printable report and CSV, form tokens, and the idle timeout.
//! Break-glass review in the console is in `tests/breakglass/console.rs`; in a real browser
//! in `tests/browser.rs`.

#[path = "common/mod.rs"]
mod common;
#[path = "notify_rig/mod.rs"]
mod notify_rig;

use common::*;

/// A GET with the jar; (status, response headers and body).
fn fetch(g: &Gateway, term: &str, jar: &str, path: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    let (s, text, _) = g.curl(path, &["--cert", &c, "--key", &k, "-b", jar, "-D", "-"]);
    (s, text)
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

fn start(db: Db, replace: Vec<(&'static str, &'static str)>) -> Gateway {
    Gateway::start_prepared(
        db,
        Options {
            replace,
            ..Default::default()
        },
        |g| {
            g.add_terminal("f1", "t2", &g.out);
            g.add_terminal("f1", "t3", &g.out);
        },
    )
}

/// Only a registered terminal with a signed-in officer or secretariat member gets in; anyone
/// else signed in is refused on record; nobody signed in is sent to the sign-in page, which
/// leads back to the console.
#[test]
fn the_console_is_for_officers_and_the_secretariat() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody.jar");
        let nobody = nobody.to_str().unwrap();
        let (s, text) = fetch(&g, "t1", nobody, "/.sekisho/console/");
        assert_eq!(s, 303, "{db:?}: {text}");
        assert_eq!(
            header(&text, "location"),
            "/.sekisho/login?next=/.sekisho/console/"
        );
        // The sign-in page carries the way back, and only to the console.
        let (_, page) = get(&g, "t1", nobody, "/.sekisho/login?next=/.sekisho/console/");
        assert!(
            page.contains(r#"<input type="hidden" name="next" value="/.sekisho/console/">"#),
            "{page}"
        );
        let (_, page) = get(
            &g,
            "t1",
            nobody,
            "/.sekisho/login?next=https://evil.example/",
        );
        assert!(!page.contains("name=\"next\""), "{page}");

        // A nurse is signed in, but the console is not hers.
        let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
        let (s, text) = fetch(&g, "t1", &nurse, "/.sekisho/console/");
        assert_eq!(s, 403, "{db:?}: {text}");
        assert!(text.contains("console_not_permitted"), "{text}");
        let refused = g.wait_audit(|r| r["reason"] == "console_not_permitted");
        assert_eq!(refused["user"], "nurse00001");
        assert_eq!(refused["terminal"], "t1");
        assert_eq!(refused["decision"], "deny");

        // A security officer, signed in with a password, leads to the console.
        let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
        let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
        assert_eq!(s, 200, "{db:?}: {text}");
        assert!(text.contains("ダッシュボード"), "{text}");
        assert!(text.contains("id=\"audit-health\""), "{text}");
        assert_eq!(header(&text, "cache-control"), "no-store, max-age=0");
        assert!(header(&text, "content-security-policy").starts_with("default-src 'none'"));
        assert_eq!(header(&text, "x-frame-options"), "DENY");
        assert_eq!(header(&text, "referrer-policy"), "same-origin");
        // Their cookie is theirs on t2 only.
        let (s, _) = fetch(&g, "t3", &officer, "/.sekisho/console/");
        assert_eq!(s, 403, "{db:?}: a cookie of t2's session on t3");

        // The secretariat reads the audit log too.
        let clerk = sign_in(&g, "t3", "secretary001", "secretariat", dir.path());
        let (s, text) = fetch(&g, "t3", &clerk, "/.sekisho/console/audit");
        assert_eq!(s, 200, "{db:?}: {text}");
        // The dashboard says when the log was last verified, as the run recorded itself.
        let (_, home) = get(&g, "t3", &clerk, "/.sekisho/console/");
        assert!(
            home.contains(r#"<span class="bad" id="last-verify">未実施 / never run"#),
            "{home}"
        );
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
        let (_, home) = get(&g, "t3", &clerk, "/.sekisho/console/");
        assert!(home.contains("正常 / OK</span>"), "{db:?}: {home}");
        let rec = g.wait_audit(|r| r["reason"] == "audit_verified");
        assert!(
            rec["actor"].as_str().unwrap().starts_with(TEST_OPERATOR),
            "{rec}"
        );
    }
}

/// The audit search: filters, 50 a page newest first with a link to older ones, each record
/// checked against its leaf hash and the latest signed checkpoint (an edited record shows as
/// not matching), and every search on record with what was asked.
#[test]
fn the_audit_search_pages_and_checks_each_record() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        // 55 refused requests about P-0009 and two about P-0001, nobody signed in on t3.
        let (c, k) = g.cert("t3");
        for i in 0..55 {
            g.curl(
                &format!("/api/patients/P-0009/summary?n={i}"),
                &["--cert", &c, "--key", &k],
            );
        }
        for path in [
            "/api/patients/P-0001/summary",
            "/api/patients/P-0001/records",
        ] {
            g.curl(path, &["--cert", &c, "--key", &k]);
        }
        let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());

        let (s, page) = get(
            &g,
            "t2",
            &officer,
            "/.sekisho/console/audit?patient=P-0009&all=1",
        );
        assert_eq!(s, 200, "{db:?}: {page}");
        let rows = page.matches("✓ 整合 / consistent").count();
        assert_eq!(rows, 50, "{db:?}: the first page");
        assert!(page.contains("id=\"older\""), "{page}");
        let older = page
            .split("id=\"older\" href=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let (s, page2) = get(&g, "t2", &officer, &older);
        assert_eq!(s, 200, "{page2}");
        assert_eq!(page2.matches("✓ 整合 / consistent").count(), 5, "{db:?}");
        assert!(!page2.contains("id=\"older\""));

        // By facility, terminal, decision and reason together.
        let reason = g
            .audit_records()
            .into_iter()
            .find(|r| r["patient"] == "P-0001")
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, page) = get(
            &g,
            "t2",
            &officer,
            &format!(
                "/.sekisho/console/audit?facility=f1&terminal=t3&decision=deny&reason={reason}&patient=P-0001"
            ),
        );
        assert_eq!(page.matches("✓ 整合").count(), 2, "{db:?}: {page}");

        // Statistics: 57 refused requests from f1 about two patients, nobody signed in.
        let (s, stats) = get(&g, "t2", &officer, "/.sekisho/console/stats?days=1");
        assert_eq!(s, 200, "{stats}");
        assert!(
            stats.contains("<tr><td>f1</td><td>0</td><td>57</td><td>2</td></tr>"),
            "{db:?}: {stats}"
        );
        assert!(
            stats.contains("<td>0</td><td>57</td><td>2</td></tr></table>"),
            "{stats}"
        );
        // A bad field is said, and nothing is searched.
        let (s, page) = get(&g, "t2", &officer, "/.sekisho/console/audit?event=nonsense");
        assert_eq!(s, 200);
        assert!(page.contains("unknown event"), "{page}");

        // Every search is on record, with what was asked.
        let searches: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "audit_search")
            .collect();
        assert_eq!(searches.len(), 3, "{db:?}: {searches:#?}");
        assert!(
            g.audit_records()
                .iter()
                .any(|r| r["action"] == "statistics" && r["user"] == "officer0001")
        );
        assert_eq!(searches[0]["user"], "officer0001");
        assert!(
            searches[0]["detail"]
                .as_str()
                .unwrap()
                .contains("patient=P-0009")
        );

        // A record edited in the database no longer matches its leaf: the search says so.
        let idx = &g.sql_rows(
            "SELECT idx FROM audit_records WHERE patient = 'P-0001' ORDER BY idx LIMIT 1",
        )[0][0];
        g.sql(&format!(
            "UPDATE audit_records SET record = REPLACE(record, '\"deny\"', '\"permit\"') WHERE idx = {idx}"
        ));
        let (_, page) = get(&g, "t2", &officer, "/.sekisho/console/audit?patient=P-0001");
        assert_eq!(
            page.matches("✗ 記録が一致しません").count(),
            1,
            "{db:?}: {page}"
        );
        assert_eq!(page.matches("✓ 整合").count(), 1, "{db:?}");
    }
}

/// A patient's access history: a printable report and CSV (with a byte-order mark for
/// spreadsheets, formula cells defused), each on record before it is produced; a physician
/// cannot have one.
#[test]
fn a_patients_access_history_in_the_console() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = g.cert("t3");
        for path in [
            "/api/patients/P-0001/summary",
            "/api/patients/P-0002/summary",
            "/api/patients/P-0001/records",
        ] {
            g.curl(path, &["--cert", &c, "--key", &k]);
        }
        let clerk = sign_in(&g, "t2", "secretary001", "secretariat", dir.path());
        let (s, page) = get(&g, "t2", &clerk, "/.sekisho/console/patient?patient=P-0001");
        assert_eq!(s, 200, "{db:?}: {page}");
        assert!(page.contains("診療情報の利用状況のご報告"), "{page}");
        assert!(page.contains("<td id=\"count\">2("), "{db:?}: {page}");
        assert!(!page.contains("P-0002"), "{page}");

        let (s, text) = fetch(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/patient?patient=P-0001&format=csv",
        );
        assert_eq!(s, 200);
        assert_eq!(header(&text, "content-type"), "text/csv; charset=utf-8");
        assert_eq!(
            header(&text, "content-disposition"),
            "attachment; filename=\"access-history-P-0001.csv\""
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.starts_with("\u{feff}time,decision,reason,"), "{body}");
        assert_eq!(body.split("\r\n").filter(|l| !l.is_empty()).count(), 3);

        let asked: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "access_history")
            .collect();
        assert_eq!(asked.len(), 2, "{db:?}");
        assert_eq!(asked[0]["user"], "secretary001");
        assert_eq!(asked[0]["terminal"], "t2");
        assert!(asked[1]["detail"].as_str().unwrap().contains("as CSV"));

        // A malformed patient id is refused and nothing is recorded as produced.
        let (s, _) = get(&g, "t2", &clerk, "/.sekisho/console/patient?patient=../x");
        assert_eq!(s, 400);
        let after = g
            .audit_records()
            .into_iter()
            .filter(|r| r["action"] == "access_history")
            .count();
        assert_eq!(after, 2);
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}

/// A console form needs this session's token and this origin; a console left alone longer than
/// `[console] idle_seconds` ends the session (on record), and the next visit is a sign-in.
#[test]
fn console_forms_need_the_token_and_an_idle_console_signs_out() {
    let g = start(Db::Sqlite, vec![("idle_seconds = 900", "idle_seconds = 2")]);
    let dir = tempfile::tempdir().unwrap();
    let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
    let (s, _) = get(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 200);
    let act = "/.sekisho/console/breakglass/bg-none";
    let (s, body, _) = post(&g, "t2", &officer, act, &[("op", "end"), ("reason", "x")]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("console_form_expired"), "{body}");
    let (s, body, _) = post(
        &g,
        "t2",
        &officer,
        act,
        &[
            ("op", "end"),
            ("reason", "x"),
            ("csrf", "0123456789abcdef0123456789abcdef"),
        ],
    );
    assert_eq!(s, 403, "{body}");
    let (s, body, _) = post_with(
        &g,
        "t2",
        &officer,
        act,
        &[("op", "end")],
        &["Origin: https://evil.example"],
    );
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("cross_site_request"), "{body}");

    std::thread::sleep(std::time::Duration::from_millis(3200));
    let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("console_idle"), "{text}");
    let ended = g.wait_audit(|r| r["reason"] == "console_idle");
    assert_eq!(ended["user"], "officer0001");
    assert_eq!(ended["event"], "auth");
    let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 303, "{text}");
    assert_eq!(
        header(&text, "location"),
        "/.sekisho/login?next=/.sekisho/console/"
    );
}

/// A working-hours window (JST) that does not contain the present hour.
fn hours_excluding_now() -> String {
    let now =
        time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    let h = now.hour();
    if h <= 20 {
        format!("{:02}:00-{:02}:00", h + 2, h + 3)
    } else {
        format!("{:02}:00-{:02}:00", h - 3, h - 2)
    }
}

/// The anomaly rules: a nurse who opens more distinct patients in an hour than allowed, outside
/// working hours, is found once (however often the rules run), the officers' webhook is told
/// (ids and counts, no patient), `/metrics` counts it, the dashboard shows it, and an officer
/// suspends the nurse from it — on record first; the nurse's next request is refused.
#[test]
fn anomaly_findings_reach_the_officers_who_act_on_them() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rig = notify_rig::Rig::new();
    let hook = rt.block_on(notify_rig::WebhookReceiver::start(
        notify_rig::any_addr(),
        &rig.pki,
        &rig.secret,
        std::time::Duration::ZERO,
    ));
    let hours = hours_excluding_now();
    let hours: &'static str = Box::leak(format!("working_hours = \"{hours}\"").into_boxed_str());
    let g = Gateway::start_prepared(
        Db::Sqlite,
        Options {
            replace: vec![
                (
                    "distinct_patients_per_hour = 30",
                    "distinct_patients_per_hour = 2",
                ),
                ("scan_seconds = 60", "scan_seconds = 1"),
                ("working_hours = \"06:00-22:00\"", hours),
            ],
            extra_config: Options::default().extra_config + &rig.toml(Some(hook.addr), None),
            ..Default::default()
        },
        |g| {
            g.add_terminal("f1", "t2", &g.out);
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
    for p in ["P-0001", "P-0002", "P-0003"] {
        consented_patient(&g, p, &["u:nurse00001"]);
    }
    for p in ["P-0001", "P-0002", "P-0003"] {
        // The care team reaches the gateway within a poll.
        let (s, body) = within_a_poll(
            || get(&g, "t1", &nurse, &format!("/api/patients/{p}/summary")),
            |(s, _)| *s == 200,
        );
        assert_eq!(s, 200, "{body}");
    }
    // Found once per rule, whichever scan.
    let rows = within_a_poll(
        || {
            g.sql_rows(
                "SELECT rule, user_id, facility, count, status FROM anomaly_findings ORDER BY rule",
            )
        },
        |r| r.len() >= 2,
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let rows_later = g.sql_rows(
        "SELECT rule, user_id, facility, count, status FROM anomaly_findings ORDER BY rule",
    );
    assert_eq!(rows, rows_later, "scanned again, found nothing new");
    assert_eq!(
        rows,
        [
            [
                "distinct_patients_per_hour",
                "nurse00001",
                "f1",
                "3",
                "open"
            ],
            ["outside_working_hours", "nurse00001", "f1", "3", "open"],
        ]
    );
    // The officers are told: ids and counts, no patient.
    let told = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = hook.received();
            if r.len() >= 2 || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(told.len(), 2, "one notice per finding");
    for r in &told {
        assert!(r.verified);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["kind"], "anomaly");
        assert_eq!(body["data"]["user"], "nurse00001");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("P-000"), "no patient in a notice: {text}");
    }
    let (_, metrics) = g.mgmt_get("/metrics").unwrap();
    assert!(
        metrics.contains("sekisho_anomaly_findings_total{rule=\"distinct_patients_per_hour\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sekisho_anomaly_open 2"), "{metrics}");

    // On the dashboard, with what an officer may do; the secretariat sees it, cannot act.
    let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
    let (_, home) = get(&g, "t2", &officer, "/.sekisho/console/");
    assert!(home.contains("id=\"findings\""), "{home}");
    assert!(home.contains("value=\"suspend_user\""), "{home}");
    let id = g
        .sql_rows("SELECT id FROM anomaly_findings WHERE rule = 'distinct_patients_per_hour'")[0]
        [0]
    .clone();
    let token = home
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (s, _, loc) = post(
        &g,
        "t2",
        &officer,
        &format!("/.sekisho/console/findings/{id}"),
        &[
            ("csrf", &token),
            ("op", "suspend_user"),
            ("note", "業務外の閲覧の疑い"),
        ],
    );
    assert_eq!((s, loc.as_str()), (303, "/.sekisho/console/"));
    assert_eq!(
        g.sql_rows(&format!(
            "SELECT status, closed_by FROM anomaly_findings WHERE id = '{id}'"
        ))[0],
        ["acted", "officer0001"]
    );
    let (s, _) = within_a_poll(
        || get(&g, "t1", &nurse, "/api/patients/P-0001/summary"),
        |(s, _)| *s != 200,
    );
    assert_ne!(s, 200, "the suspended nurse is refused at once");
    let rec = g.wait_audit(|r| r["reason"] == "anomaly_user_suspended");
    assert_eq!(rec["user"], "nurse00001");
    assert!(
        rec["actor"]
            .as_str()
            .unwrap()
            .starts_with("officer0001 (console on terminal t2)")
    );
    let detected =
        g.wait_audit(|r| r["action"] == "anomaly" && r["reason"] == "outside_working_hours");
    assert_eq!(detected["user"], "nurse00001");
    let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
    assert!(out.contains("audit log OK"), "{out}");
}

/// The form token on a console page.
fn token(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form token on the page")
        .to_string()
}

/// The secretariat's pages: terminals suspended and resumed (the terminal refused meanwhile),
/// an enrollment code issued, a person added with a temporary password that signs in, and
/// suspended — each on record first, naming who did it from which terminal. A facility's
/// administrator sees and manages only their own facility and cannot make anyone an officer;
/// an officer has no registry pages.
#[test]
fn the_secretariat_manages_terminals_and_people_in_the_console() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let clerk = sign_in(&g, "t2", "secretary001", "secretariat", dir.path());
        let (s, page) = get(&g, "t2", &clerk, "/.sekisho/console/terminals");
        assert_eq!(s, 200, "{db:?}: {page}");
        assert!(page.contains(r#"<tr id="terminal-t3">"#), "{page}");
        let csrf = token(&page);

        let (s, _, loc) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/terminals/t3",
            &[("csrf", &csrf), ("op", "suspend")],
        );
        assert_eq!(
            (s, loc.as_str()),
            (303, "/.sekisho/console/terminals?done=suspend")
        );
        assert_eq!(
            g.sql_rows("SELECT status FROM terminals WHERE terminal = 't3'")[0][0],
            "suspended"
        );
        let (c, k) = g.cert("t3");
        let (s, _, _) = within_a_poll(
            || g.curl("/", &["--cert", &c, "--key", &k]),
            |(s, _, _)| *s == 403,
        );
        assert_eq!(s, 403, "{db:?}: the suspended terminal is refused");
        let rec = g.wait_audit(|r| r["reason"] == "terminal_suspended");
        assert_eq!(rec["terminal"], "t3");
        assert_eq!(rec["actor"], "secretary001 (console on terminal t2)");
        let (s, _, _) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/terminals/t3",
            &[("csrf", &csrf), ("op", "resume")],
        );
        assert_eq!(s, 303);
        let (s, _, _) = within_a_poll(
            || g.curl("/", &["--cert", &c, "--key", &k]),
            |(s, _, _)| *s == 200,
        );
        assert_eq!(s, 200, "{db:?}: resumed");

        // An enrollment code, shown once.
        let (s, page, _) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/terminals",
            &[
                ("csrf", &csrf),
                ("op", "enroll_code"),
                ("facility", "f1"),
                ("terminal", "pc-9"),
            ],
        );
        assert_eq!(s, 200, "{page}");
        assert!(page.contains(r#"<table id="code">"#), "{page}");
        g.wait_audit(|r| r["reason"] == "enroll_code_issued" && r["terminal"] == "pc-9");

        // A person, with a temporary password that signs in (and must be changed).
        let (s, page, _) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/users",
            &[
                ("csrf", &csrf),
                ("op", "add"),
                ("id", "nurse00002"),
                ("name", "看護 次郎"),
                ("facility", "f1"),
                ("role", "nurse"),
                ("profile", "jp-mhlw-qa-b"),
            ],
        );
        assert_eq!(s, 200, "{db:?}: {page}");
        let temp = page
            .split(r#"id="temporary" style="font-size:1.4rem">"#)
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("the temporary password")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'");
        let jar = dir.path().join("nurse2.jar");
        let jar = jar.to_str().unwrap();
        let (s, _, loc) = post(
            &g,
            "t3",
            jar,
            "/.sekisho/login",
            &[("id", "nurse00002"), ("password", &temp)],
        );
        assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"), "{db:?}");
        let rec = g.wait_audit(|r| r["reason"] == "user_added" && r["user"] == "nurse00002");
        assert_eq!(rec["actor"], "secretary001 (console on terminal t2)");
        let (s, _, _) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/users/nurse00002",
            &[("csrf", &csrf), ("op", "suspend")],
        );
        assert_eq!(s, 303);
        assert_eq!(
            g.sql_rows("SELECT status FROM users WHERE user_id = 'nurse00002'")[0][0],
            "suspended"
        );

        // A patient's care team and IC cards.
        consented_patient(&g, "P-0001", &[]);
        let card_dir = dir.path().join(format!("card-{db:?}"));
        run_ok(&[
            "patient",
            "card",
            "issue",
            "--data-dir",
            g.data_str(),
            "--patient",
            "P-0001",
            "--out",
            card_dir.to_str().unwrap(),
        ]);
        let (s, page) = get(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/patients?patient=P-0001",
        );
        assert_eq!(s, 200, "{page}");
        let patient_page = "/.sekisho/console/patients/P-0001";
        let (s, _, loc) = post(
            &g,
            "t2",
            &clerk,
            patient_page,
            &[
                ("csrf", &csrf),
                ("op", "add"),
                ("kind", "user"),
                ("member", "nurse00002"),
            ],
        );
        assert_eq!(
            (s, loc.as_str()),
            (303, "/.sekisho/console/patients?patient=P-0001&done=add")
        );
        assert_eq!(
            g.sql_rows("SELECT member_kind, member FROM care_team WHERE patient_id = 'P-0001'"),
            [["user", "nurse00002"]]
        );
        let rec = g.wait_audit(|r| r["reason"] == "care_team_added");
        assert_eq!(rec["patient"], "P-0001");
        assert_eq!(rec["actor"], "secretary001 (console on terminal t2)");
        let (s, _, _) = post(
            &g,
            "t2",
            &clerk,
            patient_page,
            &[
                ("csrf", &csrf),
                ("op", "remove"),
                ("kind", "user"),
                ("member", "nurse00002"),
            ],
        );
        assert_eq!(s, 303);
        assert!(
            g.sql_rows("SELECT member FROM care_team WHERE patient_id = 'P-0001'")
                .is_empty()
        );
        let serial = g.sql_rows("SELECT serial FROM patient_cards WHERE patient_id = 'P-0001'")[0]
            [0]
        .clone();
        let (_, page) = get(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/patients?patient=P-0001",
        );
        assert!(page.contains(&serial), "{page}");
        let (s, _, _) = post(
            &g,
            "t2",
            &clerk,
            patient_page,
            &[("csrf", &csrf), ("op", "revoke_card"), ("serial", &serial)],
        );
        assert_eq!(s, 303);
        assert_eq!(
            g.sql_rows(&format!(
                "SELECT status FROM patient_cards WHERE serial = '{serial}'"
            ))[0][0],
            "revoked"
        );

        // A facility administrator of f2: their facility only, no officers.
        let admin = sign_in_at(&g, "t3", "admin0000f2", "facility-admin", "f2", dir.path());
        let (s, page) = get(&g, "t3", &admin, "/.sekisho/console/terminals");
        assert_eq!(s, 200, "{page}");
        assert!(!page.contains("terminal-t1"), "{page}");
        let admin_csrf = token(&page);
        let (s, _) = get(
            &g,
            "t3",
            &admin,
            "/.sekisho/console/patients?patient=P-0001",
        );
        assert_eq!(s, 403, "care teams are the network's: the secretariat's");
        let (s, body, _) = post(
            &g,
            "t3",
            &admin,
            "/.sekisho/console/terminals/t1",
            &[("csrf", &admin_csrf), ("op", "suspend")],
        );
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("admin_other_facility"), "{body}");
        assert_eq!(
            g.sql_rows("SELECT status FROM terminals WHERE terminal = 't1'")[0][0],
            "active"
        );
        let (s, body, _) = post(
            &g,
            "t3",
            &admin,
            "/.sekisho/console/users",
            &[
                ("csrf", &admin_csrf),
                ("op", "add"),
                ("id", "officer9999"),
                ("name", "監査 花子"),
                ("facility", "f2"),
                ("role", "security-officer"),
            ],
        );
        assert_eq!(s, 403, "{body}");
        assert!(
            g.sql_rows("SELECT user_id FROM users WHERE user_id = 'officer9999'")
                .is_empty()
        );

        // An officer has no registry pages.
        let officer = sign_in(&g, "t1", "officer0001", "security-officer", dir.path());
        let (s, _) = get(&g, "t1", &officer, "/.sekisho/console/users");
        assert_eq!(s, 403, "{db:?}");
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}
