//! What a refused person sees: a short page in Japanese and English that says what is wrong and
//! what to do, with the request id to quote to the secretariat, or JSON for API clients. Never
//! an upstream response, and nothing about any patient.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full};

pub struct Explanation {
    pub status: StatusCode,
    pub ja: &'static str,
    pub en: &'static str,
}

/// The page text for a reason code. Unknown codes get a generic text, never the code's details.
pub fn explain(reason: &str) -> Explanation {
    use StatusCode as S;
    let (status, ja, en) = match reason {
        "no_client_certificate" => (
            S::FORBIDDEN,
            "この端末には端末証明書がインストールされていません。施設の管理者から発行されたアクセスコードで端末を登録してください。",
            "This device has no terminal certificate. Register it with the access code your facility administrator received.",
        ),
        "terminal_not_registered" => (
            S::FORBIDDEN,
            "この端末は登録されていません。施設の管理者または事務局にお問い合わせください。",
            "This terminal is not registered. Please contact your facility administrator or the network secretariat.",
        ),
        "terminal_identity_invalid" => (
            S::FORBIDDEN,
            "端末証明書に端末の識別情報がありません。端末を登録し直してください。",
            "The terminal certificate does not identify a terminal. Please enroll this terminal again.",
        ),
        "terminal_suspended" => (
            S::FORBIDDEN,
            "この端末は一時停止されています。事務局にお問い合わせください。",
            "This terminal has been suspended. Please contact the network secretariat.",
        ),
        "crl_expired" => (
            S::SERVICE_UNAVAILABLE,
            "失効リストの有効期限が切れているため、現在どの端末も接続できません。事務局にお知らせください。",
            "The revocation list has expired, so no terminal can be admitted now. Please tell the network secretariat.",
        ),
        "terminal_revoked" => (
            S::FORBIDDEN,
            "この端末の証明書は失効しています。事務局にお問い合わせください。",
            "This terminal's certificate has been revoked. Please contact the network secretariat.",
        ),
        "route_not_mapped" => (
            S::FORBIDDEN,
            "このアドレスへのアクセスは許可されていません。",
            "Access to this address is not permitted.",
        ),
        "route_method_not_allowed" => (
            S::METHOD_NOT_ALLOWED,
            "この操作はこのアドレスでは許可されていません。",
            "This operation is not permitted at this address.",
        ),
        "signin_required" => (
            S::UNAUTHORIZED,
            "この画面を開くにはサインインが必要です。HPKIカードを端末のカードリーダーに挿入するか、/.sekisho/login でサインインしてください。",
            "You need to sign in to open this page. Insert your HPKI card into this terminal's reader, or sign in at /.sekisho/login.",
        ),
        "session_other_terminal" => (
            S::FORBIDDEN,
            "このサインインは別の端末のものです。この端末でサインインし直してください。",
            "This sign-in belongs to another terminal. Please sign in again on this one.",
        ),
        "password_change_required" => (
            S::FORBIDDEN,
            "パスワードを変更してください（/.sekisho/password）。",
            "Please change your password first (/.sekisho/password).",
        ),
        "policy_not_available" => (
            S::FORBIDDEN,
            "患者情報へのアクセス判定はまだ設定されていません。",
            "Access to patient records is not yet decided by this gateway's policy.",
        ),
        "route_upgrade_not_allowed" => (
            S::FORBIDDEN,
            "このアドレスでは双方向通信（WebSocket）は許可されていません。",
            "WebSocket connections are not permitted at this address.",
        ),
        "route_patient_id_missing" | "route_patient_id_malformed" | "route_patient_id_conflict" => {
            (
                S::BAD_REQUEST,
                "要求に含まれる患者の指定が正しくありません。",
                "The request does not identify the patient correctly.",
            )
        }
        // Patient decisions: what is missing, never anything about the patient (an unknown
        // patient reads exactly like one who has not consented).
        "patient_no_consent" => (
            S::FORBIDDEN,
            "この患者さんの情報は共有の同意が確認できないため表示できません。同意の手続きは事務局にお問い合わせください。",
            "This patient's records cannot be shown: no consent to sharing is on record. Ask the network secretariat about the consent procedure.",
        ),
        "patient_not_in_care_team" => (
            S::FORBIDDEN,
            "あなた（またはあなたの施設）はこの患者さんの参加者（ケアチーム）に含まれていません。患者さんの管理者に招待を依頼してください。",
            "You (or your facility) are not a member of this patient's care team. Ask the patient's coordinator to invite you.",
        ),
        "patient_card_required" => (
            S::FORBIDDEN,
            "閲覧には患者さんの同意が必要です。患者さんのICカードをカードリーダーに挿入し、sekisho-agent consent を実行してください。",
            "Viewing needs the patient's permission: insert the patient's IC card into the reader and run `sekisho-agent consent`.",
        ),
        "qualification_not_permitted" => (
            S::FORBIDDEN,
            "あなたの資格ではこの操作は許可されていません。",
            "Your qualification does not permit this operation.",
        ),
        "entry_not_found" => (
            S::FORBIDDEN,
            "確定しようとした入力記録が見つからないか、この患者さんのものではありません。",
            "The entry to confirm was not found, or it does not belong to this patient.",
        ),
        "entry_other_facility" => (
            S::FORBIDDEN,
            "入力者と同じ施設の医師だけがこの入力を確定できます。",
            "Only a physician of the facility of the person who made this entry can confirm it.",
        ),
        "admin_other_facility" => (
            S::FORBIDDEN,
            "施設管理者は自施設の利用者と端末だけを管理できます。",
            "Facility administrators manage only their own facility's users and terminals.",
        ),
        "policy_unavailable" => (
            S::SERVICE_UNAVAILABLE,
            "アクセス判定に必要な情報を読み込めないため、現在この要求を処理できません。しばらくしてから再度お試しください。",
            "The information needed to decide this request cannot be read now. Please try again shortly.",
        ),
        "route_entry_id_invalid" | "route_facility_id_invalid" => (
            S::BAD_REQUEST,
            "要求に含まれる指定（入力記録または施設）が正しくありません。",
            "The request does not identify the entry or facility correctly.",
        ),
        r if r.starts_with("path_") => (
            S::BAD_REQUEST,
            "アドレスの形式が正しくありません。",
            "The address is malformed.",
        ),
        "bad_content_length" => (
            S::BAD_REQUEST,
            "要求の形式が正しくありません。",
            "The request is malformed.",
        ),
        "route_action_not_decidable" => (
            S::FORBIDDEN,
            "このアドレスの設定では許可の判定ができないため、アクセスできません。事務局にお知らせください。",
            "This address is configured in a way the gateway cannot decide on, so it is refused. Please tell the network secretariat.",
        ),
        "tunnel_required" => (
            S::FORBIDDEN,
            "この端末はVPN（WireGuard）経由で接続する必要があります。端末のWireGuardを有効にしてください。",
            "This terminal must connect through its VPN (WireGuard) tunnel. Turn the terminal's WireGuard on.",
        ),
        "tunnel_terminal_mismatch" => (
            S::FORBIDDEN,
            "端末証明書と、接続に使われたVPN（WireGuard）の端末が一致しません。事務局にお問い合わせください。",
            "The terminal certificate does not belong to the VPN (WireGuard) tunnel this connection uses. Contact the secretariat.",
        ),
        "terminal_identity_mismatch" => (
            S::FORBIDDEN,
            "端末証明書の内容が登録情報と一致しません。事務局にお問い合わせください。",
            "The terminal certificate does not match the registry. Please contact the network secretariat.",
        ),
        "body_too_large" => (
            S::PAYLOAD_TOO_LARGE,
            "送信されたデータが大きすぎます。",
            "The data sent is too large.",
        ),
        "audit_unavailable" => (
            S::SERVICE_UNAVAILABLE,
            "アクセス記録を保存できないため、現在この要求を処理できません。しばらくしてから再度お試しください。",
            "The access record could not be saved, so this request cannot be processed now. Please try again shortly.",
        ),
        "upstream_unreachable" => (
            S::BAD_GATEWAY,
            "連携システムに接続できません。しばらくしてから再度お試しください。",
            "The network's application cannot be reached. Please try again shortly.",
        ),
        "upstream_timeout" => (
            S::GATEWAY_TIMEOUT,
            "連携システムの応答がありません。しばらくしてから再度お試しください。",
            "The network's application did not answer in time. Please try again shortly.",
        ),
        _ => (
            S::FORBIDDEN,
            "この要求は許可されていません。",
            "This request is not permitted.",
        ),
    };
    Explanation { status, ja, en }
}

