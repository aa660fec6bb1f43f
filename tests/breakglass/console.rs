//! Emergency access in the officers' console: the queue, one declaration with what was done
//! under it, and the acts — made through the same code as `sekisho breakglass`, by the policy
//! set's roles (an officer reviews and ends, the secretariat approves but does not review),
//! never by the declaring physician, each on record before the change.

use super::rig::*;

/// A console GET with a cookie jar (curl as the browser); (status, body).
fn page(desk: &Desk, term: &str, jar: &str, path: &str) -> (u16, String) {
    get(&desk.g, term, jar, path)
}

/// The form token on a console page.
fn token(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form token on the page")
        .to_string()
}

#[test]
fn officers_review_and_end_emergency_access_in_the_console() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                patients: vec![("P-0002", "山田 太郎", "ヤマダ タロウ")],
                ..Default::default()
            },
        );
        let g = &desk.g;
        let dir = tempfile::tempdir().unwrap();
        let doctor = &pki().hpki.doctor;
        let (s, v) = desk.key_sign_in("t1", doctor);
        assert_eq!(s, 200, "{v}");
        let id = desk.key_declare("t1", doctor, PATIENT, "unconscious");
        let (s, _) = desk.call("t1", "GET", RECORD, None);
        assert_eq!(s, 200, "{db:?}: the grant works");

        let officer = sign_in(g, "t2", "officer0002", "security-officer", dir.path());
        // The dashboard counts it; the queue lists it.
        let (s, home) = page(&desk, "t2", &officer, "/.sekisho/console/");
        assert_eq!(s, 200, "{home}");
        assert!(
            home.contains(r#"<div class="n" id="bg-unreviewed">1</div>"#),
            "{home}"
        );
        assert!(
            home.contains(r#"<div class="n" id="bg-active">1</div>"#),
            "{home}"
        );
        let (_, queue) = page(&desk, "t2", &officer, "/.sekisho/console/breakglass");
        assert!(queue.contains(&format!(">{id}</a>")), "{db:?}: {queue}");
        assert!(queue.contains("未確認 / unreviewed"));

        // One declaration: its words and the request made under it.
        let path = format!("/.sekisho/console/breakglass/{id}");
        let (s, one) = page(&desk, "t2", &officer, &path);
        assert_eq!(s, 200, "{one}");
        assert!(one.contains(JUSTIFICATION), "{one}");
        assert!(
            one.contains("/api/patients/P-0001/summary"),
            "{db:?}: {one}"
        );
        let csrf = token(&one);

        // The secretariat approves a child-protection declaration, but does not review: the
        // policy set says so.
        let (s, state) = desk.begin("t1", "child_protection", Some("P-0002"));
        assert_eq!(s, 201, "{state}");
        let waiting = state["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &waiting, &answer(&state, doctor));
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("awaiting_approval")),
            "{v}"
        );
        let clerk = sign_in(g, "t3", "secretary002", "secretariat", dir.path());
        let waiting_path = format!("/.sekisho/console/breakglass/{waiting}");
        let (s, clerk_page) = page(&desk, "t3", &clerk, &waiting_path);
        assert_eq!(s, 200);
        assert!(clerk_page.contains("id=\"approve\""), "{clerk_page}");
        assert!(!clerk_page.contains("id=\"review-form\""), "{clerk_page}");
        let clerk_token = token(&clerk_page);
        let (s, body, _) = post(
            g,
            "t3",
            &clerk,
            &waiting_path,
            &[
                ("csrf", &clerk_token),
                ("op", "review"),
                ("finding", "justified"),
            ],
        );
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("console_not_permitted"), "{body}");
        assert!(
            !body.contains(JUSTIFICATION),
            "nothing of the declaration: {body}"
        );
        assert_eq!(desk.row(&waiting, "review_finding")[0], "NULL");
        let refused =
            g.wait_audit(|r| r["reason"] == "console_not_permitted" && r["user"] == "secretary002");
        assert_eq!(refused["decision"], "deny");
        // Another session's token is not this one's.
        let (s, _, _) = post(
            g,
            "t3",
            &clerk,
            &waiting_path,
            &[("csrf", &csrf), ("op", "approve")],
        );
        assert_eq!(s, 403);
        assert_eq!(desk.row(&waiting, "status")[0], "awaiting_approval");
        let (s, body, loc) = post(
            g,
            "t3",
            &clerk,
            &waiting_path,
            &[("csrf", &clerk_token), ("op", "approve")],
        );
        assert_eq!(s, 303, "{db:?}: {body}");
        assert_eq!(loc, format!("{waiting_path}?done=approve"));
        let (_, shown) = page(&desk, "t3", &clerk, &loc);
        assert!(shown.contains("承認しました"), "{shown}");
        assert_eq!(
            desk.row(&waiting, "status, approved_by")[..],
            ["active", "secretary002"]
        );

        // The officer records the finding; it is on record first, by them, from the console.
        let (s, body, loc) = post(
            g,
            "t2",
            &officer,
            &path,
            &[
                ("csrf", &csrf),
                ("op", "review"),
                ("finding", "follow_up_needed"),
                ("comment", "家族への連絡を確認"),
            ],
        );
        // Then a GET of the page (a reload sends nothing again).
        assert_eq!(s, 303, "{db:?}: {body}");
        assert_eq!(loc, format!("{path}?done=review"));
        let (_, shown) = page(&desk, "t2", &officer, &loc);
        assert!(shown.contains("id=\"done\""), "{shown}");
        assert_eq!(
            desk.row(&id, "review_finding, reviewed_by, review_comment"),
            ["follow_up_needed", "officer0002", "家族への連絡を確認"]
        );
        let rec = g.wait_audit(|r| is_bg(r, "break_glass_reviewed"));
        assert_eq!(rec["user"], "officer0002");
        assert_eq!(rec["terminal"], "t2");
        assert!(
            rec["detail"]
                .as_str()
                .unwrap()
                .contains("(console on terminal t2); declared by doctor0000001"),
            "{rec}"
        );

        // And ends the grant: the physician's next request is refused.
        let (s, body, _) = post(
            g,
            "t2",
            &officer,
            &path,
            &[
                ("csrf", &csrf),
                ("op", "end"),
                ("reason", "患者の家族と連絡がついた"),
            ],
        );
        assert_eq!(s, 303, "{db:?}: {body}");
        assert_eq!(
            desk.row(&id, "status, ended_by")[..],
            ["ended", "officer0002"]
        );
        let (s, _) = within_a_poll(|| desk.call("t1", "GET", RECORD, None), |(s, _)| *s == 403);
        assert_eq!(s, 403, "{db:?}: ended in the console, refused at once");
        // Ending twice is said, not done twice.
        let (s, body, _) = post(
            g,
            "t2",
            &officer,
            &path,
            &[("csrf", &csrf), ("op", "end"), ("reason", "again")],
        );
        assert_eq!(s, 409, "{db:?}: {body}");
        assert!(body.contains("id=\"not-made\""), "{body}");
        let log = g.audit_records();
        assert_eq!(
            log.iter().filter(|r| is_bg(r, "break_glass_ended")).count(),
            2,
            "{db:?}: the second end is on record as asked, then as not made"
        );
        assert_eq!(
            log.iter()
                .filter(|r| is_bg(r, "break_glass_act_not_made"))
                .count(),
            1
        );

        // The declaring physician, on their own terminal, sees no console.
        let (s, v) = desk.call("t1", "GET", "/.sekisho/console/", None);
        assert_eq!(s, 403, "{v}");
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
    }
}
