//! Files written whole or not at all: a temporary file in the same directory, synced, then
//! linked or renamed into place, and the directory synced. Used for keys, checkpoints and
//! cached CRLs, which a crash must never leave torn.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut r);
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    dir.join(format!(
        ".{base}.{}.{}.tmp",
        std::process::id(),
        hex::encode(r)
    ))
}

fn write_temp(dir: &Path, path: &Path, data: &[u8], mode: u32) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = temp_path(dir, path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = f.write_all(data).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    Ok(tmp)
}

/// Puts `data` at `path` only if nothing is there yet (a hard link does not replace); if another
/// process got there first, its file stays.
pub fn install_new_file(dir: &Path, path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(dir, path, data, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // File systems without hard links: rename (atomic, but last writer wins).
        Err(_) => {
            fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))
        }
    };
    let _ = fs::remove_file(&tmp);
    sync_dir(dir);
    result
}

/// Replaces `path` atomically (temporary file + rename).
pub fn replace_file(dir: &Path, path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(dir, path, data, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
