//! PC/SC access for HPKI cards: the ISO 7816 APDU layer, the HPKI card profile, card and
//! reader events, and a virtual HPKI card (`sekisho-vcard`) for tests and demos.
//!
//! Layers, bottom up: [`apdu::Transport`] moves bytes (PC/SC in [`pcsc_transport`], the
//! virtual card's engine in tests); [`apdu::Channel`] deals with lengths, chaining, `61xx` and
//! `6Cxx`; [`hpki::HpkiCard`] is the card profile; [`watch`] reports insertion and removal.

pub mod agent;
pub mod apdu;
mod der;
pub mod hpki;
pub mod pcsc_transport;
pub mod readers;
pub mod vcard;
pub mod watch;

pub use apdu::{CardError, Transport};
pub use hpki::{Application, HpkiCard, HpkiError, Pin, PinState};
pub use pcsc_transport::PcscTransport;
pub use watch::{CardEvent, Watcher, watch};
