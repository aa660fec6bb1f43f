//! The webhook channel: the notice's JSON POSTed over HTTPS to the officers' system, signed so
//! that the receiver can tell it came from the gateway and is fresh.
//!
//! `Sekisho-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — the
//! receiver recomputes the HMAC over the raw body with the shared secret, compares in constant
//! time and refuses a `t` too far from its clock (a replayed old request). `Sekisho-Delivery`
//! is the delivery id, the same on every retry of one delivery: a receiver that saw it already
//! answers 2xx and ignores the repeat. Only a 2xx answer counts as delivered.
//!
//! The receiver's certificate is checked against the configured CA file only (closed networks
//! run their own CA); `http://` is refused unless the configuration allows it for tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::hmac;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use zeroize::Zeroizing;

use crate::config::NotifyWebhook;

pub const SIGNATURE_HEADER: &str = "sekisho-signature";
pub const DELIVERY_HEADER: &str = "sekisho-delivery";

pub struct Webhook {
    url: Uri,
    secret: Zeroizing<Vec<u8>>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhook {
    pub fn new(cfg: &NotifyWebhook, data_dir: &Path, timeout: Duration) -> Result<Webhook> {
        let url: Uri = cfg.url.parse().context("notify.webhook.url is not a URL")?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") if cfg.allow_http => false,
            _ => bail!("notify.webhook {}: https:// only", cfg.url),
        };
        let secret = super::read_secret(data_dir, &cfg.secret_file)?;
        if secret.len() < 16 {
            bail!(
                "{}: a webhook secret of at least 16 bytes is needed (e.g. openssl rand -hex 32)",
                cfg.secret_file.display()
            );
        }
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &cfg.ca_file {
            let ca = data_dir.join(ca);
            for c in CertificateDer::pem_file_iter(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?
            {
                roots.add(c?)?;
            }
        } else if https {
            bail!("notify.webhook {} needs ca_file", cfg.url);
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = if https {
            builder.https_only()
        } else {
            builder.https_or_http()
        }
        .enable_http1()
        .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Webhook {
            url,
            secret,
            client,
        })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// POSTs `body` (the notice's JSON) signed at the current time.
    pub async fn send(&self, delivery_id: &str, body: &str) -> Result<()> {
        let t = sekisho_store::now();
        let req = Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("sekisho/", env!("CARGO_PKG_VERSION")),
            )
            .header(SIGNATURE_HEADER, sign(&self.secret, t, body.as_bytes()))
            .header(DELIVERY_HEADER, delivery_id)
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow!("{}: {}", self.url, super::error_chain(&e)))?;
        let status = resp.status();
        // Read (a little of) the answer so the connection can be reused, and to say why.
        let answer = Limited::new(resp.into_body(), 4096)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let answer = String::from_utf8_lossy(&answer);
        let answer: String = answer.chars().take(200).collect();
        bail!("{} answered {status}: {}", self.url, answer.trim())
    }
}

/// The `Sekisho-Signature` value for `body` sent at `t` (Unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature is too old or from the future")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// What a receiver written in Rust does with a request: checks `header` (the
/// `Sekisho-Signature` value) against the raw `body`, accepting a `t` within `tolerance_secs`
/// of `now`. Several `v1=` (a secret being rotated) pass if one matches.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(body.len() + 24);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    if sigs.iter().any(|s| hmac::verify(&key, &signed, s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_value_and_verifies() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let h = sign(b"secret", 1_700_000_000, b"{}");
        assert_eq!(
            h,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_eq!(verify(b"secret", &h, b"{}", 1_700_000_100, 300), Ok(()));
    }

    #[test]
    fn tampering_staleness_and_malformed_headers_are_refused() {
        let body = br#"{"kind":"anomaly"}"#;
        let h = sign(b"secret", 1000, body);
        assert_eq!(
            verify(b"secret", &h, br#"{"kind":"anomalY"}"#, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &h, body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", &h, body, 1301, 300),
            Err(SignatureError::Stale)
        );
        // The time is signed: moving it breaks the signature.
        let moved = h.replace("t=1000", "t=1200");
        assert_eq!(
            verify(b"secret", &moved, body, 1200, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", "v1=00", body, 1000, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"secret", "t=1000", body, 1000, 300),
            Err(SignatureError::Malformed)
        );
        // Rotation: a second v1 made with the new secret passes.
        let new = sign(b"new-secret", 1000, body);
        let both = format!("{h},{}", new.split_once(',').unwrap().1);
        assert_eq!(verify(b"new-secret", &both, body, 1000, 300), Ok(()));
    }
}
