//! What every part of Sekisho must agree on, in one small crate with no I/O.
//!
//! The gateway (`sekisho`), its CA (`sekisho-ca`), the route map (`sekisho-policies`), the card
//! reader and the terminal agent (`sekisho-cardreader`, `sekisho-agent`) meet in these types:
//!
//! - [`ids`]: facility, terminal and patient ids with the one rule each follows, their URNs in
//!   certificates, and request ids;
//! - [`reason`]: [`Reason`], every cause of a refusal with its code, HTTP status and the
//!   Japanese and English text a person is shown — one catalogue, checked by the compiler;
//! - [`wire`]: the gateway's own addresses, the JSON bodies of sign-in, consent and enrollment,
//!   and the exact texts an HPKI card or a patient card signs.
//!
//! It depends on nothing heavier than `serde` and `http`, so the agent on a clinic's PC can
//! share it with the gateway.

pub mod ids;
pub mod reason;
pub mod wire;

pub use ids::{
    IdError, MAX_ID_LEN, MAX_PATIENT_ID, PATIENT_URN_PREFIX, TERMINAL_URN_PREFIX, TerminalId,
    is_valid_id, is_valid_patient_id, new_request_id, patient_urn,
};
pub use reason::Reason;
