//! Creating and loading the CA directory.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{new_ca, openssl, openssl_ok};
use sekisho_ca::{Authority, CaError, CaOptions, KeyAlgorithm, TerminalId};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::*;

const FILES: [&str; 4] = ["root.crt", "root.key", "issuing.crt", "issuing.key"];

fn opts(passphrase: Option<&str>) -> CaOptions {
    CaOptions {
        algorithm: KeyAlgorithm::EcdsaP256,
        passphrase: passphrase.map(str::to_owned),
        name: "Sekisho Demo Network".into(),
    }
}

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ski(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

#[test]
fn create_then_load_without_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let created = Authority::create(&dir, &opts(None)).unwrap();
    for f in FILES {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("issuing.key")), 0o600);
    assert_eq!(mode(&dir.join("issuing.crt")), 0o644);
    // Nothing else (no temporary files) is left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 4);
    let key_text = fs::read_to_string(dir.join("issuing.key")).unwrap();
    assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    let loaded = Authority::load(&dir, None).unwrap();
    assert_eq!(loaded.root_der(), created.root_der());
    assert_eq!(loaded.issuing_der(), created.issuing_der());
    assert_eq!(loaded.name(), "Sekisho Demo Network");
    assert_eq!(
        fs::read_to_string(dir.join("root.crt")).unwrap(),
        loaded.root_pem()
    );
    assert_eq!(
        loaded.chain_pem(),
        loaded.issuing_pem() + &loaded.root_pem()
    );
    // A passphrase given for an unencrypted key does no harm.
    Authority::load(&dir, Some("unused")).unwrap();

    // The loaded CA issues certificates and CRLs that chain to the created one.
    let (_, issuing) = parse_x509_certificate(created.issuing_der()).unwrap();
    let id = TerminalId::new("f1", "t1").unwrap();
    let (cert, _) = loaded
        .issue_terminal(&id, Duration::from_secs(3600), KeyAlgorithm::EcdsaP256)
        .unwrap();
    let (_, leaf) = parse_x509_certificate(&cert.der).unwrap();
    leaf.verify_signature(Some(issuing.public_key())).unwrap();
    assert_eq!(aki(&leaf), ski(&issuing));
    let now = ::time::OffsetDateTime::now_utc();
    let crl = loaded
        .crl(&[], 1, now, now + ::time::Duration::hours(1))
        .unwrap();
    sekisho_ca::parse_crl(&crl.der, created.issuing_der()).unwrap();
}

#[test]
fn shared_types_are_thread_safe_and_keep_secrets_out_of_logs() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Authority>();
    send_sync::<sekisho_ca::KeyPem>();
    send_sync::<CaError>();
    let o = opts(Some("very secret"));
    assert!(!format!("{o:?}").contains("very secret"));
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    assert!(!format!("{:?}", t.ca).contains("PRIVATE"));
}

#[test]
fn ca_certificates_have_the_right_profile() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let (_, root) = parse_x509_certificate(t.ca.root_der()).unwrap();
    let (_, issuing) = parse_x509_certificate(t.ca.issuing_der()).unwrap();

    assert_eq!(root.subject(), root.issuer());
    assert_eq!(issuing.issuer(), root.subject());
    assert_eq!(
        root.subject().to_string(),
        "O=Sekisho Test Network, CN=Sekisho Test Network Root CA"
    );
    assert_eq!(
        issuing.subject().to_string(),
        "O=Sekisho Test Network, CN=Sekisho Test Network Issuing CA"
    );
    let root_bc = root.basic_constraints().unwrap().unwrap();
    assert!(root_bc.critical && root_bc.value.ca);
    assert_eq!(root_bc.value.path_len_constraint, Some(1));
    let issuing_bc = issuing.basic_constraints().unwrap().unwrap();
    assert!(issuing_bc.value.ca);
    assert_eq!(issuing_bc.value.path_len_constraint, Some(0));
    for cert in [&root, &issuing] {
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature());
        assert!(cert.extended_key_usage().unwrap().is_none());
        assert_eq!(cert.raw_serial().len(), 16);
    }
    // webpki and path building need SKI/AKI linking the issuing CA to the root.
    assert!(ski(&root).is_some());
    assert!(ski(&issuing).is_some());
    assert_eq!(aki(&issuing), ski(&root));
    issuing.verify_signature(Some(root.public_key())).unwrap();

    let days = |c: &X509Certificate<'_>| {
        (c.validity().not_after.to_datetime() - c.validity().not_before.to_datetime()).whole_days()
    };
    assert!(
        (3652..=3654).contains(&days(&root)),
        "root {} days",
        days(&root)
    );
    assert!(
        (1826..=1828).contains(&days(&issuing)),
        "issuing {} days",
        days(&issuing)
    );

    // OpenSSL agrees that the chain is good.
    let dir = t.dir.path().join("ca");
    let out = openssl_ok(
        &dir,
        &["verify", "-CAfile", "root.crt", "issuing.crt"],
        None,
    );
    assert!(out.contains("issuing.crt: OK"), "{out}");
}

