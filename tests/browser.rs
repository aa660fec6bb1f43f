//! The emergency page (`/.sekisho/emergency`) in a real browser: Debian's Chromium, headless,
//! driven through chromedriver (tests/common/webdriver.rs), presenting terminal t1's
//! certificate from its NSS database. A physician signed in on t1 with the virtual HPKI card
//! (pcscd, vpcd, the agent library) is refused a patient without consent, follows the refusal
//! page's link, declares an emergency on the page (category, a justification typed in
//! Japanese, the patient found by name in kana), signs with the card as
//! `sekisho-agent emergency --pending` does, opens the record, and draws the patient's
//! signature on the page's canvas. A security officer then signs in with a password in the
//! same browser, is led to the officers' console, reviews the declaration there, searches the
//! audit log and opens the patient's access history. Every step is checked in the page, the
//! store and the audit log, on SQLite and on PostgreSQL. Screenshots are kept as artifacts:
//! `emergency-sqlite.png`, `console-sqlite.png` and the `-postgres` ones in
//! `SEKISHO_BROWSER_ARTIFACTS`, else in `sekisho-browser` under the temp dir.
//!
//! Needs chromium, chromium-driver, libnss3-tools, fonts-noto-cjk, pcscd and vsmartcard-vpcd
//! (tests/run.sh installs them) and root (Chromium's managed policy); fails, never skips.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use sekisho_agent::{self as agent, AgentConfig, Confirm, Declaration, FixedPin};
use sekisho_ca::hpki::TestHpki;
use serde_json::json;

const READER: &str = "Virtual PCD 00 01";
const VPCD_PORT: u16 = 35964;
const PIN: &str = "4321";
const DOCTOR: &str = "doctor0000001";
/// Registered without consent and outside every care team: the ordinary rules refuse.
const PATIENT: &str = "P-0001";
const RECORD: &str = "/api/patients/P-0001/summary";
const EMERGENCY: &str = "/.sekisho/emergency";
const OFFICER: &str = "officer0001";
/// What `common::sign_in` sets as the officer's own password.
const OFFICER_PASSWORD: &str = "kx7#Rw2q";
/// Two lines, as typed into the page's text box.
const JUSTIFICATION: &str = "救急搬送、意識障害。\n家族に連絡がつかない。";

fn hpki() -> &'static TestHpki {
    static PKI: OnceLock<TestHpki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        TestHpki::generate(dir.path()).unwrap()
    })
}

const HPKI_TOML: &str = r#"
[hpki]
anchors = ["hpki/root.crt"]
intermediates = ["hpki/auth-ca.crt"]
crls = ["hpki/auth-ca.crl", "hpki/root.crl"]
"#;

