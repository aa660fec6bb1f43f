//! The gateway's verification of a patient card: the card's certificate against the
//! patient-card trust anchors, and the card's consent signature (see the documentation of
//! `crate::patient_card`).

use std::fmt;
use std::path::Path;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::{
    MAX_CONSENT_SIGNATURE, MAX_PATIENT_CARD_CERT, PATIENT_URN_PREFIX, PROCESSED, eku_oid_content,
    is_valid_patient_id,
};
use crate::authority::parse_cert;
use crate::cadir;
use crate::encoding::{pem_or_der, serial_hex_from_raw};
use crate::hpki::error::day;
use crate::hpki::inspect::{self, CertFacts};
use crate::hpki::signature::{PublicKey, SigError};

/// Why a patient card's certificate or signature was refused. The gateway answers all of them
/// as `patient_card_invalid`; the messages are for its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatientCardError {
    #[error("the patient card's certificate could not be read: {0}")]
    Malformed(String),

    #[error("the patient card's certificate cannot be checked here: {0}")]
    Unsupported(String),

    #[error("the certificate is not a patient card of this network: {0}")]
    Untrusted(String),

    #[error(
        "the {} expired on {}",
        if *.end_entity { "patient card's certificate" } else { "certificate of a CA above the patient card" },
        day(.not_after)
    )]
    Expired {
        not_after: OffsetDateTime,
        /// true: the card's certificate; false: the patient-card CA or the root.
        end_entity: bool,
    },

    #[error(
        "the certificate is not valid before {}; check the gateway's clock",
        day(.not_before)
    )]
    NotYetValid { not_before: OffsetDateTime },

    #[error("the certificate is not a patient-card certificate: {0}")]
    WrongProfile(String),

    #[error("the certificate names no patient (no urn:sekisho:patient: URI)")]
    NoPatientId,

    #[error("the certificate names more than one patient")]
    SeveralPatientIds,

    #[error("the certificate's patient name {0:?} is not urn:sekisho:patient:<valid patient id>")]
    InvalidPatientId(String),

    #[error(
        "the patient card's signature does not verify: the challenge was altered, or the certificate is not the card's"
    )]
    BadSignature,

    #[error("the patient-card trust anchors cannot be used: {0}")]
    Config(String),
}

impl From<crate::hpki::HpkiError> for PatientCardError {
    /// From `hpki::inspect::inspect_with`, which reports only these two.
    fn from(e: crate::hpki::HpkiError) -> Self {
        match e {
            crate::hpki::HpkiError::Unsupported(m) => PatientCardError::Unsupported(m),
            crate::hpki::HpkiError::Malformed(m) => PatientCardError::Malformed(m),
            other => PatientCardError::Malformed(other.to_string()),
        }
    }
}

/// What a verified card certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientCard {
    /// The network patient id (checked against [`is_valid_patient_id`]).
    pub patient_id: String,
    /// Lowercase hex, without DER's leading 00 (the crate's one spelling of serials): what the
    /// gateway's revocation list of cards holds.
    pub serial_hex: String,
    pub not_after: OffsetDateTime,
}

/// A CA certificate of the patient-card path, checked once.
#[derive(Clone)]
pub(super) struct PathCa {
    pub(super) subject: Vec<u8>,
    name: String,
    key: PublicKey,
    facts: CertFacts,
}

/// The trust anchors of patient cards: Sekisho's root and its patient-card CA, checked when
/// built (the CA is a CA, with keyCertSign, issued and signed by the root, whose path length
/// allows it; neither has an extended key usage that excludes patient-card signing).
#[derive(Clone)]
pub struct PatientCardAnchors {
    root: PathCa,
    pub(super) ca: PathCa,
}

impl fmt::Debug for PatientCardAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientCardAnchors")
            .field("root", &self.root.name)
            .field("ca", &self.ca.name)
            .finish()
    }
}

