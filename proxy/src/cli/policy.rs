//! `sekisho policy …`: the Cedar policy set, checked against its schema and tried with
//! decision tables before it goes live.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate the data dir's policy set against its schema.
    Check {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Run decision tables (a TOML file, or a directory of them) against the policy set
    /// (the data dir's, or the shipped default with no --data-dir).
    Test {
        file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn policy_dir(data_dir: &Path) -> Result<PathBuf> {
    let cfg = Config::load(data_dir)?;
    Ok(data_dir.join(cfg.policy.dir))
}

pub(super) fn run(cmd: PolicyCmd) -> Result<i32> {
    match cmd {
        PolicyCmd::Check { data_dir } => {
            let dir = policy_dir(&data_dir)?;
            let engine =
                sekisho_policies::PolicyEngine::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "policy set OK: {} policies in {}",
                engine.policy_ids().len(),
                dir.display()
            );
            Ok(0)
        }
        PolicyCmd::Test { file, data_dir } => {
            let dir = match data_dir {
                Some(d) => policy_dir(&d)?,
                None => sekisho_policies::default_policy_dir(),
            };
            let engine =
                sekisho_policies::PolicyEngine::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            let report = if file.is_dir() {
                sekisho_policies::run_table_dir(&engine, &file)?
            } else {
                sekisho_policies::run_table(&engine, &sekisho_policies::DecisionTable::load(&file)?)
            };
            for f in &report.failures {
                println!("FAIL {f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            Ok(if report.failures.is_empty() { 0 } else { 1 })
        }
    }
}
