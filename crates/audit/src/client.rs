//! HTTPS clients for the log's copies off the machine (witnesses, export destinations): each
//! trusts only the CA file configured for it, never the system's roots — regional networks
//! run their own CAs.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The certificates of a CA file (PEM); `what` names the file in errors ("the witness CA file").
pub fn roots(ca_pem: &[u8], what: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.with_context(|| format!("{what} is not PEM certificates"))?)?;
    }
    if roots.is_empty() {
        bail!("{what} holds no certificate");
    }
    Ok(roots)
}

/// An HTTP/1.1-over-TLS client that trusts `ca_pem` only.
pub fn https(ca_pem: &[u8], what: &str, connect_timeout: Duration) -> Result<HttpsClient> {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots(ca_pem, what)?)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}
