//! A virtual card for tests and demos: an HPKI card, or a Sekisho patient card.
//!
//! [`CardEngine`] is the HPKI card: it answers APDUs as `docs/hpki.md` describes.
//! [`PatientCardEngine`] is the patient card of [`crate::patient_card`]. Both implement
//! [`Transport`](crate::apdu::Transport) so tests can talk to them in-process, and [`Chip`],
//! what a reader needs of a card. [`VirtualCard`] plugs either into a vpcd virtual reader
//! (`vsmartcard-vpcd` in `pcscd`): connecting is inserting the card, disconnecting is removing
//! it. The `sekisho-vcard` binary wraps both (`--patient-card` for the patient card).
//!
//! How tests drive insertion and removal:
//! - in-process: `VirtualCard::connect(&engine, addr)` inserts, `disconnect()` removes; the
//!   engine (and its PIN counters) lives on in the `Arc`, so the same card can go back in;
//! - with the binary: starting `sekisho-vcard` inserts; killing it removes (the socket closes);
//!   `remove` / `insert` / `quit` lines on its stdin do the same without a restart, and
//!   `--remove-after SECS` removes the card and exits.

mod engine;
mod patient_card;
mod rsa;
mod vpcd;

pub use engine::{ATR, AppFiles, CardEngine, Quirks};
pub use patient_card::{PATIENT_CARD_ATR, PatientCardEngine};
pub use rsa::{KeyError, RsaKey, certificate_rsa_public};
pub use vpcd::{DEFAULT_PORT, VirtualCard};

/// What a reader needs of a card: its answer to reset, power and reset, and answers to APDUs
/// (response data + SW1 SW2).
pub trait Chip: Send + 'static {
    fn atr(&self) -> &[u8];
    fn power_on(&mut self);
    fn power_off(&mut self);
    fn reset(&mut self);
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;
}

impl Chip for CardEngine {
    fn atr(&self) -> &[u8] {
        CardEngine::atr(self)
    }
    fn power_on(&mut self) {
        CardEngine::power_on(self)
    }
    fn power_off(&mut self) {
        CardEngine::power_off(self)
    }
    fn reset(&mut self) {
        CardEngine::reset(self)
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        CardEngine::process(self, apdu)
    }
}

impl Chip for PatientCardEngine {
    fn atr(&self) -> &[u8] {
        PatientCardEngine::atr(self)
    }
    fn power_on(&mut self) {
        PatientCardEngine::power_on(self)
    }
    fn power_off(&mut self) {
        PatientCardEngine::power_off(self)
    }
    fn reset(&mut self) {
        PatientCardEngine::reset(self)
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        PatientCardEngine::process(self, apdu)
    }
}
