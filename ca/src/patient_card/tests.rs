use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, SanType,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::authority::{now_seconds, parse_cert};
use crate::keyfile::KeyPem;
use crate::{Authority, CaError, CaOptions, KeyAlgorithm, TerminalId};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    authority: Authority,
    ca: PatientCardCa,
}

fn fixture_with(passphrase: Option<&str>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let authority = Authority::create(
        &dir,
        &CaOptions {
            algorithm: KeyAlgorithm::EcdsaP256,
            passphrase: passphrase.map(str::to_owned),
            name: "Sekisho Test Network".into(),
        },
    )
    .unwrap();
    let ca = ensure_patient_card_ca(&dir, passphrase).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        authority,
        ca,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

fn sign(key: &KeyPem, message: &[u8]) -> Vec<u8> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.der()).unwrap();
    pair.sign(&SystemRandom::new(), message)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// The card profile as issued, for variations signed by the real patient-card CA.
fn card_params(sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, PATIENT_CARD_COMMON_NAME);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &EXT_KEY_USAGE_ARCS,
        eku_extension_value(),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let now = now_seconds();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    params
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn sign_variant(ca: &PatientCardCa, params: &CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
}

fn verify_now(ca: &PatientCardCa, der: &[u8]) -> Result<PatientCard, PatientCardError> {
    verify_patient_card(&ca.anchors(), der, OffsetDateTime::now_utc())
}

#[test]
fn eku_oid_is_the_documented_uuid_oid() {
    assert_eq!(
        eku_oid_content(),
        [
            0x69, 0x82, 0xb4, 0xa7, 0x9f, 0xe5, 0xd0, 0xc8, 0x9a, 0xbb, 0xc7, 0xb2, 0x82, 0x9d,
            0xec, 0x80, 0xb8, 0xf3, 0xc9, 0x35
        ]
    );
    // 2.25.<the UUID as a decimal integer>
    assert_eq!(
        PATIENT_CARD_EKU,
        format!("2.25.{}", PATIENT_CARD_EKU_UUID),
        "the constant and the UUID agree"
    );
}

#[test]
fn patient_id_rule_is_the_gateways() {
    for ok in ["P0001", "a", "1.2-3_x", &"a".repeat(64)] {
        assert!(is_valid_patient_id(ok), "{ok:?}");
    }
    for bad in [
        "",
        "-P1",
        ".P1",
        "_P1",
        "P 1",
        "P/1",
        "P:1",
        "患者",
        "P1\n",
        &"a".repeat(65),
    ] {
        assert!(!is_valid_patient_id(bad), "{bad:?}");
    }
}

#[test]
fn issue_and_verify() {
    let f = fixture();
    let (cert, key) =
        f.ca.issue_patient_card("P-0001.a_b", DEFAULT_PATIENT_CARD_LIFETIME)
            .unwrap();
    let card = verify_now(&f.ca, &cert.der).unwrap();
    assert_eq!(card.patient_id, "P-0001.a_b");
    assert_eq!(card.serial_hex, cert.serial_hex);
    assert_eq!(card.not_after, cert.not_after);
    assert_eq!(cert.serial_hex.len(), 32, "a 16-byte random serial");
    assert!(key.as_str().starts_with("-----BEGIN PRIVATE KEY-----\n"));

    // The profile: nothing identifying in the subject; the SAN, key usage, EKU and key type.
    let (_, x) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
    assert_eq!(x.subject().to_string(), "CN=Sekisho patient card");
    assert_eq!(x.issuer().as_raw(), f.ca.anchors().ca.subject.as_slice());
    let ku = x.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.non_repudiation());
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(!eku.client_auth && !eku.server_auth && !eku.any);
    assert_eq!(eku.other.len(), 1);
    assert_eq!(eku.other[0].as_bytes(), eku_oid_content().as_slice());
    let san = x.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI("urn:sekisho:patient:P-0001.a_b")]
    );
    assert_eq!(
        x.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    assert!(!x.is_ca());
    let lifetime = cert.not_after - cert.not_before;
    assert!(lifetime >= time::Duration::days(1826), "{lifetime}");

    // A consent signature made with the card's key.
    let message = b"sekisho-patient-consent:v1\nnonce=abc\n";
    let signature = sign(&key, message);
    verify_consent_signature(&cert.der, message, &signature).unwrap();

    // Two cards of one patient are two certificates.
    let (second, _) = f.ca.issue_patient_card("P-0001.a_b", YEAR).unwrap();
    assert_ne!(second.serial_hex, cert.serial_hex);
    assert_eq!(
        verify_now(&f.ca, &second.der).unwrap().patient_id,
        "P-0001.a_b"
    );
}

