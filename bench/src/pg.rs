//! A PostgreSQL database of the benchmark's own for `sekisho init --store-url`: created on the
//! server of the admin URL when the run starts, dropped (`WITH (FORCE)`) when it ends.

use std::future::Future;

use anyhow::{Context, Result};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The development machine's server (as for the store's tests); `--pg-url` overrides it.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct Database {
    admin_url: String,
    pub name: String,
    /// The URL of the new database (the admin URL with its database name replaced).
    pub url: String,
}

/// Creates `sekisho_bench_<pid>_<time>` on the server of `admin_url`.
pub fn create(admin_url: &str) -> Result<Database> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("sekisho_bench_{}_{nanos}", std::process::id());
    let admin = admin_url.to_owned();
    let sql = format!("CREATE DATABASE {name}");
    block_on(async move {
        let mut conn = PgConnection::connect(&admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    })
    .with_context(|| format!("creating database {name} on {admin_url}"))?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    let url = match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    };
    Ok(Database {
        admin_url: admin_url.to_owned(),
        name,
        url,
    })
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = block_on(async move {
            let mut conn = PgConnection::connect(&admin).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            Ok(())
        });
        if let Err(e) = dropped {
            eprintln!("could not drop database {}: {e:#}", self.name);
        }
    }
}

/// Runs `fut` on a runtime of its own on a thread of its own (callers may or may not be inside
/// the benchmark's runtime).
fn block_on<F>(fut: F) -> Result<()>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(fut)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("database thread panicked"))?
}
