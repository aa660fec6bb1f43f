//! Why a request was refused: one [`Reason`] per cause, each with its code (the audit
//! record's `reason`, the metrics label, the `error` of a JSON answer), its HTTP status and
//! what the person is told in Japanese and English.
//!
//! The table below is the one catalogue for the gateway's refusal pages, sign-in, consent and
//! enrollment, and for the terminal agent that reads the codes back. Adding a variant without
//! its texts does not compile; there is no fallback text for an unknown cause. The texts say
//! what is missing and what to do, never anything about a patient (an unknown patient reads
//! exactly like one who has not consented).

use http::StatusCode;

macro_rules! reasons {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $code:literal, $status:ident,
            ja: $ja:expr,
            en: $en:expr;
    )*) => {
        /// A refusal's cause. `#[non_exhaustive]`: new causes come with new features; code that
        /// reads codes from a gateway maps unknown ones to "other" with [`Reason::from_code`].
        #[non_exhaustive]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in table order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            /// The stable code: audit `reason`, metrics label, JSON `error`.
            pub const fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// The HTTP status of the refusal.
            pub const fn status(self) -> StatusCode {
                match self { $(Reason::$variant => StatusCode::$status,)* }
            }

            /// What the person is told, in Japanese.
            pub const fn ja(self) -> &'static str {
                match self { $(Reason::$variant => $ja,)* }
            }

            /// What the person is told, in English.
            pub const fn en(self) -> &'static str {
                match self { $(Reason::$variant => $en,)* }
            }

            /// The reason a code names, if this build knows it.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code { $($code => Some(Reason::$variant),)* _ => None }
            }
        }
    };
}

const MALFORMED_ADDRESS_JA: &str = "アドレスの形式が正しくありません。";
const MALFORMED_ADDRESS_EN: &str = "The address is malformed.";
const PATIENT_ID_JA: &str = "要求に含まれる患者の指定が正しくありません。";
const PATIENT_ID_EN: &str = "The request does not identify the patient correctly.";
const ENTRY_OR_FACILITY_JA: &str = "要求に含まれる指定（入力記録または施設）が正しくありません。";
const ENTRY_OR_FACILITY_EN: &str = "The request does not identify the entry or facility correctly.";
const SIGNIN_FAILED_JA: &str =
    "IDまたはパスワードが正しくありません。続く場合は事務局にお問い合わせください。";
const SIGNIN_FAILED_EN: &str =
    "The ID or password is not correct. If this keeps happening, contact the secretariat.";
const MALFORMED_REQUEST_JA: &str = "要求の形式が正しくありません。";
const MALFORMED_REQUEST_EN: &str = "The request is malformed.";

