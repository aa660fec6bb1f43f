use std::sync::OnceLock;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

use super::*;
use crate::vcard::PatientCardEngine;

/// A card certificate shaped like the CA's (CN only, one URI SAN), for `sans`, and its key.
fn card_cert(sans: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sekisho patient card");
    params.subject_alt_names = sans
        .iter()
        .map(|s| rcgen::SanType::URI((*s).try_into().unwrap()))
        .collect();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

/// One certificate and key for P-0001, made once.
fn p0001() -> &'static (Vec<u8>, Vec<u8>) {
    static C: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    C.get_or_init(|| card_cert(&["urn:sekisho:patient:P-0001"]))
}

fn engine() -> PatientCardEngine {
    let (cert, key) = p0001();
    PatientCardEngine::new("P-0001", cert.clone(), key).unwrap()
}

fn raw_engine(id: &[u8], cert: &[u8]) -> PatientCardEngine {
    PatientCardEngine::with_files(id.to_vec(), cert.to_vec(), &p0001().1).unwrap()
}

/// Records what the host sends; can replace the card's answer to one instruction.
struct Spy<T: Transport> {
    inner: T,
    sent: Vec<Vec<u8>>,
    replace: Option<(u8, Vec<u8>)>,
}

impl<T: Transport> Spy<T> {
    fn new(inner: T) -> Self {
        Spy {
            inner,
            sent: Vec::new(),
            replace: None,
        }
    }
}

impl<T: Transport> Transport for Spy<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        self.sent.push(apdu.to_vec());
        let answer = self.inner.transmit(apdu)?;
        match &self.replace {
            Some((ins, reply)) if apdu.get(1) == Some(ins) => Ok(reply.clone()),
            _ => Ok(answer),
        }
    }
}

fn verify(cert: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (_, x) = x509_parser::parse_x509_certificate(cert).unwrap();
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        x.public_key().subject_public_key.data.as_ref(),
    )
    .verify(message, signature)
    .is_ok()
}

#[test]
fn reads_and_signs_with_the_documented_apdus() {
    let mut card = PatientCard::new(Spy::new(engine()));
    let identity = card.identity().unwrap();
    assert_eq!(identity.patient_id, "P-0001");
    assert_eq!(identity.certificate, p0001().0);
    let message = b"sekisho-patient-consent:v1\nnonce=abc\n";
    let signature = card.sign(message).unwrap();
    assert!(signature.len() <= 72);
    assert!(verify(&p0001().0, message, &signature));

    let spy = card.into_transport();
    let sent = &spy.sent;
    let mut select = vec![0x00, 0xA4, 0x04, 0x0C, 0x0B];
    select.extend_from_slice(b"\xF0SEKISHOPC\x01");
    assert_eq!(sent[0], select);
    assert_eq!(sent[1], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01]);
    assert_eq!(
        sent[2],
        [0x00, 0xB0, 0x00, 0x00, 65],
        "the id, one byte more than 64"
    );
    assert_eq!(sent[3], [0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x02]);
    assert_eq!(
        sent[4],
        [0x00, 0xB0, 0x00, 0x00, 0x00],
        "the certificate, 256 at a time"
    );
    let pso = sent.last().unwrap();
    assert_eq!(&pso[..5], &[0x00, 0x2A, 0x9E, 0x9A, 0x20]);
    assert_eq!(&pso[5..37], &crate::hpki::sha256(message));
    assert_eq!(pso[37..], [0x00]);
    assert_eq!(spy.inner.signed_digests(), &[crate::hpki::sha256(message)]);
    assert!(
        sent.iter().all(|c| c.len() <= 5 + 255 + 1),
        "short APDUs only"
    );
}

#[test]
fn certificates_longer_than_one_read() {
    // Enough SANs to take the certificate past 256 bytes, the patient's first.
    let mut sans = vec!["urn:sekisho:patient:P9".to_string()];
    sans.extend((0..20).map(|i| format!("https://example.test/{i:04}")));
    let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
    let (cert, key) = card_cert(&refs);
    assert!(cert.len() > 512);
    let mut card = PatientCard::new(PatientCardEngine::new("P9", cert.clone(), &key).unwrap());
    assert_eq!(card.certificate().unwrap(), cert);
    assert!(verify(&cert, b"m", &card.sign(b"m").unwrap()));
}

