//! A virtual HPKI card for tests and demos.
//!
//! [`CardEngine`] is the card: it answers APDUs as `HPKI.md` describes, and implements
//! [`Transport`](crate::apdu::Transport) so tests can talk to it in-process. [`VirtualCard`]
//! plugs an engine into a vpcd virtual reader (`vsmartcard-vpcd` in `pcscd`): connecting is
//! inserting the card, disconnecting is removing it. The `sekisho-vcard` binary wraps both.
//!
//! How tests drive insertion and removal:
//! - in-process: `VirtualCard::connect(&engine, addr)` inserts, `disconnect()` removes; the
//!   engine (and its PIN counters) lives on in the `Arc`, so the same card can go back in;
//! - with the binary: starting `sekisho-vcard` inserts; killing it removes (the socket closes);
//!   `remove` / `insert` / `quit` lines on its stdin do the same without a restart, and
//!   `--remove-after SECS` removes the card and exits.

mod engine;
mod rsa;
mod vpcd;

pub use engine::{ATR, AppFiles, CardEngine, Quirks};
pub use rsa::{KeyError, RsaKey, certificate_rsa_public};
pub use vpcd::{DEFAULT_PORT, VirtualCard};
