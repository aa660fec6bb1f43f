//! The emergency declaration's text (break-glass, issue 11), read as hostile input before the
//! HPKI card signs it, and shown to the physician.
//!
//! The card's signature on a declaration is the physician's non-repudiable word that they
//! declared an emergency access for this patient, in this category, for this reason, at this
//! time, on this terminal of this gateway. The text comes from the gateway, and the card's
//! authentication key would sign whatever it is given, so the agent signs only a text that says
//! exactly that, in the one form [`Declaration::to_sign`] writes:
//!
//! ```text
//! sekisho-break-glass:v1
//! gateway: <the host in --gateway>
//! terminal: <this terminal's URN, from its certificate>
//! declaration: <id>
//! user: <the physician's user id>
//! patient: <network patient id>
//! category: <category code>
//! justification: <JSON string>
//! declared-at: <RFC 3339, UTC>
//! nonce: <nonce>
//! ```
//!
//! Anything else — another first line, a missing, extra or reordered line, a CR, a control
//! character, a field that another writer could spell differently, another gateway or
//! terminal, a time far from the terminal's clock, more than [`MAX_DECLARATION_TO_SIGN`] bytes
//! — is refused before the card is asked, and so is a declaration whose patient, category or
//! justification differ from what the agent itself sent. The card is no signing oracle.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sekisho_protocol::is_valid_patient_id;
use sekisho_protocol::wire::{
    BREAK_GLASS_PREFIX, Declaration, DeclarationRequest, DeclarationState,
};

use crate::error::AgentError;
use crate::format_time;
use crate::text::clean;

/// Longest declaration text the card signs. A justification of [`MAX_JUSTIFICATION_CHARS`]
/// takes at most about 6,000 bytes as a JSON string; the other lines are bounded below.
pub const MAX_DECLARATION_TO_SIGN: usize = 8192;
/// Longest justification, in characters (the gateway's rule, `break_glass_justification_invalid`).
pub const MAX_JUSTIFICATION_CHARS: usize = 1000;
/// How far the declared time may be from the terminal's clock. Generous on purpose: a clinic PC
/// whose clock is off by hours (a time zone set wrong) must not stop an emergency; the point is
/// that the card never signs a declaration dated another day.
pub const MAX_CLOCK_DIFFERENCE_SECS: i64 = 24 * 3600;
/// Longest declaration id; it goes into the signature's URL path.
pub const MAX_DECLARATION_ID: usize = 128;

/// The status of a declaration that waits for the card.
pub const AWAITING_SIGNATURE: &str = "awaiting_signature";

/// The lines after the first, in order.
const KEYS: [&str; 9] = [
    "gateway",
    "terminal",
    "declaration",
    "user",
    "patient",
    "category",
    "justification",
    "declared-at",
    "nonce",
];

/// What the terminal knows of the declaration it is about to sign.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedDeclaration<'a> {
    /// The gateway's host as the agent reaches it (the host of `--gateway`).
    pub gateway: &'a str,
    /// This terminal's URN, from its certificate.
    pub terminal: &'a str,
    /// What the agent sent, when it began the declaration itself.
    pub request: Option<&'a DeclarationRequest>,
    /// The terminal's clock, Unix time.
    pub now: i64,
}

fn refuse(reason: impl Into<String>) -> AgentError {
    AgentError::NotDeclaration(reason.into())
}

/// 1 to `max` printable ASCII characters, no spaces: shown as they are, no look-alikes.
fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A declaration id: it goes into a URL path, so `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` (never a
/// dot segment, never a `/`, `?` or `%`).
pub fn is_valid_declaration_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_DECLARATION_ID
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn justification_fault(j: &str) -> Option<String> {
    let n = j.chars().count();
    if j.trim().is_empty() || n > MAX_JUSTIFICATION_CHARS {
        return Some(format!(
            "a justification has 1 to {MAX_JUSTIFICATION_CHARS} characters, not blank ({n} given)"
        ));
    }
    None
}

/// Checks a declaration the agent is about to begin, before anything is sent: the mistakes a
/// physician can make on the command line, said as such ([`AgentError::Usage`]).
pub fn check_declaration_request(request: &DeclarationRequest) -> Result<(), AgentError> {
    match request.patient.as_deref() {
        Some(p) if is_valid_patient_id(p) => {}
        Some(p) => {
            return Err(AgentError::Usage(format!(
                "--patient {:?} is not a network patient id (letters, digits, '.', '_', '-'; up to 64)",
                clean(p, 80)
            )));
        }
        None => return Err(AgentError::Usage("--patient is needed".into())),
    }
    if !is_token(&request.category, 64) {
        return Err(AgentError::Usage(format!(
            "--category {:?} is not a category code",
            clean(&request.category, 80)
        )));
    }
    if let Some(fault) = justification_fault(&request.justification) {
        return Err(AgentError::Usage(format!("--justification: {fault}")));
    }
    if request
        .justification
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(AgentError::Usage(
            "--justification contains control characters".into(),
        ));
    }
    Ok(())
}

