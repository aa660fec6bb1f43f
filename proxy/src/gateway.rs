//! The terminal listener and the request path of DESIGN.md: identify the terminal → route map
//! → decision → durable audit append → forward with a signed assertion. Any error on the way
//! to the audit record is a refusal (fail closed); nothing reaches the upstream before its
//! decision is on disk.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use sekisho_ca::{TerminalId, TerminalIdExt};
use sekisho_policies::{Level, RouteMap};
use sekisho_protocol::new_request_id;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use crate::assertion::{self, AssertionSigner, Claims};
use crate::body::{Body, BoxError};
use crate::config::Config;
use crate::forward::Forwarder;
use crate::headers;
use crate::metrics::Metrics;
use crate::refusal;
use crate::registry::Registry;
use crate::tls::{TerminalTls, handshake_failure_reason};
use sekisho_audit::{AuditLog, AuditRecord};

pub struct Gateway {
    pub cfg: Config,
    pub routes: RouteMap,
    pub registry: Arc<Registry>,
    pub tls: Arc<TerminalTls>,
    pub audit: AuditLog,
    pub signer: AssertionSigner,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<crate::sessions::Sessions>,
    pub login: Arc<crate::login::Login>,
    pub consent: Arc<crate::consent::ConsentDesk>,
    pub authorizer: Arc<crate::authorize::Authorizer>,
    pub store: sekisho_store::Store,
    /// The WireGuard endpoint, when the deployment has one.
    pub tunnel: Option<TunnelBinding>,
}

/// How terminal connections relate to the tunnel (R-TERM-3).
pub struct TunnelBinding {
    pub tunnel: sekisho_tunnel::Tunnel,
    /// The gateway's own tunnel address: tunnelled connections arrive on it.
    pub address: std::net::Ipv4Addr,
    /// Accept terminals only through their own tunnel.
    pub required: bool,
}

impl TunnelBinding {
    /// The terminal whose tunnel this connection came through, if it did.
    fn terminal(&self, peer: SocketAddr, local: Option<SocketAddr>) -> Option<String> {
        (local.map(|l| l.ip()) == Some(std::net::IpAddr::V4(self.address)))
            .then(|| self.tunnel.terminal_for(peer.ip()))
            .flatten()
    }
}

/// Who is at the other end of a connection, as far as its TLS handshake says.
enum Identity {
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

struct ConnCtx {
    peer: SocketAddr,
    /// The address the connection arrived on (the gateway's tunnel address when tunnelled).
    local: Option<SocketAddr>,
    /// The terminal whose tunnel it came through, if it did.
    tunnel_owner: Option<String>,
    identity: Identity,
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
    epoch: Instant,
}

/// A request being handled on a connection; leaving (by return, or by the stream being reset
/// and the future dropped) always counts down, so an idle connection is still closed.
struct InFlight<'a>(&'a ConnCtx);

