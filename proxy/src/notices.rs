//! Notices to the network's users and maintenance windows on a running gateway (issue 13,
//! R-OPS-1). The board holds what the store says is current (`sekisho notice`, `sekisho
//! maintenance`), reloaded when the change counter moves, so a change reaches every replica
//! within a poll; whether a window is in force is decided per request against the clock, so a
//! planned window starts and ends on time without a reload.
//!
//! Terminals read the notices of their facility at `/.sekisho/notices` (a page, or JSON).
//! Each answer forwarded from the application, and each request forwarded to it, carries
//! `sekisho-notices: N` while N notices are shown, so the application can show a banner.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Response, header};
use sekisho_audit::AuditRecord;
use sekisho_store::Store;
use sekisho_store::notices::{self as rows, NewNotice, NoticeRow, kind};

use crate::body::{Body, full};
use crate::html::escape;
use crate::oversight::jst;

/// The header that carries how many notices the terminal's facility is shown.
pub const HEADER: &str = "sekisho-notices";

#[derive(Default)]
pub struct NoticeBoard {
    view: ArcSwap<Vec<NoticeRow>>,
}

impl NoticeBoard {
    pub async fn load(store: &Store) -> Result<Arc<NoticeBoard>> {
        let b = Arc::new(NoticeBoard::default());
        b.reload(store).await?;
        Ok(b)
    }

    pub async fn reload(&self, store: &Store) -> Result<()> {
        let current = rows::current(store)
            .await
            .context("cannot read the notices")?;
        self.view.store(Arc::new(current));
        Ok(())
    }

    /// The maintenance window in force at `t` for `facility` that does not exempt this
    /// terminal or person, if any.
    pub fn stopping(
        &self,
        facility: &str,
        terminal: &str,
        user: Option<&str>,
        t: i64,
    ) -> Option<NoticeRow> {
        self.view
            .load()
            .iter()
            .find(|n| n.in_force(t) && n.for_facility(facility) && !n.exempts(terminal, user))
            .cloned()
    }

    /// What `facility`'s users are shown at `t`, windows first.
    pub fn shown(&self, facility: &str, t: i64) -> Vec<NoticeRow> {
        let mut v: Vec<NoticeRow> = self
            .view
            .load()
            .iter()
            .filter(|n| n.shown(t) && n.for_facility(facility))
            .cloned()
            .collect();
        v.sort_by_key(|n| (!n.is_maintenance(), n.starts_at));
        v
    }

    /// How many notices `facility`'s users are shown at `t`.
    pub fn count_shown(&self, facility: &str, t: i64) -> usize {
        self.view
            .load()
            .iter()
            .filter(|n| n.shown(t) && n.for_facility(facility))
            .count()
    }
}

/// Sets [`HEADER`] to `shown` on `headers`, replacing anything the other side put there.
pub fn mark(headers: &mut http::HeaderMap, shown: usize) {
    headers.remove(HEADER);
    if shown > 0 {
        headers.insert(HEADER, HeaderValue::from(shown));
    }
}

/// A time given at the command line: RFC 3339 (`2026-12-05T22:00:00+09:00`) or, in Japan
/// time, `2026-12-05 22:00`. Unix seconds.
pub fn parse_time(s: &str) -> Result<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    match time::PrimitiveDateTime::parse(s, &fmt) {
        Ok(t) => Ok(t.assume_offset(time::macros::offset!(+9)).unix_timestamp()),
        Err(_) => bail!(
            "{s:?} is not a time: give 2026-12-05T22:00:00+09:00 or, in Japan time, \"2026-12-05 22:00\""
        ),
    }
}

/// Longest text of a notice.
const MAX_TEXT: usize = 1000;

/// A notice's text as given: 1 to 1,000 characters, line breaks but no other control
/// characters.
pub fn checked_text(what: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > MAX_TEXT {
        bail!("{what} must be 1 to {MAX_TEXT} characters");
    }
    if s.chars().any(|c| c.is_control() && c != '\n') {
        bail!("{what} may not hold control characters");
    }
    Ok(s.to_string())
}

