//! Backup and restore of a data dir (R-OPS-2: data is backed up for system failure).
//!
//! A backup is one file: the data dir's directories and regular files (configuration, CA and
//! server keys, the assertion, checkpoint and enrollment-PIN keys, policies, tunnel key,
//! break-glass evidence, cached CRLs), and for SQLite a consistent snapshot of the database
//! taken with `VACUUM INTO` while the gateway keeps serving (a read transaction: writers go
//! on). It is compressed and encrypted as it is written (`crypt`: ChaCha20-Poly1305 in chunks,
//! the key from a key file or a passphrase through Argon2id); nothing of it is on disk
//! unencrypted except the database snapshot, in a private directory in the data dir (or
//! `--temp-dir`) that is removed when the backup ends. A PostgreSQL database is not in the
//! backup: it is backed up with PostgreSQL's own tools (`docs/operations.md`).
//!
//! A restore goes into a new data dir only: it is written into a directory beside the target
//! and renamed into place at the end, after the restored audit log has taken a record of the
//! restore and verified, so a wrong key, a damaged file or a failed check leave nothing.
//!
//! - `crypt`: the file's header, key derivation and chunked encryption;
//! - `archive`: the entries inside, and restoring them from hostile input.

pub mod archive;
pub mod crypt;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::config::{Config, DataDir};
use sekisho_store::{DbKind, Store};

pub use crypt::{Secret, keygen};

/// The archive's description of itself, inside the encryption.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// UTC, RFC 3339.
    pub created: String,
    pub sekisho_version: String,
    pub hostname: String,
    pub node: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Where the SQLite snapshot is in the archive (the database's path in the data dir).
    pub database: Option<String>,
    /// The audit log at the snapshot: its size and root (hex).
    pub audit_tree_size: u64,
    pub audit_root: String,
    /// Who took it: `NAME (os:ACCOUNT)`.
    pub made_by: String,
    /// Files the configuration names outside the data dir: not in the backup.
    pub outside: Vec<String>,
}

/// What a backup holds and how it went.
#[derive(Clone, Debug)]
pub struct Made {
    pub manifest: Manifest,
    /// The backup file's SHA-256 (hex): what the records name it by.
    pub sha256: String,
    pub files: u64,
    pub dirs: u64,
    /// Bytes of the files before compression, and of the backup file.
    pub bytes: u64,
    pub size: u64,
    pub snapshot_took: Duration,
    pub took: Duration,
}

/// A backup written, encrypted, to a temporary file beside its destination; removed unless
/// [`Pending::install`] puts it in place.
pub struct Pending {
    tmp: Option<PathBuf>,
    out: PathBuf,
    pub made: Made,
}

