//! HPKI: the test CA produces certificates with the real profile (checked with openssl), the
//! hcRole parser reads them, and the verifier accepts the good cards and refuses the others
//! with the error a physician or the secretariat can act on.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;

use proptest::prelude::*;
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use sekisho_ca::hpki::{
    AUTH_CA_POLICY, CaSpec, EeKind, EeSpec, HcRoleError, HpkiError, HpkiTrustConfig, HpkiVerifier,
    Qualification, RawExtension, RevocationScope, TestCa, TestCert, TestHpki,
    hcrole_from_certificate, parse_subject_directory_attributes,
};
use sekisho_ca::{RevocationReason, RevokedEntry, crl_pem};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

struct Fixture {
    dir: TempDir,
    hpki: TestHpki,
    verifier: HpkiVerifier,
}

/// One test CA for the whole file: generating one takes a dozen RSA keys.
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let hpki = TestHpki::generate(dir.path()).unwrap();
        let verifier = HpkiVerifier::new(&hpki.trust_config()).unwrap();
        Fixture {
            dir,
            hpki,
            verifier,
        }
    })
}

/// A second, unrelated test CA.
fn other() -> &'static TestHpki {
    static OTHER: OnceLock<(TempDir, TestHpki)> = OnceLock::new();
    &OTHER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let hpki = TestHpki::generate(dir.path()).unwrap();
            (dir, hpki)
        })
        .1
}

fn now() -> UnixTime {
    UnixTime::now()
}

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        t.unix_timestamp().try_into().unwrap(),
    ))
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(fx().dir.path())
        .output()
        .expect("openssl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn hcrole_of_each_test_certificate() {
    let h = &fx().hpki;
    let texts = |der: &[u8]| {
        hcrole_from_certificate(der).unwrap().map(|r| {
            r.free_texts()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
    };
    for cert in [
        &h.doctor,
        &h.expired,
        &h.revoked,
        &h.signature,
        &h.critical_policy,
    ] {
        assert_eq!(
            texts(&cert.der),
            Some(vec!["Medical Doctor".to_owned()]),
            "{}",
            cert.name
        );
        let roles = hcrole_from_certificate(&cert.der).unwrap().unwrap();
        assert_eq!(roles.qualifications(), [Qualification::MedicalDoctor]);
        assert_eq!(roles.roles[0].scheme, "1.2.392.100495.1.6.1.1");
    }
    assert_eq!(
        texts(&h.pharmacist.der),
        Some(vec!["Pharmacist".to_owned()])
    );
    assert!(
        hcrole_from_certificate(&h.pharmacist.der)
            .unwrap()
            .unwrap()
            .has(&Qualification::Pharmacist)
    );
    for cert in [&h.norole, &h.root, &h.auth_ca, &h.sign_ca] {
        assert_eq!(texts(&cert.der), None, "{}", cert.name);
    }
    assert!(matches!(
        hcrole_from_certificate(b"\x30\x03\x02\x01\x00"),
        Err(HcRoleError::Certificate(_))
    ));
}

#[test]
fn openssl_reads_the_profile() {
    let h = &fx().hpki;
    let text = |name: &str| {
        let (ok, out) = openssl(&[
            "x509",
            "-in",
            name,
            "-noout",
            "-text",
            "-nameopt",
            "utf8,sep_comma_plus",
        ]);
        assert!(ok, "{name}: {out}");
        out
    };
    for (name, role) in [
        ("doctor.crt", "Medical Doctor"),
        ("pharmacist.crt", "Pharmacist"),
    ] {
        let t = text(name);
        for want in [
            "X509v3 Subject Directory Attributes",
            role,
            "X509v3 Certificate Policies: \n",
            "Policy: 1.2.392.100495.1.5.1.2.0.1",
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            "DirName:",
            "URI:http://hpki-test.invalid/crl/auth-ca.crl",
            "Public-Key: (2048 bit)",
            "Signature Algorithm: sha256WithRSAEncryption",
            "Issuer: C=JP,O=SEKISHO TEST,OU=SEKISHO TEST HPKI CA,CN=HPKI-01-SekishoTestAuthCA-forAuthentication-forIndividual",
        ] {
            assert!(t.contains(want), "{name} lacks {want:?}:\n{t}");
        }
        assert!(!t.contains("Extended Key Usage"), "{name} has an EKU");
        assert!(
            t.contains("15:00:00 "),
            "{name}: validity starts at midnight JST\n{t}"
        );
    }
    let t = text("doctor.crt");
    assert!(
        t.contains("Subject: C=JP,O=SEKISHO TEST HOSPITAL,CN=Taro Yamada,serialNumber=T00000001"),
        "{t}"
    );
    let t = text("norole.crt");
    assert!(!t.contains("Subject Directory Attributes"), "{t}");
    let t = text("signature.crt");
    for want in [
        "Policy: 1.2.392.100495.1.5.1.1.0.1",
        "X509v3 Key Usage: critical\n                Non Repudiation\n",
        "Medical Doctor",
        "CN=HPKI-01-SekishoTestSignCA-forNonRepudiation",
    ] {
        assert!(t.contains(want), "signature.crt lacks {want:?}:\n{t}");
    }
    let t = text("critical-policy.crt");
    assert!(t.contains("X509v3 Certificate Policies: critical"), "{t}");
    let t = text("auth-ca.crt");
    assert!(t.contains("Policy: 1.2.392.100495.1.5.1.2.3.1"), "{t}");
    assert!(t.contains("CA:TRUE, pathlen:0"), "{t}");
    let t = text("sign-ca.crt");
    assert!(t.contains("Policy: 1.2.392.100495.1.5.1.1.3.1"), "{t}");
    let t = text("root.crt");
    assert!(t.contains("OU=TEST HPKI Root CA V2"), "{t}");
    assert!(t.contains("Public-Key: (2048 bit)"), "{t}");

    // The CRL lists the revoked certificate and has a next update.
    let (ok, t) = openssl(&["crl", "-in", "auth-ca.crl", "-noout", "-text"]);
    assert!(ok, "{t}");
    assert!(t.contains("Next Update:"), "{t}");
    assert!(
        t.to_lowercase()
            .contains(&format!("serial number: {}", h.revoked.serial_hex)),
        "{t}"
    );
    assert!(t.contains("Key Compromise"), "{t}");

    // openssl agrees on chains and revocation.
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "-crl_check_all",
        "-CRLfile",
        "auth-ca.crl",
        "-CRLfile",
        "root.crl",
        "doctor.crt",
        "pharmacist.crt",
        "norole.crt",
    ]);
    assert!(ok, "{t}");
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "-crl_check_all",
        "-CRLfile",
        "auth-ca.crl",
        "-CRLfile",
        "root.crl",
        "revoked.crt",
    ]);
    assert!(!ok && t.contains("certificate revoked"), "{t}");
    let (ok, t) = openssl(&[
        "verify",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "auth-ca.crt",
        "expired.crt",
    ]);
    assert!(!ok && t.contains("certificate has expired"), "{t}");
}

