//! Enrollment by one-time access code (R-TERM-2). The secretariat or facility administrator
//! gets a code and a PIN; the terminal redeems them once, before they expire and within a few
//! attempts, either with a CSR (the key never leaves the terminal) or for a PKCS#12 bundle
//! protected by the PIN (for systems that install certificates that way). Only hashes of
//! codes and PINs are stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use aws_lc_rs::digest::{SHA256, digest};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sekisho_audit::{AuditLog, AuditRecord};
use sekisho_ca::{Authority, KeyAlgorithm, TerminalId};
use sekisho_protocol::Reason;
use sekisho_protocol::wire::{CsrRequest, ENROLL_CSR_PATH};
use sekisho_store::enrollment::{self as codes, NewCode};
use sekisho_store::{Store, now};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::body::{Body, full};
use crate::config::Config;
use crate::endpoint::{error_with, json};
use crate::html;
use crate::metrics::Metrics;
use crate::terminals;
use crate::throttle::{Limited, Scope, Throttle, source_key};

/// Crockford base32: no I, L, O, U, so a code read aloud over the phone survives.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

pub struct IssuedCode {
    /// `XXXX-XXXX-XXXX` (60 bits).
    pub code: String,
    /// 8 digits.
    pub pin: String,
    pub expires_at: i64,
}

/// The key enrollment PINs are hashed with (HMAC-SHA256), kept in the data dir
/// (`enroll-pin.key`, 0600) and never in the store: a copy of the database alone does not let
/// anyone try the 10^8 PINs of a code they hold offline. Replicas share it with the rest of the
/// data dir. Codes issued before the key existed stop matching (they live hours).
#[derive(Clone)]
pub struct PinKey(aws_lc_rs::hmac::Key);

impl PinKey {
    pub const FILE: &'static str = "enroll-pin.key";

    /// The data dir's key, made on first use.
    pub fn load_or_create(data_dir: &std::path::Path) -> Result<PinKey> {
        let path = data_dir.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                aws_lc_rs::rand::fill(&mut k)
                    .map_err(|_| anyhow::anyhow!("no system randomness"))?;
                sekisho_ca::write_private_file(&path, &k)?;
                k.to_vec()
            }
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        if bytes.len() != 32 {
            anyhow::bail!("{} is not a 32-byte key", path.display());
        }
        Ok(PinKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &bytes,
        )))
    }

    fn hash(&self, norm: &str, pin: &str) -> String {
        hex::encode(aws_lc_rs::hmac::sign(
            &self.0,
            format!("sekisho-enroll-pin:{norm}:{pin}").as_bytes(),
        ))
    }
}

pub async fn issue_code(
    store: &Store,
    cfg: &Config,
    key: &PinKey,
    id: &TerminalId,
) -> Result<IssuedCode> {
    terminals::check_can_issue(store, id).await?;
    let mut raw = [0u8; 12];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let chars: String = raw
        .iter()
        .map(|b| CODE_ALPHABET[(b & 31) as usize] as char)
        .collect();
    let code = format!("{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12]);
    let mut pin_raw = [0u8; 8];
    aws_lc_rs::rand::fill(&mut pin_raw).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    // 250 = 25 * 10: no modulo bias.
    let pin: String = pin_raw
        .iter()
        .map(|b| {
            let mut v = *b;
            while v >= 250 {
                let mut x = [0u8; 1];
                let _ = aws_lc_rs::rand::fill(&mut x);
                v = x[0];
            }
            (b'0' + v % 10) as char
        })
        .collect();
    let norm = normalize_code(&code).expect("generated code is well-formed");
    let expires_at = now() + i64::from(cfg.enrollment.code_lifetime_hours.max(1)) * 3600;
    codes::insert(
        store,
        &NewCode {
            code_hash: &code_hash(&norm),
            pin_hash: &key.hash(&norm, &pin),
            facility: &id.facility,
            terminal: &id.terminal,
            expires_at,
            attempts: i64::from(cfg.enrollment.max_attempts.max(1)),
        },
    )
    .await?;
    Ok(IssuedCode {
        code,
        pin,
        expires_at,
    })
}

/// Upper-cases, drops separators, and maps the letters people confuse with digits.
// Public, hidden, only for the fuzz target (fuzz/fuzz_targets/enrollment.rs).
#[doc(hidden)]
pub fn normalize_code(code: &str) -> Option<String> {
    let mut out = String::new();
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !CODE_ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
            return None;
        }
        out.push(c);
    }
    (out.len() == 12).then_some(out)
}