impl Pending {
    /// Puts the backup at its destination; never replaces a file that is there.
    pub fn install(mut self) -> Result<Made> {
        let tmp = self.tmp.take().expect("installed once");
        let linked = std::fs::hard_link(&tmp, &self.out);
        let result = match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(anyhow::anyhow!(
                "{} appeared while the backup was being made; it was not replaced",
                self.out.display()
            )),
            // File systems without hard links.
            Err(_) if !self.out.exists() => std::fs::rename(&tmp, &self.out)
                .with_context(|| format!("cannot create {}", self.out.display())),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", self.out.display())),
        };
        let _ = std::fs::remove_file(&tmp);
        sync_parent(&self.out);
        result.map(|_| self.made.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

pub struct BackupOptions<'a> {
    pub out: &'a Path,
    pub secret: &'a Secret,
    /// Where the SQLite snapshot is made; default: the data dir (same disk and protection as
    /// the database).
    pub temp_dir: Option<&'a Path>,
    /// `NAME (os:ACCOUNT)`, for the manifest.
    pub made_by: String,
}

/// Where a backup may be written: a new file, outside the data dir, in an existing directory.
pub fn check_out(dd: &DataDir, out: &Path) -> Result<()> {
    if out.symlink_metadata().is_ok() {
        bail!(
            "{} exists; a backup never replaces a file (name each one, e.g. with the date)",
            out.display()
        );
    }
    let parent = parent_of(out);
    let parent = parent
        .canonicalize()
        .with_context(|| format!("the directory of {} does not exist", out.display()))?;
    let root = dd
        .root
        .canonicalize()
        .with_context(|| format!("cannot read the data dir {}", dd.root.display()))?;
    if parent.starts_with(&root) {
        bail!(
            "write the backup outside the data dir ({}): it would be in the next backups, and it must live apart from the gateway",
            dd.root.display()
        );
    }
    Ok(())
}

/// Makes a backup of the data dir into a temporary file beside `o.out`.
pub async fn make(
    dd: &DataDir,
    cfg: &Config,
    store: &Store,
    o: &BackupOptions<'_>,
) -> Result<Pending> {
    let started = Instant::now();
    check_out(dd, o.out)?;
    let root = dd.root.canonicalize()?;
    let (snapshot, (tree_size, root_hash)) = match store.kind() {
        DbKind::Sqlite => {
            let (rel, mode) = sqlite_path(cfg, &root)?;
            let at = o.temp_dir.map(Path::to_path_buf).unwrap_or(root.clone());
            let snap = Snapshot::take(store, &at, rel, mode).await?;
            let head = snapshot_head(&snap.path()).await?;
            (Some(snap), head)
        }
        DbKind::Postgres => (None, audit_head(store.pool()).await?),
    };
    let snapshot_took = started.elapsed();
    let manifest = Manifest {
        format: 1,
        created: sekisho_audit::format_time(time::OffsetDateTime::now_utc()),
        sekisho_version: env!("CARGO_PKG_VERSION").into(),
        hostname: cfg.hostname.clone(),
        node: cfg.node.clone(),
        store: match store.kind() {
            DbKind::Sqlite => "sqlite".into(),
            DbKind::Postgres => "postgres".into(),
        },
        database: snapshot.as_ref().map(|s| s.rel.clone()),
        audit_tree_size: tree_size,
        audit_root: hex::encode(root_hash),
        made_by: o.made_by.clone(),
        outside: outside_files(cfg, &root),
    };
    let tmp = temp_beside(o.out);
    let mut pending = Pending {
        tmp: Some(tmp.clone()),
        out: o.out.to_path_buf(),
        made: Made {
            manifest: manifest.clone(),
            sha256: String::new(),
            files: 0,
            dirs: 0,
            bytes: 0,
            size: 0,
            snapshot_took,
            took: Duration::ZERO,
        },
    };
    let secret = o.secret.clone();
    let w = tokio::task::spawn_blocking(move || {
        write_archive(&tmp, &root, &manifest, snapshot.as_ref(), &secret)
    })
    .await??;
    let m = &mut pending.made;
    (m.sha256, m.files, m.dirs, m.bytes, m.size) = (w.sha256, w.files, w.dirs, w.bytes, w.size);
    m.took = started.elapsed();
    Ok(pending)
}

/// The SQLite database as of one moment, taken with `VACUUM INTO` (a read transaction: the
/// gateway's writers go on) into a private directory (0700, the file 0600) that is removed
/// when this is dropped.
struct Snapshot {
    dir: tempfile::TempDir,
    /// The database's path in the data dir, and its mode.
    rel: String,
    mode: u32,
}

impl Snapshot {
    async fn take(store: &Store, at: &Path, rel: String, mode: u32) -> Result<Snapshot> {
        let dir = tempfile::Builder::new()
            .prefix(SNAPSHOT_PREFIX)
            .tempdir_in(at)
            .with_context(|| format!("cannot make a private directory in {}", at.display()))?;
        set_mode(dir.path(), 0o700)?;
        let snap = Snapshot { dir, rel, mode };
        let path = snap.path();
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
        }
        let name = path
            .to_str()
            .context("the temporary directory's path is not UTF-8")?;
        sqlx::query("VACUUM INTO $1")
            .bind(name)
            .execute(store.pool())
            .await
            .context("cannot take a snapshot of the database (VACUUM INTO)")?;
        Ok(snap)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("snapshot.db")
    }
}

