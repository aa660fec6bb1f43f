//! Every reader of a certificate someone else made: the HPKI verifier (path, profile,
//! identity, hcRole) and its identity reader alone, the hcRole parser, the patient card's
//! certificate (the agent's check and the gateway's verification), and the terminal id of a
//! client certificate.
//!
//! The trust the verifiers use is a fixed test PKI (`fuzz/fixtures/`, made by the seed
//! generator with the certificates of `fuzz/corpus/cert/`), checked at the time it was made,
//! so that the seeds verify and their mutations reach every step.
//!
//! Invariants: what a verifier returns names only display-safe text (no control or invisible
//! characters, at most 128 characters); serials are lowercase hex; a verified identity reads
//! the same without the path check; hcRoles are 1 to 16; a patient id returned is valid and
//! the agent's reader and the gateway's verifier agree on it; a terminal id read from a
//! certificate is valid and round-trips through its URN.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;
use sekisho_ca::hpki::verify::read_unverified;
use sekisho_ca::hpki::{
    HcRoles, HpkiIdentity, HpkiTrustConfig, HpkiVerifier, RevocationScope, hcrole_from_certificate,
    parse_subject_directory_attributes,
};
use sekisho_ca::{PatientCardAnchors, TerminalId, TerminalIdExt, verify_patient_card};
use sekisho_cardreader::patient_card::certificate_patient_id;
use sekisho_fuzz::is_display_safe;
use sekisho_protocol::is_valid_patient_id;

const HPKI_ROOT: &[u8] = include_bytes!("../fixtures/hpki-root.der");
const HPKI_AUTH_CA: &[u8] = include_bytes!("../fixtures/hpki-auth-ca.der");
const HPKI_SIGN_CA: &[u8] = include_bytes!("../fixtures/hpki-sign-ca.der");
const HPKI_ROOT_CRL: &[u8] = include_bytes!("../fixtures/hpki-root.crl");
const HPKI_AUTH_CRL: &[u8] = include_bytes!("../fixtures/hpki-auth-ca.crl");
const HPKI_SIGN_CRL: &[u8] = include_bytes!("../fixtures/hpki-sign-ca.crl");
const ROOT: &[u8] = include_bytes!("../fixtures/root.der");
const PATIENT_CA: &[u8] = include_bytes!("../fixtures/patient-card-ca.der");
/// When the fixtures were made (Unix seconds, text).
const MADE_AT: &str = include_str!("../fixtures/made-at");

struct Trust {
    hpki: HpkiVerifier,
    patient: PatientCardAnchors,
    at: i64,
}

fn trust() -> &'static Trust {
    static T: OnceLock<Trust> = OnceLock::new();
    T.get_or_init(|| Trust {
        hpki: HpkiVerifier::new(&HpkiTrustConfig {
            anchors: vec![HPKI_ROOT.to_vec()],
            intermediates: vec![HPKI_AUTH_CA.to_vec(), HPKI_SIGN_CA.to_vec()],
            crls: vec![
                HPKI_ROOT_CRL.to_vec(),
                HPKI_AUTH_CRL.to_vec(),
                HPKI_SIGN_CRL.to_vec(),
            ],
            revocation: RevocationScope::Chain,
        })
        .expect("the fixed HPKI trust loads"),
        patient: PatientCardAnchors::new(ROOT, PATIENT_CA).expect("the fixed patient-card CA"),
        at: MADE_AT.trim().parse().expect("made-at is Unix seconds"),
    })
}

fn check_roles(roles: &HcRoles) {
    assert!(
        (1..=16).contains(&roles.roles.len()),
        "{}",
        roles.roles.len()
    );
    for role in &roles.roles {
        assert!(is_display_safe(&role.free_text), "{:?}", role.free_text);
        assert!(
            role.scheme.split('.').all(|arc| arc.parse::<u64>().is_ok()),
            "{:?}",
            role.scheme
        );
    }
}

fn check_identity(id: &HpkiIdentity) {
    for text in [&id.common_name]
        .into_iter()
        .chain(id.organization.as_ref())
        .chain(id.holder_id.as_ref())
        .chain(id.country.as_ref())
        .chain(id.kanji_name.as_ref())
        .chain(id.kanji_organization.as_ref())
    {
        assert!(is_display_safe(text), "{text:?}");
    }
    let serial = &id.issuer_serial().serial_hex;
    assert!(
        !serial.is_empty()
            && serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{serial:?}"
    );
    assert!(!id.issuer_serial().issuer.chars().any(char::is_control));
    if let Some(roles) = &id.roles {
        check_roles(roles);
    }
}

fuzz_target!(|der: &[u8]| {
    let trust = trust();

    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(trust.at as u64));
    let verified = trust.hpki.verify(der, at);
    if let Ok(id) = &verified {
        check_identity(id);
    }
    let unverified = read_unverified(der);
    if let Ok(id) = &unverified {
        check_identity(id);
    }
    if let Ok(id) = &verified {
        assert_eq!(
            Some(id),
            unverified.as_ref().ok(),
            "verified but unreadable"
        );
    }

    if let Ok(Some(roles)) = hcrole_from_certificate(der) {
        check_roles(&roles);
    }
    // The input as the extension's value itself, to reach the parser without a certificate.
    if let Ok(Some(roles)) = parse_subject_directory_attributes(der) {
        check_roles(&roles);
    }

    let agent = certificate_patient_id(der);
    if let Ok(id) = &agent {
        assert!(is_valid_patient_id(id), "{id:?}");
    }
    let at = time::OffsetDateTime::from_unix_timestamp(trust.at).expect("a valid time");
    if let Ok(card) = verify_patient_card(&trust.patient, der, at) {
        assert!(is_valid_patient_id(&card.patient_id));
        assert_eq!(agent.ok().as_deref(), Some(card.patient_id.as_str()));
    }

    if let Ok(id) = TerminalId::from_cert_der(der) {
        let again = TerminalId::new(&id.facility, &id.terminal).expect("a valid terminal id");
        assert_eq!(TerminalId::from_urn(&id.urn()).ok().as_ref(), Some(&again));
    }
});
