//! Changes made at the command line go into the tamper-evident audit log like the gateway's
//! own decisions, as the act of a named person: the operator (`--operator`, or
//! `SEKISHO_OPERATOR`) and the operating-system account that ran the command. The record is
//! written before the change is made; a change whose record cannot be written is not made, and
//! one that fails after its record is recorded again as not made.

use std::future::Future;

use anyhow::{Context, Result, bail};

use crate::config::{Config, DataDir};
use crate::metrics::Metrics;
use crate::oversight::Officer;
use crate::policy::Authorizer;
use sekisho_audit::{AuditLog, AuditRecord};
use sekisho_store::Store;

/// The person acting at the command line, as given by `--operator` or `SEKISHO_OPERATOR`.
#[derive(Clone, Debug)]
pub struct Operator(Option<String>);

impl Operator {
    pub fn new(name: Option<String>) -> Operator {
        Operator(name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()))
    }

    /// The name, checked: required for anything that changes the network's records.
    pub fn name(&self) -> Result<&str> {
        let Some(n) = self.0.as_deref() else {
            bail!(
                "name the person making this change: --operator NAME (or SEKISHO_OPERATOR); it goes into the audit log with the operating-system account"
            );
        };
        if n.chars().count() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            bail!("--operator must be up to 64 letters, digits, '.', '_', '-' or '@'");
        }
        Ok(n)
    }

    /// `name (os:account)`, as records name the actor.
    pub fn actor(&self) -> Result<String> {
        Ok(format!("{} ({})", self.name()?, actor()))
    }
}

/// Records `rec` as `op`'s act, then makes `change`. Nothing is changed when the record
/// cannot be written; a change that fails after its record is recorded as not made.
pub(super) async fn change<T, Fut>(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    op: &Operator,
    mut rec: AuditRecord,
    change: Fut,
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    rec.actor = Some(op.actor()?);
    if rec.request_id.is_empty() {
        rec.request_id = sekisho_protocol::new_request_id();
    }
    let log = crate::serve::open_audit(dd, cfg, store, &Metrics::new()).await?;
    let out = crate::oversight::recorded(&log, rec, change).await;
    log.shutdown().await;
    out.map_err(|e| anyhow::anyhow!("{}", e.detail))
}

/// The account running the command (`sudo`'s caller before the account it became), as
/// `os:NAME`; `None` when the environment names none.
pub(super) fn os_user() -> Option<String> {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .map(|u| format!("os:{}", crate::headers::escape_text(&u, 64)))
}

/// [`os_user`] for the store's `changed_by` columns and patient records: `os:unknown` when the
/// environment names no account.
pub(crate) fn actor() -> String {
    os_user().unwrap_or_else(|| "os:unknown".into())
}

/// The person named by `--operator` (or `SEKISHO_OPERATOR`) for an officer's act at the
/// command line: a registered, active user, with the audit log to record the act in and the
/// policy set that decides whether they may (`crate::oversight`, as in the console).
pub(super) async fn officer(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    op: &Operator,
) -> Result<(Officer, AuditLog, Authorizer)> {
    let operator = op.name()?;
    let Some(u) = sekisho_store::users::get(store, operator).await? else {
        bail!(
            "--operator {operator:?} is not a registered user (SEKISHO_OPERATOR names the person acting)"
        );
    };
    if u.suspended {
        bail!("--operator {operator:?} is suspended");
    }
    let policy = Authorizer::load(
        dd.root.join(&cfg.policy.dir),
        cfg.policy.require_patient_card,
        cfg.policy.card_presence_seconds,
    )?;
    let log = crate::serve::open_audit(dd, cfg, store, &Metrics::new())
        .await
        .context("cannot open the audit log")?;
    Ok((Officer::operator(&u, actor()), log, policy))
}

/// A record of an act at the command line, before its fields are filled in.
pub(super) fn cli_record() -> AuditRecord {
    AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        ..Default::default()
    }
}
