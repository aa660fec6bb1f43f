//! The identifiers Sekisho hands out and checks: facility and terminal ids (and the terminal's
//! URN in its certificate), network patient ids (and the patient card's URN), request ids.
//!
//! Every id is restricted to a small ASCII alphabet so it can go into a URN, a file name, a
//! header, a log line or a certificate subject without escaping; this module is the one place
//! that rule is written.

use std::fmt;

/// The URI SAN prefix of a terminal certificate: `urn:sekisho:terminal:<facility>:<terminal>`.
pub const TERMINAL_URN_PREFIX: &str = "urn:sekisho:terminal:";
/// The URI SAN prefix of a patient card certificate: `urn:sekisho:patient:<id>`.
pub const PATIENT_URN_PREFIX: &str = "urn:sekisho:patient:";
/// Longest facility, terminal or patient id.
pub const MAX_ID_LEN: usize = 64;
/// Longest network patient id (the same bound as the other ids).
pub const MAX_PATIENT_ID: usize = MAX_ID_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "{what} {value:?} is not allowed: use 1 to 64 characters, each a letter A-Z or a-z, a digit, '.', '_' or '-'"
    )]
    InvalidId { what: &'static str, value: String },
    #[error(
        "{0:?} is not a Sekisho terminal name (expected urn:sekisho:terminal:<facility>:<terminal>)"
    )]
    NotTerminalUrn(String),
}

/// Whether `value` is a facility or terminal id: `[A-Za-z0-9._-]{1,64}`.
pub fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `id` is a network patient id: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` (it may not start
/// with a dot, so it can never be a dot segment of a path).
pub fn is_valid_patient_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PATIENT_ID
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `urn:sekisho:patient:<id>`.
pub fn patient_urn(patient_id: &str) -> String {
    format!("{PATIENT_URN_PREFIX}{patient_id}")
}

/// A registered facility terminal. Both parts follow [`is_valid_id`] (the fields are public,
/// so code that issues certificates checks again through [`TerminalId::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId {
    pub facility: String,
    pub terminal: String,
}

impl TerminalId {
    pub fn new(facility: &str, terminal: &str) -> Result<Self, IdError> {
        check_id("facility id", facility)?;
        check_id("terminal id", terminal)?;
        Ok(TerminalId {
            facility: facility.to_owned(),
            terminal: terminal.to_owned(),
        })
    }

    /// `urn:sekisho:terminal:<facility>:<terminal>`
    pub fn urn(&self) -> String {
        format!("{TERMINAL_URN_PREFIX}{}:{}", self.facility, self.terminal)
    }

    /// Exactly the form `urn()` writes: the ids cannot contain ':', so the split is unambiguous.
    pub fn from_urn(s: &str) -> Result<Self, IdError> {
        let not_urn = || IdError::NotTerminalUrn(s.to_owned());
        let rest = s.strip_prefix(TERMINAL_URN_PREFIX).ok_or_else(not_urn)?;
        let (facility, terminal) = rest.split_once(':').ok_or_else(not_urn)?;
        TerminalId::new(facility, terminal).map_err(|_| not_urn())
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.facility, self.terminal)
    }
}

fn check_id(what: &'static str, value: &str) -> Result<(), IdError> {
    if is_valid_id(value) {
        Ok(())
    } else {
        Err(IdError::InvalidId {
            what,
            value: value.to_owned(),
        })
    }
}

/// A new request id: 32 hex digits, the time in milliseconds since 1970 (12) and then 80
/// random bits (20). It names one request in the audit log, on the refusal page the person
/// quotes, and in the assertion the upstream receives.
///
/// The time comes first so that ids made one after another sort one after another: the audit
/// log's index on request ids then grows at its end. With 128 random bits every record went to
/// a random page of that index, a page written again in each transaction of the log; in
/// `sekisho-bench` at 128 connections that index alone cost a fifth of the throughput and most
/// of the p99 (docs/audit.md). 80 random bits keep ids unguessable and distinct; an id was
/// never a secret, and the time it shows is known to whoever holds it.
pub fn new_request_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    random_bits((&mut b[6..]).try_into().expect("ten bytes"));
    hex::encode(b)
}

