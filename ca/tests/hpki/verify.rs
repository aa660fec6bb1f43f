//! The verifier accepts the good cards, checks the login signature, and refuses untrusted,
//! expired, revoked, signature, tampered, mis-profiled and hostile certificates.

use super::*;

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        t.unix_timestamp().try_into().unwrap(),
    ))
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
