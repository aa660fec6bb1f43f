//! What `verify_witnessed` adds to `verify`: each witness's checkpoints, oldest first, against
//! the tree recomputed from the records. The walk over the records asks for the root at each
//! size a witness holds as it passes it, so a long history costs one pass and no memory.
//!
//! For each checkpoint a witness holds: the log must reach its size (otherwise it was
//! truncated after the witness saw it) and have its root at that size (otherwise it was
//! rewritten: a fork). The newest must carry a good signature by the log's key; an older one
//! is checked only when it does not match (to say whether the witness's copy or the log is at
//! fault), so a long history is not a million signature checks.

use anyhow::Result;

use crate::checkpoint::{SignedCheckpoint, Verifier};
use crate::merkle::Hash;

/// A witness's checkpoints (signed notes), oldest first.
pub struct WitnessCopy {
    pub name: String,
    pub notes: Box<dyn Iterator<Item = Result<String>> + Send>,
}

struct Stream {
    name: String,
    notes: Box<dyn Iterator<Item = Result<String>> + Send>,
    head: Option<SignedCheckpoint>,
    /// The last checkpoint taken from the stream (its newest, once the stream is done).
    last: Option<SignedCheckpoint>,
    count: u64,
    /// Checkpoints compared with the log.
    compared: u64,
    /// Problems found with this witness; after the first fork, later mismatches are counted.
    problems: u64,
    more_mismatches: u64,
}

pub(crate) struct WitnessCheck {
    verifiers: Vec<Verifier>,
    streams: Vec<Stream>,
    pub problems: Vec<String>,
    pub confirmed: Vec<String>,
}

impl WitnessCheck {
    pub fn new(verifiers: Vec<Verifier>, copies: Vec<WitnessCopy>) -> WitnessCheck {
        let mut c = WitnessCheck {
            verifiers,
            streams: copies
                .into_iter()
                .map(|w| Stream {
                    name: w.name,
                    notes: w.notes,
                    head: None,
                    last: None,
                    count: 0,
                    compared: 0,
                    problems: 0,
                    more_mismatches: 0,
                })
                .collect(),
            problems: Vec::new(),
            confirmed: Vec::new(),
        };
        for i in 0..c.streams.len() {
            c.advance(i);
        }
        c
    }

    fn signed(&self, cp: &SignedCheckpoint) -> bool {
        self.verifiers.iter().any(|v| v.open(&cp.note).is_ok())
    }

    fn problem(&mut self, i: usize, text: String) {
        self.streams[i].problems += 1;
        self.problems
            .push(format!("witness {}: {text}", self.streams[i].name));
    }