#[test]
fn the_ca_is_made_once_beside_the_others() {
    let f = fixture();
    let crt = f.dir.join("patient-card-ca.crt");
    let key = f.dir.join("patient-card-ca.key");
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), f.ca.ca_pem());
    assert_eq!(f.ca.cert_path(), crt);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    // Again: the same CA, loaded, not replaced.
    let again = ensure_patient_card_ca(&f.dir, None).unwrap();
    assert_eq!(again.ca_der(), f.ca.ca_der());
    assert_eq!(again.root_der(), f.authority.root_der());
    let loaded = PatientCardCa::load(&f.dir, None).unwrap();
    assert_eq!(loaded.ca_der(), f.ca.ca_der());

    // Its certificate: a CA under the root, named apart from the terminal issuing CA.
    let (_, x) = x509_parser::parse_x509_certificate(f.ca.ca_der()).unwrap();
    assert_eq!(
        x.subject().to_string(),
        "O=Sekisho Test Network, CN=Sekisho Test Network Patient Card CA"
    );
    let (_, issuing) = x509_parser::parse_x509_certificate(f.authority.issuing_der()).unwrap();
    assert_ne!(x.subject().as_raw(), issuing.subject().as_raw());
    assert!(x.is_ca());
    assert_eq!(
        x.basic_constraints()
            .unwrap()
            .unwrap()
            .value
            .path_len_constraint,
        Some(0)
    );
    assert!(f.ca.not_after() > now_seconds() + time::Duration::days(3000));

    // The gateway's ways of loading the anchors agree.
    let der = f.ca.issue_patient_card("P1", YEAR).unwrap().0.der;
    let now = OffsetDateTime::now_utc();
    let from_dir = PatientCardAnchors::load(&f.dir).unwrap();
    verify_patient_card(&from_dir, &der, now).unwrap();
    let bundle = PatientCardAnchors::from_pem_bundle(f.ca.anchors_pem().as_bytes()).unwrap();
    verify_patient_card(&bundle, &der, now).unwrap();
    let reversed = f.ca.ca_pem() + &f.authority.root_pem();
    let reversed = PatientCardAnchors::from_pem_bundle(reversed.as_bytes()).unwrap();
    verify_patient_card(&reversed, &der, now).unwrap();
    assert!(matches!(
        PatientCardAnchors::from_pem_bundle(f.ca.ca_pem().as_bytes()),
        Err(PatientCardError::Config(_))
    ));
    // The terminal issuing CA is not a patient-card CA anchor set's CA... but it is a CA under
    // the root: as anchors it would accept only its own (terminal) certificates, which then
    // fail the profile.
    let wrong = PatientCardAnchors::new(f.authority.root_der(), f.authority.issuing_der()).unwrap();
    let (terminal, _) = f
        .authority
        .issue_terminal(
            &TerminalId::new("F1", "T1").unwrap(),
            YEAR,
            KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
    assert!(matches!(
        verify_patient_card(&wrong, &terminal.der, now),
        Err(PatientCardError::WrongProfile(_))
    ));
    // The root twice, or the CA as its own root.
    assert!(PatientCardAnchors::new(f.authority.root_der(), f.authority.root_der()).is_err());
    assert!(PatientCardAnchors::new(f.ca.ca_der(), f.ca.ca_der()).is_err());
}

