//! Facility administration (issue 13, R-LOG-3): suspending, resuming and closing a facility
//! in one store transaction together with the CRL that closing changes. Running gateways see
//! the change on their next poll (within a second): a suspended or closed facility's
//! terminals are refused and their open connections closed, its people's sessions are ended
//! and they cannot sign in.

use anyhow::{Context, Result};
use sekisho_ca::{Authority, RevocationReason};

use crate::config::CaConfig;
use crate::terminals::resign_crl;
use sekisho_store::Store;
use sekisho_store::facilities::{self as rows, Change, Changed};

/// The longest reason kept with a status change.
pub const MAX_NOTE: usize = 500;

/// Applies `change` to `facility` with the reason `note`. Closing revokes the facility's
/// terminals (cessation of operation) and re-signs the CRL, so it needs the CA.
pub async fn change_status(
    store: &Store,
    ca: Option<(&Authority, &CaConfig)>,
    facility: &str,
    change: Change,
    note: &str,
) -> Result<Changed> {
    let note = check_note(note)?;
    let mut tx = store.begin_write().await?;
    let changed = rows::set_status(
        &mut tx,
        facility,
        change,
        note,
        RevocationReason::CessationOfOperation.as_str(),
    )
    .await?;
    if !changed.terminals_revoked.is_empty() {
        let (ca, ca_cfg) = ca.context("closing a facility needs the CA to sign a new CRL")?;
        resign_crl(&mut tx, ca, ca_cfg).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// The record of `change` to `facility` with its reason (event `registry`).
pub fn record(facility: &str, change: Change, note: &str) -> sekisho_audit::AuditRecord {
    sekisho_audit::AuditRecord {
        event: sekisho_audit::Event::Registry,
        facility: Some(facility.to_string()),
        decision: sekisho_audit::Decision::Permit,
        reason: match change {
            Change::Suspend => "facility_suspended",
            Change::Resume => "facility_resumed",
            Change::Close => "facility_closed",
        }
        .into(),
        detail: Some(note.to_string()),
        ..Default::default()
    }
}

/// A reason given for a change: required (the network's rules ask for a report of every
/// urgent suspension), one line, bounded.
pub fn check_note(note: &str) -> Result<&str> {
    let note = note.trim();
    anyhow::ensure!(
        !note.is_empty(),
        "give the reason (--reason): it goes on record with the change"
    );
    anyhow::ensure!(
        note.chars().count() <= MAX_NOTE && !note.chars().any(char::is_control),
        "the reason must be one line of at most {MAX_NOTE} characters"
    );
    Ok(note)
}
