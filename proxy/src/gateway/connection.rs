//! Phase 1, accept: the terminal listener's accept loop and one connection's life. With a
//! required tunnel only connections through a configured peer reach the TLS handshake
//! (R-TERM-3); the handshake verifies the client certificate against the CA and the CRL; the
//! connection is then served (HTTP/1.1 or HTTP/2) until it ends, idles out, the gateway stops,
//! or its terminal loses access (R-TERM-4: closed at once, mid-request or not).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_ca::{TerminalId, TerminalIdExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use super::Gateway;
use super::assertion::AssertionCache;
use super::served::{PARK_AFTER, Served, Step, Unread};
use crate::throttle::{Limited, Scope, source_key};
use crate::tls::handshake_failure_reason;
use sekisho_protocol::Reason;

/// Who is at the other end of a connection, as far as its TLS handshake says.
pub(super) enum Identity {
    /// No certificate: every request gets the "enroll this device" page.
    None,
    /// A certificate from our CA without a usable terminal URN.
    Invalid {
        serial: String,
    },
    Terminal {
        serial: String,
        id: TerminalId,
    },
}

impl Identity {
    /// The terminal the certificate names, if it names one.
    fn terminal(&self) -> Option<&TerminalId> {
        match self {
            Identity::Terminal { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// One terminal connection: what the handshake established and whether it is busy.
pub(super) struct Connection {
    pub peer: SocketAddr,
    /// The address the connection arrived on (the gateway's tunnel address when tunnelled).
    pub local: Option<SocketAddr>,
    /// The terminal whose tunnel it came through, if it did.
    pub tunnel_owner: Option<String>,
    pub identity: Identity,
    /// Assertions signed for requests on this connection, reused while fresh.
    pub assertions: AssertionCache,
    in_flight: AtomicUsize,
    /// Requests begun on the connection (the first is paid for by the handshake's limit).
    requests: AtomicU64,
    last_active_ms: AtomicU64,
    /// When the head of the next HTTP/1 request began to arrive (ms since `epoch`, plus one;
    /// 0: not begun). See [`HeadWatch`].
    head_begun_ms: AtomicU64,
    epoch: Instant,
    /// Requests refused over a terminal limit since one was last admitted (`fanout.rs`).
    busy_burst: AtomicBool,
    /// Of those, the ones not recorded one by one.
    busy_unrecorded: AtomicU64,
    /// Permitted requests whose terminal went away before the answer (`forward.rs`).
    aborted: AtomicU64,
    /// Answers whose body hyper is still sending ([`Answering`]).
    answering: AtomicUsize,
    /// Bytes were written and not yet flushed to the socket ([`HeadWatch`]).
    unflushed: AtomicBool,
    /// The last request came with a body. hyper may still be reading it after the answer (an
    /// upstream that answered early), and taking hyper apart then would read the rest of the
    /// body as a new request: such a connection is not parked until its next request begins,
    /// which hyper parses only once the body is done.
    body_open: AtomicBool,
    /// The gateway asked hyper to close the connection, or hyper began to (TLS close_notify):
    /// it is not parked, which would make it keep-alive again.
    closing: AtomicBool,
    /// The counts this connection's terminal shares across its connections (`fanout.rs`).
    pub load: Option<super::fanout::SlotRef>,
}

/// Permitted requests per connection whose abandonment gets an outcome record of its own; the
/// rest are counted in the connection's closing record, so a reset flood cannot double the log.
const ABORTS_RECORDED: u64 = 16;

impl Connection {
    pub fn serial(&self) -> Option<&str> {
        match &self.identity {
            Identity::Terminal { serial, .. } | Identity::Invalid { serial } => Some(serial),
            Identity::None => None,
        }
    }

    pub fn terminal(&self) -> Option<&TerminalId> {
        self.identity.terminal()
    }

    fn touch(&self) {
        self.last_active_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Bytes arrived while no request was being handled: a request's head has begun.
    fn head_begins(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = self
            .head_begun_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A request's head began arriving more than `limit` ago and has not been finished.
    fn head_overdue(&self, limit: Duration) -> bool {
        let begun = self.head_begun_ms.load(Ordering::Relaxed);
        begun != 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.epoch.elapsed().as_millis() as u64 + 1 - begun >= limit.as_millis() as u64
    }

    /// A request was refused over a terminal limit: whether it starts a burst (and is recorded).
    pub fn burst_begins(&self) -> bool {
        let first = !self.busy_burst.swap(true, Ordering::Relaxed);
        if !first {
            self.busy_unrecorded.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    /// A request was admitted: the next refusal begins a new burst.
    pub fn burst_over(&self) {
        self.busy_burst.store(false, Ordering::Relaxed);
    }

    /// A permitted request was abandoned by its terminal: whether it gets its own record.
    pub fn aborted_one(&self) -> bool {
        self.aborted.fetch_add(1, Ordering::Relaxed) < ABORTS_RECORDED
    }

    fn idle_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(
            self.last_active_ms.load(Ordering::Relaxed),
        ))
    }

    /// Between two HTTP/1 requests and quiet for [`PARK_AFTER`]: no request being handled, no
    /// answer being sent or flushed, no request body that may still be read, not closing, no
    /// head begun. hyper then holds only empty buffers.
    fn parkable(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.answering.load(Ordering::Acquire) == 0
            && !self.unflushed.load(Ordering::Acquire)
            && !self.body_open.load(Ordering::Acquire)
            && !self.closing.load(Ordering::Acquire)
            && self.head_begun_ms.load(Ordering::Acquire) == 0
            && self.idle_for() >= PARK_AFTER
    }
}

/// An answer's body on its way to the terminal: the connection is not idle until hyper has sent
/// it all and dropped it (an upstream's body can stall for longer than [`PARK_AFTER`]).
pub(super) struct Answering {
    body: crate::body::Body,
    conn: Arc<Connection>,
}

impl Answering {
    fn new(
        resp: http::Response<crate::body::Body>,
        conn: &Arc<Connection>,
    ) -> http::Response<Answering> {
        conn.answering.fetch_add(1, Ordering::AcqRel);
        resp.map(|body| Answering {
            body,
            conn: conn.clone(),
        })
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.conn.touch();
        self.conn.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::body::Body for Answering {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A request being handled on a connection; leaving (by return, or by the stream being reset
/// and the future dropped) always counts down, so an idle connection is still closed.
pub(super) struct InFlight<'a>(&'a Connection);

impl<'a> InFlight<'a> {
    pub fn enter(conn: &'a Connection) -> InFlight<'a> {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.head_begun_ms.store(0, Ordering::Relaxed);
        conn.touch();
        InFlight(conn)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accept loop of the terminal listener, until `shutdown`.
pub async fn run(gw: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(gw.cfg.limits.max_connections));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            gw.metrics.handshake_failure("connection_limit");
            drop(tcp);
            continue;
        };
        let gw = gw.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            gw.serve_connection(tcp, peer, shutdown).await;
            drop(permit);
        });
    }
}

impl Gateway {
    async fn serve_connection(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        // R-TERM-3: with a required tunnel, only connections that came through a configured
        // peer's tunnel get as far as a TLS handshake.
        let via_tunnel = self.tunnel.as_ref().and_then(|t| t.terminal(peer, local));
        if self.tunnel.as_ref().is_some_and(|t| t.required) && via_tunnel.is_none() {
            return self.handshake_refused(peer, "tunnel_required");
        }
        // A handshake costs the gateway more than the client: only so many at once.
        let permit = match self.throttle.handshake() {
            Ok(p) => p,
            Err(l) => return self.limited_on_record(&l, peer),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.current());
        let hs_timeout = Duration::from_secs(self.cfg.limits.tls_handshake_timeout_secs);
        // The handshake runs in a box and hands the stream back in one, as the 429 connection
        // below is boxed too: a future is as large as its largest await plus every local it
        // still keeps (a partly moved or borrowed one keeps its room), and the connection's
        // task keeps that size for the connection's life. Inline, rustls's handshake state, the
        // TLS stream and a whole hyper connection were carried by every idle connection (7.4
        // KiB of its task; `-Zprint-type-sizes` and heaptrack, `docs/audit.md`).
        let accepted = Box::pin(async move {
            let r = tokio::time::timeout(hs_timeout, acceptor.accept(tcp)).await;
            r.map(|r| r.map(Box::new))
        })
        .await;
        drop(permit);
        let stream = match accepted {
            Err(_) => return self.handshake_refused(peer, "handshake_timeout"),
            Ok(Err(e)) => return self.handshake_refused(peer, handshake_failure_reason(&e)),
            Ok(Ok(s)) => *s,
        };
        let (stream, identity, h2) = handshake_says(stream);
        // Whether a certificate comes is known only now. Past the limit, the connection gets
        // one 429 answer, with no record of its own (the burst has one), and is closed.
        if let Identity::None = identity
            && let Err(l) = self
                .throttle
                .check(Scope::NoCertificate, &source_key(peer.ip()))
        {
            self.limited_on_record(&l, peer);
            return Box::pin(serve_limited(stream, l, hs_timeout)).await;
        }
        let guard = match &identity {
            Identity::Terminal { serial, .. } => Some(self.registry.track(serial)),
            Identity::Invalid { .. } | Identity::None => None,
        };
        let load = self.load.join(identity.terminal());
        let conn = Arc::new(Connection {
            load,
            peer,
            local,
            tunnel_owner: via_tunnel,
            identity,
            assertions: AssertionCache::default(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(0),
            head_begun_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            busy_burst: AtomicBool::new(false),
            busy_unrecorded: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
            unflushed: AtomicBool::new(false),
            body_open: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        // HTTP/2 has its own frames between requests (pings, settings): only HTTP/1 heads are
        // timed here.
        let io = HeadWatch {
            inner: stream,
            conn: conn.clone(),
            watch: !h2,
            unread: Unread::default(),
        };
        self.metrics.connections_open.inc();

        let svc = {
            let gw = self.clone();
            let conn = conn.clone();
            // Boxed: hyper keeps room for the service's future in every connection, idle or
            // not, and the request path's future is several KiB; a box is made per request
            // instead (`tests/load.rs`, sekisho-bench's memory figure).
            service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let gw = gw.clone();
                let conn = conn.clone();
                Box::pin(async move {
                    conn.body_open.store(
                        !hyper::body::Body::is_end_stream(req.body()),
                        Ordering::Release,
                    );
                    // Without a certificate every request is a refusal on record: the requests
                    // of such a connection after its first count against the same limit as its
                    // handshake, so one handshake cannot buy a stream of records.
                    if let Identity::None = conn.identity
                        && conn.requests.fetch_add(1, Ordering::Relaxed) > 0
                        && let Err(l) = gw
                            .throttle
                            .check(Scope::NoCertificate, &source_key(conn.peer.ip()))
                    {
                        gw.limited_on_record(&l, conn.peer);
                        let resp = limited_response(&l, req.headers());
                        return Ok::<_, Infallible>(Answering::new(resp, &conn));
                    }
                    let resp = gw.handle(req, &conn).await;
                    Ok::<_, Infallible>(Answering::new(resp, &conn))
                })
            })
        };
        let protocols = &self.protocols;
        let mut served = Served::start(protocols, TokioIo::new(io), svc, h2);
        let idle = Duration::from_secs(self.cfg.limits.idle_timeout_secs);
        let head_limit = Duration::from_secs(self.cfg.limits.header_read_timeout_secs);
        let tick = (idle / 4)
            .min(head_limit / 4)
            .max(Duration::from_millis(50));
        let revoked = async {
            match &guard {
                Some(g) => g.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(revoked);
        let mut shutting_down = false;
        // Why the connection ended, when the terminal broke the protocol.
        let mut broken: Option<String> = None;
        // Deadlines, not fresh sleeps per turn: the loop also turns when a connection parks or
        // wakes, and the checks must still come round.
        let mut next_tick = tokio::time::Instant::now() + tick;
        let mut next_park = tokio::time::Instant::now() + PARK_AFTER;
        loop {
            tokio::select! {
                step = std::future::poll_fn(|cx| served.poll_step(cx)) => match step {
                    Step::Ended(r) => {
                        if let Err(e) = r {
                            debug!(%peer, error = %e, "connection ended with an error");
                            broken = protocol_error(&e);
                        }
                        break;
                    }
                    Step::Woken => {
                        served.wake(protocols);
                        self.metrics.connections_parked.dec();
                        next_park = tokio::time::Instant::now() + PARK_AFTER;
                    }
                },
                _ = &mut revoked => {
                    // Dropping the connection closes the socket at once, mid-request or not.
                    info!(%peer, "closing a connection whose terminal lost access");
                    self.audit.append_nowait(self.closed_record(&conn));
                    break;
                }
                _ = tokio::time::sleep_until(next_park), if served.can_park() => {
                    if conn.parkable() && served.park(protocols) {
                        self.metrics.connections_parked.inc();
                    }
                    // Busy (or just parked): look again once it may have been quiet long enough.
                    let left = PARK_AFTER.saturating_sub(conn.idle_for());
                    next_park = tokio::time::Instant::now()
                        + if left.is_zero() { PARK_AFTER } else { left };
                }
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick = tokio::time::Instant::now() + tick;
                    if conn.head_overdue(head_limit) {
                        // A head that never finishes (slowloris): dropped, as hyper would.
                        debug!(%peer, "request head not finished in time");
                        broken = Some("request head not finished in time".into());
                        break;
                    }
                    if conn.in_flight.load(Ordering::Relaxed) == 0 && conn.idle_for() >= idle {
                        conn.closing.store(true, Ordering::Release);
                        if served.shut_down().await {
                            break;
                        }
                    }
                }
                _ = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    conn.closing.store(true, Ordering::Release);
                    if served.shut_down().await {
                        break;
                    }
                }
            }
        }
        self.metrics.connections_open.dec();
        if served.is_parked() {
            self.metrics.connections_parked.dec();
        }
        if let Some(rec) = self.summary_record(&conn, broken) {
            self.audit.append_nowait(rec);
        }
    }

    /// One record per connection for what was not recorded request by request: the protocol
    /// error that ended it (hyper's 400/431, an HTTP/2 GOAWAY or reset flood), refusals over a
    /// terminal limit after the first of their burst, and abandoned requests past the first
    /// few. Nothing for a connection that ended normally.
    fn summary_record(&self, conn: &Connection, broken: Option<String>) -> Option<AuditRecord> {
        let busy = conn.busy_unrecorded.load(Ordering::Relaxed);
        let aborted = conn.aborted.load(Ordering::Relaxed);
        let unrecorded_aborts = aborted.saturating_sub(ABORTS_RECORDED);
        let reason = match (&broken, busy, unrecorded_aborts) {
            (Some(_), _, _) => "protocol_error",
            (None, 1.., _) => "terminal_busy",
            (None, 0, 1..) => "client_went_away",
            (None, 0, 0) => return None,
        };
        let mut detail = Vec::new();
        if let Some(b) = broken {
            detail.push(crate::headers::escape_text(&b, 200));
        }
        if busy > 0 {
            detail.push(format!("{busy} more requests refused as terminal_busy"));
        }
        if aborted > 0 {
            detail.push(format!(
                "{aborted} permitted requests abandoned by the terminal"
            ));
        }
        Some(AuditRecord {
            event: Event::Connection,
            peer: Some(conn.peer.to_string()),
            cert_serial: conn.serial().map(str::to_string),
            terminal: conn.terminal().map(|t| t.terminal.clone()),
            facility: conn.terminal().map(|t| t.facility.clone()),
            decision: Decision::Deny,
            reason: reason.into(),
            detail: Some(detail.join("; ")),
            ..Default::default()
        })
    }

    /// The record of a live connection closed because its terminal lost access.
    fn closed_record(&self, conn: &Connection) -> AuditRecord {
        let reason = self
            .registry
            .check(conn.serial().unwrap_or_default())
            .err()
            .map_or("terminal_access_changed", |r| r.refusal().code());
        AuditRecord {
            event: Event::Connection,
            peer: Some(conn.peer.to_string()),
            cert_serial: conn.serial().map(str::to_string),
            terminal: conn.terminal().map(|t| t.terminal.clone()),
            facility: conn.terminal().map(|t| t.facility.clone()),
            decision: Decision::Deny,
            reason: reason.into(),
            detail: Some("live connection closed".into()),
            ..Default::default()
        }
    }

    /// A connection refused by a rate limit: on record when it is the first of its burst.
    fn limited_on_record(&self, l: &Limited, peer: SocketAddr) {
        if l.first {
            self.audit
                .append_nowait(l.record(Event::Tls, Some(peer.to_string())));
        }
    }

    fn handshake_refused(&self, peer: SocketAddr, reason: &'static str) {
        self.metrics.handshake_failure(reason);
        // A port scan or a client that hung up is not a decision about anyone.
        if matches!(reason, "client_closed" | "tls_io_error" | "not_tls") {
            return;
        }
        self.audit.append_nowait(AuditRecord {
            event: Event::Tls,
            peer: Some(peer.to_string()),
            decision: Decision::Deny,
            reason: reason.into(),
            ..Default::default()
        });
    }
}

/// A connection's bytes, noting when the head of a request begins to arrive on an idle HTTP/1
/// connection, so that the head — and only the head — is timed (`limits.header_read_timeout_secs`),
/// and whether what was written has been flushed (a connection is parked only once it has).
pub(super) struct HeadWatch<S> {
    pub inner: S,
    conn: Arc<Connection>,
    watch: bool,
    /// Read by hyper before its connection was parked, not yet used (`served.rs`).
    unread: Unread,
}

impl<S> HeadWatch<S> {
    /// Bytes to be read again before the stream's own.
    pub fn unread(&mut self, b: bytes::Bytes) {
        self.unread.put(b);
    }

    fn wrote<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        // Pending too: hyper has bytes the socket did not take.
        if !matches!(r, Poll::Ready(Err(_))) {
            self.conn.unflushed.store(true, Ordering::Release);
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = if this.unread.take_into(buf) {
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        };
        if this.watch
            && buf.filled().len() > before
            && this.conn.in_flight.load(Ordering::Relaxed) == 0
        {
            this.conn.head_begins();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.conn.unflushed.store(false, Ordering::Release);
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.conn.closing.store(true, Ordering::Release);
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Answers whatever comes on a connection past `rate_limits.no_certificate` with 429 and
/// `Retry-After`, then closes it; the whole connection may take `limit`.
async fn serve_limited<S>(stream: S, l: Limited, limit: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let resp = limited_response(&l, req.headers());
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(false);
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(limit, served).await;
}

/// The `rate_limited` page (or JSON) with `Retry-After`, asking the client to close.
fn limited_response(l: &Limited, headers: &http::HeaderMap) -> http::Response<crate::body::Body> {
    let json = super::refusal::wants_json(headers);
    let id = sekisho_protocol::new_request_id();
    let mut resp = l.add_retry_after(super::refusal::response(Reason::RateLimited, &id, json));
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// What a connection's error says the terminal did wrong; `None` for a client that only went
/// away (a reset socket, a TLS stream cut without close_notify, a clean HTTP/2 GOAWAY).
fn protocol_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return match h2e.reason() {
                _ if h2e.is_io() => None,
                None | Some(h2::Reason::NO_ERROR) => None,
                Some(r) if h2e.is_remote() => Some(format!("HTTP/2 closed by the terminal: {r:?}")),
                Some(r) => Some(format!("HTTP/2 closed by the gateway: {r:?}")),
            };
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some("HTTP/1 request head too large (431)".into());
            }
            if h.is_parse() {
                return Some(format!("HTTP/1 malformed request (400): {h}"));
            }
            if h.is_timeout() {
                return Some("timed out".into());
            }
        }
        cur = err.source();
    }
    None
}

/// Who the handshake says is there, and whether HTTP/2 was chosen (ALPN). The stream goes in
/// and out by value: a local that is ever borrowed keeps its room in the connection's future
/// across every later await, and the TLS stream is over 1 KiB.
fn handshake_says(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> (
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Identity,
    bool,
) {
    let tls = stream.get_ref().1;
    let identity = identity(tls.peer_certificates());
    let h2 = tls.alpn_protocol() == Some(b"h2".as_slice());
    (stream, identity, h2)
}

/// What the client certificate says, before the registry is asked.
fn identity(certs: Option<&[CertificateDer<'static>]>) -> Identity {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return Identity::None;
    };
    let Ok(serial) = sekisho_ca::serial_hex(leaf) else {
        return Identity::Invalid {
            serial: String::new(),
        };
    };
    match TerminalId::from_cert_der(leaf) {
        Ok(id) => Identity::Terminal { serial, id },
        Err(_) => Identity::Invalid { serial },
    }
}
