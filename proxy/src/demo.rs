//! `sekisho demo`: the whole path on loopback with the embedded defaults — a data dir, a small
//! demo patient-record portal as the upstream, a demo terminal certificate and .p12 — and the
//! exact commands to try it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use sekisho_policies::{Action, Level, RouteConfig};
use tokio::net::TcpListener;

use crate::body::{Body, full};
use crate::config::{Config, DataDir};
use crate::init::{self, InitOptions};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Kept between runs, so a certificate installed in a browser keeps working.
    #[arg(long, default_value = "sekisho-demo")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub enroll_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub mgmt_listen: SocketAddr,
}

const FACILITY: &str = "demo-clinic";
const TERMINAL: &str = "reception-pc";
const P12_PASSWORD: &str = "sekisho-demo";
const DEMO_USER: &str = "demonurse01";
const DEMO_OFFICER: &str = "demoofficer1";

/// The name the demo's own set-up is recorded under (`--operator`).
const DEMO_OPERATOR: &str = "sekisho-demo";

pub async fn run(a: DemoArgs) -> Result<()> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = upstream.local_addr()?;
    tokio::spawn(upstream::serve(upstream));
    let upstream_url = format!("http://{up_addr}");
    let dd = DataDir::new(&a.data_dir);
    let term_dir = a.data_dir.join("demo-terminal");
    if !dd.config().exists() {
        println!("Creating the demo data dir {} …", a.data_dir.display());
        init::init(&InitOptions {
            data_dir: a.data_dir.clone(),
            upstream: upstream_url.clone(),
            listen: a.listen,
            mgmt_listen: a.mgmt_listen,
            enroll_listen: a.enroll_listen,
            hostname: "localhost".into(),
            network_name: "Sekisho Demo Network".into(),
            store_url: None,
            ca_key: sekisho_ca::KeyAlgorithm::EcdsaP256,
            extra_ips: vec![],
        })
        .await?;
        add_debug_route(&dd)?;
        let exe = std::env::current_exe()?;
        // The demo's own changes are on record as the demo's.
        let status = std::process::Command::new(exe)
            .args([
                "--operator",
                DEMO_OPERATOR,
                "terminal",
                "add",
                "--facility",
                FACILITY,
                "--terminal",
                TERMINAL,
                "--p12-password",
                P12_PASSWORD,
            ])
            .arg("--data-dir")
            .arg(&a.data_dir)
            .arg("--out")
            .arg(&term_dir)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "could not create the demo terminal");
        // A member of staff who signs in with ID and password, and a security officer who
        // is also the secretariat (the console).
        add_person(&a.data_dir, &term_dir, DEMO_USER, "デモ 看護師", "nurse")?;
        add_person(
            &a.data_dir,
            &term_dir,
            DEMO_OFFICER,
            "デモ 管理者",
            "security-officer,secretariat",
        )?;
    }
    // The demo upstream gets a new port each run.
    let mut cfg = Config::load(&a.data_dir)?;
    cfg.upstream.url = upstream_url;
    cfg.listen.gateway = a.listen;
    cfg.listen.enroll = a.enroll_listen;
    cfg.listen.management = a.mgmt_listen;
    write_config(&dd, &cfg)?;

    let running = crate::serve::start(&a.data_dir).await?;
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let (crt, key, p12, ca) = (
        abs(term_dir.join(format!("{TERMINAL}.crt"))),
        abs(term_dir.join(format!("{TERMINAL}.key"))),
        abs(term_dir.join(format!("{TERMINAL}.p12"))),
        abs(term_dir.join("ca.crt")),
    );
    let port = running.gateway.port();
    println!();
    println!("Sekisho demo is running. Press Ctrl-C to stop.");
    println!();
    println!("  As the registered terminal {TERMINAL} of {FACILITY}:");
    println!(
        "    curl --cacert {} --cert {} --key {} https://localhost:{port}/",
        ca.display(),
        crt.display(),
        key.display()
    );
    println!("  What the upstream received (the signed assertion, no spoofed headers):");
    println!(
        "    curl --cacert {} --cert {} --key {} -H 'X-Forwarded-For: 6.6.6.6' https://localhost:{port}/debug/headers",
        ca.display(),
        crt.display(),
        key.display()
    );
    println!("  Without a certificate (refused, with a page saying why):");
    println!(
        "    curl --cacert {} https://localhost:{port}/",
        ca.display()
    );
    println!();
    println!(
        "  In a browser: import {} (password: {P12_PASSWORD}) and trust {} as a CA,",
        p12.display(),
        ca.display()
    );
    println!("  then open https://localhost:{port}/");
    let initial = std::fs::read_to_string(term_dir.join(format!("{DEMO_USER}.initial-password")))
        .unwrap_or_default();
    println!(
        "  Staff sign-in (ID and password) in that browser: https://localhost:{port}/.sekisho/login"
    );
    println!(
        "    ID {DEMO_USER}, first password {} (you choose a new one at the first sign-in),",
        initial.trim()
    );
    println!("    then https://localhost:{port}/debug/whoami shows the request attributed to you.");
    let officer =
        std::fs::read_to_string(term_dir.join(format!("{DEMO_OFFICER}.initial-password")))
            .unwrap_or_default();
    println!(
        "  The officers' console: https://localhost:{port}/.sekisho/console/ (it offers to sign out whoever else is signed in)"
    );
    println!(
        "    ID {DEMO_OFFICER}, first password {} (security officer and secretariat)",
        officer.trim()
    );
    println!();
    println!(
        "  Enrollment page: https://localhost:{}/   (make a code: sekisho --operator YOU terminal enroll-code --data-dir {} --facility {FACILITY} --terminal pc-2)",
        running.enroll.port(),
        a.data_dir.display()
    );
    println!(
        "  Metrics and health: http://{}/metrics  http://{}/readyz",
        running.management, running.management
    );
    println!(
        "  Audit check: sekisho audit verify --data-dir {}",
        a.data_dir.display()
    );
    crate::serve::shutdown_signal().await;
    running.stop(Duration::from_secs(5)).await;
    Ok(())
}

