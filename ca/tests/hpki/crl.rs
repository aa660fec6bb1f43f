//! CRLs: configuration, freshness (expired CRLs fail closed), and the revocation of an
//! issuing CA by the root's authority revocation list.

use super::*;

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
