//! Notifications for security officers against real receivers the tests start: an HTTPS
//! webhook receiver and an SMTP server with STARTTLS, both with certificates of a test CA made
//! here. The outbox is on SQLite and PostgreSQL; the last test runs the real gateway.

mod common;
mod notify_rig;

use std::collections::HashSet;
use std::time::Duration;

use notify_rig::*;
use sekisho::notify::webhook::{SignatureError, verify};
use sekisho_store::notify_outbox::{self, Delivery};
use sekisho_store::testdb::TestDb;
use sekisho_store::{Store, now};
use tokio::sync::watch;

fn count(m: &sekisho::metrics::NotifyMetrics, channel: &'static str, result: &'static str) -> u64 {
    m.deliveries
        .get_or_create(&vec![("channel", channel), ("result", result)])
        .get()
}

async fn deliveries_of(store: &Store, notice: &str) -> Vec<Delivery> {
    notify_outbox::deliveries(store, notice).await.unwrap()
}

fn notice_id(r: &Received) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_reaches_the_webhook_and_the_relay_signed_and_encoded() {
    for db in TestDb::both().await {
        let rig = Rig::new();
        let hook = WebhookReceiver::start(any_addr(), &rig.pki, &rig.secret, Duration::ZERO).await;
        let login = Some((SMTP_USER.to_string(), SMTP_PASSWORD.to_string()));
        let policy = Policy {
            starttls: true,
            login,
        };
        let relay = SmtpReceiver::start(any_addr(), &rig.pki, policy).await;
        let cfg = rig.config(
            Some(hook.addr),
            Some(Relay {
                addr: relay.addr,
                starttls: true,
            }),
        );
        let (notifier, metrics) = rig.notifier(&db.store, &cfg, "gw1");
        let (stop, rx) = watch::channel(false);
        let sender = tokio::spawn(notifier.clone().run(rx));

        notifier.enqueue(declared("P000123")).await.unwrap();
        wait_for("the webhook and the mail", 20, || {
            hook.received().len() == 1 && relay.mails().len() == 1
        })
        .await;

        // The webhook: the documented JSON, signed; the signature covers the body.
        let got = &hook.received()[0];
        assert!(got.verified, "the receiver's own check failed: {got:?}");
        let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "at",
                "data",
                "id",
                "kind",
                "subject_en",
                "subject_ja",
                "text"
            ]
        );
        assert_eq!(body["kind"], "break_glass_declared");
        assert_eq!(body["subject_ja"], "緊急時アクセスが宣言されました");
        assert_eq!(body["data"]["patient_id"], "P000123");
        assert!(body["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            verify(&rig.secret, &got.signature, &got.body, now(), 300),
            Ok(())
        );
        let tampered = String::from_utf8(got.body.clone())
            .unwrap()
            .replace("P000123", "P000124");
        assert_eq!(
            verify(&rig.secret, &got.signature, tampered.as_bytes(), now(), 300),
            Err(SignatureError::Mismatch)
        );

        // The outbox: one delivery per channel, each delivered on the first attempt; the
        // webhook was told its delivery id. (The sender records a delivery once the receiver
        // has answered, a moment after the receiver has it.)
        for _ in 0..100 {
            if notify_outbox::backlog(&db.store).await.unwrap().pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rows = deliveries_of(&db.store, &notice_id(got)).await;
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|d| d.attempts == 1 && d.delivered_at.is_some())
        );
        let hook_row = rows
            .iter()
            .find(|d| d.channel.starts_with("webhook:"))
            .unwrap();
        let smtp_row = rows.iter().find(|d| d.channel == "smtp").unwrap();
        assert_eq!(got.delivery, hook_row.id);

        // The mail: over STARTTLS, authenticated, to both officers, readable in Japanese.
        let mail = &relay.mails()[0];
        assert!(mail.tls && mail.user.as_deref() == Some(SMTP_USER));
        assert_eq!(mail.from, "sekisho@gw.example.jp");
        assert_eq!(mail.rcpt, ["security@example.jp", "officer@example.jp"]);
        let read = ReadMail::new(&mail.data);
        assert_eq!(
            read.subject(),
            "[Sekisho] 緊急時アクセスが宣言されました / Break-glass declared"
        );
        assert!(read.header("Subject").contains("=?utf-8?b?"));
        assert_eq!(
            read.header("Message-ID"),
            format!("<{}@gw.example.jp>", smtp_row.id)
        );
        assert!(
            read.header("Date").ends_with(" +0000"),
            "{}",
            read.header("Date")
        );
        assert!(
            read.text.starts_with("医師 D0001 が患者 P000123 について"),
            "{}",
            read.text
        );
        assert!(
            read.text
                .contains("Physician D0001 declared break-glass for patient P000123.")
        );

        assert_eq!(count(&metrics, "webhook", "delivered"), 1);
        assert_eq!(count(&metrics, "smtp", "delivered"), 1);
        wait_for("the backlog gauge", 5, || metrics.pending.get() == 0).await;
        stop.send(true).unwrap();
        sender.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_that_are_down_get_the_notice_once_when_they_come_back() {
    for db in TestDb::both().await {
        let rig = Rig::new();
        let (hook_addr, relay_addr) = (free_addr(), free_addr());
        // Plain SMTP, as on a trusted network.
        let cfg = rig.config(
            Some(hook_addr),
            Some(Relay {
                addr: relay_addr,
                starttls: false,
            }),
        );
        let (notifier, metrics) = rig.notifier(&db.store, &cfg, "gw1");
        let (stop, rx) = watch::channel(false);
        let sender = tokio::spawn(notifier.clone().run(rx));
        notifier.enqueue(declared("P000200")).await.unwrap();

        // Both attempts fail and are kept for a retry, with their error.
        let store = db.store.clone();
        let mut failed = Vec::new();
        for _ in 0..100 {
            let b = notify_outbox::backlog(&store).await.unwrap();
            assert_eq!(b.pending, 2);
            if count(&metrics, "webhook", "retry") >= 1 && count(&metrics, "smtp", "retry") >= 1 {
                failed = sqlx::query_scalar::<_, String>(
                    "SELECT last_error FROM notify_deliveries WHERE last_error IS NOT NULL",
                )
                .fetch_all(store.pool())
                .await
                .unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(failed.len(), 2, "both attempts failed and said why");

        let hook = WebhookReceiver::start(hook_addr, &rig.pki, &rig.secret, Duration::ZERO).await;
        let relay = SmtpReceiver::start(
            relay_addr,
            &rig.pki,
            Policy {
                starttls: false,
                login: None,
            },
        )
        .await;
        wait_for("the retries", 20, || {
            hook.received().len() == 1 && relay.mails().len() == 1
        })
        .await;
        // Well past the next retry time: nothing comes twice.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(hook.received().len(), 1);
        assert_eq!(relay.mails().len(), 1);
        assert!(!relay.mails()[0].tls);
        let rows = deliveries_of(&db.store, &notice_id(&hook.received()[0])).await;
        assert!(
            rows.iter()
                .all(|d| d.delivered_at.is_some() && d.attempts >= 2)
        );
        assert!(
            rows.iter().all(|d| d.last_error.is_some()),
            "the last error is kept"
        );
        assert_eq!(notify_outbox::backlog(&db.store).await.unwrap().pending, 0);
        stop.send(true).unwrap();
        sender.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sender_delivers_what_was_pending_and_what_a_dead_replica_held() {
    for db in TestDb::both().await {
        let rig = Rig::new();
        let hook = WebhookReceiver::start(any_addr(), &rig.pki, &rig.secret, Duration::ZERO).await;
        let cfg = rig.config(Some(hook.addr), None);

        // A gateway that wrote two notices and stopped before sending them.
        let (before, _) = rig.notifier(&db.store, &cfg, "gw1");
        before.enqueue(declared("P000301")).await.unwrap();
        before.enqueue(declared("P000302")).await.unwrap();
        drop(before);
        // A replica that claimed both and died mid-send; its lease runs 2 s.
        let held = notify_outbox::claim(&db.store, "dead-replica/1", now(), 2, 100)
            .await
            .unwrap();
        assert_eq!(held.len(), 2);
        assert!(hook.received().is_empty());

        // The gateway comes back: a new process, a new connection to the database.
        let store = Store::open(&db.url).await.unwrap();
        let (after, _) = rig.notifier(&store, &cfg, "gw1");
        after.enqueue(declared("P000303")).await.unwrap();
        let (stop, rx) = watch::channel(false);
        let sender = tokio::spawn(after.clone().run(rx));
        wait_for("the new notice", 10, || hook.received().len() == 1).await;
        wait_for("the held ones, after the lease", 20, || {
            hook.received().len() == 3
        })
        .await;
        let got = hook.received();
        let ids: HashSet<_> = got.iter().map(|r| r.delivery.clone()).collect();
        assert_eq!(ids.len(), 3, "each delivery once");
        let first: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(first["data"]["patient_id"], "P000303");
        for r in &got {
            let d = &deliveries_of(&store, &notice_id(r)).await[0];
            let held_before = held.iter().any(|h| h.delivery_id == d.id);
            assert_eq!(d.attempts, if held_before { 2 } else { 1 });
            assert!(d.claimed_by.as_deref().unwrap().starts_with("gw1/"));
        }
        stop.send(true).unwrap();
        sender.await.unwrap();
        store.close().await;
    }
}

/// Two replicas on one database, each with its own sender, and a slow receiver that notices
/// when a delivery id arrives while it is still receiving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_send_one_delivery_at_the_same_time() {
    for db in TestDb::both().await {
        let rig = Rig::new();
        let hook = WebhookReceiver::start(
            any_addr(),
            &rig.pki,
            &rig.secret,
            Duration::from_millis(150),
        )
        .await;
        let cfg = rig.config(Some(hook.addr), None);
        let other = Store::open(&db.url).await.unwrap();
        let (a, _) = rig.notifier(&db.store, &cfg, "replica-a");
        let (b, _) = rig.notifier(&other, &cfg, "replica-b");
        for i in 0..40 {
            let n = if i % 2 == 0 { &a } else { &b };
            n.enqueue(declared(&format!("P{i:06}"))).await.unwrap();
        }
        let (stop, rx) = watch::channel(false);
        let senders = [
            tokio::spawn(a.clone().run(rx.clone())),
            tokio::spawn(b.clone().run(rx)),
        ];
        wait_for("40 deliveries", 60, || hook.received().len() >= 40).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = hook.received();
        let ids: HashSet<_> = got.iter().map(|r| r.delivery.clone()).collect();
        assert_eq!((got.len(), ids.len()), (40, 40));
        assert_eq!(hook.overlaps(), 0);
        assert!(got.iter().all(|r| r.verified));
        let by: Vec<String> = sqlx::query_scalar("SELECT claimed_by FROM notify_deliveries")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
        let replicas: HashSet<_> = by.iter().map(|c| c.split('/').next().unwrap()).collect();
        eprintln!("deliveries sent by {replicas:?}");
        stop.send(true).unwrap();
        for s in senders {
            s.await.unwrap();
        }
        other.close().await;
    }
}

#[tokio::test]
async fn without_channels_enqueue_does_nothing() {
    let db = TestDb::sqlite().await;
    let n = sekisho::notify::Notifier::from_config(
        None,
        std::path::Path::new("/nonexistent"),
        "gw.example.jp",
        "gw1",
        db.store.clone(),
        Default::default(),
    )
    .unwrap();
    assert!(!n.has_channels());
    n.enqueue(declared("P1")).await.unwrap();
    n.enqueue(declared("P2")).await.unwrap();
    assert_eq!(notify_outbox::backlog(&db.store).await.unwrap().pending, 0);
}

#[test]
fn bad_channel_configurations_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    let hook = "127.0.0.1:1".parse().unwrap();
    let toml = rig.toml(Some(hook), None);
    let refused = |text: String| {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            notify: sekisho::config::Notify,
        }
        match toml::from_str::<File>(&text) {
            Err(_) => true,
            Ok(f) => f.notify.validate().is_err(),
        }
    };
    assert!(!refused(toml.clone()));
    assert!(refused(toml.replace("https://", "http://")));
    assert!(!refused(
        toml.replace("https://", "http://") + "allow_http = true\n"
    ));
    assert!(refused(toml.replace("ca_file", "# ca_file")));
    assert!(refused(toml.clone() + "secret = \"in the config\"\n"));
    let relay = Relay {
        addr: hook,
        starttls: true,
    };
    let smtp = rig.toml(None, Some(relay));
    assert!(!refused(smtp.clone()));
    assert!(refused(smtp.replace("starttls = true", "starttls = false")));
    assert!(refused(
        smtp.replace("relay = \"127.0.0.1:1\"", "relay = \"mail\"")
    ));

    // A secret others can read is refused when the channel is built.
    let secret = rig.dir.path().join("webhook.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::sqlite());
    let err = sekisho::notify::Notifier::from_config(
        Some(&parse(&toml)),
        rig.dir.path(),
        "gw.example.jp",
        "gw1",
        db.store.clone(),
        Default::default(),
    )
    .err()
    .expect("refused");
    assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
}

/// The real gateway: `[notify]` in sekisho.toml, a notice left in the outbox while it was down
/// is delivered when it starts, and `/metrics` counts it.
#[test]
fn the_gateway_delivers_the_outbox_on_start_and_counts_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for db in common::BOTH {
        let rig = Rig::new();
        let (hook, relay, notify) = rig.start_receivers(&rt);
        let opts = common::Options::default();
        let mut g = common::Gateway::start_with(
            db,
            common::Options {
                extra_config: opts.extra_config.clone() + &notify,
                ..opts
            },
        );
        g.stop();
        // Written while the gateway is down, as another replica would.
        rt.block_on(async {
            let store = Store::open(&g.store_url).await.unwrap();
            let (n, _) = rig.notifier(&store, &parse(&notify), "other-replica");
            n.enqueue(declared("P000400")).await.unwrap();
            store.close().await;
        });
        g.serve();
        rt.block_on(wait_for("delivery by the gateway", 20, || {
            hook.received().len() == 1 && relay.mails().len() == 1
        }));
        assert!(hook.received()[0].verified);
        let metrics = || g.mgmt_get("/metrics").unwrap().1;
        rt.block_on(wait_for("the metrics", 10, || {
            let m = metrics();
            m.contains(
                "sekisho_notify_deliveries_total{channel=\"webhook\",result=\"delivered\"} 1",
            ) && m.contains(
                "sekisho_notify_deliveries_total{channel=\"smtp\",result=\"delivered\"} 1",
            ) && m.contains("sekisho_notify_pending 0")
        }));
        assert!(metrics().contains("sekisho_notify_oldest_pending_seconds 0"));
        g.stop();
    }
}
