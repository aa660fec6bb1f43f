//! What follows a declaration: the officers told, the patient's permission afterwards.

use super::rig::*;

/// A declaration reaches the officers at once by webhook (signed) and by mail (STARTTLS) with
/// its id, who, which patient, why and for how long, and nothing of the record; a refused
/// attempt sends nothing.
#[test]
fn the_officers_are_told_by_webhook_and_mail() {
    use crate::notify_rig::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for db in BOTH {
        let rig = Rig::new();
        let (hook, relay, notify) = rig.start_receivers(&rt);
        let desk = Desk::start(
            db,
            Setup {
                extra: notify,
                ..Default::default()
            },
        );
        let doctor = &pki().hpki.doctor;
        // Refused: nothing to tell.
        desk.key_sign_in("t2", &pki().hpki.pharmacist);
        let (s, _) = desk.begin("t2", "unconscious", Some(PATIENT));
        assert_eq!(s, 403);
        let (s, v) = desk.key_sign_in("t1", doctor);
        assert_eq!(s, 200, "{v}");
        let id = desk.key_declare("t1", doctor, PATIENT, "unconscious");
        rt.block_on(wait_for("the webhook and the mail", 20, || {
            !hook.received().is_empty() && !relay.mails().is_empty()
        }));

        let got: &Received = &hook.received()[0];
        assert!(got.verified, "{db:?}: {got:?}");
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body["kind"], "break_glass_declared");
        assert_eq!(
            body["subject_en"],
            format!("Emergency access declared: {id}")
        );
        assert_eq!(body["subject_ja"], format!("緊急時アクセスの宣言 {id}"));
        let data = &body["data"];
        for (k, want) in [
            ("declaration", json!(id)),
            ("user", json!(DOCTOR)),
            ("facility", json!("f1")),
            ("patient", json!(PATIENT)),
            ("category", json!("unconscious")),
            ("terminal", json!("t1")),
            ("hours", json!(4)),
            ("awaiting_approval", json!(false)),
            ("outside_care_team", json!(true)),
        ] {
            assert_eq!(data[k], want, "{db:?}: data.{k} in {body}");
        }
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("sekisho breakglass show --id {id}")),
            "{text}"
        );
        assert!(
            !got.body
                .windows("山田".len())
                .any(|w| w == "山田".as_bytes()),
            "the patient's name is not sent"
        );

        let mail = &relay.mails()[0];
        assert!(mail.tls && mail.user.as_deref() == Some(SMTP_USER));
        assert_eq!(mail.rcpt, ["security@example.jp", "officer@example.jp"]);
        let read = ReadMail::new(&mail.data);
        assert_eq!(
            read.subject(),
            format!("[Sekisho] 緊急時アクセスの宣言 {id} / Emergency access declared: {id}")
        );
        assert!(
            read.text.starts_with(&format!(
                "医師 {DOCTOR}（f1）が患者 {PATIENT} について緊急時アクセスを宣言しました。"
            )),
            "{}",
            read.text
        );
        // One notice, two deliveries, both delivered (the refused attempt queued nothing).
        let delivered = until(
            5,
            || {
                desk.g.sql_rows(
                    "SELECT channel FROM notify_deliveries WHERE delivered_at IS NOT NULL ORDER BY channel",
                )
            },
            |r| r.len() == 2,
        );
        assert_eq!(delivered.len(), 2, "{db:?}: {delivered:?}");
        assert_eq!(
            desk.g.sql_rows("SELECT COUNT(*) FROM notify_deliveries")[0][0],
            "2"
        );
        assert_eq!((hook.received().len(), relay.mails().len()), (1, 1));
    }
}

// ---- 7: the follow-up ----