#[test]
fn accepts_doctor_and_pharmacist() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let id = verifier.verify(&h.doctor.der, now()).unwrap();
    assert_eq!(id.common_name, "Taro Yamada");
    assert_eq!(id.organization.as_deref(), Some("SEKISHO TEST HOSPITAL"));
    assert_eq!(id.holder_id.as_deref(), Some("T00000001"));
    assert_eq!(id.country.as_deref(), Some("JP"));
    assert_eq!(id.kanji_name.as_deref(), Some("山田\u{3000}太郎"));
    assert_eq!(id.kanji_organization.as_deref(), Some("関所テスト病院"));
    assert_eq!(id.qualification(), Some(Qualification::MedicalDoctor));
    assert!(id.is_medical_doctor());
    assert_eq!(id.policy, "1.2.392.100495.1.5.1.2.0.1");
    let is = id.issuer_serial();
    assert_eq!(
        is.issuer,
        "C=JP, O=SEKISHO TEST, OU=SEKISHO TEST HPKI CA, CN=HPKI-01-SekishoTestAuthCA-forAuthentication-forIndividual"
    );
    assert_eq!(is.serial_hex, h.doctor.serial_hex);
    assert_eq!(is.issuer_der[0], 0x30);

    let id = verifier.verify(&h.pharmacist.der, now()).unwrap();
    assert_eq!(id.qualification(), Some(Qualification::Pharmacist));
    assert!(!id.is_medical_doctor());
    assert_eq!(id.kanji_name.as_deref(), Some("鈴木\u{3000}花子"));
    assert_ne!(id.issuer_serial().serial_hex, h.doctor.serial_hex);

    let id = verifier.verify(&h.norole.der, now()).unwrap();
    assert_eq!(id.roles, None);
    assert_eq!(id.qualification(), None);
    assert!(id.qualifications().is_empty());

    // Several roles, in certificate order.
    let spec = EeSpec::authentication(
        "Goro Ito",
        "伊藤　五郎",
        "T00000006",
        &["Medical Doctor", "Director of Hospital"],
    );
    let cert = h.issue(&spec, "director").unwrap();
    let mut q = verifier.verify(&cert.der, now()).unwrap().qualifications();
    q.sort_by_key(|q| q.to_string());
    assert_eq!(
        q,
        [
            Qualification::DirectorOfHospital,
            Qualification::MedicalDoctor
        ]
    );
}

#[test]
fn login_signature() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let challenge = b"sekisho-login-v1 nonce=0123456789abcdef";
    let sig = h.doctor.sign(challenge).unwrap();
    let id = verifier
        .verify_login(&h.doctor.der, challenge, &sig, now())
        .unwrap();
    assert!(id.is_medical_doctor());
    HpkiVerifier::verify_signature(&h.doctor.der, challenge, &sig).unwrap();
    id.verify_signature(challenge, &sig).unwrap();

    // Another challenge, another card's key, a damaged signature.
    assert_eq!(
        verifier.verify_login(&h.doctor.der, b"another challenge", &sig, now()),
        Err(HpkiError::BadSignature)
    );
    let pharmacist_sig = h.pharmacist.sign(challenge).unwrap();
    assert_eq!(
        verifier.verify_login(&h.doctor.der, challenge, &pharmacist_sig, now()),
        Err(HpkiError::BadSignature)
    );
    let mut bad = sig.clone();
    bad[100] ^= 1;
    assert_eq!(
        HpkiVerifier::verify_signature(&h.doctor.der, challenge, &bad),
        Err(HpkiError::BadSignature)
    );
    assert_eq!(
        HpkiVerifier::verify_signature(&h.doctor.der, challenge, &[]),
        Err(HpkiError::BadSignature)
    );
    assert!(matches!(
        HpkiVerifier::verify_signature(b"junk", challenge, &sig),
        Err(HpkiError::Malformed(_))
    ));
    // A revoked card with a valid signature is still refused.
    let sig = h.revoked.sign(challenge).unwrap();
    assert_eq!(
        verifier.verify_login(&h.revoked.der, challenge, &sig, now()),
        Err(HpkiError::Revoked)
    );
}

