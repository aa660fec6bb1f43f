//! `sekisho-bench`: Sekisho against nginx as mTLS reverse proxies in front of the same upstream,
//! driven by the same load generator in one run on this machine, alternating targets; prints
//! req/s, p50, p99 and the Sekisho/nginx ratios (the ratios are the figures, see DESIGN.md
//! "Performance method").
//!
//! ```text
//! cargo build --release -p sekisho
//! cargo run --release -p sekisho-bench -- [--duration 10] [--connections 32] [--sekisho PATH]
//! cargo run --release -p sekisho-bench -- --self-test-nginx-only
//! ```

// Measurement modules for issue 10's figures, wired into the run by the next commit.
#[allow(dead_code)]
mod cpu;
#[allow(dead_code)]
mod disk;
mod load;
#[allow(dead_code)]
mod memory;
#[allow(dead_code)]
mod metrics;
mod nginx;
#[allow(dead_code)]
mod pg;
mod pki;
mod process;
mod report;
mod sekisho;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::load::{ClientTls, Kx, Mode, RunConfig};
use crate::report::{NGINX, SEKISHO, Sample};

/// Sekisho vs nginx as mTLS reverse proxies: throughput and latency ratios from one run.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Seconds measured per run (one mode against one target), after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections (keep-alive) or workers (full handshake).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of load before measuring, in every run.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds; each round runs every mode against every target, alternating the order.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Modes to run (default: both).
    #[arg(long, value_enum, value_delimiter = ',')]
    mode: Vec<Mode>,
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Target {
    name: &'static str,
    addr: SocketAddr,
}

fn run(args: Args) -> Result<()> {
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be at least 1");
    }
    let modes = if args.mode.is_empty() {
        vec![Mode::KeepAlive, Mode::FullHandshake]
    } else {
        args.mode.clone()
    };

    let nginx_bin = nginx::find_binary(args.nginx.clone())?;
    let nginx_version = nginx::version(&nginx_bin)?;
    let sekisho_bin = if args.self_test_nginx_only {
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

    // Sekisho first: its CA makes the certificates nginx serves too.
    let mut notes = Vec::new();
    let (pki, sekisho) = match &sekisho_bin {
        Some(bin) => {
            let prepared = sekisho::prepare(bin, &work.join("sekisho"), upstream.addr)?;
            notes.extend(prepared.notes.iter().cloned());
            let running = sekisho::serve(bin, &prepared, &work.join("sekisho").join("serve.log"))?;
            (prepared.pki, Some(running))
        }
        None => (pki::self_test(&work.join("pki"))?, None),
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
        worker_connections: 4096,
    };
    let nginx = nginx::start(&nginx_settings)?;

    let mut targets = vec![Target {
        name: NGINX,
        addr: nginx.addr,
    }];
    if let Some(s) = &sekisho {
        targets.push(Target {
            name: SEKISHO,
            addr: s.addr,
        });
    }

    let tls = ClientTls::load(
        &pki.client_cert,
        &pki.client_key,
        &pki.client_trust,
        args.kx,
    )?;

    println!("sekisho-bench: Sekisho vs nginx as mTLS reverse proxies, loopback, one run");
    println!("machine: {cores} cores (available parallelism)");
    println!(
        "work dir (Sekisho's data dir and audit log, nginx's files): {}",
        work.display()
    );
    println!("nginx: {nginx_version} ({})", nginx_settings.describe());
    match &sekisho_version {
        Some(v) => println!("sekisho: {v}"),
        None => println!("sekisho: not run (--self-test-nginx-only: nginx alone, self-made PKI)"),
    }
    println!(
        "upstream: hyper HTTP/1.1 on {}, GET / → {} B HTML, keep-alive",
        upstream.addr,
        upstream::BODY_LEN
    );
    println!(
        "load: rustls + hyper HTTP/1.1 client, client cert, SNI {}, kx {:?}; {} connections; \
         warm-up {} s + {} s measured per run; {} round(s), target order alternating",
        load::SERVER_NAME,
        args.kx,
        args.connections,
        args.warmup,
        args.duration,
        args.rounds
    );
    println!(
        "  keep-alive: one connection per worker, requests in sequence; \
         full-handshake: new TCP + TLS per request, Resumption::disabled()"
    );
    for note in &notes {
        println!("note: {note}");
    }

    for target in &targets {
        match rt.block_on(load::probe(target.addr, &tls)) {
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

    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        for &mode in &modes {
            // ABBA: reverse the target order every other round.
            let order: Vec<&Target> = if round % 2 == 1 {
                targets.iter().collect()
            } else {
                targets.iter().rev().collect()
            };
            for target in order {
                let cfg = RunConfig {
                    mode,
                    connections: args.connections,
                    warmup: Duration::from_secs(args.warmup),
                    duration: Duration::from_secs(args.duration),
                };
                let result = rt.block_on(load::run(target.addr, &tls, &cfg))?;
                let sample = Sample::new(mode, target.name, round, &result);
                report::print_run(&sample, &result);
                samples.push(sample);
                // Let closing connections settle before the next run.
                std::thread::sleep(Duration::from_millis(500));
                process::check_interrupted()?;
            }
        }
    }

    let names: Vec<&'static str> = targets.iter().map(|t| t.name).collect();
    let summaries = report::summarize(&samples, &modes, &names);
    println!();
    report::print_table(&summaries);
    println!();
    report::print_ratios(&summaries, &modes);
    println!("upstream answered {} requests in all", upstream.served());
    if summaries.iter().any(|s| s.errors > 0) {
        println!("warning: some requests failed (see the errors column and the per-run lines)");
    }

    // Stop the proxies before the upstream, then the temp dir goes.
    drop(nginx);
    drop(sekisho);
    drop(upstream);
    Ok(())
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
