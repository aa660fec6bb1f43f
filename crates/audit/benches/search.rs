//! The console's audit search on a real network's volume: a log of `SEKISHO_BENCH_RECORDS`
//! records (default 10,000,000) spread over 30 days, 200 facilities, 2,000 terminals, 5,000
//! people and 1,000,000 patients, then each kind of search the console makes, 50 times with
//! different values, newest first, 50 a page. Prints p50/p95 per search; asserts nothing about
//! speed. The target is p95 ≤ 200 ms per page.
//!
//! `cargo bench -p sekisho-audit --bench search` (SQLite, and PostgreSQL when
//! `SEKISHO_TEST_PG_URL` or the default local server answers; `SEKISHO_BENCH_DBS=sqlite` for
//! one). The records are written straight into the table (the writer's speed is the `durable`
//! bench's); their leaf hashes are real, so the search's per-record check does its real work.
//! Needs about 6 GB of disk per store at 10 million.

use std::time::{Duration, Instant};

use sekisho_audit::merkle::leaf_hash;
use sekisho_audit::search::{Cursor, Filter, latest_checkpoint, search};
use sekisho_audit::{AuditRecord, Decision, Event};
use sekisho_store::DbKind;
use sekisho_store::testdb::TestDb;

const DAYS: i64 = 30;
const FACILITIES: u64 = 200;
const TERMINALS: u64 = 2_000;
const USERS: u64 = 5_000;
const PATIENTS: u64 = 1_000_000;
const REASONS: [&str; 8] = [
    "patient_no_consent",
    "patient_not_in_care_team",
    "signin_required",
    "patient_card_required",
    "qualification_not_permitted",
    "route_not_mapped",
    "cross_site_request",
    "break_glass_required",
];
const ROWS_PER_INSERT: usize = 64;

/// xorshift64*: reproducible values without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Record `n` of the log: mostly permitted requests and their outcomes, 6% refused.
fn record(n: u64, rng: &mut Rng, start_ms: i64, span_ms: i64, total: u64) -> AuditRecord {
    let terminal = rng.below(TERMINALS);
    let facility = terminal % FACILITIES;
    let user = rng.below(USERS);
    let deny = rng.below(100) < 6;
    let ts = start_ms + (span_ms as u128 * n as u128 / total as u128) as i64;
    let time = sekisho_audit::format_time(
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000).unwrap(),
    );
    let event = match rng.below(100) {
        0..=49 => Event::Request,
        50..=94 => Event::Outcome,
        95..=97 => Event::Auth,
        _ => Event::Consent,
    };
    AuditRecord {
        time,
        request_id: request_id(n),
        event,
        node: "gw1".into(),
        peer: Some(format!("10.8.{}.{}:50000", terminal / 250, terminal % 250)),
        terminal: Some(format!("T{terminal:05}")),
        facility: Some(format!("F{facility:04}")),
        cert_serial: Some(format!("{:016x}", terminal * 7919)),
        user: Some(format!("U{user:07}")),
        qualification: Some("Medical Doctor".into()),
        patient: Some(format!("P{:07}", rng.below(PATIENTS))),
        method: Some("GET".into()),
        route: Some(format!("patient-{}", rng.below(8))),
        path: Some("/api/patients/P0000000/summary".into()),
        action: Some("view".into()),
        decision: if deny {
            Decision::Deny
        } else {
            Decision::Permit
        },
        reason: if deny {
            REASONS[rng.below(REASONS.len() as u64) as usize].into()
        } else {
            "ok".into()
        },
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    }
}

