//! Notifications for security officers: a physician declared an emergency (issue 11), a
//! declaration is still unreviewed, an anomaly rule fired (issue 12). Officers must hear of
//! these at once even when the gateway restarts or their receiver is down, so a notice is not
//! sent from the request that makes it: [`Notifier::enqueue`] writes it to the store's outbox
//! (`sekisho_store::notify_outbox`), one delivery per configured channel, and wakes the sender
//! ([`Notifier::run`]), which delivers with retries and exponential backoff until a delivery
//! succeeds or is given up after `notify.give_up_hours`. Replicas sharing a PostgreSQL
//! database share the outbox; a lease makes each delivery one replica's at a time.
//!
//! Channels: an HTTPS webhook with a signed JSON body ([`webhook`]) and e-mail through an SMTP
//! relay ([`smtp`]). A notice carries ids, never a patient's name or record: the networks' rules
//! keep patient data off mail servers and out of other systems.

pub mod smtp;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sekisho_store::notify_outbox::{self, Claimed, NewNotice};
use sekisho_store::{Store, now};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Notify as NotifyConfig;
use crate::metrics::NotifyMetrics;

/// Kinds of notice the gateway sends (receivers route on them).
pub mod kind {
    /// A physician declared an emergency (break-glass) for a patient.
    pub const BREAK_GLASS_DECLARED: &str = "break_glass_declared";
    /// A declaration is still unreviewed after the configured number of days.
    pub const BREAK_GLASS_UNREVIEWED: &str = "break_glass_unreviewed";
    /// An anomaly rule of the console fired.
    pub const ANOMALY: &str = "anomaly";
}

/// What officers are told. Ids only: no patient's name, no record content.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// What happened, e.g. [`kind::BREAK_GLASS_DECLARED`]: lower case, digits and `_`.
    pub kind: String,
    /// One line each; the mail's subject is both.
    pub subject_ja: String,
    pub subject_en: String,
    /// Plain text, Japanese first, then English.
    pub text: String,
    /// Machine-readable facts for receivers (ids, times, categories): a JSON object.
    pub data: serde_json::Value,
}

/// A notice as written to the outbox and POSTed to webhooks: the notice with its id and time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeRecord {
    pub kind: String,
    pub id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub subject_ja: String,
    pub subject_en: String,
    pub text: String,
    pub data: serde_json::Value,
}

/// Retry timing of the sender.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// One attempt at one channel may take this long.
    pub timeout: Duration,
    /// Delay before the first retry; each next one doubles, up to `max`.
    pub first: Duration,
    pub max: Duration,
    /// Deliveries not made this long after the notice are given up.
    pub give_up_after: Duration,
    /// The sender looks at the outbox at least this often (other replicas' notices, leases of
    /// replicas that died).
    pub poll: Duration,
}

impl Retry {
    pub fn from_config(c: &NotifyConfig) -> Retry {
        Retry {
            timeout: Duration::from_secs(c.timeout_secs),
            first: Duration::from_secs(c.retry_first_secs),
            max: Duration::from_secs(c.retry_max_secs),
            give_up_after: Duration::from_secs(c.give_up_hours * 3600),
            poll: Duration::from_secs(15),
        }
    }

    /// When to try again after failed attempt number `attempt` (1 = the first) of a notice made
    /// at `created_at`, or `None` once that would be past the give-up time.
    pub fn next_attempt(&self, attempt: i64, created_at: i64, now: i64) -> Option<i64> {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(30);
        let delay = self
            .first
            .saturating_mul(1 << doublings)
            .min(self.max)
            .as_secs() as i64;
        let at = now + delay.max(1);
        (at <= created_at + self.give_up_after.as_secs() as i64).then_some(at)
    }

    /// How long a claim holds a delivery: longer than an attempt can take, so a live sender
    /// never loses its claim mid-send.
    fn lease_secs(&self) -> i64 {
        self.timeout.as_secs() as i64 + 60
    }
}

/// One configured channel.
pub enum Channel {
    Webhook(webhook::Webhook),
    Smtp(smtp::Smtp),
}

