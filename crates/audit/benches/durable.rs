//! How many records one node can make durable, and how long a record waits for it, beside the
//! disk's own floor (a 4 KiB append + `fdatasync` on the same file system) measured in the same
//! run. Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p sekisho-audit --bench durable` (SQLite, and PostgreSQL when
//! `SEKISHO_TEST_PG_URL` or the default local server answers). `SEKISHO_BENCH_RECORDS` sets
//! how many records each run appends (default 200,000), `SEKISHO_BENCH_IN_FLIGHT` how many
//! callers wait at once, a list (default `64,4096`: about what 32 keep-alive connections keep
//! waiting — a decision and an outcome each — and a flood that fills every batch), and
//! `SEKISHO_BENCH_MAX_WAIT_US` the writer's wait for a fuller batch, a list (default `0`;
//! the gateway's `audit.max_wait_us`), and `SEKISHO_BENCH_MODES` where a record becomes
//! durable, a list (default `journal,direct`: the node's journal with the store filled behind
//! it, as `sekisho serve` writes, and the store's transaction, as the commands write and
//! `[audit] journal = false`). Each line names `<mode> <waiting>/<max wait>`; a journal line
//! also says how long the indexer took to put every record in the store (its rate).
//! `SEKISHO_BENCH_WITNESS` (milliseconds, e.g. `0` or `1000`) copies the checkpoints to a
//! directory witness on the same disk meanwhile, one copy per that interval at most (the
//! gateway's `audit.witness_interval_ms`); the line then says `+witness`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sekisho_audit::witness::{DirWitness, PumpConfig, Witness, WitnessPump};
use sekisho_audit::{
    AuditConfig, AuditLog, AuditMetrics, AuditRecord, CheckpointKey, Decision, Event,
};
use sekisho_store::testdb::TestDb;
use tokio::sync::Semaphore;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The physical floor: one 4 KiB append and `fdatasync`, as a durable log's batch costs at best.
fn fdatasync_floor(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("fdatasync.probe");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("probe file");
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(300);
    for _ in 0..300 {
        let t = Instant::now();
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        times.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        // The gateway's own ids (time first, then random): their index is part of the cost.
        request_id: sekisho_protocol::new_request_id(),
        event: Event::Request,
        peer: Some("192.0.2.10:50000".into()),
        terminal: Some("T0001".into()),
        facility: Some("F001".into()),
        user: Some("D000123456".into()),
        qualification: Some("Medical Doctor".into()),
        patient: Some(format!("P{:07}", n % 1_000_003)),
        method: Some("GET".into()),
        route: Some("/api/patients/{id}".into()),
        action: Some("view".into()),
        decision: Decision::Permit,
        reason: "ok".into(),
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    }
}

/// The journal alone, as one node's durability point with nothing behind it: batches of
/// `batch` records (the writer's `max_batch`), one write + fdatasync each. Returns records/s and
/// the batch's sync p50/p99.
fn journal_alone(dir: &Path, records: usize, batch: usize) -> (f64, Duration, Duration) {
    let tmp = tempfile::tempdir_in(dir).unwrap();
    let (mut j, _) = sekisho_audit::journal::Journal::open(&tmp.path().join("journal-bench"), 0)
        .expect("journal");
    let payloads: Vec<Vec<u8>> = (0..batch).map(|n| record(n).canonical_json()).collect();
    let mut times = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    while done < records {
        let t = Instant::now();
        j.append(payloads.iter().map(|p| p.as_slice())).unwrap();
        times.push(t.elapsed());
        done += batch;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    times.sort();
    (rate, percentile(&times, 0.5), percentile(&times, 0.99))
}

struct Run {
    records: usize,
    elapsed: Duration,
    /// With a journal: from the first append until every record was in the store.
    indexed: Option<Duration>,
    waits: Vec<Duration>,
    batches: usize,
}

/// `records` appends, at most `in_flight` waiting at once (the gateway's connections).
async fn run(
    db: &TestDb,
    records: usize,
    in_flight: usize,
    max_wait: Duration,
    witness: Option<(&Path, Duration)>,
    journal: Option<&Path>,
) -> Run {
    let journal_dir = journal.map(|d| tempfile::tempdir_in(d).unwrap());
    let key = CheckpointKey::generate("sekisho.bench/audit").unwrap();
    let metrics = AuditMetrics::new();
    let log = AuditLog::open(
        db.store.clone(),
        key,
        AuditConfig {
            node: "bench".into(),
            origin: "sekisho.bench/audit".into(),
            max_wait,
            journal: journal_dir.as_ref().map(|d| d.path().join("journal-bench")),
            ..AuditConfig::default()
        },
        metrics.clone(),
    )
    .await
    .unwrap();
    let pump = witness.map(|(dir, interval)| {
        let dir = tempfile::tempdir_in(dir).unwrap();
        let w = Witness::dir("bench", DirWitness::new(dir.path()));
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![w],
            PumpConfig {
                interval,
                ..PumpConfig::default()
            },
            metrics.witness.clone(),
        );
        (pump, dir)
    });
    let gate = Arc::new(Semaphore::new(in_flight));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    for n in 0..records {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let durable = log.submit(record(n));
        let done = done_tx.clone();
        let t = Instant::now();
        tokio::spawn(async move {
            let r = durable.await;
            let _ = done.send((r.is_ok(), t.elapsed()));
            drop(permit);
        });
    }
    drop(done_tx);
    let mut waits = Vec::with_capacity(records);
    while let Some((ok, wait)) = done_rx.recv().await {
        assert!(ok, "a record was not made durable");
        waits.push(wait);
    }
    let elapsed = started.elapsed();
    let indexed = match journal_dir {
        Some(_) => {
            assert!(
                log.caught_up(Duration::from_secs(600)).await,
                "the indexer did not catch up"
            );
            Some(started.elapsed())
        }
        None => None,
    };
    log.shutdown().await;
    if let Some((pump, _dir)) = pump {
        pump.stop(Duration::from_secs(5)).await;
    }
    waits.sort();
    let batches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    Run {
        records,
        elapsed,
        indexed,
        waits,
        batches: batches as usize,
    }
}

