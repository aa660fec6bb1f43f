//! Changes made at the command line go into the tamper-evident audit log like the gateway's
//! own decisions, as the act of the operating-system account that ran the command.

use anyhow::{Result, bail};

use crate::config::{Config, DataDir};
use crate::metrics::Metrics;
use sekisho_audit::AuditRecord;
use sekisho_store::Store;

/// Writes a registry change to the audit log, as the secretariat's act.
pub(super) async fn audit_admin(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    rec: AuditRecord,
) -> Result<()> {
    let metrics = Metrics::new();
    let log = crate::serve::open_audit(dd, cfg, store, &metrics).await?;
    let r = log.append(rec).await;
    log.shutdown().await;
    r.map(|_| ()).map_err(|e| {
        anyhow::anyhow!("the change was made but its audit record could not be written: {e}")
    })
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
pub(super) fn actor() -> String {
    os_user().unwrap_or_else(|| "os:unknown".into())
}

/// Checks that `operator` (`--operator`, or `SEKISHO_OPERATOR`) is a registered, active
/// security officer or secretariat member: the person an officer's act is recorded as.
pub(super) async fn officer(
    store: &Store,
    operator: &str,
) -> Result<sekisho_store::users::UserRow> {
    let Some(u) = sekisho_store::users::get(store, operator).await? else {
        bail!(
            "--operator {operator:?} is not a registered user (SEKISHO_OPERATOR names the person acting)"
        );
    };
    if u.suspended {
        bail!("--operator {operator:?} is suspended");
    }
    if !u
        .roles
        .iter()
        .any(|r| r == "security-officer" || r == "secretariat")
    {
        bail!("--operator {operator:?} is neither a security officer nor the secretariat");
    }
    Ok(u)
}
