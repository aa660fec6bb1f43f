//! The backup file's encryption: a header that says how the key is made and authenticates
//! itself, then the payload as a sequence of ChaCha20-Poly1305 chunks (the STREAM construction,
//! as in age): each chunk's nonce is its number and whether it is the last, so chunks cannot be
//! reordered, dropped or cut off, and the header is the associated data of every chunk.
//!
//! ```text
//! header (120 bytes, every field authenticated):
//!   "SEKISHO-BACKUP\0"  version (1)  key kind (1 key file, 2 passphrase)  aead (1 ChaCha20-Poly1305)
//!   chunk size as log2 (16)  reserved (0)
//!   Argon2id memory KiB, passes, lanes (u32 BE each; 0 for a key file)
//!   salt (32)  key id (8; zero for a passphrase)  key check (16)  HMAC-SHA256 of all before (32)
//! chunks: 64 KiB of payload + 16-byte tag each; the last one shorter (possibly empty) and marked
//! ```
//!
//! The 32-byte secret is the key file's, or Argon2id of the passphrase; HKDF-SHA256 with the
//! header's salt turns it into this file's payload key, header key and key check, so no two
//! backups share a payload key. A wrong key is told apart from a damaged file by the key check
//! (and, for key files, by the key id), before anything is decrypted.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf, hmac};
use zeroize::Zeroizing;

const MAGIC: &[u8; 15] = b"SEKISHO-BACKUP\0";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 120;
const KIND_KEY: u8 = 1;
const KIND_PASSPHRASE: u8 = 2;
const AEAD_CHACHA: u8 = 1;
const CHUNK_LOG2: u8 = 16;
const CHUNK: usize = 1 << CHUNK_LOG2;
const TAG: usize = 16;

/// Argon2id for passphrases: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation with
/// one lane: the gateway's machines have few cores and the CLI should not take them all).
const ARGON_M_KIB: u32 = 64 * 1024;
const ARGON_T: u32 = 3;
const ARGON_P: u32 = 1;
/// The most a header may ask for (a hostile header must not make restore allocate gigabytes).
const ARGON_MAX_M_KIB: u32 = 1024 * 1024;
const ARGON_MAX_T: u32 = 16;
const ARGON_MAX_P: u32 = 8;
/// Passphrases shorter than this are refused: the file may be copied anywhere and attacked
/// offline for as long as anyone likes.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

const KEY_FILE_PREFIX: &str = "sekisho-backup-key-v1:";

/// What unlocks a backup: a key file's 32 bytes or a passphrase.
#[derive(Clone)]
pub enum Secret {
    Key(Zeroizing<[u8; 32]>),
    Passphrase(Zeroizing<String>),
}

impl Secret {
    /// Reads a key file made by `sekisho backup keygen` (or 32 raw random bytes).
    pub fn from_key_file(path: &Path) -> Result<Secret> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?
            .len();
        if len > 4096 {
            bail!(
                "{} is not a backup key (too large; make one with `sekisho backup keygen --out FILE`)",
                path.display()
            );
        }
        let raw = Zeroizing::new(
            std::fs::read(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?,
        );
        warn_if_readable_by_others(path);
        let mut key = Zeroizing::new([0u8; 32]);
        if raw.len() == 32 && !raw.starts_with(KEY_FILE_PREFIX.as_bytes()) {
            key.copy_from_slice(&raw);
            return Ok(Secret::Key(key));
        }
        let text = std::str::from_utf8(&raw).ok();
        let encoded = text.and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix(KEY_FILE_PREFIX))
                .map(str::trim)
        });
        let Some(encoded) = encoded else {
            bail!(
                "{} is not a backup key (make one with `sekisho backup keygen --out FILE`)",
                path.display()
            );
        };
        use base64::Engine;
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
                .filter(|d| d.len() == 32)
                .with_context(|| format!("{} holds a damaged backup key", path.display()))?,
        );
        key.copy_from_slice(&decoded);
        Ok(Secret::Key(key))
    }

    /// A passphrase, checked for length.
    pub fn passphrase(p: String) -> Result<Secret> {
        let p = Zeroizing::new(p);
        if p.chars().count() < MIN_PASSPHRASE_CHARS {
            bail!(
                "the backup passphrase must be at least {MIN_PASSPHRASE_CHARS} characters (a backup can be attacked offline); a key file is stronger"
            );
        }
        Ok(Secret::Passphrase(p))
    }

    /// A short name of a key file's key (for matching keys to backups); none for passphrases,
    /// whose hash would let anyone test guesses without the KDF.
    pub fn key_id(&self) -> Option<String> {
        match self {
            Secret::Key(k) => Some(hex::encode(key_id(k))),
            Secret::Passphrase(_) => None,
        }
    }
}

