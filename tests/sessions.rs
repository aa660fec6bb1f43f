//! Sessions that end and cookies that cannot be planted (`docs/signin.md`, "Sessions that
//! end", "Cookies"): the one cookie the gateway sets is host-only, Secure, HttpOnly,
//! SameSite=Strict, and new at every sign-in (a value from before is never the session); a
//! session with no request for `signin.idle_minutes` ends on record (`session_idle`) while
//! requests keep it. Card presence is in `tests/card.rs`, cross-site refusals in
//! `tests/signin.rs`, replicas in `tests/replicas.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;

const USER_ROUTE: &str = r#"
[[route]]
name = "my-page"
methods = ["GET"]
path = "/debug/me"
level = "user"
action = "view"
"#;

fn gateway(db: Db, replace: Vec<(&'static str, &'static str)>) -> Gateway {
    Gateway::start_with(
        db,
        Options {
            extra_config: format!("{}{USER_ROUTE}", Options::default().extra_config),
            replace,
            ..Default::default()
        },
    )
}

/// A request as terminal t1 with `headers` (and a form body when `form` is given); (status,
/// response headers and body as curl prints them with `-D -`).
fn request(g: &Gateway, path: &str, headers: &[String], form: &[(&str, &str)]) -> (u16, String) {
    let (c, k) = g.cert("t1");
    let mut args: Vec<String> = vec![
        "--cert".into(),
        c,
        "--key".into(),
        k,
        "-D".into(),
        "-".into(),
    ];
    for h in headers {
        args.extend(["-H".into(), h.clone()]);
    }
    for (n, v) in form {
        args.extend(["--data-urlencode".into(), format!("{n}={v}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (s, out, _) = g.curl(path, &args);
    (s, out)
}

fn set_cookies(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().to_string())
        })
        .collect()
}

/// The attributes every cookie of the gateway must carry: the `__Host-` prefix (which
/// browsers honour only with Secure, Path=/ and no Domain), HttpOnly, SameSite=Strict.
fn assert_host_only_strict(cookie: &str) {
    let mut parts = cookie.split(';').map(str::trim);
    let first = parts.next().unwrap();
    assert!(first.starts_with("__Host-sekisho="), "{cookie}");
    let attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    for want in ["path=/", "secure", "httponly", "samesite=strict"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing: {cookie}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{cookie}");
}

fn cookie_value(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-sekisho=")
        .to_string()
}

fn status_user(g: &Gateway, cookie: &str) -> serde_json::Value {
    let (s, out) = request(
        g,
        "/.sekisho/auth/status",
        &[format!("Cookie: __Host-sekisho={cookie}")],
        &[],
    );
    assert_eq!(s, 200, "{out}");
    let body = &out[out.find('{').unwrap()..];
    serde_json::from_str::<serde_json::Value>(body).unwrap()["user"].clone()
}

#[test]
fn the_one_cookie_is_host_only_strict_and_new_at_every_sign_in() {
    for db in BOTH {
        let g = gateway(db, vec![]);
        let temp = add_user(&g, "clerk00001", "jp-mhlw-qa-a");
        let own = format!("Origin: https://localhost:{}", g.port);
        // No page sets a cookie before sign-in: there is nothing to plant or carry over.
        for path in [
            "/.sekisho/login",
            "/.sekisho/password",
            "/.sekisho/auth/status",
            "/.sekisho/notices",
            "/.sekisho/emergency",
            "/.sekisho/console/",
            "/debug/me",
        ] {
            let (_, out) = request(&g, path, &[], &[]);
            assert!(set_cookies(&out).is_empty(), "{db:?} {path}: {out}");
        }
        // A value planted before sign-in (session fixation) is not what sign-in issues, and
        // names no session after it.
        let planted = "PLANTEDplantedPLANTEDplantedPLANTEDplant";
        let sign_in = |cookie: &str| {
            let (s, out) = request(
                &g,
                "/.sekisho/login",
                &[own.clone(), format!("Cookie: __Host-sekisho={cookie}")],
                &[("id", "clerk00001"), ("password", &temp)],
            );
            assert_eq!(s, 303, "{db:?}: {out}");
            let cookies = set_cookies(&out);
            assert_eq!(cookies.len(), 1, "{db:?}: {cookies:?}");
            assert_host_only_strict(&cookies[0]);
            let max_age: i64 = cookies[0]
                .split(';')
                .find_map(|a| a.trim().strip_prefix("Max-Age="))
                .unwrap()
                .parse()
                .unwrap();
            assert!(max_age > 0 && max_age <= 12 * 3600, "{db:?}: {max_age}");
            cookie_value(&cookies[0])
        };
        let first = sign_in(planted);
        assert_ne!(first, planted, "{db:?}");
        assert_eq!(first.len(), 32, "{db:?}: 24 random bytes");
        assert_eq!(status_user(&g, &first), "clerk00001", "{db:?}");
        assert!(status_user(&g, planted).is_null(), "{db:?}");
        // Signing in again, even while holding the current cookie, issues another; the old
        // one is no one's.
        let second = sign_in(&first);
        assert_ne!(second, first, "{db:?}");
        assert_eq!(status_user(&g, &second), "clerk00001", "{db:?}");
        assert!(status_user(&g, &first).is_null(), "{db:?}");
        // Sign-out clears it with the same attributes.
        let (s, out) = request(
            &g,
            "/.sekisho/logout",
            &[own.clone(), format!("Cookie: __Host-sekisho={second}")],
            &[("x", "")],
        );
        assert_eq!(s, 303, "{db:?}: {out}");
        let cookies = set_cookies(&out);
        assert_eq!(cookies.len(), 1, "{db:?}: {cookies:?}");
        assert_host_only_strict(&cookies[0]);
        assert!(cookies[0].contains("Max-Age=0"), "{db:?}: {cookies:?}");
        assert_eq!(cookie_value(&cookies[0]), "", "{db:?}");
    }
}

/// With `signin.idle_minutes = 1`: requests every 10 s keep a session well past the minute;
/// once they stop it ends a minute (plus at most a sweep) after the last one, is on record
/// as `session_idle`, and the next request gets the sign-in answer. Status checks (the
/// gateway's own endpoint) are not activity. Both stores at once, each on its own thread.
#[test]
fn an_idle_session_ends_on_record_and_requests_keep_it() {
    std::thread::scope(|s| {
        for db in BOTH {
            s.spawn(move || idle_session(db));
        }
    });
}

fn idle_session(db: Db) {
    let g = gateway(db, vec![("idle_minutes = 15", "idle_minutes = 1")]);
    let dir = tempfile::tempdir().unwrap();
    let jar = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
    let opened = Instant::now();
    let mut last;
    loop {
        last = Instant::now();
        let (s, body) = get(&g, "t1", &jar, "/debug/me");
        assert_eq!(s, 200, "{db:?} after {:?}: {body}", opened.elapsed());
        if opened.elapsed() > Duration::from_secs(75) {
            break;
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    let signed_in = || {
        let (s, body) = get(&g, "t1", &jar, "/.sekisho/auth/status");
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["signed_in"] == true
    };
    while signed_in() {
        assert!(
            last.elapsed() < Duration::from_secs(66),
            "{db:?}: still signed in {:?} after the last request",
            last.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let idle = last.elapsed();
    println!(
        "{db:?}: the session ended {:.1} s after its last request (idle limit 60 s)",
        idle.as_secs_f64()
    );
    assert!(
        idle >= Duration::from_secs(59),
        "{db:?}: ended early, {idle:?}"
    );
    g.wait_audit(|r| {
        r["event"] == "auth" && r["reason"] == "session_idle" && r["user"] == "nurse00001"
    });
    let (s, body) = get(&g, "t1", &jar, "/debug/me");
    assert_eq!(s, 401, "{db:?}: {body}");
    assert!(body.contains("signin_required"), "{db:?}: {body}");
}
