//! The emergency page at `/.sekisho/emergency`, Japanese first with English beside it: begin a
//! declaration, find the patient by name, follow it until the card has signed, and draw the
//! patient's signature afterwards. Server-rendered forms; the only script is the signature pad,
//! allowed by a per-page nonce in the Content-Security-Policy. Form posts must come from this
//! page (Origin), and nothing here is cached.

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{DeclarationRequest, EMERGENCY_PREFIX_PATH, PatientMatch};
use sekisho_store::break_glass::{self as rows, status};
use sekisho_store::now;

use super::EmergencyDesk;
use super::follow_up::FollowUp;
use crate::body::{Body, full};
use crate::endpoint::{field, same_origin};
use crate::html::escape;
use crate::sessions::Session;
use crate::signin::Caller;

const HEAD: &str = r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>緊急時アクセス / Emergency access — Sekisho</title>
<style>body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.7;color:#222}
h1{font-size:1.35rem;border-bottom:3px solid #b03a2e;padding-bottom:.3rem}h2{font-size:1.1rem;margin-top:2rem}
.en{color:#555}.box{border:1px solid #ccc;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}.warn{background:#fff4e5;border-color:#e0a060}
label{display:block;margin-top:.6rem}textarea,input[type=text]{width:100%;box-sizing:border-box;font-size:1rem;padding:.3rem}
button{margin-top:.8rem;font-size:1rem;padding:.4rem 1.2rem}code{background:#f3f3f3;padding:.1rem .3rem}
canvas{border:1px solid #888;touch-action:none;background:#fff}.msg{color:#b03a2e}</style></head><body>
<h1>緊急時・災害時アクセス <span class="en">/ Emergency access</span></h1>
<p>患者さんの同意やカードがなくても、緊急時に限り、この操作の記録とHPKIカードの署名を残したうえで、時間を区切って閲覧できます。すべての宣言はセキュリティ管理者が確認します。<br>
<span class="en">In an emergency you may view a patient's records without their consent or card, for a limited time, once the declaration is on record and signed with your HPKI card. Security officers review every declaration.</span></p>"#;

impl EmergencyDesk {
    /// `GET /.sekisho/emergency`.
    pub(super) async fn page(&self, session: &Session, caller: &Caller<'_>) -> Response<Body> {
        self.render(session, caller, None, None, None).await
    }

    /// `POST /.sekisho/emergency`: the page's forms (`op` = begin, search, choose, follow_up).
    pub(super) async fn page_post(
        &self,
        req: Request<Incoming>,
        session: &Session,
        caller: &Caller<'_>,
    ) -> Response<Body> {
        if !same_origin(&req, &self.cfg.hostname) {
            return self
                .render(session, caller, Some(Reason::BadRequest), None, None)
                .await;
        }
        let form = match read_form_large(req).await {
            Ok(f) => f,
            Err(r) => return r,
        };
        let id = field(&form, "declaration").to_string();
        let outcome = match field(&form, "op") {
            "begin" => {
                let patient = field(&form, "patient").trim();
                self.begin_declaration(
                    &DeclarationRequest {
                        category: field(&form, "category").into(),
                        // A browser sends a text box's line breaks as CRLF (the HTML form
                        // encoding); the justification is stored, shown and signed with LF, and
                        // a bare CR is refused as a control character.
                        justification: field(&form, "justification").replace("\r\n", "\n"),
                        patient: (!patient.is_empty()).then(|| patient.to_string()),
                    },
                    session,
                    caller,
                )
                .await
                .map(|_| None)
            }
            "search" => self
                .find_by_name(&id, field(&form, "q"), session, caller)
                .await
                .map(Some),
            "choose" => self
                .choose_patient(&id, field(&form, "patient"), session, caller)
                .await
                .map(|_| None),
            "follow_up" => self
                .record_follow_up(
                    &FollowUp {
                        kind: "signature".into(),
                        content_type: "image/png".into(),
                        data: field(&form, "signature").into(),
                    },
                    &id,
                    session,
                    caller,
                )
                .await
                .map(|_| None),
            _ => Err(Reason::BadRequest),
        };
        match outcome {
            // Search results are this answer's alone (sending the search again only searches
            // again, on record as any search).
            Ok(Some(found)) => {
                self.render(session, caller, None, Some(found), Some(&id))
                    .await
            }
            // A step that changed something is followed by a GET of the page
            // (Post/Redirect/Get): reloading the page, or the page's own refresh while the card
            // is awaited, must not send the step again (a reload after "begin" began a second
            // declaration).
            Ok(None) => see_the_page(),
            Err(reason) => self.render(session, caller, Some(reason), None, None).await,
        }
    }

    async fn render(
        &self,
        session: &Session,
        caller: &Caller<'_>,
        problem: Option<Reason>,
        found: Option<Vec<PatientMatch>>,
        searched_in: Option<&str>,
    ) -> Response<Body> {
        let mut nonce = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut nonce);
        let nonce = hex::encode(nonce);
        let mine: Vec<rows::Declaration> = rows::list(&self.store, &[], None, 50)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.user_id == session.user_id)
            .filter(|d| d.declared_at.is_some() || d.session_id == session.session_id)
            .take(10)
            .collect();
        let mut html = String::from(HEAD);
        if let Some(r) = problem {
            html.push_str(&format!(
                r#"<p class="msg">{} <span class="en">{}</span> <code>{}</code></p>"#,
                r.ja(),
                r.en(),
                r.code()
            ));
        }
        let waiting = mine
            .iter()
            .any(|d| d.status == status::AWAITING_SIGNATURE && d.draft_expires_at > now());
        for d in &mine {
            html.push_str(&self.declaration_box(d, found.as_deref(), searched_in));
        }
        html.push_str(&self.begin_form());
        if mine
            .iter()
            .any(|d| d.follow_up_required && d.follow_up_at.is_none() && d.declared_at.is_some())
        {
            html.push_str(&signature_pad_script(&nonce));
        }
        html.push_str(&format!(
            r#"<p class="en">{} — {}</p></body></html>"#,
            escape(&caller.terminal.terminal),
            escape(&session.user_id)
        ));
        let mut r = Response::new(full(html));
        *r.status_mut() = StatusCode::OK;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        if let Ok(v) = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; img-src data:; form-action 'self'; frame-ancestors 'none'"
        )) {
            h.insert("content-security-policy", v);
        }
        // While the card's signature is awaited, the page looks again every few seconds; not
        // while it shows search results (choosing another patient before the card signs), which
        // a refresh would take away before they could be chosen.
        if waiting
            && found.is_none()
            && let Ok(v) = HeaderValue::from_str("5")
        {
            h.insert("refresh", v);
        }
        r
    }

    fn category_name(&self, code: &str) -> String {
        self.cfg
            .break_glass
            .category(code)
            .map_or(escape(code), |c| {
                format!(
                    "{} <span class=\"en\">/ {}</span>",
                    escape(&c.name_ja),
                    escape(&c.name_en)
                )
            })
    }

    fn declaration_box(
        &self,
        d: &rows::Declaration,
        found: Option<&[PatientMatch]>,
        searched_in: Option<&str>,
    ) -> String {
        let id = escape(&d.id);
        let mut b = format!(
            r#"<div class="box{}"><p><b>{id}</b> — {}<br>"#,
            if d.status == status::ACTIVE {
                " warn"
            } else {
                ""
            },
            self.category_name(&d.category)
        );
        if let Some(p) = &d.patient_id {
            b.push_str(&format!("患者 / Patient: <code>{}</code><br>", escape(p)));
        }
        let (ja, en) = match d.status.as_str() {
            status::CHOOSE_PATIENT => ("患者さんを選んでください", "Choose the patient"),
            status::AWAITING_SIGNATURE => (
                "HPKIカードで署名してください：この端末で sekisho-agent emergency --pending を実行",
                "Sign with your HPKI card: run `sekisho-agent emergency --pending` on this terminal",
            ),
            status::AWAITING_APPROVAL => {
                ("運営者の承認待ち", "Waiting for the operator's approval")
            }
            status::ACTIVE => ("閲覧できます", "Access granted"),
            status::ENDED => ("終了しました", "Ended"),
            status::EXPIRED => ("期限切れ", "Expired"),
            _ => ("承認されませんでした", "Not approved"),
        };
        b.push_str(&format!("{ja} <span class=\"en\">/ {en}</span>"));
        if let Some(e) = d.expires_at.filter(|_| d.status == status::ACTIVE) {
            b.push_str(&format!(
                "<br>終了時刻 <span class=\"en\">/ Ends at</span>: {}",
                escape(&jst(e))
            ));
        }
        b.push_str("</p>");
        if d.status == status::CHOOSE_PATIENT || d.status == status::AWAITING_SIGNATURE {
            b.push_str(&format!(
                r#"<form method="post" action="/.sekisho/emergency" autocomplete="off"><input type="hidden" name="op" value="search"><input type="hidden" name="declaration" value="{id}">
<label>氏名・カナで検索 / Search by name <input type="text" name="q" required maxlength="64"></label><button>検索 / Search</button></form>"#
            ));
            if let Some(found) = found.filter(|_| searched_in == Some(d.id.as_str())) {
                if found.is_empty() {
                    b.push_str("<p>該当する患者さんはいません / No patient found</p>");
                }
                for m in found {
                    b.push_str(&format!(
                        r#"<form method="post" action="/.sekisho/emergency"><input type="hidden" name="op" value="choose"><input type="hidden" name="declaration" value="{id}"><input type="hidden" name="patient" value="{p}"><button>{name} {kana} {birth} {sex} <code>{p}</code></button></form>"#,
                        p = escape(&m.patient),
                        name = escape(&m.name),
                        kana = escape(m.kana.as_deref().unwrap_or("")),
                        birth = escape(m.birth_date.as_deref().unwrap_or("")),
                        sex = escape(m.sex.as_deref().unwrap_or("")),
                    ));
                }
            }
        }
        if d.follow_up_required && d.follow_up_at.is_none() && d.declared_at.is_some() {
            b.push_str(&format!(
                r#"<p>事後に患者さんの同意の署名をいただいてください。<span class="en">Afterwards, obtain the patient's signature.</span></p>
<form method="post" action="/.sekisho/emergency" id="pad-{id}"><input type="hidden" name="op" value="follow_up"><input type="hidden" name="declaration" value="{id}"><input type="hidden" name="signature" value="">
<canvas width="480" height="160" data-pad="{id}"></canvas><p class="msg" data-empty hidden>署名欄に署名していただいてから記録してください。<span class="en">Have the patient sign in the box first.</span></p><button type="submit">署名を記録 / Record the signature</button></form>"#
            ));
        } else if let Some(kind) = &d.follow_up_kind {
            b.push_str(&format!(
                "<p>事後の同意: 記録済み / Follow-up recorded ({})</p>",
                escape(kind)
            ));
        }
        b.push_str("</div>");
        b
    }

    fn begin_form(&self) -> String {
        let mut f = String::from(
            r#"<h2>宣言する <span class="en">/ Declare</span></h2><form method="post" action="/.sekisho/emergency" autocomplete="off"><input type="hidden" name="op" value="begin">"#,
        );
        for (i, c) in self.cfg.break_glass.categories.iter().enumerate() {
            f.push_str(&format!(
                r#"<label><input type="radio" name="category" value="{code}"{checked} required> {ja} <span class="en">/ {en}</span> ({hours} h{approval})</label>"#,
                code = escape(&c.code),
                checked = if i == 0 { " checked" } else { "" },
                ja = escape(&c.name_ja),
                en = escape(&c.name_en),
                hours = c.hours,
                approval = if c.approval { ", 承認が必要 / needs approval" } else { "" },
            ));
        }
        f.push_str(r#"<label>理由（具体的に） / Justification <textarea name="justification" rows="3" maxlength="1000" required></textarea></label>
<label>患者ID（わかる場合） / Patient id, if known <input type="text" name="patient" maxlength="64"></label>
<p class="en">Without an id, you will search by name next.</p><button type="submit">宣言を始める / Begin the declaration</button></form>"#);
        f
    }
}

/// `303 See Other` to the page itself.
fn see_the_page() -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_static(EMERGENCY_PREFIX_PATH),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page for someone who may not declare: what is missing, in both languages.
pub(super) fn refused(reason: Reason, request_id: &str) -> Response<Body> {
    let html = format!(
        r#"{HEAD}<p class="msg">{}<br><span class="en">{}</span></p><p>お問い合わせの際はこの番号をお伝えください / Please quote this number: <code>{}</code> <code>{}</code></p></body></html>"#,
        reason.ja(),
        reason.en(),
        escape(request_id),
        reason.code()
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = reason.status();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    r
}

/// The signature pad: draws on the canvas, puts the PNG in the form before it is sent.
fn signature_pad_script(nonce: &str) -> String {
    format!(
        r#"<script nonce="{nonce}">
for (const c of document.querySelectorAll('canvas[data-pad]')) {{
  const g = c.getContext('2d'); g.lineWidth = 2.5; g.lineCap = 'round'; let down = false, drawn = false;
  g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height); g.strokeStyle = '#000';
  const at = e => {{ const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }};
  c.addEventListener('pointerdown', e => {{ down = true; drawn = true; g.beginPath(); g.moveTo(...at(e)); }});
  c.addEventListener('pointermove', e => {{ if (down) {{ g.lineTo(...at(e)); g.stroke(); }} }});
  for (const ev of ['pointerup', 'pointerleave']) c.addEventListener(ev, () => {{ down = false; }});
  c.closest('form').addEventListener('submit', e => {{
    if (!drawn) {{ e.preventDefault(); c.closest('form').querySelector('[data-empty]').hidden = false; return; }}
    c.closest('form').querySelector('input[name=signature]').value = c.toDataURL('image/png').split(',')[1];
  }});
}}
</script>"#
    )
}

/// A Unix time as `2026-12-04 03:30 JST`.
fn jst(unix: i64) -> String {
    format!("{} JST", crate::oversight::jst(unix))
}

/// The page's forms can carry a drawn signature (a PNG as base64).
async fn read_form_large(req: Request<Incoming>) -> Result<Vec<(String, String)>, Response<Body>> {
    use http_body_util::{BodyExt, Limited};
    match Limited::new(req.into_body(), 4 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(b) => Ok(form_urlencoded::parse(&b.to_bytes()).into_owned().collect()),
        Err(_) => Err(crate::endpoint::error(Reason::TooLarge)),
    }
}