reasons! {
    // ---- the terminal (R-TERM-*)
    /// The connection presented no client certificate: the device is not enrolled.
    NoClientCertificate = "no_client_certificate", FORBIDDEN,
        ja: "この端末には端末証明書がインストールされていません。施設の管理者から発行されたアクセスコードで端末を登録してください。",
        en: "This device has no terminal certificate. Register it with the access code your facility administrator received.";
    TerminalNotRegistered = "terminal_not_registered", FORBIDDEN,
        ja: "この端末は登録されていません。施設の管理者または事務局にお問い合わせください。",
        en: "This terminal is not registered. Please contact your facility administrator or the network secretariat.";
    /// A certificate of our CA without a usable terminal URN.
    TerminalIdentityInvalid = "terminal_identity_invalid", FORBIDDEN,
        ja: "端末証明書に端末の識別情報がありません。端末を登録し直してください。",
        en: "The terminal certificate does not identify a terminal. Please enroll this terminal again.";
    TerminalSuspended = "terminal_suspended", FORBIDDEN,
        ja: "この端末は一時停止されています。事務局にお問い合わせください。",
        en: "This terminal has been suspended. Please contact the network secretariat.";
    /// A maintenance window is in force for the terminal's facility (`sekisho maintenance`);
    /// the page gives its expected end.
    Maintenance = "maintenance", SERVICE_UNAVAILABLE,
        ja: "ただいまメンテナンス中です。終了予定時刻を過ぎてから、もう一度お試しください。",
        en: "The network is under maintenance. Please try again after the expected end.";
    /// The CRL expired: revocation status is unknown, so nobody is admitted.
    CrlExpired = "crl_expired", SERVICE_UNAVAILABLE,
        ja: "失効リストの有効期限が切れているため、現在どの端末も接続できません。事務局にお知らせください。",
        en: "The revocation list has expired, so no terminal can be admitted now. Please tell the network secretariat.";
    TerminalRevoked = "terminal_revoked", FORBIDDEN,
        ja: "この端末の証明書は失効しています。事務局にお問い合わせください。",
        en: "This terminal's certificate has been revoked. Please contact the network secretariat.";
    /// The terminal's or the person's facility is suspended in the facility registry.
    FacilitySuspended = "facility_suspended", FORBIDDEN,
        ja: "この施設のネットワーク利用は一時停止されています。事務局にお問い合わせください。",
        en: "This facility's access to the network has been suspended. Please contact the network secretariat.";
    /// The facility has left the network; its terminals are revoked.
    FacilityClosed = "facility_closed", FORBIDDEN,
        ja: "この施設はネットワークの利用を終了しています。事務局にお問い合わせください。",
        en: "This facility no longer takes part in the network. Please contact the network secretariat.";
    /// The certificate's ids differ from the registry's row for its serial.
    TerminalIdentityMismatch = "terminal_identity_mismatch", FORBIDDEN,
        ja: "端末証明書の内容が登録情報と一致しません。事務局にお問い合わせください。",
        en: "The terminal certificate does not match the registry. Please contact the network secretariat.";
    /// `require_tunnel`: the connection did not come through a WireGuard peer (R-TERM-3).
    TunnelRequired = "tunnel_required", FORBIDDEN,
        ja: "この端末はVPN（WireGuard）経由で接続する必要があります。端末のWireGuardを有効にしてください。",
        en: "This terminal must connect through its VPN (WireGuard) tunnel. Turn the terminal's WireGuard on.";
    TunnelTerminalMismatch = "tunnel_terminal_mismatch", FORBIDDEN,
        ja: "端末証明書と、接続に使われたVPN（WireGuard）の端末が一致しません。事務局にお問い合わせください。",
        en: "The terminal certificate does not belong to the VPN (WireGuard) tunnel this connection uses. Contact the secretariat.";

    // ---- the address and the route map
    PathNotAbsolute = "path_not_absolute", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathTooLong = "path_too_long", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathEncodedSlash = "path_encoded_slash", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathEncodedBackslash = "path_encoded_backslash", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathEncodedNul = "path_encoded_nul", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathEncodedControl = "path_encoded_control", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathControlCharacter = "path_control_character", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathBackslash = "path_backslash", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathForbiddenCharacter = "path_forbidden_character", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathInvalidPercentEncoding = "path_invalid_percent_encoding", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathNonAscii = "path_non_ascii", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    PathAboveRoot = "path_above_root", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    /// `;` (a path parameter) anywhere in the path: servlet containers read `..;` as `..`.
    PathSemicolon = "path_semicolon", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    /// An encoded `%` before a hex digit (`%252e`): a second decoding would change the path.
    PathDoubleEncoded = "path_double_encoded", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    /// Encoded bytes that are not well-formed UTF-8, such as the overlong `%C0%AE` for `.`.
    PathInvalidUtf8 = "path_invalid_utf8", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    /// An encoded character that folds into `.`, `/`, `\` or `;` (full-width forms and the like).
    PathEncodedLookalike = "path_encoded_lookalike", BAD_REQUEST, ja: MALFORMED_ADDRESS_JA, en: MALFORMED_ADDRESS_EN;
    /// No route maps this path: anything unmapped is refused.
    RouteNotMapped = "route_not_mapped", FORBIDDEN,
        ja: "このアドレスへのアクセスは許可されていません。",
        en: "Access to this address is not permitted.";
    RouteMethodNotAllowed = "route_method_not_allowed", METHOD_NOT_ALLOWED,
        ja: "この操作はこのアドレスでは許可されていません。",
        en: "This operation is not permitted at this address.";
    RoutePatientIdMissing = "route_patient_id_missing", BAD_REQUEST, ja: PATIENT_ID_JA, en: PATIENT_ID_EN;
    RoutePatientIdMalformed = "route_patient_id_malformed", BAD_REQUEST, ja: PATIENT_ID_JA, en: PATIENT_ID_EN;
    RoutePatientIdConflict = "route_patient_id_conflict", BAD_REQUEST, ja: PATIENT_ID_JA, en: PATIENT_ID_EN;
    /// The identifier the route takes given twice (even with the same value), as a list
    /// (`pid[]`), or again after a `;`: upstream parsers differ on which one they read.
    RoutePatientIdRepeated = "route_patient_id_repeated", BAD_REQUEST, ja: PATIENT_ID_JA, en: PATIENT_ID_EN;
    RouteUpgradeNotAllowed = "route_upgrade_not_allowed", FORBIDDEN,
        ja: "このアドレスでは双方向通信（WebSocket）は許可されていません。",
        en: "WebSocket connections are not permitted at this address.";
    RouteEntryIdInvalid = "route_entry_id_invalid", BAD_REQUEST, ja: ENTRY_OR_FACILITY_JA, en: ENTRY_OR_FACILITY_EN;
    RouteFacilityIdInvalid = "route_facility_id_invalid", BAD_REQUEST, ja: ENTRY_OR_FACILITY_JA, en: ENTRY_OR_FACILITY_EN;
    /// A route whose level and action leave nothing to decide on (e.g. terminal-level admin).
    RouteActionNotDecidable = "route_action_not_decidable", FORBIDDEN,
        ja: "このアドレスの設定では許可の判定ができないため、アクセスできません。事務局にお知らせください。",
        en: "This address is configured in a way the gateway cannot decide on, so it is refused. Please tell the network secretariat.";
    /// HTTP/1.1 without a `Host`, or any request with two, or with one that is no authority:
    /// which site it is for is ambiguous (RFC 9112 §3.2: answer 400).
    RequestHostInvalid = "request_host_invalid", BAD_REQUEST, ja: MALFORMED_REQUEST_JA, en: MALFORMED_REQUEST_EN;
    BadContentLength = "bad_content_length", BAD_REQUEST, ja: MALFORMED_REQUEST_JA, en: MALFORMED_REQUEST_EN;
    /// An unsafe method or an upgrade whose browser says it was sent by a page of another
    /// origin (`Origin`, `Sec-Fetch-Site`): the terminal's certificate and a card session go
    /// with any request that browser makes, so only the gateway's own origin may change things.
    CrossSiteRequest = "cross_site_request", FORBIDDEN,
        ja: "別のサイトのページから送られた操作は受け付けません。このシステムの画面から操作してください。",
        en: "An operation sent from another site's page is not accepted. Please use this system's own pages.";
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE,
        ja: "送信されたデータが大きすぎます。",
        en: "The data sent is too large.";

    // ---- the person (sign-in, R-ACCT-*)
    SigninRequired = "signin_required", UNAUTHORIZED,
        ja: "この画面を開くにはサインインが必要です。HPKIカードを端末のカードリーダーに挿入するか、/.sekisho/login でサインインしてください。",
        en: "You need to sign in to open this page. Insert your HPKI card into this terminal's reader, or sign in at /.sekisho/login.";
    /// A password session's cookie used from another terminal.
    SessionOtherTerminal = "session_other_terminal", FORBIDDEN,
        ja: "このサインインは別の端末のものです。この端末でサインインし直してください。",
        en: "This sign-in belongs to another terminal. Please sign in again on this one.";
    /// A card presence proof signed by another card than the one the session was opened with
    /// (the session is ended: `card_absent`).
    PresenceCardMismatch = "presence_card_mismatch", FORBIDDEN,
        ja: "カードリーダーのカードは、サインインに使われたカードではありません。サインアウトしました。カードを入れ直してください。",
        en: "The card in the reader is not the card this session was signed in with. You have been signed out; insert your card again.";
    PasswordChangeRequired = "password_change_required", FORBIDDEN,
        ja: "パスワードを変更してください（/.sekisho/password）。",
        en: "Please change your password first (/.sekisho/password).";
    HpkiExpired = "hpki_expired", FORBIDDEN,
        ja: "カードの証明書の有効期限が切れています。",
        en: "The card's certificate has expired.";
    HpkiNotYetValid = "hpki_not_yet_valid", FORBIDDEN,
        ja: "カードの証明書はまだ有効ではありません。",
        en: "The card's certificate is not valid yet.";
    HpkiRevoked = "hpki_revoked", FORBIDDEN,
        ja: "カードの証明書は失効しています。",
        en: "The card's certificate has been revoked.";
    /// No current CRL covers the card: its status cannot be known, so it is refused.
    HpkiRevocationUnknown = "hpki_revocation_unknown", SERVICE_UNAVAILABLE,
        ja: "カードの失効状態を確認できません。事務局にお知らせください。",
        en: "The card's revocation status cannot be checked now; tell the secretariat.";
    HpkiSignatureCertificate = "hpki_signature_certificate", FORBIDDEN,
        ja: "署名用証明書ではログインできません（認証用を使います）。",
        en: "That is the card's signature certificate; sign-in uses the authentication one.";
    HpkiBadSignature = "hpki_bad_signature", UNAUTHORIZED,
        ja: "カードの署名が証明書と一致しません。",
        en: "The card's signature does not match its certificate.";
    HpkiUntrusted = "hpki_untrusted", FORBIDDEN,
        ja: "信頼されたHPKI認証局のカードではありません。",
        en: "The card was not issued by a trusted HPKI authority.";
    HpkiWrongProfile = "hpki_wrong_profile", FORBIDDEN,
        ja: "HPKI認証用の証明書ではありません。",
        en: "This certificate is not an HPKI authentication certificate.";
    HpkiMalformed = "hpki_malformed", BAD_REQUEST,
        ja: "カードの証明書を読み取れません。",
        en: "The card's certificate could not be read.";
    HpkiNotConfigured = "hpki_not_configured", SERVICE_UNAVAILABLE,
        ja: "このゲートウェイではHPKIカードのログインは設定されていません。",
        en: "HPKI card sign-in is not set up on this gateway.";
    /// The sign-in challenge is unknown, used, expired or another terminal's.
    ChallengeInvalid = "challenge_invalid", UNAUTHORIZED,
        ja: "ログイン要求の有効期限が切れています。もう一度お試しください。",
        en: "The sign-in challenge is unknown, used, expired or another terminal's; try again.";
    UserUnknown = "user_unknown", FORBIDDEN,
        ja: "このカードはアカウントに登録されていません。施設管理者にお問い合わせください。",
        en: "This card is not registered to an account; ask the facility administrator.";
    UserSuspended = "user_suspended", FORBIDDEN,
        ja: "このアカウントは停止されています。事務局にお問い合わせください。",
        en: "This account is suspended; contact the secretariat.";
    /// Locked after repeated failures until the secretariat unlocks it (R-ACCT-5).
    AccountLocked = "account_locked", LOCKED,
        ja: "ログインの失敗が続いたためロックされています。事務局に解除を依頼してください。",
        en: "This account is locked after repeated failures; the secretariat can unlock it.";
    TerminalLocked = "terminal_locked", TOO_MANY_REQUESTS,
        ja: "この端末からのログイン失敗が多すぎます。しばらくしてからお試しください。",
        en: "Too many failed sign-ins from this terminal; wait and try again.";
    /// Password sign-in: the account has no password (the person sees the generic failure).
    NoPassword = "no_password", UNAUTHORIZED, ja: SIGNIN_FAILED_JA, en: SIGNIN_FAILED_EN;
    /// Password sign-in: wrong password (the person sees the generic failure).
    BadPassword = "bad_password", UNAUTHORIZED, ja: SIGNIN_FAILED_JA, en: SIGNIN_FAILED_EN;
    PasswordChangeWrongCurrent = "password_change_wrong_current", UNAUTHORIZED,
        ja: "現在のパスワードが正しくありません。",
        en: "The current password is not correct.";

    // ---- the patient (R-PAT-*, R-ROLE-*, R-ACCT-8)
    PatientNoConsent = "patient_no_consent", FORBIDDEN,
        ja: "この患者さんの情報は共有の同意が確認できないため表示できません。同意の手続きは事務局にお問い合わせください。",
        en: "This patient's records cannot be shown: no consent to sharing is on record. Ask the network secretariat about the consent procedure.";
    PatientNotInCareTeam = "patient_not_in_care_team", FORBIDDEN,
        ja: "あなた（またはあなたの施設）はこの患者さんの参加者（ケアチーム）に含まれていません。患者さんの管理者に招待を依頼してください。",
        en: "You (or your facility) are not a member of this patient's care team. Ask the patient's coordinator to invite you.";
    PatientCardRequired = "patient_card_required", FORBIDDEN,
        ja: "閲覧には患者さんの同意が必要です。患者さんのICカードをカードリーダーに挿入し、sekisho-agent consent を実行してください。",
        en: "Viewing needs the patient's permission: insert the patient's IC card into the reader and run `sekisho-agent consent`.";
    QualificationNotPermitted = "qualification_not_permitted", FORBIDDEN,
        ja: "あなたの資格ではこの操作は許可されていません。",
        en: "Your qualification does not permit this operation.";
    EntryNotFound = "entry_not_found", FORBIDDEN,
        ja: "確定しようとした入力記録が見つからないか、この患者さんのものではありません。",
        en: "The entry to confirm was not found, or it does not belong to this patient.";
    EntryOtherFacility = "entry_other_facility", FORBIDDEN,
        ja: "入力者と同じ施設の医師だけがこの入力を確定できます。",
        en: "Only a physician of the facility of the person who made this entry can confirm it.";
    AdminOtherFacility = "admin_other_facility", FORBIDDEN,
        ja: "施設管理者は自施設の利用者と端末だけを管理できます。",
        en: "Facility administrators manage only their own facility's users and terminals.";
    /// The facts a decision needs (consent, care team, entries) could not be read.
    PolicyUnavailable = "policy_unavailable", SERVICE_UNAVAILABLE,
        ja: "アクセス判定に必要な情報を読み込めないため、現在この要求を処理できません。しばらくしてから再度お試しください。",
        en: "The information needed to decide this request cannot be read now. Please try again shortly.";
    /// Consent from the patient card needs a signed-in person on this terminal.
    NotSignedIn = "not_signed_in", UNAUTHORIZED,
        ja: "患者さんのカードを読み取る前に、この端末で医師がHPKIカードでサインインしてください。",
        en: "A physician must be signed in on this terminal (HPKI card) before the patient's card is read.";
    PatientCardInvalid = "patient_card_invalid", FORBIDDEN,
        ja: "この地域連携ネットワークの有効な患者カードではありません。",
        en: "This is not a valid patient card of this network.";
    PatientCardRevoked = "patient_card_revoked", FORBIDDEN,
        ja: "この患者カードは無効です（失効または再発行済み）。事務局にお問い合わせください。",
        en: "This patient card is no longer valid (revoked or replaced). Ask the secretariat.";
    /// The consent desk does not say whether the patient is unknown or has not consented.
    PatientUnknownOrNotConsented = "patient_unknown_or_not_consented", FORBIDDEN,
        ja: "この患者さんの情報はネットワークで共有されていません（同意の記録がありません）。",
        en: "This patient's records are not shared in the network (no consent on record).";
    PatientCardNotConfigured = "patient_card_not_configured", SERVICE_UNAVAILABLE,
        ja: "このネットワークでは患者カードがまだ設定されていません。",
        en: "Patient cards are not set up in this network yet.";
    /// The consent challenge ran out or was used before the card's answer came.
    ChallengeExpired = "challenge_expired", UNAUTHORIZED,
        ja: "時間切れまたは使用済みです。もう一度カードを読み取ってください。",
        en: "The request took too long or was already used; read the card again.";
    AttestationNotAllowed = "attestation_not_allowed", FORBIDDEN,
        ja: "このネットワークでは患者カードによる署名が必要です（職員の確認による同意は使えません）。",
        en: "This network requires the patient card's signature; attestation is not allowed.";

    // ---- emergency access (break-glass: R-PAT-4, R-BG-1..3)
    /// Declaring needs a physician signed in with an HPKI card (the policy decides).
    BreakGlassNotPermitted = "break_glass_not_permitted", FORBIDDEN,
        ja: "緊急時アクセスを宣言できるのは、HPKIカードでサインインした医師だけです。",
        en: "Only a physician signed in with an HPKI card can declare an emergency access.";
    /// A route for emergency access only, with no active grant for this person and patient.
    BreakGlassRequired = "break_glass_required", FORBIDDEN,
        ja: "このアドレスは緊急時アクセス専用です。先に /.sekisho/emergency で緊急時アクセスを宣言してください。",
        en: "This address is for emergency access only: declare it first at /.sekisho/emergency.";
    BreakGlassCategoryUnknown = "break_glass_category_unknown", BAD_REQUEST,
        ja: "緊急時アクセスの理由の区分が正しくありません。",
        en: "The reason category of the emergency access is not one of this network's.";
    BreakGlassJustificationInvalid = "break_glass_justification_invalid", BAD_REQUEST,
        ja: "緊急時アクセスの理由を1〜1000文字で記入してください。",
        en: "Write the reason for the emergency access, 1 to 1,000 characters.";
    /// Unknown, another session's, or a draft that ran out.
    BreakGlassDeclarationNotFound = "break_glass_declaration_not_found", NOT_FOUND,
        ja: "この緊急時アクセスの宣言は見つからないか、期限が切れています。はじめからやり直してください。",
        en: "This emergency declaration was not found or has run out; start again.";
    BreakGlassPatientUnknown = "break_glass_patient_unknown", NOT_FOUND,
        ja: "この患者IDの患者さんはネットワークに登録されていません。氏名で検索してください。",
        en: "No patient with this id is registered in the network; search by name.";
    BreakGlassDeclarationState = "break_glass_declaration_state", CONFLICT,
        ja: "この緊急時アクセスの宣言は、この操作ができる状態ではありません。",
        en: "This emergency declaration is not in a state that allows this step.";
    /// The declaration must be signed by the card the physician signed in with.
    BreakGlassCardMismatch = "break_glass_card_mismatch", FORBIDDEN,
        ja: "宣言は、サインインに使ったHPKIカードで署名してください。",
        en: "Sign the declaration with the HPKI card you signed in with.";
    BreakGlassSignatureInvalid = "break_glass_signature_invalid", UNAUTHORIZED,
        ja: "宣言へのカードの署名を確認できません。もう一度カードで署名してください。",
        en: "The card's signature on the declaration could not be verified; sign it again.";
    /// The search by name exists only under a declaration in progress.
    BreakGlassSearchNotAllowed = "break_glass_search_not_allowed", FORBIDDEN,
        ja: "患者さんの氏名検索は、緊急時アクセスの宣言中にだけ使えます。",
        en: "Searching patients by name is possible only while declaring an emergency access.";

    // ---- the officers' and secretariat's console (R-LOG-1, R-BG-3, R-PAT-6)
    /// The signed-in person's roles do not include this console page or act (the policy set's
    /// `read_audit`, `review_break_glass`, `approve_break_glass`).
    ConsoleNotPermitted = "console_not_permitted", FORBIDDEN,
        ja: "この画面・操作は、セキュリティ管理者または事務局の担当者だけが使えます。",
        en: "This page or action is for security officers or the secretariat only.";
    /// A console form without this session's form token (an old page, another session's page,
    /// or another site's).
    ConsoleFormExpired = "console_form_expired", FORBIDDEN,
        ja: "この画面の有効期限が切れています。画面を開き直してから、もう一度操作してください。",
        en: "This page has expired. Open it again and repeat the action.";
    /// No console request for longer than the console's idle time: the session was ended.
    ConsoleIdle = "console_idle", UNAUTHORIZED,
        ja: "操作のない時間が続いたため、サインアウトしました。もう一度サインインしてください。",
        en: "You were signed out after a period without activity. Please sign in again.";
    /// The acting officer declared the emergency access themselves.
    BreakGlassOwnDeclaration = "break_glass_own_declaration", FORBIDDEN,
        ja: "自分が宣言した緊急時アクセスを確認・承認することはできません。別の担当者に依頼してください。",
        en: "You cannot review or approve your own emergency declaration; ask another officer.";

    // ---- enrollment (R-TERM-2)
    /// Unknown code or wrong PIN: one answer for both, so the endpoint is no oracle.
    EnrollInvalid = "enroll_invalid", FORBIDDEN,
        ja: "アクセスコードまたはPINが正しくありません。",
        en: "the access code or PIN is not correct";
    EnrollExpired = "enroll_expired", GONE,
        ja: "このアクセスコードは有効期限が切れています。新しいコードの発行を依頼してください。",
        en: "this access code has expired; ask for a new one";
    EnrollUsed = "enroll_used", GONE,
        ja: "このアクセスコードは使用済みです。新しいコードの発行を依頼してください。",
        en: "this access code has already been used; ask for a new one";
    EnrollLocked = "enroll_locked", GONE,
        ja: "PINの誤りが多すぎます。新しいコードの発行を依頼してください。",
        en: "too many wrong PINs for this access code; ask for a new one";
    EnrollBadRequest = "enroll_bad_request", BAD_REQUEST,
        ja: "証明書要求（CSR）を処理できません。",
        en: "the certificate request cannot be used";
    EnrollInternal = "enroll_internal", SERVICE_UNAVAILABLE,
        ja: "登録処理に失敗しました。しばらくしてから再度お試しください。",
        en: "enrollment failed on the gateway; please try again later";

    // ---- the gateway itself and the upstream
    /// Too many attempts under one key (an access code, an account, a terminal, a source
    /// address) in a short time (`[rate_limits]`); the answer's `Retry-After` says when to retry.
    RateLimited = "rate_limited", TOO_MANY_REQUESTS,
        ja: "短い時間に試行が多すぎます。しばらく待ってから、もう一度お試しください。",
        en: "Too many attempts in a short time. Wait a little and try again.";
    /// The decision record could not be made durable: nothing goes on without it.
    AuditUnavailable = "audit_unavailable", SERVICE_UNAVAILABLE,
        ja: "アクセス記録を保存できないため、現在この要求を処理できません。しばらくしてから再度お試しください。",
        en: "The access record could not be saved, so this request cannot be processed now. Please try again shortly.";
    /// The identity assertion for the upstream could not be signed.
    AssertionFailed = "assertion_failed", SERVICE_UNAVAILABLE,
        ja: "ゲートウェイで処理を完了できませんでした。しばらくしてから再度お試しください。",
        en: "The gateway could not complete this request. Please try again shortly.";
    /// The terminal already has as many requests in progress, or waiting on the upstream, as
    /// `[limits]` allows a terminal (across all its connections); answered with `Retry-After`.
    TerminalBusy = "terminal_busy", TOO_MANY_REQUESTS,
        ja: "この端末からの処理中の要求が多すぎます。少し待ってから再度お試しください。",
        en: "This terminal has too many requests in progress. Wait a moment and try again.";
    UpstreamUnreachable = "upstream_unreachable", BAD_GATEWAY,
        ja: "連携システムに接続できません。しばらくしてから再度お試しください。",
        en: "The network's application cannot be reached. Please try again shortly.";
    UpstreamTimeout = "upstream_timeout", GATEWAY_TIMEOUT,
        ja: "連携システムの応答がありません。しばらくしてから再度お試しください。",
        en: "The network's application did not answer in time. Please try again shortly.";
    /// A store or other internal failure on the way to an answer; nothing was changed.
    Internal = "internal", SERVICE_UNAVAILABLE,
        ja: "もう一度お試しください。",
        en: "Try again.";
    /// An unknown `/.sekisho/` address.
    NotFound = "not_found", NOT_FOUND,
        ja: "見つかりません。",
        en: "Not found.";
    TooLarge = "too_large", PAYLOAD_TOO_LARGE,
        ja: "要求が大きすぎます。",
        en: "The request is too large.";
    BadRequest = "bad_request", BAD_REQUEST, ja: MALFORMED_REQUEST_JA, en: MALFORMED_REQUEST_EN;
}

