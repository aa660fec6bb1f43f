//! `sekisho audit export status|reset`: where each `[[audit.export]]` destination is in the
//! log, and moving a destination's cursor (sending again from a record, or skipping to now),
//! which is an operation on record.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use sekisho_audit::{Decision, Event};
use sekisho_store::export_cursors;

use super::super::admin_audit::{Operator, change, cli_record};
use super::super::data_dir::open;

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// Each destination: its cursor, how far behind the log it is, who exports to it and when
    /// it last got records.
    Status {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Puts a destination's cursor at a record: `--to 0` sends the whole log again, `--to now`
    /// skips what it has not got. The replica exporting to it follows at its next delivery.
    Reset {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        destination: String,
        /// A leaf index, or `now` (the log's current size).
        #[arg(long)]
        to: String,
    },
}

pub(super) async fn run(cmd: ExportCmd, op: &Operator) -> Result<i32> {
    match cmd {
        ExportCmd::Status { data_dir } => {
            let (_, cfg, store) = open(&data_dir).await?;
            let size = sekisho_export::source::size(&store).await?;
            let cursors = export_cursors::list(&store).await?;
            println!("audit log: {size} records");
            if cfg.audit.exports.is_empty() {
                println!("no [[audit.export]] is configured");
            }
            let now_ms =
                (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            for e in &cfg.audit.exports {
                let c = cursors.iter().find(|c| c.destination == e.name);
                let Some(c) = c else {
                    println!("{}  ({})  not started yet", e.name, e.format);
                    continue;
                };
                let holder = match &c.holder {
                    Some(h) if c.lease_until_ms >= now_ms => format!("exported by {h}"),
                    _ => "nobody exporting now".into(),
                };
                let last = c.delivered_at.map_or("never".into(), crate::oversight::jst);
                println!(
                    "{}  ({})  next record {}  behind by {}  {holder}  last delivery {last}",
                    e.name,
                    e.format,
                    c.next_idx,
                    size.saturating_sub(c.next_idx)
                );
            }
            for c in cursors
                .iter()
                .filter(|c| !cfg.audit.exports.iter().any(|e| e.name == c.destination))
            {
                println!(
                    "{}  (no longer configured)  next record {}",
                    c.destination, c.next_idx
                );
            }
            Ok(0)
        }
        ExportCmd::Reset {
            data_dir,
            destination,
            to,
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            if !cfg.audit.exports.iter().any(|e| e.name == destination) {
                bail!("no [[audit.export]] is called {destination:?}");
            }
            let size = sekisho_export::source::size(&store).await?;
            let to = match to.as_str() {
                "now" => size,
                n => match n.parse::<u64>() {
                    Ok(n) if n <= size => n,
                    Ok(_) => bail!("--to {n}: the log holds {size} records"),
                    Err(_) => bail!("--to takes a record number or now"),
                },
            };
            let rec = sekisho_audit::AuditRecord {
                event: Event::Operation,
                action: Some("audit_export_reset".into()),
                decision: Decision::Permit,
                reason: "ok".into(),
                detail: Some(format!("destination {destination}: next record {to}")),
                ..cli_record()
            };
            let old = change(&dd, &cfg, &store, op, rec, async {
                export_cursors::set(&store, &destination, to).await
            })
            .await?;
            match old {
                Some(o) => println!("{destination}: next record {o} → {to}"),
                None => println!("{destination}: starts at record {to}"),
            }
            Ok(0)
        }
    }
}
