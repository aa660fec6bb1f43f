//! Rate limits where someone can guess (`[rate_limits]`, `docs/gateway.md` "Rate limits"):
//! enrollment per access code and per source address, sign-in per account, terminal and source,
//! handshakes without a client certificate per source, the management listener per source and
//! per operator token, and a cap on TLS handshakes in progress.
//!
//! Each limit is GCRA (a token bucket kept as one "theoretical arrival time" per key): `burst`
//! attempts back to back, then one per `60 / per_minute` seconds, whatever their outcome. This is
//! not lockout (`crate::signin` counts failures in the store); it bounds how fast anyone may try
//! at all. The tables are in this replica's memory: with N replicas behind a balancer that
//! spreads one client's attempts, that client gets up to N times each rate.
//!
//! Memory is bounded: a table has 16 shards (one short mutex each, so concurrent keys rarely
//! meet) and remembers at most `max_keys` keys; a key whose bucket has refilled and whose last
//! refusal is a refill ago is forgotten when room is needed. With the table still full, attempts
//! under a new key are refused (fail closed) — a flood of source addresses cannot grow memory,
//! and while it lasts the keys already known (the clinics that were working) are still served.
//!
//! Refusals go on record once per burst: the first refusal under a key writes an audit record
//! (the caller does, with [`Limited::record`]); the following ones, until the key has gone a
//! whole refill time without a refusal, are only counted (`sekisho_rate_limited_total`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderValue, Response, header};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::rate_limits::{Rate, RateLimitsConfig};
use crate::metrics::Metrics;

/// What a limit is kept per; the name is the limit's key in `[rate_limits]` and the `scope` of
/// its records and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    EnrollCode,
    EnrollSource,
    SigninAccount,
    SigninTerminal,
    SigninSource,
    NoCertificate,
    ManagementSource,
    ManagementToken,
    /// The cap on handshakes in progress (one key: the gateway).
    HandshakesInFlight,
}

const RATED: [Scope; 8] = [
    Scope::EnrollCode,
    Scope::EnrollSource,
    Scope::SigninAccount,
    Scope::SigninTerminal,
    Scope::SigninSource,
    Scope::NoCertificate,
    Scope::ManagementSource,
    Scope::ManagementToken,
];

impl Scope {
    pub const fn name(self) -> &'static str {
        match self {
            Scope::EnrollCode => "enroll_code",
            Scope::EnrollSource => "enroll_source",
            Scope::SigninAccount => "signin_account",
            Scope::SigninTerminal => "signin_terminal",
            Scope::SigninSource => "signin_source",
            Scope::NoCertificate => "no_certificate",
            Scope::ManagementSource => "management_source",
            Scope::ManagementToken => "management_token",
            Scope::HandshakesInFlight => "handshakes_in_flight",
        }
    }

    fn rate(self, cfg: &RateLimitsConfig) -> Option<Rate> {
        cfg.rates()
            .into_iter()
            .find(|(n, _)| *n == self.name())
            .map(|(_, r)| r)
    }
}

/// The key of a source address: an IPv4 address (an IPv4-mapped IPv6 one too) as it is, an
/// IPv6 address by its /64, the least a site is given — one host may use all of its /64, and
/// would otherwise be a new key at every attempt.
pub fn source_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A refused attempt.
#[derive(Clone, Debug)]
pub struct Limited {
    pub scope: Scope,
    /// When the key may try again.
    pub retry_after: Duration,
    /// The first refusal of a burst under this key: the one to put on record.
    pub first: bool,
    /// Refused because the table was full, not because this key went too fast.
    pub table_full: bool,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// Adds `Retry-After` to a refusal's answer.
    pub fn add_retry_after<B>(&self, mut resp: Response<B>) -> Response<B> {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs()),
        );
        resp
    }

    /// The burst's record (reason `rate_limited`, the scope in `detail`); the caller adds who.
    /// Never the key itself when it is a secret (a code, a token): the scope says which limit.
    pub fn record(&self, event: Event, peer: Option<String>) -> AuditRecord {
        AuditRecord {
            request_id: sekisho_protocol::new_request_id(),
            event,
            peer,
            decision: Decision::Deny,
            reason: Reason::RateLimited.code().into(),
            detail: Some(if self.table_full {
                format!(
                    "rate limit {}: too many keys at once; new ones refused (first refusal of a burst; the rest are counted, not recorded)",
                    self.scope.name()
                )
            } else {
                format!(
                    "rate limit {}: first refusal of a burst; the rest are counted, not recorded",
                    self.scope.name()
                )
            }),
            ..Default::default()
        }
    }
}

const SHARDS: usize = 16;

/// Nanoseconds since the throttle's epoch.
type Nanos = u64;

struct Bucket {
    /// GCRA's theoretical arrival time: the bucket is full again at `tat`.
    tat: Nanos,
    last_refused: Option<Nanos>,
}

