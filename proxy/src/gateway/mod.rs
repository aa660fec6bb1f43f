//! The terminal listener and the request path (`docs/architecture.md`), as named phases over one
//! per-request context ([`context::RequestCtx`]), the way Pingora's `ProxyHttp` names its
//! phases — one file per phase:
//!
//! ```text
//! accept ─► identify ─► session ─► maintenance ─► route ─► authorize ─► audit ─► forward ─► outcome
//! connection.rs identify.rs session.rs maintenance.rs route.rs authorize.rs audit.rs forward.rs outcome.rs
//! ```
//!
//! Between route and authorize, `cross_site.rs` refuses what a page of another origin made the
//! terminal's browser send (an unsafe method or an upgrade); the own endpoints get the same
//! check.
//!
//! Any error between identify and the audit record is a refusal (fail closed): `refusal.rs`
//! writes the refusal's record durably and answers with its page. No answer reaches the
//! terminal, and no unsafe request reaches the upstream, before its decision record is
//! durable; a safe read may be forwarded while its record commits, its answer held until then
//! (`forward.rs`). The gateway's own endpoints under `/.sekisho/` (sign-in, consent) branch off
//! after identify (`own.rs`).

mod assertion;
mod audit;
mod authorize;
mod connection;
mod context;
mod cross_site;
mod fanout;
mod forward;
mod host;
mod identify;
mod maintenance;
mod outcome;
mod own;
pub mod refusal;
mod route;
mod served;
mod session;
pub mod tunnel;
mod websocket;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use sekisho_audit::AuditLog;
use sekisho_policies::RouteMap;
use sekisho_protocol::Reason;
use sekisho_store::Store;

pub use connection::run;
pub use tunnel::TunnelBinding;

use crate::assertion::AssertionSigner;
use crate::body::Body;
use crate::breakglass::EmergencyDesk;
use crate::config::Config;
use crate::consent::ConsentDesk;
use crate::console::Console;
use crate::metrics::Metrics;
use crate::notices::NoticeBoard;
use crate::patients::PatientView;
use crate::policy::Authorizer;
use crate::registry::Registry;
use crate::sessions::Sessions;
use crate::signin::SignIn;
use crate::tls::TerminalTls;
use crate::upstream::Upstream;
use connection::{Connection, InFlight};
use context::RequestCtx;

/// One gateway: everything the request path consults, assembled once by `serve`.
pub struct Gateway {
    cfg: Config,
    routes: RouteMap,
    registry: Arc<Registry>,
    tls: Arc<TerminalTls>,
    sessions: Arc<Sessions>,
    signin: Arc<SignIn>,
    consent: Arc<ConsentDesk>,
    emergency: Arc<EmergencyDesk>,
    console: Arc<Console>,
    policy: Arc<Authorizer>,
    patients: Arc<PatientView>,
    notices: Arc<NoticeBoard>,
    store: Store,
    audit: AuditLog,
    signer: AssertionSigner,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// The WireGuard endpoint, when the deployment has one.
    tunnel: Option<TunnelBinding>,
    /// Records of withheld answers waiting for the audit log (`audit.rs`).
    pending_records: Arc<tokio::sync::Semaphore>,
    /// What each terminal has in progress (`fanout.rs`).
    load: Arc<fanout::TerminalLoad>,
    /// Rate limits: handshakes in progress, and those without a certificate (`connection.rs`).
    throttle: Arc<crate::throttle::Throttle>,
    /// hyper's settings for terminal connections (`served.rs`).
    protocols: served::Protocols,
}

/// The parts of a [`Gateway`]; each is built (and can be tested) on its own.
pub struct GatewayParts {
    pub cfg: Config,
    pub routes: RouteMap,
    pub registry: Arc<Registry>,
    pub tls: Arc<TerminalTls>,
    pub sessions: Arc<Sessions>,
    pub signin: Arc<SignIn>,
    pub consent: Arc<ConsentDesk>,
    pub emergency: Arc<EmergencyDesk>,
    pub console: Arc<Console>,
    pub policy: Arc<Authorizer>,
    pub patients: Arc<PatientView>,
    pub notices: Arc<NoticeBoard>,
    pub store: Store,
    pub audit: AuditLog,
    pub signer: AssertionSigner,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub tunnel: Option<TunnelBinding>,
    pub throttle: Arc<crate::throttle::Throttle>,
}

impl Gateway {
    pub fn new(p: GatewayParts) -> Gateway {
        let protocols = served::Protocols::new(p.cfg.limits.max_header_bytes);
        Gateway {
            cfg: p.cfg,
            routes: p.routes,
            registry: p.registry,
            tls: p.tls,
            sessions: p.sessions,
            signin: p.signin,
            consent: p.consent,
            emergency: p.emergency,
            console: p.console,
            policy: p.policy,
            patients: p.patients,
            notices: p.notices,
            store: p.store,
            audit: p.audit,
            signer: p.signer,
            upstream: p.upstream,
            metrics: p.metrics,
            tunnel: p.tunnel,
            pending_records: audit::pending_records(),
            load: Default::default(),
            protocols,
            throttle: p.throttle,
        }
    }

    /// One request, through the phases. The answers off the forwarding path (the gateway's
    /// own pages, refusals) are boxed: a future is as large as its largest await, and inline
    /// the own pages alone made every request's future 13 KiB, allocated and copied per
    /// request (`-Zprint-type-sizes`, `docs/audit.md`).
    async fn handle(&self, mut req: Request<Incoming>, conn: &Connection) -> Response<Body> {
        let _in_flight = InFlight::enter(conn);
        let mut ctx = RequestCtx::accept(conn, &mut req, &self.metrics);
        let Ok(_counted) = self.admit_request(conn) else {
            return Box::pin(self.refuse_busy(ctx)).await;
        };
        // Normalised once: the path recognised here is the one matched and forwarded.
        let path = sekisho_policies::normalize(req.uri().path());
        if let Ok(p) = &path
            && own::is_own(p.as_str())
        {
            let own_path = p.as_str().to_string();
            return Box::pin(self.own_endpoint(req, &own_path, ctx)).await;
        }
        if let Err(reason) = self.decide(&req, path, &mut ctx).await {
            return Box::pin(self.refuse(ctx, reason)).await;
        }
        if self.admit_upstream(&mut ctx).is_err() {
            return Box::pin(self.refuse_busy(ctx)).await;
        }
        if self.may_overlap(&req, &ctx) {
            let durable = self.record_permit_async(&mut ctx);
            return self.forward_while_recording(req, ctx, durable).await;
        }
        if self.record_permit(&mut ctx).await.is_err() {
            return self.refused_unrecorded(ctx, None);
        }
        self.forward(req, ctx).await
    }

    /// Every phase up to the decision; the first refusal ends it.
    async fn decide<'a>(
        &'a self,
        req: &Request<Incoming>,
        path: Result<sekisho_policies::NormalizedPath, sekisho_policies::PathError>,
        ctx: &mut RequestCtx<'a>,
    ) -> Result<(), Reason> {
        self.identify(ctx)?;
        self.host(req)?;
        self.session(req, ctx).await?;
        self.maintenance(ctx)?;
        self.route(req, path, ctx)?;
        self.cross_site(req)?;
        self.authorize(ctx).await
    }
}
