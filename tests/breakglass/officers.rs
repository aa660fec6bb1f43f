//! The officers: a second person's approval, and ending a grant on every replica.

use super::rig::*;

/// A child-protection declaration grants nothing until the secretariat (or a security officer)
/// approves it; the declaring physician, though also a security officer, can neither approve
/// nor review it, and an approval is given once. A rejected one never grants.
#[test]
fn child_protection_waits_for_a_second_persons_approval() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                doctor_roles: "physician,security-officer",
                ..Default::default()
            },
        );
        let g = &desk.g;
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        let outcome = desk
            .card_declare(PATIENT, "child_protection")
            .expect("signed");
        drop(card);
        assert!(!outcome.is_active(), "{db:?}: {outcome:?}");
        assert_eq!(outcome.state.status, "awaiting_approval");
        assert_eq!(outcome.state.expires_at, None);
        let id = outcome.state.id.clone();
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"), "{db:?}");
        assert_eq!(
            desk.row(&id, "status, starts_at, expires_at"),
            ["awaiting_approval", "NULL", "NULL"]
        );

        // Not by the physician who declared it, whatever their roles.
        for args in [
            vec!["approve", "--id", &id, "--operator", DOCTOR],
            vec![
                "review",
                "--id",
                &id,
                "--finding",
                "justified",
                "--operator",
                DOCTOR,
            ],
        ] {
            let (ok, out) = desk.breakglass(&args);
            assert!(!ok, "{db:?}: {args:?}: {out}");
            assert!(
                out.contains(&format!(
                    "{DOCTOR} declared {id}: the review and the approval are someone else's"
                )),
                "{out}"
            );
        }
        // Nor by someone the policy set does not let approve (console.cedar: neither a
        // security officer nor the secretariat).
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", DOCTOR2]);
        assert!(
            !ok && out.contains(&format!("{DOCTOR2} may not do this (approve_break_glass)")),
            "{out}"
        );
        assert_eq!(
            desk.row(&id, "status, review_finding"),
            ["awaiting_approval", "NULL"]
        );
        let log = g.audit_records();
        assert!(!log.iter().any(|r| is_bg(r, "break_glass_approved")));
        assert!(!log.iter().any(|r| is_bg(r, "break_glass_reviewed")));

        // The secretariat approves: the grant starts now, for the category's four hours.
        let t0 = sekisho_store::now();
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", SECRETARIAT]);
        assert!(ok, "{out}");
        let row = desk.row(&id, "status, approved_by, starts_at, expires_at");
        assert_eq!(row[..2], ["active", SECRETARIAT]);
        let (starts, expires): (i64, i64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        assert!(starts >= t0 && expires - starts == 4 * 3600, "{row:?}");
        let (s, v) = within_a_poll(|| desk.call("t1", "GET", RECORD, None), |(s, _)| *s == 200);
        assert_eq!(s, 200, "{db:?}: {v}");
        assert_eq!(
            v["assertion_claims"]["break_glass"],
            json!({"id": id, "reason_category": "child_protection", "expires": expires})
        );
        // Once.
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", OFFICER]);
        assert!(
            !ok && out.contains("is active, not waiting for approval"),
            "{out}"
        );
        assert_eq!(desk.row(&id, "approved_by")[0], SECRETARIAT);

        // On record: the approval, by whom, before the first request under the grant.
        g.wait_audit(|r| r["event"] == "request" && r["break_glass_id"] == id.as_str());
        let log = indexed(g);
        let approved: Vec<_> = log
            .iter()
            .filter(|(_, r)| is_bg(r, "break_glass_approved"))
            .collect();
        assert_eq!(approved.len(), 1, "{db:?}");
        let (approved_at, rec) = approved[0];
        assert_eq!(rec["user"], SECRETARIAT);
        assert_eq!(rec["break_glass_id"], id.as_str());
        assert!(
            rec["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("declared by {DOCTOR}"))
        );
        let first = log
            .iter()
            .find(|(_, r)| r["event"] == "request" && r["break_glass_id"] == id.as_str())
            .unwrap();
        assert!(first.0 > *approved_at);
        assert_eq!(first.1["purpose_of_use"], "BTG");

        // The review is an officer's.
        let (ok, out) = desk.breakglass(&[
            "review",
            "--id",
            &id,
            "--finding",
            "justified",
            "--comment",
            "児相と連携",
            "--operator",
            OFFICER,
        ]);
        assert!(ok, "{out}");
        assert_eq!(
            desk.row(&id, "review_finding, reviewed_by, review_comment"),
            ["justified", OFFICER, "児相と連携"]
        );

        // A second one, rejected: it never grants.
        let (s, state) = desk.begin("t1", "child_protection", Some(PATIENT));
        assert_eq!(s, 201, "{state}");
        let second = state["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &second, &answer(&state, &pki().hpki.doctor));
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("awaiting_approval")),
            "{v}"
        );
        let (ok, out) = desk.breakglass(&["reject", "--id", &second, "--operator", OFFICER]);
        assert!(ok, "{out}");
        assert_eq!(
            desk.row(&second, "status, starts_at, expires_at"),
            ["rejected", "NULL", "NULL"]
        );
        let (ok, out) = desk.breakglass(&["approve", "--id", &second, "--operator", SECRETARIAT]);
        assert!(!ok && out.contains("is rejected"), "{out}");
    }
}

