//! Checkpoints (C2SP tlog-checkpoint) signed as C2SP signed notes with Ed25519.
//!
//! A checkpoint body is three lines, each ending in a newline: the origin, the tree size in
//! decimal, the root hash in standard base64. The signed note appends a blank line and one
//! signature line per signer: `— <key name> <base64(key hash (4 bytes) || signature (64 bytes))>`.
//! The key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), and the
//! verifier key string is `<name>+<hex key hash>+<base64(0x01 || public key)>`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sekisho_ca::KeyPem;
use zeroize::Zeroizing;

use super::merkle::Hash;

/// The signature algorithm byte of Ed25519 in C2SP signed notes.
const ALG_ED25519: u8 = 0x01;
/// U+2014 EM DASH and a space open every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

pub const KEY_FILE: &str = "checkpoint.key";
pub const PUB_FILE: &str = "checkpoint.pub";
/// The verifier keys of earlier checkpoint keys (one per line): checkpoints they signed stay in
/// the log, so `verify` needs them after a rotation.
pub const RETIRED_FILE: &str = "checkpoint.retired";

/// What `verify` checks this log's checkpoints with: the verifier keys in `dir/checkpoint.pub`
/// (this key, and any other replicas' listed beside it) and `dir/checkpoint.retired`.
pub fn verifier_keys(dir: &Path) -> Result<String> {
    let path = dir.join(PUB_FILE);
    let mut keys =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    match fs::read_to_string(dir.join(RETIRED_FILE)) {
        Ok(r) => {
            keys.push('\n');
            keys.push_str(&r);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("cannot read the retired checkpoint keys"),
    }
    Ok(keys)
}

/// The Ed25519 key that signs checkpoints. Replicas that share one log share one key.
#[derive(Clone)]
pub struct CheckpointKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    name: String,
    pair: Ed25519KeyPair,
    key_hash: [u8; 4],
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("verifier_key", &self.verifier_key())
            .finish()
    }
}