impl PatientCardAnchors {
    /// From the root certificate and the patient-card CA certificate (each PEM or DER).
    pub fn new(root: &[u8], patient_card_ca: &[u8]) -> Result<Self, PatientCardError> {
        let cfg = PatientCardError::Config;
        let root_der = pem_or_der(root, &["CERTIFICATE"], "root certificate").map_err(cfg)?;
        let ca_der = pem_or_der(
            patient_card_ca,
            &["CERTIFICATE"],
            "patient-card CA certificate",
        )
        .map_err(cfg)?;
        let root_cert = parse_cert(&root_der)
            .map_err(|e| PatientCardError::Config(format!("root certificate: {e}")))?;
        let ca_cert = parse_cert(&ca_der)
            .map_err(|e| PatientCardError::Config(format!("patient-card CA: {e}")))?;
        let root = path_ca(&root_cert, "root certificate")?;
        let ca = path_ca(&ca_cert, "patient-card CA")?;
        let cfg = |why: String| PatientCardError::Config(why);
        if root_cert.subject().as_raw() != root_cert.issuer().as_raw() {
            return Err(cfg(format!(
                "the root certificate \"{}\" is not self-issued",
                root.name
            )));
        }
        if ca.subject == root.subject {
            return Err(cfg(
                "the patient-card CA has the name of the root: give the root and the patient-card CA"
                    .into(),
            ));
        }
        if ca_cert.issuer().as_raw() != root.subject.as_slice() {
            return Err(cfg(format!(
                "the patient-card CA \"{}\" was not issued by the root \"{}\"",
                ca.name, root.name
            )));
        }
        root.key.verify_cert(&ca_cert).map_err(|e| {
            cfg(format!(
                "the signature of the patient-card CA \"{}\" does not verify with the root's key{}",
                ca.name,
                match e {
                    SigError::Unsupported(m) => format!(" ({m})"),
                    SigError::Invalid => String::new(),
                }
            ))
        })?;
        if root.facts.path_len.is_some_and(|n| n < 1) {
            return Err(cfg(format!(
                "the path length constraint of the root \"{}\" forbids a CA below it",
                root.name
            )));
        }
        Ok(PatientCardAnchors { root, ca })
    }

    /// From one PEM text holding both certificates, in any order (the root is the self-issued
    /// one).
    pub fn from_pem_bundle(pem_text: &[u8]) -> Result<Self, PatientCardError> {
        let cfg = PatientCardError::Config;
        if pem_text.len() > crate::encoding::MAX_INPUT {
            return Err(cfg("the trust anchor file is far too large".into()));
        }
        let blocks = pem::parse_many(pem_text)
            .map_err(|e| cfg(format!("the trust anchor PEM is damaged: {e}")))?;
        let certs: Vec<Vec<u8>> = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect();
        if certs.len() != 2 {
            return Err(cfg(format!(
                "expected two certificates (the root and the patient-card CA), found {}",
                certs.len()
            )));
        }
        let self_issued =
            |der: &[u8]| parse_cert(der).is_ok_and(|c| c.subject().as_raw() == c.issuer().as_raw());
        if self_issued(&certs[1]) && !self_issued(&certs[0]) {
            Self::new(&certs[1], &certs[0])
        } else {
            Self::new(&certs[0], &certs[1])
        }
    }

    /// From a CA directory: `root.crt` and `patient-card-ca.crt`.
    pub fn load(dir: &Path) -> Result<Self, PatientCardError> {
        let read = |name: &str| {
            cadir::read(dir, name).map_err(|e| PatientCardError::Config(e.to_string()))
        };
        Self::new(&read(cadir::ROOT_CERT)?, &read(cadir::PATIENT_CA_CERT)?)
    }
}

