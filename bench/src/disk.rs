//! The physical floor of a durable log on this machine: append 4 KiB to a file and
//! `fdatasync` it, in a loop, in a temp file on the filesystem of Sekisho's data dir. A durable
//! audit log cannot commit a batch faster than one such round trip.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Bytes appended before each `fdatasync`.
pub const APPEND_BYTES: usize = 4096;

pub struct SyncFloor {
    pub syncs: u64,
    pub elapsed: Duration,
    /// Latency of one append + `fdatasync`, microseconds.
    latency_us: Histogram<u64>,
}

impl SyncFloor {
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        self.latency_us.mean() / 1000.0
    }
}

/// Appends [`APPEND_BYTES`] + `fdatasync` in a loop for `duration` in a temp file in `dir`
/// (removed afterwards); each iteration's time is one sample.
pub fn measure(dir: &Path, duration: Duration) -> Result<SyncFloor> {
    let file = tempfile::Builder::new()
        .prefix("bench-fdatasync-")
        .tempfile_in(dir)
        .with_context(|| format!("making a temp file in {}", dir.display()))?;
    let mut f = OpenOptions::new()
        .append(true)
        .open(file.path())
        .with_context(|| format!("opening {}", file.path().display()))?;
    let block = [0x5au8; APPEND_BYTES];
    let mut latency_us =
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let start = Instant::now();
    let mut syncs = 0;
    while start.elapsed() < duration {
        crate::process::check_interrupted()?;
        let began = Instant::now();
        f.write_all(&block)?;
        // File::sync_data is fdatasync(2) on Linux.
        f.sync_data()?;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        latency_us.saturating_record(micros.max(1));
        syncs += 1;
    }
    Ok(SyncFloor {
        syncs,
        elapsed: start.elapsed(),
        latency_us,
    })
}

/// "ext4 on /dev/vda (/)": the filesystem `path` is on, from `/proc/self/mounts` (the longest
/// mount point that is a prefix of the path).
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (dev, mnt, fs) = (f.next()?, f.next()?, f.next()?);
            // Spaces in mount points are written as \040.
            let mnt = mnt.replace("\\040", " ");
            path.starts_with(&mnt)
                .then(|| (mnt.len(), format!("{fs} on {dev} ({mnt})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, desc)| desc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_something() {
        let dir = tempfile::tempdir().unwrap();
        let floor = super::measure(dir.path(), std::time::Duration::from_millis(50)).unwrap();
        assert!(floor.syncs > 0);
        assert!(floor.quantile_ms(0.5) > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(super::filesystem_of(dir.path()).is_some());
    }
}