    /// Moves stream `i` to its next checkpoint (skipping, and saying, what is not one).
    fn advance(&mut self, i: usize) {
        if let Some(h) = self.streams[i].head.take() {
            self.streams[i].last = Some(h);
        }
        loop {
            let next = self.streams[i].notes.next();
            let note = match next {
                None => return,
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    self.problem(i, format!("cannot be read: {e:#}"));
                    return;
                }
            };
            let n = self.streams[i].count + 1;
            let cp = match SignedCheckpoint::parse(&note) {
                Ok(cp) => cp,
                Err(e) => {
                    self.problem(
                        i,
                        format!("its entry {n} is not a signed checkpoint: {e:#}"),
                    );
                    self.streams[i].count = n;
                    continue;
                }
            };
            self.streams[i].count = n;
            if let Some(last) = &self.streams[i].last {
                if cp == *last {
                    continue;
                }
                if cp.size() <= last.size() {
                    let last = last.size();
                    self.problem(
                        i,
                        format!(
                            "its checkpoints are out of order (tree size {} after {last}): its copy was altered",
                            cp.size()
                        ),
                    );
                    continue;
                }
            }
            if !self
                .verifiers
                .iter()
                .any(|v| v.name() == cp.checkpoint.origin)
            {
                let origin = cp.checkpoint.origin.clone();
                self.problem(
                    i,
                    format!(
                        "holds a checkpoint of another log ({origin:?}, tree size {})",
                        cp.size()
                    ),
                );
                continue;
            }
            self.streams[i].head = Some(cp);
            return;
        }
    }

    /// The smallest tree size some witness holds and the walk has not passed yet.
    pub fn next_size(&self) -> Option<u64> {
        self.streams
            .iter()
            .filter_map(|s| s.head.as_ref().map(|h| h.size()))
            .min()
    }

    /// The walk is at tree size `size`; `root` is the recomputed root there, or None when the
    /// records before it are broken (the problems `verify` found say how).
    pub fn at(&mut self, size: u64, root: Option<Hash>) {
        for i in 0..self.streams.len() {
            while let Some(h) = &self.streams[i].head {
                let s = h.size();
                if s > size {
                    break;
                }
                let root_here = if s == size { root } else { None };
                match root_here {
                    None => {
                        let text = format!(
                            "its checkpoint at tree size {s} cannot be compared: the log is broken before it (see above)"
                        );
                        if self.streams[i].problems == 0 {
                            self.problem(i, text);
                        } else {
                            self.streams[i].more_mismatches += 1;
                        }
                    }
                    Some(r) if r == h.checkpoint.root => {}
                    Some(_) => {
                        let signed = self.signed(h);
                        if self.streams[i].problems > 0 {
                            self.streams[i].more_mismatches += 1;
                        } else if signed {
                            self.problem(i, format!(
                                "FORKED: the log's root at tree size {s} is not the one in the witness's signed checkpoint (the log was rewritten after the witness saw it)"
                            ));
                        } else {
                            self.problem(i, format!(
                                "its checkpoint at tree size {s} differs from the log's and is not signed by the log's key (the witness's copy was altered?)"
                            ));
                        }
                    }
                }
                self.streams[i].compared += 1;
                self.advance(i);
            }
        }
    }

    /// The walk is done: the log has `log_size` leaves.
    pub fn finish(mut self, log_size: u64) -> (Vec<String>, Vec<String>) {
        for i in 0..self.streams.len() {
            // Whatever is left is beyond the end of the log.
            if let Some(h) = self.streams[i].head.clone() {
                let s = h.size();
                let text = if self.signed(&h) {
                    format!(
                        "TRUNCATED: the witness holds a signed checkpoint at tree size {s}, the log has {log_size} records (records {log_size}-{} were removed after the witness saw them)",
                        s - 1
                    )
                } else {
                    format!(
                        "holds a checkpoint at tree size {s}, beyond the log's {log_size} records, that is not signed by the log's key"
                    )
                };
                self.problem(i, text);
                while self.streams[i].head.is_some() {
                    self.advance(i);
                }
            }
            let last = self.streams[i].last.clone();
            match last {
                None if self.streams[i].problems == 0 => self.problem(
                    i,
                    "holds no checkpoint (nothing was copied to it yet, or it was emptied)".into(),
                ),
                None => {}
                Some(newest) => {
                    if !self.signed(&newest) && self.streams[i].problems == 0 {
                        self.problem(
                            i,
                            format!(
                                "its newest checkpoint (tree size {}) is not signed by the log's key",
                                newest.size()
                            ),
                        );
                    }
                    let s = &self.streams[i];
                    if s.more_mismatches > 0 {
                        let text = format!(
                            "and {} later checkpoint(s) it holds do not match the log either",
                            s.more_mismatches
                        );
                        self.problem(i, text);
                    }
                    let s = &self.streams[i];
                    if s.problems == 0 {
                        self.confirmed.push(format!(
                            "witness {}: its newest checkpoint (tree size {}) and {} earlier one(s) are in the log",
                            s.name,
                            newest.size(),
                            s.compared.saturating_sub(1)
                        ));
                    }
                }
            }
        }
        (self.problems, self.confirmed)
    }
}
