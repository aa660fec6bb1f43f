//! Witnesses: copies of the log's signed checkpoints kept off the gateway's machine, so that
//! the newest batches cannot be deleted — records, checkpoint and head together, which leaves a
//! log that `verify` alone finds intact — or the log rewritten and re-signed, without the copy
//! giving it away (`verify_witnessed`).
//!
//! - `dir`: a directory on other storage (every checkpoint it took, and the newest);
//! - `https`: an HTTPS endpoint the signed note is POSTed to (another Sekisho node running
//!   `sekisho audit witness`, or anything that speaks the same few lines of HTTP);
//! - `receive`: the receiving side of that endpoint, on a directory witness;
//! - `pump`: the gateway's copier: the newest checkpoint to every witness, off the request path.
//!
//! A witness takes a checkpoint only if it is newer than the one it holds (a larger tree); it
//! refuses a smaller one, one of another log, and a different root at the same size (a fork).
//! Consistency between two checkpoints is the tree's to prove (`verify` recomputes it), so not
//! every checkpoint has to reach a witness: the newest supersedes the ones before it.

pub(crate) mod check;
mod dir;
mod https;
mod pump;
mod receive;

use std::sync::Arc;

use anyhow::Result;

pub use check::WitnessCopy;
pub use dir::{DirWitness, HISTORY_FILE, History, LATEST_FILE};
pub use https::HttpsWitness;
pub use pump::{PumpConfig, WitnessMetrics, WitnessPump};
pub use receive::{REFUSAL_HEADER, receive};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};

/// Why a witness refuses a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it holds a checkpoint of another log ({held:?}; offered {offered:?})")]
    OtherLog { held: String, offered: String },
    #[error("it holds a larger tree (size {held}) than the one offered (size {offered})")]
    Older { held: u64, offered: u64 },
    #[error("it holds a different root at the same tree size {size} (a fork)")]
    Fork { size: u64 },
}

impl Refusal {
    /// The word on the wire (`Sekisho-Witness-Refusal`) and in metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::OtherLog { .. } => "other-log",
            Refusal::Older { .. } => "older",
            Refusal::Fork { .. } => "fork",
        }
    }
}

/// Whether a witness holding `held` takes `offered`: `Ok(true)` for a newer checkpoint,
/// `Ok(false)` for the one it holds already (taken again, nothing written).
pub fn judge(held: Option<&Checkpoint>, offered: &Checkpoint) -> Result<bool, Refusal> {
    let Some(held) = held else {
        return Ok(true);
    };
    if held.origin != offered.origin {
        return Err(Refusal::OtherLog {
            held: held.origin.clone(),
            offered: offered.origin.clone(),
        });
    }
    if offered.size < held.size {
        return Err(Refusal::Older {
            held: held.size,
            offered: offered.size,
        });
    }
    if offered.size == held.size {
        return if offered.root == held.root {
            Ok(false)
        } else {
            Err(Refusal::Fork { size: held.size })
        };
    }
    Ok(true)
}

/// A witness's answer to a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It holds the offered checkpoint now (or held it already).
    Accepted,
    /// It kept what it holds, which it says when it can.
    Refused {
        refusal: Refusal,
        held: Option<SignedCheckpoint>,
    },
}

/// A configured witness.
#[derive(Clone)]
pub enum Witness {
    Dir { name: String, dir: DirWitness },
    Https(Arc<HttpsWitness>),
}

impl Witness {
    pub fn dir(name: impl Into<String>, dir: DirWitness) -> Witness {
        Witness::Dir {
            name: name.into(),
            dir,
        }
    }

    pub fn https(w: HttpsWitness) -> Witness {
        Witness::Https(Arc::new(w))
    }

    /// What it is called in logs, metrics and `verify`'s report.
    pub fn name(&self) -> &str {
        match self {
            Witness::Dir { name, .. } => name,
            Witness::Https(w) => w.name(),
        }
    }

    /// The newest checkpoint it holds.
    pub async fn held(&self) -> Result<Option<SignedCheckpoint>> {
        match self {
            Witness::Dir { dir, .. } => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || dir.latest()).await?
            }
            Witness::Https(w) => w.held().await,
        }
    }

    pub async fn submit(&self, cp: &SignedCheckpoint) -> Result<Outcome> {
        match self {
            Witness::Dir { dir, .. } => {
                let (dir, cp) = (dir.clone(), cp.clone());
                tokio::task::spawn_blocking(move || dir.submit(&cp)).await?
            }
            Witness::Https(w) => w.submit(cp).await,
        }
    }

    /// What `verify_witnessed` checks the log against, oldest first: a directory witness's
    /// every checkpoint, an HTTPS witness's newest.
    pub async fn notes(&self) -> Result<WitnessCopy> {
        let notes: Box<dyn Iterator<Item = Result<String>> + Send> = match self {
            Witness::Dir { dir, .. } => dir.notes()?,
            Witness::Https(w) => Box::new(w.held().await?.map(|cp| Ok(cp.note)).into_iter()),
        };
        Ok(WitnessCopy {
            name: self.name().to_string(),
            notes,
        })
    }
}

#[cfg(test)]
mod https_tests;
#[cfg(test)]
mod tests;