/// Reads `to_sign` as a declaration and checks it against what the terminal knows; the
/// declaration if, and only if, the card may sign exactly these bytes.
pub fn check_declaration_text(
    to_sign: &[u8],
    expected: &ExpectedDeclaration<'_>,
) -> Result<Declaration, AgentError> {
    if to_sign.is_empty() || to_sign.len() > MAX_DECLARATION_TO_SIGN {
        return Err(refuse(format!(
            "{} bytes; a declaration has 1 to {MAX_DECLARATION_TO_SIGN}",
            to_sign.len()
        )));
    }
    let Some(rest) = to_sign.strip_prefix(BREAK_GLASS_PREFIX) else {
        let first_line = String::from_utf8_lossy(BREAK_GLASS_PREFIX);
        return Err(refuse(format!(
            "it does not start with {:?}",
            first_line.trim_end()
        )));
    };
    let rest = std::str::from_utf8(rest).map_err(|_| refuse("it is not UTF-8"))?;
    // CR, NUL, escape sequences, NEL…: nothing but the line ends may be a control character,
    // so what the physician is shown is what the card signs.
    if rest.chars().any(|c| c.is_control() && c != '\n') {
        return Err(refuse("it contains control characters besides line ends"));
    }
    let body = rest
        .strip_suffix('\n')
        .ok_or_else(|| refuse("its last line does not end"))?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != KEYS.len() {
        return Err(refuse(format!(
            "{} lines after the first; a declaration has {}",
            lines.len(),
            KEYS.len()
        )));
    }
    let mut values = [""; KEYS.len()];
    for (i, (line, key)) in lines.iter().zip(KEYS).enumerate() {
        values[i] = line
            .strip_prefix(key)
            .and_then(|v| v.strip_prefix(": "))
            .ok_or_else(|| refuse(format!("line {} is not \"{key}: …\"", i + 2)))?;
    }
    let [
        gateway,
        terminal,
        id,
        user,
        patient,
        category,
        justification,
        declared_at,
        nonce,
    ] = values;
    let justification: String = serde_json::from_str(justification)
        .map_err(|_| refuse("the justification is not one JSON string"))?;
    let declaration = Declaration {
        gateway: gateway.to_string(),
        terminal: terminal.to_string(),
        declaration: id.to_string(),
        user: user.to_string(),
        patient: patient.to_string(),
        category: category.to_string(),
        justification,
        declared_at: declared_at.to_string(),
        nonce: nonce.to_string(),
    };
    // One spelling only (no other JSON escapes, no trailing spaces): the bytes signed are the
    // bytes the gateway verifies and the audit log keeps, whoever writes them again.
    if declaration.to_sign() != to_sign {
        return Err(refuse(
            "it is not in the one form a declaration is written in",
        ));
    }
    check_fields(&declaration, expected)?;
    Ok(declaration)
}

fn check_fields(d: &Declaration, expected: &ExpectedDeclaration<'_>) -> Result<(), AgentError> {
    if !is_token(&d.gateway, 253) || !d.gateway.eq_ignore_ascii_case(expected.gateway) {
        return Err(refuse(format!(
            "it names the gateway {:?}; this terminal uses {:?}",
            clean(&d.gateway, 80),
            expected.gateway
        )));
    }
    if d.terminal != expected.terminal {
        return Err(refuse(format!(
            "it names the terminal {:?}; this terminal is {:?}",
            clean(&d.terminal, 120),
            expected.terminal
        )));
    }
    if !is_valid_declaration_id(&d.declaration) {
        return Err(refuse(format!(
            "the declaration id {:?} is not one",
            clean(&d.declaration, 80)
        )));
    }
    if !is_token(&d.user, 128) {
        return Err(refuse("the user id is not one"));
    }
    if !is_valid_patient_id(&d.patient) {
        return Err(refuse(format!(
            "the patient {:?} is not a network patient id",
            clean(&d.patient, 80)
        )));
    }
    if !is_token(&d.category, 64) {
        return Err(refuse("the category is not a category code"));
    }
    if let Some(fault) = justification_fault(&d.justification) {
        return Err(refuse(fault));
    }
    let at = declared_at(&d.declared_at)
        .ok_or_else(|| refuse("declared-at is not an RFC 3339 UTC time"))?;
    if (at - expected.now).abs() > MAX_CLOCK_DIFFERENCE_SECS {
        return Err(refuse(format!(
            "it is dated {}, and this terminal's clock says {}",
            format_time(at),
            format_time(expected.now)
        )));
    }
    if !is_token(&d.nonce, 256) {
        return Err(refuse("the nonce is not one"));
    }
    if let Some(req) = expected.request {
        if req.patient.as_deref() != Some(d.patient.as_str()) {
            return Err(refuse(format!(
                "it is for patient {:?}, not the one this terminal asked for",
                d.patient
            )));
        }
        if req.category != d.category {
            return Err(refuse(format!(
                "its category is {:?}, not the one this terminal asked for",
                d.category
            )));
        }
        if req.justification != d.justification {
            return Err(refuse(
                "its justification is not the one this terminal sent",
            ));
        }
    }
    Ok(())
}

