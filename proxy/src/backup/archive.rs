//! The backup's contents, inside the encryption and the compression: a manifest, then the data
//! dir's directories and regular files, then an end marker with the counts.
//!
//! ```text
//! manifest:  u32 length, JSON
//! entry:     'D' | 'F', u16 path length, path (UTF-8, relative, '/'-separated), u32 mode,
//!            and for 'F': u64 size, the bytes
//! end:       'E', u64 entries, u64 file bytes
//! ```
//!
//! On restore the archive is hostile input even though it authenticated: every path is checked
//! (relative, no `.`, `..` or empty parts, no NUL, bounded length and depth), sizes and counts
//! are capped, an entry's parent must be a directory the archive made before, and files are
//! created new (`O_EXCL`, which neither follows nor replaces anything). There are no links.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Longest path in an archive, in bytes.
const MAX_PATH: usize = 1024;
/// Deepest path in an archive.
const MAX_DEPTH: usize = 16;
/// Largest manifest.
const MAX_MANIFEST: u32 = 1 << 20;
/// Most entries in an archive (a data dir holds a few dozen files; the break-glass evidence
/// and the HPKI CRL cache grow, slowly).
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Largest file, and largest sum of files, an archive may restore (the database is the big one).
pub const MAX_FILE: u64 = 1 << 40;
pub const MAX_TOTAL: u64 = 4 << 40;

pub struct ArchiveWriter<W: Write> {
    out: W,
    entries: u64,
    bytes: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(mut out: W, manifest: &[u8]) -> Result<ArchiveWriter<W>> {
        let len = u32::try_from(manifest.len())
            .ok()
            .filter(|l| *l <= MAX_MANIFEST)
            .context("the manifest is too large")?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(manifest)?;
        Ok(ArchiveWriter {
            out,
            entries: 0,
            bytes: 0,
        })
    }

    fn head(&mut self, tag: u8, path: &str, mode: u32) -> Result<()> {
        check_path(path)?;
        self.out.write_all(&[tag])?;
        self.out.write_all(&(path.len() as u16).to_be_bytes())?;
        self.out.write_all(path.as_bytes())?;
        self.out.write_all(&(mode & 0o7777).to_be_bytes())?;
        self.entries += 1;
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.head(b'D', path, mode)
    }

    /// A file of exactly `size` bytes from `content`; an error if it has fewer (it changed
    /// while being read).
    pub fn file(&mut self, path: &str, mode: u32, size: u64, content: impl Read) -> Result<()> {
        if size > MAX_FILE {
            bail!("{path} is larger than a backup may hold");
        }
        self.head(b'F', path, mode)?;
        self.out.write_all(&size.to_be_bytes())?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        if copied != size {
            bail!("{path} became shorter while it was being backed up; run the backup again");
        }
        self.bytes += size;
        Ok(())
    }

    /// The end marker; returns the output, the number of entries and the bytes of the files.
    pub fn finish(mut self) -> Result<(W, u64, u64)> {
        self.out.write_all(b"E")?;
        self.out.write_all(&self.entries.to_be_bytes())?;
        self.out.write_all(&self.bytes.to_be_bytes())?;
        Ok((self.out, self.entries, self.bytes))
    }
}

/// Whether `path` may name an entry: relative, `/`-separated normal parts only.
pub(crate) fn check_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.contains('\0')
        && !path.contains('\\')
        && path.split('/').count() <= MAX_DEPTH
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && p.len() <= 255);
    if !ok {
        bail!("the archive names a path that is not allowed: {path:?}");
    }
    Ok(())
}

