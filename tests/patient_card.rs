//! The patient's IC card (R-PAT-2) end to end: the gateway requires the card (or a consent window
//! it opened) for viewing; a physician signs in with the virtual HPKI card in one vpcd reader,
//! the agent reads the virtual patient card (issued by `sekisho patient card issue`) in the
//! other, the card signs the gateway's challenge, and the window opens for that physician and
//! patient. The window expires, a revoked card opens nothing, and the lower-assurance
//! attestation mode works only where the deployment allows it. Needs pcscd and
//! vsmartcard-vpcd (installed by tests/run.sh); fails, never skips, without them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sekisho_agent::{self as agent, AgentConfig, AgentError, ConsentBasis};
use sekisho_ca::hpki::TestHpki;
use sekisho_cardreader::vcard::{AppFiles, CardEngine, PatientCardEngine, Quirks, VirtualCard};

const HPKI_READER: &str = "Virtual PCD 00 01";
const HPKI_PORT: u16 = 35964;
const PATIENT_READER: &str = "Virtual PCD 00 00";
const PATIENT_PORT: u16 = 35963;
const PIN: &str = "4321";
const RECORD: &str = "/api/patients/P-0001/summary";

fn hpki_config(g: &Gateway) -> AgentConfig {
    let (cert, key) = g.cert("t1");
    AgentConfig {
        gateway: format!("https://localhost:{}", g.port),
        cert: cert.into(),
        key: key.into(),
        ca: g.ca().into(),
        reader: Some(HPKI_READER.into()),
    }
}

fn doctor_get(g: &Gateway, path: &str) -> (u16, String) {
    let (c, k) = g.cert("t1");
    let (s, body, _) = g.curl(path, &["--cert", &c, "--key", &k]);
    (s, body)
}

fn card_present(reader: &str) -> bool {
    sekisho_cardreader::pcsc_transport::PcscTransport::connect(reader).is_ok()
}

