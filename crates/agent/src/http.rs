//! One HTTPS request per call to the gateway (mutual TLS) or to the enrollment listener
//! (server authentication only): rustls with the deployment's CA, hyper's HTTP/1.1 client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use crate::error::AgentError;
use crate::error::gateway_error;

/// Longest wait for the TCP connection and the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read; the gateway's are a few hundred bytes, enrollment's a few KiB.
const MAX_ANSWER: usize = 256 * 1024;

/// Where to connect: the `https://host[:port]` of a URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host` or `host:port` as written (the Host header).
    authority: String,
    /// The host without IPv6 brackets, for TCP and for SNI.
    host: String,
    port: u16,
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> Result<Endpoint, AgentError> {
        let bad = |reason: &str| AgentError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("it must start with https://"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user names in the URL are not used"));
        }
        let path = uri.path();
        if !(path.is_empty() || path == "/") || uri.query().is_some() {
            return Err(bad("give only https://HOST:PORT, without a path"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Endpoint {
            authority: authority.as_str().to_string(),
            host,
            port: authority.port_u16().unwrap_or(443),
        })
    }

    /// The host, without IPv6 brackets: the name the gateway knows itself by.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.authority_host(), self.port)
    }

    fn authority_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> AgentError {
    AgentError::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> AgentError {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io_error(path, format!("cannot read: {io}")),
        rustls::pki_types::pem::Error::NoItemsFound => {
            io_error(path, "no PEM item of the expected kind")
        }
        other => io_error(path, format!("not valid PEM: {other}")),
    }
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(io_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client side of TLS: trust only `ca`; with `client` (certificate chain, key), present
/// them (the terminal's identity).
pub(crate) fn tls_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, AgentError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| io_error(ca, format!("not a usable CA certificate: {e}")))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                io_error(cert, format!("certificate and key do not go together: {e}"))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An HTTPS client for one endpoint.
#[derive(Clone)]
pub(crate) struct HttpsClient {
    endpoint: Endpoint,
    tls: Arc<ClientConfig>,
}

impl HttpsClient {
    pub(crate) fn new(endpoint: Endpoint, tls: Arc<ClientConfig>) -> HttpsClient {
        HttpsClient { endpoint, tls }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// POSTs `body` (or GETs without one) and decodes a 2xx JSON answer; anything else becomes
    /// the matching [`AgentError`].
    pub(crate) async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, AgentError> {
        let body = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| AgentError::Internal(e.to_string()))?)
            }
            None => None,
        };
        let (status, answer) = self.request(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(gateway_error(status, &answer));
        }
        // serde's message quotes the gateway's own text: cleaned before anyone prints it.
        serde_json::from_slice(&answer).map_err(|e| AgentError::Protocol {
            status: Some(status),
            detail: format!("{path}: {}", crate::text::clean(&e.to_string(), 200)),
        })
    }

    /// One request on a fresh connection: (status, body).
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), AgentError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body)).await {
            Ok(r) => r,
            Err(_) => {
                Err(self.unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))
            }
        }
    }

    fn unreachable(&self, reason: String) -> AgentError {
        AgentError::Unreachable {
            target: self.endpoint.target(),
            reason,
        }
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), AgentError> {
        let ep = &self.endpoint;
        let tcp = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.unreachable(e.to_string())),
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(ep.host.clone()).map_err(|_| AgentError::BadUrl {
            url: ep.authority.clone(),
            reason: "not a host name".into(),
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.classify(&e)),
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no TLS handshake within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.classify(&e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &ep.authority)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("sekisho-agent/", env!("CARGO_PKG_VERSION")),
            );
        if has_body {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.classify(&e))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(h) => self.classify(&*h),
                    Err(e) => AgentError::Protocol {
                        status: Some(status),
                        detail: format!("answer too large or cut: {e}"),
                    },
                })?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }

    /// Turns a connection error into what the user should check: their terminal certificate
    /// (the gateway's alert), the gateway's certificate, or the network.
    fn classify(&self, e: &(dyn std::error::Error + 'static)) -> AgentError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return tls_error(tls);
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && let Some(inner) = io.get_ref()
                && let Some(tls) = inner.downcast_ref::<rustls::Error>()
            {
                return tls_error(tls);
            }
            cur = err.source();
        }
        self.unreachable(e.to_string())
    }
}

fn tls_error(e: &rustls::Error) -> AgentError {
    match e {
        rustls::Error::InvalidCertificate(_) => AgentError::GatewayCertificate {
            reason: e.to_string(),
        },
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            // The gateway could not verify what the terminal sent: its certificate's
            // signature or its handshake signature.
            | AlertDescription::DecryptError,
        ) => AgentError::TerminalRejected {
            reason: e.to_string(),
        },
        other => AgentError::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://gw.example.jp:8443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("gw.example.jp", 8443));
        assert_eq!(e.authority, "gw.example.jp:8443");
        let e = Endpoint::parse("https://gw.example.jp/").unwrap();
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("https://[::1]:8443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8443));
        assert_eq!(e.target(), "[::1]:8443");
        for bad in [
            "http://gw:8443",
            "gw:8443",
            "https://gw:8443/portal",
            "https://u:p@gw:8443",
            "",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(AgentError::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}
