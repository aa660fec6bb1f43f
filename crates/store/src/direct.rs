//! A connection of the store's own driver (SQLite or PostgreSQL), not through sqlx's `Any`.
//!
//! For the audit log's inserts, about fifteen values a record. Through `Any` every text and
//! blob value is copied twice, into `Any`'s argument and then into the driver's, each copy an
//! `Arc` and a buffer: four allocations a value, about 40 % of all the gateway's allocations
//! under keep-alive load (`docs/audit.md`). The driver's own arguments copy a text at most once
//! (SQLite), or write it straight into the message (PostgreSQL).
//!
//! It is opened from the same URL as the pool and, on SQLite, set up with the same pragmas.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{
    Sqlite, SqliteArgumentsBuffer, SqliteConnectOptions, SqliteConnection, SqliteTypeInfo,
};
use sqlx::{ConnectOptions, Connection, Executor, Type};

/// What every SQLite connection of the store runs first. synchronous=FULL: a committed audit
/// batch has been fsynced (WAL alone with NORMAL would lose the last commits on power loss).
/// secure_delete: freed space is zeroed, so what retention prunes (and a row moved when a page
/// is rebuilt) does not linger in the file's unused bytes.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
     PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
     PRAGMA cache_size=-16384; PRAGMA secure_delete=ON;";

/// How to open a [`DirectConnection`]: parsed once from the store's URL.
#[derive(Clone)]
pub(crate) enum DirectOptions {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

impl DirectOptions {
    pub(crate) fn parse(url: &str, kind: crate::DbKind) -> sqlx::Result<DirectOptions> {
        Ok(match kind {
            crate::DbKind::Sqlite => DirectOptions::Sqlite(SqliteConnectOptions::from_str(url)?),
            crate::DbKind::Postgres => DirectOptions::Postgres(PgConnectOptions::from_str(url)?),
        })
    }
}

/// The options hold the database's password: never printed.
impl fmt::Debug for DirectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirectOptions::Sqlite(_) => "DirectOptions::Sqlite",
            DirectOptions::Postgres(_) => "DirectOptions::Postgres",
        })
    }
}

/// One connection of the store's driver, outside the pool.
pub enum DirectConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl DirectConnection {
    pub(crate) async fn open(opts: &DirectOptions) -> sqlx::Result<DirectConnection> {
        Ok(match opts {
            DirectOptions::Sqlite(o) => {
                let mut c = o.connect().await?;
                c.execute(SQLITE_PRAGMAS).await?;
                DirectConnection::Sqlite(c)
            }
            DirectOptions::Postgres(o) => DirectConnection::Postgres(o.connect().await?),
        })
    }

    pub async fn ping(&mut self) -> sqlx::Result<()> {
        match self {
            DirectConnection::Sqlite(c) => c.ping().await,
            DirectConnection::Postgres(c) => c.ping().await,
        }
    }

    pub async fn close(self) -> sqlx::Result<()> {
        match self {
            DirectConnection::Sqlite(c) => c.close().await,
            DirectConnection::Postgres(c) => c.close().await,
        }
    }
}

/// Runs `$body` with `$c` bound to the driver's connection: the same code, compiled once per
/// driver (sqlx's generic bounds over both would be longer than the code).
#[macro_export]
macro_rules! with_direct {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::direct::DirectConnection::Sqlite($c) => $body,
            $crate::direct::DirectConnection::Postgres($c) => $body,
        }
    };
}

/// A text bound to an SQLite statement without a copy: the driver keeps the `Arc` (a `&str`
/// is copied into a new `Arc<String>`). For values bound many times a second (the audit log's
/// columns); PostgreSQL's driver writes a `&str` into the message, so there it is bound as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedText(pub Arc<str>);

impl SharedText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SharedText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedText {
    fn from(s: &str) -> SharedText {
        SharedText(Arc::from(s))
    }
}

impl Type<Sqlite> for SharedText {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for SharedText {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <Arc<str> as Encode<Sqlite>>::encode(self.0.clone(), buf)
    }
}