/// `2026-12-04T02:00:00Z` (fractions allowed) as Unix time: only UTC, as the text's rule says,
/// and only with the `T` (the parser would take a space too).
fn declared_at(s: &str) -> Option<i64> {
    if !s.ends_with('Z') || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

/// Checks a declaration as the gateway reported it, waiting for the card: its status, its
/// text (decoded from base64, then [`check_declaration_text`]), and that the report and the
/// text agree on id, nonce, patient and category. The declaration and the exact bytes to sign.
pub fn check_declaration_state(
    state: &DeclarationState,
    expected: &ExpectedDeclaration<'_>,
) -> Result<(Declaration, Vec<u8>), AgentError> {
    if !is_valid_declaration_id(&state.id) {
        return Err(refuse(format!(
            "the declaration id {:?} is not one",
            clean(&state.id, 80)
        )));
    }
    if state.status != AWAITING_SIGNATURE {
        return Err(refuse(format!(
            "its status is {:?}, not {AWAITING_SIGNATURE}",
            clean(&state.status, 40)
        )));
    }
    let encoded = state
        .to_sign
        .as_deref()
        .ok_or_else(|| refuse("there is no text to sign"))?;
    if encoded.len() > MAX_DECLARATION_TO_SIGN.div_ceil(3) * 4 {
        return Err(refuse(format!("more than {MAX_DECLARATION_TO_SIGN} bytes")));
    }
    let to_sign = B64
        .decode(encoded.as_bytes())
        .map_err(|_| refuse("the text to sign is not base64"))?;
    let declaration = check_declaration_text(&to_sign, expected)?;
    if declaration.declaration != state.id {
        return Err(refuse("the text names another declaration"));
    }
    if state.nonce.as_deref() != Some(declaration.nonce.as_str()) {
        return Err(refuse("the text's nonce is not the declaration's"));
    }
    if state.patient.as_deref() != Some(declaration.patient.as_str()) {
        return Err(refuse(
            "the text names another patient than the declaration",
        ));
    }
    if state.category != declaration.category {
        return Err(refuse(
            "the text names another category than the declaration",
        ));
    }
    Ok((declaration, to_sign))
}

/// Characters a terminal does not show (or shows reordered): format characters, bidi
/// controls, line and paragraph separators, variation selectors, tags.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// The justification as the physician must see it: every character either shown as itself or
/// written as `\u{…}` (and a backslash as `\\`, so that a typed `\u{…}` cannot pass for one),
/// line breaks as new indented lines; nothing hidden, nothing dropped.
fn visible(text: &str, indent: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => {
                out.push('\n');
                out.push_str(indent);
            }
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:04x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The declaration as the physician reads it before the card signs: every field of the text,
/// each label in Japanese and English.
pub fn describe_declaration(d: &Declaration) -> String {
    const INDENT: &str = "                                ";
    let when = match declared_at(&d.declared_at) {
        Some(t) => format!("{} ({})", format_time(t), d.declared_at),
        None => d.declared_at.clone(),
    };
    let rows = [
        ("患者 / Patient", d.patient.clone()),
        ("区分 / Category", d.category.clone()),
        ("理由 / Justification", visible(&d.justification, INDENT)),
        ("医師 / Physician (user)", d.user.clone()),
        ("宣言日時 / Declared at", when),
        ("端末 / Terminal", d.terminal.clone()),
        ("ゲートウェイ / Gateway", d.gateway.clone()),
        ("宣言番号 / Declaration", d.declaration.clone()),
    ];
    let mut s = String::from("緊急時アクセスの宣言 / Emergency access declaration (break-glass)\n");
    for (label, value) in rows {
        // Labels are padded by display columns: Japanese characters take two.
        let width: usize = label
            .chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum();
        s.push_str("  ");
        s.push_str(label);
        s.push(':');
        s.push_str(&" ".repeat(INDENT.len().saturating_sub(width + 3).max(1)));
        s.push_str(&value);
        s.push('\n');
    }
    s.push_str(
        "HPKIカードでこの宣言に署名します。署名は取り消せず、アクセスは記録され事務局が確認します。\n\
         The HPKI card signs this declaration. The signature cannot be taken back; the access is \
         recorded and reviewed by the network's officers.\n",
    );
    s
}

#[cfg(test)]
mod tests;
