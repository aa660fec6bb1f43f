//! Text taken from certificates. Every name field is untrusted: it ends up in logs, headers,
//! screens and the audit trail. We decode the ASN.1 string types ourselves (no lossy
//! conversion) and refuse characters that can forge or hide text: control characters (line
//! breaks, escape sequences), and the invisible formatting characters that reorder or hide
//! what is displayed (bidirectional overrides, zero-width characters).

use std::fmt;

/// Longest name we accept, in characters. X.520 bounds a common name at 64 and an
/// organisation name at 64; real HPKI names are far shorter. Twice that leaves room for CAs that
/// stretch the bounds, and still keeps log lines and headers small.
pub(crate) const MAX_TEXT_CHARS: usize = 128;

/// Why a piece of certificate text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// An ASN.1 type that is not a character string we read (tag number).
    UnsupportedType(u32),
    /// The bytes are not valid for their declared string type (e.g. bad UTF-8).
    BadEncoding,
    /// A control or invisible formatting character (code point).
    ForbiddenChar(u32),
    /// Longer than the limit.
    TooLong,
    /// Empty, or only white space.
    Empty,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::UnsupportedType(t) => write!(f, "unsupported string type (tag {t})"),
            TextError::BadEncoding => f.write_str("invalid encoding for its string type"),
            TextError::ForbiddenChar(c) => {
                write!(f, "contains a control or invisible character (U+{c:04X})")
            }
            TextError::TooLong => write!(f, "longer than {MAX_TEXT_CHARS} characters"),
            TextError::Empty => f.write_str("empty"),
        }
    }
}

// Universal tag numbers of the character string types.
pub(crate) const TAG_UTF8: u32 = 12;
const TAG_NUMERIC: u32 = 18;
const TAG_PRINTABLE: u32 = 19;
const TAG_TELETEX: u32 = 20;
const TAG_IA5: u32 = 22;
const TAG_VISIBLE: u32 = 26;
const TAG_UNIVERSAL: u32 = 28;
const TAG_BMP: u32 = 30;

/// Decodes a universal-class character string and checks it with [`check`].
///
/// UTF8String must be valid UTF-8; BMPString (UTF-16BE, no surrogates in pairs or alone) and
/// UniversalString (UTF-32BE) are converted exactly; PrintableString, NumericString,
/// IA5String and VisibleString must be printable ASCII (PrintableString is not held to its
/// narrower X.680 alphabet: some CAs put '@' or '&' in it, which is harmless here). A
/// TeletexString is accepted only when it is printable ASCII, the one subset whose meaning
/// every reader agrees on.
pub(crate) fn decode(tag: u32, bytes: &[u8]) -> Result<String, TextError> {
    if bytes.len() > MAX_TEXT_CHARS * 4 {
        return Err(TextError::TooLong);
    }
    let s = match tag {
        TAG_UTF8 => std::str::from_utf8(bytes)
            .map_err(|_| TextError::BadEncoding)?
            .to_owned(),
        TAG_NUMERIC | TAG_PRINTABLE | TAG_IA5 | TAG_VISIBLE | TAG_TELETEX => {
            if let Some(b) = bytes.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
                return Err(if b.is_ascii_control() {
                    TextError::ForbiddenChar(u32::from(*b))
                } else {
                    TextError::BadEncoding
                });
            }
            // Printable ASCII is valid UTF-8.
            String::from_utf8(bytes.to_vec()).map_err(|_| TextError::BadEncoding)?
        }
        TAG_BMP => {
            if !bytes.len().is_multiple_of(2) {
                return Err(TextError::BadEncoding);
            }
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| TextError::BadEncoding)?
        }
        TAG_UNIVERSAL => {
            if !bytes.len().is_multiple_of(4) {
                return Err(TextError::BadEncoding);
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or(TextError::BadEncoding)?
        }
        other => return Err(TextError::UnsupportedType(other)),
    };
    check(&s)?;
    Ok(s)
}

/// Refuses empty text, over-long text, control characters and invisible formatting characters.
pub(crate) fn check(s: &str) -> Result<(), TextError> {
    if s.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(TextError::TooLong);
    }
    if let Some(c) = s.chars().find(|c| forbidden(*c)) {
        return Err(TextError::ForbiddenChar(u32::from(c)));
    }
    Ok(())
}

fn forbidden(c: char) -> bool {
    c.is_control() // C0, DEL, C1: line breaks, tabs, terminal escapes
        || matches!(
            c,
            '\u{061C}'                // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{FEFF}'              // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        assert_eq!(
            decode(TAG_UTF8, "山田　太郎".as_bytes()).unwrap(),
            "山田　太郎"
        );
        assert_eq!(decode(TAG_PRINTABLE, b"Test117120").unwrap(), "Test117120");
        // "医師" in BMPString.
        assert_eq!(decode(TAG_BMP, &[0x53, 0x3b, 0x5e, 0x2b]).unwrap(), "医師");
        assert_eq!(decode(TAG_BMP, &[0xd8, 0x00]), Err(TextError::BadEncoding));
        assert_eq!(decode(TAG_UTF8, &[0xff, 0xfe]), Err(TextError::BadEncoding));
        assert_eq!(decode(TAG_UTF8, b"a\nb"), Err(TextError::ForbiddenChar(10)));
        assert_eq!(
            decode(TAG_PRINTABLE, b"a\x1bb"),
            Err(TextError::ForbiddenChar(27))
        );
        assert_eq!(decode(TAG_PRINTABLE, &[0xe9]), Err(TextError::BadEncoding));
        assert_eq!(
            decode(TAG_UTF8, "abc\u{202E}fed".as_bytes()),
            Err(TextError::ForbiddenChar(0x202e))
        );
        assert_eq!(decode(TAG_UTF8, b"  "), Err(TextError::Empty));
        assert_eq!(decode(TAG_UTF8, &[b'a'; 129]), Err(TextError::TooLong));
        assert!(decode(TAG_UTF8, &[b'a'; 128]).is_ok());
        assert_eq!(decode(4, b"x"), Err(TextError::UnsupportedType(4)));
    }
}
