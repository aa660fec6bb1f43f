//! The audit log under the gateway: what happens when it cannot be written, and `audit verify`
//! finding what was changed behind its back.

mod common;

use common::*;

/// A store that refuses records behind the node's journal: what the journal acknowledged is
/// answered and reaches the store later; once the gateway knows, every answer is 503
/// `audit_unavailable`, no unsafe request and no request on a strict route reaches the upstream,
/// nor a safe read; and the gateway recovers when the store takes records again. (A journal
/// write that fails under a forwarded read: `tests/faults.rs`, a full disk.)
#[test]
fn unwritable_audit_log_refuses_with_503_and_forwards_nothing() {
    for db in BOTH {
        let mut opts = Options::default();
        opts.extra_config.push_str(
            r#"
[[route]]
name = "forms"
methods = ["POST"]
path = "/forms/**"
level = "terminal"
action = "write"

[[route]]
name = "strict"
methods = ["GET"]
path = "/strict/**"
level = "terminal"
action = "view"
strict_audit = true
"#,
        );
        let g = Gateway::start_with(db, opts);
        assert_eq!(g.curl_t1("/", &[]).0, 200);
        match db {
            Db::Sqlite => g.sql(
                "CREATE TRIGGER audit_off BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'audit disabled'); END",
            ),
            Db::Postgres => g.sql(
                "CREATE FUNCTION audit_off() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disabled'; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER audit_off BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION audit_off();",
            ),
        }
        // The first request after it is durable in the node's journal, so it may be answered;
        // the store refuses its record behind the journal, and from then on the gateway knows
        // the log is not being written: not ready, and saying why.
        let (first, body, _) = g.curl_t1("/debug/headers", &[]);
        assert!(first == 200 || first == 503, "{db:?}: {first} {body}");
        let first_id = (first == 200).then(|| {
            let v: serde_json::Value = serde_json::from_str(&body).expect("the upstream's echo");
            v["headers"]["sekisho-request-id"][0]
                .as_str()
                .expect("the request id the upstream got")
                .to_string()
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (status, body) = g.mgmt_get("/readyz").expect("/readyz");
            if status == 503 && body.contains("audit log cannot be written") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{db:?}: /readyz while the store refuses records: {status} {body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Unsafe, and strict: refused before anything is forwarded; and now that the writes
        // are known to fail, a safe read too.
        let before = g.upstream.hits();
        let (status, body, _) = g.curl_t1("/forms/a", &["-X", "POST", "--data", "x=1"]);
        assert_eq!(status, 503, "{db:?}: {body}");
        assert!(body.contains("audit_unavailable"));
        let (status, body, _) = g.curl_t1("/strict/a", &[]);
        assert_eq!(status, 503, "{db:?}: {body}");
        assert!(body.contains("audit_unavailable"));
        let (status, body, _) = g.curl_t1("/", &[]);
        assert_eq!(status, 503, "{db:?}: {body}");
        assert_eq!(
            g.upstream.hits(),
            before,
            "{db:?}: nothing unsafe or strict, and no read once the log is known unwritable, may be forwarded without its audit record"
        );
        // The store answers, but takes no records: not ready, and saying why.
        let (status, body) = g.mgmt_get("/readyz").expect("/readyz");
        assert_eq!(
            status, 503,
            "{db:?}: /readyz while the log is unwritable: {body}"
        );
        assert!(
            body.contains("audit log cannot be written"),
            "{db:?}: {body}"
        );
        g.sql(
            "DROP TRIGGER audit_off"
                .to_string()
                .as_str()
                .replace(
                    "audit_off",
                    if db == Db::Postgres {
                        "audit_off ON audit_records"
                    } else {
                        "audit_off"
                    },
                )
                .as_str(),
        );
        assert_eq!(
            g.curl_t1("/", &[]).0,
            200,
            "{db:?}: recovers once the log is writable"
        );
        // What the journal acknowledged while the store refused is in the store now, and so
        // are the refusals the log could not take at the time.
        if let Some(id) = first_id {
            g.wait_audit(|r| r["event"] == "request" && r["request_id"] == id.as_str());
        }
        g.wait_audit(|r| {
            r["decision"] == "deny" && r["reason"] == "audit_unavailable" && r["path"] == "/forms/a"
        });
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}

#[test]
fn audit_verify_names_a_tampered_record() {
    for db in BOTH {
        let mut g = Gateway::start(db);
        for _ in 0..5 {
            assert_eq!(g.curl_t1("/", &[]).0, 200);
        }
        g.stop();
        assert!(run_ok(&["audit", "verify", "--data-dir", g.data_str()]).contains("audit log OK"));
        let idx = g.sql_rows("SELECT idx FROM audit_records WHERE record LIKE '%\"event\":\"request\"%' ORDER BY idx LIMIT 1 OFFSET 2")[0][0].clone();
        g.sql(&format!("UPDATE audit_records SET record = REPLACE(record, '\"decision\":\"permit\"', '\"decision\":\"deny\"') WHERE idx = {idx}"));
        let o = run(&["audit", "verify", "--data-dir", g.data_str()]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{db:?}: {text}");
        assert!(
            text.contains(&format!("record {idx}: changed")),
            "{db:?}: verify must name record {idx}: {text}"
        );
        // A removed record is found too.
        let last = g.sql_rows("SELECT MAX(idx) FROM audit_records")[0][0].clone();
        let victim: i64 = last.parse::<i64>().unwrap() - 1;
        g.sql(&format!("DELETE FROM audit_records WHERE idx = {victim}"));
        let o = run(&["audit", "verify", "--data-dir", g.data_str()]);
        assert_eq!(o.status.code(), Some(1));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("record {victim}: removed")),
            "{db:?}: verify must name removed record {victim}: {text}"
        );
    }
}

/// A crash under keep-alive load (`kill -9` of `serve`): every answer a terminal got has its
/// decision record after the restart, the log verifies, and the restarted gateway appends after
/// what was there.
#[test]
fn kill_9_under_load_loses_no_released_answer() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    for db in BOTH {
        let mut g = Gateway::start(db);
        let pid = g.pid().expect("serve is running");
        let killed = Arc::new(AtomicBool::new(false));
        // The crash comes from another thread while 16 connections are mid-stream.
        let killer = {
            let killed = killed.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                let st = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(st.success());
                killed.store(true, Ordering::SeqCst);
            })
        };
        // One thread and runtime per connection: each borrows the rig.
        let answered: Vec<String> = std::thread::scope(|s| {
            let conns: Vec<_> = (0..16)
                .map(|c| {
                    let g = &g;
                    s.spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap()
                            .block_on(load_until_gone(g, c, false))
                    })
                })
                .collect();
            conns.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        killer.join().unwrap();
        assert!(killed.load(Ordering::SeqCst));
        assert!(
            answered.len() > 50,
            "{db:?}: the load should have got answers before the crash: {}",
            answered.len()
        );
        g.kill9(); // reaps the killed child
        // The store's log is intact; what the journal made durable and the indexer had not
        // put in the store yet is counted, and indexed when the gateway starts again.
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{db:?}: {out}");
        assert!(out.contains("journal localhost: "), "{db:?}: {out}");
        g.serve();
        let recorded: std::collections::HashSet<String> = g
            .sql_rows(
                "SELECT request_id FROM audit_records WHERE event = 'request' AND decision = 'permit'",
            )
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let missing: Vec<&String> = answered
            .iter()
            .filter(|id| !recorded.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{db:?}: {} of {} answered requests have no decision record, e.g. {:?}",
            missing.len(),
            answered.len(),
            &missing[..missing.len().min(5)]
        );
        // The restarted gateway goes on from the crashed one's head.
        assert_eq!(g.curl_t1("/", &[]).0, 200);
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{db:?}: {out}");
    }
}

