//! ID and password sign-in through the gateway's own pages (R-ACCT-2, R-ACCT-3, R-ACCT-5),
//! with curl as the browser, on SQLite and PostgreSQL.

mod common;

use common::*;

const USER_ROUTE: &str = r#"
[[route]]
name = "my-page"
methods = ["GET"]
path = "/debug/me"
level = "user"
action = "view"
"#;

fn start(db: Db) -> Gateway {
    let extra = format!("{}{USER_ROUTE}", Options::default().extra_config);
    let g = Gateway::start_with(
        db,
        Options {
            extra_config: extra,
            ..Default::default()
        },
    );
    g.add_terminal_live("f1", "t2");
    g
}

#[test]
fn password_sign_in_change_and_cookie_binding() {
    for db in BOTH {
        let g = start(db);
        let temp = add_user(&g, "nurse00001", "jp-mhlw-qa-b");
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("jar").to_str().unwrap().to_string();
        // The login page: Japanese and English, nothing for the browser to remember.
        let (s, page) = get(&g, "t1", &jar, "/.sekisho/login");
        assert_eq!(s, 200);
        assert!(
            page.contains("サインイン")
                && page.contains("Sign in")
                && page.contains(r#"autocomplete="off""#)
        );
        // First sign-in: straight to the change-password page, nothing else.
        let (s, _, loc) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/login",
            &[("id", "nurse00001"), ("password", &temp)],
        );
        assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"), "{db:?}");
        let jar_text = std::fs::read_to_string(&jar).unwrap();
        assert!(jar_text.contains("__Host-sekisho"), "{jar_text}");
        let (s, body) = get(&g, "t1", &jar, "/debug/me");
        assert_eq!(s, 403, "{db:?}: {body}");
        assert!(body.contains("password_change_required"));
        // The profile's rules, then a good password.
        let (s, body, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/password",
            &[
                ("current", &temp),
                ("new", "abcdefgh"),
                ("confirm", "abcdefgh"),
            ],
        );
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("mix letters, digits and symbols"), "{body}");
        let (s, _, loc) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/password",
            &[
                ("current", &temp),
                ("new", "kx7#Rw2q"),
                ("confirm", "kx7#Rw2q"),
            ],
        );
        assert_eq!((s, loc.as_str()), (303, "/"), "{db:?}");
        // Now requests are theirs; the upstream never sees the session cookie.
        let (s, body) = get(&g, "t1", &jar, "/debug/me");
        assert_eq!(s, 200, "{db:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["assertion_claims"]["user"], "nurse00001");
        assert_eq!(v["assertion_claims"]["auth_method"], "password");
        assert!(
            v["headers"].get("cookie").is_none(),
            "{db:?}: the session cookie leaked upstream: {body}"
        );
        // Without the cookie the same terminal is nobody.
        let empty = dir.path().join("empty").to_str().unwrap().to_string();
        assert_eq!(get(&g, "t1", &empty, "/debug/me").0, 401);
        // The same cookie from another terminal is refused.
        let (s, body) = get(&g, "t2", &jar, "/debug/me");
        assert_eq!(s, 403, "{db:?}");
        assert!(body.contains("session_other_terminal"));
        g.wait_audit(|r| {
            r["event"] == "request"
                && r["reason"] == "session_other_terminal"
                && r["terminal"] == "t2"
        });
        // The old password cannot come back.
        let (s, body, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/password",
            &[("current", "kx7#Rw2q"), ("new", &temp), ("confirm", &temp)],
        );
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("used recently"), "{body}");
    }
}

