//! The e-mail channel: a plain-text message to the officers through the network's SMTP relay.
//!
//! The relay is reached with STARTTLS, required and verified against the configured CA file, or
//! in plain SMTP where the network is trusted; AUTH PLAIN (password from a file) only over TLS.
//! The SMTP client is `lettre` on the workspace's rustls with the aws-lc-rs provider (no other
//! TLS stack, no bundled roots). The message is RFC 5322 with MIME: the subject "[Sekisho]
//! 日本語 / English" as RFC 2047 encoded words, `text/plain; charset=UTF-8` in base64 (safe
//! through any relay), `Date`, and `Message-ID: <delivery id@gateway host>`, the same on every
//! retry so that a mail system can tell a repeat. `Auto-Submitted: auto-generated` (RFC 3834)
//! keeps out-of-office replies away from the gateway's address.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::NoticeRecord;
use crate::config::NotifySmtp;

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The gateway's host name: the right-hand side of Message-IDs.
    domain: String,
}

impl Smtp {
    pub fn new(
        cfg: &NotifySmtp,
        data_dir: &Path,
        hostname: &str,
        timeout: Duration,
    ) -> Result<Smtp> {
        let (host, port) = cfg
            .relay
            .rsplit_once(':')
            .context("notify.smtp.relay must be HOST:PORT")?;
        let port: u16 = port.parse().context("notify.smtp.relay port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hostname.to_string()));
        if cfg.starttls {
            let ca_file = data_dir.join(
                cfg.ca_file
                    .as_ref()
                    .context("notify.smtp with starttls needs ca_file")?,
            );
            let pem = std::fs::read(&ca_file)
                .with_context(|| format!("cannot read {}", ca_file.display()))?;
            let params = TlsParameters::builder(host.to_string())
                .certificate_store(CertificateStore::None)
                .add_root_certificate(
                    Certificate::from_pem(&pem)
                        .with_context(|| format!("{} is not PEM", ca_file.display()))?,
                )
                .build_rustls()
                .context("notify.smtp TLS settings")?;
            b = b.tls(Tls::Required(params));
        } else {
            b = b.tls(Tls::None);
        }
        if let (Some(user), Some(file)) = (&cfg.username, &cfg.password_file) {
            let password = super::read_secret(data_dir, file)?;
            let password = String::from_utf8(password.to_vec())
                .context("notify.smtp.password_file is not UTF-8")?;
            b = b
                .credentials(Credentials::new(user.clone(), password))
                .authentication(vec![Mechanism::Plain]);
        }
        let from: Mailbox = cfg
            .from
            .parse()
            .with_context(|| format!("notify.smtp.from {:?} is not a mail address", cfg.from))?;
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse()
                    .with_context(|| format!("notify.smtp.to {t:?} is not a mail address"))
            })
            .collect::<Result<Vec<Mailbox>>>()?;
        Ok(Smtp {
            transport: b.build(),
            from,
            to,
            domain: hostname.to_string(),
        })
    }

    pub async fn send(&self, delivery_id: &str, notice: &NoticeRecord) -> Result<()> {
        let msg = message(
            notice,
            delivery_id,
            &self.from,
            &self.to,
            &self.domain,
            SystemTime::now(),
        )?;
        self.transport
            .send(msg)
            .await
            .map_err(|e| anyhow::anyhow!("SMTP: {}", super::error_chain(&e)))?;
        Ok(())
    }
}

/// The mail for `notice`. The body is the notice's text, then its facts for the record.
pub fn message(
    notice: &NoticeRecord,
    delivery_id: &str,
    from: &Mailbox,
    to: &[Mailbox],
    domain: &str,
    date: SystemTime,
) -> Result<Message> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject(notice))
        .date(date)
        .message_id(Some(format!("<{delivery_id}@{domain}>")))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    for t in to {
        b = b.to(t.clone());
    }
    let part = SinglePart::builder()
        .header(ContentType::parse("text/plain; charset=UTF-8").expect("constant"))
        .header(ContentTransferEncoding::Base64)
        .body(body(notice));
    b.singlepart(part)
        .context("cannot build the notification mail")
}

pub fn subject(notice: &NoticeRecord) -> String {
    format!("[Sekisho] {} / {}", notice.subject_ja, notice.subject_en)
}

/// The mail's text: CRLF line ends, as SMTP wants them.
pub fn body(notice: &NoticeRecord) -> String {
    let data = serde_json::to_string_pretty(&notice.data).unwrap_or_default();
    let text = format!(
        "{}\n\n--\n種別 / kind: {}\n通知ID / notice id: {}\n時刻 / at: {}\n詳細 / details:\n{}\n",
        notice.text.trim_end(),
        notice.kind,
        notice.id,
        notice.at,
        data
    );
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[cfg(test)]
mod tests;
