//! `sekisho backup` and `sekisho restore` (R-OPS-2): an encrypted backup of a data dir taken
//! while the gateway serves, and a restore into a new data dir. Both are operation records: the
//! backup in the log it backs up (before it starts, and what it made once made), the restore in
//! the restored log.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::admin_audit::{Operator, cli_record};
use super::data_dir::open;
use crate::backup::{self, BackupOptions, Secret};
use sekisho_audit::{AuditRecord, Decision, Event};

/// The key of a backup: a key file, or a passphrase (from a file or an environment variable).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// A key file made by `sekisho backup keygen` (keep it apart from the backups).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A file whose first line is the passphrase (Argon2id makes the key).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The name of an environment variable that holds the passphrase.
    #[arg(long)]
    pub passphrase_env: Option<String>,
}

impl KeyArgs {
    fn secret(&self) -> Result<Secret> {
        if let Some(k) = &self.key {
            return Secret::from_key_file(k);
        }
        if let Some(f) = &self.passphrase_file {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read the passphrase file {}", f.display()))?,
            );
            let line = text.lines().next().unwrap_or_default();
            return Secret::passphrase(line.to_string());
        }
        if let Some(v) = &self.passphrase_env {
            let p = std::env::var(v)
                .with_context(|| format!("the environment variable {v} is not set"))?;
            return Secret::passphrase(p);
        }
        bail!("give --key FILE, --passphrase-file FILE or --passphrase-env NAME")
    }
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub cmd: Option<BackupCmd>,
    #[arg(long, env = "SEKISHO_DATA_DIR", required = true)]
    pub data_dir: Option<PathBuf>,
    /// The backup file to make (new; outside the data dir). Written as a temporary file beside
    /// it, encrypted, and renamed when complete.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub key: Option<KeyArgs>,
    /// Where the SQLite snapshot is made while it is written into the backup (a private
    /// directory, removed at the end); default: the data dir.
    #[arg(long)]
    pub temp_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Make a new backup key file (32 random bytes, 0600). Keep it apart from the backups.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The new data dir: absent or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub(super) async fn backup(a: BackupArgs, op: &Operator) -> Result<i32> {
    if let Some(BackupCmd::Keygen { out }) = a.cmd {
        let id = backup::keygen(&out)?;
        println!("Backup key {id} written to {} (0600).", out.display());
        println!(
            "Keep it apart from the backups (another machine, a safe): with both, anyone reads everything in them; without it, nothing can be restored."
        );
        return Ok(0);
    }
    let (Some(data_dir), Some(out), Some(key)) = (a.data_dir, a.out, a.key) else {
        bail!("give --data-dir, --out and a key (--key FILE or a passphrase)");
    };
    let actor = op.actor()?;
    let secret = key.secret()?;
    let (dd, cfg, store) = open(&data_dir).await?;
    backup::check_out(&dd, &out)?;
    let log = crate::serve::open_audit(&dd, &cfg, &store, &crate::metrics::Metrics::new())
        .await
        .context("cannot open the audit log: a backup is an operation record and is not made without one")?;
    let started = AuditRecord {
        event: Event::Operation,
        action: Some("backup".into()),
        decision: Decision::Permit,
        reason: "backup_started".into(),
        detail: Some(crate::headers::escape_text(
            &format!("backup to {}", out.display()),
            300,
        )),
        actor: Some(actor.clone()),
        ..cli_record()
    };
    let opts = BackupOptions {
        out: &out,
        secret: &secret,
        temp_dir: a.temp_dir.as_deref(),
        made_by: actor.clone(),
    };
    let made = crate::oversight::recorded(&log, started, async {
        let pending = backup::make(&dd, &cfg, &store, &opts).await?;
        // What was made, on record before the file is put in place: a backup whose record
        // cannot be written is not kept.
        log.append(made_record(&pending.made, &secret, &actor))
            .await
            .map_err(|e| anyhow::anyhow!("the backup could not be recorded: {e}"))?;
        pending.install()
    })
    .await;
    log.shutdown().await;
    store.close().await;
    let made = made.map_err(|e| anyhow::anyhow!("no backup was made: {}", e.detail))?;
    let m = &made.manifest;
    println!("Backup written to {} (0600)", out.display());
    println!("  sha256:          {}", made.sha256);
    println!("  store:           {}", m.store);
    println!(
        "  audit log:       tree size {} at the snapshot (root {})",
        m.audit_tree_size, m.audit_root
    );
    println!(
        "  contents:        {} files, {} directories, {} bytes; {} bytes compressed and encrypted",
        made.files, made.dirs, made.bytes, made.size
    );
    println!(
        "  took:            {:.2} s ({:.2} s for the database snapshot)",
        made.took.as_secs_f64(),
        made.snapshot_took.as_secs_f64()
    );
    if let Some(id) = secret.key_id() {
        println!("  key:             {id}");
    }
    for f in &m.outside {
        println!(
            "  NOT IN IT:       {f} (named in sekisho.toml, outside the data dir: back it up yourself)"
        );
    }
    if m.store == "postgres" {
        println!();
        println!(
            "The PostgreSQL database is NOT in this backup: only the files of the data dir are."
        );
        println!(
            "Back the database up with PostgreSQL's tools (pg_basebackup with WAL archiving, or"
        );
        println!("pg_dump --format=custom); see docs/operations.md.");
    }
    Ok(0)
}