const SNAPSHOT_PREFIX: &str = ".sekisho-backup-";

struct Written {
    sha256: String,
    files: u64,
    dirs: u64,
    bytes: u64,
    size: u64,
}

fn write_archive(
    tmp: &Path,
    root: &Path,
    manifest: &Manifest,
    db: Option<&Snapshot>,
    secret: &Secret,
) -> Result<Written> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let hashed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let enc = crypt::EncryptWriter::new(hashed, secret)?;
    let z = flate2::write::DeflateEncoder::new(enc, flate2::Compression::new(COMPRESSION));
    let mut a = archive::ArchiveWriter::new(z, &serde_json::to_vec(manifest)?)?;
    let skip: Vec<String> = match db {
        Some(d) => ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|s| format!("{}{s}", d.rel))
            .collect(),
        None => Vec::new(),
    };
    let mut dirs = 0;
    walk(root, "", &skip, &mut a, &mut dirs)?;
    if let Some(d) = db {
        let f = File::open(d.path())?;
        let size = f.metadata()?.len();
        a.file(&d.rel, d.mode, size, BufReader::with_capacity(1 << 20, f))?;
    }
    let (z, entries, bytes) = a.finish()?;
    let hashed = z.finish()?.finish()?;
    let (buf, digest, size) = hashed.finish();
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(Written {
        sha256: digest,
        files: entries - dirs,
        dirs,
        bytes,
        size,
    })
}

/// Deflate level 1: the backup runs beside a serving gateway, often on two cores. On a 32 MB
/// database of audit records (optimised build) level 1 made 4.5x in 0.34 s, level 3 5.1x in
/// 0.78 s, level 6 5.2x in 1.07 s: the CPU is worth more than the last 12 % of size.
const COMPRESSION: u32 = 1;

/// Every directory and regular file under `dir`, in name order, except the database's files
/// (the snapshot stands for them), snapshots, files being written and the audit journals. A link or special file
/// stops the backup: what it points to would not be restored.
fn walk<W: Write>(
    dir: &Path,
    rel: &str,
    skip: &[String],
    a: &mut archive::ArchiveWriter<W>,
    dirs: &mut u64,
) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            bail!("{} has a name that is not UTF-8", path.display());
        };
        let r = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        // The nodes' audit journals are left out: what they hold is in the snapshot's log or
        // newer than it, and their segments are removed as they are indexed, under the walk.
        if skip.contains(&r)
            || name.starts_with(SNAPSHOT_PREFIX)
            || (name.starts_with('.') && name.ends_with(".tmp"))
            || (rel == "audit" && name.starts_with("journal-"))
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            a.dir(&r, mode)?;
            *dirs += 1;
            walk(&path, &r, skip, a, dirs)?;
        } else if meta.is_file() {
            let f = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let size = f.metadata()?.len();
            a.file(&r, mode, size, BufReader::new(f))?;
        } else {
            bail!(
                "{} is a link or a special file; a backup holds directories and regular files only (put the file itself there)",
                path.display()
            );
        }
    }
    Ok(())
}

/// The SQLite database's path inside the data dir and its mode.
fn sqlite_path(cfg: &Config, root: &Path) -> Result<(String, u32)> {
    let url = cfg.store_url(root);
    let path = url
        .strip_prefix("sqlite://")
        .unwrap_or(&url)
        .split('?')
        .next()
        .unwrap_or_default();
    let path = Path::new(path)
        .canonicalize()
        .with_context(|| format!("cannot find the database {path}"))?;
    let Ok(rel) = path.strip_prefix(root) else {
        bail!(
            "the SQLite database {} is outside the data dir; a backup takes it only from inside (store.url = \"sqlite:sekisho.db\")",
            path.display()
        );
    };
    let rel = rel
        .to_str()
        .context("the database's path is not UTF-8")?
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    Ok((rel, std::fs::metadata(&path)?.permissions().mode()))
}