/// A patient's access history for a disclosure request: only that patient's decisions, in
/// order, as a table or CSV; only for an officer or the secretariat; and asking is on record
/// before the answer.
#[test]
fn a_patients_access_history_is_for_officers_and_on_record() {
    for db in BOTH {
        let g = Gateway::start(db);
        run_ok(&[
            "user",
            "add",
            "--data-dir",
            g.data_str(),
            "--id",
            "officer0001",
            "--name",
            "監査 一郎",
            "--facility",
            "f1",
            "--roles",
            "security-officer",
        ]);
        // Decisions about two patients (refused: nobody is signed in) and one about none.
        for path in [
            "/api/patients/P-0001/summary",
            "/api/patients/P-0002/summary",
            "/api/patients/P-0001/records",
            "/",
        ] {
            g.curl_t1(path, &[]);
        }
        let history = |extra: &[&str]| {
            let mut args = vec![
                "audit",
                "patient",
                "--data-dir",
                g.data_str(),
                "--patient",
                "P-0001",
            ];
            args.extend_from_slice(extra);
            run(&args)
        };
        // Not for anyone else, and nothing is on record for a refused ask.
        let o = history(&["--operator", "nobody01"]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("not a registered user"));
        let o = history(&["--operator", "officer0001", "--csv"]);
        assert!(o.status.success(), "{db:?}: {o:?}");
        let csv = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines[0],
            "time,decision,reason,user,qualification,facility,terminal,action,route,purpose_of_use,break_glass_id,request_id"
        );
        assert_eq!(lines.len(), 3, "{db:?}: P-0001's two decisions only: {csv}");
        for l in &lines[1..] {
            assert!(l.contains(",deny,"), "{l}");
            assert!(l.contains(",f1,t1,"), "{l}");
        }
        let summary = lines[1].rsplit(',').next().unwrap();
        assert!(
            g.sql_rows(&format!(
                "SELECT idx FROM audit_records WHERE request_id = '{summary}' AND patient = 'P-0001'"
            ))
            .len()
                == 1
        );
        // Asking is on record, once, with who asked about whom.
        let asked: Vec<_> = g
            .audit_records()
            .into_iter()
            .filter(|r| r["event"] == "report")
            .collect();
        assert_eq!(asked.len(), 1, "{db:?}: {asked:#?}");
        assert_eq!(asked[0]["user"], "officer0001");
        assert_eq!(asked[0]["patient"], "P-0001");
        // A day range before any of it: nothing; a bad day is refused.
        let o = history(&["--operator", "officer0001", "--to", "2020-01-01"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("P-0001: 0 decision(s)"));
        let o = history(&["--operator", "officer0001", "--from", "2026-02-30"]);
        assert!(!o.status.success());
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}

/// An administrative command names the person acting (`--operator` or `SEKISHO_OPERATOR`),
/// and its record — naming them and the operating-system account — is written before the
/// change: without a name nothing is done, and with the audit log unwritable nothing changes.
#[test]
fn administrative_commands_are_on_record_first_with_the_operator() {
    for db in BOTH {
        let g = Gateway::start(db);
        let d = g.data_str();
        let add = |operator: Option<&str>, id: &str| {
            let mut c = sekisho();
            c.env_remove("SEKISHO_OPERATOR").env("USER", "clerk");
            if let Some(o) = operator {
                c.args(["--operator", o]);
            }
            c.args([
                "user",
                "add",
                "--data-dir",
                d,
                "--id",
                id,
                "--name",
                "受付 花子",
                "--facility",
                "f1",
                "--roles",
                "clerk",
            ])
            .output()
            .unwrap()
        };
        // No name: refused, nothing added, nothing on record.
        let o = add(None, "clerk000001");
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--operator NAME (or SEKISHO_OPERATOR)"),
            "{o:?}"
        );
        assert!(
            g.sql_rows("SELECT user_id FROM users WHERE user_id = 'clerk000001'")
                .is_empty()
        );
        let o = add(Some("bad name!"), "clerk000001");
        assert!(!o.status.success());

        // Named: the record says who, with the account.
        let o = add(Some("tanaka.jimukyoku"), "clerk000001");
        assert!(o.status.success(), "{db:?}: {o:?}");
        let rec = g.wait_audit(|r| r["reason"] == "user_added" && r["user"] == "clerk000001");
        assert_eq!(rec["actor"], "tanaka.jimukyoku (os:clerk)");

        // With the audit log unwritable, the suspension is not made.
        match db {
            Db::Sqlite => g.sql(
                "CREATE TRIGGER audit_off BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'audit disabled'); END",
            ),
            Db::Postgres => g.sql(
                "CREATE FUNCTION audit_off() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit disabled'; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER audit_off BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION audit_off();",
            ),
        }
        let o = run(&["user", "suspend", "--data-dir", d, "--id", "clerk000001"]);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("nothing was changed"),
            "{o:?}"
        );
        assert_eq!(
            g.sql_rows("SELECT status FROM users WHERE user_id = 'clerk000001'")[0][0],
            "active",
            "{db:?}: suspended without a record"
        );
        g.sql(match db {
            Db::Sqlite => "DROP TRIGGER audit_off",
            Db::Postgres => "DROP TRIGGER audit_off ON audit_records",
        });
        run_ok(&["user", "suspend", "--data-dir", d, "--id", "clerk000001"]);
        let rec = g.wait_audit(|r| r["reason"] == "user_suspended");
        assert_eq!(
            rec["actor"].as_str().unwrap().split(' ').next(),
            Some(TEST_OPERATOR)
        );
        let out = run_ok(&["audit", "verify", "--data-dir", d]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}