/// Makes a new key file (0600; never replaces one) and returns its key id.
pub fn keygen(out: &Path) -> Result<String> {
    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut key[..]).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    use base64::Engine;
    let text = Zeroizing::new(format!(
        "# Sekisho backup key (docs/operations.md). Keep it apart from the backups: whoever has\n\
         # both can read every patient record, key and password hash in them.\n\
         {KEY_FILE_PREFIX}{}\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key[..])
    ));
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key file is never replaced)",
                out.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(hex::encode(key_id(&key)))
}

fn key_id(key: &[u8; 32]) -> [u8; 8] {
    let mut c = digest::Context::new(&digest::SHA256);
    c.update(b"sekisho-backup key id v1\0");
    c.update(key);
    let d = c.finish();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_ref()[..8]);
    id
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} can be read by other accounts (mode {:o}); chmod 600 it",
            path.display(),
            m.permissions().mode() & 0o777
        );
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The keys of one file, from the secret and the header's salt and KDF parameters.
struct FileKeys {
    payload: LessSafeKey,
    header: hmac::Key,
    check: [u8; 16],
}

fn derive(secret: &Secret, salt: &[u8; 32], argon: (u32, u32, u32)) -> Result<FileKeys> {
    let master = Zeroizing::new(match secret {
        Secret::Key(k) => **k,
        Secret::Passphrase(p) => {
            let params = argon2::Params::new(argon.0, argon.1, argon.2, Some(32))
                .map_err(|e| anyhow::anyhow!("bad passphrase KDF parameters: {e}"))?;
            let a =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut out = [0u8; 32];
            a.hash_password_into(p.as_bytes(), salt, &mut out)
                .map_err(|e| anyhow::anyhow!("the passphrase KDF failed: {e}"))?;
            out
        }
    });
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&master[..]);
    let expand = |info: &[u8], out: &mut [u8]| -> Result<()> {
        prk.expand(&[info], Len(out.len()))
            .and_then(|okm| okm.fill(out))
            .map_err(|_| anyhow::anyhow!("key derivation failed"))
    };
    let mut payload = Zeroizing::new([0u8; 32]);
    expand(b"sekisho-backup v1 payload", &mut payload[..])?;
    let mut header = Zeroizing::new([0u8; 32]);
    expand(b"sekisho-backup v1 header", &mut header[..])?;
    let mut check = [0u8; 16];
    expand(b"sekisho-backup v1 key check", &mut check)?;
    Ok(FileKeys {
        payload: LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &payload[..])
                .map_err(|_| anyhow::anyhow!("bad payload key"))?,
        ),
        header: hmac::Key::new(hmac::HMAC_SHA256, &header[..]),
        check,
    })
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Encrypts everything written to it into `out`, after the header. [`EncryptWriter::finish`]
/// writes the last chunk; without it the file is cut off and will not restore.
pub struct EncryptWriter<W: Write> {
    out: W,
    keys: FileKeys,
    header: [u8; HEADER_LEN],
    buf: Zeroizing<Vec<u8>>,
    counter: u64,
}

impl<W: Write> EncryptWriter<W> {
    pub fn new(mut out: W, secret: &Secret) -> Result<EncryptWriter<W>> {
        let mut salt = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let (kind, argon, id) = match secret {
            Secret::Key(k) => (KIND_KEY, (0, 0, 0), key_id(k)),
            Secret::Passphrase(_) => (KIND_PASSPHRASE, (ARGON_M_KIB, ARGON_T, ARGON_P), [0; 8]),
        };
        let keys = derive(secret, &salt, argon)?;
        let mut h = [0u8; HEADER_LEN];
        h[..15].copy_from_slice(MAGIC);
        h[15] = VERSION;
        h[16] = kind;
        h[17] = AEAD_CHACHA;
        h[18] = CHUNK_LOG2;
        h[19] = 0;
        h[20..24].copy_from_slice(&argon.0.to_be_bytes());
        h[24..28].copy_from_slice(&argon.1.to_be_bytes());
        h[28..32].copy_from_slice(&argon.2.to_be_bytes());
        h[32..64].copy_from_slice(&salt);
        h[64..72].copy_from_slice(&id);
        h[72..88].copy_from_slice(&keys.check);
        let mac = hmac::sign(&keys.header, &h[..88]);
        h[88..120].copy_from_slice(mac.as_ref());
        out.write_all(&h)?;
        Ok(EncryptWriter {
            out,
            keys,
            header: h,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK + TAG)),
            counter: 0,
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(self.counter, last);
        self.keys
            .payload
            .seal_in_place_append_tag(n, Aad::from(&self.header[..]), &mut *self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.counter += 1;
        Ok(())
    }

    /// Seals the last chunk (shorter than a full one, possibly empty) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if self.buf.len() == CHUNK {
            self.seal(false)?;
        }
        self.seal(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full chunk is sealed only when more follows, so the last chunk is always short.
        if self.buf.len() == CHUNK && !data.is_empty() {
            self.seal(false)?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Why a backup cannot be opened; each says that nothing was restored.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this is not a Sekisho backup file")]
    NotABackup,
    #[error(
        "this backup is in format {0}, which this version of Sekisho does not read (it reads format {VERSION}); use a newer sekisho"
    )]
    Version(u8),
    #[error("wrong key: {0}")]
    WrongKey(String),
    #[error("the backup is damaged or was altered ({0}); it cannot be used")]
    Damaged(String),
}

