//! Why an HPKI certificate or login signature was refused. Each message says what is wrong and
//! who can fix it: the card holder (renew the card, use the other application), the network
//! secretariat (load a current CRL, configure the CA), or nobody (an altered certificate).

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HpkiError {
    #[error(
        "the certificate does not chain to a configured HPKI trust anchor ({0}); if the card is genuine, the secretariat must configure its issuing CA"
    )]
    Untrusted(String),

    #[error(
        "the {} expired on {}; {}",
        if *.end_entity { "card's certificate" } else { "certificate of a CA above the card" },
        day(.not_after),
        if *.end_entity { "the card holder must have the card renewed" } else { "the secretariat must install the CA's new certificate" }
    )]
    Expired {
        not_after: OffsetDateTime,
        /// true: the card's own certificate; false: a CA certificate in the chain.
        end_entity: bool,
    },

    #[error(
        "the certificate is not valid before {}; check the gateway's clock",
        day(.not_before)
    )]
    NotYetValid { not_before: OffsetDateTime },

    #[error(
        "the certificate has been revoked by its CA (card reported lost or stolen, or the qualification withdrawn)"
    )]
    Revoked,

    #[error(
        "the revocation status of the certificate is unknown ({0}); the secretariat must load the CRL of the issuing CA"
    )]
    RevocationUnknown(String),

    #[error(
        "the CRL needed to check the certificate expired on {}; the secretariat must fetch a current CRL",
        day(.next_update)
    )]
    CrlExpired { next_update: OffsetDateTime },

    #[error(
        "this is the card's signature certificate, not its authentication certificate: the card reader must use the card's authentication application"
    )]
    SignatureCertificate,

    #[error("the certificate is not an HPKI authentication certificate: {0}")]
    WrongPolicy(String),

    #[error("the certificate may not be used to log in: {0}")]
    WrongKeyUsage(String),

    #[error(
        "the card's signature over the login challenge does not verify: the challenge was altered, or the certificate is not the card's"
    )]
    BadSignature,

    #[error("the certificate could not be read: {0}")]
    Malformed(String),

    #[error("the certificate cannot be checked here: {0}")]
    Unsupported(String),

    #[error("the HPKI trust configuration cannot be used: {0}")]
    Config(String),
}

/// Times in messages: UTC, to the second, unambiguous for the secretariat.
pub(crate) fn day(t: &OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