fn code_hash(norm: &str) -> String {
    hex::encode(digest(
        &SHA256,
        format!("sekisho-enroll-code:{norm}").as_bytes(),
    ))
}

/// How PINs were stored before [`PinKey`]: only to recognise such codes and refuse them.
fn legacy_pin_hash(norm: &str, pin: &str) -> String {
    hex::encode(digest(
        &SHA256,
        format!("sekisho-enroll-pin:{norm}:{pin}").as_bytes(),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Unknown code or wrong PIN: one message for both, so the endpoint is no oracle.
    #[error("{}", Reason::EnrollInvalid.en())]
    Invalid,
    #[error("{}", Reason::EnrollExpired.en())]
    Expired,
    #[error("{}", Reason::EnrollUsed.en())]
    Used,
    #[error("{}", Reason::EnrollLocked.en())]
    Locked,
    #[error("{}: {detail}", Reason::EnrollBadRequest.en(), detail = .0)]
    BadRequest(String),
    #[error("{}", Reason::EnrollInternal.en())]
    Internal(anyhow::Error),
    /// Too many attempts on this code or from this address (`[rate_limits]`).
    #[error("{}", Reason::RateLimited.en())]
    RateLimited(Limited),
}

impl From<anyhow::Error> for EnrollError {
    fn from(e: anyhow::Error) -> Self {
        EnrollError::Internal(e)
    }
}

impl EnrollError {
    pub fn reason(&self) -> Reason {
        match self {
            EnrollError::Invalid => Reason::EnrollInvalid,
            EnrollError::Expired => Reason::EnrollExpired,
            EnrollError::Used => Reason::EnrollUsed,
            EnrollError::Locked => Reason::EnrollLocked,
            EnrollError::BadRequest(_) => Reason::EnrollBadRequest,
            EnrollError::Internal(_) => Reason::EnrollInternal,
            EnrollError::RateLimited(_) => Reason::RateLimited,
        }
    }

    pub fn code(&self) -> &'static str {
        self.reason().code()
    }
}

pub enum Wanted<'a> {
    /// Sign this CSR (PEM or DER).
    Csr(&'a [u8]),
    /// Make a key here and return a PKCS#12 bundle protected by the PIN.
    Bundle,
}

pub struct Enrolled {
    pub id: TerminalId,
    pub cert_pem: String,
    pub chain_pem: String,
    pub serial: String,
    pub not_after: i64,
    pub p12: Option<Vec<u8>>,
}

pub async fn redeem(
    store: &Store,
    ca: &Authority,
    cfg: &Config,
    key: &PinKey,
    code: &str,
    pin: &str,
    wanted: Wanted<'_>,
) -> Result<Enrolled, EnrollError> {
    let norm = normalize_code(code).ok_or(EnrollError::Invalid)?;
    let hash = code_hash(&norm);
    let mut tx = store.begin_write().await.map_err(anyhow::Error::from)?;
    let row = codes::lock(&mut tx, &hash)
        .await?
        .ok_or(EnrollError::Invalid)?;
    if row.attempts_left <= 0 {
        return Err(EnrollError::Locked);
    }
    let given = key.hash(&norm, pin.trim());
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), row.pin_hash.as_bytes())
        .is_err()
    {
        // A code issued before PINs were keyed (before an upgrade) matches only its old,
        // unkeyed hash: with its right PIN it is told it has expired, so the person asks for
        // a new code instead of trying again; it is never redeemed.
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            legacy_pin_hash(&norm, pin.trim()).as_bytes(),
            row.pin_hash.as_bytes(),
        )
        .is_ok()
        {
            return Err(EnrollError::Expired);
        }
        codes::record_failure(&mut tx, &hash).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        return Err(if row.attempts_left <= 1 {
            EnrollError::Locked
        } else {
            EnrollError::Invalid
        });
    }
    if row.used_at.is_some() {
        return Err(EnrollError::Used);
    }
    if row.expires_at <= now() {
        return Err(EnrollError::Expired);
    }
    let id = TerminalId::new(&row.facility, &row.terminal)
        .map_err(|e| EnrollError::Internal(e.into()))?;
    let lifetime = terminals::terminal_lifetime(&cfg.ca);
    let (cert, p12) = match wanted {
        Wanted::Csr(csr) => {
            let cert = ca
                .sign_csr(csr, &id, lifetime)
                .map_err(|e| EnrollError::BadRequest(e.to_string()))?;
            (cert, None)
        }
        Wanted::Bundle => {
            let (cert, key) = ca
                .issue_terminal(&id, lifetime, KeyAlgorithm::EcdsaP256)
                .map_err(|e| EnrollError::Internal(e.into()))?;
            let chain = vec![ca.issuing_der().to_vec(), ca.root_der().to_vec()];
            let p12 = sekisho_ca::pkcs12(&cert.der, &key, &chain, pin.trim(), &id.terminal)
                .map_err(|e| EnrollError::Internal(e.into()))?;
            (cert, Some(p12))
        }
    };
    terminals::register_in(&mut tx, &id, &cert).await?;
    codes::consume(&mut tx, &hash).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(Enrolled {
        cert_pem: cert.pem(),
        chain_pem: ca.chain_pem(),
        serial: cert.serial_hex.clone(),
        not_after: cert.not_after.unix_timestamp(),
        id,
        p12,
    })
}

