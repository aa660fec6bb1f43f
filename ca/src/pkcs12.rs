//! PKCS#12 bundles (certificate + key + chain) for terminals whose operating system installs
//! certificates that way, protected by the enrollment PIN.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use crate::CaError;
use crate::keyfile::KeyPem;

/// Key-derivation iterations for both the encryption and the MAC. OpenSSL 3 and Windows use
/// about 2 000; more only slows a brute-force of a short PIN a little, and costs every import.
const ITERATIONS: u32 = 10_000;

/// How the bundle is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pkcs12Encryption {
    /// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), MAC HMAC-SHA256: what OpenSSL 3 writes by
    /// default; Windows 10 1709+, current macOS and iOS import it.
    #[default]
    Aes256,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC, MAC HMAC-SHA1: for old devices (older iOS versions,
    /// Android before 8, Windows 7) that cannot read the modern form. Weak: use only when needed.
    Legacy3Des,
}

/// A PKCS#12 bundle of `cert_der` with `key`, followed by `chain_der` (issuing CA, then root),
/// protected by `password`, AES-256 form. The key is checked to belong to the certificate.
pub fn pkcs12(
    cert_der: &[u8],
    key: &KeyPem,
    chain_der: &[Vec<u8>],
    password: &str,
    friendly_name: &str,
) -> Result<Vec<u8>, CaError> {
    pkcs12_with(
        cert_der,
        key,
        chain_der,
        password,
        friendly_name,
        Pkcs12Encryption::Aes256,
    )
}

/// As `pkcs12`, choosing the protection.
pub fn pkcs12_with(
    cert_der: &[u8],
    key: &KeyPem,
    chain_der: &[Vec<u8>],
    password: &str,
    friendly_name: &str,
    encryption: Pkcs12Encryption,
) -> Result<Vec<u8>, CaError> {
    let fail = |e: p12_keystore::error::Error| CaError::Pkcs12(e.to_string());
    if password.is_empty() {
        return Err(CaError::Pkcs12("the password must not be empty".into()));
    }
    // The friendly name is a BMPString: no characters outside the Basic Multilingual Plane.
    if friendly_name.is_empty()
        || friendly_name.chars().count() > 64
        || friendly_name
            .chars()
            .any(|c| c.is_control() || u32::from(c) > 0xffff)
    {
        return Err(CaError::Pkcs12(format!(
            "the friendly name {friendly_name:?} cannot be used: give 1 to 64 ordinary characters"
        )));
    }
    check_key_matches(cert_der, key)?;

    let mut certs = Vec::with_capacity(1 + chain_der.len());
    certs.push(Certificate::from_der(cert_der).map_err(fail)?);
    for c in chain_der {
        certs.push(Certificate::from_der(c).map_err(fail)?);
    }
    let private_key = PrivateKey::from_der(key.der()).map_err(fail)?;
    // The local key id ties the key bag to the leaf certificate's bag; a hash of the
    // certificate, as OpenSSL and Windows do (they use SHA-1; any unique value works).
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der);
    let local_key_id = digest.as_ref()[..20].to_vec();
    let chain = PrivateKeyChain::new(local_key_id, private_key, certs);

    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(chain));
    let (enc, mac) = match encryption {
        Pkcs12Encryption::Aes256 => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        Pkcs12Encryption::Legacy3Des => (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    store
        .writer(password)
        .encryption_algorithm(enc)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(fail)
}

/// A bundle whose key does not open its certificate installs fine and then fails at the first
/// TLS handshake, far from the cause: refuse it here.
fn check_key_matches(cert_der: &[u8], key: &KeyPem) -> Result<(), CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    let pair = rcgen::KeyPair::try_from(key.der())
        .map_err(|e| CaError::BadKey(format!("unusable private key: {e}")))?;
    if pair.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(CaError::Pkcs12(
            "the private key does not belong to the certificate".into(),
        ));
    }
    Ok(())
}