/// What a restore found in the archive.
#[derive(Debug)]
pub struct Extracted {
    pub manifest: Vec<u8>,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// Reads the manifest, hands it to `accept` (which may refuse the archive before anything is
/// written), then writes every entry under `root` (an empty directory of our own).
pub fn extract(
    mut input: impl Read,
    root: &Path,
    accept: impl FnOnce(&[u8]) -> Result<()>,
) -> Result<Extracted> {
    let len = read_u32(&mut input)?;
    if len > MAX_MANIFEST {
        bail!("the archive's manifest is too large");
    }
    let mut manifest = vec![0u8; len as usize];
    input.read_exact(&mut manifest).map_err(cut)?;
    accept(&manifest)?;
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag).map_err(cut)?;
        match tag[0] {
            b'E' => {
                let entries = read_u64(&mut input)?;
                let total = read_u64(&mut input)?;
                if entries != files + dirs || total != bytes {
                    bail!("the archive's end marker does not match its entries");
                }
                let mut extra = [0u8; 1];
                if input.read(&mut extra)? != 0 {
                    bail!("the archive has data after its end marker");
                }
                return Ok(Extracted {
                    manifest,
                    files,
                    dirs,
                    bytes,
                });
            }
            b'D' | b'F' => {}
            t => bail!("the archive has an unknown entry type {t:#04x}"),
        }
        if files + dirs >= MAX_ENTRIES {
            bail!("the archive has more than {MAX_ENTRIES} entries");
        }
        let plen = read_u16(&mut input)? as usize;
        if plen > MAX_PATH {
            bail!("the archive names a path longer than {MAX_PATH} bytes");
        }
        let mut raw = vec![0u8; plen];
        input.read_exact(&mut raw).map_err(cut)?;
        let path = String::from_utf8(raw).context("the archive names a path that is not UTF-8")?;
        check_path(&path)?;
        let mode = read_u32(&mut input)?;
        let target = place(root, &path)?;
        if tag[0] == b'D' {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(dir_mode(mode))
                .create(&target)
                .with_context(|| format!("cannot restore the directory {path}"))?;
            dirs += 1;
            continue;
        }
        let size = read_u64(&mut input)?;
        if size > MAX_FILE || bytes.saturating_add(size) > MAX_TOTAL {
            bail!("the archive's file {path} is larger than a restore accepts");
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode(mode))
            .open(&target)
            .with_context(|| format!("cannot restore {path} (named twice?)"))?;
        let copied = io::copy(&mut (&mut input).take(size), &mut f)
            .with_context(|| format!("cannot restore {path}"))?;
        if copied != size {
            bail!("the archive is cut off inside {path}");
        }
        f.sync_all()?;
        files += 1;
        bytes += size;
    }
}

/// Where `path` goes under `root`: its parent must already be a directory the archive made
/// (never a link: the archive makes none, and `root` is ours).
fn place(root: &Path, path: &str) -> Result<PathBuf> {
    let target = root.join(path);
    let parent = target.parent().context("an entry without a parent")?;
    let meta = std::fs::symlink_metadata(parent)
        .with_context(|| format!("the archive names {path} before its directory"))?;
    if !meta.is_dir() {
        bail!("the archive names {path} inside something that is not a directory");
    }
    Ok(target)
}

/// Modes as the data dir had them, without set-id bits and without write for others: keys stay
/// 0600, the rest 0644/0755 (and the umask still applies).
fn file_mode(m: u32) -> u32 {
    m & 0o755
}

fn dir_mode(m: u32) -> u32 {
    (m & 0o755) | 0o700
}

fn cut(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        anyhow::anyhow!("the archive is cut off")
    } else {
        e.into()
    }
}