/// Facility, terminal or user ids as given.
pub fn checked_ids(what: &str, ids: &[String]) -> Result<Vec<String>> {
    for id in ids {
        if !sekisho_protocol::ids::is_valid_id(id) {
            bail!("{what} {id:?}: an id is 1 to 64 letters, digits, '.', '_' or '-'");
        }
    }
    Ok(ids.to_vec())
}

/// `all facilities`, or their ids.
pub fn audience(f: &[String]) -> String {
    if f.is_empty() {
        "all facilities".into()
    } else {
        f.join(" ")
    }
}

/// The record of a notice or maintenance change (event `operation`).
pub fn operation_record(reason: &str, detail: String) -> AuditRecord {
    AuditRecord {
        event: sekisho_audit::Event::Operation,
        decision: sekisho_audit::Decision::Permit,
        reason: reason.into(),
        detail: Some(detail),
        ..Default::default()
    }
}

/// A notice or a maintenance window asked for — at the command line, in the console or
/// through the management API: checked, recorded and stored the same way everywhere.
#[derive(Clone, Debug)]
pub struct NoticeAsk {
    /// A maintenance window rather than a notice.
    pub maintenance: bool,
    pub ja: String,
    pub en: String,
    /// Unix seconds: a notice is shown from here; a planned window starts here (ignored when
    /// `now`).
    pub start: i64,
    pub end: i64,
    pub facilities: Vec<String>,
    /// Windows only: who keeps going through.
    pub exempt_terminals: Vec<String>,
    pub exempt_users: Vec<String>,
    /// A window in force at once (an emergency), rather than planned.
    pub now: bool,
}

impl NoticeAsk {
    /// A notice shown from `start` until `end`.
    pub fn notice(ja: &str, en: &str, start: i64, end: i64, facilities: Vec<String>) -> NoticeAsk {
        NoticeAsk {
            maintenance: false,
            ja: ja.to_string(),
            en: en.to_string(),
            start,
            end,
            facilities,
            exempt_terminals: vec![],
            exempt_users: vec![],
            now: false,
        }
    }

    /// Checks the texts and ids, that a planned window starts ahead and that the end comes
    /// after the start and is still ahead.
    pub fn checked(mut self) -> Result<NoticeAsk> {
        self.ja = checked_text("the Japanese text", &self.ja)?;
        self.en = checked_text("the English text", &self.en)?;
        self.facilities = checked_ids("facility", &self.facilities)?;
        self.exempt_terminals = checked_ids("exempt terminal", &self.exempt_terminals)?;
        self.exempt_users = checked_ids("exempt user", &self.exempt_users)?;
        let t = sekisho_store::now();
        if self.now {
            self.start = t;
        } else if self.maintenance && self.start <= t {
            bail!("the start is not ahead: to start maintenance now, start it (not schedule)");
        }
        if self.end <= self.start {
            bail!("the end must come after the start");
        }
        if self.end <= t {
            bail!("the end is in the past");
        }
        Ok(self)
    }

    /// Its record, made before it is stored.
    pub fn record(&self) -> AuditRecord {
        let reason = match (self.maintenance, self.now) {
            (false, _) => "notice_added",
            (true, true) => "maintenance_started",
            (true, false) => "maintenance_scheduled",
        };
        let exempt = if self.maintenance {
            format!(
                "; exempt terminals [{}], people [{}]",
                self.exempt_terminals.join(" "),
                self.exempt_users.join(" ")
            )
        } else {
            String::new()
        };
        operation_record(
            reason,
            format!(
                "{} – {} JST for {}{exempt}: {} / {}",
                jst(self.start),
                jst(self.end),
                audience(&self.facilities),
                self.ja,
                self.en
            ),
        )
    }

    /// Stores it; returns its id.
    pub async fn open(&self, store: &Store, created_by: &str) -> Result<String> {
        rows::add(
            store,
            &NewNotice {
                kind: if self.maintenance {
                    kind::MAINTENANCE
                } else {
                    kind::NOTICE
                },
                text_ja: &self.ja,
                text_en: &self.en,
                starts_at: self.start,
                ends_at: self.end,
                audience: &self.facilities,
                exempt_terminals: &self.exempt_terminals,
                exempt_users: &self.exempt_users,
                start_now: self.maintenance && self.now,
                created_by,
            },
        )
        .await
    }
}

