//! HPKI: the certificates on physicians' cards (医師資格証) and other healthcare
//! professionals' cards, issued under Japan's healthcare PKI.
//!
//! - [`hcrole`]: the qualification ("Medical Doctor", "Pharmacist", …) read from the hcRole
//!   attribute of the SubjectDirectoryAttributes extension, with a parser built for hostile
//!   input.
//! - [`verify`]: [`HpkiVerifier`], which checks a card's authentication certificate against the
//!   configured HPKI trust anchors, intermediate CAs and CRLs (with the path validator of the
//!   private `path` module), checks the HPKI profile (authentication policy, key usage), reads
//!   the identity, and verifies the card's signature over a login challenge.
//! - `testca` (feature `test-util`, and this crate's own tests): `TestHpki`, a test CA with
//!   the real HPKI profile, for tests (also as the `sekisho-hpki-testca` binary). Not compiled
//!   into production builds.
//!
//! # What is known and what is guessed
//!
//! The profile is the one in `docs/hpki.md`. The authentication end-entity policy OID
//! ([`AUTH_EE_POLICY_GUESS`]) is a guess; any policy under the authentication arc
//! ([`AUTH_POLICY_ARC`]) is accepted, so the guess only matters for the test CA.
//!
//! # Critical certificatePolicies, and why the path validator is our own
//!
//! Real HPKI certificates (at least signature certificates from MEDIS) mark the
//! certificatePolicies extension **critical**. rustls-webpki does not process certificate
//! policies, so it refuses any certificate with that extension marked critical
//! (`UnsupportedCriticalExtension`; upstream declined to change this, rustls/webpki#30, #211,
//! #232), and real cards could not log in. The HPKI path is short and fixed (MHLW root →
//! issuing CA → card), so [`HpkiVerifier`] validates it itself: signatures with aws-lc-rs
//! (RSA PKCS#1 v1.5 with SHA-256/384/512, ECDSA P-256/P-384), certificates read with
//! x509-parser, CRLs read with rustls-webpki, and everything webpki checked for us (names,
//! signatures, validity, CA flags and key usage, path length, extended key usage, critical
//! extensions, CRLs along the chain, fail closed). certificatePolicies is one of the
//! extensions it processes (the HPKI policy checks of [`verify`]), so it may be critical, in
//! the card's certificate and in the CAs'. Any other critical extension that we do not process
//! is still refused ([`HpkiError::Unsupported`]). The checks are listed in the documentation of
//! the `path` module (`ca/src/hpki/path.rs`). The test CA's `critical-policy` certificate is
//! the real case, and verifies.

pub mod hcrole;
#[cfg(any(test, feature = "test-util"))]
pub mod testca;
pub mod verify;

pub(crate) mod der;
pub(crate) mod error;
// `inspect`, `name` and `signature` also serve the patient-card verifier (`crate::patient_card`).
pub(crate) mod inspect;
mod issuers;
pub(crate) mod name;
mod path;
mod revocation;
pub(crate) mod signature;
mod text;

pub use error::HpkiError;
pub use hcrole::{
    HcRole, HcRoleError, HcRoles, Qualification, hcrole_from_certificate,
    parse_subject_directory_attributes,
};
#[cfg(any(test, feature = "test-util"))]
pub use testca::{
    CaSpec, EeKind, EeSpec, RawExtension, TestCa, TestCert, TestHpki, TestHpkiOptions,
};
pub use text::TextError;
pub use verify::{HpkiIdentity, HpkiTrustConfig, HpkiVerifier, IssuerSerial, RevocationScope};

/// Policy arc of HPKI authentication certificates (CAs and end entities): 1.2.392.100495.1.5.1.2.
pub const AUTH_POLICY_ARC: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 2];
/// Policy arc of HPKI signature (non-repudiation) certificates: 1.2.392.100495.1.5.1.1.
pub const SIGNATURE_POLICY_ARC: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 1];
/// Policy of HPKI authentication issuing CAs, as seen in real certificates.
pub const AUTH_CA_POLICY: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 2, 3, 1];
/// Policy of HPKI signature issuing CAs, as seen in real certificates.
pub const SIGNATURE_CA_POLICY: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 1, 3, 1];
/// Policy of HPKI signature end-entity certificates, as seen in real certificates.
pub const SIGNATURE_EE_POLICY: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 1, 0, 1];
/// Policy of HPKI authentication end-entity certificates. **A guess**, by analogy with the
/// signature policy; the verifier accepts any policy under [`AUTH_POLICY_ARC`].
pub const AUTH_EE_POLICY_GUESS: &[u64] = &[1, 2, 392, 100_495, 1, 5, 1, 2, 0, 1];

/// The arcs of an OID.
pub(crate) fn arcs(oid: &x509_parser::asn1_rs::Oid<'_>) -> Result<Vec<u64>, HpkiError> {
    oid.iter()
        .map(Iterator::collect)
        .ok_or_else(|| HpkiError::Malformed("an object identifier is too large".into()))
}

/// Dotted form of an OID given as arcs.
pub fn oid_string(arcs: &[u64]) -> String {
    let mut s = String::new();
    for (i, arc) in arcs.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&arc.to_string());
    }
    s
}