fn read_u16(r: &mut impl Read) -> Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).map_err(cut)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(cut)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(cut)?;
    Ok(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_entry(tag: u8, path: &[u8], mode: u32, body: Option<&[u8]>) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(path.len() as u16).to_be_bytes());
        v.extend_from_slice(path);
        v.extend_from_slice(&mode.to_be_bytes());
        if let Some(b) = body {
            v.extend_from_slice(&(b.len() as u64).to_be_bytes());
            v.extend_from_slice(b);
        }
        v
    }

    fn archive(entries: &[Vec<u8>], n: u64, bytes: u64) -> Vec<u8> {
        let mut v = 2u32.to_be_bytes().to_vec();
        v.extend_from_slice(b"{}");
        for e in entries {
            v.extend_from_slice(e);
        }
        v.push(b'E');
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&bytes.to_be_bytes());
        v
    }

    #[test]
    fn round_trip_keeps_modes() {
        let mut w = ArchiveWriter::new(Vec::new(), b"{\"a\":1}").unwrap();
        w.dir("ca", 0o700).unwrap();
        w.file("ca/root.key", 0o600, 3, &b"key"[..]).unwrap();
        // A file shorter than it said (it changed while being read) stops the backup.
        w.file("short", 0o644, 5, &b"abc"[..]).unwrap_err();
        let mut w = ArchiveWriter::new(Vec::new(), b"{\"a\":1}").unwrap();
        w.dir("ca", 0o700).unwrap();
        w.file("ca/root.key", 0o4600, 3, &b"key"[..]).unwrap();
        let (bytes, entries, size) = w.finish().unwrap();
        assert_eq!((entries, size), (2, 3));
        let dir = tempfile::tempdir().unwrap();
        let x = extract(&bytes[..], dir.path(), |m| {
            assert_eq!(m, b"{\"a\":1}");
            Ok(())
        })
        .unwrap();
        assert_eq!((x.files, x.dirs, x.bytes), (1, 1, 3));
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(dir.path().join("ca/root.key")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::read(dir.path().join("ca/root.key")).unwrap(),
            b"key"
        );
    }

    #[test]
    fn hostile_archives_write_nothing_outside_and_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let escape = format!(
            "../{}/x",
            outside.path().file_name().unwrap().to_str().unwrap()
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                archive(&[raw_entry(b'F', b"../x", 0o644, Some(b"1"))], 1, 1),
                "not allowed",
            ),
            (
                archive(
                    &[raw_entry(b'F', escape.as_bytes(), 0o644, Some(b"1"))],
                    1,
                    1,
                ),
                "not allowed",
            ),
            (
                archive(&[raw_entry(b'F', b"/etc/x", 0o644, Some(b"1"))], 1, 1),
                "not allowed",
            ),
            (
                archive(&[raw_entry(b'F', b"a/./b", 0o644, Some(b"1"))], 1, 1),
                "not allowed",
            ),
            (
                archive(&[raw_entry(b'F', b"a\0b", 0o644, Some(b"1"))], 1, 1),
                "not allowed",
            ),
            (
                archive(&[raw_entry(b'F', b"nodir/x", 0o644, Some(b"1"))], 1, 1),
                "before its directory",
            ),
            (
                archive(
                    &[
                        raw_entry(b'F', b"x", 0o644, Some(b"1")),
                        raw_entry(b'F', b"x", 0o644, Some(b"2")),
                    ],
                    2,
                    2,
                ),
                "named twice",
            ),
            (
                archive(
                    &[
                        raw_entry(b'F', b"f", 0o644, Some(b"1")),
                        raw_entry(b'F', b"f/x", 0o644, Some(b"2")),
                    ],
                    2,
                    2,
                ),
                "not a directory",
            ),
            (
                archive(&[raw_entry(b'L', b"x", 0o777, None)], 1, 0),
                "unknown entry type",
            ),
            (
                archive(&[raw_entry(b'F', b"x", 0o644, Some(b"1"))], 5, 1),
                "does not match",
            ),
        ];
        for (bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let e = extract(&bytes[..], dir.path(), |_| Ok(())).unwrap_err();
            assert!(format!("{e:#}").contains(want), "{e:#} (wanted {want})");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // An absurd size is refused before anything is read or allocated for it.
        let mut huge = 2u32.to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        huge.extend_from_slice(&raw_entry(b'F', b"x", 0o644, None));
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let e = extract(&huge[..], dir.path(), |_| Ok(())).unwrap_err();
        assert!(
            e.to_string().contains("larger than a restore accepts"),
            "{e}"
        );
        // Cut off anywhere: an error, not a short restore.
        let good = archive(&[raw_entry(b'F', b"x", 0o644, Some(b"hello"))], 1, 5);
        for cut in 0..good.len() {
            let dir = tempfile::tempdir().unwrap();
            assert!(
                extract(&good[..cut], dir.path(), |_| Ok(())).is_err(),
                "{cut}"
            );
        }
    }
}
