//! The secretariat's network page: facilities and notices.

use super::rig::*;

/// The secretariat suspends and resumes a facility from the console with a reason (its
/// terminals refused meanwhile), posts a notice that the terminals read and takes it down,
/// and starts and ends an emergency maintenance — each on record first, naming who did it.
/// Bad input changes nothing; a facility's administrator does not get the page.
#[test]
fn the_secretariat_runs_facilities_and_notices_in_the_console() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let clerk = sign_in(&g, "t2", "secretary001", "secretariat", dir.path());
        let (s, page) = get(&g, "t2", &clerk, "/.sekisho/console/facilities");
        assert_eq!(s, 200, "{db:?}: {page}");
        assert!(page.contains(r#"<tr id="facility-f1">"#), "{page}");
        let csrf = token(&page);
        let post_ok = |path: &str, fields: &[(&str, &str)]| {
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend_from_slice(fields);
            let (s, body, loc) = post(&g, "t2", &clerk, path, &all);
            assert_eq!(s, 303, "{db:?}: {path} {fields:?}: {body}");
            loc
        };

        // Without a reason: refused, nothing changed.
        let (s, _, _) = post(
            &g,
            "t2",
            &clerk,
            "/.sekisho/console/facilities/f1",
            &[("csrf", &csrf), ("op", "suspend"), ("reason", " ")],
        );
        assert_eq!(s, 400, "{db:?}");
        assert_eq!(
            g.sql_rows("SELECT status FROM facilities WHERE facility = 'f1'")[0][0],
            "active"
        );

        // A notice for every facility, read by the terminals.
        let until = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+9))
            + time::Duration::hours(2);
        let until = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}",
            until.year(),
            u8::from(until.month()),
            until.day(),
            until.hour(),
            until.minute()
        );
        let loc = post_ok(
            "/.sekisho/console/facilities",
            &[
                ("op", "notice"),
                ("ja", "本日は<b>定時</b>で終了"),
                ("en", "Closing on time"),
                ("until", &until),
            ],
        );
        assert_eq!(loc, "/.sekisho/console/facilities?done=notice");
        let rec = g.wait_audit(|r| r["reason"] == "notice_added");
        assert_eq!(rec["actor"], "secretary001 (console on terminal t2)");
        let (c, k) = g.cert("t3");
        let (_, body, _) = within_a_poll(
            || {
                g.curl(
                    "/.sekisho/notices?format=json",
                    &["--cert", &c, "--key", &k],
                )
            },
            |(_, b, _)| b.contains("定時"),
        );
        assert!(body.contains("Closing on time"), "{db:?}: {body}");
        let (_, page) = get(&g, "t2", &clerk, "/.sekisho/console/facilities");
        assert!(page.contains("&lt;b&gt;定時&lt;/b&gt;"), "escaped: {page}");
        let id = g.sql_rows("SELECT id FROM notices WHERE kind = 'notice'")[0][0].clone();
        post_ok(
            "/.sekisho/console/facilities",
            &[("op", "remove"), ("id", &id)],
        );
        g.wait_audit(|r| r["reason"] == "notice_removed" && r["detail"] == id.as_str());

        // An emergency maintenance for f1, t2 (the clerk's) kept working.
        post_ok(
            "/.sekisho/console/facilities",
            &[
                ("op", "maintenance"),
                ("ja", "緊急保守"),
                ("en", "Emergency work"),
                ("until", &until),
                ("facility", "f1"),
                ("exempt_terminal", "t2"),
            ],
        );
        let (s, _, _) = within_a_poll(|| g.curl("/", &["--cert", &c, "--key", &k]), |r| r.0 == 503);
        assert_eq!(s, 503, "{db:?}: t3 stopped");
        let (s, page) = get(&g, "t2", &clerk, "/.sekisho/console/facilities");
        assert_eq!(s, 200);
        assert!(page.contains("実施中 / in force"), "{page}");
        let id = g.sql_rows("SELECT id FROM notices WHERE kind = 'maintenance'")[0][0].clone();
        post_ok(
            "/.sekisho/console/facilities",
            &[("op", "end"), ("id", &id)],
        );
        let (s, _, _) = within_a_poll(|| g.curl("/", &["--cert", &c, "--key", &k]), |r| r.0 == 200);
        assert_eq!(s, 200, "{db:?}: t3 back");

        // The facility suspended, then resumed.
        post_ok(
            "/.sekisho/console/facilities/f1",
            &[("op", "suspend"), ("reason", "監査のため")],
        );
        let (s, _, _) = within_a_poll(|| g.curl("/", &["--cert", &c, "--key", &k]), |r| r.0 == 403);
        assert_eq!(s, 403, "{db:?}");
        let rec = g.wait_audit(|r| r["reason"] == "facility_suspended");
        assert_eq!(rec["facility"], "f1");
        assert_eq!(rec["detail"], "監査のため");
        // The clerk's own session was of f1 too: it ended with the suspension.
        let (s, _) = within_a_poll(
            || get(&g, "t2", &clerk, "/.sekisho/console/facilities"),
            |r| r.0 != 200,
        );
        assert_ne!(s, 200, "{db:?}: the suspended facility's sessions ended");
        run_ok(&[
            "facility",
            "resume",
            "--data-dir",
            g.data_str(),
            "--facility",
            "f1",
            "--reason",
            "x",
        ]);

        let (s, _, _) = within_a_poll(|| g.curl("/", &["--cert", &c, "--key", &k]), |r| r.0 == 200);
        assert_eq!(s, 200, "{db:?}: resumed");
        // A facility administrator has no such page.
        let admin = sign_in(&g, "t3", "fadmin00001", "facility-admin", dir.path());
        let (s, _) = get(&g, "t3", &admin, "/.sekisho/console/facilities");
        assert_eq!(s, 403, "{db:?}");
    }
}

/// The dashboard says where each audit export destination is: one that has everything, and
/// one whose receiver is unreachable, flagged as behind with nothing delivered.
#[test]
fn the_dashboard_shows_each_export_destination_and_flags_one_that_is_behind() {
    let files = tempfile::tempdir().unwrap();
    let archive = files.path().join("archive.jsonl");
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, "unused until a connection is made\n").unwrap();
    let g = Gateway::start_prepared(
        Db::Sqlite,
        Options {
            replace: vec![("export_poll_ms = 1000", "export_poll_ms = 100")],
            extra_config: format!(
                "{}\n[[audit.export]]\nname = \"archive\"\nformat = \"jsonl\"\nfile = \"{}\"\n\n[[audit.export]]\nname = \"siem\"\nformat = \"atna\"\nsyslog = \"127.0.0.1:{}\"\nca_file = \"{}\"\n",
                Options::default().extra_config,
                archive.display(),
                free_port(),
                ca.display(),
            ),
            ..Default::default()
        },
        |g| {
            g.add_terminal("f1", "t2", &g.out);
            // The syslog destination trusts the gateway's own root (it never connects).
            std::fs::copy(g.data.join("ca.crt"), &ca).unwrap();
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let clerk = sign_in(&g, "t2", "secretary001", "secretariat", dir.path());
    let page = within_a_poll(
        || get(&g, "t2", &clerk, "/.sekisho/console/").1,
        |p| {
            p.contains(r#"<li class="ok" data-export="archive">archive (jsonl): 未送信 / behind 0"#)
        },
    );
    assert!(
        page.contains(r#"<li class="ok" data-export="archive">archive (jsonl): 未送信 / behind 0"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<li class="bad" data-export="siem">siem (atna): 未送信 / behind "#)
            && page.contains("最終送信 / last delivery -</li>"),
        "{page}"
    );
}
