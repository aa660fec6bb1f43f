//! Who gets into the console; its form tokens, headers and idle timeout.

use super::rig::*;

/// Only a registered terminal with a signed-in officer or secretariat member gets in; anyone
/// else signed in is refused on record; nobody signed in is sent to the sign-in page, which
/// leads back to the console.
#[test]
fn the_console_is_for_officers_and_the_secretariat() {
    for db in BOTH {
        let g = start(db, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody.jar");
        let nobody = nobody.to_str().unwrap();
        let (s, text) = fetch(&g, "t1", nobody, "/.sekisho/console/");
        assert_eq!(s, 303, "{db:?}: {text}");
        assert_eq!(
            header(&text, "location"),
            "/.sekisho/login?next=/.sekisho/console/"
        );
        // The sign-in page carries the way back, and only to the console.
        let (_, page) = get(&g, "t1", nobody, "/.sekisho/login?next=/.sekisho/console/");
        assert!(
            page.contains(r#"<input type="hidden" name="next" value="/.sekisho/console/">"#),
            "{page}"
        );
        let (_, page) = get(
            &g,
            "t1",
            nobody,
            "/.sekisho/login?next=https://evil.example/",
        );
        assert!(!page.contains("name=\"next\""), "{page}");

        // A nurse is signed in, but the console is not hers.
        let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
        let (s, text) = fetch(&g, "t1", &nurse, "/.sekisho/console/");
        assert_eq!(s, 403, "{db:?}: {text}");
        assert!(text.contains("console_not_permitted"), "{text}");
        let refused = g.wait_audit(|r| r["reason"] == "console_not_permitted");
        assert_eq!(refused["user"], "nurse00001");
        assert_eq!(refused["terminal"], "t1");
        assert_eq!(refused["decision"], "deny");

        // A security officer, signed in with a password, leads to the console.
        let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
        let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
        assert_eq!(s, 200, "{db:?}: {text}");
        assert!(text.contains("ダッシュボード"), "{text}");
        assert!(text.contains("id=\"audit-health\""), "{text}");
        assert_eq!(header(&text, "cache-control"), "no-store, max-age=0");
        assert!(header(&text, "content-security-policy").starts_with("default-src 'none'"));
        assert_eq!(header(&text, "x-frame-options"), "DENY");
        assert_eq!(header(&text, "referrer-policy"), "same-origin");
        // Their cookie is theirs on t2 only.
        let (s, _) = fetch(&g, "t3", &officer, "/.sekisho/console/");
        assert_eq!(s, 403, "{db:?}: a cookie of t2's session on t3");

        // The secretariat reads the audit log too.
        let clerk = sign_in(&g, "t3", "secretary001", "secretariat", dir.path());
        let (s, text) = fetch(&g, "t3", &clerk, "/.sekisho/console/audit");
        assert_eq!(s, 200, "{db:?}: {text}");
        // The dashboard says when the log was last verified, as the run recorded itself.
        let (_, home) = get(&g, "t3", &clerk, "/.sekisho/console/");
        assert!(
            home.contains(r#"<span class="bad" id="last-verify">未実施 / never run"#),
            "{home}"
        );
        let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
        assert!(out.contains("audit log OK"), "{out}");
        let (_, home) = get(&g, "t3", &clerk, "/.sekisho/console/");
        assert!(home.contains("正常 / OK</span>"), "{db:?}: {home}");
        let rec = g.wait_audit(|r| r["reason"] == "audit_verified");
        assert!(
            rec["actor"].as_str().unwrap().starts_with(TEST_OPERATOR),
            "{rec}"
        );
    }
}

/// A console form needs this session's token and this origin; a console left alone longer than
/// `[console] idle_seconds` ends the session (on record), and the next visit is a sign-in.
#[test]
fn console_forms_need_the_token_and_an_idle_console_signs_out() {
    let g = start(Db::Sqlite, vec![("idle_seconds = 900", "idle_seconds = 2")]);
    let dir = tempfile::tempdir().unwrap();
    let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
    let (s, _) = get(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 200);
    let act = "/.sekisho/console/breakglass/bg-none";
    let (s, body, _) = post(&g, "t2", &officer, act, &[("op", "end"), ("reason", "x")]);
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("console_form_expired"), "{body}");
    let (s, body, _) = post(
        &g,
        "t2",
        &officer,
        act,
        &[
            ("op", "end"),
            ("reason", "x"),
            ("csrf", "0123456789abcdef0123456789abcdef"),
        ],
    );
    assert_eq!(s, 403, "{body}");
    let (s, body, _) = post_with(
        &g,
        "t2",
        &officer,
        act,
        &[("op", "end")],
        &["Origin: https://evil.example"],
    );
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("cross_site_request"), "{body}");

    std::thread::sleep(std::time::Duration::from_millis(3200));
    let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("console_idle"), "{text}");
    let ended = g.wait_audit(|r| r["reason"] == "console_idle");
    assert_eq!(ended["user"], "officer0001");
    assert_eq!(ended["event"], "auth");
    let (s, text) = fetch(&g, "t2", &officer, "/.sekisho/console/");
    assert_eq!(s, 303, "{text}");
    assert_eq!(
        header(&text, "location"),
        "/.sekisho/login?next=/.sekisho/console/"
    );
}
