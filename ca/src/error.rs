//! Errors of the CA. The messages are read by the network secretariat, so each one says what is
//! wrong and, where it can, what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error(
        "{what} {value:?} is not allowed: use 1 to 64 characters, each a letter A-Z or a-z, a digit, '.', '_' or '-'"
    )]
    InvalidId { what: &'static str, value: String },

    #[error(
        "the patient id {0:?} is not allowed: use 1 to 64 characters, each a letter A-Z or a-z, a digit, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidPatientId(String),

    #[error(
        "the patient-card CA does not exist yet, and making it needs the root CA's key {0}, which is missing; run this where the root key is kept"
    )]
    RootKeyNeeded(PathBuf),

    #[error(
        "{0:?} is not a Sekisho terminal name (expected urn:sekisho:terminal:<facility>:<terminal>)"
    )]
    NotTerminalUrn(String),

    #[error(
        "the certificate names no Sekisho terminal (no urn:sekisho:terminal: URI among its subject alternative names)"
    )]
    NoTerminalUrn,

    #[error("the certificate names more than one Sekisho terminal, so it cannot identify one")]
    SeveralTerminalUrns,

    #[error("the certificate could not be read: {0}")]
    BadCertificate(String),

    #[error(
        "the network name {0:?} cannot be used: give 1 to 54 characters, without control characters"
    )]
    InvalidCaName(String),

    #[error("a CA already exists in {dir}: {file} is present; refusing to overwrite it")]
    AlreadyExists { dir: PathBuf, file: String },

    #[error("no CA found: {0} is missing")]
    Missing(PathBuf),

    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the CA key {0} is encrypted: a passphrase is needed to use it")]
    PassphraseRequired(PathBuf),

    #[error("the passphrase for {0} is wrong (or the file is damaged)")]
    WrongPassphrase(PathBuf),

    #[error("an empty passphrase does not protect anything: give a passphrase, or none at all")]
    EmptyPassphrase,

    #[error("the CA files in {dir} do not belong together: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },

    #[error("the private key could not be read: {0}")]
    BadKey(String),

    #[error("the certificate request (CSR) is not valid: {0}")]
    BadCsr(String),

    #[error(
        "the certificate request (CSR) signature does not verify: it was altered, or was not made with the key it contains"
    )]
    CsrSignature,

    #[error(
        "unsupported key: {0}; use an EC key on curve P-256 or P-384, or an RSA key of 2048 to 4096 bits"
    )]
    UnsupportedKey(String),

    #[error("invalid certificate lifetime: {0}")]
    InvalidLifetime(String),

    #[error("invalid server name: {0}")]
    InvalidServerName(String),

    #[error(
        "{0:?} is not a certificate serial number (expected hexadecimal digits, at most 20 bytes)"
    )]
    InvalidSerial(String),

    #[error(
        "{0:?} is not a revocation reason; use one of: unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation, certificate-hold"
    )]
    InvalidReason(String),

    #[error("invalid CRL: {0}")]
    InvalidCrlParams(String),

    #[error("the CRL could not be read: {0}")]
    BadCrl(String),

    #[error("the CRL was not issued by this CA: {0}")]
    CrlIssuer(String),

    #[error("the PKCS#12 bundle could not be made: {0}")]
    Pkcs12(String),

    #[error("the certificate or CRL could not be signed: {0}")]
    Signing(String),

    #[error("the system random number generator failed")]
    Random,
}

impl CaError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CaError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Signing(e.to_string())
    }
}
