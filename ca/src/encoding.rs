//! PEM framing, "PEM or DER" input, and certificate serial numbers as hex.

use crate::CaError;

/// Inputs larger than this are refused before any parsing: no certificate, CSR or CRL of ours
/// comes near it, and it bounds the work a hostile upload can cause.
pub(crate) const MAX_INPUT: usize = 1 << 20;

/// PEM with LF line endings on every platform, so files and API output compare byte for byte.
/// The crate's one PEM encoder: every certificate, CRL and key it writes goes through here
/// (other crates get the same form from [`KeyPem`](crate::KeyPem) and
/// [`crl_pem`](crate::crl_pem)).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Takes PEM (first block whose label is one of `labels`) or raw DER.
/// `what` names the object in error messages.
pub(crate) fn pem_or_der(input: &[u8], labels: &[&str], what: &str) -> Result<Vec<u8>, String> {
    if input.len() > MAX_INPUT {
        return Err(format!("the {what} is larger than {MAX_INPUT} bytes"));
    }
    let trimmed = input.trim_ascii_start();
    if !trimmed.starts_with(b"-----BEGIN ") {
        if trimmed.first() == Some(&0x30) {
            return Ok(trimmed.to_vec());
        }
        return Err(format!("the {what} is neither PEM nor DER"));
    }
    let blocks = pem::parse_many(trimmed).map_err(|e| format!("the {what} PEM is damaged: {e}"))?;
    blocks
        .into_iter()
        .find(|b| labels.contains(&b.tag()))
        .map(pem::Pem::into_contents)
        .ok_or_else(|| format!("no \"{}\" PEM block found", labels[0]))
}

/// Lowercase hex of a DER INTEGER's content bytes, without the 00 byte that DER adds before a
/// high bit; zero is "00". This is the one spelling of a serial used across Sekisho.
pub(crate) fn serial_hex_from_raw(raw: &[u8]) -> String {
    let first_nonzero = raw.iter().position(|b| *b != 0);
    match first_nonzero {
        None => "00".to_owned(),
        Some(i) => hex::encode(&raw[i..]),
    }
}

/// Parses a serial written by a person or another tool: hex, optional ':' separators, any case,
/// optional leading zeros. Returns the magnitude bytes (no sign byte), at most 20 of them.
pub(crate) fn serial_bytes_from_hex(s: &str) -> Result<Vec<u8>, CaError> {
    let bad = || CaError::InvalidSerial(s.to_owned());
    let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let digits = digits.trim_start_matches('0');
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    let bytes = hex::decode(padded).map_err(|_| bad())?;
    if bytes.len() > 20 {
        return Err(bad());
    }
    if bytes.is_empty() {
        return Ok(vec![0]);
    }
    Ok(bytes)
}

/// The normal form of a serial typed by a person or printed by another tool ("00:8A:01" →
/// "8a01"): the spelling `IssuedCert::serial_hex` and `parse_crl` use.
pub fn normalize_serial_hex(s: &str) -> Result<String, CaError> {
    Ok(serial_hex_from_raw(&serial_bytes_from_hex(s)?))
}

/// 16 random bytes with the top bit clear (so the DER INTEGER is positive and exactly 16 bytes
/// long, with no sign byte) and the next bit set (so it never shrinks): 126 random bits.
pub(crate) fn random_serial() -> Result<[u8; 16], CaError> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CaError::Random)?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_spellings_normalise() {
        assert_eq!(serial_hex_from_raw(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex_from_raw(&[0x00]), "00");
        assert_eq!(normalize_serial_hex("00:80:0A").unwrap(), "800a");
        assert_eq!(normalize_serial_hex("0").unwrap(), "00");
        assert_eq!(normalize_serial_hex("abc").unwrap(), "0abc");
        assert!(normalize_serial_hex("xyz").is_err());
        assert!(normalize_serial_hex("").is_err());
        assert!(normalize_serial_hex(&"11".repeat(21)).is_err());
        let s = random_serial().unwrap();
        assert_eq!(s[0] & 0xc0, 0x40);
    }

    /// The form every PEM file of Sekisho has (64-character base64 lines, LF, a final LF), so
    /// the hand-written encoders elsewhere can be replaced by this one without changing a byte.
    #[test]
    fn pem_encode_writes_64_character_lines_with_lf() {
        for len in [0usize, 1, 47, 48, 49, 96, 1000] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let pem = pem_encode("PRIVATE KEY", &der);
            assert!(!pem.contains('\r'));
            let body = pem
                .strip_prefix("-----BEGIN PRIVATE KEY-----\n")
                .and_then(|b| b.strip_suffix("-----END PRIVATE KEY-----\n"))
                .expect("header and footer");
            let lines: Vec<&str> = body.split_terminator('\n').collect();
            assert_eq!(lines.len(), len.div_ceil(48), "{len} bytes");
            assert!(body.is_empty() || body.ends_with('\n'));
            for (i, line) in lines.iter().enumerate() {
                let full = i + 1 < lines.len();
                assert!(if full {
                    line.len() == 64
                } else {
                    line.len() <= 64
                });
            }
            assert_eq!(pem::parse(&pem).unwrap().into_contents(), der);
        }
    }

    #[test]
    fn pem_or_der_rejects_junk() {
        assert!(pem_or_der(b"hello", &["CERTIFICATE"], "certificate").is_err());
        assert_eq!(
            pem_or_der(b"\x30\x00", &["CERTIFICATE"], "certificate").unwrap(),
            vec![0x30, 0]
        );
        let pem = pem_encode("X509 CRL", &[0x30, 0x00]);
        assert!(pem_or_der(pem.as_bytes(), &["CERTIFICATE"], "certificate").is_err());
        assert_eq!(
            pem_or_der(pem.as_bytes(), &["X509 CRL"], "CRL").unwrap(),
            vec![0x30, 0]
        );
    }
}
