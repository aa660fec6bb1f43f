//! The directory witness: a directory on other storage (another disk, an NFS or SMB share,
//! removable media) that keeps every checkpoint it took, in order, and the newest one.
//!
//! - `checkpoints`: append-only; each signed note as the gateway signed it, followed by an empty
//!   line. A note is written with one `write` and synced before `latest` moves on.
//! - `latest`: the newest note, replaced atomically (temporary file, fsync, rename, directory
//!   fsync).
//! - `.lock`: an exclusive `flock` while a checkpoint is taken, so gateways and receivers
//!   sharing the directory take turns.
//!
//! The directory must exist: a witness whose storage is not mounted fails (and is retried)
//! rather than filling the empty mount point on the gateway's own disk.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Outcome, judge};
use crate::checkpoint::{SignedCheckpoint, Verifier};

pub const LATEST_FILE: &str = "latest";
pub const HISTORY_FILE: &str = "checkpoints";
const LOCK_FILE: &str = ".lock";
/// How far back from the end of `checkpoints` a torn last entry is looked for.
const TAIL: u64 = 16 * 1024;
/// Opens every signature line of a signed note.
const SIG_PREFIX: &[u8] = "\u{2014} ".as_bytes();

#[derive(Clone, Debug)]
pub struct DirWitness {
    dir: PathBuf,
    verifiers: Vec<Verifier>,
}

impl DirWitness {
    pub fn new(dir: impl Into<PathBuf>) -> DirWitness {
        DirWitness {
            dir: dir.into(),
            verifiers: Vec::new(),
        }
    }

    /// Takes only notes signed by one of these keys (a witness that receives checkpoints from
    /// elsewhere); a gateway's own directory witness is handed its own notes and needs none.
    pub fn require_signature(mut self, verifiers: Vec<Verifier>) -> DirWitness {
        self.verifiers = verifiers;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `note` carries a good signature by one of the keys the witness requires (true
    /// when it requires none).
    pub fn signed_by_log(&self, note: &str) -> bool {
        self.verifiers.is_empty() || self.verifiers.iter().any(|v| v.open(note).is_ok())
    }

    fn check_dir(&self) -> Result<()> {
        if !self.dir.is_dir() {
            bail!(
                "{} is not a directory (is the witness's storage mounted?)",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// The newest checkpoint the directory holds (`latest`), if any.
    pub fn latest(&self) -> Result<Option<SignedCheckpoint>> {
        self.check_dir()?;
        let path = self.dir.join(LATEST_FILE);
        match fs::read_to_string(&path) {
            Ok(note) => SignedCheckpoint::parse(&note)
                .map(Some)
                .with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Takes `offered` if it is newer than what the directory holds; refuses an older one, one
    /// of another log, and a different root at the same size.
    pub fn submit(&self, offered: &SignedCheckpoint) -> Result<Outcome> {
        self.check_dir()?;
        if !self.signed_by_log(&offered.note) {
            bail!("the checkpoint is not signed by the log's key");
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(self.dir.join(LOCK_FILE))
            .with_context(|| format!("cannot open the lock file in {}", self.dir.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", self.dir.display()))?;
        let held = self.latest()?;
        let outcome = match judge(held.as_ref().map(|h| &h.checkpoint), &offered.checkpoint) {
            Err(refusal) => Outcome::Refused { refusal, held },
            Ok(false) => Outcome::Accepted,
            Ok(true) => {
                self.append(&offered.note)?;
                sekisho_store::durable::replace_file(
                    &self.dir,
                    &self.dir.join(LATEST_FILE),
                    offered.note.as_bytes(),
                    0o644,
                )?;
                Outcome::Accepted
            }
        };
        drop(lock);
        Ok(outcome)
    }

    fn append(&self, note: &str) -> Result<()> {
        let path = self.dir.join(HISTORY_FILE);
        let existed = path.exists();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let len = f.metadata()?.len();
        if len > 0 {
            let keep = complete_length(&f, len)
                .with_context(|| format!("{} is damaged", path.display()))?;
            if keep < len {
                // A write cut short (a crash before its sync): never acknowledged, so never in
                // `latest`; it goes, and the new note starts on a clean boundary.
                tracing::warn!(file = %path.display(), bytes = len - keep, "witness: removing a torn last entry");
                f.set_len(keep)?;
            }
        }
        let mut entry = String::with_capacity(note.len() + 1);
        entry.push_str(note);
        entry.push('\n');
        f.write_all(entry.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !existed && let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Every checkpoint the directory holds, oldest first: the entries of `checkpoints`, then
    /// `latest` if it is not the last of them. Read lazily (the history may be long).
    pub fn notes(&self) -> Result<Box<dyn Iterator<Item = Result<String>> + Send>> {
        self.check_dir()?;
        let latest = match fs::read_to_string(self.dir.join(LATEST_FILE)) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("cannot read the witness's latest checkpoint"),
        };
        let history = match File::open(self.dir.join(HISTORY_FILE)) {
            Ok(f) => Some(History::new(BufReader::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("cannot read the witness's checkpoints"),
        };
        Ok(Box::new(WithLatest {
            history,
            latest,
            last: None,
        }))
    }
}

/// The length of `f` up to the end of its last complete entry: a signature line followed by
/// an empty line.
fn complete_length(f: &File, len: u64) -> Result<u64> {
    let n = len.min(TAIL);
    let mut tail = vec![0u8; n as usize];
    f.read_exact_at(&mut tail, len - n)?;
    let mut end = tail.len();
    while let Some(p) = find_last(&tail[..end], b"\n\n") {
        let line_start = tail[..p]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line_is_whole = line_start > 0 || n == len;
        if line_is_whole && tail[line_start..p].starts_with(SIG_PREFIX) {
            return Ok(len - n + (p + 2) as u64);
        }
        end = p + 1;
    }
    if n == len {
        return Ok(0);
    }
    bail!("no complete entry in its last {TAIL} bytes")
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The entries of a `checkpoints` file: text lines, an empty line, signature lines, an empty
/// line. A last entry without its closing empty line was cut short and is left out.
pub struct History<R> {
    r: R,
    line: String,
}

impl<R: BufRead> History<R> {
    pub fn new(r: R) -> History<R> {
        History {
            r,
            line: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for History<R> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        let mut entry = String::new();
        let mut in_signatures = false;
        loop {
            self.line.clear();
            match self.r.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e.into())),
            }
            if self.line == "\n" {
                if entry.is_empty() {
                    continue;
                }
                if in_signatures {
                    return Some(Ok(entry));
                }
                in_signatures = true;
            }
            entry.push_str(&self.line);
        }
    }
}

/// The history, then `latest` if it is not the history's last entry.
struct WithLatest<R> {
    history: Option<History<R>>,
    latest: Option<String>,
    last: Option<String>,
}

impl<R: BufRead> Iterator for WithLatest<R> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        if let Some(h) = &mut self.history {
            match h.next() {
                Some(Ok(n)) => {
                    self.last = Some(n.clone());
                    return Some(Ok(n));
                }
                Some(Err(e)) => return Some(Err(e)),
                None => self.history = None,
            }
        }
        let latest = self.latest.take()?;
        if self.last.as_deref() == Some(latest.as_str()) {
            return None;
        }
        Some(Ok(latest))
    }
}