#[test]
fn a_new_ca_refuses_an_old_patient_card_ca_left_in_the_directory() {
    let f = fixture();
    for name in ["root.crt", "root.key", "issuing.crt", "issuing.key"] {
        std::fs::remove_file(f.dir.join(name)).unwrap();
    }
    let err = Authority::create(
        &f.dir,
        &CaOptions {
            algorithm: KeyAlgorithm::EcdsaP256,
            passphrase: None,
            name: "Other".into(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists { .. }), "{err}");
}

#[test]
fn the_ca_key_follows_the_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    Authority::create(
        &dir,
        &CaOptions {
            algorithm: KeyAlgorithm::EcdsaP256,
            passphrase: Some("correct horse".into()),
            name: "Sekisho Test Network".into(),
        },
    )
    .unwrap();
    // Making it needs the root key, which needs the passphrase; nothing is written without.
    assert!(matches!(
        ensure_patient_card_ca(&dir, None),
        Err(CaError::PassphraseRequired(_))
    ));
    assert!(!dir.join("patient-card-ca.crt").exists());
    assert!(matches!(
        ensure_patient_card_ca(&dir, Some("wrong horse")),
        Err(CaError::WrongPassphrase(_))
    ));
    let ca = ensure_patient_card_ca(&dir, Some("correct horse")).unwrap();
    let key_text = std::fs::read_to_string(dir.join("patient-card-ca.key")).unwrap();
    assert!(key_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    assert!(matches!(
        PatientCardCa::load(&dir, None),
        Err(CaError::PassphraseRequired(_))
    ));
    let loaded = ensure_patient_card_ca(&dir, Some("correct horse")).unwrap();
    assert_eq!(loaded.ca_der(), ca.ca_der());

    // Without the root key (kept offline), an existing patient-card CA still loads, and a
    // missing one is explained.
    std::fs::remove_file(dir.join("root.key")).unwrap();
    PatientCardCa::load(&dir, Some("correct horse")).unwrap();
    std::fs::remove_file(dir.join("patient-card-ca.crt")).unwrap();
    std::fs::remove_file(dir.join("patient-card-ca.key")).unwrap();
    assert!(matches!(
        ensure_patient_card_ca(&dir, Some("correct horse")),
        Err(CaError::RootKeyNeeded(_))
    ));
}

#[test]
fn bad_ids_and_lifetimes_are_refused_at_issue() {
    let f = fixture();
    for bad in ["", "-x", "P 1", "urn:x", &"a".repeat(65), "山田"] {
        assert!(
            matches!(
                f.ca.issue_patient_card(bad, YEAR),
                Err(CaError::InvalidPatientId(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        f.ca.issue_patient_card("P1", YEAR * 20),
        Err(CaError::InvalidLifetime(_))
    ));
    assert!(matches!(
        f.ca.issue_patient_card("P1", Duration::from_secs(10)),
        Err(CaError::InvalidLifetime(_))
    ));
}

#[test]
fn expired_and_not_yet_valid() {
    let f = fixture();
    let (cert, _) = f.ca.issue_patient_card("P1", YEAR).unwrap();
    let anchors = f.ca.anchors();
    let now = OffsetDateTime::now_utc();
    assert!(matches!(
        verify_patient_card(&anchors, &cert.der, now + time::Duration::days(400)),
        Err(PatientCardError::Expired {
            end_entity: true,
            ..
        })
    ));
    assert!(matches!(
        verify_patient_card(&anchors, &cert.der, now - time::Duration::days(1)),
        Err(PatientCardError::NotYetValid { .. })
    ));
    // A card certificate that outlives its CA (not issuable here; forged for the test): the
    // CA's end counts.
    let mut params = card_params(vec![uri("urn:sekisho:patient:P1")]);
    params.not_after = f.ca.not_after() + time::Duration::days(30);
    let der = sign_variant(&f.ca, &params);
    assert!(matches!(
        verify_patient_card(&anchors, &der, f.ca.not_after() + time::Duration::days(1)),
        Err(PatientCardError::Expired {
            end_entity: false,
            ..
        })
    ));
    let msg = verify_patient_card(&anchors, &cert.der, now + time::Duration::days(400))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("patient card's certificate expired on"),
        "{msg}"
    );
}

#[test]
fn certificates_of_other_cas_are_refused() {
    let f = fixture();
    let anchors = f.ca.anchors();
    let now = OffsetDateTime::now_utc();

    // A terminal certificate from the terminal issuing CA of the same root.
    let id = TerminalId::new("F1", "T1").unwrap();
    let (terminal, _) = f
        .authority
        .issue_terminal(&id, YEAR, KeyAlgorithm::EcdsaP256)
        .unwrap();
    assert!(matches!(
        verify_patient_card(&anchors, &terminal.der, now),
        Err(PatientCardError::Untrusted(_))
    ));

    // A CA of one's own with the same names (root and patient-card CA), issuing a card with the
    // right profile.
    let copy_dn = |der: &[u8]| {
        let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
        let mut dn = DistinguishedName::new();
        for o in x.subject().iter_organization() {
            dn.push(DnType::OrganizationName, o.as_str().unwrap());
        }
        for cn in x.subject().iter_common_name() {
            dn.push(DnType::CommonName, cn.as_str().unwrap());
        }
        dn
    };
    let fake_root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = CertificateParams::default();
    root_params.distinguished_name = copy_dn(f.authority.root_der());
    root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let fake_root = root_params.self_signed(&fake_root_key).unwrap();
    let fake_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = copy_dn(f.ca.ca_der());
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let fake_ca = ca_params
        .signed_by(
            &fake_ca_key,
            &Issuer::from_params(&root_params, &fake_root_key),
        )
        .unwrap();
    assert_eq!(
        parse_cert(fake_ca.der()).unwrap().subject().as_raw(),
        parse_cert(f.ca.ca_der()).unwrap().subject().as_raw(),
        "the fake CA's name is the real one, byte for byte"
    );
    let card_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = card_params(vec![uri("urn:sekisho:patient:P1")])
        .signed_by(&card_key, &Issuer::from_params(&ca_params, &fake_ca_key))
        .unwrap();
    let err = verify_patient_card(&anchors, forged.der(), now).unwrap_err();
    assert!(matches!(err, PatientCardError::Untrusted(_)), "{err}");
    // Nor does the fake CA pass as an anchor under the real root.
    assert!(matches!(
        PatientCardAnchors::new(f.authority.root_der(), fake_ca.der()),
        Err(PatientCardError::Config(_))
    ));
    // With the fake anchors it verifies: the test's forgery is otherwise a good card.
    let fake_anchors = PatientCardAnchors::new(fake_root.der(), fake_ca.der()).unwrap();
    verify_patient_card(&fake_anchors, forged.der(), now).unwrap();

    // Another network's patient-card CA.
    let other = fixture();
    let (theirs, _) = other.ca.issue_patient_card("P1", YEAR).unwrap();
    assert!(matches!(
        verify_patient_card(&anchors, &theirs.der, now),
        Err(PatientCardError::Untrusted(_))
    ));
}

#[test]
fn an_issuer_name_from_the_card_is_escaped_in_the_error() {
    let f = fixture();
    let anchors = f.ca.anchors();
    // A card "issued" by a CA whose name carries a terminal escape and a line break.
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Evil\u{1b}[31m CA\nroot: ok");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let card_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let card = card_params(vec![uri("urn:sekisho:patient:P1")])
        .signed_by(&card_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let err = verify_patient_card(&anchors, card.der(), OffsetDateTime::now_utc()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PatientCardError::Untrusted(_)), "{text}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
}

#[test]
fn hpki_certificates_are_refused() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let hpki = crate::hpki::TestHpki::generate(tmp.path()).unwrap();
    for cert in [
        &hpki.doctor,
        &hpki.critical_policy,
        &hpki.auth_ca,
        &hpki.root,
    ] {
        let err = verify_now(&f.ca, &cert.der).unwrap_err();
        assert!(
            matches!(
                err,
                PatientCardError::Untrusted(_) | PatientCardError::Unsupported(_)
            ),
            "{}: {err}",
            cert.name
        );
    }
    // HPKI CAs are not patient-card anchors either (the authentication CA is not issued by
    // Sekisho's root).
    assert!(PatientCardAnchors::new(f.authority.root_der(), &hpki.auth_ca.der).is_err());
}

#[test]
fn wrong_key_usage_and_extended_key_usage() {
    let f = fixture();
    let urn = || vec![uri("urn:sekisho:patient:P1")];
    let refused = |params: &CertificateParams| {
        let der = sign_variant(&f.ca, params);
        verify_now(&f.ca, &der).unwrap_err()
    };
    // The variant machinery makes a good card when nothing is changed.
    verify_now(&f.ca, &sign_variant(&f.ca, &card_params(urn()))).unwrap();

    let mut p = card_params(urn());
    p.custom_extensions.clear();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));
    p.extended_key_usages.clear();
    let err = refused(&p);
    assert!(err.to_string().contains("no extended key usage"), "{err}");

    let mut p = card_params(urn());
    p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));
    p.key_usages.clear();
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));

    // A CA certificate with the card profile otherwise.
    let mut p = card_params(urn());
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    assert!(matches!(refused(&p), PatientCardError::WrongProfile(_)));

    // A P-384 key.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let der = card_params(urn())
        .signed_by(&key, &f.ca.issuer)
        .unwrap()
        .der()
        .to_vec();
    assert!(matches!(
        verify_now(&f.ca, &der),
        Err(PatientCardError::WrongProfile(_))
    ));

    // Unknown critical extension; certificatePolicies, which this profile does not process,
    // critical.
    for oid in [&[1u64, 3, 6, 1, 4, 1, 99999, 1][..], &[2, 5, 29, 32]] {
        let mut p = card_params(urn());
        let mut ext = CustomExtension::from_oid_content(oid, vec![0x30, 0x00]);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
        assert!(
            matches!(refused(&p), PatientCardError::Unsupported(_)),
            "{oid:?}"
        );
    }
    // Non-critical, an unknown extension is ignored.
    let mut p = card_params(urn());
    p.custom_extensions.push(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        vec![0x30, 0x00],
    ));
    verify_now(&f.ca, &sign_variant(&f.ca, &p)).unwrap();
}

