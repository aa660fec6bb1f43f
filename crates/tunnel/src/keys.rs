//! WireGuard keys: X25519 key pairs, written as standard base64 like `wg genkey` / `wg pubkey`,
//! and the gateway's private key file in the data dir.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

pub use boringtun::x25519::{PublicKey, StaticSecret};

/// A new key pair: the private key (clamped, as `wg genkey` writes it) and its public key.
pub fn generate() -> (StaticSecret, [u8; 32]) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut bytes[..]).expect("the system random generator failed");
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
    let secret = StaticSecret::from(*bytes);
    let public = public_key(&secret);
    (secret, public)
}

/// The public key of a private key.
pub fn public_key(secret: &StaticSecret) -> [u8; 32] {
    *PublicKey::from(secret).as_bytes()
}

/// Standard base64 of a 32-byte key (44 characters, `=`-padded).
pub fn encode(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Parse a base64 key as `wg` writes it (surrounding whitespace ignored).
pub fn decode(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .context("a WireGuard key is standard base64")?,
    );
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("a WireGuard key is 32 bytes, got {}", bytes.len()))?;
    Ok(key)
}

/// The private key in base64, for a terminal bundle (`wg-quick` file).
pub fn encode_secret(secret: &StaticSecret) -> Zeroizing<String> {
    let bytes = Zeroizing::new(secret.to_bytes());
    Zeroizing::new(STANDARD.encode(*bytes))
}

pub fn decode_secret(text: &str) -> anyhow::Result<StaticSecret> {
    let bytes = Zeroizing::new(decode(text)?);
    Ok(StaticSecret::from(*bytes))
}

/// Load the gateway's private key from `path` (base64, one line), or create it there with
/// mode 0600 if the file does not exist. A file that its group or others may access is
/// refused, as is anything that is not a regular file.
pub fn load_or_create_private_key(path: &Path) -> anyhow::Result<StaticSecret> {
    match fs::metadata(path) {
        Ok(meta) => {
            if !meta.is_file() {
                bail!("{}: not a regular file", path.display());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{}: the WireGuard private key is accessible by others (mode {mode:04o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
            let text = Zeroizing::new(
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            );
            decode_secret(&text).with_context(|| format!("{}", path.display()))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Written whole or not at all; if another process got there first, its key stays
            // and is the one loaded.
            let (secret, _) = generate();
            let text = Zeroizing::new(format!("{}\n", *encode_secret(&secret)));
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            sekisho_store::durable::install_new_file(dir, path, text.as_bytes(), 0o600)?;
            load_or_create_private_key(path)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_wg_compatibility() {
        let (secret, public) = generate();
        let text = encode_secret(&secret);
        assert_eq!(text.len(), 44);
        let again = decode_secret(&text).unwrap();
        assert_eq!(public_key(&again), public);
        assert_eq!(decode(&encode(&public)).unwrap(), public);
        assert!(decode("AAAA").is_err());
        assert!(decode("not base64!").is_err());
        // A pair produced by `wg genkey | tee /dev/stderr | wg pubkey`.
        let secret = decode_secret("wPyusmXHZ3LpYvfH7K4xHkkhxd+Sy88rPqI8HOVgCls=").unwrap();
        assert_eq!(
            encode(&public_key(&secret)),
            "+nukRRpyW2nzIoZJAFFGZYncxegq0FbUClNZ5QHRkwI="
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let a = load_or_create_private_key(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_private_key(&path).unwrap();
        assert_eq!(public_key(&a), public_key(&b));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let Err(err) = load_or_create_private_key(&path) else {
            panic!("a world-readable key file was accepted");
        };
        let err = err.to_string();
        assert!(err.contains("accessible by others"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_or_create_private_key(&path).is_err());
    }
}
