//! The figures: one line per run as it finishes, then the per-target means of the rounds and
//! the Sekisho/nginx ratios.

use crate::load::{Mode, RunResult};

pub const NGINX: &str = "nginx";
pub const SEKISHO: &str = "sekisho";

/// One run of one mode against one target.
pub struct Sample {
    pub mode: Mode,
    pub target: &'static str,
    pub round: usize,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Sample {
    pub fn new(mode: Mode, target: &'static str, round: usize, run: &RunResult) -> Self {
        Self {
            mode,
            target,
            round,
            req_per_sec: run.req_per_sec(),
            p50_ms: run.quantile_ms(0.50),
            p99_ms: run.quantile_ms(0.99),
            errors: run.errors,
        }
    }
}

/// Prints the line for one finished run, with error details when there were any.
pub fn print_run(sample: &Sample, run: &RunResult) {
    println!(
        "  round {} {:<14} {:<8} {:>10.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{}",
        sample.round,
        sample.mode.label(),
        sample.target,
        sample.req_per_sec,
        sample.p50_ms,
        sample.p99_ms,
        sample.errors,
        if run.reconnects > 0 {
            format!(
                "  (server-closed keep-alive connections re-made: {})",
                run.reconnects
            )
        } else {
            String::new()
        }
    );
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

/// Mean of the rounds of one mode and target.
pub struct Summary {
    pub mode: Mode,
    pub target: &'static str,
    pub rounds: usize,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn summarize(samples: &[Sample], modes: &[Mode], targets: &[&'static str]) -> Vec<Summary> {
    let mut out = Vec::new();
    for &mode in modes {
        for &target in targets {
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.mode == mode && s.target == target)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let n = runs.len() as f64;
            let mean = |f: fn(&Sample) -> f64| runs.iter().map(|s| f(s)).sum::<f64>() / n;
            out.push(Summary {
                mode,
                target,
                rounds: runs.len(),
                req_per_sec: mean(|s| s.req_per_sec),
                p50_ms: mean(|s| s.p50_ms),
                p99_ms: mean(|s| s.p99_ms),
                errors: runs.iter().map(|s| s.errors).sum(),
            });
        }
    }
    out
}

pub fn print_table(summaries: &[Summary]) {
    println!(
        "{:<15} {:<8} {:>11} {:>9} {:>9} {:>7}  (mean of {} round(s); errors summed)",
        "mode",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        summaries.first().map_or(0, |s| s.rounds)
    );
    for s in summaries {
        println!(
            "{:<15} {:<8} {:>11.1} {:>9.2} {:>9.2} {:>7}",
            s.mode.label(),
            s.target,
            s.req_per_sec,
            s.p50_ms,
            s.p99_ms,
            s.errors
        );
    }
}

/// Sekisho / nginx for throughput and p99 of one mode, if both were measured.
fn ratios(summaries: &[Summary], mode: Mode) -> Option<(f64, f64)> {
    let find = |target| {
        summaries
            .iter()
            .find(|s| s.mode == mode && s.target == target)
    };
    let (sekisho, nginx) = (find(SEKISHO)?, find(NGINX)?);
    Some((
        sekisho.req_per_sec / nginx.req_per_sec,
        sekisho.p99_ms / nginx.p99_ms,
    ))
}

fn fmt_ratio(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.2}"),
        Some(_) => "n/a (no successful requests)".to_owned(),
        None => "n/a (not measured)".to_owned(),
    }
}

pub fn print_ratios(summaries: &[Summary], modes: &[Mode]) {
    println!("ratios Sekisho/nginx:");
    for &mode in modes {
        let r = ratios(summaries, mode);
        println!(
            "  {:<15} throughput {}  p99 {}",
            mode.label(),
            fmt_ratio(r.map(|r| r.0)),
            fmt_ratio(r.map(|r| r.1))
        );
    }
    let keep_alive = ratios(summaries, Mode::KeepAlive);
    let full = ratios(summaries, Mode::FullHandshake);
    println!(
        "keep-alive throughput ratio: {} (target >= 1.00)",
        fmt_ratio(keep_alive.map(|r| r.0))
    );
    println!(
        "keep-alive p99 ratio: {} (target <= 1.00)",
        fmt_ratio(keep_alive.map(|r| r.1))
    );
    println!(
        "full-handshake ratio: {} (target >= 1.30)",
        fmt_ratio(full.map(|r| r.0))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mode: Mode, target: &'static str, round: usize, rps: f64, p99: f64) -> Sample {
        Sample {
            mode,
            target,
            round,
            req_per_sec: rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            errors: 1,
        }
    }

    #[test]
    fn means_and_ratios() {
        let samples = vec![
            sample(Mode::KeepAlive, NGINX, 1, 100.0, 2.0),
            sample(Mode::KeepAlive, SEKISHO, 1, 150.0, 1.0),
            sample(Mode::KeepAlive, NGINX, 2, 300.0, 4.0),
            sample(Mode::KeepAlive, SEKISHO, 2, 250.0, 2.0),
        ];
        let s = summarize(&samples, &[Mode::KeepAlive], &[NGINX, SEKISHO]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].req_per_sec, 200.0);
        assert_eq!(s[0].errors, 2);
        let (tput, p99) = ratios(&s, Mode::KeepAlive).unwrap();
        assert!((tput - 1.0).abs() < 1e-9);
        assert!((p99 - 0.5).abs() < 1e-9);
        assert!(ratios(&s, Mode::FullHandshake).is_none());
    }
}
