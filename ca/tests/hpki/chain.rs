//! The path root → issuing CA → card: critical extensions, CA flags and key usage, names and
//! keys that must chain, validity, path length and extended key usage along the chain.

use super::*;

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
