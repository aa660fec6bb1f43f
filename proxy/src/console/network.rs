//! The secretariat's network page: facilities — list, suspend, resume, each with its reason
//! (R-LOG-3) — and notices to users and maintenance windows — post a notice, take one down,
//! start an emergency maintenance, end one (R-OPS-1). For those who administer the whole
//! network (`admin.cedar`: the secretariat); the store writes are the command line's
//! (`crate::facilities`, `crate::notices`), each on record first. Closing a facility (it
//! revokes its terminals with the CA's key) and planning a window stay at the command line.

use std::fmt::Write;

use http::Response;
use sekisho_audit::AuditRecord;
use sekisho_protocol::Reason;
use sekisho_store::facilities::{self as rows, Change, FacilityStatus};
use sekisho_store::notices::{self as notice_rows, kind};

use super::layout::q;
use super::{Console, FACILITIES, Visit};
use crate::body::Body;
use crate::endpoint::field;
use crate::html::escape;
use crate::notices::{NoticeAsk, audience, checked_ids, end_window, operation_record, parse_time};
use crate::oversight::{NotMade, act_over, jst, recorded};

/// A `datetime-local` field (`2026-12-05T22:00`, Japan time) as Unix seconds.
fn local_time(s: &str) -> Result<i64, NotMade> {
    parse_time(&s.trim().replacen('T', " ", 1)).map_err(|_| {
        NotMade::new(
            Reason::BadRequest,
            "日時を入力してください / give a date and time",
        )
    })
}

fn bad(e: anyhow::Error) -> NotMade {
    NotMade::new(Reason::BadRequest, e.to_string())
}

impl Console {
    /// `act` as the signed-in person's, over this request's record.
    fn act_record(&self, v: &Visit<'_>, act: AuditRecord) -> AuditRecord {
        AuditRecord {
            actor: Some(v.who.actor()),
            ..act_over(act, v.record())
        }
    }

