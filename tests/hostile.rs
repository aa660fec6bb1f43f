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

const EXTRA: &str = r#"
[[route]]
name = "debug-headers"
methods = ["GET"]
path = "/debug/headers"
level = "terminal"
action = "view"

[[route]]
name = "debug-post"
methods = ["POST"]
path = "/debug/post"
level = "terminal"
action = "write"

[[route]]
name = "by-query"
methods = ["GET"]
path = "/debug/search"
level = "patient"
action = "view"
patient = { from = "query", name = "pid" }

[[route]]
name = "by-header"
methods = ["GET"]
path = "/debug/by-header"
level = "patient"
action = "view"
patient = { from = "header", name = "X-Patient-Id" }
"#;

fn start(db: Db) -> Gateway {
    Gateway::start_with(
        db,
        Options {
            extra_config: EXTRA.into(),
            ..Default::default()
        },
    )
}

/// Headers whose name has `_` (which CGI/WSGI upstreams merge with the `-` spelling, framing
/// headers included) and method overrides never reach the upstream; the request itself does,
/// with the method the gateway decided on.
#[test]
fn underscore_headers_and_method_overrides_are_removed() {
    for db in BOTH {
        let g = start(db);
        let (status, answer) = raw(
            &g,
            "POST /debug/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\
             X-HTTP-Method-Override: DELETE\r\nX-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\n\
             X_Patient_Id: P2\r\nTransfer_Encoding: chunked\r\nContent_Length: 0\r\n\
             Sekisho_Terminal: t9\r\nX-Patient-Id: P1\r\nConnection: close\r\n\r\nok",
        );
        assert_eq!(status, 200, "{db:?}: {answer}");
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["method"], "POST", "{db:?}");
        let names: Vec<&String> = v["headers"].as_object().unwrap().keys().collect();
        for gone in [
            "x-http-method-override",
            "x-method-override",
            "x-http-method",
            "x_patient_id",
            "transfer_encoding",
            "content_length",
            "sekisho_terminal",
        ] {
            assert!(
                !names.iter().any(|n| n.as_str() == gone),
                "{db:?}: {gone} reached the upstream: {names:?}"
            );
        }
        assert!(names.iter().all(|n| !n.contains('_')), "{db:?}: {names:?}");
        assert_eq!(v["headers"]["x-patient-id"][0], "P1");
        assert_eq!(v["headers"]["sekisho-terminal"][0], "t1");
        assert_eq!(g.upstream.hits(), 1);
    }
}

/// The identifier a route takes the patient from, given twice (even with the same value), as a
/// list (`pid[]`), or again after a `;`, is refused before anything else is asked: upstream
/// frameworks differ on which occurrence they read.
#[test]
fn identifiers_given_twice_are_refused() {
    for db in BOTH {
        let g = start(db);
        for (target, reason) in [
            ("/debug/search?pid=P1&pid=P1", "route_patient_id_repeated"),
            ("/debug/search?pid[]=P2", "route_patient_id_repeated"),
            ("/debug/search?pid%5B%5D=P2", "route_patient_id_repeated"),
            ("/debug/search?pid=P1&PID=P1", "route_patient_id_repeated"),
            (
                "/debug/search?x=1;pid=P2&pid=P1",
                "route_patient_id_repeated",
            ),
            ("/debug/search?pid=P1&pid[]=P2", "route_patient_id_conflict"),
        ] {
            let (status, answer) = raw_get(&g, target);
            assert_eq!(status, 400, "{db:?} {target}: {answer}");
            assert_eq!(error_of(&answer), reason, "{db:?} {target}");
            g.wait_audit(|r| {
                r["event"] == "request" && r["reason"] == reason && r["path"] == "/debug/search"
            });
        }
        for headers in [
            "X-Patient-Id: P1\r\nX-Patient-Id: P1\r\n",
            "X-Patient-Id: P1, P1\r\n",
        ] {
            let (status, answer) = raw(
                &g,
                &format!(
                    "GET /debug/by-header HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{headers}Connection: close\r\n\r\n"
                ),
            );
            assert_eq!(status, 400, "{db:?} {headers:?}: {answer}");
            assert_eq!(error_of(&answer), "route_patient_id_repeated", "{db:?}");
        }
        // Given once, the request goes on to the next question (who is signed in).
        let (status, answer) = raw_get(&g, "/debug/search?pid=P1");
        assert_eq!(
            (status, error_of(&answer).as_str()),
            (401, "signin_required"),
            "{db:?}"
        );
        assert_eq!(g.upstream.hits(), 0, "{db:?}: nothing reached the upstream");
    }
}

/// HTTP/1.1 names its host exactly once: without `Host`, with two, or with one that is no
/// authority, the request is refused and audited, for forwarded routes and the gateway's own
/// endpoints alike.
#[test]
fn a_request_names_its_host_exactly_once() {
    for db in BOTH {
        let g = start(db);
        for path in ["/debug/headers", "/.sekisho/auth/status"] {
            for hosts in [
                "",
                "Host: localhost\r\nHost: upstream.internal\r\n",
                "Host: localhost\r\nHost: localhost\r\n",
                "Host: user@localhost\r\n",
                "Host: a b\r\n",
            ] {
                let (status, answer) = raw(
                    &g,
                    &format!(
                        "GET {path} HTTP/1.1\r\n{hosts}Accept: application/json\r\nConnection: close\r\n\r\n"
                    ),
                );
                assert_eq!(status, 400, "{db:?} {path} {hosts:?}: {answer}");
                assert_eq!(
                    error_of(&answer),
                    "request_host_invalid",
                    "{db:?} {path} {hosts:?}"
                );
            }
            g.wait_audit(|r| {
                r["event"] == "request"
                    && r["decision"] == "deny"
                    && r["reason"] == "request_host_invalid"
                    && r["path"] == path
                    && r["terminal"] == "t1"
            });
        }
        assert_eq!(g.upstream.hits(), 0, "{db:?}: nothing reached the upstream");
        // HTTP/1.0 may leave it out.
        let (status, answer) = raw(&g, "GET /debug/headers HTTP/1.0\r\n\r\n");
        assert_eq!(status, 200, "{db:?}: {answer}");
    }
}
