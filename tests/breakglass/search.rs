//! Finding the patient by name, only while declaring.

use super::rig::*;

/// Finding the patient by name exists only under this session's declaration in progress: it
/// is refused without one (and the attempt is on record with its words), returns at most
/// `search_limit` patients, is on record with what it found, and closes once the card signed.
#[test]
fn the_search_by_name_needs_a_declaration_in_progress_and_is_on_record() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                replace: vec![("search_limit = 10", "search_limit = 2")],
                patients: vec![
                    ("P-0002", "山田 太郎", "ヤマダ タロウ"),
                    ("P-0003", "山田 一郎", "ヤマダ イチロウ"),
                    ("P-0004", "佐藤 花子", "サトウ ハナコ"),
                ],
                ..Default::default()
            },
        );
        let g = &desk.g;
        let search = |term: &str, declaration: &str, q: &str| {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            desk.call(
                term,
                "GET",
                &format!(
                    "{EMERGENCY_SEARCH_PATH}?declaration={}&q={}",
                    enc(declaration),
                    enc(q)
                ),
                None,
            )
        };
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        // No declaration in progress: no search.
        for declaration in ["", "bg-00000000000000000000"] {
            let (s, v) = search("t1", declaration, "山田");
            assert_eq!(
                (s, error_code(&v)),
                (403, "break_glass_search_not_allowed"),
                "{db:?}: {v}"
            );
        }
        let rec = g.wait_audit(|r| is_bg(r, "break_glass_search_not_allowed"));
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(
            rec["detail"],
            format!("search \"{}\"", escaped("山田")),
            "{db:?}"
        );
        // A nurse cannot search at all.
        let dir = tempfile::tempdir().unwrap();
        let jar = sign_in(g, "t2", "nurse00000001", "nurse", dir.path());
        let (s, v) = with_jar(
            g,
            "t2",
            &jar,
            "GET",
            &format!("{EMERGENCY_SEARCH_PATH}?declaration=&q=%E5%B1%B1%E7%94%B0"),
            &Value::Null,
        );
        assert_eq!((s, error_code(&v)), (403, "break_glass_not_permitted"));

        // Declaring without the patient's id: begun, then found by name.
        let (s, state) = desk.begin("t1", "unconscious", None);
        assert_eq!(
            (s, state["status"].as_str()),
            (201, Some("choose_patient")),
            "{state}"
        );
        let id = state["id"].as_str().unwrap().to_string();
        let (s, found) = search("t1", &id, "ヤマダ　ハナコ");
        assert_eq!(s, 200, "{found}");
        assert_eq!(
            found,
            json!([{"patient": PATIENT, "name": "山田 花子", "kana": "ヤマダ ハナコ", "birth_date": null, "sex": null}])
        );
        let (s, found) = search("t1", &id, "山田");
        assert_eq!(s, 200);
        let ids: Vec<&str> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["patient"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["P-0001", "P-0002"], "{db:?}: at most search_limit");
        let searches: Vec<String> = g
            .audit_records()
            .into_iter()
            .filter(|r| is_bg(r, "break_glass_search") && r["break_glass_id"] == id.as_str())
            .map(|r| r["detail"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(searches.len(), 2, "{db:?}: {searches:?}");
        assert_eq!(
            searches,
            [
                format!("search \"{}\"; 1 found: P-0001", escaped("ヤマダ　ハナコ")),
                format!("search \"{}\"; 2 found: P-0001,P-0002", escaped("山田")),
            ],
            "{db:?}"
        );
        // Another physician's session cannot search under this declaration.
        let (s, _) = desk.key_sign_in("t2", &pki().doctor2);
        assert_eq!(s, 200);
        let (s, v) = search("t2", &id, "山田");
        assert_eq!((s, error_code(&v)), (403, "break_glass_search_not_allowed"));

        // The patient chosen, the card signs what the page prepared (`emergency --pending`).
        let (s, v) = desk.call(
            "t1",
            "POST",
            &format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/patient"),
            Some(json!({"patient": PATIENT})),
        );
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("awaiting_signature")),
            "{v}"
        );
        let confirm: Arc<dyn Confirm> = Arc::new(|_: &Declaration| true);
        let signed = desk
            .rt
            .block_on(agent::emergency_sign_pending(
                &desk.agent_config(),
                None,
                Arc::new(FixedPin::new(PIN)),
                confirm,
            ))
            .expect("signed");
        drop(card);
        assert_eq!(signed.len(), 1);
        assert_eq!(signed[0].id, id);
        let outcome = signed[0].result.as_ref().expect("active");
        assert!(outcome.is_active());
        assert_eq!(outcome.declaration.patient, PATIENT);

        // Declared: the search is closed again; the record opens under the grant.
        let (s, v) = search("t1", &id, "山田");
        assert_eq!((s, error_code(&v)), (403, "break_glass_search_not_allowed"));
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
    }
}
