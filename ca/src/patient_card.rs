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
//! of the HPKI path validator (`hpki::path`): at most [`MAX_PATIENT_CARD_CERT`] bytes, one DER
//! certificate without trailing data, version 3, no repeated extension, no critical extension
//! other than basicConstraints, keyUsage, subjectAltName and extKeyUsage, no nameConstraints;
//! the issuer is the patient-card CA byte for byte and its key verifies the signature (the
//! algorithm inside the signed part equal to the outer one); card, CA and root valid at the
//! given time; not a CA; keyUsage with digitalSignature and without keyCertSign/cRLSign; the
//! extended key usage lists [`PATIENT_CARD_EKU`]; a P-256 key; exactly one subject alternative
//! name, the patient URI, with a valid id.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::asn1_rs::Oid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use zeroize::{Zeroize, Zeroizing};

use crate::CaError;
use crate::authority::{
    CLOCK_SKEW, IssuedCert, ca_params, now_seconds, parse_cert, serial_hex, validity,
};
use crate::cadir::{self, NewFile};
use crate::encoding::{pem_encode, pem_or_der, random_serial, serial_hex_from_raw};
use crate::hpki::error::day;
use crate::hpki::inspect::{self, CertFacts};
use crate::hpki::signature::{PublicKey, SigError};
use crate::keyfile::{KeyPem, decode_key_file, encode_key_file};

/// `urn:sekisho:patient:<network patient id>`, the card certificate's one URI SAN.
pub const PATIENT_URN_PREFIX: &str = "urn:sekisho:patient:";
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
/// Longest patient id.
pub const MAX_PATIENT_ID: usize = 64;

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

/// Whether `id` is a network patient id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`, the rule of
/// `sekisho_policies::is_valid_patient_id` (the gateway's routes), repeated here so that the CA
/// does not depend on the policy crate.
pub fn is_valid_patient_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PATIENT_ID
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `urn:sekisho:patient:<id>`.
pub fn patient_urn(patient_id: &str) -> String {
    format!("{PATIENT_URN_PREFIX}{patient_id}")
}

// ---------------------------------------------------------------- the CA

/// The patient-card CA, loaded from the CA directory with its key in memory.
pub struct PatientCardCa {
    dir: PathBuf,
    root_der: Vec<u8>,
    ca_der: Vec<u8>,
    ca_not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for PatientCardCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientCardCa")
            .field("dir", &self.dir)
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

/// Loads the patient-card CA of the CA in `dir`, making it first if it does not exist yet
/// (which needs the root key, `root.key`, and `passphrase` if the root key is encrypted). The
/// new key is stored encrypted with `passphrase` when one is given. Safe against a concurrent
/// call: the CA files are never overwritten, and the loser of a race loads the winner's CA.
pub fn ensure_patient_card_ca(
    dir: &Path,
    passphrase: Option<&str>,
) -> Result<PatientCardCa, CaError> {
    PatientCardCa::ensure(dir, passphrase)
}

impl PatientCardCa {
    /// See [`ensure_patient_card_ca`].
    pub fn ensure(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        let exists = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
        if exists(cadir::PATIENT_CA_CERT) || exists(cadir::PATIENT_CA_KEY) {
            return Self::load(dir, passphrase);
        }
        match Self::create(dir, passphrase) {
            Err(CaError::AlreadyExists { .. }) => Self::load(dir, passphrase),
            other => other,
        }
    }

    /// Loads an existing patient-card CA; [`CaError::Missing`] if there is none.
    pub fn load(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        let root_der = read_cert(dir, cadir::ROOT_CERT)?;
        let ca_der = read_cert(dir, cadir::PATIENT_CA_CERT)?;
        let key_der = read_key(dir, cadir::PATIENT_CA_KEY, passphrase)?;
        Self::from_parts(dir, root_der, ca_der, &key_der)
    }

    fn create(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        if passphrase == Some("") {
            return Err(CaError::EmptyPassphrase);
        }
        let inconsistent = |reason: String| CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        let root_der = read_cert(dir, cadir::ROOT_CERT)?;
        let root_key_der = match read_key(dir, cadir::ROOT_KEY, passphrase) {
            Err(CaError::Missing(path)) => return Err(CaError::RootKeyNeeded(path)),
            other => other?,
        };
        let root_key = KeyPair::try_from(root_key_der.as_slice())
            .map_err(|e| CaError::BadKey(format!("root.key: {e}")))?;
        let (name, root_not_after) = {
            let root = parse_cert(&root_der).map_err(|e| inconsistent(format!("root.crt: {e}")))?;
            if root_key.public_key_raw() != root.public_key().subject_public_key.data.as_ref() {
                return Err(inconsistent("root.key is not the key of root.crt".into()));
            }
            let name = root
                .subject()
                .iter_organization()
                .next()
                .and_then(|o| o.as_str().ok())
                .unwrap_or("Sekisho")
                .to_owned();
            (name, root.validity().not_after.to_datetime())
        };
        let root_issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(root_der.as_slice()), root_key)
                .map_err(|e| inconsistent(format!("root.crt: {e}")))?;

        let now = now_seconds();
        let not_after = (now + time::Duration::days(PATIENT_CA_LIFETIME_DAYS)).min(root_not_after);
        if not_after <= now + time::Duration::days(1) {
            return Err(CaError::InvalidLifetime(format!(
                "the root CA expires on {}: renew the CA before making a patient-card CA",
                root_not_after.date()
            )));
        }
        let mut key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(
            &name,
            &format!("{name} Patient Card CA"),
            0,
            now - CLOCK_SKEW,
            not_after,
        )?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &root_issuer)?;
        drop(root_issuer);

