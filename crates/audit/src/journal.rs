//! The gateway's durability point: an append-only journal of audit records on the node's own
//! disk, in front of the SQL log. A batch of records is one `pwrite` and one `fdatasync`; once
//! that returns the records are durable and their requests may be answered. The indexer
//! (`writer.rs`) then appends them to the SQL log (the tree, the checkpoints, the query
//! tables), recording in the same transaction how far it got (`audit_journal_marks`), so a
//! crash at any point loses nothing acknowledged and indexes nothing twice: at the next start
//! the frames past the mark are indexed before the gateway serves.
//!
//! Layout, in `audit/journal-<node>/`:
//! - `<first seq, 20 digits>.seg`: a segment. A 16-byte header (`SKJOURN1`, the sequence
//!   number of its first frame, u64 LE), then frames: length (u32 LE, never 0), CRC-32 of the
//!   payload (u32 LE), payload (the record's canonical JSON, as hashed into the tree), then
//!   zeros to the file's end: room written ahead of the frames, so that a batch overwrites
//!   blocks the file already has and its `fdatasync` writes no metadata (the file's size is
//!   unchanged). On this machine's ext4 that made a sync 0.12 ms instead of 0.18–0.21 and 45
//!   µs of CPU instead of 60–80 (`docs/audit.md`). A segment is closed at [`SEGMENT_BYTES`]
//!   or [`SEGMENT_AGE`] and removed once every frame in it is indexed, so the journal holds
//!   about a minute of records, not the log.
//! - `lock`: an exclusive `flock` while a gateway writes the journal: two processes with the
//!   same node name on one data dir would otherwise interleave their frames.
//!
//! Only the last segment's tail can be cut short (a crash mid-write, before the `fdatasync`
//! returned, so nothing in it was acknowledged); it is truncated when the journal is opened. A
//! damaged frame anywhere else, or a gap between segments, means acknowledged records were
//! lost or altered: the journal refuses to open and says where.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A segment is closed once it is this long, or this old; the next frame starts a new one.
/// Closed segments are removed once indexed, so the node's disk holds about a minute of records
/// (they are personal data: the log in the store is where they are kept, and pruned).
pub const SEGMENT_BYTES: u64 = 16 << 20;
pub const SEGMENT_AGE: std::time::Duration = std::time::Duration::from_secs(60);
/// Zeros written ahead of the frames when the room runs out: as many as the segment already
/// holds, at least [`ROOM_MIN`] and at most [`ROOM_MAX`]. So an idle gateway (a new segment a
/// minute) writes 64 KiB of zeros a minute, and one under load 1 MiB per 1 MiB of records, in
/// the same write as the batch that ran out (one sync of 0.3–0.8 ms in ~50).
const ROOM_MIN: u64 = 64 << 10;
const ROOM_MAX: u64 = 1 << 20;
/// `check_all` compares this many of the newest indexed frames a journal holds with the log.
const CHECK_NEWEST: usize = 1000;
/// A frame's payload may not be longer (a record is a few hundred bytes; `detail` is bounded).
pub const MAX_FRAME: usize = 1 << 20;
const MAGIC: &[u8; 8] = b"SKJOURN1";
const HEADER: u64 = 16;
const FRAME_HEAD: usize = 8;

/// The journal directory of a node, under the data dir's `audit/`. Node names are checked to be
/// one path component; anything else is hex-encoded.
pub fn dir_for(audit_dir: &Path, node: &str) -> PathBuf {
    let plain = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !node.starts_with('.');
    if plain {
        audit_dir.join(format!("journal-{node}"))
    } else {
        audit_dir.join(format!("journal-x{}", hex::encode(node)))
    }
}

struct Segment {
    first: u64,
    path: PathBuf,
}

