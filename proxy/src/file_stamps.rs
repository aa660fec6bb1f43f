//! Noticing that files the gateway re-reads while it runs (the policy set, HPKI trust anchors
//! and CRLs) have changed: their modification times, compared with the last ones read. A file
//! that disappears or appears counts as a change.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The modification times of a set of files, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStamps(Vec<(PathBuf, Option<SystemTime>)>);

impl FileStamps {
    /// The stamps of `files` now (a missing file has none).
    pub fn of(files: impl IntoIterator<Item = PathBuf>) -> FileStamps {
        let mut v: Vec<_> = files
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                (p, m)
            })
            .collect();
        v.sort();
        FileStamps(v)
    }

    /// The stamps of the files in `dir` with one of `extensions`.
    pub fn of_dir(dir: &Path, extensions: &[&str]) -> FileStamps {
        let files = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| extensions.contains(&x))
            });
        FileStamps::of(files)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_changed_or_removed_file_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.cedar");
        let empty = FileStamps::of_dir(dir.path(), &["cedar"]);
        assert!(empty.is_empty());
        std::fs::write(&a, "x").unwrap();
        std::fs::write(dir.path().join("b.txt"), "x").unwrap();
        let one = FileStamps::of_dir(dir.path(), &["cedar"]);
        assert_ne!(one, empty);
        assert_eq!(one, FileStamps::of_dir(dir.path(), &["cedar"]));
        let f = std::fs::File::options().write(true).open(&a).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH).unwrap();
        assert_ne!(FileStamps::of_dir(dir.path(), &["cedar"]), one);
        std::fs::remove_file(&a).unwrap();
        assert_eq!(
            FileStamps::of([a]),
            FileStamps::of([dir.path().join("a.cedar")])
        );
    }
}