#[test]
fn the_patient_card_opens_a_window_that_expires_and_a_revoked_card_opens_none() {
    let _hpki_reader = vpcd_rig(HPKI_PORT, HPKI_READER);
    let _patient_reader = vpcd_rig(PATIENT_PORT, PATIENT_READER);
    let extra = format!(
        "{}\n[hpki]\nanchors = [\"hpki/root.crt\"]\nintermediates = [\"hpki/auth-ca.crt\"]\ncrls = [\"hpki/auth-ca.crl\", \"hpki/root.crl\"]\n",
        Options::default().extra_config
    );
    let mut g = Gateway::start_with(
        Db::Sqlite,
        Options {
            extra_config: extra,
            replace: vec![(
                "require_patient_card = false",
                "require_patient_card = true",
            )],
            ..Default::default()
        },
    );
    let hpki = TestHpki::generate(&g.data.join("hpki")).unwrap();
    g.stop();
    g.serve();
    let d = g.data_str().to_string();
    let doctor_crt = g.data.join("hpki/doctor.crt");
    run_ok(&[
        "user",
        "add",
        "--data-dir",
        &d,
        "--id",
        "doctor0000001",
        "--name",
        "神楽坂　三十四",
        "--facility",
        "f1",
        "--roles",
        "physician",
        "--hpki-cert",
        doctor_crt.to_str().unwrap(),
    ]);
    consented_patient(&g, "P-0001", &["f:f1"]);
    // The secretariat issues the patient's card; the files personalise the (virtual) card.
    let cards = tempfile::tempdir().unwrap();
    let card_dir = cards.path().join("P-0001");
    let out = run_ok(&[
        "patient",
        "card",
        "issue",
        "--data-dir",
        &d,
        "--patient",
        "P-0001",
        "--out",
        card_dir.to_str().unwrap(),
    ]);
    let serial = out
        .split_whitespace()
        .nth(2)
        .expect("the serial is printed")
        .to_string();
    let key = std::fs::read(card_dir.join("patient-card.key")).unwrap();
    let crt = std::fs::read(card_dir.join("patient-card.crt")).unwrap();
    let listed = run_ok(&["patient", "card", "list", "--data-dir", &d]);
    assert!(
        listed.contains(&serial) && listed.contains("active"),
        "{listed}"
    );

    let doctor = Arc::new(Mutex::new(
        CardEngine::new(
            AppFiles::from_pem(
                hpki.doctor.pem().as_bytes(),
                hpki.doctor.key.as_str().as_bytes(),
            )
            .unwrap(),
            None,
            PIN,
            Quirks::default(),
        )
        .unwrap(),
    ));
    let patient = Arc::new(Mutex::new(
        PatientCardEngine::from_pem("P-0001", &crt, &key).unwrap(),
    ));
    let cfg = hpki_config(&g);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let _doctor_card =
        VirtualCard::connect(&doctor, ("127.0.0.1", HPKI_PORT)).expect("insert the HPKI card");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !card_present(HPKI_READER) {
        assert!(Instant::now() < deadline, "the HPKI card was not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Before any sign-in the patient card is refused: a physician must be signed in.
    let patient_card = VirtualCard::connect(&patient, ("127.0.0.1", PATIENT_PORT))
        .expect("insert the patient card");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !card_present(PATIENT_READER) {
        assert!(Instant::now() < deadline, "the patient card was not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    match rt.block_on(agent::consent(&cfg, Some(PATIENT_READER.into()), false)) {
        Err(AgentError::Refused(r)) => assert_eq!(r.code.as_str(), "not_signed_in"),
        other => panic!("expected not_signed_in, got {other:?}"),
    }
    rt.block_on(agent::login(&cfg, PIN))
        .expect("the physician signs in");

    // Signed in, in the care team, consent on record: still no view without the patient.
    let (s, body) = doctor_get(&g, RECORD);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("patient_card_required"), "{body}");

    // The patient's card signs the challenge: the window opens for this physician and patient.
    let info = rt
        .block_on(agent::consent(&cfg, Some(PATIENT_READER.into()), false))
        .expect("the card opens a consent window");
    assert_eq!(info.patient, "P-0001");
    assert_eq!(info.basis, ConsentBasis::PatientCard);
    assert_eq!(info.minutes, 30);
    let (s, body) = doctor_get(&g, RECORD);
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("\"consent_basis\":\"patient_card\""),
        "the upstream learns what consent rests on: {body}"
    );
    let v = g.wait_audit(|r| r["event"] == "consent" && r["decision"] == "permit");
    assert_eq!(v["user"], "doctor0000001");
    assert_eq!(v["patient"], "P-0001");
    assert!(
        v["detail"].as_str().unwrap().contains(&serial),
        "the audit record names the card: {v}"
    );
    // The card signed exactly one challenge, and the agent did not sign anything else.
    assert_eq!(patient.lock().unwrap().signed_digests().len(), 1);

    // The window expires (made to, in the store): viewing is refused again.
    g.sql("UPDATE consent_windows SET expires_at = 1");
    let (s, body) = within_a_poll(|| doctor_get(&g, RECORD), |(s, _)| *s != 200);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("patient_card_required"), "{body}");

    // A revoked card: refused, and the windows it opened close at once.
    rt.block_on(agent::consent(&cfg, Some(PATIENT_READER.into()), false))
        .expect("a second window");
    assert_eq!(doctor_get(&g, RECORD).0, 200);
    run_ok(&[
        "patient",
        "card",
        "revoke",
        "--data-dir",
        &d,
        "--serial",
        &serial,
    ]);
    let (s, _) = within_a_poll(|| doctor_get(&g, RECORD), |(s, _)| *s != 200);
    assert_eq!(s, 403, "the revoked card's window is closed");
    match rt.block_on(agent::consent(&cfg, Some(PATIENT_READER.into()), false)) {
        Err(AgentError::Refused(r)) => assert_eq!(r.code.as_str(), "patient_card_revoked"),
        other => panic!("expected patient_card_revoked, got {other:?}"),
    }
    // Attestation is off unless the deployment allows it.
    match rt.block_on(agent::consent(&cfg, Some(PATIENT_READER.into()), true)) {
        Err(AgentError::Refused(r)) => assert_eq!(r.code.as_str(), "attestation_not_allowed"),
        other => panic!("expected attestation_not_allowed, got {other:?}"),
    }
    g.wait_audit(|r| r["event"] == "consent" && r["reason"] == "patient_card_revoked");
    drop(patient_card);
}