impl<'a> InFlight<'a> {
    fn enter(ctx: &'a ConnCtx) -> InFlight<'a> {
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        ctx.touch();
        InFlight(ctx)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCtx {
    fn touch(&self) {
        self.last_active_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// A request that passed every check, ready to forward.
struct Permit<'a> {
    via_tunnel: bool,
    /// What the patient's permission rests on for a patient route: "registry", or the consent
    /// window's "patient_card" / "staff_attested".
    consent_basis: Option<&'static str>,
    /// The id a `confirm` route names, then the entry as recorded (R-ROLE-2); on `enter`, the
    /// entry the gateway recorded for this request.
    entry_id: Option<String>,
    entry: Option<sekisho_store::consent::Entry>,
    /// Admin routes: what is administered and the owning facility (R-ACCT-8).
    admin: Option<(sekisho_policies::AdminKind, String)>,
    terminal: TerminalId,
    session: Option<Arc<crate::sessions::Session>>,
    route: &'a sekisho_policies::RouteConfig,
    patient: Option<String>,
    path_and_query: String,
}

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
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.current());
        let hs_timeout = Duration::from_secs(self.cfg.limits.tls_handshake_timeout_secs);
        let stream = match tokio::time::timeout(hs_timeout, acceptor.accept(tcp)).await {
            Err(_) => return self.handshake_refused(peer, "handshake_timeout"),
            Ok(Err(e)) => return self.handshake_refused(peer, handshake_failure_reason(&e)),
            Ok(Ok(s)) => s,
        };
        let session = stream.get_ref().1;
        let identity = identify(session.peer_certificates());
        let guard = match &identity {
            Identity::Terminal { serial, .. } => Some(self.registry.track(serial)),
            Identity::Invalid { .. } | Identity::None => None,
        };
        let ctx = Arc::new(ConnCtx {
            peer,
            local,
            tunnel_owner: via_tunnel,
            identity,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        self.metrics.connections_open.inc();

        let svc = {
            let gw = self.clone();
            let ctx = ctx.clone();
            service_fn(move |req| {
                let gw = gw.clone();
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(gw.handle(req, &ctx).await) }
            })
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(
                self.cfg.limits.header_read_timeout_secs,
            ))
            .max_buf_size(self.cfg.limits.max_header_bytes.max(8192))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.cfg.limits.max_header_bytes as u32)
            .max_concurrent_streams(128)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        let idle = Duration::from_secs(self.cfg.limits.idle_timeout_secs);
        let revoked = async {
            match &guard {
                Some(g) => g.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(revoked);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = &mut revoked => {
                    // Dropping the connection closes the socket at once, mid-request or not.
                    info!(%peer, "closing a connection whose terminal lost access");
                    self.audit.append_nowait(AuditRecord {
                        event: sekisho_audit::Event::Connection,
                        peer: Some(peer.to_string()),
                        cert_serial: ctx.serial().map(str::to_string),
                        terminal: ctx.terminal().map(|t| t.terminal.clone()),
                        facility: ctx.terminal().map(|t| t.facility.clone()),
                        decision: sekisho_audit::Decision::Deny,
                        reason: self.registry.check(ctx.serial().unwrap_or_default()).err().map_or("terminal_access_changed", |r| r.reason()).into(),
                        detail: Some("live connection closed".into()),
                        ..Default::default()
                    });
                    break;
                }
                _ = tokio::time::sleep(idle / 4 + Duration::from_millis(10)) => {
                    let idle_for = ctx.epoch.elapsed().saturating_sub(Duration::from_millis(ctx.last_active_ms.load(Ordering::Relaxed)));
                    if ctx.in_flight.load(Ordering::Relaxed) == 0 && idle_for >= idle {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
        self.metrics.connections_open.dec();
    }

    fn handshake_refused(&self, peer: SocketAddr, reason: &'static str) {
        self.metrics.handshake_failure(reason);
        // A port scan or a client that hung up is not a decision about anyone.
        if matches!(reason, "client_closed" | "tls_io_error" | "not_tls") {
            return;
        }
        self.audit.append_nowait(AuditRecord {
            event: sekisho_audit::Event::Tls,
            peer: Some(peer.to_string()),
            decision: sekisho_audit::Decision::Deny,
            reason: reason.into(),
            ..Default::default()
        });
    }

    async fn handle(&self, mut req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
        let _in_flight = InFlight::enter(ctx);
        let started = Instant::now();
        let request_id = new_request_id();
        // First, before anything reads them: headers a client could use to claim an identity.
        let removed = headers::strip_spoofable(req.headers_mut());
        if removed > 0 {
            self.metrics.spoofed_headers_removed.inc_by(removed as u64);
        }
        let mut rec = AuditRecord {
            request_id: request_id.clone(),
            event: sekisho_audit::Event::Request,
            peer: Some(ctx.peer.to_string()),
            cert_serial: ctx.serial().map(str::to_string),
            method: Some(headers::escape_text(req.method().as_str(), 16)),
            path: Some(headers::escape_text(req.uri().path(), 512)),
            ..Default::default()
        };
        let wants_json = refusal::wants_json(req.headers());
        // The gateway's own pages, recognised on the normalised path so that no spelling of
        // it (`//.sekisho`, `/x/../.sekisho`) can reach the route map or the upstream.
        // Normalised once: the path recognised here is the one matched and forwarded below.
        let path = sekisho_policies::normalize(req.uri().path());
        let own = path
            .as_ref()
            .ok()
            .filter(|p| p.as_str().starts_with(crate::login::PREFIX));
        if let Some(own_path) = own {
            return match self.identify(ctx, &mut rec) {
                Err(reason) => {
                    self.refuse(rec, reason, &request_id, wants_json, started)
                        .await
                }
                Ok((serial, id)) => {
                    let caller = crate::login::Caller {
                        terminal: id,
                        serial,
                        peer: ctx.peer,
                        request_id: &request_id,
                    };
                    if own_path.as_str().starts_with(crate::consent::PREFIX) {
                        let cookie = crate::login::session_cookie(req.headers());
                        self.consent
                            .handle(req, own_path.as_str(), &caller, cookie.as_deref())
                            .await
                    } else {
                        self.login.handle(req, own_path.as_str(), &caller).await
                    }
                }
            };
        }
        match self.decide(&req, path, ctx, &mut rec) {
            Err(reason) => {
                self.refuse(rec, reason, &request_id, wants_json, started)
                    .await
            }
            Ok(mut permit) => match self.authorize(&mut permit, &mut rec).await {
                Err(reason) => {
                    self.refuse(rec, reason, &request_id, wants_json, started)
                        .await
                }
                Ok(()) => {
                    rec.decision = sekisho_audit::Decision::Permit;
                    rec.reason = "ok".into();
                    match self.audit.append(rec.clone()).await {
                        Err(e) => {
                            warn!(request_id, error = %e, "audit append failed; refusing");
                            self.metrics.request(
                                "deny",
                                "audit_unavailable",
                                started.elapsed().as_secs_f64(),
                            );
                            refusal::response("audit_unavailable", &request_id, wants_json)
                        }
                        Ok(_) => {
                            self.forward(req, permit, rec, &request_id, wants_json, started)
                                .await
                        }
                    }
                }
            },
        }
    }

    /// Every check up to the decision. The audit record is filled in as facts become known.
    /// The registered, active terminal behind a connection.
    fn identify<'c>(
        &self,
        ctx: &'c ConnCtx,
        rec: &mut AuditRecord,
    ) -> Result<(&'c str, &'c TerminalId), &'static str> {
        let (serial, id) = match &ctx.identity {
            Identity::None => return Err("no_client_certificate"),
            Identity::Invalid { .. } => return Err("terminal_identity_invalid"),
            Identity::Terminal { serial, id } => (serial, id),
        };
        rec.terminal = Some(id.terminal.clone());
        rec.facility = Some(id.facility.clone());
        let state = self.registry.check(serial).map_err(|r| r.reason())?;
        if state.terminal != id.terminal || state.facility != id.facility {
            return Err("terminal_identity_mismatch");
        }
        // The certificate must be that of the terminal whose tunnel the connection uses,
        // checked on every request: a peer removed since the handshake no longer counts.
        if let Some(t) = self.tunnel.as_ref().filter(|t| t.required) {
            match t.terminal(ctx.peer, ctx.local) {
                None => return Err("tunnel_required"),
                Some(owner) if owner != id.terminal => return Err("tunnel_terminal_mismatch"),
                Some(_) => {}
            }
        }
        Ok((serial, id))
    }

    fn decide<'a>(
        &'a self,
        req: &Request<Incoming>,
        path: Result<sekisho_policies::NormalizedPath, sekisho_policies::PathError>,
        ctx: &ConnCtx,
        rec: &mut AuditRecord,
    ) -> Result<Permit<'a>, &'static str> {
        let (_, id) = self.identify(ctx, rec)?;
        // The person signed in on this terminal, if any: every request over its connections
        // is theirs (one person per terminal at a time).
        let cookie = crate::login::session_cookie(req.headers());
        let session = self.sessions.for_request(&id.terminal, cookie.as_deref())?;
        if let Some(s) = &session {
            rec.user = Some(s.user_id.clone());
            rec.qualification = s.qualification.clone();
        }
        let path = path.map_err(|e| e.reason())?;
        rec.path = Some(path.as_str().to_string());
        let query = req.uri().query();
        let header = |name: &str| -> Vec<String> {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect()
        };
        let m = self
            .routes
            .resolve(req.method().as_str(), &path, query, &header)
            .map_err(|e| e.reason())?;
        rec.route = Some(m.route.name().to_string());
        rec.action = Some(m.route.action.as_str().to_string());
        rec.patient = m.patient.clone();
        if let Some((_, facility)) = &m.admin {
            rec.detail = Some(format!("admin facility {facility}"));
        }
        match (m.route.level, &session) {
            (Level::Terminal, _) => {}
            (Level::User | Level::Patient, None) => return Err("signin_required"),
            (Level::User | Level::Patient, Some(s)) if s.must_change_password => {
                return Err("password_change_required");
            }
            (Level::User, Some(_)) => {}
            // Decided by the policy set once the patient's facts are read (in `handle`).
            (Level::Patient, Some(_)) => {}
        }
        if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH) {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad_content_length")?;
            if len > self.cfg.limits.max_body_bytes {
                return Err("body_too_large");
            }
        }
        let path_and_query = match query {
            Some(q) => format!("{}?{}", path.as_str(), q),
            None => path.into_string(),
        };
        Ok(Permit {
            // Through the tunnel of this very terminal, not just any peer's.
            via_tunnel: ctx.tunnel_owner.as_deref() == Some(id.terminal.as_str()),
            consent_basis: None,
            entry_id: m.entry,
            entry: None,
            admin: m.admin,
            terminal: id.clone(),
            session,
            route: m.route,
            patient: m.patient,
            path_and_query,
        })
    }

    /// The policy decision for patient routes (consent, care team, card, qualification) and
    /// admin routes (R-ACCT-8). Every store error is a refusal.
    async fn authorize(
        &self,
        permit: &mut Permit<'_>,
        rec: &mut AuditRecord,
    ) -> Result<(), &'static str> {
        let action = permit.route.action;
        if permit.route.level == Level::User && action == sekisho_policies::Action::Admin {
            let (Some(session), Some((kind, facility))) = (&permit.session, &permit.admin) else {
                return Err("qualification_not_permitted");
            };
            return match self
                .authorizer
                .admin(session, *kind, facility, permit.via_tunnel)
            {
                Ok(policies) => {
                    rec.detail = Some(format!(
                        "admin facility {facility}; policies {}",
                        policies.join(",")
                    ));
                    Ok(())
                }
                Err(r) => {
                    rec.detail = Some(format!(
                        "admin facility {facility}; policies {}",
                        r.policies.join(",")
                    ));
                    Err(r.reason)
                }
            };
        }
        use sekisho_policies::Action as A;
        match (permit.route.level, action) {
            // A registered terminal, or a signed-in person, is all these routes ask for.
            (Level::Terminal | Level::User, A::View | A::Write) => return Ok(()),
            (Level::Patient, _) => {}
            // Anything else has nothing to decide on (no patient, no admin target): an action
            // the route map lets through without a decision is refused, never forwarded.
            _ => return Err("route_action_not_decidable"),
        }
        let (Some(session), Some(patient)) = (&permit.session, &permit.patient) else {
            return Err("signin_required");
        };
        // A confirmation is decided on the gateway's own record of who entered the entry.
        let confirming = match (action, &permit.entry_id) {
            (sekisho_policies::Action::Confirm, Some(id)) => {
                match sekisho_store::consent::entry(&self.store, id).await {
                    Ok(Some(e)) if &e.patient_id == patient => Some(e),
                    Ok(_) => {
                        rec.detail = Some(format!("entry {id}"));
                        return Err("entry_not_found");
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read an entry");
                        return Err("policy_unavailable");
                    }
                }
            }
            _ => None,
        };
        let allowed = self
            .authorizer
            .patient(
                &self.store,
                session,
                patient,
                action,
                confirming.as_ref(),
                permit.via_tunnel,
            )
            .await;
        let allowed = match allowed {
            Ok(a) => a,
            Err(r) => {
                let mut detail = format!("policies {}", r.policies.join(","));
                if let Some(e) = &confirming {
                    detail.push_str(&format!("; entry {} of {}", e.entry_id, e.facility));
                }
                rec.detail = Some(detail);
                return Err(r.reason);
            }
        };
        rec.purpose_of_use = Some("TREAT".into());
        let mut detail = format!(
            "policies {}; consent {}",
            allowed.policies.join(","),
            allowed.consent_basis
        );
        if action == sekisho_policies::Action::Enter {
            // The entry gets its id here, recorded before anything is forwarded.
            let entry = sekisho_store::consent::Entry {
                entry_id: format!("e-{}", new_request_id()),
                patient_id: patient.clone(),
                author: session.user_id.clone(),
                facility: session.facility.clone(),
            };
            if let Err(e) =
                sekisho_store::consent::insert_entry(&self.store, &entry, &rec.request_id).await
            {
                warn!(error = %e, "cannot record an entry");
                return Err("policy_unavailable");
            }
            permit.entry = Some(entry);
        } else {
            permit.entry = confirming;
        }
        if let Some(e) = &permit.entry {
            detail.push_str(&format!(
                "; entry {} by {} of {}",
                e.entry_id, e.author, e.facility
            ));
        }
        rec.detail = Some(detail);
        permit.consent_basis = Some(allowed.consent_basis);
        Ok(())
    }

