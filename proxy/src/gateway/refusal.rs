//! Refusals: the record of the refusal is written (durably) first, then the person gets a short
//! page in Japanese and English that says what is wrong and what to do, with the request id to
//! quote to the secretariat — or JSON for API clients. Never an upstream response, and nothing
//! about any patient. The texts are [`Reason`]'s.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use sekisho_audit::Decision;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::EMERGENCY_PREFIX_PATH;
use tracing::warn;

use super::Gateway;
use super::context::RequestCtx;
use crate::body::{Body, full};

impl Gateway {
    /// Refuses the request for `reason`, after its record is durable; if the record cannot be
    /// written, the answer is `audit_unavailable` instead and the record is written later
    /// ([`Gateway::refused_unrecorded`]).
    pub(super) async fn refuse(&self, mut ctx: RequestCtx<'_>, reason: Reason) -> Response<Body> {
        ctx.record.decision = Decision::Deny;
        ctx.record.reason = reason.code().into();
        if let Err(e) = self.audit.append(ctx.record.clone()).await {
            warn!(request_id = ctx.id, error = %e, "audit append failed for a refusal");
            return self.refused_unrecorded(ctx, Some(reason));
        }
        self.metrics.request("deny", reason.code(), ctx.seconds());
        if reason == Reason::Maintenance
            && let Some((_, id)) = ctx.terminal
            && let Some(w) = self.notices.stopping(
                &id.facility,
                &id.terminal,
                ctx.session.as_ref().map(|s| s.user_id.as_str()),
                sekisho_store::now(),
            )
        {
            let mut resp = response_with(
                reason,
                &ctx.id,
                ctx.wants_json,
                Some(crate::notices::maintenance_detail(&w)),
            );
            let wait = (w.ends_at - sekisho_store::now()).max(1);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return resp;
        }
        response(reason, &ctx.id, ctx.wants_json)
    }

    /// A refusal that cannot be recorded because the log itself is what failed.
    pub(super) fn refuse_unrecorded(&self, ctx: &RequestCtx<'_>, reason: Reason) -> Response<Body> {
        self.metrics.request("deny", reason.code(), ctx.seconds());
        response(reason, &ctx.id, ctx.wants_json)
    }
}

/// On the refusals of a patient route where an emergency access could apply (R-BG-1).
const EMERGENCY_LINK: &str = r#"
<p>緊急時・災害時は、HPKIカードでサインインした医師が <a href="/.sekisho/emergency">緊急時アクセス</a> を宣言できます。<br><span class="en" lang="en">In an emergency or a disaster, a physician signed in with an HPKI card can declare an <a href="/.sekisho/emergency">emergency access</a>.</span></p>"#;

/// The refusal page (or JSON, `wants_json`) for `reason`.
pub fn response(reason: Reason, request_id: &str, wants_json: bool) -> Response<Body> {
    response_with(reason, request_id, wants_json, None)
}

/// As [`response`], with a block of the page (already escaped) and the JSON fields that go
/// with it under `detail` (a maintenance window's expected end).
pub fn response_with(
    reason: Reason,
    request_id: &str,
    wants_json: bool,
    detail: Option<(String, serde_json::Value)>,
) -> Response<Body> {
    let (detail_html, detail_json) = detail.unzip();
    // The texts and the code are our own (no markup, nothing from the client); the request id
    // is hex; `detail` is escaped by whoever made it.
    let (ctype, body) = if wants_json {
        let mut v = serde_json::json!({
            "error": reason.code(), "status": reason.status().as_u16(),
            "message_ja": reason.ja(), "message_en": reason.en(), "request_id": request_id,
        });
        if reason.offers_emergency() {
            v["emergency"] = EMERGENCY_PREFIX_PATH.into();
        }
        if let Some(d) = detail_json {
            v["detail"] = d;
        }
        ("application/json", Bytes::from(v.to_string()))
    } else {
        let html = format!(
            r#"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>Sekisho — {status}</title>
<style>body{{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222;line-height:1.7}}
h1{{font-size:1.3rem;border-bottom:3px solid #b03a2e;padding-bottom:.3rem}}.en{{color:#555}}code{{background:#f3f3f3;padding:.1rem .3rem}}</style></head>
<body><h1>アクセスできません <span class="en">/ Access refused</span></h1>
<p>{ja}</p><p class="en" lang="en">{en}</p>{detail}{emergency}
<p>お問い合わせの際はこの番号をお伝えください / Please quote this number when you ask for help:<br><code>{rid}</code> <code>{reason}</code></p>
</body></html>
"#,
            status = reason.status().as_u16(),
            ja = reason.ja(),
            en = reason.en(),
            rid = request_id,
            reason = reason.code(),
            detail = detail_html.unwrap_or_default(),
            emergency = if reason.offers_emergency() {
                EMERGENCY_LINK
            } else {
                ""
            },
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = reason.status();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(crate::headers::REQUEST_ID.clone(), v);
    }
    resp
}

/// Whether the client's Accept prefers JSON over HTML.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn every_reason_has_a_page_and_a_json_answer() {
        for &r in Reason::ALL {
            let page = response(r, "rid", false);
            assert_eq!(page.status(), r.status(), "{r}");
            let html = text(page).await;
            assert!(html.contains(r.ja()) && html.contains(r.en()), "{r}");
            assert!(
                html.contains("<code>rid</code>") && html.contains(r.code()),
                "{r}"
            );
            let json: serde_json::Value =
                serde_json::from_str(&text(response(r, "rid", true)).await).unwrap();
            assert_eq!(json["error"], r.code());
            assert_eq!(json["status"], r.status().as_u16());
        }
    }

    #[test]
    fn json_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/json"),
        );
        assert!(!wants_json(&h));
    }
}