/// An open journal; one writer at a time (the `lock` file).
pub struct Journal {
    dir: PathBuf,
    /// Closed segments still holding frames that may not be indexed, oldest first.
    closed: Vec<Segment>,
    current: Segment,
    /// When the current segment was started (by this process).
    started: std::time::Instant,
    file: File,
    /// Bytes of the current segment's frames (where the next frame goes).
    len: u64,
    /// The current segment's size: zeros from `len` to here.
    room: u64,
    /// The sequence number the next frame gets.
    next: u64,
    /// Set when a failed write could not be undone: the segment's end is unknown, so nothing
    /// more is appended until the gateway restarts (and the open truncates the torn tail).
    poisoned: Option<String>,
    /// The last batch's buffer, reused by the next (at most [`SCRATCH_MAX`] kept).
    scratch: Vec<u8>,
    _lock: File,
}

/// The largest batch buffer the journal keeps between batches.
const SCRATCH_MAX: usize = 256 * 1024;

/// What [`Journal::open`] found: the frames not yet indexed, in order.
pub struct Replay {
    /// The sequence number of `frames[0]`.
    pub first: u64,
    pub frames: Vec<String>,
    /// Bytes cut from the last segment's end (a write that never completed).
    pub truncated: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, checks every frame, cuts a torn tail, and
    /// returns the frames at or after `mark` (the store's next sequence number to index).
    pub fn open(dir: &Path, mark: u64) -> Result<(Journal, Replay)> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the audit journal {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("cannot open {}/lock", dir.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "the audit journal {} is in use by another gateway (same data dir and node name?)",
                dir.display()
            )
        })?;
        let mut scan = scan(dir)?;
        let mut segments = std::mem::take(&mut scan.segments);
        if let Some(first) = segments.first()
            && first.first > mark
        {
            bail!(
                "the audit journal {} starts at record {} of this node but the store has indexed \
                 only {mark}: records {mark}-{} were acknowledged and are gone (a segment removed \
                 by hand?). Move the directory aside to start anyway, and record the loss as an \
                 incident",
                dir.display(),
                first.first,
                first.first - 1
            );
        }
        let mut truncated = 0;
        if let Some(d) = &scan.damage {
            let path = &segments[d.segment].path;
            if !d.torn_tail {
                bail!(
                    "the audit journal segment {} is damaged at byte {}: {}; it holds \
                     acknowledged records",
                    path.display(),
                    d.good_len,
                    d.why
                );
            }
            // The tail of the newest segment: a write that was never acknowledged.
            truncated = d.written_len - d.good_len;
            let f = open_rw(path)?;
            if d.good_len < HEADER {
                // Its header is not whole. Made and synced before any frame is written, so
                // only a crash while the segment was being made leaves it so, and no frame in
                // it was acknowledged: written again. Anything else there is not ours to cut.
                if !d.header_unwritten {
                    bail!(
                        "the newest audit journal segment {} has a header of another kind: {}",
                        path.display(),
                        d.why
                    );
                }
                f.write_all_at(&header(segments[d.segment].first), 0)
                    .and_then(|_| f.set_len(HEADER))
                    .and_then(|_| f.sync_all())
                    .with_context(|| format!("cannot write the header of {}", path.display()))?;
                scan.end_len = HEADER;
            } else {
                f.set_len(d.good_len)
                    .and_then(|_| f.sync_all())
                    .with_context(|| format!("cannot cut the torn tail of {}", path.display()))?;
            }
            tracing::warn!(segment = %path.display(), bytes = truncated, why = %d.why,
                "cut an unfinished write from the audit journal's end (it was never acknowledged)");
        }
        let replay = Replay {
            first: mark,
            frames: scan
                .frames
                .into_iter()
                .filter(|(seq, _)| *seq >= mark)
                .map(|(_, f)| f)
                .collect(),
            truncated,
        };
        let (mut next, mut len) = (scan.next, scan.end_len);
        if segments.is_empty() || next < mark {
            if !segments.is_empty() {
                // The store is ahead of the journal: every frame here is indexed (the data dir
                // was restored, or the journal copied from another time). Start afresh.
                tracing::warn!(journal = %dir.display(), journal_end = next, store_mark = mark,
                    "the audit journal is behind the store's mark; its frames are all indexed, starting a new segment");
            }
            for s in segments.drain(..) {
                fs::remove_file(&s.path)
                    .with_context(|| format!("cannot remove {}", s.path.display()))?;
            }
            segments.push(create_segment(dir, mark)?);
            (next, len) = (mark, HEADER);
        }
        let current = segments.pop().expect("not empty");
        let file = open_rw(&current.path)?;
        let room = file
            .metadata()
            .with_context(|| format!("cannot read {}", current.path.display()))?
            .len()
            .max(len);
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                closed: segments,
                current,
                started: std::time::Instant::now(),
                file,
                len,
                room,
                next,
                poisoned: None,
                scratch: Vec::new(),
                _lock: lock,
            },
            replay,
        ))
    }

    /// The sequence number the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Appends the payloads as one write and makes them durable (`fdatasync`). Returns the
    /// sequence number of the first. On an error nothing of the batch stays in the journal.
    pub fn append<'a>(&mut self, payloads: impl ExactSizeIterator<Item = &'a [u8]>) -> Result<u64> {
        if let Some(why) = &self.poisoned {
            bail!("the audit journal is not writable until the gateway restarts: {why}");
        }
        let n = payloads.len() as u64;
        // The batch's bytes go into a buffer the journal keeps: built up from empty, a 20 KB
        // batch was a dozen reallocations and copies on the thread every request waits for.
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        for p in payloads {
            if p.len() > MAX_FRAME {
                bail!(
                    "an audit record of {} bytes is too long to journal",
                    p.len()
                );
            }
            // A zero length is where the frames end and the room begins.
            if p.is_empty() {
                bail!("an empty audit record cannot be journalled");
            }
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        if self.len > HEADER
            && (self.len + buf.len() as u64 > SEGMENT_BYTES
                || self.started.elapsed() >= SEGMENT_AGE)
        {
            self.rotate()?;
        }
        let at = self.len;
        let end = at + buf.len() as u64;
        if end > self.room {
            // Out of room: more zeros after this batch, in the same write.
            // None past the segment's end: the next batch starts a new segment anyway.
            let ahead = at
                .saturating_sub(HEADER)
                .clamp(ROOM_MIN, ROOM_MAX)
                .min(SEGMENT_BYTES.saturating_sub(end));
            buf.resize(buf.len() + ahead as usize, 0);
        }
        let written = self
            .file
            .write_all_at(&buf, at)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Undo the partial write so the next batch starts on a frame boundary (the room
            // goes too); if even that fails, stop appending (a restart's open cuts the tail).
            self.room = at;
            if let Err(e2) = self.file.set_len(at).and_then(|_| self.file.sync_data()) {
                self.poisoned = Some(format!("{e2} (after {e})"));
            }
            return Err(anyhow::Error::from(e).context(format!(
                "cannot write the audit journal {}",
                self.current.path.display()
            )));
        }
        self.room = self.room.max(at + buf.len() as u64);
        self.len = end;
        // Not the room's zeros, up to a MiB: those are written once in ~fifty batches.
        if buf.capacity() <= SCRATCH_MAX {
            self.scratch = buf;
        }
        let first = self.next;
        self.next += n;
        Ok(first)
    }

    /// Removes the closed segments whose frames are all below `indexed` (in the store).
    pub fn retire(&mut self, indexed: u64) {
        while !self.closed.is_empty() {
            let end = self.closed.get(1).map_or(self.current.first, |s| s.first);
            if end > indexed {
                break;
            }
            let seg = self.closed.remove(0);
            if let Err(e) = fs::remove_file(&seg.path) {
                tracing::warn!(segment = %seg.path.display(), error = %e, "cannot remove an indexed audit journal segment");
            }
        }
    }

    fn rotate(&mut self) -> Result<()> {
        let seg = create_segment(&self.dir, self.next)?;
        let file = open_rw(&seg.path)?;
        let old = std::mem::replace(&mut self.current, seg);
        self.closed.push(old);
        self.file = file;
        self.len = HEADER;
        self.room = HEADER;
        self.started = std::time::Instant::now();
        Ok(())
    }
}

