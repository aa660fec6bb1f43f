//! Passwords for staff without HPKI cards (R-ACCT-2, R-ACCT-3): named policy profiles, Argon2id
//! hashes, history. Profiles:
//!
//! - `jp-mhlw-qa-b` (default; the seed networks' rule and the MHLW guideline Q&A's option b):
//!   8+ characters mixing letters, digits and symbols, changed at first sign-in and every 60 days.
//! - `jp-mhlw-qa-a`: 13+ characters mixing letters, digits and symbols; no periodic change.
//! - `jp-mhlw-qa-c`: 8+ characters mixing letters, digits and symbols, as one factor of two (the
//!   terminal certificate is the other); no periodic change.
//! - `nist-800-63b-4`: 15+ characters (a password as a single factor), up to 64, no composition
//!   rules, checked against a blocklist, no periodic change.

use std::str::FromStr;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    JpMhlwQaA,
    JpMhlwQaB,
    JpMhlwQaC,
    Nist80063b4,
}

/// Why a new password is refused: said to the person choosing it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Weak {
    #[error("use at least {0} characters")]
    TooShort(usize),
    #[error("use at most {0} characters")]
    TooLong(usize),
    #[error("mix letters, digits and symbols")]
    Composition,
    #[error("use half-width characters (letters, digits, symbols)")]
    NotAscii,
    #[error("this password is too common or guessable")]
    Blocklisted,
    #[error("this password was used recently; choose another")]
    Reused,
    #[error("the password must not contain the user ID")]
    ContainsId,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "jp-mhlw-qa-a" => Profile::JpMhlwQaA,
            "jp-mhlw-qa-b" => Profile::JpMhlwQaB,
            "jp-mhlw-qa-c" => Profile::JpMhlwQaC,
            "nist-800-63b-4" => Profile::Nist80063b4,
            _ => {
                return Err(format!(
                    "unknown password profile {s:?} (jp-mhlw-qa-a, jp-mhlw-qa-b, jp-mhlw-qa-c, nist-800-63b-4)"
                ));
            }
        })
    }
}

/// Passwords no profile accepts (the NIST profile's blocklist; the others' composition rule
/// already excludes most of these). A deployment's own list can be added later.
const BLOCKLIST: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword1",
    "password1!",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "iloveyou",
    "letmein",
    "welcome1!",
    "admin123!",
    "abc12345!",
    "changeme",
    "sekisho",
    "hospital",
    "byouin",
    "iryou",
    "kanja",
    "nurse123!",
    "doctor123!",
];

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::JpMhlwQaA => "jp-mhlw-qa-a",
            Profile::JpMhlwQaB => "jp-mhlw-qa-b",
            Profile::JpMhlwQaC => "jp-mhlw-qa-c",
            Profile::Nist80063b4 => "nist-800-63b-4",
        }
    }

    /// Days after which the password must be changed, if the profile asks for it.
    pub fn max_age_days(self) -> Option<i64> {
        match self {
            Profile::JpMhlwQaB => Some(60),
            _ => None,
        }
    }

    pub fn check(self, user_id: &str, pw: &str) -> Result<(), Weak> {
        let n = pw.chars().count();
        let lower = pw.to_lowercase();
        if BLOCKLIST.iter().any(|b| {
            lower == *b || lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!') == *b
        }) {
            return Err(Weak::Blocklisted);
        }
        if user_id.len() >= 4 && lower.contains(&user_id.to_lowercase()) {
            return Err(Weak::ContainsId);
        }
        match self {
            Profile::Nist80063b4 => {
                if n < 15 {
                    return Err(Weak::TooShort(15));
                }
                if n > 64 {
                    return Err(Weak::TooLong(64));
                }
                // Repetition and sequences are as guessable as a listed word.
                if pw.chars().all(|c| pw.starts_with(c)) {
                    return Err(Weak::Blocklisted);
                }
                Ok(())
            }
            p => {
                let min = if p == Profile::JpMhlwQaA { 13 } else { 8 };
                if !pw.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(Weak::NotAscii);
                }
                if n < min {
                    return Err(Weak::TooShort(min));
                }
                if n > 128 {
                    return Err(Weak::TooLong(128));
                }
                let letters = pw.chars().any(|c| c.is_ascii_alphabetic());
                let digits = pw.chars().any(|c| c.is_ascii_digit());
                let symbols = pw.chars().any(|c| c.is_ascii_punctuation());
                if !(letters && digits && symbols) {
                    return Err(Weak::Composition);
                }
                Ok(())
            }
        }
    }
}