impl Reason {
    /// Refusals of a patient route where an emergency access could apply: their pages point to
    /// the emergency declaration (R-BG-1).
    pub const fn offers_emergency(self) -> bool {
        matches!(
            self,
            Reason::PatientNoConsent
                | Reason::PatientNotInCareTeam
                | Reason::PatientCardRequired
                | Reason::BreakGlassRequired
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_reason_has_a_distinct_code_a_status_and_both_texts() {
        let mut codes = HashSet::new();
        for r in Reason::ALL {
            let code = r.code();
            assert!(codes.insert(code), "{code} appears twice");
            assert!(
                !code.is_empty()
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()),
                "{code}: codes are snake_case ASCII"
            );
            assert!(
                r.status().is_client_error() || r.status().is_server_error(),
                "{code}"
            );
            assert!(
                !r.ja().is_empty() && !r.ja().is_ascii(),
                "{code} has Japanese text"
            );
            assert!(
                !r.en().is_empty() && r.en().is_ascii(),
                "{code} has English text"
            );
            assert_eq!(Reason::from_code(code), Some(*r));
        }
        assert_eq!(Reason::from_code("anything-else"), None);
    }

    #[test]
    fn statuses_of_the_pages_people_meet_most() {
        for (r, s) in [
            (Reason::TerminalSuspended, 403),
            (Reason::RouteNotMapped, 403),
            (Reason::SigninRequired, 401),
            (Reason::AuditUnavailable, 503),
            (Reason::UpstreamUnreachable, 502),
            (Reason::UpstreamTimeout, 504),
            (Reason::PathAboveRoot, 400),
            (Reason::BodyTooLarge, 413),
            (Reason::AccountLocked, 423),
        ] {
            assert_eq!(r.status().as_u16(), s, "{r}");
        }
    }
}