/// A gateway with the physician (HPKI card), the patient 山田 花子 and two others by name.
fn gateway(db: Db) -> Gateway {
    let opts = Options {
        // An audit export to a file in the data dir, for the dashboard's export list.
        extra_config: Options::default().extra_config
            + HPKI_TOML
            + "\n[[audit.export]]\nname = \"archive\"\nformat = \"jsonl\"\nfile = \"audit-archive.jsonl\"\n",
        ..Default::default()
    };
    Gateway::start_prepared(db, opts, |g| {
        // t2: where the officer's password is set before the browser signs in with it.
        g.add_terminal("f1", "t2", &g.out);
        let h = hpki();
        let dir = g.data.join("hpki");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("root.crt", h.root.pem()),
            ("auth-ca.crt", h.auth_ca.pem()),
            ("root.crl", sekisho_ca::crl_pem(&h.root_crl)),
            ("auth-ca.crl", sekisho_ca::crl_pem(&h.auth_crl)),
            ("doctor.crt", h.doctor.pem()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let d = g.data_str();
        run_ok(&[
            "user",
            "add",
            "--data-dir",
            d,
            "--id",
            DOCTOR,
            "--name",
            "関所　太郎",
            "--facility",
            "f1",
            "--roles",
            "physician",
            "--hpki-cert",
            dir.join("doctor.crt").to_str().unwrap(),
        ]);
        for (id, name, kana) in [
            (PATIENT, "山田 花子", "ヤマダ ハナコ"),
            ("P-0002", "山田 太郎", "ヤマダ タロウ"),
            ("P-0003", "佐藤 花子", "サトウ ハナコ"),
        ] {
            run_ok(&[
                "patient",
                "add",
                "--data-dir",
                d,
                "--id",
                id,
                "--name",
                name,
                "--kana",
                kana,
            ]);
        }
    })
}

fn agent_config(g: &Gateway) -> AgentConfig {
    let (cert, key) = g.cert("t1");
    AgentConfig {
        gateway: format!("https://localhost:{}", g.port),
        cert: cert.into(),
        key: key.into(),
        ca: g.ca().into(),
        reader: Some(READER.into()),
    }
}

fn insert() -> InsertedCard {
    insert_card(&hpki().doctor, VPCD_PORT, READER, PIN)
}

/// The one declaration's row: `columns`.
fn row(g: &Gateway, columns: &str) -> Vec<String> {
    let mut rows = g.sql_rows(&format!("SELECT {columns} FROM break_glass"));
    assert_eq!(rows.len(), 1, "one declaration: {rows:?}");
    rows.remove(0)
}

/// A Unix time as the page shows it (`2026-12-04 12:30 JST`).
fn jst(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(9, 0, 0).unwrap());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} JST",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The PNG's width and height, after checking its signature and IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn a_physician_declares_views_and_records_the_follow_up_in_chromium() {
    for db in BOTH {
        declare_view_and_follow_up(db);
    }
}