/// The seed networks' ID rule (R-ACCT-2): 10 or more half-width letters and digits.
pub fn valid_user_id(id: &str) -> bool {
    id.len() >= 10 && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn hash(pw: &str) -> anyhow::Result<String> {
    let h: PasswordHash = Argon2::default()
        .hash_password(pw.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash: {e}"))?;
    Ok(h.to_string())
}

pub fn verify(pw: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A temporary password the secretariat hands over; it satisfies every profile.
pub fn temporary() -> String {
    const SETS: [&[u8]; 3] = [
        b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ",
        b"23456789",
        b"#%+-=?@",
    ];
    let mut raw = [0u8; 18];
    aws_lc_rs::rand::fill(&mut raw).expect("system randomness");
    // Rejection-free enough: modulo bias on 48/8/7 symbols is < 1 bit over 18 characters, and
    // the password is single-use (changed at first sign-in).
    raw.iter()
        .enumerate()
        .map(|(i, b)| {
            let set = SETS[if i % 6 == 2 {
                1
            } else if i % 6 == 4 {
                2
            } else {
                0
            }];
            set[*b as usize % set.len()] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_enforce_their_rules() {
        let b = Profile::JpMhlwQaB;
        assert_eq!(b.check("nurse00001", "abc1!"), Err(Weak::TooShort(8)));
        assert_eq!(b.check("nurse00001", "abcdefgh1"), Err(Weak::Composition));
        assert_eq!(b.check("nurse00001", "abcdefg!!"), Err(Weak::Composition));
        assert_eq!(b.check("nurse00001", "ａｂｃ1!xyzw"), Err(Weak::NotAscii));
        assert_eq!(b.check("nurse00001", "Password1!"), Err(Weak::Blocklisted));
        assert_eq!(b.check("nurse00001", "xnurse00001!"), Err(Weak::ContainsId));
        assert_eq!(b.check("nurse00001", "kx7#Rw2q"), Ok(()));
        assert_eq!(b.max_age_days(), Some(60));
        let a = Profile::JpMhlwQaA;
        assert_eq!(a.check("nurse00001", "kx7#Rw2q"), Err(Weak::TooShort(13)));
        assert_eq!(a.check("nurse00001", "kx7#Rw2q-Lm4v"), Ok(()));
        assert_eq!(a.max_age_days(), None);
        assert_eq!(Profile::JpMhlwQaC.check("nurse00001", "kx7#Rw2q"), Ok(()));
        let n = Profile::Nist80063b4;
        assert_eq!(n.check("nurse00001", "kx7#Rw2q"), Err(Weak::TooShort(15)));
        assert_eq!(
            n.check("nurse00001", "correct horse battery"),
            Ok(()),
            "no composition rules"
        );
        assert_eq!(
            n.check("nurse00001", "aaaaaaaaaaaaaaaa"),
            Err(Weak::Blocklisted)
        );
        assert_eq!(
            n.check("nurse00001", "ながいながいパスワードです"),
            Err(Weak::TooShort(15))
        );
        assert_eq!(
            n.check("nurse00001", "ながいながいながいパスワードですよ"),
            Ok(()),
            "any characters"
        );
        assert_eq!(n.max_age_days(), None);
        assert!("jp-mhlw-qa-x".parse::<Profile>().is_err());
    }

    #[test]
    fn ids_follow_the_network_rule() {
        assert!(valid_user_id("nurse00001"));
        assert!(!valid_user_id("nurse0001"));
        assert!(!valid_user_id("nurse_00001"));
        assert!(!valid_user_id("看護師００００１"));
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("kx7#Rw2q").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("kx7#Rw2q", &h));
        assert!(!verify("kx7#Rw2Q", &h));
        assert!(!verify("kx7#Rw2q", "not a hash"));
        for p in [Profile::JpMhlwQaA, Profile::JpMhlwQaB, Profile::JpMhlwQaC] {
            let t = temporary();
            assert_eq!(p.check("nurse00001", &t), Ok(()), "{t}");
        }
    }
}