/// A CA certificate of the path: its structure, that it may issue, its key; its extended key
/// usage, if any, allows patient-card signing (EKU chaining).
fn path_ca(cert: &X509Certificate<'_>, what: &str) -> Result<PathCa, PatientCardError> {
    let name = cert.subject().to_string();
    let cfg = |why: String| PatientCardError::Config(format!("{what} \"{name}\": {why}"));
    let facts = inspect::inspect_with(cert, &PROCESSED).map_err(|e| cfg(e.to_string()))?;
    inspect::check_may_issue(&facts).map_err(cfg)?;
    match eku(cert).map_err(|e| cfg(e.to_string()))? {
        Eku::Absent | Eku::Any | Eku::PatientCard => {}
        Eku::Other => {
            return Err(cfg(
                "its extended key usage does not allow patient-card signing".into(),
            ));
        }
    }
    let key = PublicKey::from_spki(cert.public_key())
        .map_err(|e| cfg(format!("its key is not supported: {e}")))?;
    Ok(PathCa {
        subject: cert.subject().as_raw().to_vec(),
        name: name.clone(),
        key,
        facts,
    })
}

enum Eku {
    Absent,
    /// anyExtendedKeyUsage (accepted on CAs only).
    Any,
    /// Lists [`PATIENT_CARD_EKU`](super::PATIENT_CARD_EKU).
    PatientCard,
    Other,
}

fn eku(cert: &X509Certificate<'_>) -> Result<Eku, PatientCardError> {
    let content = eku_oid_content();
    match cert.extended_key_usage() {
        Ok(None) => Ok(Eku::Absent),
        Ok(Some(ext)) => {
            let eku = &ext.value;
            if eku.other.iter().any(|o| o.as_bytes() == content.as_slice()) {
                Ok(Eku::PatientCard)
            } else if eku.any {
                Ok(Eku::Any)
            } else {
                Ok(Eku::Other)
            }
        }
        Err(e) => Err(PatientCardError::Malformed(format!(
            "its extended key usage cannot be read: {e}"
        ))),
    }
}

/// RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both inclusive.
fn check_time(facts: &CertFacts, at: i64, end_entity: bool) -> Result<(), PatientCardError> {
    let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if at < facts.not_before {
        return Err(PatientCardError::NotYetValid {
            not_before: t(facts.not_before),
        });
    }
    if at > facts.not_after {
        return Err(PatientCardError::Expired {
            not_after: t(facts.not_after),
            end_entity,
        });
    }
    Ok(())
}

fn parse_card_cert(cert_der: &[u8]) -> Result<X509Certificate<'_>, PatientCardError> {
    if cert_der.len() > MAX_PATIENT_CARD_CERT {
        return Err(PatientCardError::Malformed(format!(
            "it is larger than {MAX_PATIENT_CARD_CERT} bytes"
        )));
    }
    parse_cert(cert_der).map_err(PatientCardError::Malformed)
}

