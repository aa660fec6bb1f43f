//! A real browser for the tests: Debian's Chromium (headless) driven by chromedriver through the
//! W3C WebDriver protocol, with a small blocking client over hyper. The browser presents a
//! terminal's certificate: the terminal's `.p12` is imported into an NSS database in a HOME of
//! its own, Sekisho's CA is trusted there for servers, and a managed policy
//! (`AutoSelectCertificateForUrls`) picks the certificate for the gateway's origin without
//! asking. [`Browser`] is the guard: dropped (on failure too), it ends the session, kills
//! chromedriver and the browser, and removes the policy file.
//!
//! Needs chromium, chromium-driver, libnss3-tools (certutil, pk12util) and, for Japanese
//! text, fonts-noto-cjk (tests/run.sh installs them); writes under
//! `/etc/chromium/policies/managed`, so runs as root (as CI does). Fails, never skips.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where Debian's Chromium reads mandatory policies.
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What the browser presents and trusts.
pub struct BrowserSetup<'a> {
    /// `https://HOST:PORT`: where the certificate is chosen without asking.
    pub origin: &'a str,
    /// The terminal's PKCS#12 file and its password.
    pub p12: &'a Path,
    pub p12_password: &'a str,
    /// Sekisho's CA (PEM): trusted for the gateway's server certificate.
    pub ca: &'a Path,
}

pub struct Browser {
    home: tempfile::TempDir,
    policy: PathBuf,
    driver: Option<Child>,
    port: u16,
    session: Option<String>,
    rt: tokio::runtime::Runtime,
}

fn tool(program: &str, args: &[&str], home: &Path) {
    let out = Command::new(program)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install libnss3-tools: tests/run.sh)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `program`'s path on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

impl Browser {
    /// A fresh HOME with the NSS database, the policy for `origin`, chromedriver, and a new
    /// headless session.
    pub fn start(s: &BrowserSetup<'_>) -> Browser {
        let home = tempfile::tempdir().unwrap();
        let nssdb = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        tool(
            "certutil",
            &["-N", "-d", &db, "--empty-password"],
            home.path(),
        );
        tool(
            "pk12util",
            &[
                "-i",
                s.p12.to_str().unwrap(),
                "-d",
                &db,
                "-W",
                s.p12_password,
            ],
            home.path(),
        );
        tool(
            "certutil",
            &[
                "-A",
                "-d",
                &db,
                "-t",
                "C,,",
                "-n",
                "sekisho-ca",
                "-i",
                s.ca.to_str().unwrap(),
            ],
            home.path(),
        );
        // One file per test process: Chromium reads every file in the folder at start.
        std::fs::create_dir_all(POLICY_DIR)
            .unwrap_or_else(|e| panic!("{POLICY_DIR}: {e} (the browser tests run as root)"));
        let policy =
            Path::new(POLICY_DIR).join(format!("sekisho-test-{}.json", std::process::id()));
        let rule = json!({"pattern": s.origin, "filter": {}}).to_string();
        std::fs::write(
            &policy,
            json!({ "AutoSelectCertificateForUrls": [rule] }).to_string(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut b = Browser {
            home,
            policy,
            driver: None,
            port: super::free_port(),
            session: None,
            rt,
        };
        let log = b.home.path().join("chromedriver.log");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={}", b.port))
            .arg(format!("--log-path={}", log.display()))
            .env("HOME", b.home.path())
            // Its profile and the browser's temporary files go with the HOME.
            .env("TMPDIR", b.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the browser it starts goes with it.
            .process_group(0)
            .spawn()
            .expect("chromedriver is installed (chromium-driver: tests/run.sh)");
        b.driver = Some(driver);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((200, v)) = b.try_call("GET", "/status", None)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                     "--lang=ja", "--no-first-run", "--disable-dev-shm-usage"],
        });
        if let Some(bin) = on_path("chromium") {
            options["binary"] = bin.to_str().unwrap().into();
        }
        let v = b.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": false,
                "unhandledPromptBehavior": "dismiss",
                "timeouts": {"pageLoad": 20_000, "script": 10_000, "implicit": 0},
                "goog:chromeOptions": options,
            }}})),
        );
        b.session = Some(
            v["value"]["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session: {v}"))
                .to_string(),
        );
        b
    }

    /// The HOME the browser runs in (a place for artifacts too).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        use http_body_util::BodyExt;
        let port = self.port;
        let fut = async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", format!("127.0.0.1:{port}"))
                .header("content-type", "application/json; charset=utf-8")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        };
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(40), fut)
                .await
                .map_err(|_| format!("WebDriver {method} {path}: no answer in 40 s"))?
        })
    }

    /// A WebDriver command; its `value`, or a panic with WebDriver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self
            .try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let s = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{s}{path}"), body)["value"].take()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's visible text (`document.body.innerText`).
    pub fn text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// The HTTP status of the document shown (Navigation Timing's `responseStatus`).
    pub fn status(&self) -> u16 {
        self.execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0) as u16
    }

    /// Elements matching `css`, as WebDriver references.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("not an element: {e}"))
                .to_string()
        })
        .collect()
    }

    /// The one element matching `css`, waited for up to `secs` (pages load after a click).
    pub fn wait_for(&self, css: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self.find_all(css);
            if let Some(e) = found.first() {
                assert_eq!(found.len(), 1, "{css} matches {} elements", found.len());
                return e.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {css} within {secs} s on {}:\n{}",
                self.url(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub fn wait_text(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on {} within {secs} s:\n{t}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, css: &str) -> String {
        self.wait_for(css, 5)
    }

    pub fn click(&self, element: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    pub fn send_keys(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn element_text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An element's property (e.g. `value`, `checked`).
    pub fn property(&self, element: &str, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{element}/property/{name}"), None)
    }

    /// Runs `script` (a function body) with `args`; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// An element reference as a script argument.
    pub fn arg(element: &str) -> Value {
        json!({ ELEMENT: element })
    }

    /// W3C actions (`{"actions": [...]}`), then all input released.
    pub fn actions(&self, actions: Value) {
        self.cmd("POST", "/actions", Some(json!({ "actions": actions })));
        self.cmd("DELETE", "/actions", None);
    }

    /// Drags the mouse through `points`, offsets from `element`'s centre, button held.
    pub fn draw(&self, element: &str, points: &[(i64, i64)]) {
        let mut steps = Vec::new();
        for (i, (x, y)) in points.iter().enumerate() {
            steps.push(
                json!({"type": "pointerMove", "duration": if i == 0 { 0 } else { 40 },
                "origin": Self::arg(element), "x": x, "y": y}),
            );
            if i == 0 {
                steps.push(json!({"type": "pointerDown", "button": 0}));
            }
        }
        steps.push(json!({"type": "pointerUp", "button": 0}));
        self.actions(json!([{"type": "pointer", "id": "pen",
            "parameters": {"pointerType": "mouse"}, "actions": steps}]));
    }

    /// A screenshot of the viewport (PNG).
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = self.try_call("DELETE", &format!("/session/{s}"), None);
        }
        if let Some(mut c) = self.driver.take() {
            // The whole group: chromedriver and any browser it left.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.policy);
    }
}
