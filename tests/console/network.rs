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