    pub(super) async fn network_page(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
    ) -> Response<Body> {
        let (facilities, notices) = match (
            rows::list(&self.store).await,
            notice_rows::current(&self.store).await,
        ) {
            (Ok(f), Ok(n)) => (f, n),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot list facilities or notices");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        let mut out = String::new();
        if let Some(done) = super::param(query, "done").and_then(done_text) {
            write!(out, r#"<p class="done" id="done">{done}</p>"#).ok();
        }
        out.push_str(r#"<h2>施設 <span class="en">/ Facilities</span></h2><table id="facilities"><tr><th>施設 / facility</th><th>名称 / name</th><th>種別 / kind</th><th>状態 / status</th><th>端末 / terminals</th><th>利用者 / people</th><th>理由 / reason</th><th>操作 / act</th></tr>"#);
        for f in &facilities {
            let act = match f.status {
                FacilityStatus::Active => Some(("suspend", "施設を停止 / Suspend")),
                FacilityStatus::Suspended => Some(("resume", "再開 / Resume")),
                FacilityStatus::Closed => None,
            };
            let form = act.map_or_else(
                || "-".to_string(),
                |(op, label)| {
                    format!(
                        r#"<form method="post" action="{FACILITIES}/{}">{}<input name="reason" required maxlength="500" placeholder="理由 / reason"> <button name="op" value="{op}">{label}</button></form>"#,
                        q(&f.facility),
                        v.token_field()
                    )
                },
            );
            write!(
                out,
                r#"<tr id="facility-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{form}</td></tr>"#,
                escape(&f.facility),
                escape(&f.facility),
                escape(&f.name),
                escape(&f.kind),
                f.status.as_str(),
                f.terminals,
                f.people,
                escape(f.note.as_deref().unwrap_or("")),
            )
            .ok();
        }
        out.push_str("</table><p class=\"en\">施設の停止は、その施設の端末の接続と利用者のセッションをすべてのゲートウェイで直ちに終了します。閉鎖(証明書の失効)はコマンドラインで行います: <code>sekisho facility close</code> / Suspending ends the facility's connections and sessions on every gateway at once. Closing a facility (its certificates are revoked) is done at the command line.</p>");
        let t = sekisho_store::now();
        out.push_str(r#"<h2>お知らせとメンテナンス <span class="en">/ Notices and maintenance</span></h2><table id="notices"><tr><th>ID</th><th>種類 / kind</th><th>状態 / state</th><th>開始 / from (JST)</th><th>終了 / until (JST)</th><th>対象 / for</th><th>内容 / text</th><th>操作 / act</th></tr>"#);
        for n in &notices {
            let (state, op, label) = if n.is_maintenance() {
                if n.in_force(t) {
                    ("実施中 / in force", "end", "終了 / End now")
                } else {
                    ("予定 / planned", "end", "取り消し / Cancel")
                }
            } else if n.shown(t) {
                ("掲示中 / shown", "remove", "取り下げ / Take down")
            } else {
                ("予定 / upcoming", "remove", "取り下げ / Take down")
            };
            write!(
                out,
                r#"<tr id="notice-{}"><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br><span class="en">{}</span></td><td><form method="post" action="{FACILITIES}">{}<input type="hidden" name="id" value="{}"><button name="op" value="{op}">{label}</button></form></td></tr>"#,
                escape(&n.id),
                escape(&n.id),
                escape(&n.kind),
                jst(n.window_start()),
                jst(n.ends_at),
                escape(&audience(&n.audience)),
                escape(&n.text_ja),
                escape(&n.text_en),
                v.token_field(),
                escape(&n.id),
            )
            .ok();
        }
        write!(
            out,
            r#"</table>
<h3>お知らせを掲示 <span class="en">/ Post a notice</span></h3>
<form method="post" action="{FACILITIES}" id="post-notice">{tok}<input type="hidden" name="op" value="notice">
<label>日本語 / Japanese <textarea name="ja" required maxlength="1000"></textarea></label>
<label>English <textarea name="en" required maxlength="1000"></textarea></label>
<label>掲示終了 / shown until (JST) <input type="datetime-local" name="until" required></label>
<label>施設(空欄は全施設) / facility (empty: all) <input name="facility" maxlength="64"></label>
<button type="submit">掲示 / Post</button></form>
<h3>緊急メンテナンスを開始 <span class="en">/ Start an emergency maintenance now</span></h3>
<form method="post" action="{FACILITIES}" id="start-maintenance">{tok}<input type="hidden" name="op" value="maintenance">
<label>日本語 / Japanese <textarea name="ja" required maxlength="1000"></textarea></label>
<label>English <textarea name="en" required maxlength="1000"></textarea></label>
<label>終了予定 / expected end (JST) <input type="datetime-local" name="until" required></label>
<label>施設(空欄は全施設) / facility (empty: all) <input name="facility" maxlength="64"></label>
<label>作業用の端末(任意) / terminal that keeps working (optional) <input name="exempt_terminal" maxlength="64"></label>
<button type="submit">開始 / Start</button></form>
<p class="en">計画メンテナンスの予約はコマンドラインで行います: <code>sekisho maintenance schedule</code> / Planned windows are scheduled at the command line.</p>"#,
            tok = v.token_field()
        )
        .ok();
        v.page("施設とお知らせ", "Facilities and notices", "network", &out)
    }

    /// `POST /.sekisho/console/facilities[/F]` (token checked, network administration).
    pub(super) async fn network_act(
        &self,
        v: &Visit<'_>,
        facility: Option<&str>,
        form: &[(String, String)],
    ) -> Response<Body> {
        let op = field(form, "op");
        let done = match (facility, op) {
            (Some(f), "suspend" | "resume") => self.facility_act(v, f, op, form).await,
            (None, "notice") => self.post_notice(v, form).await,
            (None, "maintenance") => self.start_maintenance(v, form).await,
            (None, "remove" | "end") => self.end_notice(v, op, field(form, "id").trim()).await,
            _ => return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
        };
        match done {
            Ok(()) => super::layout::see_other(&format!("{FACILITIES}?done={op}")),
            Err(e) => self.not_made(v, e),
        }
    }

    async fn facility_act(
        &self,
        v: &Visit<'_>,
        facility: &str,
        op: &str,
        form: &[(String, String)],
    ) -> Result<(), NotMade> {
        let note = crate::facilities::check_note(field(form, "reason")).map_err(bad)?;
        let change = if op == "suspend" {
            Change::Suspend
        } else {
            Change::Resume
        };
        let rec = self.act_record(v, crate::facilities::record(facility, change, note));
        recorded(
            &self.audit,
            rec,
            crate::facilities::change_status(&self.store, None, facility, change, note),
        )
        .await
        .map(|_| ())
    }

    async fn post_notice(&self, v: &Visit<'_>, form: &[(String, String)]) -> Result<(), NotMade> {
        let ask = NoticeAsk::notice(
            field(form, "ja"),
            field(form, "en"),
            sekisho_store::now(),
            local_time(field(form, "until"))?,
            one_id("facility", field(form, "facility"))?,
        );
        self.add(v, ask).await
    }

    /// Checks, records (as the clerk's act) and stores a notice or window.
    async fn add(&self, v: &Visit<'_>, ask: NoticeAsk) -> Result<(), NotMade> {
        let ask = ask.checked().map_err(bad)?;
        let rec = self.act_record(v, ask.record());
        let by = v.session.user_id.clone();
        recorded(&self.audit, rec, ask.open(&self.store, &by))
            .await
            .map(|_| ())
    }

    async fn start_maintenance(
        &self,
        v: &Visit<'_>,
        form: &[(String, String)],
    ) -> Result<(), NotMade> {
        let ask = NoticeAsk {
            maintenance: true,
            ja: field(form, "ja").to_string(),
            en: field(form, "en").to_string(),
            start: 0,
            end: local_time(field(form, "until"))?,
            facilities: one_id("facility", field(form, "facility"))?,
            exempt_terminals: one_id("terminal", field(form, "exempt_terminal"))?,
            exempt_users: vec![],
            now: true,
        };
        self.add(v, ask).await
    }

    async fn end_notice(&self, v: &Visit<'_>, op: &str, id: &str) -> Result<(), NotMade> {
        let (reason, what) = if op == "end" {
            ("maintenance_ended", kind::MAINTENANCE)
        } else {
            ("notice_removed", kind::NOTICE)
        };
        let rec = self.act_record(v, operation_record(reason, id.to_string()));
        recorded(&self.audit, rec, async {
            if what == kind::MAINTENANCE {
                end_window(&self.store, id).await
            } else if notice_rows::end(&self.store, id, kind::NOTICE).await? {
                Ok(())
            } else {
                anyhow::bail!("no notice {id} that is not taken down already")
            }
        })
        .await
    }
}

/// An optional id field: none, or one checked id.
fn one_id(what: &str, s: &str) -> Result<Vec<String>, NotMade> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(vec![]);
    }
    checked_ids(what, &[s.to_string()]).map_err(bad)
}

fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "suspend" => {
            "施設を停止しました。すべてのゲートウェイで1秒以内に反映されます。 / The facility is suspended: every gateway applies it within a second."
        }
        "resume" => "施設を再開しました。 / The facility is resumed.",
        "notice" => "お知らせを掲示しました。 / The notice is posted.",
        "maintenance" => {
            "メンテナンスを開始しました。 / Maintenance is in force: every gateway applies it within a second."
        }
        "end" => "メンテナンスを終了しました。 / The maintenance is ended.",
        "remove" => "お知らせを取り下げました。 / The notice is taken down.",
        _ => return None,
    })
}
