//! Certificate revocation lists: building them (signed by the issuing CA, in the shape
//! rustls-webpki checks) and reading them back.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_INVALIDITY_DATE, OID_X509_EXT_REASON_CODE,
};
use x509_parser::x509::ReasonCode;

use crate::CaError;
use crate::encoding::{pem_encode, pem_or_der, serial_bytes_from_hex, serial_hex_from_raw};

/// Why a certificate was revoked (RFC 5280 §5.3.1), as far as Sekisho uses reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    /// A suspension: the certificate may be taken off the list again later.
    CertificateHold,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 6] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
    ];

    /// The kebab-case name used by the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::CertificateHold => "certificate-hold",
        }
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
        }
    }

    fn from_code(code: ReasonCode) -> Option<Self> {
        Some(match code {
            ReasonCode::Unspecified => RevocationReason::Unspecified,
            ReasonCode::KeyCompromise => RevocationReason::KeyCompromise,
            ReasonCode::AffiliationChanged => RevocationReason::AffiliationChanged,
            ReasonCode::Superseded => RevocationReason::Superseded,
            ReasonCode::CessationOfOperation => RevocationReason::CessationOfOperation,
            ReasonCode::CertificateHold => RevocationReason::CertificateHold,
            _ => return None,
        })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, CaError> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| CaError::InvalidReason(s.to_owned()))
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// As in `IssuedCert::serial_hex`; other spellings (upper case, ':' separators, leading
    /// zeros) are accepted when building a CRL, and `parse_crl` returns the normal form.
    pub serial_hex: String,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pub der: Vec<u8>,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub crl_number: u64,
}

impl Crl {
    pub fn pem(&self) -> String {
        crl_pem(&self.der)
    }
}

/// PEM of a DER CRL (as kept in the store).
pub fn crl_pem(der: &[u8]) -> String {
    pem_encode("X509 CRL", der)
}

/// What `parse_crl` found in a CRL whose signature it checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCrl {
    pub entries: Vec<RevokedEntry>,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub crl_number: u64,
}

/// Builds and signs a CRL. `issuer_key_id` is the issuing CA's subject key identifier, which
/// becomes the CRL's authority key identifier (webpki and RFC 5280 want it).
pub(crate) fn build(
    issuer: &rcgen::Issuer<'_, impl rcgen::SigningKey>,
    issuer_key_id: &[u8],
    entries: &[RevokedEntry],
    crl_number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Crl, CaError> {
    // CRL times are whole seconds; compare what will actually be encoded.
    let this_update = this_update.replace_nanosecond(0).expect("0 is valid");
    let next_update = next_update.replace_nanosecond(0).expect("0 is valid");
    if next_update <= this_update {
        return Err(CaError::InvalidCrlParams(format!(
            "next update ({next_update}) must be after this update ({this_update})"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut revoked_certs = Vec::with_capacity(entries.len());
    for e in entries {
        let serial = serial_bytes_from_hex(&e.serial_hex)?;
        if !seen.insert(serial.clone()) {
            return Err(CaError::InvalidCrlParams(format!(
                "serial {} is listed twice",
                serial_hex_from_raw(&serial)
            )));
        }
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: e.revoked_at,
            // rcgen leaves the extension out for "unspecified", as RFC 5280 asks.
            reason_code: Some(e.reason.to_rcgen()),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(issuer_key_id.to_vec()),
    };
    let crl = params.signed_by(issuer)?;
    Ok(Crl {
        der: crl.der().to_vec(),
        this_update,
        next_update,
        crl_number,
    })
}

/// Parses a CRL (PEM or DER) and checks that `issuer_der` (a certificate) signed it.
pub fn parse_crl(crl: &[u8], issuer_der: &[u8]) -> Result<ParsedCrl, CaError> {
    let der = pem_or_der(crl, &["X509 CRL"], "CRL").map_err(CaError::BadCrl)?;
    let bad = |why: String| CaError::BadCrl(why);
    let (rest, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| bad(format!("damaged: {e}")))?;
    if !rest.is_empty() {
        return Err(bad("trailing data after the CRL".into()));
    }
    let (rest, issuer) = x509_parser::parse_x509_certificate(issuer_der)
        .map_err(|e| CaError::BadCertificate(format!("issuer certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::BadCertificate(
            "trailing data after the issuer certificate".into(),
        ));
    }

    if crl.tbs_cert_list.issuer.as_raw() != issuer.subject().as_raw() {
        return Err(CaError::CrlIssuer(format!(
            "it names \"{}\" as issuer, not \"{}\"",
            crl.tbs_cert_list.issuer,
            issuer.subject()
        )));
    }
    crl.verify_signature(issuer.public_key()).map_err(|_| {
        CaError::CrlIssuer("its signature does not verify with this CA's key".into())
    })?;

    let mut crl_number = None;
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLNumber(n) => {
                crl_number = Some(
                    u64::try_from(n)
                        .map_err(|_| bad("CRL number larger than Sekisho issues".into()))?,
                );
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                let ski = issuer
                    .iter_extensions()
                    .find_map(|e| match e.parsed_extension() {
                        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                        _ => None,
                    });
                if let (Some(want), Some(got)) = (ski, aki.key_identifier.as_ref())
                    && want != got.0
                {
                    return Err(CaError::CrlIssuer(
                        "its authority key identifier differs".into(),
                    ));
                }
            }
            _ if ext.critical => {
                return Err(bad(format!("unsupported critical extension {}", ext.oid)));
            }
            _ => {}
        }
    }
    let crl_number = crl_number.ok_or_else(|| bad("no CRL number".into()))?;
    if crl
        .extensions()
        .iter()
        .all(|e| e.oid != OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
    {
        return Err(bad("no authority key identifier".into()));
    }

    let this_update = crl.last_update().to_datetime();
    let next_update = crl
        .next_update()
        .ok_or_else(|| bad("no next-update time".into()))?
        .to_datetime();

    let mut entries = Vec::new();
    for revoked in crl.iter_revoked_certificates() {
        let serial_hex = serial_hex_from_raw(revoked.raw_serial());
        let mut reason = RevocationReason::Unspecified;
        for ext in revoked.extensions() {
            if ext.oid == OID_X509_EXT_REASON_CODE {
                let ParsedExtension::ReasonCode(code) = ext.parsed_extension() else {
                    return Err(bad(format!("damaged reason code for serial {serial_hex}")));
                };
                reason = RevocationReason::from_code(*code).ok_or_else(|| {
                    bad(format!(
                        "unsupported reason code {} for serial {serial_hex}",
                        code.0
                    ))
                })?;
            } else if ext.critical && ext.oid != OID_X509_EXT_INVALIDITY_DATE {
                return Err(bad(format!(
                    "unsupported critical entry extension {} for serial {serial_hex}",
                    ext.oid
                )));
            }
        }
        entries.push(RevokedEntry {
            serial_hex,
            revoked_at: revoked.revocation_date.to_datetime(),
            reason,
        });
    }
    Ok(ParsedCrl {
        entries,
        this_update,
        next_update,
        crl_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_and_print() {
        for r in RevocationReason::ALL {
            assert_eq!(r.to_string().parse::<RevocationReason>().unwrap(), r);
        }
        assert_eq!(
            "Key_Compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        let err = "stolen".parse::<RevocationReason>().unwrap_err();
        assert!(err.to_string().contains("key-compromise"), "{err}");
    }
}