fn declare_view_and_follow_up(db: Db) {
    let started = Instant::now();
    let g = gateway(db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let card = insert();
    let signed_in = rt
        .block_on(agent::login(&agent_config(&g), PIN))
        .expect("sign-in with the card");
    assert_eq!(signed_in.user, DOCTOR);

    let origin = format!("https://localhost:{}", g.port);
    let browser = Browser::start(&BrowserSetup {
        origin: &origin,
        p12: &g.out.join("t1.p12"),
        p12_password: "test-pw",
        ca: &g.out.join("ca.crt"),
    });
    let artifacts = std::env::var_os("SEKISHO_BROWSER_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sekisho-browser"));
    std::fs::create_dir_all(&artifacts).unwrap();

    // 1. The record is refused (no consent, no care team); the refusal page links to the
    // emergency page, and the link is followed.
    browser.goto(&g.url(RECORD));
    let text = browser.wait_text("アクセスできません", 10);
    assert_eq!(browser.status(), 403, "{text}");
    assert!(text.contains("patient_no_consent"), "{text}");
    assert!(text.contains("緊急時アクセス"), "{text}");
    let link = browser.find_all(&format!("a[href=\"{EMERGENCY}\"]"));
    assert_eq!(link.len(), 2, "the link in Japanese and in English");
    browser.click(&link[0]);
    browser.wait_text("緊急時・災害時アクセス", 10);
    assert_eq!(browser.url(), g.url(EMERGENCY));
    assert_eq!(browser.status(), 200);
    assert!(browser.title().contains("緊急時アクセス"));

    // 2. Declare: the category, the justification in Japanese, begun without the patient's id.
    let unconscious = browser.find("input[name=category][value=unconscious]");
    browser.click(&unconscious);
    assert_eq!(browser.property(&unconscious, "checked"), true);
    let justification = browser.find("textarea[name=justification]");
    browser.send_keys(&justification, JUSTIFICATION);
    assert_eq!(
        browser.property(&justification, "value"),
        JUSTIFICATION,
        "typed as written"
    );
    browser.click(&browser.find("form:has(input[name=op][value=begin]) button"));
    let text = browser.wait_text("患者さんを選んでください", 10);
    assert!(
        !text.contains("bad_request") && !text.contains("break_glass_"),
        "{text}"
    );
    // Reloading sends nothing again: the step was followed by a GET of the page.
    assert_eq!(browser.url(), g.url(EMERGENCY));
    browser.refresh();
    browser.wait_text("患者さんを選んでください", 10);
    let begun = |g: &Gateway| {
        g.audit_records()
            .iter()
            .filter(|r| r["reason"] == "break_glass_begun")
            .count()
    };
    assert_eq!(begun(&g), 1, "a reload began a second declaration");
    let declared = row(&g, "id, status, category, justification");
    let id = declared[0].clone();
    assert_eq!(
        declared[1..],
        ["choose_patient", "unconscious", JUSTIFICATION]
    );
    assert!(text.contains(&id), "{text}");

    // The patient by name, in kana.
    let q = browser.find("input[name=q]");
    browser.send_keys(&q, "ヤマダ　ハナコ");
    browser.click(&browser.find("form:has(input[name=op][value=search]) button"));
    let choice = browser.wait_for(
        &format!("form:has(input[name=op][value=choose]):has(input[name=patient][value=\"{PATIENT}\"]) button"),
        10,
    );
    let label = browser.element_text(&choice);
    assert!(
        label.contains("山田 花子") && label.contains("ヤマダ ハナコ") && label.contains(PATIENT),
        "{label}"
    );
    assert_eq!(
        browser
            .find_all("form:has(input[name=op][value=choose])")
            .len(),
        1,
        "only 山田 花子 is ヤマダ ハナコ"
    );
    let search = g.wait_audit(|r| r["reason"] == "break_glass_search");
    assert_eq!(search["break_glass_id"], id.as_str());
    assert!(
        search["detail"]
            .as_str()
            .unwrap()
            .ends_with("; 1 found: P-0001"),
        "{search}"
    );
    browser.click(&choice);
    let text = browser.wait_text("HPKIカードで署名してください", 10);
    assert!(text.contains(PATIENT), "{text}");
    assert_eq!(
        row(&g, "status, patient_id"),
        ["awaiting_signature", PATIENT]
    );

    // Until the card signs, the patient can be chosen again: the page, which looks again
    // every few seconds while it waits, keeps search results until one is chosen.
    let q = browser.find("input[name=q]");
    browser.send_keys(&q, "山田");
    browser.click(&browser.find("form:has(input[name=op][value=search]) button"));
    browser.wait_for(
        "form:has(input[name=op][value=choose]):has(input[name=patient][value=\"P-0002\"])",
        10,
    );
    browser.execute("window.stayed = true", json!([]));
    let shown_since = Instant::now();
    while shown_since.elapsed() < Duration::from_secs(7) {
        assert_eq!(
            browser.execute("return window.stayed === true", json!([])),
            true,
            "the results were taken away after {:?}",
            shown_since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let choices = browser.find_all("form:has(input[name=op][value=choose]) button");
    assert_eq!(choices.len(), 2, "山田 花子 and 山田 太郎");
    let label = browser.element_text(&choices[0]);
    assert!(
        label.contains("山田 花子") && label.contains(PATIENT),
        "{label}"
    );
    browser.click(&choices[0]);
    browser.wait_text("HPKIカードで署名してください", 10);
    assert_eq!(
        row(&g, "status, patient_id"),
        ["awaiting_signature", PATIENT]
    );

    // The physician signs with the card, as `sekisho-agent emergency --pending` does.
    let confirm: Arc<dyn Confirm> = Arc::new(|d: &Declaration| {
        d.patient == PATIENT && d.justification == JUSTIFICATION && d.category == "unconscious"
    });
    let signed = rt
        .block_on(agent::emergency_sign_pending(
            &agent_config(&g),
            None,
            Arc::new(FixedPin::new(PIN)),
            confirm,
        ))
        .expect("signed");
    drop(card);
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].id, id);
    let outcome = signed[0].result.as_ref().expect("active");
    assert!(outcome.is_active());
    let expires = outcome.state.expires_at.unwrap();

    browser.refresh();
    let text = browser.wait_text("閲覧できます / Access granted", 10);
    assert!(
        text.contains(&format!("終了時刻 / Ends at: {}", jst(expires))),
        "{text}"
    );
    assert!(!text.contains("HPKIカードで署名してください"), "{text}");

    // The sign-in page opens in the browser too (its head names no icon either).
    browser.goto(&g.url("/.sekisho/login"));
    browser.wait_text("サインイン / Sign in", 10);
    assert_eq!(browser.status(), 200);
    browser.find("form[action='/.sekisho/login'][autocomplete=off]");

    // The browser asked the gateway's own pages for no icon: no refused `/favicon.ico` in
    // the physician's name on record.
    let icons: Vec<_> = g
        .audit_records()
        .into_iter()
        .filter(|r| r["path"] == "/favicon.ico")
        .collect();
    assert!(icons.is_empty(), "{icons:#?}");

    // 3. The record opens under the grant: the demo upstream's answer.
    browser.goto(&g.url(RECORD));
    let text = browser.wait_text("demo record", 10);
    assert_eq!(browser.status(), 200);
    let shown: serde_json::Value = serde_json::from_str(text.trim()).expect("the JSON record");
    assert_eq!(shown["patient"], PATIENT);
    assert_eq!(shown["assertion_claims"]["purpose_of_use"], "BTG");
    assert_eq!(shown["assertion_claims"]["break_glass"]["id"], id.as_str());
    g.wait_audit(|r| {
        r["event"] == "request"
            && r["patient"] == PATIENT
            && r["decision"] == "permit"
            && r["break_glass_id"] == id.as_str()
    });

    // 4. The follow-up: the patient's signature drawn on the canvas.
    browser.goto(&g.url(EMERGENCY));
    browser.wait_text("事後に患者さんの同意の署名", 10);
    let canvas = browser.find(&format!("canvas[data-pad=\"{id}\"]"));
    // Nothing drawn yet: nothing is sent, and the page says why.
    let record = browser.find(&format!("form#pad-{id} button"));
    browser.click(&record);
    browser.wait_text("署名欄に署名していただいてから記録してください", 5);
    assert_eq!(browser.url(), g.url(EMERGENCY));
    assert_eq!(row(&g, "follow_up_at"), ["NULL"]);
    browser.draw(
        &canvas,
        &[
            (-180, 20),
            (-120, -30),
            (-40, 40),
            (30, -40),
            (110, 30),
            (180, -10),
        ],
    );
    // What the pad holds now is what the form sends.
    let drawn = browser.execute(
        "return arguments[0].toDataURL('image/png').split(',')[1]",
        json!([Browser::arg(&canvas)]),
    );
    let drawn = B64.decode(drawn.as_str().unwrap()).unwrap();
    assert_eq!(png_size(&drawn), (480, 160));
    // Dark ink on an opaque white ground: the evidence reads the same in any viewer (on a
    // transparent ground, black ink vanishes on a dark background).
    let pixels = browser.execute(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;\
         let ink = 0, clear = 0;\
         for (let i = 0; i < d.length; i += 4) { if (d[i + 3] < 255) clear++; else if (d[i] < 128) ink++; }\
         return [ink, clear]",
        json!([Browser::arg(&canvas)]),
    );
    assert!(
        pixels[0].as_u64().unwrap() > 300,
        "the stroke is drawn: {pixels}"
    );
    assert_eq!(pixels[1], 0, "not a pixel is transparent: {pixels}");
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &drawn,
    ));
    browser.click(&record);
    let text = browser.wait_text("記録済み / Follow-up recorded (signature)", 10);
    assert!(!text.contains("bad_request"), "{text}");
    assert_eq!(
        row(&g, "follow_up_kind, follow_up_sha256"),
        ["signature", sha.as_str()]
    );
    browser.refresh();
    browser.wait_text("記録済み / Follow-up recorded (signature)", 10);
    let rec = g.wait_audit(|r| r["reason"] == "break_glass_follow_up");
    assert_eq!(rec["break_glass_id"], id.as_str());
    assert_eq!(rec["user"], DOCTOR);
    assert_eq!(rec["patient"], PATIENT);
    assert_eq!(rec["detail"], format!("signature image/png sha256 {sha}"));
    let sent = g
        .audit_records()
        .iter()
        .filter(|r| r["event"] == "break_glass" && r["break_glass_id"] == id.as_str())
        .map(|r| r["reason"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>();
    assert_eq!(
        sent,
        [
            "break_glass_begun",
            "break_glass_search",
            "break_glass_search",
            "break_glass_declared",
            "break_glass_follow_up"
        ],
        "each step once, none refused"
    );
    assert_eq!(begun(&g), 1);
    let kept = g
        .data
        .join("break-glass")
        .join(&id)
        .join(format!("{sha}.png"));
    assert_eq!(std::fs::read(&kept).unwrap(), drawn);

    // 5. The page as the physician sees it.
    let png = browser.screenshot();
    let (w, h) = png_size(&png);
    assert!(w >= 800 && h >= 600, "{w}×{h}");
    assert!(
        png.len() > 20_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    let shot = artifacts.join(format!("emergency-{db:?}.png").to_lowercase());
    std::fs::write(&shot, &png).unwrap();

    // 6. A security officer reviews it in the console, in the same browser: the console sends
    // them to sign in and back, the dashboard counts the declaration, the queue leads to it,
    // and the finding is recorded from the page.
    let officer_dir = tempfile::tempdir().unwrap();
    // An officer who is also the secretariat: every console page is theirs.
    sign_in(
        &g,
        "t2",
        OFFICER,
        "security-officer,secretariat",
        officer_dir.path(),
    );
    // The physician's card session is still open on t1: the console is not theirs, and the
    // page offers to sign them out for someone else.
    browser.goto(&g.url("/.sekisho/console/"));
    browser.wait_text("セキュリティ管理者または事務局", 10);
    assert_eq!(browser.status(), 403);
    browser.click(&browser.find("#switch button"));
    browser.wait_text("サインイン / Sign in", 10);
    assert_eq!(
        browser.url(),
        g.url("/.sekisho/login?next=/.sekisho/console/")
    );
    browser.send_keys(&browser.find("input[name=id]"), OFFICER);
    browser.send_keys(&browser.find("input[name=password]"), OFFICER_PASSWORD);
    browser.click(&browser.find("form[action='/.sekisho/login'] button"));
    let text = browser.wait_text("ダッシュボード", 10);
    assert_eq!(browser.url(), g.url("/.sekisho/console/"));
    assert!(text.contains("未確認の緊急時アクセス"), "{text}");
    assert_eq!(
        browser.element_text(&browser.find("#bg-unreviewed")),
        "1",
        "{text}"
    );
    // The audit card lists the export destination and how far behind it is.
    let export = browser.element_text(&browser.find("#audit-exports li[data-export=archive]"));
    assert!(
        export.starts_with("archive (jsonl): 未送信 / behind "),
        "{export}"
    );
    browser.click(&browser.find("header a[href='/.sekisho/console/breakglass']"));
    browser.wait_text("緊急時アクセスの確認", 10);
    browser.click(&browser.find(&format!(
        "#queue a[href='/.sekisho/console/breakglass/{id}']"
    )));
    let text = browser.wait_text("確認の結果", 10);
    assert!(text.contains("家族に連絡がつかない"), "{text}");
    browser.click(&browser.find("select[name=finding] option[value=justified]"));
    browser.send_keys(
        &browser.find("textarea[name=comment]"),
        "意識障害のため妥当。",
    );
    browser.click(&browser.find("#review-form button"));
    let text = browser.wait_text("確認の結果を記録しました", 10);
    assert!(text.contains("justified"), "{text}");
    assert_eq!(
        row(&g, "review_finding, reviewed_by, review_comment"),
        ["justified", OFFICER, "意識障害のため妥当。"]
    );
    // The audit search: the patient's records, each verified against the signed checkpoint.
    browser.click(&browser.find("header a[href='/.sekisho/console/audit']"));
    browser.send_keys(&browser.find("#search input[name=patient]"), PATIENT);
    browser.click(&browser.find("#search button"));
    browser.wait_for("#results", 10);
    assert!(
        browser.find_all("#results td .ok").len() >= 2,
        "{}",
        browser.text()
    );
    // The patient's access history, printable.
    browser.click(&browser.find("header a[href='/.sekisho/console/patient']"));
    browser.send_keys(&browser.find("#history input[name=patient]"), PATIENT);
    browser.click(&browser.find("#history button:not([name=format])"));
    let text = browser.wait_text("診療情報の利用状況のご報告", 10);
    assert!(
        text.contains(&id),
        "the emergency access is in the report: {text}"
    );
    let console_png = browser.screenshot();
    assert!(console_png.len() > 20_000, "a page, not a blank");
    std::fs::write(
        artifacts.join(format!("console-{db:?}.png").to_lowercase()),
        &console_png,
    )
    .unwrap();
    let asked = g.wait_audit(|r| r["action"] == "access_history");
    assert_eq!(asked["user"], OFFICER);
    assert_eq!(asked["terminal"], "t1");
    // The other pages open in the browser too: statistics, terminals, people, care teams.
    browser.click(&browser.find("header a[href='/.sekisho/console/stats']"));
    let text = browser.wait_text("利用統計", 10);
    assert!(
        text.contains(DOCTOR),
        "the physician's requests are counted: {text}"
    );
    browser.find("#by-facility");
    browser.click(&browser.find("header a[href='/.sekisho/console/terminals']"));
    browser.wait_for("#terminal-t1", 10);
    browser.find("#enroll-code input[name=terminal]");
    browser.click(&browser.find("header a[href='/.sekisho/console/users']"));
    browser.wait_for(&format!("#user-{DOCTOR}"), 10);
    browser.find("#add-user input[name=id]");
    browser.click(&browser.find("header a[href='/.sekisho/console/patients']"));
    browser.send_keys(&browser.find("#find-patient input[name=patient]"), PATIENT);
    browser.click(&browser.find("#find-patient button"));
    browser.wait_for("#care-team", 10);
    browser.find("#add-member select[name=kind]");
    browser.click(&browser.find("header a[href='/.sekisho/console/facilities']"));
    browser.wait_for("#facility-f1", 10);
    browser.find("#post-notice textarea[name=ja]");
    browser.find("#start-maintenance input[name=until]");
    assert_eq!(browser.status(), 200);

    // The terminal's notices page and the maintenance page, as Chromium shows them.
    let shows = |path: &str, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            browser.goto(&g.url(path));
            let text = browser.text();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let d = g.data_str();
    run_ok(&[
        "notice",
        "add",
        "--data-dir",
        d,
        "--ja",
        "12月5日<b>22時</b>からシステム更新",
        "--en",
        "System update from 22:00",
        "--until",
        "2099-01-01 00:00",
    ]);
    let text = shows("/.sekisho/notices", "システム更新");
    assert!(
        text.contains("12月5日<b>22時</b>からシステム更新"),
        "shown as text, not markup: {text}"
    );
    assert!(text.contains("System update from 22:00"), "{text}");
    assert_eq!(browser.status(), 200);
    run_ok(&[
        "maintenance",
        "start",
        "--data-dir",
        d,
        "--end",
        "2099-01-01 00:00",
        "--ja",
        "緊急メンテナンス中です",
        "--en",
        "Emergency maintenance",
    ]);
    let text = shows("/", "緊急メンテナンス中です");
    assert!(
        text.contains("終了予定") && text.contains("2099-01-01 00:00"),
        "{text}"
    );
    assert_eq!(browser.status(), 503);
    run_ok(&["maintenance", "end", "--data-dir", d]);
    eprintln!(
        "{db:?}: screenshot {} ({} bytes); {:.1} s",
        shot.display(),
        png.len(),
        started.elapsed().as_secs_f64()
    );
}