#[test]
fn other_cards_are_not_patient_cards() {
    // An HPKI card (the virtual HPKI engine) does not know the AID.
    let id = {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        crate::vcard::AppFiles::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap()
    };
    let hpki = crate::vcard::CardEngine::new(id, None, "1234", Default::default()).unwrap();
    let mut card = PatientCard::new(hpki);
    assert!(matches!(
        card.select(),
        Err(PatientCardError::NotPatientCard)
    ));
    assert!(matches!(
        card.patient_id(),
        Err(PatientCardError::NotPatientCard)
    ));
    // A card that answers nothing sensible.
    let mut card = PatientCard::new(Spy::new(engine()));
    card.transport_mut().replace = Some((0xA4, vec![0x6E, 0x00]));
    assert!(matches!(
        card.select(),
        Err(PatientCardError::NotPatientCard)
    ));
}

#[test]
fn hostile_patient_ids_are_refused() {
    let cert = &p0001().0;
    for (id, why) in [
        (&b""[..], "the file is empty"),
        (b"-P1", "not 1 to 64"),
        (b"P 1", "not 1 to 64"),
        (b"P1\n", "not 1 to 64"),
        (b"P1\x00", "not 1 to 64"),
        ("患者".as_bytes(), "not 1 to 64"),
        (b"\xff\xfe", "not UTF-8"),
        (&[b'a'; 65], "longer than 64 bytes"),
        (&[b'a'; 300], "longer than 64 bytes"),
    ] {
        let mut card = PatientCard::new(raw_engine(id, cert));
        match card.patient_id() {
            Err(PatientCardError::BadPatientId(m)) => assert!(m.contains(why), "{id:?}: {m}"),
            other => panic!("{id:?}: {other:?}"),
        }
    }
    let mut card = PatientCard::new(raw_engine(&[b'a'; 64], cert));
    assert_eq!(card.patient_id().unwrap(), "a".repeat(64));
}

#[test]
fn the_certificate_must_name_the_cards_patient() {
    let (cert, _) = p0001();
    // Another id in EF 0001 than in the certificate.
    let mut card = PatientCard::new(raw_engine(b"P-0002", cert));
    assert!(matches!(card.identity(), Err(PatientCardError::IdMismatch)));
    assert!(matches!(
        card.certificate(),
        Err(PatientCardError::IdMismatch)
    ));
    // The id alone still reads.
    assert_eq!(card.patient_id().unwrap(), "P-0002");

    let bad_cert = |sans: &[&str]| {
        let (c, _) = card_cert(sans);
        let mut card = PatientCard::new(raw_engine(b"P1", &c));
        card.identity()
    };
    for sans in [
        &["urn:sekisho:patient:P1", "urn:sekisho:patient:P1"][..],
        &["urn:sekisho:patient:P1", "URN:Sekisho:Patient:P2"],
        &[],
        &["urn:sekisho:terminal:F:T"],
        &["urn:sekisho:patient:-P1"],
        &["urn:sekisho:patient:"],
    ] {
        assert!(
            matches!(bad_cert(sans), Err(PatientCardError::BadCertificate(_))),
            "{sans:?}"
        );
    }
    // Garbage, a truncated file, a header that claims too much.
    for file in [
        vec![0x04, 0x02, 0x00, 0x00],
        vec![0x30],
        cert[..cert.len() - 10].to_vec(),
        vec![0x30, 0x82, 0x13, 0x88, 0x00],
    ] {
        let mut card = PatientCard::new(raw_engine(b"P-0001", &file));
        let err = card.identity().unwrap_err();
        assert!(
            matches!(err, PatientCardError::BadCertificate(_)),
            "{:02x?}: {err}",
            &file[..file.len().min(6)]
        );
    }
    // Trailing bytes after the DER object are not read at all (the header gives the length).
    let mut longer = cert.clone();
    longer.extend_from_slice(&[0xAA; 10]);
    let mut card = PatientCard::new(raw_engine(b"P-0001", &longer));
    assert_eq!(card.certificate().unwrap(), *cert);
}

