//! A record as an IHE ATNA audit message: the DICOM Audit Message of PS3.15 A.5 (the XML that
//! ATNA audit record repositories, JAHIS-conformant hospital SIEMs and the IHE tools read),
//! validated in the tests against the schema in `schemas/`.
//!
//! Every value comes from a record, and records carry what terminals sent (paths, names):
//! each one is escaped for XML, and characters XML 1.0 cannot carry at all become U+FFFD.

use std::fmt::Write;

use sekisho_audit::AuditRecord;

use crate::Identity;
use crate::codes::{self, Dcm};

/// The XML of one audit message (no declaration: RFC 5425 carries the message after a BOM).
pub fn message(rec: &AuditRecord, id: &Identity) -> String {
    let mut x = String::with_capacity(1024);
    let (event, event_type) = codes::event(rec);
    x.push_str("<AuditMessage>");
    let _ = write!(
        x,
        r#"<EventIdentification EventActionCode="{}" EventDateTime="{}" EventOutcomeIndicator="{}">"#,
        codes::action(rec),
        attr(&rec.time),
        codes::outcome(rec)
    );
    coded(&mut x, "EventID", event);
    if let Some(t) = event_type {
        coded(&mut x, "EventTypeCode", t);
    }
    if !rec.reason.is_empty() {
        let _ = write!(
            x,
            "<EventOutcomeDescription>{}</EventOutcomeDescription>",
            text(&rec.reason)
        );
    }
    if codes::emergency(rec) {
        x.push_str(r#"<PurposeOfUse csd-code="ETREAT" codeSystemName="2.16.840.1.113883.5.8" originalText="Emergency Treatment"/>"#);
    }
    x.push_str("</EventIdentification>");

    // The person, when one was signed in: the requestor.
    if let Some(user) = &rec.user {
        let _ = write!(
            x,
            r#"<ActiveParticipant UserID="{}" UserIsRequestor="true""#,
            attr(user)
        );
        x.push('>');
        if let Some(q) = &rec.qualification {
            let _ = write!(
                x,
                r#"<RoleIDCode csd-code="{0}" codeSystemName="Sekisho qualification" originalText="{0}"/>"#,
                attr(q)
            );
        }
        x.push_str("</ActiveParticipant>");
    }
    // The terminal, the requestor when nobody signed in, and the application behind the
    // gateway: which is the Source and which the Destination follows the data (`codes::roles`).
    let (terminal_role, application_role) = codes::roles(rec);
    let source = rec
        .terminal
        .as_deref()
        .or(rec.actor.as_deref())
        .unwrap_or("-");
    let _ = write!(x, r#"<ActiveParticipant UserID="{}""#, attr(source));
    if let Some(f) = &rec.facility {
        let _ = write!(x, r#" AlternativeUserID="{}""#, attr(f));
    }
    let _ = write!(x, r#" UserIsRequestor="{}""#, rec.user.is_none());
    if let Some(a) = codes::peer_address(rec) {
        let _ = write!(
            x,
            r#" NetworkAccessPointID="{}" NetworkAccessPointTypeCode="2""#,
            attr(&a)
        );
    }
    x.push('>');
    coded(&mut x, "RoleIDCode", terminal_role);
    x.push_str("</ActiveParticipant>");
    let _ = write!(
        x,
        r#"<ActiveParticipant UserID="{}" UserIsRequestor="false">"#,
        attr(rec.route.as_deref().unwrap_or(&id.node_or(rec)))
    );
    coded(&mut x, "RoleIDCode", application_role);
    x.push_str("</ActiveParticipant>");

    let _ = write!(
        x,
        r#"<AuditSourceIdentification AuditEnterpriseSiteID="{}" AuditSourceID="{}">"#,
        attr(&id.site),
        attr(&id.node_or(rec))
    );
    // 4: Application Server process tier in a multi-tier system.
    x.push_str(r#"<AuditSourceTypeCode csd-code="4"/>"#);
    x.push_str("</AuditSourceIdentification>");

    if let Some(p) = &rec.patient {
        let _ = write!(
            x,
            r#"<ParticipantObjectIdentification ParticipantObjectID="{}" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">"#,
            attr(&id.patient_cx(p))
        );
        x.push_str(r#"<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>"#);
        // DICOM wants a name or a query here. The gateway never holds patients' names (and
        // should not put them in every SIEM): the id stands in for the name.
        let _ = write!(
            x,
            "<ParticipantObjectName>{}</ParticipantObjectName>",
            text(p)
        );
        x.push_str("</ParticipantObjectIdentification>");
    }
    // The request itself, so a SIEM can join the message to the gateway's own log.
    let _ = write!(
        x,
        r#"<ParticipantObjectIdentification ParticipantObjectID="{}" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="24">"#,
        attr(if rec.request_id.is_empty() {
            "-"
        } else {
            &rec.request_id
        })
    );
    x.push_str(r#"<ParticipantObjectIDTypeCode csd-code="12" codeSystemName="RFC-3881" originalText="URI"/>"#);
    match &rec.path {
        Some(path) => {
            let _ = write!(
                x,
                "<ParticipantObjectQuery>{}</ParticipantObjectQuery>",
                base64(path.as_bytes())
            );
        }
        None => {
            let _ = write!(
                x,
                "<ParticipantObjectName>{}</ParticipantObjectName>",
                text(rec.action.as_deref().unwrap_or(rec.event.as_str()))
            );
        }
    }
    for (k, v) in [
        ("method", rec.method.as_deref()),
        ("action", rec.action.as_deref()),
        ("break_glass_id", rec.break_glass_id.as_deref()),
        ("cert_serial", rec.cert_serial.as_deref()),
        ("detail", rec.detail.as_deref()),
    ] {
        if let Some(v) = v {
            let _ = write!(
                x,
                r#"<ParticipantObjectDetail type="{k}" value="{}"/>"#,
                base64(v.as_bytes())
            );
        }
    }
    x.push_str("</ParticipantObjectIdentification>");
    x.push_str("</AuditMessage>");
    x
}

fn coded(x: &mut String, element: &str, c: Dcm) {
    let _ = write!(
        x,
        r#"<{element} csd-code="{}" codeSystemName="DCM" originalText="{}"/>"#,
        c.code, c.display
    );
}

fn base64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Text content: `&` and `<` escaped (and `>`, for `]]>`), characters XML cannot hold replaced.
pub fn text(s: &str) -> String {
    escape(s, false)
}

/// An attribute value in double quotes: also `"`, and whitespace that attribute-value
/// normalisation would otherwise fold into spaces.
pub fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' | '\n' | '\r' if attribute => {
                let _ = write!(out, "&#{};", c as u32);
            }
            '\t' | '\n' | '\r' => out.push(c),
            // XML 1.0's Char production: no other C0 controls, no surrogates (not in a Rust
            // str anyway), no U+FFFE/U+FFFF.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped_and_controls_replaced() {
        assert_eq!(
            attr("a\"<b>&'\u{0}\n"),
            "a&quot;&lt;b&gt;&amp;'\u{FFFD}&#10;"
        );
        assert_eq!(text("]]><x\u{1b}"), "]]&gt;&lt;x\u{FFFD}");
    }
}
