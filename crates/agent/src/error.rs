//! What can go wrong for the agent, in words the physician (or the administrator) can act on,
//! in English ([`std::fmt::Display`]) and Japanese ([`AgentError::message_ja`]).

use serde::Deserialize;
use thiserror::Error;

use sekisho_cardreader::apdu::CardError;
use sekisho_cardreader::hpki::HpkiError;

/// A refusal the gateway explained with its JSON error body
/// (`{"error","message_en","message_ja"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    pub code: RefusalCode,
    /// The gateway's own words, cleaned of control characters and cut to a sane length.
    pub message_en: String,
    pub message_ja: String,
}

/// The gateway's error codes that the agent knows; anything else is [`RefusalCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalCode {
    /// `hpki_expired`: the card's authentication certificate has expired.
    HpkiExpired,
    /// `hpki_revoked`: the card's certificate is on its issuer's revocation list.
    HpkiRevoked,
    /// `hpki_untrusted`: the certificate does not chain to a configured HPKI trust anchor.
    HpkiUntrusted,
    /// `hpki_signature_certificate`: the signature application's certificate was sent.
    HpkiSignatureCertificate,
    /// `hpki_bad_signature`: the signature over the challenge does not verify.
    HpkiBadSignature,
    /// `challenge_invalid`: unknown, used or expired challenge.
    ChallengeInvalid,
    /// `user_unknown`: the card holder is not registered.
    UserUnknown,
    /// `user_suspended`.
    UserSuspended,
    /// `account_locked`: locked after failures until the secretariat unlocks it.
    AccountLocked,
    /// `terminal_locked`: this terminal is locked.
    TerminalLocked,
    /// `enroll_invalid`: wrong access code or PIN.
    EnrollInvalid,
    /// `enroll_expired`.
    EnrollExpired,
    /// `enroll_used`.
    EnrollUsed,
    /// `enroll_locked`: too many wrong PINs for this code.
    EnrollLocked,
    /// `enroll_bad_request`: the CSR (or request) was not accepted.
    EnrollBadRequest,
    /// `not_signed_in`: consent needs a physician signed in on this terminal.
    NotSignedIn,
    /// `patient_card_invalid`: the patient card's certificate or signature was not accepted.
    PatientCardInvalid,
    /// `patient_card_revoked`: the patient card was revoked (lost, replaced).
    PatientCardRevoked,
    /// `patient_unknown_or_not_consented`: no consent window for this patient; the gateway
    /// does not say whether the patient is unknown or has not consented to sharing.
    PatientUnknownOrNotConsented,
    /// `attestation_not_allowed`: this deployment does not accept staff attestation.
    AttestationNotAllowed,
    /// `challenge_expired`: the consent challenge ran out before the card's answer came.
    ChallengeExpired,
    Other(String),
}

impl RefusalCode {
    pub fn parse(code: &str) -> RefusalCode {
        match code {
            "hpki_expired" => RefusalCode::HpkiExpired,
            "hpki_revoked" => RefusalCode::HpkiRevoked,
            "hpki_untrusted" => RefusalCode::HpkiUntrusted,
            "hpki_signature_certificate" => RefusalCode::HpkiSignatureCertificate,
            "hpki_bad_signature" => RefusalCode::HpkiBadSignature,
            "challenge_invalid" => RefusalCode::ChallengeInvalid,
            "user_unknown" => RefusalCode::UserUnknown,
            "user_suspended" => RefusalCode::UserSuspended,
            "account_locked" => RefusalCode::AccountLocked,
            "terminal_locked" => RefusalCode::TerminalLocked,
            "enroll_invalid" => RefusalCode::EnrollInvalid,
            "enroll_expired" => RefusalCode::EnrollExpired,
            "enroll_used" => RefusalCode::EnrollUsed,
            "enroll_locked" => RefusalCode::EnrollLocked,
            "enroll_bad_request" => RefusalCode::EnrollBadRequest,
            "not_signed_in" => RefusalCode::NotSignedIn,
            "patient_card_invalid" => RefusalCode::PatientCardInvalid,
            "patient_card_revoked" => RefusalCode::PatientCardRevoked,
            "patient_unknown_or_not_consented" => RefusalCode::PatientUnknownOrNotConsented,
            "attestation_not_allowed" => RefusalCode::AttestationNotAllowed,
            "challenge_expired" => RefusalCode::ChallengeExpired,
            other => RefusalCode::Other(clean(other, 64)),
        }
    }