impl Channel {
    /// The channel's name in the outbox: stable across restarts and reordered configuration.
    fn key(&self) -> String {
        match self {
            Channel::Webhook(w) => format!("webhook:{}", w.url()),
            Channel::Smtp(_) => "smtp".into(),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Smtp(_) => "smtp",
        }
    }

    async fn send(&self, delivery_id: &str, notice: &NoticeRecord, body: &str) -> Result<()> {
        match self {
            Channel::Webhook(w) => w.send(delivery_id, body).await,
            Channel::Smtp(m) => m.send(delivery_id, notice).await,
        }
    }
}

/// Enqueues notices and delivers them. Shared as `Arc<Notifier>` by the parts of the gateway
/// that notify; without configured channels `enqueue` does nothing (and says so once).
pub struct Notifier {
    store: Store,
    channels: Vec<Channel>,
    retry: Retry,
    /// This sender's name in `claimed_by`: the node and a random part, so that a restarted
    /// gateway does not take its predecessor's claims for its own.
    claimant: String,
    metrics: NotifyMetrics,
    wake: tokio::sync::Notify,
    said_unconfigured: AtomicBool,
}

impl Notifier {
    /// The channels of `[notify]` (none when `cfg` is `None`), secrets and CA files read
    /// relative to `data_dir`. `hostname` names the gateway in mail (EHLO, Message-ID).
    pub fn from_config(
        cfg: Option<&NotifyConfig>,
        data_dir: &Path,
        hostname: &str,
        node: &str,
        store: Store,
        metrics: NotifyMetrics,
    ) -> Result<Notifier> {
        let Some(cfg) = cfg else {
            return Ok(Notifier::new(
                store,
                Vec::new(),
                Retry::default(),
                node,
                metrics,
            ));
        };
        cfg.validate()?;
        let retry = Retry::from_config(cfg);
        let mut channels = Vec::new();
        for w in &cfg.webhooks {
            channels.push(Channel::Webhook(webhook::Webhook::new(
                w,
                data_dir,
                retry.timeout,
            )?));
        }
        if let Some(m) = &cfg.smtp {
            channels.push(Channel::Smtp(smtp::Smtp::new(
                m,
                data_dir,
                hostname,
                retry.timeout,
            )?));
        }
        Ok(Notifier::new(store, channels, retry, node, metrics))
    }

    pub fn new(
        store: Store,
        channels: Vec<Channel>,
        retry: Retry,
        node: &str,
        metrics: NotifyMetrics,
    ) -> Notifier {
        Notifier {
            store,
            channels,
            retry,
            claimant: format!("{node}/{}", &notify_outbox::new_id()[..8]),
            metrics,
            wake: tokio::sync::Notify::new(),
            said_unconfigured: AtomicBool::new(false),
        }
    }

    /// Whether any channel is configured (the sender runs only then).
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Writes `notice` and its deliveries to the outbox in one transaction and wakes the
    /// sender. Returns once the notice is durable; delivery happens in the background.
    pub async fn enqueue(&self, notice: Notice) -> Result<()> {
        let Some(record) = self.record(notice)? else {
            return Ok(());
        };
        let mut tx = self.store.begin_write().await?;
        self.write(&mut tx, &record).await?;
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Writes `notice` in the caller's transaction, so that it commits with the change it
    /// reports (a declaration and its notice together, or neither). Call [`Notifier::wake`]
    /// after the commit. Returns the notice id (`None` when no channel is configured).
    pub async fn enqueue_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        notice: Notice,
    ) -> Result<Option<String>> {
        let Some(record) = self.record(notice)? else {
            return Ok(None);
        };
        self.write(tx, &record).await?;
        Ok(Some(record.id))
    }

    /// Tells the sender that notices are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The notice as it will be sent, or `None` when there is nowhere to send it.
    fn record(&self, notice: Notice) -> Result<Option<NoticeRecord>> {
        check(&notice)?;
        if self.channels.is_empty() {
            if !self.said_unconfigured.swap(true, Ordering::Relaxed) {
                warn!(
                    kind = %notice.kind,
                    "no notification channel is configured ([notify] in sekisho.toml): \
                     security officers are not told of this or later notices"
                );
            }
            return Ok(None);
        }
        let at = time::OffsetDateTime::now_utc().replace_nanosecond(0)?;
        Ok(Some(NoticeRecord {
            kind: notice.kind,
            id: notify_outbox::new_id(),
            at: at.format(&time::format_description::well_known::Rfc3339)?,
            subject_ja: notice.subject_ja,
            subject_en: notice.subject_en,
            text: notice.text,
            data: match notice.data {
                serde_json::Value::Null => serde_json::json!({}),
                d => d,
            },
        }))
    }

