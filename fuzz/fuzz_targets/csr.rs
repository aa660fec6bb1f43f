//! The CA's CSR path: a terminal's certificate signing request (PEM or DER), checked (outer
//! structure, version, key type and size, self-signature) and signed by a throwaway CA, as
//! enrollment does.
//!
//! Invariants: a certificate issued is signed by the issuing CA, names exactly the terminal
//! asked for (not anything from the request), carries the request's public key, and its
//! serial is the one reported.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sekisho_ca::{TerminalId, TerminalIdExt};
use sekisho_fuzz::throwaway_ca;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

/// The request's public key bits, when x509-parser reads the request too (DER or PEM).
fn request_key(input: &[u8]) -> Option<Vec<u8>> {
    let der = match x509_parser::pem::parse_x509_pem(input) {
        Ok((_, pem)) => pem.contents,
        Err(_) => input.to_vec(),
    };
    let (_, csr) = X509CertificationRequest::from_der(&der).ok()?;
    Some(
        csr.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .to_vec(),
    )
}

fuzz_target!(|input: &[u8]| {
    let ca = throwaway_ca();
    let id = TerminalId::new("clinic-01", "reception-1").expect("a valid id");
    let Ok(issued) = ca.sign_csr(input, &id, Duration::from_secs(86_400)) else {
        return;
    };
    let (rest, cert) =
        x509_parser::parse_x509_certificate(&issued.der).expect("an issued certificate parses");
    assert!(rest.is_empty());
    let (_, issuing) =
        x509_parser::parse_x509_certificate(ca.issuing_der()).expect("the issuing CA parses");
    cert.verify_signature(Some(issuing.public_key()))
        .expect("signed by the issuing CA");
    assert_eq!(
        TerminalId::from_cert_der(&issued.der).expect("names a terminal"),
        id
    );
    assert_eq!(
        sekisho_ca::serial_hex(&issued.der).ok(),
        Some(issued.serial_hex.clone())
    );
    if let Some(key) = request_key(input) {
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.as_slice(),
            "not the request's key"
        );
    }
});