/// Verifies a patient card's certificate (DER, as the card holds it) at `now`: the path root →
/// patient-card CA → card and the card profile (see the documentation of
/// [`patient_card`](super)). Revocation is the caller's: look [`PatientCard::serial_hex`] up in
/// the gateway's store of revoked cards.
pub fn verify_patient_card(
    anchors: &PatientCardAnchors,
    cert_der: &[u8],
    now: OffsetDateTime,
) -> Result<PatientCard, PatientCardError> {
    let cert = parse_card_cert(cert_der)?;
    let facts = inspect::inspect_with(&cert, &PROCESSED)?;
    let at = now.unix_timestamp();

    // The path.
    if cert.issuer().as_raw() != anchors.ca.subject.as_slice() {
        return Err(PatientCardError::Untrusted(format!(
            "it was issued by \"{}\", not by the patient-card CA \"{}\"",
            // The card's own bytes: escaped (RFC 4514, controls refused) before display.
            crate::hpki::name::dn_string(cert.issuer())
                .unwrap_or_else(|_| "(a name that cannot be shown)".into()),
            anchors.ca.name
        )));
    }
    anchors.ca.key.verify_cert(&cert).map_err(|e| match e {
        SigError::Invalid => PatientCardError::Untrusted(
            "its signature does not verify with the patient-card CA's key: it was altered, or forged"
                .into(),
        ),
        SigError::Unsupported(m) => PatientCardError::Unsupported(m),
    })?;
    check_time(&facts, at, true)?;
    check_time(&anchors.ca.facts, at, false)?;
    check_time(&anchors.root.facts, at, false)?;

    // The card profile.
    let wrong = |why: &str| PatientCardError::WrongProfile(why.to_owned());
    if facts.ca {
        return Err(wrong("it is a CA certificate"));
    }
    match facts.key_usage {
        None => return Err(wrong("it has no key usage")),
        Some(ku) if !ku.digital_signature() => {
            return Err(wrong("its key usage lacks digitalSignature"));
        }
        Some(ku) if ku.key_cert_sign() || ku.crl_sign() => {
            return Err(wrong("its key usage allows signing certificates or CRLs"));
        }
        Some(_) => {}
    }
    match eku(&cert)? {
        Eku::PatientCard => {}
        Eku::Absent => return Err(wrong("it has no extended key usage")),
        Eku::Any | Eku::Other => {
            return Err(wrong(
                "its extended key usage is not patient-card consent signing",
            ));
        }
    }
    let key = PublicKey::from_spki(cert.public_key())
        .map_err(|e| PatientCardError::WrongProfile(format!("its key is {e}")))?;
    if !key.is_p256() {
        return Err(wrong("its key is not an ECDSA P-256 key"));
    }
    let patient_id = patient_id_of(&cert)?;
    Ok(PatientCard {
        patient_id,
        serial_hex: serial_hex_from_raw(cert.raw_serial()),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// The one subject alternative name, `urn:sekisho:patient:<id>`.
fn patient_id_of(cert: &X509Certificate<'_>) -> Result<String, PatientCardError> {
    let mut names = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            names.extend(san.general_names.iter());
        }
    }
    // Compared without regard to case so that a look-alike spelling is counted (and then
    // refused) rather than ignored.
    let is_patient = |uri: &str| {
        uri.len() >= PATIENT_URN_PREFIX.len()
            && uri.as_bytes()[..PATIENT_URN_PREFIX.len()]
                .eq_ignore_ascii_case(PATIENT_URN_PREFIX.as_bytes())
    };
    let patients: Vec<&str> = names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) if is_patient(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match patients.len() {
        0 => return Err(PatientCardError::NoPatientId),
        1 => {}
        _ => return Err(PatientCardError::SeveralPatientIds),
    }
    if names.len() != 1 {
        return Err(PatientCardError::WrongProfile(
            "it has subject alternative names other than the patient's".into(),
        ));
    }
    let urn = patients[0];
    match urn.strip_prefix(PATIENT_URN_PREFIX) {
        Some(id) if is_valid_patient_id(id) => Ok(id.to_owned()),
        _ => Err(PatientCardError::InvalidPatientId(
            urn.chars().take(100).collect(),
        )),
    }
}

/// Verifies the card's signature over `message` (what the gateway asked it to sign): ECDSA
/// P-256 with SHA-256, the signature in ASN.1 DER as the card returns it, with the key of
/// `cert_der`. Only the signature: call [`verify_patient_card`] for the certificate.
pub fn verify_consent_signature(
    cert_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), PatientCardError> {
    let cert = parse_card_cert(cert_der)?;
    let key = PublicKey::from_spki(cert.public_key())
        .map_err(|e| PatientCardError::WrongProfile(format!("its key is {e}")))?;
    if !key.is_p256() {
        return Err(PatientCardError::WrongProfile(
            "its key is not an ECDSA P-256 key".into(),
        ));
    }
    if signature.is_empty() || signature.len() > MAX_CONSENT_SIGNATURE {
        return Err(PatientCardError::BadSignature);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.bytes())
        .verify(message, signature)
        .map_err(|_| PatientCardError::BadSignature)
}
