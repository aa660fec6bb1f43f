//! Terminal registry rows: facility, terminal, status, and the certificates issued to each.

use anyhow::{Result, bail};
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation, now};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalStatus {
    Active,
    Suspended,
    Revoked,
}

impl TerminalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminalStatus::Active => "active",
            TerminalStatus::Suspended => "suspended",
            TerminalStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Result<TerminalStatus> {
        Ok(match s {
            "active" => TerminalStatus::Active,
            "suspended" => TerminalStatus::Suspended,
            "revoked" => TerminalStatus::Revoked,
            other => bail!("unknown terminal status {other:?} in the store"),
        })
    }
}

#[derive(Clone, Debug)]
pub struct TerminalRow {
    pub terminal: String,
    pub facility: String,
    pub status: TerminalStatus,
    pub updated_at: i64,
    pub active_certs: i64,
    pub latest_not_after: Option<i64>,
}

/// One certificate as a running gateway needs to see it.
#[derive(Clone, Debug)]
pub struct CertState {
    pub serial: String,
    pub terminal: String,
    pub facility: String,
    pub status: TerminalStatus,
    pub cert_revoked: bool,
    /// The facility's status in the facility registry.
    pub facility_status: crate::facilities::FacilityStatus,
}

pub struct NewCert<'a> {
    pub serial: &'a str,
    pub not_before: i64,
    pub not_after: i64,
}

/// Registers a certificate for a terminal, creating the terminal on first issue. A terminal id
/// belongs to one facility for good, a revoked terminal is never revived under the same id,
/// and nothing is issued to a suspended or closed facility.
pub async fn add_certificate(
    tx: &mut Transaction<'_, Any>,
    facility: &str,
    terminal: &str,
    cert: &NewCert<'_>,
) -> Result<()> {
    let existing = get(tx, terminal).await?;
    ensure_can_issue(existing.as_ref(), facility, terminal)?;
    crate::facilities::ensure_open(tx, facility).await?;
    let t = now();
    if existing.is_none() {
        sqlx::query(
            "INSERT INTO terminals (terminal, facility, status, created_at, updated_at)
             VALUES ($1, $2, 'active', $3, $3)",
        )
        .bind(terminal)
        .bind(facility)
        .bind(t)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO certificates (serial, terminal, not_before, not_after, issued_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(cert.serial)
    .bind(terminal)
    .bind(cert.not_before)
    .bind(cert.not_after)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    bump_generation(tx).await
}

/// The issuance rule: a terminal id belongs to one facility for good, and a revoked terminal is
/// never revived under the same id.
pub fn ensure_can_issue(
    existing: Option<&(String, TerminalStatus)>,
    facility: &str,
    terminal: &str,
) -> Result<()> {
    match existing {
        Some((f, _)) if f != facility => {
            bail!("terminal {terminal} is registered to facility {f}, not {facility}")
        }
        Some((_, TerminalStatus::Revoked)) => {
            bail!(
                "terminal {terminal} was revoked; register the replacement under a new terminal id"
            )
        }
        _ => Ok(()),
    }
}

pub async fn get(
    tx: &mut Transaction<'_, Any>,
    terminal: &str,
) -> Result<Option<(String, TerminalStatus)>> {
    let row = sqlx::query("SELECT facility, status FROM terminals WHERE terminal = $1")
        .bind(terminal)
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        Some(r) => Ok(Some((
            r.try_get("facility")?,
            TerminalStatus::parse(&r.try_get::<String, _>("status")?)?,
        ))),
        None => Ok(None),
    }
}

/// Sets the terminal's status; on revocation its certificates are marked revoked too (the
/// caller re-signs the CRL in the same transaction).
pub async fn set_status(
    tx: &mut Transaction<'_, Any>,
    terminal: &str,
    status: TerminalStatus,
    reason: Option<&str>,
) -> Result<()> {
    let t = now();
    sqlx::query("UPDATE terminals SET status = $1, updated_at = $2 WHERE terminal = $3")
        .bind(status.as_str())
        .bind(t)
        .bind(terminal)
        .execute(&mut **tx)
        .await?;
    if status == TerminalStatus::Revoked {
        sqlx::query(
            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2
             WHERE terminal = $3 AND revoked_at IS NULL",
        )
        .bind(t)
        .bind(reason.unwrap_or("unspecified"))
        .bind(terminal)
        .execute(&mut **tx)
        .await?;
    }
    bump_generation(tx).await
}

pub async fn list(store: &Store) -> Result<Vec<TerminalRow>> {
    let rows = sqlx::query(
        "SELECT t.terminal, t.facility, t.status, t.updated_at,
                (SELECT COUNT(*) FROM certificates c
                  WHERE c.terminal = t.terminal AND c.revoked_at IS NULL AND c.not_after > $1) AS active_certs,
                (SELECT MAX(c.not_after) FROM certificates c WHERE c.terminal = t.terminal) AS latest_not_after
         FROM terminals t ORDER BY t.facility, t.terminal",
    )
    .bind(now())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TerminalRow {
                terminal: r.try_get("terminal")?,
                facility: r.try_get("facility")?,
                status: TerminalStatus::parse(&r.try_get::<String, _>("status")?)?,
                updated_at: r.try_get("updated_at")?,
                active_certs: r.try_get("active_certs")?,
                latest_not_after: r.try_get("latest_not_after")?,
            })
        })
        .collect()
}

/// Every certificate with its terminal's state: what a gateway checks each connection against.
pub async fn cert_states(store: &Store) -> Result<Vec<CertState>> {
    let rows = sqlx::query(
        "SELECT c.serial, c.terminal, t.facility, t.status, c.revoked_at, f.status AS facility_status
         FROM certificates c JOIN terminals t ON t.terminal = c.terminal
         LEFT JOIN facilities f ON f.facility = t.facility",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CertState {
                serial: r.try_get("serial")?,
                terminal: r.try_get("terminal")?,
                facility: r.try_get("facility")?,
                status: TerminalStatus::parse(&r.try_get::<String, _>("status")?)?,
                cert_revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                // Every facility a terminal names is registered (migration 19, `ensure_open`).
                facility_status: crate::facilities::FacilityStatus::parse(
                    r.try_get::<Option<String>, _>("facility_status")?
                        .as_deref()
                        .unwrap_or("active"),
                )?,
            })
        })
        .collect()
}

/// Revoked certificates for the CRL: (serial, revoked_at, reason).
pub async fn revoked(tx: &mut Transaction<'_, Any>) -> Result<Vec<(String, i64, String)>> {
    let rows = sqlx::query(
        "SELECT serial, revoked_at, revocation_reason FROM certificates
         WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
    )
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("serial")?,
                r.try_get("revoked_at")?,
                r.try_get::<Option<String>, _>("revocation_reason")?
                    .unwrap_or_else(|| "unspecified".into()),
            ))
        })
        .collect()
}
