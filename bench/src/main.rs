//! `sekisho-bench`: Sekisho against nginx as mTLS reverse proxies in front of the same upstream,
//! driven by the same load generator in one run on this machine, alternating targets. Prints
//! what issue 10's "Targets" asks for: keep-alive req/s, p50, p99 at 32 and 128 connections
//! (Sekisho on SQLite and on PostgreSQL), full-handshake req/s, CPU seconds per 10,000 requests,
//! the disk's raw fdatasync beside Sekisho's audit commit time, RSS per idle mTLS connection,
//! and a summary with the Sekisho/nginx ratios and the targets (the ratios are the figures, see
//! `docs/architecture.md`).
//!
//! ```text
//! cargo build --release -p sekisho -p sekisho-bench
//! cargo run --release -p sekisho-bench -- [--duration 10] [--connections 32,128] [--help]
//! cargo run --release -p sekisho-bench -- --self-test-nginx-only
//! ```

mod bare;
mod cpu;
mod disk;
mod load;
mod memory;
mod metrics;
mod nginx;
mod pg;
mod pki;
mod process;
mod report;
mod sekisho;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::cpu::{CpuSample, Procs};
use crate::load::{ClientTls, Kx, Mode, RunConfig};
use crate::metrics::Scrape;
use crate::report::{Cpu, MemoryResult, NGINX, SEKISHO, SEKISHO_DIRECT, SEKISHO_PG, Sample};

/// Sekisho vs nginx as mTLS reverse proxies: the figures of issue 10's targets from one run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Seconds measured per run (one mode, one connection count, one target), after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Keep-alive connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    connections: Vec<usize>,
    /// Workers for the full-handshake mode (default: the smallest of --connections).
    #[arg(long)]
    handshake_connections: Option<usize>,
    /// Seconds of load before measuring, in every run.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds; each round runs every mode, connection count and target, alternating the order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Modes to run (default: both).
    #[arg(long, value_enum, value_delimiter = ',')]
    mode: Vec<Mode>,
    /// Sekisho's stores to measure, comma-separated; full handshake and the idle-connection
    /// memory are measured on the first.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres,sqlite-direct"
    )]
    store: Vec<Store>,
    /// PostgreSQL server for `--store postgres`: a URL whose user may CREATE DATABASE; the
    /// benchmark makes a database of its own there and drops it at the end.
    #[arg(long, env = "SEKISHO_BENCH_PG_URL", default_value = pg::DEFAULT_ADMIN_URL)]
    pg_url: String,
    /// Idle mTLS connections to open against each proxy for the RSS-per-connection figure
    /// (0: skip the memory measurement).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// How many of those connections handshake at once.
    #[arg(long, default_value_t = 32)]
    idle_concurrency: usize,
    /// Seconds of 4 KiB append + fdatasync in Sekisho's data dir (0: skip).
    #[arg(long, default_value_t = 2.0)]
    fdatasync_secs: f64,
    /// The sekisho binary (default: next to this executable, then the workspace's
    /// target/release/sekisho, then PATH).
    #[arg(long)]
    sekisho: Option<PathBuf>,
    /// The nginx binary (default: nginx in PATH).
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// Measure nginx alone, with a PKI the benchmark makes itself (no sekisho needed).
    #[arg(long)]
    self_test_nginx_only: bool,
    /// nginx's access log: a buffered file (the default, as a production nginx would log), an
    /// unbuffered file, or off.
    #[arg(long, value_enum, default_value = "buffered")]
    nginx_access_log: nginx::AccessLog,
    /// Key-exchange groups the load generator offers.
    #[arg(long, value_enum, default_value = "x25519")]
    kx: Kx,
    /// Where to make the temp dir (Sekisho's data dir, with its audit log, lives there).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the temp dir (configs, logs, data dir) and print where it is.
    #[arg(long)]
    keep_temp: bool,
    /// Leave out the bare stack (`src/bare.rs`: tokio + rustls + hyper as an mTLS proxy with
    /// nothing of Sekisho), measured beside the others in keep-alive runs to show the floor of
    /// the stack Sekisho is built on.
    #[arg(long)]
    no_bare_stack: bool,
    /// Internal: run as the bare stack's process (LISTEN UPSTREAM CERT KEY CRL CA...).
    #[arg(long, num_args = 5.., hide = true)]
    bare_child: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Store {
    /// SQLite in the data dir (`sekisho init`'s default).
    Sqlite,
    /// One replica on the PostgreSQL server of --pg-url.
    Postgres,
    /// SQLite with `[audit] journal = false`: each audit batch's transaction is the durability
    /// point, as before the journal (the before/after of the change, in one run).
    SqliteDirect,
}

