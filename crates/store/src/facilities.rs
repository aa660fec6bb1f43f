//! The facility registry (issue 13, R-LOG-3): the network's member facilities and their
//! status. Terminals and people name their facility by id. A facility is registered the first
//! time a terminal or a person names it (named by its id until the secretariat says more);
//! nothing new is issued to a suspended or closed one. Suspending or closing ends the
//! facility's sessions in the same transaction; closing also revokes its terminals (the
//! caller re-signs the CRL in that transaction).

use anyhow::{Result, bail};
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation, now};
use crate::terminals::{self, TerminalStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacilityStatus {
    Active,
    Suspended,
    /// Final: the facility has left the network.
    Closed,
}

impl FacilityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FacilityStatus::Active => "active",
            FacilityStatus::Suspended => "suspended",
            FacilityStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Result<FacilityStatus> {
        Ok(match s {
            "active" => FacilityStatus::Active,
            "suspended" => FacilityStatus::Suspended,
            "closed" => FacilityStatus::Closed,
            other => bail!("unknown facility status {other:?} in the store"),
        })
    }
}

/// The kind a facility registered by a terminal or a person naming it has until it is added
/// with `facility add`.
pub const UNSPECIFIED: &str = "unspecified";

#[derive(Clone, Debug)]
pub struct FacilityRow {
    pub facility: String,
    pub name: String,
    pub kind: String,
    pub contact: Option<String>,
    pub status: FacilityStatus,
    /// Why it was last suspended, resumed or closed.
    pub note: Option<String>,
    pub updated_at: i64,
    /// Terminals not revoked, and people.
    pub terminals: i64,
    pub people: i64,
}

pub struct NewFacility<'a> {
    pub facility: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub contact: Option<&'a str>,
}

/// Registers a facility. One registered only because a terminal or person named it (kind
/// `unspecified`) gets the name, kind and contact given; any other existing id is refused.
pub async fn add(store: &Store, f: &NewFacility<'_>) -> Result<()> {
    if f.kind == UNSPECIFIED {
        bail!("give the facility's kind (hospital, clinic, pharmacy, …)");
    }
    let mut tx = store.begin_write().await?;
    let t = now();
    match get(&mut tx, f.facility).await? {
        Some(existing) if existing.kind != UNSPECIFIED => {
            bail!(
                "facility {} is already registered ({}); see `sekisho facility list`",
                f.facility,
                existing.name
            )
        }
        Some(_) => {
            sqlx::query(
                "UPDATE facilities SET name = $1, kind = $2, contact = $3, updated_at = $4
                 WHERE facility = $5",
            )
            .bind(f.name)
            .bind(f.kind)
            .bind(f.contact)
            .bind(t)
            .bind(f.facility)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO facilities (facility, name, kind, contact, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'active', $5, $5)",
            )
            .bind(f.facility)
            .bind(f.name)
            .bind(f.kind)
            .bind(f.contact)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// For issuing to a facility (a terminal certificate, an enrollment code, a person): registers
/// it if no one has named it yet, and refuses a suspended or closed one.
pub async fn ensure_open(tx: &mut Transaction<'_, Any>, facility: &str) -> Result<()> {
    match get(tx, facility).await? {
        Some(f) if f.status == FacilityStatus::Active => Ok(()),
        Some(f) => bail!(
            "facility {facility} is {}: nothing new is issued to it (see `sekisho facility list`)",
            f.status.as_str()
        ),
        None => {
            let t = now();
            sqlx::query(
                "INSERT INTO facilities (facility, name, kind, status, created_at, updated_at)
                 VALUES ($1, $1, $2, 'active', $3, $3)",
            )
            .bind(facility)
            .bind(UNSPECIFIED)
            .bind(t)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    }
}

const SELECT: &str = "SELECT f.facility, f.name, f.kind, f.contact, f.status, f.note, f.updated_at,
        (SELECT COUNT(*) FROM terminals t WHERE t.facility = f.facility AND t.status <> 'revoked') AS terminals,
        (SELECT COUNT(*) FROM users u WHERE u.facility = f.facility) AS people
     FROM facilities f";

fn from_row(r: &sqlx::any::AnyRow) -> Result<FacilityRow> {
    Ok(FacilityRow {
        facility: r.try_get("facility")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        contact: r.try_get("contact")?,
        status: FacilityStatus::parse(&r.try_get::<String, _>("status")?)?,
        note: r.try_get("note")?,
        updated_at: r.try_get("updated_at")?,
        terminals: r.try_get("terminals")?,
        people: r.try_get("people")?,
    })
}

pub async fn get(tx: &mut Transaction<'_, Any>, facility: &str) -> Result<Option<FacilityRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE f.facility = $1"
    )))
    .bind(facility)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<FacilityRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY f.facility")))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Suspend,
    Resume,
    Close,
}

/// What a status change did.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    pub sessions_ended: u64,
    /// Terminals revoked (closing).
    pub terminals_revoked: Vec<String>,
}

/// Suspends, resumes or closes `facility` inside `tx`. Suspending and closing end the
/// sessions on its terminals and of its people; closing revokes its terminals'
/// certificates (`revocation_reason`), so the caller must re-sign the CRL in `tx`.
pub async fn set_status(
    tx: &mut Transaction<'_, Any>,
    facility: &str,
    change: Change,
    note: &str,
    revocation_reason: &str,
) -> Result<Changed> {
    let Some(f) = get(tx, facility).await? else {
        bail!("no facility {facility:?} is registered (see `sekisho facility list`)");
    };
    let to = match (change, f.status) {
        (_, FacilityStatus::Closed) => bail!("facility {facility} is closed"),
        (Change::Suspend, FacilityStatus::Suspended) => {
            bail!("facility {facility} is already suspended")
        }
        (Change::Resume, FacilityStatus::Active) => bail!("facility {facility} is not suspended"),
        (Change::Suspend, _) => FacilityStatus::Suspended,
        (Change::Resume, _) => FacilityStatus::Active,
        (Change::Close, _) => FacilityStatus::Closed,
    };
    sqlx::query(
        "UPDATE facilities SET status = $1, note = $2, updated_at = $3 WHERE facility = $4",
    )
    .bind(to.as_str())
    .bind(note)
    .bind(now())
    .bind(facility)
    .execute(&mut **tx)
    .await?;
    let mut changed = Changed::default();
    if to != FacilityStatus::Active {
        let reason = format!("facility_{}", to.as_str());
        let terms: Vec<(String, String)> =
            sqlx::query_as("SELECT terminal, status FROM terminals WHERE facility = $1")
                .bind(facility)
                .fetch_all(&mut **tx)
                .await?;
        for (terminal, status) in &terms {
            changed.sessions_ended +=
                crate::sessions::end_for_terminal(tx, terminal, &reason).await?;
            if to == FacilityStatus::Closed && status != TerminalStatus::Revoked.as_str() {
                terminals::set_status(
                    tx,
                    terminal,
                    TerminalStatus::Revoked,
                    Some(revocation_reason),
                )
                .await?;
                changed.terminals_revoked.push(terminal.clone());
            }
        }
        let people: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM users WHERE facility = $1")
                .bind(facility)
                .fetch_all(&mut **tx)
                .await?;
        for user in &people {
            changed.sessions_ended += crate::sessions::end_for_user(tx, user, &reason).await?;
        }
    }
    bump_generation(tx).await?;
    Ok(changed)
}
