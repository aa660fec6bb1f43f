//! `sekisho audit …`: the tamper-evident audit log, verified against its signed checkpoints
//! (and the copies witnesses keep: `witness.rs`), a patient's access history read from it (for
//! a disclosure request: seed 002, 別添4(5)), and serving as another log's witness.

mod export;
mod prune;
mod witness;

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::admin_audit::{Operator, cli_record, officer};
use super::data_dir::open;
use crate::oversight::history;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the Merkle tree and check every signed checkpoint; with `--witness`, also
    /// that the log still holds every checkpoint the witnesses hold (not truncated, not
    /// forked).
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        witnesses: witness::VerifyWitnesses,
    },
    /// The audit export to `[[audit.export]]` destinations: where each one is, and moving it.
    #[command(subcommand)]
    Export(export::ExportCmd),
    /// Drop the bodies of records past their kind's retention (`[audit.retention]`), keeping
    /// their leaves so `verify` still passes; on record as the operator's act.
    Prune(prune::PruneArgs),
    /// Be an HTTPS witness of a gateway's audit log (run on another node): keep the signed
    /// checkpoints it POSTs in a directory, refusing older and forked ones.
    Witness(witness::WitnessArgs),
    /// Every decision about one patient's records — who, when, from which facility and
    /// terminal, for what, on what grounds (consent or an emergency declaration) — oldest
    /// first. Producing it is on record first, as the operator's act.
    Patient {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        patient: String,
        /// From this day (JST, `YYYY-MM-DD`), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Up to this day (JST, `YYYY-MM-DD`), inclusive.
        #[arg(long)]
        to: Option<String>,
        /// CSV (RFC 4180, UTF-8) instead of a table. The person asking is `--operator`.
        #[arg(long)]
        csv: bool,
    },
}

pub(super) async fn run(cmd: AuditCmd, op: &Operator) -> Result<i32> {
    match cmd {
        AuditCmd::Patient {
            data_dir,
            patient,
            from,
            to,
            csv,
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let (who, log, policy) = officer(&dd, &cfg, &store, op).await?;
            let found = history::access_history(
                &store,
                &log,
                &policy,
                &who,
                &history::Request {
                    patient: &patient,
                    from: from.as_deref(),
                    to: to.as_deref(),
                    form: if csv { "CSV" } else { "table" },
                },
                cli_record(),
            )
            .await;
            log.shutdown().await;
            let found = found.map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            if csv {
                print!("{}", history::csv(&found, false));
                return Ok(0);
            }
            println!("{patient}: {} decision(s)", found.len());
            println!(
                "時刻/time  判定/decision  理由/reason  利用者/user  施設/facility  端末/terminal  操作/action  目的/purpose  経路/route"
            );
            for rec in &found {
                let f = history::fields(rec);
                println!(
                    "{}  {:<6} {:<28} {:<14} {:<10} {:<12} {:<10} {:<8} {}{}",
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    f[5],
                    f[6],
                    f[7],
                    f[9],
                    f[8],
                    if f[10].is_empty() {
                        String::new()
                    } else {
                        format!("  (emergency {})", f[10])
                    }
                );
            }
            Ok(0)
        }
        AuditCmd::Witness(args) => witness::serve(args).await,
        AuditCmd::Export(cmd) => export::run(cmd, op).await,
        AuditCmd::Prune(args) => prune::run(args, op).await,
        AuditCmd::Verify {
            data_dir,
            witnesses,
        } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let key = sekisho_audit::checkpoint::verifier_keys(&dd.audit_dir())?;
            let (copies, unreadable) = witnesses.copies(&dd, &cfg).await;
            let asked = copies.len() + unreadable.len();
            let mut report = sekisho_audit::verify_witnessed(&store, key.trim(), copies).await?;
            report.problems.extend(unreadable);
            // The nodes' journals: what they made durable is in the log, or waits for it.
            let journals = sekisho_audit::journal::check_all(&store, &dd.audit_dir()).await?;
            for j in &journals {
                report.problems.extend(j.problems.iter().cloned());
            }
            // The run itself goes on record (the console's dashboard shows the last one). A log
            // that cannot take the record is said, not hidden behind the verdict.
            let ran = sekisho_audit::AuditRecord {
                request_id: sekisho_protocol::new_request_id(),
                event: sekisho_audit::Event::Report,
                action: Some("audit_verify".into()),
                actor: Some(match op.name() {
                    Ok(n) => format!("{n} ({})", super::admin_audit::actor()),
                    Err(_) => super::admin_audit::actor(),
                }),
                decision: sekisho_audit::Decision::Permit,
                reason: if report.is_clean() {
                    "audit_verified".into()
                } else {
                    "audit_verify_failed".into()
                },
                detail: Some(
                    if witnesses.any() {
                        format!(
                            "{} records, {} checkpoints, {asked} witness(es), {} problem(s)",
                            report.records,
                            report.checkpoints,
                            report.problems.len()
                        )
                    } else {
                        format!(
                            "{} records, {} checkpoints, {} problem(s)",
                            report.records,
                            report.checkpoints,
                            report.problems.len()
                        )
                    } + &if report.pruned_records > 0 {
                        format!(", {} pruned after retention", report.pruned_records)
                    } else {
                        String::new()
                    },
                ),
                ..Default::default()
            };
            let log =
                crate::serve::open_audit(&dd, &cfg, &store, &crate::metrics::Metrics::new()).await;
            match log {
                Ok(log) => {
                    if let Err(e) = log.append(ran).await {
                        eprintln!("warning: this run could not be recorded in the audit log: {e}");
                    }
                    log.shutdown().await;
                }
                Err(e) => {
                    eprintln!("warning: this run could not be recorded in the audit log: {e:#}")
                }
            }
            println!(
                "records: {}  checkpoints: {}",
                report.records, report.checkpoints
            );
            for w in &report.witnessed {
                println!("{w}");
            }
            for j in &journals {
                println!(
                    "journal {}: {} record(s) held, {} checked against the log, {} not yet in the store{}",
                    j.node,
                    j.frames,
                    j.matched,
                    j.waiting,
                    if j.waiting > 0 {
                        " (its gateway puts them there when it runs)"
                    } else {
                        ""
                    }
                );
                if let Some(n) = &j.note {
                    println!("journal {}: {n}", j.node);
                }
            }
            for p in &report.pruned {
                println!("pruned: {}", prune::describe(p));
            }
            if report.pruned_records > 0 && report.is_clean() {
                println!(
                    "{} record(s) pruned after their retention: their leaves are verified against the checkpoints",
                    report.pruned_records
                );
            }
            if report.problems.is_empty() {
                println!("audit log OK: every record is covered by a valid signed checkpoint");
                if asked > 0 {
                    println!(
                        "and the log holds every checkpoint its {asked} witness(es) hold: not truncated, not forked since they saw it"
                    );
                }
                Ok(0)
            } else {
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
                println!(
                    "audit log FAILED verification: {} problem(s)",
                    report.problems.len()
                );
                Ok(1)
            }
        }
    }
}
