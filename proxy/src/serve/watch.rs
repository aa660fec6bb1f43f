//! What keeps a running gateway current without a restart. Every 250 ms it polls the store's
//! change counter; when it moved: a newer CRL is installed, then the registry is reloaded
//! (closing connections that lost access, R-TERM-4), then sessions, notices and maintenance
//! windows, and tunnel peers; patient
//! facts follow the change log. It also
//! re-reads HPKI trust and the policy set when their files change (SIGHUP forces the policy),
//! suspends accounts unused for the configured time (R-ACCT-7), scans for anomalies (R-LOG-3,
//! `crate::oversight::anomaly`), re-signs the CRL before it
//! runs out, and fails closed — refuses everyone — once it has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sekisho_audit::{AuditLog, AuditRecord, Decision, Event};
use sekisho_store::{Store, crl as crl_store, now};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::enrollment::EnrollService;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::patients::PatientView;
use crate::policy::Authorizer;
use crate::registry::Registry;
use crate::sessions::Sessions;
use crate::signin::HpkiTrust;
use crate::terminals;
use crate::tls::TerminalTls;

/// How often the store's change counter is polled: a CLI change reaches the gateway within this.
const POLL: Duration = Duration::from_millis(250);

/// The parts of a running gateway that the watcher keeps current.
pub(super) struct Watcher {
    pub cfg: Config,
    pub store: Store,
    pub audit: AuditLog,
    pub registry: Arc<Registry>,
    pub sessions: Arc<Sessions>,
    pub patients: Arc<PatientView>,
    pub notices: Arc<crate::notices::NoticeBoard>,
    pub hpki: Arc<HpkiTrust>,
    pub policy: Arc<Authorizer>,
    pub tls: Arc<TerminalTls>,
    pub enroll: Arc<EnrollService>,
    pub tunnel: Option<sekisho_tunnel::Tunnel>,
    /// What `/readyz` reports.
    pub ready: Arc<AtomicBool>,
    /// The next update of the CRL the gateway started with: until the watcher reads a newer
    /// one, expiry is judged by it (a store lost right after the start is not an expired CRL).
    pub crl_next_update: i64,
    pub metrics: Arc<Metrics>,
    pub notifier: Arc<Notifier>,
    /// Set when a reload after a change failed: the next poll reloads again even though the
    /// change counter has not moved since.
    pub retry: AtomicBool,
}