/// Fills the log with `total` records; returns the first and last millisecond.
async fn fill(db: &TestDb, total: u64) -> (i64, i64) {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let span = DAYS * 86_400_000;
    let start = now_ms - span;
    let mut rng = Rng(0x5e4b_15e0_dead_beef);
    let started = Instant::now();
    let kind = db.store.kind();
    let full = sekisho_audit::insert_sql(ROWS_PER_INSERT, kind);
    let mut n = 0u64;
    while n < total {
        let mut tx = db.store.pool().begin().await.unwrap();
        for _ in 0..(50_000 / ROWS_PER_INSERT) {
            if n >= total {
                break;
            }
            let rows = (total - n).min(ROWS_PER_INSERT as u64) as usize;
            let sql = if rows == ROWS_PER_INSERT {
                full.clone()
            } else {
                sekisho_audit::insert_sql(rows, kind)
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for _ in 0..rows {
                let rec = record(n, &mut rng, start, span, total);
                let json = String::from_utf8(rec.canonical_json()).unwrap();
                let ts = start + (span as u128 * n as u128 / total as u128) as i64;
                q = q
                    .bind(n as i64)
                    .bind(leaf_hash(json.as_bytes()).to_vec())
                    .bind(json)
                    .bind(ts)
                    .bind(rec.request_id)
                    .bind(rec.event.as_str())
                    .bind(rec.decision.as_str())
                    .bind(rec.node)
                    .bind(rec.terminal)
                    .bind(rec.user)
                    .bind(rec.patient)
                    .bind(rec.break_glass_id)
                    .bind(rec.facility)
                    .bind(rec.reason)
                    .bind(rec.route);
                n += 1;
            }
            q.execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        if n % 1_000_000 < 50_000 {
            eprintln!(
                "  {n} records written ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if kind == DbKind::Postgres {
        sqlx::query("ANALYZE audit_records")
            .execute(db.store.pool())
            .await
            .unwrap();
    } else {
        sqlx::query("ANALYZE")
            .execute(db.store.pool())
            .await
            .unwrap();
    }
    (start, now_ms)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One kind of search, `runs` times with values from `make`; prints p50 and p95 per page.
async fn time_search(
    db: &TestDb,
    name: &str,
    runs: usize,
    mut make: impl FnMut(usize) -> (Filter, Option<Cursor>),
) {
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..runs {
        let (filter, before) = make(i);
        let t = Instant::now();
        let cp = latest_checkpoint(&db.store, &[]).await.unwrap();
        let page = search(&db.store, &filter, before, 50, cp.as_ref())
            .await
            .unwrap();
        times.push(t.elapsed());
        rows += page.rows.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {name:<44} p50 {:>8.1} ms  p95 {:>8.1} ms  ({:.0} rows a page)",
        ms(pct(&times, 0.5)),
        ms(pct(&times, 0.95)),
        rows as f64 / runs as f64
    );
}

async fn bench(db: &TestDb, label: &str, total: u64) {
    println!("{label}: filling {total} records …");
    let t = Instant::now();
    let (start, end) = fill(db, total).await;
    println!(
        "{label}: {total} records in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let mut rng = Rng(42);
    let runs = 50;
    let day = 86_400_000;
    time_search(db, "newest page, no filter", runs, |_| {
        (Filter::default(), None)
    })
    .await;
    time_search(db, "by patient", runs, |_| {
        let f = Filter {
            patient: Some(format!("P{:07}", rng.below(PATIENTS))),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(43);
    time_search(db, "by person, last 7 days", runs, |_| {
        let f = Filter {
            user: Some(format!("U{:07}", rng.below(USERS))),
            from_ms: Some(end - 7 * day),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(44);
    time_search(db, "by facility", runs, |_| {
        let f = Filter {
            facility: Some(format!("F{:04}", rng.below(FACILITIES))),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(45);
    time_search(db, "by terminal", runs, |_| {
        let f = Filter {
            terminal: Some(format!("T{:05}", rng.below(TERMINALS))),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(46);
    time_search(db, "refusals by reason, last 24 h", runs, |_| {
        let f = Filter {
            decision: Some("deny".into()),
            reason: Some(REASONS[rng.below(REASONS.len() as u64) as usize].into()),
            from_ms: Some(end - day),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(47);
    time_search(db, "facility, a day two weeks ago", runs, |_| {
        let f = Filter {
            facility: Some(format!("F{:04}", rng.below(FACILITIES))),
            from_ms: Some(end - 15 * day),
            to_ms: Some(end - 14 * day),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(50);
    time_search(db, "terminal, a day two weeks ago", runs, |_| {
        let f = Filter {
            terminal: Some(format!("T{:05}", rng.below(TERMINALS))),
            from_ms: Some(end - 15 * day),
            to_ms: Some(end - 14 * day),
            ..Filter::default()
        };
        (f, None)
    })
    .await;
    let mut rng = Rng(48);
    time_search(db, "by request id", runs, |_| {
        (
            Filter {
                request_id: Some(request_id(rng.below(total))),
                ..Filter::default()
            },
            None,
        )
    })
    .await;
    let mut rng = Rng(49);
    time_search(db, "facility, page 20 (cursor)", runs, |_| {
        // About 50 × 20 × FACILITIES records back from the newest.
        let back = 50 * 20 * FACILITIES as i64;
        let f = Filter {
            facility: Some(format!("F{:04}", rng.below(FACILITIES))),
            ..Filter::default()
        };
        // The cursor of record `n`: its time as `fill` gave it.
        let n = total as i64 - back;
        let ts = start + ((end - start) as i128 * n as i128 / total as i128) as i64;
        (f, Some(Cursor { ts, idx: n }))
    })
    .await;
    time_search(db, "a facility with no records (worst case)", 5, |_| {
        (
            Filter {
                facility: Some("F9999".into()),
                ..Filter::default()
            },
            None,
        )
    })
    .await;
    // The dashboard's refusals by reason over the last day, and the query it replaced
    // (reading the day's records through the time index), in the same run.
    let t = Instant::now();
    let now = sekisho_audit::search::refusals_by_reason(&db.store, end - day)
        .await
        .unwrap();
    let new_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let before: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT reason, SUM(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS n
         FROM audit_records WHERE ts >= $1
         GROUP BY reason HAVING SUM(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) > 0
         ORDER BY n DESC, reason LIMIT 30",
    )
    .bind(end - day)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    let old_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        now,
        before
            .into_iter()
            .map(|(r, n)| (r.unwrap_or_default(), n))
            .collect::<Vec<_>>(),
        "both queries count the same"
    );
    println!(
        "  {:<44} {:>8.1} ms (once; the previous query {:.1} ms, {:.1}x)",
        "dashboard: refusals by reason, last 24 h",
        new_ms,
        old_ms,
        old_ms / new_ms.max(0.001)
    );
}

/// The request id of record `n`: 32 hex digits, as the gateway's, and known to the searches.
fn request_id(n: u64) -> String {
    format!("{n:016x}{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total = env_usize("SEKISHO_BENCH_RECORDS", 10_000_000) as u64;
    let dbs = std::env::var("SEKISHO_BENCH_DBS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!("audit search benchmark: {total} records over {DAYS} days, 50 a page");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(dir).unwrap();
    if dbs.contains("sqlite") {
        let db = TestDb::sqlite_in(dir).await;
        bench(&db, "sqlite", total).await;
    }
    if dbs.contains("postgres") {
        if sekisho_store::testdb::postgres_reachable() {
            let db = TestDb::postgres().await;
            bench(&db, "postgres", total).await;
        } else {
            println!("postgres: not reachable, not measured");
        }
    }
}