// ---- the enrollment listener ----

pub struct EnrollService {
    store: Store,
    ca: Option<Authority>,
    cfg: Config,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    /// The WireGuard endpoint's public key, when the gateway runs one: an enrolling terminal
    /// that sends its own WireGuard key gets its tunnel configuration in the answer.
    tunnel_public_key: Option<[u8; 32]>,
    pin_key: PinKey,
    throttle: Arc<Throttle>,
}

impl EnrollService {
    // Each part is built once by `serve`; a parts struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        store: Store,
        audit: AuditLog,
        metrics: Arc<Metrics>,
        ca: Option<Authority>,
        tunnel_public_key: Option<[u8; 32]>,
        pin_key: PinKey,
        throttle: Arc<Throttle>,
    ) -> EnrollService {
        EnrollService {
            store,
            ca,
            cfg,
            audit,
            metrics,
            tunnel_public_key,
            pin_key,
            throttle,
        }
    }

    /// The CA, when its key could be loaded (CRL re-signing needs it too).
    pub fn ca(&self) -> Option<&Authority> {
        self.ca.as_ref()
    }
}

const MAX_ENROLL_BODY: usize = 64 * 1024;

pub async fn run(
    svc: Arc<EnrollService>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.changed() => break,
        };
        // Every handshake here is one without a client certificate: limited per source before
        // it costs anything, and counted among the handshakes in progress while it runs.
        let permit = match svc.throttle.handshake().and_then(|p| {
            svc.throttle
                .check(Scope::NoCertificate, &source_key(peer.ip()))
                .map(|()| p)
        }) {
            Ok(p) => p,
            Err(l) => {
                svc.limited_on_record(&l, peer);
                drop(tcp);
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let svc = svc.clone();
        tokio::spawn(async move {
            let accepted =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
            drop(permit);
            let Ok(Ok(tls)) = accepted else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let svc = svc.clone();
                async move { Ok::<_, std::convert::Infallible>(svc.handle(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

impl EnrollService {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if req.method() == Method::POST
            && let Err(l) = self
                .throttle
                .check(Scope::EnrollSource, &source_key(peer.ip()))
        {
            self.limited_on_record(&l, peer);
            let e = EnrollError::RateLimited(l.clone());
            let resp = if req.uri().path() == ENROLL_CSR_PATH {
                json_error(&e)
            } else {
                html(e.reason().status(), error_page(&e))
            };
            return l.add_retry_after(resp);
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => html(StatusCode::OK, PAGE.to_string()),
            (&Method::POST, ENROLL_CSR_PATH) => {
                let body = match read_body(req).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let Ok(r) = serde_json::from_slice::<CsrRequest>(&body) else {
                    return json_error(&EnrollError::BadRequest(
                        "expected JSON {code, pin, csr}".into(),
                    ));
                };
                // A malformed WireGuard key is refused before the code is spent.
                let wg_key = match r.wg_public_key.as_deref().map(sekisho_tunnel::keys::decode) {
                    None => None,
                    Some(Ok(k)) => Some(k),
                    Some(Err(_)) => {
                        return json_error(&EnrollError::BadRequest(
                            "wg_public_key is not a WireGuard public key (base64 of 32 bytes)"
                                .into(),
                        ));
                    }
                };
                let result = self
                    .redeem_audited(&r.code, &r.pin, Wanted::Csr(r.csr.as_bytes()), peer)
                    .await;
                match result {
                    Ok(e) => {
                        let mut answer = serde_json::json!({
                            "terminal": e.id.terminal, "facility": e.id.facility, "serial": e.serial,
                            "certificate": e.cert_pem, "chain": e.chain_pem, "not_after": e.not_after,
                        });
                        if let (Some(key), Some(gw)) = (wg_key, self.tunnel_public_key) {
                            match crate::terminals::tunnel_config(
                                &self.cfg,
                                &self.store,
                                &e.id.terminal,
                                key,
                                None,
                                gw,
                            )
                            .await
                            {
                                Ok((address, config)) => {
                                    answer["tunnel"] = serde_json::json!({
                                        "address": address.to_string(), "config": config,
                                    });
                                }
                                Err(err) => {
                                    warn!(terminal = %e.id.terminal, error = %err, "enrolled without a tunnel");
                                    answer["tunnel_error"] = serde_json::json!(format!(
                                        "the terminal is enrolled but has no tunnel yet ({err}); ask the secretariat to run `sekisho terminal tunnel`"
                                    ));
                                }
                            }
                        }
                        json(StatusCode::OK, &answer)
                    }
                    Err(EnrollError::RateLimited(l)) => {
                        l.add_retry_after(json_error(&EnrollError::RateLimited(l.clone())))
                    }
                    Err(e) => json_error(&e),
                }
            }
            (&Method::POST, "/enroll/p12") => {
                let body = match read_body(req).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let mut code = String::new();
                let mut pin = String::new();
                for (k, v) in form_urlencoded::parse(&body) {
                    match k.as_ref() {
                        "code" => code = v.into_owned(),
                        "pin" => pin = v.into_owned(),
                        _ => {}
                    }
                }
                match self.redeem_audited(&code, &pin, Wanted::Bundle, peer).await {
                    Ok(e) => {
                        let mut resp = Response::new(full(e.p12.unwrap_or_default()));
                        let h = resp.headers_mut();
                        h.insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/x-pkcs12"),
                        );
                        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        // The terminal id is [A-Za-z0-9._-], safe inside the quoted filename.
                        if let Ok(v) = HeaderValue::from_str(&format!(
                            "attachment; filename=\"{}.p12\"",
                            e.id.terminal
                        )) {
                            h.insert(header::CONTENT_DISPOSITION, v);
                        }
                        resp
                    }
                    Err(EnrollError::RateLimited(l)) => {
                        let e = EnrollError::RateLimited(l.clone());
                        l.add_retry_after(html(e.reason().status(), error_page(&e)))
                    }
                    Err(e) => html(e.reason().status(), error_page(&e)),
                }
            }
            _ => html(
                StatusCode::NOT_FOUND,
                "<!doctype html><meta charset=utf-8><p>見つかりません / Not found</p>".into(),
            ),
        }
    }

    async fn redeem_audited(
        &self,
        code: &str,
        pin: &str,
        wanted: Wanted<'_>,
        peer: SocketAddr,
    ) -> Result<Enrolled, EnrollError> {
        let kind = if matches!(wanted, Wanted::Csr(_)) {
            "csr"
        } else {
            "pkcs12"
        };
        // Per code, whatever the PIN: the code's own attempt count is the lockout, this the
        // pace. A malformed code is refused below without a look at the store.
        if let Some(norm) = normalize_code(code)
            && let Err(l) = self.throttle.check(Scope::EnrollCode, &norm)
        {
            self.limited_on_record(&l, peer);
            return Err(EnrollError::RateLimited(l));
        }
        let result = match &self.ca {
            Some(ca) => redeem(&self.store, ca, &self.cfg, &self.pin_key, code, pin, wanted).await,
            None => Err(EnrollError::Internal(anyhow::anyhow!(
                "the CA key is not loaded (SEKISHO_CA_PASSPHRASE)"
            ))),
        };
        let (decision, reason) = match &result {
            Ok(_) => (sekisho_audit::Decision::Permit, "enrolled"),
            Err(e) => (sekisho_audit::Decision::Deny, e.code()),
        };
        if let Err(EnrollError::Internal(e)) = &result {
            warn!(error = %e, "enrollment failed");
        }
        self.metrics
            .enrollments
            .get_or_create(&vec![("result", reason)])
            .inc();
        let rec = AuditRecord {
            request_id: sekisho_protocol::new_request_id(),
            event: sekisho_audit::Event::Enrollment,
            peer: Some(peer.to_string()),
            terminal: result.as_ref().ok().map(|e| e.id.terminal.clone()),
            facility: result.as_ref().ok().map(|e| e.id.facility.clone()),
            cert_serial: result.as_ref().ok().map(|e| e.serial.clone()),
            decision,
            reason: reason.into(),
            detail: Some(kind.into()),
            ..Default::default()
        };
        // A certificate handed out must be on record: an audit failure withholds it (it stays
        // registered but unused, and the code is spent; the secretariat can revoke it).
        if self.audit.append(rec).await.is_err() && result.is_ok() {
            return Err(EnrollError::Internal(anyhow::anyhow!(
                "audit log unavailable"
            )));
        }
        result
    }
}

impl EnrollService {
    /// A refused attempt: counted, and on record when it is the first of its burst.
    fn limited_on_record(&self, l: &Limited, peer: SocketAddr) {
        self.metrics
            .enrollments
            .get_or_create(&vec![("result", Reason::RateLimited.code())])
            .inc();
        if l.first {
            self.audit
                .append_nowait(l.record(sekisho_audit::Event::Enrollment, Some(peer.to_string())));
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match http_body_util::Limited::new(req.into_body(), MAX_ENROLL_BODY)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(json_error(&EnrollError::BadRequest(
            "request too large".into(),
        ))),
    }
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    r
}

fn json_error(e: &EnrollError) -> Response<Body> {
    error_with(e.reason(), e.to_string())
}

fn error_page(e: &EnrollError) -> String {
    format!(
        "<!doctype html><html lang=ja><meta charset=utf-8><title>Sekisho</title>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto\">\
         <h1>端末の登録 / Terminal enrollment</h1><p>{}</p><p lang=en>{}</p><p><a href=\"/\">戻る / Back</a></p>",
        e.reason().ja(),
        // Our own messages; a CSR parse error is escaped in case it quotes input.
        html::escape(&e.to_string())
    )
}

const PAGE: &str = r#"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>端末の登録 / Terminal enrollment — Sekisho</title>
<style>body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.7}
label{display:block;margin-top:1rem}input{font-size:1.2rem;padding:.3rem;width:100%;box-sizing:border-box}button{margin-top:1.5rem;font-size:1.1rem;padding:.5rem 1.5rem}.en{color:#555}</style></head>
<body><h1>端末の登録 <span class="en">/ Terminal enrollment</span></h1>
<p>施設の管理者に届いたアクセスコードとPINを入力してください。端末証明書（.p12ファイル）がダウンロードされます。証明書をインストールするときのパスワードは、このPINです。</p>
<p class="en" lang="en">Enter the access code and PIN your facility administrator received. A terminal certificate (.p12 file) is downloaded; the PIN is its password when you install it.</p>
<form method="post" action="/enroll/p12" autocomplete="off">
<label>アクセスコード / Access code <input name="code" required placeholder="XXXX-XXXX-XXXX" autocomplete="off" spellcheck="false"></label>
<label>PIN <input name="pin" required inputmode="numeric" autocomplete="off" type="password"></label>
<button type="submit">証明書を受け取る / Get the certificate</button></form>
<p class="en">Terminals with the Sekisho agent enroll with <code>sekisho-agent enroll</code>, which keeps the key on the terminal.</p>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_normalise_forgivingly_but_strictly() {
        assert_eq!(
            normalize_code("abcd-efgh-jkmn").as_deref(),
            Some("ABCDEFGHJKMN")
        );
        assert_eq!(
            normalize_code("0O1I-L234 5678").as_deref(),
            Some("001112345678")
        );
        assert_eq!(normalize_code("ABCD-EFGH-JKM"), None);
        assert_eq!(normalize_code("ABCD-EFGH-JKMU"), None);
        assert_eq!(normalize_code("ＡBCD-EFGH-JKMN"), None);
    }
}

#[cfg(test)]
mod pin_key_tests {
    use super::PinKey;
    use aws_lc_rs::digest::{SHA256, digest};

    /// PINs are hashed with the data dir's own key: the same dir gives the same hash, another
    /// dir another, and neither is the unkeyed hash a copy of the database would let anyone
    /// recompute for all 10^8 PINs.
    #[test]
    fn pins_are_hashed_with_the_data_dirs_key() {
        use std::os::unix::fs::PermissionsExt;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let k = PinKey::load_or_create(a.path()).unwrap();
        let again = PinKey::load_or_create(a.path()).unwrap();
        let other = PinKey::load_or_create(b.path()).unwrap();
        let h = k.hash("ABCDEFGHJKLM", "12345678");
        assert_eq!(h, again.hash("ABCDEFGHJKLM", "12345678"));
        assert_ne!(h, other.hash("ABCDEFGHJKLM", "12345678"));
        assert_ne!(h, k.hash("ABCDEFGHJKLM", "12345679"));
        let unkeyed = hex::encode(digest(&SHA256, b"sekisho-enroll-pin:ABCDEFGHJKLM:12345678"));
        assert_ne!(h, unkeyed);
        let mode = std::fs::metadata(a.path().join(PinKey::FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(a.path().join(PinKey::FILE), b"short").unwrap();
        assert!(PinKey::load_or_create(a.path()).is_err());
    }
}