#[test]
fn signatures_are_checked_for_form() {
    let good = {
        let mut card = PatientCard::new(engine());
        card.sign(b"x").unwrap()
    };
    assert!(check_signature(&good).is_ok());
    let with_sw = |sig: &[u8]| [sig, &[0x90, 0x00]].concat();
    for (reply, what) in [
        (with_sw(&[0x30, 0x00]), "empty sequence"),
        (with_sw(&[]), "nothing"),
        (with_sw(&[0xAA; 81]), "81 bytes"),
        (with_sw(&[0xAA; 64]), "fixed-length r||s"),
        (with_sw(&[&good[..], &[0x00]].concat()), "trailing byte"),
        (
            with_sw(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x81]),
            "negative s",
        ),
        (
            with_sw(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),
            "zero r",
        ),
        (
            with_sw(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01]),
            "non-minimal r",
        ),
        (
            with_sw(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            "long-form length",
        ),
        (with_sw(&[0x30, 0x03, 0x02, 0x01, 0x01]), "one INTEGER"),
    ] {
        let mut card = PatientCard::new(Spy::new(engine()));
        card.transport_mut().replace = Some((0x2A, reply));
        assert!(
            matches!(card.sign(b"x"), Err(PatientCardError::BadSignature(_))),
            "{what}"
        );
    }
    // A card asking for a PIN; a card refusing.
    let mut card = PatientCard::new(Spy::new(engine()));
    card.transport_mut().replace = Some((0x2A, vec![0x69, 0x82]));
    assert!(matches!(
        card.sign(b"x"),
        Err(PatientCardError::PinRequired)
    ));
    card.transport_mut().replace = Some((0x2A, vec![0x6A, 0x80]));
    assert!(matches!(
        card.sign(b"x"),
        Err(PatientCardError::Refused { .. })
    ));
    // A card sending more than Le allows is refused by the APDU layer.
    card.transport_mut().replace = Some((0x2A, [&[0u8; 300][..], &[0x90, 0x00]].concat()));
    assert!(matches!(card.sign(b"x"), Err(PatientCardError::Card(_))));
}

#[test]
fn a_removed_card_is_reported_as_removed() {
    struct Gone;
    impl Transport for Gone {
        fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, CardError> {
            Err(CardError::Removed)
        }
    }
    let mut card = PatientCard::new(Gone);
    assert!(matches!(
        card.identity(),
        Err(PatientCardError::CardRemoved)
    ));
}

#[test]
fn the_engine_refuses_a_mismatched_card() {
    let (cert, key) = p0001();
    assert!(PatientCardEngine::new("P-0002", cert.clone(), key).is_err());
    assert!(PatientCardEngine::new("-bad", cert.clone(), key).is_err());
    let (_, other_key) = card_cert(&["urn:sekisho:patient:P-0001"]);
    assert!(PatientCardEngine::new("P-0001", cert.clone(), &other_key).is_err());
    // Selecting another application deselects; files need the application.
    let mut e = engine();
    assert_eq!(
        e.process(&[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x01]),
        [0x6A, 0x82]
    );
    let mut pso = vec![0x00, 0x2A, 0x9E, 0x9A, 0x20];
    pso.extend_from_slice(&[0u8; 32]);
    pso.push(0x00);
    assert_eq!(e.process(&pso), [0x69, 0x85]);
    let mut fci = vec![0x00, 0xA4, 0x04, 0x00, 0x0B];
    fci.extend_from_slice(&AID);
    fci.push(0x00);
    let answer = e.process(&fci);
    assert_eq!(&answer[..4], &[0x6F, 0x0D, 0x84, 0x0B]);
    assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
    let mut other = vec![0x00, 0xA4, 0x04, 0x0C, 0x05];
    other.extend_from_slice(&crate::hpki::HPKI_RID);
    assert_eq!(e.process(&other), [0x6A, 0x82]);
    assert_eq!(e.process(&pso), [0x69, 0x85]);
}

#[test]
fn patient_id_rule() {
    for ok in ["P0001", "a", "1.2-3_x", &"a".repeat(64)] {
        assert!(is_valid_patient_id(ok), "{ok:?}");
    }
    for bad in [
        "",
        "-P1",
        ".P1",
        "P 1",
        "P/1",
        "P:1",
        "患者",
        &"a".repeat(65),
    ] {
        assert!(!is_valid_patient_id(bad), "{bad:?}");
    }
}
