//! The load generator: the same code for every target. tokio + rustls (client certificate,
//! SNI `localhost`) + hyper 1 HTTP/1.1 client connections, `GET /` only.
//!
//! - keep-alive: C connections, each sending requests one after another for the duration;
//! - full handshake: C workers, each request on a fresh TCP + TLS connection, with session
//!   resumption disabled so every handshake is a full one (certificate verification both ways).
//!
//! Only requests that start after the warm-up and finish before the end of the window are
//! counted and timed; errors are counted over the whole run, warm-up included. A caller-given
//! sampler runs at the start and at the end of the window (CPU times, the gateway's metrics).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::process::interrupted;

/// The name the client sends as SNI and `Host`, and checks in the server certificate.
pub const SERVER_NAME: &str = "localhost";

/// Longest wait for one request (connect + handshake + response) before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a connection-level error, so a refusing target can't spin the generator.
const ERROR_BACKOFF: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Persistent connections, requests one after another on each.
    KeepAlive,
    /// A fresh TCP + TLS connection (full handshake) for every request.
    FullHandshake,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keep-alive",
            Mode::FullHandshake => "full-handshake",
        }
    }
}

/// Key-exchange groups the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kx {
    /// X25519 (key share sent), then P-256 (offered only, so that TLS 1.2 servers with a P-256
    /// ECDSA certificate can agree): the same key exchange whichever server answers. nginx's
    /// OpenSSL 3.0 has no ML-KEM, a rustls server would otherwise pick X25519MLKEM768.
    X25519,
    /// rustls' default list (X25519MLKEM768 first).
    Default,
}

/// The two client TLS configurations (same certificate, same trust).
pub struct ClientTls {
    /// With rustls' default resumption (only matters if a keep-alive connection is re-made).
    keep_alive: Arc<ClientConfig>,
    /// `Resumption::disabled()`: every connection does a full handshake.
    full_handshake: Arc<ClientConfig>,
}

impl ClientTls {
    pub fn load(cert: &Path, key: &Path, trust: &Path, kx: Kx) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(trust)
            .with_context(|| format!("reading {}", trust.display()))?
        {
            roots.add(der?)?;
        }
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            bail!("no certificate in {}", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading {}", key.display()))?;

        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if kx == Kx::X25519 {
            provider.kx_groups = vec![
                rustls::crypto::aws_lc_rs::kx_group::X25519,
                rustls::crypto::aws_lc_rs::kx_group::SECP256R1,
            ];
        }
        let provider: Arc<CryptoProvider> = Arc::new(provider);
        let build = || -> Result<ClientConfig> {
            Ok(ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())?)
        };
        let keep_alive = build()?;
        let mut full_handshake = build()?;
        full_handshake.resumption = Resumption::disabled();
        Ok(Self {
            keep_alive: Arc::new(keep_alive),
            full_handshake: Arc::new(full_handshake),
        })
    }

    pub fn for_mode(&self, mode: Mode) -> Arc<ClientConfig> {
        match mode {
            Mode::KeepAlive => self.keep_alive.clone(),
            Mode::FullHandshake => self.full_handshake.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub mode: Mode,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one run against one target measured.
pub struct RunResult {
    /// 200 responses that started and finished inside the measurement window.
    pub completed: u64,
    /// 200 responses that finished inside the window, whenever they started: the work the
    /// proxies did between the two samples, for CPU per request.
    pub finished_in_window: u64,
    pub window: Duration,
    /// Latency of those requests, microseconds.
    pub latency_us: Histogram<u64>,
    /// Non-200 responses, timeouts, connection and handshake failures (whole run).
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub first_error: Option<String>,
    /// Keep-alive connections the server closed that had to be re-made.
    pub reconnects: u64,
}

impl RunResult {
    pub fn req_per_sec(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return f64::NAN;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Per-worker tallies, merged at the end.
struct Tally {
    completed: u64,
    finished_in_window: u64,
    latency_us: Histogram<u64>,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    reconnects: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            completed: 0,
            finished_in_window: 0,
            latency_us: new_histogram(),
            errors: 0,
            statuses: BTreeMap::new(),
            first_error: None,
            reconnects: 0,
        }
    }

    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.completed += other.completed;
        self.finished_in_window += other.finished_in_window;
        // Same bounds on both sides: adding can't fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.errors += other.errors;
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.reconnects += other.reconnects;
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The measurement window shared by all workers of a run.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn record(&self, tally: &mut Tally, began: Instant, status: StatusCode) {
        let done = Instant::now();
        if status != StatusCode::OK {
            tally.error(|| format!("status {status}"));
            *tally.statuses.entry(status.as_u16()).or_default() += 1;
            return;
        }
        if done < self.start || done > self.end {
            return;
        }
        tally.finished_in_window += 1;
        if began >= self.start {
            tally.completed += 1;
            let micros = u64::try_from(done.duration_since(began).as_micros()).unwrap_or(u64::MAX);
            tally.latency_us.saturating_record(micros.max(1));
        }
    }
}

/// Called (on a blocking thread) at the start and at the end of the measurement window.
pub type Sampler<S> = Arc<dyn Fn() -> S + Send + Sync>;

/// Runs one measurement against `addr`; returns what `sampler` gave at the start and at the
/// end of the window (`None` if the run stopped early).
pub async fn run<S: Send + 'static>(
    addr: SocketAddr,
    tls: &ClientTls,
    cfg: &RunConfig,
    sampler: Sampler<S>,
) -> Result<(RunResult, Option<(S, S)>)> {
    let begin = Instant::now();
    let window = Window {
        start: begin + cfg.warmup,
        end: begin + cfg.warmup + cfg.duration,
    };
    let edges = tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let s = sampler.clone();
        let first = tokio::task::spawn_blocking(move || s()).await.ok()?;
        tokio::time::sleep_until(window.end.into()).await;
        let last = tokio::task::spawn_blocking(move || sampler()).await.ok()?;
        Some((first, last))
    });
    let config = tls.for_mode(cfg.mode);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.connections {
        let config = config.clone();
        match cfg.mode {
            Mode::KeepAlive => workers.spawn(keep_alive_worker(addr, config, window)),
            Mode::FullHandshake => workers.spawn(full_handshake_worker(addr, config, window)),
        };
    }
    let mut total = Tally::new();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("load worker panicked")?);
    }
    if interrupted() {
        edges.abort();
        bail!("interrupted");
    }
    let edges = edges.await.ok().flatten();
    let result = RunResult {
        completed: total.completed,
        finished_in_window: total.finished_in_window,
        window: cfg.duration,
        latency_us: total.latency_us,
        errors: total.errors,
        statuses: total.statuses,
        first_error: total.first_error,
        reconnects: total.reconnects,
    };
    Ok((result, edges))
}