#[test]
fn patient_names_in_the_certificate() {
    let f = fixture();
    let check = |sans: Vec<SanType>| {
        let der = sign_variant(&f.ca, &card_params(sans));
        verify_now(&f.ca, &der)
    };
    assert_eq!(
        check(vec![uri("urn:sekisho:patient:P1")])
            .unwrap()
            .patient_id,
        "P1"
    );
    assert_eq!(
        check(vec![
            uri("urn:sekisho:patient:P1"),
            uri("urn:sekisho:patient:P2")
        ]),
        Err(PatientCardError::SeveralPatientIds)
    );
    assert_eq!(
        check(vec![
            uri("urn:sekisho:patient:P1"),
            uri("URN:SEKISHO:PATIENT:P2")
        ]),
        Err(PatientCardError::SeveralPatientIds)
    );
    assert_eq!(check(vec![]), Err(PatientCardError::NoPatientId));
    assert_eq!(
        check(vec![uri("urn:sekisho:terminal:F1:T1")]),
        Err(PatientCardError::NoPatientId)
    );
    for bad in [
        "urn:sekisho:patient:",
        "urn:sekisho:patient:-P1",
        "urn:sekisho:patient:P1/x",
        "urn:sekisho:patient:P1:x",
        "URN:SEKISHO:PATIENT:P1",
    ] {
        assert!(
            matches!(
                check(vec![uri(bad)]),
                Err(PatientCardError::InvalidPatientId(_))
            ),
            "{bad}"
        );
    }
    let long = format!("urn:sekisho:patient:{}", "a".repeat(65));
    assert!(matches!(
        check(vec![uri(&long)]),
        Err(PatientCardError::InvalidPatientId(_))
    ));
    // Anything else beside the patient: refused, so that no other software reads another name.
    let dns = SanType::DnsName("card.example".try_into().unwrap());
    assert!(matches!(
        check(vec![uri("urn:sekisho:patient:P1"), dns]),
        Err(PatientCardError::WrongProfile(_))
    ));
}

