//! One task per destination, on every replica; the replica holding the destination's lease
//! (`sekisho_store::export_cursors`) exports, the others wait to take over. The task wakes when
//! this gateway's writer commits a batch, and every `poll` for records other replicas and CLI
//! commands appended; it reads from where the destination is, delivers a batch, and moves the
//! cursor once the destination has it (for syslog, once confirmed: see `syslog`). A failing
//! destination is retried, backing off to a minute, and never holds up a request: the writer
//! does not know exports exist.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sekisho_audit::SignedCheckpoint;
use sekisho_store::{Store, export_cursors};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::file::FileSink;
use crate::http::FhirServer;
use crate::source::{self, Entry};
use crate::syslog::{self, SyslogSink};
use crate::{Format, Identity, atna, fhir, jsonl};

type Labels = Vec<(&'static str, String)>;
type Feed = watch::Receiver<Option<Arc<SignedCheckpoint>>>;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Where a destination's records go.
pub enum Sink {
    File(FileSink),
    Syslog(SyslogSink),
    Fhir(Box<FhirServer>),
}

impl Sink {
    pub fn file(path: PathBuf, format: Format) -> Sink {
        Sink::File(FileSink::new(path, format))
    }
    pub fn syslog(s: SyslogSink) -> Sink {
        Sink::Syslog(s)
    }
    pub fn fhir(s: FhirServer) -> Sink {
        Sink::Fhir(Box::new(s))
    }
}

/// Where a new destination starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the log's first record (the default: nothing is left out).
    Beginning,
    /// With the next record appended.
    Now,
}

pub struct Destination {
    pub name: String,
    pub format: Format,
    pub sink: Sink,
    pub start: Start,
}

#[derive(Clone, Debug)]
pub struct PumpConfig {
    /// How often the store is asked for records other replicas appended.
    pub poll: Duration,
    /// How long a replica holds a destination without renewing (a dead one's is taken over
    /// after this).
    pub lease: Duration,
    /// Records per delivery.
    pub batch: usize,
    /// Syslog: how long a written message waits on a live connection before it counts as
    /// received.
    pub confirm_after: Duration,
}

impl Default for PumpConfig {
    fn default() -> PumpConfig {
        PumpConfig {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            batch: 500,
            confirm_after: Duration::from_secs(2),
        }
    }
}

/// Per destination (label `destination`).
#[derive(Clone, Debug, Default)]
pub struct ExportMetrics {
    /// The first record the destination has not got (its cursor).
    pub cursor: Family<Labels, Gauge>,
    /// Records the log holds that the destination has not got.
    pub lag: Family<Labels, Gauge>,
    pub delivered: Family<Labels, Counter>,
    pub failures: Family<Labels, Counter>,
    /// Unix time of the last delivery.
    pub last_delivery: Family<Labels, Gauge>,
    /// 1 on the replica that exports to the destination now.
    pub holder: Family<Labels, Gauge>,
}

impl ExportMetrics {
    pub fn register(reg: &mut Registry) -> ExportMetrics {
        let m = ExportMetrics::default();
        reg.register(
            "sekisho_audit_export_cursor",
            "The first audit record the destination has not got",
            m.cursor.clone(),
        );
        reg.register(
            "sekisho_audit_export_lag_records",
            "Audit records the destination has not got yet",
            m.lag.clone(),
        );
        reg.register(
            "sekisho_audit_export_delivered",
            "Audit records delivered to the destination by this replica",
            m.delivered.clone(),
        );
        reg.register(
            "sekisho_audit_export_failures",
            "Deliveries to the destination that failed (and are retried)",
            m.failures.clone(),
        );
        reg.register(
            "sekisho_audit_export_last_delivery_timestamp_seconds",
            "When the destination last got records (Unix time)",
            m.last_delivery.clone(),
        );
        reg.register(
            "sekisho_audit_export_holder",
            "1 while this replica exports to the destination",
            m.holder.clone(),
        );
        m
    }
}

