//! Login challenges (single use, short-lived, bound to one terminal certificate) and sessions
//! (one person per terminal at a time).

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation, now};

pub async fn insert_challenge(
    store: &Store,
    nonce_hash: &str,
    terminal: &str,
    cert_serial: &str,
    expires_at: i64,
) -> Result<()> {
    // Old challenges are useless; clear them as we go so the table stays small.
    sqlx::query("DELETE FROM challenges WHERE expires_at < $1")
        .bind(now() - 3600)
        .execute(store.pool())
        .await?;
    sqlx::query("INSERT INTO challenges (nonce_hash, terminal, cert_serial, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(nonce_hash)
        .bind(terminal)
        .bind(cert_serial)
        .bind(expires_at)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Marks the challenge used if it exists, is unused, unexpired and was issued to this terminal
/// certificate; true if it was. A replay or a challenge of another terminal gets false.
pub async fn consume_challenge(
    tx: &mut Transaction<'_, Any>,
    nonce_hash: &str,
    terminal: &str,
    cert_serial: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE challenges SET used_at = $1
         WHERE nonce_hash = $2 AND terminal = $3 AND cert_serial = $4 AND used_at IS NULL AND expires_at >= $1",
    )
    .bind(now())
    .bind(nonce_hash)
    .bind(terminal)
    .bind(cert_serial)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

#[derive(Clone, Debug)]
pub struct SessionRow {
    pub session_id: String,
    pub terminal: String,
    pub user_id: String,
    pub method: String,
    pub qualification: Option<String>,
    pub absolute_expires_at: i64,
    /// The HPKI card (`issuer|serial`) an HPKI session was opened with.
    pub card: Option<String>,
}

/// Opens a session on a terminal, ending whatever session it had (one person per terminal).
pub async fn open(tx: &mut Transaction<'_, Any>, s: &SessionRow) -> Result<()> {
    end_for_terminal(tx, &s.terminal, "replaced").await?;
    sqlx::query(
        "INSERT INTO sessions (session_id, terminal, user_id, method, qualification, created_at, absolute_expires_at, card)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.session_id)
    .bind(&s.terminal)
    .bind(&s.user_id)
    .bind(&s.method)
    .bind(&s.qualification)
    .bind(now())
    .bind(s.absolute_expires_at)
    .bind(&s.card)
    .execute(&mut **tx)
    .await?;
    bump_generation(tx).await
}

pub async fn end_for_terminal(
    tx: &mut Transaction<'_, Any>,
    terminal: &str,
    reason: &str,
) -> Result<u64> {
    crate::break_glass::end_with_sessions(tx, "terminal = $3", terminal, reason).await?;
    let n = sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE terminal = $3 AND ended_at IS NULL")
        .bind(now())
        .bind(reason)
        .bind(terminal)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n > 0 {
        bump_generation(tx).await?;
    }
    Ok(n)
}

pub async fn end_for_user(
    tx: &mut Transaction<'_, Any>,
    user_id: &str,
    reason: &str,
) -> Result<u64> {
    crate::break_glass::end_with_sessions(tx, "user_id = $3", user_id, reason).await?;
    let n = sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE user_id = $3 AND ended_at IS NULL")
        .bind(now())
        .bind(reason)
        .bind(user_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n > 0 {
        bump_generation(tx).await?;
    }
    Ok(n)
}

/// Open, unexpired sessions of active users of facilities not suspended or closed: what
/// gateways attribute requests to.
pub async fn open_sessions(store: &Store) -> Result<Vec<SessionRow>> {
    let rows = sqlx::query(
        "SELECT s.session_id, s.terminal, s.user_id, s.method, s.qualification, s.absolute_expires_at, s.card
         FROM sessions s JOIN users u ON u.user_id = s.user_id
         WHERE s.ended_at IS NULL AND s.absolute_expires_at > $1 AND u.status = 'active'
           AND NOT EXISTS (SELECT 1 FROM facilities f WHERE f.facility = u.facility AND f.status <> 'active')",
    )
    .bind(now())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionRow {
                session_id: r.try_get("session_id")?,
                terminal: r.try_get("terminal")?,
                user_id: r.try_get("user_id")?,
                method: r.try_get("method")?,
                qualification: r.try_get("qualification")?,
                absolute_expires_at: r.try_get("absolute_expires_at")?,
                card: r.try_get("card")?,
            })
        })
        .collect()
}
