//! One terminal connection's HTTP, as hyper serves it (HTTP/1.1 or HTTP/2 by ALPN), and an
//! idle HTTP/1 connection parked without hyper.
//!
//! hyper keeps an 8 KiB read buffer, an 8 KiB write buffer and its connection state for every
//! connection, idle or not, and has no setting to give them back; with thousands of terminals'
//! browsers holding keep-alive connections that was most of the gateway's memory per
//! connection (`docs/audit.md`). So an HTTP/1 connection idle for [`PARK_AFTER`] between
//! requests is taken apart (`into_parts`): only the TLS stream and the service are kept, and
//! hyper's connection is made again when the terminal's next bytes arrive — as nginx frees a
//! keep-alive connection's buffers between requests. HTTP/2 connections are not parked (their
//! state is the streams' and the peer's settings).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;

use super::connection::HeadWatch;

/// An HTTP/1 connection idle this long between requests is parked.
pub(super) const PARK_AFTER: Duration = Duration::from_secs(1);

/// The terminal's TLS stream as hyper reads it.
pub(super) type Io = TokioIo<HeadWatch<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>;

/// hyper's settings for the terminal listener, built once per connection.
pub(super) struct Protocols {
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub fn new(max_header_bytes: usize) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // hyper's timer also runs while a keep-alive connection waits for its next
            // request, which closed idle connections after this many seconds instead of
            // `idle_timeout_secs`; the head is timed from its first byte instead (`HeadWatch`).
            .header_read_timeout(None)
            // The head's own limit: the buffer's is checked only while a head is incomplete,
            // so a head that arrived with the read that crossed it got through (up to 64 KiB
            // for a 32 KiB limit, depending on how the TLS records fell).
            .max_header_size(max_header_bytes)
            .max_buf_size(max_header_bytes.max(8192))
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(max_header_bytes as u32)
            .max_concurrent_streams(128)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Protocols { h1, h2 }
    }
}

/// What a connection is doing.
pub(super) enum Served<S: HttpService<Incoming>> {
    H1(Pin<Box<http1::UpgradeableConnection<Io, S>>>),
    H2(Pin<Box<http2::Connection<Io, S, TokioExecutor>>>),
    /// An idle HTTP/1 connection without hyper's state, until its next bytes. Boxed like the
    /// others, so the connection's task is a few pointers whatever its state.
    Parked(Box<(Io, S)>),
    /// Taken apart and not yet put back (only between two statements of [`Served::park`]).
    Gone,
}

/// What [`Served::poll_step`] saw.
pub(super) enum Step {
    /// hyper's connection ended (the terminal closed, an upgrade took it over, or an error).
    Ended(hyper::Result<()>),
    /// A parked connection's terminal sent bytes: it is served again.
    Woken,
}

impl<S, B> Served<S>
where
    S: HttpService<Incoming, ResBody = B> + Unpin + Send + 'static,
    S::Future: Send + Unpin + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Served by ALPN: `h2` as HTTP/2, anything else (or nothing) as HTTP/1.1 (RFC 9113 §3.3:
    /// over TLS, HTTP/2 is chosen by ALPN only).
    pub fn start(p: &Protocols, io: Io, svc: S, h2: bool) -> Served<S> {
        if h2 {
            Served::H2(Box::pin(p.h2.serve_connection(io, svc)))
        } else {
            Served::H1(Box::pin(p.h1.serve_connection(io, svc).with_upgrades()))
        }
    }

    pub fn is_parked(&self) -> bool {
        matches!(self, Served::Parked(_))
    }

    pub fn can_park(&self) -> bool {
        matches!(self, Served::H1(_))
    }

    /// Drives hyper's connection, or waits for a parked one's next bytes.
    pub fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        match self {
            Served::H1(c) => c.as_mut().poll(cx).map(Step::Ended),
            Served::H2(c) => c.as_mut().poll(cx).map(Step::Ended),
            Served::Parked(p) => {
                let tcp = p.0.inner().inner.get_ref().0;
                // Readable, or an error the next read will report: either way hyper reads it.
                tcp.poll_read_ready(cx).map(|_| Step::Woken)
            }
            Served::Gone => Poll::Ready(Step::Ended(Ok(()))),
        }
    }

    /// hyper serves a parked connection again, its next bytes still unread.
    pub fn wake(&mut self, p: &Protocols) {
        if let Served::Parked(parked) = std::mem::replace(self, Served::Gone) {
            let (io, svc) = *parked;
            *self = Served::H1(Box::pin(p.h1.serve_connection(io, svc).with_upgrades()));
        }
    }

    /// Takes hyper's HTTP/1 connection apart, keeping the TLS stream and the service. Only
    /// between requests (the caller checks: nothing in flight, no answer being written, no
    /// head begun): hyper then holds nothing but empty buffers. Bytes hyper had read past its
    /// last request (one arriving just now) are handed back to it when it is made again.
    /// Whether it is parked now.
    pub fn park(&mut self, p: &Protocols) -> bool {
        let Served::H1(c) = std::mem::replace(self, Served::Gone) else {
            unreachable!("only HTTP/1 connections are parked");
        };
        let Some(parts) = Pin::into_inner(c).into_parts() else {
            // Upgraded: hyper's future has already ended, and so has the loop polling it.
            return false;
        };
        let (mut io, svc) = (parts.io, parts.service);
        if parts.read_buf.is_empty() {
            *self = Served::Parked(Box::new((io, svc)));
            true
        } else {
            io.inner_mut().unread(parts.read_buf);
            *self = Served::H1(Box::pin(p.h1.serve_connection(io, svc).with_upgrades()));
            false
        }
    }

    /// Asks hyper to close the connection once the request in progress is answered (keep
    /// polling it); a parked connection is closed at once (TLS close_notify): true then, and
    /// the connection is over.
    pub async fn shut_down(&mut self) -> bool {
        match self {
            Served::H1(c) => c.as_mut().graceful_shutdown(),
            Served::H2(c) => c.as_mut().graceful_shutdown(),
            Served::Parked(p) => {
                let _ = tokio::time::timeout(CLOSE_WAIT, p.0.inner_mut().shutdown()).await;
                return true;
            }
            Served::Gone => return true,
        }
        false
    }
}

/// How long closing a parked connection may wait for the terminal to take the close_notify.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Bytes hyper read but did not use before its connection was parked, given back first.
#[derive(Default)]
pub(super) struct Unread(Option<Bytes>);

impl Unread {
    pub fn put(&mut self, b: Bytes) {
        self.0 = Some(b);
    }

    /// Copies what fits into `buf`; true if anything was there.
    pub fn take_into(&mut self, buf: &mut tokio::io::ReadBuf<'_>) -> bool {
        let Some(b) = &mut self.0 else {
            return false;
        };
        let n = b.len().min(buf.remaining());
        buf.put_slice(&b.split_to(n));
        if b.is_empty() {
            self.0 = None;
        }
        true
    }
}
