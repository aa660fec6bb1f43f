//! The gateway's scheduled prune (`[audit.retention] daily_at`, R-OPS-5): once a day, Japan
//! time, it drops the bodies of audit records past their retention, as the node's act on
//! record. With replicas every node tries and one runs: the others find the lease taken.

use std::time::Duration;

use sekisho_audit::AuditLog;
use sekisho_audit::retention::{self, Busy, PruneRun};
use sekisho_store::Store;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;

const JST_SECS: i64 = 9 * 3600;

/// Seconds from `now` (Unix seconds) to the next `minute` after midnight, Japan time.
fn until_next(now: i64, minute: u32) -> u64 {
    let day = (now + JST_SECS).rem_euclid(86_400);
    let at = i64::from(minute) * 60;
    let wait = if at > day {
        at - day
    } else {
        at + 86_400 - day
    };
    wait as u64
}

pub async fn run(cfg: Config, store: Store, log: AuditLog, mut shutdown: watch::Receiver<bool>) {
    // Validated when the configuration was loaded.
    let (Ok(Some(minute)), Ok(retention)) = (
        cfg.audit.retention.daily_minute(),
        cfg.audit.retention.retention(),
    ) else {
        return;
    };
    let actor = format!("gateway {}", cfg.node);
    loop {
        let wait = until_next(sekisho_store::now(), minute);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = shutdown.changed() => return,
        }
        // Nothing an export destination has not got yet is pruned.
        let keep_from_idx = match crate::config::export::keep_from(&store, &cfg.audit).await {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, "audit retention: cannot read the export cursors; not pruning today");
                continue;
            }
        };
        let run = PruneRun {
            retention: &retention,
            now_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            keep_from_idx,
            actor: actor.clone(),
            batch: retention::BATCH,
        };
        let done = tokio::select! {
            r = retention::prune(&store, &log, &run) => r,
            // A batch cut off rolls back; the next run goes on from the last committed one.
            _ = shutdown.changed() => return,
        };
        match done {
            Ok(p) if p.records == 0 => info!("audit retention: nothing is past its retention"),
            Ok(p) => {
                info!(run = %p.run, records = p.records, pruned = %p.summary(), "audit retention: pruned")
            }
            Err(e) if e.is::<Busy>() => info!("audit retention: {e}"),
            Err(e) => error!("audit retention: the prune failed: {e:#}"),
        }
        // Not twice in the same minute.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(61)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::until_next;

    #[test]
    fn waits_for_the_next_japan_time() {
        // 2026-04-01 00:00 UTC is 09:00 JST.
        let t = 1_775_001_600;
        assert_eq!(until_next(t, 9 * 60 + 30), 1800);
        assert_eq!(until_next(t, 3 * 60 + 30), (18 * 60 + 30) * 60);
        assert_eq!(until_next(t, 9 * 60), 86_400);
    }
}