pub struct ExportPump {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ExportPump {
    /// Starts a task per destination. `feed`: the writer's newest checkpoint, to wake on.
    pub fn start(
        store: Store,
        id: Identity,
        feed: Feed,
        destinations: Vec<Destination>,
        cfg: PumpConfig,
        metrics: ExportMetrics,
    ) -> ExportPump {
        let (stop, _) = watch::channel(false);
        let id = Arc::new(id);
        let tasks = destinations
            .into_iter()
            .map(|d| {
                let t = Task {
                    labels: vec![("destination", d.name.clone())],
                    d,
                    store: store.clone(),
                    id: id.clone(),
                    feed: feed.clone(),
                    stop: stop.subscribe(),
                    cfg: cfg.clone(),
                    m: metrics.clone(),
                };
                tokio::spawn(t.run())
            })
            .collect();
        ExportPump { stop, tasks }
    }

    /// Delivers what it can within `grace` (the writer's last batch is committed by now) and
    /// gives the leases up.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, async {
            for t in self.tasks {
                let _ = t.await;
            }
        })
        .await;
    }
}

struct Task {
    d: Destination,
    labels: Labels,
    store: Store,
    id: Arc<Identity>,
    feed: Feed,
    stop: watch::Receiver<bool>,
    cfg: PumpConfig,
    m: ExportMetrics,
}

enum Ended {
    Stopped,
    /// Another replica holds the lease, or the cursor was moved under us: claim again.
    Lost,
}

impl Task {
    async fn run(mut self) {
        let mut retry = RETRY_FIRST;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let wait = match self.session().await {
                Ok(Ended::Stopped) => break,
                Ok(Ended::Lost) => {
                    retry = RETRY_FIRST;
                    self.m.holder.get_or_create(&self.labels).set(0);
                    self.cfg.poll
                }
                Err(e) => {
                    self.m.failures.get_or_create(&self.labels).inc();
                    warn!(destination = %self.d.name, error = format!("{e:#}"), retry_in = ?retry, "audit export failed; it resumes from its cursor");
                    if let Sink::Syslog(s) = &mut self.d.sink {
                        s.reset();
                    }
                    let w = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => {}
            }
        }
        let _ = export_cursors::release(&self.store, &self.d.name, &self.id.node).await;
        self.m.holder.get_or_create(&self.labels).set(0);
    }

    fn lease_ms(&self) -> i64 {
        self.cfg.lease.as_millis() as i64
    }