/// What `verify` reports of a journal: read-only, no lock taken (the gateway may be running).
pub struct Inspection {
    pub segments: usize,
    /// The sequence number of the oldest segment's first frame (0: no segment).
    pub first: u64,
    /// Frames with their sequence numbers, up to the first damage.
    pub frames: Vec<(u64, String)>,
    /// Where the frames stop short, and why.
    pub damage: Option<String>,
    /// The damage is the newest segment's end: a write in progress, or cut short by a crash
    /// (never acknowledged), not a loss.
    pub torn_tail: bool,
}

pub fn inspect(dir: &Path) -> Result<Inspection> {
    let s = scan(dir)?;
    Ok(Inspection {
        segments: s.segments.len(),
        first: s.segments.first().map_or(0, |x| x.first),
        frames: s.frames,
        torn_tail: s.damage.as_ref().is_some_and(|d| d.torn_tail),
        damage: s.damage.map(|d| {
            format!(
                "{} at byte {}: {}",
                s.segments[d.segment].path.display(),
                d.good_len,
                d.why
            )
        }),
    })
}

/// Where a scan of the segments stopped short.
struct Damage {
    /// The segment, by its place in the scan's list.
    segment: usize,
    /// How many of its bytes hold good frames, and how many were written (up to the last that
    /// is not zero: the room's zeros are not counted as cut).
    good_len: u64,
    written_len: u64,
    /// Its header is missing or cut short (zeros, or the right bytes as far as they go).
    header_unwritten: bool,
    why: String,
    /// A bad frame at the newest segment's end (not a gap, not an older segment).
    torn_tail: bool,
}