/// When the last refusal of a burst was, for refusals not kept per key (a full table, the
/// handshake cap); 0 = none yet.
struct BurstClock(AtomicU64);

impl BurstClock {
    /// Whether a refusal at `now` starts a burst (none within `window` before it).
    fn refuse(&self, now: Nanos, window: Nanos) -> bool {
        let last = self.0.swap(now + 1, Ordering::Relaxed);
        last == 0 || now + 1 - last.min(now + 1) >= window
    }
}

struct Shard {
    keys: HashMap<String, Bucket>,
    /// When idle keys were last looked for (see [`Table::check`]).
    swept: Option<Nanos>,
}

struct Table {
    /// Time per attempt.
    interval: Nanos,
    /// How far ahead of now `tat` may be and still admit: `interval * (burst - 1)`.
    tolerance: Nanos,
    /// A whole refill: a key quiet this long starts a new burst, and may be forgotten.
    window: Nanos,
    shard_cap: usize,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    full: BurstClock,
}

impl Table {
    fn new(rate: Rate, max_keys: usize) -> Option<Table> {
        if rate.per_minute == 0 {
            return None;
        }
        let interval = 60_000_000_000 / u64::from(rate.per_minute);
        let burst = u64::from(rate.burst.max(1));
        Some(Table {
            interval,
            tolerance: interval * (burst - 1),
            window: interval * burst,
            shard_cap: max_keys.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        keys: HashMap::new(),
                        swept: None,
                    })
                })
                .collect(),
            full: BurstClock(AtomicU64::new(0)),
        })
    }

    fn idle(&self, b: &Bucket, now: Nanos) -> bool {
        b.tat <= now
            && b.last_refused
                .is_none_or(|l| now.saturating_sub(l) >= self.window)
    }

    fn check(&self, scope: Scope, key: &str, now: Nanos) -> Result<(), Limited> {
        let shard = &self.shards[(self.hasher.hash_one(key) % SHARDS as u64) as usize];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if !shard.keys.contains_key(key) {
            // A full shard is swept for idle keys at most once per attempt interval (a second
            // at most): no key can turn idle sooner, and a flood of new keys must not buy a
            // sweep each.
            if shard.keys.len() >= self.shard_cap
                && shard
                    .swept
                    .is_none_or(|s| now.saturating_sub(s) >= self.interval.min(1_000_000_000))
            {
                shard.swept = Some(now);
                shard.keys.retain(|_, b| !self.idle(b, now));
            }
            if shard.keys.len() >= self.shard_cap {
                return Err(Limited {
                    scope,
                    retry_after: Duration::from_nanos(self.interval),
                    first: self.full.refuse(now, self.window),
                    table_full: true,
                });
            }
            shard.keys.insert(
                key.to_owned(),
                Bucket {
                    tat: now,
                    last_refused: None,
                },
            );
        }
        let b = shard.keys.get_mut(key).expect("inserted above");
        let tat = b.tat.max(now);
        if tat - now > self.tolerance {
            let first = b
                .last_refused
                .is_none_or(|l| now.saturating_sub(l) >= self.window);
            b.last_refused = Some(now);
            return Err(Limited {
                scope,
                retry_after: Duration::from_nanos(tat - now - self.tolerance),
                first,
                table_full: false,
            });
        }
        b.tat = tat + self.interval;
        Ok(())
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().keys.len())
            .sum()
    }
}

/// The gateway's rate limits; one per replica, shared by its listeners.
pub struct Throttle {
    tables: Vec<Option<Table>>,
    epoch: Instant,
    metrics: Arc<Metrics>,
    handshakes: Arc<Semaphore>,
    handshakes_full: BurstClock,
}

impl Throttle {
    pub fn new(cfg: &RateLimitsConfig, metrics: Arc<Metrics>) -> Throttle {
        Throttle {
            tables: RATED
                .iter()
                .map(|s| s.rate(cfg).and_then(|r| Table::new(r, cfg.max_keys)))
                .collect(),
            epoch: Instant::now(),
            metrics,
            handshakes: Arc::new(Semaphore::new(cfg.handshakes_in_flight)),
            handshakes_full: BurstClock(AtomicU64::new(0)),
        }
    }

    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    /// One attempt under `key`; refused when the key (or, for a new key, the table) is full.
    /// Counted in `/metrics`; the caller puts `first` refusals on record.
    pub fn check(&self, scope: Scope, key: &str) -> Result<(), Limited> {
        self.check_at(scope, key, self.now())
    }

    fn check_at(&self, scope: Scope, key: &str, now: Nanos) -> Result<(), Limited> {
        let Some(table) = RATED
            .iter()
            .position(|s| *s == scope)
            .and_then(|i| self.tables[i].as_ref())
        else {
            return Ok(());
        };
        table.check(scope, key, now).inspect_err(|l| self.count(l))
    }

