//! An HTTPS webhook receiver (hyper on rustls with the test CA's certificate) that checks the
//! signature the way a receiver written from `docs/notifications.md` would, records every
//! request, and notes when one delivery id is being received twice at the same time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::pki::TestPki;

#[derive(Clone, Debug)]
pub struct Received {
    pub delivery: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The signature checked out: HMAC-SHA256 over "<t>.<body>", t within 5 minutes.
    pub verified: bool,
}

#[derive(Default)]
struct State {
    secret: Vec<u8>,
    delay: Duration,
    got: Mutex<Vec<Received>>,
    in_flight: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Listens on `addr` (port 0 for any); each request is answered after `delay`.
    pub async fn start(
        addr: SocketAddr,
        pki: &TestPki,
        secret: &[u8],
        delay: Duration,
    ) -> WebhookReceiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            secret: secret.to_vec(),
            delay,
            ..State::default()
        });
        let acceptor = TlsAcceptor::from(pki.server.clone());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        WebhookReceiver { addr, state, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// How often a delivery id arrived while the same id was still being received.
    pub fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }

    /// Stops listening (open connections finish on their own).
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn handle(
    st: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (delivery, signature) = (header("sekisho-delivery"), header("sekisho-signature"));
    let json = header("content-type") == "application/json";
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    if !st.in_flight.lock().unwrap().insert(delivery.clone()) {
        st.overlaps.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(st.delay).await;
    let verified = json && check(&st.secret, &signature, &body);
    st.got.lock().unwrap().push(Received {
        delivery: delivery.clone(),
        signature,
        body,
        verified,
    });
    st.in_flight.lock().unwrap().remove(&delivery);
    let status = if verified { 200 } else { 401 };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"ok")))
        .unwrap())
}

/// The receiver's check, written from the documentation rather than with the gateway's code.
fn check(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - t).abs() > 300 {
        return false;
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed, &v1).is_ok()
}