    async fn session(&mut self) -> Result<Ended> {
        let start = match self.d.start {
            Start::Beginning => 0,
            Start::Now => source::size(&self.store).await?,
        };
        let name = self.d.name.clone();
        let node = self.id.node.clone();
        let Some(mut db) =
            export_cursors::claim(&self.store, &name, &node, self.lease_ms(), start).await?
        else {
            return Ok(Ended::Lost);
        };
        self.m.holder.get_or_create(&self.labels).set(1);
        if let Sink::File(f) = &self.d.sink
            && let Some(last) = f.resume().await?
            && last + 1 > db
        {
            // The file got these before a crash took the cursor's update with it.
            if !export_cursors::advance(&self.store, &name, &node, db, last + 1, self.lease_ms())
                .await?
            {
                return Ok(Ended::Lost);
            }
            db = last + 1;
        }
        info!(destination = %name, from = db, "exporting the audit log");
        self.m.cursor.get_or_create(&self.labels).set(db as i64);
        let mut pos = db;
        let mut renewed = Instant::now();
        let mut unconfirmed = false;
        loop {
            if let Sink::Syslog(s) = &mut self.d.sink
                && let Some(c) = s.confirmed()?
                && c > db
            {
                if !self.advance(db, c).await? {
                    return Ok(Ended::Lost);
                }
                db = c;
                renewed = Instant::now();
            }
            if renewed.elapsed() >= self.cfg.lease / 3 {
                match export_cursors::claim(&self.store, &name, &node, self.lease_ms(), start)
                    .await?
                {
                    Some(n) if n == db => renewed = Instant::now(),
                    _ => return Ok(Ended::Lost),
                }
            }
            let entries = source::read(&self.store, pos, self.cfg.batch).await?;
            let size = source::size(&self.store).await.unwrap_or(pos);
            self.m
                .lag
                .get_or_create(&self.labels)
                .set(size.saturating_sub(db) as i64);
            let Some(last) = entries.last() else {
                // Stopping: everything there was is delivered; syslog confirms it by closing.
                if *self.stop.borrow() {
                    if let Sink::Syslog(s) = &mut self.d.sink
                        && let Some(c) = s.close(Duration::from_secs(2)).await
                        && c > db
                    {
                        self.advance(db, c).await?;
                    }
                    return Ok(Ended::Stopped);
                }
                // Syslog confirmations are due while idle too.
                let wait = if unconfirmed || matches!(self.d.sink, Sink::Syslog(_)) {
                    self.cfg.poll.min(Duration::from_millis(250))
                } else {
                    self.cfg.poll
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.feed.changed() => {}
                    _ = self.stop.changed() => {}
                }
                unconfirmed = false;
                continue;
            };
            let next = last.idx + 1;
            self.deliver(&entries, next).await?;
            self.m
                .delivered
                .get_or_create(&self.labels)
                .inc_by(entries.len() as u64);
            self.m
                .last_delivery
                .get_or_create(&self.labels)
                .set(time::OffsetDateTime::now_utc().unix_timestamp());
            pos = next;
            if !matches!(self.d.sink, Sink::Syslog(_)) {
                if !self.advance(db, next).await? {
                    return Ok(Ended::Lost);
                }
                db = next;
                renewed = Instant::now();
            } else {
                unconfirmed = true;
            }
        }
    }

    async fn advance(&self, from: u64, to: u64) -> Result<bool> {
        let moved = export_cursors::advance(
            &self.store,
            &self.d.name,
            &self.id.node,
            from,
            to,
            self.lease_ms(),
        )
        .await?;
        if moved {
            self.m.cursor.get_or_create(&self.labels).set(to as i64);
        }
        Ok(moved)
    }

    async fn deliver(&mut self, entries: &[Entry], next: u64) -> Result<()> {
        let id = &self.id;
        let live = || {
            entries
                .iter()
                .filter_map(|e| e.record.as_ref().map(|r| (e, r)))
        };
        match (&mut self.d.sink, self.d.format) {
            (Sink::File(f), Format::Jsonl) => {
                f.append(entries.iter().map(|e| jsonl::line(e, id)).collect())
                    .await
            }
            (Sink::File(f), _) => {
                let lines: Vec<String> = live()
                    .map(|(e, r)| fhir::audit_event(r, e.idx, id).to_string())
                    .collect();
                if lines.is_empty() {
                    return Ok(());
                }
                f.append(lines).await
            }
            (Sink::Fhir(s), _) => {
                let events: Vec<_> = live()
                    .map(|(e, r)| fhir::audit_event(r, e.idx, id))
                    .collect();
                if events.is_empty() {
                    return Ok(());
                }
                s.send(&fhir::batch(&events)).await
            }
            (Sink::Syslog(s), format) => {
                let atna_form = format == Format::Atna;
                let host = s.host().to_string();
                let frames: Vec<String> = live()
                    .map(|(e, r)| {
                        let body = if atna_form {
                            atna::message(r, id)
                        } else {
                            jsonl::line(e, id)
                        };
                        syslog::frame(&syslog::message(r, e.idx, &host, atna_form, &body))
                    })
                    .collect();
                // Sent even when empty (all pruned): the position still needs confirming.
                s.send(&frames, next).await
            }
        }
    }
}
