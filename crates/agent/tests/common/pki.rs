//! A deployment's PKI for the tests: its CA, the gateway's server certificate, a terminal's
//! client certificate, patient-card certificates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sekisho_agent::AgentConfig;

use super::rig::READER;

/// The terminal of [`Pki`]: its certificate carries this URN as its URI name, as Sekisho's
/// terminal certificates do.
pub const TERMINAL_URN: &str = "urn:sekisho:terminal:F001:T001";

pub struct Ca {
    pub params: rcgen::CertificateParams,
    pub key: rcgen::KeyPair,
    pub cert: rcgen::Certificate,
}

pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A patient card's certificate (the CA's profile, in short: CN, one patient URI) and key.
pub struct PatientCardFiles {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    pub fn issuer(&self) -> rcgen::Issuer<'_, &rcgen::KeyPair> {
        rcgen::Issuer::from_params(&self.params, &self.key)
    }

    pub fn issue_patient_card(&self, patient: &str) -> PatientCardFiles {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Sekisho patient card");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:sekisho:patient:{patient}").try_into().unwrap(),
        )];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        PatientCardFiles {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A terminal's client certificate: the URN as common name and as its URI name.
    pub fn issue_terminal(&self, urn: &str) -> Issued {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, urn);
        params.subject_alt_names = vec![rcgen::SanType::URI(urn.try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn issue(&self, name: &str, sans: &[&str], server: bool) -> Issued {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A deployment: its CA, the gateway's server certificate, a terminal's client certificate,
/// all written to a temp dir.
pub struct Pki {
    pub ca: Ca,
    pub server: Issued,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        // A name of its own: two deployments in one test must not look alike.
        let mut id = [0u8; 4];
        aws_lc_rs::rand::fill(&mut id).unwrap();
        let ca = Ca::new(&format!("Sekisho Test CA {id:02x?}"));
        let server = ca.issue("gateway", &["localhost", "127.0.0.1"], true);
        let terminal = ca.issue_terminal(TERMINAL_URN);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("T.crt"), &terminal.cert_pem).unwrap();
        std::fs::write(dir.path().join("T.key"), &terminal.key_pem).unwrap();
        Pki { ca, server, dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self, gateway: SocketAddr) -> AgentConfig {
        AgentConfig {
            gateway: format!("https://{gateway}"),
            cert: self.path("T.crt"),
            key: self.path("T.key"),
            ca: self.path("ca.crt"),
            reader: Some(READER.to_string()),
        }
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn server_tls(pki: &Pki, client_auth: bool) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}
