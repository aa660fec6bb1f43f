//! What the agent says when the gateway refuses, is away, or is not the one it trusts.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use sekisho_agent::{self as agent, AgentError, LogoutReason, Reason};

#[test]
fn gateway_error_bodies_map_to_agent_errors() {
    let body = |code: &str| {
        serde_json::json!({"error": code, "message_en": "english", "message_ja": "日本語"})
            .to_string()
    };
    for (code, want) in [
        ("hpki_expired", Reason::HpkiExpired),
        ("hpki_revoked", Reason::HpkiRevoked),
        ("hpki_untrusted", Reason::HpkiUntrusted),
        (
            "hpki_signature_certificate",
            Reason::HpkiSignatureCertificate,
        ),
        ("hpki_bad_signature", Reason::HpkiBadSignature),
        ("challenge_invalid", Reason::ChallengeInvalid),
        ("user_unknown", Reason::UserUnknown),
        ("user_suspended", Reason::UserSuspended),
        ("account_locked", Reason::AccountLocked),
        ("terminal_locked", Reason::TerminalLocked),
        ("enroll_invalid", Reason::EnrollInvalid),
        ("enroll_expired", Reason::EnrollExpired),
        ("enroll_used", Reason::EnrollUsed),
        ("enroll_locked", Reason::EnrollLocked),
        ("enroll_bad_request", Reason::EnrollBadRequest),
        ("not_signed_in", Reason::NotSignedIn),
        ("patient_card_invalid", Reason::PatientCardInvalid),
        ("patient_card_revoked", Reason::PatientCardRevoked),
        (
            "patient_unknown_or_not_consented",
            Reason::PatientUnknownOrNotConsented,
        ),
        ("attestation_not_allowed", Reason::AttestationNotAllowed),
        ("challenge_expired", Reason::ChallengeExpired),
        ("break_glass_not_permitted", Reason::BreakGlassNotPermitted),
        (
            "break_glass_category_unknown",
            Reason::BreakGlassCategoryUnknown,
        ),
        ("break_glass_card_mismatch", Reason::BreakGlassCardMismatch),
        (
            "break_glass_signature_invalid",
            Reason::BreakGlassSignatureInvalid,
        ),
        (
            "break_glass_declaration_not_found",
            Reason::BreakGlassDeclarationNotFound,
        ),
    ] {
        let e = agent::gateway_error(403, body(code).as_bytes());
        let AgentError::Refused(r) = &e else {
            panic!("{code}: {e:?}")
        };
        assert_eq!(r.reason, Some(want));
        assert_eq!(r.code, code);
        assert_eq!(r.status, 403);
        assert_eq!(e.exit_code(), 5);
        assert!(!e.to_string().is_empty() && !e.message_ja().is_empty());
        assert_eq!(
            e.is_transient(),
            code == "challenge_invalid" || code == "challenge_expired",
            "{code}"
        );
    }
    let e = agent::gateway_error(403, body("not_signed_in").as_bytes());
    assert!(e.to_string().contains("must sign in"), "{e}");
    assert!(e.message_ja().contains("ログイン"), "{}", e.message_ja());
    // Which of the two it is, neither message says.
    let e = agent::gateway_error(403, body("patient_unknown_or_not_consented").as_bytes());
    assert!(
        e.to_string().contains("not registered") && e.to_string().contains("no consent"),
        "{e}"
    );
    let e = agent::gateway_error(403, body("attestation_not_allowed").as_bytes());
    assert!(e.to_string().contains("--attest"), "{e}");
    let e = agent::gateway_error(403, body("hpki_expired").as_bytes());
    assert!(e.to_string().contains("expired"), "{e}");
    assert!(e.message_ja().contains("有効期限"), "{}", e.message_ja());
    let e = agent::gateway_error(403, body("hpki_revoked").as_bytes());
    assert!(e.to_string().contains("revoked"), "{e}");
    let e = agent::gateway_error(403, body("break_glass_card_mismatch").as_bytes());
    assert!(e.to_string().contains("signed in with"), "{e}");
    assert!(
        e.message_ja().contains("ログインに使われたカード"),
        "{}",
        e.message_ja()
    );
    // Where the agent has no words of its own, the gateway's are shown.
    let e = agent::gateway_error(400, body("break_glass_category_unknown").as_bytes());
    assert!(e.to_string().contains("english"), "{e}");
    assert_eq!(e.message_ja(), "日本語");
    let e = agent::gateway_error(410, body("enroll_used").as_bytes());
    assert!(e.to_string().contains("already been used"), "{e}");

    // An unknown code keeps the gateway's words, cleaned of control characters.
    let odd = serde_json::json!({"error": "new_rule", "message_en": "no \u{1b}[31mway", "message_ja": "だめ"});
    let e = agent::gateway_error(403, odd.to_string().as_bytes());
    let r = e.refusal().expect("a refusal");
    assert_eq!((r.reason, r.code.as_str()), (None, "new_rule"));
    assert!(e.to_string().contains("no  [31mway"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'));
    assert_eq!(e.message_ja(), "だめ");

    // Not JSON: a protocol error naming the status; 5xx is worth retrying.
    let e = agent::gateway_error(502, b"<html>Bad Gateway</html>");
    assert!(
        matches!(
            e,
            AgentError::Protocol {
                status: Some(502),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert!(!agent::gateway_error(400, b"").is_transient());
}

#[tokio::test]
async fn gateway_unreachable_untrusted_and_terminal_refused() {
    let pki = Pki::new();
    // Nothing listens: unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let e = agent::status(&pki.config(addr)).await.unwrap_err();
    assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 6);
    assert!(e.message_ja().contains("接続できません"));

    // A gateway whose certificate is from another CA.
    let other = Pki::new();
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let server = start_gateway(&other, 0, &state).await;
    let e = agent::status(&pki.config(server.addr)).await.unwrap_err();
    assert!(matches!(e, AgentError::GatewayCertificate { .. }), "{e:?}");

    // The right gateway, but this terminal's certificate is from another CA.
    let mut cfg = other.config(server.addr);
    cfg.cert = pki.path("T.crt");
    cfg.key = pki.path("T.key");
    let e = agent::status(&cfg).await.unwrap_err();
    assert!(matches!(e, AgentError::TerminalRejected { .. }), "{e:?}");

    // And with everything right: not signed in.
    let s = agent::status(&other.config(server.addr)).await.unwrap();
    assert!(!s.signed_in);
    assert!(
        !agent::logout(&other.config(server.addr), LogoutReason::Logout)
            .await
            .unwrap()
    );
    assert_eq!(lock(&state).anonymous, 0);

    // Missing files and bad URLs are configuration errors.
    let mut cfg = other.config(server.addr);
    cfg.key = other.path("missing.key");
    let e = agent::status(&cfg).await.unwrap_err();
    assert!(matches!(e, AgentError::Config { .. }), "{e:?}");
    cfg = other.config(server.addr);
    cfg.gateway = format!("http://{}", server.addr);
    assert!(matches!(
        agent::status(&cfg).await.unwrap_err(),
        AgentError::BadUrl { .. }
    ));
    server.stop().await;
}
