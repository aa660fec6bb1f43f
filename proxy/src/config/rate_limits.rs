//! `[rate_limits]`: how fast anyone may try where guessing pays (`docs/gateway.md`, "Rate
//! limits"). Each limit is a rate per minute with a burst, kept per key (an access code, an
//! account, a terminal, a source address) in this replica's memory; `per_minute = 0` turns one
//! off. The defaults are far above what a clinic does by hand.
//!
//! ```toml
//! [rate_limits]
//! max_keys = 10000              # keys remembered per limit; past it, new keys are refused
//! handshakes_in_flight = 256    # TLS handshakes at once, both listeners together
//! signin_account = { per_minute = 10, burst = 10 }
//! ```

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One limit: `burst` attempts at once, then one per `60 / per_minute` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained attempts per minute; 0 = no limit.
    pub per_minute: u32,
    /// Attempts allowed back to back before the rate applies.
    pub burst: u32,
}

impl Rate {
    const fn new(per_minute: u32, burst: u32) -> Rate {
        Rate { per_minute, burst }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Redeeming one access code (whatever the PIN).
    pub enroll_code: Rate,
    /// Enrollment requests from one source address.
    pub enroll_source: Rate,
    /// Sign-in attempts (password or HPKI) naming one account.
    pub signin_account: Rate,
    /// Sign-in attempts from one terminal.
    pub signin_terminal: Rate,
    /// Sign-in attempts from one source address (a clinic's terminals may share one behind NAT).
    pub signin_source: Rate,
    /// Without a client certificate, from one source address: TLS handshakes on the terminal
    /// and the enrollment listener, and each request after the first on such a
    /// terminal-listener connection.
    pub no_certificate: Rate,
    /// Management listener requests from one source address (monitoring scrapes included).
    pub management_source: Rate,
    /// Management API calls with one operator token.
    pub management_token: Rate,
    /// Keys each limit remembers; an idle key is forgotten once its bucket is full again. With
    /// the table full, attempts under a new key are refused (fail closed) until keys go idle.
    pub max_keys: usize,
    /// TLS handshakes in progress at once on the terminal and enrollment listeners together;
    /// past it a new connection is closed before its handshake.
    pub handshakes_in_flight: usize,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            // Above `enrollment.max_attempts` (5): a code's own lock answers first.
            enroll_code: Rate::new(10, 10),
            // An enrollment day may bring a clinic's terminals through one address.
            enroll_source: Rate::new(60, 20),
            signin_account: Rate::new(10, 10),
            signin_terminal: Rate::new(30, 15),
            signin_source: Rate::new(300, 100),
            // A browser's visit without a certificate is a handshake or two.
            no_certificate: Rate::new(60, 30),
            management_source: Rate::new(600, 120),
            management_token: Rate::new(300, 60),
            max_keys: 10_000,
            handshakes_in_flight: 256,
        }
    }
}

impl RateLimitsConfig {
    /// Every limit with its name (`rate_limits.NAME`, the `scope` of records and metrics).
    pub fn rates(&self) -> [(&'static str, Rate); 8] {
        [
            ("enroll_code", self.enroll_code),
            ("enroll_source", self.enroll_source),
            ("signin_account", self.signin_account),
            ("signin_terminal", self.signin_terminal),
            ("signin_source", self.signin_source),
            ("no_certificate", self.no_certificate),
            ("management_source", self.management_source),
            ("management_token", self.management_token),
        ]
    }

    pub fn validate(&self) -> Result<()> {
        for (name, r) in self.rates() {
            if r.per_minute > 60_000 {
                bail!(
                    "rate_limits.{name}.per_minute = {}: at most 60000 (1000 a second)",
                    r.per_minute
                );
            }
            if r.per_minute > 0 && !(1..=10_000).contains(&r.burst) {
                bail!(
                    "rate_limits.{name}.burst = {}: between 1 and 10000",
                    r.burst
                );
            }
        }
        if !(100..=10_000_000).contains(&self.max_keys) {
            bail!(
                "rate_limits.max_keys = {}: between 100 and 10000000",
                self.max_keys
            );
        }
        if !(1..=100_000).contains(&self.handshakes_in_flight) {
            bail!(
                "rate_limits.handshakes_in_flight = {}: between 1 and 100000",
                self.handshakes_in_flight
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_slips_do_not() {
        RateLimitsConfig::default().validate().unwrap();
        let mut c = RateLimitsConfig::default();
        c.signin_account.burst = 0;
        assert!(c.validate().is_err());
        c.signin_account = Rate::new(0, 0);
        c.validate().unwrap();
        c.max_keys = 5;
        assert!(c.validate().is_err());
        let c: RateLimitsConfig =
            toml::from_str("signin_account = { per_minute = 60, burst = 2 }").unwrap();
        assert_eq!(c.signin_account, Rate::new(60, 2));
        assert_eq!(c.enroll_code, RateLimitsConfig::default().enroll_code);
        assert!(toml::from_str::<RateLimitsConfig>("signin = 3").is_err());
    }
}