impl Store {
    fn target_name(self) -> &'static str {
        match self {
            Store::Sqlite => SEKISHO,
            Store::Postgres => SEKISHO_PG,
            Store::SqliteDirect => SEKISHO_DIRECT,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(child) = &args.bare_child {
        return match bare::ChildArgs::parse(child).and_then(bare::run_child) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare stack: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One proxy under load.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    tls: Arc<ClientTls>,
    /// The proxy's processes, for CPU and RSS.
    procs: Procs,
    /// PostgreSQL backends serving its database (sekisho-pg).
    store_procs: Option<Procs>,
    /// The management listener with `/metrics` (Sekisho).
    mgmt: Option<SocketAddr>,
    /// Measured in full-handshake mode and for memory (nginx and the first Sekisho).
    primary: bool,
}

/// One Sekisho instance with what it needs kept alive (drop order: the process, then its
/// PostgreSQL database).
struct Instance {
    store: Store,
    running: sekisho::Sekisho,
    data_dir: PathBuf,
    pki: pki::Pki,
    db: Option<pg::Database>,
}

/// What is read at each edge of a measurement window.
struct WindowSample {
    at: Instant,
    cpu: CpuSample,
    store_cpu: Option<CpuSample>,
    bench_cpu: CpuSample,
    machine_busy: Option<f64>,
    scrape: Option<Scrape>,
}

fn sampler_for(target: &Target) -> load::Sampler<WindowSample> {
    let procs = target.procs.clone();
    let store_procs = target.store_procs.clone();
    let mgmt = target.mgmt;
    let bench = Procs::One(cpu::own_pid());
    Arc::new(move || WindowSample {
        at: Instant::now(),
        cpu: procs.sample(),
        store_cpu: store_procs.as_ref().map(Procs::sample),
        bench_cpu: bench.sample(),
        machine_busy: cpu::machine_busy_seconds(),
        scrape: mgmt.and_then(metrics::try_scrape),
    })
}

fn fill_sample(sample: &mut Sample, requests: u64, edges: &(WindowSample, WindowSample)) {
    let (a, b) = edges;
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let cpu = |after: &CpuSample, before: &CpuSample| Cpu {
        seconds: after.seconds_since(before),
        wall,
        requests,
    };
    sample.cpu = Some(cpu(&b.cpu, &a.cpu));
    sample.threads = b.cpu.thread_seconds_since(&a.cpu);
    sample.bench_cpu = Some(cpu(&b.bench_cpu, &a.bench_cpu));
    if let (Some(after), Some(before)) = (&b.store_cpu, &a.store_cpu) {
        sample.store_cpu = Some(cpu(after, before));
    }
    if let (Some(after), Some(before)) = (b.machine_busy, a.machine_busy) {
        let ours: f64 = [&sample.cpu, &sample.store_cpu, &sample.bench_cpu]
            .iter()
            .filter_map(|c| c.map(|c| c.seconds))
            .sum();
        sample.others_cores = Some(((after - before - ours) / wall.max(1e-9)).max(0.0));
    }
    if let (Some(after), Some(before)) = (&b.scrape, &a.scrape) {
        let delta = |name: &str| {
            after
                .histogram(name)
                .zip(before.histogram(name))
                .and_then(|(b, a)| b.delta(&a))
        };
        sample.audit_commit = delta(metrics::AUDIT_COMMIT_SECONDS);
        sample.audit_batch = delta(metrics::AUDIT_BATCH_SIZE);
        sample.index_lag = after.value(metrics::AUDIT_INDEX_LAG);
    }
}

fn run(args: Args) -> Result<()> {
    let began = Instant::now();
    let mut connections = args.connections.clone();
    connections.dedup();
    if connections.is_empty() || connections.contains(&0) || args.duration == 0 || args.rounds == 0
    {
        bail!("--connections (each), --duration and --rounds must be at least 1");
    }
    let handshake_connections = args
        .handshake_connections
        .unwrap_or_else(|| connections.iter().copied().min().unwrap_or(32));
    let modes = if args.mode.is_empty() {
        vec![Mode::KeepAlive, Mode::FullHandshake]
    } else {
        args.mode.clone()
    };
    let mut stores = args.store.clone();
    stores.dedup();
    if args.self_test_nginx_only {
        stores.clear();
    } else if stores.is_empty() {
        bail!("--store needs at least one of sqlite, postgres");
    }

    // Enough descriptors for the idle connections, here (client side) and in the children,
    // which inherit the limit.
    let max_conns = connections
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(handshake_connections);
    let want_fds = (args.idle_connections + max_conns * 2 + 4096) as u64;
    let nofile = process::raise_nofile(want_fds)?;
    if nofile.soft < want_fds {
        println!(
            "warning: RLIMIT_NOFILE is {} (hard {}), below the {want_fds} wanted: some idle \
             connections may fail",
            nofile.soft, nofile.hard
        );
    }
    let connection_limit = usize::try_from(nofile.soft.min(want_fds)).unwrap_or(usize::MAX);

    let nginx_bin = nginx::find_binary(args.nginx.clone())?;
    let nginx_version = nginx::version(&nginx_bin)?;
    let sekisho_bin = if stores.is_empty() {
        None
    } else {
        Some(sekisho::find_binary(args.sekisho.clone())?)
    };
    let sekisho_version = sekisho_bin.as_deref().map(sekisho::version).transpose()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("load")
        .build()?;
    rt.spawn(watch_signals());

    let mut builder = tempfile::Builder::new();
    builder.prefix("sekisho-bench-");
    let temp = match &args.work_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .context("making the temp dir")?;
    // nginx workers may run as another user (nobody) when started as root.
    set_mode(temp.path(), 0o711)?;
    let work = temp.path().to_owned();
    let _cleanup = if args.keep_temp {
        println!("temp dir will be kept: {}", temp.keep().display());
        None
    } else {
        Some(temp)
    };

    let upstream = upstream::Upstream::start()?;

    // Sekisho first: the first instance's CA makes the certificates nginx serves too.
    let tuning = sekisho::Tuning {
        max_connections: connection_limit.max(4096),
        idle_secs: nginx::KEEPALIVE_TIMEOUT_SECS,
        // Each load connection has at most one request in flight.
        terminal_in_flight: max_conns.max(256),
        audit_journal: true,
    };
    let mut notes: Vec<String> = Vec::new();
    let mut instances: Vec<Instance> = Vec::new();
    if let Some(bin) = &sekisho_bin {
        for &store in &stores {
            let (dir, db) = match store {
                Store::Sqlite => (work.join("sekisho"), None),
                Store::SqliteDirect => (work.join("sekisho-direct"), None),
                Store::Postgres => (
                    work.join("sekisho-pg"),
                    Some(pg::create(&args.pg_url).context(
                        "--store postgres needs a PostgreSQL server (--pg-url, or \
                         --store sqlite to leave it out)",
                    )?),
                ),
            };
            let prepared = sekisho::prepare(
                bin,
                &dir,
                upstream.addr,
                db.as_ref().map(|d| d.url.as_str()),
                sekisho::Tuning {
                    audit_journal: store != Store::SqliteDirect,
                    ..tuning
                },
            )
            .with_context(|| format!("setting up Sekisho on {store:?}"))?;
            for note in &prepared.notes {
                if !notes.contains(note) {
                    notes.push(note.clone());
                }
            }
            let running = sekisho::serve(bin, &prepared, &dir.join("serve.log"))
                .with_context(|| format!("starting Sekisho on {store:?}"))?;
            instances.push(Instance {
                store,
                running,
                data_dir: prepared.data_dir.clone(),
                pki: prepared.pki.clone(),
                db,
            });
        }
    }
    let pki = match instances.first() {
        Some(i) => i.pki.clone(),
        None => pki::self_test(&work.join("pki"))?,
    };

    let nginx_dir = work.join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    set_mode(&nginx_dir, 0o755)?;
    let nginx_settings = nginx::Settings {
        binary: &nginx_bin,
        dir: &nginx_dir,
        listen: SocketAddr::from(([127, 0, 0, 1], process::free_port()?)),
        upstream: upstream.addr,
        pki: &pki,
        workers: cores,
        access_log: args.nginx_access_log,
        worker_connections: connection_limit.max(4096),
    };
    let nginx = nginx::start(&nginx_settings)?;

    let tls_for = |pki: &pki::Pki| -> Result<Arc<ClientTls>> {
        Ok(Arc::new(ClientTls::load(
            &pki.client_cert,
            &pki.client_key,
            &pki.client_trust,
            args.kx,
        )?))
    };
    // nginx and the bare stack serve the same certificate and trust the same CAs.
    let nginx_tls = tls_for(&pki)?;
    let mut targets = vec![Target {
        name: NGINX,
        addr: nginx.addr,
        tls: nginx_tls.clone(),
        procs: Procs::Tree(nginx.master_pid()),
        store_procs: None,
        mgmt: None,
        primary: true,
    }];
    // Started after nginx, with nginx's PKI and upstream; kept alive to the end of the run.
    let bare = if !args.no_bare_stack && modes.contains(&Mode::KeepAlive) {
        Some(bare::start(&pki, upstream.addr, &work.join("bare.log"))?)
    } else {
        None
    };
    for (i, inst) in instances.iter().enumerate() {
        targets.push(Target {
            name: inst.store.target_name(),
            addr: inst.running.addr,
            tls: tls_for(&inst.pki)?,
            procs: Procs::One(inst.running.pid()),
            store_procs: inst
                .db
                .as_ref()
                .map(|db| Procs::CmdlineContains(format!(" {} ", db.name))),
            mgmt: Some(inst.running.mgmt),
            primary: i == 0,
        });
    }
    if let Some(b) = &bare {
        targets.push(Target {
            name: report::BARE,
            addr: b.addr,
            tls: nginx_tls.clone(),
            procs: Procs::One(b.pid()),
            store_procs: None,
            mgmt: None,
            primary: false,
        });
    }

    println!("sekisho-bench: Sekisho vs nginx as mTLS reverse proxies, loopback, one run");
    println!(
        "machine: {cores} cores (available parallelism); RLIMIT_NOFILE {} (hard {})",
        nofile.soft, nofile.hard
    );
    println!(
        "work dir (Sekisho's data dirs and audit logs, nginx's files and access log): {} on {}",
        work.display(),
        disk::filesystem_of(&work).unwrap_or_else(|| "?".to_owned())
    );
    println!("nginx: {nginx_version} ({})", nginx_settings.describe());
    match &sekisho_version {
        Some(v) => println!(
            "sekisho: {v}; stores: {}",
            instances
                .iter()
                .map(|i| match (&i.db, i.store) {
                    (Some(db), _) => format!("{} = PostgreSQL database {}", SEKISHO_PG, db.name),
                    (None, Store::SqliteDirect) => format!(
                        "{SEKISHO_DIRECT} = SQLite in its data dir, [audit] journal = false"
                    ),
                    (None, _) => format!("{SEKISHO} = SQLite in its data dir"),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => println!("sekisho: not run (--self-test-nginx-only: nginx alone, self-made PKI)"),
    }
    if bare.is_some() {
        println!(
            "{}: tokio (multi-thread) + rustls (client certificate, nginx's CAs and CRLs) + hyper 1 \
             HTTP/1.1 server + hyper-util's pooled client, nothing of Sekisho (src/bare.rs); \
             keep-alive only, no target",
            report::BARE
        );
    }
    println!(
        "upstream: hyper HTTP/1.1 on {}, GET / → {} B HTML, keep-alive",
        upstream.addr,
        upstream::BODY_LEN
    );
    println!(
        "load: rustls + hyper HTTP/1.1 client, client cert, SNI {}, kx {:?}; keep-alive at {} \
         connections, full handshake with {handshake_connections} workers; warm-up {} s + {} s \
         measured per run; {} round(s), target order alternating",
        load::SERVER_NAME,
        args.kx,
        connections
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
        args.warmup,
        args.duration,
        args.rounds
    );
    println!(
        "  keep-alive: one connection per worker, requests in sequence; \
         full-handshake: new TCP + TLS per request, Resumption::disabled()"
    );
    println!(
        "  CPU: utime+stime from /proc/<pid>/stat at the start and end of each window (nginx: \
         master + workers; sekisho-pg: + the PostgreSQL backends of its database); audit commit: \
         bucket deltas of {} between the same two moments",
        metrics::AUDIT_COMMIT_SECONDS
    );
    for note in &notes {
        println!("note: {note}");
    }

    for target in &targets {
        match rt.block_on(load::probe(target.addr, &target.tls)) {
            Ok(negotiated) => println!("TLS with {}: {negotiated}", target.name),
            Err(e) => {
                let log = if target.name == NGINX {
                    format!("\nnginx error.log:\n{}", nginx::error_log_tail(&nginx_dir))
                } else {
                    String::new()
                };
                return Err(e.context(format!("probing {} at {}{log}", target.name, target.addr)));
            }
        }
    }

    // The disk's floor, on the filesystem of the first Sekisho's data dir: measured now and
    // again at the end, since one short sample can land on a moment the disk is busy.
    let floor_dir = instances
        .first()
        .map_or(work.clone(), |i| i.data_dir.clone());
    let mut floors = Vec::new();
    if args.fdatasync_secs > 0.0 {
        println!();
        floors.push(measure_floor(&floor_dir, args.fdatasync_secs, "start")?);
    }

    // Memory first, while the proxies have served nothing but the probe.
    let mut memory_results = Vec::new();
    if args.idle_connections > 0 {
        println!();
        println!(
            "memory: {} idle mTLS connections per proxy (full handshake + one GET / each, {} at \
             a time), VmRSS before and after",
            args.idle_connections, args.idle_concurrency
        );
        for target in targets.iter().filter(|t| t.primary) {
            let result = measure_memory(&rt, target, &args)?;
            result.print();
            memory_results.push(result);
            process::check_interrupted()?;
        }
    }

    println!();
    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        for &mode in &modes {
            let counts = match mode {
                Mode::KeepAlive => connections.clone(),
                Mode::FullHandshake => vec![handshake_connections],
            };
            for &conns in &counts {
                // ABBA: reverse the target order every other round.
                let mut order: Vec<&Target> = targets
                    .iter()
                    .filter(|t| mode == Mode::KeepAlive || t.primary)
                    .collect();
                if round % 2 == 0 {
                    order.reverse();
                }
                for target in order {
                    let cfg = RunConfig {
                        mode,
                        connections: conns,
                        warmup: Duration::from_secs(args.warmup),
                        duration: Duration::from_secs(args.duration),
                    };
                    let (result, edges) = rt.block_on(load::run(
                        target.addr,
                        &target.tls,
                        &cfg,
                        sampler_for(target),
                    ))?;
                    let mut sample = Sample::new(mode, conns, target.name, round, &result);
                    if let Some(edges) = &edges {
                        fill_sample(&mut sample, result.finished_in_window, edges);
                    }
                    report::print_run(&sample, &result);
                    samples.push(sample);
                    // Let closing connections settle before the next run.
                    std::thread::sleep(Duration::from_millis(500));
                    process::check_interrupted()?;
                }
            }
        }
    }

    if args.fdatasync_secs > 0.0 {
        println!();
        floors.push(measure_floor(&floor_dir, args.fdatasync_secs, "end")?);
    }

    let summaries = report::summarize(&samples);
    println!();
    report::print_table(&summaries);
    println!();
    report::print_targets(
        &summaries,
        &report::Extra {
            floors: &floors,
            memory: &memory_results,
        },
    );
    if let Some(growth) = summaries
        .iter()
        .filter_map(|s| s.audit_commit.as_ref()?.bucket_growth())
        .reduce(f64::max)
    {
        println!(
            "note: audit commit quantiles are interpolated inside the gateway's histogram \
             buckets, each ×{growth:.0} wider than the last: read them as ± one bucket"
        );
    }
    report::print_noise(&samples);
    println!("upstream answered {} requests in all", upstream.served());
    if summaries.iter().any(|s| s.errors > 0) {
        println!("warning: some requests failed (see the errors column and the per-run lines)");
    }
    println!("run took {:.0} s", began.elapsed().as_secs_f64());

    // Stop the proxies before the upstream (and each Sekisho before its database), then the
    // temp dir goes.
    drop(nginx);
    drop(instances);
    drop(upstream);
    Ok(())
}

/// The fdatasync floor in `dir`, printed; `when` says which of the run's measurements it is.
fn measure_floor(dir: &Path, secs: f64, when: &'static str) -> Result<report::Floor> {
    let floor = disk::measure(dir, Duration::from_secs_f64(secs))?;
    println!(
        "disk ({when} of run): {} × ({} B append + fdatasync) in {} in {:.1} s: p50 {:.3} ms, \
         p99 {:.3} ms, mean {:.3} ms",
        floor.syncs,
        disk::APPEND_BYTES,
        dir.display(),
        floor.elapsed.as_secs_f64(),
        floor.quantile_ms(0.5),
        floor.quantile_ms(0.99),
        floor.mean_ms()
    );
    Ok(report::Floor { when, floor })
}

/// Opens `--idle-connections` connections to one proxy and reads its RSS before and after.
fn measure_memory(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    args: &Args,
) -> Result<MemoryResult> {
    const SETTLE: Duration = Duration::from_secs(2);
    std::thread::sleep(SETTLE);
    let before = memory::rss_kib(&target.procs.pids());
    let conns = rt.block_on(memory::open_idle(
        target.addr,
        &target.tls,
        args.idle_connections,
        args.idle_concurrency,
        target.name,
    ))?;
    std::thread::sleep(SETTLE);
    let still_open = conns.still_open();
    let after = memory::rss_kib(&target.procs.pids());
    let gateway_gauge = target
        .mgmt
        .and_then(metrics::try_scrape)
        .and_then(|s| s.value(metrics::CONNECTIONS_OPEN));
    // Issue 14's load item: the proxy keeps serving keep-alive clients while the idle
    // connections stay open (they are counted again afterwards, to show none was shed).
    let busy = (args.duration > 0).then(|| {
        let cfg = RunConfig {
            mode: Mode::KeepAlive,
            connections: args.connections.first().copied().unwrap_or(32),
            warmup: Duration::from_secs(args.warmup.min(1)),
            duration: Duration::from_secs(args.duration.div_ceil(2).max(2)),
        };
        let sampler: load::Sampler<()> = Arc::new(|| ());
        rt.block_on(load::run(target.addr, &target.tls, &cfg, sampler))
            .map(|(r, _)| report::BusyWhileIdle {
                connections: cfg.connections,
                req_per_sec: r.req_per_sec(),
                p99_ms: r.quantile_ms(0.99),
                errors: r.errors,
                idle_still_open: conns.still_open(),
            })
    });
    let busy = busy.transpose()?;
    let result = MemoryResult {
        target: target.name,
        asked: args.idle_connections,
        opened: conns.opened(),
        failed: conns.failed,
        first_error: conns.first_error.clone(),
        took_secs: conns.took.as_secs_f64(),
        still_open,
        rss_before_kib: before,
        rss_after_kib: after,
        rss_after_close_kib: 0,
        gateway_gauge,
        busy,
    };
    drop(conns);
    std::thread::sleep(SETTLE);
    Ok(MemoryResult {
        rss_after_close_kib: memory::rss_kib(&target.procs.pids()),
        ..result
    })
}

async fn watch_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("interrupted: stopping");
    process::INTERRUPTED.store(true, Ordering::Relaxed);
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}
