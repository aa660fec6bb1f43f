//! The real clients: curl, openssl s_client, and a Rust rustls/hyper client with a terminal's
//! certificate.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;

/// curl; returns (http status or 0, body, curl exit code).
pub fn curl(url: &str, ca: &str, extra: &[&str]) -> (u16, String, i32) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            ca,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        out.status.code().unwrap_or(-1),
    )
}

pub fn openssl(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A TLS connection to the gateway as terminal `name` (files in `g.out`), for raw HTTP.
pub async fn tls_connect(
    g: &Gateway,
    name: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_with(g, Some(g.cert(name)), None).await.unwrap()
}

pub async fn tls_connect_with(
    g: &Gateway,
    cert: Option<(String, String)>,
    versions: Option<&'static [&'static rustls::SupportedProtocolVersion]>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(g.ca()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider);
    let b = match versions {
        Some(v) => b.with_protocol_versions(v).unwrap(),
        None => b.with_safe_default_protocol_versions().unwrap(),
    }
    .with_root_certificates(roots);
    let cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(&k).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", g.port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 request over a fresh mTLS connection as terminal `name`; (status, JSON body).
pub async fn call(
    g: &Gateway,
    name: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let tls = tls_connect(g, name).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// One HTTP/1.1 request over a fresh mTLS connection as terminal `name`, with `Host: localhost`
/// and the given headers and body; (status, body as text).
pub async fn call_with(
    g: &Gateway,
    name: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use http_body_util::BodyExt;
    let tls = tls_connect(g, name).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether `jwt` (the Sekisho-Assertion) verifies with `jwk` (an ES256 key of the gateway's
/// JWKS, `/jwks.json` on the management listener).
pub fn verify_es256(jwt: &str, jwk: &serde_json::Value) -> bool {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let mut point = vec![4u8];
    point.extend(b64.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(b64.decode(jwk["y"].as_str().unwrap()).unwrap());
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &b64.decode(sig).unwrap())
        .is_ok()
}

/// Keep-alive requests as t1 on one connection until the gateway goes away (a crash test's
/// load): GETs, or with `posts` a GET then a POST (which waits for its record before it is
/// forwarded); the request ids of the answers that arrived whole, all of which must be 200.
pub async fn load_until_gone(g: &Gateway, c: usize, posts: bool) -> Vec<String> {
    use http_body_util::BodyExt;
    let mut ids = Vec::new();
    let Ok(tls) = tls_connect_with(g, Some(g.cert("t1")), None).await else {
        return ids;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await
    else {
        return ids;
    };
    tokio::spawn(conn);
    for n in 0.. {
        let req = if !posts || n % 2 == 0 {
            http::Request::get(format!("/?c={c}&n={n}"))
        } else {
            http::Request::post("/upload")
        }
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "{c}/{n}"
        ))))
        .unwrap();
        let Ok(resp) = sender.send_request(req).await else {
            break;
        };
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("sekisho-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if resp.into_body().collect().await.is_err() {
            break;
        }
        assert_eq!(status, 200, "an answer other than 200 under plain load");
        ids.push(id.expect("every answer names its request"));
    }
    ids
}