// ---- 5: ended early, on every replica ----

/// A security officer ends a grant with `sekisho breakglass end`; a second gateway replica on
/// the same PostgreSQL store, where the physician's card session and grant held, refuses the
/// next request within a second.
#[test]
fn an_ended_grant_is_refused_on_another_replica_within_a_second() {
    let desk = Desk::start(Db::Postgres, Setup::default());
    let replica = desk.g.replica("replica-2");
    let card = insert(&pki().hpki.doctor);
    assert_eq!(desk.card_sign_in(), DOCTOR);
    let outcome = desk.card_declare(PATIENT, "disaster").expect("declared");
    drop(card);
    let id = outcome.state.id.clone();
    let on_replica = || call_on(&desk.rt, &replica, "t1", "GET", RECORD, None);
    // The card's session and the grant hold on the other replica.
    let (s, v) = within_a_poll(on_replica, |(s, _)| *s == 200);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
    replica.wait_audit(|r| {
        r["event"] == "request" && r["break_glass_id"] == id.as_str() && r["node"] == "replica-2"
    });

    // Only an officer ends it.
    let (ok, out) = desk.breakglass(&["end", "--id", &id, "--reason", "x", "--operator", DOCTOR]);
    assert!(!ok, "{out}");
    assert_eq!(desk.row(&id, "status")[0], "active");
    let (ok, out) = desk.breakglass(&[
        "end",
        "--id",
        &id,
        "--reason",
        "家族の同意を確認",
        "--operator",
        OFFICER,
    ]);
    assert!(ok, "{out}");
    // Every gateway refuses within a second: the other replica, and this one too (the CLI is
    // no gateway; both learn it from the store).
    let ended = Instant::now();
    let on_primary = || desk.call("t1", "GET", RECORD, None);
    for (name, refused) in [
        (
            "the other replica",
            until(3, on_replica, |(s, _)| *s != 200),
        ),
        (
            "the first replica",
            until(3, on_primary, |(s, _)| *s != 200),
        ),
    ] {
        let took = ended.elapsed();
        assert_eq!(
            (refused.0, error_code(&refused.1)),
            (403, "patient_no_consent"),
            "{name}: {}",
            refused.1
        );
        assert!(
            took < Duration::from_secs(1),
            "{name} refused {took:?} after the end"
        );
    }
    assert_eq!(
        desk.row(&id, "status, ended_by, end_reason"),
        ["ended", OFFICER, "家族の同意を確認"]
    );
    // The end is on record before the refusal.
    let log = indexed(&desk.g);
    let end = log
        .iter()
        .find(|(_, r)| is_bg(r, "break_glass_ended") && r["break_glass_id"] == id.as_str())
        .expect("the end is on record");
    assert_eq!(end.1["user"], OFFICER);
    let refused = log
        .iter()
        .rev()
        .find(|(_, r)| {
            r["event"] == "request" && r["node"] == "replica-2" && r["decision"] == "deny"
        })
        .expect("the replica's refusal is on record");
    assert!(refused.0 > end.0);
    drop(replica);
}

// ---- 6: the officers are told ----
