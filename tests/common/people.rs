//! ID and password sign-in through the gateway's pages, with curl as the browser.

#![allow(dead_code)]

use std::path::Path;

use super::*;

// ---- ID and password sign-in through the gateway's pages, with curl as the browser ----

pub fn add_user(g: &Gateway, id: &str, profile: &str) -> String {
    let out = run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        id,
        "--name",
        "看護 花子",
        "--facility",
        "f1",
        "--roles",
        "nurse",
        "--password-profile",
        profile,
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("Temporary password for {id}: ")))
        .expect("temporary password printed")
        .trim()
        .to_string()
}

/// POST a form as terminal `term` with a cookie jar; (status, body, Location).
pub fn post(
    g: &Gateway,
    term: &str,
    jar: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    post_with(g, term, jar, path, fields, &[])
}

/// As [`post`], with extra request headers (`"Origin: https://…"`).
pub fn post_with(
    g: &Gateway,
    term: &str,
    jar: &str,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[&str],
) -> (u16, String, String) {
    let (c, k) = g.cert(term);
    let mut args: Vec<String> = vec![
        "--cert".into(),
        c,
        "--key".into(),
        k,
        "-c".into(),
        jar.into(),
        "-b".into(),
        jar.into(),
        "-D".into(),
        "-".into(),
    ];
    for h in headers {
        args.push("-H".into());
        args.push((*h).into());
    }
    for (n, v) in fields {
        args.push("--data-urlencode".into());
        args.push(format!("{n}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (s, body, _) = g.curl(path, &args);
    let location = body
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .trim()
        .to_string();
    (s, body, location)
}

pub fn get(g: &Gateway, term: &str, jar: &str, path: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    let (s, body, _) = g.curl(path, &["--cert", &c, "--key", &k, "-b", jar]);
    (s, body)
}

/// Adds a user with a password, signs them in on `term` with a cookie jar and sets their own
/// password; returns the jar's path.
pub fn sign_in(g: &Gateway, term: &str, id: &str, roles: &str, dir: &Path) -> String {
    sign_in_at(g, term, id, roles, "f1", dir)
}

/// As [`sign_in`], for a user of `facility`.
pub fn sign_in_at(
    g: &Gateway,
    term: &str,
    id: &str,
    roles: &str,
    facility: &str,
    dir: &Path,
) -> String {
    let out = run_ok(&[
        "user",
        "add",
        "--data-dir",
        g.data_str(),
        "--id",
        id,
        "--name",
        "職員",
        "--facility",
        facility,
        "--roles",
        roles,
        "--password-profile",
        "jp-mhlw-qa-b",
    ]);
    let temp = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Temporary password for {id}: ")))
        .unwrap()
        .trim()
        .to_string();
    let jar = dir.join(format!("{id}.jar")).to_str().unwrap().to_string();
    let (s, _, loc) = post(
        g,
        term,
        &jar,
        "/.sekisho/login",
        &[("id", id), ("password", &temp)],
    );
    assert_eq!((s, loc.as_str()), (303, "/.sekisho/password"));
    let (s, _, _) = post(
        g,
        term,
        &jar,
        "/.sekisho/password",
        &[
            ("current", &temp),
            ("new", "kx7#Rw2q"),
            ("confirm", "kx7#Rw2q"),
        ],
    );
    assert_eq!(s, 303);
    jar
}

// ---- vpcd virtual readers (pcscd + vsmartcard-vpcd) ----
