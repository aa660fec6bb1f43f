//! A FHIR server that takes AuditEvents: each batch is one `batch` Bundle POSTed to the
//! server's base URL, every entry a PUT under the event's fixed id, and the batch counts as
//! delivered only when the server answers 200 with a 2xx status for every entry. A batch sent
//! again replaces the same resources. The server's certificate is checked against the
//! configured CA only (`sekisho_audit::client`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use sekisho_audit::client::HttpsClient;
use serde_json::Value;
use zeroize::Zeroizing;

/// A batch-response is one short entry per event.
const MAX_ANSWER: usize = 16 << 20;

pub struct FhirServer {
    url: Uri,
    token: Option<Zeroizing<String>>,
    timeout: Duration,
    client: HttpsClient,
}

impl FhirServer {
    pub fn new(
        url: &str,
        ca_pem: &[u8],
        token: Option<Zeroizing<String>>,
        timeout: Duration,
    ) -> Result<FhirServer> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("FHIR url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") || uri.authority().is_none() {
            bail!("FHIR url {url:?} must be https://HOST[:PORT]/BASE");
        }
        Ok(FhirServer {
            url: uri,
            token,
            timeout,
            client: sekisho_audit::client::https(ca_pem, "the FHIR server's CA file", timeout)?,
        })
    }

    pub async fn send(&self, bundle: &Value) -> Result<()> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")
            .header(header::ACCEPT, "application/fhir+json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.as_str()));
        }
        let req = req.body(Full::new(Bytes::from(serde_json::to_vec(bundle)?)))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow!("{e}"))?
                .to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .map_err(|_| anyhow!("the FHIR server at {} did not answer in time", self.url))?
        .with_context(|| format!("cannot reach the FHIR server at {}", self.url))?;
        let (status, body) = answer;
        if !status.is_success() {
            bail!(
                "the FHIR server answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        check_response(bundle, &body)
    }
}

/// Every entry of the batch was taken: a `batch-response` with as many entries, each 2xx.
fn check_response(sent: &Value, body: &[u8]) -> Result<()> {
    let got: Value =
        serde_json::from_slice(body).context("the FHIR server's answer is not JSON")?;
    if got["resourceType"] != "Bundle" || got["type"] != "batch-response" {
        bail!("the FHIR server's answer is not a batch-response Bundle");
    }
    let sent_n = sent["entry"].as_array().map_or(0, Vec::len);
    let entries = got["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if entries.len() != sent_n {
        bail!(
            "the FHIR server answered for {} of {sent_n} events",
            entries.len()
        );
    }
    for (i, e) in entries.iter().enumerate() {
        let status = e["response"]["status"].as_str().unwrap_or("");
        if !status.starts_with('2') {
            bail!(
                "the FHIR server refused {}: {status:?}",
                sent["entry"][i]["request"]["url"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_counts_only_when_every_entry_was_taken() {
        let sent = json!({"entry": [{"request": {"url": "AuditEvent/a-1"}}, {"request": {"url": "AuditEvent/a-2"}}]});
        let ok = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "201 Created"}}, {"response": {"status": "200 OK"}}]});
        check_response(&sent, ok.to_string().as_bytes()).unwrap();
        let one_refused = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "201 Created"}}, {"response": {"status": "422"}}]});
        let e = check_response(&sent, one_refused.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("AuditEvent/a-2"), "{e}");
        let short = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "201 Created"}}]});
        assert!(check_response(&sent, short.to_string().as_bytes()).is_err());
        assert!(check_response(&sent, b"<html>").is_err());
    }
}
