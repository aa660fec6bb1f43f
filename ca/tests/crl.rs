//! CRLs: what OpenSSL reads in them, and `parse_crl`.

mod common;

use std::fs;
use std::time::Duration;

use common::{new_ca, openssl_ok};
use sekisho_ca::{
    Authority, CaError, CaOptions, KeyAlgorithm, RevocationReason, RevokedEntry, TerminalId,
    normalize_serial_hex, parse_crl,
};
use time::OffsetDateTime;

const DAY: Duration = Duration::from_secs(86_400);

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

#[test]
fn openssl_lists_serials_and_reasons() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("hosp2", "ward-5").unwrap();
    let (a, _) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let (b, _) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let now = OffsetDateTime::now_utc();
    let crl =
        t.ca.crl(
            &[
                RevokedEntry {
                    serial_hex: a.serial_hex.clone(),
                    revoked_at: now - time::Duration::hours(1),
                    reason: RevocationReason::KeyCompromise,
                },
                RevokedEntry {
                    serial_hex: b.serial_hex.clone(),
                    revoked_at: now,
                    reason: RevocationReason::CertificateHold,
                },
            ],
            42,
            now,
            now + time::Duration::days(7),
        )
        .unwrap();
    let dir = t.dir.path().join("ca");
    fs::write(dir.join("crl.pem"), crl.pem()).unwrap();
    let out = openssl_ok(&dir, &["crl", "-in", "crl.pem", "-noout", "-text"], None);
    for want in [
        format!("Serial Number: {}", a.serial_hex.to_uppercase()),
        format!("Serial Number: {}", b.serial_hex.to_uppercase()),
        "Key Compromise".to_owned(),
        "Certificate Hold".to_owned(),
        "X509v3 CRL Number".to_owned(),
        "42".to_owned(),
        "X509v3 Authority Key Identifier".to_owned(),
        "Issuer: O = Sekisho Test Network, CN = Sekisho Test Network Issuing CA".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} missing in:\n{out}");
    }
    // OpenSSL checks the signature against the issuing CA.
    let out = openssl_ok(
        &dir,
        &["crl", "-in", "crl.pem", "-CAfile", "issuing.crt", "-noout"],
        None,
    );
    assert!(out.contains("verify OK"), "{out}");
}

#[test]
fn parse_crl_round_trip() {
    let t = new_ca(KeyAlgorithm::Rsa2048);
    let now = OffsetDateTime::now_utc();
    let entries = vec![
        RevokedEntry {
            serial_hex: "4a00ff".into(),
            revoked_at: whole_seconds(now - time::Duration::days(3)),
            reason: RevocationReason::Superseded,
        },
        RevokedEntry {
            // High bit set: encoded with a 00 sign byte, reported without it.
            serial_hex: "ff01".into(),
            revoked_at: whole_seconds(now),
            reason: RevocationReason::Unspecified,
        },
        RevokedEntry {
            serial_hex: "7123456789abcdef0123456789abcdef".into(),
            revoked_at: whole_seconds(now),
            reason: RevocationReason::CessationOfOperation,
        },
        RevokedEntry {
            serial_hex: "01".into(),
            revoked_at: whole_seconds(now),
            reason: RevocationReason::AffiliationChanged,
        },
    ];
    let next = now + time::Duration::days(1);
    let crl = t.ca.crl(&entries, 7, now, next).unwrap();
    assert_eq!(crl.next_update, whole_seconds(next));

    for input in [crl.der.clone(), crl.pem().into_bytes()] {
        let parsed = parse_crl(&input, t.ca.issuing_der()).unwrap();
        assert_eq!(parsed.entries, entries);
        assert_eq!(parsed.crl_number, 7);
        assert_eq!(parsed.this_update, whole_seconds(now));
        assert_eq!(parsed.next_update, whole_seconds(next));
    }
    // An empty CRL parses to no entries.
    let empty = t.ca.crl(&[], 8, now, next).unwrap();
    assert!(
        parse_crl(&empty.der, t.ca.issuing_der())
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn crl_from_another_ca_is_refused() {
    let ours = new_ca(KeyAlgorithm::EcdsaP256);
    // Same name, different keys: only the signature tells them apart.
    let twin = new_ca(KeyAlgorithm::EcdsaP256);
    let now = OffsetDateTime::now_utc();
    let foreign = twin
        .ca
        .crl(&[], 1, now, now + time::Duration::days(1))
        .unwrap();
    let err = parse_crl(&foreign.der, ours.ca.issuing_der()).unwrap_err();
    assert!(matches!(err, CaError::CrlIssuer(_)), "{err:?}");
    assert!(err.to_string().contains("not issued by this CA"), "{err}");

    // Different name.
    let tmp = tempfile::tempdir().unwrap();
    let other = Authority::create(
        &tmp.path().join("other"),
        &CaOptions {
            algorithm: KeyAlgorithm::EcdsaP256,
            passphrase: None,
            name: "Another Network".into(),
        },
    )
    .unwrap();
    let foreign = other
        .crl(&[], 1, now, now + time::Duration::days(1))
        .unwrap();
    let err = parse_crl(&foreign.der, ours.ca.issuing_der()).unwrap_err();
    assert!(matches!(err, CaError::CrlIssuer(_)), "{err:?}");
    assert!(err.to_string().contains("Another Network"), "{err}");

    // Signed by our root instead of the issuing CA: not the issuer we were told about.
    let ours_crl = ours
        .ca
        .crl(&[], 1, now, now + time::Duration::days(1))
        .unwrap();
    assert!(parse_crl(&ours_crl.der, ours.ca.root_der()).is_err());

    // Tampered: a byte of the signature changed.
    let mut tampered = ours_crl.der.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(parse_crl(&tampered, ours.ca.issuing_der()).is_err());
    assert!(matches!(
        parse_crl(b"junk", ours.ca.issuing_der()),
        Err(CaError::BadCrl(_))
    ));
}

#[test]
fn bad_crl_requests_are_refused() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let now = OffsetDateTime::now_utc();
    let entry = |s: &str| RevokedEntry {
        serial_hex: s.into(),
        revoked_at: now,
        reason: RevocationReason::KeyCompromise,
    };
    let err = t.ca.crl(&[], 1, now, now).unwrap_err();
    assert!(matches!(err, CaError::InvalidCrlParams(_)), "{err:?}");
    let err =
        t.ca.crl(
            &[entry("0a"), entry("0A")],
            1,
            now,
            now + time::Duration::hours(1),
        )
        .unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
    let err =
        t.ca.crl(&[entry("zz")], 1, now, now + time::Duration::hours(1))
            .unwrap_err();
    assert!(matches!(err, CaError::InvalidSerial(_)), "{err:?}");
    assert_eq!(normalize_serial_hex("00:0A:bC").unwrap(), "0abc");
}