    async fn refuse(
        &self,
        mut rec: AuditRecord,
        reason: &'static str,
        request_id: &str,
        wants_json: bool,
        started: Instant,
    ) -> Response<Body> {
        rec.decision = sekisho_audit::Decision::Deny;
        rec.reason = reason.into();
        if let Err(e) = self.audit.append(rec).await {
            warn!(request_id, error = %e, "audit append failed for a refusal");
            self.metrics
                .request("deny", "audit_unavailable", started.elapsed().as_secs_f64());
            return refusal::response("audit_unavailable", request_id, wants_json);
        }
        self.metrics
            .request("deny", reason, started.elapsed().as_secs_f64());
        refusal::response(reason, request_id, wants_json)
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        p: Permit<'_>,
        rec: AuditRecord,
        request_id: &str,
        wants_json: bool,
        started: Instant,
    ) -> Response<Body> {
        let upgrade = p.route.websocket && req.headers().contains_key(http::header::UPGRADE);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        crate::login::strip_session_cookie(&mut parts.headers);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let sub = p.terminal.urn();
        let claims = Claims {
            iss: self.signer.issuer(),
            aud: self.signer.audience(),
            iat: now,
            nbf: now - 5,
            exp: now + assertion::LIFETIME_SECS,
            jti: request_id,
            sub: &sub,
            terminal: &p.terminal.terminal,
            facility: &p.terminal.facility,
            patient: p.patient.as_deref(),
            user: p.session.as_ref().map(|s| s.user_id.as_str()),
            user_facility: p.session.as_ref().map(|s| s.facility.as_str()),
            qualification: p.session.as_ref().and_then(|s| s.qualification.as_deref()),
            auth_method: p.session.as_ref().map(|s| s.method.as_str()),
            purpose_of_use: p.consent_basis.map(|_| "TREAT"),
            consent_basis: p.consent_basis,
            entry: p.entry.as_ref().map(|e| e.entry_id.as_str()),
            entry_author: p.entry.as_ref().map(|e| e.author.as_str()),
            entry_facility: p.entry.as_ref().map(|e| e.facility.as_str()),
            admin_facility: p.admin.as_ref().map(|(_, f)| f.as_str()),
            action: p.route.action.as_str(),
            route: p.route.name(),
        };
        let jwt = match self.signer.sign(&claims) {
            Ok(j) => j,
            Err(e) => {
                warn!(request_id, error = %e, "cannot sign the assertion");
                return self.outcome_refusal(
                    rec,
                    "assertion_failed",
                    request_id,
                    wants_json,
                    started,
                );
            }
        };
        let h = &mut parts.headers;
        // Terminal and facility ids are restricted to [A-Za-z0-9._-] by the CA, so they are safe here.
        for (name, value) in [
            ("sekisho-request-id", request_id),
            ("sekisho-assertion", jwt.as_str()),
            ("sekisho-terminal", p.terminal.terminal.as_str()),
            ("sekisho-facility", p.terminal.facility.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        let max = self.cfg.limits.max_body_bytes as usize;
        let body: Body = Limited::new(body, max)
            .map_err(|e| -> BoxError { e })
            .boxed();
        let out = Request::from_parts(parts, body);
        let mut resp = match self.forwarder.send(out, &p.path_and_query).await {
            Ok(r) => r,
            Err(e) => {
                warn!(request_id, error = %e, "forwarding failed");
                return self.outcome_refusal(rec, e.reason(), request_id, wants_json, started);
            }
        };
        let status = resp.status();
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            self.spawn_tunnel(
                client_upgrade,
                upstream_upgrade,
                rec.cert_serial.clone(),
                request_id.to_string(),
            );
        }
        headers::strip_hop_by_hop(
            resp.headers_mut(),
            status == StatusCode::SWITCHING_PROTOCOLS,
        );
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("sekisho-request-id", v);
        }
        // The entry id the gateway gave an assistant's entry, so the terminal can name it.
        if let Some(e) = p
            .entry
            .as_ref()
            .filter(|_| p.route.action == sekisho_policies::Action::Enter)
            && let Ok(v) = HeaderValue::from_str(&e.entry_id)
        {
            h.insert("sekisho-entry-id", v);
        }
        if p.route.level == Level::Patient {
            // R-OPS-3: patient data is not kept on the terminal.
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        let mut outcome = rec;
        outcome.event = sekisho_audit::Event::Outcome;
        outcome.time = String::new();
        outcome.upstream_status = Some(status.as_u16());
        self.audit.append_nowait(outcome);
        self.metrics
            .request("permit", "ok", started.elapsed().as_secs_f64());
        resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed())
    }

