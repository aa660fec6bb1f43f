//! Protocol abuse (issue 14, item 4): request smuggling and desync, header tricks against the
//! gateway's own headers, path and host confusion, and HTTP/2 floods, each sent over real mTLS
//! as a registered terminal. The upstream is a raw socket that records the exact bytes it gets,
//! so every case asserts what reached it: nothing, or well-formed requests whose framing the
//! gateway chose, with the gateway's own headers intact and nothing a terminal spoofed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// The recording upstream

/// One request as the upstream read it.
#[derive(Clone, Debug)]
struct Received {
    /// The request line.
    line: String,
    /// Header names lowercased, values as sent, in order.
    headers: Vec<(String, String)>,
    /// The body, chunked framing removed.
    body: String,
    /// The bytes of head and body as they came (lossy UTF-8: ASCII controls stay).
    raw: String,
}

impl Received {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn one(&self, name: &str) -> &str {
        let v = self.all(name);
        assert_eq!(v.len(), 1, "{name} given {} times: {self:#?}", v.len());
        v[0]
    }
}

#[derive(Default)]
struct Seen {
    requests: Vec<Received>,
    /// Connections that ended in the middle of a request (head or body unfinished).
    incomplete: usize,
    /// Requests whose head has arrived and whose body has not ended yet, now and at most.
    open: usize,
    max_open: usize,
}

