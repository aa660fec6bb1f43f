//! The smart cards of Sekisho on the terminal side: PC/SC access, the ISO 7816 APDU layer,
//! the HPKI card profile (the physician's 医師資格証 and the other HPKI cards), the Sekisho
//! patient-card profile, and card and reader events.
//!
//! It knows cards, not the gateway: the terminal agent (`sekisho-agent`, in `crates/agent`)
//! builds sign-in, sign-out on removal and patient consent on it, and talks to the gateway
//! (`proxy/`).
//!
//! Layers, bottom up:
//! - [`apdu::Transport`] moves bytes: PC/SC in [`pcsc_transport`] (a shared connection to the
//!   card in one reader, with transactions), the virtual card's engine in tests; [`readers`]
//!   lists the readers;
//! - [`apdu::Channel`] hides reader and card quirks: extended length or command chaining,
//!   `61xx` and `6Cxx`; every answer is checked against what was asked;
//! - [`hpki::HpkiCard`] and [`patient_card::PatientCard`] are the card profiles (select,
//!   read the certificate, PIN, sign); neither trusts what the card says;
//! - [`watch`](mod@watch) reports readers and cards coming and going, from a thread of its
//!   own.
//!
//! With the `test-util` feature, `vcard` adds a virtual HPKI card and patient card that plug
//! into the vsmartcard vpcd reader (and the `sekisho-vcard` binary around them), for tests and
//! demos; a production build has none of it.

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
