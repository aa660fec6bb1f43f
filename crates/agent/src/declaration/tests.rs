//! The declaration check's cases: each way a text can differ from the one the card may sign.

use super::*;

const NOW: i64 = 1_796_349_600; // 2026-12-04T02:00:00Z
const TERMINAL: &str = "urn:sekisho:terminal:F001:T001";

fn good() -> Declaration {
    Declaration {
        gateway: "gw.example.jp".into(),
        terminal: TERMINAL.into(),
        declaration: "bg-1a2b3c".into(),
        user: "yamada.taro".into(),
        patient: "P-0001".into(),
        category: "unconscious".into(),
        justification: "意識障害で救急搬送。家族と連絡が取れない。".into(),
        declared_at: "2026-12-04T02:00:00Z".into(),
        nonce: "bm9uY2UtMTIzNDU2Nzg".into(),
    }
}

fn expected() -> ExpectedDeclaration<'static> {
    ExpectedDeclaration {
        gateway: "gw.example.jp",
        terminal: TERMINAL,
        request: None,
        now: NOW,
    }
}

fn request(d: &Declaration) -> DeclarationRequest {
    DeclarationRequest {
        category: d.category.clone(),
        justification: d.justification.clone(),
        patient: Some(d.patient.clone()),
    }
}

fn refused(text: &[u8], expected: &ExpectedDeclaration<'_>) -> String {
    match check_declaration_text(text, expected) {
        Err(e @ AgentError::NotDeclaration(_)) => {
            assert_eq!(e.exit_code(), 6);
            assert!(e.message_ja().contains("署名を中止"));
            e.to_string()
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
    }
}

fn replace(text: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = String::from_utf8(text.to_vec()).unwrap();
    assert!(s.contains(from), "{from:?}");
    s.replacen(from, to, 1).into_bytes()
}

#[test]
fn the_declaration_as_written_is_accepted() {
    let d = good();
    assert_eq!(
        check_declaration_text(&d.to_sign(), &expected()).unwrap(),
        d
    );
    // The agent's own request, the gateway's name in another case, a justification with
    // line breaks and characters JSON escapes, a time within a day: all fine.
    let mut d2 = d.clone();
    d2.justification = "line one\nline \"two\"\t\\ \u{1b}[31m".into();
    d2.declared_at = "2026-12-04T20:59:59.5Z".into();
    let req = request(&d2);
    let exp = ExpectedDeclaration {
        gateway: "GW.Example.JP",
        request: Some(&req),
        ..expected()
    };
    assert_eq!(check_declaration_text(&d2.to_sign(), &exp).unwrap(), d2);
    let mut longest = d.clone();
    longest.justification = "あ".repeat(MAX_JUSTIFICATION_CHARS);
    assert!(check_declaration_text(&longest.to_sign(), &expected()).is_ok());
}

#[test]
fn another_first_line_is_refused() {
    let text = good().to_sign();
    let body = &text[BREAK_GLASS_PREFIX.len()..];
    for prefix in [
        &b""[..],
        b"sekisho-hpki-login:v1\n",
        b"sekisho-patient-consent:v1\n",
        b"sekisho-break-glass:v2\n",
        b"SEKISHO-BREAK-GLASS:V1\n",
        b" sekisho-break-glass:v1\n",
        b"sekisho-break-glass:v1\r\n",
        b"x\nsekisho-break-glass:v1\n",
    ] {
        let t = [prefix, body].concat();
        refused(&t, &expected());
    }
    assert!(refused(b"", &expected()).contains("0 bytes"));
    assert!(refused(BREAK_GLASS_PREFIX, &expected()).contains("does not end"));
    let e = refused(b"sekisho-hpki-login:v1\ngw\nurn\nn\n", &expected());
    assert!(
        e.contains("does not start with \"sekisho-break-glass:v1\""),
        "{e}"
    );
}

#[test]
fn missing_extra_and_reordered_lines_are_refused() {
    let text = good().to_sign();
    // An extra line at the end, in the middle, a repeated one.
    let extra = [&text[..], b"allows: view,write\n"].concat();
    assert!(refused(&extra, &expected()).contains("10 lines"));
    refused(
        &replace(&text, "category: ", "scope: all\ncategory: "),
        &expected(),
    );
    refused(
        &replace(
            &text,
            "patient: P-0001\n",
            "patient: P-0001\npatient: P-0002\n",
        ),
        &expected(),
    );
    // A missing line, an empty line, two lines swapped, a key spelled otherwise.
    refused(&replace(&text, "user: yamada.taro\n", ""), &expected());
    refused(&[&text[..], b"\n"].concat(), &expected());
    refused(
        &replace(
            &text,
            "user: yamada.taro\npatient: P-0001\n",
            "patient: P-0001\nuser: yamada.taro\n",
        ),
        &expected(),
    );
    let e = refused(&replace(&text, "patient: ", "Patient: "), &expected());
    assert!(e.contains("line 6"), "{e}");
    refused(&replace(&text, "patient: ", "patient:"), &expected());
    refused(&replace(&text, "patient: ", "patient:  "), &expected());
    // No line end after the last line.
    refused(&text[..text.len() - 1], &expected());
}

#[test]
fn another_gateway_or_terminal_is_refused() {
    let mut d = good();
    d.terminal = "urn:sekisho:terminal:F001:T002".into();
    let e = refused(&d.to_sign(), &expected());
    assert!(e.contains("T002") && e.contains("this terminal is"), "{e}");
    let mut d = good();
    d.gateway = "gw.example.jp.evil.example".into();
    assert!(refused(&d.to_sign(), &expected()).contains("gateway"));
    let mut d = good();
    d.gateway = "gw.example.jp ".into();
    refused(&d.to_sign(), &expected());
}

#[test]
fn what_the_agent_did_not_ask_for_is_refused() {
    let d = good();
    let req = request(&d);
    let exp = ExpectedDeclaration {
        request: Some(&req),
        ..expected()
    };
    for change in [
        |d: &mut Declaration| d.justification.push('。'),
        |d: &mut Declaration| d.justification = format!(" {}", d.justification),
        |d: &mut Declaration| d.justification = d.justification.replace('。', "\r\n"),
        |d: &mut Declaration| d.patient = "P-0002".into(),
        |d: &mut Declaration| d.category = "disaster".into(),
    ] {
        let mut changed = d.clone();
        change(&mut changed);
        let e = refused(&changed.to_sign(), &exp);
        assert!(e.contains("this terminal"), "{e}");
        // Without a request of its own (a declaration prepared on the page), it would do.
        assert!(check_declaration_text(&changed.to_sign(), &expected()).is_ok());
    }
}

#[test]
fn crlf_and_control_character_tricks_are_refused() {
    let text = good().to_sign();
    let crlf = String::from_utf8(text.clone())
        .unwrap()
        .replace('\n', "\r\n");
    refused(crlf.as_bytes(), &expected());
    // A CR that would make a terminal print another patient over the real one.
    refused(
        &replace(&text, "patient: P-0001", "patient: P-0001\rpatient: P-0002"),
        &expected(),
    );
    refused(&replace(&text, "nonce: ", "nonce: \r"), &expected());
    // Raw control characters inside the JSON string (not valid JSON anyway), NEL, NUL,
    // an escape sequence, all refused before any parsing.
    for raw in ["\r", "\u{1b}[2K", "\u{85}", "\0"] {
        let t = replace(&text, "意識障害", &format!("意識{raw}障害"));
        assert!(refused(&t, &expected()).contains("control"), "{raw:?}");
    }
    // A line end inside the JSON string breaks the line structure.
    refused(
        &replace(&text, "意識障害", "意識\\\"\njustification: \"x"),
        &expected(),
    );
    // Not UTF-8.
    refused(
        &replace(&text, "P-0001", "P-000\u{1}")
            .iter()
            .map(|&b| if b == 1 { 0xFF } else { b })
            .collect::<Vec<_>>(),
        &expected(),
    );
}

#[test]
fn other_spellings_are_refused() {
    let text = good().to_sign();
    // JSON that decodes to the same string but is not how it is written.
    refused(&replace(&text, "\"意識", "\"\\u610f識"), &expected());
    refused(
        &replace(&text, "取れない。\"", "取れない。\" "),
        &expected(),
    );
    refused(
        &replace(&text, "justification: \"", "justification: \"\\/"),
        &expected(),
    );
    // Not a JSON string at all.
    let mut d = good();
    d.justification = "x".into();
    let t = replace(&d.to_sign(), "justification: \"x\"", "justification: x");
    assert!(refused(&t, &expected()).contains("JSON"));
}

#[test]
fn over_long_texts_and_fields_are_refused() {
    let mut d = good();
    d.justification = "あ".repeat(3000);
    let e = refused(&d.to_sign(), &expected());
    assert!(e.contains("bytes"), "{e}");
    d.justification = "あ".repeat(MAX_JUSTIFICATION_CHARS + 1);
    assert!(refused(&d.to_sign(), &expected()).contains("1001"));
    d.justification = "  \n ".into();
    refused(&d.to_sign(), &expected());
    let mut d = good();
    d.nonce = "n".repeat(257);
    refused(&d.to_sign(), &expected());
    let mut d = good();
    d.declaration = "d".repeat(MAX_DECLARATION_ID + 1);
    refused(&d.to_sign(), &expected());
}

#[test]
fn fields_follow_their_rules() {
    for change in [
        |d: &mut Declaration| d.declaration = "../signature".into(),
        |d: &mut Declaration| d.declaration = "a/b".into(),
        |d: &mut Declaration| d.declaration = "a%2Fb".into(),
        |d: &mut Declaration| d.patient = "../P".into(),
        |d: &mut Declaration| d.patient = "患者".into(),
        |d: &mut Declaration| d.user = "yamada taro".into(),
        |d: &mut Declaration| d.user = "".into(),
        |d: &mut Declaration| d.category = "無意識".into(),
        |d: &mut Declaration| d.nonce = "".into(),
        |d: &mut Declaration| d.declared_at = "2026-12-04T11:00:00+09:00".into(),
        |d: &mut Declaration| d.declared_at = "2026-12-04 02:00:00Z".into(),
        |d: &mut Declaration| d.declared_at = "yesterday".into(),
        // Dated another day than the terminal's clock, either way.
        |d: &mut Declaration| d.declared_at = "2026-12-05T02:00:01Z".into(),
        |d: &mut Declaration| d.declared_at = "2026-11-20T02:00:00Z".into(),
        // Declared for another terminal's (lookalike) URN.
        |d: &mut Declaration| d.terminal = "urn:sekisho:terminal:F001:T001 ".into(),
    ] {
        let mut d = good();
        change(&mut d);
        refused(&d.to_sign(), &expected());
    }
    assert!(is_valid_declaration_id("bg-0001.a_b"));
    assert!(!is_valid_declaration_id(".."));
    assert!(!is_valid_declaration_id(""));
}

fn state(d: &Declaration) -> DeclarationState {
    DeclarationState {
        id: d.declaration.clone(),
        status: AWAITING_SIGNATURE.into(),
        patient: Some(d.patient.clone()),
        category: d.category.clone(),
        to_sign: Some(B64.encode(d.to_sign())),
        nonce: Some(d.nonce.clone()),
        expires_at: None,
        allows: None,
    }
}

#[test]
fn the_gateways_report_must_agree_with_the_text() {
    let d = good();
    let (got, bytes) = check_declaration_state(&state(&d), &expected()).unwrap();
    assert_eq!((got, bytes), (d.clone(), d.to_sign()));
    for change in [
        |s: &mut DeclarationState| s.status = "active".into(),
        |s: &mut DeclarationState| s.status = "choose_patient".into(),
        |s: &mut DeclarationState| s.id = "bg-other".into(),
        |s: &mut DeclarationState| s.id = "../x".into(),
        |s: &mut DeclarationState| s.nonce = Some("another".into()),
        |s: &mut DeclarationState| s.nonce = None,
        |s: &mut DeclarationState| s.patient = Some("P-0002".into()),
        |s: &mut DeclarationState| s.patient = None,
        |s: &mut DeclarationState| s.category = "disaster".into(),
        |s: &mut DeclarationState| s.to_sign = None,
        |s: &mut DeclarationState| s.to_sign = Some("not base64!".into()),
        |s: &mut DeclarationState| s.to_sign = Some("A".repeat(20_000)),
    ] {
        let mut s = state(&d);
        change(&mut s);
        let e = check_declaration_state(&s, &expected()).unwrap_err();
        assert!(matches!(e, AgentError::NotDeclaration(_)), "{e:?}");
    }
}

#[test]
fn requests_are_checked_before_anything_is_sent() {
    let d = good();
    assert!(check_declaration_request(&request(&d)).is_ok());
    for change in [
        |r: &mut DeclarationRequest| r.patient = None,
        |r: &mut DeclarationRequest| r.patient = Some("P 1".into()),
        |r: &mut DeclarationRequest| r.category = "".into(),
        |r: &mut DeclarationRequest| r.category = "un conscious".into(),
        |r: &mut DeclarationRequest| r.justification = " ".into(),
        |r: &mut DeclarationRequest| r.justification = "x".repeat(1001),
        |r: &mut DeclarationRequest| r.justification = "a\rb".into(),
    ] {
        let mut r = request(&d);
        change(&mut r);
        let e = check_declaration_request(&r).unwrap_err();
        assert!(matches!(e, AgentError::Usage(_)), "{e:?}");
        assert_eq!(e.exit_code(), 2);
    }
}

#[test]
fn the_physician_sees_every_field_and_every_character() {
    let mut d = good();
    d.justification = "意識なし\n家族不在 \u{202e}evil\u{200b} \u{1b}[31m typed \\u{202e}".into();
    let shown = describe_declaration(&d);
    for want in [
        "P-0001",
        "unconscious",
        "意識なし\n",
        "家族不在 \\u{202e}evil\\u{200b} \\u{001b}[31m typed \\\\u{202e}",
        "yamada.taro",
        "2026-12-04 11:00 JST (2026-12-04T02:00:00Z)",
        TERMINAL,
        "gw.example.jp",
        "bg-1a2b3c",
        "Emergency access declaration",
        "緊急時アクセスの宣言",
    ] {
        assert!(shown.contains(want), "{want:?} in\n{shown}");
    }
    assert!(!shown.contains('\u{202e}') && !shown.contains('\u{1b}'));
    // The second line of the justification lines up under the first.
    let second = shown.lines().find(|l| l.contains("家族不在")).unwrap();
    let first = shown.lines().find(|l| l.contains("意識なし")).unwrap();
    let col = |l: &str, s: &str| {
        l[..l.find(s).unwrap()]
            .chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    assert_eq!(col(first, "意識なし"), col(second, "家族不在"));
}
