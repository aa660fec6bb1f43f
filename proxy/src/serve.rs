//! `sekisho serve`: builds the gateway from a data dir, starts the three listeners (terminals,
//! enrollment, management) and the watcher that keeps the registry and the CRL current.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use sekisho_policies::RouteMap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::assertion::AssertionSigner;
use crate::config::{Config, DataDir};
use crate::enrollment::{self, EnrollService};
use crate::forward::Forwarder;
use crate::gateway::{self, Gateway};
use crate::metrics::Metrics;
use crate::mgmt::{self, Management};
use crate::registry::Registry;
use crate::terminals;
use crate::tls::{TerminalTls, TlsMaterial};
use sekisho_audit::{AuditConfig, AuditLog, CheckpointKey};
use sekisho_store::{Store, crl as crl_store, now};

/// How often the store's change counter is polled: a CLI change reaches the gateway within this.
const POLL: Duration = Duration::from_millis(250);

pub struct Running {
    pub gateway: SocketAddr,
    pub enroll: SocketAddr,
    pub management: SocketAddr,
    shutdown: watch::Sender<bool>,
    audit: AuditLog,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish (up to `grace`), flushes the audit log.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, futures_join(self.tasks)).await;
        self.audit.shutdown().await;
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what} (is another program using it?)")
    })
}

/// Audit checkpoint origin and signer name: one log per network, whatever the node.
pub fn audit_origin(cfg: &Config) -> String {
    format!("sekisho.{}/audit", cfg.hostname)
}

pub async fn open_audit(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    metrics: &Metrics,
) -> Result<AuditLog> {
    let origin = audit_origin(cfg);
    let key = CheckpointKey::load_or_create(&dd.audit_dir(), &origin)?;
    AuditLog::open(
        store.clone(),
        key,
        AuditConfig {
            max_batch: cfg.audit.max_batch.max(1),
            max_wait: Duration::from_micros(cfg.audit.max_wait_us),
            node: cfg.node.clone(),
            origin,
        },
        metrics.audit.clone(),
    )
    .await
}