#[test]
fn refuses_untrusted_expired_revoked_and_signature_certificates() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let err = verifier.verify(&other().doctor.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::Untrusted(_)), "{err}");

    let err = verifier.verify(&h.expired.der, now()).unwrap_err();
    let HpkiError::Expired {
        not_after,
        end_entity: true,
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(not_after < OffsetDateTime::now_utc() - Duration::days(29));
    assert!(err.to_string().contains("renewed"), "{err}");

    assert_eq!(
        verifier.verify(&h.revoked.der, now()),
        Err(HpkiError::Revoked)
    );
    assert_eq!(
        verifier.verify(&h.signature.der, now()),
        Err(HpkiError::SignatureCertificate)
    );

    // Before its validity (the card is dated from midnight Japan time).
    let id = verifier.verify(&h.doctor.der, now()).unwrap();
    let err = verifier
        .verify(&h.doctor.der, at(id.not_before - Duration::days(1)))
        .unwrap_err();
    assert!(matches!(err, HpkiError::NotYetValid { .. }), "{err:?}");
    // After it.
    let err = verifier
        .verify(&h.doctor.der, at(id.not_after + Duration::days(1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            HpkiError::Expired {
                end_entity: true,
                ..
            } | HpkiError::CrlExpired { .. }
        ),
        "{err:?}"
    );

    // Real cards mark certificatePolicies critical: the verifier processes the policies itself,
    // so the card is accepted, with its qualification.
    let id = verifier.verify(&h.critical_policy.der, now()).unwrap();
    assert!(id.is_medical_doctor());
    assert_eq!(id.qualification(), Some(Qualification::MedicalDoctor));
    assert_eq!(id.policy, "1.2.392.100495.1.5.1.2.0.1");
    assert_eq!(id.common_name, "Taro Yamada");
}

#[test]
fn refuses_a_tampered_hcrole() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let mut der = h.pharmacist.der.clone();
    let at_text = der
        .windows(10)
        .position(|w| w == b"Pharmacist")
        .expect("role text in the certificate");
    // "Pharmacist" -> "Pharmacisu": still a well-formed certificate, with a wrong signature.
    der[at_text + 9] ^= 1;
    assert_eq!(
        hcrole_from_certificate(&der).unwrap().unwrap().free_texts(),
        ["Pharmacisu"]
    );
    let err = verifier.verify(&der, now()).unwrap_err();
    let HpkiError::Untrusted(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("signature"), "{why}");

    // Any change of the text, e.g. a doctor turned director.
    let mut der = h.doctor.der.clone();
    let i = der
        .windows(14)
        .position(|w| w == b"Medical Doctor")
        .unwrap();
    der[i..i + 14].copy_from_slice(b"Director of Ho");
    assert!(matches!(
        verifier.verify(&der, now()),
        Err(HpkiError::Untrusted(_))
    ));
}

#[test]
fn refuses_wrong_profile() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let base = || EeSpec::authentication("Shiro Kato", "加藤　四郎", "T00000007", &["Nurse"]);

    // A policy outside the authentication arc.
    let cert = h
        .issue(
            &EeSpec {
                policy: Some(vec![1, 2, 392, 100_495, 1, 5, 1, 3, 0, 1]),
                ..base()
            },
            "wrong-policy",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::WrongPolicy(_)), "{err:?}");

    // No digitalSignature; no key usage at all.
    let cert = h
        .issue(
            &EeSpec {
                key_usages: Some(vec![KeyUsagePurpose::ContentCommitment]),
                ..base()
            },
            "nonrepudiation",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::WrongKeyUsage(_)), "{err:?}");
    let cert = h
        .issue(
            &EeSpec {
                key_usages: Some(vec![]),
                ..base()
            },
            "no-ku",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::WrongKeyUsage(_)), "{err:?}");

    // EKU: none is fine (the HPKI cards); client authentication is fine; anything else is not.
    let cert = h
        .issue(
            &EeSpec {
                extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
                ..base()
            },
            "eku-client",
        )
        .unwrap();
    assert!(verifier.verify(&cert.der, now()).is_ok());
    let cert = h
        .issue(
            &EeSpec {
                extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
                ..base()
            },
            "eku-server",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::WrongKeyUsage(_)), "{err:?}");

    // An authentication-shaped certificate issued by the signature CA.
    let cert = h
        .issue_from(EeKind::Signature, &base(), "auth-from-sign-ca")
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    let HpkiError::WrongPolicy(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("SignCA"), "{why}");

    // Garbage.
    for junk in [&b""[..], b"\x30\x00", &[0x30; 70_000]] {
        assert!(matches!(
            verifier.verify(junk, now()),
            Err(HpkiError::Malformed(_))
        ));
    }
    let mut trailing = h.doctor.der.clone();
    trailing.push(0);
    assert!(matches!(
        verifier.verify(&trailing, now()),
        Err(HpkiError::Malformed(_))
    ));
}

