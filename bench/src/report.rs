//! The figures: one line per run as it finishes, then the per-target means of the rounds, and
//! the summary of issue 10's targets with the Sekisho/nginx ratios, met or not met. The
//! benchmark prints figures; it is not a test, and a target not met is not an error.

use std::fmt::Write as _;

use crate::disk::SyncFloor;
use crate::load::{Mode, RunResult};
use crate::metrics::Histogram;

pub const NGINX: &str = "nginx";
pub const SEKISHO: &str = "sekisho";
/// Sekisho with its store on PostgreSQL.
pub const SEKISHO_PG: &str = "sekisho-pg";
/// Sekisho on SQLite with `[audit] journal = false` (the store's transaction as the
/// durability point, as before the journal).
pub const SEKISHO_DIRECT: &str = "sekisho-direct";
/// The bare stack (`bare.rs`): tokio + rustls + hyper as an mTLS proxy, nothing of Sekisho.
pub const BARE: &str = "bare-stack";

/// How a Sekisho target is named in the summary.
fn store_label(target: &str) -> &'static str {
    match target {
        SEKISHO_PG => "PostgreSQL",
        SEKISHO_DIRECT => "SQLite without journal",
        BARE => "bare stack (no Sekisho)",
        _ => "SQLite",
    }
}

/// Issue 10's targets.
pub mod targets {
    /// Keep-alive throughput Sekisho/nginx, by connection count.
    pub fn keep_alive_throughput(connections: usize) -> Option<f64> {
        match connections {
            128 => Some(1.0),
            32 => Some(0.8),
            _ => None,
        }
    }
    /// Keep-alive throughput Sekisho on PostgreSQL / nginx, by connection count.
    pub fn postgres_throughput(connections: usize) -> Option<f64> {
        (connections == 128).then_some(0.5)
    }
    /// p99 Sekisho/nginx at most.
    pub const P99_RATIO: f64 = 1.5;
    /// CPU per request Sekisho/nginx at most.
    pub const CPU_RATIO: f64 = 1.0;
    /// Full-handshake throughput Sekisho/nginx at least.
    pub const FULL_HANDSHAKE: f64 = 1.3;
    /// Audit commit p50 / raw fdatasync p50 at most.
    pub const COMMIT_OVER_FDATASYNC: f64 = 2.0;
    /// RSS per idle connection, KiB, at most (and at most nginx's).
    pub const RSS_PER_CONN_KIB: f64 = 20.0;
}

/// CPU time of one proxy over one measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// CPU seconds (user + system) of the proxy's processes.
    pub seconds: f64,
    /// Wall seconds between the two samples.
    pub wall: f64,
    /// 200 responses that finished in between.
    pub requests: u64,
}

impl Cpu {
    pub fn per_10k(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.seconds / self.requests as f64 * 10_000.0)
    }
    pub fn cores(&self) -> Option<f64> {
        (self.wall > 0.0).then(|| self.seconds / self.wall)
    }
    fn add(&mut self, other: &Cpu) {
        self.seconds += other.seconds;
        self.wall += other.wall;
        self.requests += other.requests;
    }
}