/// The snapshot's audit head (it is checked, read-only, first: a damaged database is found
/// now, not at restore).
async fn snapshot_head(snap: &Path) -> Result<(u64, [u8; 32])> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", snap.display());
    let mut c = sqlx::AnyConnection::connect(&url)
        .await
        .context("cannot open the snapshot")?;
    let ok: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut c)
        .await
        .context("cannot check the snapshot")?;
    if ok != "ok" {
        bail!("the database snapshot is damaged ({ok}); the database needs repair before a backup");
    }
    let head = audit_head(&mut c).await;
    c.close().await.ok();
    head
}

async fn audit_head<'c>(
    e: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<(u64, [u8; 32])> {
    let row = sqlx::query("SELECT tree_size, frontier FROM audit_head WHERE id = 1")
        .fetch_one(e)
        .await
        .context("cannot read the audit head")?;
    let size: i64 = row.try_get(0)?;
    let frontier: Vec<u8> = row.try_get(1)?;
    let range = sekisho_audit::merkle::CompactRange::from_parts(size as u64, &frontier)
        .map_err(|e| anyhow::anyhow!("the audit head is damaged: {e}"))?;
    Ok((range.size(), range.root()))
}

/// Files the configuration names that are not inside the data dir (not in the backup).
fn outside_files(cfg: &Config, root: &Path) -> Vec<String> {
    let mut named: Vec<&Path> = Vec::new();
    let u = &cfg.upstream;
    named.extend(
        [&u.ca_file, &u.client_cert, &u.client_key]
            .into_iter()
            .flatten()
            .map(|p| p.as_path()),
    );
    if let Some(h) = &cfg.hpki {
        named.extend(
            h.anchors
                .iter()
                .chain(&h.intermediates)
                .chain(&h.crls)
                .map(|p| p.as_path()),
        );
    }
    if let Some(n) = &cfg.notify {
        for w in &n.webhooks {
            named.push(&w.secret_file);
            named.extend(w.ca_file.as_deref());
        }
        if let Some(s) = &n.smtp {
            named.extend(s.ca_file.as_deref());
            named.extend(s.password_file.as_deref());
        }
    }
    if let Some(t) = &cfg.tunnel {
        named.push(&t.private_key);
    }
    named.push(&cfg.policy.dir);
    named
        .into_iter()
        .filter_map(|p| {
            let full = root.join(p).canonicalize().ok()?;
            (!full.starts_with(root)).then(|| full.display().to_string())
        })
        .collect()
}

/// What a restore did.
pub struct Restored {
    pub manifest: Manifest,
    pub sha256: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// The restore's record in the restored log (SQLite), and the log's verification.
    pub record_index: Option<u64>,
    pub verify: Option<sekisho_audit::VerifyReport>,
    pub warnings: Vec<String>,
}

/// Where a restore may go: an absent or empty directory whose parent exists.
pub fn check_target(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(target)?.next().is_some() {
                bail!(
                    "{} is not empty; a restore goes into a new or empty data dir (nothing was changed)",
                    target.display()
                );
            }
        }
        Ok(_) => bail!("{} exists and is not a directory", target.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", target.display())),
    }
    let parent = parent_of(target);
    if !parent.is_dir() {
        bail!("{} does not exist; create it first", parent.display());
    }
    Ok(())
}

