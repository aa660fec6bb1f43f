//! Patient routes decided by the Cedar policy set over the consent registry and care teams
//! (R-PAT-1, R-PAT-3, R-ROLE-1), end to end through the gateway, on SQLite and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::*;

const RECORD: &str = "/api/patients/P-0001/summary";

/// Polls until `path` answers `want` for this jar (CLI changes reach the gateway by the store).
fn expect(g: &Gateway, jar: &str, path: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (s, body) = get(g, "t1", jar, path);
        if s == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: wanted {want}, got {s}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn consent_and_care_team_decide_and_changes_apply_to_the_next_request() {
    for db in BOTH {
        let g = Gateway::start(db);
        let dir = tempfile::tempdir().unwrap();
        let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
        let d = g.data_str();
        run_ok(&[
            "patient",
            "add",
            "--data-dir",
            d,
            "--id",
            "P-0001",
            "--name",
            "山田 花子",
            "--birth-date",
            "1950-02-03",
            "--sex",
            "F",
            "--local-id",
            "f1:12345",
            "--consent",
            "granted",
        ]);
        // Consent but no care team: refused, and the page says what is missing (once the
        // gateway has the new patient: within a poll).
        let (s, body) = within_a_poll(
            || get(&g, "t1", &nurse, RECORD),
            |(_, b)| b.contains("patient_not_in_care_team"),
        );
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("patient_not_in_care_team"), "{db:?}: {body}");
        run_ok(&[
            "careteam",
            "add",
            "--data-dir",
            d,
            "--patient",
            "P-0001",
            "--user",
            "nurse00001",
        ]);
        // CLI changes reach the gateway within a poll.
        expect(&g, &nurse, RECORD, 200);
        let (s, body, _) = g.curl(
            RECORD,
            &{
                let (c, k) = g.cert("t1");
                vec![
                    "--cert".to_string(),
                    c,
                    "--key".into(),
                    k,
                    "-b".into(),
                    nurse.clone(),
                    "-D".into(),
                    "-".into(),
                ]
            }
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        );
        assert_eq!(s, 200, "{db:?}: {body}");
        assert!(
            body.to_ascii_lowercase()
                .contains("cache-control: no-store"),
            "R-OPS-3: {body}"
        );
        // Withdrawal: the very next request is refused.
        run_ok(&["patient", "withdraw", "--data-dir", d, "--id", "P-0001"]);
        let body = expect(&g, &nurse, RECORD, 403);
        assert!(body.contains("patient_no_consent"), "{db:?}: {body}");
        assert!(
            !body.contains("山田"),
            "the page reveals nothing about the patient"
        );
        run_ok(&["patient", "consent", "--data-dir", d, "--id", "P-0001"]);
        expect(&g, &nurse, RECORD, 200);
        // Leaving the care team: refused at once; a facility membership counts too.
        run_ok(&[
            "careteam",
            "remove",
            "--data-dir",
            d,
            "--patient",
            "P-0001",
            "--user",
            "nurse00001",
        ]);
        expect(&g, &nurse, RECORD, 403);
        run_ok(&[
            "careteam",
            "add",
            "--data-dir",
            d,
            "--patient",
            "P-0001",
            "--facility",
            "f1",
        ]);
        expect(&g, &nurse, RECORD, 200);
        // A nurse views but does not write clinical data (R-ROLE-1); a physician does.
        let (c, k) = g.cert("t1");
        let (s, body, _) = g.curl(
            RECORD,
            &[
                "--cert", &c, "--key", &k, "-b", &nurse, "-X", "POST", "-d", "note=x",
            ],
        );
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("qualification_not_permitted"));
        // An unknown patient looks exactly like one who has not consented.
        let body = expect(&g, &nurse, "/api/patients/P-9999/summary", 403);
        assert!(body.contains("patient_no_consent"));
        // The assertion carries the patient and the purpose of use; the audit record the policy.
        let v = g.wait_audit(|r| {
            r["event"] == "request" && r["decision"] == "permit" && r["patient"] == "P-0001"
        });
        assert_eq!(v["purpose_of_use"], "TREAT");
        assert!(
            v["detail"]
                .as_str()
                .unwrap_or("")
                .contains("role1-view-qualified"),
            "{v}"
        );
        g.wait_audit(|r| r["reason"] == "patient_no_consent" && r["patient"] == "P-0001");
        g.wait_audit(|r| r["event"] == "registry" && r["reason"] == "consent_withdrawn");
    }
}