fn print(name: &str, r: &Run, floor_p50: Duration) {
    let rate = r.records as f64 / r.elapsed.as_secs_f64();
    let p50 = percentile(&r.waits, 0.5);
    let store = match r.indexed {
        Some(t) => format!(
            "  in the store after {:.2} s ({:.0} records/s, {} transactions, {:.0} records each)",
            t.as_secs_f64(),
            r.records as f64 / t.as_secs_f64(),
            r.batches,
            r.records as f64 / r.batches.max(1) as f64,
        ),
        None => format!(
            "  {} batches, {:.0} records/batch",
            r.batches,
            r.records as f64 / r.batches.max(1) as f64
        ),
    };
    println!(
        "{name:<28} {:>7.0} records/s durable  wait p50 {}  p99 {}  ({:.1}× the fdatasync p50){store}",
        rate,
        ms(p50),
        ms(percentile(&r.waits, 0.99)),
        p50.as_secs_f64() / floor_p50.as_secs_f64().max(1e-9),
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let records = env_usize("SEKISHO_BENCH_RECORDS", 200_000);
    let in_flights: Vec<usize> = std::env::var("SEKISHO_BENCH_IN_FLIGHT")
        .unwrap_or_else(|_| "64,4096".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // The target directory is on the disk the store uses; /tmp may be memory.
    let probe_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(probe_dir).unwrap();
    let (f50, f99) = fdatasync_floor(probe_dir);
    println!("audit durable-append benchmark: {records} records per run");
    println!(
        "disk                 4 KiB append + fdatasync p50 {}  p99 {}",
        ms(f50),
        ms(f99)
    );
    for batch in [64, 512] {
        let (rate, p50, p99) = journal_alone(probe_dir, records, batch);
        println!(
            "journal alone, {batch:>3}/batch {rate:>9.0} records/s durable  batch write+fdatasync p50 {}  p99 {}  ({:.1}× the fdatasync p50)",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / f50.as_secs_f64().max(1e-9)
        );
    }
    let pg = sekisho_store::testdb::postgres_reachable();
    let max_waits: Vec<u64> = std::env::var("SEKISHO_BENCH_MAX_WAIT_US")
        .unwrap_or_else(|_| "0".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let witness = std::env::var("SEKISHO_BENCH_WITNESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|ms| (probe_dir, Duration::from_millis(ms)));
    let w = if witness.is_some() { "+witness" } else { "" };
    let modes: Vec<String> = std::env::var("SEKISHO_BENCH_MODES")
        .unwrap_or_else(|_| "journal,direct".into())
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    for &in_flight in &in_flights {
        for &us in &max_waits {
            for mode in &modes {
                let journal = (mode == "journal").then_some(probe_dir);
                let max_wait = Duration::from_micros(us);
                // A fresh store per run: every run starts from an empty log.
                let sqlite = TestDb::sqlite_in(probe_dir).await;
                let r = run(&sqlite, records, in_flight, max_wait, witness, journal).await;
                print(
                    &format!("sqlite   {mode:<7} {in_flight:>4}/{us:>3}µs{w}"),
                    &r,
                    f50,
                );
                drop(sqlite);
                if pg {
                    let db = TestDb::postgres().await;
                    let r = run(&db, records, in_flight, max_wait, witness, journal).await;
                    print(
                        &format!("postgres {mode:<7} {in_flight:>4}/{us:>3}µs{w}"),
                        &r,
                        f50,
                    );
                } else {
                    println!("postgres             not reachable: not measured");
                }
            }
        }
    }
}
