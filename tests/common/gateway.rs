//! A real `sekisho` process: init, terminal add, serve, on SQLite or a fresh PostgreSQL
//! database, in front of the demo upstream.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start() -> Upstream {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(sekisho::demo::upstream::serve_counting(
            listener,
            hits.clone(),
        ));
        Upstream {
            addr,
            hits,
            _rt: rt,
        }
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    /// Terminal t1 of facility f1: t1.crt, t1.key, t1.p12, ca.crt.
    pub out: PathBuf,
    pub port: u16,
    pub enroll_port: u16,
    pub mgmt_port: u16,
    pub upstream: Upstream,
    pub db: Db,
    pub store_url: String,
    child: Option<Child>,
    _pg: Option<PgDb>,
}

pub struct PgDb {
    admin: String,
    name: String,
}

impl PgDb {
    /// A new, empty database of its own (dropped with the value); its URL.
    pub fn create() -> (String, PgDb) {
        let admin =
            std::env::var("SEKISHO_TEST_PG_URL").unwrap_or_else(|_| testdb::DEFAULT_PG_URL.into());
        let name = format!("sekisho_it_{}", sekisho_protocol::new_request_id());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (url, admin) = rt.block_on(testdb::create_pg_database(&admin, &name));
        (url, PgDb { admin, name })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

pub struct Options {
    pub upstream_url: Option<String>,
    /// Text replacements in sekisho.toml before serving, e.g. a smaller limit.
    pub replace: Vec<(&'static str, &'static str)>,
    /// Extra TOML appended to sekisho.toml before serving (e.g. more [[route]]s).
    pub extra_config: String,
    /// Where the gateway's temp dir (its data dir among it) is made, instead of the system's
    /// (a small filesystem that the test fills).
    pub data_in: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            upstream_url: None,
            replace: Vec::new(),
            extra_config: r#"
[[route]]
name = "debug-headers"
methods = ["GET"]
path = "/debug/headers"
level = "terminal"
action = "view"
"#
            .into(),
            data_in: None,
        }
    }
}

impl Gateway {
    pub fn start(db: Db) -> Gateway {
        Self::start_with(db, Options::default())
    }

    pub fn start_with(db: Db, opts: Options) -> Gateway {
        Self::start_prepared(db, opts, |_| {})
    }

    /// As [`Gateway::start_with`], with `prepare` run on the initialised data dir (terminal t1
    /// added) before the gateway serves: files, users and patients it should find at start.
    pub fn start_prepared(db: Db, opts: Options, prepare: impl FnOnce(&Gateway)) -> Gateway {
        let upstream = Upstream::start();
        let dir = match &opts.data_in {
            Some(parent) => tempfile::tempdir_in(parent).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let data = dir.path().join("data");
        let out = dir.path().join("t1");
        let (port, enroll_port, mgmt_port) = (free_port(), free_port(), free_port());
        let (store_url, pg) = match db {
            Db::Sqlite => (String::new(), None),
            Db::Postgres => {
                let (url, pg) = PgDb::create();
                (url, Some(pg))
            }
        };
        let up_url = opts
            .upstream_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", upstream.addr));
        let (l, e, m) = (
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{enroll_port}"),
            format!("127.0.0.1:{mgmt_port}"),
        );
        let mut args = vec![
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream",
            &up_url,
            "--listen",
            &l,
            "--enroll-listen",
            &e,
            "--mgmt-listen",
            &m,
        ];
        if db == Db::Postgres {
            args.extend(["--store-url", &store_url]);
        }
        run_ok(&args);
        {
            let cfg = data.join("sekisho.toml");
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            for (from, to) in &opts.replace {
                assert!(text.contains(from), "sekisho.toml has no {from:?}");
                text = text.replace(from, to);
            }
            text.push_str(&opts.extra_config);
            std::fs::write(&cfg, text).unwrap();
        }
        let store_url = if db == Db::Sqlite {
            format!("sqlite://{}", data.join("sekisho.db").display())
        } else {
            store_url
        };
        let mut g = Gateway {
            dir,
            data,
            out,
            port,
            enroll_port,
            mgmt_port,
            upstream,
            db,
            store_url,
            child: None,
            _pg: pg,
        };
        g.add_terminal("f1", "t1", &g.out.clone());
        prepare(&g);
        g.serve();
        g
    }

    /// A gateway over a data dir made elsewhere (an older release's, `tests/upgrade.rs`), not
    /// serving yet; `out` holds its terminal t1's files, `pg` the database it owns if any.
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        dir: tempfile::TempDir,
        data: PathBuf,
        out: PathBuf,
        (port, enroll_port, mgmt_port): (u16, u16, u16),
        upstream: Upstream,
        db: Db,
        store_url: String,
        pg: Option<PgDb>,
    ) -> Gateway {
        Gateway {
            dir,
            data,
            out,
            port,
            enroll_port,
            mgmt_port,
            upstream,
            db,
            store_url,
            child: None,
            _pg: pg,
        }
    }

