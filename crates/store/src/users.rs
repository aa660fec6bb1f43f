//! People who sign in (R-ACCT-1) and how an HPKI card maps to them (R-ACCT-4).

use anyhow::{Result, bail};
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation, now};

#[derive(Clone, Debug)]
pub struct UserRow {
    pub user_id: String,
    pub name: String,
    pub facility: String,
    pub roles: Vec<String>,
    pub suspended: bool,
    /// The person's facility is neither suspended nor closed.
    pub facility_open: bool,
    pub hpki_issuer: Option<String>,
    pub hpki_serial: Option<String>,
    pub hpki_holder_id: Option<String>,
    pub last_login_at: Option<i64>,
    pub password_hash: Option<String>,
    pub password_profile: Option<String>,
    pub password_changed_at: Option<i64>,
    pub must_change_password: bool,
}

pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub facility: &'a str,
    pub roles: &'a [String],
    pub hpki_issuer: Option<&'a str>,
    pub hpki_serial: Option<&'a str>,
    pub hpki_holder_id: Option<&'a str>,
}

const COLUMNS: &str = "user_id, name, facility, roles, status, hpki_issuer, hpki_serial, hpki_holder_id, \
     last_login_at, password_hash, password_profile, password_changed_at, must_change_password, \
     CAST(CASE WHEN EXISTS (SELECT 1 FROM facilities f WHERE f.facility = users.facility AND f.status <> 'active') \
     THEN 0 ELSE 1 END AS BIGINT) AS facility_open";

fn from_row(r: &sqlx::any::AnyRow) -> Result<UserRow> {
    let roles: String = r.try_get("roles")?;
    Ok(UserRow {
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        facility: r.try_get("facility")?,
        roles: roles
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        suspended: r.try_get::<String, _>("status")? == "suspended",
        facility_open: r.try_get::<i64, _>("facility_open")? != 0,
        hpki_issuer: r.try_get("hpki_issuer")?,
        hpki_serial: r.try_get("hpki_serial")?,
        hpki_holder_id: r.try_get("hpki_holder_id")?,
        last_login_at: r.try_get("last_login_at")?,
        password_hash: r.try_get("password_hash")?,
        password_profile: r.try_get("password_profile")?,
        password_changed_at: r.try_get("password_changed_at")?,
        must_change_password: r.try_get::<i64, _>("must_change_password")? != 0,
    })
}

/// Adds a person; refused for a suspended or closed facility.
pub async fn insert(store: &Store, u: &NewUser<'_>) -> Result<()> {
    let t = now();
    let mut tx = store.begin_write().await?;
    crate::facilities::ensure_open(&mut tx, u.facility).await?;
    let r = sqlx::query(
        "INSERT INTO users (user_id, name, facility, roles, status, hpki_issuer, hpki_serial, hpki_holder_id,
                            created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $8)",
    )
    .bind(u.user_id)
    .bind(u.name)
    .bind(u.facility)
    .bind(u.roles.join(","))
    .bind(u.hpki_issuer)
    .bind(u.hpki_serial)
    .bind(u.hpki_holder_id)
    .bind(t)
    .execute(&mut *tx)
    .await;
    match r {
        Ok(_) => Ok(tx.commit().await?),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            bail!(
                "user {} exists already, or another user has this HPKI card",
                u.user_id
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &Store, user_id: &str) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE user_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The account an HPKI certificate belongs to: by issuer + serial first, then by the holder id
/// in the subject's serialNumber (which survives card renewal).
pub async fn by_hpki(
    store: &Store,
    issuer: &str,
    serial: &str,
    holder_id: Option<&str>,
) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE hpki_issuer = $1 AND hpki_serial = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(issuer)
        .bind(serial)
        .fetch_optional(store.pool())
        .await?;
    if let Some(r) = row {
        return from_row(&r).map(Some);
    }
    let Some(holder) = holder_id else {
        return Ok(None);
    };
    let sql = format!("SELECT {COLUMNS} FROM users WHERE hpki_holder_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(holder)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY facility, user_id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Suspends or resumes; suspension also ends the user's open sessions. Returns false if there
/// is no such user.
pub async fn set_suspended(store: &Store, user_id: &str, suspended: bool) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let n = sqlx::query("UPDATE users SET status = $1, updated_at = $2 WHERE user_id = $3")
        .bind(if suspended { "suspended" } else { "active" })
        .bind(now())
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    if suspended {
        super::sessions::end_for_user(&mut tx, user_id, "user_suspended").await?;
    }
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn touch_login(tx: &mut Transaction<'_, Any>, user_id: &str) -> Result<()> {
    sqlx::query("UPDATE users SET last_login_at = $1 WHERE user_id = $2")
        .bind(now())
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets a password (already checked against the profile and hashed) and keeps it in the
/// history; `must_change` when the secretariat set it for the person.
pub async fn set_password(
    store: &Store,
    user_id: &str,
    hash: &str,
    profile: &str,
    must_change: bool,
) -> Result<bool> {
    let mut tx = store.begin_write().await?;
    let t = now();
    let n = sqlx::query(
        "UPDATE users SET password_hash = $1, password_profile = $2, password_changed_at = $3,
                          must_change_password = $4, updated_at = $3 WHERE user_id = $5",
    )
    .bind(hash)
    .bind(profile)
    .bind(t)
    .bind(i64::from(must_change))
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    sqlx::query("INSERT INTO password_history (user_id, hash, changed_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(hash)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// The last `n` password hashes, newest first (a new password must not be among them).
pub async fn password_history(store: &Store, user_id: &str, n: i64) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT hash FROM password_history WHERE user_id = $1 ORDER BY changed_at DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(n)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| Ok(r.try_get("hash")?)).collect()
}

pub async fn require_password_change(store: &Store, user_id: &str) -> Result<()> {
    let mut tx = store.begin_write().await?;
    sqlx::query("UPDATE users SET must_change_password = 1 WHERE user_id = $1 AND password_hash IS NOT NULL")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Suspends accounts nobody has used for `days` (R-ACCT-7); returns their ids.
pub async fn suspend_unused(store: &Store, days: i64) -> Result<Vec<String>> {
    let cutoff = now() - days * 86_400;
    let mut tx = store.begin_write().await?;
    let rows = sqlx::query(
        "SELECT user_id FROM users WHERE status = 'active' AND COALESCE(last_login_at, created_at) < $1",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("user_id"))
        .collect::<Result<_, _>>()?;
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE users SET status = 'suspended', updated_at = $1
             WHERE status = 'active' AND COALESCE(last_login_at, created_at) < $2",
        )
        .bind(now())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        for id in &ids {
            super::sessions::end_for_user(&mut tx, id, "unused_account_suspended").await?;
        }
        bump_generation(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(ids)
}