    /// The code as the gateway spells it.
    pub fn as_str(&self) -> &str {
        match self {
            RefusalCode::HpkiExpired => "hpki_expired",
            RefusalCode::HpkiRevoked => "hpki_revoked",
            RefusalCode::HpkiUntrusted => "hpki_untrusted",
            RefusalCode::HpkiSignatureCertificate => "hpki_signature_certificate",
            RefusalCode::HpkiBadSignature => "hpki_bad_signature",
            RefusalCode::ChallengeInvalid => "challenge_invalid",
            RefusalCode::UserUnknown => "user_unknown",
            RefusalCode::UserSuspended => "user_suspended",
            RefusalCode::AccountLocked => "account_locked",
            RefusalCode::TerminalLocked => "terminal_locked",
            RefusalCode::EnrollInvalid => "enroll_invalid",
            RefusalCode::EnrollExpired => "enroll_expired",
            RefusalCode::EnrollUsed => "enroll_used",
            RefusalCode::EnrollLocked => "enroll_locked",
            RefusalCode::EnrollBadRequest => "enroll_bad_request",
            RefusalCode::NotSignedIn => "not_signed_in",
            RefusalCode::PatientCardInvalid => "patient_card_invalid",
            RefusalCode::PatientCardRevoked => "patient_card_revoked",
            RefusalCode::PatientUnknownOrNotConsented => "patient_unknown_or_not_consented",
            RefusalCode::AttestationNotAllowed => "attestation_not_allowed",
            RefusalCode::ChallengeExpired => "challenge_expired",
            RefusalCode::Other(s) => s,
        }
    }
}

impl Refusal {
    fn english(&self) -> String {
        let ours = match self.code {
            RefusalCode::HpkiExpired => {
                "the card's certificate has expired; ask the issuer for a new card"
            }
            RefusalCode::HpkiRevoked => {
                "the card's certificate has been revoked; this card can no longer be used"
            }
            RefusalCode::HpkiUntrusted => {
                "the card's certificate is not from a trusted HPKI authority"
            }
            RefusalCode::HpkiSignatureCertificate => {
                "the card presented its signature certificate, not its authentication certificate"
            }
            RefusalCode::HpkiBadSignature => {
                "the card's signature did not verify; take the card out and try again"
            }
            RefusalCode::ChallengeInvalid => {
                "the login challenge expired or was already used; try again"
            }
            RefusalCode::UserUnknown => {
                "this card holder is not registered with the network; ask the secretariat"
            }
            RefusalCode::UserSuspended => "this account is suspended; ask the secretariat",
            RefusalCode::AccountLocked => {
                "this account is locked after failed logins; the secretariat must unlock it"
            }
            RefusalCode::TerminalLocked => {
                "this terminal is locked after failed logins; the secretariat must unlock it"
            }
            RefusalCode::EnrollInvalid => "the enrollment access code or PIN is wrong",
            RefusalCode::EnrollExpired => {
                "the enrollment access code has expired; ask for a new one"
            }
            RefusalCode::EnrollUsed => {
                "the enrollment access code has already been used; ask for a new one"
            }
            RefusalCode::EnrollLocked => {
                "too many wrong PINs for this access code; ask for a new one"
            }
            RefusalCode::EnrollBadRequest => "the gateway could not accept the certificate request",
            RefusalCode::NotSignedIn => {
                "a physician must sign in on this terminal (HPKI card) before the patient's consent"
            }
            RefusalCode::PatientCardInvalid => {
                "the patient card was not accepted: it is not a valid patient card of this network"
            }
            RefusalCode::PatientCardRevoked => {
                "this patient card has been revoked (reported lost or replaced); ask the secretariat"
            }
            RefusalCode::PatientUnknownOrNotConsented => {
                "consent cannot be given for this patient here: not registered with the network, or no consent to sharing on record"
            }
            RefusalCode::AttestationNotAllowed => {
                "consent by staff attestation is not allowed here: the patient card must sign (run without --attest)"
            }
            RefusalCode::ChallengeExpired => "the consent challenge expired; try again",
            RefusalCode::Other(_) => "",
        };
        let mut s = if ours.is_empty() {
            format!("the gateway refused (HTTP {})", self.status)
        } else {
            ours.to_string()
        };
        if !self.message_en.is_empty()
            && (ours.is_empty() || self.code == RefusalCode::EnrollBadRequest)
        {
            s.push_str(": ");
            s.push_str(&self.message_en);
        }
        s
    }