/// The segments read in order, up to the first damaged frame or gap.
struct Scan {
    segments: Vec<Segment>,
    frames: Vec<(u64, String)>,
    /// The sequence number after the last good frame.
    next: u64,
    /// Good bytes of the last segment read.
    end_len: u64,
    damage: Option<Damage>,
}

fn scan(dir: &Path) -> Result<Scan> {
    let segments = list(dir)?;
    let mut s = Scan {
        frames: Vec::new(),
        next: segments.first().map_or(0, |s| s.first),
        end_len: HEADER,
        damage: None,
        segments: Vec::new(),
    };
    let count = segments.len();
    for (i, seg) in segments.iter().enumerate() {
        if seg.first != s.next {
            s.damage = Some(Damage {
                segment: i,
                good_len: 0,
                written_len: 0,
                header_unwritten: false,
                why: format!("it should start at record {} (a gap)", s.next),
                torn_tail: false,
            });
            break;
        }
        let bytes =
            fs::read(&seg.path).with_context(|| format!("cannot read {}", seg.path.display()))?;
        let parsed = parse_segment(&bytes, seg.first);
        s.frames.extend((seg.first..).zip(parsed.frames));
        s.next = seg.first + parsed.count;
        s.end_len = parsed.good_len;
        if let Some(why) = parsed.damage {
            let expected = header(seg.first);
            s.damage = Some(Damage {
                segment: i,
                good_len: parsed.good_len,
                written_len: bytes
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |at| at as u64 + 1)
                    .max(parsed.good_len),
                header_unwritten: parsed.good_len < HEADER
                    && bytes.iter().zip(expected).all(|(&b, e)| b == 0 || b == e),
                why,
                torn_tail: i + 1 == count,
            });
            break;
        }
    }
    s.segments = segments;
    Ok(s)
}

/// What `sekisho audit verify` says of one node's journal.
pub struct JournalCheck {
    pub node: String,
    /// Frames the journal still holds.
    pub frames: usize,
    /// Of them, not yet in the store (indexed when that node's gateway runs).
    pub waiting: usize,
    /// Still held and already indexed, each found in the store with the same bytes.
    pub matched: usize,
    pub problems: Vec<String>,
    /// Not a problem: the newest segment ends in a partial write (one in progress, or cut by a
    /// crash, never acknowledged).
    pub note: Option<String>,
}

