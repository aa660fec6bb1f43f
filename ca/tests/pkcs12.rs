//! PKCS#12 bundles, read back by OpenSSL 3.

mod common;

use std::fs;
use std::time::Duration;

use common::{new_ca, openssl, openssl_ok};
use sekisho_ca::{
    CaError, KeyAlgorithm, KeyPem, Pkcs12Encryption, TerminalId, pkcs12, pkcs12_with,
};

const DAY: Duration = Duration::from_secs(86_400);
const PW: &str = "4711-0815";

fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[test]
fn openssl_reads_the_bundle() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let t = new_ca(KeyAlgorithm::EcdsaP256);
        let dir = t.dir.path();
        let id = TerminalId::new("hosp1", "reception").unwrap();
        let (cert, key) = t.ca.issue_terminal(&id, 365 * DAY, alg).unwrap();
        let chain = vec![t.ca.issuing_der().to_vec(), t.ca.root_der().to_vec()];
        let p12 = pkcs12(&cert.der, &key, &chain, PW, "Sekisho hosp1/reception").unwrap();
        fs::write(dir.join("f.p12"), &p12).unwrap();

        let passin = format!("pass:{PW}");
        let out = openssl_ok(
            dir,
            &[
                "pkcs12", "-in", "f.p12", "-info", "-nodes", "-passin", &passin,
            ],
            None,
        );
        assert_eq!(
            out.matches("-----BEGIN CERTIFICATE-----").count(),
            3,
            "{out}"
        );
        assert_eq!(
            out.matches("-----BEGIN PRIVATE KEY-----").count(),
            1,
            "{out}"
        );
        for want in [
            "MAC: sha256",
            "PBES2, PBKDF2, AES-256-CBC",
            "PRF hmacWithSHA256",
            "Shrouded Keybag",
            "friendlyName: Sekisho hosp1/reception",
        ] {
            assert!(out.contains(want), "{alg}: {want:?} missing in:\n{out}");
        }
        // Leaf, issuing CA and root are the ones we put in.
        let body: String = out.lines().collect();
        for pem in [cert.pem(), t.ca.issuing_pem(), t.ca.root_pem()] {
            assert!(body.contains(&pem_body(&pem)), "certificate missing");
        }

        // The key OpenSSL extracts belongs to the certificate.
        let key_pem = &out[out.find("-----BEGIN PRIVATE KEY-----").unwrap()
            ..out.find("-----END PRIVATE KEY-----").unwrap() + "-----END PRIVATE KEY-----".len()];
        fs::write(dir.join("k.pem"), key_pem).unwrap();
        fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        let from_key = openssl_ok(dir, &["pkey", "-in", "k.pem", "-pubout"], None);
        let from_cert = openssl_ok(dir, &["x509", "-in", "c.pem", "-noout", "-pubkey"], None);
        assert_eq!(from_key, from_cert, "{alg}");

        // Wrong password: OpenSSL refuses.
        let wrong = openssl(
            dir,
            &[
                "pkcs12",
                "-in",
                "f.p12",
                "-info",
                "-nodes",
                "-passin",
                "pass:0000",
            ],
            None,
        );
        assert!(!wrong.status.success(), "wrong password accepted");
        let err = String::from_utf8_lossy(&wrong.stderr);
        assert!(err.to_lowercase().contains("mac verify"), "{err}");
    }
}

#[test]
fn legacy_bundle_for_old_devices() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    let id = TerminalId::new("f", "t").unwrap();
    let (cert, key) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::Rsa2048)
            .unwrap();
    let p12 = pkcs12_with(
        &cert.der,
        &key,
        &[t.ca.issuing_der().to_vec()],
        PW,
        "legacy",
        Pkcs12Encryption::Legacy3Des,
    )
    .unwrap();
    fs::write(dir.join("l.p12"), &p12).unwrap();
    let out = openssl_ok(
        dir,
        &[
            "pkcs12",
            "-in",
            "l.p12",
            "-info",
            "-nodes",
            "-passin",
            &format!("pass:{PW}"),
        ],
        None,
    );
    assert!(out.contains("MAC: sha1"), "{out}");
    assert!(out.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{out}");
    assert_eq!(
        out.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "{out}"
    );
    assert!(out.contains("-----BEGIN PRIVATE KEY-----"), "{out}");
}

#[test]
fn bad_inputs_are_refused() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("f", "t").unwrap();
    let (cert, key) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let (_, other_key) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();

    let err = pkcs12(&cert.der, &other_key, &[], PW, "x").unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(matches!(
        pkcs12(&cert.der, &key, &[], "", "x"),
        Err(CaError::Pkcs12(_))
    ));
    assert!(matches!(
        pkcs12(&cert.der, &key, &[], PW, ""),
        Err(CaError::Pkcs12(_))
    ));
    assert!(matches!(
        pkcs12(&cert.der, &key, &[], PW, "a\u{1F600}"),
        Err(CaError::Pkcs12(_))
    ));
    assert!(pkcs12(b"\x30\x00", &key, &[], PW, "x").is_err());
    assert!(pkcs12(&cert.der, &key, &[vec![1, 2, 3]], PW, "x").is_err());
    // A Japanese friendly name is fine (BMP characters).
    let p12 = pkcs12(&cert.der, &key, &[], PW, "岡山病院 受付").unwrap();
    assert!(!p12.is_empty());
    // KeyPem round-trips through its PEM text.
    let again = KeyPem::from_pem(key.as_str()).unwrap();
    pkcs12(&cert.der, &again, &[], PW, "x").unwrap();
}
