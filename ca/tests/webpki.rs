//! The gateway verifies client certificates and CRLs with rustls-webpki: check ours pass its
//! rules, as a client certificate, and that a CRL listing one makes it fail as revoked.

mod common;

use std::time::Duration;

use common::new_ca;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sekisho_ca::{Authority, KeyAlgorithm, RevocationReason, RevokedEntry, TerminalId};
use time::OffsetDateTime;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

const DAY: Duration = Duration::from_secs(86_400);

fn verify(
    ca: &Authority,
    leaf_der: &[u8],
    usage: KeyUsage,
    crl_der: Option<&[u8]>,
    at: UnixTime,
) -> Result<(), webpki::Error> {
    let root = CertificateDer::from(ca.root_der());
    let anchors = [webpki::anchor_from_trusted_cert(&root).expect("root is a trust anchor")];
    let intermediates = [CertificateDer::from(ca.issuing_der())];
    let leaf = CertificateDer::from(leaf_der);
    let ee = EndEntityCert::try_from(&leaf)?;
    let crl = crl_der
        .map(|der| BorrowedCertRevocationList::from_der(der).map(CertRevocationList::from))
        .transpose()?;
    let crls: Vec<&CertRevocationList<'_>> = crl.iter().collect();
    let revocation = if crls.is_empty() {
        None
    } else {
        Some(
            RevocationOptionsBuilder::new(&crls)
                .expect("at least one CRL")
                .with_depth(RevocationCheckDepth::EndEntity)
                // As the gateway runs: a certificate with no CRL to check it against fails.
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build(),
        )
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        at,
        usage,
        revocation,
        None,
    )
    .map(|_| ())
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn client_certificate_verifies_and_revocation_is_seen() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048] {
        let t = new_ca(alg);
        let id = TerminalId::new("hosp1", "term1").unwrap();
        let (cert, _) = t.ca.issue_terminal(&id, 30 * DAY, alg).unwrap();
        let (other, _) = t.ca.issue_terminal(&id, 30 * DAY, alg).unwrap();

        verify(&t.ca, &cert.der, KeyUsage::client_auth(), None, now())
            .unwrap_or_else(|e| panic!("{alg}: client cert rejected: {e:?}"));
        // A terminal certificate is no server certificate.
        assert!(verify(&t.ca, &cert.der, KeyUsage::server_auth(), None, now()).is_err());

        let t0 = OffsetDateTime::now_utc() - time::Duration::minutes(1);
        let listed =
            t.ca.crl(
                &[RevokedEntry {
                    serial_hex: cert.serial_hex.clone(),
                    revoked_at: t0,
                    reason: RevocationReason::KeyCompromise,
                }],
                2,
                t0,
                t0 + time::Duration::days(1),
            )
            .unwrap();
        let err = verify(
            &t.ca,
            &cert.der,
            KeyUsage::client_auth(),
            Some(&listed.der),
            now(),
        )
        .unwrap_err();
        assert_eq!(err, webpki::Error::CertRevoked, "{alg}");
        // The same CRL does not list the other certificate.
        verify(
            &t.ca,
            &other.der,
            KeyUsage::client_auth(),
            Some(&listed.der),
            now(),
        )
        .unwrap_or_else(|e| panic!("{alg}: unlisted cert rejected: {e:?}"));

        // An empty CRL: not revoked.
        let empty = t.ca.crl(&[], 3, t0, t0 + time::Duration::days(1)).unwrap();
        verify(
            &t.ca,
            &cert.der,
            KeyUsage::client_auth(),
            Some(&empty.der),
            now(),
        )
        .unwrap_or_else(|e| panic!("{alg}: cert rejected with empty CRL: {e:?}"));

        // Once the CRL is past its next update, the gateway must fail closed.
        let later = UnixTime::since_unix_epoch(Duration::from_secs(
            (t0 + time::Duration::days(2)).unix_timestamp() as u64,
        ));
        let err = verify(
            &t.ca,
            &other.der,
            KeyUsage::client_auth(),
            Some(&empty.der),
            later,
        )
        .unwrap_err();
        assert!(
            matches!(err, webpki::Error::CrlExpired { .. }),
            "{alg}: {err:?}"
        );
    }
}

#[test]
fn csr_certificate_is_revoked_by_serial() {
    // The serial written into the CRL must equal the certificate's serial bytes, also when the
    // serial was typed back by a person in another spelling.
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("ph-12", "counter").unwrap();
    let (cert, _) =
        t.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    let typed = cert
        .serial_hex
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let t0 = OffsetDateTime::now_utc();
    let crl =
        t.ca.crl(
            &[RevokedEntry {
                serial_hex: format!("00:{typed}"),
                revoked_at: t0,
                reason: RevocationReason::CertificateHold,
            }],
            1,
            t0,
            t0 + time::Duration::hours(6),
        )
        .unwrap();
    let err = verify(
        &t.ca,
        &cert.der,
        KeyUsage::client_auth(),
        Some(&crl.der),
        now(),
    )
    .unwrap_err();
    assert_eq!(err, webpki::Error::CertRevoked);
}

#[test]
fn server_certificate_verifies_for_its_names() {
    let t = new_ca(KeyAlgorithm::EcdsaP256);
    let (cert, _) =
        t.ca.issue_server(
            &["sekisho.example.jp".into()],
            &["127.0.0.1".parse().unwrap()],
            DAY,
        )
        .unwrap();
    verify(&t.ca, &cert.der, KeyUsage::server_auth(), None, now()).unwrap();
    assert!(verify(&t.ca, &cert.der, KeyUsage::client_auth(), None, now()).is_err());
    let leaf = CertificateDer::from(cert.der.as_slice());
    let ee = EndEntityCert::try_from(&leaf).unwrap();
    ee.verify_is_valid_for_subject_name(&ServerName::try_from("sekisho.example.jp").unwrap())
        .unwrap();
    ee.verify_is_valid_for_subject_name(&ServerName::try_from("127.0.0.1").unwrap())
        .unwrap();
    assert!(
        ee.verify_is_valid_for_subject_name(&ServerName::try_from("other.example.jp").unwrap())
            .is_err()
    );
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let a = new_ca(KeyAlgorithm::EcdsaP256);
    let b = new_ca(KeyAlgorithm::EcdsaP256);
    let id = TerminalId::new("f", "t").unwrap();
    let (cert, _) =
        b.ca.issue_terminal(&id, DAY, KeyAlgorithm::EcdsaP256)
            .unwrap();
    assert!(verify(&a.ca, &cert.der, KeyUsage::client_auth(), None, now()).is_err());
}
