//! The upstream: the network's patient-record application, reached over a pooled hyper client (HTTP/1.1 or HTTP/2, http or https
//! with its own trust store and optional client certificate). Bodies stream in both directions.

use std::time::Duration;

use anyhow::{Context, Result};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use sekisho_protocol::Reason;

use crate::body::Body;
use crate::config::Upstream as UpstreamConfig;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer in time")]
    Timeout,
}

impl ForwardError {
    pub fn refusal(&self) -> Reason {
        match self {
            ForwardError::Unreachable(_) => Reason::UpstreamUnreachable,
            ForwardError::Timeout => Reason::UpstreamTimeout,
        }
    }
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix of the upstream URL, without a trailing slash ("" for the root).
    prefix: String,
    timeout: Duration,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig, data_dir: &std::path::Path) -> Result<Upstream> {
        let uri: Uri = cfg.url.parse().context("upstream.url is not a URL")?;
        let scheme = uri
            .scheme()
            .cloned()
            .context("upstream.url has no scheme")?;
        let authority = uri
            .authority()
            .cloned()
            .context("upstream.url has no host")?;
        let prefix = uri.path().trim_end_matches('/').to_string();

        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &cfg.ca_file {
            let ca = data_dir.join(ca);
            for c in CertificateDer::pem_file_iter(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?
            {
                roots.add(c?)?;
            }
        } else if scheme == Scheme::HTTPS {
            anyhow::bail!(
                "an https upstream needs upstream.ca_file (the system trust store is not used)"
            );
        }
        let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let tls = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => {
                let chain = CertificateDer::pem_file_iter(data_dir.join(c))?
                    .collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_file(data_dir.join(k))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("upstream client certificate and key do not match")?
            }
            _ => builder.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstream {
            client,
            scheme,
            authority,
            prefix,
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Sends `req` (headers already cleaned and set) to `path_and_query` on the upstream.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, ForwardError> {
        let pq = format!("{}{}", self.prefix, path_and_query);
        *req.uri_mut() = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| ForwardError::Unreachable(format!("bad upstream URI: {e}")))?;
        // The upstream sees its own host name; HTTP/2 requests from terminals carry none.
        req.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(self.authority.as_str())
                .map_err(|e| ForwardError::Unreachable(e.to_string()))?,
        );
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(ForwardError::Timeout),
            Ok(Err(e)) => Err(ForwardError::Unreachable(error_chain(&e))),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
