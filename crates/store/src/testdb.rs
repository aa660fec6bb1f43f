//! Test databases: every store test runs on both SQLite and PostgreSQL. PostgreSQL comes from
//! `SEKISHO_TEST_PG_URL` (default: the development machine's `postgres://postgres@127.0.0.1:5432/test`);
//! each test gets a database of its own, dropped afterwards. A missing server fails the test.

use super::Store;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Whether the server `TestDb::postgres` would use answers (host:port of its URL): the
/// benchmarks measure PostgreSQL only when it does.
pub fn postgres_reachable() -> bool {
    let url = std::env::var("SEKISHO_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let host = url
        .split('@')
        .nth(1)
        .and_then(|h| h.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    std::net::TcpStream::connect(host).is_ok()
}

/// The migrations this build applies, as (version, name), in order: an upgrade test compares a
/// database's `schema_migrations` with it.
pub fn migrations() -> Vec<(i64, String)> {
    crate::migrations::versions()
        .map(|(v, n)| (v, n.to_string()))
        .collect()
}

pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        TestDb::sqlite_in(&std::env::temp_dir()).await
    }

    /// A SQLite store in a new directory under `parent` (benchmarks put it on the disk they
    /// measure; the temporary directory may be memory).
    pub async fn sqlite_in(parent: &std::path::Path) -> TestDb {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = Store::open(&url).await.unwrap();
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let admin_url =
            std::env::var("SEKISHO_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        let name = format!("sekisho_t_{}", hex::encode(rand_bytes()));
        let (url, admin) = create_pg_database(&admin_url, &name).await;
        let store = Store::open(&url).await.unwrap();
        TestDb {
            store,
            url,
            _dir: None,
            pg_drop: Some((admin, name)),
        }
    }

    /// Both backends, for `for db in TestDb::both().await`.
    pub async fn both() -> Vec<TestDb> {
        vec![TestDb::sqlite().await, TestDb::postgres().await]
    }
}

/// Creates database `name` on the server of `admin_url`; returns its URL and the admin URL.
pub async fn create_pg_database(admin_url: &str, name: &str) -> (String, String) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test ({admin_url}): {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    (format!("{base}/{name}"), admin_url.to_string())
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            let pool = self.store.pool().clone();
            // Drop on a thread of its own: Drop may run inside a runtime that is shutting down.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use sqlx::Connection;
                    // Not pool.close(): it can wait on the test's own runtime; FORCE ends
                    // the pool's connections anyway.
                    drop(pool);
                    if let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}
