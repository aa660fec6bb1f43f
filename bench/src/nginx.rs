//! nginx as the reference mTLS reverse proxy: its own config in a temp dir, same server
//! certificate, client CAs and CRLs as Sekisho, `proxy_pass` to the same upstream over pooled
//! keep-alive connections.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::pki::{self, Pki};
use crate::process::{self, ChildGuard};

/// nginx's keep-alive request limits are raised so that neither the client side nor the
/// upstream side closes a connection every 1000 requests (nginx's default): "keep-alive" then
/// means the same thing for both proxies.
const KEEPALIVE_REQUESTS: u64 = 1_000_000;

/// How long nginx keeps an idle client connection: long enough for the idle-connection memory
/// measurement (opening 10,000 connections takes a while), like Sekisho's settings in the bench.
pub const KEEPALIVE_TIMEOUT_SECS: u64 = 900;

/// nginx's access log in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLog {
    /// `access_log <file> combined buffer=64k flush=1s`: what a production nginx would do.
    Buffered,
    /// `access_log <file> combined`: one write(2) per request.
    Unbuffered,
    /// `access_log off`.
    Off,
}

impl AccessLog {
    fn directive(self, dir: &std::path::Display<'_>) -> String {
        match self {
            AccessLog::Buffered => {
                format!("access_log {dir}/access.log combined buffer=64k flush=1s;")
            }
            AccessLog::Unbuffered => format!("access_log {dir}/access.log combined;"),
            AccessLog::Off => "access_log off;".to_owned(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            AccessLog::Buffered => "to a file, combined, buffer=64k flush=1s",
            AccessLog::Unbuffered => "to a file, combined, unbuffered (one write per request)",
            AccessLog::Off => "off",
        }
    }
}

pub struct Settings<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub pki: &'a Pki,
    pub workers: usize,
    pub access_log: AccessLog,
    /// `worker_connections` (per worker; a proxied request uses two) and
    /// `worker_rlimit_nofile`.
    pub worker_connections: usize,
}

impl Settings<'_> {
    /// One line for the report.
    pub fn describe(&self) -> String {
        format!(
            "worker_processes {}, worker_connections {}, access_log {}, \
             keepalive_requests {KEEPALIVE_REQUESTS}, keepalive_timeout {KEEPALIVE_TIMEOUT_SECS}s, \
             upstream keepalive 64, ssl_verify_client on + ssl_crl",
            self.workers,
            self.worker_connections,
            self.access_log.describe()
        )
    }
}

pub struct Nginx {
    pub addr: SocketAddr,
    child: ChildGuard,
}

impl Nginx {
    /// The master process (its children are the workers).
    pub fn master_pid(&self) -> u32 {
        self.child.pid()
    }
}

/// `--nginx PATH`, else `nginx` in `PATH`.
pub fn find_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !process::is_executable(&path) {
            bail!("--nginx {}: not an executable file", path.display());
        }
        return Ok(path);
    }
    process::find_in_path("nginx").context(
        "nginx not found in PATH: install it (Debian: apt-get install nginx-light; the binary \
         is in /usr/sbin, which must be in PATH) or pass --nginx PATH",
    )
}

/// `nginx -v` (it prints to stderr).
pub fn version(binary: &Path) -> Result<String> {
    let mut cmd = Command::new(binary);
    cmd.arg("-v");
    let out = process::run("nginx -v", cmd, Duration::from_secs(10))?;
    let text = if out.stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        out.stderr
    };
    Ok(text.trim().trim_start_matches("nginx version: ").to_owned())
}

