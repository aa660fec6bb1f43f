//! What can go wrong for the agent, in words the physician (or the administrator) can act on,
//! in English ([`std::fmt::Display`]) and Japanese ([`AgentError::message_ja`]).

use thiserror::Error;

use sekisho_cardreader::apdu::CardError;
use sekisho_cardreader::hpki::HpkiError;
use sekisho_protocol::Reason;
use sekisho_protocol::wire::ErrorBody;

use crate::refusal::Refusal;
use crate::text::clean;

/// Everything the agent reports.
#[derive(Debug, Error)]
pub enum AgentError {
    // ---- configuration and use ----
    #[error("{0}")]
    Usage(String),
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
    #[error(
        "the HPKI card was not asked to sign: what the gateway sent is not a sign-in challenge ({0})"
    )]
    NotLoginChallenge(String),
    #[error(
        "the HPKI card was not asked to sign: what the gateway sent is not the emergency declaration this terminal expects ({0})"
    )]
    NotDeclaration(String),
    #[error("the declaration was not signed: the physician declined")]
    Declined,

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
            AgentError::Usage(_) => "指定が正しくありません。".into(),
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
            AgentError::NotLoginChallenge(_) => {
                "ゲートウェイからの署名要求がログイン要求ではないため、HPKIカードでの署名を中止しました。"
                    .into()
            }
            AgentError::NotDeclaration(_) => {
                "ゲートウェイからの署名要求がこの端末で想定する緊急時アクセスの宣言ではないため、HPKIカードでの署名を中止しました。"
                    .into()
            }
            AgentError::Declined => "宣言に署名しませんでした（取り消されました）。".into(),
            AgentError::Io { path, .. } => format!("ファイルを読み書きできません: {path}"),
            AgentError::Internal(_) => "内部エラーが発生しました。".into(),
        }
    }

    /// The gateway's refusal, whether this build knows its code or not.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            AgentError::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// Why the gateway refused, if it did and this build knows the code.
    pub fn reason(&self) -> Option<Reason> {
        self.refusal().and_then(|r| r.reason)
    }

    /// Worth trying again by itself, without the card holder doing anything: the network or
    /// the gateway was away, or the challenge ran out.
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } | AgentError::Tls(_) => true,
            AgentError::Protocol { status, .. } => status.is_none_or(|s| s >= 500),
            AgentError::Refused(r) => {
                matches!(
                    r.reason,
                    Some(Reason::ChallengeInvalid | Reason::ChallengeExpired)
                ) || r.status >= 500
            }
            _ => false,
        }
    }

    /// The process exit status `sekisho-agent` uses for this error.
    ///
    /// 1 other (and an emergency declaration the physician declined) · 2 usage · 3 reader/card ·
    /// 4 PIN wrong or card locked · 5 refused by the gateway · 6 gateway unreachable or TLS, or
    /// its answer not understood (including a text the card was not asked to sign) ·
    /// 7 configuration or files · 8 no patient card (`consent`).
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
            | AgentError::NotConsentChallenge(_)
            | AgentError::NotLoginChallenge(_)
            | AgentError::NotDeclaration(_) => 6,
            AgentError::Config { .. } | AgentError::BadUrl { .. } | AgentError::Io { .. } => 7,
            AgentError::Usage(_) => 2,
            AgentError::Internal(_) | AgentError::Declined => 1,
        }
    }
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

/// The error for a non-2xx answer from the gateway or the enrollment listener: its JSON error
/// body if it has one, else a protocol error that names the status.
pub fn gateway_error(status: u16, body: &[u8]) -> AgentError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.error.is_empty() => AgentError::Refused(Refusal {
            status,
            reason: Reason::from_code(&b.error),
            code: clean(&b.error, 64),
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
