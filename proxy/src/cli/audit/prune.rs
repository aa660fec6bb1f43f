//! `sekisho audit prune`: drops the bodies of audit records past their kind's retention
//! (`[audit.retention]`, R-OPS-5), keeping their leaves, as the operator's act on record; and
//! how `audit verify` shows what was pruned.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sekisho_audit::PrunedRange;
use sekisho_audit::retention::{self, Busy, PruneRun, Pruned};

use super::super::admin_audit::Operator;
use super::super::data_dir::open;
use crate::oversight::jst;

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// Print what would be pruned; change and record nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn run(a: PruneArgs, op: &Operator) -> Result<i32> {
    // The name first: a prune is an act on record, refused without one.
    let actor = if a.dry_run { None } else { Some(op.actor()?) };
    let (dd, cfg, store) = open(&a.data_dir).await?;
    let retention = cfg.audit.retention.retention()?;
    // Nothing an export destination has not got yet is pruned.
    let keep_from_idx = crate::config::export::keep_from(&store, &cfg.audit).await?;
    if let Some(k) = keep_from_idx {
        println!("records from {k} on are kept: an audit export destination has not got them yet");
    }
    let run = PruneRun {
        retention: &retention,
        now_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        keep_from_idx,
        actor: actor.clone().unwrap_or_default(),
        batch: retention::BATCH,
    };
    let Some(_) = actor else {
        let plan = retention::plan(&store, &run).await?;
        print_kinds(&plan, &retention, "would be pruned");
        println!(
            "dry run: {} record(s) would lose their bodies; nothing was changed or recorded",
            plan.records
        );
        return Ok(0);
    };
    let log = crate::serve::open_audit(&dd, &cfg, &store, &crate::metrics::Metrics::new())
        .await
        .context(
            "cannot open the audit log: a prune is an operation record and is not made without one",
        )?;
    let done = retention::prune(&store, &log, &run).await;
    log.shutdown().await;
    store.close().await;
    let done = match done {
        Ok(d) => d,
        Err(e) if e.is::<Busy>() => {
            eprintln!("{e}");
            return Ok(2);
        }
        Err(e) => return Err(e),
    };
    print_kinds(&done, &retention, "pruned");
    if done.records == 0 {
        println!("nothing is past its retention: nothing was changed or recorded");
    } else {
        println!(
            "pruned {} record(s) (run {}{}): bodies and personal search columns dropped, leaves kept; on record as audit_prune",
            done.records,
            done.run,
            done.span
                .map(|(a, b)| format!(", idx {a}-{b}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

fn print_kinds(p: &Pruned, r: &retention::Retention, what: &str) {
    println!("kind          kept (days)  past retention: before (JST)   {what}");
    for k in &p.kinds {
        let idx = match (k.first_idx, k.last_idx) {
            (Some(a), Some(b)) => format!("  idx {a}-{b}"),
            _ => String::new(),
        };
        println!(
            "{:<13} {:>11}  {:<30} {:>8}{idx}",
            k.event.as_str(),
            r.days(k.event),
            jst(k.before_ms.div_euclid(1000)),
            k.records
        );
    }
}

/// `records 0-41999 (request,outcome): 42000 pruned on 2031-04-01 03:30 by gw1 (run …)`.
pub(super) fn describe(p: &PrunedRange) -> String {
    format!(
        "records {}-{} ({}): {} pruned on {} by {} (run {}; the newest of them from {}): bodies gone",
        p.first_idx,
        p.last_idx,
        p.events,
        p.records,
        jst(p.pruned_at),
        p.pruned_by,
        p.run,
        jst(p.newest_ts.div_euclid(1000)),
    )
}
