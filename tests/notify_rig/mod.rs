//! What the notification tests share: a test CA, the receivers they start (an HTTPS webhook
//! receiver and an SMTP server), the `[notify]` configuration pointing at them, and a reader of
//! the mail that arrives.

#![allow(dead_code)]

pub mod pki;
pub mod smtp_receiver;
pub mod webhook_receiver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sekisho::config::Notify;
use sekisho::metrics::NotifyMetrics;
use sekisho::notify::{Notice, Notifier, kind};
use sekisho_store::Store;

pub use pki::TestPki;
pub use smtp_receiver::{Policy, SmtpReceiver};
#[allow(unused_imports)]
pub use webhook_receiver::{Received, WebhookReceiver};

pub const SMTP_USER: &str = "sekisho";
pub const SMTP_PASSWORD: &str = "relay-pass-ワード";

/// Files the gateway is configured with (CA, secrets, mode 0600), in a directory of their own.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub secret: Vec<u8>,
}

/// Where the SMTP relay is and how it is reached.
pub struct Relay {
    pub addr: SocketAddr,
    pub starttls: bool,
}

impl Rig {
    pub fn new() -> Rig {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new();
        let secret = b"8c1f0f6a2b7e4d3c9a5b1e0f7d2c4a6b".to_vec();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        for (name, content) in [
            ("webhook.secret", [secret.as_slice(), b"\n"].concat()),
            ("smtp.password", SMTP_PASSWORD.as_bytes().to_vec()),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Rig { dir, pki, secret }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `[notify]` section for a webhook at `hook` and a relay, retrying after 1 s.
    /// A webhook receiver and an SMTP relay (STARTTLS, with login) on loopback, and the
    /// `[notify]` section that sends to both.
    pub fn start_receivers(
        &self,
        rt: &tokio::runtime::Runtime,
    ) -> (WebhookReceiver, SmtpReceiver, String) {
        let hook = rt.block_on(WebhookReceiver::start(
            any_addr(),
            &self.pki,
            &self.secret,
            Duration::ZERO,
        ));
        let login = Some((SMTP_USER.to_string(), SMTP_PASSWORD.to_string()));
        let relay = rt.block_on(SmtpReceiver::start(
            any_addr(),
            &self.pki,
            Policy {
                starttls: true,
                login,
            },
        ));
        let notify = self.toml(
            Some(hook.addr),
            Some(Relay {
                addr: relay.addr,
                starttls: true,
            }),
        );
        (hook, relay, notify)
    }

    pub fn toml(&self, hook: Option<SocketAddr>, relay: Option<Relay>) -> String {
        let mut t = String::from(
            "\n[notify]\ntimeout_secs = 5\nretry_first_secs = 1\nretry_max_secs = 2\n",
        );
        if let Some(a) = hook {
            t += &format!(
                "\n[[notify.webhook]]\nurl = \"https://{a}/hooks/sekisho\"\n\
                 secret_file = {:?}\nca_file = {:?}\n",
                self.file("webhook.secret"),
                self.file("ca.pem")
            );
        }
        if let Some(r) = relay {
            t += &format!(
                "\n[notify.smtp]\nrelay = \"{}\"\nstarttls = {}\n\
                 from = \"Sekisho <sekisho@gw.example.jp>\"\n\
                 to = [\"security@example.jp\", \"情報セキュリティ担当 <officer@example.jp>\"]\n",
                r.addr, r.starttls
            );
            if r.starttls {
                t += &format!(
                    "ca_file = {:?}\nusername = \"{SMTP_USER}\"\npassword_file = {:?}\n",
                    self.file("ca.pem"),
                    self.file("smtp.password")
                );
            }
        }
        t
    }

    pub fn config(&self, hook: Option<SocketAddr>, relay: Option<Relay>) -> Notify {
        parse(&self.toml(hook, relay))
    }

    /// A notifier as the gateway `node` builds it, with its own metrics.
    pub fn notifier(
        &self,
        store: &Store,
        cfg: &Notify,
        node: &str,
    ) -> (Arc<Notifier>, NotifyMetrics) {
        let metrics = NotifyMetrics::default();
        let n = Notifier::from_config(
            Some(cfg),
            self.dir.path(),
            "gw.example.jp",
            node,
            store.clone(),
            metrics.clone(),
        )
        .unwrap();
        (Arc::new(n), metrics)
    }
}

/// The `[notify]` section of a sekisho.toml.
pub fn parse(toml_text: &str) -> Notify {
    #[derive(serde::Deserialize)]
    struct File {
        notify: Notify,
    }
    let f: File = toml::from_str(toml_text).unwrap();
    f.notify.validate().unwrap();
    f.notify
}

/// A port nobody listens on (yet).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What the break-glass flow will send: ids only.
pub fn declared(patient: &str) -> Notice {
    Notice {
        kind: kind::BREAK_GLASS_DECLARED.into(),
        subject_ja: "緊急時アクセスが宣言されました".into(),
        subject_en: "Break-glass declared".into(),
        text: format!(
            "医師 D0001 が患者 {patient} について緊急時アクセスを宣言しました。\n\n\
             Physician D0001 declared break-glass for patient {patient}."
        ),
        data: serde_json::json!({"patient_id": patient, "user_id": "D0001", "category": "unconscious"}),
    }
}

pub async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A received mail, read as a mail reader would.
pub struct ReadMail {
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl ReadMail {
    pub fn new(data: &str) -> ReadMail {
        let (head, body) = data.split_once("\r\n\r\n").expect("header and body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().1 += line;
            } else {
                let (n, v) = line.split_once(':').unwrap();
                headers.push((n.to_string(), v.trim().to_string()));
            }
        }
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("Content-Transfer-Encoding").as_deref(), Some("base64"));
        let b64: String = body.split("\r\n").collect();
        let text = String::from_utf8(B64.decode(b64.trim()).unwrap()).unwrap();
        ReadMail { headers, text }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// The subject with its RFC 2047 encoded words decoded.
    pub fn subject(&self) -> String {
        decode_words(self.header("Subject"))
    }
}

/// RFC 2047 encoded words in UTF-8 (B or Q); space between two encoded words is dropped.
pub fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut space = String::new();
    let mut after_word = false;
    for token in v.split_inclusive([' ', '\t']) {
        let word = token.trim_end_matches([' ', '\t']);
        let decoded = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .map(|w| {
                let mut p = w.splitn(3, '?');
                let (charset, enc, text) =
                    (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
                assert!(charset.eq_ignore_ascii_case("utf-8"));
                let bytes = if enc.eq_ignore_ascii_case("b") {
                    B64.decode(text).unwrap()
                } else {
                    let mut out = Vec::new();
                    let mut i = 0;
                    while i < text.len() {
                        match text.as_bytes()[i] {
                            b'_' => out.push(b' '),
                            b'=' => {
                                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                                i += 2;
                            }
                            c => out.push(c),
                        }
                        i += 1;
                    }
                    out
                };
                String::from_utf8(bytes).unwrap()
            });
        match decoded {
            Some(d) => {
                if !after_word {
                    out += &space;
                }
                out += &d;
                after_word = true;
            }
            None => {
                out += &space;
                out += word;
                after_word = false;
            }
        }
        space = token[word.len()..].to_string();
    }
    out
}