    async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        record: &NoticeRecord,
    ) -> Result<()> {
        let body = serde_json::to_string(record)?;
        let keys: Vec<String> = self.channels.iter().map(Channel::key).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let notice = NewNotice {
            id: &record.id,
            kind: &record.kind,
            created_at: now(),
            body: &body,
        };
        notify_outbox::enqueue(tx, &notice, &keys)
            .await
            .context("cannot write the notice to the outbox")?;
        Ok(())
    }

    /// The sender: delivers what is due, then sleeps until the next delivery is due, a notice
    /// is enqueued, or `poll` has passed. Returns on shutdown (an attempt in progress is
    /// finished first, within the caller's grace period).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.channels.is_empty() {
            return;
        }
        info!(
            channels = ?self.channels.iter().map(Channel::key).collect::<Vec<_>>(),
            claimant = %self.claimant,
            "notification sender started"
        );
        let mut last_prune = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.deliver_due().await {
                Ok(_) => self.until_due().await,
                Err(e) => {
                    warn!("notification outbox: {e:#}");
                    self.retry.poll
                }
            };
            if now() - last_prune > 3600 {
                last_prune = now();
                // Finished notices are kept 90 days for the officers' questions.
                if let Err(e) = notify_outbox::prune(&self.store, now() - 90 * 86400).await {
                    warn!("cannot prune the notification outbox: {e:#}");
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long until the next pending delivery is due (at most `poll`).
    async fn until_due(&self) -> Duration {
        match notify_outbox::next_due(&self.store).await {
            Ok(Some(at)) => {
                Duration::from_secs((at - now()).clamp(0, i64::MAX) as u64).min(self.retry.poll)
            }
            Ok(None) => self.retry.poll,
            Err(e) => {
                warn!("notification outbox: {e:#}");
                self.retry.poll
            }
        }
    }

    /// One pass: claims what is due, a batch at a time, and attempts each claimed delivery
    /// (the deliveries of a batch at once, so a slow channel does not hold up the others).
    /// Returns how many attempts were made.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<usize> {
        let mut attempts = 0;
        loop {
            let batch = notify_outbox::claim(
                &self.store,
                &self.claimant,
                now(),
                self.retry.lease_secs(),
                16,
            )
            .await?;
            if batch.is_empty() {
                break;
            }
            attempts += batch.len();
            let mut set = tokio::task::JoinSet::new();
            for c in batch {
                let me = self.clone();
                set.spawn(async move { me.attempt(c).await });
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => error!("notification outbox: {e:#}"),
                    Err(e) => error!("notification attempt failed: {e}"),
                }
            }
        }
        let backlog = notify_outbox::backlog(&self.store).await?;
        self.metrics.pending.set(backlog.pending);
        self.metrics
            .oldest_pending_seconds
            .set(backlog.oldest_created_at.map_or(0, |t| (now() - t).max(0)));
        Ok(attempts)
    }

    /// Sends one claimed delivery and records the result.
    async fn attempt(&self, c: Claimed) -> Result<()> {
        let channel = self.channels.iter().find(|ch| ch.key() == c.channel);
        let (label, result) = match channel {
            None => (
                "unknown",
                Err(anyhow::anyhow!(
                    "channel {:?} is no longer configured",
                    c.channel
                )),
            ),
            Some(ch) => {
                let sent = match serde_json::from_str::<NoticeRecord>(&c.body) {
                    Ok(record) => {
                        match tokio::time::timeout(
                            self.retry.timeout,
                            ch.send(&c.delivery_id, &record, &c.body),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(anyhow::anyhow!(
                                "no answer within {} s",
                                self.retry.timeout.as_secs()
                            )),
                        }
                    }
                    Err(e) => Err(anyhow::anyhow!("the stored notice is not readable: {e}")),
                };
                (ch.label(), sent)
            }
        };
        let t = now();
        match result {
            Ok(()) => {
                if !notify_outbox::mark_delivered(&self.store, &c, &self.claimant, t).await? {
                    warn!(delivery = %c.delivery_id, "delivered after this sender's claim ran out");
                }
                self.metrics.delivery(label, "delivered");
                info!(delivery = %c.delivery_id, notice = %c.notice_id, kind = %c.kind, channel = %c.channel, attempt = c.attempt, "notice delivered");
            }
            Err(e) => {
                let retry_at = if channel.is_some() {
                    self.retry.next_attempt(c.attempt, c.created_at, t)
                } else {
                    None
                };
                let message = format!("{e:#}");
                notify_outbox::mark_failed(&self.store, &c, &self.claimant, t, &message, retry_at)
                    .await?;
                match retry_at {
                    Some(at) => {
                        self.metrics.delivery(label, "retry");
                        warn!(delivery = %c.delivery_id, notice = %c.notice_id, channel = %c.channel, attempt = c.attempt, retry_in_secs = at - t, "notice not delivered: {message}");
                    }
                    None => {
                        self.metrics.delivery(label, "gave_up");
                        error!(delivery = %c.delivery_id, notice = %c.notice_id, kind = %c.kind, channel = %c.channel, attempt = c.attempt, "notice given up: {message}");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            timeout: Duration::from_secs(30),
            first: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(15),
        }
    }
}

/// Refuses notices that would make a bad mail or a confusing receiver.
fn check(n: &Notice) -> Result<()> {
    if n.kind.is_empty()
        || !n
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!(
            "notice kind {:?}: lower case letters, digits and _ only",
            n.kind
        );
    }
    for (what, s) in [("subject_ja", &n.subject_ja), ("subject_en", &n.subject_en)] {
        if s.trim().is_empty() || s.chars().any(char::is_control) {
            bail!("notice {what} must be one non-empty line");
        }
    }
    if n.text.trim().is_empty() {
        bail!("notice text is empty");
    }
    if !(n.data.is_object() || n.data.is_null()) {
        bail!("notice data must be a JSON object");
    }
    Ok(())
}

/// An error with its causes, for the outbox's `last_error` and the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reads a secret file of the data dir, refusing one that others can read.
pub(crate) fn read_secret(data_dir: &Path, file: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(file);
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} can be read by others: chmod 600 it (it holds a secret)",
            path.display()
        );
    }
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let text = bytes.trim_ascii();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(zeroize::Zeroizing::new(text.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            kind: kind::BREAK_GLASS_DECLARED.into(),
            subject_ja: "緊急時アクセスの宣言".into(),
            subject_en: "Break-glass declared".into(),
            text: "本文\nBody".into(),
            data: serde_json::json!({"patient_id": "P1"}),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_give_up_time() {
        let r = Retry {
            first: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(86400),
            ..Retry::default()
        };
        let t = 1_000_000;
        assert_eq!(r.next_attempt(1, t, t), Some(t + 10));
        assert_eq!(r.next_attempt(2, t, t + 10), Some(t + 30));
        assert_eq!(r.next_attempt(3, t, t), Some(t + 40));
        assert_eq!(r.next_attempt(10, t, t), Some(t + 3600));
        assert_eq!(r.next_attempt(1000, t, t), Some(t + 3600));
        assert_eq!(r.next_attempt(8, t, t + 86000), None);
        assert_eq!(r.next_attempt(1, t, t + 86390), Some(t + 86400));
    }

    #[test]
    fn notices_are_checked() {
        assert!(check(&notice()).is_ok());
        let bad = |f: fn(&mut Notice)| {
            let mut n = notice();
            f(&mut n);
            check(&n).is_err()
        };
        assert!(bad(|n| n.kind = "Break Glass".into()));
        assert!(bad(|n| n.subject_en = "two\nlines".into()));
        assert!(bad(|n| n.subject_ja = " ".into()));
        assert!(bad(|n| n.text = String::new()));
        assert!(bad(|n| n.data = serde_json::json!([1])));
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "  key\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(dir.path(), Path::new("s")).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_secret(dir.path(), Path::new("s")).unwrap().as_slice(),
            b"key"
        );
    }
}