    fn count(&self, l: &Limited) {
        let cause = if l.table_full { "table_full" } else { "limit" };
        self.metrics
            .rate_limited
            .get_or_create(&vec![("scope", l.scope.name()), ("cause", cause)])
            .inc();
        if l.first {
            self.metrics
                .rate_limit_bursts
                .get_or_create(&vec![("scope", l.scope.name())])
                .inc();
        }
    }

    /// A place among the TLS handshakes in progress, held until the handshake ends.
    pub fn handshake(&self) -> Result<OwnedSemaphorePermit, Limited> {
        self.handshakes.clone().try_acquire_owned().map_err(|_| {
            let l = Limited {
                scope: Scope::HandshakesInFlight,
                retry_after: Duration::from_secs(1),
                // A burst ends after ten seconds without a refusal.
                first: self.handshakes_full.refuse(self.now(), 10_000_000_000),
                table_full: false,
            };
            self.count(&l);
            l
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    fn throttle(f: impl FnOnce(&mut RateLimitsConfig)) -> Throttle {
        let mut cfg = RateLimitsConfig::default();
        f(&mut cfg);
        Throttle::new(&cfg, Arc::new(Metrics::new()))
    }

    fn rate(per_minute: u32, burst: u32) -> Rate {
        Rate { per_minute, burst }
    }

    #[test]
    fn a_burst_then_the_rate_then_the_limit_lifts() {
        let t = throttle(|c| c.signin_account = rate(60, 3));
        let s = Scope::SigninAccount;
        for _ in 0..3 {
            t.check_at(s, "a", 0).unwrap();
        }
        let l = t.check_at(s, "a", 0).unwrap_err();
        assert_eq!(
            (l.retry_after, l.retry_after_secs()),
            (Duration::from_secs(1), 1)
        );
        assert!(l.first && !l.table_full);
        // The next refusals of the burst are not to be recorded.
        assert!(!t.check_at(s, "a", SEC / 2).unwrap_err().first);
        // Other keys are untouched.
        t.check_at(s, "b", SEC / 2).unwrap();
        // One more a second; refusals do not push the time back.
        t.check_at(s, "a", SEC).unwrap();
        assert!(!t.check_at(s, "a", SEC).unwrap_err().first);
        t.check_at(s, "a", 2 * SEC).unwrap();
        // Quiet for a whole refill (3 s after the last refusal, and full): a new burst.
        for _ in 0..3 {
            t.check_at(s, "a", 10 * SEC).unwrap();
        }
        assert!(t.check_at(s, "a", 10 * SEC).unwrap_err().first);
        assert!(
            t.metrics
                .encode()
                .contains(r#"sekisho_rate_limited_total{scope="signin_account",cause="limit"} 4"#),
            "{}",
            t.metrics.encode()
        );
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let key = |s: &str| source_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::9"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn a_disabled_limit_admits_everything() {
        let t = throttle(|c| c.enroll_source = rate(0, 0));
        for _ in 0..1000 {
            t.check_at(Scope::EnrollSource, "x", 0).unwrap();
        }
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_forgets_idle_ones() {
        let t = throttle(|c| {
            c.max_keys = 160;
            c.no_certificate = rate(60, 1);
        });
        let s = Scope::NoCertificate;
        let table = t.tables[5].as_ref().unwrap();
        let mut refused = Vec::new();
        for i in 0..2000 {
            if let Err(l) = t.check_at(s, &format!("10.0.{}.{}", i / 256, i % 256), 0) {
                assert!(l.table_full);
                refused.push(l.first);
            }
        }
        // Bounded whatever the flood; refusals of a full table are one burst.
        assert!(table.keys() <= 160, "{}", table.keys());
        assert!(refused.len() >= 2000 - 160);
        assert_eq!(refused.iter().filter(|f| **f).count(), 1);
        // A key already known is still judged on its own.
        let known = (0..2000)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .find(|k| {
                table.shards[(table.hasher.hash_one(k.as_str()) % SHARDS as u64) as usize]
                    .lock()
                    .unwrap()
                    .keys
                    .contains_key(k)
            })
            .unwrap();
        assert!(!t.check_at(s, &known, 0).unwrap_err().table_full);
        // Once the known keys have refilled (and gone a refill without refusal), new keys fit.
        t.check_at(s, "192.0.2.1", 5 * SEC).unwrap();
        assert!(table.keys() <= 160);
    }

    #[test]
    fn handshakes_in_flight_are_capped() {
        let t = throttle(|c| c.handshakes_in_flight = 2);
        let a = t.handshake().unwrap();
        let _b = t.handshake().unwrap();
        let l = t.handshake().unwrap_err();
        assert!(l.first && l.scope == Scope::HandshakesInFlight);
        assert!(!t.handshake().unwrap_err().first);
        drop(a);
        let _c = t.handshake().unwrap();
    }

    #[test]
    fn concurrent_keys_on_threads() {
        let t = Arc::new(throttle(|c| c.signin_source = rate(60, 5)));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| t.check_at(Scope::SigninSource, &format!("k{i}"), 0).is_ok())
                        .count()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 5);
        }
    }
}
