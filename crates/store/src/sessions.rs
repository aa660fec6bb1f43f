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

/// What the store knows of an open session's life since sign-in (Unix times; sign-in at
/// first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// The last request attributed to it, as flushed by the gateways.
    pub activity: i64,
    /// The card's last presence proof (HPKI sessions).
    pub presence: i64,
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
pub async fn open_sessions(store: &Store) -> Result<Vec<(SessionRow, Liveness)>> {
    let rows = sqlx::query(
        "SELECT s.session_id, s.terminal, s.user_id, s.method, s.qualification, s.absolute_expires_at, s.card,
                COALESCE(s.last_activity_at, s.created_at) AS last_activity_at,
                COALESCE(s.last_presence_at, s.created_at) AS last_presence_at
         FROM sessions s JOIN users u ON u.user_id = s.user_id
         WHERE s.ended_at IS NULL AND s.absolute_expires_at > $1 AND u.status = 'active'
           AND NOT EXISTS (SELECT 1 FROM facilities f WHERE f.facility = u.facility AND f.status <> 'active')",
    )
    .bind(now())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                SessionRow {
                    session_id: r.try_get("session_id")?,
                    terminal: r.try_get("terminal")?,
                    user_id: r.try_get("user_id")?,
                    method: r.try_get("method")?,
                    qualification: r.try_get("qualification")?,
                    absolute_expires_at: r.try_get("absolute_expires_at")?,
                    card: r.try_get("card")?,
                },
                Liveness {
                    activity: r.try_get("last_activity_at")?,
                    presence: r.try_get("last_presence_at")?,
                },
            ))
        })
        .collect()
}

/// Records activity seen by one gateway (no change counter bump: nothing others must reload).
/// A session already idle at `idle_cut` is not revived, and an older time never overwrites a
/// newer one written by another replica.
pub async fn touch(store: &Store, session_id: &str, at: i64, idle_cut: i64) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET last_activity_at = $1
         WHERE session_id = $2 AND ended_at IS NULL
           AND COALESCE(last_activity_at, created_at) < $1
           AND COALESCE(last_activity_at, created_at) >= $3",
    )
    .bind(at)
    .bind(session_id)
    .bind(idle_cut)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Records a card presence proof; false if the session is no longer open or its card had
/// already been missing since `presence_cut` (a late proof does not bring it back).
pub async fn record_presence(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    presence_cut: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE sessions SET last_presence_at = $1
         WHERE session_id = $2 AND ended_at IS NULL AND method = 'hpki'
           AND COALESCE(last_presence_at, created_at) >= $3",
    )
    .bind(now())
    .bind(session_id)
    .bind(presence_cut)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The store's own last activity and presence of an open session (`None`: not open).
pub async fn liveness(store: &Store, session_id: &str) -> Result<Option<Liveness>> {
    let row = sqlx::query(
        "SELECT COALESCE(last_activity_at, created_at) AS a, COALESCE(last_presence_at, created_at) AS p
         FROM sessions WHERE session_id = $1 AND ended_at IS NULL",
    )
    .bind(session_id)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(Liveness {
            activity: r.try_get("a")?,
            presence: r.try_get("p")?,
        })
    })
    .transpose()
}

/// An open session past its idle time (`session_idle`) or whose card stopped proving its
/// presence (`heartbeat_missed`).
#[derive(Clone, Debug)]
pub struct Lapsed {
    pub session_id: String,
    pub terminal: String,
    pub user_id: String,
    pub reason: &'static str,
}

/// Open sessions with no activity since `idle_cut`, or HPKI sessions with no presence proof
/// since `presence_cut`.
pub async fn lapsed(store: &Store, idle_cut: i64, presence_cut: i64) -> Result<Vec<Lapsed>> {
    let rows = sqlx::query(
        "SELECT session_id, terminal, user_id,
                CASE WHEN COALESCE(last_activity_at, created_at) < $1 THEN 'session_idle'
                     ELSE 'heartbeat_missed' END AS reason
         FROM sessions
         WHERE ended_at IS NULL AND absolute_expires_at > $3
           AND (COALESCE(last_activity_at, created_at) < $1
                OR (method = 'hpki' AND COALESCE(last_presence_at, created_at) < $2))",
    )
    .bind(idle_cut)
    .bind(presence_cut)
    .bind(now())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let reason: String = r.try_get("reason")?;
            Ok(Lapsed {
                session_id: r.try_get("session_id")?,
                terminal: r.try_get("terminal")?,
                user_id: r.try_get("user_id")?,
                reason: if reason == "session_idle" {
                    "session_idle"
                } else {
                    "heartbeat_missed"
                },
            })
        })
        .collect()
}