/// Decrypts a backup written by [`EncryptWriter`]: yields only authenticated plaintext, and an
/// error (never a short, clean end) if the file was cut off, extended, reordered or altered.
pub struct DecryptReader<R: Read> {
    input: R,
    keys: FileKeys,
    header: [u8; HEADER_LEN],
    chunk_len: usize,
    counter: u64,
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    done: bool,
}

impl<R: Read> DecryptReader<R> {
    /// Reads and checks the header: the file's kind, the key (key id and key check), and the
    /// header's own MAC. Nothing of the payload is read yet.
    pub fn new(mut input: R, secret: &Secret) -> Result<DecryptReader<R>, OpenError> {
        let mut h = [0u8; HEADER_LEN];
        read_full(&mut input, &mut h[..16]).map_err(|_| OpenError::NotABackup)?;
        if &h[..15] != MAGIC {
            return Err(OpenError::NotABackup);
        }
        if h[15] != VERSION {
            return Err(OpenError::Version(h[15]));
        }
        read_full(&mut input, &mut h[16..])
            .map_err(|_| OpenError::Damaged("the header is cut off".into()))?;
        let be = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let argon = (be(20), be(24), be(28));
        if h[17] != AEAD_CHACHA || h[18] != CHUNK_LOG2 || h[19] != 0 {
            return Err(OpenError::Damaged("unknown cipher or chunk size".into()));
        }
        match (h[16], secret) {
            (KIND_KEY, Secret::Key(k)) => {
                if h[64..72] != key_id(k) {
                    return Err(OpenError::WrongKey(format!(
                        "this backup was made with backup key {}, not with key {}",
                        hex::encode(&h[64..72]),
                        hex::encode(key_id(k))
                    )));
                }
            }
            (KIND_KEY, Secret::Passphrase(_)) => {
                return Err(OpenError::WrongKey(format!(
                    "this backup was made with a key file (key {}), not a passphrase",
                    hex::encode(&h[64..72])
                )));
            }
            (KIND_PASSPHRASE, Secret::Key(_)) => {
                return Err(OpenError::WrongKey(
                    "this backup was made with a passphrase, not a key file".into(),
                ));
            }
            (KIND_PASSPHRASE, Secret::Passphrase(_)) => {
                if argon.0 > ARGON_MAX_M_KIB
                    || argon.1 > ARGON_MAX_T
                    || argon.2 > ARGON_MAX_P
                    || argon.1 == 0
                    || argon.2 == 0
                {
                    return Err(OpenError::Damaged(
                        "the passphrase KDF parameters are out of range".into(),
                    ));
                }
            }
            _ => return Err(OpenError::Damaged("unknown key kind".into())),
        }
        let salt: [u8; 32] = h[32..64].try_into().expect("32 bytes");
        let keys = derive(secret, &salt, argon).map_err(|e| OpenError::Damaged(e.to_string()))?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(&keys.check, &h[72..88]).is_err() {
            return Err(match secret {
                // The key id matched: the key is the right one, the header is not.
                Secret::Key(_) => OpenError::Damaged("the header does not authenticate".into()),
                Secret::Passphrase(_) => OpenError::WrongKey(
                    "the passphrase does not open this backup (or its header is damaged)".into(),
                ),
            });
        }
        hmac::verify(&keys.header, &h[..88], &h[88..120])
            .map_err(|_| OpenError::Damaged("the header does not authenticate".into()))?;
        Ok(DecryptReader {
            input,
            keys,
            header: h,
            chunk_len: CHUNK,
            counter: 0,
            plain: Zeroizing::new(Vec::with_capacity(CHUNK + TAG)),
            pos: 0,
            done: false,
        })
    }