/// Ids' random bits, drawn from the system's generator 64 ids at a time. Each draw from
/// aws-lc's generator has a fixed cost (its DRBG, reseeded with RDRAND, which a virtual machine
/// may trap): one draw per request id was 1.8 % of the gateway's request path under load
/// (`perf`, docs/audit.md). The bytes are used once each, so ids stay as unguessable.
fn random_bits(out: &mut [u8; 10]) {
    const IDS_PER_DRAW: usize = 64;
    thread_local! {
        static POOL: std::cell::RefCell<([u8; 10 * IDS_PER_DRAW], usize)> =
            const { std::cell::RefCell::new(([0; 10 * IDS_PER_DRAW], 10 * IDS_PER_DRAW)) };
    }
    POOL.with_borrow_mut(|(bytes, used)| {
        if *used == bytes.len() {
            aws_lc_rs::rand::fill(bytes).expect("system randomness");
            *used = 0;
        }
        out.copy_from_slice(&bytes[*used..*used + 10]);
        // Not kept after use.
        bytes[*used..*used + 10].fill(0);
        *used += 10;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_round_trip() {
        let id = TerminalId::new("okayama-hp.01", "reception_2").unwrap();
        assert_eq!(id.urn(), "urn:sekisho:terminal:okayama-hp.01:reception_2");
        assert_eq!(TerminalId::from_urn(&id.urn()).unwrap(), id);
    }

    #[test]
    fn bad_ids_refused() {
        for (f, t) in [
            ("", "t"),
            ("f", ""),
            ("f:x", "t"),
            ("f", "t/1"),
            ("f", "t 1"),
            ("病院", "t"),
            ("f", "t\n"),
            (&"a".repeat(65), "t"),
        ] {
            let err = TerminalId::new(f, t).unwrap_err();
            assert!(matches!(err, IdError::InvalidId { .. }), "{f:?}/{t:?}");
        }
        assert!(TerminalId::new(&"a".repeat(64), "t").is_ok());
        let msg = TerminalId::new("bad id", "t").unwrap_err().to_string();
        assert!(
            msg.contains("facility id") && msg.contains("bad id"),
            "{msg}"
        );
    }

    #[test]
    fn bad_urns_refused() {
        for s in [
            "urn:sekisho:terminal:f",
            "urn:sekisho:terminal:f:t:u",
            "urn:sekisho:terminal::t",
            "URN:SEKISHO:TERMINAL:f:t",
            "urn:sekisho:user:f:t",
            "",
        ] {
            assert!(
                matches!(TerminalId::from_urn(s), Err(IdError::NotTerminalUrn(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn patient_ids() {
        for ok in ["P1", "p-0001.a_b", &"a".repeat(64)] {
            assert!(is_valid_patient_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".P1",
            "-P1",
            "_P1",
            "P/1",
            "P 1",
            "P:1",
            "患者",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_patient_id(bad), "{bad:?}");
        }
        assert_eq!(patient_urn("P1"), "urn:sekisho:patient:P1");
    }

    #[test]
    fn request_ids_are_hex_time_first_then_random() {
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = now_ms();
        let (a, b) = (new_request_id(), new_request_id());
        let after = now_ms();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        // The first 12 digits are the time it was made; the rest differ between two ids made
        // in the same millisecond.
        let t = u64::from_str_radix(&a[..12], 16).unwrap();
        assert!(before <= t && t <= after, "{t} not in {before}..={after}");
        assert_ne!(a[12..], b[12..]);
        // Made later, sorts later.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = new_request_id();
        assert!(c > a && c > b, "{c} after {a}, {b}");
    }

    /// The random bits come from a pool drawn 64 ids at a time: across several draws, on
    /// several threads, no two ids share them.
    #[test]
    fn request_ids_random_bits_are_never_reused() {
        let ids: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..300).map(|_| new_request_id()).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect()
        });
        let random: std::collections::HashSet<&str> = ids.iter().map(|i| &i[12..]).collect();
        assert_eq!(random.len(), ids.len(), "random bits reused");
        assert!(!random.contains("00000000000000000000"), "an unfilled pool");
    }
}
