//! The console's page shell: Japanese first with English beside it, the navigation the
//! person's roles allow, print-ready styles (the access history is printed for the patient),
//! and headers that keep patient data out of caches, frames and other sites.

use http::{HeaderValue, Response, StatusCode, header};
use sekisho_protocol::Reason;

use crate::body::{Body, full};
use crate::html::escape;

/// What the navigation offers; from the policy set's decision for the signed-in person.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allowed {
    pub read_audit: bool,
    pub review: bool,
    pub approve: bool,
    pub findings: bool,
    /// Manages terminals or people of some facility (`admin.cedar`).
    pub manage: bool,
    /// Administers the whole network (people of every facility): care teams and patient
    /// cards, facilities, notices and maintenance.
    pub patients: bool,
}

const STYLE: &str = r#"<style>
body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;margin:0;color:#222;line-height:1.6}
header{background:#1f3a5f;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff;text-decoration:none;padding:.2rem .5rem;border-radius:4px}header a.here{background:#3d6599}
header .who{margin-left:auto;font-size:.9rem}header form{display:inline}header button{font-size:.85rem}
main{padding:1rem 1.5rem;max-width:80rem}h1{font-size:1.3rem;margin:.5rem 0 1rem}h2{font-size:1.05rem;margin-top:1.5rem;border-bottom:1px solid #ccc}
.en{color:#666;font-weight:normal}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:1rem}
.card{border:1px solid #ccc;border-radius:6px;padding:.6rem .9rem}.card .n{font-size:1.8rem;font-weight:bold}
.attn{border-color:#b03a2e;background:#fdf0ee}.ok{color:#1e7b34}.bad{color:#b03a2e;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:.88rem}th,td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f0f3f7}td.mono,.mono{font-family:ui-monospace,monospace;font-size:.82rem;word-break:break-all}
form.filters{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.4rem 1rem;margin-bottom:1rem}
form.filters label{font-size:.85rem}input,select,textarea{font-size:.95rem;padding:.2rem;width:100%;box-sizing:border-box}
button{font-size:.95rem;padding:.3rem 1rem}.msg{color:#b03a2e;font-weight:bold}.done{color:#1e7b34;font-weight:bold}
@media print{header,.noprint,form{display:none}main{max-width:none;padding:0}body{font-size:10pt}}
</style>"#;

/// A whole console page. `here` is the navigation entry to mark.
pub fn page(
    title_ja: &str,
    title_en: &str,
    here: &str,
    user: &str,
    allowed: Allowed,
    body: &str,
) -> String {
    let nav = |href: &str, key: &str, label: &str| {
        format!(
            r#"<a href="{href}"{}>{label}</a>"#,
            if key == here { r#" class="here""# } else { "" }
        )
    };
    let mut links = vec![nav(super::HOME, "home", "ダッシュボード / Dashboard")];
    if allowed.read_audit {
        links.push(nav(super::AUDIT, "audit", "監査ログ / Audit log"));
        links.push(nav(
            super::PATIENT,
            "patient",
            "患者別履歴 / Patient history",
        ));
        links.push(nav(super::STATS, "stats", "利用統計 / Statistics"));
    }
    if allowed.review || allowed.approve {
        links.push(nav(
            super::BREAK_GLASS,
            "breakglass",
            "緊急時アクセス / Emergency access",
        ));
    }
    if allowed.manage {
        links.push(nav(super::TERMINALS, "terminals", "端末 / Terminals"));
        links.push(nav(super::USERS, "users", "利用者 / People"));
        if allowed.patients {
            links.push(nav(
                super::PATIENTS,
                "patients",
                "参加者・カード / Care teams, cards",
            ));
            links.push(nav(
                super::FACILITIES,
                "network",
                "施設・お知らせ / Facilities, notices",
            ));
        }
    }
    format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>{} / {} — Sekisho</title>{STYLE}</head><body>
<header><strong>関所 管理コンソール</strong>{}<span class="who">{}</span><form method="post" action="/.sekisho/logout"><button type="submit">サインアウト / Sign out</button></form></header>
<main><h1>{} <span class="en">/ {}</span></h1>
{body}</main></body></html>"#,
        escape(title_ja),
        escape(title_en),
        links.join(""),
        escape(user),
        escape(title_ja),
        escape(title_en),
    )
}

/// A refusal page of the console (nothing about records in it).
pub fn refusal(reason: Reason, request_id: &str, sign_in_again: bool) -> Response<Body> {
    let link = if sign_in_again {
        format!(
            r#"<p><a href="/.sekisho/login?next={}">サインイン / Sign in</a></p>"#,
            super::HOME
        )
    } else if reason == Reason::ConsoleNotPermitted {
        // Someone else is signed in on this terminal (a physician's card session): the officer
        // signs them out and signs in.
        format!(
            r#"<form method="post" action="/.sekisho/logout" id="switch"><input type="hidden" name="next" value="{}"><button type="submit">サインアウトして別の担当者でサインイン / Sign out and sign in as someone else</button></form>"#,
            super::HOME
        )
    } else {
        String::new()
    };
    let html = format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Sekisho</title>{STYLE}</head><body><main>
<h1>管理コンソール <span class="en">/ Console</span></h1><p class="msg">{}</p><p class="en">{}</p>{link}
<p class="en mono">{} · {}</p></main></body></html>"#,
        escape(reason.ja()),
        escape(reason.en()),
        reason.code(),
        escape(request_id)
    );
    respond(reason.status(), html)
}

/// An HTML answer with the console's headers.
pub fn respond(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    secure(&mut r, "text/html; charset=utf-8");
    r
}

/// The console's headers on any answer: never cached (patient data, R-OPS-3), never framed,
/// no script, forms only to itself, no referrer carrying search terms to another origin (not
/// `no-referrer`: with it Chromium sends `Origin: null` on the console's own form posts, which
/// the cross-site check rightly refuses).
pub fn secure(r: &mut Response<Body>, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

/// A redirect (303) to one of our own paths.
pub fn see_other(to: &str) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, String::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A percent-encoded query value (for links that carry a search).
pub fn q(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}
