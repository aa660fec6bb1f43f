//! Private keys as PKCS#8 PEM: in memory (`KeyPem`), and on disk, optionally encrypted with a
//! passphrase as PBES2 (PBKDF2-HMAC-SHA256 + AES-256-CBC), the form `openssl pkey` reads.
//!
//! PBKDF2 and AES run in aws-lc-rs rather than the pure-Rust `pkcs5` code: the same result,
//! but fast in debug builds too, where 600 000 SHA-256 iterations would otherwise take seconds.

use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use aws_lc_rs::cipher::{
    AES_128, AES_128_KEY_LEN, AES_192, AES_192_KEY_LEN, AES_256, AES_256_KEY_LEN, Algorithm,
    DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::pbkdf2;
use pkcs8::der::asn1::OctetStringRef;
use pkcs8::der::{Decode, Encode};
use pkcs8::pkcs5::EncryptionScheme;
use pkcs8::pkcs5::pbes2::{self, Pbkdf2Prf};
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::CaError;
use crate::encoding::pem_encode;

/// OWASP's current figure for PBKDF2-HMAC-SHA256.
const PBKDF2_ITERATIONS: u32 = 600_000;
/// Refuse key files that ask for absurd work (a damaged or hostile file should not hang load).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

const LABEL_PLAIN: &str = "PRIVATE KEY";
const LABEL_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";

/// A private key as unencrypted PKCS#8, in PEM and DER. Both are wiped from memory on drop.
#[derive(Clone)]
pub struct KeyPem {
    pem: Zeroizing<String>,
    der: Zeroizing<Vec<u8>>,
}

impl KeyPem {
    /// From PKCS#8 DER (checked to be a well-formed PrivateKeyInfo).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CaError> {
        PrivateKeyInfoRef::from_der(der)
            .map_err(|e| CaError::BadKey(format!("not a PKCS#8 private key: {e}")))?;
        Ok(KeyPem {
            pem: Zeroizing::new(pem_encode(LABEL_PLAIN, der)),
            der: Zeroizing::new(der.to_vec()),
        })
    }

    /// From a "PRIVATE KEY" PEM block (unencrypted PKCS#8).
    pub fn from_pem(pem_text: &str) -> Result<Self, CaError> {
        let block = pem::parse(pem_text)
            .map_err(|e| CaError::BadKey(format!("not a PEM private key: {e}")))?;
        if block.tag() != LABEL_PLAIN {
            return Err(CaError::BadKey(format!(
                "expected a \"{LABEL_PLAIN}\" PEM block, found \"{}\"",
                block.tag()
            )));
        }
        let der = Zeroizing::new(block.into_contents());
        Self::from_pkcs8_der(&der)
    }

    /// The PEM text ("-----BEGIN PRIVATE KEY-----").
    pub fn as_str(&self) -> &str {
        &self.pem
    }

    /// The PKCS#8 DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<private key>)")
    }
}

/// The text to store for a key: plain PKCS#8 PEM, or encrypted PKCS#8 PEM with a passphrase.
pub(crate) fn encode_key_file(
    pkcs8_der: &[u8],
    passphrase: Option<&str>,
) -> Result<Zeroizing<String>, CaError> {
    let Some(passphrase) = passphrase else {
        return Ok(Zeroizing::new(pem_encode(LABEL_PLAIN, pkcs8_der)));
    };
    if passphrase.is_empty() {
        return Err(CaError::EmptyPassphrase);
    }
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| CaError::Random)?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| CaError::Random)?;

    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, iv)
        .map_err(|e| CaError::BadKey(format!("encryption parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ITERATIONS).expect("non-zero constant"),
        &salt,
        passphrase.as_bytes(),
        key.as_mut(),
    );
    let cipher = UnboundCipherKey::new(&AES_256, key.as_ref())
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| CaError::BadKey("AES key setup failed".into()))?;
    let mut data = pkcs8_der.to_vec();
    cipher
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CaError::BadKey("encryption failed".into()))?;

    let info = EncryptedPrivateKeyInfoRef {
        encryption_algorithm: EncryptionScheme::from(params),
        encrypted_data: OctetStringRef::new(&data)
            .map_err(|e| CaError::BadKey(format!("encoding: {e}")))?,
    };
    let der = info
        .to_der()
        .map_err(|e| CaError::BadKey(format!("encoding: {e}")))?;
    Ok(Zeroizing::new(pem_encode(LABEL_ENCRYPTED, &der)))
}

