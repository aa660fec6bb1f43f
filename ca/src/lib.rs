//! Sekisho's certificate authority, and the verification of the cards people bring to a
//! terminal.
//!
//! The gateway (the `sekisho` crate in `proxy/`) admits only registered terminals, over mutual
//! TLS; signs physicians in with their HPKI card; and opens a patient's record only once the
//! patient's own card has signed consent. This crate is the certificate side of all three; it
//! knows nothing of HTTP, the store or routes.
//!
//! - Terminal certificates: [`Authority`] is a two-level CA kept in one directory (a root, and
//!   an issuing CA that signs everything else). It issues terminal client certificates named
//!   by [`TerminalId`] (from a key made here, or from the terminal's CSR at enrollment), the
//!   gateway's TLS server certificate, CRLs ([`Crl`], read back with [`parse_crl`]) and PKCS#12
//!   bundles for installation ([`pkcs12()`]). Certificates and CRLs are shaped for rustls-webpki,
//!   which checks them in the gateway's TLS listener.
//! - [`hpki`]: physicians' HPKI cards. [`hpki::HpkiVerifier`] checks a card's authentication
//!   certificate against the configured HPKI roots, CAs and CRLs, reads the holder and the
//!   qualification (hcRole), and checks the card's signature over the sign-in challenge. A test
//!   HPKI CA (`hpki::testca`) exists only with the `test-util` feature.
//! - [`patient_card`]: a second issuing CA under the same root for patients' IC cards, and the
//!   gateway's verification of a card's certificate and its consent signature.
//!
//! Inside: `authority` (the CA), `csr` (checking a terminal's CSR), `crl`, `pkcs12`, `cadir`
//! (the CA directory's files and modes), `keyfile` ([`KeyPem`]; key files, optionally
//! encrypted), `encoding` (the one PEM encoder, PEM-or-DER input, serials as hex), `error`
//! ([`CaError`]), `terminal_id`.

mod authority;
mod cadir;
mod crl;
mod csr;
mod encoding;
mod error;
pub mod hpki;
mod keyfile;
pub mod patient_card;
mod pkcs12;
pub mod rotate;
mod terminal_id;

pub use authority::{Authority, CaOptions, IssuedCert, KeyAlgorithm, serial_hex};
pub use cadir::write_private_file;
pub use crl::{Crl, ParsedCrl, RevocationReason, RevokedEntry, crl_pem, parse_crl};
pub use encoding::normalize_serial_hex;
pub use error::CaError;
pub use keyfile::KeyPem;
pub use patient_card::{
    PatientCard, PatientCardAnchors, PatientCardCa, PatientCardError, ensure_patient_card_ca,
    verify_consent_signature, verify_patient_card,
};
pub use pkcs12::{Pkcs12Encryption, pkcs12, pkcs12_with};
pub use terminal_id::{TerminalId, TerminalIdExt};
