//! The gateway's own figures, scraped from its management listener (`GET /metrics`, Prometheus /
//! OpenMetrics text): the audit commit histogram, read before and after each run so that the
//! quantiles come from the bucket deltas of that run only.
//!
//! The audit log is being rewritten and its metric names may change: every name the benchmark
//! reads is a constant here, and a missing metric is reported as "n/a", never as a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Histogram of the time one audit batch takes to become durable (seconds).
pub const AUDIT_COMMIT_SECONDS: &str = "sekisho_audit_commit_seconds";
/// Histogram of records per audit batch.
pub const AUDIT_BATCH_SIZE: &str = "sekisho_audit_batch_size";
/// Gauge of audit records durable in the journal but not yet in the store (the indexer's lag;
/// at 20,000 the journal holds new batches back).
pub const AUDIT_INDEX_LAG: &str = "sekisho_audit_index_lag_records";
/// Gauge of open terminal connections.
pub const CONNECTIONS_OPEN: &str = "sekisho_connections_open";

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One scrape of `/metrics`: the raw text, parsed on demand.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    text: String,
}

impl Scrape {
    pub fn parse(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The histogram `name` (cumulative buckets summed over label sets), if it is there.
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let mut h = Histogram::default();
        let mut seen = false;
        for sample in samples(&self.text) {
            if sample.name == bucket {
                let Some(le) = sample.label("le").and_then(parse_le) else {
                    continue;
                };
                *h.buckets.entry(OrdF64(le)).or_default() += sample.value;
                seen = true;
            } else if sample.name == sum {
                h.sum += sample.value;
            } else if sample.name == count {
                h.count += sample.value;
            }
        }
        seen.then_some(h)
    }

    /// The value of gauge or counter `name` (summed over label sets), if it is there.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for sample in samples(&self.text) {
            if sample.name == name {
                *found.get_or_insert(0.0) += sample.value;
            }
        }
        found
    }
}

/// `GET http://addr/metrics` with std only (the management listener is plain HTTP).
pub fn scrape(addr: SocketAddr) -> Result<Scrape> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of headers in the /metrics answer")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        bail!("GET /metrics answered {status}");
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok(Scrape::parse(if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    }))
}

/// Scrapes, turning failure into `None` (the figure is then "n/a").
pub fn try_scrape(addr: SocketAddr) -> Option<Scrape> {
    scrape(addr).ok()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16);
        match size {
            Ok(0) | Err(_) => break,
            Ok(n) if n <= after.len() => {
                out.push_str(&after[..n]);
                rest = after[n..].trim_start_matches("\r\n");
            }
            Ok(_) => {
                out.push_str(after);
                break;
            }
        }
    }
    out
}

/// f64 with a total order, for bucket bounds.
#[derive(Debug, Clone, Copy)]
struct OrdF64(f64);
impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A Prometheus histogram: cumulative bucket counts by upper bound (`le`, +Inf included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: BTreeMap<OrdF64, f64>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// `self - before`, bucket by bucket (a bound missing before counts with the cumulative
    /// count of the next lower bound there). A counter that went backwards (the gateway
    /// restarted) gives `None`.
    pub fn delta(&self, before: &Histogram) -> Option<Histogram> {
        let mut buckets = BTreeMap::new();
        for (le, &n) in &self.buckets {
            let was = before
                .buckets
                .range(..=*le)
                .next_back()
                .map_or(0.0, |(_, &c)| c);
            let d = n - was;
            if d < 0.0 {
                return None;
            }
            buckets.insert(*le, d);
        }
        let count = self.count - before.count;
        if count < 0.0 {
            return None;
        }
        Some(Histogram {
            buckets,
            sum: self.sum - before.sum,
            count,
        })
    }

    /// Adds another histogram's counts (same metric, another run).
    pub fn merge(&mut self, other: &Histogram) {
        for (le, &n) in &other.buckets {
            *self.buckets.entry(*le).or_default() += n;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Observations (from the +Inf bucket, else `_count`).
    pub fn total(&self) -> f64 {
        self.buckets
            .last_key_value()
            .map_or(self.count, |(_, &n)| n.max(self.count))
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.total();
        (n > 0.0).then(|| self.sum / n)
    }

    /// The q-quantile as Prometheus' `histogram_quantile` computes it: linear interpolation
    /// inside the bucket it falls in (from 0 for the first bucket); a quantile in the +Inf
    /// bucket is reported as the largest finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (&OrdF64(le), &cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below {
                if le.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below) / (cumulative - below);
                return Some(lower + (le - lower) * within.clamp(0.0, 1.0));
            }
            lower = if le.is_finite() { le } else { lower };
            below = cumulative;
        }
        Some(lower)
    }

    /// Ratio of consecutive finite bucket bounds (2.0 for exponential buckets ×2): how coarse
    /// the quantiles are.
    pub fn bucket_growth(&self) -> Option<f64> {
        let finite: Vec<f64> = self
            .buckets
            .keys()
            .map(|k| k.0)
            .filter(|b| b.is_finite() && *b > 0.0)
            .collect();
        finite.windows(2).map(|w| w[1] / w[0]).reduce(f64::max)
    }
}