/// One run of one mode at one connection count against one target.
pub struct Sample {
    pub mode: Mode,
    pub connections: usize,
    pub target: &'static str,
    pub round: usize,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// The proxy's own processes.
    pub cpu: Option<Cpu>,
    /// PostgreSQL backends serving the target's database (sekisho-pg only).
    pub store_cpu: Option<Cpu>,
    /// This benchmark's process (load generator and upstream), for context.
    pub bench_cpu: Option<Cpu>,
    /// Cores the rest of the machine (other processes) kept busy during the window.
    pub others_cores: Option<f64>,
    /// Audit commit time histogram, this run's delta (Sekisho only; `None` if not scraped).
    pub audit_commit: Option<Histogram>,
    /// Records per audit batch, this run's delta.
    pub audit_batch: Option<Histogram>,
    /// Records waiting for the store at the window's end (journal mode; `None` without).
    pub index_lag: Option<f64>,
    /// CPU seconds per thread group (`cpu::THREAD_GROUPS`) of a one-process proxy; empty for
    /// nginx.
    pub threads: Vec<(&'static str, f64)>,
}

impl Sample {
    pub fn new(
        mode: Mode,
        connections: usize,
        target: &'static str,
        round: usize,
        run: &RunResult,
    ) -> Self {
        Self {
            mode,
            connections,
            target,
            round,
            req_per_sec: run.req_per_sec(),
            p50_ms: run.quantile_ms(0.50),
            p99_ms: run.quantile_ms(0.99),
            errors: run.errors,
            cpu: None,
            store_cpu: None,
            bench_cpu: None,
            others_cores: None,
            audit_commit: None,
            audit_batch: None,
            index_lag: None,
            threads: Vec::new(),
        }
    }
}

/// CPU per request of each thread group, in µs: `workers 26.1, journal 4.0, …`.
fn per_request_us(threads: &[(&'static str, f64)], requests: u64) -> Option<String> {
    if threads.is_empty() || requests == 0 {
        return None;
    }
    // A group with no thread in this proxy (the bare stack has no journal) is left out.
    let parts: Vec<String> = threads
        .iter()
        .filter(|(_, secs)| *secs > 0.0)
        .map(|(g, secs)| format!("{g} {:.1}", secs / requests as f64 * 1e6))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "n/a".to_owned(), |s| format!("{:.2}", s * 1000.0))
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "n/a".to_owned(),
    }
}

/// Prints the line for one finished run, with error details when there were any.
pub fn print_run(sample: &Sample, run: &RunResult) {
    let mut line = format!(
        "  round {} {:<14} {:>4} conn {:<10} {:>9.1} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        sample.round,
        sample.mode.label(),
        sample.connections,
        sample.target,
        sample.req_per_sec,
        sample.p50_ms,
        sample.p99_ms,
        sample.errors,
    );
    if let Some(cpu) = &sample.cpu {
        let _ = write!(
            line,
            "  cpu {} s/10k req ({} cores)",
            opt(cpu.per_10k(), 3),
            opt(cpu.cores(), 2)
        );
    }
    if let Some(by_thread) = sample
        .cpu
        .and_then(|c| per_request_us(&sample.threads, c.requests))
    {
        let _ = write!(line, " [µs/req by thread: {by_thread}]");
    }
    if let Some(cpu) = &sample.store_cpu {
        let _ = write!(
            line,
            " + postgres {} s/10k ({} cores)",
            opt(cpu.per_10k(), 3),
            opt(cpu.cores(), 2)
        );
    }
    if sample.target != NGINX {
        match &sample.audit_commit {
            Some(h) => {
                let _ = write!(
                    line,
                    "  audit commit p50 {} p99 {} ms, {:.0} commits/s, {} records/batch",
                    ms(h.quantile(0.5)),
                    ms(h.quantile(0.99)),
                    sample.cpu.map_or(0.0, |c| h.total() / c.wall.max(1e-9)),
                    opt(sample.audit_batch.as_ref().and_then(Histogram::mean), 1)
                );
            }
            None => line.push_str("  audit commit n/a"),
        }
        if let Some(lag) = sample.index_lag {
            let _ = write!(line, ", {lag:.0} waiting for the store at the end");
        }
    }
    if let Some(cpu) = &sample.bench_cpu {
        let _ = write!(
            line,
            "  [bench {} cores, others {} cores]",
            opt(cpu.cores(), 2),
            opt(sample.others_cores, 2)
        );
    }
    if run.reconnects > 0 {
        let _ = write!(
            line,
            "  (server-closed keep-alive connections re-made: {})",
            run.reconnects
        );
    }
    println!("{line}");
    if run.errors > 0 {
        let statuses: Vec<String> = run
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}×{n}"))
            .collect();
        println!(
            "      errors: statuses [{}]; first: {}",
            statuses.join(", "),
            run.first_error.as_deref().unwrap_or("?")
        );
    }
}