fn add_debug_route(dd: &DataDir) -> Result<()> {
    let mut cfg = Config::load(&dd.root)?;
    cfg.routes.insert(
        0,
        RouteConfig {
            name: Some("demo-whoami".into()),
            methods: vec!["GET".into()],
            path: "/debug/whoami".into(),
            level: Level::User,
            action: Action::View,
            websocket: false,
            patient: None,
            entry: None,
            admin: None,
            strict_audit: false,
        },
    );
    cfg.routes.insert(
        0,
        RouteConfig {
            name: Some("demo-debug-headers".into()),
            methods: vec!["GET".into()],
            path: "/debug/headers".into(),
            level: Level::Terminal,
            action: Action::View,
            websocket: false,
            patient: None,
            entry: None,
            admin: None,
            strict_audit: false,
        },
    );
    write_config(dd, &cfg)
}

fn write_config(dd: &DataDir, cfg: &Config) -> Result<()> {
    cfg.validate()?;
    let text = format!(
        "# Sekisho demo configuration.\n{}",
        toml::to_string_pretty(cfg)?
    );
    let tmp = dd.config().with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dd.config()).context("cannot write the demo configuration")
}

/// The demo upstream: a tiny patient-record portal. Tests use it too, as a real upstream that
/// shows at `/debug/headers` exactly what it received.
pub mod upstream {
    use super::*;

    pub async fn serve(listener: TcpListener) {
        serve_counting(listener, Default::default()).await
    }

