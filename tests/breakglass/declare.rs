//! A declaration opens the record, on record, and closes on time.

use super::rig::*;

/// A physician signed in with the HPKI card declares for a patient who never consented and
/// views the record: the declaration is on record before the first request under it, every
/// request under it carries its id and purpose BTG, and the signed assertion carries the
/// `break_glass` claim. Moved to end two seconds from now, the grant ends then: the next
/// request is refused as before the declaration, and the gateway marks the grant expired.
#[test]
fn a_card_declaration_opens_the_record_on_record_and_closes_on_time() {
    for db in BOTH {
        let desk = Desk::start(db, Setup::default());
        let g = &desk.g;
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        // No consent, no care team: refused, and nothing says emergency yet.
        let (s, body) = desk.call("t1", "GET", RECORD, None);
        assert_eq!(
            (s, error_code(&body)),
            (403, "patient_no_consent"),
            "{db:?}"
        );

        let before = sekisho_store::now();
        let outcome = desk.card_declare(PATIENT, "unconscious").expect("declared");
        drop(card);
        let d = &outcome.declaration;
        assert!(outcome.is_active(), "{db:?}: {outcome:?}");
        assert_eq!(
            (d.user.as_str(), d.patient.as_str(), d.category.as_str()),
            (DOCTOR, PATIENT, "unconscious")
        );
        assert_eq!(d.justification, JUSTIFICATION);
        assert_eq!(d.terminal, "urn:sekisho:terminal:f1:t1");
        let id = outcome.state.id.clone();
        let expires = outcome.state.expires_at.unwrap();
        let after = sekisho_store::now();
        assert!(
            (before + 4 * 3600..=after + 4 * 3600).contains(&expires),
            "{db:?}: four hours by default, got {expires}"
        );
        assert_eq!(outcome.state.allows.as_deref(), Some("view"));
        // What the store keeps is exactly what the card signed.
        let row = desk.row(&id, "status, signed_text, outside_care_team, card");
        assert_eq!(row[0], "active");
        assert_eq!(row[1].as_bytes(), d.to_sign().as_slice());
        assert_eq!(
            row[2], "1",
            "the patient is outside the physician's care teams"
        );

        // Viewing under the grant: the upstream gets a signed assertion with the claim.
        let (s, v) = desk.call("t1", "GET", DEBUG_RECORD, None);
        assert_eq!(s, 200, "{db:?}: {v}");
        let claims = &v["assertion_claims"];
        assert_eq!(claims["purpose_of_use"], "BTG");
        assert_eq!(claims["consent_basis"], "break_glass");
        assert_eq!(claims["user"], DOCTOR);
        assert_eq!(claims["patient"], PATIENT);
        assert_eq!(
            claims["break_glass"],
            json!({"id": id, "reason_category": "unconscious", "expires": expires})
        );
        let (_, jwks) = g.mgmt_get("/jwks.json").unwrap();
        let jwks: Value = serde_json::from_str(&jwks).unwrap();
        let jwt = v["headers"]["sekisho-assertion"][0].as_str().unwrap();
        assert!(
            verify_es256(jwt, &jwks["keys"][0]),
            "{db:?}: the assertion verifies"
        );
        for _ in 0..2 {
            let (s, v) = desk.call("t1", "GET", RECORD, None);
            assert_eq!(s, 200, "{db:?}: {v}");
            assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
        }
        // View only (the category's default): writing is still refused.
        let (s, v) = desk.call("t1", "POST", RECORD, Some(json!({"note": "x"})));
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"), "{db:?}");

        // The audit log: begun, declared (signed, BTG), then the three requests, in that order.
        g.wait_audit(|r| r["event"] == "outcome" && r["break_glass_id"] == id.as_str());
        let log = indexed(g);
        let at = |reason: &str| {
            log.iter()
                .find(|(_, r)| is_bg(r, reason) && r["break_glass_id"] == id.as_str())
                .unwrap_or_else(|| panic!("{db:?}: no {reason} record"))
        };
        let begun = at("break_glass_begun").0;
        let (declared, rec) = at("break_glass_declared");
        let declared = *declared;
        assert!(begun < declared);
        assert_eq!(rec["decision"], "permit");
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(rec["patient"], PATIENT);
        assert_eq!(rec["purpose_of_use"], "BTG");
        let detail = rec["detail"].as_str().unwrap();
        assert!(
            detail.contains("category unconscious; 4 h, write false; signature sha256 ")
                && detail.ends_with("outside care team true"),
            "{detail}"
        );
        let requests: Vec<&(usize, Value)> = log
            .iter()
            .filter(|(_, r)| {
                r["event"] == "request" && r["patient"] == PATIENT && r["decision"] == "permit"
            })
            .collect();
        assert_eq!(requests.len(), 3, "{db:?}: {requests:#?}");
        for (i, r) in &requests {
            assert!(
                *i > declared,
                "{db:?}: a request before the declaration's record"
            );
            assert_eq!(r["break_glass_id"], id.as_str());
            assert_eq!(r["purpose_of_use"], "BTG");
            assert_eq!(r["user"], DOCTOR);
        }
        // The refused write is on record without the grant.
        let refused = log
            .iter()
            .find(|(_, r)| r["event"] == "request" && r["method"] == "POST")
            .unwrap();
        assert_eq!(refused.1["reason"], "patient_no_consent");
        assert!(refused.1["break_glass_id"].is_null());

        // The officers' view: every record under the declaration.
        let (ok, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(ok, "{shown}");
        let under = log
            .iter()
            .filter(|(_, r)| r["break_glass_id"] == id.as_str())
            .count();
        assert!(
            shown.contains(&format!("records under this declaration ({under}):")),
            "{db:?}: {under} records: {shown}"
        );
        assert!(shown.contains("status        active"), "{shown}");
        assert!(shown.contains("outside care  yes"), "{shown}");
        assert!(shown.contains("review        UNREVIEWED"), "{shown}");
        let (ok, listed) = desk.breakglass(&["list", "--unreviewed", "--status", "active"]);
        assert!(ok && listed.contains(&id), "{listed}");

        // 2: the grant ends on time. Moved to end two seconds from now (the store's triggers
        // tell the gateway, as they do for any change).
        let ends = sekisho_store::now() + 2;
        g.sql(&format!(
            "UPDATE break_glass SET expires_at = {ends} WHERE id = '{id}'"
        ));
        let last_ok = until(
            5,
            || desk.call("t1", "GET", RECORD, None),
            |(s, _)| *s != 200,
        );
        let refused_at = sekisho_store::now();
        assert_eq!(
            (last_ok.0, error_code(&last_ok.1)),
            (403, "patient_no_consent"),
            "{db:?}: refused again as before the declaration"
        );
        assert!(
            (ends..=ends + 1).contains(&refused_at),
            "{db:?}: the grant ended at {refused_at}, not at {ends}"
        );
        let log = g.audit_records();
        let last = log
            .iter()
            .rev()
            .find(|r| r["event"] == "request" && r["patient"] == PATIENT)
            .unwrap();
        assert_eq!(last["decision"], "deny");
        assert!(last["break_glass_id"].is_null() && last["purpose_of_use"].is_null());
        // The gateway's round marks it expired (every 10 s).
        let status = until(
            12,
            || desk.row(&id, "status")[0].clone(),
            |s| s == "expired",
        );
        assert_eq!(status, "expired", "{db:?}");
    }
}

// ---- 3: refusals ----