/// Reads a key file's text back to PKCS#8 DER. `path` is only for error messages.
/// An unencrypted key is accepted whether or not a passphrase was given.
pub(crate) fn decode_key_file(
    text: &str,
    passphrase: Option<&str>,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let bad = |why: String| CaError::BadKey(format!("{}: {why}", path.display()));
    let block = pem::parse(text).map_err(|e| bad(format!("not a PEM key file: {e}")))?;
    match block.tag() {
        LABEL_PLAIN => Ok(Zeroizing::new(block.into_contents())),
        LABEL_ENCRYPTED => {
            let passphrase =
                passphrase.ok_or_else(|| CaError::PassphraseRequired(path.to_path_buf()))?;
            let info = EncryptedPrivateKeyInfoRef::from_der(block.contents())
                .map_err(|e| bad(format!("damaged encrypted key: {e}")))?;
            let plain = decrypt(&info, passphrase, path)?;
            // A wrong passphrase almost always fails the padding check; the rare survivor is
            // caught here because the result is not a PKCS#8 structure.
            PrivateKeyInfoRef::from_der(&plain)
                .map_err(|_| CaError::WrongPassphrase(path.to_path_buf()))?;
            Ok(plain)
        }
        other => Err(bad(format!(
            "expected \"{LABEL_PLAIN}\" or \"{LABEL_ENCRYPTED}\", found \"{other}\""
        ))),
    }
}

fn decrypt(
    info: &EncryptedPrivateKeyInfoRef<'_>,
    passphrase: &str,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let wrong = || CaError::WrongPassphrase(path.to_path_buf());
    let unsupported = |what: &str| {
        CaError::BadKey(format!(
            "{}: unsupported key encryption ({what}); re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`",
            path.display()
        ))
    };
    let params = info
        .encryption_algorithm
        .pbes2()
        .ok_or_else(|| unsupported("not PBES2"))?;

    let (cipher_alg, key_len, iv): (&'static Algorithm, usize, [u8; 16]) = match &params.encryption
    {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (&AES_128, AES_128_KEY_LEN, *iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (&AES_192, AES_192_KEY_LEN, *iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (&AES_256, AES_256_KEY_LEN, *iv),
        _ => {
            // Anything else PBES2 allows (e.g. scrypt with AES-GCM): let the pkcs5 crate do it.
            return info
                .encryption_algorithm
                .decrypt(passphrase, info.encrypted_data.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| wrong());
        }
    };
    let Some(kdf) = params.kdf.pbkdf2() else {
        // scrypt (e.g. from `openssl pkcs8 -scrypt`): the pkcs5 crate handles it.
        return info
            .encryption_algorithm
            .decrypt(passphrase, info.encrypted_data.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| wrong());
    };
    let prf = match kdf.prf {
        Pbkdf2Prf::HmacWithSha1 => pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => return Err(unsupported("PBKDF2 hash")),
    };
    if kdf.iteration_count == 0 || kdf.iteration_count > MAX_PBKDF2_ITERATIONS {
        return Err(unsupported("PBKDF2 iteration count"));
    }
    if kdf.key_length.is_some_and(|l| usize::from(l) != key_len) {
        return Err(unsupported("PBKDF2 key length"));
    }
    let mut key = Zeroizing::new(vec![0u8; key_len]);
    pbkdf2::derive(
        prf,
        NonZeroU32::new(kdf.iteration_count).expect("checked above"),
        kdf.salt.as_ref(),
        passphrase.as_bytes(),
        &mut key,
    );
    let cipher = UnboundCipherKey::new(cipher_alg, &key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| unsupported("AES key setup"))?;
    let mut data = Zeroizing::new(info.encrypted_data.as_bytes().to_vec());
    let plain_len = cipher
        .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| wrong())?
        .len();
    data.truncate(plain_len);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_pkcs8() -> Vec<u8> {
        rcgen::KeyPair::generate().unwrap().serialize_der()
    }

    #[test]
    fn plain_and_encrypted_round_trip() {
        let der = sample_pkcs8();
        let p = Path::new("k.key");
        let plain = encode_key_file(&der, None).unwrap();
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(*decode_key_file(&plain, None, p).unwrap(), der);

        let enc = encode_key_file(&der, Some("correct horse")).unwrap();
        assert!(enc.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert_eq!(
            *decode_key_file(&enc, Some("correct horse"), p).unwrap(),
            der
        );
        assert!(matches!(
            decode_key_file(&enc, Some("wrong horse"), p),
            Err(CaError::WrongPassphrase(_))
        ));
        assert!(matches!(
            decode_key_file(&enc, None, p),
            Err(CaError::PassphraseRequired(_))
        ));
        assert!(matches!(
            encode_key_file(&der, Some("")),
            Err(CaError::EmptyPassphrase)
        ));
    }

    #[test]
    fn key_pem_checks_its_input() {
        let der = sample_pkcs8();
        let k = KeyPem::from_pkcs8_der(&der).unwrap();
        assert_eq!(k.der(), &der[..]);
        assert_eq!(KeyPem::from_pem(k.as_str()).unwrap().der(), &der[..]);
        assert!(KeyPem::from_pkcs8_der(b"\x30\x00").is_err());
        assert!(format!("{k:?}").contains("<private key>"));
        let cert_pem = pem_encode("CERTIFICATE", &der);
        assert!(KeyPem::from_pem(&cert_pem).is_err());
    }
}
