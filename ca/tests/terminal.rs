//! Terminal and server certificates: their contents, as x509-parser and OpenSSL see them.

mod common;

use std::fs;
use std::net::IpAddr;
use std::time::Duration;

use common::{new_ca, openssl_ok};
use sekisho_ca::{CaError, KeyAlgorithm, TerminalId, TerminalIdExt, serial_hex};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

fn sans<'a>(cert: &'a X509Certificate<'a>) -> Vec<GeneralName<'a>> {
    cert.subject_alternative_name()
        .unwrap()
        .expect("SAN present")
        .value
        .general_names
        .clone()
}

#[test]
fn terminal_certificate_profile() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("hosp-0042", "nurse-station.3").unwrap();
    let (cert, key) =
        t.ca.issue_terminal(&id, 365 * DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let (rest, x) = parse_x509_certificate(&cert.der).unwrap();
    assert!(rest.is_empty());

    assert_eq!(x.subject().to_string(), "O=hosp-0042, CN=nurse-station.3");
    let (_, issuing) = parse_x509_certificate(t.ca.issuing_der()).unwrap();
    assert_eq!(x.issuer(), issuing.subject());
    x.verify_signature(Some(issuing.public_key())).unwrap();

    assert_eq!(
        sans(&x),
        vec![GeneralName::URI(
            "urn:sekisho:terminal:hosp-0042:nurse-station.3"
        )]
    );

    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth && !eku.any && !eku.code_signing && !eku.email_protection);
    assert!(!eku.time_stamping && !eku.ocsp_signing && eku.other.is_empty());

    let bc = x.basic_constraints().unwrap().expect("basicConstraints");
    assert!(!bc.value.ca);
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!ku.key_encipherment() && !ku.key_cert_sign() && !ku.crl_sign());

    // Serial: 16 bytes, positive, reported without a sign byte.
    assert_eq!(x.raw_serial().len(), 16);
    assert!(x.raw_serial()[0] < 0x80);
    assert_eq!(cert.serial_hex, hex::encode(x.raw_serial()));
    assert_eq!(serial_hex(&cert.der).unwrap(), cert.serial_hex);

    // Validity: 5 minutes back-dated, lifetime counted from now; reported = encoded.
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    assert_eq!((nb, na), (cert.not_before, cert.not_after));
    assert_eq!(
        na - nb,
        ::time::Duration::days(365) + ::time::Duration::minutes(5)
    );
    let now = ::time::OffsetDateTime::now_utc();
    assert!(
        (now - ::time::Duration::minutes(6)..now).contains(&nb),
        "{nb}"
    );

    // The key handed out is the certificate's key.
    let pair = rcgen::KeyPair::try_from(key.der()).unwrap();
    assert_eq!(
        pair.public_key_raw(),
        x.public_key().subject_public_key.data.as_ref()
    );
    assert!(key.as_str().starts_with("-----BEGIN PRIVATE KEY-----\n"));

    assert_eq!(TerminalId::from_cert_der(&cert.der).unwrap(), id);
    assert!(cert.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));

    // OpenSSL: the chain verifies for TLS client use, and not for server use.
    let dir = t.dir.path().join("ca");
    fs::write(dir.join("leaf.crt"), cert.pem()).unwrap();
    let out = openssl_ok(
        &dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "issuing.crt",
            "-purpose",
            "sslclient",
            "leaf.crt",
        ],
        None,
    );
    assert!(out.contains("leaf.crt: OK"), "{out}");
    let out = common::openssl(
        &dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "issuing.crt",
            "-purpose",
            "sslserver",
            "leaf.crt",
        ],
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn rsa_terminal_key_gets_key_encipherment() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("clinic7", "pc1").unwrap();
    let (cert, key) =
        t.ca.issue_terminal(&id, 30 * DAY, KeyAlgorithm::Rsa2048)
            .unwrap();
    let (_, x) = parse_x509_certificate(&cert.der).unwrap();
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    match x.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
        other => panic!("expected RSA, got {other:?}"),
    }
    let dir = t.dir.path();
    fs::write(dir.join("t.key"), key.as_str()).unwrap();
    let out = openssl_ok(dir, &["pkey", "-in", "t.key", "-noout", "-text"], None);
    assert!(out.contains("Private-Key: (2048 bit"), "{out}");
}

