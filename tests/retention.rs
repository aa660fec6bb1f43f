//! Retention (R-OPS-5) with the real binary: `sekisho audit prune` on a data dir whose log holds
//! records from years ago, then `sekisho audit verify` — it passes and names what was pruned —
//! and the prune's own operation records. On SQLite and PostgreSQL.

mod common;

use common::*;
use sekisho_audit::{AuditRecord, Decision, Event};

const OLD: usize = 40;

/// Appends `OLD` records from 2019 (request, outcome, and every tenth a break-glass one) to the
/// data dir's log, signed with its own checkpoint key, as a gateway of then would have.
fn append_old(g: &Gateway) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dd = sekisho::config::DataDir::new(&g.data);
        let cfg = sekisho::config::Config::load(&g.data).unwrap();
        let store = sekisho_store::Store::open(&cfg.store_url(&g.data))
            .await
            .unwrap();
        let log = sekisho::serve::open_audit(&dd, &cfg, &store, &sekisho::metrics::Metrics::new())
            .await
            .unwrap();
        for i in 0..OLD {
            let event = match i {
                _ if i % 10 == 9 => Event::BreakGlass,
                _ if i % 2 == 0 => Event::Request,
                _ => Event::Outcome,
            };
            log.append(AuditRecord {
                time: format!("2019-04-01T01:00:{i:02}.000Z"),
                request_id: format!("old-{i}"),
                event,
                node: "gw-2019".into(),
                terminal: Some("t1".into()),
                facility: Some("f1".into()),
                user: Some("D0001".into()),
                patient: Some(format!("P-OLD-{i:03}")),
                decision: Decision::Permit,
                reason: "ok".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        log.shutdown().await;
        store.close().await;
    });
}

#[test]
fn prune_then_verify_names_the_pruned_ranges() {
    for db in BOTH {
        let opts = Options {
            // Break-glass records kept ten years; no scheduled prune during the test.
            replace: vec![(
                "daily_at = \"03:30\"",
                "daily_at = \"\"\n\n[audit.retention.days]\nbreak_glass = 3653",
            )],
            ..Options::default()
        };
        let mut g = Gateway::start_with(db, opts);
        let (s, _, _) = g.curl_t1("/debug/headers", &[]);
        assert_eq!(s, 200);
        g.stop();
        let first_old: usize = g.sql_rows("SELECT COUNT(*) FROM audit_records")[0][0]
            .parse()
            .unwrap();
        append_old(&g);
        let d = g.data_str().to_string();

        // A dry run says what would go, and changes and records nothing.
        let before = g.sql_rows("SELECT COUNT(*) FROM audit_records WHERE record <> ''");
        let out = run_ok(&["audit", "prune", "--data-dir", &d, "--dry-run"]);
        assert!(
            out.contains("dry run: 36 record(s) would lose their bodies"),
            "{out}"
        );
        assert!(out.contains("request"), "{out}");
        assert_eq!(
            g.sql_rows("SELECT COUNT(*) FROM audit_records WHERE record <> ''"),
            before
        );

        // Without a name it is refused.
        let o = sekisho()
            .env_remove("SEKISHO_OPERATOR")
            .args(["audit", "prune", "--data-dir", &d])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--operator"));

        let out = run_ok(&["audit", "prune", "--data-dir", &d]);
        let (a, b) = (first_old, first_old + OLD - 2);
        assert!(
            out.contains("pruned 36 record(s) (run ") && out.contains(&format!("idx {a}-{b}")),
            "{out}"
        );
        // Old request/outcome bodies and personal columns gone; break-glass and recent kept.
        let rows = g.sql_rows(&format!(
            "SELECT event, record, COALESCE(patient, 'NULL') FROM audit_records WHERE idx >= {a} AND idx < {} ORDER BY idx",
            a + OLD
        ));
        for (i, r) in rows.iter().enumerate() {
            if r[0] == "break_glass" {
                assert!(r[1].contains(&format!("P-OLD-{i:03}")), "{r:?}");
            } else {
                assert_eq!((r[1].as_str(), r[2].as_str()), ("", "NULL"), "{i}: {r:?}");
            }
        }
        let recent =
            g.sql_rows("SELECT COUNT(*) FROM audit_records WHERE idx < 1 AND record <> ''");
        assert_eq!(recent[0][0], "1", "the gateway's own records are kept");

        let out = run_ok(&["audit", "verify", "--data-dir", &d]);
        assert!(out.contains("audit log OK"), "{out}");
        assert!(
            out.contains(&format!(
                "pruned: records {a}-{b} (outcome,request): 36 pruned on "
            )) && out.contains(&format!("by {TEST_OPERATOR} (os:")),
            "{out}"
        );
        assert!(
            out.contains("36 record(s) pruned after their retention"),
            "{out}"
        );

        // The prune's own records: started and done, the operator's act, naming the run.
        let ops: Vec<serde_json::Value> = g
            .sql_rows("SELECT record FROM audit_records WHERE event = 'operation' ORDER BY idx")
            .into_iter()
            .map(|r| serde_json::from_str(&r[0]).unwrap())
            .collect();
        let started = ops
            .iter()
            .find(|r| r["reason"] == "audit_prune_started")
            .expect("audit_prune_started");
        let done = ops
            .iter()
            .find(|r| r["reason"] == "audit_pruned")
            .expect("audit_pruned");
        for r in [started, done] {
            assert_eq!(r["action"], "audit_prune");
            assert!(
                r["actor"].as_str().unwrap().starts_with(TEST_OPERATOR),
                "{r}"
            );
        }
        let detail = done["detail"].as_str().unwrap();
        assert!(detail.contains("pruned 36 records: request 20"), "{detail}");
        assert!(detail.contains("outcome 16"), "{detail}");
        let run = detail.split_whitespace().next().unwrap();
        assert!(
            started["detail"].as_str().unwrap().starts_with(run),
            "{started}"
        );

        // Again: nothing past retention, nothing recorded.
        let out = run_ok(&["audit", "prune", "--data-dir", &d]);
        assert!(out.contains("nothing is past its retention"), "{out}");
    }
}

