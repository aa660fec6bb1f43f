//! The gateway's configuration: `sekisho.toml` in the data dir, written by `sekisho init`.
//! Relative paths in it are relative to the data dir, so a data dir can be moved whole.

pub mod break_glass;
pub mod export;
pub mod rate_limits;
pub mod retention;
pub mod session_limits;
pub mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sekisho_policies::RouteConfig;
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "sekisho.toml";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name terminals use to reach the gateway (server certificate, assertion issuer).
    pub hostname: String,
    /// This gateway's name in audit records (several replicas share one log); the
    /// `SEKISHO_NODE` environment variable overrides it.
    #[serde(default = "default_node")]
    pub node: String,
    pub listen: Listen,
    pub upstream: Upstream,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default)]
    pub enrollment: Enrollment,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub signin: Signin,
    #[serde(default)]
    pub policy: Policy,
    /// HPKI card sign-in; absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpki: Option<Hpki>,
    /// The WireGuard endpoint (R-TERM-3); absent = no tunnel. Needs CAP_NET_ADMIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// Emergency access: reason categories and their rules (R-PAT-4, R-BG-1..3).
    #[serde(default)]
    pub break_glass: break_glass::BreakGlassConfig,
    /// The officers' and secretariat's console (`docs/console.md`).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Anomaly rules whose findings reach the console, `/metrics` and the officers' channels.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// Where security officers are told of break-glass declarations and anomalies
    /// (`docs/notifications.md`); absent = no channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// How fast anyone may try where guessing pays (`[rate_limits]`, `rate_limits.rs`).
    #[serde(default)]
    pub rate_limits: rate_limits::RateLimitsConfig,
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Seconds without a console request after which the person's session is ended
    /// (default 900: fifteen minutes).
    #[serde(default = "default_console_idle")]
    pub idle_seconds: u32,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            idle_seconds: default_console_idle(),
        }
    }
}

fn default_console_idle() -> u32 {
    900
}

/// The anomaly rules (R-LOG-3, R-LOG-4; `docs/console.md`). A threshold of 0 turns its rule off.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// How often the audit log is scanned.
    #[serde(default = "default_anomaly_scan")]
    pub scan_seconds: u32,
    /// More distinct patients than this opened by one person within an hour.
    #[serde(default = "default_distinct_patients")]
    pub distinct_patients_per_hour: u32,
    /// More permitted patient requests than this by one person in a day (JST).
    #[serde(default)]
    pub accesses_per_day: u32,
    /// Patient records opened outside these hours (JST), `HH:MM-HH:MM`; empty: no rule.
    #[serde(default = "default_working_hours")]
    pub working_hours: String,
    /// This many emergency declarations or more for patients outside the physician's care
    /// teams within 30 days.
    #[serde(default = "default_bg_outside")]
    pub break_glass_outside_team: u32,
}

impl Default for AnomalyConfig {
    fn default() -> AnomalyConfig {
        AnomalyConfig {
            scan_seconds: default_anomaly_scan(),
            distinct_patients_per_hour: default_distinct_patients(),
            accesses_per_day: 0,
            working_hours: default_working_hours(),
            break_glass_outside_team: default_bg_outside(),
        }
    }
}

impl AnomalyConfig {
    /// The working hours as minutes after midnight, `(start, end)`; `None` when the rule is off.
    pub fn hours(&self) -> Result<Option<(u32, u32)>> {
        let s = self.working_hours.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        match s.split_once('-').map(|(a, b)| (minutes(a), minutes(b))) {
            Some((Some(a), Some(b))) if a < b => Ok(Some((a, b))),
            _ => bail!(
                "anomaly.working_hours must be HH:MM-HH:MM, start before end (e.g. 07:00-21:00)"
            ),
        }
    }
}

fn default_anomaly_scan() -> u32 {
    60
}

fn default_distinct_patients() -> u32 {
    30
}

fn default_working_hours() -> String {
    "06:00-22:00".into()
}

