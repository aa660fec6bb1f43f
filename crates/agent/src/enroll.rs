//! Enrollment with a one-time access code: the key is made here (ECDSA P-256) and never
//! leaves the terminal; the enrollment listener signs a CSR that carries only the public key
//! (the gateway takes the terminal's identity from the code, not from the request).
//!
//! The terminal's WireGuard key is made here too (X25519): only its public key is sent, and
//! when the gateway has a WireGuard endpoint it answers with a `wg-quick` file whose
//! `PrivateKey` is a placeholder. That file is checked as hostile input (only the keys a
//! terminal's tunnel needs: no `PostUp`, `DNS` or the like) and written, with the private key
//! put in, as `<name>.wg.conf` (0600); the key and the checks are in [`crate::wireguard`].

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hyper::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sekisho_protocol::wire::{self, CsrRequest};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::error::AgentError;
use crate::http;
use crate::text::clean;
use crate::wireguard::{WireGuardKey, new_wireguard_key, valid_cidr, wg_config_with_key};

/// What `sekisho-agent enroll` needs.
pub struct EnrollOptions {
    /// `https://HOST:8444`: the enrollment listener.
    pub enroll_url: String,
    /// The deployment's CA certificate (PEM), the trust for the enrollment listener.
    pub ca: PathBuf,
    /// `XXXX-XXXX-XXXX`.
    pub code: String,
    /// The code's PIN (a one-time secret, not a card PIN).
    pub pin: Zeroizing<String>,
    /// Where the certificate, key and CA certificate are written.
    pub out: PathBuf,
    /// File name stem; the terminal id the gateway returns by default.
    pub name: Option<String>,
}

impl std::fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("enroll_url", &self.enroll_url)
            .field("ca", &self.ca)
            .field("code", &"..")
            .field("pin", &"..")
            .field("out", &self.out)
            .field("name", &self.name)
            .finish()
    }
}

/// What enrollment wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledFiles {
    pub terminal: String,
    pub facility: String,
    pub serial: String,
    pub not_after: i64,
    /// `<name>.crt`: the terminal certificate.
    pub certificate: PathBuf,
    /// `<name>.key`: the private key, mode 0600.
    pub key: PathBuf,
    /// `ca.crt`: the root of the chain the gateway returned.
    pub ca: PathBuf,
    /// `<name>.wg.conf`: the `wg-quick` file (with the private key made here), mode 0600;
    /// `None` when the gateway set up no tunnel.
    pub wireguard: Option<PathBuf>,
    /// The terminal's tunnel address, as the gateway gave it (with `wireguard`).
    pub tunnel_address: Option<String>,
    /// Why no tunnel was set up although the gateway tried (its `tunnel_error`, or its
    /// `wg-quick` file refused here); enrollment itself succeeded.
    pub tunnel_warning: Option<String>,
}

/// A fresh terminal key and the CSR for it.
pub struct TerminalKey {
    /// PKCS#8 PEM; wiped on drop.
    pub key_pem: Zeroizing<String>,
    /// PKCS#10 PEM: an empty subject, no attributes, just the key and its signature.
    pub csr_pem: String,
    /// The key's SubjectPublicKeyInfo (DER), to check the certificate that comes back.
    pub public_key_der: Vec<u8>,
}