#[test]
fn hostile_bytes_are_refused_without_panic() {
    let f = fixture();
    let (cert, _) = f.ca.issue_patient_card("P1", YEAR).unwrap();
    let anchors = f.ca.anchors();
    let now = OffsetDateTime::now_utc();
    let mut trailing = cert.der.clone();
    trailing.push(0);
    assert!(matches!(
        verify_patient_card(&anchors, &trailing, now),
        Err(PatientCardError::Malformed(_))
    ));
    assert!(matches!(
        verify_patient_card(&anchors, &vec![0x30; MAX_PATIENT_CARD_CERT + 1], now),
        Err(PatientCardError::Malformed(_))
    ));
    for len in [0, 1, 10, cert.der.len() / 2, cert.der.len() - 1] {
        assert!(verify_patient_card(&anchors, &cert.der[..len], now).is_err());
    }
    // Every single-bit change is refused, in the unsigned outer algorithm identifier too (an
    // OBJECT IDENTIFIER tag changed to 07 still decodes as the same OID); none panics.
    for i in 0..cert.der.len() {
        let mut bad = cert.der.clone();
        bad[i] ^= 0x01;
        assert!(
            verify_patient_card(&anchors, &bad, now).is_err(),
            "byte {i} changed and still accepted"
        );
    }
}