    /// The input, once everything has been read.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let damaged = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        self.plain.resize(self.chunk_len + TAG, 0);
        let got = read_up_to(&mut self.input, &mut self.plain)?;
        let last = got < self.chunk_len + TAG;
        if got < TAG {
            return Err(damaged(
                OpenError::Damaged("the file is cut off".into()).to_string(),
            ));
        }
        self.plain.truncate(got);
        let n = nonce(self.counter, last);
        let opened = self
            .keys
            .payload
            .open_in_place(n, Aad::from(&self.header[..]), &mut self.plain)
            .map_err(|_| {
                damaged(
                    OpenError::Damaged(format!(
                        "chunk {} does not authenticate{}",
                        self.counter,
                        if last { ", or the file is cut off" } else { "" }
                    ))
                    .to_string(),
                )
            })?
            .len();
        self.plain.truncate(opened);
        self.pos = 0;
        self.counter += 1;
        if last {
            self.done = true;
            let mut extra = [0u8; 1];
            if read_up_to(&mut self.input, &mut extra)? != 0 {
                return Err(damaged(
                    OpenError::Damaged("data after the last chunk".into()).to_string(),
                ));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    if read_up_to(r, buf)? != buf.len() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::Key(Zeroizing::new([7u8; 32]))
    }

    fn seal(secret: &Secret, data: &[u8]) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), secret).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(secret: &Secret, file: &[u8]) -> Result<Vec<u8>, String> {
        let mut r = DecryptReader::new(file, secret).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let file = seal(&key(), &data);
            // A full last chunk is followed by an empty, marked one.
            assert_eq!(
                file.len(),
                HEADER_LEN + len + TAG * (len / CHUNK + 1),
                "{len}"
            );
            assert_eq!(open(&key(), &file).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn cut_off_extended_or_flipped_files_are_refused() {
        let data = vec![42u8; 2 * CHUNK + 100];
        let file = seal(&key(), &data);
        // Cut at the chunk boundary, inside a chunk, inside the header.
        for cut in [HEADER_LEN + CHUNK + TAG, file.len() - 1, HEADER_LEN, 40] {
            let e = open(&key(), &file[..cut]).unwrap_err();
            assert!(e.contains("damaged or was altered"), "{cut}: {e}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(
            open(&key(), &longer)
                .unwrap_err()
                .contains("damaged or was altered")
        );
        // Any flipped byte, header or payload.
        for i in [
            0,
            16,
            19,
            40,
            100,
            119,
            HEADER_LEN,
            HEADER_LEN + CHUNK + 5,
            file.len() - 1,
        ] {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open(&key(), &bad).is_err(), "byte {i}");
        }
        // With the right key file, a changed salt is damage, not a wrong key.
        let mut bad = file.clone();
        bad[40] ^= 0x01;
        assert!(
            open(&key(), &bad)
                .unwrap_err()
                .contains("damaged or was altered")
        );
    }

    #[test]
    fn a_wrong_key_or_passphrase_is_named_as_such() {
        let file = seal(&key(), b"x");
        let other = Secret::Key(Zeroizing::new([8u8; 32]));
        let e = open(&other, &file).unwrap_err();
        assert!(
            e.starts_with("wrong key: this backup was made with backup key"),
            "{e}"
        );
        let pass = Secret::passphrase("correct horse battery".into()).unwrap();
        let file = seal(&pass, b"secret");
        assert_eq!(open(&pass, &file).unwrap(), b"secret");
        let wrong = Secret::passphrase("correct horse battery!".into()).unwrap();
        assert!(
            open(&wrong, &file)
                .unwrap_err()
                .contains("passphrase does not open")
        );
        assert!(
            open(&key(), &file)
                .unwrap_err()
                .contains("made with a passphrase")
        );
        assert!(Secret::passphrase("short".into()).is_err());
    }

    #[test]
    fn key_files_round_trip_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let id = keygen(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let s = Secret::from_key_file(&p).unwrap();
        assert_eq!(s.key_id().unwrap(), id);
        assert!(keygen(&p).is_err(), "an existing key file is replaced");
        std::fs::write(dir.path().join("raw"), [9u8; 32]).unwrap();
        assert!(Secret::from_key_file(&dir.path().join("raw")).is_ok());
        std::fs::write(dir.path().join("bad"), b"hello").unwrap();
        assert!(Secret::from_key_file(&dir.path().join("bad")).is_err());
    }
}