/// The record of a backup made: by its SHA-256, the audit log's size and root at the snapshot,
/// what it holds and which key opens it (its id, never the key).
fn made_record(made: &backup::Made, secret: &Secret, actor: &str) -> AuditRecord {
    let m = &made.manifest;
    let key = match secret.key_id() {
        Some(id) => format!("key file {id}"),
        None => "passphrase".into(),
    };
    AuditRecord {
        event: Event::Operation,
        action: Some("backup".into()),
        actor: Some(actor.to_string()),
        decision: Decision::Permit,
        reason: "backup_made".into(),
        detail: Some(crate::headers::escape_text(
            &format!(
                "backup sha256:{} of {} at audit tree size {} (root {}): {} files, {} bytes; {key}",
                made.sha256, m.store, m.audit_tree_size, m.audit_root, made.files, made.size
            ),
            600,
        )),
        ..cli_record()
    }
}

pub(super) async fn restore(a: RestoreArgs, op: &Operator) -> Result<i32> {
    let actor = op.actor()?;
    let secret = a.key.secret()?;
    let r = backup::restore(&a.input, &a.data_dir, &secret, &actor)
        .await
        .with_context(|| format!("nothing was restored into {}", a.data_dir.display()))?;
    let m = &r.manifest;
    println!(
        "Restored {} into {}",
        a.input.display(),
        a.data_dir.display()
    );
    println!("  backup sha256:   {}", r.sha256);
    println!(
        "  made:            {} by {} on {} ({})",
        m.created, m.made_by, m.node, m.hostname
    );
    println!(
        "  contents:        {} files, {} directories, {} bytes",
        r.files, r.dirs, r.bytes
    );
    println!(
        "  audit log:       tree size {} at the backup (root {})",
        m.audit_tree_size, m.audit_root
    );
    if let (Some(idx), Some(v)) = (r.record_index, &r.verify) {
        println!("  this restore:    on record as record {idx} of the restored log");
        println!(
            "  audit verify:    OK, {} records, {} checkpoints",
            v.records, v.checkpoints
        );
    }
    for w in &r.warnings {
        println!("  warning:         {w}");
    }
    for f in &m.outside {
        println!("  not in it:       {f} (was outside the data dir: restore it yourself)");
    }
    if m.store == "postgres" {
        println!();
        println!("The PostgreSQL database was not in the backup and has not been touched.");
        println!(
            "Restore it with PostgreSQL's tools (docs/operations.md), point store.url at it, then run"
        );
        println!("  sekisho audit verify --data-dir {}", a.data_dir.display());
    } else {
        println!();
        println!("Check listen addresses and hostname in sekisho.toml for this machine, then");
        println!("  sekisho serve --data-dir {}", a.data_dir.display());
    }
    Ok(0)
}
