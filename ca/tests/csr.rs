//! Signing CSRs made by OpenSSL, including hostile ones: only the key may be taken from them.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{TestCa, new_ca, openssl, openssl_ok};
use sekisho_ca::{CaError, KeyAlgorithm, TerminalId, TerminalIdExt};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);
const WEIRD_EXT_OID: &str = "1.2.3.4.5";

/// Makes a CSR with `openssl req`, returning (PEM bytes, DER bytes).
fn openssl_csr(dir: &Path, name: &str, key_args: &[&str], extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr];
    args.extend_from_slice(key_args);
    args.extend_from_slice(extra);
    openssl_ok(dir, &args, None);
    let der_name = format!("{name}.der");
    openssl_ok(
        dir,
        &["req", "-in", &csr, "-outform", "DER", "-out", &der_name],
        None,
    );
    (
        fs::read(dir.join(&csr)).unwrap(),
        fs::read(dir.join(&der_name)).unwrap(),
    )
}

/// The subjectPublicKey bits of the CSR, as OpenSSL wrote them.
fn csr_key_bits(der: &[u8]) -> Vec<u8> {
    let (_, csr) = X509CertificationRequest::from_der(der).unwrap();
    csr.certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .to_vec()
}

fn check_ours(t: &TestCa, cert_der: &[u8], id: &TerminalId) {
    let (_, x) = parse_x509_certificate(cert_der).unwrap();
    assert_eq!(
        x.subject().to_string(),
        format!("O={}, CN={}", id.facility, id.terminal)
    );
    let sans = &x
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    let urn = id.urn();
    assert_eq!(sans, &vec![GeneralName::URI(urn.as_str())]);
    let eku = x.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.code_signing && eku.other.is_empty());
    assert!(!x.basic_constraints().unwrap().unwrap().value.ca);
    // Exactly our extensions, nothing carried over from the request.
    let mut oids: Vec<String> = x
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    oids.sort();
    assert_eq!(
        oids,
        vec![
            "2.5.29.14",
            "2.5.29.15",
            "2.5.29.17",
            "2.5.29.19",
            "2.5.29.35",
            "2.5.29.37"
        ],
        "SKI, KU, SAN, BC, AKI, EKU only"
    );
    let (_, issuing) = parse_x509_certificate(t.ca.issuing_der()).unwrap();
    x.verify_signature(Some(issuing.public_key())).unwrap();
    assert_eq!(TerminalId::from_cert_der(cert_der).unwrap(), *id);
}

#[test]
fn hostile_ec_csr_gets_our_names_only() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    let (pem, der) = openssl_csr(
        dir,
        "evil",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &[
            "-subj",
            "/CN=evil/O=other",
            "-addext",
            "subjectAltName=URI:urn:sekisho:terminal:x:y",
            "-addext",
            &format!("{WEIRD_EXT_OID}=ASN1:UTF8String:weird"),
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:5",
            "-addext",
            "extendedKeyUsage=serverAuth,codeSigning",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    // rcgen's own CSR parser refuses this request, which is why we do not use it.
    assert!(
        rcgen::CertificateSigningRequestParams::from_pem(std::str::from_utf8(&pem).unwrap())
            .is_err()
    );

    let id = TerminalId::new("hosp-9", "desk-1").unwrap();
    let cert = t.ca.sign_csr(&pem, &id, 90 * DAY).unwrap();
    check_ours(&t, &cert.der, &id);
    let (_, x) = parse_x509_certificate(&cert.der).unwrap();
    assert_eq!(
        x.public_key().subject_public_key.data.as_ref(),
        csr_key_bits(&der)
    );
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    assert_eq!(
        cert.not_after - cert.not_before,
        ::time::Duration::days(90) + ::time::Duration::minutes(5)
    );
    let text = String::from_utf8_lossy(&cert.der).to_string();
    assert!(!text.contains("evil") && !text.contains("weird") && !text.contains("x:y"));

    // DER input works the same, and the key OpenSSL kept is the certificate's key.
    let cert2 = t.ca.sign_csr(&der, &id, DAY).unwrap();
    check_ours(&t, &cert2.der, &id);
    fs::write(dir.join("evil.crt"), cert2.pem()).unwrap();
    let from_key = openssl_ok(dir, &["pkey", "-in", "evil.key", "-pubout"], None);
    let from_cert = openssl_ok(dir, &["x509", "-in", "evil.crt", "-noout", "-pubkey"], None);
    assert_eq!(from_key, from_cert);
}

#[test]
fn windows_style_csr_is_accepted() {
    // Windows certreq puts Microsoft-specific extensions (certificate template name, as a
    // BMPString) and attributes in its requests; we must not choke on them.
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    fs::write(
        dir.join("win.cnf"),
        "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\nreq_extensions = ext\n\
         [dn]\nCN = WIN-PC01.corp.example\n\
         [attrs]\nchallengePassword = secret123\nunstructuredName = WIN-PC01\n\
         [ext]\n1.3.6.1.4.1.311.20.2 = ASN1:BMPSTRING:User\n\
         1.3.6.1.4.1.311.21.10 = ASN1:SEQUENCE:apps\nsubjectKeyIdentifier = hash\n\
         [apps]\nitem = SEQUENCE:app1\n[app1]\noid = OID:1.3.6.1.5.5.7.3.2\n",
    )
    .unwrap();
    let (pem, _) = openssl_csr(
        dir,
        "win",
        &["-newkey", "rsa:2048", "-config", "win.cnf"],
        &[],
    );
    let id = TerminalId::new("clinic-3", "WIN-PC01").unwrap();
    let cert = t.ca.sign_csr(&pem, &id, DAY).unwrap();
    check_ours(&t, &cert.der, &id);
    let (_, x) = parse_x509_certificate(&cert.der).unwrap();
    let ku = x.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment(), "RSA key");
}

