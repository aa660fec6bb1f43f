//! The anomaly rules, their notices and an officer's act on a finding.

use super::notify_rig;
use super::rig::*;

/// A working-hours window (JST) that does not contain the present hour.
fn hours_excluding_now() -> String {
    let now =
        time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    let h = now.hour();
    if h <= 20 {
        format!("{:02}:00-{:02}:00", h + 2, h + 3)
    } else {
        format!("{:02}:00-{:02}:00", h - 3, h - 2)
    }
}

/// The anomaly rules: a nurse who opens more distinct patients in an hour than allowed, outside
/// working hours, is found once (however often the rules run), the officers' webhook is told
/// (ids and counts, no patient), `/metrics` counts it, the dashboard shows it, and an officer
/// suspends the nurse from it — on record first; the nurse's next request is refused.
#[test]
fn anomaly_findings_reach_the_officers_who_act_on_them() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rig = notify_rig::Rig::new();
    let hook = rt.block_on(notify_rig::WebhookReceiver::start(
        notify_rig::any_addr(),
        &rig.pki,
        &rig.secret,
        std::time::Duration::ZERO,
    ));
    let hours = hours_excluding_now();
    let hours: &'static str = Box::leak(format!("working_hours = \"{hours}\"").into_boxed_str());
    let g = Gateway::start_prepared(
        Db::Sqlite,
        Options {
            replace: vec![
                (
                    "distinct_patients_per_hour = 30",
                    "distinct_patients_per_hour = 2",
                ),
                ("scan_seconds = 60", "scan_seconds = 1"),
                ("working_hours = \"06:00-22:00\"", hours),
            ],
            extra_config: Options::default().extra_config + &rig.toml(Some(hook.addr), None),
            ..Default::default()
        },
        |g| {
            g.add_terminal("f1", "t2", &g.out);
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let nurse = sign_in(&g, "t1", "nurse00001", "nurse", dir.path());
    for p in ["P-0001", "P-0002", "P-0003"] {
        consented_patient(&g, p, &["u:nurse00001"]);
    }
    for p in ["P-0001", "P-0002", "P-0003"] {
        // The care team reaches the gateway within a poll.
        let (s, body) = within_a_poll(
            || get(&g, "t1", &nurse, &format!("/api/patients/{p}/summary")),
            |(s, _)| *s == 200,
        );
        assert_eq!(s, 200, "{body}");
    }
    // Found once per rule, whichever scan.
    let rows = within_a_poll(
        || {
            g.sql_rows(
                "SELECT rule, user_id, facility, count, status FROM anomaly_findings ORDER BY rule",
            )
        },
        |r| r.len() >= 2,
    );
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let rows_later = g.sql_rows(
        "SELECT rule, user_id, facility, count, status FROM anomaly_findings ORDER BY rule",
    );
    assert_eq!(rows, rows_later, "scanned again, found nothing new");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0],
        [
            "distinct_patients_per_hour",
            "nurse00001",
            "f1",
            "3",
            "open"
        ]
    );
    // Found at the first scan that saw a request outside the hours: then 1, 2 or 3 of them.
    assert_eq!(
        [&rows[1][0], &rows[1][1], &rows[1][2], &rows[1][4]],
        ["outside_working_hours", "nurse00001", "f1", "open"]
    );
    assert!(["1", "2", "3"].contains(&rows[1][3].as_str()), "{rows:?}");
    // The officers are told: ids and counts, no patient.
    let told = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = hook.received();
            if r.len() >= 2 || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(told.len(), 2, "one notice per finding");
    for r in &told {
        assert!(r.verified);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["kind"], "anomaly");
        assert_eq!(body["data"]["user"], "nurse00001");
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("P-000"), "no patient in a notice: {text}");
    }
    let (_, metrics) = g.mgmt_get("/metrics").unwrap();
    assert!(
        metrics.contains("sekisho_anomaly_findings_total{rule=\"distinct_patients_per_hour\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sekisho_anomaly_open 2"), "{metrics}");

    // On the dashboard, with what an officer may do; the secretariat sees it, cannot act.
    let officer = sign_in(&g, "t2", "officer0001", "security-officer", dir.path());
    let (_, home) = get(&g, "t2", &officer, "/.sekisho/console/");
    assert!(home.contains("id=\"findings\""), "{home}");
    assert!(home.contains("value=\"suspend_user\""), "{home}");
    let id = g
        .sql_rows("SELECT id FROM anomaly_findings WHERE rule = 'distinct_patients_per_hour'")[0]
        [0]
    .clone();
    let token = home
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (s, _, loc) = post(
        &g,
        "t2",
        &officer,
        &format!("/.sekisho/console/findings/{id}"),
        &[
            ("csrf", &token),
            ("op", "suspend_user"),
            ("note", "業務外の閲覧の疑い"),
        ],
    );
    assert_eq!((s, loc.as_str()), (303, "/.sekisho/console/"));
    assert_eq!(
        g.sql_rows(&format!(
            "SELECT status, closed_by FROM anomaly_findings WHERE id = '{id}'"
        ))[0],
        ["acted", "officer0001"]
    );
    let (s, _) = within_a_poll(
        || get(&g, "t1", &nurse, "/api/patients/P-0001/summary"),
        |(s, _)| *s != 200,
    );
    assert_ne!(s, 200, "the suspended nurse is refused at once");
    let rec = g.wait_audit(|r| r["reason"] == "anomaly_user_suspended");
    assert_eq!(rec["user"], "nurse00001");
    assert!(
        rec["actor"]
            .as_str()
            .unwrap()
            .starts_with("officer0001 (console on terminal t2)")
    );
    let detected =
        g.wait_audit(|r| r["action"] == "anomaly" && r["reason"] == "outside_working_hours");
    assert_eq!(detected["user"], "nurse00001");
    let out = run_ok(&["audit", "verify", "--data-dir", g.data_str()]);
    assert!(out.contains("audit log OK"), "{out}");
}