    /// As `serve`, counting the requests that reach it (tests check that refused requests
    /// never do).
    pub async fn serve_counting(
        listener: TcpListener,
        hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(handle(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    }

    async fn handle(mut req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match path.as_str() {
            // Counts and hashes what it received: shows a streamed body arrived whole.
            "/upload" => {
                use http_body_util::BodyExt;
                let mut body = req.into_body();
                let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                let mut n = 0u64;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        return with_type(full("{\"error\":\"body aborted\"}"), "application/json");
                    };
                    if let Some(d) = frame.data_ref() {
                        n += d.len() as u64;
                        ctx.update(d);
                    }
                }
                let v = serde_json::json!({"bytes": n, "sha256": hex::encode(ctx.finish())});
                with_type(full(v.to_string()), "application/json")
            }
            // A WebSocket endpoint that echoes whatever bytes arrive after the handshake.
            "/ws/echo" => {
                let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                    let mut r = page("<p>WebSocket only</p>");
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    return r;
                };
                let mut accept = key.as_bytes().to_vec();
                accept.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
                let accept =
                    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                        &accept,
                    ));
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on_upgrade.await {
                        let io = hyper_util::rt::TokioIo::new(up);
                        let (mut r, mut w) = tokio::io::split(io);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                });
                let mut r = Response::new(crate::body::empty());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = r.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Ok(v) = HeaderValue::from_str(&accept) {
                    h.insert("sec-websocket-accept", v);
                }
                r
            }
            "/" => page(PORTAL),
            "/static/style.css" => with_type(full(STYLE), "text/css"),
            p if p.starts_with("/debug/") => {
                let mut headers = BTreeMap::new();
                for (k, v) in req.headers() {
                    headers
                        .entry(k.as_str().to_string())
                        .or_insert_with(Vec::new)
                        .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                }
                let claims = assertion_claims(&req);
                let body = serde_json::json!({
                    "method": req.method().as_str(), "path": path, "query": req.uri().query(),
                    "headers": headers, "assertion_claims": claims,
                });
                with_type(
                    full(serde_json::to_string_pretty(&body).unwrap_or_default()),
                    "application/json",
                )
            }
            p if p.starts_with("/api/patients/") => {
                let id = p
                    .trim_start_matches("/api/patients/")
                    .split('/')
                    .next()
                    .unwrap_or("");
                // What the application learns from the gateway: who, why, and for entries which
                // one (the demo shows it; a real application verifies the JWT with the JWKS).
                let claims = assertion_claims(&req);
                with_type(
                    full(
                        serde_json::json!({
                            "patient": id, "summary": "demo record", "assertion_claims": claims,
                        })
                        .to_string(),
                    ),
                    "application/json",
                )
            }
            _ => {
                let mut r = page("<h1>Not found</h1>");
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        }
    }

    fn with_type(b: Body, ctype: &'static str) -> Response<Body> {
        let mut r = Response::new(b);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r
    }

    fn page(html: &'static str) -> Response<Body> {
        with_type(full(html), "text/html; charset=utf-8")
    }

    const STYLE: &str = "body{font-family:system-ui,'Noto Sans JP',sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.7}\
        header{border-bottom:3px solid #2e6db0;margin-bottom:1rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem}";

    /// The assertion's claims, decoded but NOT verified: for display in the demo only.
    fn assertion_claims<B>(req: &Request<B>) -> Option<serde_json::Value> {
        req.headers()
            .get("sekisho-assertion")
            .and_then(|v| v.to_str().ok())
            .and_then(|jwt| jwt.split('.').nth(1))
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    }

    const PORTAL: &str = r#"<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>デモ地域連携ポータル / Demo regional portal</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><header><h1>デモ地域医療連携ポータル</h1><p>Demo regional medical network portal (behind Sekisho)</p></header>
<p>この画面は登録済み端末からのみ表示されます。 / Only registered terminals see this page.</p>
<table><tr><th>患者 / Patient</th><th></th></tr>
<tr><td>P-0001 山田 花子</td><td><a href="/api/patients/P-0001/summary">記録 / Record</a></td></tr>
<tr><td>P-0002 佐藤 一郎</td><td><a href="/api/patients/P-0002/summary">記録 / Record</a></td></tr></table>
<p>患者の記録を開くにはサインインが必要です（次の段階で提供）。 / Patient records need a signed-in person (next stage).</p>
<p><a href="/debug/headers">/debug/headers</a>: what this upstream received.</p>
</body></html>
"#;
}

/// Registers a demo person with a password (`sekisho user add`) and keeps their first password
/// beside the demo terminal's files (0600) for the instructions.
fn add_person(
    data_dir: &std::path::Path,
    term_dir: &std::path::Path,
    id: &str,
    name: &str,
    roles: &str,
) -> Result<()> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--operator",
            DEMO_OPERATOR,
            "user",
            "add",
            "--id",
            id,
            "--name",
            name,
            "--facility",
            FACILITY,
            "--roles",
            roles,
            "--password-profile",
            "jp-mhlw-qa-b",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "could not create the demo user {id}");
    let text = String::from_utf8_lossy(&out.stdout);
    let temp = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Temporary password for {id}: ")))
        .context("no temporary password printed")?;
    sekisho_ca::write_private_file(
        &term_dir.join(format!("{id}.initial-password")),
        temp.trim().as_bytes(),
    )?;
    Ok(())
}