#[test]
fn consent_signatures() {
    let f = fixture();
    let (cert, key) = f.ca.issue_patient_card("P1", YEAR).unwrap();
    let message = b"sekisho-patient-consent:v1\nnonce=1\n";
    let signature = sign(&key, message);
    verify_consent_signature(&cert.der, message, &signature).unwrap();

    // Tampered message.
    assert_eq!(
        verify_consent_signature(
            &cert.der,
            b"sekisho-patient-consent:v1\nnonce=2\n",
            &signature
        ),
        Err(PatientCardError::BadSignature)
    );
    // Signed by another key (another card's).
    let (_, other_key) = f.ca.issue_patient_card("P1", YEAR).unwrap();
    assert_eq!(
        verify_consent_signature(&cert.der, message, &sign(&other_key, message)),
        Err(PatientCardError::BadSignature)
    );
    // Tampered signature, empty, oversized, fixed-length (not DER).
    let mut bad = signature.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(verify_consent_signature(&cert.der, message, &bad).is_err());
    assert!(verify_consent_signature(&cert.der, message, &[]).is_err());
    assert!(verify_consent_signature(&cert.der, message, &[0x30; 81]).is_err());
    let fixed = {
        let pair = EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.der(),
        )
        .unwrap();
        pair.sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    assert!(verify_consent_signature(&cert.der, message, &fixed).is_err());
    // A certificate whose key is not P-256 (an RSA terminal certificate).
    let (rsa, _) = f
        .authority
        .issue_terminal(
            &TerminalId::new("F1", "T1").unwrap(),
            YEAR,
            KeyAlgorithm::Rsa2048,
        )
        .unwrap();
    assert!(matches!(
        verify_consent_signature(&rsa.der, message, &signature),
        Err(PatientCardError::WrongProfile(_))
    ));
}
