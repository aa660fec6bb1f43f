//! Sekisho set up through its CLI, the same way an operator would:
//! `sekisho init` (SQLite in the data dir, or `--store-url postgres://…`), `sekisho terminal
//! add`, `sekisho ca crl`, then `sekisho serve` until `/readyz` on the management listener
//! answers 200. Before `serve`, the benchmark raises limits in `sekisho.toml` so that 10,000
//! idle connections can be held open and its one terminal certificate can carry every load
//! connection at once (see [`Tuning`]); it says so in the report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::pki::{self, Pki};
use crate::process::{self, ChildGuard};

const CLI_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to find the `sekisho` binary when `--sekisho` is not given, in order:
/// next to this benchmark's own executable (same cargo profile dir), the workspace's
/// `target/release/sekisho` (computed from this crate's manifest dir), then `PATH`.
pub fn find_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !process::is_executable(&path) {
            bail!("--sekisho {}: not an executable file", path.display());
        }
        return Ok(path);
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        tried.push(dir.join("sekisho"));
    }
    if let Some(workspace) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        let release = workspace.join("target").join("release").join("sekisho");
        if !tried.contains(&release) {
            tried.push(release);
        }
    }
    if let Some(found) = tried.iter().find(|p| process::is_executable(p)) {
        return Ok(found.clone());
    }
    if let Some(found) = process::find_in_path("sekisho") {
        return Ok(found);
    }
    bail!(
        "sekisho binary not found (tried {} and PATH): build it with \
         `cargo build --release -p sekisho`, or pass --sekisho PATH \
         (or --self-test-nginx-only to measure nginx alone)",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `sekisho --version`.
pub fn version(binary: &Path) -> Result<String> {
    let mut cmd = Command::new(binary);
    cmd.arg("--version");
    let out = process::run("sekisho --version", cmd, Duration::from_secs(10))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Ports of the three listeners.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub gateway: SocketAddr,
    pub mgmt: SocketAddr,
    pub enroll: SocketAddr,
}

impl Listeners {
    pub fn pick() -> Result<Self> {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Self {
            gateway: addr(process::free_port()?),
            mgmt: addr(process::free_port()?),
            enroll: addr(process::free_port()?),
        })
    }
}

/// What the benchmark changes in `sekisho.toml` after `sekisho init`.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// `limits.max_connections` is raised to at least this.
    pub max_connections: usize,
    /// `limits.idle_timeout_secs` is raised to at least this, so that the idle connections stay
    /// open while the others are opened.
    pub idle_secs: u64,
    /// `limits.terminal_max_requests` and `terminal_max_upstream` are raised to at least this:
    /// every load connection presents the one terminal certificate `bench/t1`, standing for
    /// the many terminals of a network, so the per-terminal fan-out limits (64 upstream
    /// requests by default) would otherwise refuse the 128-connection round with 429.
    pub terminal_in_flight: usize,
    /// `[audit] journal`: false measures the store's transaction as the durability point (the
    /// way every version before the journal wrote), for the journal's before/after in one run.
    pub audit_journal: bool,
}

/// A data dir that `sekisho init` made, with terminal `bench/t1` enrolled and a CRL exported.
pub struct Prepared {
    pub pki: Pki,
    pub data_dir: PathBuf,
    pub listeners: Listeners,
    /// Said in the report when the benchmark had to add something (e.g. a root CRL for nginx).
    pub notes: Vec<String>,
}