fn default_bg_outside() -> u32 {
    3
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// mTLS listener for terminals.
    pub gateway: SocketAddr,
    /// Server-only TLS listener for enrollment by access code: the one thing reachable
    /// without a client certificate, and nothing else is served there.
    pub enroll: SocketAddr,
    /// Plain HTTP, loopback by default: health, readiness, metrics, JWKS.
    pub management: SocketAddr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `http://` or `https://` base URL of the network's application.
    pub url: String,
    /// Trust store for an https upstream (PEM); the system roots are never used.
    pub ca_file: Option<PathBuf>,
    /// Client certificate the gateway presents to an https upstream.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// `aud` of the signed assertion; defaults to the upstream URL's origin.
    pub assertion_audience: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite:sekisho.db` (relative to the data dir) or `postgres://user@host/db`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite:sekisho.db".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// How long an HTTP/1 request's head may take from its first byte to its end; a
    /// keep-alive connection waiting for its next request is not timed by it (`idle_timeout_secs`).
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub tls_handshake_timeout_secs: u64,
    /// Requests a terminal may have in progress at once, across all its connections (HTTP/2
    /// streams and HTTP/1 requests alike); beyond it `terminal_busy`.
    pub terminal_max_requests: usize,
    /// Requests of a terminal that may hold an upstream connection at once (from the decision
    /// until the upstream's answer has been passed on); beyond it `terminal_busy`.
    pub terminal_max_upstream: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_connections: 16_384,
            tls_handshake_timeout_secs: 10,
            terminal_max_requests: 256,
            terminal_max_upstream: 64,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    pub terminal_lifetime_days: u32,
    /// A CRL is valid this long; the gateway re-signs it when a third of it is left.
    pub crl_lifetime_hours: u32,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            terminal_lifetime_days: 397,
            crl_lifetime_hours: 7 * 24,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Enrollment {
    pub code_lifetime_hours: u32,
    pub max_attempts: u32,
}

impl Default for Enrollment {
    fn default() -> Self {
        Enrollment {
            code_lifetime_hours: 72,
            max_attempts: 5,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    pub max_batch: usize,
    /// How long the audit writer waits for a fuller batch after the first record. 0 (the
    /// default): none — the records that arrive while a batch commits form the next batch,
    /// and waiting on top of that only added latency (`cargo bench --bench durable`).
    pub max_wait_us: u64,
    /// Whether the node's journal (`audit/journal-<node>/`) is the durability point, with the
    /// store's log filled behind it (`docs/audit.md`, "The durability point"). `false`: each
    /// batch's store transaction is, as the command line does (slower; no node-local state).
    pub journal: bool,
    /// Where signed checkpoints are copied as they are made (`[[audit.witness]]`,
    /// `docs/audit.md`, "Witnesses"); none by default.
    #[serde(rename = "witness", skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<witness::WitnessConfig>,
    /// At most one copy to a witness per this many milliseconds (the newest at the time).
    pub witness_interval_ms: u64,
    /// How often the store is asked for checkpoints other replicas and CLI commands made.
    pub witness_poll_ms: u64,
    /// One attempt at a witness may take this long.
    pub witness_timeout_secs: u64,
    /// Where the audit log is streamed as it is written (`[[audit.export]]`, `docs/audit.md`,
    /// "Export"); none by default.
    #[serde(rename = "export", skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<export::ExportConfig>,
    /// The network's name in exported records (ATNA AuditEnterpriseSiteID, FHIR
    /// source.site); default: `hostname`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The OID of the network's patient identifiers, when it has one: exported patient ids
    /// then carry it (`urn:oid:…` in FHIR, the CX assigning authority in ATNA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id_oid: Option<String>,
    /// How often exporters look for records other replicas appended.
    pub export_poll_ms: u64,
    /// Records per delivery.
    pub export_batch: usize,
    /// One attempt at a destination may take this long.
    pub export_timeout_secs: u64,
    /// A replica that stops renewing its hold on a destination loses it after this long.
    pub export_lease_secs: u64,
    /// Syslog has no acknowledgements: a message counts as received once it was written this
    /// long ago on a connection that is still up (`docs/audit.md`, "Export").
    pub export_confirm_ms: u64,
    /// How long records keep their bodies, and when the gateway prunes (`[audit.retention]`).
    pub retention: retention::RetentionConfig,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            max_batch: 512,
            max_wait_us: 0,
            journal: true,
            witnesses: Vec::new(),
            witness_interval_ms: 1000,
            witness_poll_ms: 5000,
            witness_timeout_secs: 10,
            exports: Vec::new(),
            site: None,
            patient_id_oid: None,
            export_poll_ms: 1000,
            export_batch: 500,
            export_timeout_secs: 10,
            export_lease_secs: 30,
            export_confirm_ms: 2000,
            retention: retention::RetentionConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Signin {
    /// Failures after which an account is locked until the secretariat unlocks it (R-ACCT-5).
    pub max_failures: u32,
    /// Failures from one terminal after which it may not try for `terminal_lock_minutes`
    /// (kept apart from accounts, so one terminal cannot lock every physician out).
    pub terminal_max_failures: u32,
    pub terminal_lock_minutes: u32,
    /// A session ends this long after sign-in whatever happens.
    pub session_hours: u32,
    pub challenge_seconds: u32,
    /// Accounts nobody signed in to for this many days are suspended (R-ACCT-7); 0 = never.
    pub suspend_unused_days: u32,
    /// A session with no request for this long ends (`session_idle`); see `session_limits`.
    pub idle_minutes: u32,
    /// A card session whose card has not proved its presence for this long ends
    /// (`heartbeat_missed`); the agent proves it every third of this.
    pub card_presence_secs: u32,
}

impl Default for Signin {
    fn default() -> Self {
        Signin {
            max_failures: 5,
            terminal_max_failures: 20,
            terminal_lock_minutes: 15,
            session_hours: 12,
            challenge_seconds: 60,
            suspend_unused_days: 180,
            idle_minutes: session_limits::DEFAULT_IDLE_MINUTES,
            card_presence_secs: session_limits::DEFAULT_CARD_PRESENCE_SECS,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// The Cedar policy set and schema (relative to the data dir); re-read when a file changes.
    pub dir: PathBuf,
    /// Viewing a patient needs the patient's IC card or a consent window it opened (R-PAT-2).
    /// Off by default so that a network can issue patient cards before it requires them.
    pub require_patient_card: bool,
    /// How long a consent window opened by the patient's card (or attestation) stays open.
    pub consent_window_minutes: u32,
    /// For how long after the card signed the gateway's challenge the card counts as present
    /// (`patient_card_present` in the policy context).
    pub card_presence_seconds: u32,
    /// Lower-assurance mode: a signed-in member of staff may open a window by reading the
    /// card's id and attesting the patient's presence (recorded as `staff_attested`).
    pub allow_attested_consent: bool,
    /// Patient facts (consent, care team, windows) are held in memory and kept current from the
    /// store; once the store has not been read for this long, patient requests are refused
    /// (`policy_unavailable`) rather than decided on facts that may have changed.
    pub facts_max_age_secs: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            dir: "policies".into(),
            require_patient_card: false,
            consent_window_minutes: 30,
            card_presence_seconds: 300,
            allow_attested_consent: false,
            facts_max_age_secs: 5,
        }
    }
}

/// The gateway's WireGuard endpoint: each registered terminal is a peer with a fixed address.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// TUN interface the gateway creates (at most 15 bytes).
    #[serde(default = "default_tunnel_interface")]
    pub interface: String,
    /// UDP address WireGuard listens on.
    #[serde(default = "default_tunnel_listen")]
    pub listen: SocketAddr,
    /// The gateway's tunnel address and the subnet terminals get addresses from, e.g.
    /// "10.77.0.1/16".
    pub address: String,
    /// host:port that terminals send WireGuard to (written into their wg-quick configuration).
    pub endpoint: String,
    /// Accept terminal connections only through the tunnel, from the address of the peer
    /// whose terminal presents the certificate.
    #[serde(default = "yes")]
    pub require_tunnel: bool,
    /// The endpoint's private key, relative to the data dir (created 0600 on first start).
    #[serde(default = "default_tunnel_key")]
    pub private_key: PathBuf,
}

fn default_tunnel_interface() -> String {
    "sekisho0".into()
}
fn default_tunnel_listen() -> SocketAddr {
    "0.0.0.0:51820".parse().expect("constant")
}
fn default_tunnel_key() -> PathBuf {
    "tunnel.key".into()
}
fn yes() -> bool {
    true
}

impl Tunnel {
    /// The gateway's tunnel address and prefix length.
    pub fn subnet(&self) -> Result<sekisho_store::tunnel_peers::Subnet> {
        let (addr, prefix) = self
            .address
            .split_once('/')
            .context("tunnel.address must be ADDRESS/PREFIX, e.g. 10.77.0.1/16")?;
        let gateway: std::net::Ipv4Addr = addr
            .parse()
            .context("tunnel.address is not an IPv4 address")?;
        let prefix: u8 = prefix
            .parse()
            .context("tunnel.address prefix is not a number")?;
        if !(8..=30).contains(&prefix) {
            bail!("tunnel.address prefix must be between 8 and 30");
        }
        Ok(sekisho_store::tunnel_peers::Subnet { gateway, prefix })
    }
}

/// Notification channels for security officers. Secrets are files (mode 0600) relative to the
/// data dir, never values in this file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(rename = "webhook", default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<NotifyWebhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<NotifySmtp>,
    /// One attempt at one channel may take this long.
    #[serde(default = "default_notify_timeout")]
    pub timeout_secs: u64,
    /// The first retry comes this long after a failed attempt; each next one twice as long
    /// after, up to `retry_max_secs`.
    #[serde(default = "default_retry_first")]
    pub retry_first_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// A delivery not made this long after its notice is given up (and stays in the outbox
    /// with its last error).
    #[serde(default = "default_give_up_hours")]
    pub give_up_hours: u64,
}

/// An HTTPS receiver of signed JSON notices.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyWebhook {
    pub url: String,
    /// The HMAC key the body is signed with (the file's bytes, surrounding whitespace removed).
    pub secret_file: PathBuf,
    /// Trust store for the receiver's certificate (PEM); the system roots are never used.
    pub ca_file: Option<PathBuf>,
    /// Allows an `http://` URL: for tests only, the notice would travel in the clear.
    #[serde(default)]
    pub allow_http: bool,
}

/// An SMTP relay that takes the gateway's mail for the officers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySmtp {
    /// host:port of the relay.
    pub relay: String,
    /// STARTTLS, required (verified against `ca_file`); false = plain SMTP on a trusted network.
    #[serde(default = "yes")]
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    /// The sender, e.g. "Sekisho <sekisho@example.jp>".
    pub from: String,
    pub to: Vec<String>,
    /// AUTH PLAIN (only over STARTTLS) with the password in `password_file`.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

fn default_notify_timeout() -> u64 {
    30
}
fn default_retry_first() -> u64 {
    10
}
fn default_retry_max() -> u64 {
    3600
}
fn default_give_up_hours() -> u64 {
    24
}

impl Notify {
    pub fn validate(&self) -> Result<()> {
        for w in &self.webhooks {
            let u: http::Uri = w
                .url
                .parse()
                .with_context(|| format!("notify.webhook.url {:?} is not a URL", w.url))?;
            if u.authority().is_none() {
                bail!("notify.webhook.url {:?} has no host", w.url);
            }
            match u.scheme_str() {
                Some("https") if w.ca_file.is_none() => bail!(
                    "notify.webhook {:?} needs ca_file (the system trust store is not used)",
                    w.url
                ),
                Some("https") => {}
                Some("http") if w.allow_http => {}
                Some("http") => bail!(
                    "notify.webhook {:?}: http:// sends notices in the clear (allow_http is for tests)",
                    w.url
                ),
                _ => bail!("notify.webhook.url {:?} must be https://", w.url),
            }
        }
        if let Some(m) = &self.smtp {
            let (host, port) = m
                .relay
                .rsplit_once(':')
                .with_context(|| format!("notify.smtp.relay {:?} must be HOST:PORT", m.relay))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                bail!("notify.smtp.relay {:?} must be HOST:PORT", m.relay);
            }
            if m.starttls && m.ca_file.is_none() {
                bail!(
                    "notify.smtp with starttls needs ca_file (the system trust store is not used)"
                );
            }
            if m.to.is_empty() {
                bail!("notify.smtp.to names nobody");
            }
            if m.username.is_some() != m.password_file.is_some() {
                bail!("notify.smtp.username and notify.smtp.password_file go together");
            }
            if m.username.is_some() && !m.starttls {
                bail!("notify.smtp: AUTH needs starttls (the password would travel in the clear)");
            }
        }
        if self.timeout_secs == 0 || self.retry_first_secs == 0 || self.give_up_hours == 0 {
            bail!("notify.timeout_secs, retry_first_secs and give_up_hours must be above 0");
        }
        if self.retry_max_secs < self.retry_first_secs {
            bail!("notify.retry_max_secs must be at least retry_first_secs");
        }
        Ok(())
    }
}