/// Restores `input` into the new data dir `target`, recording the restore (as `actor`) in the
/// restored audit log and verifying it. Nothing is left at `target` if anything fails.
pub async fn restore(
    input: &Path,
    target: &Path,
    secret: &Secret,
    actor: &str,
) -> Result<Restored> {
    check_target(target)?;
    let file = File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let hashed = Hashing::new(BufReader::with_capacity(1 << 20, file));
    // The key is checked before anything is written.
    let dec = crypt::DecryptReader::new(hashed, secret)?;
    let stage = tempfile::Builder::new()
        .prefix(".sekisho-restore-")
        .tempdir_in(parent_of(target))
        .context("cannot make a directory beside the target")?;
    set_mode(stage.path(), 0o700)?;
    let root = stage.path().to_path_buf();
    let into = root.clone();
    let (x, sha256) = tokio::task::spawn_blocking(move || unpack(dec, &into)).await??;
    let manifest: Manifest = serde_json::from_slice(&x.manifest)?;
    let mut restored = Restored {
        manifest,
        sha256,
        files: x.files,
        dirs: x.dirs,
        bytes: x.bytes,
        record_index: None,
        verify: None,
        warnings: Vec::new(),
    };
    if let Some(db) = &restored.manifest.database {
        // The manifest is the archive's word too: the database must be one of its files.
        archive::check_path(db)?;
        if !std::fs::symlink_metadata(root.join(db)).is_ok_and(|m| m.is_file()) {
            bail!("the archive's manifest names a database ({db}) that is not in it");
        }
    }
    let cfg = Config::load(&root).context("the restored sekisho.toml does not load")?;
    if let Some(db) = restored.manifest.database.clone() {
        record_and_verify(&root, &cfg, &db, actor, &mut restored).await?;
        let named = cfg.store_url(target);
        let want = format!(
            "sqlite://{}",
            std::path::absolute(target)?.join(&db).display()
        );
        if !named.starts_with(&want) {
            restored.warnings.push(format!(
                "sekisho.toml names the database as {:?}; the restored one is {db} in the new data dir: set store.url = \"sqlite:{db}\"",
                cfg.store.url
            ));
        }
    }
    // Into place: the target is absent or an empty directory (checked again: rename would
    // replace an empty one, never a full one).
    check_target(target)?;
    if target.exists() {
        std::fs::remove_dir(target)?;
    }
    let staged = stage.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e)
            .with_context(|| format!("cannot move the restored data dir to {}", target.display()));
    }
    sync_parent(target);
    Ok(restored)
}

/// Decrypts, decompresses and writes the archive under `root`; the backup file's SHA-256.
fn unpack<R: Read>(
    dec: crypt::DecryptReader<Hashing<R>>,
    root: &Path,
) -> Result<(archive::Extracted, String)> {
    let mut z = flate2::bufread::DeflateDecoder::new(BufReader::with_capacity(1 << 16, dec));
    let x = archive::extract(&mut z, root, |m| {
        let m: Manifest =
            serde_json::from_slice(m).context("the archive's manifest is not valid")?;
        if m.format != 1 {
            bail!(
                "the archive's contents are in format {}, which this version does not read",
                m.format
            );
        }
        Ok(())
    })?;
    // The rest of the file must be the end of the encryption (its last, marked chunk).
    let mut rest = z.into_inner();
    let mut extra = Vec::new();
    rest.read_to_end(&mut extra)?;
    if !extra.is_empty() {
        bail!("the backup has data after its archive");
    }
    let (_, sha256, _) = rest.into_inner().into_inner().finish();
    Ok((x, sha256))
}

