//! Fetching HPKI CRLs from their distribution points (plain HTTP: a CRL is signed, so the
//! transport needs no trust). Each good download replaces the cached copy in the data dir;
//! a failed one keeps the last good copy, which the verifier refuses once it expires (fail
//! closed). Only something that parses as a CRL is ever written.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tracing::{info, warn};

use super::trust::HpkiTrust;

const MAX_CRL: usize = 16 * 1024 * 1024;

pub async fn run(trust: Arc<HpkiTrust>, mut shutdown: watch::Receiver<bool>) {
    let (urls, minutes) = trust.crl_urls();
    if urls.is_empty() {
        return;
    }
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        for url in &urls {
            match fetch(&client, url).await {
                Ok(der) => {
                    let path = trust.cache_path(url);
                    let write = || -> Result<()> {
                        let dir = path.parent().expect("cache dir");
                        std::fs::create_dir_all(dir)?;
                        sekisho_store::durable::replace_file(dir, &path, &der, 0o644)
                    };
                    match write() {
                        Ok(()) => info!(%url, bytes = der.len(), "fetched an HPKI CRL"),
                        Err(e) => warn!(%url, error = %e, "cannot cache an HPKI CRL"),
                    }
                }
                Err(e) => {
                    warn!(%url, "cannot fetch an HPKI CRL, keeping the last good copy: {e:#}")
                }
            }
        }
        trust.reload_logged();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(u64::from(minutes) * 60)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn fetch(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>,
    url: &str,
) -> Result<Vec<u8>> {
    let uri: http::Uri = url.parse().context("not a URL")?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// CRL distribution points are fetched");
    }
    let resp = tokio::time::timeout(Duration::from_secs(20), client.get(uri))
        .await
        .context("timed out")??;
    if !resp.status().is_success() {
        bail!("HTTP {}", resp.status());
    }
    let body = tokio::time::timeout(
        Duration::from_secs(60),
        Limited::new(resp.into_body(), MAX_CRL).collect(),
    )
    .await
    .context("timed out")?
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .to_bytes();
    // PEM or DER; what is cached must at least be a CRL (its signature is checked on use).
    use rustls_pki_types::pem::PemObject;
    let der = match rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&body) {
        Ok(c) => c.as_ref().to_vec(),
        Err(_) => body.to_vec(),
    };
    x509_parser::parse_x509_crl(&der).map_err(|e| anyhow::anyhow!("not a CRL: {e}"))?;
    Ok(der)
}