/// Trust for HPKI cards: files relative to the data dir, PEM or DER.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hpki {
    /// Root certificates (MHLW HPKI Root CA).
    pub anchors: Vec<PathBuf>,
    /// Issuing CA certificates (authentication CAs).
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    /// CRLs of the issuing CAs and the root's authority revocation list; re-read when they change.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// CRL distribution points fetched over HTTP (CRLs are signed, so plain HTTP is fine),
    /// cached in the data dir; the last good copy is used until it expires (then HPKI sign-in
    /// fails closed).
    #[serde(default)]
    pub crl_urls: Vec<String>,
    #[serde(default = "default_crl_refresh")]
    pub crl_refresh_minutes: u32,
}

fn default_crl_refresh() -> u32 {
    60
}

fn default_node() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

fn default_upstream_timeout() -> u64 {
    30
}

impl Config {
    pub fn load(data_dir: &Path) -> Result<Config> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (run `sekisho init --data-dir {}` first)",
                path.display(),
                data_dir.display()
            )
        })?;
        let mut cfg: Config =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        // Replicas made from one image and one data dir (Kubernetes) name themselves here,
        // e.g. after the pod.
        if let Some(node) = std::env::var("SEKISHO_NODE").ok().filter(|n| !n.is_empty()) {
            anyhow::ensure!(
                sekisho_protocol::ids::is_valid_id(&node),
                "SEKISHO_NODE must be 1 to 64 letters, digits, '.', '_' or '-'"
            );
            cfg.node = node;
        }
        cfg.validate()
            .with_context(|| format!("{} is not valid", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let u: http::Uri = self
            .upstream
            .url
            .parse()
            .context("upstream.url is not a URL")?;
        match u.scheme_str() {
            Some("http") | Some("https") => {}
            _ => bail!("upstream.url must start with http:// or https://"),
        }
        if u.authority().is_none() {
            bail!("upstream.url has no host");
        }
        if self.upstream.client_cert.is_some() != self.upstream.client_key.is_some() {
            bail!("upstream.client_cert and upstream.client_key go together");
        }
        if self.routes.is_empty() {
            bail!("no [[route]] is configured: every request would be refused");
        }
        sekisho_policies::RouteMap::new(self.routes.clone())?;
        self.break_glass.validate()?;
        self.signin.validate_limits()?;
        self.anomaly.hours()?;
        if self.anomaly.scan_seconds == 0 {
            bail!("anomaly.scan_seconds must be at least 1");
        }
        if self.limits.max_header_bytes < 8192 {
            bail!("limits.max_header_bytes must be at least 8192");
        }
        if self.limits.terminal_max_upstream == 0
            || self.limits.terminal_max_upstream > self.limits.terminal_max_requests
        {
            bail!("limits.terminal_max_upstream must be from 1 to limits.terminal_max_requests");
        }
        if let Some(n) = &self.notify {
            n.validate()?;
        }
        witness::validate(&self.audit.witnesses)?;
        export::validate(&self.audit)?;
        self.audit.retention.validate()?;
        self.rate_limits.validate()?;
        if let Some(t) = &self.tunnel {
            t.subnet()?;
            if t.interface.is_empty() || t.interface.len() > 15 {
                bail!("tunnel.interface must be 1 to 15 bytes");
            }
            if !t.endpoint.contains(':') {
                bail!("tunnel.endpoint must be HOST:PORT (what terminals send WireGuard to)");
            }
        }
        Ok(())
    }

    /// The store URL with a relative SQLite path resolved against the data dir.
    pub fn store_url(&self, data_dir: &Path) -> String {
        resolve_store_url(&self.store.url, data_dir)
    }
}

