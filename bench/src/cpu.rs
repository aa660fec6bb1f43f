//! CPU time of the proxies from `/proc/<pid>/stat` (utime + stime of all threads, plus
//! cutime + cstime of reaped children), sampled at the start and the end of each measurement
//! window: CPU seconds per 10,000 requests, and cores used (CPU seconds / wall seconds), so that
//! a proxy that is waiting is told apart from one that is computing. For a single process (a
//! Sekisho gateway, the bare stack) the same is read per thread, from `/proc/<pid>/task/*/stat`,
//! and added up by what the threads do ([`THREAD_GROUPS`]): what bounds the gateway, in every run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Which processes make up one proxy.
#[derive(Debug, Clone)]
pub enum Procs {
    /// One process (Sekisho: all its threads are in its own stat line).
    One(u32),
    /// A process and its live children (nginx: master + workers).
    Tree(u32),
    /// Every process whose command line contains this text (PostgreSQL backends serving the
    /// benchmark's database: `postgres: … <db> 127.0.0.1(port) idle`).
    CmdlineContains(String),
}

/// `/proc/<pid>/stat` times of one process, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime (+ cutime + cstime).
    pub ticks: u64,
}

/// CPU ticks per pid at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    per_pid: BTreeMap<u32, u64>,
    /// [`Procs::One`] only: per thread id, its name and utime + stime.
    threads: BTreeMap<u32, (String, u64)>,
}

/// What a gateway's threads do, by their names (the kernel keeps 15 bytes of a name): the
/// request path on tokio's workers, the audit journal's own thread, the audit indexer's own
/// thread (its statements and the leaf hashes), and sqlx's SQLite threads (one per connection;
/// under load nearly all of it the indexer's inserts). Anything else is "other".
pub const THREAD_GROUPS: [(&str, &str); 4] = [
    ("workers", "tokio-rt-worker"),
    ("journal", "sekisho-journal"),
    ("indexer", "sekisho-index"),
    ("sqlite", "sqlx-sqlite-wor"),
];

/// The group of a thread named `comm` ([`THREAD_GROUPS`]).
pub fn thread_group(comm: &str) -> &'static str {
    THREAD_GROUPS
        .iter()
        .find(|(_, prefix)| comm.starts_with(prefix))
        .map_or("other", |(group, _)| group)
}

impl Procs {
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Procs::One(pid) => vec![*pid],
            Procs::Tree(root) => {
                let mut pids = vec![*root];
                pids.extend(
                    all_pids()
                        .into_iter()
                        .filter(|&p| stat(p).is_ok_and(|s| s.ppid == *root)),
                );
                pids
            }
            Procs::CmdlineContains(text) => all_pids()
                .into_iter()
                .filter(|&p| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(text.as_str()))
                })
                .collect(),
        }
    }

    pub fn sample(&self) -> CpuSample {
        CpuSample {
            per_pid: self
                .pids()
                .into_iter()
                .filter_map(|p| stat(p).ok().map(|s| (p, s.ticks)))
                .collect(),
            threads: match self {
                Procs::One(pid) => threads(*pid),
                _ => BTreeMap::new(),
            },
        }
    }
}

/// Per thread of `pid`: its name and utime + stime, in ticks.
fn threads(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
        parse_task(&text).ok().map(|t| (tid, t))
    })
    .collect()
}

impl CpuSample {
    /// CPU seconds spent between `before` and `self` by the processes alive at `self` (a
    /// process that appeared in between counts from 0; one that went away is not counted).
    pub fn seconds_since(&self, before: &CpuSample) -> f64 {
        let ticks: u64 = self
            .per_pid
            .iter()
            .map(|(pid, &t)| t.saturating_sub(before.per_pid.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / crate::process::clock_ticks_per_sec() as f64
    }

    /// CPU seconds between `before` and `self` per thread group ([`THREAD_GROUPS`], then
    /// "other"), counted as [`CpuSample::seconds_since`] counts processes; empty unless both
    /// were read per thread.
    pub fn thread_seconds_since(&self, before: &CpuSample) -> Vec<(&'static str, f64)> {
        if self.threads.is_empty() || before.threads.is_empty() {
            return Vec::new();
        }
        let mut groups: Vec<(&'static str, f64)> = THREAD_GROUPS
            .iter()
            .map(|(g, _)| (*g, 0.0))
            .chain([("other", 0.0)])
            .collect();
        let per_tick = 1.0 / crate::process::clock_ticks_per_sec() as f64;
        for (tid, (comm, t)) in &self.threads {
            let was = before.threads.get(tid).map_or(0, |(_, t)| *t);
            let group = thread_group(comm);
            if let Some(g) = groups.iter_mut().find(|(name, _)| *name == group) {
                g.1 += t.saturating_sub(was) as f64 * per_tick;
            }
        }
        groups
    }
}

/// This benchmark's own process (load generator + upstream threads).
pub fn own_pid() -> u32 {
    std::process::id()
}

/// CPU seconds the whole machine has been busy (all CPUs: user, nice, system, irq, softirq,
/// steal; guest time is inside user), from the first line of `/proc/stat`. Busy time minus the
/// proxies' and the benchmark's is what other processes took: on a shared machine that is the
/// noise in the figures.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = parse_machine_busy(text.lines().next()?)?;
    Some(ticks as f64 / crate::process::clock_ticks_per_sec() as f64)
}

fn parse_machine_busy(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal ...
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

pub fn stat(pid: u32) -> Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}"))
}

/// A `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line: the command name (field 2, which
/// may hold spaces and parens, so the fields that follow start after the last `)`) and the
/// fields after it.
struct StatLine<'a> {
    name: &'a str,
    /// From field 3 (state) on.
    fields: Vec<&'a str>,
}

