//! Emergency access (break-glass, R-PAT-4, R-BG-1..3) end to end with real parts: the gateway
//! (`sekisho serve`, on SQLite and on PostgreSQL, and a second replica on one PostgreSQL store),
//! real TLS with terminal certificates, pcscd with the vsmartcard vpcd reader and a virtual HPKI
//! card signing through `sekisho_agent` (the library of `sekisho-agent emergency`), the officers'
//! `sekisho breakglass` commands, and the local webhook and SMTP receivers of `notify_rig`.
//!
//! Where a test needs a signature the agent would never produce (another card's, a replayed
//! one, one for a timed-out draft), it signs the gateway's words with the test card's key itself
//! (the same RSASSA-PKCS1-v1_5 / SHA-256 the card computes). Time is not waited for: a grant's
//! end or a draft's timeout is moved in the store (the triggers tell every gateway, as for any
//! other change). Needs pcscd and vsmartcard-vpcd (tests/run.sh installs them); fails, never
//! skips, without them.

mod common;
mod notify_rig;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use sekisho_agent::{
    self as agent, AgentConfig, AgentError, Confirm, Declaration, DeclarationRequest,
    EmergencyOutcome, FixedPin,
};
use sekisho_ca::hpki::{EeSpec, TestCert, TestHpki};
use sekisho_cardreader::vcard::{AppFiles, CardEngine, Quirks, VirtualCard};
use sekisho_protocol::wire::{
    EMERGENCY_DECLARATIONS_PATH, EMERGENCY_SEARCH_PATH, HPKI_CHALLENGE_PATH, HPKI_LOGIN_PATH,
};
use serde_json::{Value, json};

const READER: &str = "Virtual PCD 00 01";
const PORT: u16 = 35964;
const PIN: &str = "4321";

const DOCTOR: &str = "doctor0000001";
const DOCTOR2: &str = "doctor0000002";
const PHARMACIST: &str = "pharmacist0001";
const OFFICER: &str = "officer0000001";
const SECRETARIAT: &str = "secretariat001";

/// Registered without consent and outside every care team: the ordinary rules refuse.
const PATIENT: &str = "P-0001";
const RECORD: &str = "/api/patients/P-0001/summary";
/// A patient route whose upstream answer shows the request's headers (the raw assertion).
const DEBUG_RECORD: &str = "/debug/patients/P-0001";
const JUSTIFICATION: &str = "救急搬送、意識障害。Unconscious on arrival; no relative reachable.";

const HPKI_TOML: &str = r#"
[[route]]
name = "debug-patient"
methods = ["GET"]
path = "/debug/patients/{patient}"
level = "patient"
action = "view"

[route.patient]
from = "path"
name = "patient"

[hpki]
anchors = ["hpki/root.crt"]
intermediates = ["hpki/auth-ca.crt"]
crls = ["hpki/auth-ca.crl", "hpki/root.crl"]
"#;

// ---- the test HPKI, made once per test binary ----

struct Pki {
    hpki: TestHpki,
    /// A second physician's card.
    doctor2: TestCert,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        // Everything the tests need is kept in memory; the files are written per gateway.
        let dir = tempfile::tempdir().unwrap();
        let hpki = TestHpki::generate(dir.path()).unwrap();
        let doctor2 = hpki
            .issue(
                &EeSpec::authentication(
                    "Jiro Yamada",
                    "山田　次郎",
                    "T00000010",
                    &["Medical Doctor"],
                ),
                "doctor2",
            )
            .unwrap();
        Pki { hpki, doctor2 }
    })
}

/// An authentication CA CRL that lists `revoked`, newer than the one the gateway has.
fn crl_revoking(revoked: &[&TestCert]) -> String {
    use sekisho_ca::{RevocationReason, RevokedEntry};
    let now = time::OffsetDateTime::now_utc();
    let entries: Vec<RevokedEntry> = revoked
        .iter()
        .map(|c| RevokedEntry {
            serial_hex: c.serial_hex.clone(),
            revoked_at: now - time::Duration::minutes(1),
            reason: RevocationReason::KeyCompromise,
        })
        .collect();
    let der = pki()
        .hpki
        .auth_crl_with(
            &entries,
            2,
            now - time::Duration::minutes(1),
            now + time::Duration::days(7),
        )
        .unwrap();
    sekisho_ca::crl_pem(&der)
}

// ---- the desk: one gateway with its people, patients and clients ----

struct Setup {
    /// Text replacements in sekisho.toml (e.g. `follow_up_hours = 0`).
    replace: Vec<(&'static str, &'static str)>,
    /// More TOML (e.g. `[notify]`).
    extra: String,
    /// The declaring physician's roles.
    doctor_roles: &'static str,
    /// More patients, (id, name, kana), besides P-0001 山田 花子.
    patients: Vec<(&'static str, &'static str, &'static str)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            replace: Vec::new(),
            extra: String::new(),
            doctor_roles: "physician",
            patients: Vec::new(),
        }
    }
}

struct Desk {
    g: Gateway,
    rt: tokio::runtime::Runtime,
}

