//! The HTTPS witness client. The protocol, all of it (`docs/audit.md`, "Witnesses"):
//!
//! - `POST <url>` with the signed note as the body (`text/plain; charset=utf-8`) and, when the
//!   witness wants one, `Authorization: Bearer <token>`: `200` — it holds this checkpoint now
//!   (or held it already); `409 Conflict` — refused, with `Sekisho-Witness-Refusal: older`,
//!   `fork` or `other-log` and the note it holds as the body. Anything else is a failure and
//!   is tried again.
//! - `GET <url>` (same token): `200` with the newest note it holds, `404` when it holds none.
//!
//! The witness's certificate is checked against the configured CA file only, never the
//! system's roots: regional networks run their own CAs.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use zeroize::Zeroizing;

use super::receive::REFUSAL_HEADER;
use super::{Outcome, Refusal};
use crate::checkpoint::SignedCheckpoint;
use crate::client::HttpsClient;

/// A witness's answer is a note; anything much longer is not one.
const MAX_ANSWER: usize = 64 * 1024;

pub struct HttpsWitness {
    name: String,
    url: Uri,
    token: Option<Zeroizing<String>>,
    client: HttpsClient,
}

impl HttpsWitness {
    /// `ca_pem`: the certificates the witness's server certificate must chain to.
    pub fn new(
        name: &str,
        url: &str,
        ca_pem: &[u8],
        token: Option<Zeroizing<String>>,
        connect_timeout: Duration,
    ) -> Result<HttpsWitness> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("witness url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") || uri.authority().is_none() {
            bail!("witness url {url:?} must be https://HOST[:PORT]/PATH");
        }
        let client = crate::client::https(ca_pem, "the witness CA file", connect_timeout)?;
        if let Some(t) = &token
            && (t.is_empty() || t.chars().any(|c| c.is_control() || c == ' '))
        {
            bail!("the witness token must be one word without spaces");
        }
        Ok(HttpsWitness {
            name: name.to_string(),
            url: uri,
            token,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    async fn call(
        &self,
        method: Method,
        body: Option<&str>,
    ) -> Result<(StatusCode, http::HeaderMap, String)> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.url.clone())
            .header(
                header::USER_AGENT,
                concat!("sekisho/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.as_str()));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::copy_from_slice(b.as_bytes())))?,
            None => req.body(Full::new(Bytes::new()))?,
        };
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| anyhow!("{}: {}", self.url, error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow!("{}: reading the answer: {e}", self.url))?
            .to_bytes();
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    /// The newest checkpoint the witness holds (`GET`).
    pub async fn held(&self) -> Result<Option<SignedCheckpoint>> {
        let (status, _, body) = self.call(Method::GET, None).await?;
        match status {
            StatusCode::OK => SignedCheckpoint::parse(&body).map(Some).with_context(|| {
                format!(
                    "{} answered with something that is not a checkpoint",
                    self.url
                )
            }),
            StatusCode::NOT_FOUND => Ok(None),
            s => bail!("{} answered {s}: {}", self.url, short(&body)),
        }
    }

    /// Offers a checkpoint (`POST`).
    pub async fn submit(&self, cp: &SignedCheckpoint) -> Result<Outcome> {
        let (status, headers, body) = self.call(Method::POST, Some(&cp.note)).await?;
        match status {
            s if s.is_success() => Ok(Outcome::Accepted),
            StatusCode::CONFLICT => {
                let held = SignedCheckpoint::parse(&body).ok();
                let code = headers
                    .get(REFUSAL_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let refusal = match (code, &held) {
                    ("other-log", Some(h)) => Refusal::OtherLog {
                        held: h.checkpoint.origin.clone(),
                        offered: cp.checkpoint.origin.clone(),
                    },
                    ("fork", _) => Refusal::Fork { size: cp.size() },
                    (_, Some(h)) if h.size() == cp.size() => Refusal::Fork { size: cp.size() },
                    (_, Some(h)) => Refusal::Older {
                        held: h.size(),
                        offered: cp.size(),
                    },
                    _ => bail!(
                        "{} refused the checkpoint without saying what it holds: {}",
                        self.url,
                        short(&body)
                    ),
                };
                Ok(Outcome::Refused { refusal, held })
            }
            s => bail!("{} answered {s}: {}", self.url, short(&body)),
        }
    }
}

fn short(body: &str) -> String {
    body.trim().chars().take(200).collect()
}

/// An error and its causes on one line (hyper's errors say little at the top).
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