impl Watcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_crl_check = tokio::time::Instant::now();
        let mut last_break_glass: Option<tokio::time::Instant> = None;
        let mut last_unused_check: Option<tokio::time::Instant> = None;
        let mut last_anomaly_scan: Option<tokio::time::Instant> = None;
        // The audit log's search columns of older records, filled a range a tick from the top.
        let mut backfill_below: Option<i64> =
            sqlx::query_scalar::<_, i64>("SELECT tree_size FROM audit_head WHERE id = 1")
                .fetch_one(self.store.pool())
                .await
                .ok();
        let anomaly_every = Duration::from_secs(u64::from(self.cfg.anomaly.scan_seconds.max(1)));
        let mut next_update = self.crl_next_update;
        let mut crl_checked = false;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // systemd's watchdog is fed from this loop: if it stalls, systemd restarts the gateway.
        let watchdog = super::systemd::watchdog_every();
        let mut last_watchdog = tokio::time::Instant::now();
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
                    self.policy.reload_now();
                }
                _ = shutdown.changed() => return,
            }
            self.hpki.reload_logged();
            self.policy.reload_if_changed();
            // Store trouble skips the store's work, never the CRL-expiry check below: an expired
            // CRL must close connections even when the store cannot be read. While the audit
            // writer knows the store to be down, each step would only wait out the pool's
            // timeout (the loop took a minute, starving systemd's watchdog).
            'store: {
                if self.audit.store_unreachable() {
                    break 'store;
                }
                if let Some(n) = self.reload_if_changed().await {
                    next_update = n;
                }
                if last_unused_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    last_unused_check = Some(tokio::time::Instant::now());
                    self.suspend_unused().await;
                    self.renotify_unreviewed().await;
                    // A replica that is behind by more than a day reloads its facts whole.
                    if let Err(e) = sekisho_store::changes::prune(&self.store, now() - 86_400).await
                    {
                        warn!(error = %e, "cannot prune the change log");
                    }
                }
                if last_break_glass.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_break_glass = Some(tokio::time::Instant::now());
                    self.break_glass_rounds().await;
                }
                if let Some(below) = backfill_below {
                    backfill_below =
                        match sekisho_audit::search::backfill(&self.store, below, 20_000).await {
                            Ok(next) => next,
                            Err(e) => {
                                warn!(error = %e, "cannot fill the audit log's search columns");
                                Some(below)
                            }
                        };
                }
                if last_anomaly_scan.is_none_or(|t| t.elapsed() >= anomaly_every) {
                    last_anomaly_scan = Some(tokio::time::Instant::now());
                    if let Err(e) = crate::oversight::anomaly::scan(
                        &self.store,
                        &self.cfg.anomaly,
                        &self.notifier,
                        &self.audit,
                        &self.metrics,
                    )
                    .await
                    {
                        warn!(error = %e, "cannot scan for anomalies");
                    }
                }
                if last_crl_check.elapsed() >= Duration::from_secs(60) || !crl_checked {
                    last_crl_check = tokio::time::Instant::now();
                    crl_checked = true;
                    match terminals::ensure_crl(&self.store, self.enroll.ca(), &self.cfg.ca).await {
                        Ok(c) => next_update = c.next_update,
                        Err(e) => warn!(error = %e, "cannot re-sign the CRL"),
                    }
                }
            }
            let current = next_update > now();
            if self.registry.set_crl_current(current) && !current {
                error!("the CRL has expired: every terminal is refused until a new one is signed");
            }
            self.ready.store(current, Ordering::Release);
            if let Some(every) = watchdog
                && last_watchdog.elapsed() >= every
            {
                last_watchdog = tokio::time::Instant::now();
                super::systemd::notify("WATCHDOG=1");
            }
        }
    }

    /// When the change counter moved: the CRL, then the registry, sessions and tunnel peers.
    /// Returns the installed CRL's next update when it read one.
    async fn reload_if_changed(&self) -> Option<i64> {
        let generation = match self.store.generation().await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "cannot read the store's change counter");
                return None;
            }
        };
        if generation == self.registry.generation() && !self.retry.swap(false, Ordering::AcqRel) {
            self.patients.mark_read();
            return None;
        }
        // Patient facts first: a withdrawal must not wait for the rest.
        if let Err(e) = self.patients.catch_up(&self.store).await {
            error!(error = %e, "cannot apply patient changes; patient requests are refused until it works");
        }
        let mut next_update = None;
        match crl_store::current(&self.store).await {
            Ok(Some(c)) => {
                next_update = Some(c.next_update);
                match self.tls.update_crl(&c.all(), c.number) {
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
        // The registry after the CRL: when a revoked terminal's connections are closed below,
        // its reconnection already meets the new CRL in the handshake.
        if let Err(e) = self.registry.reload_at(&self.store, generation).await {
            error!(error = %e, "cannot reload the terminal registry");
            self.retry.store(true, Ordering::Release);
            return next_update;
        }
        if let Err(e) = self.sessions.reload(&self.store).await {
            error!(error = %e, "cannot reload the sessions; trying again at the next poll");
            self.retry.store(true, Ordering::Release);
        }
        if let Err(e) = self.notices.reload(&self.store).await {
            error!(error = %e, "cannot reload the notices and maintenance windows; trying again at the next poll");
            self.retry.store(true, Ordering::Release);
        }
        // A revoked or suspended terminal's peer goes with it: its tunnel stops at once.
        if let Some(t) = &self.tunnel
            && let Err(e) = crate::gateway::tunnel::sync_peers(&self.store, t).await
        {
            error!(error = %e, "cannot reload the tunnel peers; trying again at the next poll");
            self.retry.store(true, Ordering::Release);
        }
        next_update
    }

    /// Emergency grants past their time end (their patients' facts follow through the change
    /// log); the gauges officers watch are counted.
    async fn break_glass_rounds(&self) {
        use sekisho_store::break_glass::{self as bg, status};
        if let Err(e) = bg::expire(&self.store).await {
            warn!(error = %e, "cannot expire emergency grants");
        }
        let all = match bg::list(&self.store, &[], None, 10_000).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cannot count emergency declarations");
                return;
            }
        };
        let t = now();
        let bgc = &self.cfg.break_glass;
        let declared = || all.iter().filter(|d| d.declared_at.is_some());
        let overdue_review = i64::from(bgc.unreviewed_days) * 86_400;
        for (state, n) in [
            ("active", all.iter().filter(|d| d.grants_at(t)).count()),
            (
                "awaiting_approval",
                all.iter()
                    .filter(|d| d.status == status::AWAITING_APPROVAL)
                    .count(),
            ),
            (
                "unreviewed",
                declared().filter(|d| d.review_finding.is_none()).count(),
            ),
            (
                "unreviewed_overdue",
                declared()
                    .filter(|d| {
                        d.review_finding.is_none()
                            && d.declared_at.is_some_and(|at| t - at > overdue_review)
                    })
                    .count(),
            ),
            (
                "follow_up_overdue",
                declared()
                    .filter(|d| d.follow_up_overdue(t, i64::from(bgc.follow_up_hours)))
                    .count(),
            ),
        ] {
            self.metrics
                .break_glass
                .get_or_create(&vec![("state", state)])
                .set(n as i64);
        }
    }

    /// Declarations left unreviewed for `break_glass.unreviewed_days` are told to the officers
    /// again (once per that period; R-BG-3).
    async fn renotify_unreviewed(&self) {
        let days = i64::from(self.cfg.break_glass.unreviewed_days.max(1));
        let due = match sekisho_store::break_glass::take_unreviewed(&self.store, days).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot find unreviewed declarations");
                return;
            }
        };
        for d in due {
            let notice = crate::notify::Notice {
                kind: crate::notify::kind::BREAK_GLASS_UNREVIEWED.into(),
                subject_ja: format!("未確認の緊急時アクセス {}（{days}日以上）", d.id),
                subject_en: format!(
                    "Emergency access {} unreviewed for {days} days or more",
                    d.id
                ),
                text: format!(
                    "緊急時アクセスの宣言 {id}（医師 {user}、患者 {patient}）がまだ確認されていません。\nsekisho breakglass review --id {id}\n\n\
                     Emergency declaration {id} (physician {user}, patient {patient}) is still unreviewed.\nsekisho breakglass review --id {id}\n",
                    id = d.id,
                    user = d.user_id,
                    patient = d.patient_id.as_deref().unwrap_or("-"),
                ),
                data: serde_json::json!({"declaration": d.id, "user": d.user_id, "patient": d.patient_id, "days": days}),
            };
            if let Err(e) = self.notifier.enqueue(notice).await {
                warn!(error = %e, declaration = %d.id, "cannot notify an unreviewed declaration");
            }
        }
    }

    /// R-ACCT-7: accounts nobody has used for the configured time are suspended (and audited).
    async fn suspend_unused(&self) {
        let days = i64::from(self.cfg.signin.suspend_unused_days);
        if days == 0 {
            return;
        }
        match sekisho_store::users::suspend_unused(&self.store, days).await {
            Ok(ids) => {
                for id in ids {
                    info!(user = %id, days, "suspended an unused account");
                    self.audit.append_nowait(AuditRecord {
                        request_id: sekisho_protocol::new_request_id(),
                        event: Event::Registry,
                        user: Some(id),
                        decision: Decision::Permit,
                        reason: "user_suspended_unused".into(),
                        detail: Some(format!("no sign-in for {days} days")),
                        ..Default::default()
                    });
                }
            }
            Err(e) => warn!(error = %e, "cannot check for unused accounts"),
        }
    }
}