/// Checks every node's journal under the data dir's `audit/` against the store: frames below
/// the node's mark must be in the log with the same bytes; frames at or after it are counted;
/// damage before the newest segment's end and frames missing below the first held are problems.
pub async fn check_all(
    store: &sekisho_store::Store,
    audit_dir: &Path,
) -> Result<Vec<JournalCheck>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(audit_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", audit_dir.display())),
    };
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(node) = name.strip_prefix("journal-") else {
            continue;
        };
        let node = match node.strip_prefix('x').and_then(|h| hex::decode(h).ok()) {
            Some(bytes) if dir_for(audit_dir, &String::from_utf8_lossy(&bytes)) == entry.path() => {
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => node.to_string(),
        };
        dirs.push((node, entry.path()));
    }
    dirs.sort();
    for (node, dir) in dirs {
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT next_seq FROM audit_journal_marks WHERE node = $1")
                .bind(node.as_str())
                .fetch_optional(store.pool())
                .await
                .context("cannot read the audit journals' marks")?;
        let mark = mark.map_or(0, |m| m.max(0) as u64);
        let seen = inspect(&dir)?;
        let mut c = JournalCheck {
            node,
            frames: seen.frames.len(),
            waiting: 0,
            matched: 0,
            problems: Vec::new(),
            note: None,
        };
        if seen.segments > 0 && seen.first > mark {
            c.problems.push(format!(
                "journal {}: records {mark}-{} of this node were acknowledged and are neither in the journal nor in the store",
                c.node,
                seen.first - 1
            ));
        }
        match seen.damage {
            Some(d) if seen.torn_tail => {
                c.note = Some(format!(
                    "{d} (the newest segment's end: a write in progress, or cut short by a crash, never acknowledged)"
                ))
            }
            Some(d) => c.problems.push(format!("journal {}: damaged: {d}", c.node)),
            None => {}
        }
        let indexed = seen.frames.iter().filter(|(seq, _)| *seq < mark).count();
        for (k, (seq, json)) in seen.frames.iter().enumerate() {
            if *seq >= mark {
                c.waiting += 1;
                continue;
            }
            // The newest indexed frames are compared (one lookup each); a busy node's
            // segment may hold a minute of records.
            if indexed - k > CHECK_NEWEST {
                continue;
            }
            let rid = serde_json::from_str::<crate::AuditRecord>(json)
                .map(|r| r.request_id)
                .unwrap_or_default();
            let stored: Vec<String> =
                sqlx::query_scalar("SELECT record FROM audit_records WHERE request_id = $1")
                    .bind(rid.as_str())
                    .fetch_all(store.pool())
                    .await
                    .context("cannot read the audit records")?;
            if stored.iter().any(|r| r == json) {
                c.matched += 1;
            } else {
                c.problems.push(format!(
                    "journal {}: frame {seq} (request {rid}) is indexed, but the log holds that request's record with other bytes, or not at all",
                    c.node
                ));
            }
        }
        out.push(c);
    }
    Ok(out)
}

struct Parsed {
    frames: Vec<String>,
    count: u64,
    good_len: u64,
    damage: Option<String>,
}

fn parse_segment(bytes: &[u8], first: u64) -> Parsed {
    let mut p = Parsed {
        frames: Vec::new(),
        count: 0,
        good_len: 0,
        damage: None,
    };
    if bytes.len() < HEADER as usize {
        p.damage = Some("the header is cut short".into());
        return p;
    }
    if &bytes[..8] != MAGIC {
        p.damage = Some("not an audit journal segment".into());
        return p;
    }
    let named = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if named != first {
        p.damage = Some(format!("its header names record {named}"));
        return p;
    }
    let mut at = HEADER as usize;
    p.good_len = HEADER;
    while at < bytes.len() {
        let rest = &bytes[at..];
        // The room written ahead: zeros to the end. Anything else after a zero length is a
        // write that did not finish (its first bytes never reached the disk).
        if rest[..rest.len().min(4)].iter().all(|&b| b == 0) {
            if rest.iter().any(|&b| b != 0) {
                p.damage = Some("bytes after the frames' end".into());
            }
            break;
        }
        if rest.len() < FRAME_HEAD {
            p.damage = Some("a frame header is cut short".into());
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            p.damage = Some(format!("a frame claims {len} bytes"));
            break;
        }
        let Some(payload) = rest.get(FRAME_HEAD..FRAME_HEAD + len) else {
            p.damage = Some("a frame is cut short".into());
            break;
        };
        if crc32fast::hash(payload) != crc {
            p.damage = Some("a frame's checksum does not match".into());
            break;
        }
        let Ok(text) = std::str::from_utf8(payload) else {
            p.damage = Some("a frame is not UTF-8".into());
            break;
        };
        p.frames.push(text.to_string());
        p.count += 1;
        at += FRAME_HEAD + len;
        p.good_len = at as u64;
    }
    p
}