#[test]
fn a_physician_writes_and_the_upstream_sees_who_and_why() {
    let g = Gateway::start(Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let doctor = sign_in(&g, "t1", "doctor00001", "physician", dir.path());
    let d = g.data_str();
    run_ok(&[
        "patient",
        "add",
        "--data-dir",
        d,
        "--id",
        "P-0001",
        "--name",
        "山田 花子",
        "--consent",
        "granted",
    ]);
    run_ok(&[
        "careteam",
        "add",
        "--data-dir",
        d,
        "--patient",
        "P-0001",
        "--user",
        "doctor00001",
    ]);
    let (c, k) = g.cert("t1");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (s, body, _) = g.curl(
            RECORD,
            &[
                "--cert", &c, "--key", &k, "-b", &doctor, "-X", "POST", "-d", "note=x",
            ],
        );
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{s}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = g.wait_audit(|r| {
        r["event"] == "request" && r["decision"] == "permit" && r["action"] == "write"
    });
    assert_eq!(v["user"], "doctor00001");
}

#[test]
fn a_broken_policy_file_is_refused_and_a_new_one_applies_without_restart() {
    let g = Gateway::start(Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
    let d = g.data_str();
    run_ok(&[
        "patient",
        "add",
        "--data-dir",
        d,
        "--id",
        "P-0001",
        "--name",
        "患者",
        "--consent",
        "granted",
    ]);
    run_ok(&[
        "careteam",
        "add",
        "--data-dir",
        d,
        "--patient",
        "P-0001",
        "--user",
        "nurse00001",
    ]);
    expect(&g, &nurse, RECORD, 200);
    let pol = g.data.join("policies");
    std::fs::write(
        pol.join("broken.cedar"),
        "permit (principal, action, resource) when { this is not cedar };",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    expect(&g, &nurse, RECORD, 200);
    let o = run(&["policy", "check", "--data-dir", d]);
    assert!(
        !o.status.success(),
        "policy check must report the broken file"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("broken.cedar"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A deployment's own rule: no viewing at night (a silly one, but it shows the set is live).
    std::fs::remove_file(pol.join("broken.cedar")).unwrap();
    std::fs::write(pol.join("local.cedar"), "@id(\"local-no-nurse\")\nforbid (principal, action == Action::\"view\", resource) when { principal.qualification == \"nurse\" };\n").unwrap();
    let body = expect(&g, &nurse, RECORD, 403);
    assert!(body.contains("qualification_not_permitted"), "{body}");
    assert!(run_ok(&["policy", "check", "--data-dir", d]).contains("OK"));
}

#[test]
fn patient_import_is_all_or_nothing_with_a_report() {
    for db in BOTH {
        let g = Gateway::start(db);
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("patients.csv");
        std::fs::write(&csv, "patient_id,name,kana,birth_date,sex,consent,local_ids\nP-1,\"山田, 花子\",ヤマダ ハナコ,1950-02-03,F,granted,f1:001\nP-2,佐藤 一郎,,1940/01/01,M,granted,\nP-1,重複,,,,,\n").unwrap();
        let o = run(&[
            "patient",
            "import",
            "--data-dir",
            g.data_str(),
            csv.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{db:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("patients.csv:3") && err.contains("YYYY-MM-DD"),
            "{err}"
        );
        assert!(
            err.contains("patients.csv:4") && err.contains("twice"),
            "{err}"
        );
        let list = run_ok(&["patient", "list", "--data-dir", g.data_str()]);
        assert_eq!(list.lines().count(), 1, "nothing imported: {list}");
        std::fs::write(&csv, "patient_id,name,kana,birth_date,sex,consent,local_ids\nP-1,\"山田, 花子\",ヤマダ ハナコ,1950-02-03,F,granted,f1:001\nP-2,佐藤 一郎,,1940-01-01,M,none,\n").unwrap();
        assert!(
            run_ok(&[
                "patient",
                "import",
                "--data-dir",
                g.data_str(),
                csv.to_str().unwrap(),
                "--dry-run"
            ])
            .contains("dry run")
        );
        assert_eq!(
            run_ok(&["patient", "list", "--data-dir", g.data_str()])
                .lines()
                .count(),
            1
        );
        run_ok(&[
            "patient",
            "import",
            "--data-dir",
            g.data_str(),
            csv.to_str().unwrap(),
        ]);
        let list = run_ok(&["patient", "list", "--data-dir", g.data_str()]);
        assert!(
            list.contains("P-1") && list.contains("granted") && list.contains("山田, 花子"),
            "{list}"
        );
        let json = dir.path().join("more.json");
        std::fs::write(
            &json,
            r#"[{"patient_id":"P-3","name":"鈴木 次郎","consent":"granted","local_ids":"f2:77"}]"#,
        )
        .unwrap();
        run_ok(&[
            "patient",
            "import",
            "--data-dir",
            g.data_str(),
            json.to_str().unwrap(),
        ]);
        assert!(run_ok(&["patient", "list", "--data-dir", g.data_str()]).contains("P-3"));
    }
}

#[test]
fn the_patient_decided_is_the_patient_forwarded() {
    let g = Gateway::start(Db::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
    let d = g.data_str();
    for p in ["P-0001", "P-0002"] {
        run_ok(&[
            "patient",
            "add",
            "--data-dir",
            d,
            "--id",
            p,
            "--name",
            "患者",
            "--consent",
            "granted",
        ]);
    }
    run_ok(&[
        "careteam",
        "add",
        "--data-dir",
        d,
        "--patient",
        "P-0001",
        "--user",
        "nurse00001",
    ]);
    expect(&g, &nurse, RECORD, 200);
    let hits = g.upstream.hits();
    let (c, k) = g.cert("t1");
    for (path, status, reason) in [
        (
            "/api/patients/P-0001/../P-0002/summary",
            403,
            "patient_not_in_care_team",
        ),
        (
            "/api/patients/P-0001/%2e%2e/P-0002/summary",
            403,
            "patient_not_in_care_team",
        ),
        (
            "//api//patients/P-0002/summary",
            403,
            "patient_not_in_care_team",
        ),
        (
            "/api/patients/P-0001/%2F../P-0002",
            400,
            "path_encoded_slash",
        ),
        ("/api/patients/P%000001/summary", 400, "path_encoded_nul"),
    ] {
        let (s, body, _) = g.curl(
            path,
            &["--cert", &c, "--key", &k, "-b", &nurse, "--path-as-is"],
        );
        assert_eq!(s, status, "{path}: {body}");
        assert!(body.contains(reason), "{path}: {body}");
    }
    assert_eq!(
        g.upstream.hits(),
        hits,
        "none of these may reach the upstream"
    );
}

/// POST as terminal `term` with a cookie jar; (status, headers + body).
fn post_as(g: &Gateway, term: &str, jar: &str, path: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    let (s, body, _) = g.curl(
        path,
        &[
            "--cert", &c, "--key", &k, "-b", jar, "-X", "POST", "-d", "text=x", "-D", "-",
        ],
    );
    (s, body)
}

/// The assertion claims the demo upstream saw (it echoes them in its JSON body).
fn claims(body: &str) -> serde_json::Value {
    let json = &body[body.find('{').expect("a JSON body")..];
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    v["assertion_claims"].clone()
}

#[test]
fn an_assistants_entry_is_confirmed_only_by_a_physician_of_the_same_facility() {
    for db in BOTH {
        let g = Gateway::start(db);
        g.add_terminal_live("f1", "t2");
        g.add_terminal_live("f2", "t3");
        let dir = tempfile::tempdir().unwrap();
        let nurse = sign_in_at(&g, "t1", "nurse00001", "nurse", "f1", dir.path());
        let doctor = sign_in_at(&g, "t2", "doctor00001", "physician", "f1", dir.path());
        let other = sign_in_at(&g, "t3", "doctor00002", "physician", "f2", dir.path());
        consented_patient(&g, "P-0001", &["f:f1", "f:f2"]);
        consented_patient(&g, "P-0002", &["f:f1", "f:f2"]);
        // Each care-team member is a change of its own, which the gateway reads within a
        // poll: wait until the second facility's physician may read P-0001 (f2 is a member
        // there), so that the refusal below is about the entry, not the care team.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (s, body) = get(&g, "t3", &other, RECORD);
            if s == 200 {
                break;
            }
            assert!(
                body.contains("patient_not_in_care_team") && Instant::now() < deadline,
                "{db:?}: {s} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        // The nurse's entry: permitted as `enter`, given an id the upstream and the nurse see.
        let deadline = Instant::now() + Duration::from_secs(3);
        let body = loop {
            let (s, body) = post_as(&g, "t1", &nurse, "/api/patients/P-0001/entries");
            if s == 200 {
                break body;
            }
            assert!(Instant::now() < deadline, "{db:?}: {s} {body}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let entry = body
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("sekisho-entry-id: ")
                    .map(|v| v.trim().to_string())
            })
            .expect("the entry id comes back to the terminal");
        let c = claims(&body);
        assert_eq!(c["action"], "enter", "{c}");
        assert_eq!(c["entry"], entry.as_str());
        assert_eq!(c["entry_author"], "nurse00001");
        assert_eq!(c["entry_facility"], "f1");

        // The nurse cannot confirm it herself, nor write clinical data directly.
        let confirm = format!("/api/patients/P-0001/entries/{entry}/confirm");
        let (s, body) = post_as(&g, "t1", &nurse, &confirm);
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("qualification_not_permitted"), "{body}");
        // A physician of another facility cannot confirm it (R-ROLE-2).
        let hits = g.upstream.hits();
        let (s, body) = post_as(&g, "t3", &other, &confirm);
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("entry_other_facility"), "{db:?}: {body}");
        assert_eq!(
            g.upstream.hits(),
            hits,
            "a refused confirmation never reaches the upstream"
        );
        // The entry id must be one the gateway gave, for this very patient.
        let (s, body) = post_as(
            &g,
            "t2",
            &doctor,
            "/api/patients/P-0001/entries/e-nope/confirm",
        );
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("entry_not_found"), "{body}");
        let (s, body) = post_as(
            &g,
            "t2",
            &doctor,
            &format!("/api/patients/P-0002/entries/{entry}/confirm"),
        );
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("entry_not_found"), "{body}");
        // The physician of the nurse's facility confirms; the upstream learns who entered it
        // from the gateway's record, not from the request.
        let (s, body) = post_as(&g, "t2", &doctor, &confirm);
        assert_eq!(s, 200, "{db:?}: {body}");
        let c = claims(&body);
        assert_eq!(c["action"], "confirm", "{c}");
        assert_eq!(c["user"], "doctor00001");
        assert_eq!(c["entry"], entry.as_str());
        assert_eq!(c["entry_author"], "nurse00001");
        assert_eq!(c["entry_facility"], "f1");
        let v = g.wait_audit(|r| {
            r["event"] == "request" && r["action"] == "confirm" && r["decision"] == "permit"
        });
        assert!(
            v["detail"].as_str().unwrap().contains(&entry),
            "the audit record names the entry: {v}"
        );
        let v = g.wait_audit(|r| r["reason"] == "entry_other_facility");
        assert_eq!(v["user"], "doctor00002");
    }
}

#[test]
fn facility_administrators_manage_only_their_own_facility() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            Options {
                extra_config: r#"
[[route]]
name = "facility-users"
methods = ["*"]
path = "/api/facilities/{facility}/users/**"
level = "user"
action = "admin"
admin = { kind = "user", facility = { from = "path", name = "facility" } }

[[route]]
name = "terminals"
methods = ["GET"]
path = "/api/terminals"
level = "user"
action = "admin"
admin = { kind = "terminal", facility = { from = "query", name = "facility" } }

[[route]]
name = "misconfigured"
methods = ["GET"]
path = "/api/misconfigured"
level = "terminal"
action = "admin"
"#
                .into(),
                ..Options::default()
            },
        );
        g.add_terminal_live("f1", "t2");
        g.add_terminal_live("f1", "t3");
        let dir = tempfile::tempdir().unwrap();
        let admin = sign_in_at(&g, "t1", "admin00001", "facility-admin", "f1", dir.path());
        let office = sign_in_at(&g, "t2", "office00001", "secretariat", "f1", dir.path());
        let nurse = sign_in_at(&g, "t3", "nurse00001", "nurse", "f1", dir.path());
        let hits = g.upstream.hits();
        // Another facility's users: refused, audited, never forwarded.
        let (s, body) = get(&g, "t1", &admin, "/api/facilities/f2/users/");
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("admin_other_facility"), "{body}");
        assert_eq!(g.upstream.hits(), hits);
        // Its own: forwarded (the demo upstream has no such page: 404 from the upstream).
        let (s, body) = get(&g, "t1", &admin, "/api/facilities/f1/users/");
        assert_eq!(s, 404, "{db:?}: {body}");
        assert_eq!(g.upstream.hits(), hits + 1);
        // The secretariat manages every facility; a clinician none.
        let (s, _) = get(&g, "t2", &office, "/api/facilities/f2/users/u1");
        assert_eq!(s, 404);
        let (s, body) = get(&g, "t3", &nurse, "/api/facilities/f1/users/");
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("qualification_not_permitted"), "{body}");
        // Spellings of another facility do not get through.
        for path in [
            "/api/facilities/f1/../f2/users/",
            "/api/facilities/f1/users/../../f2/users/",
        ] {
            let (s, _) = get(&g, "t1", &admin, path);
            assert_eq!(s, 403, "{path}");
        }
        // Terminals, with the facility in the query: the same rule; two facilities is no id.
        let (s, _) = get(&g, "t1", &admin, "/api/terminals?facility=f1");
        assert_eq!(s, 404, "{db:?}: forwarded");
        let (s, body) = get(&g, "t1", &admin, "/api/terminals?facility=f2");
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("admin_other_facility"), "{body}");
        let (s, body) = get(&g, "t1", &admin, "/api/terminals?facility=f1&facility=f2");
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("route_facility_id_invalid"), "{body}");
        // A route whose action the gateway cannot decide on is refused, never forwarded.
        let (s, body) = get(&g, "t1", &admin, "/api/misconfigured");
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("route_action_not_decidable"), "{body}");
        assert_eq!(g.upstream.hits(), hits + 3);
        let v = g.wait_audit(|r| r["reason"] == "admin_other_facility");
        assert_eq!(v["user"], "admin00001");
        assert!(
            v["detail"].as_str().unwrap().contains("admin facility f2"),
            "{v}"
        );
        assert_eq!(g.upstream.hits(), hits + 3);
    }
}
