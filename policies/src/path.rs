//! Request-path normalisation.
//!
//! The gateway normalises the path once, before route matching, and forwards exactly the
//! normalised path: the path that was authorised is the path the upstream sees. Anything that
//! could make the upstream interpret the path differently from the gateway (encoded slashes or
//! backslashes, NUL and other control characters, dot segments that climb above the root,
//! invalid or non-ASCII encodings) is refused instead of being "repaired".
//!
//! Rules, applied in one left-to-right pass over the raw path and then over its segments:
//!
//! - the path must start with `/` and be at most [`MAX_PATH_LEN`] bytes;
//! - `%XX` encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other
//!   encoding is kept, with its hex digits in upper case; nothing is newly encoded;
//! - refused: `%2F` (encoded `/`), `%5C` (encoded `\`), `%00`, encoded control characters
//!   (`%01`–`%1F`, `%7F`), raw control characters, raw `\`, raw space, `?` and `#` (which
//!   cannot be part of a request path), malformed `%` encodings, non-ASCII characters;
//! - refused: `;` and `%3B` anywhere. Servlet containers (Tomcat, Jetty), Spring and others cut
//!   path parameters (`;…`) off a segment before resolving dot segments, so `..;` or `..;x=1`
//!   is `..` to them and a name to us; no one reading of such a path is safe for every upstream;
//! - refused: an encoded `%` followed by a hex digit (`%252e`, `%25%32%65`): a second decoding
//!   downstream would turn it into something else (`.`, `/`);
//! - refused: encoded bytes that are not well-formed UTF-8 (overlong forms such as `%C0%AE` or
//!   `%E0%80%AE` for `.`, surrogates, stray continuation bytes), and encoded characters that
//!   compatibility folding turns into `.`, `/`, `\` or `;` (full-width and small forms, dot
//!   leaders, division and fraction slashes);
//! - repeated slashes collapse into one;
//! - `.` and `..` segments (including encoded forms such as `%2e%2E`, which decode to them) are
//!   resolved; a `..` that would climb above the root is refused;
//! - a trailing slash is kept (as is one left by a final `.` or `..` segment, as in RFC 3986
//!   `remove_dot_segments`).
//!
//! Matching on the result is case-sensitive.

use std::fmt;

use sekisho_protocol::Reason;

/// Longest raw path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// A request path that went through [`normalize`]. It can only be built by normalising, so a
/// `&NormalizedPath` is proof that the rules above hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// The normalised path: what the route map matches and what the gateway forwards.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The path's segments, without the leading `/`. `/` has none; a trailing slash gives a
    /// final empty segment (`/a/` → `["a", ""]`). Other segments are never empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = &self.0[1..];
        // `/` has no segments at all; otherwise every `/` starts one.
        let mut split = rest.split('/');
        if rest.is_empty() {
            split.next();
        }
        split
    }

    /// Whether the path ends with `/` (and is not just `/`).
    pub fn has_trailing_slash(&self) -> bool {
        self.0.len() > 1 && self.0.ends_with('/')
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NormalizedPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for NormalizedPath {
    type Error = PathError;

    fn try_from(raw: &str) -> Result<Self, PathError> {
        normalize(raw)
    }
}

impl std::str::FromStr for NormalizedPath {
    type Err = PathError;

    fn from_str(raw: &str) -> Result<Self, PathError> {
        normalize(raw)
    }
}

/// Why a path was refused. [`PathError::reason`] gives the stable code used in audit records
/// and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path contains an encoded slash (%2F)")]
    EncodedSlash,
    #[error("path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    #[error("path contains an encoded NUL (%00)")]
    EncodedNul,
    #[error("path contains an encoded control character")]
    EncodedControl,
    #[error("path contains a control character")]
    ControlCharacter,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains a character that cannot appear in a request path (space, '?' or '#')")]
    ForbiddenCharacter,
    #[error("path contains an invalid percent encoding")]
    InvalidPercentEncoding,
    #[error("path contains a non-ASCII character")]
    NonAscii,
    #[error("path climbs above the root with '..'")]
    AboveRoot,
    #[error("path contains ';' (a path parameter), raw or encoded")]
    Semicolon,
    #[error("path contains an encoded '%' followed by a hex digit (double encoding)")]
    DoubleEncoded,
    #[error("path contains encoded bytes that are not well-formed UTF-8 (e.g. an overlong form)")]
    InvalidUtf8,
    #[error("path contains an encoded character that folds into '.', '/', '\\' or ';'")]
    EncodedLookalike,
}

