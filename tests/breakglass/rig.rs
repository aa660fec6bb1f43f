//! What every break-glass test shares: the PKI and the card, the gateway set-up, the desk
//! client, and the readers of the audit log.

#![allow(unused_imports)]

pub(crate) use std::sync::{Arc, Mutex, OnceLock};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use super::common::*;
pub(crate) use base64::Engine;
pub(crate) use base64::engine::general_purpose::STANDARD as B64;
pub(crate) use sekisho_agent::{
    self as agent, AgentConfig, AgentError, Confirm, Declaration, DeclarationRequest,
    EmergencyOutcome, FixedPin,
};
pub(crate) use sekisho_ca::hpki::{EeSpec, TestCert, TestHpki};
pub(crate) use sekisho_cardreader::vcard::{AppFiles, CardEngine, Quirks, VirtualCard};
pub(crate) use sekisho_protocol::wire::{
    EMERGENCY_DECLARATIONS_PATH, EMERGENCY_SEARCH_PATH, HPKI_CHALLENGE_PATH, HPKI_LOGIN_PATH,
};
pub(crate) use serde_json::{Value, json};

pub(crate) const READER: &str = "Virtual PCD 00 01";
pub(crate) const PORT: u16 = 35964;
pub(crate) const PIN: &str = "4321";

pub(crate) const DOCTOR: &str = "doctor0000001";
pub(crate) const DOCTOR2: &str = "doctor0000002";
pub(crate) const PHARMACIST: &str = "pharmacist0001";
pub(crate) const OFFICER: &str = "officer0000001";
pub(crate) const SECRETARIAT: &str = "secretariat001";

/// Registered without consent and outside every care team: the ordinary rules refuse.
pub(crate) const PATIENT: &str = "P-0001";
pub(crate) const RECORD: &str = "/api/patients/P-0001/summary";
/// A patient route whose upstream answer shows the request's headers (the raw assertion).
pub(crate) const DEBUG_RECORD: &str = "/debug/patients/P-0001";
pub(crate) const JUSTIFICATION: &str =
    "救急搬送、意識障害。Unconscious on arrival; no relative reachable.";

pub(crate) const HPKI_TOML: &str = r#"
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

pub(crate) struct Pki {
    pub(crate) hpki: TestHpki,
    /// A second physician's card.
    pub(crate) doctor2: TestCert,
}

pub(crate) fn pki() -> &'static Pki {
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
pub(crate) fn crl_revoking(revoked: &[&TestCert]) -> String {
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

pub(crate) struct Setup {
    /// Text replacements in sekisho.toml (e.g. `follow_up_hours = 0`).
    pub(crate) replace: Vec<(&'static str, &'static str)>,
    /// More TOML (e.g. `[notify]`).
    pub(crate) extra: String,
    /// The declaring physician's roles.
    pub(crate) doctor_roles: &'static str,
    /// More patients, (id, name, kana), besides P-0001 山田 花子.
    pub(crate) patients: Vec<(&'static str, &'static str, &'static str)>,
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

pub(crate) struct Desk {
    pub(crate) g: Gateway,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Desk {
    pub(crate) fn start(db: Db, setup: Setup) -> Desk {
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

    pub(crate) fn agent_config(&self) -> AgentConfig {
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
    pub(crate) fn call(
        &self,
        term: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_on(&self.rt, &self.g, term, method, path, body)
    }

    /// The physician signs in on t1 with the card in the reader, through the agent.
    pub(crate) fn card_sign_in(&self) -> String {
        let info = self
            .rt
            .block_on(agent::login(&self.agent_config(), PIN))
            .expect("sign-in with the card");
        info.user
    }

    /// The agent declares for `patient` with the card (as `sekisho-agent emergency --patient`).
    pub(crate) fn card_declare(
        &self,
        patient: &str,
        category: &str,
    ) -> Result<EmergencyOutcome, AgentError> {
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
    pub(crate) fn key_sign_in(&self, term: &str, cert: &TestCert) -> (u16, Value) {
        let (s, challenge) = self.call(term, "POST", HPKI_CHALLENGE_PATH, None);
        assert_eq!(s, 200, "{challenge}");
        let answer = answer(&challenge, cert);
        self.call(term, "POST", HPKI_LOGIN_PATH, Some(answer))
    }

    /// Begins a declaration on `term` (with its patient when given).
    pub(crate) fn begin(&self, term: &str, category: &str, patient: Option<&str>) -> (u16, Value) {
        self.call(
            term,
            "POST",
            EMERGENCY_DECLARATIONS_PATH,
            Some(json!({"category": category, "justification": JUSTIFICATION, "patient": patient})),
        )
    }

    pub(crate) fn send_signature(&self, term: &str, id: &str, answer: &Value) -> (u16, Value) {
        self.call(
            term,
            "POST",
            &format!("{EMERGENCY_DECLARATIONS_PATH}/{id}/signature"),
            Some(answer.clone()),
        )
    }

    /// A declaration begun and signed with `cert`'s key on `term`: its id.
    pub(crate) fn key_declare(
        &self,
        term: &str,
        cert: &TestCert,
        patient: &str,
        category: &str,
    ) -> String {
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

    pub(crate) fn row(&self, id: &str, columns: &str) -> Vec<String> {
        let mut rows = self.g.sql_rows(&format!(
            "SELECT {columns} FROM break_glass WHERE id = '{id}'"
        ));
        assert_eq!(rows.len(), 1, "declaration {id}");
        rows.remove(0)
    }

    /// `sekisho breakglass …` as an officer would run it; (exit ok, stdout + stderr).
    pub(crate) fn breakglass(&self, args: &[&str]) -> (bool, String) {
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

pub(crate) fn call_on(
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
pub(crate) fn answer(state: &Value, cert: &TestCert) -> Value {
    let to_sign = B64.decode(state["to_sign"].as_str().unwrap()).unwrap();
    json!({
        "nonce": state["nonce"],
        "certificate": B64.encode(&cert.der),
        "signature": B64.encode(cert.sign(&to_sign).unwrap()),
    })
}

/// A request with a password session's cookie jar (curl); (status, JSON body).
pub(crate) fn with_jar(
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
pub(crate) fn insert(cert: &TestCert) -> InsertedCard {
    insert_card(cert, PORT, READER, PIN)
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

/// Polls `f` until `done`, for up to `secs`; returns the last answer.
pub(crate) fn until<T>(secs: u64, mut f: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
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
pub(crate) fn escaped(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            c => format!("\\u{{{:x}}}", c as u32),
        })
        .collect()
}

/// Records of the audit log in log order, with their position.
pub(crate) fn indexed(g: &Gateway) -> Vec<(usize, Value)> {
    g.audit_records().into_iter().enumerate().collect()
}

pub(crate) fn is_bg(r: &Value, reason: &str) -> bool {
    r["event"] == "break_glass" && r["reason"] == reason
}

// ---- 1, 2: declared, used, expired ----