/// One sample line of the text format.
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        // Label values here are numbers and simple words: no escaped quotes or commas.
        self.labels.split(',').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
    }
}

fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = open + line[open..].find('}')?;
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            None => {
                let (name, rest) = line.split_once(' ')?;
                (name, "", rest)
            }
        };
        let value = rest.split_whitespace().next()?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        Some(Sample {
            name: name.trim(),
            labels,
            value,
        })
    })
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP sekisho_audit_commit_seconds Time to commit one audit batch.
# TYPE sekisho_audit_commit_seconds histogram
sekisho_audit_commit_seconds_sum 0.01
sekisho_audit_commit_seconds_count 10
sekisho_audit_commit_seconds_bucket{le=\"0.00025\"} 0
sekisho_audit_commit_seconds_bucket{le=\"0.0005\"} 5
sekisho_audit_commit_seconds_bucket{le=\"0.001\"} 10
sekisho_audit_commit_seconds_bucket{le=\"+Inf\"} 10
sekisho_connections_open 3
# EOF
";

    const AFTER: &str = "\
sekisho_audit_commit_seconds_sum 0.11
sekisho_audit_commit_seconds_count 110
sekisho_audit_commit_seconds_bucket{le=\"0.00025\"} 0
sekisho_audit_commit_seconds_bucket{le=\"0.0005\"} 5
sekisho_audit_commit_seconds_bucket{le=\"0.001\"} 60
sekisho_audit_commit_seconds_bucket{le=\"0.002\"} 110
sekisho_audit_commit_seconds_bucket{le=\"+Inf\"} 110
";

    #[test]
    fn quantiles_from_bucket_deltas() {
        let before = Scrape::parse(BEFORE)
            .histogram(AUDIT_COMMIT_SECONDS)
            .unwrap();
        let after = Scrape::parse(AFTER)
            .histogram(AUDIT_COMMIT_SECONDS)
            .unwrap();
        let d = after.delta(&before).unwrap();
        assert_eq!(d.total(), 100.0);
        assert!((d.mean().unwrap() - 0.001).abs() < 1e-12);
        // 50 of the 100 new ones are in (0.5 ms, 1 ms], 50 in (1 ms, 2 ms].
        assert!((d.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        assert!((d.quantile(0.25).unwrap() - 0.00075).abs() < 1e-12);
        assert!((d.quantile(0.99).unwrap() - 0.00198).abs() < 1e-9);
        assert_eq!(d.bucket_growth(), Some(2.0));
    }

    #[test]
    fn missing_metric_and_gauge() {
        let s = Scrape::parse(BEFORE);
        assert!(s.histogram("sekisho_nothing_seconds").is_none());
        assert_eq!(s.value(CONNECTIONS_OPEN), Some(3.0));
        assert!(Histogram::default().quantile(0.5).is_none());
    }

    #[test]
    fn labelled_buckets_are_summed() {
        let text = "h_bucket{node=\"a\",le=\"1\"} 1\nh_bucket{node=\"b\",le=\"1\"} 2\n\
                    h_bucket{node=\"a\",le=\"+Inf\"} 1\nh_bucket{node=\"b\",le=\"+Inf\"} 2\n";
        let h = Scrape::parse(text).histogram("h").unwrap();
        assert_eq!(h.total(), 3.0);
    }

    #[test]
    fn chunked_body() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
