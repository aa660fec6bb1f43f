//! The sign-in and password pages: plain forms, Japanese first with English beside it, that
//! browsers must not remember (R-ACCT-3), with a strict Content-Security-Policy.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::html;

pub(super) const ORIGIN_MSG: &str = "この画面から操作してください。 / Please use this page.";
pub(super) const GENERIC_FAILURE: &str = "IDまたはパスワードが正しくありません。続く場合は事務局にお問い合わせください。 / The ID or password is not correct. If this keeps happening, contact the secretariat.";

const PAGE_HEAD: &str = r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>Sekisho</title>
<style>body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.7}label{display:block;margin-top:1rem}input{font-size:1.1rem;padding:.3rem;width:100%;box-sizing:border-box}button{margin-top:1.5rem;font-size:1.1rem;padding:.4rem 1.5rem}.msg{color:#b03a2e}.en{color:#555}</style></head><body>"#;

pub(super) fn login_form(msg: Option<&str>) -> String {
    login_form_to(msg, None)
}

/// Where a sign-in may lead other than the network's application: the officers' console
/// (its pages send people here with `?next=`). Nothing else, so the form is no open redirect.
pub(super) fn next_page(asked: &str) -> Option<&'static str> {
    asked
        .starts_with(crate::console::HOME)
        .then_some(crate::console::HOME)
}

/// The sign-in form; after signing in the browser goes to `next`, or to the application.
pub(super) fn login_form_to(msg: Option<&str>, next: Option<&'static str>) -> String {
    // autocomplete=off: browsers must not keep IDs or passwords (R-ACCT-3).
    format!(
        r#"{PAGE_HEAD}<h1>サインイン <span class="en">/ Sign in</span></h1>{}
<p>HPKIカードをお持ちの方は、端末のカードリーダーに挿入してください。<br><span class="en">With an HPKI card, insert it into this terminal's reader instead.</span></p>
<form method="post" action="/.sekisho/login" autocomplete="off">{}
<label>ID <input name="id" required autocomplete="off" autocapitalize="off" spellcheck="false"></label>
<label>パスワード / Password <input name="password" type="password" required autocomplete="off"></label>
<button type="submit">サインイン / Sign in</button></form></body></html>"#,
        msg.map(|m| format!(r#"<p class="msg">{}</p>"#, html::escape(m)))
            .unwrap_or_default(),
        next.map(|n| format!(r#"<input type="hidden" name="next" value="{n}">"#))
            .unwrap_or_default()
    )
}

pub(super) fn password_form(msg: Option<&str>) -> String {
    format!(
        r#"{PAGE_HEAD}<h1>パスワードの変更 <span class="en">/ Change password</span></h1>{}
<form method="post" action="/.sekisho/password" autocomplete="off">
<label>現在のパスワード / Current password <input name="current" type="password" required autocomplete="off"></label>
<label>新しいパスワード / New password <input name="new" type="password" required autocomplete="off"></label>
<label>もう一度 / Again <input name="confirm" type="password" required autocomplete="off"></label>
<button type="submit">変更 / Change</button></form></body></html>"#,
        msg.map(|m| format!(r#"<p class="msg">{}</p>"#, html::escape(m)))
            .unwrap_or_default()
    )
}

pub(super) fn page(status: StatusCode, html: &str) -> Response<Body> {
    let mut r = Response::new(full(html.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}
