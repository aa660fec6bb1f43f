//! The patient's permission in the store (R-PAT-2): patient cards issued by Sekisho's
//! patient-card CA, the challenges a card signs, and the consent windows a card (or, where a
//! deployment allows it, staff attestation) opens for one user and one patient. Also the
//! assistants' entries (R-ROLE-2), so that a confirmation is decided on who really entered it.

use anyhow::{Result, bail};
use sqlx::Row;

use super::{Store, now};

/// How a consent window was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The patient's card signed the gateway's challenge.
    PatientCard,
    /// The card's id was read and a signed-in staff member attested the patient's presence
    /// (lower assurance; only when `policy.allow_attested_consent` is on).
    StaffAttested,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::PatientCard => "patient_card",
            Basis::StaffAttested => "staff_attested",
        }
    }
    fn parse(s: &str) -> Option<Basis> {
        match s {
            "patient_card" => Some(Basis::PatientCard),
            "staff_attested" => Some(Basis::StaffAttested),
            _ => None,
        }
    }
}

/// The most recent open window for a user and patient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub window_id: String,
    pub basis: Basis,
    pub opened_at: i64,
    pub expires_at: i64,
}

#[derive(Clone, Debug)]
pub struct PatientCardRow {
    pub serial: String,
    pub patient_id: String,
    pub status: String,
    pub issued_at: i64,
    pub not_after: i64,
    pub issued_by: String,
    pub revoked_at: Option<i64>,
}

pub async fn insert_card(
    store: &Store,
    serial: &str,
    patient: &str,
    not_after: i64,
    by: &str,
) -> Result<()> {
    let mut tx = store.begin_write().await?;
    let exists = sqlx::query("SELECT 1 FROM patients WHERE patient_id = $1")
        .bind(patient)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        bail!("no patient {patient:?} (see `sekisho patient list`)");
    }
    sqlx::query(
        "INSERT INTO patient_cards (serial, patient_id, status, issued_at, not_after, issued_by)
         VALUES ($1, $2, 'active', $3, $4, $5)",
    )
    .bind(serial)
    .bind(patient)
    .bind(now())
    .bind(not_after)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The card with this serial, if Sekisho issued it.
pub async fn card(store: &Store, serial: &str) -> Result<Option<PatientCardRow>> {
    let row = sqlx::query(
        "SELECT serial, patient_id, status, issued_at, not_after, issued_by, revoked_at
         FROM patient_cards WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| card_row(&r)).transpose()
}

pub async fn cards(store: &Store, patient: Option<&str>) -> Result<Vec<PatientCardRow>> {
    let rows = sqlx::query(
        "SELECT serial, patient_id, status, issued_at, not_after, issued_by, revoked_at
         FROM patient_cards WHERE ($1 = '' OR patient_id = $1) ORDER BY patient_id, issued_at",
    )
    .bind(patient.unwrap_or(""))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(card_row).collect()
}