struct RawUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve_raw(stream, &s));
            }
        });
        RawUpstream { addr, seen }
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut self.seen.lock().unwrap().requests)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads from `s` into `buf` until `buf` holds at least `n` bytes; false at EOF.
fn fill(s: &mut std::net::TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 16384];
    while buf.len() < n {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Reads until `buf` contains `needle`; its position, or None at EOF.
fn fill_until(s: &mut std::net::TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Option<usize> {
    loop {
        if let Some(p) = find(buf, needle) {
            return Some(p);
        }
        if !fill(s, buf, buf.len() + 1) {
            return None;
        }
    }
}

/// A strict HTTP/1.1 reader: CRLF only, Content-Length or chunked; any doubt ends the
/// connection as incomplete (which the cases then see).
fn serve_raw(mut s: std::net::TcpStream, seen: &Mutex<Seen>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = fill_until(&mut s, &mut buf, b"\r\n\r\n") else {
            if !buf.is_empty() {
                seen.lock().unwrap().incomplete += 1;
            }
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        {
            let mut g = seen.lock().unwrap();
            g.open += 1;
            g.max_open = g.max_open.max(g.open);
        }
        let mut pos = end + 4;
        let mut body = Vec::new();
        let te = headers.iter().any(|(n, _)| n == "transfer-encoding");
        let cl = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let complete = if te {
            loop {
                // The size line, however long it takes to arrive.
                let e = loop {
                    if let Some(p) = find(&buf[pos..], b"\r\n") {
                        break Some(pos + p);
                    }
                    let more = buf.len() + 1;
                    if !fill(&mut s, &mut buf, more) {
                        break None;
                    }
                };
                let Some(e) = e else { break false };
                let size = std::str::from_utf8(&buf[pos..e])
                    .ok()
                    .and_then(|h| usize::from_str_radix(h, 16).ok());
                let Some(size) = size else { break false };
                if !fill(&mut s, &mut buf, e + 2 + size + 2) {
                    break false;
                }
                body.extend_from_slice(&buf[e + 2..e + 2 + size]);
                if &buf[e + 2 + size..e + 4 + size] != b"\r\n" {
                    break false;
                }
                pos = e + 4 + size;
                if size == 0 {
                    break true;
                }
            }
        } else {
            let n = cl.unwrap_or(0);
            let ok = fill(&mut s, &mut buf, pos + n);
            if ok {
                body.extend_from_slice(&buf[pos..pos + n]);
                pos += n;
            }
            ok
        };
        let mut g = seen.lock().unwrap();
        g.open -= 1;
        if !complete {
            g.incomplete += 1;
            return;
        }
        g.requests.push(Received {
            line,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            raw: String::from_utf8_lossy(&buf[..pos]).into_owned(),
        });
        drop(g);
        buf.drain(..pos);
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nupstream";
        if s.write_all(answer).is_err() {
            return;
        }
    }
}

/// What every request that reaches the upstream must be, whatever the terminal sent.
fn assert_well_formed(r: &Received, upstream: SocketAddr, case: &str) {
    let raw = r.raw.as_bytes();
    let head_end = find(raw, b"\r\n\r\n").unwrap();
    let head = &raw[..head_end + 4];
    for (i, b) in head.iter().enumerate() {
        assert!(*b != 0, "{case}: NUL in the head");
        if *b == b'\n' {
            assert_eq!(head[i - 1], b'\r', "{case}: bare LF in the head");
        }
        if *b == b'\r' {
            assert_eq!(head[i + 1], b'\n', "{case}: bare CR in the head");
        }
    }
    let text = &r.raw;
    assert!(
        !text.to_ascii_lowercase().contains("forged"),
        "{case}: a spoofed value reached the upstream:\n{text}"
    );
    // The framing is the gateway's: one way, stated once.
    let te = r.all("transfer-encoding");
    let cl = r.all("content-length");
    assert!(
        (te.is_empty() && cl.len() <= 1) || (te == ["chunked"] && cl.is_empty()),
        "{case}: framing {te:?} / {cl:?}"
    );
    assert_eq!(r.one("host"), upstream.to_string(), "{case}");
    assert_eq!(r.one("sekisho-terminal"), "t1", "{case}");
    assert_eq!(r.one("sekisho-facility"), "f1", "{case}");
    assert_eq!(r.one("sekisho-request-id").len(), 32, "{case}: {r:#?}");
    assert_eq!(r.one("sekisho-assertion").split('.').count(), 3, "{case}");
    for (n, _) in &r.headers {
        assert!(
            !(n == "forwarded"
                || n.starts_with("x-forwarded-")
                || n == "x-real-ip"
                || n.contains('_')),
            "{case}: {n} reached the upstream"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP/1.1 corpus

enum Expect {
    /// The HTTP layer refused it (`400`/`431`, or closed without an answer): nothing reached
    /// the upstream.
    Rejected,
    /// The gateway refused it with this reason: nothing reached the upstream.
    Refused(&'static str),
    /// These requests reached the upstream, in order: (request line, body).
    Forwarded(&'static [(&'static str, &'static str)]),
    /// Either nothing complete reached the upstream, or this one request (line, body).
    AtMost(&'static str, &'static str),
    /// Permitted, its head forwarded, then its body broke: the upstream got no complete
    /// request, the terminal 400 `bad_request`, and the outcome record says so.
    BodyBroken,
}

use Expect::*;

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
"#;

/// Every header a terminal could use to pose as the gateway or as a proxy in front of it.
const SPOOF: &str = "Sekisho-Assertion: forged\r\nSekisho-Request-Id: forged\r\n\
Sekisho-Terminal: forged\r\nSekisho-Facility: forged\r\nSekisho-Notices: forged\r\n\
X-Sekisho-User: forged\r\nX-Forwarded-For: forged\r\nX-Forwarded-Host: forged\r\n\
X-Forwarded-Proto: forged\r\nForwarded: for=forged\r\nX-Real-IP: forged\r\n\
X-Client-Cert: forged\r\nSSL-Client-Cert: forged\r\nX-SSL-Client-S-DN: forged\r\n\
X-Remote-User: forged\r\nX-Original-URL: /forged\r\n";

/// (class, name, raw request, expectation). `Host: localhost` and a JSON `Accept` are written
/// out where a case needs them; most end with `Connection: close`.
fn http1_corpus() -> Vec<(&'static str, &'static str, String, Expect)> {
    const H: &str = "Host: localhost\r\nAccept: application/json\r\n";
    const GET: &str = "GET /debug/headers HTTP/1.1\r\n";
    const POST: &str = "POST /debug/post HTTP/1.1\r\n";
    let smuggled = "GET /debug/headers HTTP/1.1\r\nHost: localhost\r\nX-Smuggled: yes\r\n\r\n";
    let mut long_ok = String::new();
    for i in 0..90 {
        long_ok.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(40)));
    }
    let mut long_bad = String::new();
    for i in 0..200 {
        long_bad.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(40)));
    }
    vec![
        // ---- conflicting and duplicated framing
        ("framing", "CL then TE", format!("{POST}{H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("framing", "TE then CL", format!("{POST}{H}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("framing", "CL twice, equal", format!("{POST}{H}Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("framing", "CL twice, different", format!("{POST}{H}Content-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!"), Rejected),
        ("framing", "CL list, different", format!("{POST}{H}Content-Length: 5, 6\r\nConnection: close\r\n\r\nhello!"), Rejected),
        ("framing", "CL with sign", format!("{POST}{H}Content-Length: +5\r\nConnection: close\r\n\r\nhello"), Rejected),
        ("framing", "CL in hex", format!("{POST}{H}Content-Length: 0x5\r\nConnection: close\r\n\r\nhello"), Rejected),
        ("framing", "TE chunked, identity", format!("{POST}{H}Transfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Rejected),
        ("framing", "TE xchunked", format!("{POST}{H}Transfer-Encoding: xchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Rejected),
        ("framing", "TE twice, chunked last not", format!("{POST}{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Rejected),
        ("framing", "TE with leading space", format!("{POST}{H}Transfer-Encoding:  chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("framing", "TE with tab", format!("{POST}{H}Transfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("framing", "TE on HTTP/1.0", format!("POST /debug/post HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Rejected),
        ("framing", "TE in underscore spelling", format!("{POST}{H}Content-Length: 5\r\nTransfer_Encoding: chunked\r\nConnection: close\r\n\r\nhello"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        // ---- obsolete line folding
        ("obs-fold", "folded header", format!("{GET}{H}X-A: a\r\n b\r\nConnection: close\r\n\r\n"), Rejected),
        ("obs-fold", "folded Content-Length", format!("{POST}{H}Content-Length: 1\r\n 0\r\nConnection: close\r\n\r\nhellohello"), Rejected),
        ("obs-fold", "folded Transfer-Encoding", format!("{POST}{H}Transfer-Encoding: identity\r\n\tchunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Rejected),
        // ---- chunk syntax
        ("chunks", "size overflows 64 bits", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"), BodyBroken),
        ("chunks", "size with 0x", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), BodyBroken),
        ("chunks", "negative size", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), BodyBroken),
        ("chunks", "size with space", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n"), BodyBroken),
        ("chunks", "extension with control byte", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;x=\x01y\r\nhello\r\n0\r\n\r\n"), AtMost("POST /debug/post HTTP/1.1", "hello")),
        ("chunks", "extension, quoted CRLF", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;x=\"a\r\nb\"\r\nhello\r\n0\r\n\r\n"), AtMost("POST /debug/post HTTP/1.1", "hello")),
        ("chunks", "data longer than its size", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhelloX0\r\n\r\n"), BodyBroken),
        ("chunks", "bare LF after size", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\nhello\r\n0\r\n\r\n"), AtMost("POST /debug/post HTTP/1.1", "hello")),
        ("chunks", "no last chunk", format!("{POST}{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n"), AtMost("", "")),
        // ---- bare LF and CR
        ("line endings", "bare LF throughout", "GET /debug/headers HTTP/1.1\nHost: localhost\nConnection: close\n\n".to_string(), AtMost("GET /debug/headers HTTP/1.1", "")),
        ("line endings", "bare LF in one header", format!("{GET}Host: localhost\nX-A: 1\r\nConnection: close\r\n\r\n"), AtMost("GET /debug/headers HTTP/1.1", "")),
        ("line endings", "bare CR in the request line", "GET /debug/headers\rX HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_string(), Rejected),
        // ---- pipelining
        ("pipelining", "request in a body", format!("{POST}{H}Content-Length: {}\r\nConnection: close\r\n\r\n{smuggled}", smuggled.len()), Forwarded(&[("POST /debug/post HTTP/1.1", "GET /debug/headers HTTP/1.1\r\nHost: localhost\r\nX-Smuggled: yes\r\n\r\n")])),
        ("pipelining", "two requests in one write", format!("GET /debug/headers?n=1 HTTP/1.1\r\n{H}\r\nGET /debug/headers?n=2 HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers?n=1 HTTP/1.1", ""), ("GET /debug/headers?n=2 HTTP/1.1", "")])),
        ("pipelining", "GET with a body, then a request", format!("GET /debug/headers HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhelloGET /debug/headers?n=2 HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "hello"), ("GET /debug/headers?n=2 HTTP/1.1", "")])),
        // ---- header names and values
        ("header syntax", "space before colon", format!("{GET}Host : localhost\r\nConnection: close\r\n\r\n"), Rejected),
        ("header syntax", "own header, space before colon", format!("{GET}{H}Sekisho-Assertion : forged\r\nConnection: close\r\n\r\n"), Rejected),
        ("header syntax", "space in a name", format!("{GET}{H}X A: forged\r\nConnection: close\r\n\r\n"), Rejected),
        ("header syntax", "NUL in a value", format!("{GET}{H}X-A: a\0forged\r\nConnection: close\r\n\r\n"), Rejected),
        ("header syntax", "CR in a value", format!("{GET}{H}X-A: a\rforged\r\nConnection: close\r\n\r\n"), Rejected),
        ("header syntax", "colon in a value", format!("{GET}{H}X-A: sekisho-terminal: t9\r\nConnection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("header syntax", "93 headers", format!("{GET}{H}{long_ok}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("header syntax", "203 headers (more than 100)", format!("{GET}{H}{long_bad}Connection: close\r\n\r\n"), Rejected),
        ("header syntax", "one 40 KiB header", format!("{GET}{H}X-A: {}\r\nConnection: close\r\n\r\n", "v".repeat(40 * 1024)), Rejected),
        ("header syntax", "two spaces in the request line", format!("GET  /debug/headers HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Rejected),
        // ---- the gateway's own headers
        ("own headers", "spoofed", format!("{GET}{H}{SPOOF}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("own headers", "spoofed on a POST", format!("{POST}{H}{SPOOF}Content-Length: 5\r\nConnection: close\r\n\r\nhello"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        ("own headers", "removal by Connection", format!("{GET}{H}Connection: close, Sekisho-Assertion, Sekisho-Request-Id, Sekisho-Terminal, Sekisho-Facility, Host\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("own headers", "framing removed by Connection", format!("{POST}{H}Content-Length: 5\r\nConnection: close, Content-Length, Transfer-Encoding\r\n\r\nhello"), Forwarded(&[("POST /debug/post HTTP/1.1", "hello")])),
        // ---- targets and hosts
        ("target", "absolute-form, same host", format!("GET https://localhost/debug/headers HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("target", "absolute-form, other host", format!("GET https://upstream.internal/debug/headers HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("request_host_invalid")),
        ("target", "absolute-form with userinfo", format!("GET https://forged@localhost/debug/headers HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Rejected),
        ("target", "authority-form, other host", format!("CONNECT upstream.internal:80 HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("request_host_invalid")),
        ("target", "authority-form, same host", "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nAccept: application/json\r\nConnection: close\r\n\r\n".to_string(), Refused("path_not_absolute")),
        ("target", "asterisk-form", format!("OPTIONS * HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("path_not_absolute")),
        ("host", "Host other than SNI", format!("{GET}Host: upstream.internal\r\nConnection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("host", "Host with port", format!("{GET}Host: localhost:443\r\nConnection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
        ("host", "Host with userinfo", format!("{GET}Host: forged@localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n"), Refused("request_host_invalid")),
        ("host", "Host with a path", format!("{GET}Host: localhost/forged\r\nAccept: application/json\r\nConnection: close\r\n\r\n"), Refused("request_host_invalid")),
        ("path", "encoded slash", format!("GET /debug%2fheaders HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("path_encoded_slash")),
        ("path", "encoded backslash", format!("GET /debug%5cheaders HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("path_encoded_backslash")),
        ("path", "encoded NUL", format!("GET /debug/headers%00.css HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("path_encoded_nul")),
        ("path", "overlong slash", format!("GET /debug%c0%afheaders HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Refused("path_invalid_utf8")),
        ("path", "dot segments", format!("GET /static/../debug/headers HTTP/1.1\r\n{H}Connection: close\r\n\r\n"), Forwarded(&[("GET /debug/headers HTTP/1.1", "")])),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `bytes` over a fresh mTLS connection as t1 and reads until the gateway closes it (or
/// `wait` passes); the answer as text.
async fn send_raw(g: &Gateway, bytes: &[u8], wait: Duration) -> String {
    let mut s = tls_connect(g, "t1").await;
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answer[i + 9..].get(..3)?.parse().ok())
        .collect()
}

fn error_of(answer: &str) -> String {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn start(db: Db, up: &RawUpstream, extra: &str) -> Gateway {
    Gateway::start_with(
        db,
        Options {
            upstream_url: Some(format!("http://{}", up.addr)),
            extra_config: format!("{EXTRA}{extra}"),
            ..Default::default()
        },
    )
}

/// The upstream's requests once the gateway has had time to send what it was going to: the
/// requests of one case arrive before its answer, so a short settle only catches strays.
fn settled(up: &RawUpstream) -> Vec<Received> {
    std::thread::sleep(Duration::from_millis(100));
    up.take()
}

#[test]
fn http1_corpus_reaches_the_upstream_only_as_decided() {
    for db in BOTH {
        let up = RawUpstream::start();
        let g = start(db, &up, "");
        let rt = runtime();
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for (class, name, request, expect) in http1_corpus() {
            *counts.entry(class).or_default() += 1;
            let case = format!("{db:?} {class}: {name}");
            let answer = rt.block_on(send_raw(&g, request.as_bytes(), Duration::from_secs(3)));
            let got = settled(&up);
            let st = statuses(&answer);
            match expect {
                Rejected => {
                    assert!(
                        st.is_empty() || st == [400] || st == [431],
                        "{case}: {answer}"
                    );
                    assert!(got.is_empty(), "{case}: reached the upstream: {got:#?}");
                }
                Refused(reason) => {
                    assert_eq!(error_of(&answer), reason, "{case}: {answer}");
                    assert!(got.is_empty(), "{case}: reached the upstream: {got:#?}");
                }
                Forwarded(want) => {
                    assert_eq!(st, vec![200; want.len()], "{case}: {answer}");
                    let lines: Vec<(&str, &str)> = got
                        .iter()
                        .map(|r| (r.line.as_str(), r.body.as_str()))
                        .collect();
                    let want: Vec<(&str, &str)> = want.to_vec();
                    assert_eq!(lines, want, "{case}: {got:#?}");
                }
                BodyBroken => {
                    assert_eq!(st, [400], "{case}: {answer}");
                    assert_eq!(error_of(&answer), "bad_request", "{case}: {answer}");
                    assert!(got.is_empty(), "{case}: reached the upstream: {got:#?}");
                    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    let v: serde_json::Value = serde_json::from_str(body).unwrap();
                    g.wait_audit(|r| {
                        r["request_id"] == v["request_id"]
                            && r["event"] == "outcome"
                            && r["reason"] == "bad_request"
                    });
                }
                AtMost(line, body) => {
                    assert!(got.len() <= 1, "{case}: {got:#?}");
                    if let Some(r) = got.first() {
                        assert_eq!((r.line.as_str(), r.body.as_str()), (line, body), "{case}");
                        assert_eq!(st, [200], "{case}: {answer}");
                    } else {
                        // Its body broke: the terminal's fault (400), not the upstream's.
                        assert!(st.is_empty() || st == [400], "{case}: {answer}");
                    }
                }
            }
            for r in &got {
                assert_well_formed(r, up.addr, &case);
            }
            let ids: std::collections::HashSet<&str> =
                got.iter().map(|r| r.one("sekisho-request-id")).collect();
            assert_eq!(
                ids.len(),
                got.len(),
                "{case}: each request decided on its own"
            );
            for id in ids {
                g.wait_audit(|r| {
                    r["request_id"] == id && r["event"] == "request" && r["decision"] == "permit"
                });
            }
        }
        eprintln!("{db:?}: HTTP/1.1 cases per class: {counts:?}");
        assert!(run_ok(&["audit", "verify", "--data-dir", g.data_str()]).contains("audit log OK"));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

async fn tls_h2(g: &Gateway, name: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(g.ca()).unwrap())
        .unwrap();
    let (c, k) = g.cert(name);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(&c)
                .unwrap()
                .map(|c| c.unwrap())
                .collect(),
            PrivateKeyDer::from_pem_file(&k).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", g.port))
        .await
        .unwrap();
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s
}

/// One HTTP/2 request with the `h2` crate (which sends what it is given); (status, body), or
/// the stream's error.
async fn h2_request(
    g: &Gateway,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    h2_request_as(g, "t1", method, uri, headers, body).await
}

async fn h2_request_as(
    g: &Gateway,
    terminal: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let tls = tls_h2(g, terminal).await;
    let (client, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let mut req = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let (resp, mut send) = client
        .send_request(req.body(()).unwrap(), body.is_empty())
        .map_err(|e| e.to_string())?;
    if !body.is_empty() {
        send.send_data(bytes::Bytes::from(body.to_string()), true)
            .map_err(|e| e.to_string())?;
    }
    let resp = resp.await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut b = resp.into_body();
    let mut out = Vec::new();
    while let Some(d) = b.data().await {
        let d = d.map_err(|e| e.to_string())?;
        let _ = b.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

#[test]
fn http2_headers_paths_and_hosts_reach_the_upstream_only_as_decided() {
    let spoof: Vec<(&str, &str)> = SPOOF
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once(": ").unwrap())
        .collect();
    let json = [("accept", "application/json")];
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a str,
        Result<u16, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "own headers spoofed",
            "GET",
            "https://localhost/debug/headers",
            spoof.clone(),
            "",
            Ok(200),
        ),
        (
            "own headers spoofed on a POST",
            "POST",
            "https://localhost/debug/post",
            spoof.clone(),
            "hello",
            Ok(200),
        ),
        (
            "framing header in underscore spelling",
            "POST",
            "https://localhost/debug/post",
            vec![("content_length", "1"), ("transfer_encoding", "chunked")],
            "hello",
            Ok(200),
        ),
        (
            "content-length too small",
            "POST",
            "https://localhost/debug/post",
            vec![("content-length", "2")],
            "hello",
            Err(""),
        ),
        (
            "Host other than :authority",
            "GET",
            "https://localhost/debug/headers",
            vec![("host", "upstream.internal"), json[0]],
            "",
            Err("request_host_invalid"),
        ),
        (
            "Host equal to :authority",
            "GET",
            "https://localhost/debug/headers",
            vec![("host", "localhost")],
            "",
            Ok(200),
        ),
        (
            ":authority other than SNI",
            "GET",
            "https://upstream.internal/debug/headers",
            vec![],
            "",
            Ok(200),
        ),
        (
            "encoded slash",
            "GET",
            "https://localhost/debug%2fheaders",
            json.to_vec(),
            "",
            Err("path_encoded_slash"),
        ),
        (
            "encoded backslash",
            "GET",
            "https://localhost/debug%5Cheaders",
            json.to_vec(),
            "",
            Err("path_encoded_backslash"),
        ),
        (
            "encoded NUL",
            "GET",
            "https://localhost/debug/headers%00",
            json.to_vec(),
            "",
            Err("path_encoded_nul"),
        ),
        (
            "overlong slash",
            "GET",
            "https://localhost/debug%c0%afheaders",
            json.to_vec(),
            "",
            Err("path_invalid_utf8"),
        ),
        (
            "dot segments",
            "GET",
            "https://localhost/static/../debug/headers",
            vec![],
            "",
            Ok(200),
        ),
    ];
    for db in BOTH {
        let up = RawUpstream::start();
        let g = start(db, &up, "");
        let rt = runtime();
        for (name, method, uri, headers, body, expect) in &cases {
            let case = format!("{db:?} h2 {name}");
            let r = rt.block_on(h2_request(&g, method, uri, headers, body));
            let got = settled(&up);
            match expect {
                Ok(s) => {
                    assert_eq!(r.as_ref().map(|x| x.0), Ok(*s), "{case}: {r:?}");
                    assert_eq!(got.len(), 1, "{case}: {got:#?}");
                    assert_eq!(got[0].body, *body, "{case}");
                    assert_eq!(
                        got[0].line,
                        format!(
                            "{method} /debug/{} HTTP/1.1",
                            if *method == "GET" { "headers" } else { "post" }
                        ),
                        "{case}"
                    );
                    assert_well_formed(&got[0], up.addr, &case);
                }
                Err(reason) => {
                    if !reason.is_empty() {
                        let (_, text) = r.as_ref().expect(&case);
                        assert!(text.contains(reason), "{case}: {text}");
                    }
                    assert!(got.is_empty(), "{case}: reached the upstream: {got:#?}");
                }
            }
        }
        // Malformed in HTTP/2 (RFC 9113 §8.2): a connection-specific header (which could
        // nominate the gateway's own headers away), an uppercase name, `transfer-encoding`, a
        // pseudo-header given twice or after a regular one, a NUL in a value. The stream is
        // refused and nothing of it reaches the upstream.
        let malformed: [&[(&str, &str)]; 6] = [
            &[("connection", "sekisho-assertion")],
            &[("Sekisho-Assertion", "forged")],
            &[("transfer-encoding", "chunked")],
            &[(":path", "/debug/post")],
            &[("x-a", "1"), (":method", "POST")],
            &[("x-a", "a\0forged")],
        ];
        for extra in malformed {
            let mut headers = vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/debug/headers"),
            ];
            headers.extend_from_slice(extra);
            let block = hpack(&headers);
            let frames = rt.block_on(raw_h2(
                &g,
                |out| headers_frame(out, 1, FLAG_END_HEADERS | FLAG_END_STREAM, &block),
                Duration::from_secs(1),
            ));
            assert!(
                frames
                    .iter()
                    .any(|(t, _, sid)| (*t == RST_STREAM && *sid == 1) || *t == GOAWAY),
                "{db:?} {extra:?}: {frames:?}"
            );
            assert!(
                !frames.iter().any(|(t, _, sid)| *t == HEADERS && *sid == 1),
                "{db:?} {extra:?}: answered"
            );
            assert!(settled(&up).is_empty(), "{db:?} {extra:?}");
        }
    }
}

// Raw HTTP/2 frames for what no client library would send.

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const FLAG_END_STREAM: u8 = 1;
const FLAG_END_HEADERS: u8 = 4;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let n = payload.len() as u32;
    out.extend_from_slice(&n.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn headers_frame(out: &mut Vec<u8>, stream: u32, flags: u8, block: &[u8]) {
    frame(out, HEADERS, flags, stream, block);
}

/// HPACK integer with an `n`-bit prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Every header as a literal without indexing, new name, no Huffman: no dynamic table state.
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n.as_bytes());
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn get_block() -> Vec<u8> {
    hpack(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/debug/headers"),
    ])
}

/// Opens an HTTP/2 connection as t1, writes the preface, SETTINGS and what `write` adds (in
/// one go, as fast as the socket takes it), and reads frames until the gateway closes the
/// connection or `wait` passes: the frames it sent back as (type, flags, stream).
async fn raw_h2(
    g: &Gateway,
    write: impl FnOnce(&mut Vec<u8>),
    wait: Duration,
) -> Vec<(u8, u8, u32)> {
    let tls = tls_h2(g, "t1").await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    write(&mut out);
    let writer = tokio::spawn(async move {
        // The gateway may close the connection before it has read everything.
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
        wr
    });
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let sid = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            frames.push((buf[3], buf[4], sid));
            buf.drain(..9 + len);
        }
    }
    writer.abort();
    frames
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// CPU time the process has used (user + system), in clock ticks (100 per second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are 12th and 13th.
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A well-behaved terminal's plain GET, with a deadline.
async fn served(g: &Gateway) -> bool {
    tokio::time::timeout(
        Duration::from_secs(10),
        h2_request(g, "GET", "https://localhost/debug/headers", &[], ""),
    )
    .await
    .is_ok_and(|r| r.is_ok_and(|(s, _)| s == 200))
}

/// Floods on one HTTP/2 connection: the gateway ends the connection or refuses the streams,
/// its memory stays bounded, the upstream gets at most what was decided, and another client is
/// served during and after.
#[test]
fn http2_floods_are_bounded() {
    type Flood = (&'static str, fn(&mut Vec<u8>));
    let floods: [Flood; 4] = [
        (
            "rapid reset: HEADERS then RST_STREAM, 20,000 times",
            |out| {
                let block = get_block();
                for i in 0..20_000u32 {
                    let sid = 2 * i + 1;
                    headers_frame(out, sid, FLAG_END_HEADERS | FLAG_END_STREAM, &block);
                    frame(out, RST_STREAM, 0, sid, &8u32.to_be_bytes());
                }
            },
        ),
        (
            "CONTINUATION flood: one header block of 100,000 frames",
            |out| {
                let block = get_block();
                headers_frame(out, 1, FLAG_END_STREAM, &block);
                let filler = hpack(&[("x-filler", &"v".repeat(100))]);
                for _ in 0..100_000 {
                    frame(out, CONTINUATION, 0, 1, &filler);
                }
            },
        ),
        ("oversized header list: 1 MiB in one block", |out| {
            let mut block = get_block();
            for i in 0..1024 {
                block.extend(hpack(&[(&format!("x-h{i}"), &"v".repeat(1000))]));
            }
            let mut chunks = block.chunks(16384);
            headers_frame(out, 1, FLAG_END_STREAM, chunks.next().unwrap());
            let rest: Vec<&[u8]> = chunks.collect();
            for (i, c) in rest.iter().enumerate() {
                let flags = if i + 1 == rest.len() {
                    FLAG_END_HEADERS
                } else {
                    0
                };
                frame(out, CONTINUATION, flags, 1, c);
            }
        }),
        ("stream flood: 5,000 unfinished POSTs", |out| {
            let block = hpack(&[
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/debug/post"),
            ]);
            for i in 0..5_000u32 {
                headers_frame(out, 2 * i + 1, FLAG_END_HEADERS, &block);
                frame(out, DATA, 0, 2 * i + 1, b"x");
            }
        }),
    ];
    for db in BOTH {
        let up = RawUpstream::start();
        let g = start(db, &up, "");
        let pid = g.pid().unwrap();
        let rt = runtime();
        assert!(rt.block_on(served(&g)), "{db:?}: served before");
        let _ = settled(&up);
        let before = rss_kib(pid);
        eprintln!("{db:?}: RSS before the floods {before} KiB");
        for (name, flood) in floods {
            let case = format!("{db:?} {name}");
            let cpu = cpu_ticks(pid);
            let (frames, during) = rt.block_on(async {
                let f = raw_h2(&g, flood, Duration::from_secs(15));
                let other = async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    served(&g).await
                };
                tokio::join!(f, other)
            });
            let goaway = frames.iter().any(|(t, _, _)| *t == GOAWAY);
            let resets = frames.iter().filter(|(t, _, _)| *t == RST_STREAM).count();
            let answered = frames.iter().filter(|(t, _, _)| *t == HEADERS).count();
            let cpu = cpu_ticks(pid) - cpu;
            eprintln!(
                "{case}: GOAWAY {goaway}, {resets} RST_STREAM, {answered} answers, RSS {} KiB, CPU {} ms",
                rss_kib(pid),
                cpu * 10
            );
            // Debug build, the other client's requests included: the flood is cut short.
            assert!(cpu < 500, "{case}: the gateway used {} ms of CPU", cpu * 10);
            let got = settled(&up);
            eprintln!("{case}: {} requests reached the upstream", got.len());
            assert!(
                during,
                "{case}: another client was not served during the flood"
            );
            assert!(
                goaway || resets > 0,
                "{case}: neither closed nor refused: {:?}",
                &frames[..frames.len().min(20)]
            );
            assert!(
                rt.block_on(served(&g)),
                "{case}: another client was not served after"
            );
            // The other client's request, and at most one connection's worth of streams.
            assert!(
                got.len() <= 1 + 128,
                "{case}: {} requests reached the upstream",
                got.len()
            );
            let after = rss_kib(pid);
            assert!(
                after < before + 64 * 1024,
                "{case}: RSS grew from {before} KiB to {after} KiB"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fan-out per terminal, and what gets audited

/// Three HTTP/2 connections of one terminal opening 16 unfinished POSTs each: the upstream
/// holds at most `terminal_max_upstream` of them, the rest are refused (`terminal_busy`, 429,
/// `Retry-After`) and recorded once per burst per connection, the others counted in each
/// connection's closing record; another terminal is served meanwhile. When the terminal goes
/// away, its held requests get outcome records saying so and the upstream lets go.
#[test]
fn http2_fan_out_is_bounded_per_terminal() {
    const CONNECTIONS: usize = 3;
    const STREAMS: usize = 16;
    for db in BOTH {
        let up = RawUpstream::start();
        let g = Gateway::start_with(
            db,
            Options {
                upstream_url: Some(format!("http://{}", up.addr)),
                extra_config: EXTRA.into(),
                replace: vec![
                    ("terminal_max_requests = 256", "terminal_max_requests = 24"),
                    ("terminal_max_upstream = 64", "terminal_max_upstream = 8"),
                ],
                ..Default::default()
            },
        );
        g.add_terminal_live("f1", "t2");
        let rt = runtime();
        let (refused, held) = rt.block_on(async {
            let mut refused = Vec::new();
            let mut held = Vec::new();
            for _ in 0..CONNECTIONS {
                let (client, conn) = h2::client::handshake(tls_h2(&g, "t1").await).await.unwrap();
                let conn = tokio::spawn(conn);
                let mut streams = Vec::new();
                for _ in 0..STREAMS {
                    let mut c = client.clone().ready().await.unwrap();
                    let req = http::Request::post("https://localhost/debug/post")
                        .header("accept", "application/json")
                        .body(())
                        .unwrap();
                    let (resp, mut send) = c.send_request(req, false).unwrap();
                    send.send_data(bytes::Bytes::from_static(b"unfinished"), false)
                        .unwrap();
                    streams.push((Box::pin(resp), send));
                }
                held.push((client, conn, streams));
            }
            // Every stream either is held by the upstream (no answer yet) or has been refused.
            for (_, _, streams) in &mut held {
                let mut waiting = Vec::new();
                for (mut resp, send) in streams.drain(..) {
                    match tokio::time::timeout(Duration::from_millis(1500), resp.as_mut()).await {
                        Ok(r) => {
                            let r = r.unwrap();
                            let status = r.status().as_u16();
                            let retry = r.headers().get("retry-after").is_some_and(|v| v == "1");
                            let mut body = r.into_body();
                            let mut text = Vec::new();
                            while let Some(d) = body.data().await {
                                text.extend_from_slice(&d.unwrap());
                            }
                            refused.push((
                                (status, retry),
                                String::from_utf8_lossy(&text).into_owned(),
                            ));
                        }
                        Err(_) => waiting.push((resp, send)),
                    }
                }
                *streams = waiting;
            }
            (refused, held)
        });
        let open = within_a_poll(|| up.seen.lock().unwrap().open, |n| *n == 8);
        let max_open = up.seen.lock().unwrap().max_open;
        let waiting: usize = held.iter().map(|(_, _, s)| s.len()).sum();
        eprintln!(
            "{db:?}: upstream holds {open} (at most {max_open}); {} refused, {waiting} unanswered",
            refused.len()
        );
        assert_eq!(open, 8, "{db:?}: the upstream holds the limit");
        assert_eq!(max_open, 8, "{db:?}: never more");
        assert_eq!(waiting, 8, "{db:?}");
        assert_eq!(refused.len(), CONNECTIONS * STREAMS - 8, "{db:?}");
        for (status, body) in &refused {
            assert_eq!(status, &(429, true), "{db:?}: {body}");
            assert!(body.contains("terminal_busy"), "{db:?}: {body}");
        }
        // Another terminal is served; this one, on a new connection, is not.
        let (other, same) = rt.block_on(async {
            (
                h2_request_as(&g, "t2", "GET", "https://localhost/debug/headers", &[], "").await,
                h2_request_as(
                    &g,
                    "t1",
                    "GET",
                    "https://localhost/debug/headers",
                    &[("accept", "application/json")],
                    "",
                )
                .await,
            )
        });
        assert_eq!(other.map(|r| r.0), Ok(200), "{db:?}: t2 is served");
        assert_eq!(same.as_ref().map(|r| r.0), Ok(429), "{db:?}: {same:?}");
        let _ = settled(&up);
        // The terminal goes away.
        drop(held);
        drop(rt);
        let open = within_a_poll(|| up.seen.lock().unwrap().open, |n| *n == 0);
        assert_eq!(open, 0, "{db:?}: the upstream's connections were let go");
        let total_refused = CONNECTIONS * STREAMS - 8 + 1;
        let count = |pred: &dyn Fn(&serde_json::Value) -> bool| {
            g.audit_records().into_iter().filter(|r| pred(r)).count()
        };
        let busy_record = |r: &serde_json::Value| {
            r["event"] == "request" && r["reason"] == "terminal_busy" && r["terminal"] == "t1"
        };
        // One per connection's burst (a burst can end and begin again while the first
        // connection's streams are admitted).
        let recorded = count(&busy_record);
        assert!(
            (CONNECTIONS + 1..=CONNECTIONS + 4).contains(&recorded),
            "{db:?}: {recorded} refusals recorded one by one"
        );
        // The closing records count the rest.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let counted: usize = g
                .audit_records()
                .iter()
                .filter(|r| r["event"] == "connection" && r["terminal"] == "t1")
                .filter_map(|r| {
                    let d = r["detail"].as_str()?;
                    let (n, _) = d.split_once(" more requests refused as terminal_busy")?;
                    n.rsplit("; ").next()?.parse::<usize>().ok()
                })
                .sum();
            if counted + recorded == total_refused {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{db:?}: {recorded} recorded + {counted} counted != {total_refused}: {:#?}",
                g.audit_records()
                    .iter()
                    .filter(|r| r["event"] == "connection")
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The held requests were permitted; each now has an outcome saying the terminal left.
        let left = within_a_poll(
            || {
                count(&|r| {
                    r["event"] == "outcome"
                        && r["reason"] == "client_went_away"
                        && r["decision"] == "permit"
                })
            },
            |n| *n == 8,
        );
        assert_eq!(left, 8, "{db:?}");
        assert!(run_ok(&["audit", "verify", "--data-dir", g.data_str()]).contains("audit log OK"));
    }
}

/// What hyper or h2 refused is on record once per connection, with what went wrong: a
/// malformed head (400), an oversized one (431), an HTTP/2 flood the gateway ended. A flood of
/// 20,000 reset streams adds a handful of records, not thousands. A request abandoned on its
/// way to the upstream has an outcome saying so; asking who is signed in, and signing out with
/// nobody signed in, are on record too.
#[test]
fn protocol_rejects_and_abandoned_requests_are_audited() {
    for db in BOTH {
        let up = RawUpstream::start();
        let g = start(db, &up, "");
        let rt = runtime();
        let connection_record = |needle: &str| {
            g.wait_audit(|r| {
                r["event"] == "connection"
                    && r["reason"] == "protocol_error"
                    && r["terminal"] == "t1"
                    && r["detail"].as_str().is_some_and(|d| d.contains(needle))
            })
        };
        let folded = "GET /debug/headers HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n";
        let answer = rt.block_on(send_raw(&g, folded.as_bytes(), Duration::from_secs(3)));
        assert_eq!(statuses(&answer), [400], "{db:?}: {answer}");
        connection_record("(400)");
        let mut many = String::from("GET /debug/headers HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..200 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let answer = rt.block_on(send_raw(&g, many.as_bytes(), Duration::from_secs(3)));
        assert_eq!(statuses(&answer), [431], "{db:?}: {answer}");
        connection_record("(431)");

        // 20,000 HEADERS + RST_STREAM pairs.
        let before = g.audit_records().len();
        let frames = rt.block_on(raw_h2(
            &g,
            |out| {
                let block = get_block();
                for i in 0..20_000u32 {
                    headers_frame(out, 2 * i + 1, FLAG_END_HEADERS | FLAG_END_STREAM, &block);
                    frame(out, RST_STREAM, 0, 2 * i + 1, &8u32.to_be_bytes());
                }
            },
            Duration::from_secs(10),
        ));
        assert!(frames.iter().any(|(t, _, _)| *t == GOAWAY), "{db:?}");
        let rec = connection_record("HTTP/2 closed by the gateway");
        let added = g.audit_records().len() - before;
        eprintln!(
            "{db:?}: a rapid-reset flood added {added} records: {}",
            rec["detail"]
        );
        assert!(added <= 40, "{db:?}: {added} records for one flood");

        // An HTTP/1 POST whose terminal goes away while the upstream reads its body.
        rt.block_on(async {
            let mut s = tls_connect(&g, "t1").await;
            s.write_all(
                b"POST /debug/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b",
            )
            .await
            .unwrap();
            let open = within_a_poll(|| up.seen.lock().unwrap().open, |n| *n == 1);
            assert_eq!(open, 1, "{db:?}: the upstream has the head");
            drop(s);
        });
        let gone = g.wait_audit(|r| r["event"] == "outcome" && r["reason"] == "client_went_away");
        assert_eq!(gone["decision"], "permit", "{db:?}");
        assert_eq!(gone["path"], "/debug/post", "{db:?}");
        g.wait_audit(|r| {
            r["event"] == "request"
                && r["request_id"] == gone["request_id"]
                && r["decision"] == "permit"
        });

        // Own endpoints that change nothing.
        let (s, v) = rt.block_on(call(&g, "t1", "GET", "/.sekisho/auth/status", None));
        assert_eq!((s, v["signed_in"].as_bool()), (200, Some(false)), "{db:?}");
        g.wait_audit(|r| {
            r["event"] == "auth"
                && r["reason"] == "status"
                && r["terminal"] == "t1"
                && r["detail"] == "asked who is signed in: nobody is"
        });
        let (s, v) = rt.block_on(call(
            &g,
            "t1",
            "POST",
            "/.sekisho/auth/logout",
            Some(serde_json::json!({"reason": "logout"})),
        ));
        assert_eq!((s, v["ended"].as_bool()), (200, Some(false)), "{db:?}");
        g.wait_audit(|r| {
            r["event"] == "auth"
                && r["reason"] == "logout"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.ends_with("nobody was signed in"))
        });
        assert!(run_ok(&["audit", "verify", "--data-dir", g.data_str()]).contains("audit log OK"));
    }
}
