//! HPKI: the certificates on physicians' cards (医師資格証) and other healthcare
//! professionals' cards, issued under Japan's healthcare PKI.
//!
//! - [`hcrole`]: the qualification ("Medical Doctor", "Pharmacist", …) read from the hcRole
//!   attribute of the SubjectDirectoryAttributes extension, with a parser built for hostile
//!   input.
//! - [`verify`]: [`HpkiVerifier`], which checks a card's authentication certificate against the
//!   configured HPKI trust anchors, intermediate CAs and CRLs (rustls-webpki), checks the HPKI
//!   profile (authentication policy, key usage), reads the identity, and verifies the card's
//!   signature over a login challenge.
//! - [`testca`]: [`TestHpki`], a test CA with the real HPKI profile, for tests and the demo
//!   (also as the `sekisho-hpki-testca` binary).
//!
//! # What is known and what is guessed
//!
//! The profile is the one in `HPKI.md`. The authentication end-entity policy OID
//! ([`AUTH_EE_POLICY_GUESS`]) is a guess; any policy under the authentication arc
//! ([`AUTH_POLICY_ARC`]) is accepted, so the guess only matters for the test CA.
//!
//! # Known limitation: critical certificatePolicies
//!
//! Real HPKI certificates (at least signature certificates from MEDIS) mark the
//! certificatePolicies extension **critical**. rustls-webpki 0.103 does not process certificate
//! policies, so it refuses any certificate with that extension marked critical
//! (`UnsupportedCriticalExtension`; upstream declined to change this, rustls/webpki#30, #211,
//! #232). [`HpkiVerifier`] reports such a certificate as [`HpkiError::Unsupported`], and the
//! test CA's `critical-policy` certificate reproduces the case. Until this is resolved (patched
//! webpki that treats the extension as handled by the caller, which checks the policy itself,
//! or another path validator), real cards whose certificates carry a critical policy extension
//! cannot log in.

pub mod hcrole;
pub mod testca;
pub mod verify;

mod der;
mod error;
mod text;

pub use error::HpkiError;
pub use hcrole::{
    HcRole, HcRoleError, HcRoles, Qualification, hcrole_from_certificate,
    parse_subject_directory_attributes,
};
pub use testca::{EeKind, EeSpec, TestCert, TestHpki, TestHpkiOptions};
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
