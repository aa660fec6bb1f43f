//! The patient's consent with their patient card: in-process, through pcscd, and from the
//! command line.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use common::*;
use sekisho_agent::{self as agent, AgentError, ConsentBasis, Reason, Summary};
use sekisho_cardreader::vcard::{PatientCardEngine, Quirks};
use sekisho_cardreader::{CardError, Transport};

/// A virtual card shared with the test, which looks at it afterwards (the agent takes the
/// transport by value).
struct SharedCard<C>(Arc<Mutex<C>>);

impl<C: Transport + Send> Transport for SharedCard<C> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transmit(apdu)
    }
}

#[tokio::test]
async fn consent_with_an_in_process_patient_card() {
    const NAME: &str = "in-process reader";
    let pki = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);
    let files = pki.ca.issue_patient_card("P-0001");
    let card = Arc::new(Mutex::new(
        PatientCardEngine::new("P-0001", files.cert_der.clone(), &files.key_der).unwrap(),
    ));
    let transport = || SharedCard(Arc::clone(&card));
    let signed = || card.lock().unwrap().signed_digests().len();

    // No physician signed in on the terminal.
    let e = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::NotSignedIn), "{e:?}");
    assert_eq!(e.exit_code(), 5);
    assert_eq!(signed(), 0, "nothing signed without a challenge");

    // Signed in: the card signs the consent challenge; the gateway checked the signature
    // against the certificate the agent read from the card.
    lock(&state).signed_in = true;
    let info = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap();
    assert_eq!(info.patient, "P-0001");
    assert_eq!(info.basis, ConsentBasis::PatientCard);
    assert_eq!((info.until, info.minutes), (1_900_000_000, 30));
    assert!(
        info.summary().starts_with(
            "Consent window open for patient P-0001 until 2030-03-18 02:46 JST (30 min, patient card)"
        ),
        "{}",
        info.summary()
    );
    {
        let st = lock(&state);
        assert_eq!(
            st.consents,
            vec![("P-0001".to_string(), "patient_card".to_string())]
        );
        assert_eq!(st.anonymous, 0);
    }
    assert_eq!(signed(), 1);

    // Staff attestation: refused where not allowed; where allowed, only the id is read.
    let e = agent::consent_with_card(&cfg, transport(), NAME, true)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::AttestationNotAllowed));
    lock(&state).allow_attest = true;
    let info = agent::consent_with_card(&cfg, transport(), NAME, true)
        .await
        .unwrap();
    assert_eq!(
        (info.patient.as_str(), info.basis),
        ("P-0001", ConsentBasis::StaffAttested)
    );
    assert_eq!(signed(), 1, "attestation signs nothing");

    // A gateway (or an impostor with a terminal's key) asking the patient's card to sign an
    // HPKI login challenge: refused before the card sees it.
    lock(&state).consent_to_sign = Some(b"sekisho-hpki-login\ngateway=test\nnonce=x".to_vec());
    let e = agent::consent_with_card(&cfg, transport(), NAME, false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::NotConsentChallenge(_)), "{e:?}");
    assert_eq!(e.exit_code(), 6);
    assert_eq!(signed(), 1);
    lock(&state).consent_to_sign = None;

    // The gateway's refusals come through as such.
    for (status, code, want) in [
        (403, "patient_card_revoked", Reason::PatientCardRevoked),
        (
            403,
            "patient_unknown_or_not_consented",
            Reason::PatientUnknownOrNotConsented,
        ),
    ] {
        lock(&state).refuse = Some((status, code));
        let e = agent::consent_with_card(&cfg, transport(), NAME, false)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Some(want), "{e:?}");
    }
    lock(&state).refuse = None;

    // A card whose certificate names another patient than its id: the gateway is not asked.
    let issued = lock(&state).consent_challenges_issued;
    let liar =
        PatientCardEngine::with_files(b"P-0002".to_vec(), files.cert_der.clone(), &files.key_der)
            .unwrap();
    let e = agent::consent_with_card(&cfg, liar, NAME, false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::PatientCard(_)), "{e:?}");
    assert_eq!(e.exit_code(), 3);
    assert_eq!(lock(&state).consent_challenges_issued, issued);

    // An HPKI card is not a patient card.
    let e = agent::consent_with_card(&cfg, common::engine(Quirks::default()), NAME, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::NoPatientCard { reader: Some(r) } if r == NAME),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 8);
    assert_eq!(lock(&state).consent_challenges_issued, issued);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_through_pcscd_and_the_command_line() {
    let _rig = rig();
    let _patient_lock = patient_reader_lock();

    let pki = Pki::new();
    let files = pki.ca.issue_patient_card("P-0001");
    std::fs::write(pki.path("patient.crt"), &files.cert_pem).unwrap();
    std::fs::write(pki.path("patient.key"), &files.key_pem).unwrap();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    lock(&state).signed_in = true;
    let server = start_gateway(&pki, 0, &state).await;
    let cfg = pki.config(server.addr);

    // The physician's HPKI card in the second reader, and no patient card: the HPKI card is
    // skipped, and the answer is "no patient card" (exit 8), not an error about that card.
    let engine = new_engine();
    let hpki = insert(&engine).await;
    let e = agent::consent(&cfg, None, false).await.unwrap_err();
    assert!(
        matches!(e, AgentError::NoPatientCard { reader: None }),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 8);
    let e = agent::consent(&cfg, Some(READER.into()), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AgentError::NoPatientCard { reader: Some(r) } if r == READER),
        "{e:?}"
    );
    let e = agent::consent(&cfg, Some("No Such Reader 99".into()), false)
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::UnknownReader { .. }), "{e:?}");

    // The patient card goes into the first reader.
    settle().await;
    let vcard = PatientVcard::start(&pki.path("patient.crt"), &pki.path("patient.key"), "P-0001");
    wait_patient_card(true).await;

    let info = agent::consent(&cfg, None, false).await.unwrap();
    assert_eq!(
        (info.patient.as_str(), info.basis),
        ("P-0001", ConsentBasis::PatientCard)
    );
    lock(&state).allow_attest = true;
    let info = agent::consent(&cfg, Some(PATIENT_READER.into()), true)
        .await
        .unwrap();
    assert_eq!(info.basis, ConsentBasis::StaffAttested);

    // The command line.
    let addr = server.addr;
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "consent".into(),
            "--gateway".into(),
            format!("https://{addr}"),
            "--cert".into(),
            pki.path("T.crt").display().to_string(),
            "--key".into(),
            pki.path("T.key").display().to_string(),
            "--ca".into(),
            pki.path("ca.crt").display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (code, out, err) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Consent window open for patient P-0001 until")
            && out.contains("(30 min, patient card)"),
        "{out}"
    );
    assert!(
        out.contains("患者 P-0001 の閲覧同意を受け付けました"),
        "{out}"
    );
    let (code, out, err) = agent_cli(args(&["--reader", PATIENT_READER, "--attest"]), "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("staff attestation"), "{out}");
    let (code, _, err) = agent_cli(args(&["--reader", READER]), "").await;
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("no Sekisho patient card in Virtual PCD 00 01"),
        "{err}"
    );
    assert!(err.contains("患者カードが見つかりません"), "{err}");
    lock(&state).signed_in = false;
    let (code, _, err) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("must sign in"), "{err}");
    {
        let st = lock(&state);
        assert_eq!(st.consents.len(), 4);
        assert_eq!(st.anonymous, 0);
    }

    drop(vcard);
    remove(hpki).await;
    wait_gone().await;
    server.stop().await;
}
