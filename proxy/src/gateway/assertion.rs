//! The signed assertion the upstream receives with a permitted request: who asks (terminal,
//! person, qualification, how they signed in), for what (route, action, patient) and on what
//! grounds (purpose of use, consent basis, the assistant's entry, the facility administered).
//! The signer and its key are [`crate::assertion`].
//!
//! Signing is the costliest thing the gateway does per request, so an assertion is signed once
//! per connection and set of claims and reused for up to [`REUSE_SECS`] of its
//! [`LIFETIME_SECS`]: the same terminal, person, patient, route and action on the same
//! connection present the same assertion (its `jti` names the assertion, not the request); the
//! request itself is named by `Sekisho-Request-Id`, which is in the audit record. The upstream's
//! replay model is in `docs/gateway.md`.

use std::sync::Mutex;

use anyhow::Result;
use sekisho_protocol::new_request_id;

use super::Gateway;
use super::context::RequestCtx;
use crate::assertion::{BreakGlassClaim, Claims, LIFETIME_SECS};

/// How long a signed assertion is reused on one connection; it is then still valid for at least
/// `LIFETIME_SECS - REUSE_SECS` seconds when the upstream sees it.
pub(super) const REUSE_SECS: i64 = 10;
/// Distinct claim sets one connection keeps assertions for.
const CACHE_ENTRIES: usize = 8;

/// A connection's signed assertions, by their claims without the times and `jti`.
#[derive(Default)]
pub(super) struct AssertionCache(Mutex<Vec<Cached>>);

struct Cached {
    key: Vec<u8>,
    signed_at: i64,
    jwt: String,
}

impl Gateway {
    /// The `Sekisho-Assertion` for this request: a reused one while fresh, else a new one.
    pub(super) fn assertion(&self, ctx: &RequestCtx<'_>) -> Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let sub = ctx.terminal.map(|(_, t)| t.urn()).unwrap_or_default();
        let key = serde_json::to_vec(&self.claims(ctx, &sub, 0, ""))?;
        let cache = &ctx.conn.assertions;
        if let Some(c) = cache
            .0
            .lock()
            .expect("assertion cache lock")
            .iter()
            .find(|c| c.key == key && now - c.signed_at < REUSE_SECS && now >= c.signed_at)
        {
            return Ok(c.jwt.clone());
        }
        let jti = new_request_id();
        let jwt = self.signer.sign(&self.claims(ctx, &sub, now, &jti))?;
        let mut entries = cache.0.lock().expect("assertion cache lock");
        entries.retain(|c| c.key != key && now - c.signed_at < REUSE_SECS);
        if entries.len() >= CACHE_ENTRIES {
            entries.remove(0);
        }
        entries.push(Cached {
            key,
            signed_at: now,
            jwt: jwt.clone(),
        });
        Ok(jwt)
    }

    /// The claims for this request, signed at `now` (0 for the cache key) as assertion `jti`.
    fn claims<'a>(
        &'a self,
        ctx: &'a RequestCtx<'_>,
        sub: &'a str,
        now: i64,
        jti: &'a str,
    ) -> Claims<'a> {
        let terminal = ctx.terminal.map(|(_, t)| t);
        let route = ctx.route.as_ref();
        let session = ctx.session.as_deref();
        let entry = ctx.entry.as_ref();
        let (nbf, exp) = if now == 0 {
            (0, 0)
        } else {
            (now - 5, now + LIFETIME_SECS)
        };
        Claims {
            iss: self.signer.issuer(),
            aud: self.signer.audience(),
            iat: now,
            nbf,
            exp,
            jti,
            sub,
            terminal: terminal.map_or("", |t| t.terminal.as_str()),
            facility: terminal.map_or("", |t| t.facility.as_str()),
            patient: route.and_then(|r| r.patient.as_deref()),
            user: session.map(|s| s.user_id.as_str()),
            user_facility: session.map(|s| s.facility.as_str()),
            qualification: session.and_then(|s| s.qualification.as_deref()),
            auth_method: session.map(|s| s.method.as_str()),
            purpose_of_use: ctx
                .consent_basis
                .map(|_| if ctx.grant.is_some() { "BTG" } else { "TREAT" }),
            consent_basis: ctx.consent_basis,
            entry: entry.map(|e| e.entry_id.as_str()),
            entry_author: entry.map(|e| e.author.as_str()),
            entry_facility: entry.map(|e| e.facility.as_str()),
            admin_facility: route
                .and_then(|r| r.admin.as_ref())
                .map(|(_, f)| f.as_str()),
            break_glass: ctx.grant.as_ref().map(|g| BreakGlassClaim {
                id: &g.id,
                reason_category: &g.category,
                expires: g.expires_at,
            }),
            action: route.map_or("", |r| r.config.action.as_str()),
            route: route.map_or("", |r| r.config.name()),
        }
    }
}
