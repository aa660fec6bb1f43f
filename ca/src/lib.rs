//! Sekisho's own certificate authority.
//!
//! A two-level CA kept in one directory (a root, and an issuing CA that signs everything
//! else): terminal client certificates (from a key made here, or from a terminal's CSR), the
//! gateway's TLS server certificate, CRLs, and PKCS#12 bundles for installation. Certificates
//! and CRLs are shaped for rustls-webpki, which checks them in the gateway.
//!
//! [`patient_card`]: a second issuing CA under the same root for patients' IC cards, the
//! cards' certificates, and their verification (with the cards' consent signatures).
//!
//! [`hpki`] handles the other certificates the gateway meets: those on physicians' HPKI cards
//! (verification, hcRole qualification), and a test HPKI CA for tests and the demo.

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