#[test]
fn repeated_failures_lock_the_account_with_one_generic_message() {
    for db in BOTH {
        let g = start(db);
        let temp = add_user(&g, "clerk00001", "jp-mhlw-qa-a");
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("jar").to_str().unwrap().to_string();
        let (s, unknown, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/login",
            &[("id", "nobody00001"), ("password", "x")],
        );
        assert_eq!(s, 401);
        for _ in 0..5 {
            let (s, wrong, _) = post(
                &g,
                "t1",
                &jar,
                "/.sekisho/login",
                &[("id", "clerk00001"), ("password", "wrong-Pass1!")],
            );
            assert_eq!(s, 401);
            // The same words whether the ID exists or not.
            assert_eq!(strip_headers(&wrong), strip_headers(&unknown));
        }
        let (s, locked, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/login",
            &[("id", "clerk00001"), ("password", &temp)],
        );
        assert_eq!(s, 401, "{db:?}: locked, even with the right password");
        assert_eq!(strip_headers(&locked), strip_headers(&unknown));
        g.wait_audit(|r| {
            r["event"] == "auth" && r["reason"] == "account_locked" && r["user"] == "clerk00001"
        });
        let list = run_ok(&["user", "list", "--data-dir", g.data_str()]);
        assert!(
            list.lines()
                .any(|l| l.starts_with("clerk00001") && l.contains("locked")),
            "{list}"
        );
        // Only the secretariat unlocks, and the password must then be changed.
        run_ok(&[
            "user",
            "unlock",
            "--data-dir",
            g.data_str(),
            "--id",
            "clerk00001",
        ]);
        let (s, _, loc) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/login",
            &[("id", "clerk00001"), ("password", &temp)],
        );
        assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"), "{db:?}");
        g.wait_audit(|r| r["event"] == "registry" && r["reason"] == "account_unlocked");
    }
}

fn strip_headers(resp: &str) -> String {
    resp.split("\r\n\r\n").last().unwrap_or("").to_string()
}

#[test]
fn nist_profile_has_no_composition_rules_but_the_temporary_password_is_changed() {
    let g = start(Db::Sqlite);
    let temp = add_user(&g, "helper00001", "nist-800-63b-4");
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar").to_str().unwrap().to_string();
    let (s, _, loc) = post(
        &g,
        "t1",
        &jar,
        "/.sekisho/login",
        &[("id", "helper00001"), ("password", &temp)],
    );
    // The secretariat has seen the temporary password: changed first, in this profile too.
    assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"));
    let (s, body, _) = post(
        &g,
        "t1",
        &jar,
        "/.sekisho/password",
        &[
            ("current", &temp),
            ("new", "short one"),
            ("confirm", "short one"),
        ],
    );
    assert_eq!(s, 400);
    assert!(body.contains("at least 15"), "{body}");
    let (s, _, _) = post(
        &g,
        "t1",
        &jar,
        "/.sekisho/password",
        &[
            ("current", &temp),
            ("new", "correct horse battery staple"),
            ("confirm", "correct horse battery staple"),
        ],
    );
    assert_eq!(s, 303);
}