pub async fn start(data_dir: &Path) -> Result<Running> {
    let dd = DataDir::new(data_dir);
    let cfg = Config::load(data_dir)?;
    let store = Store::open(&cfg.store_url(data_dir)).await?;
    let ca = match terminals::load_authority(&dd) {
        Ok(a) => Some(a),
        Err(e) => {
            warn!("{e:#}: enrollment and CRL re-signing are off until the CA can be loaded");
            None
        }
    };
    let crl = terminals::ensure_crl(&store, ca.as_ref(), &cfg.ca).await?;
    let tunnel = match &cfg.tunnel {
        Some(t) => Some(start_tunnel(&store, t, data_dir).await?),
        None => None,
    };
    let mut metrics = Metrics::new();
    if let Some(t) = &tunnel {
        metrics.register_tunnel(t.clone());
    }
    let metrics = Arc::new(metrics);
    let audit = open_audit(&dd, &cfg, &store, &metrics).await?;
    let registry = Registry::load(&store).await?;
    let sessions = Arc::new(crate::sessions::Sessions::default());
    sessions.reload(&store).await?;
    let hpki = crate::login::HpkiTrust::load(cfg.hpki.clone(), data_dir.to_path_buf())?;
    registry.set_crl_current(crl.next_update > now());
    let material = TlsMaterial::load(&dd)?;
    let enroll_tls = material.enroll_config()?;
    let tls = Arc::new(TerminalTls::new(material, &crl.der, crl.number)?);
    let audience = match &cfg.upstream.assertion_audience {
        Some(a) => a.clone(),
        None => {
            let u: http::Uri = cfg.upstream.url.parse()?;
            format!(
                "{}://{}",
                u.scheme_str().unwrap_or("http"),
                u.authority().map(|a| a.as_str()).unwrap_or("")
            )
        }
    };
    let signer = AssertionSigner::load_or_create(
        &dd.assertion_key(),
        &dd.jwks(),
        format!("https://{}", cfg.hostname),
        audience,
    )?;
    let jwks = serde_json::to_string_pretty(&signer.jwks())?;
    let forwarder = Forwarder::new(&cfg.upstream, data_dir)?;
    let routes = RouteMap::new(cfg.routes.clone())?;

    let gw_listener = bind(cfg.listen.gateway, "terminal listener").await?;
    let enroll_listener = bind(cfg.listen.enroll, "enrollment listener").await?;
    let mgmt_listener = bind(cfg.listen.management, "management listener").await?;
    let addrs = (
        gw_listener.local_addr()?,
        enroll_listener.local_addr()?,
        mgmt_listener.local_addr()?,
    );

    let (shutdown, rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(crl.next_update > now()));
    let login = Arc::new(crate::login::Login {
        cfg: cfg.clone(),
        store: store.clone(),
        audit: audit.clone(),
        sessions: sessions.clone(),
        hpki,
    });
    let authorizer = Arc::new(crate::authorize::Authorizer::load(
        data_dir.join(&cfg.policy.dir),
        cfg.policy.require_patient_card,
        cfg.policy.card_presence_seconds,
    )?);
    let consent = Arc::new(crate::consent::ConsentDesk::new(
        cfg.clone(),
        store.clone(),
        audit.clone(),
        sessions.clone(),
        dd.ca_dir(),
    ));
    let gw = Arc::new(Gateway {
        tunnel: match (&tunnel, &cfg.tunnel) {
            (Some(t), Some(c)) => Some(crate::gateway::TunnelBinding {
                tunnel: t.clone(),
                address: c.subnet()?.gateway,
                required: c.require_tunnel,
            }),
            _ => None,
        },
        consent,
        authorizer: authorizer.clone(),
        store: store.clone(),
        sessions: sessions.clone(),
        login: login.clone(),
        cfg: cfg.clone(),
        routes,
        registry: registry.clone(),
        tls: tls.clone(),
        audit: audit.clone(),
        signer,
        forwarder,
        metrics: metrics.clone(),
    });
    let enroll = Arc::new(EnrollService {
        tunnel_public_key: tunnel.as_ref().map(|t| t.public_key()),
        store: store.clone(),
        ca,
        cfg: cfg.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
    });
    let management = Arc::new(Management {
        metrics: metrics.clone(),
        jwks,
        store: store.clone(),
        ready: ready.clone(),
    });
    let tasks = vec![
        tokio::spawn(gateway::run(gw, gw_listener, rx.clone())),
        tokio::spawn(enrollment::run(
            enroll.clone(),
            enroll_listener,
            enroll_tls,
            rx.clone(),
        )),
        tokio::spawn(mgmt::run(management, mgmt_listener, rx.clone())),
    ];
    tokio::spawn(crate::crl_fetch::run(login.clone(), rx.clone()));
    tokio::spawn(watch_store(
        store, registry, sessions, login, authorizer, tls, enroll, tunnel, ready, rx,
    ));
    info!(gateway = %addrs.0, enroll = %addrs.1, management = %addrs.2, upstream = %cfg.upstream.url, "sekisho is serving");
    Ok(Running {
        gateway: addrs.0,
        enroll: addrs.1,
        management: addrs.2,
        shutdown,
        audit,
        tasks,
    })
}