/// For a category that asks for the patient's permission afterwards, a declaration without it
/// past `follow_up_hours` is flagged (the officers' list and `/metrics`); the physician records
/// the patient's signature and the flag clears. Evidence is kept under its hash, on record.
#[test]
fn a_missing_follow_up_is_flagged_and_clears_once_recorded() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                replace: vec![("follow_up_hours = 72", "follow_up_hours = 0")],
                patients: vec![("P-0002", "山田 太郎", "ヤマダ タロウ")],
                ..Default::default()
            },
        );
        let g = &desk.g;
        let doctor = &pki().hpki.doctor;
        let (s, v) = desk.key_sign_in("t1", doctor);
        assert_eq!(s, 200, "{v}");
        let id = desk.key_declare("t1", doctor, PATIENT, "unconscious");
        let other = desk.key_declare("t1", doctor, "P-0002", "disaster");
        let line = |out: &str, id: &str| {
            out.lines()
                .find(|l| l.starts_with(id))
                .unwrap_or_else(|| panic!("{id} is not listed: {out}"))
                .to_string()
        };
        // follow_up_hours = 0: overdue from the first second after the declaration.
        let listed = until(
            3,
            || desk.breakglass(&["list"]).1,
            |o| line(o, &id).ends_with("OVERDUE"),
        );
        assert!(line(&listed, &id).ends_with(" OVERDUE"), "{db:?}: {listed}");
        assert!(line(&listed, &other).ends_with(" not required"), "{listed}");
        let (_, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(shown.contains("follow-up     OVERDUE"), "{shown}");
        let gauge = |n: u32| format!("sekisho_break_glass{{state=\"follow_up_overdue\"}} {n}");
        let metrics = until(
            12,
            || g.mgmt_get("/metrics").unwrap().1,
            |m| m.contains(&gauge(1)),
        );
        assert!(metrics.contains(&gauge(1)), "{db:?}: {metrics}");

        let path = format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/follow-up");
        let evidence = |data: &[u8]| json!({"kind": "signature", "content_type": "image/png", "data": B64.encode(data)});
        // Evidence must be what it says it is.
        let (s, v) = desk.call("t1", "POST", &path, Some(evidence(b"GIF89a not a png")));
        assert_eq!((s, error_code(&v)), (400, "bad_request"), "{v}");
        // And only the declaring physician records it.
        let (s, _) = desk.key_sign_in("t2", &pki().doctor2);
        assert_eq!(s, 200);
        let (s, v) = desk.call("t2", "POST", &path, Some(evidence(PNG)));
        assert_eq!(
            (s, error_code(&v)),
            (404, "break_glass_declaration_not_found")
        );
        assert_eq!(desk.row(&id, "follow_up_at")[0], "NULL");

        let (s, v) = desk.call("t1", "POST", &path, Some(evidence(PNG)));
        assert_eq!(s, 200, "{db:?}: {v}");
        let sha = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, PNG));
        assert_eq!(
            v,
            json!({"id": id, "follow_up": "signature", "sha256": sha})
        );
        let kept = g
            .data
            .join("break-glass")
            .join(&id)
            .join(format!("{sha}.png"));
        assert_eq!(std::fs::read(&kept).unwrap(), PNG);
        assert_eq!(
            desk.row(&id, "follow_up_kind, follow_up_sha256"),
            ["signature", sha.as_str()]
        );
        let rec = g.wait_audit(|r| is_bg(r, "break_glass_follow_up"));
        assert_eq!(rec["break_glass_id"], id.as_str());
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(rec["patient"], PATIENT);
        assert_eq!(rec["detail"], format!("signature image/png sha256 {sha}"));

        let (_, listed) = desk.breakglass(&["list"]);
        assert!(
            line(&listed, &id).ends_with(" recorded (signature)"),
            "{listed}"
        );
        let (_, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(
            shown.contains("follow-up     recorded (signature)"),
            "{shown}"
        );
        let metrics = until(
            12,
            || g.mgmt_get("/metrics").unwrap().1,
            |m| m.contains(&gauge(0)),
        );
        assert!(metrics.contains(&gauge(0)), "{db:?}: {metrics}");
    }
}

/// A 1×1 PNG, as the page's signature pad sends it.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0xf8, 0xcf, 0x50,
    0x0f, 0x00, 0x03, 0x86, 0x01, 0x80, 0x5a, 0x34, 0x7d, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

// ---- 8: the search by name ----
