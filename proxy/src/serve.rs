//! `sekisho serve`: builds the gateway from a data dir, starts the three listeners (terminals,
//! enrollment, management), the watcher that keeps the registry, sessions, CRL, tunnel
//! peers and policies current (`watch.rs`), the notification sender when `[notify]` has
//! channels, the copier of signed checkpoints to `[[audit.witness]]`, and the daily prune of
//! audit records past their retention (`retention.rs`), and the sweep that ends idle sessions and
//! card sessions whose presence proofs stopped (`lapse.rs`). It raises its own file-descriptor limit
//! to what `limits.max_connections` needs (`descriptors.rs`).

pub mod descriptors;
mod lapse;
mod retention;
pub mod systemd;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use sekisho_audit::witness::WitnessPump;
use sekisho_audit::{AuditConfig, AuditLog, CheckpointKey};
use sekisho_export::ExportPump;
use sekisho_policies::RouteMap;
use sekisho_store::{Store, now};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tracing::{info, warn};

use crate::assertion::AssertionSigner;
use crate::breakglass::{DeskParts, EmergencyDesk};
use crate::config::{Config, DataDir};
use crate::consent::ConsentDesk;
use crate::console::{Console, ConsoleParts};
use crate::enrollment::{self, EnrollService};
use crate::gateway::{self, Gateway, GatewayParts, TunnelBinding};
use crate::metrics::Metrics;
use crate::mgmt::{self, Management};
use crate::notify::Notifier;
use crate::patients::PatientView;
use crate::policy::Authorizer;
use crate::registry::Registry;
use crate::sessions::Sessions;
use crate::signin::{HpkiTrust, SignIn, crl_fetch};
use crate::terminals;
use crate::tls::{TerminalTls, TlsMaterial};
use crate::upstream::Upstream;
use watch::Watcher;

pub struct Running {
    pub gateway: SocketAddr,
    pub enroll: SocketAddr,
    pub management: SocketAddr,
    /// Where the gateway's parts enqueue notices for security officers.
    pub notifier: Arc<Notifier>,
    shutdown: signal::Sender<bool>,
    audit: AuditLog,
    witnesses: WitnessPump,
    exports: ExportPump,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish (up to `grace`), flushes the audit log, and
    /// gives the witnesses the last checkpoint (up to 3 s) and the export destinations the last
    /// records (up to 5 s; what does not make it goes after the next start, from the cursor).
    pub async fn stop(self, grace: Duration) {
        systemd::notify("STOPPING=1");
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, join_all(self.tasks)).await;
        self.audit.shutdown().await;
        self.witnesses.stop(Duration::from_secs(3)).await;
        self.exports.stop(Duration::from_secs(5)).await;
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
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

/// The audit log as commands write it: each batch's store transaction is its durability point
/// (a command appends a record or two, and must not touch a running gateway's journal).
pub async fn open_audit(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    metrics: &Metrics,
) -> Result<AuditLog> {
    open_audit_with(dd, cfg, store, metrics, None).await
}

/// The audit log as the gateway writes it: through this node's journal unless `[audit]
/// journal = false`.
async fn open_gateway_audit(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    metrics: &Metrics,
) -> Result<AuditLog> {
    let journal = cfg
        .audit
        .journal
        .then(|| sekisho_audit::journal::dir_for(&dd.audit_dir(), &cfg.node));
    open_audit_with(dd, cfg, store, metrics, journal).await
}

async fn open_audit_with(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    metrics: &Metrics,
    journal: Option<std::path::PathBuf>,
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
            journal,
        },
        metrics.audit.clone(),
    )
    .await
}

/// The keys the console checks checkpoints with: this node's, those of the other replicas
/// listed beside it in `audit/checkpoint.pub`, and retired ones (as `sekisho audit verify`
/// reads them).
fn checkpoint_verifiers(dd: &DataDir) -> Vec<sekisho_audit::Verifier> {
    sekisho_audit::checkpoint::verifier_keys(&dd.audit_dir())
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|k| sekisho_audit::Verifier::parse(k).ok())
        .collect()
}

/// The audience of the assertion: the configured one, or the upstream's origin.
fn assertion_audience(cfg: &Config) -> Result<String> {
    if let Some(a) = &cfg.upstream.assertion_audience {
        return Ok(a.clone());
    }
    let u: http::Uri = cfg.upstream.url.parse()?;
    Ok(format!(
        "{}://{}",
        u.scheme_str().unwrap_or("http"),
        u.authority().map(|a| a.as_str()).unwrap_or("")
    ))
}

