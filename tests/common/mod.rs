//! Test rig: a real `sekisho` process (init, terminal add, serve) in a temp data dir, in front
//! of the demo upstream (which counts what reaches it), on SQLite or on a fresh PostgreSQL
//! database. Clients are real: curl, openssl, and a Rust rustls/hyper client.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sekisho_store::testdb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

pub fn sekisho() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sekisho"));
    c.env("SEKISHO_LOG", "warn");
    c
}

/// Runs a sekisho command; returns its output whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    sekisho()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sekisho")
}

pub fn run_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "sekisho {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A port for a listener of a test gateway. Taken from a range below Linux's ephemeral ports
/// (so no outgoing connection holds it) and never handed out twice in this process (tests run
/// in parallel threads); checked free when handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 12_000 + (std::process::id() % 40) * 500;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 19_000) as u16;
        if port < 32_000 && StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

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
        }
    }
}

impl Gateway {
    pub fn start(db: Db) -> Gateway {
        Self::start_with(db, Options::default())
    }

    pub fn start_with(db: Db, opts: Options) -> Gateway {
        let upstream = Upstream::start();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = dir.path().join("t1");
        let (port, enroll_port, mgmt_port) = (free_port(), free_port(), free_port());
        let (store_url, pg) = match db {
            Db::Sqlite => (String::new(), None),
            Db::Postgres => {
                let admin = std::env::var("SEKISHO_TEST_PG_URL")
                    .unwrap_or_else(|_| testdb::DEFAULT_PG_URL.into());
                let name = format!("sekisho_it_{}", sekisho_protocol::new_request_id());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let (url, admin) = rt.block_on(testdb::create_pg_database(&admin, &name));
                (url, Some(PgDb { admin, name }))
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
        let child = sekisho()
            .args(["serve", "--data-dir", self.data_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
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

/// curl; returns (http status or 0, body, curl exit code).
pub fn curl(url: &str, ca: &str, extra: &[&str]) -> (u16, String, i32) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        out.status.code().unwrap_or(-1),
    )
}

pub fn openssl(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A TLS connection to the gateway as terminal `name` (files in `g.out`), for raw HTTP.
pub async fn tls_connect(
    g: &Gateway,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_with(g, Some(g.cert(name)), None).await.unwrap()
}

pub async fn tls_connect_with(
    g: &Gateway,
    cert: Option<(String, String)>,
    versions: Option<&'static [&'static rustls::SupportedProtocolVersion]>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(g.ca()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider);
    let b = match versions {
        Some(v) => b.with_protocol_versions(v).unwrap(),
        None => b.with_safe_default_protocol_versions().unwrap(),
    }
    .with_root_certificates(roots);
    let cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(&k).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", g.port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 request over a fresh mTLS connection as terminal `name`; (status, JSON body).
pub async fn call(
    g: &Gateway,
    name: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let tls = tls_connect(g, name).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
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

// ---- ID and password sign-in through the gateway's pages, with curl as the browser ----

pub fn add_user(g: &Gateway, id: &str, profile: &str) -> String {
    let out = run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        id,
        "--name",
        "看護 花子",
        "--facility",
        "f1",
        "--roles",
        "nurse",
        "--password-profile",
        profile,
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("Temporary password for {id}: ")))
        .expect("temporary password printed")
        .trim()
        .to_string()
}

/// POST a form as terminal `term` with a cookie jar; (status, body, Location).
pub fn post(
    g: &Gateway,
    term: &str,
    jar: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let (c, k) = g.cert(term);
    let mut args: Vec<String> = vec![
        "--cert".into(),
        c,
        "--key".into(),
        k,
        "-c".into(),
        jar.into(),
        "-b".into(),
        jar.into(),
        "-D".into(),
        "-".into(),
    ];
    for (n, v) in fields {
        args.push("--data-urlencode".into());
        args.push(format!("{n}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (s, body, _) = g.curl(path, &args);
    let location = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .trim()
        .to_string();
    (s, body, location)
}

pub fn get(g: &Gateway, term: &str, jar: &str, path: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    let (s, body, _) = g.curl(path, &["--cert", &c, "--key", &k, "-b", jar]);
    (s, body)
}

/// Adds a user with a password, signs them in on `term` with a cookie jar and sets their own
/// password; returns the jar's path.
pub fn sign_in(g: &Gateway, term: &str, id: &str, roles: &str, dir: &Path) -> String {
    sign_in_at(g, term, id, roles, "f1", dir)
}

/// As [`sign_in`], for a user of `facility`.
pub fn sign_in_at(
    g: &Gateway,
    term: &str,
    id: &str,
    roles: &str,
    facility: &str,
    dir: &Path,
) -> String {
    let out = run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        id,
        "--name",
        "職員",
        "--facility",
        facility,
        "--roles",
        roles,
        "--password-profile",
        "jp-mhlw-qa-b",
    ]);
    let temp = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Temporary password for {id}: ")))
        .unwrap()
        .trim()
        .to_string();
    let jar = dir.join(format!("{id}.jar")).to_str().unwrap().to_string();
    let (s, _, loc) = post(
        g,
        term,
        &jar,
        "/.sekisho/login",
        &[("id", id), ("password", &temp)],
    );
    assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"));
    let (s, _, _) = post(
        g,
        term,
        &jar,
        "/.sekisho/password",
        &[
            ("current", &temp),
            ("new", "kx7#Rw2q"),
            ("confirm", "kx7#Rw2q"),
        ],
    );
    assert_eq!(s, 303);
    jar
}

// ---- vpcd virtual readers (pcscd + vsmartcard-vpcd) ----

/// Holds one vpcd reader for a test: an flock shared with the cardreader tests, so that two
/// test binaries never put cards in the same reader at once.
pub struct VpcdRig {
    _file: std::fs::File,
}

/// Takes the reader on vpcd `port` (`Virtual PCD 00 00` is 35963, `00 01` is 35964), starting
/// pcscd if it is not running. Fails, never skips, without pcscd and vsmartcard-vpcd.
pub fn vpcd_rig(port: u16, reader: &str) -> VpcdRig {
    let path = std::env::temp_dir().join(format!("sekisho-vpcd-{port}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    // Released when the file is closed.
    file.lock().unwrap();
    let has =
        || sekisho_cardreader::readers::list_readers().is_ok_and(|r| r.iter().any(|n| n == reader));
    if !has() && sekisho_cardreader::readers::list_readers().is_err() {
        let s = std::process::Command::new("pcscd")
            .status()
            .expect("pcscd is installed (Debian pcscd, vsmartcard-vpcd)");
        assert!(s.success(), "pcscd did not start: {s}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has() {
        assert!(
            Instant::now() < deadline,
            "pcscd has no {reader:?}: install vsmartcard-vpcd"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // vpcd loses a card inserted right after a removal: let the reader settle first.
    std::thread::sleep(Duration::from_millis(1500));
    VpcdRig { _file: file }
}

/// Registers a consented patient with a care team of `members`: `f:ID` a facility, `u:ID` a user.
pub fn consented_patient(g: &Gateway, id: &str, members: &[&str]) {
    let d = g.data_str();
    run_ok(&[
        "patient",
        "add",
        "--data-dir",
        d,
        "--id",
        id,
        "--name",
        "山田 花子",
        "--consent",
        "granted",
    ]);
    for m in members {
        let (flag, member) = match m.split_once(':') {
            Some(("f", f)) => ("--facility", f),
            Some(("u", u)) => ("--user", u),
            _ => panic!("member {m:?}: f:FACILITY or u:USER"),
        };
        run_ok(&[
            "careteam",
            "add",
            "--data-dir",
            d,
            "--patient",
            id,
            flag,
            member,
        ]);
    }
}

/// A one-time access code and its PIN for enrolling `terminal` of `facility`.
pub fn enroll_code(g: &Gateway, facility: &str, terminal: &str) -> (String, String) {
    let out = run_ok(&[
        "terminal",
        "enroll-code",
        "--data-dir",
        g.data_str(),
        "--facility",
        facility,
        "--terminal",
        terminal,
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .trim()
            .to_string()
    };
    (field("code:"), field("PIN:"))
}

/// A P-256 key made by openssl in `dir` (`NAME.key`) and its CSR (PEM), as a terminal makes them.
pub fn new_csr(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let (ok, csr) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            key.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{csr}");
    let csr = csr[csr.find("-----BEGIN").expect("a CSR")..].to_string();
    (key, csr)
}