impl CheckpointKey {
    /// Loads `dir/checkpoint.key` (PKCS#8, PEM or DER) or creates it (mode 0600, written to a
    /// temporary file and then linked into place, so a reader never sees half a key and two
    /// processes starting at once end up with the same key). Writes `dir/checkpoint.pub`, the
    /// verifier key string, when it is missing or different.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<CheckpointKey> {
        check_key_name(name)?;
        create_private_dir(dir)?;
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?;
            let pem = KeyPem::from_pkcs8_der(doc.as_ref())?;
            sekisho_store::durable::install_new_file(dir, &path, pem.as_str().as_bytes(), 0o600)?;
        }
        let raw = Zeroizing::new(
            fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        let der = if raw.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(&raw)
                .with_context(|| format!("{} is not a PEM private key", path.display()))?;
            let pem = KeyPem::from_pem(text)
                .with_context(|| format!("{} is not a PEM private key", path.display()))?;
            Zeroizing::new(pem.der().to_vec())
        } else {
            Zeroizing::new(raw.to_vec())
        };
        let key = CheckpointKey::from_pkcs8(name, &der)
            .with_context(|| format!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let pub_path = dir.join(PUB_FILE);
        let want = format!("{}\n", key.verifier_key());
        if fs::read_to_string(&pub_path).ok().as_deref() != Some(want.as_str()) {
            sekisho_store::durable::replace_file(dir, &pub_path, want.as_bytes(), 0o644)?;
        }
        Ok(key)
    }

    /// Replaces `dir/checkpoint.key` with a new key, its verifier key listed in
    /// `checkpoint.retired` first (so a crash in between leaves the old key working and every
    /// checkpoint verifiable). Returns (old, new) verifier keys. Writers sign with the new key
    /// from their next start; checkpoints of both verify.
    pub fn rotate(dir: &Path, name: &str) -> Result<(String, String)> {
        let old = CheckpointKey::load_or_create(dir, name)?;
        let retired_path = dir.join(RETIRED_FILE);
        let mut retired = match fs::read_to_string(&retired_path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).context("cannot read the retired checkpoint keys"),
        };
        if !retired.lines().any(|l| l.trim() == old.verifier_key()) {
            retired.push_str(&old.verifier_key());
            retired.push('\n');
            sekisho_store::durable::replace_file(dir, &retired_path, retired.as_bytes(), 0o644)?;
        }
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?;
        let pem = KeyPem::from_pkcs8_der(doc.as_ref())?;
        sekisho_store::durable::replace_file(
            dir,
            &dir.join(KEY_FILE),
            pem.as_str().as_bytes(),
            0o600,
        )?;
        let new = CheckpointKey::load_or_create(dir, name)?;
        Ok((old.verifier_key(), new.verifier_key()))
    }

    /// A key from PKCS#8 (v1 or v2) DER.
    pub fn from_pkcs8(name: &str, der: &[u8]) -> Result<CheckpointKey> {
        check_key_name(name)?;
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| anyhow!("{e}"))?;
        Ok(CheckpointKey::from_pair(name, pair))
    }

    fn from_pair(name: &str, pair: Ed25519KeyPair) -> CheckpointKey {
        let key_hash = key_hash(name, pair.public_key().as_ref());
        CheckpointKey {
            inner: Arc::new(KeyInner {
                name: name.to_string(),
                pair,
                key_hash,
            }),
        }
    }

    /// A fresh key that lives only in memory (tests, tools).
    pub fn generate(name: &str) -> Result<CheckpointKey> {
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?;
        CheckpointKey::from_pkcs8(name, doc.as_ref())
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `<name>+<hex key hash>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.inner.pair.public_key().as_ref());
        format!(
            "{}+{}+{}",
            self.inner.name,
            hex::encode(self.inner.key_hash),
            B64.encode(k)
        )
    }

    /// Signs `text` (which must end in a newline) as a signed note with one signature.
    pub fn sign_note(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n'));
        let sig = self.inner.pair.sign(text.as_bytes());
        let mut blob = self.inner.key_hash.to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.inner.name,
            B64.encode(blob)
        )
    }

    /// The signed checkpoint for a tree of `size` leaves with root `root`.
    pub fn sign_checkpoint(&self, origin: &str, size: u64, root: &Hash) -> String {
        self.sign_note(&checkpoint_body(origin, size, root))
    }
}

/// The C2SP tlog-checkpoint body: origin, size, base64 root hash, each line ending in `\n`.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// A parsed checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Parses a checkpoint body (extension lines after the root are allowed and ignored).
pub fn parse_checkpoint(text: &str) -> Result<Checkpoint> {
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| anyhow!("checkpoint does not end in a newline"))?;
    let mut lines = body.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| anyhow!("checkpoint has no origin"))?;
    let size_line = lines
        .next()
        .ok_or_else(|| anyhow!("checkpoint has no tree size"))?;
    if size_line.is_empty()
        || !size_line.bytes().all(|b| b.is_ascii_digit())
        || (size_line.len() > 1 && size_line.starts_with('0'))
    {
        bail!("checkpoint tree size {size_line:?} is not a decimal number");
    }
    let size: u64 = size_line
        .parse()
        .context("checkpoint tree size out of range")?;
    let root_line = lines
        .next()
        .ok_or_else(|| anyhow!("checkpoint has no root hash"))?;
    let root_bytes = B64
        .decode(root_line)
        .context("checkpoint root hash is not base64")?;
    let root: Hash = root_bytes
        .try_into()
        .map_err(|_| anyhow!("checkpoint root hash is not 32 bytes"))?;
    if lines.any(|l| l.is_empty()) {
        bail!("checkpoint has an empty extension line");
    }
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root,
    })
}

/// A signed checkpoint as it is copied to witnesses: the note and what its body says. Parsed
/// without checking the signature (whoever reads it from elsewhere checks that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

impl SignedCheckpoint {
    pub fn parse(note: &str) -> Result<SignedCheckpoint> {
        let (text, _) = split_note(note)?;
        Ok(SignedCheckpoint {
            checkpoint: parse_checkpoint(text)?,
            note: note.to_string(),
        })
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }
}

/// A verifier key parsed from its string form.
#[derive(Clone, Debug)]
pub struct Verifier {
    name: String,
    key_hash: [u8; 4],
    public: Vec<u8>,
}

impl Verifier {
    pub fn parse(s: &str) -> Result<Verifier> {
        let s = s.trim();
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            bail!("a verifier key is <name>+<key hash>+<key>");
        };
        check_key_name(name)?;
        let hash = hex::decode(hash_hex).context("verifier key hash is not hex")?;
        let key_hash: [u8; 4] = hash
            .try_into()
            .map_err(|_| anyhow!("verifier key hash is not 4 bytes"))?;
        let key = B64.decode(key_b64).context("verifier key is not base64")?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            bail!("verifier key is not an Ed25519 key");
        }
        let public = key[1..].to_vec();
        if self::key_hash(name, &public) != key_hash {
            bail!("verifier key hash does not match the key");
        }
        Ok(Verifier {
            name: name.to_string(),
            key_hash,
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a signed note and returns its text (the signed part) when one of its signature
    /// lines is this key's and verifies. Signatures by other keys are ignored.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str> {
        let (text, sigs) = split_note(note)?;
        let mut found = false;
        for line in sigs.split_terminator('\n') {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| anyhow!("malformed signature line"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| anyhow!("malformed signature line"))?;
            if name != self.name {
                continue;
            }
            let blob = B64.decode(b64).context("signature is not base64")?;
            if blob.len() < 5 || blob[..4] != self.key_hash {
                continue;
            }
            found = true;
            if UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &blob[4..])
                .is_ok()
            {
                return Ok(text);
            }
        }
        if found {
            bail!("bad signature by {}", self.name)
        } else {
            bail!("no signature by {}", self.name)
        }
    }
}

/// Splits a signed note into its text (ending in a newline) and its signature lines.
fn split_note(note: &str) -> Result<(&str, &str)> {
    let at = note
        .rfind("\n\n")
        .ok_or_else(|| anyhow!("note has no signature block"))?;
    let (text, sigs) = (&note[..at + 1], &note[at + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        bail!("note has no signature lines");
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        bail!("note text has control characters");
    }
    Ok((text, sigs))
}

fn key_hash(name: &str, public: &[u8]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[0x0A, ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    [d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]
}

fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("checkpoint key name {name:?} must be non-empty, without spaces or '+'");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn signed_checkpoint_has_the_c2sp_form_and_verifies() {
        let key = CheckpointKey::generate("sekisho.example/audit").unwrap();
        let root = leaf_hash(b"x");
        let note = key.sign_checkpoint("sekisho.example/audit", 42, &root);
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines.len(), 6, "{note:?}");
        assert_eq!(lines[0], "sekisho.example/audit");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], B64.encode(root));
        assert_eq!(lines[3], "");
        assert!(
            lines[4].starts_with("\u{2014} sekisho.example/audit "),
            "{}",
            lines[4]
        );
        assert_eq!(lines[5], "", "the note ends in a newline");
        let sig = B64.decode(lines[4].rsplit(' ').next().unwrap()).unwrap();
        assert_eq!(sig.len(), 4 + 64);

        // Verifier key string: name+hex(key hash)+base64(0x01 || public key).
        let vkey = key.verifier_key();
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "sekisho.example/audit");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(hex::decode(parts[1]).unwrap(), sig[..4]);
        let raw = B64.decode(parts[2]).unwrap();
        assert_eq!(raw.len(), 33);
        assert_eq!(raw[0], 0x01);
        let mut h = digest::Context::new(&digest::SHA256);
        h.update(b"sekisho.example/audit\n\x01");
        h.update(&raw[1..]);
        assert_eq!(
            h.finish().as_ref()[..4],
            sig[..4],
            "key hash = SHA-256(name || 0x0A || 0x01 || key)[:4]"
        );

        let v = Verifier::parse(&vkey).unwrap();
        let text = v.open(&note).unwrap();
        assert_eq!(
            text,
            format!("sekisho.example/audit\n42\n{}\n", B64.encode(root))
        );
        let cp = parse_checkpoint(text).unwrap();
        assert_eq!(
            cp,
            Checkpoint {
                origin: "sekisho.example/audit".into(),
                size: 42,
                root
            }
        );

        // Another key (same name) does not verify it.
        let other = CheckpointKey::generate("sekisho.example/audit").unwrap();
        assert!(
            Verifier::parse(&other.verifier_key())
                .unwrap()
                .open(&note)
                .is_err()
        );
        // Nor does a changed text or a changed signature.
        assert!(v.open(&note.replacen("\n42\n", "\n43\n", 1)).is_err());
        let mut bad = sig.clone();
        bad[10] ^= 1;
        let forged = note.replace(&B64.encode(&sig), &B64.encode(&bad));
        assert!(v.open(&forged).is_err());
        // Extra signatures by unknown keys are ignored.
        let cosigned = format!("{note}\u{2014} witness.example AAAAAAAA\n");
        assert!(v.open(&cosigned).is_ok());
    }

    /// The signed-note example of the C2SP specification (golang.org/x/mod/sumdb/note):
    /// a verifier key and a note signed by it.
    #[test]
    fn verifies_the_c2sp_example_note() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let v = Verifier::parse(vkey).unwrap();
        assert_eq!(v.open(note).unwrap(), text);
        assert!(
            v.open(&note.replace("cryptography", "cryptographY"))
                .is_err()
        );

        // Ed25519 is deterministic: signing with the example's private key gives the same note.
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let seed = B64.decode(skey.splitn(5, '+').nth(4).unwrap()).unwrap();
        assert_eq!(seed[0], ALG_ED25519);
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[1..]).unwrap();
        let key = CheckpointKey::from_pair("PeterNeumann", pair);
        assert_eq!(key.verifier_key(), vkey);
        assert_eq!(key.sign_note(text), note);
    }

    #[test]
    fn verifier_key_strings_are_checked() {
        let key = CheckpointKey::generate("log").unwrap();
        let vkey = key.verifier_key();
        assert!(Verifier::parse(&vkey).is_ok());
        assert!(
            Verifier::parse(&vkey.replacen("log+", "gol+", 1)).is_err(),
            "hash no longer matches the name"
        );
        assert!(Verifier::parse("log+00000000").is_err());
        assert!(CheckpointKey::generate("with space").is_err());
        assert!(CheckpointKey::generate("a+b").is_err());
    }

    #[test]
    fn checkpoint_bodies_are_parsed_strictly() {
        let root = B64.encode([7u8; 32]);
        assert!(parse_checkpoint(&format!("o\n5\n{root}\n")).is_ok());
        assert!(parse_checkpoint(&format!("o\n5\n{root}\next\n")).is_ok());
        assert!(parse_checkpoint(&format!("o\n5\n{root}")).is_err());
        assert!(parse_checkpoint(&format!("o\n05\n{root}\n")).is_err());
        assert!(parse_checkpoint(&format!("o\n-5\n{root}\n")).is_err());
        assert!(parse_checkpoint("o\n5\nAAAA\n").is_err());
        assert!(parse_checkpoint(&format!("\n5\n{root}\n")).is_err());
    }

    #[test]
    fn key_file_is_created_once_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let kdir = dir.path().join("keys");
        let a = CheckpointKey::load_or_create(&kdir, "sekisho.test/audit").unwrap();
        let meta = fs::metadata(kdir.join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let pem = fs::read_to_string(kdir.join(KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            fs::read_to_string(kdir.join(PUB_FILE)).unwrap(),
            format!("{}\n", a.verifier_key())
        );
        let b = CheckpointKey::load_or_create(&kdir, "sekisho.test/audit").unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        // No temporary files left behind.
        let names: Vec<String> = fs::read_dir(&kdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // The public file is rewritten if someone damaged it.
        fs::write(kdir.join(PUB_FILE), "junk").unwrap();
        CheckpointKey::load_or_create(&kdir, "sekisho.test/audit").unwrap();
        assert_eq!(
            fs::read_to_string(kdir.join(PUB_FILE)).unwrap(),
            format!("{}\n", a.verifier_key())
        );
    }

    #[test]
    fn a_rotated_key_keeps_the_old_verifier_key_for_the_checkpoints_it_signed() {
        let kdir = tempfile::tempdir().unwrap();
        let a = CheckpointKey::load_or_create(kdir.path(), "sekisho.test").unwrap();
        let note_a = a.sign_note("sekisho.test/audit\n1\nAAAA\n");
        let (old, new) = CheckpointKey::rotate(kdir.path(), "sekisho.test").unwrap();
        assert_eq!(old, a.verifier_key());
        assert_ne!(old, new);
        let b = CheckpointKey::load_or_create(kdir.path(), "sekisho.test").unwrap();
        assert_eq!(b.verifier_key(), new);
        let keys = verifier_keys(kdir.path()).unwrap();
        let verifiers: Vec<Verifier> = keys
            .split_whitespace()
            .map(|k| Verifier::parse(k).unwrap())
            .collect();
        assert_eq!(verifiers.len(), 2);
        assert!(verifiers.iter().any(|v| v.open(&note_a).is_ok()));
        assert!(b.verifier_key() != old && Verifier::parse(&new).unwrap().open(&note_a).is_err());
        // Rotating again keeps both earlier keys.
        CheckpointKey::rotate(kdir.path(), "sekisho.test").unwrap();
        assert_eq!(
            verifier_keys(kdir.path())
                .unwrap()
                .split_whitespace()
                .count(),
            3
        );
    }
}
