//! `sekisho operator-token …`: credentials for the management API (issue 13, R-OPS-4). A
//! token is shown once when it is made; the store keeps its SHA-256. Making and revoking one is
//! the operator's act on record.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::admin_audit::{Operator, change};
use super::data_dir::open;
use crate::notices::operation_record;
use crate::oversight::jst;
use sekisho_store::operator_tokens as rows;

#[derive(Subcommand, Debug)]
pub enum OperatorTokenCmd {
    /// Make a token for the management API; it is printed once.
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// Whose it is, e.g. vendor-remote-ops: in the audit log as token:NAME.
        #[arg(long)]
        name: String,
        /// What it may do (repeat it): status, audit (read the audit log), notices,
        /// maintenance (start and end windows), facilities (suspend and resume).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Tokens with when they were made and last used.
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Revoke a token: refused from now on, on every replica.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub(super) async fn run(cmd: OperatorTokenCmd, op: &Operator) -> Result<i32> {
    match cmd {
        OperatorTokenCmd::Add {
            data_dir,
            name,
            scopes,
        } => {
            if !sekisho_protocol::ids::is_valid_id(&name) {
                bail!("--name is 1 to 64 letters, digits, '.', '_' or '-'");
            }
            let mut scopes: Vec<String> = scopes
                .iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            scopes.sort();
            scopes.dedup();
            if let Some(bad) = scopes
                .iter()
                .find(|s| !crate::mgmt::SCOPES.contains(&s.as_str()))
            {
                bail!("--scope {bad:?}: one of {}", crate::mgmt::SCOPES.join(", "));
            }
            let (dd, cfg, store) = open(&data_dir).await?;
            let token = crate::mgmt::new_token();
            let by = op.actor()?;
            let rec = operation_record(
                "operator_token_added",
                format!("{name}: {}", scopes.join(" ")),
            );
            change(
                &dd,
                &cfg,
                &store,
                op,
                rec,
                rows::add(
                    &store,
                    &name,
                    &crate::mgmt::token_hash(&token),
                    &scopes,
                    &by,
                ),
            )
            .await?;
            println!("Operator token {name} (shown once; keep it as a secret):");
            println!("{token}");
            println!(
                "Use it as `Authorization: Bearer <token>` at http://{}/api/v1/ (docs/operations.md).",
                cfg.listen.management
            );
            Ok(0)
        }
        OperatorTokenCmd::List { data_dir } => {
            let (_dd, _cfg, store) = open(&data_dir).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:<8} {:<16} {:<16} {:<36} MADE BY",
                "NAME", "STATE", "MADE (JST)", "LAST USED (JST)", "SCOPES"
            )?;
            for t in rows::list(&store).await? {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<16} {:<16} {:<36} {}",
                    t.name,
                    if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    },
                    jst(t.created_at),
                    t.last_used_at.map(jst).unwrap_or_else(|| "-".into()),
                    t.scopes.join(" "),
                    t.created_by
                )?;
            }
            Ok(0)
        }
        OperatorTokenCmd::Revoke { data_dir, name } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let rec = operation_record("operator_token_revoked", name.clone());
            change(&dd, &cfg, &store, op, rec, async {
                if rows::revoke(&store, &name).await? {
                    Ok(())
                } else {
                    bail!("no live token named {name} (see `sekisho operator-token list`)")
                }
            })
            .await?;
            println!("Operator token {name} revoked.");
            Ok(0)
        }
    }
}