pub fn resolve_store_url(url: &str, data_dir: &Path) -> String {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let p = Path::new(path);
        if !p.is_absolute() {
            let full = data_dir.join(p);
            let full = std::path::absolute(&full).unwrap_or(full);
            return match query {
                Some(q) => format!("sqlite://{}?{q}", full.display()),
                None => format!("sqlite://{}", full.display()),
            };
        }
        return format!("sqlite://{}", rest.trim_start_matches("//"));
    }
    url.to_string()
}

/// Where things live inside a data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.tls_dir().join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }
    pub fn assertion_key(&self) -> PathBuf {
        self.root.join("assertion.key")
    }
    pub fn jwks(&self) -> PathBuf {
        self.root.join("jwks.json")
    }
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
    pub fn crl_pem(&self) -> PathBuf {
        self.root.join("crl.pem")
    }
}

/// The CA passphrase, when the CA keys were encrypted at init.
pub fn ca_passphrase() -> Option<String> {
    std::env::var("SEKISHO_CA_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_resolves_into_data_dir() {
        let u = resolve_store_url("sqlite:sekisho.db", Path::new("/srv/sekisho"));
        assert_eq!(u, "sqlite:///srv/sekisho/sekisho.db");
        assert_eq!(
            resolve_store_url("sqlite:///abs/x.db", Path::new("/d")),
            "sqlite:///abs/x.db"
        );
        assert_eq!(
            resolve_store_url("postgres://p@h/db", Path::new("/d")),
            "postgres://p@h/db"
        );
    }
}
