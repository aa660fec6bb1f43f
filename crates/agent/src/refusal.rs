//! A refusal from the gateway or the enrollment listener, read from its JSON error body
//! ([`ErrorBody`]), and told to the person at the terminal.
//!
//! The codes are the gateway's [`Reason`]s. Where the agent knows better what the person
//! should do (take the card out, run without `--attest`, ask the card's issuer) it says so in
//! its own words; otherwise it shows the gateway's text. A code this build does not know keeps
//! the gateway's words.

use sekisho_protocol::Reason;

/// A refusal the gateway explained with its JSON error body
/// (`{"error","message_en","message_ja"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The reason, if this build knows the code.
    pub reason: Option<Reason>,
    /// The code as the gateway sent it (cleaned), known or not.
    pub code: String,
    /// The gateway's own words, cleaned of control characters and cut to a sane length.
    pub message_en: String,
    pub message_ja: String,
}

/// The agent's own English, where it tells the person more than the gateway's text does.
fn english(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::HpkiExpired => "the card's certificate has expired; ask the issuer for a new card",
        Reason::HpkiRevoked => {
            "the card's certificate has been revoked; this card can no longer be used"
        }
        Reason::HpkiUntrusted => "the card's certificate is not from a trusted HPKI authority",
        Reason::HpkiSignatureCertificate => {
            "the card presented its signature certificate, not its authentication certificate"
        }
        Reason::HpkiBadSignature => {
            "the card's signature did not verify; take the card out and try again"
        }
        Reason::ChallengeInvalid => "the login challenge expired or was already used; try again",
        Reason::UserUnknown => {
            "this card holder is not registered with the network; ask the secretariat"
        }
        Reason::UserSuspended => "this account is suspended; ask the secretariat",
        Reason::AccountLocked => {
            "this account is locked after failed logins; the secretariat must unlock it"
        }
        Reason::EnrollInvalid => "the enrollment access code or PIN is wrong",
        Reason::EnrollExpired => "the enrollment access code has expired; ask for a new one",
        Reason::EnrollUsed => "the enrollment access code has already been used; ask for a new one",
        Reason::EnrollLocked => "too many wrong PINs for this access code; ask for a new one",
        Reason::EnrollBadRequest => "the gateway could not accept the certificate request",
        Reason::NotSignedIn => {
            "a physician must sign in on this terminal (HPKI card) before the patient's consent"
        }
        Reason::PatientCardInvalid => {
            "the patient card was not accepted: it is not a valid patient card of this network"
        }
        Reason::PatientCardRevoked => {
            "this patient card has been revoked (reported lost or replaced); ask the secretariat"
        }
        Reason::PatientUnknownOrNotConsented => {
            "consent cannot be given for this patient here: not registered with the network, or no consent to sharing on record"
        }
        Reason::AttestationNotAllowed => {
            "consent by staff attestation is not allowed here: the patient card must sign (run without --attest)"
        }
        Reason::ChallengeExpired => "the consent challenge expired; try again",
        Reason::BreakGlassNotPermitted => {
            "only a physician signed in on this terminal with an HPKI card can declare an emergency access: sign in with your card first (sekisho-agent login)"
        }
        Reason::BreakGlassCardMismatch => {
            "the card in the reader is not the one this terminal's session was signed in with: sign the declaration with that card"
        }
        Reason::BreakGlassSignatureInvalid => {
            "the gateway could not verify the card's signature on the declaration; take the card out, insert it and declare again"
        }
        _ => return None,
    })
}

/// The agent's own Japanese, where it tells the person more than the gateway's text does.
fn japanese(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::HpkiExpired => {
            "カードの証明書の有効期限が切れています。発行元に新しいカードを申請してください。"
        }
        Reason::HpkiRevoked => "カードの証明書は失効しています。このカードは使用できません。",
        Reason::HpkiUntrusted => "カードの証明書は信頼されたHPKI認証局のものではありません。",
        Reason::HpkiSignatureCertificate => "カードが認証用ではなく署名用の証明書を提示しました。",
        Reason::HpkiBadSignature => {
            "カードの署名を検証できませんでした。カードを抜いてやり直してください。"
        }
        Reason::ChallengeInvalid => "ログイン要求の有効期限が切れました。もう一度お試しください。",
        Reason::UserUnknown => {
            "このカードの利用者は登録されていません。事務局にお問い合わせください。"
        }
        Reason::UserSuspended => "このアカウントは利用停止中です。事務局にお問い合わせください。",
        Reason::AccountLocked => {
            "ログインの失敗が続いたため、このアカウントはロックされています。事務局に解除を依頼してください。"
        }
        // The gateway's own text says it all.
        Reason::EnrollInvalid
        | Reason::EnrollExpired
        | Reason::EnrollUsed
        | Reason::EnrollLocked
        | Reason::EnrollBadRequest => reason.ja(),
        Reason::NotSignedIn => {
            "患者の同意の前に、医師がこの端末にHPKIカードでログインしてください。"
        }
        Reason::PatientCardInvalid => {
            "患者カードを確認できませんでした。このネットワークの有効な患者カードではありません。"
        }
        Reason::PatientCardRevoked => {
            "この患者カードは失効しています（紛失・再発行など）。事務局にお問い合わせください。"
        }
        Reason::PatientUnknownOrNotConsented => {
            "この患者の同意を受け付けられません（ネットワークに未登録、または情報共有への同意がありません）。"
        }
        Reason::AttestationNotAllowed => {
            "職員確認による同意は認められていません。患者カードで署名してください（--attest なしで実行）。"
        }
        Reason::ChallengeExpired => "同意要求の有効期限が切れました。もう一度お試しください。",
        Reason::BreakGlassNotPermitted => {
            "緊急時アクセスを宣言できるのは、この端末にHPKIカードでログインした医師だけです。先にカードでログインしてください（sekisho-agent login）。"
        }
        Reason::BreakGlassCardMismatch => {
            "カードリーダーのカードは、この端末のログインに使われたカードではありません。ログインしたカードで宣言に署名してください。"
        }
        Reason::BreakGlassSignatureInvalid => {
            "宣言へのカードの署名を確認できませんでした。カードを挿し直し、もう一度宣言してください。"
        }
        _ => return None,
    })
}

impl Refusal {
    pub(crate) fn english(&self) -> String {
        let ours = self.reason.and_then(english);
        let mut s = match ours {
            Some(text) => text.to_string(),
            None => format!("the gateway refused (HTTP {})", self.status),
        };
        // The gateway's words: when the agent has none, or they carry the CSR's fault.
        if !self.message_en.is_empty()
            && (ours.is_none() || self.reason == Some(Reason::EnrollBadRequest))
        {
            s.push_str(": ");
            s.push_str(&self.message_en);
        }
        s
    }

    pub(crate) fn japanese(&self) -> String {
        if let Some(text) = self.reason.and_then(japanese) {
            text.to_string()
        } else if !self.message_ja.is_empty() {
            self.message_ja.clone()
        } else {
            format!("ゲートウェイが要求を拒否しました（HTTP {}）。", self.status)
        }
    }
}