    /// Another replica of this gateway on the same PostgreSQL store, as deploy/README.md sets
    /// one up: a copy of the data dir with its own listeners, `node` name and upstream. Terminal
    /// t1's files are this gateway's. Drop it before this one (which owns the database).
    pub fn replica(&self, node: &str) -> Gateway {
        assert_eq!(self.db, Db::Postgres, "replicas share a PostgreSQL store");
        let upstream = Upstream::start();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let copied = Command::new("cp")
            .args(["-a", self.data_str(), data.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(copied.success(), "cannot copy the data dir");
        let (port, enroll_port, mgmt_port) = (free_port(), free_port(), free_port());
        let cfg = data.join("sekisho.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        for (from, to) in [
            (self.port, port),
            (self.enroll_port, enroll_port),
            (self.mgmt_port, mgmt_port),
        ] {
            let from = format!("\"127.0.0.1:{from}\"");
            assert!(text.contains(&from), "sekisho.toml has no {from}");
            text = text.replace(&from, &format!("\"127.0.0.1:{to}\""));
        }
        text = text.replace(
            &format!("\"http://{}\"", self.upstream.addr),
            &format!("\"http://{}\"", upstream.addr),
        );
        text = text
            .lines()
            .map(|l| {
                if l.starts_with("node = ") {
                    format!("node = {node:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&cfg, text).unwrap();
        let mut g = Gateway {
            dir,
            data,
            out: self.out.clone(),
            port,
            enroll_port,
            mgmt_port,
            upstream,
            db: self.db,
            store_url: self.store_url.clone(),
            child: None,
            _pg: None,
        };
        g.serve();
        g
    }

    pub fn data_str(&self) -> &str {
        self.data.to_str().unwrap()
    }

    pub fn add_terminal(&self, facility: &str, terminal: &str, out: &Path) {
        run_ok(&[
            "terminal",
            "add",
            "--data-dir",
            self.data_str(),
            "--facility",
            facility,
            "--terminal",
            terminal,
            "--out",
            out.to_str().unwrap(),
            "--p12-password",
            "test-pw",
        ]);
    }

    pub fn serve(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts `sekisho serve` without waiting for it (two gateways starting at once).
    pub fn spawn(&mut self) {
        let child = sekisho()
            .args(["serve", "--data-dir", self.data_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the spawned gateway answers `/readyz` with 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(body)) = self
                .mgmt_get("/readyz")
                .map(|(s, b)| if s == 200 { Ok(b) } else { Err(()) })
            {
                assert!(body.contains("ready"));
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sekisho serve exited early: {st}");
            }
            assert!(Instant::now() < deadline, "gateway did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM, so the gateway shuts down as it would under systemd.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running `serve` process's pid (to kill it from another thread).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a crash: nothing gets to flush or shut down.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A metric's value (one without labels) on the management listener's `/metrics`; None
    /// when it is not serving or does not show the metric.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let Some((200, text)) = self.mgmt_get("/metrics") else {
            return None;
        };
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// (status, body) of a plain-HTTP GET on the management listener.
    pub fn mgmt_get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.mgmt_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn ca(&self) -> String {
        self.out.join("ca.crt").to_str().unwrap().to_string()
    }

    pub fn cert(&self, name: &str) -> (String, String) {
        (
            self.out
                .join(format!("{name}.crt"))
                .to_str()
                .unwrap()
                .into(),
            self.out
                .join(format!("{name}.key"))
                .to_str()
                .unwrap()
                .into(),
        )
    }

    /// curl with the t1 certificate; returns (http status or 0 on TLS failure, body, curl exit code).
    pub fn curl_t1(&self, path: &str, extra: &[&str]) -> (u16, String, i32) {
        let (c, k) = self.cert("t1");
        let mut args = vec!["--cert", &c, "--key", &k];
        args.extend_from_slice(extra);
        self.curl(path, &args)
    }

    pub fn curl(&self, path: &str, extra: &[&str]) -> (u16, String, i32) {
        curl(&self.url(path), &self.ca(), extra)
    }

    /// Direct SQL on the gateway's database (for tampering and fault injection).
    pub fn sql(&self, sql: &str) {
        let url = self.store_url.clone();
        let sql = sql.to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        });
    }

    pub fn sql_rows(&self, sql: &str) -> Vec<Vec<String>> {
        if sql.contains("audit_") {
            self.settle_audit();
        }
        let url = self.store_url.clone();
        let sql = sql.to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::{Connection, Row};
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<String, _>(i)
                                .or_else(|_| r.try_get::<i64, _>(i).map(|v| v.to_string()))
                                .unwrap_or_else(|_| "NULL".into())
                        })
                        .collect()
                })
                .collect()
        })
    }

    /// Waits (up to 5 s) until the running gateway's journal has nothing the store's tables
    /// lack (`sekisho_audit_index_lag_records` 0): records of answered requests are durable in
    /// the journal first and reach the tables a moment later, as the console waits for them.
    pub fn settle_audit(&self) {
        if self.child.is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            // None: not serving (stopped, or the listener is down in this test).
            let lag = self.metric("sekisho_audit_index_lag_records");
            if lag.is_none_or(|l| l == 0.0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Audit records as JSON values, in log order.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.sql_rows("SELECT record FROM audit_records ORDER BY idx")
            .into_iter()
            .map(|r| serde_json::from_str(&r[0]).unwrap())
            .collect()
    }

    /// Waits (up to 5 s) for an audit record matching `pred`; nowait records land a little later.
    pub fn wait_audit(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(r) = self.audit_records().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit record; have: {:#?}",
                self.audit_records()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Gateway {
    /// Adds a terminal to a running gateway and waits until the gateway admits it (the
    /// registry is re-read on the next poll).
    pub fn add_terminal_live(&self, facility: &str, terminal: &str) {
        self.add_terminal(facility, terminal, &self.out.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rt
            .block_on(call(self, terminal, "GET", "/.sekisho/auth/status", None))
            .0
            != 200
        {
            assert!(
                Instant::now() < deadline,
                "terminal {terminal} was not admitted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
