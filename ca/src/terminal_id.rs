//! The terminal a certificate names. The id type and its rule are the network's
//! ([`sekisho_protocol::TerminalId`]); reading it out of a certificate is the CA's job.

use x509_parser::extensions::GeneralName;

use crate::CaError;
pub use sekisho_protocol::TerminalId;
use sekisho_protocol::{IdError, TERMINAL_URN_PREFIX};

/// Reads a [`TerminalId`] from a certificate: `TerminalId::from_cert_der(der)` with this trait
/// in scope.
pub trait TerminalIdExt: Sized {
    /// The terminal named by a certificate: exactly one `urn:sekisho:terminal:` URI in its
    /// subject alternative names. Other URIs are ignored; two terminal URNs are an error, since
    /// such a certificate could stand for either terminal.
    fn from_cert_der(der: &[u8]) -> Result<Self, CaError>;
}

impl TerminalIdExt for TerminalId {
    fn from_cert_der(der: &[u8]) -> Result<Self, CaError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CaError::BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CaError::BadCertificate(
                "trailing data after the certificate".into(),
            ));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CaError::BadCertificate(format!("subject alternative names: {e}")))?
            .ok_or(CaError::NoTerminalUrn)?;
        let mut urns = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                // Compared without regard to case so that a look-alike spelling is counted (and
                // then refused by `from_urn`) rather than silently ignored.
                GeneralName::URI(uri)
                    if uri.len() >= TERMINAL_URN_PREFIX.len()
                        && uri.as_bytes()[..TERMINAL_URN_PREFIX.len()]
                            .eq_ignore_ascii_case(TERMINAL_URN_PREFIX.as_bytes()) =>
                {
                    Some(*uri)
                }
                _ => None,
            });
        let first = urns.next().ok_or(CaError::NoTerminalUrn)?;
        if urns.next().is_some() {
            return Err(CaError::SeveralTerminalUrns);
        }
        Ok(TerminalId::from_urn(first)?)
    }
}

impl From<IdError> for CaError {
    fn from(e: IdError) -> Self {
        match e {
            IdError::InvalidId { what, value } => CaError::InvalidId { what, value },
            IdError::NotTerminalUrn(s) => CaError::NotTerminalUrn(s),
        }
    }
}