#[test]
fn lifetime_limits() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("f", "t").unwrap();
    let err =
        t.ca.issue_terminal(&id, 6 * 365 * DAY, KeyAlgorithm::EcdsaP256)
            .unwrap_err();
    assert!(matches!(err, CaError::InvalidLifetime(_)), "{err:?}");
    assert!(err.to_string().contains("issuing CA"), "{err}");
    let err =
        t.ca.issue_terminal(&id, Duration::from_secs(1), KeyAlgorithm::EcdsaP256)
            .unwrap_err();
    assert!(matches!(err, CaError::InvalidLifetime(_)), "{err:?}");
    // An id put together by hand, bypassing the constructor, is still checked.
    let forged = TerminalId {
        facility: "a:b".into(),
        terminal: "t".into(),
    };
    let err =
        t.ca.issue_terminal(&forged, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap_err();
    assert!(matches!(err, CaError::InvalidId { .. }), "{err:?}");
}

#[test]
fn serials_differ() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("f", "t").unwrap();
    let a =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap()
            .0;
    let b =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap()
            .0;
    assert_ne!(a.serial_hex, b.serial_hex);
}

#[test]
fn from_cert_der_needs_exactly_one_terminal_urn() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let (server, _) =
        t.ca.issue_server(&["gw.example.jp".into()], &[], DAY)
            .unwrap();
    assert!(matches!(
        TerminalId::from_cert_der(&server.der),
        Err(CaError::NoTerminalUrn)
    ));
    assert!(matches!(
        TerminalId::from_cert_der(b"\x30\x00"),
        Err(CaError::BadCertificate(_))
    ));

    // Certificates not made by us: two URNs, or a malformed one.
    let make = |uris: &[&str]| {
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let kp = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&kp).unwrap().der().to_vec()
    };
    let two = make(&["urn:sekisho:terminal:a:b", "urn:sekisho:terminal:a:c"]);
    assert!(matches!(
        TerminalId::from_cert_der(&two),
        Err(CaError::SeveralTerminalUrns)
    ));
    let odd = make(&["https://example.jp/", "URN:Sekisho:Terminal:a:b"]);
    assert!(matches!(
        TerminalId::from_cert_der(&odd),
        Err(CaError::NotTerminalUrn(_))
    ));
    let one = make(&["https://example.jp/", "urn:sekisho:terminal:a:b"]);
    assert_eq!(
        TerminalId::from_cert_der(&one).unwrap(),
        TerminalId::new("a", "b").unwrap()
    );
}

#[test]
fn server_certificate_profile() {
    let t = new_ca(KeyAlgorithm::Rsa2048);
    let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let (cert, _key) =
        t.ca.issue_server(
            &["sekisho.example.jp".into(), "localhost".into()],
            &ips,
            90 * DAY,
        )
        .unwrap();
    let (_, x) = parse_x509_certificate(&cert.der).unwrap();
    assert_eq!(
        x.subject().to_string(),
        "O=Sekisho Test Network, CN=sekisho.example.jp"
    );
    let names = sans(&x);
    assert!(names.contains(&GeneralName::DNSName("sekisho.example.jp")));
    assert!(names.contains(&GeneralName::DNSName("localhost")));
    assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
    assert_eq!(names.len(), 4);
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
    assert!(x.iter_extensions().any(|e| matches!(
        e.parsed_extension(),
        ParsedExtension::AuthorityKeyIdentifier(_)
    )));

    for bad in ["", "has space.jp", "127.0.0.1", "a..b"] {
        let err = t.ca.issue_server(&[bad.to_owned()], &[], DAY).unwrap_err();
        assert!(
            matches!(err, CaError::InvalidServerName(_)),
            "{bad:?}: {err:?}"
        );
    }
    assert!(t.ca.issue_server(&[], &[], DAY).is_err());
    // IP only: the CN is the address.
    let (cert, _) = t.ca.issue_server(&[], &ips[..1], DAY).unwrap();
    let (_, x) = parse_x509_certificate(&cert.der).unwrap();
    assert_eq!(
        x.subject().to_string(),
        "O=Sekisho Test Network, CN=127.0.0.1"
    );
}