pub async fn start(data_dir: &Path) -> Result<Running> {
    let dd = DataDir::new(data_dir);
    let cfg = Config::load(data_dir)?;
    descriptors::raise(cfg.limits.max_connections);
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
        Some(t) => Some(gateway::tunnel::start(&store, t, data_dir).await?),
        None => None,
    };
    let mut metrics = Metrics::new();
    if let Some(t) = &tunnel {
        metrics.register_tunnel(t.clone());
    }
    let metrics = Arc::new(metrics);
    let audit = open_gateway_audit(&dd, &cfg, &store, &metrics).await?;
    let witnesses = start_witnesses(&cfg, data_dir, &store, &audit, &metrics)?;
    let exports = start_exports(&cfg, data_dir, &store, &audit, &metrics)?;
    // Given as `Arc<Notifier>` to the parts that tell officers (break-glass, anomalies).
    let notifier = Arc::new(Notifier::from_config(
        cfg.notify.as_ref(),
        data_dir,
        &cfg.hostname,
        &cfg.node,
        store.clone(),
        metrics.notify.clone(),
    )?);
    let registry = Registry::load(&store).await?;
    let notices = crate::notices::NoticeBoard::load(&store).await?;
    let sessions = Arc::new(Sessions::new(cfg.signin.limits()));
    sessions.reload(&store).await?;
    let patients = Arc::new(
        PatientView::load(
            &store,
            Duration::from_secs(u64::from(cfg.policy.facts_max_age_secs.max(1))),
        )
        .await?,
    );
    let hpki = Arc::new(HpkiTrust::load(cfg.hpki.clone(), data_dir.to_path_buf())?);
    registry.set_crl_current(crl.next_update > now());
    let material = TlsMaterial::load(&dd)?;
    let enroll_tls = material.enroll_config()?;
    let tls = Arc::new(TerminalTls::new(material, &crl.all(), crl.number)?);
    let signer = AssertionSigner::load_or_create(
        &dd.assertion_key(),
        &dd.jwks(),
        format!("https://{}", cfg.hostname),
        assertion_audience(&cfg)?,
    )?;
    let jwks = serde_json::to_string_pretty(&signer.jwks())?;
    let upstream = Upstream::new(&cfg.upstream, data_dir)?;
    let routes = RouteMap::new(cfg.routes.clone())?;

    let gw_listener = bind(cfg.listen.gateway, "terminal listener").await?;
    let enroll_listener = bind(cfg.listen.enroll, "enrollment listener").await?;
    let mgmt_listener = bind(cfg.listen.management, "management listener").await?;
    let addrs = (
        gw_listener.local_addr()?,
        enroll_listener.local_addr()?,
        mgmt_listener.local_addr()?,
    );

    let (shutdown, rx) = signal::channel(false);
    let ready = Arc::new(AtomicBool::new(crl.next_update > now()));
    let throttle = Arc::new(crate::throttle::Throttle::new(
        &cfg.rate_limits,
        metrics.clone(),
    ));
    let signin = Arc::new(SignIn::new(
        cfg.clone(),
        store.clone(),
        audit.clone(),
        sessions.clone(),
        hpki.clone(),
        throttle.clone(),
    ));
    let policy = Arc::new(Authorizer::load(
        data_dir.join(&cfg.policy.dir),
        cfg.policy.require_patient_card,
        cfg.policy.card_presence_seconds,
    )?);
    let consent = Arc::new(ConsentDesk::new(
        cfg.clone(),
        store.clone(),
        audit.clone(),
        sessions.clone(),
        patients.clone(),
        dd.ca_dir(),
    ));
    let emergency = Arc::new(EmergencyDesk::new(DeskParts {
        cfg: cfg.clone(),
        store: store.clone(),
        audit: audit.clone(),
        sessions: sessions.clone(),
        patients: patients.clone(),
        policy: policy.clone(),
        hpki: hpki.clone(),
        notifier: notifier.clone(),
        evidence_dir: data_dir.join("break-glass"),
    }));
    let binding = match (&tunnel, &cfg.tunnel) {
        (Some(t), Some(c)) => Some(TunnelBinding::new(
            t.clone(),
            c.subnet()?.gateway,
            c.require_tunnel,
        )),
        _ => None,
    };
    let pin_key = crate::enrollment::PinKey::load_or_create(data_dir)?;
    let console = Arc::new(Console::new(ConsoleParts {
        pin_key: pin_key.clone(),
        cfg: cfg.clone(),
        store: store.clone(),
        audit: audit.clone(),
        sessions: sessions.clone(),
        policy: policy.clone(),
        signin: signin.clone(),
        verifiers: checkpoint_verifiers(&dd),
        idle_seconds: cfg.console.idle_seconds,
        follow_up_hours: cfg.break_glass.follow_up_hours,
    }));
    let gw = Arc::new(Gateway::new(GatewayParts {
        cfg: cfg.clone(),
        routes,
        registry: registry.clone(),
        tls: tls.clone(),
        sessions: sessions.clone(),
        signin: signin.clone(),
        consent,
        emergency,
        console,
        policy: policy.clone(),
        patients: patients.clone(),
        notices: notices.clone(),
        store: store.clone(),
        audit: audit.clone(),
        signer,
        upstream,
        metrics: metrics.clone(),
        tunnel: binding,
        throttle: throttle.clone(),
    }));
    let enroll = Arc::new(EnrollService::new(
        cfg.clone(),
        store.clone(),
        audit.clone(),
        metrics.clone(),
        ca,
        tunnel.as_ref().map(|t| t.public_key()),
        pin_key.clone(),
        throttle.clone(),
    ));
    let management = Arc::new(Management::new(
        metrics.clone(),
        jwks,
        store.clone(),
        ready.clone(),
        audit.clone(),
        checkpoint_verifiers(&dd),
        cfg.node.clone(),
        throttle.clone(),
    ));
    let mut tasks = vec![
        tokio::spawn(gateway::run(gw, gw_listener, rx.clone())),
        tokio::spawn(enrollment::run(
            enroll.clone(),
            enroll_listener,
            enroll_tls,
            rx.clone(),
        )),
        tokio::spawn(mgmt::run(management, mgmt_listener, rx.clone())),
    ];
    if notifier.has_channels() {
        // Among the tasks `stop` waits for, so an attempt in progress can finish.
        tasks.push(tokio::spawn(notifier.clone().run(rx.clone())));
    }
    tokio::spawn(crl_fetch::run(hpki.clone(), rx.clone()));
    tokio::spawn(lapse::run(
        store.clone(),
        audit.clone(),
        sessions.clone(),
        rx.clone(),
    ));
    tokio::spawn(retention::run(
        cfg.clone(),
        store.clone(),
        audit.clone(),
        rx.clone(),
    ));
    let watcher = Watcher {
        cfg: cfg.clone(),
        store,
        audit: audit.clone(),
        registry,
        sessions,
        patients,
        notices,
        hpki,
        policy,
        tls,
        enroll,
        tunnel,
        ready,
        crl_next_update: crl.next_update,
        metrics: metrics.clone(),
        notifier: notifier.clone(),
        retry: AtomicBool::new(false),
    };
    tokio::spawn(watcher.run(rx));
    info!(gateway = %addrs.0, enroll = %addrs.1, management = %addrs.2, upstream = %cfg.upstream.url, "sekisho is serving");
    systemd::notify(&format!(
        "READY=1\nSTATUS=serving terminals on {}, node {}",
        addrs.0, cfg.node
    ));
    Ok(Running {
        gateway: addrs.0,
        enroll: addrs.1,
        management: addrs.2,
        notifier,
        shutdown,
        audit,
        witnesses,
        exports,
        tasks,
    })
}

