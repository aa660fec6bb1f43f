//! A minimal DER writer for the extensions rcgen cannot build (SubjectDirectoryAttributes,
//! certificatePolicies with qualifiers, a directoryName subject alternative name).
//!
//! A production build needs only [`tlv`] (the patient-card extended key usage); the rest builds
//! the test CA's certificates, so it exists with `test-util` and in tests only.

pub(crate) const SEQUENCE: u8 = 0x30;
#[cfg(any(test, feature = "test-util"))]
pub(crate) const SET: u8 = 0x31;
pub(crate) const OID: u8 = 0x06;
#[cfg(any(test, feature = "test-util"))]
pub(crate) const UTF8_STRING: u8 = 0x0c;
#[cfg(any(test, feature = "test-util"))]
pub(crate) const PRINTABLE_STRING: u8 = 0x13;
#[cfg(any(test, feature = "test-util"))]
pub(crate) const IA5_STRING: u8 = 0x16;

/// Context-specific, constructed tag `[n]` (EXPLICIT tagging, or an IMPLICIT constructed type).
#[cfg(any(test, feature = "test-util"))]
pub(crate) const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// Tag, definite length, content.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed value from already-encoded members.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn constructed(tag: u8, members: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &members.concat())
}

/// An OBJECT IDENTIFIER. Panics on arcs that no OID can have (first arc above 2, second arc
/// above 39 under 0 or 1, fewer than two arcs): only ever called with constants.
#[cfg(any(test, feature = "test-util"))]
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    assert!(arcs.len() >= 2 && arcs[0] <= 2 && (arcs[0] == 2 || arcs[1] < 40));
    let mut content = Vec::new();
    push_base128(&mut content, arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push_base128(&mut content, *arc);
    }
    tlv(OID, &content)
}

#[cfg(any(test, feature = "test-util"))]
fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let last = tmp.len() - 1;
    for (j, b) in tmp[i..].iter().enumerate() {
        out.push(if i + j == last { *b } else { b | 0x80 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_openssl() {
        // 1.0.17090.0.1, the hcRole attribute type, as in a real HPKI certificate.
        assert_eq!(
            oid(&[1, 0, 17090, 0, 1]),
            [0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01]
        );
        assert_eq!(
            oid(&[1, 2, 392, 100_495, 1, 6, 1, 1]),
            [
                0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01
            ]
        );
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