pub fn prepare(
    binary: &Path,
    dir: &Path,
    upstream: SocketAddr,
    store_url: Option<&str>,
    tuning: Tuning,
) -> Result<Prepared> {
    let data_dir = dir.join("data");
    let out_dir = dir.join("terminal");
    std::fs::create_dir_all(&out_dir)?;
    let listeners = Listeners::pick()?;

    let mut init = Command::new(binary);
    init.arg("init")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .arg("--listen")
        .arg(listeners.gateway.to_string())
        .arg("--mgmt-listen")
        .arg(listeners.mgmt.to_string())
        .arg("--enroll-listen")
        .arg(listeners.enroll.to_string())
        .arg("--hostname")
        .arg(crate::load::SERVER_NAME);
    if let Some(url) = store_url {
        init.arg("--store-url").arg(url);
    }
    process::run("sekisho init", init, CLI_TIMEOUT)?;
    let mut notes = tune(&data_dir, tuning)?;

    let mut add = Command::new(binary);
    add.arg("--operator")
        .arg("bench")
        .arg("terminal")
        .arg("add")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--facility")
        .arg("bench")
        .arg("--terminal")
        .arg("t1")
        .arg("--out")
        .arg(&out_dir);
    process::run("sekisho terminal add", add, CLI_TIMEOUT)?;

    let mut crl_cmd = Command::new(binary);
    crl_cmd
        .arg("ca")
        .arg("crl")
        .arg("--data-dir")
        .arg(&data_dir);
    let crl_out = process::run("sekisho ca crl", crl_cmd, CLI_TIMEOUT)?;
    let mut crl = String::from_utf8(crl_out.stdout).context("sekisho ca crl: not UTF-8 PEM")?;

    let pki = Pki {
        server_cert: data_dir.join("tls").join("server.crt"),
        server_key: data_dir.join("tls").join("server.key"),
        issuing_ca: data_dir.join("ca").join("issuing.crt"),
        root_ca: data_dir.join("ca").join("root.crt"),
        client_cert: out_dir.join("t1.crt"),
        client_key: out_dir.join("t1.key"),
        client_trust: out_dir.join("ca.crt"),
        crl: dir.join("crl.pem"),
    };
    for path in [
        &pki.server_cert,
        &pki.server_key,
        &pki.issuing_ca,
        &pki.root_ca,
        &pki.client_cert,
        &pki.client_key,
        &pki.client_trust,
    ] {
        if !path.is_file() {
            bail!(
                "expected {} after `sekisho init` / `sekisho terminal add`",
                path.display()
            );
        }
    }

    // nginx (OpenSSL X509_V_FLAG_CRL_CHECK_ALL) wants a CRL for every CA in the client chain:
    // the issuing CA's (from `sekisho ca crl`) and the root's.
    match pki::count_crls(&crl) {
        0 => bail!("`sekisho ca crl` printed no PEM CRL:\n{crl}"),
        1 => {
            let root_key = data_dir.join("ca").join("root.key");
            if !root_key.is_file() {
                bail!(
                    "`sekisho ca crl` printed one CRL (the issuing CA's, presumably), but nginx's \
                     ssl_crl checks every level of the chain and needs the root's CRL too, and \
                     there is no {} to make one",
                    root_key.display()
                );
            }
            let root_pem = std::fs::read_to_string(&pki.root_ca)?;
            let key_pem = std::fs::read_to_string(&root_key)?;
            let root_crl = pki::empty_crl(&root_pem, &key_pem)
                .context("making an empty root CRL for nginx")?;
            if !crl.ends_with('\n') {
                crl.push('\n');
            }
            crl.push_str(&root_crl);
            notes.push(
                "`sekisho ca crl` gave only one CRL: the benchmark added an empty root CRL \
                 (signed with data/ca/root.key) so nginx can check the whole chain"
                    .to_owned(),
            );
        }
        _ => {}
    }
    std::fs::write(&pki.crl, crl)?;

    Ok(Prepared {
        pki,
        data_dir,
        listeners,
        notes,
    })
}

pub struct Sekisho {
    pub addr: SocketAddr,
    /// The management listener (`/metrics`).
    pub mgmt: SocketAddr,
    child: ChildGuard,
}

impl Sekisho {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// `sekisho serve --data-dir D` in the foreground, until `/readyz` answers 200.
pub fn serve(binary: &Path, prepared: &Prepared, log: &Path) -> Result<Sekisho> {
    let mut cmd = Command::new(binary);
    cmd.arg("serve").arg("--data-dir").arg(&prepared.data_dir);
    let mut child = ChildGuard::spawn("sekisho serve", cmd, log)?;
    process::wait_for_http_200(
        prepared.listeners.mgmt,
        "/readyz",
        &mut child,
        READY_TIMEOUT,
    )?;
    process::wait_for_tcp(prepared.listeners.gateway, &mut child, READY_TIMEOUT)?;
    Ok(Sekisho {
        addr: prepared.listeners.gateway,
        mgmt: prepared.listeners.mgmt,
        child,
    })
}

/// Applies [`Tuning`] to `sekisho.toml` in `data_dir`; returns what it changed, for the report.
fn tune(data_dir: &Path, tuning: Tuning) -> Result<Vec<String>> {
    let path = data_dir.join("sekisho.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let limits = doc
        .entry("limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("[limits] in sekisho.toml is not a table")?;
    let mut changed = Vec::new();
    let idle = i64::try_from(tuning.idle_secs)?;
    for (key, want) in [
        ("max_connections", i64::try_from(tuning.max_connections)?),
        ("idle_timeout_secs", idle),
        (
            "terminal_max_requests",
            i64::try_from(tuning.terminal_in_flight)?,
        ),
        (
            "terminal_max_upstream",
            i64::try_from(tuning.terminal_in_flight)?,
        ),
    ] {
        let now = limits.get(key).and_then(toml::Value::as_integer);
        if now.is_none_or(|n| n < want) {
            changed.push(format!(
                "{key} {} → {want}",
                now.map_or("(default)".to_owned(), |n| n.to_string())
            ));
            limits.insert(key.to_owned(), toml::Value::Integer(want));
        }
    }
    if !tuning.audit_journal {
        doc.entry("audit")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .context("[audit] in sekisho.toml is not a table")?
            .insert("journal".to_owned(), toml::Value::Boolean(false));
    }
    if changed.is_empty() {
        if !tuning.audit_journal {
            std::fs::write(&path, toml::to_string(&doc)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(Vec::new());
    }
    std::fs::write(&path, toml::to_string(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(vec![format!(
        "sekisho.toml [limits] set by the benchmark so that idle connections stay open for \
         the memory measurement and one terminal certificate may carry every load connection: {}",
        changed.join(", ")
    )])
}
