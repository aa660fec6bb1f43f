//! The card in a PC/SC reader as a [`Transport`].

use std::ffi::CString;

use crate::apdu::{CardError, Transport};

/// PC/SC errors in the terms the layers above act on.
pub(crate) fn card_error(e: pcsc::Error) -> CardError {
    match e {
        pcsc::Error::NoSmartcard => CardError::NoCard,
        pcsc::Error::RemovedCard => CardError::Removed,
        pcsc::Error::ResetCard => CardError::Reset,
        pcsc::Error::UnresponsiveCard | pcsc::Error::UnpoweredCard => CardError::Unresponsive,
        pcsc::Error::NoService | pcsc::Error::ServiceStopped => CardError::NoService,
        pcsc::Error::SharingViolation => CardError::Busy,
        other => CardError::Pcsc(other),
    }
}

/// A context with the system's PC/SC service (`pcscd` on Linux).
pub fn establish() -> Result<pcsc::Context, CardError> {
    pcsc::Context::establish(pcsc::Scope::User).map_err(card_error)
}

/// A shared connection to the card in one reader.
pub struct PcscTransport {
    card: pcsc::Card,
    reader: String,
    // Room for the longest extended response (64 KiB + SW), allocated once.
    buf: Vec<u8>,
}

impl PcscTransport {
    /// Connects to the card in `reader` with a context of its own.
    pub fn connect(reader: &str) -> Result<Self, CardError> {
        Self::connect_in(&establish()?, reader)
    }

    /// Connects to the card in `reader` (shared mode, T=0 or T=1).
    pub fn connect_in(ctx: &pcsc::Context, reader: &str) -> Result<Self, CardError> {
        let name =
            CString::new(reader).map_err(|_| CardError::UnknownReader(reader.to_string()))?;
        let card = ctx
            .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(|e| match e {
                pcsc::Error::UnknownReader | pcsc::Error::ReaderUnavailable => {
                    CardError::UnknownReader(reader.to_string())
                }
                other => card_error(other),
            })?;
        Ok(PcscTransport {
            card,
            reader: reader.to_string(),
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        })
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// The card's answer to reset: a hint about the card, never proof of anything.
    pub fn atr(&self) -> Result<Vec<u8>, CardError> {
        let status = self.card.status2_owned().map_err(card_error)?;
        Ok(status.atr().to_vec())
    }

    /// Holds the card for a sequence of commands (select, VERIFY, sign) so that no other
    /// program's commands land in between. Ends when the transaction is dropped.
    pub fn transaction(&mut self) -> Result<PcscTransaction<'_>, CardError> {
        let tx = self.card.transaction().map_err(card_error)?;
        Ok(PcscTransaction {
            tx,
            buf: &mut self.buf,
        })
    }
}

impl Transport for PcscTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let resp = self
            .card
            .transmit(apdu, &mut self.buf)
            .map_err(card_error)?;
        Ok(resp.to_vec())
    }
}

/// A [`PcscTransport`] inside a PC/SC transaction.
pub struct PcscTransaction<'a> {
    tx: pcsc::Transaction<'a>,
    buf: &'a mut Vec<u8>,
}

impl Transport for PcscTransaction<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let resp = self.tx.transmit(apdu, self.buf).map_err(card_error)?;
        Ok(resp.to_vec())
    }
}
