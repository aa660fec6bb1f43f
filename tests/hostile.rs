//! Hostile requests from a registered terminal: spellings of a path, headers and origins that a
//! browser, curl or an upstream framework would read differently from the gateway. Each test
//! checks the refusal's reason in the audit log and what (if anything) reached the upstream.
//! Malformed requests go over raw TLS sockets, since curl would normalise them.

mod common;

use std::time::Duration;

use common::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `request` as it is over a fresh mTLS connection as terminal t1 and reads the answer
/// until the gateway closes the connection; returns (status, whole answer).
fn raw(g: &Gateway, request: &str) -> (u16, String) {
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tls_connect(g, "t1").await;
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    })
}

/// A GET of `path` as it is, with one `Host` and `Connection: close`.
fn raw_get(g: &Gateway, path: &str) -> (u16, String) {
    raw(
        g,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ),
    )
}

/// The reason of the refusal the answer names (its JSON `error`).
fn error_of(answer: &str) -> String {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn refused_for(g: &Gateway, reason: &str, path: &str) {
    g.wait_audit(|r| {
        r["event"] == "request"
            && r["decision"] == "deny"
            && r["reason"] == reason
            && r["path"] == path
    });
}

/// `..;` (a path parameter on a dot segment) is `..` to servlet containers: refused, whatever
/// its spelling, and nothing reaches the upstream; so are double encodings and overlong UTF-8.
#[test]
fn path_parameters_and_double_encodings_are_refused() {
    for db in BOTH {
        let g = Gateway::start(db);
        for (path, reason) in [
            ("/static/..;/api/patients/P2/records", "path_semicolon"),
            ("/static/%2e%2e;/api/patients/P2/records", "path_semicolon"),
            ("/static/..;x=1/api/patients/P2/records", "path_semicolon"),
            ("/static/..%3B/api/patients/P2/records", "path_semicolon"),
            ("/static/style.css;jsessionid=1", "path_semicolon"),
            (
                "/static/%252e%252e/api/patients/P2/records",
                "path_double_encoded",
            ),
            (
                "/static/%25%32%65%25%32%65/api/patients/P2",
                "path_double_encoded",
            ),
            (
                "/static/%c0%ae%c0%ae/api/patients/P2/records",
                "path_invalid_utf8",
            ),
            (
                "/static/%e0%80%ae%e0%80%ae/api/patients/P2",
                "path_invalid_utf8",
            ),
            (
                "/static/%ef%bc%8e%ef%bc%8e/api/patients/P2",
                "path_encoded_lookalike",
            ),
        ] {
            let (status, answer) = raw_get(&g, path);
            assert_eq!(status, 400, "{db:?} {path}: {answer}");
            assert_eq!(error_of(&answer), reason, "{db:?} {path}");
            refused_for(&g, reason, path);
        }
        assert_eq!(g.upstream.hits(), 0, "{db:?}: nothing reached the upstream");
        // The plain spelling still goes through.
        let (status, answer) = raw_get(&g, "/static/style.css");
        assert_eq!(status, 200, "{db:?}: {answer}");
        assert_eq!(g.upstream.hits(), 1);
    }
}