impl PathError {
    /// Why the request is refused: the person's page, the audit reason, the metrics label.
    pub fn refusal(&self) -> Reason {
        match self {
            PathError::NotAbsolute => Reason::PathNotAbsolute,
            PathError::TooLong => Reason::PathTooLong,
            PathError::EncodedSlash => Reason::PathEncodedSlash,
            PathError::EncodedBackslash => Reason::PathEncodedBackslash,
            PathError::EncodedNul => Reason::PathEncodedNul,
            PathError::EncodedControl => Reason::PathEncodedControl,
            PathError::ControlCharacter => Reason::PathControlCharacter,
            PathError::Backslash => Reason::PathBackslash,
            PathError::ForbiddenCharacter => Reason::PathForbiddenCharacter,
            PathError::InvalidPercentEncoding => Reason::PathInvalidPercentEncoding,
            PathError::NonAscii => Reason::PathNonAscii,
            PathError::AboveRoot => Reason::PathAboveRoot,
            PathError::Semicolon => Reason::PathSemicolon,
            PathError::DoubleEncoded => Reason::PathDoubleEncoded,
            PathError::InvalidUtf8 => Reason::PathInvalidUtf8,
            PathError::EncodedLookalike => Reason::PathEncodedLookalike,
        }
    }

    /// Stable reason code for audit records and metrics labels.
    pub fn reason(&self) -> &'static str {
        self.refusal().code()
    }
}

pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalise a raw request path (the path component only, without the query). See the module
/// documentation for the rules.
pub fn normalize(raw_path: &str) -> Result<NormalizedPath, PathError> {
    if raw_path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let raw = raw_path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }

    // Pass 1: check every byte and decode unreserved encodings. Because `%2F` is refused, the
    // segment boundaries of the decoded path are exactly the raw `/` characters.
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (hi, lo) = match (
                    raw.get(i + 1).copied().and_then(hex_value),
                    raw.get(i + 2).copied().and_then(hex_value),
                ) {
                    (Some(hi), Some(lo)) => (hi, lo),
                    _ => return Err(PathError::InvalidPercentEncoding),
                };
                let value = (hi << 4) | lo;
                match value {
                    0x00 => return Err(PathError::EncodedNul),
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0x01..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                    b';' => return Err(PathError::Semicolon),
                    v if is_unreserved(v) => decoded.push(v),
                    _ => decoded.extend_from_slice(&[
                        b'%',
                        HEX_UPPER[usize::from(hi)],
                        HEX_UPPER[usize::from(lo)],
                    ]),
                }
                i += 3;
            }
            0x80..=0xff => return Err(PathError::NonAscii),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b'\\' => return Err(PathError::Backslash),
            b' ' | b'?' | b'#' => return Err(PathError::ForbiddenCharacter),
            b';' => return Err(PathError::Semicolon),
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }

    check_encoded(&decoded)?;

    // Pass 2: segments. Empty segments (repeated slashes) vanish except a final one, which
    // stands for the trailing slash; dot segments are resolved.
    let body = &decoded[1..];
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = body.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            b"" => {}
            b"." => {}
            b".." => {
                if stack.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => {
                stack.push(segment);
                continue;
            }
        }
        if last {
            trailing_slash = true;
        }
    }

    let mut out = String::with_capacity(decoded.len());
    for segment in &stack {
        out.push('/');
        // Every byte is ASCII: non-ASCII input was refused and encodings are ASCII.
        out.extend(segment.iter().map(|&b| char::from(b)));
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(NormalizedPath(out))
}

