//! Header hygiene. Inbound headers that could carry identity are removed before anything else
//! looks at the request; hop-by-hop headers never cross the gateway. Names are compared after
//! folding case and `_` to `-`, because CGI-style upstreams read `X_Forwarded_For` and
//! `X-Forwarded-For` as the same variable.
//!
//! Also removed, for what an upstream could read differently from the gateway:
//! - every header whose name contains `_`: CGI, WSGI and Rack upstreams turn `-` into `_`, so
//!   `X_Patient_Id` becomes a second `X-Patient-Id` the gateway did not decide on, and
//!   `Transfer_Encoding` or `Content_Length` can collide with the request's framing;
//! - method overrides (`X-HTTP-Method-Override`, `X-Method-Override`, `X-HTTP-Method`): the
//!   gateway decides on the request's method, and the upstream must act on that one. They are
//!   removed rather than refused so that clients sending them by habit (some HTTP libraries
//!   do, for PATCH and DELETE through old proxies) still get the method they sent.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

// The gateway's own headers, each name made once: a `&str` name given to `HeaderMap::insert`
// is copied into a new buffer every time, four to five times a request.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("sekisho-request-id");
pub static ASSERTION: HeaderName = HeaderName::from_static("sekisho-assertion");
pub static TERMINAL: HeaderName = HeaderName::from_static("sekisho-terminal");
pub static FACILITY: HeaderName = HeaderName::from_static("sekisho-facility");
pub static ENTRY_ID: HeaderName = HeaderName::from_static("sekisho-entry-id");

/// Exact names (folded) that carry identity or client-certificate data in some proxy.
const SPOOFABLE: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "client-cert",
    "client-cert-chain",
    "ssl-client-cert",
    "x-client-cert",
    "x-client-dn",
    "x-client-verify",
    "x-arr-clientcert",
    "x-remote-user",
    "remote-user",
    "x-user",
    "x-auth-user",
    "x-authenticated-user",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// Prefixes (folded): the gateway's own namespace and families of forwarded / TLS headers.
const SPOOFABLE_PREFIXES: &[&str] = &[
    "sekisho-",
    "x-sekisho-",
    "x-forwarded-",
    "x-ssl-",
    "ssl-client-",
    "x-tls-",
    "x-client-cert-",
    "x-amzn-mtls-",
];

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

pub fn is_spoofable(name: &str) -> bool {
    if name.contains('_') {
        return true;
    }
    let f = fold(name);
    SPOOFABLE.contains(&f.as_str()) || SPOOFABLE_PREFIXES.iter().any(|p| f.starts_with(p))
}

/// Removes identity-bearing headers, headers with `_` in their name and method overrides;
/// returns how many were removed (counted in metrics).
pub fn strip_spoofable(headers: &mut HeaderMap) -> usize {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_spoofable(n.as_str()))
        .cloned()
        .collect();
    for n in &names {
        headers.remove(n);
    }
    names.len()
}

/// Removes hop-by-hop headers, including those the `Connection` header names. With
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` survive (a permitted WebSocket).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for t in &listed {
        if keep_upgrade && t == "upgrade" {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP {
        if keep_upgrade && (*h == "upgrade" || *h == "connection") {
            continue;
        }
        headers.remove(*h);
    }
    if keep_upgrade {
        headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
    }
}

/// Makes arbitrary text (a certificate field, a reason) safe for a header value or a log line:
/// printable ASCII stays, everything else becomes `\xNN` / `\u{…}`, and it is capped in length.
pub fn escape_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_identity_headers_in_any_spelling() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("sekisho-assertion", "forged"),
            ("SEKISHO-TERMINAL", "x"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("X-Forwarded-Client-Cert", "Hash=1"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-ssl-client-s-dn", "CN=doctor"),
            ("ssl-client-cert", "pem"),
            ("client-cert", ":abc:"),
            ("sekisho_request_id", "1"),
            ("accept", "text/html"),
            ("cookie", "a=b"),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let removed = strip_spoofable(&mut h);
        assert_eq!(removed, 11);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "cookie"]);
    }

    #[test]
    fn strips_underscore_names_and_method_overrides() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x_patient_id", "P2"),
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("accept_", "x"),
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-patient-id", "P1"),
            ("content-type", "text/plain"),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        assert_eq!(strip_spoofable(&mut h), 7);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(left, vec!["content-type", "x-patient-id"]);
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));

        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn escapes_hostile_text() {
        assert_eq!(escape_text("abc", 10), "abc");
        assert_eq!(escape_text("a\r\nb", 20), "a\\x0d\\x0ab");
        assert_eq!(
            escape_text("山田\u{3000}太郎", 40),
            "\\u{5c71}\\u{7530}\\u{3000}\\u{592a}\\u{90ce}"
        );
        assert_eq!(escape_text("\\", 5), "\\\\");
        assert!(escape_text(&"x".repeat(100), 10).ends_with('…'));
        assert!(HeaderValue::from_str(&escape_text("\u{0}\u{7f}é", 64)).is_ok());
    }
}
