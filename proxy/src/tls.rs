//! TLS for the terminal listener: TLS 1.3, and 1.2 with ECDHE + AEAD suites only (rustls offers
//! nothing else); client certificates verified by rustls-webpki against Sekisho's issuing CA,
//! with the clientAuth EKU and the current CRL (an expired CRL fails closed). A CRL cannot be
//! swapped inside a built verifier, so a CRL change builds a new `ServerConfig` (and with it a
//! new session cache, so no session resumes across the change).

use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::DataDir;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the listener's TLS configuration is built from; the CRL part changes at run time.
pub struct TlsMaterial {
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: PrivateKeyDer<'static>,
    /// The trust anchors for terminal certificates: the issuing CA, then any retired ones
    /// (`sekisho ca rotate-issuing`) whose certificates may still be in use.
    pub issuing_cas: Vec<CertificateDer<'static>>,
}

impl TlsMaterial {
    pub fn load(dir: &DataDir) -> Result<TlsMaterial> {
        let server_chain = CertificateDer::pem_file_iter(dir.server_cert())
            .with_context(|| format!("cannot read {}", dir.server_cert().display()))?
            .collect::<Result<Vec<_>, _>>()?;
        let server_key = PrivateKeyDer::from_pem_file(dir.server_key())
            .with_context(|| format!("cannot read {}", dir.server_key().display()))?;
        let issuing = dir.ca_dir().join("issuing.crt");
        let mut issuing_cas = vec![
            CertificateDer::from_pem_file(&issuing)
                .with_context(|| format!("cannot read {}", issuing.display()))?,
        ];
        issuing_cas.extend(retired_issuing_cas(&dir.ca_dir())?);
        Ok(TlsMaterial {
            server_chain,
            server_key,
            issuing_cas,
        })
    }

    /// The terminal listener's config. No certificate at all is let through the handshake so
    /// that a person at an unenrolled browser gets a page saying what to do; every request on
    /// such a connection is refused. A certificate that is presented must verify.
    pub fn terminal_config(&self, crls: &[Vec<u8>]) -> Result<Arc<ServerConfig>> {
        let mut roots = RootCertStore::empty();
        for ca in &self.issuing_cas {
            roots
                .add(ca.clone())
                .context("issuing CA certificate is not usable as a trust anchor")?;
        }
        // Every anchor needs its CRL: a terminal certificate whose issuer has none is refused
        // (unknown revocation status), so a retired CA without its CRL fails closed.
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(
                crls.iter()
                    .map(|c| CertificateRevocationListDer::from(c.clone())),
            )
            .enforce_revocation_expiration()
            .allow_unauthenticated()
            .build()
            .context("cannot build the client certificate verifier")?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())
            .context("server certificate and key do not match")?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The enrollment listener: server authentication only, HTTP/1.1.
    pub fn enroll_config(&self) -> Result<Arc<ServerConfig>> {
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The retired issuing CAs (`<ca dir>/retired/issuing-*.crt`) that have not expired.
fn retired_issuing_cas(ca_dir: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let dir = ca_dir.join(sekisho_ca::rotate::RETIRED_DIR);
    let mut names: Vec<std::path::PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    names.sort();
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for p in names {
        let der = CertificateDer::from_pem_file(&p)
            .with_context(|| format!("cannot read {}", p.display()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if cert.validity().not_after.to_datetime() > now {
            out.push(der.clone());
        }
    }
    Ok(out)
}

/// The terminal listener's current config, swapped whole when the CRL changes.
pub struct TerminalTls {
    material: TlsMaterial,
    current: ArcSwap<ServerConfig>,
    crl_number: std::sync::atomic::AtomicI64,
}

impl TerminalTls {
    /// `crls`: the issuing CA's CRL, then the retired CAs'.
    pub fn new(material: TlsMaterial, crls: &[Vec<u8>], crl_number: i64) -> Result<TerminalTls> {
        let cfg = material.terminal_config(crls)?;
        Ok(TerminalTls {
            material,
            current: ArcSwap::new(cfg),
            crl_number: crl_number.into(),
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    pub fn material(&self) -> &TlsMaterial {
        &self.material
    }

    /// Installs a newer CRL; an invalid one is refused and the last good one stays.
    pub fn update_crl(&self, crls: &[Vec<u8>], crl_number: i64) -> Result<bool> {
        use std::sync::atomic::Ordering;
        if crl_number <= self.crl_number.load(Ordering::Acquire) {
            return Ok(false);
        }
        let cfg = self.material.terminal_config(crls)?;
        self.current.store(cfg);
        self.crl_number.store(crl_number, Ordering::Release);
        Ok(true)
    }
}

/// A stable reason code for a failed handshake (metrics label, audit reason).
pub fn handshake_failure_reason(err: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(e) = err.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
        return match err.kind() {
            std::io::ErrorKind::TimedOut => "handshake_timeout",
            std::io::ErrorKind::UnexpectedEof => "client_closed",
            _ => "tls_io_error",
        };
    };
    match e {
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_yet_valid",
            C::Revoked => "certificate_revoked",
            C::UnknownIssuer | C::BadSignature => "certificate_unknown_ca",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "certificate_wrong_purpose",
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => "crl_expired",
            C::UnknownRevocationStatus => "revocation_status_unknown",
            C::BadEncoding => "certificate_malformed",
            _ => "certificate_invalid",
        },
        E::InvalidCertRevocationList(_) => "crl_invalid",
        E::PeerIncompatible(_) => "client_incompatible",
        E::PeerMisbehaved(_) => "client_misbehaved",
        E::InvalidMessage(_) => "not_tls",
        E::AlertReceived(_) => "client_alert",
        _ => "tls_error",
    }
}