    fn japanese(&self) -> String {
        let ours = match self.code {
            RefusalCode::HpkiExpired => {
                "カードの証明書の有効期限が切れています。発行元に新しいカードを申請してください。"
            }
            RefusalCode::HpkiRevoked => {
                "カードの証明書は失効しています。このカードは使用できません。"
            }
            RefusalCode::HpkiUntrusted => {
                "カードの証明書は信頼されたHPKI認証局のものではありません。"
            }
            RefusalCode::HpkiSignatureCertificate => {
                "カードが認証用ではなく署名用の証明書を提示しました。"
            }
            RefusalCode::HpkiBadSignature => {
                "カードの署名を検証できませんでした。カードを抜いてやり直してください。"
            }
            RefusalCode::ChallengeInvalid => {
                "ログイン要求の有効期限が切れました。もう一度お試しください。"
            }
            RefusalCode::UserUnknown => {
                "このカードの利用者は登録されていません。事務局にお問い合わせください。"
            }
            RefusalCode::UserSuspended => {
                "このアカウントは利用停止中です。事務局にお問い合わせください。"
            }
            RefusalCode::AccountLocked => {
                "ログインの失敗が続いたため、このアカウントはロックされています。事務局に解除を依頼してください。"
            }
            RefusalCode::TerminalLocked => {
                "ログインの失敗が続いたため、この端末はロックされています。事務局に解除を依頼してください。"
            }
            RefusalCode::EnrollInvalid => "アクセスコードまたはPINが正しくありません。",
            RefusalCode::EnrollExpired => {
                "このアクセスコードは有効期限が切れています。新しいコードの発行を依頼してください。"
            }
            RefusalCode::EnrollUsed => {
                "このアクセスコードは使用済みです。新しいコードの発行を依頼してください。"
            }
            RefusalCode::EnrollLocked => {
                "PINの誤りが多すぎます。新しいコードの発行を依頼してください。"
            }
            RefusalCode::EnrollBadRequest => "証明書要求（CSR）を処理できません。",
            RefusalCode::NotSignedIn => {
                "患者の同意の前に、医師がこの端末にHPKIカードでログインしてください。"
            }
            RefusalCode::PatientCardInvalid => {
                "患者カードを確認できませんでした。このネットワークの有効な患者カードではありません。"
            }
            RefusalCode::PatientCardRevoked => {
                "この患者カードは失効しています（紛失・再発行など）。事務局にお問い合わせください。"
            }
            RefusalCode::PatientUnknownOrNotConsented => {
                "この患者の同意を受け付けられません（ネットワークに未登録、または情報共有への同意がありません）。"
            }
            RefusalCode::AttestationNotAllowed => {
                "職員確認による同意は認められていません。患者カードで署名してください（--attest なしで実行）。"
            }
            RefusalCode::ChallengeExpired => {
                "同意要求の有効期限が切れました。もう一度お試しください。"
            }
            RefusalCode::Other(_) => "",
        };
        if !ours.is_empty() {
            ours.to_string()
        } else if !self.message_ja.is_empty() {
            self.message_ja.clone()
        } else {
            format!("ゲートウェイが要求を拒否しました（HTTP {}）。", self.status)
        }
    }
}