impl Desk {
    fn start(db: Db, setup: Setup) -> Desk {
        let opts = Options {
            replace: setup.replace,
            extra_config: Options::default().extra_config + HPKI_TOML + &setup.extra,
            ..Default::default()
        };
        let g = Gateway::start_prepared(db, opts, |g| {
            let p = pki();
            let h = &p.hpki;
            let dir = g.data.join("hpki");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in [
                ("root.crt", h.root.pem()),
                ("auth-ca.crt", h.auth_ca.pem()),
                ("root.crl", sekisho_ca::crl_pem(&h.root_crl)),
                ("auth-ca.crl", sekisho_ca::crl_pem(&h.auth_crl)),
                ("doctor.crt", h.doctor.pem()),
                ("doctor2.crt", p.doctor2.pem()),
                ("pharmacist.crt", h.pharmacist.pem()),
            ] {
                std::fs::write(dir.join(name), text).unwrap();
            }
            // t1: the physician's card; t2, t3: other people at the same facility.
            g.add_terminal("f1", "t2", &g.out);
            g.add_terminal("f1", "t3", &g.out);
            let d = g.data_str();
            for (id, cert, roles) in [
                (DOCTOR, Some("doctor.crt"), setup.doctor_roles),
                (DOCTOR2, Some("doctor2.crt"), "physician"),
                (PHARMACIST, Some("pharmacist.crt"), "pharmacist"),
                (OFFICER, None, "security-officer"),
                (SECRETARIAT, None, "secretariat"),
            ] {
                let crt = cert.map(|c| dir.join(c).to_str().unwrap().to_string());
                let mut args = vec![
                    "user",
                    "add",
                    "--data-dir",
                    d,
                    "--id",
                    id,
                    "--name",
                    "関所　太郎",
                    "--facility",
                    "f1",
                    "--roles",
                    roles,
                ];
                if let Some(c) = &crt {
                    args.extend(["--hpki-cert", c]);
                }
                run_ok(&args);
            }
            for (id, name, kana) in [(PATIENT, "山田 花子", "ヤマダ ハナコ")]
                .into_iter()
                .chain(setup.patients)
            {
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
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Desk { g, rt }
    }

    fn agent_config(&self) -> AgentConfig {
        let (cert, key) = self.g.cert("t1");
        AgentConfig {
            gateway: format!("https://localhost:{}", self.g.port),
            cert: cert.into(),
            key: key.into(),
            ca: self.g.ca().into(),
            reader: Some(READER.into()),
        }
    }

    /// One request as terminal `term` (no cookie: the card's session of that terminal).
    fn call(&self, term: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call_on(&self.rt, &self.g, term, method, path, body)
    }

    /// The physician signs in on t1 with the card in the reader, through the agent.
    fn card_sign_in(&self) -> String {
        let info = self
            .rt
            .block_on(agent::login(&self.agent_config(), PIN))
            .expect("sign-in with the card");
        info.user
    }

    /// The agent declares for `patient` with the card (as `sekisho-agent emergency --patient`).
    fn card_declare(&self, patient: &str, category: &str) -> Result<EmergencyOutcome, AgentError> {
        let request = DeclarationRequest {
            category: category.into(),
            justification: JUSTIFICATION.into(),
            patient: Some(patient.into()),
        };
        let confirm: Arc<dyn Confirm> = Arc::new(|_: &Declaration| true);
        self.rt.block_on(agent::emergency_declare(
            &self.agent_config(),
            &request,
            Arc::new(FixedPin::new(PIN)),
            confirm,
        ))
    }

    /// An HPKI sign-in on `term` answered with `cert`'s key, as the card would answer it.
    fn key_sign_in(&self, term: &str, cert: &TestCert) -> (u16, Value) {
        let (s, challenge) = self.call(term, "POST", HPKI_CHALLENGE_PATH, None);
        assert_eq!(s, 200, "{challenge}");
        let answer = answer(&challenge, cert);
        self.call(term, "POST", HPKI_LOGIN_PATH, Some(answer))
    }

    /// Begins a declaration on `term` (with its patient when given).
    fn begin(&self, term: &str, category: &str, patient: Option<&str>) -> (u16, Value) {
        self.call(
            term,
            "POST",
            EMERGENCY_DECLARATIONS_PATH,
            Some(json!({"category": category, "justification": JUSTIFICATION, "patient": patient})),
        )
    }

    fn send_signature(&self, term: &str, id: &str, answer: &Value) -> (u16, Value) {
        self.call(
            term,
            "POST",
            &format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/signature"),
            Some(answer.clone()),
        )
    }

    /// A declaration begun and signed with `cert`'s key on `term`: its id.
    fn key_declare(&self, term: &str, cert: &TestCert, patient: &str, category: &str) -> String {
        let (s, state) = self.begin(term, category, Some(patient));
        assert_eq!(s, 201, "{state}");
        let id = state["id"].as_str().unwrap().to_string();
        let (s, done) = self.send_signature(term, &id, &answer(&state, cert));
        assert_eq!(
            (s, done["status"].as_str()),
            (200, Some("active")),
            "{done}"
        );
        id
    }

    fn row(&self, id: &str, columns: &str) -> Vec<String> {
        let mut rows = self.g.sql_rows(&format!(
            "SELECT {columns} FROM break_glass WHERE id = '{id}'"
        ));
        assert_eq!(rows.len(), 1, "declaration {id}");
        rows.remove(0)
    }

    /// `sekisho breakglass …` as an officer would run it; (exit ok, stdout + stderr).
    fn breakglass(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["breakglass", args[0], "--data-dir", self.g.data_str()];
        all.extend(&args[1..]);
        let o = run(&all);
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

fn call_on(
    rt: &tokio::runtime::Runtime,
    g: &Gateway,
    term: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    rt.block_on(call(g, term, method, path, body))
}

/// The card's answer to what the gateway gave to sign (`to_sign`, `nonce`), signed with `cert`.
fn answer(state: &Value, cert: &TestCert) -> Value {
    let to_sign = B64.decode(state["to_sign"].as_str().unwrap()).unwrap();
    json!({
        "nonce": state["nonce"],
        "certificate": B64.encode(&cert.der),
        "signature": B64.encode(cert.sign(&to_sign).unwrap()),
    })
}

/// A request with a password session's cookie jar (curl); (status, JSON body).
fn with_jar(
    g: &Gateway,
    term: &str,
    jar: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let (c, k) = g.cert(term);
    let body = body.to_string();
    let mut args = vec![
        "--cert",
        &c,
        "--key",
        &k,
        "-b",
        jar,
        "-X",
        method,
        "-H",
        "accept: application/json",
    ];
    if method == "POST" {
        args.extend([
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
        ]);
    }
    let (s, text, _) = g.curl(path, &args);
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The virtual HPKI card of `cert` in the vpcd reader; the reader is this test's until dropped.
struct Inserted {
    _card: VirtualCard,
    _engine: Arc<Mutex<CardEngine>>,
    _rig: VpcdRig,
}

fn insert(cert: &TestCert) -> Inserted {
    let rig = vpcd_rig(PORT, READER);
    let engine = Arc::new(Mutex::new(
        CardEngine::new(
            AppFiles::from_pem(cert.pem().as_bytes(), cert.key.as_str().as_bytes()).unwrap(),
            None,
            PIN,
            Quirks::default(),
        )
        .unwrap(),
    ));
    let card = VirtualCard::connect(&engine, ("127.0.0.1", PORT)).expect("insert the card");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sekisho_cardreader::pcsc_transport::PcscTransport::connect(READER).is_err() {
        assert!(Instant::now() < deadline, "the card was not seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Inserted {
        _card: card,
        _engine: engine,
        _rig: rig,
    }
}

fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

/// Polls `f` until `done`, for up to `secs`; returns the last answer.
fn until<T>(secs: u64, mut f: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = f();
        if done(&v) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Text as audit details carry it: printable ASCII as is, anything else `\u{…}`.
fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            c => format!("\\u{{{:x}}}", c as u32),
        })
        .collect()
}

/// Records of the audit log in log order, with their position.
fn indexed(g: &Gateway) -> Vec<(usize, Value)> {
    g.audit_records().into_iter().enumerate().collect()
}

fn is_bg(r: &Value, reason: &str) -> bool {
    r["event"] == "break_glass" && r["reason"] == reason
}

// ---- 1, 2: declared, used, expired ----

/// A physician signed in with the HPKI card declares for a patient who never consented and
/// views the record: the declaration is on record before the first request under it, every
/// request under it carries its id and purpose BTG, and the signed assertion carries the
/// `break_glass` claim. Moved to end two seconds from now, the grant ends then: the next
/// request is refused as before the declaration, and the gateway marks the grant expired.
#[test]
fn a_card_declaration_opens_the_record_on_record_and_closes_on_time() {
    for db in BOTH {
        let desk = Desk::start(db, Setup::default());
        let g = &desk.g;
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        // No consent, no care team: refused, and nothing says emergency yet.
        let (s, body) = desk.call("t1", "GET", RECORD, None);
        assert_eq!(
            (s, error_code(&body)),
            (403, "patient_no_consent"),
            "{db:?}"
        );

        let before = sekisho_store::now();
        let outcome = desk.card_declare(PATIENT, "unconscious").expect("declared");
        drop(card);
        let d = &outcome.declaration;
        assert!(outcome.is_active(), "{db:?}: {outcome:?}");
        assert_eq!(
            (d.user.as_str(), d.patient.as_str(), d.category.as_str()),
            (DOCTOR, PATIENT, "unconscious")
        );
        assert_eq!(d.justification, JUSTIFICATION);
        assert_eq!(d.terminal, "urn:sekisho:terminal:f1:t1");
        let id = outcome.state.id.clone();
        let expires = outcome.state.expires_at.unwrap();
        let after = sekisho_store::now();
        assert!(
            (before + 4 * 3600..=after + 4 * 3600).contains(&expires),
            "{db:?}: four hours by default, got {expires}"
        );
        assert_eq!(outcome.state.allows.as_deref(), Some("view"));
        // What the store keeps is exactly what the card signed.
        let row = desk.row(&id, "status, signed_text, outside_care_team, card");
        assert_eq!(row[0], "active");
        assert_eq!(row[1].as_bytes(), d.to_sign().as_slice());
        assert_eq!(
            row[2], "1",
            "the patient is outside the physician's care teams"
        );

        // Viewing under the grant: the upstream gets a signed assertion with the claim.
        let (s, v) = desk.call("t1", "GET", DEBUG_RECORD, None);
        assert_eq!(s, 200, "{db:?}: {v}");
        let claims = &v["assertion_claims"];
        assert_eq!(claims["purpose_of_use"], "BTG");
        assert_eq!(claims["consent_basis"], "break_glass");
        assert_eq!(claims["user"], DOCTOR);
        assert_eq!(claims["patient"], PATIENT);
        assert_eq!(
            claims["break_glass"],
            json!({"id": id, "reason_category": "unconscious", "expires": expires})
        );
        let (_, jwks) = g.mgmt_get("/jwks.json").unwrap();
        let jwks: Value = serde_json::from_str(&jwks).unwrap();
        let jwt = v["headers"]["sekisho-assertion"][0].as_str().unwrap();
        assert!(
            verify_es256(jwt, &jwks["keys"][0]),
            "{db:?}: the assertion verifies"
        );
        for _ in 0..2 {
            let (s, v) = desk.call("t1", "GET", RECORD, None);
            assert_eq!(s, 200, "{db:?}: {v}");
            assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
        }
        // View only (the category's default): writing is still refused.
        let (s, v) = desk.call("t1", "POST", RECORD, Some(json!({"note": "x"})));
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"), "{db:?}");

        // The audit log: begun, declared (signed, BTG), then the three requests, in that order.
        g.wait_audit(|r| r["event"] == "outcome" && r["break_glass_id"] == id.as_str());
        let log = indexed(g);
        let at = |reason: &str| {
            log.iter()
                .find(|(_, r)| is_bg(r, reason) && r["break_glass_id"] == id.as_str())
                .unwrap_or_else(|| panic!("{db:?}: no {reason} record"))
        };
        let begun = at("break_glass_begun").0;
        let (declared, rec) = at("break_glass_declared");
        let declared = *declared;
        assert!(begun < declared);
        assert_eq!(rec["decision"], "permit");
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(rec["patient"], PATIENT);
        assert_eq!(rec["purpose_of_use"], "BTG");
        let detail = rec["detail"].as_str().unwrap();
        assert!(
            detail.contains("category unconscious; 4 h, write false; signature sha256 ")
                && detail.ends_with("outside care team true"),
            "{detail}"
        );
        let requests: Vec<&(usize, Value)> = log
            .iter()
            .filter(|(_, r)| {
                r["event"] == "request" && r["patient"] == PATIENT && r["decision"] == "permit"
            })
            .collect();
        assert_eq!(requests.len(), 3, "{db:?}: {requests:#?}");
        for (i, r) in &requests {
            assert!(
                *i > declared,
                "{db:?}: a request before the declaration's record"
            );
            assert_eq!(r["break_glass_id"], id.as_str());
            assert_eq!(r["purpose_of_use"], "BTG");
            assert_eq!(r["user"], DOCTOR);
        }
        // The refused write is on record without the grant.
        let refused = log
            .iter()
            .find(|(_, r)| r["event"] == "request" && r["method"] == "POST")
            .unwrap();
        assert_eq!(refused.1["reason"], "patient_no_consent");
        assert!(refused.1["break_glass_id"].is_null());

        // The officers' view: every record under the declaration.
        let (ok, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(ok, "{shown}");
        let under = log
            .iter()
            .filter(|(_, r)| r["break_glass_id"] == id.as_str())
            .count();
        assert!(
            shown.contains(&format!("records under this declaration ({under}):")),
            "{db:?}: {under} records: {shown}"
        );
        assert!(shown.contains("status        active"), "{shown}");
        assert!(shown.contains("outside care  yes"), "{shown}");
        assert!(shown.contains("review        UNREVIEWED"), "{shown}");
        let (ok, listed) = desk.breakglass(&["list", "--unreviewed", "--status", "active"]);
        assert!(ok && listed.contains(&id), "{listed}");

        // 2: the grant ends on time. Moved to end two seconds from now (the store's triggers
        // tell the gateway, as they do for any change).
        let ends = sekisho_store::now() + 2;
        g.sql(&format!(
            "UPDATE break_glass SET expires_at = {ends} WHERE id = '{id}'"
        ));
        let last_ok = until(
            5,
            || desk.call("t1", "GET", RECORD, None),
            |(s, _)| *s != 200,
        );
        let refused_at = sekisho_store::now();
        assert_eq!(
            (last_ok.0, error_code(&last_ok.1)),
            (403, "patient_no_consent"),
            "{db:?}: refused again as before the declaration"
        );
        assert!(
            (ends..=ends + 1).contains(&refused_at),
            "{db:?}: the grant ended at {refused_at}, not at {ends}"
        );
        let log = g.audit_records();
        let last = log
            .iter()
            .rev()
            .find(|r| r["event"] == "request" && r["patient"] == PATIENT)
            .unwrap();
        assert_eq!(last["decision"], "deny");
        assert!(last["break_glass_id"].is_null() && last["purpose_of_use"].is_null());
        // The gateway's round marks it expired (every 10 s).
        let status = until(
            12,
            || desk.row(&id, "status")[0].clone(),
            |s| s == "expired",
        );
        assert_eq!(status, "expired", "{db:?}");
    }
}

// ---- 3: refusals ----

/// Who may not declare, and signatures that do not count, each refused with its reason code
/// and on record; none of them grants anything. The refused signatures leave the draft as it
/// was, so the card's own signature still works once, and only once.
#[test]
fn refusals_name_their_reason_and_grant_nothing() {
    for db in BOTH {
        let desk = Desk::start(db, Setup::default());
        let g = &desk.g;
        let (doctor, other) = (&pki().hpki.doctor, &pki().doctor2);
        let dir = tempfile::tempdir().unwrap();
        let request =
            json!({"category": "unconscious", "justification": JUSTIFICATION, "patient": PATIENT});

        // A nurse, and a physician signed in with a password (on t2): not permitted; the page
        // says why.
        for (id, roles) in [("nurse00000001", "nurse"), ("doctorpw00001", "physician")] {
            let jar = sign_in(g, "t2", id, roles, dir.path());
            let (s, v) = with_jar(g, "t2", &jar, "POST", EMERGENCY_DECLARATIONS_PATH, &request);
            assert_eq!(
                (s, error_code(&v)),
                (403, "break_glass_not_permitted"),
                "{db:?}: {id}"
            );
            let (s, page) = get(g, "t2", &jar, "/.sekisho/emergency");
            assert_eq!(s, 403, "{db:?}: {page}");
            assert!(
                page.contains("break_glass_not_permitted")
                    && page.contains("HPKIカードでサインインした医師だけ"),
                "{page}"
            );
            g.wait_audit(|r| {
                is_bg(r, "break_glass_not_permitted") && r["user"] == id && r["decision"] == "deny"
            });
        }
        // A pharmacist signed in with their HPKI card: not permitted either.
        let (s, v) = desk.key_sign_in("t2", &pki().hpki.pharmacist);
        assert_eq!((s, v["user"].as_str()), (200, Some(PHARMACIST)), "{v}");
        let (s, v) = desk.begin("t2", "unconscious", Some(PATIENT));
        assert_eq!((s, error_code(&v)), (403, "break_glass_not_permitted"));
        g.wait_audit(|r| is_bg(r, "break_glass_not_permitted") && r["user"] == PHARMACIST);

        // The physician signs in with the card on t1. What is declared must make sense.
        let card = insert(doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        drop(card);
        let (s, v) = desk.begin("t1", "holiday", Some(PATIENT));
        assert_eq!((s, error_code(&v)), (400, "break_glass_category_unknown"));
        let (s, v) = desk.call(
            "t1",
            "POST",
            EMERGENCY_DECLARATIONS_PATH,
            Some(json!({"category": "unconscious", "justification": " \n ", "patient": PATIENT})),
        );
        assert_eq!(
            (s, error_code(&v)),
            (400, "break_glass_justification_invalid")
        );
        let (s, v) = desk.begin("t1", "unconscious", Some("P-9999"));
        assert_eq!((s, error_code(&v)), (404, "break_glass_patient_unknown"));

        // Signed by another physician's card, or the physician's certificate with a signature
        // it did not make: refused, and the draft still waits.
        let (s, state) = desk.begin("t1", "unconscious", Some(PATIENT));
        assert_eq!(
            (s, state["status"].as_str()),
            (201, Some("awaiting_signature"))
        );
        let id = state["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &id, &answer(&state, other));
        assert_eq!(
            (s, error_code(&v)),
            (403, "break_glass_card_mismatch"),
            "{db:?}"
        );
        let mut forged = answer(&state, other);
        forged["certificate"] = json!(B64.encode(&doctor.der));
        let (s, v) = desk.send_signature("t1", &id, &forged);
        assert_eq!((s, error_code(&v)), (401, "break_glass_signature_invalid"));
        assert_eq!(desk.row(&id, "status")[0], "awaiting_signature");
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"));

        // The card's signature counts once; sent again, it changes nothing.
        let good = answer(&state, doctor);
        let (s, v) = desk.send_signature("t1", &id, &good);
        assert_eq!((s, v["status"].as_str()), (200, Some("active")), "{v}");
        let (s, v) = desk.send_signature("t1", &id, &good);
        assert_eq!((s, error_code(&v)), (409, "break_glass_declaration_state"));
        // Nor does it sign a new declaration: not with its own nonce, nor with the new one.
        let (_, fresh) = desk.begin("t1", "unconscious", Some(PATIENT));
        let fresh_id = fresh["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &fresh_id, &good);
        assert_eq!((s, error_code(&v)), (409, "break_glass_declaration_state"));
        let mut renonced = good.clone();
        renonced["nonce"] = fresh["nonce"].clone();
        let (s, v) = desk.send_signature("t1", &fresh_id, &renonced);
        assert_eq!((s, error_code(&v)), (401, "break_glass_signature_invalid"));
        assert_eq!(desk.row(&fresh_id, "status")[0], "awaiting_signature");

        // A draft that timed out (draft_minutes) cannot be signed any more.
        let (_, late) = desk.begin("t1", "unconscious", Some(PATIENT));
        let late_id = late["id"].as_str().unwrap().to_string();
        g.sql(&format!(
            "UPDATE break_glass SET draft_expires_at = {} WHERE id = '{late_id}'",
            sekisho_store::now() - 1
        ));
        let (s, v) = desk.send_signature("t1", &late_id, &answer(&late, doctor));
        assert_eq!(
            (s, error_code(&v)),
            (404, "break_glass_declaration_not_found")
        );
        assert_eq!(desk.row(&late_id, "status")[0], "awaiting_signature");

        // A card revoked after sign-in: its signature is refused once the gateway has the CRL.
        let (_, revoked) = desk.begin("t1", "unconscious", Some(PATIENT));
        let revoked_id = revoked["id"].as_str().unwrap().to_string();
        std::fs::write(
            g.data.join("hpki/auth-ca.crl"),
            crl_revoking(&[doctor, other]),
        )
        .unwrap();
        // The other physician's card, also revoked, shows when the gateway has re-read it.
        let (s, v) = until(
            5,
            || desk.key_sign_in("t3", other),
            |(_, v)| error_code(v) == "hpki_revoked",
        );
        assert_eq!((s, error_code(&v)), (403, "hpki_revoked"), "{db:?}");
        let (s, v) = desk.send_signature("t1", &revoked_id, &answer(&revoked, doctor));
        assert_eq!((s, error_code(&v)), (403, "hpki_revoked"), "{db:?}");

        // One grant came of all this, and every refusal is on record with its declaration.
        let active = g.sql_rows("SELECT id FROM break_glass WHERE status = 'active'");
        assert_eq!(active, vec![vec![id.clone()]], "{db:?}");
        let log = g.audit_records();
        assert_eq!(
            log.iter()
                .filter(|r| is_bg(r, "break_glass_declared"))
                .count(),
            1
        );
        for (reason, declaration) in [
            ("break_glass_card_mismatch", &id),
            ("break_glass_signature_invalid", &id),
            ("break_glass_declaration_state", &id),
            ("break_glass_declaration_state", &fresh_id),
            ("break_glass_signature_invalid", &fresh_id),
            ("break_glass_declaration_not_found", &late_id),
            ("hpki_revoked", &revoked_id),
        ] {
            assert!(
                log.iter().any(|r| is_bg(r, reason)
                    && r["decision"] == "deny"
                    && r["user"] == DOCTOR
                    && r["break_glass_id"] == declaration.as_str()),
                "{db:?}: no {reason} record for {declaration}"
            );
        }
        for reason in [
            "break_glass_category_unknown",
            "break_glass_justification_invalid",
            "break_glass_patient_unknown",
        ] {
            assert!(
                log.iter().any(|r| is_bg(r, reason) && r["user"] == DOCTOR),
                "{db:?}: no {reason} record"
            );
        }
    }
}

// ---- 4: a second person's approval ----

/// A child-protection declaration grants nothing until the secretariat (or a security officer)
/// approves it; the declaring physician, though also a security officer, can neither approve
/// nor review it, and an approval is given once. A rejected one never grants.
#[test]
fn child_protection_waits_for_a_second_persons_approval() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                doctor_roles: "physician,security-officer",
                ..Default::default()
            },
        );
        let g = &desk.g;
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        let outcome = desk
            .card_declare(PATIENT, "child_protection")
            .expect("signed");
        drop(card);
        assert!(!outcome.is_active(), "{db:?}: {outcome:?}");
        assert_eq!(outcome.state.status, "awaiting_approval");
        assert_eq!(outcome.state.expires_at, None);
        let id = outcome.state.id.clone();
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!((s, error_code(&v)), (403, "patient_no_consent"), "{db:?}");
        assert_eq!(
            desk.row(&id, "status, starts_at, expires_at"),
            ["awaiting_approval", "NULL", "NULL"]
        );

        // Not by the physician who declared it, whatever their roles.
        for args in [
            vec!["approve", "--id", &id, "--operator", DOCTOR],
            vec![
                "review",
                "--id",
                &id,
                "--finding",
                "justified",
                "--operator",
                DOCTOR,
            ],
        ] {
            let (ok, out) = desk.breakglass(&args);
            assert!(!ok, "{db:?}: {args:?}: {out}");
            assert!(
                out.contains(&format!(
                    "{DOCTOR} declared {id}: the review and the approval are someone else's"
                )),
                "{out}"
            );
        }
        // Nor by someone who is neither a security officer nor the secretariat.
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", DOCTOR2]);
        assert!(
            !ok && out.contains("neither a security officer nor the secretariat"),
            "{out}"
        );
        assert_eq!(
            desk.row(&id, "status, review_finding"),
            ["awaiting_approval", "NULL"]
        );
        let log = g.audit_records();
        assert!(!log.iter().any(|r| is_bg(r, "break_glass_approved")));
        assert!(!log.iter().any(|r| is_bg(r, "break_glass_reviewed")));

        // The secretariat approves: the grant starts now, for the category's four hours.
        let t0 = sekisho_store::now();
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", SECRETARIAT]);
        assert!(ok, "{out}");
        let row = desk.row(&id, "status, approved_by, starts_at, expires_at");
        assert_eq!(row[..2], ["active", SECRETARIAT]);
        let (starts, expires): (i64, i64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        assert!(starts >= t0 && expires - starts == 4 * 3600, "{row:?}");
        let (s, v) = within_a_poll(|| desk.call("t1", "GET", RECORD, None), |(s, _)| *s == 200);
        assert_eq!(s, 200, "{db:?}: {v}");
        assert_eq!(
            v["assertion_claims"]["break_glass"],
            json!({"id": id, "reason_category": "child_protection", "expires": expires})
        );
        // Once.
        let (ok, out) = desk.breakglass(&["approve", "--id", &id, "--operator", OFFICER]);
        assert!(
            !ok && out.contains("is active, not waiting for approval"),
            "{out}"
        );
        assert_eq!(desk.row(&id, "approved_by")[0], SECRETARIAT);

        // On record: the approval, by whom, before the first request under the grant.
        g.wait_audit(|r| r["event"] == "request" && r["break_glass_id"] == id.as_str());
        let log = indexed(g);
        let approved: Vec<_> = log
            .iter()
            .filter(|(_, r)| is_bg(r, "break_glass_approved"))
            .collect();
        assert_eq!(approved.len(), 1, "{db:?}");
        let (approved_at, rec) = approved[0];
        assert_eq!(rec["user"], SECRETARIAT);
        assert_eq!(rec["break_glass_id"], id.as_str());
        assert!(
            rec["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("declared by {DOCTOR}"))
        );
        let first = log
            .iter()
            .find(|(_, r)| r["event"] == "request" && r["break_glass_id"] == id.as_str())
            .unwrap();
        assert!(first.0 > *approved_at);
        assert_eq!(first.1["purpose_of_use"], "BTG");

        // The review is an officer's.
        let (ok, out) = desk.breakglass(&[
            "review",
            "--id",
            &id,
            "--finding",
            "justified",
            "--comment",
            "児相と連携",
            "--operator",
            OFFICER,
        ]);
        assert!(ok, "{out}");
        assert_eq!(
            desk.row(&id, "review_finding, reviewed_by, review_comment"),
            ["justified", OFFICER, "児相と連携"]
        );

        // A second one, rejected: it never grants.
        let (s, state) = desk.begin("t1", "child_protection", Some(PATIENT));
        assert_eq!(s, 201, "{state}");
        let second = state["id"].as_str().unwrap().to_string();
        let (s, v) = desk.send_signature("t1", &second, &answer(&state, &pki().hpki.doctor));
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("awaiting_approval")),
            "{v}"
        );
        let (ok, out) = desk.breakglass(&["reject", "--id", &second, "--operator", OFFICER]);
        assert!(ok, "{out}");
        assert_eq!(
            desk.row(&second, "status, starts_at, expires_at"),
            ["rejected", "NULL", "NULL"]
        );
        let (ok, out) = desk.breakglass(&["approve", "--id", &second, "--operator", SECRETARIAT]);
        assert!(!ok && out.contains("is rejected"), "{out}");
    }
}

// ---- 5: ended early, on every replica ----

/// A security officer ends a grant with `sekisho breakglass end`; a second gateway replica on
/// the same PostgreSQL store, where the physician's card session and grant held, refuses the
/// next request within a second.
#[test]
fn an_ended_grant_is_refused_on_another_replica_within_a_second() {
    let desk = Desk::start(Db::Postgres, Setup::default());
    let replica = desk.g.replica("replica-2");
    let card = insert(&pki().hpki.doctor);
    assert_eq!(desk.card_sign_in(), DOCTOR);
    let outcome = desk.card_declare(PATIENT, "disaster").expect("declared");
    drop(card);
    let id = outcome.state.id.clone();
    let on_replica = || call_on(&desk.rt, &replica, "t1", "GET", RECORD, None);
    // The card's session and the grant hold on the other replica.
    let (s, v) = within_a_poll(on_replica, |(s, _)| *s == 200);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
    replica.wait_audit(|r| {
        r["event"] == "request" && r["break_glass_id"] == id.as_str() && r["node"] == "replica-2"
    });

    // Only an officer ends it.
    let (ok, out) = desk.breakglass(&["end", "--id", &id, "--reason", "x", "--operator", DOCTOR]);
    assert!(!ok, "{out}");
    assert_eq!(desk.row(&id, "status")[0], "active");
    let (ok, out) = desk.breakglass(&[
        "end",
        "--id",
        &id,
        "--reason",
        "家族の同意を確認",
        "--operator",
        OFFICER,
    ]);
    assert!(ok, "{out}");
    // Every gateway refuses within a second: the other replica, and this one too (the CLI is
    // no gateway; both learn it from the store).
    let ended = Instant::now();
    let on_primary = || desk.call("t1", "GET", RECORD, None);
    for (name, refused) in [
        (
            "the other replica",
            until(3, on_replica, |(s, _)| *s != 200),
        ),
        (
            "the first replica",
            until(3, on_primary, |(s, _)| *s != 200),
        ),
    ] {
        let took = ended.elapsed();
        assert_eq!(
            (refused.0, error_code(&refused.1)),
            (403, "patient_no_consent"),
            "{name}: {}",
            refused.1
        );
        assert!(
            took < Duration::from_secs(1),
            "{name} refused {took:?} after the end"
        );
    }
    assert_eq!(
        desk.row(&id, "status, ended_by, end_reason"),
        ["ended", OFFICER, "家族の同意を確認"]
    );
    // The end is on record before the refusal.
    let log = indexed(&desk.g);
    let end = log
        .iter()
        .find(|(_, r)| is_bg(r, "break_glass_ended") && r["break_glass_id"] == id.as_str())
        .expect("the end is on record");
    assert_eq!(end.1["user"], OFFICER);
    let refused = log
        .iter()
        .rev()
        .find(|(_, r)| {
            r["event"] == "request" && r["node"] == "replica-2" && r["decision"] == "deny"
        })
        .expect("the replica's refusal is on record");
    assert!(refused.0 > end.0);
    drop(replica);
}

// ---- 6: the officers are told ----

/// A declaration reaches the officers at once by webhook (signed) and by mail (STARTTLS) with
/// its id, who, which patient, why and for how long, and nothing of the record; a refused
/// attempt sends nothing.
#[test]
fn the_officers_are_told_by_webhook_and_mail() {
    use notify_rig::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for db in BOTH {
        let rig = Rig::new();
        let hook = rt.block_on(WebhookReceiver::start(
            any_addr(),
            &rig.pki,
            &rig.secret,
            Duration::ZERO,
        ));
        let login = Some((SMTP_USER.to_string(), SMTP_PASSWORD.to_string()));
        let relay = rt.block_on(SmtpReceiver::start(
            any_addr(),
            &rig.pki,
            Policy {
                starttls: true,
                login,
            },
        ));
        let notify = rig.toml(
            Some(hook.addr),
            Some(Relay {
                addr: relay.addr,
                starttls: true,
            }),
        );
        let desk = Desk::start(
            db,
            Setup {
                extra: notify,
                ..Default::default()
            },
        );
        let doctor = &pki().hpki.doctor;
        // Refused: nothing to tell.
        desk.key_sign_in("t2", &pki().hpki.pharmacist);
        let (s, _) = desk.begin("t2", "unconscious", Some(PATIENT));
        assert_eq!(s, 403);
        let (s, v) = desk.key_sign_in("t1", doctor);
        assert_eq!(s, 200, "{v}");
        let id = desk.key_declare("t1", doctor, PATIENT, "unconscious");
        rt.block_on(wait_for("the webhook and the mail", 20, || {
            !hook.received().is_empty() && !relay.mails().is_empty()
        }));

        let got: &Received = &hook.received()[0];
        assert!(got.verified, "{db:?}: {got:?}");
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body["kind"], "break_glass_declared");
        assert_eq!(
            body["subject_en"],
            format!("Emergency access declared: {id}")
        );
        assert_eq!(body["subject_ja"], format!("緊急時アクセスの宣言 {id}"));
        let data = &body["data"];
        for (k, want) in [
            ("declaration", json!(id)),
            ("user", json!(DOCTOR)),
            ("facility", json!("f1")),
            ("patient", json!(PATIENT)),
            ("category", json!("unconscious")),
            ("terminal", json!("t1")),
            ("hours", json!(4)),
            ("awaiting_approval", json!(false)),
            ("outside_care_team", json!(true)),
        ] {
            assert_eq!(data[k], want, "{db:?}: data.{k} in {body}");
        }
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("sekisho breakglass show --id {id}")),
            "{text}"
        );
        assert!(
            !got.body
                .windows("山田".len())
                .any(|w| w == "山田".as_bytes()),
            "the patient's name is not sent"
        );

        let mail = &relay.mails()[0];
        assert!(mail.tls && mail.user.as_deref() == Some(SMTP_USER));
        assert_eq!(mail.rcpt, ["security@example.jp", "officer@example.jp"]);
        let read = ReadMail::new(&mail.data);
        assert_eq!(
            read.subject(),
            format!("[Sekisho] 緊急時アクセスの宣言 {id} / Emergency access declared: {id}")
        );
        assert!(
            read.text.starts_with(&format!(
                "医師 {DOCTOR}（f1）が患者 {PATIENT} について緊急時アクセスを宣言しました。"
            )),
            "{}",
            read.text
        );
        // One notice, two deliveries, both delivered (the refused attempt queued nothing).
        let delivered = until(
            5,
            || {
                desk.g.sql_rows(
                    "SELECT channel FROM notify_deliveries WHERE delivered_at IS NOT NULL ORDER BY channel",
                )
            },
            |r| r.len() == 2,
        );
        assert_eq!(delivered.len(), 2, "{db:?}: {delivered:?}");
        assert_eq!(
            desk.g.sql_rows("SELECT COUNT(*) FROM notify_deliveries")[0][0],
            "2"
        );
        assert_eq!((hook.received().len(), relay.mails().len()), (1, 1));
    }
}

// ---- 7: the follow-up ----

/// For a category that asks for the patient's permission afterwards, a declaration without it
/// past `follow_up_hours` is flagged (the officers' list and `/metrics`); the physician records
/// the patient's signature and the flag clears. Evidence is kept under its hash, on record.
#[test]
fn a_missing_follow_up_is_flagged_and_clears_once_recorded() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                replace: vec![("follow_up_hours = 72", "follow_up_hours = 0")],
                patients: vec![("P-0002", "山田 太郎", "ヤマダ タロウ")],
                ..Default::default()
            },
        );
        let g = &desk.g;
        let doctor = &pki().hpki.doctor;
        let (s, v) = desk.key_sign_in("t1", doctor);
        assert_eq!(s, 200, "{v}");
        let id = desk.key_declare("t1", doctor, PATIENT, "unconscious");
        let other = desk.key_declare("t1", doctor, "P-0002", "disaster");
        let line = |out: &str, id: &str| {
            out.lines()
                .find(|l| l.starts_with(id))
                .unwrap_or_else(|| panic!("{id} is not listed: {out}"))
                .to_string()
        };
        // follow_up_hours = 0: overdue from the first second after the declaration.
        let listed = until(
            3,
            || desk.breakglass(&["list"]).1,
            |o| line(o, &id).ends_with("OVERDUE"),
        );
        assert!(line(&listed, &id).ends_with(" OVERDUE"), "{db:?}: {listed}");
        assert!(line(&listed, &other).ends_with(" not required"), "{listed}");
        let (_, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(shown.contains("follow-up     OVERDUE"), "{shown}");
        let gauge = |n: u32| format!("sekisho_break_glass{{state=\"follow_up_overdue\"}} {n}");
        let metrics = until(
            12,
            || g.mgmt_get("/metrics").unwrap().1,
            |m| m.contains(&gauge(1)),
        );
        assert!(metrics.contains(&gauge(1)), "{db:?}: {metrics}");

        let path = format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/follow-up");
        let evidence = |data: &[u8]| json!({"kind": "signature", "content_type": "image/png", "data": B64.encode(data)});
        // Evidence must be what it says it is.
        let (s, v) = desk.call("t1", "POST", &path, Some(evidence(b"GIF89a not a png")));
        assert_eq!((s, error_code(&v)), (400, "bad_request"), "{v}");
        // And only the declaring physician records it.
        let (s, _) = desk.key_sign_in("t2", &pki().doctor2);
        assert_eq!(s, 200);
        let (s, v) = desk.call("t2", "POST", &path, Some(evidence(PNG)));
        assert_eq!(
            (s, error_code(&v)),
            (404, "break_glass_declaration_not_found")
        );
        assert_eq!(desk.row(&id, "follow_up_at")[0], "NULL");

        let (s, v) = desk.call("t1", "POST", &path, Some(evidence(PNG)));
        assert_eq!(s, 200, "{db:?}: {v}");
        let sha = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, PNG));
        assert_eq!(
            v,
            json!({"id": id, "follow_up": "signature", "sha256": sha})
        );
        let kept = g
            .data
            .join("break-glass")
            .join(&id)
            .join(format!("{sha}.png"));
        assert_eq!(std::fs::read(&kept).unwrap(), PNG);
        assert_eq!(
            desk.row(&id, "follow_up_kind, follow_up_sha256"),
            ["signature", sha.as_str()]
        );
        let rec = g.wait_audit(|r| is_bg(r, "break_glass_follow_up"));
        assert_eq!(rec["break_glass_id"], id.as_str());
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(rec["patient"], PATIENT);
        assert_eq!(rec["detail"], format!("signature image/png sha256 {sha}"));

        let (_, listed) = desk.breakglass(&["list"]);
        assert!(
            line(&listed, &id).ends_with(" recorded (signature)"),
            "{listed}"
        );
        let (_, shown) = desk.breakglass(&["show", "--id", &id]);
        assert!(
            shown.contains("follow-up     recorded (signature)"),
            "{shown}"
        );
        let metrics = until(
            12,
            || g.mgmt_get("/metrics").unwrap().1,
            |m| m.contains(&gauge(0)),
        );
        assert!(metrics.contains(&gauge(0)), "{db:?}: {metrics}");
    }
}

