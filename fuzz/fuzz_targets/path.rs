//! Path normalisation, and the default route map on what it lets through.
//!
//! Input: `method NUL path [NUL query [NUL header-value]]` (UTF-8; the method may be empty).
//! Invariants of a normalised path: normalising it again changes nothing; it starts with `/`,
//! is printable ASCII, no longer than the raw path, has no `//`, no `.` or `..` segment, no
//! `;`, `\`, `?`, `#` or space; every `%XX` left has upper-case hex and encodes neither an
//! unreserved character, `/`, `\`, `;`, `%`-before-hex nor a control character; its segments
//! rebuild it. The route map: a patient route always has a valid patient id, other routes none;
//! resolving twice gives the same answer.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sekisho_policies::{Level, RouteMap, is_valid_patient_id, normalize};

fn routes() -> &'static RouteMap {
    static R: OnceLock<RouteMap> = OnceLock::new();
    R.get_or_init(|| RouteMap::new(RouteMap::default_routes()).expect("default routes"))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn check_normal(raw: &str, path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(path.len() <= raw.len(), "{raw:?} grew into {path:?}");
    assert!(!path.contains("//"), "{path:?}");
    let b = path.as_bytes();
    assert!(
        b.iter()
            .all(|&c| (0x21..0x7F).contains(&c) && !b";\\?#".contains(&c)),
        "{path:?}"
    );
    for seg in path[1..].split('/') {
        assert!(seg != "." && seg != "..", "dot segment in {path:?}");
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (hi, lo) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            );
            let (Some(hi), Some(lo)) = (hi, lo) else {
                panic!("a %-encoding that is not %XX upper case in {path:?}");
            };
            let v = (hi << 4) | lo;
            assert!(
                !(v.is_ascii_alphanumeric() || b"-._~/\\;".contains(&v) || v < 0x20 || v == 0x7F),
                "%{v:02X} should have been decoded or refused: {path:?}"
            );
            if v == b'%' {
                assert!(
                    !b.get(i + 3).is_some_and(u8::is_ascii_hexdigit),
                    "double encoding left in {path:?}"
                );
            }
            i += 3;
        } else {
            i += 1;
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let mut parts = text.split('\0');
    let (method, raw) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m, p),
        (Some(p), None) => ("GET", p),
        _ => return,
    };
    let query = parts.next();
    let header_value = parts.next().map(str::to_owned);

    let Ok(path) = normalize(raw) else {
        return;
    };
    let s = path.as_str();
    check_normal(raw, s);
    let again = normalize(s).expect("a normalised path normalises");
    assert_eq!(again.as_str(), s, "not a fixed point");
    let rebuilt: String = path.segments().map(|seg| format!("/{seg}")).collect();
    assert_eq!(if rebuilt.is_empty() { "/" } else { &rebuilt }, s);

    let header = |_: &str| header_value.iter().cloned().collect::<Vec<_>>();
    let first = routes().resolve(method, &path, query, &header);
    let second = routes().resolve(method, &path, query, &header);
    assert_eq!(first, second);
    if let Ok(m) = first {
        match m.route.level {
            Level::Patient => {
                let id = m
                    .patient
                    .as_deref()
                    .expect("a patient route names its patient");
                assert!(is_valid_patient_id(id), "{id:?}");
            }
            _ => assert!(m.patient.is_none()),
        }
        if let Some(entry) = &m.entry {
            assert!(is_valid_patient_id(entry), "{entry:?}");
        }
    }
});
