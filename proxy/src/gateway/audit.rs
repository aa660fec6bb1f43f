//! Phase 6, audit: the permit's decision record is made durable before anything it allows
//! takes effect. If it cannot be written, the request is
//! refused with 503 and nothing reaches the upstream.

use sekisho_audit::Decision;
use sekisho_protocol::Reason;
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;

impl Gateway {
    pub(super) async fn record_permit(&self, ctx: &mut RequestCtx<'_>) -> Result<(), Reason> {
        ctx.record.decision = Decision::Permit;
        ctx.record.reason = "ok".into();
        if let Err(e) = self.audit.append(ctx.record.clone()).await {
            warn!(request_id = ctx.id, error = %e, "audit append failed; refusing");
            return Err(Reason::AuditUnavailable);
        }
        Ok(())
    }
}