/// The restore on record in the restored log, then the whole log verified.
async fn record_and_verify(
    root: &Path,
    cfg: &Config,
    db: &str,
    actor: &str,
    r: &mut Restored,
) -> Result<()> {
    let dd = DataDir::new(root);
    let url = format!("sqlite://{}", std::path::absolute(root.join(db))?.display());
    let store = Store::open(&url)
        .await
        .context("the restored database does not open")?;
    let head = audit_head(store.pool()).await?;
    let m = &r.manifest;
    if head.0 != m.audit_tree_size || hex::encode(head.1) != m.audit_root {
        store.close().await;
        bail!(
            "the restored audit log (size {}) is not the one the backup describes (size {})",
            head.0,
            m.audit_tree_size
        );
    }
    let log = crate::serve::open_audit(&dd, cfg, &store, &crate::metrics::Metrics::new()).await?;
    let rec = sekisho_audit::AuditRecord {
        request_id: sekisho_protocol::new_request_id(),
        event: sekisho_audit::Event::Operation,
        action: Some("restore".into()),
        actor: Some(actor.to_string()),
        decision: sekisho_audit::Decision::Permit,
        reason: "restored".into(),
        detail: Some(crate::headers::escape_text(
            &format!(
                "restored from backup sha256:{} made {} by {} at tree size {} (root {}); {} files",
                r.sha256, m.created, m.made_by, m.audit_tree_size, m.audit_root, r.files
            ),
            600,
        )),
        ..Default::default()
    };
    let appended = log.append(rec).await;
    log.shutdown().await;
    let idx = appended.map_err(|e| {
        anyhow::anyhow!("the restore could not be recorded in the restored audit log: {e}")
    })?;
    r.record_index = Some(idx);
    let key = sekisho_audit::checkpoint::verifier_keys(&dd.audit_dir())
        .context("the backup has no audit/checkpoint.pub")?;
    let report = sekisho_audit::verify(&store, key.trim()).await?;
    store.close().await;
    if !report.is_clean() {
        bail!(
            "the restored audit log does not verify: {}",
            report.problems.join("; ")
        );
    }
    r.verify = Some(report);
    Ok(())
}

/// Passes bytes through and keeps their SHA-256 and count.
struct Hashing<T> {
    inner: T,
    ctx: aws_lc_rs::digest::Context,
    n: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            n: 0,
        }
    }

    fn finish(self) -> (T, String, u64) {
        (self.inner, hex::encode(self.ctx.finish()), self.n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.ctx.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.ctx.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_beside(out: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut r);
    let base = out.file_name().and_then(|n| n.to_str()).unwrap_or("backup");
    parent_of(out).join(format!(".{base}.{}.tmp", hex::encode(r)))
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", p.display()))
}

fn sync_parent(p: &Path) {
    if let Ok(d) = File::open(parent_of(p)) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive that authenticates (it was made with the key) but whose manifest names a
    /// database outside it: refused, and nothing is left.
    #[tokio::test]
    async fn a_manifest_naming_a_database_outside_the_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::Key(zeroize::Zeroizing::new([3u8; 32]));
        let manifest = Manifest {
            format: 1,
            created: String::new(),
            sekisho_version: String::new(),
            hostname: "h".into(),
            node: "n".into(),
            store: "sqlite".into(),
            database: Some("../victim.db".into()),
            audit_tree_size: 0,
            audit_root: String::new(),
            made_by: String::new(),
            outside: Vec::new(),
        };
        let file = dir.path().join("b");
        {
            let enc = crypt::EncryptWriter::new(File::create(&file).unwrap(), &secret).unwrap();
            let z = flate2::write::DeflateEncoder::new(enc, flate2::Compression::fast());
            let mut a =
                archive::ArchiveWriter::new(z, &serde_json::to_vec(&manifest).unwrap()).unwrap();
            a.file("sekisho.db", 0o600, 1, &b"x"[..]).unwrap();
            let (z, _, _) = a.finish().unwrap();
            z.finish().unwrap().finish().unwrap();
        }
        std::fs::write(dir.path().join("victim.db"), "theirs").unwrap();
        let target = dir.path().join("gw");
        let e = restore(&file, &target, &secret, "t (os:t)")
            .await
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("not allowed"), "{e:#}");
        assert!(!target.exists());
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["b", "victim.db"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("victim.db")).unwrap(),
            "theirs"
        );
    }
}