/// What a second decoder downstream could read differently, checked on the decoded path (so
/// that `%25%32%65` counts as `%252e`): an encoded `%` before a hex digit, encoded bytes that
/// are not well-formed UTF-8, and encoded characters that fold into a separator or a dot.
fn check_encoded(decoded: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    let mut bytes: Vec<u8> = Vec::new();
    while i < decoded.len() {
        if decoded[i] != b'%' {
            i += 1;
            continue;
        }
        // Pass 1 wrote every encoding as `%XX` with valid hex digits.
        let value =
            (hex_value(decoded[i + 1]).unwrap_or(0) << 4) | hex_value(decoded[i + 2]).unwrap_or(0);
        i += 3;
        if value == b'%' && decoded.get(i).copied().and_then(hex_value).is_some() {
            return Err(PathError::DoubleEncoded);
        }
        if value < 0x80 {
            continue;
        }
        // A run of encoded non-ASCII bytes: it must be well-formed UTF-8 on its own.
        bytes.clear();
        bytes.push(value);
        while decoded.get(i) == Some(&b'%') {
            let v = (hex_value(decoded[i + 1]).unwrap_or(0) << 4)
                | hex_value(decoded[i + 2]).unwrap_or(0);
            if v < 0x80 {
                break;
            }
            bytes.push(v);
            i += 3;
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| PathError::InvalidUtf8)?;
        if text.chars().any(is_lookalike) {
            return Err(PathError::EncodedLookalike);
        }
    }
    Ok(())
}