#[test]
fn hostile_content_signed_by_the_ca_is_refused_without_panic() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let base = || EeSpec::authentication("Rokuro Kimura", "木村　六郎", "T00000008", &[]);
    let sda_with = |text: &[u8], tag: u8| {
        // The real structure, with the given free text bytes and string tag.
        let mut v = vec![0xa2, 2 + text.len() as u8, tag, text.len() as u8];
        v.extend_from_slice(text);
        let mut coded = vec![
            0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01,
        ];
        coded.extend_from_slice(&v);
        let coded = wrap(0x31, &coded);
        let actor = wrap(0x30, &wrap(0xa0, &coded));
        let attr = wrap(
            0x30,
            &[
                &[0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01][..],
                &wrap(0x31, &wrap(0x31, &actor)),
            ]
            .concat(),
        );
        wrap(0x30, &attr)
    };
    let mut deep = wrap(0x30, &[]);
    for _ in 0..400 {
        deep = wrap(0x30, &deep);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("control characters", sda_with(b"Medical\nDoctor", 0x0c)),
        ("escape sequence", sda_with(b"\x1b[2JDoctor", 0x0c)),
        ("invalid UTF-8", sda_with(b"Medical \xff\xfe", 0x0c)),
        ("not a string", sda_with(b"\x01\x02", 0x02)),
        ("deep nesting", deep),
        (
            "huge length",
            vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30, 0x00],
        ),
        ("empty", vec![]),
    ];
    for (what, sda) in cases {
        let cert = h
            .issue(
                &EeSpec {
                    raw_sda: Some(sda.clone()),
                    ..base()
                },
                what,
            )
            .unwrap();
        // The parser alone, and the whole verifier (after a good chain).
        assert!(parse_subject_directory_attributes(&sda).is_err(), "{what}");
        let err = verifier.verify(&cert.der, now()).unwrap_err();
        assert!(matches!(err, HpkiError::Malformed(_)), "{what}: {err:?}");
    }
    // A 129-character role (over the 128 limit), built with the long form length.
    let long = "x".repeat(129);
    let cert = h
        .issue(
            &EeSpec {
                roles: vec![long],
                ..base()
            },
            "long-role",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::Malformed(_)), "{err:?}");

    // Names are untrusted text too.
    for (cn, kanji) in [
        ("Taro\r\nX-Injected: 1", "山田　太郎"),
        ("Taro Yamada", "山田\u{202E}郎太"),
        ("Taro Yamada", "山田\u{0007}太郎"),
    ] {
        let cert = h
            .issue(&EeSpec::authentication(cn, kanji, "T00000009", &[]), "name")
            .unwrap();
        let err = verifier.verify(&cert.der, now()).unwrap_err();
        assert!(
            matches!(err, HpkiError::Malformed(_)),
            "{cn:?} {kanji:?}: {err:?}"
        );
    }
}

fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let len = content.len();
    if len < 0x80 {
        v.push(len as u8);
    } else if len < 0x100 {
        v.extend_from_slice(&[0x81, len as u8]);
    } else {
        v.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    v.extend_from_slice(content);
    v
}

#[test]
fn crl_configuration_and_freshness() {
    let h = &fx().hpki;
    let t0 = OffsetDateTime::now_utc();

    // An expired CRL of the issuing CA fails closed, for every card of that CA.
    let stale = h
        .auth_crl_with(&[], 2, t0 - Duration::days(10), t0 - Duration::days(1))
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone(), stale],
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    let err = v.verify(&h.doctor.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::CrlExpired { .. }), "{err:?}");
    assert!(v.earliest_crl_next_update().unwrap() < t0);

    // An expired authority revocation list fails closed too (the chain is checked).
    let stale_arl = h
        .root_crl_with(&[], 2, t0 - Duration::days(10), t0 - Duration::days(1))
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![stale_arl, h.auth_crl.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::CrlExpired { .. }), "{err:?}");

    // No CRL for the issuing CA: unknown, refused.
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::RevocationUnknown(_)), "{err:?}");
    let cfg = HpkiTrustConfig {
        crls: vec![],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::RevocationUnknown(_)), "{err:?}");

    // No authority revocation list: refused when the chain is checked, fine for the end
    // entity only.
    let cfg = HpkiTrustConfig {
        crls: vec![h.auth_crl.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::RevocationUnknown(_)), "{err:?}");
    let cfg = HpkiTrustConfig {
        crls: vec![h.auth_crl.clone()],
        revocation: RevocationScope::EndEntity,
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    assert!(v.verify(&h.doctor.der, now()).is_ok());
    assert_eq!(v.verify(&h.revoked.der, now()), Err(HpkiError::Revoked));

    // A new CRL that revokes the doctor (e.g. card reported lost).
    let lost = h
        .auth_crl_with(
            &[RevokedEntry {
                serial_hex: h.doctor.serial_hex.clone(),
                revoked_at: t0 - Duration::minutes(5),
                reason: RevocationReason::KeyCompromise,
            }],
            3,
            t0 - Duration::minutes(5),
            t0 + Duration::days(1),
        )
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone(), lost],
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    assert_eq!(v.verify(&h.doctor.der, now()), Err(HpkiError::Revoked));
    assert!(v.verify(&h.pharmacist.der, now()).is_ok());

    // A CRL that no configured CA signed, and an end entity posing as a CA, are refused.
    let cfg = HpkiTrustConfig {
        crls: vec![other().auth_crl.clone()],
        ..h.trust_config()
    };
    assert!(matches!(HpkiVerifier::new(&cfg), Err(HpkiError::Config(_))));
    let cfg = HpkiTrustConfig {
        intermediates: vec![h.doctor.der.clone()],
        ..h.trust_config()
    };
    assert!(matches!(HpkiVerifier::new(&cfg), Err(HpkiError::Config(_))));
    assert!(matches!(
        HpkiVerifier::new(&HpkiTrustConfig::default()),
        Err(HpkiError::Config(_))
    ));
    // A verifier without the authentication CA: the card is not trusted.
    let cfg = HpkiTrustConfig {
        intermediates: vec![h.sign_ca.der.clone()],
        crls: vec![h.root_crl.clone(), h.sign_crl.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::Untrusted(_)), "{err:?}");
}

/// An authentication end entity for the path tests.
fn card(name: &str) -> EeSpec {
    EeSpec::authentication(name, "試験　太郎", "T00000100", &["Medical Doctor"])
}

