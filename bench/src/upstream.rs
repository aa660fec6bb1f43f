//! The upstream both proxies forward to: a minimal hyper 1 HTTP/1.1 server on 127.0.0.1 that
//! answers `GET /` with a ~1 KiB HTML page, keep-alive.
//!
//! It runs on its own thread with a single-threaded runtime, so it never shares a scheduler
//! with the load generator and its cost is the same whichever proxy is in front of it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// Size of the page served on `GET /`.
pub const BODY_LEN: usize = 1024;

pub struct Upstream {
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding upstream")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let body = Bytes::from(page());
        let served = Arc::new(AtomicU64::new(0));
        let (shutdown, stop) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counter = served.clone();
        let thread = std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("upstream: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = accept_loop(listener, body, counter) => {}
                        _ = stop => {}
                    }
                });
                // Dropping the runtime here cancels the open connections.
            })?;
        Ok(Self {
            addr,
            served,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Requests answered so far (any path).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, body: Bytes, served: Arc<AtomicU64>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("upstream accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let served = served.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                served.fetch_add(1, Ordering::Relaxed);
                let body = body.clone();
                async move { Ok::<_, Infallible>(answer(&req, body)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, body: Bytes) -> Response<Full<Bytes>> {
    let (status, body) = if req.method() == Method::GET && req.uri().path() == "/" {
        (StatusCode::OK, body)
    } else {
        (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"))
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// A small HTML page of exactly [`BODY_LEN`] bytes.
fn page() -> String {
    let head = "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
                <title>bench upstream</title></head>\n<body>\n<h1>地域医療連携 bench</h1>\n";
    let tail = "</body></html>\n";
    let mut page = String::from(head);
    let line = "<p>patient summary placeholder</p>\n";
    while page.len() + line.len() + tail.len() <= BODY_LEN {
        page.push_str(line);
    }
    while page.len() + tail.len() < BODY_LEN {
        page.push(' ');
    }
    page.push_str(tail);
    page
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_is_one_kib() {
        assert_eq!(super::page().len(), super::BODY_LEN);
    }
}