    /// A permitted request that could not be completed: the outcome is audited, the person
    /// gets a page, never an upstream response.
    fn outcome_refusal(
        &self,
        rec: AuditRecord,
        reason: &'static str,
        request_id: &str,
        wants_json: bool,
        started: Instant,
    ) -> Response<Body> {
        let mut outcome = rec;
        outcome.event = sekisho_audit::Event::Outcome;
        outcome.time = String::new();
        outcome.reason = reason.into();
        let resp = refusal::response(reason, request_id, wants_json);
        outcome.upstream_status = Some(resp.status().as_u16());
        self.audit.append_nowait(outcome);
        self.metrics
            .request("error", reason, started.elapsed().as_secs_f64());
        resp
    }

    fn spawn_tunnel(
        &self,
        client: hyper::upgrade::OnUpgrade,
        upstream: hyper::upgrade::OnUpgrade,
        serial: Option<String>,
        request_id: String,
    ) {
        // The tunnel outlives the HTTP connection task, so it holds its own place in the
        // connection registry: revoking the terminal closes the WebSocket too.
        let guard = serial.map(|s| self.registry.track(&s));
        tokio::spawn(async move {
            let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
                debug!(request_id, "upgrade did not complete");
                return;
            };
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            let revoked = async {
                match &guard {
                    Some(g) => g.revoked().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                _ = revoked => info!(request_id, "closing a WebSocket whose terminal lost access"),
            }
        });
    }
}

impl ConnCtx {
    fn serial(&self) -> Option<&str> {
        match &self.identity {
            Identity::Terminal { serial, .. } | Identity::Invalid { serial } => Some(serial),
            Identity::None => None,
        }
    }
    fn terminal(&self) -> Option<&TerminalId> {
        match &self.identity {
            Identity::Terminal { id, .. } => Some(id),
            _ => None,
        }
    }
}

fn identify(certs: Option<&[CertificateDer<'static>]>) -> Identity {
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
