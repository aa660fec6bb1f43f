//! Phase 6, audit: the permit's decision record is made durable before anything it allows
//! takes effect. Unsafe requests wait for it before they are forwarded ([`Gateway::record_permit`]);
//! a safe read may be forwarded while it commits ([`Gateway::record_permit_async`]) and its
//! answer is released only once it is durable. If it cannot be written, the answer is 503.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use sekisho_audit::{AuditError, AuditLog, AuditRecord, Decision, Event};
use sekisho_protocol::Reason;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::Gateway;
use super::context::RequestCtx;
use crate::body::Body;

/// Records of withheld answers waiting for the log to come back; beyond this they are counted
/// as audit failures and logged, not queued.
const MAX_PENDING_RECORDS: usize = 4096;
/// How long a withheld answer's record is retried.
const RETRY_FOR: Duration = Duration::from_secs(600);

impl Gateway {
    /// Waits until the permit's record is durable.
    pub(super) async fn record_permit(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        if let Err(e) = self.record_permit_async(ctx).await {
            warn!(request_id = ctx.id, error = %e, "audit append failed; refusing");
            return Err(Reason::AuditUnavailable);
        }
        Ok(())
    }

    /// Queues the permit's record; the returned future resolves once it is durable.
    pub(super) fn record_permit_async(
        &self,
        ctx: &mut RequestCtx<'_>,
    ) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        ctx.record.decision = Decision::Permit;
        ctx.record.reason = "ok".into();
        // Stamped in place, not cloned: the outcome record goes on from it.
        self.audit.submit_stamping(&mut ctx.record)
    }

    /// A safe read went to the upstream, but its decision record could not be made durable:
    /// the upstream's answer is dropped, the terminal gets 503, and what happened is recorded
    /// as soon as the log takes records again.
    pub(super) fn withheld(&self, ctx: RequestCtx<'_>) -> Response<Body> {
        let resp = self.refuse_unrecorded(&ctx, Reason::AuditUnavailable);
        let mut rec = ctx.record;
        rec.event = Event::Outcome;
        rec.time = String::new();
        rec.reason = Reason::AuditUnavailable.code().into();
        rec.upstream_status = Some(resp.status().as_u16());
        rec.detail = Some(
            "forwarded while its decision record was committing; the record failed, so the answer was withheld"
                .into(),
        );
        record_when_possible(&self.audit, &self.pending_records, rec);
        resp
    }
}

impl Gateway {
    /// A request refused because its record could not be written — a refusal (`decided`), or a
    /// permit (`None`) that could not be made durable: the terminal gets 503
    /// `audit_unavailable`, and the refusal is recorded as soon as the log takes records again
    /// (a full disk freed, the store back), stamped then, with the decision's time in `detail`.
    pub(super) fn refused_unrecorded(
        &self,
        ctx: RequestCtx<'_>,
        decided: Option<Reason>,
    ) -> Response<Body> {
        let resp = self.refuse_unrecorded(&ctx, Reason::AuditUnavailable);
        let mut rec = ctx.record;
        rec.decision = Decision::Deny;
        let at = if rec.time.is_empty() {
            sekisho_audit::format_time(time::OffsetDateTime::now_utc())
        } else {
            rec.time.clone()
        };
        let what = match decided {
            Some(r) => format!("refused ({})", r.code()),
            None => "permitted".to_string(),
        };
        let note = format!(
            "{what} at {at}, but the audit log could not be written, so refused; recorded when it could"
        );
        rec.detail = Some(match rec.detail.take() {
            Some(d) => format!("{d}; {note}"),
            None => note,
        });
        rec.time = String::new();
        rec.reason = Reason::AuditUnavailable.code().into();
        record_when_possible(&self.audit, &self.pending_records, rec);
        resp
    }
}

/// Appends `rec` as soon as the log takes it, retrying for a while, in the background.
fn record_when_possible(audit: &AuditLog, slots: &Arc<Semaphore>, rec: AuditRecord) {
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        warn!(
            request_id = rec.request_id,
            "too many records waiting for the audit log; this one is dropped"
        );
        return;
    };
    let audit = audit.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            match audit.append(rec.clone()).await {
                Ok(_) => {
                    info!(
                        request_id = rec.request_id,
                        "recorded what the log could not take at the time"
                    );
                    break;
                }
                Err(_) if started.elapsed() < RETRY_FOR => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    warn!(request_id = rec.request_id, error = %e, "gave up recording what the log could not take");
                    break;
                }
            }
        }
        drop(slot);
    });
}

/// The bound on background records ([`MAX_PENDING_RECORDS`]).
pub(super) fn pending_records() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_PENDING_RECORDS))
}