/// Everything the agent reports.
#[derive(Debug, Error)]
pub enum AgentError {
    // ---- configuration ----
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("the URL {url:?} cannot be used: {reason}")]
    BadUrl { url: String, reason: String },

    // ---- reader and card ----
    #[error("the smart-card service is not running (start pcscd)")]
    NoService,
    #[error("no card reader is connected; plug in the reader")]
    NoReader,
    #[error("no reader named {name:?} (connected: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    UnknownReader {
        name: String,
        available: Vec<String>,
    },
    #[error("no card in {}; insert the HPKI card", reader.as_deref().unwrap_or("any reader"))]
    NoCard { reader: Option<String> },
    #[error("the card in {reader} is not an HPKI card")]
    NotHpkiCard { reader: String },
    #[error("no Sekisho patient card in {}; insert the patient's card", reader.as_deref().unwrap_or("any reader"))]
    NoPatientCard { reader: Option<String> },
    #[error("the patient card cannot be used: {0}")]
    PatientCard(String),
    #[error("wrong PIN: {tries_left} tries left before the card locks")]
    WrongPin { tries_left: u8 },
    #[error("the card is locked after too many wrong PINs; the card's issuer must unlock it")]
    CardLocked,
    #[error("a PIN is 4 to 16 letters, digits or symbols (no spaces)")]
    PinFormat,
    #[error("PIN entry cancelled")]
    PinCancelled,
    #[error("cannot read the PIN: {0}")]
    PinInput(String),
    #[error("the card was removed")]
    CardRemoved,
    #[error("card: {0}")]
    Card(String),

    // ---- the gateway ----
    #[error("the gateway at {target} cannot be reached: {reason}")]
    Unreachable { target: String, reason: String },
    #[error(
        "the gateway refused this terminal's certificate ({reason}): is the terminal enrolled, and its certificate valid?"
    )]
    TerminalRejected { reason: String },
    #[error(
        "the gateway's certificate is not trusted ({reason}): check --ca and the URL's host name"
    )]
    GatewayCertificate { reason: String },
    #[error("TLS with the gateway failed: {0}")]
    Tls(String),
    #[error("{}", .0.english())]
    Refused(Refusal),
    #[error("the gateway's answer is not understood{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Protocol { status: Option<u16>, detail: String },
    #[error(
        "the patient card was not asked to sign: what the gateway sent is not a consent challenge ({0})"
    )]
    NotConsentChallenge(String),

    // ---- files ----
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    /// The same message in Japanese, for the physician's screen.
    pub fn message_ja(&self) -> String {
        match self {
            AgentError::Config { path, .. } => format!("設定ファイルを読み込めません: {path}"),
            AgentError::BadUrl { url, .. } => format!("URLが正しくありません: {url}"),
            AgentError::NoService => "スマートカードサービス（pcscd）が起動していません。".into(),
            AgentError::NoReader => "カードリーダーが接続されていません。".into(),
            AgentError::UnknownReader { name, .. } => {
                format!("カードリーダー「{name}」が見つかりません。")
            }
            AgentError::NoCard { .. } => {
                "カードが挿入されていません。HPKIカードを挿入してください。".into()
            }
            AgentError::NotHpkiCard { .. } => "挿入されたカードはHPKIカードではありません。".into(),
            AgentError::NoPatientCard { .. } => {
                "患者カードが見つかりません。患者さんのSekisho患者カードをカードリーダーに挿入してください。"
                    .into()
            }
            AgentError::PatientCard(_) => {
                "患者カードを使用できません。カードを挿し直し、解決しない場合は事務局にお問い合わせください。"
                    .into()
            }
            AgentError::WrongPin { tries_left } => {
                format!("PINが違います。あと{tries_left}回間違えるとカードがロックされます。")
            }
            AgentError::CardLocked => {
                "PINの誤りが続いたためカードがロックされています。発行元に解除を依頼してください。"
                    .into()
            }
            AgentError::PinFormat => {
                "PINは4〜16文字の英数字・記号です（空白は使えません）。".into()
            }
            AgentError::PinCancelled => "PINの入力が取り消されました。".into(),
            AgentError::PinInput(_) => "PINを読み取れません。".into(),
            AgentError::CardRemoved => "カードが抜かれました。".into(),
            AgentError::Card(_) => {
                "カードの読み取りに失敗しました。カードを挿し直してください。".into()
            }
            AgentError::Unreachable { .. } => {
                "ゲートウェイに接続できません。ネットワークを確認してください。".into()
            }
            AgentError::TerminalRejected { .. } => {
                "ゲートウェイがこの端末の証明書を受け付けませんでした。端末登録を確認してください。"
                    .into()
            }
            AgentError::GatewayCertificate { .. } => {
                "ゲートウェイの証明書を確認できません。接続先とCA証明書を確認してください。".into()
            }
            AgentError::Tls(_) => "ゲートウェイとの暗号化通信に失敗しました。".into(),
            AgentError::Refused(r) => r.japanese(),
            AgentError::Protocol { .. } => "ゲートウェイの応答を解釈できません。".into(),
            AgentError::NotConsentChallenge(_) => {
                "ゲートウェイからの署名要求が同意要求ではないため、患者カードでの署名を中止しました。"
                    .into()
            }
            AgentError::Io { path, .. } => format!("ファイルを読み書きできません: {path}"),
            AgentError::Internal(_) => "内部エラーが発生しました。".into(),
        }
    }

    /// The gateway's error code, if the gateway refused.
    pub fn refusal(&self) -> Option<&RefusalCode> {
        match self {
            AgentError::Refused(r) => Some(&r.code),
            _ => None,
        }
    }

    /// Worth trying again by itself, without the card holder doing anything: the network or
    /// the gateway was away, or the challenge ran out.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } | AgentError::Tls(_) => true,
            AgentError::Protocol { status, .. } => status.is_none_or(|s| s >= 500),
            AgentError::Refused(r) => {
                matches!(
                    r.code,
                    RefusalCode::ChallengeInvalid | RefusalCode::ChallengeExpired
                ) || r.status >= 500
            }
            _ => false,
        }
    }

    /// The process exit status `sekisho-agent` uses for this error.
    ///
    /// 1 other · 3 reader/card · 4 PIN wrong or card locked · 5 refused by the gateway ·
    /// 6 gateway unreachable or TLS, or its answer not understood · 7 configuration or files ·
    /// 8 no patient card (`consent`).
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::NoService
            | AgentError::NoReader
            | AgentError::UnknownReader { .. }
            | AgentError::NoCard { .. }
            | AgentError::NotHpkiCard { .. }
            | AgentError::PatientCard(_)
            | AgentError::CardRemoved
            | AgentError::Card(_) => 3,
            AgentError::NoPatientCard { .. } => 8,
            AgentError::WrongPin { .. }
            | AgentError::CardLocked
            | AgentError::PinFormat
            | AgentError::PinCancelled
            | AgentError::PinInput(_) => 4,
            AgentError::Refused(_) | AgentError::TerminalRejected { .. } => 5,
            AgentError::Unreachable { .. }
            | AgentError::GatewayCertificate { .. }
            | AgentError::Tls(_)
            | AgentError::Protocol { .. }
            | AgentError::NotConsentChallenge(_) => 6,
            AgentError::Config { .. } | AgentError::BadUrl { .. } | AgentError::Io { .. } => 7,
            AgentError::Internal(_) => 1,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message_en: String,
    #[serde(default)]
    message_ja: String,
}

