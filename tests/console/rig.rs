//! What the console tests share: a gateway with terminals t2 and t3, requests with a cookie
//! jar, the response's headers, a page's form token.

#![allow(unused_imports)]

pub(crate) use super::common::*;

/// A GET with the jar; (status, response headers and body).
pub(crate) fn fetch(g: &Gateway, term: &str, jar: &str, path: &str) -> (u16, String) {
    let (c, k) = g.cert(term);
    let (s, text, _) = g.curl(path, &["--cert", &c, "--key", &k, "-b", jar, "-D", "-"]);
    (s, text)
}

pub(crate) fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

pub(crate) fn start(db: Db, replace: Vec<(&'static str, &'static str)>) -> Gateway {
    Gateway::start_prepared(
        db,
        Options {
            replace,
            ..Default::default()
        },
        |g| {
            g.add_terminal("f1", "t2", &g.out);
            g.add_terminal("f1", "t3", &g.out);
        },
    )
}

/// The form token on a console page.
pub(crate) fn token(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a form token on the page")
        .to_string()
}