impl<'a> StatLine<'a> {
    fn parse(text: &'a str) -> Result<StatLine<'a>> {
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            bail!("no command name in {text:?}");
        };
        Ok(StatLine {
            name: &text[open + 1..close],
            fields: text[close + 1..].split_whitespace().collect(),
        })
    }

    /// Field `n` as proc(5) numbers them, from 1.
    fn field(&self, n: usize) -> Result<u64> {
        self.fields
            .get(n - 3)
            .with_context(|| format!("no field {n}"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} is not a number"))
    }
}

/// A process's parent and CPU ticks.
fn parse_stat(text: &str) -> Result<Stat> {
    let line = StatLine::parse(text)?;
    let ppid = u32::try_from(line.field(4)?)?;
    // 14 utime, 15 stime, 16 cutime, 17 cstime (cutime/cstime are signed in the kernel but
    // never negative in practice).
    let ticks = line.field(14)? + line.field(15)? + line.field(16)? + line.field(17)?;
    Ok(Stat { ppid, ticks })
}

/// A thread's name and its utime + stime (a thread's cutime and cstime are its process's).
fn parse_task(text: &str) -> Result<(String, u64)> {
    let line = StatLine::parse(text)?;
    Ok((line.name.to_string(), line.field(14)? + line.field(15)?))
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parens() {
        let line = "1234 (nginx: worker (x)) S 1200 1234 1234 0 -1 4194624 10 0 0 0 \
                    70 30 5 2 20 0 1 0 100 1000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.ppid, 1200);
        assert_eq!(s.ticks, 107);
    }

    #[test]
    fn parses_a_threads_name_and_time() {
        let line = "1240 (sekisho-journal) S 1 1234 1234 0 -1 4194624 10 0 0 0 \
                    70 30 5 2 20 0 1 0 100 1000 200 18446744073709551615";
        assert_eq!(parse_task(line).unwrap(), ("sekisho-journal".into(), 100));
        assert_eq!(thread_group("sekisho-journal"), "journal");
        assert_eq!(thread_group("sekisho-index"), "indexer");
        assert_eq!(thread_group("sqlx-sqlite-wor"), "sqlite");
        assert_eq!(thread_group("tokio-rt-worker"), "workers");
        assert_eq!(thread_group("sekisho"), "other");
    }

    /// A thread that works between two samples shows in its group, and only there.
    #[test]
    fn a_busy_threads_time_lands_in_its_group() {
        let before = Procs::One(own_pid()).sample();
        let (spent, done) = std::sync::mpsc::channel();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sekisho-journal".into())
            .spawn(move || {
                // Spins until the kernel has counted 0.2 s of its own CPU, however loaded the
                // machine is, then stays alive until the second sample has been read.
                let own = || {
                    let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                    parse_task(&text).unwrap().1
                };
                let want = crate::process::clock_ticks_per_sec() / 5;
                let mut x = 0u64;
                while own() < want {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                    }
                }
                spent.send(()).unwrap();
                let _ = hold.recv();
            })
            .unwrap();
        done.recv().unwrap();
        let after = Procs::One(own_pid()).sample();
        drop(release);
        let groups = after.thread_seconds_since(&before);
        let journal = groups.iter().find(|(g, _)| *g == "journal").unwrap().1;
        let sqlite = groups.iter().find(|(g, _)| *g == "sqlite").unwrap().1;
        assert!(journal >= 0.15, "{groups:?}");
        assert_eq!(sqlite, 0.0, "{groups:?}");
    }

    #[test]
    fn machine_busy() {
        let line = "cpu  100 5 50 1000 7 3 2 1 0 0";
        assert_eq!(parse_machine_busy(line), Some(161));
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn own_process_is_readable() {
        let s = stat(own_pid()).unwrap();
        assert!(s.ppid > 0);
        let a = Procs::One(own_pid()).sample();
        assert_eq!(a.per_pid.len(), 1);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(Procs::One(own_pid()).sample().seconds_since(&a) >= 0.0);
    }
}
