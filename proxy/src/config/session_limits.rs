//! `[signin]` limits on a session's life besides `session_hours` (`docs/signin.md`, "Sessions
//! that end"):
//!
//! ```toml
//! [signin]
//! idle_minutes = 15        # no request attributed to the session for this long: it ends
//! card_presence_secs = 60  # a card session whose card stops proving its presence ends
//! ```

use anyhow::{Result, bail};

use super::Signin;
use crate::sessions::Limits;

/// Shared clinical terminals are left unattended between patients; 15 minutes is the usual
/// screen-lock time on them and what docs/signin.md recommends.
pub const DEFAULT_IDLE_MINUTES: u32 = 15;
/// Three missed proofs (the agent sends one every 20 s) before a card session ends.
pub const DEFAULT_CARD_PRESENCE_SECS: u32 = 60;
/// Below this the agent's proofs (every third of it) would be a card signature every few
/// seconds; above it a card taken away is a session left open for too long.
const PRESENCE_RANGE: std::ops::RangeInclusive<u32> = 15..=600;

impl Signin {
    pub fn limits(&self) -> Limits {
        Limits::new(
            i64::from(self.idle_minutes) * 60,
            i64::from(self.card_presence_secs),
        )
    }

    pub(super) fn validate_limits(&self) -> Result<()> {
        if self.idle_minutes == 0 {
            bail!("signin.idle_minutes must be at least 1");
        }
        if self.idle_minutes > self.session_hours.max(1) * 60 {
            bail!("signin.idle_minutes must not exceed signin.session_hours");
        }
        if !PRESENCE_RANGE.contains(&self.card_presence_secs) {
            bail!(
                "signin.card_presence_secs must be {} to {}",
                PRESENCE_RANGE.start(),
                PRESENCE_RANGE.end()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let ok = Signin::default();
        ok.validate_limits().unwrap();
        assert_eq!(ok.limits().idle_secs, 900);
        assert_eq!(ok.limits().flush_secs, 60);
        for bad in [
            Signin {
                idle_minutes: 0,
                ..Signin::default()
            },
            Signin {
                idle_minutes: 13 * 60,
                ..Signin::default()
            },
            Signin {
                card_presence_secs: 5,
                ..Signin::default()
            },
            Signin {
                card_presence_secs: 3600,
                ..Signin::default()
            },
        ] {
            assert!(bad.validate_limits().is_err(), "{bad:?}");
        }
    }
}