/// The error for a non-2xx answer from the gateway or the enrollment listener: its JSON error
/// body if it has one, else a protocol error that names the status.
pub fn gateway_error(status: u16, body: &[u8]) -> AgentError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.error.is_empty() => AgentError::Refused(Refusal {
            status,
            code: RefusalCode::parse(&b.error),
            message_en: clean(&b.message_en, 300),
            message_ja: clean(&b.message_ja, 300),
        }),
        _ => AgentError::Protocol {
            status: Some(status),
            detail: if body.is_empty() {
                "no explanation".into()
            } else {
                format!(
                    "unexpected answer: {}",
                    clean(&String::from_utf8_lossy(body), 200)
                )
            },
        },
    }
}

/// Text from the network, made safe for a terminal: no control characters (no escape
/// sequences), at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

impl From<CardError> for AgentError {
    fn from(e: CardError) -> Self {
        match e {
            CardError::NoService => AgentError::NoService,
            CardError::NoCard => AgentError::NoCard { reader: None },
            CardError::Removed => AgentError::CardRemoved,
            CardError::UnknownReader(name) => AgentError::UnknownReader {
                name,
                available: Vec::new(),
            },
            other => AgentError::Card(other.to_string()),
        }
    }
}

impl From<HpkiError> for AgentError {
    fn from(e: HpkiError) -> Self {
        match e {
            HpkiError::WrongPin { tries_left } => AgentError::WrongPin { tries_left },
            HpkiError::PinBlocked => AgentError::CardLocked,
            HpkiError::PinFormat => AgentError::PinFormat,
            HpkiError::CardRemoved => AgentError::CardRemoved,
            HpkiError::Card(c) => c.into(),
            other => AgentError::Card(other.to_string()),
        }
    }
}