/// The rounds of one mode, connection count and target together: means of req/s and the
/// latency quantiles, sums of CPU time and of the audit histograms.
pub struct Summary {
    pub mode: Mode,
    pub connections: usize,
    pub target: &'static str,
    pub rounds: usize,
    pub req_per_sec: f64,
    /// Lowest and highest req/s of the rounds: how much the machine moved.
    pub req_per_sec_range: (f64, f64),
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub cpu: Option<Cpu>,
    pub store_cpu: Option<Cpu>,
    pub audit_commit: Option<Histogram>,
    pub audit_batch: Option<Histogram>,
    /// CPU seconds per thread group, summed over the rounds (see [`Sample::threads`]).
    pub threads: Vec<(&'static str, f64)>,
}

fn sum_cpu<'a>(cpus: impl Iterator<Item = Option<&'a Cpu>>) -> Option<Cpu> {
    let mut total: Option<Cpu> = None;
    for c in cpus.flatten() {
        total.get_or_insert_with(Cpu::default).add(c);
    }
    total
}

fn sum_hist<'a>(hists: impl Iterator<Item = Option<&'a Histogram>>) -> Option<Histogram> {
    let mut total: Option<Histogram> = None;
    for h in hists.flatten() {
        total.get_or_insert_with(Histogram::default).merge(h);
    }
    total
}

pub fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut keys: Vec<(Mode, usize, &'static str)> = Vec::new();
    for s in samples {
        let key = (s.mode, s.connections, s.target);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(mode, connections, target)| {
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.mode == mode && s.connections == connections && s.target == target)
                .collect();
            let n = runs.len() as f64;
            let mean = |f: fn(&Sample) -> f64| runs.iter().map(|s| f(s)).sum::<f64>() / n;
            Summary {
                mode,
                connections,
                target,
                rounds: runs.len(),
                req_per_sec: mean(|s| s.req_per_sec),
                req_per_sec_range: runs.iter().fold((f64::INFINITY, 0.0), |(lo, hi), s| {
                    (lo.min(s.req_per_sec), hi.max(s.req_per_sec))
                }),
                p50_ms: mean(|s| s.p50_ms),
                p99_ms: mean(|s| s.p99_ms),
                errors: runs.iter().map(|s| s.errors).sum(),
                cpu: sum_cpu(runs.iter().map(|s| s.cpu.as_ref())),
                store_cpu: sum_cpu(runs.iter().map(|s| s.store_cpu.as_ref())),
                audit_commit: sum_hist(runs.iter().map(|s| s.audit_commit.as_ref())),
                audit_batch: sum_hist(runs.iter().map(|s| s.audit_batch.as_ref())),
                threads: sum_threads(runs.iter().map(|s| s.threads.as_slice())),
            }
        })
        .collect()
}