/// A fresh, empty CRL of `ca`, valid for a day.
fn fresh_crl(ca: &TestCa) -> Vec<u8> {
    let t0 = OffsetDateTime::now_utc();
    ca.crl(&[], 1, t0 - Duration::hours(1), t0 + Duration::days(1))
        .unwrap()
}

/// The test CA's configuration with `ca` (and its CRL) added as an intermediate.
fn config_with(ca: &TestCa) -> HpkiTrustConfig {
    let h = &fx().hpki;
    let mut cfg = h.trust_config();
    cfg.intermediates.push(ca.cert.der.clone());
    cfg.crls.push(fresh_crl(ca));
    cfg
}

/// Writes certificates (PEM) to a new directory of the fixture, for openssl.
fn write_pems(dir: &str, certs: &[&TestCert], crls: &[(&str, &[u8])]) -> std::path::PathBuf {
    let d = fx().dir.path().join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for c in certs {
        std::fs::write(d.join(format!("{}.crt", c.name)), c.pem()).unwrap();
    }
    for (name, der) in crls {
        std::fs::write(d.join(name), crl_pem(der)).unwrap();
    }
    d
}

/// `openssl verify -crl_check_all -policy_check` of `ee` with `root` as the anchor, `ca` as the
/// untrusted intermediate and the given CRL files, all in `dir`.
fn openssl_verify(
    dir: &std::path::Path,
    root: &str,
    ca: &str,
    crls: &[&str],
    ee: &str,
) -> (bool, String) {
    let mut args = vec![
        "verify".to_owned(),
        "-CAfile".into(),
        format!("{root}.crt"),
        "-untrusted".into(),
        format!("{ca}.crt"),
        "-crl_check_all".into(),
        "-policy_check".into(),
    ];
    for crl in crls {
        args.push("-CRLfile".into());
        args.push((*crl).to_owned());
    }
    args.push(format!("{ee}.crt"));
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn critical_policies_are_accepted_in_the_whole_chain() {
    let h = &fx().hpki;
    // An issuing CA whose certificatePolicies is critical too, and a card from it.
    let ca = h
        .root_ca()
        .issue_ca(
            &CaSpec {
                critical_policies: true,
                ..CaSpec::issuing("HPKI-01-CriticalPolicyAuthCA", AUTH_CA_POLICY)
            },
            "crit-ca",
        )
        .unwrap();
    let ee = ca
        .issue(
            &EeSpec {
                critical_policies: true,
                ..card("Critical Card")
            },
            "crit-ee",
        )
        .unwrap();
    let v = HpkiVerifier::new(&config_with(&ca)).unwrap();
    let id = v.verify(&ee.der, now()).unwrap();
    assert!(id.is_medical_doctor());
    let (_, parsed) = x509_parser::parse_x509_certificate(&ca.cert.der).unwrap();
    assert!(
        parsed
            .extensions()
            .iter()
            .any(|e| e.oid.to_id_string() == "2.5.29.32" && e.critical)
    );

    // openssl, which processes policies, agrees on the real-card case and on this chain.
    let (ok, t) = openssl_verify(
        fx().dir.path(),
        "root",
        "auth-ca",
        &["root.crl", "auth-ca.crl"],
        "critical-policy",
    );
    assert!(ok, "{t}");
    let crl = fresh_crl(&ca);
    let d = write_pems(
        "crit",
        &[&h.root, &ca.cert, &ee],
        &[("root.crl", &h.root_crl), ("crit-ca.crl", &crl)],
    );
    let (ok, t) = openssl_verify(
        &d,
        "root",
        "crit-ca",
        &["root.crl", "crit-ca.crl"],
        "crit-ee",
    );
    assert!(ok, "{t}");
}

#[test]
fn refuses_critical_extensions_it_does_not_process() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let unknown = |critical| RawExtension {
        oid: vec![1, 3, 6, 1, 4, 1, 99_999, 1],
        critical,
        value: vec![0x05, 0x00],
    };
    let cert = h
        .issue(
            &EeSpec {
                extra_extensions: vec![unknown(true)],
                ..card("Unknown Critical")
            },
            "unknown-critical",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    let HpkiError::Unsupported(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("1.3.6.1.4.1.99999.1"), "{why}");
    // openssl agrees.
    let d = write_pems("unknown", &[&h.root, &h.auth_ca, &cert], &[]);
    std::fs::write(d.join("root.crl"), crl_pem(&h.root_crl)).unwrap();
    std::fs::write(d.join("auth-ca.crl"), crl_pem(&h.auth_crl)).unwrap();
    let (ok, t) = openssl_verify(
        &d,
        "root",
        "auth-ca",
        &["root.crl", "auth-ca.crl"],
        "unknown-critical",
    );
    assert!(!ok && t.contains("unhandled critical extension"), "{t}");

    // The same extension, not critical, may be ignored.
    let cert = h
        .issue(
            &EeSpec {
                extra_extensions: vec![unknown(false)],
                ..card("Unknown Noncritical")
            },
            "unknown-noncritical",
        )
        .unwrap();
    assert!(verifier.verify(&cert.der, now()).is_ok());

    // A well-known extension we do not process (authorityInfoAccess), marked critical.
    let aia = RawExtension {
        oid: vec![1, 3, 6, 1, 5, 5, 7, 1, 1],
        critical: true,
        value: vec![
            0x30, 0x15, 0x30, 0x13, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02,
            0x86, 0x07, b'h', b't', b't', b'p', b':', b'/', b'/',
        ],
    };
    let cert = h
        .issue(
            &EeSpec {
                extra_extensions: vec![aia],
                ..card("Critical AIA")
            },
            "critical-aia",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    let HpkiError::Unsupported(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("1.3.6.1.5.5.7.1.1"), "{why}");

    // An extension twice (a second key usage) is malformed.
    let cert = h
        .issue(
            &EeSpec {
                extra_extensions: vec![RawExtension {
                    oid: vec![2, 5, 29, 15],
                    critical: true,
                    value: vec![0x03, 0x02, 0x07, 0x80],
                }],
                ..card("Two KUs")
            },
            "two-ku",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::Malformed(_)), "{err:?}");

    // A CA with an unknown critical extension, or with name constraints, is refused when the
    // verifier is built.
    for (name, ext) in [
        ("ca-unknown-critical", unknown(true)),
        (
            "ca-name-constraints",
            RawExtension {
                oid: vec![2, 5, 29, 30],
                critical: true,
                // permittedSubtrees: dNSName "example.jp"
                value: vec![
                    0x30, 0x10, 0xa0, 0x0e, 0x30, 0x0c, 0x82, 0x0a, b'e', b'x', b'a', b'm', b'p',
                    b'l', b'e', b'.', b'j', b'p',
                ],
            },
        ),
    ] {
        let ca = h
            .root_ca()
            .issue_ca(
                &CaSpec {
                    extra_extensions: vec![ext],
                    ..CaSpec::issuing("HPKI-01-OddCA", AUTH_CA_POLICY)
                },
                name,
            )
            .unwrap();
        let cfg = HpkiTrustConfig {
            intermediates: vec![h.auth_ca.der.clone(), ca.cert.der.clone()],
            ..h.trust_config()
        };
        let err = HpkiVerifier::new(&cfg).unwrap_err();
        assert!(matches!(err, HpkiError::Config(_)), "{name}: {err:?}");
    }
}

#[test]
fn only_a_ca_with_key_cert_sign_can_issue() {
    let h = &fx().hpki;
    let cases = [
        (
            "ca-no-keycertsign",
            CaSpec {
                key_usages: vec![
                    rcgen::KeyUsagePurpose::CrlSign,
                    rcgen::KeyUsagePurpose::DigitalSignature,
                ],
                ..CaSpec::issuing("HPKI-01-NoKeyCertSignCA", AUTH_CA_POLICY)
            },
            "keyCertSign",
        ),
        (
            "ca-not-ca",
            CaSpec {
                is_ca: false,
                ..CaSpec::issuing("HPKI-01-NotACA", AUTH_CA_POLICY)
            },
            "not a CA",
        ),
    ];
    for (name, spec, why) in cases {
        let ca = h.root_ca().issue_ca(&spec, name).unwrap();
        let ee = ca
            .issue(&card("Bad Issuer"), &format!("{name}-ee"))
            .unwrap();
        // Configured: refused when the verifier is built, saying why.
        let cfg = HpkiTrustConfig {
            intermediates: vec![h.auth_ca.der.clone(), ca.cert.der.clone()],
            ..h.trust_config()
        };
        let err = HpkiVerifier::new(&cfg).unwrap_err();
        let HpkiError::Config(msg) = &err else {
            panic!("{name}: {err:?}");
        };
        assert!(msg.contains(why), "{name}: {msg}");
        // Not configured: its certificates do not chain.
        let err = fx().verifier.verify(&ee.der, now()).unwrap_err();
        assert!(matches!(err, HpkiError::Untrusted(_)), "{name}: {err:?}");
        // openssl agrees that it cannot issue.
        let crl = fresh_crl(&ca);
        let d = write_pems(
            name,
            &[&h.root, &ca.cert, &ee],
            &[("root.crl", &h.root_crl), ("ca.crl", &crl)],
        );
        let (ok, t) = openssl_verify(&d, "root", name, &["root.crl", "ca.crl"], &ee.name);
        assert!(!ok, "{name}: {t}");
    }
}

#[test]
fn names_must_chain_with_the_right_keys() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    // Another test CA has the same names, other keys: its card's issuer name is our
    // authentication CA's subject, but our CA's key does not verify its signature.
    let err = verifier.verify(&other().doctor.der, now()).unwrap_err();
    let HpkiError::Untrusted(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("signature"), "{why}");

    // The other authentication CA configured as ours: its issuer name is our root's subject,
    // but our root did not sign it, so nothing it issued is trusted, and our cards (same
    // issuer name) do not verify with its key.
    let cfg = HpkiTrustConfig {
        intermediates: vec![other().auth_ca.der.clone()],
        crls: vec![h.root_crl.clone()],
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    let err = v.verify(&other().doctor.der, now()).unwrap_err();
    let HpkiError::Untrusted(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("does not chain"), "{why}");
    let err = v.verify(&h.doctor.der, now()).unwrap_err();
    assert!(matches!(err, HpkiError::Untrusted(_)), "{err:?}");

    // Both CAs configured (two CAs, one name): each card finds its own.
    let cfg = HpkiTrustConfig {
        intermediates: vec![other().auth_ca.der.clone(), h.auth_ca.der.clone()],
        crls: vec![h.root_crl.clone(), h.auth_crl.clone()],
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    assert!(v.verify(&h.doctor.der, now()).is_ok());
    assert!(matches!(
        v.verify(&other().doctor.der, now()),
        Err(HpkiError::Untrusted(_))
    ));

    // A root configured as an intermediate too, or a self-issued intermediate: refused.
    let cfg = HpkiTrustConfig {
        intermediates: vec![h.root.der.clone()],
        ..h.trust_config()
    };
    assert!(matches!(HpkiVerifier::new(&cfg), Err(HpkiError::Config(_))));
    let cfg = HpkiTrustConfig {
        intermediates: vec![other().root.der.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg).unwrap_err();
    assert!(err.to_string().contains("self-issued"), "{err}");
}

/// HPKI roots (MHLW) issue only the certificates of issuing CAs. A card certificate signed by
/// the root itself is outside the profile and refused, although it would be a valid path in
/// general (openssl accepts it).
#[test]
fn the_root_does_not_issue_cards() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    let ee = h.root_ca().issue(&card("From Root"), "from-root").unwrap();
    let err = verifier.verify(&ee.der, now()).unwrap_err();
    let HpkiError::Untrusted(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("directly by the root"), "{why}");
}

#[test]
fn ca_validity_path_length_and_extended_key_usage() {
    let h = &fx().hpki;
    let t0 = OffsetDateTime::now_utc();

    // An issuing CA that has expired: its cards are refused, and the message names the CA.
    let old = h
        .root_ca()
        .issue_ca(
            &CaSpec {
                not_before: t0 - Duration::days(3000),
                not_after: t0 - Duration::days(1),
                ..CaSpec::issuing("HPKI-01-ExpiredCA", AUTH_CA_POLICY)
            },
            "expired-ca",
        )
        .unwrap();
    let ee = old.issue(&card("Old CA"), "old-ca-ee").unwrap();
    let err = HpkiVerifier::new(&config_with(&old))
        .unwrap()
        .verify(&ee.der, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            HpkiError::Expired {
                end_entity: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("secretariat"), "{err}");
    // Not yet valid.
    let young = h
        .root_ca()
        .issue_ca(
            &CaSpec {
                not_before: t0 + Duration::days(1),
                not_after: t0 + Duration::days(3000),
                ..CaSpec::issuing("HPKI-01-FutureCA", AUTH_CA_POLICY)
            },
            "future-ca",
        )
        .unwrap();
    let ee = young
        .issue(
            &EeSpec {
                not_before: t0 - Duration::days(1),
                ..card("Future CA")
            },
            "future-ca-ee",
        )
        .unwrap();
    let err = HpkiVerifier::new(&config_with(&young))
        .unwrap()
        .verify(&ee.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::NotYetValid { .. }), "{err:?}");

    // A root whose pathLenConstraint is 0 may not have an issuing CA below it.
    let root0 = TestCa::root(
        &CaSpec {
            policy: None,
            path_len: Some(0),
            ..CaSpec::issuing("TEST Root pathlen 0", &[])
        },
        "root0",
        "http://hpki-test.invalid/crl/root0.crl",
    )
    .unwrap();
    let ca = root0
        .issue_ca(
            &CaSpec::issuing("HPKI-01-UnderRoot0", AUTH_CA_POLICY),
            "under-root0",
        )
        .unwrap();
    let ee = ca.issue(&card("Path Length"), "pathlen-ee").unwrap();
    let cfg = HpkiTrustConfig {
        anchors: vec![root0.cert.der.clone()],
        intermediates: vec![ca.cert.der.clone()],
        crls: vec![fresh_crl(&root0), fresh_crl(&ca)],
        revocation: RevocationScope::Chain,
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&ee.der, now())
        .unwrap_err();
    let HpkiError::Untrusted(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("path length"), "{why}");
    let d = write_pems(
        "pathlen",
        &[&root0.cert, &ca.cert, &ee],
        &[
            ("root0.crl", &fresh_crl(&root0)),
            ("ca.crl", &fresh_crl(&ca)),
        ],
    );
    let (ok, t) = openssl_verify(
        &d,
        "root0",
        "under-root0",
        &["root0.crl", "ca.crl"],
        "pathlen-ee",
    );
    assert!(!ok && t.contains("path length"), "{t}");

    // An issuing CA restricted to server authentication cannot vouch for a login.
    let server_only = RawExtension {
        oid: vec![2, 5, 29, 37],
        critical: false,
        value: vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
        ],
    };
    let ca = h
        .root_ca()
        .issue_ca(
            &CaSpec {
                extra_extensions: vec![server_only],
                ..CaSpec::issuing("HPKI-01-ServerOnlyCA", AUTH_CA_POLICY)
            },
            "server-only-ca",
        )
        .unwrap();
    let ee = ca.issue(&card("Server Only"), "server-only-ee").unwrap();
    let err = HpkiVerifier::new(&config_with(&ca))
        .unwrap()
        .verify(&ee.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::WrongKeyUsage(_)), "{err:?}");
}

