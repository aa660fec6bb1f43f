//! The management listener (loopback by default, plain HTTP): liveness, readiness, Prometheus
//! metrics and the JWKS that upstreams use to verify `Sekisho-Assertion`, open to whoever
//! reaches the listener (R-LOG-2's liveness monitoring points here); and the management API
//! (`api.rs`), for which every call needs an operator token and is on record (R-OPS-4).

mod api;

pub use api::{SCOPES, new_token, token_hash};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use sekisho_audit::{AuditLog, Verifier};
use sekisho_store::Store;

use crate::body::{Body, full};
use crate::metrics::Metrics;
use crate::throttle::{Limited, Scope, Throttle, source_key};
use sekisho_protocol::Reason;

pub struct Management {
    metrics: Arc<Metrics>,
    jwks: String,
    store: Store,
    audit: AuditLog,
    /// Checkpoint keys, for the inclusion status of the records the API returns.
    verifiers: Vec<Verifier>,
    node: String,
    /// Cleared while the CRL is expired or the registry cannot be read: the gateway then
    /// refuses everything, and a load balancer should send terminals elsewhere.
    ready: Arc<AtomicBool>,
    /// Per source address, and per operator token in `api.rs`.
    throttle: Arc<Throttle>,
}

impl Management {
    // Each part is built once by `serve`; a parts struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        metrics: Arc<Metrics>,
        jwks: String,
        store: Store,
        ready: Arc<AtomicBool>,
        audit: AuditLog,
        verifiers: Vec<Verifier>,
        node: String,
        throttle: Arc<Throttle>,
    ) -> Management {
        Management {
            metrics,
            jwks,
            store,
            audit,
            verifiers,
            node,
            ready,
            throttle,
        }
    }
}

pub async fn run(m: Arc<Management>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.changed() => break,
        };
        let m = m.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, std::convert::Infallible>(m.handle(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

impl Management {
    async fn handle(&self, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
        if let Err(l) = self
            .throttle
            .check(Scope::ManagementSource, &source_key(peer.ip()))
        {
            return self.limited(&l, peer, None);
        }
        if req.uri().path().starts_with(api::PREFIX) {
            return self.api(req, peer).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n".into(),
            );
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => {
                // The audit writer's word first: with the store known down, say so at once. The
                // query is bounded because a silent partition would hang it.
                let store_ok = !self.audit.store_unreachable()
                    && tokio::time::timeout(
                        std::time::Duration::from_secs(2),
                        sqlx::query("SELECT 1").execute(self.store.pool()),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok());
                let writing = !self.audit.writes_failing();
                if store_ok && writing && self.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "text/plain", "ready\n".into())
                } else {
                    // A full disk can fail the query too: the writer's failing commits name it
                    // better, unless the writer itself found the store down.
                    let why = if self.audit.store_unreachable() || self.audit.store_stalled() {
                        "store unreachable"
                    } else if !writing {
                        "audit log cannot be written"
                    } else if !store_ok {
                        "store unreachable"
                    } else {
                        "crl or registry not current"
                    };
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("not ready: {why}\n"),
                    )
                }
            }
            "/metrics" => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            "/jwks.json" | "/.well-known/jwks.json" => text(
                StatusCode::OK,
                "application/jwk-set+json",
                self.jwks.clone(),
            ),
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }
}

impl Management {
    /// A call refused by a rate limit: on record when it is the first of its burst; 429 with
    /// `Retry-After`.
    fn limited(
        &self,
        l: &Limited,
        peer: std::net::SocketAddr,
        actor: Option<String>,
    ) -> Response<Body> {
        if l.first {
            let mut rec = l.record(sekisho_audit::Event::Auth, Some(peer.to_string()));
            rec.actor = actor;
            self.audit.append_nowait(rec);
        }
        l.add_retry_after(text(
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            serde_json::json!({
                "error": Reason::RateLimited.code(),
                "message": Reason::RateLimited.en(),
                "retry_after": l.retry_after_secs(),
            })
            .to_string(),
        ))
    }
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}
