//! The card side of a login, blocking (PC/SC is): find the card, read its authentication
//! certificate, ask the PIN state, verify the PIN and sign. Callers run this on a blocking
//! thread.

use sekisho_cardreader::apdu::CardError;
use sekisho_cardreader::hpki::{Application, HpkiCard, HpkiError, Pin, PinState};
use sekisho_cardreader::pcsc_transport::PcscTransport;
use sekisho_cardreader::readers::{self, ReaderError};

use crate::error::AgentError;
use crate::text::clean;

/// A connection to an HPKI card whose authentication certificate has been read.
pub(crate) struct CardSession {
    transport: PcscTransport,
    pub reader: String,
    /// The authentication certificate (DER).
    pub certificate: Vec<u8>,
}

pub(crate) fn list() -> Result<Vec<String>, AgentError> {
    match readers::list_readers() {
        Ok(r) => Ok(r),
        Err(ReaderError::NoService) => Err(AgentError::NoService),
        Err(ReaderError::Pcsc(pcsc::Error::NoService | pcsc::Error::ServiceStopped)) => {
            Err(AgentError::NoService)
        }
        Err(e) => Err(AgentError::Card(e.to_string())),
    }
}

/// Opens the card in `reader`, or, without a name, the first HPKI card in any reader.
pub(crate) fn open(reader: Option<&str>) -> Result<CardSession, AgentError> {
    let readers = list()?;
    if readers.is_empty() {
        return Err(AgentError::NoReader);
    }
    if let Some(name) = reader {
        if !readers.iter().any(|r| r == name) {
            return Err(AgentError::UnknownReader {
                name: name.to_string(),
                available: readers,
            });
        }
        return open_in(name);
    }
    let mut not_hpki = None;
    for name in &readers {
        match open_in(name) {
            Ok(s) => return Ok(s),
            Err(AgentError::NoCard { .. } | AgentError::CardRemoved | AgentError::Card(_)) => {}
            Err(e @ AgentError::NotHpkiCard { .. }) => {
                not_hpki.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(not_hpki.unwrap_or(AgentError::NoCard { reader: None }))
}

fn open_in(reader: &str) -> Result<CardSession, AgentError> {
    let no_card = || AgentError::NoCard {
        reader: Some(reader.to_string()),
    };
    let mut transport = PcscTransport::connect(reader).map_err(|e| match e {
        CardError::NoCard | CardError::Removed | CardError::Unresponsive => no_card(),
        CardError::UnknownReader(_) => AgentError::UnknownReader {
            name: reader.to_string(),
            available: readers::list_readers().unwrap_or_default(),
        },
        other => other.into(),
    })?;
    let certificate = {
        let tx = transport.transaction().map_err(AgentError::from)?;
        let mut card = HpkiCard::new(tx);
        card.read_certificate(Application::Authentication)
            .map_err(|e| card_error(e, reader))?
    };
    Ok(CardSession {
        transport,
        reader: reader.to_string(),
        certificate,
    })
}

fn card_error(e: HpkiError, reader: &str) -> AgentError {
    match e {
        HpkiError::NotHpkiCard(_) => AgentError::NotHpkiCard {
            reader: reader.to_string(),
        },
        HpkiError::Card(CardError::NoCard) | HpkiError::CardRemoved => AgentError::CardRemoved,
        other => other.into(),
    }
}

impl CardSession {
    /// Tries left, without spending one.
    pub(crate) fn pin_state(&mut self) -> Result<PinState, AgentError> {
        let tx = self.transport.transaction().map_err(AgentError::from)?;
        HpkiCard::new(tx)
            .pin_state(Application::Authentication)
            .map_err(|e| card_error(e, &self.reader))
    }

    /// Verifies `pin` (when given) and signs `message` (RSASSA-PKCS1-v1_5, SHA-256) with the
    /// authentication key, in one PC/SC transaction.
    pub(crate) fn verify_and_sign(
        &mut self,
        pin: Option<&Pin>,
        message: &[u8],
    ) -> Result<Vec<u8>, AgentError> {
        let tx = self.transport.transaction().map_err(AgentError::from)?;
        let mut card = HpkiCard::new(tx);
        if let Some(pin) = pin {
            card.verify_pin(Application::Authentication, pin)
                .map_err(|e| card_error(e, &self.reader))?;
        }
        card.sign_sha256(Application::Authentication, message)
            .map_err(|e| match e {
                // Verified earlier in this card session, but the card has forgotten (reset).
                HpkiError::PinRequired => AgentError::Card(
                    "the card asks for the PIN again; take it out and insert it again".into(),
                ),
                other => card_error(other, &self.reader),
            })
    }

    /// The certificate's common name (the romanised name), cleaned for display.
    pub(crate) fn holder(&self) -> Option<String> {
        holder_name(&self.certificate)
    }
}

pub(crate) fn holder_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(clean(cn, 80))
}