#[test]
fn rsa_and_p384_csrs_are_accepted() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    for (name, key_args) in [
        ("rsa2048", vec!["-newkey", "rsa:2048"]),
        ("rsa4096", vec!["-newkey", "rsa:4096"]),
        (
            "p384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
    ] {
        let (pem, der) = openssl_csr(dir, name, &key_args, &["-subj", "/CN=x"]);
        let id = TerminalId::new("f", name).unwrap();
        let cert =
            t.ca.sign_csr(&pem, &id, DAY)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_ours(&t, &cert.der, &id);
        let (_, x) = parse_x509_certificate(&cert.der).unwrap();
        assert_eq!(
            x.public_key().subject_public_key.data.as_ref(),
            csr_key_bits(&der)
        );
        // And OpenSSL accepts the chain for a TLS client.
        let crt = format!("{name}.crt");
        fs::write(dir.join(&crt), cert.pem()).unwrap();
        let out = openssl_ok(
            &dir.join("ca"),
            &[
                "verify",
                "-CAfile",
                "root.crt",
                "-untrusted",
                "issuing.crt",
                "-purpose",
                "sslclient",
                &format!("../{crt}"),
            ],
            None,
        );
        assert!(out.contains(": OK"), "{name}: {out}");
    }
}

#[test]
fn unsupported_keys_are_refused_clearly() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    let id = TerminalId::new("f", "t").unwrap();
    for (name, key_args, expect) in [
        (
            "rsa1024",
            vec!["-newkey", "rsa:1024"],
            "RSA key of 1024 bits",
        ),
        (
            "rsa4160",
            vec!["-newkey", "rsa:4160"],
            "RSA key of 4160 bits",
        ),
        (
            "k1",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            "curve",
        ),
        ("ed", vec!["-newkey", "ed25519"], "key algorithm"),
    ] {
        let (pem, _) = openssl_csr(dir, name, &key_args, &["-subj", "/CN=x"]);
        let err = t.ca.sign_csr(&pem, &id, DAY).unwrap_err();
        assert!(matches!(err, CaError::UnsupportedKey(_)), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(expect) && msg.contains("P-256"),
            "{name}: {msg}"
        );
    }
}

#[test]
fn broken_signature_is_refused() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    let (_, der) = openssl_csr(
        dir,
        "b",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-subj", "/CN=honest/O=clinic"],
    );
    let id = TerminalId::new("f", "t").unwrap();
    t.ca.sign_csr(&der, &id, DAY)
        .expect("the untouched request is fine");

    // Changed content: the subject says something else now.
    let mut changed = der.clone();
    let pos = changed.windows(6).position(|w| w == b"honest").unwrap();
    changed[pos] = b'H';
    let err = t.ca.sign_csr(&changed, &id, DAY).unwrap_err();
    assert!(matches!(err, CaError::CsrSignature), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");

    // Changed signature: flip a bit of the last byte (inside the ECDSA s value).
    let mut bad_sig = der.clone();
    *bad_sig.last_mut().unwrap() ^= 0x01;
    assert!(matches!(
        t.ca.sign_csr(&bad_sig, &id, DAY),
        Err(CaError::CsrSignature)
    ));

    // Another key's public key swapped in (signature no longer matches the key).
    let (_, other) = openssl_csr(
        dir,
        "o",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-subj", "/CN=honest/O=clinic"],
    );
    let key_a = csr_key_bits(&der);
    let key_b = csr_key_bits(&other);
    let mut swapped = der.clone();
    let at = swapped
        .windows(key_a.len())
        .position(|w| w == key_a.as_slice())
        .unwrap();
    swapped[at..at + key_b.len()].copy_from_slice(&key_b);
    assert!(matches!(
        t.ca.sign_csr(&swapped, &id, DAY),
        Err(CaError::CsrSignature)
    ));

    // Truncated, garbage, trailing data, or a certificate instead of a request.
    assert!(matches!(
        t.ca.sign_csr(&der[..der.len() - 10], &id, DAY),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        t.ca.sign_csr(b"hello", &id, DAY),
        Err(CaError::BadCsr(_))
    ));
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(matches!(
        t.ca.sign_csr(&trailing, &id, DAY),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        t.ca.sign_csr(t.ca.root_pem().as_bytes(), &id, DAY),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        t.ca.sign_csr(t.ca.root_der(), &id, DAY),
        Err(CaError::BadCsr(_))
    ));
    // A huge upload is refused before parsing.
    let huge = vec![0x30u8; 2 << 20];
    assert!(matches!(
        t.ca.sign_csr(&huge, &id, DAY),
        Err(CaError::BadCsr(_))
    ));
}

#[test]
fn openssl_itself_rejects_what_we_reject() {
    // Sanity check of the tampering above: OpenSSL also says the changed request is bad.
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let dir = t.dir.path();
    let (_, der) = openssl_csr(dir, "s", &["-newkey", "rsa:2048"], &["-subj", "/CN=honest"]);
    let mut changed = der.clone();
    let pos = changed.windows(6).position(|w| w == b"honest").unwrap();
    changed[pos] = b'H';
    fs::write(dir.join("changed.der"), &changed).unwrap();
    let out = openssl(
        dir,
        &[
            "req",
            "-in",
            "changed.der",
            "-inform",
            "DER",
            "-verify",
            "-noout",
        ],
        None,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() || text.contains("verify failure"),
        "{text}"
    );
    let id = TerminalId::new("f", "t").unwrap();
    assert!(matches!(
        t.ca.sign_csr(&changed, &id, DAY),
        Err(CaError::CsrSignature)
    ));
}
