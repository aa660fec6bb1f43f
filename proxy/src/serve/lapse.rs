//! Ends sessions that lapsed: idle for `signin.idle_minutes`, or card sessions whose card has
//! not proved its presence for `signin.card_presence_secs` (`crate::sessions`). Every replica
//! sweeps; the store's conditional end lets exactly one of them end (and audit) each session,
//! and the change counter it moves takes the session off every replica's view. Before it
//! looks, a replica writes the activity it has seen, so its own requests are counted.

use std::sync::Arc;
use std::time::Duration;

use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_store::sessions::{self as rows, Lapsed};
use sekisho_store::{Store, now};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::sessions::{Limits, Sessions};

/// How often each replica sweeps: the most a lapsed session outlives its limit by (a request
/// meanwhile is refused anyway: `crate::gateway` checks the limits itself).
pub const SWEEP: Duration = Duration::from_secs(2);

pub async fn run(
    store: Store,
    audit: AuditLog,
    sessions: Arc<Sessions>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep(&store, &audit, &sessions).await {
            warn!(error = %e, "cannot end lapsed sessions; trying again");
        }
    }
}

/// One sweep; how many sessions this replica ended.
pub async fn sweep(store: &Store, audit: &AuditLog, sessions: &Sessions) -> anyhow::Result<u64> {
    let limits = sessions.limits();
    let idle_cut = |t: i64| t - limits.idle_secs;
    for (id, at) in sessions.unflushed() {
        rows::touch(store, &id, at, idle_cut(now())).await?;
    }
    let t = now();
    let mut ended = 0;
    for l in rows::lapsed(store, idle_cut(t), t - limits.presence_secs).await? {
        if end(store, audit, sessions, &l, limits, t).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

async fn end(
    store: &Store,
    audit: &AuditLog,
    sessions: &Sessions,
    l: &Lapsed,
    limits: Limits,
    t: i64,
) -> anyhow::Result<bool> {
    let mut tx = store.begin_write().await?;
    let n = rows::end_lapsed(
        &mut tx,
        &l.session_id,
        l.reason,
        t - limits.idle_secs,
        t - limits.presence_secs,
    )
    .await?;
    tx.commit().await?;
    if n == 0 {
        return Ok(false);
    }
    let facility = sessions
        .for_terminal(&l.terminal)
        .filter(|s| s.session_id == l.session_id)
        .map(|s| s.facility.clone());
    sessions.remove_session(&l.terminal, &l.session_id);
    info!(terminal = %l.terminal, user = %l.user_id, reason = l.reason, "session ended");
    audit.append_nowait(AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: Event::Auth,
        terminal: Some(l.terminal.clone()),
        facility,
        user: Some(l.user_id.clone()),
        decision: Decision::Permit,
        reason: l.reason.into(),
        detail: Some("DCM 110114 User Authentication / 110123 Logout".into()),
        ..Default::default()
    });
    Ok(true)
}
