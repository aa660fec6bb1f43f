//! The secretariat's pages: terminals, people, care teams and cards.

use super::rig::*;

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