/// Polls the change counter; on a change reloads the registry (closing connections that lost
/// access) and installs a newer CRL. Re-signs the CRL before it runs out, and fails closed
/// (refuses everyone) once it has.
#[allow(clippy::too_many_arguments)]
async fn watch_store(
    store: Store,
    registry: Arc<Registry>,
    sessions: Arc<crate::sessions::Sessions>,
    login: Arc<crate::login::Login>,
    authorizer: Arc<crate::authorize::Authorizer>,
    tls: Arc<TerminalTls>,
    enroll: Arc<EnrollService>,
    tunnel: Option<sekisho_tunnel::Tunnel>,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_crl_check = tokio::time::Instant::now();
    let mut last_unused_check: Option<tokio::time::Instant> = None;
    let mut next_update = i64::MIN;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(()) = hangup => {
                info!("SIGHUP: re-reading the policy set");
                authorizer.reload_now();
            }
            _ = shutdown.changed() => return,
        }
        // Store trouble skips the reload, never the CRL-expiry check below: an expired CRL
        // must close connections even when the store cannot be read.
        'reload: {
            let generation = match store.generation().await {
                Ok(g) => g,
                Err(e) => {
                    warn!(error = %e, "cannot read the store's change counter");
                    break 'reload;
                }
            };
            if generation != registry.generation() {
                match crl_store::current(&store).await {
                    Ok(Some(c)) => {
                        next_update = c.next_update;
                        match tls.update_crl(&c.der, c.number) {
                            Ok(true) => info!(crl_number = c.number, "installed a new CRL"),
                            Ok(false) => {}
                            Err(e) => {
                                error!(error = %e, "refusing an invalid CRL; the last good one stays")
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "cannot read the CRL"),
                }
                // The registry after the CRL: when a revoked terminal's connections are closed
                // below, its reconnection already meets the new CRL in the handshake.
                if let Err(e) = registry.reload_at(&store, generation).await {
                    error!(error = %e, "cannot reload the terminal registry");
                    break 'reload;
                }
                if let Err(e) = sessions.reload(&store).await {
                    error!(error = %e, "cannot reload the sessions");
                }
                // A revoked or suspended terminal's peer goes with it: its tunnel stops at once.
                if let Some(t) = &tunnel
                    && let Err(e) = sync_peers(&store, t).await
                {
                    error!(error = %e, "cannot reload the tunnel peers");
                }
            }
        }
        login.hpki.reload_logged();
        authorizer.reload_if_changed();
        if last_unused_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_unused_check = Some(tokio::time::Instant::now());
            suspend_unused(&login).await;
        }
        if last_crl_check.elapsed() >= Duration::from_secs(60) || next_update == i64::MIN {
            last_crl_check = tokio::time::Instant::now();
            match terminals::ensure_crl(&store, enroll.ca.as_ref(), &enroll.cfg.ca).await {
                Ok(c) => next_update = c.next_update,
                Err(e) => warn!(error = %e, "cannot re-sign the CRL"),
            }
        }
        let current = next_update > now();
        if registry.set_crl_current(current) && !current {
            error!("the CRL has expired: every terminal is refused until a new one is signed");
        }
        ready.store(current, Ordering::Release);
    }
}

/// R-ACCT-7: accounts nobody has used for the configured time are suspended (and audited).
async fn suspend_unused(login: &crate::login::Login) {
    let days = i64::from(login.cfg.signin.suspend_unused_days);
    if days == 0 {
        return;
    }
    match sekisho_store::users::suspend_unused(&login.store, days).await {
        Ok(ids) => {
            for id in ids {
                info!(user = %id, days, "suspended an unused account");
                login.audit.append_nowait(sekisho_audit::AuditRecord {
                    request_id: sekisho_protocol::new_request_id(),
                    event: sekisho_audit::Event::Registry,
                    user: Some(id),
                    decision: sekisho_audit::Decision::Permit,
                    reason: "user_suspended_unused".into(),
                    detail: Some(format!("no sign-in for {days} days")),
                    ..Default::default()
                });
            }
        }
        Err(e) => warn!(error = %e, "cannot check for unused accounts"),
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(data_dir: &Path) -> Result<()> {
    let running = start(data_dir).await?;
    shutdown_signal().await;
    info!("shutting down");
    running.stop(Duration::from_secs(10)).await;
    Ok(())
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Starts the WireGuard endpoint with the peers of the active terminals.
async fn start_tunnel(
    store: &Store,
    cfg: &crate::config::Tunnel,
    data_dir: &Path,
) -> Result<sekisho_tunnel::Tunnel> {
    use sekisho_tunnel::{Tunnel, TunnelConfig, keys};
    let subnet = cfg.subnet()?;
    let key = keys::load_or_create_private_key(&data_dir.join(&cfg.private_key))?;
    let t = Tunnel::start(
        TunnelConfig::new(&cfg.interface, cfg.listen, subnet.gateway, subnet.prefix),
        key,
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the WireGuard endpoint on {} ({}); it needs CAP_NET_ADMIN and /dev/net/tun",
            cfg.listen, cfg.interface
        )
    })?;
    sync_peers(store, &t).await?;
    Ok(t)
}

/// Makes the endpoint's peers those of the store's active terminals.
async fn sync_peers(store: &Store, t: &sekisho_tunnel::Tunnel) -> Result<()> {
    let mut peers = Vec::new();
    for p in sekisho_store::tunnel_peers::active(store).await? {
        match sekisho_tunnel::keys::decode(&p.public_key) {
            Ok(public_key) => peers.push(sekisho_tunnel::PeerSpec {
                terminal: p.terminal,
                public_key,
                address: p.address,
            }),
            Err(e) => warn!(terminal = %p.terminal, error = %e, "unusable tunnel key: no peer"),
        }
    }
    t.set_peers(peers);
    Ok(())
}