fn list(dir: &Path) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        let Ok(first) = stem.parse::<u64>() else {
            continue;
        };
        out.push(Segment {
            first,
            path: entry.path(),
        });
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// A segment's header: the magic and the sequence number of its first frame.
fn header(first: u64) -> [u8; HEADER as usize] {
    let mut h = [0; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first.to_le_bytes());
    h
}

/// Where the segment whose first frame is `first` lives.
fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn create_segment(dir: &Path, first: u64) -> Result<Segment> {
    let path = segment_path(dir, first);
    let header = header(first);
    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all_at(&header, 0)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(Segment { first, path })
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(j: &mut Journal, texts: &[&str]) -> u64 {
        j.append(texts.iter().map(|t| t.as_bytes())).unwrap()
    }

    #[test]
    fn frames_survive_a_reopen_and_the_mark_selects_the_replay() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("journal-gw1");
        let (mut j, r) = Journal::open(&dir, 0).unwrap();
        assert!(r.frames.is_empty());
        assert_eq!(frames(&mut j, &["a", "b"]), 0);
        assert_eq!(frames(&mut j, &["c"]), 2);
        drop(j);
        let (j, r) = Journal::open(&dir, 1).unwrap();
        assert_eq!(
            (r.first, r.frames.clone()),
            (1, vec!["b".into(), "c".into()])
        );
        assert_eq!(j.next_seq(), 3);
        drop(j);
        // A second writer on the same journal is refused while the first holds it.
        let (_j, _) = Journal::open(&dir, 3).unwrap();
        assert!(Journal::open(&dir, 3).is_err());
    }

    /// The batch buffer is reused: a short batch after a long one (and after one that wrote
    /// the room's zeros) is its own frames and nothing of the other's.
    #[test]
    fn a_reused_batch_buffer_carries_nothing_over() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("journal-gw1");
        let (mut j, _) = Journal::open(&dir, 0).unwrap();
        let long = "L".repeat(90_000);
        assert_eq!(frames(&mut j, &[&long, &long]), 0);
        assert_eq!(frames(&mut j, &["s"]), 2);
        assert_eq!(frames(&mut j, &[&long[..300], "t"]), 3);
        drop(j);
        let (_j, r) = Journal::open(&dir, 0).unwrap();
        let expected: Vec<String> = vec![
            long.clone(),
            long.clone(),
            "s".into(),
            long[..300].into(),
            "t".into(),
        ];
        assert_eq!(r.frames, expected);
    }

    /// A journal opened at `mark` in a new temporary directory (kept while the first lives).
    fn new_journal(mark: u64) -> (tempfile::TempDir, PathBuf, Journal) {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("j");
        let (j, _) = Journal::open(&dir, mark).unwrap();
        (d, dir, j)
    }

    /// Where the frames of the segment starting at `first` end (the room's zeros follow).
    fn frames_end(dir: &Path, first: u64) -> usize {
        parse_segment(&fs::read(segment_path(dir, first)).unwrap(), first).good_len as usize
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_it_refuses_to_open() {
        let (_d, dir, mut j) = new_journal(5);
        frames(&mut j, &["one", "two"]);
        drop(j);
        let seg = segment_path(&dir, 5);
        let end = frames_end(&dir, 5);
        assert_eq!(end, 16 + 11 + 11);
        let full = fs::read(&seg).unwrap();
        // A write cut short after its length and part of its payload, over the room's zeros.
        let mut torn = full.clone();
        torn[end..end + 4].copy_from_slice(&10u32.to_le_bytes());
        torn[end + 8..end + 11].copy_from_slice(b"abc");
        fs::write(&seg, &torn).unwrap();
        let (mut j, r) = Journal::open(&dir, 5).unwrap();
        assert_eq!(r.frames, vec!["one".to_string(), "two".into()]);
        assert_eq!(
            r.truncated, 11,
            "the torn write's bytes, not the room's zeros"
        );
        assert_eq!(fs::read(&seg).unwrap(), full[..end]);
        // Appending goes on after the cut.
        assert_eq!(frames(&mut j, &["three"]), 7);
        drop(j);
        // A flipped byte inside an acknowledged frame of a closed segment is not cut: refused.
        let (mut j, _) = Journal::open(&dir, 5).unwrap();
        j.rotate().unwrap();
        frames(&mut j, &["four"]);
        drop(j);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[frames_end(&dir, 5) - 1] ^= 1;
        fs::write(&seg, &bytes).unwrap();
        let err = Journal::open(&dir, 5).err().unwrap().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn batches_overwrite_the_room_written_ahead_and_the_room_is_not_a_frame() {
        let (_d, dir, mut j) = new_journal(0);
        frames(&mut j, &["a", "b"]);
        let seg = segment_path(&dir, 0);
        let size = fs::metadata(&seg).unwrap().len();
        assert_eq!(
            size,
            16 + 18 + ROOM_MIN,
            "zeros written ahead of the first batch"
        );
        // The next batches go into the room: the file's size (its metadata) does not change.
        for i in 0..100 {
            frames(&mut j, &[&format!("record {i}")]);
        }
        assert_eq!(fs::metadata(&seg).unwrap().len(), size);
        // Past the room, more zeros: as many as the segment holds, at least ROOM_MIN.
        let big = "x".repeat(ROOM_MIN as usize);
        frames(&mut j, &[&big]);
        let grown = fs::metadata(&seg).unwrap().len();
        assert!(
            grown >= j.len + ROOM_MIN,
            "{grown} for {} bytes of frames",
            j.len
        );
        let (len, next) = (j.len, j.next_seq());
        drop(j);
        // Reopened: the zeros are neither frames nor damage, and nothing is cut.
        let (mut j, r) = Journal::open(&dir, 0).unwrap();
        assert_eq!((r.frames.len(), r.truncated), (103, 0));
        assert_eq!((j.len, j.room, j.next_seq()), (len, grown, next));
        let i = inspect(&dir).unwrap();
        assert!(i.damage.is_none() && !i.torn_tail);
        assert_eq!(frames(&mut j, &["after"]), next);
        // An empty payload would read as the room: refused, nothing written.
        let before = fs::read(&seg).unwrap();
        assert!(j.append([b"".as_slice()].into_iter()).is_err());
        assert_eq!(j.next_seq(), next + 1);
        assert_eq!(fs::read(&seg).unwrap(), before);
    }

    #[test]
    fn bytes_past_a_zero_length_in_the_newest_segment_are_a_torn_write() {
        // A write whose first sector never reached the disk but a later one did: the frames
        // before it stand, the rest is cut as never acknowledged.
        let (_d, dir, mut j) = new_journal(0);
        frames(&mut j, &["one"]);
        drop(j);
        let seg = segment_path(&dir, 0);
        let end = frames_end(&dir, 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[end + 600] = 0x7b;
        fs::write(&seg, &bytes).unwrap();
        let i = inspect(&dir).unwrap();
        assert!(i.torn_tail, "{:?}", i.damage);
        let (mut j, r) = Journal::open(&dir, 0).unwrap();
        assert_eq!(r.frames, vec!["one".to_string()]);
        assert_eq!(r.truncated, 601);
        assert_eq!(fs::metadata(&seg).unwrap().len(), end as u64);
        assert_eq!(frames(&mut j, &["two"]), 1);
        // In a closed segment the same bytes are damage, not a torn tail.
        j.rotate().unwrap();
        frames(&mut j, &["three"]);
        drop(j);
        let mut bytes = fs::read(&seg).unwrap();
        let end = frames_end(&dir, 0);
        bytes[end + 600] = 0x7b;
        fs::write(&seg, &bytes).unwrap();
        let err = Journal::open(&dir, 0).err().unwrap().to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    #[test]
    fn indexed_segments_are_removed_and_a_lost_one_is_reported() {
        let (_d, dir, mut j) = new_journal(0);
        frames(&mut j, &["a", "b"]);
        j.rotate().unwrap();
        frames(&mut j, &["c"]);
        j.rotate().unwrap();
        frames(&mut j, &["d"]);
        assert_eq!(list(&dir).unwrap().len(), 3);
        j.retire(2); // the first segment (0-1) is indexed
        assert_eq!(list(&dir).unwrap().len(), 2);
        j.retire(2);
        assert_eq!(list(&dir).unwrap().len(), 2);
        drop(j);
        // The store says only record 1 is indexed, but the segment holding it is gone.
        let err = Journal::open(&dir, 1).err().unwrap().to_string();
        assert!(err.contains("acknowledged and are gone"), "{err}");
        // The store ahead of the journal (a restored data dir): a fresh segment at the mark.
        let (j, r) = Journal::open(&dir, 10).unwrap();
        assert!(r.frames.is_empty());
        assert_eq!(j.next_seq(), 10);
        let i = inspect(&dir).unwrap();
        assert_eq!((i.segments, i.first, i.frames.len()), (1, 10, 0));
    }

    #[test]
    fn a_newest_segment_whose_header_never_reached_the_disk_is_made_again() {
        // A crash while a segment was being made, before its header was synced: no frame in
        // it can have been acknowledged. Empty, cut short, or zeros: written again, and the
        // next frames go after the header (not at byte 0, where a reopen would cut them).
        for leftover in [&b""[..], &b"SKJOU"[..], &[0u8; 16][..]] {
            let (_d, dir, mut j) = new_journal(0);
            frames(&mut j, &["one"]);
            drop(j);
            let newest = segment_path(&dir, 1);
            fs::write(&newest, leftover).unwrap();
            let (mut j, r) = Journal::open(&dir, 0).unwrap();
            assert_eq!(r.frames, vec!["one".to_string()], "{leftover:?}");
            assert_eq!(fs::read(&newest).unwrap(), header(1), "{leftover:?}");
            assert_eq!(frames(&mut j, &["two"]), 1);
            drop(j);
            let (j, r) = Journal::open(&dir, 0).unwrap();
            assert_eq!(
                r.frames,
                vec!["one".to_string(), "two".into()],
                "{leftover:?}"
            );
            assert_eq!(j.next_seq(), 2);
        }
        // A whole header of another kind in the newest segment is not a torn write: refused.
        let (_d, dir, j) = new_journal(0);
        drop(j);
        fs::write(segment_path(&dir, 0), b"SOMETHINGELSE...").unwrap();
        let err = Journal::open(&dir, 0).err().unwrap().to_string();
        assert!(err.contains("another kind"), "{err}");
    }

    #[test]
    fn the_room_stops_at_the_segment_end() {
        let (_d, _dir, mut j) = new_journal(0);
        let big = "x".repeat(MAX_FRAME);
        while j.len + (MAX_FRAME + FRAME_HEAD) as u64 <= SEGMENT_BYTES {
            frames(&mut j, &[&big]);
        }
        assert!(j.room <= SEGMENT_BYTES, "{} past {SEGMENT_BYTES}", j.room);
    }

    #[test]
    fn node_names_become_one_path_component() {
        let a = Path::new("/a");
        assert_eq!(dir_for(a, "gw1"), Path::new("/a/journal-gw1"));
        assert_eq!(dir_for(a, "../x"), Path::new("/a/journal-x2e2e2f78"));
        assert_eq!(dir_for(a, ".."), Path::new("/a/journal-x2e2e"));
    }
}