#[test]
fn end_entity_flags() {
    let Fixture {
        hpki: h, verifier, ..
    } = fx();
    // basicConstraints cA=TRUE on a card: refused.
    let cert = h
        .issue(
            &EeSpec {
                extra_extensions: vec![RawExtension {
                    oid: vec![2, 5, 29, 19],
                    critical: true,
                    value: vec![0x30, 0x03, 0x01, 0x01, 0xff],
                }],
                ..card("Card CA")
            },
            "ee-ca",
        )
        .unwrap();
    let err = verifier.verify(&cert.der, now()).unwrap_err();
    let HpkiError::WrongKeyUsage(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.contains("CA certificate"), "{why}");
    // anyExtendedKeyUsage allows client authentication.
    let cert = h
        .issue(
            &EeSpec {
                extended_key_usages: vec![ExtendedKeyUsagePurpose::Any],
                ..card("Any EKU")
            },
            "eku-any",
        )
        .unwrap();
    assert!(verifier.verify(&cert.der, now()).is_ok());
}

#[test]
fn revocation_of_the_issuing_ca_and_crl_dates() {
    let h = &fx().hpki;
    let t0 = OffsetDateTime::now_utc();
    // The root's authority revocation list revokes the authentication CA: every card of it is
    // refused; with the end entity scope, the authority revocation list is not consulted.
    let arl = h
        .root_crl_with(
            &[RevokedEntry {
                serial_hex: h.auth_ca.serial_hex.clone(),
                revoked_at: t0 - Duration::minutes(5),
                reason: RevocationReason::Superseded,
            }],
            2,
            t0 - Duration::minutes(5),
            t0 + Duration::days(1),
        )
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![arl.clone(), h.auth_crl.clone()],
        ..h.trust_config()
    };
    assert_eq!(
        HpkiVerifier::new(&cfg)
            .unwrap()
            .verify(&h.doctor.der, now()),
        Err(HpkiError::Revoked)
    );
    let cfg = HpkiTrustConfig {
        revocation: RevocationScope::EndEntity,
        ..cfg
    };
    assert!(
        HpkiVerifier::new(&cfg)
            .unwrap()
            .verify(&h.doctor.der, now())
            .is_ok()
    );

    // A CRL dated after the time of verification: unknown (the clock is wrong).
    let future = h
        .auth_crl_with(&[], 4, t0 + Duration::hours(2), t0 + Duration::days(2))
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone(), future.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::RevocationUnknown(_)), "{err:?}");

    // An expired CRL next to a current one: the current one decides.
    let stale = h
        .auth_crl_with(&[], 1, t0 - Duration::days(10), t0 - Duration::days(1))
        .unwrap();
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone(), stale, h.auth_crl.clone()],
        ..h.trust_config()
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    assert!(v.verify(&h.doctor.der, now()).is_ok());
    assert_eq!(v.verify(&h.revoked.der, now()), Err(HpkiError::Revoked));

    // The signature CA's CRL says nothing about the authentication CA's cards.
    let cfg = HpkiTrustConfig {
        crls: vec![h.root_crl.clone(), h.sign_crl.clone()],
        ..h.trust_config()
    };
    let err = HpkiVerifier::new(&cfg)
        .unwrap()
        .verify(&h.doctor.der, now())
        .unwrap_err();
    assert!(matches!(err, HpkiError::RevocationUnknown(_)), "{err:?}");
}