pub fn config(s: &Settings<'_>, client_ca: &Path) -> String {
    let dir = s.dir.display();
    let mut conf = String::new();
    let _ = writeln!(conf, "# written by sekisho-bench");
    let _ = writeln!(conf, "worker_processes {};", s.workers);
    let _ = writeln!(conf, "pid {dir}/nginx.pid;");
    let _ = writeln!(conf, "error_log {dir}/error.log warn;");
    let _ = writeln!(conf, "worker_rlimit_nofile {};", s.worker_connections);
    let _ = writeln!(
        conf,
        "events {{ worker_connections {}; }}",
        s.worker_connections
    );
    let _ = writeln!(conf, "http {{");
    let _ = writeln!(conf, "    {}", s.access_log.directive(&dir));
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(conf, "    {temp}_temp_path {dir}/{temp}_temp;");
    }
    let _ = writeln!(conf, "    upstream bench_upstream {{");
    let _ = writeln!(conf, "        server {};", s.upstream);
    let _ = writeln!(conf, "        keepalive 64;");
    let _ = writeln!(conf, "        keepalive_requests {KEEPALIVE_REQUESTS};");
    let _ = writeln!(conf, "    }}");
    let _ = writeln!(conf, "    server {{");
    let _ = writeln!(conf, "        listen {} ssl;", s.listen);
    let _ = writeln!(conf, "        server_name localhost;");
    let _ = writeln!(conf, "        keepalive_requests {KEEPALIVE_REQUESTS};");
    let _ = writeln!(conf, "        keepalive_timeout {KEEPALIVE_TIMEOUT_SECS}s;");
    let _ = writeln!(conf, "        ssl_protocols TLSv1.2 TLSv1.3;");
    let _ = writeln!(
        conf,
        "        ssl_certificate {};",
        s.pki.server_cert.display()
    );
    let _ = writeln!(
        conf,
        "        ssl_certificate_key {};",
        s.pki.server_key.display()
    );
    let _ = writeln!(
        conf,
        "        ssl_client_certificate {};",
        client_ca.display()
    );
    let _ = writeln!(conf, "        ssl_verify_client on;");
    let _ = writeln!(conf, "        ssl_verify_depth 2;");
    let _ = writeln!(conf, "        ssl_crl {};", s.pki.crl.display());
    let _ = writeln!(conf, "        location / {{");
    let _ = writeln!(conf, "            proxy_pass http://bench_upstream;");
    let _ = writeln!(conf, "            proxy_http_version 1.1;");
    let _ = writeln!(conf, "            proxy_set_header Connection \"\";");
    let _ = writeln!(conf, "        }}");
    let _ = writeln!(conf, "    }}");
    let _ = writeln!(conf, "}}");
    conf
}

/// Writes the config, checks it with `nginx -t`, starts nginx in the foreground and waits
/// until it listens.
pub fn start(s: &Settings<'_>) -> Result<Nginx> {
    std::fs::create_dir_all(s.dir)?;
    let client_ca = s.dir.join("client-ca.pem");
    pki::write_client_ca_bundle(s.pki, &client_ca)?;
    let conf_path = s.dir.join("nginx.conf");
    std::fs::write(&conf_path, config(s, &client_ca))?;

    let base = |extra: &[&str]| {
        let mut cmd = Command::new(s.binary);
        cmd.arg("-p")
            .arg(s.dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(s.dir.join("error.log"))
            .args(extra);
        cmd
    };
    let checked = process::run_unchecked("nginx -t", &mut base(&["-t"]), Duration::from_secs(30))?;
    if !checked.status.success() {
        bail!(
            "nginx rejected its config {}:\n{}",
            conf_path.display(),
            checked.stderr.trim_end()
        );
    }

    let mut child = ChildGuard::spawn(
        "nginx",
        base(&["-g", "daemon off;"]),
        &s.dir.join("nginx.out"),
    )?;
    process::wait_for_tcp(s.listen, &mut child, Duration::from_secs(15)).map_err(|e| {
        e.context(format!(
            "error.log:\n{}",
            process::tail(&s.dir.join("error.log"), 20)
        ))
    })?;
    Ok(Nginx {
        addr: s.listen,
        child,
    })
}

/// The end of nginx's error log, for when a probe fails.
pub fn error_log_tail(dir: &Path) -> String {
    let tail = process::tail(&dir.join("error.log"), 20);
    if tail.trim().is_empty() {
        "(empty: nginx logs client-certificate failures at level info only)".to_owned()
    } else {
        tail
    }
}