/// The lower-assurance mode, where a deployment allows it: a signed-in member of staff reads
/// the card's id and attests the patient's presence; recorded as such. No card reader needed:
/// the browser posts the id it read.
#[test]
fn staff_attestation_opens_a_window_recorded_as_such_where_allowed() {
    for db in BOTH {
        let g = Gateway::start_with(
            db,
            Options {
                replace: vec![
                    (
                        "require_patient_card = false",
                        "require_patient_card = true",
                    ),
                    (
                        "allow_attested_consent = false",
                        "allow_attested_consent = true",
                    ),
                ],
                ..Default::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let doctor = sign_in(&g, "t1", "doctor00001", "physician", dir.path());
        let d = g.data_str();
        consented_patient(&g, "P-0001", &["u:doctor00001"]);
        let (c, k) = g.cert("t1");
        let attest = |patient: &str| {
            g.curl(
                "/.sekisho/consent/attest",
                &[
                    "--cert",
                    &c,
                    "--key",
                    &k,
                    "-b",
                    &doctor,
                    "-H",
                    "content-type: application/json",
                    "-d",
                    &format!("{{\"patient\":\"{patient}\"}}"),
                ],
            )
        };
        // No card was ever issued to this patient: the id read is not a card of the network.
        let (s, body, _) = attest("P-0001");
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("patient_card_revoked"), "{body}");
        let cards = tempfile::tempdir().unwrap();
        run_ok(&[
            "patient",
            "card",
            "issue",
            "--data-dir",
            d,
            "--patient",
            "P-0001",
            "--out",
            cards.path().join("c").to_str().unwrap(),
        ]);
        let (s, body) = get(&g, "t1", &doctor, RECORD);
        assert_eq!(s, 403, "{body}");
        let (s, body, _) = attest("P-0001");
        assert_eq!(s, 200, "{db:?}: {body}");
        assert!(body.contains("\"basis\":\"staff_attested\""), "{body}");
        let (s, body) = get(&g, "t1", &doctor, RECORD);
        assert_eq!(s, 200, "{body}");
        assert!(
            body.contains("\"consent_basis\":\"staff_attested\""),
            "{body}"
        );
        let v = g.wait_audit(|r| r["event"] == "consent" && r["decision"] == "permit");
        assert_eq!(v["method"], "staff_attested");
        // Nobody signed in (no cookie): nothing opens.
        let (s, body, _) = g.curl(
            "/.sekisho/consent/attest",
            &["--cert", &c, "--key", &k, "-d", "{\"patient\":\"P-0001\"}"],
        );
        assert_eq!(s, 401, "{body}");
        assert!(body.contains("not_signed_in"));
        let v = g.wait_audit(|r| r["event"] == "consent" && r["reason"] == "not_signed_in");
        assert_eq!(v["terminal"], "t1");
        // A patient without consent: the same answer as an unknown one.
        run_ok(&["patient", "withdraw", "--data-dir", d, "--id", "P-0001"]);
        let (s, body, _) = attest("P-0001");
        assert_eq!(s, 403);
        assert!(body.contains("patient_unknown_or_not_consented"), "{body}");
        // Consent given again: the window opened before the withdrawal stays closed.
        run_ok(&["patient", "consent", "--data-dir", d, "--id", "P-0001"]);
        let (s, body) = within_a_poll(
            || get(&g, "t1", &doctor, RECORD),
            |(_, b)| b.contains("patient_card_required"),
        );
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("patient_card_required"), "{body}");
    }
}