/// Characters that Unicode compatibility folding (NFKC, "best fit" code pages) turns into `.`,
/// `/`, `\` or `;`, or that read as `..`.
fn is_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{037E}' // Greek question mark → ;
            | '\u{2024}' // one dot leader → .
            | '\u{2025}' // two dot leader → ..
            | '\u{2026}' // ellipsis → ...
            | '\u{2044}' // fraction slash
            | '\u{2215}' // division slash
            | '\u{2216}' // set minus (a backslash look-alike)
            | '\u{29F5}' // reverse solidus operator
            | '\u{29F8}' // big solidus
            | '\u{29F9}' // big reverse solidus
            | '\u{FE52}' // small full stop → .
            | '\u{FE54}' // small semicolon → ;
            | '\u{FE68}' // small reverse solidus → \
            | '\u{FF0E}' // full-width full stop → .
            | '\u{FF0F}' // full-width solidus → /
            | '\u{FF1B}' // full-width semicolon → ;
            | '\u{FF3C}' // full-width reverse solidus → \
            | '\u{FF61}' // half-width ideographic full stop
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize(raw).map(NormalizedPath::into_string)
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/static/app.css",
            "/api/patients/P-001/notes",
            "/ab=c/d:e@f!$&'()*+,=",
            "/~user/file.tar.gz",
        ] {
            assert_eq!(norm(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn must_start_with_slash() {
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("http://host/a"), Err(PathError::NotAbsolute));
        assert_eq!(norm("%2Fa"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn length_limit() {
        let ok = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(ok.len(), MAX_PATH_LEN);
        assert_eq!(norm(&ok), Ok(ok.clone()));
        let too_long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(norm(&too_long), Err(PathError::TooLong));
        // The limit is on the raw path, even if it would shrink.
        let slashes = "/".repeat(MAX_PATH_LEN + 1);
        assert_eq!(norm(&slashes), Err(PathError::TooLong));
    }

    #[test]
    fn unreserved_encodings_are_decoded() {
        assert_eq!(norm("/%41%62%63").as_deref(), Ok("/Abc"));
        assert_eq!(norm("/%30%39").as_deref(), Ok("/09"));
        assert_eq!(norm("/a%2Db%2ec%5Fd%7Ee").as_deref(), Ok("/a-b.c_d~e"));
        assert_eq!(
            norm("/api/patients/%31%32").as_deref(),
            Ok("/api/patients/12")
        );
    }

    #[test]
    fn other_encodings_are_kept_with_uppercase_hex() {
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(norm("/a%3fb%23c").as_deref(), Ok("/a%3Fb%23c"));
        assert_eq!(norm("/%e6%97%a5").as_deref(), Ok("/%E6%97%A5"));
        assert_eq!(norm("/%25").as_deref(), Ok("/%25"));
        assert_eq!(norm("/%25x").as_deref(), Ok("/%25x"));
        assert_eq!(norm("/%25%3a").as_deref(), Ok("/%25%3A"));
        assert_eq!(norm("/%3A%40%2B").as_deref(), Ok("/%3A%40%2B"));
    }

    /// What a servlet container, a second decoder or a folding decoder would read as something
    /// else is refused, never passed on.
    #[test]
    fn ambiguous_spellings_are_refused() {
        for p in [
            "/a;b",
            "/..;/x",
            "/a/..;x=1/b",
            "/a/%2e%2e;/b",
            "/a%3bb",
            "/a%3Bb",
            "/;",
        ] {
            assert_eq!(norm(p), Err(PathError::Semicolon), "{p}");
        }
        for p in ["/%252e", "/%252F", "/%2541", "/a%25%32%65", "/%25f"] {
            assert_eq!(norm(p), Err(PathError::DoubleEncoded), "{p}");
        }
        for p in [
            "/%c0%ae",
            "/%C0%AF",
            "/%e0%80%ae",
            "/%f0%80%80%ae",
            "/%c1%9c",
            "/%80",
            "/%e6%97",
            "/%e6%97/x",
            "/%ed%a0%80",
            "/%ff",
        ] {
            assert_eq!(norm(p), Err(PathError::InvalidUtf8), "{p}");
        }
        for p in [
            "/%ef%bc%8e%ef%bc%8e/x",
            "/a%ef%bc%8fb",
            "/a%e2%88%95b",
            "/%e2%80%a5",
        ] {
            assert_eq!(norm(p), Err(PathError::EncodedLookalike), "{p}");
        }
        // Well-formed UTF-8 that is not a look-alike stays encoded.
        assert_eq!(
            norm("/%e6%97%a5%e6%9c%ac").as_deref(),
            Ok("/%E6%97%A5%E6%9C%AC")
        );
    }

    #[test]
    fn nothing_is_newly_encoded() {
        assert_eq!(norm("/a:b@c").as_deref(), Ok("/a:b@c"));
        assert_eq!(norm("/[x]|^").as_deref(), Ok("/[x]|^"));
    }

    #[test]
    fn encoded_separators_are_refused() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedBackslash));
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedBackslash));
    }

    #[test]
    fn nul_and_control_characters_are_refused() {
        assert_eq!(norm("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(norm("/a%0Ab"), Err(PathError::EncodedControl));
        assert_eq!(norm("/a%0d%0a"), Err(PathError::EncodedControl));
        assert_eq!(norm("/a%1F"), Err(PathError::EncodedControl));
        assert_eq!(norm("/a%7f"), Err(PathError::EncodedControl));
        assert_eq!(norm("/a\0b"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\nb"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\rb"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\tb"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\x7fb"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn raw_backslash_is_refused() {
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/..\\..\\etc"), Err(PathError::Backslash));
        assert_eq!(norm("\\a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn characters_outside_a_request_path_are_refused() {
        assert_eq!(norm("/a b"), Err(PathError::ForbiddenCharacter));
        assert_eq!(norm("/a?b=c"), Err(PathError::ForbiddenCharacter));
        assert_eq!(norm("/a#frag"), Err(PathError::ForbiddenCharacter));
    }

    #[test]
    fn invalid_percent_encodings_are_refused() {
        for p in [
            "/%", "/a%", "/a%4", "/%zz", "/%4g", "/%g4", "/%%41", "/%-1", "/%+1",
        ] {
            assert_eq!(norm(p), Err(PathError::InvalidPercentEncoding), "{p}");
        }
    }

    #[test]
    fn non_ascii_is_refused() {
        assert_eq!(norm("/日本"), Err(PathError::NonAscii));
        assert_eq!(norm("/caf\u{e9}"), Err(PathError::NonAscii));
        // Full-width solidus and dot, which some decoders fold into `/` and `.`.
        assert_eq!(norm("/a\u{ff0f}b"), Err(PathError::NonAscii));
        assert_eq!(norm("/\u{ff0e}\u{ff0e}/x"), Err(PathError::NonAscii));
    }

    #[test]
    fn repeated_slashes_collapse() {
        assert_eq!(norm("//").as_deref(), Ok("/"));
        assert_eq!(norm("///a").as_deref(), Ok("/a"));
        assert_eq!(norm("/a//b///c").as_deref(), Ok("/a/b/c"));
        assert_eq!(norm("/a//").as_deref(), Ok("/a/"));
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(norm("/.").as_deref(), Ok("/"));
        assert_eq!(norm("/./a").as_deref(), Ok("/a"));
        assert_eq!(norm("/a/./b").as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a/b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(norm("/a/b/../../c").as_deref(), Ok("/c"));
        assert_eq!(norm("/a/..").as_deref(), Ok("/"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("/a/.//b").as_deref(), Ok("/a/b"));
        // Not dot segments: dots inside names.
        assert_eq!(norm("/a/.../b").as_deref(), Ok("/a/.../b"));
        assert_eq!(norm("/a/..b/.c").as_deref(), Ok("/a/..b/.c"));
    }

    #[test]
    fn encoded_dot_segments_are_resolved() {
        assert_eq!(norm("/a/%2e/b").as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a/b/%2e%2e/c").as_deref(), Ok("/a/c"));
        assert_eq!(norm("/a/b/%2E%2E/c").as_deref(), Ok("/a/c"));
        assert_eq!(norm("/a/b/.%2e/c").as_deref(), Ok("/a/c"));
        assert_eq!(norm("/a/b/%2e./c").as_deref(), Ok("/a/c"));
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/../a"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("//../a"), Err(PathError::AboveRoot));
    }

    #[test]
    fn trailing_slash_is_kept() {
        assert_eq!(norm("/a/").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/b/").as_deref(), Ok("/a/b/"));
        assert!(normalize("/a/").unwrap().has_trailing_slash());
        assert!(!normalize("/a").unwrap().has_trailing_slash());
        assert!(!normalize("/").unwrap().has_trailing_slash());
    }

    #[test]
    fn case_is_preserved() {
        assert_eq!(norm("/API/Patients").as_deref(), Ok("/API/Patients"));
        assert_ne!(norm("/API"), norm("/api"));
    }

    #[test]
    fn segments() {
        let segs = |p: &str| {
            normalize(p)
                .unwrap()
                .segments()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs("/a"), ["a"]);
        assert_eq!(segs("/a/b"), ["a", "b"]);
        assert_eq!(segs("/a/b/"), ["a", "b", ""]);
    }

    #[test]
    fn reason_codes_are_distinct() {
        let all = [
            PathError::NotAbsolute,
            PathError::TooLong,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::EncodedNul,
            PathError::EncodedControl,
            PathError::ControlCharacter,
            PathError::Backslash,
            PathError::ForbiddenCharacter,
            PathError::InvalidPercentEncoding,
            PathError::NonAscii,
            PathError::AboveRoot,
            PathError::Semicolon,
            PathError::DoubleEncoded,
            PathError::InvalidUtf8,
            PathError::EncodedLookalike,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(PathError::reason).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("path_")));
        assert_eq!(PathError::EncodedSlash.reason(), "path_encoded_slash");
        assert_eq!(PathError::AboveRoot.reason(), "path_above_root");
    }

    /// Attack table: raw path → exact outcome.
    #[test]
    fn attacks() {
        let table: &[(&str, Result<&str, PathError>)] = &[
            ("/static/../api/patients/1/x", Ok("/api/patients/1/x")),
            ("/static/%2e%2e/api/patients/x", Ok("/api/patients/x")),
            ("/static/%2E%2e/api/patients/x", Ok("/api/patients/x")),
            ("/static/.%2E/.%2e/api", Err(PathError::AboveRoot)),
            ("//api//patients/1", Ok("/api/patients/1")),
            ("/api/patients/1/../2/x", Ok("/api/patients/2/x")),
            ("/api/patients/%2F..", Err(PathError::EncodedSlash)),
            ("/api/patients/%2f%2e%2e", Err(PathError::EncodedSlash)),
            ("/static/%252e%252e/api", Err(PathError::DoubleEncoded)),
            ("/static/..%5c..%5capi", Err(PathError::EncodedBackslash)),
            ("/static/..\\api", Err(PathError::Backslash)),
            ("/api/patients/1%00.css", Err(PathError::EncodedNul)),
            (
                "/api/patients/1%0d%0aX-Injected:%201",
                Err(PathError::EncodedControl),
            ),
            ("/static/%c0%ae%c0%ae/api", Err(PathError::InvalidUtf8)),
            ("/static/\u{2025}/api", Err(PathError::NonAscii)),
            ("/../../etc/passwd", Err(PathError::AboveRoot)),
            ("/static/;/../api", Err(PathError::Semicolon)),
            (
                "/static/..;/api/patients/P2/records",
                Err(PathError::Semicolon),
            ),
            ("/static/%2e%2e;/api/patients/P2", Err(PathError::Semicolon)),
            ("/static/..;x=1/api/patients/P2", Err(PathError::Semicolon)),
            ("/static/..%3b/api/patients/P2", Err(PathError::Semicolon)),
            (
                "/static/%25%32%65%25%32%65/api",
                Err(PathError::DoubleEncoded),
            ),
            (
                "/static/%e0%80%ae%e0%80%ae/api",
                Err(PathError::InvalidUtf8),
            ),
            (
                "/static/%ef%bc%8e%ef%bc%8e/api",
                Err(PathError::EncodedLookalike),
            ),
        ];
        for (raw, expected) in table {
            assert_eq!(norm(raw).as_deref(), expected.as_deref(), "{raw:?}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Path pieces chosen to hit the interesting cases: dots, encodings of dots and
        /// separators, invalid encodings, control and non-ASCII characters.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => Just("/".to_owned()),
                2 => Just(".".to_owned()),
                2 => Just("..".to_owned()),
                1 => Just("%2e".to_owned()),
                1 => Just("%2E".to_owned()),
                1 => Just("%2F".to_owned()),
                1 => Just("%2f".to_owned()),
                1 => Just("%5C".to_owned()),
                1 => Just("%00".to_owned()),
                1 => Just("%25".to_owned()),
                1 => Just("%".to_owned()),
                1 => Just("%41".to_owned()),
                1 => Just("%7e".to_owned()),
                1 => Just("%e6%97%a5".to_owned()),
                1 => Just("\\".to_owned()),
                1 => Just("\n".to_owned()),
                1 => Just("日".to_owned()),
                3 => "[a-zA-Z0-9._~:@!$&'()*+,;=-]{1,4}",
                1 => "[0-9a-fA-F%]{1,3}",
            ]
        }

        /// Pieces that are never refused on their own (only `..` above the root can fail), so
        /// that most generated paths normalise and the output properties get exercised.
        fn clean_piece() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => Just("/".to_owned()),
                2 => Just(".".to_owned()),
                2 => Just("..".to_owned()),
                1 => Just("%2e".to_owned()),
                1 => Just("%2E".to_owned()),
                1 => Just("%41".to_owned()),
                1 => Just("%7e".to_owned()),
                1 => Just("%25".to_owned()),
                1 => Just("%e6%97%a5".to_owned()),
                4 => "[a-zA-Z0-9._~:@!$&'()*+,=-]{1,4}",
            ]
        }

        fn raw_path() -> impl Strategy<Value = String> {
            prop_oneof![
                // Start with a few names so that `..` usually has something to pop.
                4 => ("[a-z]{1,3}(/[a-z]{1,3}){0,3}", prop::collection::vec(clean_piece(), 0..16))
                    .prop_map(|(head, p)| format!("/{head}/{}", p.concat())),
                3 => prop::collection::vec(piece(), 0..16).prop_map(|p| format!("/{}", p.concat())),
                1 => "/[ -~]{0,40}",
                1 => any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn never_panics(raw in any::<String>()) {
                let _ = normalize(&raw);
            }

            #[test]
            fn idempotent_and_clean(raw in raw_path()) {
                if let Ok(once) = normalize(&raw) {
                    let twice = normalize(once.as_str());
                    prop_assert_eq!(twice.as_ref(), Ok(&once));
                    let s = once.as_str();
                    prop_assert!(s.starts_with('/'));
                    prop_assert!(!s.contains("//"), "{s}");
                    prop_assert!(!s.contains("/./"), "{s}");
                    prop_assert!(!s.contains("/../"), "{s}");
                    prop_assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s}");
                    prop_assert!(!s.to_ascii_uppercase().contains("%2F"), "{s}");
                    prop_assert!(!s.to_ascii_uppercase().contains("%5C"), "{s}");
                    prop_assert!(!s.contains('\\'), "{s}");
                    prop_assert!(s.len() <= raw.len());
                }
            }
        }
    }
}