fn card_row(r: &sqlx::any::AnyRow) -> Result<PatientCardRow> {
    Ok(PatientCardRow {
        serial: r.try_get("serial")?,
        patient_id: r.try_get("patient_id")?,
        status: r.try_get("status")?,
        issued_at: r.try_get("issued_at")?,
        not_after: r.try_get("not_after")?,
        issued_by: r.try_get("issued_by")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Revokes a card and closes the windows it opened; false if it was not active.
pub async fn revoke_card(store: &Store, serial: &str, by: &str) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let t = now();
    let n = sqlx::query(
        "UPDATE patient_cards SET status = 'revoked', revoked_at = $1, revoked_by = $2
         WHERE serial = $3 AND status = 'active'",
    )
    .bind(t)
    .bind(by)
    .bind(serial)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE consent_windows SET closed_at = $1 WHERE card_serial = $2 AND closed_at IS NULL",
    )
    .bind(t)
    .bind(serial)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn insert_challenge(
    store: &Store,
    nonce_hash: &str,
    session_id: &str,
    expires_at: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM consent_challenges WHERE expires_at < $1")
        .bind(now() - 3600)
        .execute(store.pool())
        .await?;
    sqlx::query(
        "INSERT INTO consent_challenges (nonce_hash, session_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(nonce_hash)
    .bind(session_id)
    .bind(expires_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Uses up the challenge if it was issued to this session and has not expired; a replay, a
/// challenge of another session or an expired one gives false.
pub async fn consume_challenge(store: &Store, nonce_hash: &str, session_id: &str) -> Result<bool> {
    let n = sqlx::query(
        "DELETE FROM consent_challenges WHERE nonce_hash = $1 AND session_id = $2 AND expires_at >= $3",
    )
    .bind(nonce_hash)
    .bind(session_id)
    .bind(now())
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub struct NewWindow<'a> {
    pub window_id: &'a str,
    pub user_id: &'a str,
    pub patient_id: &'a str,
    pub terminal: &'a str,
    pub basis: Basis,
    pub card_serial: Option<&'a str>,
    pub expires_at: i64,
}

pub async fn open_window(store: &Store, w: &NewWindow<'_>) -> Result<()> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO consent_windows
           (window_id, user_id, patient_id, terminal, basis, card_serial, opened_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(w.window_id)
    .bind(w.user_id)
    .bind(w.patient_id)
    .bind(w.terminal)
    .bind(w.basis.as_str())
    .bind(w.card_serial)
    .bind(now())
    .bind(w.expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest open window for this user and patient, card-opened ones first.
pub async fn active_window(store: &Store, user: &str, patient: &str) -> Result<Option<Window>> {
    let row = sqlx::query(
        "SELECT window_id, basis, opened_at, expires_at FROM consent_windows
         WHERE user_id = $1 AND patient_id = $2 AND expires_at > $3 AND closed_at IS NULL
         ORDER BY CASE basis WHEN 'patient_card' THEN 0 ELSE 1 END, opened_at DESC LIMIT 1",
    )
    .bind(user)
    .bind(patient)
    .bind(now())
    .fetch_optional(store.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let basis: String = r.try_get("basis")?;
    let Some(basis) = Basis::parse(&basis) else {
        bail!("consent window with unknown basis {basis:?}");
    };
    Ok(Some(Window {
        window_id: r.try_get("window_id")?,
        basis,
        opened_at: r.try_get("opened_at")?,
        expires_at: r.try_get("expires_at")?,
    }))
}

/// Closes every open window for a patient (`patient withdraw`: a later consent does not revive
/// windows opened before the withdrawal).
pub async fn close_windows_for_patient(store: &Store, patient: &str) -> Result<u64> {
    let mut tx = store.begin_write().await?;
    let n = sqlx::query(
        "UPDATE consent_windows SET closed_at = $1 WHERE patient_id = $2 AND closed_at IS NULL",
    )
    .bind(now())
    .bind(patient)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n)
}

/// A consent window that is open now, with whose and for which patient it is.
#[derive(Clone, Debug)]
pub struct OpenWindow {
    pub user_id: String,
    pub patient_id: String,
    pub window: Window,
}

/// The windows open now: every patient's, or one patient's.
pub async fn open_windows(store: &Store, patient: Option<&str>) -> Result<Vec<OpenWindow>> {
    // Two statements, not `($2 IS NULL OR patient_id = $2)`: with that, neither database uses
    // the patient's index, and one patient's refresh read every window ever opened.
    const COLUMNS: &str = "SELECT window_id, user_id, patient_id, basis, opened_at, expires_at \
         FROM consent_windows WHERE expires_at > $1 AND closed_at IS NULL";
    let rows = match patient {
        Some(p) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} AND patient_id = $2"
            )))
            .bind(now())
            .bind(p)
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query(COLUMNS)
                .bind(now())
                .fetch_all(store.pool())
                .await?
        }
    };
    rows.iter()
        .map(|r| {
            let basis: String = r.try_get("basis")?;
            let Some(basis) = Basis::parse(&basis) else {
                bail!("consent window with unknown basis {basis:?}");
            };
            Ok(OpenWindow {
                user_id: r.try_get("user_id")?,
                patient_id: r.try_get("patient_id")?,
                window: Window {
                    window_id: r.try_get("window_id")?,
                    basis,
                    opened_at: r.try_get("opened_at")?,
                    expires_at: r.try_get("expires_at")?,
                },
            })
        })
        .collect()
}

/// An assistant's entry as the gateway recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub entry_id: String,
    pub patient_id: String,
    pub author: String,
    pub facility: String,
}

pub async fn insert_entry(store: &Store, e: &Entry, request_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO entries (entry_id, patient_id, author, facility, request_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&e.entry_id)
    .bind(&e.patient_id)
    .bind(&e.author)
    .bind(&e.facility)
    .bind(request_id)
    .bind(now())
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn entry(store: &Store, entry_id: &str) -> Result<Option<Entry>> {
    let row = sqlx::query(
        "SELECT entry_id, patient_id, author, facility FROM entries WHERE entry_id = $1",
    )
    .bind(entry_id)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(Entry {
            entry_id: r.try_get("entry_id")?,
            patient_id: r.try_get("patient_id")?,
            author: r.try_get("author")?,
            facility: r.try_get("facility")?,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patients::{self, NewPatient};
    use crate::testdb::TestDb;

    async fn with_patient(store: &Store) {
        let mut tx = store.begin_write().await.unwrap();
        let p = NewPatient {
            patient_id: "P1".into(),
            name: "山田 太郎".into(),
            consent: Some("granted".into()),
            ..Default::default()
        };
        patients::insert(&mut tx, &p, "test").await.unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn windows_cards_challenges_and_entries_on_both_databases() {
        for db in TestDb::both().await {
            let store = db.store.clone();
            with_patient(&store).await;
            // Cards: only for known patients; revocation closes the card's windows.
            assert!(
                insert_card(&store, "AA", "nobody", now() + 100, "t")
                    .await
                    .is_err()
            );
            insert_card(&store, "AA", "P1", now() + 100, "t")
                .await
                .unwrap();
            assert_eq!(card(&store, "AA").await.unwrap().unwrap().status, "active");
            assert_eq!(cards(&store, Some("P1")).await.unwrap().len(), 1);
            assert_eq!(cards(&store, None).await.unwrap().len(), 1);

            // Challenges: single use, bound to the session.
            insert_challenge(&store, "h1", "s1", now() + 60)
                .await
                .unwrap();
            assert!(!consume_challenge(&store, "h1", "s2").await.unwrap());
            assert!(consume_challenge(&store, "h1", "s1").await.unwrap());
            assert!(!consume_challenge(&store, "h1", "s1").await.unwrap());
            insert_challenge(&store, "h2", "s1", now() - 1)
                .await
                .unwrap();
            assert!(!consume_challenge(&store, "h2", "s1").await.unwrap());

            // Windows: per user and patient, expire, card-opened first.
            assert_eq!(active_window(&store, "u1", "P1").await.unwrap(), None);
            let w = |id: &'static str, basis, serial, expires_at| NewWindow {
                window_id: id,
                user_id: "u1",
                patient_id: "P1",
                terminal: "t1",
                basis,
                card_serial: serial,
                expires_at,
            };
            open_window(&store, &w("w0", Basis::PatientCard, Some("AA"), now() - 1))
                .await
                .unwrap();
            assert_eq!(active_window(&store, "u1", "P1").await.unwrap(), None);
            open_window(&store, &w("w1", Basis::StaffAttested, None, now() + 60))
                .await
                .unwrap();
            open_window(&store, &w("w2", Basis::PatientCard, Some("AA"), now() + 60))
                .await
                .unwrap();
            let a = active_window(&store, "u1", "P1").await.unwrap().unwrap();
            assert_eq!((a.window_id.as_str(), a.basis), ("w2", Basis::PatientCard));
            assert_eq!(active_window(&store, "u2", "P1").await.unwrap(), None);
            assert!(revoke_card(&store, "AA", "t").await.unwrap());
            assert!(!revoke_card(&store, "AA", "t").await.unwrap());
            let a = active_window(&store, "u1", "P1").await.unwrap().unwrap();
            assert_eq!(a.basis, Basis::StaffAttested);
            assert_eq!(close_windows_for_patient(&store, "P1").await.unwrap(), 1);
            assert_eq!(active_window(&store, "u1", "P1").await.unwrap(), None);

            // Entries.
            let e = Entry {
                entry_id: "e1".into(),
                patient_id: "P1".into(),
                author: "nurse1".into(),
                facility: "clinic-a".into(),
            };
            insert_entry(&store, &e, "r1").await.unwrap();
            assert_eq!(entry(&store, "e1").await.unwrap(), Some(e.clone()));
            assert!(insert_entry(&store, &e, "r2").await.is_err());
            assert_eq!(entry(&store, "e2").await.unwrap(), None);
        }
    }
}
