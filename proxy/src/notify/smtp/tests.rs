use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::*;

fn notice() -> NoticeRecord {
    NoticeRecord {
        kind: "break_glass_declared".into(),
        id: "0123456789abcdef0123456789abcdef".into(),
        at: "2026-04-01T09:30:00Z".into(),
        subject_ja: "緊急時アクセスが宣言されました（救急・意識障害）".into(),
        subject_en: "Break-glass declared (unconscious patient)".into(),
        text: "医師 D0001 が患者 P000123 について緊急時アクセスを宣言しました。\n\n\
               Physician D0001 declared break-glass for patient P000123."
            .into(),
        data: serde_json::json!({"patient_id": "P000123", "user_id": "D0001"}),
    }
}

fn formatted() -> String {
    let from: Mailbox = "Sekisho <sekisho@gw.example.jp>".parse().unwrap();
    let to: Vec<Mailbox> = vec![
        "security@example.jp".parse().unwrap(),
        "情報セキュリティ担当 <officer@example.jp>".parse().unwrap(),
    ];
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_775_035_800);
    let m = message(&notice(), "d-1", &from, &to, "gw.example.jp", date).unwrap();
    String::from_utf8(m.formatted()).expect("a mail is ASCII")
}

/// Header name → unfolded value, and the body.
fn split(mail: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = mail.split_once("\r\n\r\n").expect("header and body");
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            headers
                .last_mut()
                .expect("a folded line follows a header")
                .1 += line;
        } else {
            let (n, v) = line.split_once(':').expect("name: value");
            headers.push((n.to_string(), v.trim_start().to_string()));
        }
    }
    (headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// RFC 2047: encoded words (B or Q) in UTF-8; white space between two of them is dropped.
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut pending_space = String::new();
    let mut last_was_word = false;
    for token in v.split_inclusive([' ', '\t']) {
        let word = token.trim_end_matches([' ', '\t']);
        let space = &token[word.len()..];
        let decoded = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut p = w.splitn(3, '?');
                let (charset, enc, text) = (p.next()?, p.next()?, p.next()?);
                assert!(charset.eq_ignore_ascii_case("utf-8"), "charset {charset}");
                let bytes = match enc {
                    "B" | "b" => B64.decode(text).unwrap(),
                    "Q" | "q" => q_decode(text),
                    _ => panic!("encoding {enc}"),
                };
                Some(String::from_utf8(bytes).unwrap())
            });
        match decoded {
            Some(d) => {
                if !last_was_word {
                    out += &pending_space;
                }
                out += &d;
                last_was_word = true;
            }
            None => {
                out += &pending_space;
                out += word;
                last_was_word = false;
            }
        }
        pending_space = space.to_string();
    }
    out
}

fn q_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[test]
fn the_subject_is_encoded_words_that_decode_to_both_languages() {
    let mail = formatted();
    let (h, _) = split(&mail);
    let raw = header(&h, "Subject");
    // The Japanese words are encoded; "[Sekisho]" and the English may stay as they are.
    assert!(raw.is_ascii() && raw.contains("=?utf-8?b?"), "{raw}");
    assert_eq!(
        decode_words(raw),
        "[Sekisho] 緊急時アクセスが宣言されました（救急・意識障害） / \
         Break-glass declared (unconscious patient)"
    );
    // Encoded words are at most 75 characters (RFC 2047 section 2) and lines stay short.
    for w in raw.split_whitespace().filter(|w| w.starts_with("=?")) {
        assert!(w.len() <= 75, "{w}");
    }
    assert!(mail.split("\r\n").all(|l| l.len() <= 78), "{mail}");
}

#[test]
fn the_message_has_the_headers_rfc_5322_and_mime_want() {
    let (h, _) = split(&formatted());
    assert_eq!(header(&h, "Message-ID"), "<d-1@gw.example.jp>");
    assert_eq!(header(&h, "MIME-Version"), "1.0");
    assert_eq!(
        header(&h, "Content-Type").to_ascii_lowercase(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&h, "Content-Transfer-Encoding"), "base64");
    assert_eq!(header(&h, "Auto-Submitted"), "auto-generated");
    assert_eq!(header(&h, "From"), "Sekisho <sekisho@gw.example.jp>");
    let to = decode_words(header(&h, "To"));
    assert!(to.contains("security@example.jp"), "{to}");
    assert!(
        to.contains("情報セキュリティ担当") && to.contains("<officer@example.jp>"),
        "{to}"
    );
    // 2026-04-01 09:30:00 UTC, in the RFC 5322 date-time form.
    let date = header(&h, "Date");
    assert!(date.starts_with("Wed, 01 Apr 2026 09:30:00"), "{date}");
    // Nothing in the head is 8-bit: relays without SMTPUTF8 take it.
    assert!(h.iter().all(|(n, v)| n.is_ascii() && v.is_ascii()));
}

#[test]
fn the_body_is_the_text_then_the_facts_in_base64() {
    let (_, body) = split(&formatted());
    let joined: String = body.split("\r\n").collect();
    let text = String::from_utf8(B64.decode(joined.trim()).unwrap()).unwrap();
    assert!(text.starts_with("医師 D0001 が患者 P000123"), "{text}");
    assert!(text.contains("\r\n\r\nPhysician D0001 declared break-glass"));
    assert!(text.contains("種別 / kind: break_glass_declared\r\n"));
    assert!(text.contains("通知ID / notice id: 0123456789abcdef0123456789abcdef\r\n"));
    assert!(text.contains("\"patient_id\": \"P000123\""));
    // Bare LF never reaches SMTP.
    assert!(!text.replace("\r\n", "").contains('\n'));
    assert!(body.split("\r\n").all(|l| l.len() <= 76));
}
