//! The copier: hands the newest signed checkpoint to every witness, off the request path.
//!
//! One task learns the newest checkpoint — at once from this gateway's writer (a `watch`
//! channel the writer sets after each commit, which never waits), and every `poll` from the
//! store, so checkpoints made by other replicas and by CLI commands reach the witnesses too.
//! One task per witness then copies it, at most one copy in flight and one every `interval`;
//! a witness that is down gets the newest checkpoint when it is back (what it missed in
//! between is superseded: the tree proves consistency). A failing witness never holds up a
//! request: the writer does not know the witnesses exist.
//!
//! Before each copy, and whenever a witness says what it holds, the copier checks that the log
//! still has that checkpoint (same size, same root). If it does not, the log was truncated or
//! rewritten after the witness saw it: that is logged as an error every minute, counted
//! (`sekisho_audit_witness_diverged` = 1), and nothing more is copied to that witness, so its
//! copy stays the evidence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sekisho_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{Outcome, Refusal, Witness};
use crate::checkpoint::SignedCheckpoint;

type Latest = Option<Arc<SignedCheckpoint>>;
type Labels = Vec<(&'static str, String)>;

/// The first retry after a failure; each next one twice as long after, up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a witness whose checkpoint the log no longer has is looked at again.
const DIVERGED_RECHECK: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct PumpConfig {
    /// At most one copy to a witness per interval (the newest at the time). Default 1 s.
    pub interval: Duration,
    /// How often the store is asked for its newest checkpoint (other replicas', the CLI's).
    /// Default 5 s.
    pub poll: Duration,
    /// One attempt (connect, send, answer) may take this long. Default 10 s.
    pub timeout: Duration,
}

impl Default for PumpConfig {
    fn default() -> PumpConfig {
        PumpConfig {
            interval: Duration::from_secs(1),
            poll: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Per witness (label `witness`): what it holds, and what went wrong.
#[derive(Clone, Debug, Default)]
pub struct WitnessMetrics {
    /// Tree size of the newest checkpoint the witness is known to hold.
    pub tree_size: Family<Labels, Gauge>,
    /// Unix time of the last copy the witness took.
    pub last_copy: Family<Labels, Gauge>,
    /// Attempts that failed (unreachable, an error answer, a timeout).
    pub failures: Family<Labels, Counter>,
    /// Checkpoints the witness refused (`reason`: older, fork, other-log).
    pub refused: Family<Labels, Counter>,
    /// 1 while the witness holds a checkpoint the log does not have (truncated or forked).
    pub diverged: Family<Labels, Gauge>,
}

impl WitnessMetrics {
    pub fn register(reg: &mut Registry) -> WitnessMetrics {
        let m = WitnessMetrics::default();
        reg.register(
            "sekisho_audit_witness_tree_size",
            "Tree size of the newest checkpoint the witness holds",
            m.tree_size.clone(),
        );
        reg.register(
            "sekisho_audit_witness_last_copy_timestamp_seconds",
            "When the witness last took a checkpoint (Unix time)",
            m.last_copy.clone(),
        );
        reg.register(
            "sekisho_audit_witness_failures",
            "Attempts to copy a checkpoint to the witness that failed",
            m.failures.clone(),
        );
        reg.register(
            "sekisho_audit_witness_refused",
            "Checkpoints the witness refused (older, fork, other-log)",
            m.refused.clone(),
        );
        reg.register(
            "sekisho_audit_witness_diverged",
            "1 while the witness holds a checkpoint the log does not have (truncated or forked)",
            m.diverged.clone(),
        );
        m
    }

    fn labels(name: &str) -> Labels {
        vec![("witness", name.to_string())]
    }
}

pub struct WitnessPump {
    store: Store,
    newest: watch::Sender<Latest>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WitnessPump {
    /// Starts copying to `witnesses`. `feed` is the writer's newest checkpoint
    /// (`AuditLog::checkpoints`).
    pub fn start(
        store: Store,
        feed: watch::Receiver<Latest>,
        witnesses: Vec<Witness>,
        cfg: PumpConfig,
        metrics: WitnessMetrics,
    ) -> WitnessPump {
        let (newest, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        if !witnesses.is_empty() {
            tasks.push(tokio::spawn(source(
                store.clone(),
                feed,
                newest.clone(),
                cfg.poll,
                stop.subscribe(),
            )));
        }
        for w in witnesses {
            let copier = Copier {
                labels: WitnessMetrics::labels(w.name()),
                w,
                store: store.clone(),
                newest: newest.subscribe(),
                stop: stop.subscribe(),
                cfg: cfg.clone(),
                m: metrics.clone(),
            };
            tasks.push(tokio::spawn(copier.run()));
        }
        WitnessPump {
            store,
            newest,
            stop,
            tasks,
        }
    }

    /// Takes the store's newest checkpoint (the writer's last batch is committed by now), gives
    /// every witness one last chance to take it, within `grace`, and stops.
    pub async fn stop(self, grace: Duration) {
        if self.tasks.is_empty() {
            return;
        }
        if let Ok(Ok(Some(cp))) =
            tokio::time::timeout(grace / 2, newest_in_store(&self.store)).await
        {
            offer(&self.newest, Some(Arc::new(cp)));
        }
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            for t in self.tasks {
                let _ = t.await;
            }
        })
        .await;
    }
}

fn offer(newest: &watch::Sender<Latest>, cp: Latest) {
    let Some(cp) = cp else { return };
    newest.send_if_modified(|cur| {
        if cur.as_ref().is_none_or(|c| cp.size() > c.size()) {
            *cur = Some(cp);
            true
        } else {
            false
        }
    });
}

async fn newest_in_store(store: &Store) -> Result<Option<SignedCheckpoint>> {
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
            .fetch_optional(store.pool())
            .await
            .context("cannot read the newest checkpoint")?;
    note.map(|n| SignedCheckpoint::parse(&n)).transpose()
}

/// Whether the log still has `held`: `Ok(None)` yes, `Ok(Some(why))` no.
async fn missing_from_log(store: &Store, held: &SignedCheckpoint) -> Result<Option<String>> {
    let size = held.size();
    let Ok(at) = i64::try_from(size) else {
        return Ok(Some(format!("tree size {size} is out of range")));
    };
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM audit_checkpoints WHERE tree_size = $1")
            .bind(at)
            .fetch_optional(store.pool())
            .await
            .context("cannot read the audit checkpoints")?;
    let Some(note) = note else {
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(tree_size) FROM audit_checkpoints")
                .fetch_one(store.pool())
                .await
                .context("cannot read the audit checkpoints")?;
        return Ok(Some(match newest {
            Some(n) if n > at => format!(
                "the log has no checkpoint at tree size {size} (it has one at {n}: rewritten?)"
            ),
            Some(n) => format!(
                "the log ends at tree size {n}, the witness holds tree size {size}: truncated"
            ),
            None => format!("the log has no checkpoints, the witness holds tree size {size}"),
        }));
    };
    let ours = SignedCheckpoint::parse(&note).context("the log's checkpoint is damaged")?;
    if ours.checkpoint != held.checkpoint {
        return Ok(Some(format!(
            "the log's checkpoint at tree size {size} has another root: forked"
        )));
    }
    Ok(None)
}

async fn source(
    store: Store,
    feed: watch::Receiver<Latest>,
    newest: watch::Sender<Latest>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut feed = Some(feed);
    let mut tick = tokio::time::interval(poll.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = async { feed.as_mut()?.changed().await.ok() }, if feed.is_some() => {
                match changed {
                    Some(()) => {
                        let cp = feed.as_mut().and_then(|f| f.borrow_and_update().clone());
                        offer(&newest, cp);
                    }
                    // The writer has stopped; the store still says what is newest.
                    None => feed = None,
                }
            }
            _ = tick.tick() => match newest_in_store(&store).await {
                Ok(cp) => offer(&newest, cp.map(Arc::new)),
                Err(e) => warn!(error = %format!("{e:#}"), "witness: cannot read the newest checkpoint"),
            },
            _ = stop.changed() => return,
        }
    }
}

struct Copier {
    w: Witness,
    labels: Labels,
    store: Store,
    newest: watch::Receiver<Latest>,
    stop: watch::Receiver<bool>,
    cfg: PumpConfig,
    m: WitnessMetrics,
}

/// Why a round ended: wait this long (or for something newer), or stop.
enum Next {
    Wait(Duration),
    WaitForNewer,
    Stop,
}

impl Copier {
    async fn run(mut self) {
        let mut held: Option<SignedCheckpoint> = None;
        let mut known = false;
        let mut backoff = RETRY_FIRST;
        let mut failing_since: Option<Instant> = None;
        loop {
            let stopping = *self.stop.borrow();
            let next = self
                .round(
                    &mut held,
                    &mut known,
                    &mut backoff,
                    &mut failing_since,
                    stopping,
                )
                .await;
            if stopping {
                return;
            }
            match next {
                Next::Stop => return,
                Next::Wait(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Next::WaitForNewer => {
                    tokio::select! {
                        r = self.newest.changed() => if r.is_err() { return },
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
    }

    fn failed(&self, what: &str, e: &anyhow::Error, failing_since: &mut Option<Instant>) {
        self.m.failures.get_or_create(&self.labels).inc();
        // Loud on the first failure, then quietly counted; said again when it is back.
        if failing_since.is_none() {
            *failing_since = Some(Instant::now());
            warn!(witness = self.w.name(), error = %format!("{e:#}"), "witness: cannot {what}; checkpoints are kept and the newest is copied when it is back");
        }
    }

    async fn round(
        &mut self,
        held: &mut Option<SignedCheckpoint>,
        known: &mut bool,
        backoff: &mut Duration,
        failing_since: &mut Option<Instant>,
        stopping: bool,
    ) -> Next {
        let retry = |backoff: &mut Duration| {
            let d = *backoff;
            *backoff = (*backoff * 2).min(RETRY_MAX);
            Next::Wait(d)
        };
        // 1. What does the witness hold?
        if !*known {
            match tokio::time::timeout(self.cfg.timeout, self.w.held()).await {
                Ok(Ok(h)) => {
                    *held = h;
                    *known = true;
                    if let Some(h) = held {
                        self.m
                            .tree_size
                            .get_or_create(&self.labels)
                            .set(h.size() as i64);
                    }
                }
                Ok(Err(e)) => {
                    self.failed("read what it holds", &e, failing_since);
                    return retry(backoff);
                }
                Err(_) => {
                    self.failed("read what it holds", &timed_out(&self.cfg), failing_since);
                    return retry(backoff);
                }
            }
        }
        // 2. Is there something newer to give it?
        let target = self.newest.borrow_and_update().clone();
        let Some(target) = target.filter(|t| held.as_ref().is_none_or(|h| t.size() > h.size()))
        else {
            // Nothing newer; still, a witness ahead of the log on start is said at once.
            if let Some(h) = held.as_ref()
                && let Some(next) = self.check_in_log(h, known).await
            {
                return next;
            }
            return if stopping {
                Next::Stop
            } else {
                Next::WaitForNewer
            };
        };
        // 3. Does the log still have what it holds? If not, the copy it has is the evidence.
        if let Some(h) = held.as_ref()
            && let Some(next) = self.check_in_log(h, known).await
        {
            return next;
        }
        // 4. Copy.
        match tokio::time::timeout(self.cfg.timeout, self.w.submit(&target)).await {
            Ok(Ok(Outcome::Accepted)) => {
                if let Some(since) = failing_since.take() {
                    info!(
                        witness = self.w.name(),
                        down_secs = since.elapsed().as_secs(),
                        size = target.size(),
                        "witness: reachable again, the newest checkpoint is copied"
                    );
                }
                *backoff = RETRY_FIRST;
                self.m
                    .tree_size
                    .get_or_create(&self.labels)
                    .set(target.size() as i64);
                self.m
                    .last_copy
                    .get_or_create(&self.labels)
                    .set(sekisho_store::now());
                *held = Some((*target).clone());
                Next::Wait(self.cfg.interval)
            }
            Ok(Ok(Outcome::Refused {
                refusal,
                held: theirs,
            })) => {
                failing_since.take();
                self.m
                    .refused
                    .get_or_create(&vec![
                        ("witness", self.w.name().to_string()),
                        ("reason", refusal.code().to_string()),
                    ])
                    .inc();
                match &refusal {
                    // Another replica (or a CLI command) copied a newer checkpoint first:
                    // harmless if the log has it, which the next round checks.
                    Refusal::Older { .. } => {
                        warn!(witness = self.w.name(), offered = target.size(), %refusal, "witness: refused the checkpoint")
                    }
                    _ => {
                        error!(witness = self.w.name(), offered = target.size(), %refusal, "witness: REFUSED the checkpoint")
                    }
                }
                *known = theirs.is_some();
                *held = theirs;
                Next::Wait(Duration::ZERO)
            }
            Ok(Err(e)) => {
                self.failed("take a checkpoint", &e, failing_since);
                *known = false;
                retry(backoff)
            }
            Err(_) => {
                self.failed("take a checkpoint", &timed_out(&self.cfg), failing_since);
                *known = false;
                retry(backoff)
            }
        }
    }

    /// `None` when the log has `held`; otherwise what to do next (the alarm is raised).
    async fn check_in_log(&self, held: &SignedCheckpoint, known: &mut bool) -> Option<Next> {
        // The family's guard is never held across an await.
        let diverged = || self.m.diverged.get_or_create(&self.labels).clone();
        match missing_from_log(&self.store, held).await {
            Ok(None) => {
                if diverged().set(0) != 0 {
                    info!(
                        witness = self.w.name(),
                        size = held.size(),
                        "witness: the log has the witness's checkpoint again"
                    );
                }
                None
            }
            Ok(Some(why)) => {
                diverged().set(1);
                error!(
                    witness = self.w.name(),
                    witness_size = held.size(),
                    problem = %why,
                    "AUDIT LOG TRUNCATED OR FORKED: the witness holds a checkpoint the log does not have; nothing more is copied to it (run `sekisho audit verify --witness`)"
                );
                // Looked at again later: the witness may be replaced, or the log restored.
                *known = false;
                Some(Next::Wait(DIVERGED_RECHECK))
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "witness: cannot check the witness's checkpoint against the log");
                Some(Next::Wait(RETRY_FIRST))
            }
        }
    }
}

fn timed_out(cfg: &PumpConfig) -> anyhow::Error {
    anyhow::anyhow!("no answer within {} s", cfg.timeout.as_secs_f64())
}