/// The copier of signed checkpoints to `[[audit.witness]]` (none configured: it does nothing).
/// The writer only sets a watch channel after each commit; copying never holds up a request.
fn start_witnesses(
    cfg: &Config,
    data_dir: &Path,
    store: &Store,
    audit: &AuditLog,
    metrics: &Metrics,
) -> Result<WitnessPump> {
    let pump = crate::config::witness::pump_config(&cfg.audit);
    let witnesses = cfg
        .audit
        .witnesses
        .iter()
        .map(|w| w.build(data_dir, pump.timeout))
        .collect::<Result<Vec<_>>>()?;
    for w in &witnesses {
        info!(
            witness = w.name(),
            "audit checkpoints are copied to this witness"
        );
    }
    Ok(WitnessPump::start(
        store.clone(),
        audit.checkpoints(),
        witnesses,
        pump,
        metrics.audit.witness.clone(),
    ))
}

/// The audit export to `[[audit.export]]` (none configured: it does nothing). Every replica
/// runs it; the one holding a destination's lease exports to it.
fn start_exports(
    cfg: &Config,
    data_dir: &Path,
    store: &Store,
    audit: &AuditLog,
    metrics: &Metrics,
) -> Result<ExportPump> {
    use crate::config::export;
    let destinations = cfg
        .audit
        .exports
        .iter()
        .map(|e| e.build(data_dir, &cfg.node, &cfg.audit))
        .collect::<Result<Vec<_>>>()?;
    for d in &destinations {
        info!(
            destination = %d.name,
            format = d.format.as_str(),
            "the audit log is exported to this destination"
        );
    }
    Ok(ExportPump::start(
        store.clone(),
        export::identity(cfg, &cfg.node, &audit_origin(cfg)),
        audit.checkpoints(),
        destinations,
        export::pump_config(&cfg.audit),
        metrics.export.clone(),
    ))
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
