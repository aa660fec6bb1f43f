//! `sekisho audit …`: the tamper-evident audit log, verified against its signed checkpoints.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::data_dir::open;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the Merkle tree and check every signed checkpoint.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub(super) async fn run(cmd: AuditCmd) -> Result<i32> {
    match cmd {
        AuditCmd::Verify { data_dir } => {
            let (dd, _cfg, store) = open(&data_dir).await?;
            let key_file = dd.audit_dir().join("checkpoint.pub");
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("cannot read {}", key_file.display()))?;
            let report = sekisho_audit::verify(&store, key.trim()).await?;
            println!(
                "records: {}  checkpoints: {}",
                report.records, report.checkpoints
            );
            if report.problems.is_empty() {
                println!("audit log OK: every record is covered by a valid signed checkpoint");
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