/// Makes an ECDSA P-256 key and a CSR that carries only that key.
pub fn new_terminal_key() -> Result<TerminalKey, AgentError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Internal(format!("key generation: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    // rcgen's default subject is a placeholder name: the request carries none.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AgentError::Internal(format!("certificate request: {e}")))?;
    let csr_pem = csr
        .pem()
        .map_err(|e| AgentError::Internal(format!("certificate request: {e}")))?;
    Ok(TerminalKey {
        key_pem: Zeroizing::new(key.serialize_pem()),
        csr_pem,
        public_key_der: rcgen::PublicKeyData::subject_public_key_info(&key),
    })
}

/// The enrollment listener's answer to `POST /enroll/csr`. The agent's own reading rather than a
/// shared body: the tunnel parts are taken loosely, since the code is spent once it comes.
#[derive(Deserialize)]
struct CsrAnswer {
    terminal: String,
    facility: String,
    #[serde(default)]
    serial: String,
    certificate: String,
    chain: String,
    #[serde(default)]
    not_after: i64,
    /// `{"address", "config"}`: taken apart by [`tunnel_file`], so that a malformed one only
    /// costs the tunnel, not the enrollment (the code is spent by now).
    #[serde(default)]
    tunnel: Option<serde_json::Value>,
    #[serde(default)]
    tunnel_error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TunnelAnswer {
    #[serde(default)]
    address: Option<String>,
    config: String,
}

/// The `wg-quick` file (with the private key) and the tunnel address from the gateway's
/// `tunnel`, or why it was refused.
fn tunnel_file(
    tunnel: serde_json::Value,
    key: &WireGuardKey,
) -> Result<(Zeroizing<String>, Option<String>), String> {
    let t: TunnelAnswer = serde_json::from_value(tunnel)
        .map_err(|e| format!("tunnel: {}", clean(&e.to_string(), 120)))?;
    let address = match t.address {
        Some(a) if valid_cidr(&a) => Some(a),
        Some(a) => return Err(format!("unusable tunnel address {:?}", clean(&a, 64))),
        None => None,
    };
    let config = wg_config_with_key(&t.config, &key.private_key)?;
    Ok((config, address))
}

fn io(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file name stem we are willing to write: `[A-Za-z0-9._-]`, not starting with a dot.
fn valid_stem(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Writes `data` to a new file `path` with `mode` (the mode is set at creation: a key is
/// never readable by others, not even for a moment).
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), AgentError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(data).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// A temporary file in `dir` that is removed unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path, what: &str, data: &[u8], mode: u32) -> Result<TempFile, AgentError> {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd)
            .map_err(|_| AgentError::Internal("no randomness".into()))?;
        let name = format!(
            ".sekisho-enroll-{}-{}.{what}.tmp",
            std::process::id(),
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let path = dir.join(name);
        write_new(&path, data, mode)?;
        Ok(TempFile { path, keep: false })
    }

    fn persist(mut self, to: &Path) -> Result<(), AgentError> {
        std::fs::rename(&self.path, to).map_err(|e| io(to, e))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// PEM with LF line endings on every platform, as the gateway's CA writes it.
fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Whether the certificate's key is ours (the key bits; encodings of the parameters may
/// differ in unimportant ways).
fn same_key(cert_key: &x509_parser::x509::SubjectPublicKeyInfo<'_>, ours: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    match x509_parser::x509::SubjectPublicKeyInfo::from_der(ours) {
        Ok((_, k)) => {
            k.algorithm.algorithm == cert_key.algorithm.algorithm
                && k.subject_public_key.data == cert_key.subject_public_key.data
        }
        Err(_) => false,
    }
}

fn bad_answer(detail: impl Into<String>) -> AgentError {
    AgentError::Protocol {
        status: Some(200),
        detail: detail.into(),
    }
}

/// The self-signed certificate of `chain` (PEM), or its last one.
fn chain_root(chain: &str) -> Result<Vec<u8>, AgentError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad_answer(format!("chain: {e}")))?;
    let root = certs.iter().find(|c| {
        x509_parser::parse_x509_certificate(c)
            .is_ok_and(|(_, x)| x.subject().as_raw() == x.issuer().as_raw())
    });
    root.or(certs.last())
        .map(|c| c.to_vec())
        .ok_or_else(|| bad_answer("the chain holds no certificate"))
}

/// Redeems the access code: makes the key, sends the CSR, writes `<name>.crt`, `<name>.key`
/// (0600) and `ca.crt` into `out`. The key is written (to a temporary name) before the code is
/// spent, so a failure to write afterwards cannot lose it.
///
/// The WireGuard public key goes with the CSR; if the gateway answers with a tunnel, its
/// `wg-quick` file is checked ([`wg_config_with_key`]) and written as `<name>.wg.conf` (0600,
/// through a temporary name like the key). No tunnel in the answer: no file. A tunnel the
/// gateway could not set up, or a file refused here, is [`EnrolledFiles::tunnel_warning`].
pub async fn enroll(opts: &EnrollOptions) -> Result<EnrolledFiles, AgentError> {
    if let Some(name) = &opts.name
        && !valid_stem(name)
    {
        return Err(AgentError::Config {
            path: name.clone(),
            reason: "a terminal name is letters, digits, '.', '_' and '-'".into(),
        });
    }
    let endpoint = http::Endpoint::parse(&opts.enroll_url)?;
    let tls = http::tls_config(&opts.ca, None)?;
    let client = http::HttpsClient::new(endpoint, tls);

    std::fs::create_dir_all(&opts.out).map_err(|e| io(&opts.out, e))?;
    let key = new_terminal_key()?;
    let key_file = TempFile::create(&opts.out, "key", key.key_pem.as_bytes(), 0o600)?;
    let wg_key = new_wireguard_key()?;

    let mut body = CsrRequest {
        code: opts.code.trim().to_string(),
        pin: opts.pin.trim().to_string(),
        csr: key.csr_pem.clone(),
        // The gateway uses it if it has a WireGuard endpoint.
        wg_public_key: Some(wg_key.public_key.clone()),
    };
    let answer = client
        .json::<_, CsrAnswer>(Method::POST, wire::ENROLL_CSR_PATH, Some(&body))
        .await;
    body.pin.zeroize();
    let mut answer = answer?;

    let cert_der = CertificateDer::from_pem_slice(answer.certificate.as_bytes())
        .map_err(|e| bad_answer(format!("certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| bad_answer(format!("certificate: {e}")))?;
    if !same_key(cert.public_key(), &key.public_key_der) {
        return Err(bad_answer("the certificate is not for the key sent"));
    }
    let root = chain_root(&answer.chain)?;
    let stem = match &opts.name {
        Some(n) => n.clone(),
        None if valid_stem(&answer.terminal) => answer.terminal.clone(),
        None => {
            return Err(bad_answer(format!(
                "unusable terminal name {:?}",
                clean(&answer.terminal, 64)
            )));
        }
    };
    let cert_path = opts.out.join(format!("{stem}.crt"));
    let key_path = opts.out.join(format!("{stem}.key"));
    let ca_path = opts.out.join("ca.crt");

    // The tunnel: a refused or failed one is a warning, not a failed enrollment.
    let mut warnings = Vec::new();
    if let Some(e) = &answer.tunnel_error {
        let text = e.as_str().map_or_else(|| e.to_string(), str::to_string);
        warnings.push(format!(
            "the gateway could not set up the tunnel: {}",
            clean(&text, 300)
        ));
    }
    let mut tunnel = None;
    match answer.tunnel.take() {
        None | Some(serde_json::Value::Null) => {}
        Some(t) => match tunnel_file(t, &wg_key) {
            Ok((config, address)) => {
                let file = TempFile::create(&opts.out, "wg", config.as_bytes(), 0o600)?;
                tunnel = Some((file, opts.out.join(format!("{stem}.wg.conf")), address));
            }
            Err(reason) => warnings.push(format!(
                "the gateway's WireGuard configuration was refused: {reason}"
            )),
        },
    }
    let mut cert_pem = pem_encode("CERTIFICATE", &cert_der);
    // The issuing CA too, so the terminal presents a full chain.
    for c in CertificateDer::pem_slice_iter(answer.chain.as_bytes()).flatten() {
        if c.as_ref() != root.as_slice() {
            cert_pem.push_str(&pem_encode("CERTIFICATE", &c));
        }
    }
    TempFile::create(&opts.out, "crt", cert_pem.as_bytes(), 0o644)?.persist(&cert_path)?;
    TempFile::create(
        &opts.out,
        "ca",
        pem_encode("CERTIFICATE", &root).as_bytes(),
        0o644,
    )?
    .persist(&ca_path)?;
    let (wireguard, tunnel_address) = match tunnel {
        Some((file, path, address)) => {
            file.persist(&path)?;
            (Some(path), address.map(|a| clean(&a, 64)))
        }
        None => (None, None),
    };
    key_file.persist(&key_path)?;
    Ok(EnrolledFiles {
        terminal: clean(&answer.terminal, 128),
        facility: clean(&answer.facility, 128),
        serial: clean(&answer.serial, 128),
        not_after: answer.not_after,
        certificate: cert_path,
        key: key_path,
        ca: ca_path,
        wireguard,
        tunnel_address,
        tunnel_warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;

    #[test]
    fn pem_is_base64_in_64_columns_with_lf() {
        let der: Vec<u8> = (0..=200).collect();
        let b64 = B64.encode(&der);
        let mut want = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            want.push_str(std::str::from_utf8(line).unwrap());
            want.push('\n');
        }
        want.push_str("-----END CERTIFICATE-----\n");
        assert_eq!(pem_encode("CERTIFICATE", &der), want);
    }

    #[test]
    fn stems() {
        assert!(valid_stem("T-001.a_b"));
        for bad in ["", ".hidden", "a/b", "..", "a b", "名前"] {
            assert!(!valid_stem(bad), "{bad}");
        }
    }
}