fn sum_threads<'a>(
    runs: impl Iterator<Item = &'a [(&'static str, f64)]>,
) -> Vec<(&'static str, f64)> {
    let mut total: Vec<(&'static str, f64)> = Vec::new();
    for (group, secs) in runs.flatten() {
        match total.iter_mut().find(|(g, _)| g == group) {
            Some(t) => t.1 += secs,
            None => total.push((group, *secs)),
        }
    }
    total
}

pub fn print_table(summaries: &[Summary]) {
    println!(
        "{:<15} {:>5} {:<10} {:>10} {:>13} {:>8} {:>8} {:>6} {:>11} {:>7} {:>9} {:>9} {:>6}",
        "mode",
        "conn",
        "target",
        "req/s",
        "range",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu s/10k",
        "cores",
        "commit50",
        "commit99",
        "batch",
    );
    for s in summaries {
        let cpu = match (&s.cpu, &s.store_cpu) {
            (Some(c), Some(pg)) => format!("{}+{}", opt(c.per_10k(), 2), opt(pg.per_10k(), 2)),
            (Some(c), None) => opt(c.per_10k(), 3),
            (None, _) => "n/a".to_owned(),
        };
        let cores = match (&s.cpu, &s.store_cpu) {
            (Some(c), Some(pg)) => format!("{}+{}", opt(c.cores(), 1), opt(pg.cores(), 1)),
            (Some(c), None) => opt(c.cores(), 2),
            (None, _) => "n/a".to_owned(),
        };
        let (c50, c99, batch) = if s.target == NGINX {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            let h = s.audit_commit.as_ref();
            (
                ms(h.and_then(|h| h.quantile(0.5))),
                ms(h.and_then(|h| h.quantile(0.99))),
                opt(s.audit_batch.as_ref().and_then(Histogram::mean), 1),
            )
        };
        println!(
            "{:<15} {:>5} {:<10} {:>10.1} {:>13} {:>8.2} {:>8.2} {:>6} {:>11} {:>7} {:>9} {:>9} {:>6}",
            s.mode.label(),
            s.connections,
            s.target,
            s.req_per_sec,
            format!("{:.0}-{:.0}", s.req_per_sec_range.0, s.req_per_sec_range.1),
            s.p50_ms,
            s.p99_ms,
            s.errors,
            cpu,
            cores,
            c50,
            c99,
            batch
        );
    }
    println!(
        "(req/s, p50, p99: mean of {} round(s), range: lowest-highest req/s of the rounds; \
         errors summed; cpu: the proxy's CPU seconds per \
         10,000 requests and cores busy, over the measurement windows{}; commit50/99: audit \
         commit p50/p99 in ms and batch: mean records per commit, from the gateway's /metrics)",
        summaries.first().map_or(0, |s| s.rounds),
        if summaries.iter().any(|s| s.store_cpu.is_some()) {
            ", gateway+postgres backends for sekisho-pg"
        } else {
            ""
        }
    );
    let by_thread: Vec<String> = summaries
        .iter()
        .filter_map(|s| {
            let by = per_request_us(&s.threads, s.cpu?.requests)?;
            Some(format!(
                "  {:<15} {:>5} {:<12} {by}",
                s.mode.label(),
                s.connections,
                s.target
            ))
        })
        .collect();
    if !by_thread.is_empty() {
        println!(
            "CPU per request by thread, µs (workers: tokio's, the request path; journal: the \
             audit journal's thread, its write and fdatasync; indexer: the audit indexer's \
             thread, its statements and leaf hashes; sqlite: sqlx's SQLite threads, nearly all \
             the indexer's inserts; other: the rest):"
        );
        for line in by_thread {
            println!("{line}");
        }
    }
}

/// RSS per idle connection, from the memory phase.
pub struct MemoryResult {
    pub target: &'static str,
    pub asked: usize,
    pub opened: usize,
    pub failed: u64,
    pub first_error: Option<String>,
    pub took_secs: f64,
    pub still_open: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_after_close_kib: u64,
    /// What the gateway's own gauge said with the connections open (Sekisho only).
    pub gateway_gauge: Option<f64>,
    /// A keep-alive run made while the idle connections were held.
    pub busy: Option<BusyWhileIdle>,
}

/// Keep-alive load served while the idle connections stay open.
pub struct BusyWhileIdle {
    pub connections: usize,
    pub req_per_sec: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Idle connections still open after the run.
    pub idle_still_open: usize,
}

impl MemoryResult {
    pub fn per_conn_kib(&self) -> Option<f64> {
        (self.still_open > 0).then(|| {
            (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.still_open as f64
        })
    }

    pub fn print(&self) {
        println!(
            "  {:<8} {}/{} opened in {:.1} s ({:.0}/s), {} failed, {} still open when measured{}; \
             RSS {} KiB → {} KiB: {} KiB per connection; {} KiB after closing them",
            self.target,
            self.opened,
            self.asked,
            self.took_secs,
            self.opened as f64 / self.took_secs.max(1e-9),
            self.failed,
            self.still_open,
            self.gateway_gauge
                .map(|g| format!(" (gateway says {g:.0})"))
                .unwrap_or_default(),
            self.rss_before_kib,
            self.rss_after_kib,
            opt(self.per_conn_kib(), 1),
            self.rss_after_close_kib,
        );
        if let Some(e) = &self.first_error {
            println!("      first failure: {e}");
        }
        if let Some(b) = &self.busy {
            println!(
                "           with them held: keep-alive {} connections {:.0} req/s, p99 {:.2} ms, \
                 {} errors; {} idle connections still open afterwards",
                b.connections, b.req_per_sec, b.p99_ms, b.errors, b.idle_still_open
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// A figure without a target.
    Figure,
    /// A target whose figures are missing.
    Missing,
}

struct Row {
    figure: String,
    sekisho: String,
    reference: String,
    ratio: Option<f64>,
    target: String,
    verdict: Verdict,
}

fn judge(ok: Option<bool>) -> Verdict {
    match ok {
        Some(true) => Verdict::Met,
        Some(false) => Verdict::NotMet,
        None => Verdict::Missing,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// How busy the rest of the machine was during the measurement windows (mean and max cores).
pub fn print_noise(samples: &[Sample]) {
    let others: Vec<f64> = samples.iter().filter_map(|s| s.others_cores).collect();
    if others.is_empty() {
        return;
    }
    let mean = others.iter().sum::<f64>() / others.len() as f64;
    let max = others.iter().copied().fold(0.0, f64::max);
    println!(
        "other processes on this machine kept {mean:.2} cores busy on average (max {max:.2}) \
         during the measurement windows{}",
        if max > 0.25 {
            ": the machine was not quiet, compare ratios of the same round and rerun on a \
             quiet machine before trusting small differences"
        } else {
            ""
        }
    );
}

/// One measurement of the disk's fdatasync floor.
pub struct Floor {
    /// "start" or "end" of the run.
    pub when: &'static str,
    pub floor: SyncFloor,
}

/// Everything the summary needs besides the per-run means.
pub struct Extra<'a> {
    /// The fdatasync floors measured in the run; the audit commit is compared with the one
    /// with the lowest p50 (the disk when nothing else was using it).
    pub floors: &'a [Floor],
    pub memory: &'a [MemoryResult],
}

/// The summary of issue 10's targets: every figure, the Sekisho/nginx ratio (or the ratio to
/// the disk's fdatasync for the audit commit), the target, met or not met.
pub fn print_targets(summaries: &[Summary], extra: &Extra<'_>) {
    let find = |mode: Mode, conns: usize, target: &str| {
        summaries
            .iter()
            .find(|s| s.mode == mode && s.connections == conns && s.target == target)
    };
    let mut conn_counts: Vec<(Mode, usize)> = Vec::new();
    for s in summaries {
        if !conn_counts.contains(&(s.mode, s.connections)) {
            conn_counts.push((s.mode, s.connections));
        }
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let mut rows = Vec::new();
    let best = extra.floors.iter().min_by(|a, b| {
        a.floor
            .quantile_ms(0.5)
            .total_cmp(&b.floor.quantile_ms(0.5))
    });
    let floor_p50 = best.map(|f| f.floor.quantile_ms(0.5));
    let floor_p99 = best.map(|f| f.floor.quantile_ms(0.99));

    for &(mode, conns) in &conn_counts {
        let nginx = find(mode, conns, NGINX);
        if let (Some(j), Some(d)) = (
            find(mode, conns, SEKISHO),
            find(mode, conns, SEKISHO_DIRECT),
        ) {
            rows.push(Row {
                figure: format!(
                    "{} {conns} conn req/s, journal / without (SQLite)",
                    mode.label()
                ),
                sekisho: format!("{:.0}", j.req_per_sec),
                reference: format!("{:.0}", d.req_per_sec),
                ratio: ratio(Some(j.req_per_sec), Some(d.req_per_sec)),
                target: "-".into(),
                verdict: Verdict::Figure,
            });
        }
        for target in [SEKISHO, SEKISHO_PG, SEKISHO_DIRECT, BARE] {
            let Some(s) = find(mode, conns, target) else {
                continue;
            };
            let store = if target == SEKISHO {
                String::new()
            } else {
                format!("{} ", store_label(target))
            };
            let what = format!("{store}{} {conns} conn", mode.label());
            let n_rps = nginx.map(|n| n.req_per_sec);
            let r = ratio(Some(s.req_per_sec), n_rps);
            let t = match (mode, target) {
                (Mode::FullHandshake, SEKISHO) => Some(targets::FULL_HANDSHAKE),
                (Mode::KeepAlive, SEKISHO) => targets::keep_alive_throughput(conns),
                (Mode::KeepAlive, SEKISHO_PG) => targets::postgres_throughput(conns),
                _ => None,
            };
            rows.push(Row {
                figure: format!("{what} req/s"),
                sekisho: format!("{:.0}", s.req_per_sec),
                reference: n_rps.map_or("n/a".into(), |v| format!("{v:.0}")),
                ratio: r,
                target: t.map_or("-".into(), |t| format!(">= {t:.2}x")),
                verdict: t.map_or(Verdict::Figure, |t| judge(r.map(|r| r >= t))),
            });
            rows.push(Row {
                figure: format!("{what} p50 ms"),
                sekisho: format!("{:.2}", s.p50_ms),
                reference: nginx.map_or("n/a".into(), |n| format!("{:.2}", n.p50_ms)),
                ratio: ratio(finite(s.p50_ms), nginx.and_then(|n| finite(n.p50_ms))),
                target: "-".into(),
                verdict: Verdict::Figure,
            });
            let p99_target = mode == Mode::KeepAlive && target == SEKISHO;
            let r = ratio(finite(s.p99_ms), nginx.and_then(|n| finite(n.p99_ms)));
            rows.push(Row {
                figure: format!("{what} p99 ms"),
                sekisho: format!("{:.2}", s.p99_ms),
                reference: nginx.map_or("n/a".into(), |n| format!("{:.2}", n.p99_ms)),
                ratio: r,
                target: if p99_target {
                    format!("<= {:.2}x", targets::P99_RATIO)
                } else {
                    "-".into()
                },
                verdict: if p99_target {
                    judge(r.map(|r| r <= targets::P99_RATIO))
                } else {
                    Verdict::Figure
                },
            });
            let s_cpu = s.cpu.as_ref().and_then(Cpu::per_10k);
            let n_cpu = nginx.and_then(|n| n.cpu.as_ref()).and_then(Cpu::per_10k);
            let pg_cpu = s.store_cpu.as_ref().and_then(Cpu::per_10k);
            let r = ratio(s_cpu, n_cpu);
            let cpu_target = target == SEKISHO;
            rows.push(Row {
                figure: format!("{what} CPU s/10k req (cores)"),
                sekisho: match pg_cpu {
                    Some(pg) => format!(
                        "{} +pg {pg:.2} ({})",
                        opt(s_cpu, 2),
                        opt(s.cpu.as_ref().and_then(Cpu::cores), 2)
                    ),
                    None => format!(
                        "{} ({})",
                        opt(s_cpu, 3),
                        opt(s.cpu.as_ref().and_then(Cpu::cores), 2)
                    ),
                },
                reference: format!(
                    "{} ({})",
                    opt(n_cpu, 3),
                    opt(nginx.and_then(|n| n.cpu.as_ref()).and_then(Cpu::cores), 2)
                ),
                ratio: r,
                target: if cpu_target {
                    format!("<= {:.2}x", targets::CPU_RATIO)
                } else {
                    "-".into()
                },
                verdict: if cpu_target {
                    judge(r.map(|r| r <= targets::CPU_RATIO))
                } else {
                    Verdict::Figure
                },
            });
        }
    }

    for f in extra.floors {
        let is_best = best.is_some_and(|b| std::ptr::eq(b, f));
        rows.push(Row {
            figure: format!(
                "disk: 4 KiB append + fdatasync p50 / p99 ms, {} of run",
                f.when
            ),
            sekisho: format!(
                "{:.3} / {:.3}",
                f.floor.quantile_ms(0.5),
                f.floor.quantile_ms(0.99)
            ),
            reference: "-".into(),
            ratio: None,
            target: if is_best && extra.floors.len() > 1 {
                "(the floor: lower p50)".into()
            } else {
                "-".into()
            },
            verdict: Verdict::Figure,
        });
    }
    if extra.floors.is_empty() {
        rows.push(Row {
            figure: "disk: 4 KiB append + fdatasync p50 / p99 ms".into(),
            sekisho: "n/a".into(),
            reference: "-".into(),
            ratio: None,
            target: "-".into(),
            verdict: Verdict::Missing,
        });
    }
    for &(mode, conns) in &conn_counts {
        if mode != Mode::KeepAlive {
            continue;
        }
        for target in [SEKISHO, SEKISHO_PG, SEKISHO_DIRECT] {
            let Some(s) = find(mode, conns, target) else {
                continue;
            };
            let store = store_label(target);
            let h = s.audit_commit.as_ref();
            let p50 = h.and_then(|h| h.quantile(0.5)).map(|s| s * 1000.0);
            let p99 = h.and_then(|h| h.quantile(0.99)).map(|s| s * 1000.0);
            let r50 = ratio(p50, floor_p50);
            let with_target = target == SEKISHO;
            rows.push(Row {
                figure: format!("audit commit p50 ms, {store}, keep-alive {conns}"),
                sekisho: opt(p50, 3),
                reference: format!("{} fdatasync", opt(floor_p50, 3)),
                ratio: r50,
                target: if with_target {
                    format!("<= {:.2}x fdatasync", targets::COMMIT_OVER_FDATASYNC)
                } else {
                    "-".into()
                },
                verdict: if with_target {
                    judge(r50.map(|r| r <= targets::COMMIT_OVER_FDATASYNC))
                } else {
                    Verdict::Figure
                },
            });
            rows.push(Row {
                figure: format!("audit commit p99 ms, {store}, keep-alive {conns}"),
                sekisho: opt(p99, 3),
                reference: format!("{} fdatasync", opt(floor_p99, 3)),
                ratio: ratio(p99, floor_p99),
                target: "-".into(),
                verdict: Verdict::Figure,
            });
        }
    }

    if !extra.memory.is_empty() {
        let per = |t: &str| {
            extra
                .memory
                .iter()
                .find(|m| m.target == t)
                .and_then(MemoryResult::per_conn_kib)
        };
        let (s, n) = (per(SEKISHO).or(per(SEKISHO_PG)), per(NGINX));
        let asked = extra.memory.first().map_or(0, |m| m.asked);
        let r = ratio(s, n);
        rows.push(Row {
            figure: format!("RSS KiB per idle mTLS conn ({asked} open)"),
            sekisho: opt(s, 1),
            reference: opt(n, 1),
            ratio: r,
            target: format!("<= 1.00x, <= {:.0} KiB", targets::RSS_PER_CONN_KIB),
            verdict: judge(match (s, r) {
                (Some(s), Some(r)) => Some(r <= 1.0 && s <= targets::RSS_PER_CONN_KIB),
                _ => None,
            }),
        });
    }

    println!("summary: issue 10's targets (Sekisho/nginx unless said; figures, not a test)");
    let w = rows.iter().map(|r| r.figure.len()).max().unwrap_or(10);
    let ws = rows
        .iter()
        .map(|r| r.sekisho.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let wr = rows
        .iter()
        .map(|r| r.reference.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "  {:<w$}  {:>ws$}  {:>wr$}  {:>8}  {:<22}  verdict",
        "figure", "sekisho", "nginx/ref", "ratio", "target"
    );
    let (mut met, mut not_met, mut missing) = (0, 0, 0);
    for r in &rows {
        let verdict = match r.verdict {
            Verdict::Met => {
                met += 1;
                "met"
            }
            Verdict::NotMet => {
                not_met += 1;
                "NOT MET"
            }
            Verdict::Figure => "",
            Verdict::Missing => {
                missing += 1;
                "n/a"
            }
        };
        println!(
            "  {:<w$}  {:>ws$}  {:>wr$}  {:>8}  {:<22}  {verdict}",
            r.figure,
            r.sekisho,
            r.reference,
            r.ratio.map_or("-".into(), |v| format!("{v:.2}x")),
            r.target,
        );
    }
    println!("targets: {met} met, {not_met} not met, {missing} without figures");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: &'static str, round: usize, rps: f64, p99: f64, cpu_s: f64) -> Sample {
        Sample {
            mode: Mode::KeepAlive,
            connections: 32,
            target,
            round,
            req_per_sec: rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            errors: 1,
            cpu: Some(Cpu {
                seconds: cpu_s,
                wall: 10.0,
                requests: (rps * 10.0) as u64,
            }),
            store_cpu: None,
            bench_cpu: None,
            others_cores: None,
            audit_commit: None,
            audit_batch: None,
            index_lag: None,
            threads: vec![("workers", cpu_s * 0.75), ("journal", cpu_s * 0.25)],
        }
    }

    #[test]
    fn means_and_cpu_sums() {
        let samples = vec![
            sample(NGINX, 1, 100.0, 2.0, 1.0),
            sample(SEKISHO, 1, 150.0, 1.0, 3.0),
            sample(NGINX, 2, 300.0, 4.0, 3.0),
            sample(SEKISHO, 2, 250.0, 2.0, 5.0),
        ];
        let s = summarize(&samples);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].target, NGINX);
        assert_eq!(s[0].req_per_sec, 200.0);
        assert_eq!(s[0].req_per_sec_range, (100.0, 300.0));
        assert_eq!(s[0].errors, 2);
        // nginx: 4 CPU s for 4000 requests; sekisho: 8 s for 4000.
        assert!((s[0].cpu.unwrap().per_10k().unwrap() - 10.0).abs() < 1e-9);
        assert!((s[1].cpu.unwrap().per_10k().unwrap() - 20.0).abs() < 1e-9);
        assert!((s[1].cpu.unwrap().cores().unwrap() - 0.4).abs() < 1e-9);
        assert!(
            (ratio(Some(s[1].req_per_sec), Some(s[0].req_per_sec)).unwrap() - 1.0).abs() < 1e-9
        );
        // Per thread group, summed over the rounds: 6 + 2 s of sekisho's 8, for 4000 requests.
        assert_eq!(s[1].threads, vec![("workers", 6.0), ("journal", 2.0)]);
        assert_eq!(
            per_request_us(&s[1].threads, s[1].cpu.unwrap().requests).as_deref(),
            Some("workers 1500.0, journal 500.0")
        );
        assert_eq!(per_request_us(&[("sqlite", 0.0)], 10), None);
    }

    #[test]
    fn targets_by_connections() {
        assert_eq!(targets::keep_alive_throughput(128), Some(1.0));
        assert_eq!(targets::keep_alive_throughput(32), Some(0.8));
        assert_eq!(targets::keep_alive_throughput(64), None);
        assert_eq!(targets::postgres_throughput(128), Some(0.5));
        assert!(ratio(Some(1.0), Some(0.0)).is_none());
    }
}
