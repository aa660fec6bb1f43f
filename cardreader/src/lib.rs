//! PC/SC access for HPKI cards and Sekisho patient cards: the ISO 7816 APDU layer, the HPKI
//! card profile, the patient-card profile, card and reader events, and a virtual card
//! (`sekisho-vcard`, HPKI or patient card) for tests and demos.
//!
//! Layers, bottom up: [`apdu::Transport`] moves bytes (PC/SC in [`pcsc_transport`], the
//! virtual card's engine in tests); [`apdu::Channel`] deals with lengths, chaining, `61xx` and
//! `6Cxx`; [`hpki::HpkiCard`] and [`patient_card::PatientCard`] are the card profiles;
//! [`watch`] reports insertion and removal.

pub mod apdu;
mod der;
pub mod hpki;
pub mod patient_card;
pub mod pcsc_transport;
pub mod readers;
#[cfg(feature = "test-util")]
pub mod vcard;
pub mod watch;

pub use apdu::{CardError, Transport};
pub use hpki::{Application, HpkiCard, HpkiError, Pin, PinState};
pub use patient_card::{PatientCard, PatientCardError};
pub use pcsc_transport::PcscTransport;
pub use watch::{CardEvent, Watcher, watch};
