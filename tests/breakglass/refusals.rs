//! Who may not declare, and signatures that do not count.

use super::rig::*;

/// Who may not declare, and signatures that do not count, each refused with its reason code
/// and on record; none of them grants anything. The refused signatures leave the draft as it
/// was, so the card's own signature still works once, and only once.
#[test]
fn refusals_name_their_reason_and_grant_nothing() {
    for db in BOTH {
        let desk = Desk::start(db, Setup::default());
        let g = &desk.g;
        let (doctor, other) = (&pki().hpki.doctor, &pki().doctor2);
        let dir = tempfile::tempdir().unwrap();
        let request =
            json!({"category": "unconscious", "justification": JUSTIFICATION, "patient": PATIENT});

        // A nurse, and a physician signed in with a password (on t2): not permitted; the page
        // says why.
        for (id, roles) in [("nurse00000001", "nurse"), ("doctorpw00001", "physician")] {
            let jar = sign_in(g, "t2", id, roles, dir.path());
            let (s, v) = with_jar(g, "t2", &jar, "POST", EMERGENCY_DECLARATIONS_PATH, &request);
            assert_eq!(
                (s, error_code(&v)),
                (403, "break_glass_not_permitted"),
                "{db:?}: {id}"
            );
            let (s, page) = get(g, "t2", &jar, "/.sekisho/emergency");
            assert_eq!(s, 403, "{db:?}: {page}");
            assert!(
                page.contains("break_glass_not_permitted")
                    && page.contains("HPKIカードでサインインした医師だけ"),
                "{page}"
            );
            g.wait_audit(|r| {
                is_bg(r, "break_glass_not_permitted") && r["user"] == id && r["decision"] == "deny"
            });
        }
        // A pharmacist signed in with their HPKI card: not permitted either.
        let (s, v) = desk.key_sign_in("t2", &pki().hpki.pharmacist);
        assert_eq!((s, v["user"].as_str()), (200, Some(PHARMACIST)), "{v}");
        let (s, v) = desk.begin("t2", "unconscious", Some(PATIENT));
        assert_eq!((s, error_code(&v)), (403, "break_glass_not_permitted"));
        g.wait_audit(|r| is_bg(r, "break_glass_not_permitted") && r["user"] == PHARMACIST);

        // The physician signs in with the card on t1. What is declared must make sense.
        let card = insert(doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        drop(card);
        let (s, v) = desk.begin("t1", "holiday", Some(PATIENT));
        assert_eq!((s, error_code(&v)), (400, "break_glass_category_unknown"));
        let (s, v) = desk.call(
            "t1",
            "POST",
            EMERGENCY_DECLARATIONS_PATH,
            Some(json!({"category": "unconscious", "justification": " \n ", "patient": PATIENT})),
        );
        assert_eq!(
            (s, error_code(&v)),
            (400, "break_glass_justification_invalid")
        );
        let (s, v) = desk.begin("t1", "unconscious", Some("P-9999"));
        assert_eq!((s, error_code(&v)), (404, "break_glass_patient_unknown"));

        // Signed by another physician's card, or the physician's certificate with a signature
        // it did not make: refused, and the draft still waits.
        let (s, state) = desk.begin("t1", "unconscious", Some(PATIENT));
        assert_eq!(
            (s, state["status"].as_str()),
            (201, Some("awaiting_signature"))
        );
        let id = state["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &id, &answer(&state, other));
        assert_eq!(
            (s, error_code(&v)),
            (403, "break_glass_card_mismatch"),
            "{db:?}"
        );
        let mut forged = answer(&state, other);
        forged["certificate"] = json!(B64.encode(&doctor.der));
        let (s, v) = desk.send_signature("t1", &id, &forged);
        assert_eq!((s, error_code(&v)), (401, "break_glass_signature_invalid"));
        assert_eq!(desk.row(&id, "status")[0], "awaiting_signature");
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"));

        // The card's signature counts once; sent again, it changes nothing.
        let good = answer(&state, doctor);
        let (s, v) = desk.send_signature("t1", &id, &good);
        assert_eq!((s, v["status"].as_str()), (200, Some("active")), "{v}");
        let (s, v) = desk.send_signature("t1", &id, &good);
        assert_eq!((s, error_code(&v)), (409, "break_glass_declaration_state"));
        // Nor does it sign a new declaration: not with its own nonce, nor with the new one.
        let (_, fresh) = desk.begin("t1", "unconscious", Some(PATIENT));
        let fresh_id = fresh["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &fresh_id, &good);
        assert_eq!((s, error_code(&v)), (409, "break_glass_declaration_state"));
        let mut renonced = good.clone();
        renonced["nonce"] = fresh["nonce"].clone();
        let (s, v) = desk.send_signature("t1", &fresh_id, &renonced);
        assert_eq!((s, error_code(&v)), (401, "break_glass_signature_invalid"));
        assert_eq!(desk.row(&fresh_id, "status")[0], "awaiting_signature");

        // A draft that timed out (draft_minutes) cannot be signed any more.
        let (_, late) = desk.begin("t1", "unconscious", Some(PATIENT));
        let late_id = late["id"].as_str().unwrap().to_string();
        g.sql(&format!(
            "UPDATE break_glass SET draft_expires_at = {} WHERE id = '{late_id}'",
            sekisho_store::now() - 1
        ));
        let (s, v) = desk.send_signature("t1", &late_id, &answer(&late, doctor));
        assert_eq!(
            (s, error_code(&v)),
            (404, "break_glass_declaration_not_found")
        );
        assert_eq!(desk.row(&late_id, "status")[0], "awaiting_signature");

        // A card revoked after sign-in: its signature is refused once the gateway has the CRL.
        let (_, revoked) = desk.begin("t1", "unconscious", Some(PATIENT));
        let revoked_id = revoked["id"].as_str().unwrap().to_string();
        std::fs::write(
            g.data.join("hpki/auth-ca.crl"),
            crl_revoking(&[doctor, other]),
        )
        .unwrap();
        // The other physician's card, also revoked, shows when the gateway has re-read it.
        let (s, v) = until(
            5,
            || desk.key_sign_in("t3", other),
            |(_, v)| error_code(v) == "hpki_revoked",
        );
        assert_eq!((s, error_code(&v)), (403, "hpki_revoked"), "{db:?}");
        let (s, v) = desk.send_signature("t1", &revoked_id, &answer(&revoked, doctor));
        assert_eq!((s, error_code(&v)), (403, "hpki_revoked"), "{db:?}");

        // One grant came of all this, and every refusal is on record with its declaration.
        let active = g.sql_rows("SELECT id FROM break_glass WHERE status = 'active'");
        assert_eq!(active, vec![vec![id.clone()]], "{db:?}");
        let log = g.audit_records();
        assert_eq!(
            log.iter()
                .filter(|r| is_bg(r, "break_glass_declared"))
                .count(),
            1
        );
        for (reason, declaration) in [
            ("break_glass_card_mismatch", &id),
            ("break_glass_signature_invalid", &id),
            ("break_glass_declaration_state", &id),
            ("break_glass_declaration_state", &fresh_id),
            ("break_glass_signature_invalid", &fresh_id),
            ("break_glass_declaration_not_found", &late_id),
            ("hpki_revoked", &revoked_id),
        ] {
            assert!(
                log.iter().any(|r| is_bg(r, reason)
                    && r["decision"] == "deny"
                    && r["user"] == DOCTOR
                    && r["break_glass_id"] == declaration.as_str()),
                "{db:?}: no {reason} record for {declaration}"
            );
        }
        for reason in [
            "break_glass_category_unknown",
            "break_glass_justification_invalid",
            "break_glass_patient_unknown",
        ] {
            assert!(
                log.iter().any(|r| is_bg(r, reason) && r["user"] == DOCTOR),
                "{db:?}: no {reason} record"
            );
        }
    }
}

// ---- 4: a second person's approval ----
