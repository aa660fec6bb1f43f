//! `sekisho keys list|rotate`: the gateway's own signing keys — the assertion key (ES256, what
//! upstreams check `Sekisho-Assertion` with, published as the JWKS) and the audit checkpoint
//! key (Ed25519, what `audit verify` and witnesses check checkpoints with). A rotation is an
//! operation on record, made before the files change; the old public key is kept (retired),
//! so assertions signed just before and every checkpoint already in the log still verify.
//! Running gateways sign with the new key from their next start (`docs/operations.md`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use sekisho_audit::{Decision, Event};

use super::admin_audit::{Operator, change, cli_record};
use super::data_dir::open;
use crate::assertion;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// The keys in use and the retired ones still trusted.
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// A new key in place of the current one; the old one is kept as retired.
    Rotate {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum)]
        key: Which,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The assertion key (ES256); the JWKS keeps the old key for a week.
    Assertion,
    /// The audit checkpoint key (Ed25519); `audit verify` keeps using the old verifier key.
    Checkpoint,
}

pub(super) async fn run(cmd: KeysCmd, op: &Operator) -> Result<i32> {
    match cmd {
        KeysCmd::List { data_dir } => {
            let (dd, cfg, _) = open(&data_dir).await?;
            let jwks: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dd.jwks()).unwrap_or_default())
                    .unwrap_or_default();
            println!("assertion key (ES256, {}):", dd.assertion_key().display());
            for (i, k) in jwks["keys"].as_array().into_iter().flatten().enumerate() {
                let state = if i == 0 {
                    "in use"
                } else {
                    "retired, published"
                };
                println!("  kid {}  {state}", k["kid"].as_str().unwrap_or("?"));
            }
            let published: Vec<&str> = jwks["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["kid"].as_str())
                .collect();
            for k in assertion::retired(&dd.assertion_key())? {
                let kid = k["kid"].as_str().unwrap_or("?");
                if !published.contains(&kid) {
                    println!("  kid {kid}  retired, no longer published");
                }
            }
            let cp = sekisho_audit::CheckpointKey::load_or_create(
                &dd.audit_dir(),
                &crate::serve::audit_origin(&cfg),
            )?;
            println!("audit checkpoint key (Ed25519):");
            println!("  {}  in use", cp.verifier_key());
            for k in sekisho_audit::checkpoint::verifier_keys(&dd.audit_dir())?.split_whitespace() {
                if k != cp.verifier_key() {
                    println!("  {k}  trusted (retired, or another replica's)");
                }
            }
            Ok(0)
        }
        KeysCmd::Rotate { data_dir, key } => {
            let (dd, cfg, store) = open(&data_dir).await?;
            let (action, what) = match key {
                Which::Assertion => ("assertion_key_rotated", "the assertion key"),
                Which::Checkpoint => ("checkpoint_key_rotated", "the audit checkpoint key"),
            };
            let rec = sekisho_audit::AuditRecord {
                event: Event::Operation,
                action: Some(action.into()),
                decision: Decision::Permit,
                reason: "ok".into(),
                detail: Some(format!("{what} replaced; the old one is kept as retired")),
                ..cli_record()
            };
            let origin = crate::serve::audit_origin(&cfg);
            let (old, new) = change(&dd, &cfg, &store, op, rec, async {
                match key {
                    Which::Assertion => assertion::rotate(&dd.assertion_key()),
                    Which::Checkpoint => {
                        sekisho_audit::CheckpointKey::rotate(&dd.audit_dir(), &origin)
                    }
                }
            })
            .await?;
            println!("{what}: {old}");
            println!("     now: {new}");
            println!(
                "Restart every gateway to sign with it: on other replicas, copy {} first.",
                match key {
                    Which::Assertion => "assertion.key and assertion-retired.jwks",
                    Which::Checkpoint =>
                        "audit/checkpoint.key, audit/checkpoint.pub and audit/checkpoint.retired",
                }
            );
            Ok(0)
        }
    }
}
