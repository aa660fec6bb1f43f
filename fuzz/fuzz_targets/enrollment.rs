//! The enrollment request (`POST /enroll/csr`): the JSON body, then what the listener does
//! with it before the store is asked: the WireGuard key, the access code's normalisation, and
//! the CSR signed as the terminal's certificate.
//!
//! Invariants: a body that parses serialises back to the same request; a normalised code is
//! 12 characters of the Crockford alphabet and normalises to itself, whatever the case of the
//! ASCII letters typed; a WireGuard key decodes to 32 bytes that encode back to the same key;
//! an issued certificate names the terminal asked for.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sekisho::enrollment::normalize_code;
use sekisho_ca::{TerminalId, TerminalIdExt};
use sekisho_fuzz::throwaway_ca;
use sekisho_protocol::wire::CsrRequest;

const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fuzz_target!(|body: &[u8]| {
    let Ok(req) = serde_json::from_slice::<CsrRequest>(body) else {
        return;
    };
    let text = serde_json::to_string(&req).expect("a request serialises");
    let back: CsrRequest = serde_json::from_str(&text).expect("a serialised request parses");
    assert_eq!(back, req);

    if let Some(key) = &req.wg_public_key
        && let Ok(bytes) = sekisho_tunnel::keys::decode(key)
    {
        assert_eq!(
            sekisho_tunnel::keys::decode(&sekisho_tunnel::keys::encode(&bytes)).ok(),
            Some(bytes)
        );
    }

    let code = normalize_code(&req.code);
    if let Some(norm) = &code {
        assert_eq!(norm.len(), 12, "{norm:?}");
        assert!(norm.chars().all(|c| CROCKFORD.contains(c)), "{norm:?}");
        assert_eq!(normalize_code(norm).as_deref(), Some(norm.as_str()));
    }
    if req.code.is_ascii() {
        assert_eq!(normalize_code(&req.code.to_ascii_lowercase()), code);
    }

    let id = TerminalId::new("clinic-01", "reception-1").expect("a valid id");
    if let Ok(issued) =
        throwaway_ca().sign_csr(req.csr.as_bytes(), &id, Duration::from_secs(86_400))
    {
        assert_eq!(TerminalId::from_cert_der(&issued.der).ok(), Some(id));
    }
});