/// A 1×1 PNG, as the page's signature pad sends it.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0xf8, 0xcf, 0x50,
    0x0f, 0x00, 0x03, 0x86, 0x01, 0x80, 0x5a, 0x34, 0x7d, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

// ---- 8: the search by name ----

/// Finding the patient by name exists only under this session's declaration in progress: it
/// is refused without one (and the attempt is on record with its words), returns at most
/// `search_limit` patients, is on record with what it found, and closes once the card signed.
#[test]
fn the_search_by_name_needs_a_declaration_in_progress_and_is_on_record() {
    for db in BOTH {
        let desk = Desk::start(
            db,
            Setup {
                replace: vec![("search_limit = 10", "search_limit = 2")],
                patients: vec![
                    ("P-0002", "山田 太郎", "ヤマダ タロウ"),
                    ("P-0003", "山田 一郎", "ヤマダ イチロウ"),
                    ("P-0004", "佐藤 花子", "サトウ ハナコ"),
                ],
                ..Default::default()
            },
        );
        let g = &desk.g;
        let search = |term: &str, declaration: &str, q: &str| {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            desk.call(
                term,
                "GET",
                &format!(
                    "{EMERGENCY_SEARCH_PATH}?declaration={}&q={}",
                    enc(declaration),
                    enc(q)
                ),
                None,
            )
        };
        let card = insert(&pki().hpki.doctor);
        assert_eq!(desk.card_sign_in(), DOCTOR);
        // No declaration in progress: no search.
        for declaration in ["", "bg-00000000000000000000"] {
            let (s, v) = search("t1", declaration, "山田");
            assert_eq!(
                (s, error_code(&v)),
                (403, "break_glass_search_not_allowed"),
                "{db:?}: {v}"
            );
        }
        let rec = g.wait_audit(|r| is_bg(r, "break_glass_search_not_allowed"));
        assert_eq!(rec["user"], DOCTOR);
        assert_eq!(
            rec["detail"],
            format!("search \"{}\"", escaped("山田")),
            "{db:?}"
        );
        // A nurse cannot search at all.
        let dir = tempfile::tempdir().unwrap();
        let jar = sign_in(g, "t2", "nurse00000001", "nurse", dir.path());
        let (s, v) = with_jar(
            g,
            "t2",
            &jar,
            "GET",
            &format!("{EMERGENCY_SEARCH_PATH}?declaration=&q=%E5%B1%B1%E7%94%B0"),
            &Value::Null,
        );
        assert_eq!((s, error_code(&v)), (403, "break_glass_not_permitted"));

        // Declaring without the patient's id: begun, then found by name.
        let (s, state) = desk.begin("t1", "unconscious", None);
        assert_eq!(
            (s, state["status"].as_str()),
            (201, Some("choose_patient")),
            "{state}"
        );
        let id = state["id"].as_str().unwrap().to_string();
        let (s, found) = search("t1", &id, "ヤマダ　ハナコ");
        assert_eq!(s, 200, "{found}");
        assert_eq!(
            found,
            json!([{"patient": PATIENT, "name": "山田 花子", "kana": "ヤマダ ハナコ", "birth_date": null, "sex": null}])
        );
        let (s, found) = search("t1", &id, "山田");
        assert_eq!(s, 200);
        let ids: Vec<&str> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["patient"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["P-0001", "P-0002"], "{db:?}: at most search_limit");
        let searches: Vec<String> = g
            .audit_records()
            .into_iter()
            .filter(|r| is_bg(r, "break_glass_search") && r["break_glass_id"] == id.as_str())
            .map(|r| r["detail"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(searches.len(), 2, "{db:?}: {searches:?}");
        assert_eq!(
            searches,
            [
                format!("search \"{}\"; 1 found: P-0001", escaped("ヤマダ　ハナコ")),
                format!("search \"{}\"; 2 found: P-0001,P-0002", escaped("山田")),
            ],
            "{db:?}"
        );
        // Another physician's session cannot search under this declaration.
        let (s, _) = desk.key_sign_in("t2", &pki().doctor2);
        assert_eq!(s, 200);
        let (s, v) = search("t2", &id, "山田");
        assert_eq!((s, error_code(&v)), (403, "break_glass_search_not_allowed"));

        // The patient chosen, the card signs what the page prepared (`emergency --pending`).
        let (s, v) = desk.call(
            "t1",
            "POST",
            &format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/patient"),
            Some(json!({"patient": PATIENT})),
        );
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("awaiting_signature")),
            "{v}"
        );
        let confirm: Arc<dyn Confirm> = Arc::new(|_: &Declaration| true);
        let signed = desk
            .rt
            .block_on(agent::emergency_sign_pending(
                &desk.agent_config(),
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
        assert_eq!(outcome.declaration.patient, PATIENT);

        // Declared: the search is closed again; the record opens under the grant.
        let (s, v) = search("t1", &id, "山田");
        assert_eq!((s, error_code(&v)), (403, "break_glass_search_not_allowed"));
        let (s, v) = desk.call("t1", "GET", RECORD, None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["assertion_claims"]["break_glass"]["id"], id.as_str());
    }
}