#[test]
fn accounts_unused_for_the_configured_time_are_suspended() {
    for db in BOTH {
        let mut g = start(db);
        let temp = add_user(&g, "parttime001", "jp-mhlw-qa-b");
        add_user(&g, "recent00001", "jp-mhlw-qa-b");
        // Registered long ago and never signed in (R-ACCT-7: 180 days by default).
        g.sql("UPDATE users SET created_at = 1 WHERE user_id = 'parttime001'");
        g.stop();
        g.serve();
        // The first sweep runs a poll after the start; a loaded machine can take seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let list = run_ok(&["user", "list", "--data-dir", g.data_str()]);
            let line = |id: &str| {
                list.lines()
                    .find(|l| l.starts_with(id))
                    .unwrap_or("")
                    .to_string()
            };
            if line("parttime001").contains("suspended") {
                assert!(line("recent00001").contains("active"), "{db:?}: {list}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{db:?}: not suspended: {list}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        g.wait_audit(|r| r["reason"] == "user_suspended_unused" && r["user"] == "parttime001");
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("jar").to_str().unwrap().to_string();
        let (s, _, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/login",
            &[("id", "parttime001"), ("password", &temp)],
        );
        assert_eq!(s, 401, "{db:?}: a suspended account cannot sign in");
    }
}

#[test]
fn a_wrong_current_password_is_audited_and_a_locked_account_is_signed_out_everywhere() {
    for db in BOTH {
        let g = start(db);
        let dir = tempfile::tempdir().unwrap();
        let jar = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
        assert_eq!(get(&g, "t1", &jar, "/debug/me").0, 200, "{db:?}");
        // A wrong current password on the change page: refused, counted and audited.
        let (s, _, _) = post(
            &g,
            "t1",
            &jar,
            "/.sekisho/password",
            &[
                ("current", "not-the-password"),
                ("new", "Zq9#mm2wLx"),
                ("confirm", "Zq9#mm2wLx"),
            ],
        );
        assert_eq!(s, 401, "{db:?}");
        let v = g.wait_audit(|r| r["reason"] == "password_change_wrong_current");
        assert_eq!(v["user"], "nurse00001");
        assert_eq!(v["terminal"], "t1");
        // Someone guesses the password at another terminal until the account locks: the
        // session on t1 ends at once (R-ACCT-5).
        let other = dir.path().join("guess.jar");
        let other = other.to_str().unwrap();
        for _ in 0..5 {
            post(
                &g,
                "t2",
                other,
                "/.sekisho/login",
                &[("id", "nurse00001"), ("password", "Wrong#pass1")],
            );
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let (s, body) = get(&g, "t1", &jar, "/debug/me");
            if s == 401 {
                assert!(body.contains("signin_required"), "{body}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{db:?}: the locked account's session is still open: {s}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// The sign-in and password forms take posts only from the gateway's own origin, scheme, host
/// and port compared whole: `https://localhost.evil.example` merely starts with the host name.
#[test]
fn sign_in_forms_accept_only_the_gateways_own_origin() {
    for db in BOTH {
        let g = start(db);
        let temp = add_user(&g, "nurse00003", "jp-mhlw-qa-b");
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("jar").to_str().unwrap().to_string();
        let own = format!("Origin: https://localhost:{}", g.port);
        let login = [("id", "nurse00003"), ("password", temp.as_str())];
        let foreign = [
            "Origin: https://localhost.evil.example".to_string(),
            format!("Origin: https://localhost:{}.evil.example", g.port),
            "Origin: https://localhost".to_string(),
            format!("Origin: http://localhost:{}", g.port),
            "Origin: https://localhost:1".to_string(),
            "Origin: null".to_string(),
            "Sec-Fetch-Site: cross-site".to_string(),
            "Sec-Fetch-Site: same-site".to_string(),
        ];
        for h in &foreign {
            let (s, body, _) = post_with(&g, "t1", &jar, "/.sekisho/login", &login, &[h]);
            assert_eq!(s, 403, "{db:?} {h}: {body}");
            assert!(!body.contains("__Host-sekisho="), "{db:?} {h}: signed in");
            assert_eq!(get(&g, "t1", &jar, "/debug/me").0, 401, "{db:?} {h}");
        }
        // From the gateway's own page: signed in, and sent to change the password.
        let (s, _, loc) = post_with(&g, "t1", &jar, "/.sekisho/login", &login, &[&own]);
        assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"), "{db:?}");
        // The password form: the same rule.
        let change = [
            ("current", temp.as_str()),
            ("new", "kx7#Rw2q"),
            ("confirm", "kx7#Rw2q"),
        ];
        for h in &foreign {
            let (s, body, _) = post_with(&g, "t1", &jar, "/.sekisho/password", &change, &[h]);
            assert_eq!(s, 403, "{db:?} {h}: {body}");
        }
        let (s, _, loc) = post_with(&g, "t1", &jar, "/.sekisho/password", &change, &[&own]);
        assert_eq!((s, loc.as_str()), (303, "/"), "{db:?}");
        assert_eq!(get(&g, "t1", &jar, "/debug/me").0, 200, "{db:?}");
    }
}

/// `/.sekisho/auth/status` tells who is signed in by password only to the holder of the
/// session's cookie; another program on the terminal learns that someone is, not who or until
/// when.
#[test]
fn status_names_a_password_session_only_to_its_cookie() {
    for db in BOTH {
        let g = start(db);
        let dir = tempfile::tempdir().unwrap();
        let jar = sign_in(&g, "t1", "nurse00004", "nurse", dir.path());
        let (s, body) = get(&g, "t1", &jar, "/.sekisho/auth/status");
        assert_eq!(s, 200, "{db:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["user"], "nurse00004", "{db:?}");
        assert!(v["expires_at"].is_i64(), "{db:?}: {v}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (s, v) = rt.block_on(call(&g, "t1", "GET", "/.sekisho/auth/status", None));
        assert_eq!(s, 200, "{db:?}");
        assert_eq!(v["signed_in"], true, "{db:?}: {v}");
        assert_eq!(v["method"], "password", "{db:?}: {v}");
        assert!(v["user"].is_null(), "{db:?}: the user id leaked: {v}");
        assert!(
            v.get("expires_at").is_none(),
            "{db:?}: the expiry leaked: {v}"
        );
        assert!(v.get("qualification").is_none(), "{db:?}: {v}");
    }
}