/// The windows in force now (what "end the maintenance" ends when no id is given).
pub async fn in_force(store: &Store) -> Result<Vec<String>> {
    let t = sekisho_store::now();
    Ok(rows::current(store)
        .await?
        .into_iter()
        .filter(|n| n.in_force(t))
        .map(|n| n.id)
        .collect())
}

/// Ends window `id` now; an error when it is not a window that runs or is planned.
pub async fn end_window(store: &Store, id: &str) -> Result<()> {
    if rows::end(store, id, kind::MAINTENANCE).await? {
        Ok(())
    } else {
        bail!("no maintenance window {id} that is not ended already (see `sekisho notice list`)")
    }
}

/// One notice or window as JSON (times in Unix seconds and in Japan time).
fn json(n: &NoticeRow) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "kind": n.kind,
        "text_ja": n.text_ja,
        "text_en": n.text_en,
        "starts_at": n.window_start(),
        "ends_at": n.ends_at,
        "starts_jst": jst(n.window_start()),
        "ends_jst": jst(n.ends_at),
    })
}

/// The HTML of the 503 page's block for a window, and its JSON fields.
pub fn maintenance_detail(w: &NoticeRow) -> (String, serde_json::Value) {
    let html = format!(
        r#"<p><strong>終了予定 / Expected end: {}</strong> (JST)</p><p>{}</p><p class="en" lang="en">{}</p>"#,
        jst(w.ends_at),
        escape(&w.text_ja),
        escape(&w.text_en)
    );
    (html, json(w))
}

/// `/.sekisho/notices`: the notices for the terminal's facility.
pub fn page(shown: &[NoticeRow], wants_json: bool) -> Response<Body> {
    let (ctype, body) = if wants_json {
        let v = serde_json::json!({ "notices": shown.iter().map(json).collect::<Vec<_>>() });
        ("application/json", v.to_string())
    } else {
        let mut items = String::new();
        for n in shown {
            let label = if n.is_maintenance() {
                "メンテナンス / Maintenance"
            } else {
                "お知らせ / Notice"
            };
            items.push_str(&format!(
                r#"<li><p class="when">{label}: {} – {} (JST)</p><p>{}</p><p class="en" lang="en">{}</p></li>"#,
                jst(n.window_start()),
                jst(n.ends_at),
                escape(&n.text_ja),
                escape(&n.text_en)
            ));
        }
        if items.is_empty() {
            items.push_str("<li>現在お知らせはありません / No notices now</li>");
        }
        (
            "text/html; charset=utf-8",
            format!(
                r#"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>お知らせ / Notices — Sekisho</title>
<style>body{{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.7}}
h1{{font-size:1.3rem;border-bottom:3px solid #2e6db0}}ul{{list-style:none;padding:0}}li{{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:.8rem 0}}.when{{font-weight:bold}}.en{{color:#555}}</style></head>
<body><h1>お知らせ <span class="en">/ Notices</span></h1><ul>{items}</ul></body></html>
"#
            ),
        )
    };
    let mut resp = Response::new(full(Bytes::from(body)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_rfc3339_or_japan_time() {
        assert_eq!(parse_time("2026-12-05T13:00:00Z").unwrap(), 1_796_475_600);
        assert_eq!(parse_time("2026-12-05 22:00").unwrap(), 1_796_475_600);
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("2026-13-05 22:00").is_err());
    }

    #[tokio::test]
    async fn the_page_escapes_what_the_secretariat_wrote() {
        let n = NoticeRow {
            id: "N1".into(),
            kind: "notice".into(),
            text_ja: "<script>alert(1)</script>".into(),
            text_en: "a & b".into(),
            starts_at: 0,
            ends_at: 10,
            audience: vec![],
            exempt_terminals: vec![],
            exempt_users: vec![],
            started_at: None,
            ended_at: None,
            created_by: "x".into(),
            created_at: 0,
        };
        use http_body_util::BodyExt;
        let body = page(&[n], false)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
        assert!(body.contains("a &amp; b"));
    }
}