/// Ends one session if it is still lapsed (another replica's flush or proof since the look
/// wins); 1 if this call ended it. Emergency grants that end with the session end with it.
pub async fn end_lapsed(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    reason: &str,
    idle_cut: i64,
    presence_cut: i64,
) -> Result<u64> {
    let still = "(COALESCE(last_activity_at, created_at) < $4
                 OR (method = 'hpki' AND COALESCE(last_presence_at, created_at) < $5))";
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE sessions SET ended_at = $1, end_reason = $2
         WHERE session_id = $3 AND ended_at IS NULL AND {still}"
    )))
    .bind(now())
    .bind(reason)
    .bind(session_id)
    .bind(idle_cut)
    .bind(presence_cut)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n > 0 {
        end_one(tx, session_id, reason).await?;
    }
    Ok(n)
}

/// Ends one session by id, whatever its state (a presence proof from another card); 1 if it
/// was open.
pub async fn end_by_id(
    tx: &mut Transaction<'_, Any>,
    session_id: &str,
    reason: &str,
) -> Result<u64> {
    let n = sqlx::query(
        "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE session_id = $3 AND ended_at IS NULL",
    )
    .bind(now())
    .bind(reason)
    .bind(session_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n > 0 {
        end_one(tx, session_id, reason).await?;
    }
    Ok(n)
}

/// What follows a session's end: its emergency grants, and every replica's view.
async fn end_one(tx: &mut Transaction<'_, Any>, session_id: &str, reason: &str) -> Result<()> {
    crate::break_glass::end_ended_session(tx, session_id, reason).await?;
    bump_generation(tx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    async fn open_one(s: &Store, sid: &str, terminal: &str, method: &str) {
        let mut tx = s.begin_write().await.unwrap();
        open(
            &mut tx,
            &SessionRow {
                session_id: sid.into(),
                terminal: terminal.into(),
                user_id: "u1".into(),
                method: method.into(),
                qualification: None,
                absolute_expires_at: now() + 3600,
                card: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn lapsed_sessions_end_once_and_late_activity_does_not_revive_them() {
        for db in TestDb::both().await {
            let s = &db.store;
            open_one(s, "card", "t1", "hpki").await;
            open_one(s, "pw", "t2", "password").await;
            let t = now();
            assert!(lapsed(s, t - 10, t - 10).await.unwrap().is_empty());
            // The card's proofs stop: only the card session lapses.
            let l = lapsed(s, t - 10, t + 1).await.unwrap();
            assert_eq!(l.len(), 1, "{:?}", s.kind());
            assert_eq!(
                (l[0].session_id.as_str(), l[0].reason),
                ("card", "heartbeat_missed")
            );
            // A proof moves it on; a proof for a card missing too long does not.
            let mut tx = s.begin_write().await.unwrap();
            assert!(record_presence(&mut tx, "card", t - 10).await.unwrap());
            assert!(!record_presence(&mut tx, "card", t + 100).await.unwrap());
            assert!(!record_presence(&mut tx, "pw", t - 10).await.unwrap());
            tx.commit().await.unwrap();
            assert!(lapsed(s, t - 10, t).await.unwrap().is_empty());
            // Activity keeps the password session; the card session goes idle.
            touch(s, "pw", t + 5, t - 10).await.unwrap();
            let l = lapsed(s, t + 1, t - 100).await.unwrap();
            assert_eq!(l.len(), 1);
            assert_eq!(
                (l[0].session_id.as_str(), l[0].reason),
                ("card", "session_idle")
            );
            // Ended once: a second replica's end finds nothing.
            let mut tx = s.begin_write().await.unwrap();
            assert_eq!(
                end_lapsed(&mut tx, "card", "session_idle", t + 1, t - 100)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                end_lapsed(&mut tx, "card", "session_idle", t + 1, t - 100)
                    .await
                    .unwrap(),
                0
            );
            // Not lapsed (another replica's activity since): not ended.
            assert_eq!(
                end_lapsed(&mut tx, "pw", "session_idle", t + 1, t - 100)
                    .await
                    .unwrap(),
                0
            );
            tx.commit().await.unwrap();
            assert!(liveness(s, "card").await.unwrap().is_none());
            // Activity older than the idle cut does not bring an idle session back, and an
            // older time never overwrites a newer one.
            touch(s, "pw", t + 100, t + 6).await.unwrap();
            touch(s, "pw", t + 3, t - 10).await.unwrap();
            assert_eq!(liveness(s, "pw").await.unwrap().unwrap().activity, t + 5);
        }
    }
}
