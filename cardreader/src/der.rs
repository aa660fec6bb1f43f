//! Just enough BER/DER to bound what a card hands us (a certificate's length, an FCI's DF name)
//! and to read an RSA key for the virtual card. Every length is checked against the input; no
//! function here allocates or loops more than the input is long.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// One tag-length-value, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag bytes packed big-endian (`0x30`, `0x5F2D`, ...).
    pub tag: u32,
    pub value: &'a [u8],
}

/// Tag, then the length of the header and of the value, without needing the value itself:
/// what a reader needs to know how much of a file to read.
pub fn header(input: &[u8]) -> Result<(u32, usize, usize), DerError> {
    let (&first, mut rest) = input.split_first().ok_or(DerError("empty"))?;
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        // Multi-byte tag: at most three more bytes, the last without bit 8.
        let mut n = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or(DerError("truncated tag"))?;
            rest = r;
            tag = (tag << 8) | u32::from(b);
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
            if n == 3 {
                return Err(DerError("tag too long"));
            }
        }
    }
    let (&l0, rest2) = rest.split_first().ok_or(DerError("truncated length"))?;
    rest = rest2;
    let len = match l0 {
        0x00..=0x7F => usize::from(l0),
        0x80 => return Err(DerError("indefinite length")),
        0x81..=0x84 => {
            let n = usize::from(l0 & 0x7F);
            let bytes = rest.get(..n).ok_or(DerError("truncated length"))?;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        _ => return Err(DerError("length too large")),
    };
    let header_len = input.len() - rest.len() + if l0 > 0x80 { usize::from(l0 & 0x7F) } else { 0 };
    Ok((tag, header_len, len))
}

/// Reads one TLV and returns it with the input that follows it.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (tag, header_len, len) = header(input)?;
    let end = header_len
        .checked_add(len)
        .ok_or(DerError("length overflow"))?;
    let value = input
        .get(header_len..end)
        .ok_or(DerError("value truncated"))?;
    Ok((Tlv { tag, value }, &input[end..]))
}

/// Reads one TLV that must carry `tag`.
pub fn expect(input: &[u8], tag: u32) -> Result<(&[u8], &[u8]), DerError> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        return Err(DerError("unexpected tag"));
    }
    Ok((tlv.value, rest))
}

/// The first TLV with `tag` among the TLVs that make up `input` (one level, no recursion).
pub fn find(mut input: &[u8], tag: u32) -> Result<Option<&[u8]>, DerError> {
    while !input.is_empty() {
        let (tlv, rest) = read(input)?;
        if tlv.tag == tag {
            return Ok(Some(tlv.value));
        }
        input = rest;
    }
    Ok(None)
}

/// The magnitude bytes of a DER INTEGER that must not be negative (leading zeros stripped).
/// Only the virtual card's RSA key needs it.
#[cfg(any(test, feature = "test-util"))]
pub fn unsigned_integer(input: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let (value, rest) = expect(input, 0x02)?;
    match value.first() {
        None => Err(DerError("empty integer")),
        Some(b) if b & 0x80 != 0 => Err(DerError("negative integer")),
        Some(_) => {
            let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
            Ok((&value[start..], rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        assert_eq!(header(&[0x30, 0x03, 1, 2, 3]), Ok((0x30, 2, 3)));
        assert_eq!(header(&[0x30, 0x81, 0x80]), Ok((0x30, 3, 0x80)));
        assert_eq!(header(&[0x30, 0x82, 0x04, 0xD2]), Ok((0x30, 4, 1234)));
        assert_eq!(header(&[0x5F, 0x2D, 0x01, 0x41]), Ok((0x5F2D, 3, 1)));
        assert!(header(&[0x30, 0x80]).is_err());
        assert!(header(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(header(&[0x30, 0x82, 0x04]).is_err());
        assert!(header(&[0x30]).is_err());
        assert!(header(&[]).is_err());
        assert!(header(&[0x1F, 0x81, 0x81, 0x81, 0x01]).is_err());
    }

    #[test]
    fn read_checks_value_bounds() {
        assert!(read(&[0x04, 0x05, 1, 2]).is_err());
        assert!(read(&[0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        let (tlv, rest) = read(&[0x04, 0x01, 9, 0xAA]).unwrap();
        assert_eq!(
            (tlv.tag, tlv.value, rest),
            (0x04, &[9u8][..], &[0xAAu8][..])
        );
    }

    #[test]
    fn find_and_integers() {
        let fci = [0x84, 0x02, 0xE8, 0x28, 0xA5, 0x00];
        assert_eq!(find(&fci, 0x84), Ok(Some(&[0xE8, 0x28][..])));
        assert_eq!(find(&fci, 0x85), Ok(None));
        assert_eq!(
            unsigned_integer(&[0x02, 0x02, 0x00, 0x80]),
            Ok((&[0x80u8][..], &[][..]))
        );
        assert!(unsigned_integer(&[0x02, 0x01, 0x80]).is_err());
    }
}