        let key_der = Zeroizing::new(key.serialize_der());
        key.zeroize();
        let key_file = encode_key_file(&key_der, passphrase)?;
        let cert_pem = pem_encode("CERTIFICATE", cert.der());
        cadir::write_all_or_nothing(
            dir,
            &[
                NewFile {
                    name: cadir::PATIENT_CA_KEY,
                    contents: key_file.as_bytes(),
                    mode: cadir::KEY_MODE,
                },
                NewFile {
                    name: cadir::PATIENT_CA_CERT,
                    contents: cert_pem.as_bytes(),
                    mode: cadir::CERT_MODE,
                },
            ],
        )?;
        Self::from_parts(dir, root_der, cert.der().to_vec(), &key_der)
    }

    fn from_parts(
        dir: &Path,
        root_der: Vec<u8>,
        ca_der: Vec<u8>,
        key_pkcs8: &[u8],
    ) -> Result<PatientCardCa, CaError> {
        let inconsistent = |reason: String| CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        // The same checks as the gateway's: what this CA issues, the gateway accepts.
        PatientCardAnchors::new(&root_der, &ca_der)
            .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
        let key = KeyPair::try_from(key_pkcs8)
            .map_err(|e| CaError::BadKey(format!("{}: {e}", cadir::PATIENT_CA_KEY)))?;
        let ca_not_after = {
            let ca = parse_cert(&ca_der)
                .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
            if key.public_key_raw() != ca.public_key().subject_public_key.data.as_ref() {
                return Err(inconsistent(format!(
                    "{} is not the key of {}",
                    cadir::PATIENT_CA_KEY,
                    cadir::PATIENT_CA_CERT
                )));
            }
            ca.validity().not_after.to_datetime()
        };
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.as_slice()), key)
            .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
        Ok(PatientCardCa {
            dir: dir.to_path_buf(),
            root_der,
            ca_der,
            ca_not_after,
            issuer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the CA certificate is, for the gateway's configuration.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(cadir::PATIENT_CA_CERT)
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    pub fn ca_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.ca_der)
    }

    /// Root and patient-card CA, PEM: what [`PatientCardAnchors::from_pem_bundle`] reads.
    pub fn anchors_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root_der) + &self.ca_pem()
    }

    /// The verifier's trust anchors for this CA's cards.
    pub fn anchors(&self) -> PatientCardAnchors {
        PatientCardAnchors::new(&self.root_der, &self.ca_der)
            .expect("checked when the CA was loaded")
    }

    /// When the CA expires: no card is issued beyond it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// A new ECDSA P-256 key for a card, and its certificate for `patient_id` (see the module
    /// documentation for the profile). Returns the certificate and the key (PKCS#8). `lifetime`
    /// is usually [`DEFAULT_PATIENT_CARD_LIFETIME`]; it must end before the CA does.
    pub fn issue_patient_card(
        &self,
        patient_id: &str,
        lifetime: Duration,
    ) -> Result<(IssuedCert, KeyPem), CaError> {
        let mut key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = self.sign_patient_card(patient_id, &key, lifetime);
        let pem = KeyPem::from_pkcs8_der(&Zeroizing::new(key.serialize_der()));
        key.zeroize();
        Ok((cert?, pem?))
    }

    fn sign_patient_card(
        &self,
        patient_id: &str,
        key: &impl PublicKeyData,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        if !is_valid_patient_id(patient_id) {
            return Err(CaError::InvalidPatientId(patient_id.to_owned()));
        }
        let (not_before, not_after) = validity(lifetime, self.ca_not_after, "patient-card CA")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, PATIENT_CARD_COMMON_NAME);
        params.distinguished_name = dn;
        let urn = patient_urn(patient_id)
            .try_into()
            .map_err(|e| CaError::Signing(format!("patient URN: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(urn)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &EXT_KEY_USAGE_ARCS,
            eku_extension_value(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(key, &self.issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            serial_hex: serial_hex(&der)?,
            der,
            not_before,
            not_after,
        })
    }
}

fn read_cert(dir: &Path, name: &str) -> Result<Vec<u8>, CaError> {
    let bytes = cadir::read(dir, name)?;
    pem_or_der(&bytes, &["CERTIFICATE"], "certificate").map_err(|e| CaError::Inconsistent {
        dir: dir.to_path_buf(),
        reason: format!("{name}: {e}"),
    })
}

fn read_key(
    dir: &Path,
    name: &str,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let path = dir.join(name);
    let text = Zeroizing::new(cadir::read(dir, name)?);
    let text = std::str::from_utf8(&text)
        .map_err(|_| CaError::BadKey(format!("{}: not a PEM file", path.display())))?;
    decode_key_file(text, passphrase, &path)
}

/// The content bytes (no tag, no length) of the OID 2.25.<uuid>: the first two arcs packed
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

// ---------------------------------------------------------------- verification

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
struct PathCa {
    subject: Vec<u8>,
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
    ca: PathCa,
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
    /// Lists [`PATIENT_CARD_EKU`].
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
/// patient-card CA → card and the card profile (see the module documentation). Revocation is
/// the caller's: look [`PatientCard::serial_hex`] up in the gateway's store of revoked cards.
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

#[cfg(test)]
mod tests;