/// The audit export's cursors bound the prune: a record a destination has not got keeps its
/// body until it has.
#[test]
fn nothing_an_export_destination_has_not_got_is_pruned() {
    let files = tempfile::tempdir().unwrap();
    let archive = files.path().join("archive.jsonl");
    let mut opts = Options {
        replace: vec![("daily_at = \"03:30\"", "daily_at = \"\"")],
        ..Options::default()
    };
    opts.extra_config.push_str(&format!(
        "\n[[audit.export]]\nname = \"archive\"\nformat = \"jsonl\"\nfile = \"{}\"\n",
        archive.display()
    ));
    let mut g = Gateway::start_with(Db::Sqlite, opts);
    let (s, _, _) = g.curl_t1("/debug/headers", &[]);
    assert_eq!(s, 200);
    let exported = || {
        std::fs::read_to_string(&archive)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let size = |g: &Gateway| -> usize {
        g.sql_rows("SELECT tree_size FROM audit_head")[0][0]
            .parse()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while exported() < size(&g) {
        assert!(
            std::time::Instant::now() < deadline,
            "the archive never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    g.stop();
    let first_old = size(&g);
    // Old records appended while no gateway exports them.
    append_old(&g);
    let d = g.data_str().to_string();
    let out = run_ok(&["audit", "prune", "--data-dir", &d]);
    assert!(
        out.contains(&format!("records from {first_old} on are kept")),
        "{out}"
    );
    let bodies = |g: &Gateway| -> usize {
        g.sql_rows(&format!(
            "SELECT COUNT(*) FROM audit_records WHERE idx >= {first_old} AND record <> ''"
        ))[0][0]
            .parse()
            .unwrap()
    };
    assert!(bodies(&g) >= OLD, "pruned before it was exported: {out}");
    // Once the archive has them, they go.
    g.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while exported() < first_old + OLD {
        assert!(
            std::time::Instant::now() < deadline,
            "the old records were not exported"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    g.stop();
    let out = run_ok(&["audit", "prune", "--data-dir", &d]);
    assert!(out.contains("pruned "), "{out}");
    assert!(bodies(&g) < OLD, "{out}");
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert!(
        archived.contains("P-OLD-000"),
        "the archive holds the bodies pruned from the log"
    );
    assert!(run_ok(&["audit", "verify", "--data-dir", &d]).contains("audit log OK"));
}