/// The refusal response. `wants_json` when the client's Accept prefers JSON over HTML.
pub fn response(reason: &str, request_id: &str, wants_json: bool) -> Response<Body> {
    let e = explain(reason);
    // `reason` and `request_id` are our own codes (ASCII, no markup), never client text.
    let (ctype, body) = if wants_json {
        let v = serde_json::json!({
            "error": reason, "status": e.status.as_u16(),
            "message_ja": e.ja, "message_en": e.en, "request_id": request_id,
        });
        ("application/json", Bytes::from(v.to_string()))
    } else {
        let html = format!(
            r#"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sekisho — {status}</title>
<style>body{{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222;line-height:1.7}}
h1{{font-size:1.3rem;border-bottom:3px solid #b03a2e;padding-bottom:.3rem}}.en{{color:#555}}code{{background:#f3f3f3;padding:.1rem .3rem}}</style></head>
<body><h1>アクセスできません <span class="en">/ Access refused</span></h1>
<p>{ja}</p><p class="en" lang="en">{en}</p>
<p>お問い合わせの際はこの番号をお伝えください / Please quote this number when you ask for help:<br><code>{rid}</code> <code>{reason}</code></p>
</body></html>
"#,
            status = e.status.as_u16(),
            ja = e.ja,
            en = e.en,
            rid = request_id,
            reason = reason,
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = e.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("sekisho-request-id", v);
    }
    resp
}

pub fn wants_json(headers: &http::HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_gets_bilingual_text_and_status() {
        for (r, s) in [
            ("terminal_suspended", 403),
            ("route_not_mapped", 403),
            ("signin_required", 401),
            ("audit_unavailable", 503),
            ("upstream_unreachable", 502),
            ("upstream_timeout", 504),
            ("path_dot_segment_escape", 400),
            ("body_too_large", 413),
            ("anything-else", 403),
        ] {
            let e = explain(r);
            assert_eq!(e.status.as_u16(), s, "{r}");
            assert!(!e.ja.is_ascii(), "{r} has Japanese text");
            assert!(e.en.is_ascii(), "{r} has English text");
        }
    }

    #[test]
    fn every_authorization_reason_says_what_is_missing() {
        let generic = explain("anything-else").en;
        for r in [
            "patient_no_consent",
            "patient_not_in_care_team",
            "patient_card_required",
            "qualification_not_permitted",
            "entry_not_found",
            "entry_other_facility",
            "admin_other_facility",
            "policy_unavailable",
            "route_entry_id_invalid",
        ] {
            let e = explain(r);
            assert_ne!(e.en, generic, "{r} has its own text");
            assert!(!e.ja.is_ascii() && e.en.is_ascii(), "{r}");
        }
    }

    #[test]
    fn json_when_asked() {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/json"),
        );
        assert!(!wants_json(&h));
    }
}