async fn keep_alive_worker(addr: SocketAddr, config: Arc<ClientConfig>, window: Window) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let mut connected_once = false;
    while Instant::now() < window.end && !interrupted() {
        let mut conn = match sender.take() {
            Some(conn) => conn,
            None => {
                match tokio::time::timeout(REQUEST_TIMEOUT, connect(addr, config.clone())).await {
                    Ok(Ok((conn, _))) => {
                        if connected_once {
                            tally.reconnects += 1;
                        }
                        connected_once = true;
                        conn
                    }
                    Ok(Err(e)) => {
                        tally.error(|| format!("connect: {e:#}"));
                        tokio::time::sleep(ERROR_BACKOFF).await;
                        continue;
                    }
                    Err(_) => {
                        tally.error(|| "connect: timed out".to_owned());
                        continue;
                    }
                }
            }
        };
        // The server may have closed an idle connection: that's a reconnect, not an error.
        if conn.ready().await.is_err() {
            continue;
        }
        let began = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, get(&mut conn, false)).await {
            Ok(Ok(status)) => {
                window.record(&mut tally, began, status);
                sender = Some(conn);
            }
            Ok(Err(e)) => tally.error(|| format!("request: {e:#}")),
            Err(_) => tally.error(|| "request: timed out".to_owned()),
        }
    }
    tally
}

async fn full_handshake_worker(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    window: Window,
) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < window.end && !interrupted() {
        let began = Instant::now();
        let attempt = async {
            let (mut conn, _) = connect(addr, config.clone()).await?;
            get(&mut conn, true).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(Ok(status)) => window.record(&mut tally, began, status),
            Ok(Err(e)) => {
                tally.error(|| format!("{e:#}"));
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Err(_) => tally.error(|| "connection + request timed out".to_owned()),
        }
    }
    tally
}

/// TLS parameters negotiated on one connection.
pub struct Negotiated {
    pub version: String,
    pub suite: String,
    pub kx: String,
}

impl std::fmt::Display for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.version, self.suite, self.kx)
    }
}

/// One keep-alive connection and one `GET /` that must answer 200 with a body: checks a target
/// works before it is measured, and reports what TLS it negotiated.
pub async fn probe(addr: SocketAddr, tls: &ClientTls) -> Result<Negotiated> {
    let attempt = async {
        let (mut conn, negotiated) = connect(addr, tls.for_mode(Mode::FullHandshake)).await?;
        conn.ready().await?;
        let resp = conn.send_request(request(false)).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!(
                "GET / answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        if body.is_empty() {
            bail!("GET / answered 200 with an empty body");
        }
        Ok(negotiated)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .map_err(|_| anyhow!("probe timed out"))?
}

/// TCP + TLS + HTTP/1.1 client handshake; the connection is driven by a task of its own,
/// which ends when the connection closes (the `SendRequest` then reports `is_closed`).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<(SendRequest<Empty<Bytes>>, Negotiated)> {
    let tcp = TcpStream::connect(addr).await.context("TCP connect")?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let session = tls.get_ref().1;
    let negotiated = Negotiated {
        version: session
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        suite: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        kx: session
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_default(),
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, negotiated))
}

fn request(close: bool) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = hyper::Uri::from_static("/");
    let headers = req.headers_mut();
    headers.insert(HOST, HeaderValue::from_static(SERVER_NAME));
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    req
}

/// Sends `GET /`, reads the whole body, returns the status.
pub async fn get(conn: &mut SendRequest<Empty<Bytes>>, close: bool) -> Result<StatusCode> {
    conn.ready().await?;
    let resp = conn.send_request(request(close)).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}