#[test]
fn the_binary_writes_the_documented_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sekisho-hpki-testca"))
        .arg("--out")
        .arg(dir.path())
        .args([
            "--crl-base-url",
            "http://127.0.0.1:8099/hpki/",
            "--crl-days",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |name: &str| dir.path().join(name);
    for name in [
        "root",
        "auth-ca",
        "sign-ca",
        "doctor",
        "pharmacist",
        "norole",
        "expired",
        "revoked",
        "signature",
        "critical-policy",
    ] {
        assert!(p(&format!("{name}.crt")).is_file(), "{name}.crt");
        let mode = std::fs::metadata(p(&format!("{name}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}.key");
    }
    // A verifier configured from the files (PEM) accepts the doctor's card.
    let cert = |name: &str| std::fs::read(p(name)).unwrap();
    let cfg = HpkiTrustConfig {
        anchors: vec![cert("root.crt")],
        intermediates: vec![cert("auth-ca.crt"), cert("sign-ca.crt")],
        crls: vec![cert("root.crl"), cert("auth-ca.crl"), cert("sign-ca.crl")],
        revocation: RevocationScope::Chain,
    };
    let v = HpkiVerifier::new(&cfg).unwrap();
    let doctor = CertificateDer::from_pem_file(p("doctor.crt")).unwrap();
    let id = v.verify(&doctor, now()).unwrap();
    assert!(id.is_medical_doctor());
    let revoked = CertificateDer::from_pem_file(p("revoked.crt")).unwrap();
    assert_eq!(v.verify(&revoked, now()), Err(HpkiError::Revoked));
    // The CRL is valid for the requested two days, and the URL is the one asked for.
    let crl = CertificateRevocationListDer::from_pem_file(p("auth-ca.crl")).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    let left = crl.next_update().unwrap().to_datetime() - OffsetDateTime::now_utc();
    assert!(
        left > Duration::hours(47) && left <= Duration::days(2),
        "{left}"
    );
    let (ok, text) = {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
            .arg(p("doctor.crt"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(
        ok && text.contains("URI:http://127.0.0.1:8099/hpki/auth-ca.crl"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sekisho-hpki-testca"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hcrole_parser_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_subject_directory_attributes(&bytes);
    }

    #[test]
    fn hcrole_parser_never_panics_on_mutated_structures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut v = sekisho_ca_sda();
        for (i, b) in flips {
            let i = i % v.len();
            v[i] ^= b;
        }
        v.truncate(cut % (v.len() + 1) + 1);
        let _ = parse_subject_directory_attributes(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn certificate_paths_never_panic_on_mutated_certificates(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut der = fx().hpki.doctor.der.clone();
        for (i, b) in flips {
            let i = i % der.len();
            der[i] ^= b;
        }
        let _ = hcrole_from_certificate(&der);
        // A mutated certificate never verifies.
        prop_assert!(fx().verifier.verify(&der, now()).is_err() || der == fx().hpki.doctor.der);
    }
}

/// A valid SubjectDirectoryAttributes value with two roles, to mutate.
fn sekisho_ca_sda() -> Vec<u8> {
    static SDA: OnceLock<Vec<u8>> = OnceLock::new();
    SDA.get_or_init(|| {
        let cert = fx()
            .hpki
            .issue(
                &EeSpec::authentication("A", "B", "C", &["Medical Doctor", "Director of Clinic"]),
                "sda",
            )
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
        let sda = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.9")
            .unwrap()
            .value
            .to_vec();
        assert_eq!(
            parse_subject_directory_attributes(&sda)
                .unwrap()
                .unwrap()
                .roles
                .len(),
            2
        );
        sda
    })
    .clone()
}
