//! Patient IC cards (R-PAT-2): the patient-card issuing CA, the cards' certificates, and their
//! verification by the gateway.
//!
//! A patient gives a physician permission to see their record by handing over their Sekisho
//! patient card; the terminal agent has the card sign the gateway's challenge, and the gateway
//! checks the card's certificate with [`verify_patient_card`] and the signature with
//! [`verify_consent_signature`] before it opens a consent window.
//!
//! # The CA
//!
//! A CA of its own, beside the terminal issuing CA and signed by the same root:
//! root → patient-card CA → card. Its certificate is `patient-card-ca.crt` and its key
//! `patient-card-ca.key` (0600, encrypted with the CA passphrase when one is given) in the CA
//! directory. It is made on first use by [`ensure_patient_card_ca`], which is the one time the
//! root key is read after the CA was created. The trust anchors of the verifier
//! ([`PatientCardAnchors`]) are `root.crt` + `patient-card-ca.crt`: never the terminal issuing
//! CA, so a terminal certificate (or an HPKI certificate) is not a patient card.
//!
//! # The card certificate
//!
//! It must not identify the patient to whoever reads the card: subject
//! `CN=Sekisho patient card` and nothing else, no name, kana or birth date. The patient is
//! named only by the network patient id, in one URI subject alternative name
//! `urn:sekisho:patient:<id>` (the id rule of the gateway's routes:
//! `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`). Key: ECDSA P-256. keyUsage digitalSignature
//! (critical), basicConstraints cA=FALSE (critical), and the extended key usage
//! [`PATIENT_CARD_EKU`], a Sekisho-private purpose "patient-card consent signing":
//! `2.25.204904900645400073023197467299366626485`, the OID form (ITU-T X.667) of the UUID
//! `9a273f96-8483-4ee3-b204-7760071ce4b5`. Only that purpose: such a certificate is not a TLS
//! client certificate, and a TLS client certificate is not a patient card. Random 126-bit
//! serial; default lifetime 5 years ([`DEFAULT_PATIENT_CARD_LIFETIME`]).
//!
//! # Revocation
//!
//! There is no CRL for patient cards: the gateway keeps the serials of issued, lost and
//! withdrawn cards in its store and refuses a revoked serial after [`verify_patient_card`] has
//! accepted the certificate ([`PatientCard::serial_hex`] is the key). A withdrawal of consent
//! is in the consent registry, independent of the card.
//!
//! # Verification
//!
//! The certificate comes from the terminal, which read it from a card: hostile input. The path
//! is fixed and short, so it is validated here, with x509-parser and aws-lc-rs and the helpers
//! of the HPKI path validator (`hpki::inspect`, `hpki::signature`): at most [`MAX_PATIENT_CARD_CERT`] bytes, one DER
//! certificate without trailing data, version 3, no repeated extension, no critical extension
//! other than basicConstraints, keyUsage, subjectAltName and extKeyUsage, no nameConstraints;
//! the issuer is the patient-card CA byte for byte and its key verifies the signature (the
//! algorithm inside the signed part equal to the outer one); card, CA and root valid at the
//! given time; not a CA; keyUsage with digitalSignature and without keyCertSign/cRLSign; the
//! extended key usage lists [`PATIENT_CARD_EKU`]; a P-256 key; exactly one subject alternative
//! name, the patient URI, with a valid id.

mod ca;
mod verify;

pub use ca::{PatientCardCa, ensure_patient_card_ca};
pub use verify::{
    PatientCard, PatientCardAnchors, PatientCardError, verify_consent_signature,
    verify_patient_card,
};

use std::time::Duration;

use x509_parser::asn1_rs::Oid;
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};

/// The card certificate's one URI SAN is `urn:sekisho:patient:<network patient id>`; the id
/// rule is the network's one rule (`sekisho_protocol::ids`).
pub use sekisho_protocol::{MAX_PATIENT_ID, PATIENT_URN_PREFIX, is_valid_patient_id, patient_urn};
/// The whole subject of a card certificate.
pub const PATIENT_CARD_COMMON_NAME: &str = "Sekisho patient card";
/// The extended key usage of card certificates: Sekisho patient-card consent signing, the
/// OID of the UUID 9a273f96-8483-4ee3-b204-7760071ce4b5 under 2.25 (ITU-T X.667).
pub const PATIENT_CARD_EKU: &str = "2.25.204904900645400073023197467299366626485";
const PATIENT_CARD_EKU_UUID: u128 = 0x9a27_3f96_8483_4ee3_b204_7760_071c_e4b5;
/// Five years (and a leap day).
pub const DEFAULT_PATIENT_CARD_LIFETIME: Duration = Duration::from_secs(1826 * 24 * 3600);
/// Larger certificates are refused unread; ours are about 500 bytes, and the card's file holds
/// at most this much.
pub const MAX_PATIENT_CARD_CERT: usize = 4096;
/// Longest ECDSA P-256 signature accepted (DER: at most 72 bytes).
pub const MAX_CONSENT_SIGNATURE: usize = 80;

/// The patient-card CA: 10 years, never beyond the root.
const PATIENT_CA_LIFETIME_DAYS: i64 = 3653;
/// extKeyUsage (2.5.29.37), for the extension rcgen cannot write (an arc beyond 64 bits).
const EXT_KEY_USAGE_ARCS: [u64; 4] = [2, 5, 29, 37];

/// The extensions the patient-card profile processes, which may therefore be critical.
const PROCESSED: [Oid<'static>; 4] = [
    OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
    OID_X509_EXT_EXTENDED_KEY_USAGE,
];

/// The content bytes (no tag, no length) of the OID `2.25.<uuid>`: the first two arcs packed
/// (2 × 40 + 25), then the UUID's 128 bits in base 128.
fn eku_oid_content() -> Vec<u8> {
    let mut out = vec![2 * 40 + 25];
    let mut v = PATIENT_CARD_EKU_UUID;
    let mut groups = Vec::new();
    loop {
        groups.push((v & 0x7f) as u8);
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().enumerate().rev() {
        out.push(if i == 0 { *g } else { g | 0x80 });
    }
    out
}

/// `ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId` with our one purpose.
fn eku_extension_value() -> Vec<u8> {
    let content = eku_oid_content();
    let oid = crate::hpki::der::tlv(crate::hpki::der::OID, &content);
    crate::hpki::der::tlv(crate::hpki::der::SEQUENCE, &oid)
}

#[cfg(test)]
mod tests;