#[test]
fn passphrase_protects_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let pass = "kanja-renkei 2026!";
    let created = Authority::create(&dir, &opts(Some(pass))).unwrap();
    for key in ["root.key", "issuing.key"] {
        let text = fs::read_to_string(dir.join(key)).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{key}"
        );
        assert_eq!(mode(&dir.join(key)), 0o600);
    }

    let loaded = Authority::load(&dir, Some(pass)).unwrap();
    assert_eq!(loaded.issuing_der(), created.issuing_der());

    let err = Authority::load(&dir, Some("kanja-renkei 2025!")).unwrap_err();
    assert!(matches!(err, CaError::WrongPassphrase(_)), "{err:?}");
    assert!(err.to_string().contains("passphrase"), "{err}");
    assert!(err.to_string().contains("issuing.key"), "{err}");

    let err = Authority::load(&dir, None).unwrap_err();
    assert!(matches!(err, CaError::PassphraseRequired(_)), "{err:?}");
    assert!(err.to_string().contains("passphrase is needed"), "{err}");

    // OpenSSL reads the encrypted keys, and sees PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC.
    let passin = format!("pass:{pass}");
    for key in ["issuing.key", "root.key"] {
        let out = openssl_ok(
            &dir,
            &["pkey", "-in", key, "-passin", &passin, "-noout", "-text"],
            None,
        );
        assert!(out.contains("ASN1 OID: prime256v1"), "{out}");
    }
    let out = openssl_ok(&dir, &["asn1parse", "-in", "issuing.key"], None);
    for alg in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
        assert!(out.contains(alg), "{alg} missing in:\n{out}");
    }
    let wrong = openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "issuing.key",
            "-passin",
            "pass:nope",
            "-noout",
        ],
        None,
    );
    assert!(!wrong.status.success());

    // The public key OpenSSL derives from the decrypted key is the issuing certificate's.
    let from_key = openssl_ok(
        &dir,
        &["pkey", "-in", "issuing.key", "-passin", &passin, "-pubout"],
        None,
    );
    let from_cert = openssl_ok(
        &dir,
        &["x509", "-in", "issuing.crt", "-noout", "-pubkey"],
        None,
    );
    assert_eq!(from_key, from_cert);
}

#[test]
fn create_refuses_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    Authority::create(&dir, &opts(None)).unwrap();
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect();

    let err = Authority::create(&dir, &opts(None)).unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    let after: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| fs::read(dir.join(f)).unwrap())
        .collect();
    assert_eq!(before, after, "existing CA untouched");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 4);

    // Even one leftover file (say, from an interrupted copy) blocks creation.
    let dir2 = tmp.path().join("partial");
    fs::create_dir(&dir2).unwrap();
    fs::write(dir2.join("issuing.crt"), b"x").unwrap();
    let err = Authority::create(&dir2, &opts(None)).unwrap_err();
    assert!(err.to_string().contains("issuing.crt"), "{err}");
    assert_eq!(fs::read_dir(&dir2).unwrap().count(), 1);
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let err = Authority::create(&dir, &opts(Some(""))).unwrap_err();
    assert!(matches!(err, CaError::EmptyPassphrase), "{err:?}");
    let mut o = opts(None);
    o.name = "  ".into();
    assert!(matches!(
        Authority::create(&dir, &o),
        Err(CaError::InvalidCaName(_))
    ));
    o.name = "x".repeat(55);
    assert!(matches!(
        Authority::create(&dir, &o),
        Err(CaError::InvalidCaName(_))
    ));
    assert!(!dir.exists());
    // A Japanese network name is fine.
    o.name = "おかやま医療連携ネットワーク".into();
    let ca = Authority::create(&dir, &o).unwrap();
    let (_, root) = parse_x509_certificate(ca.root_der()).unwrap();
    assert_eq!(
        root.subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "おかやま医療連携ネットワーク"
    );
}

#[test]
fn load_reports_missing_and_mismatched_files() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Authority::load(tmp.path(), None).unwrap_err();
    assert!(matches!(err, CaError::Missing(_)), "{err:?}");
    assert!(err.to_string().starts_with("no CA found"), "{err}");

    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    Authority::create(&a, &opts(None)).unwrap();
    Authority::create(&b, &opts(None)).unwrap();
    fs::copy(b.join("issuing.key"), a.join("issuing.key")).unwrap();
    let err = Authority::load(&a, None).unwrap_err();
    assert!(matches!(err, CaError::Inconsistent { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not the key of issuing.crt"),
        "{err}"
    );

    fs::copy(b.join("root.crt"), a.join("root.crt")).unwrap();
    let err = Authority::load(&a, None).unwrap_err();
    assert!(err.to_string().contains("not signed by root.crt"), "{err}");
}

#[test]
fn rsa_ca_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let mut o = opts(Some("rsa pass"));
    o.algorithm = KeyAlgorithm::Rsa2048;
    let created = Authority::create(&dir, &o).unwrap();
    let loaded = Authority::load(&dir, Some("rsa pass")).unwrap();
    assert_eq!(loaded.root_der(), created.root_der());
    let out = openssl_ok(
        &dir,
        &[
            "pkey",
            "-in",
            "root.key",
            "-passin",
            "pass:rsa pass",
            "-noout",
            "-text",
        ],
        None,
    );
    assert!(out.contains("Private-Key: (2048 bit"), "{out}");
    let out = openssl_ok(
        &dir,
        &["verify", "-CAfile", "root.crt", "issuing.crt"],
        None,
    );
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn key_algorithm_names() {
    assert_eq!(
        "ecdsa-p256".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::EcdsaP256
    );
    assert_eq!(
        "RSA2048".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::Rsa2048
    );
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::EcdsaP256);
    assert_eq!(KeyAlgorithm::Rsa2048.to_string(), "rsa2048");
    assert!("dsa".parse::<KeyAlgorithm>().is_err());
}
