//! A two-namespace test bed for the WireGuard endpoint: a "gateway" and a "terminal" network
//! namespace linked by a veth pair, and Debian's `wireguard-go` (configured with `wg`) as an
//! independent WireGuard implementation. Used by the interop tests (`interop.rs`) and the
//! throughput benchmark (`benches/tunnel_throughput.rs`) and the gateway's tunnel tests, behind
//! the `test-util` feature.
//!
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `ip netns`), `/dev/net/tun`, `ip`
//! (iproute2), `wireguard-go` and `wg` (wireguard-tools). Everything it creates carries a name
//! unique to the process and the bed, and is removed on drop.
// setns(2) and kill(2) have no safe std wrapper; each call says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The underlay (veth) addresses.
pub const GW_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 231, 255, 1);
pub const TERM_UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 231, 255, 2);
/// A second underlay address in the terminal namespace, for traffic that must not share the
/// terminal's source address (a flood).
pub const TERM_UNDERLAY_2: Ipv4Addr = Ipv4Addr::new(10, 231, 255, 3);
/// Tunnel addresses.
pub const GW_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
pub const TERM_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);
pub const WG_PORT: u16 = 51820;

static BEDS: AtomicU32 = AtomicU32::new(0);

/// Why the bed cannot be built here, if it cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for tool in ["ip", "wireguard-go", "wg"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "`{tool}` not installed (apt-get install iproute2 wireguard-go wireguard-tools)"
            ));
        }
    }
    None
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out)
}

pub struct Bed {
    pub gw: String,
    pub term: String,
    /// Short unique tag for interface names (wireguard-go's UAPI socket path is global).
    pub tag: String,
    children: Vec<Child>,
    wg_ifaces: Vec<String>,
    dir: std::path::PathBuf,
}

impl Bed {
    /// Two namespaces, the veth pair between them, loopbacks up.
    pub fn new() -> io::Result<Bed> {
        let n = BEDS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("sekisho-wg-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let bed = Bed {
            gw: format!("skgw{tag}"),
            term: format!("skt{tag}"),
            tag,
            children: Vec::new(),
            wg_ifaces: Vec::new(),
            dir,
        };
        run(Command::new("ip").args(["netns", "add", &bed.gw]))?;
        run(Command::new("ip").args(["netns", "add", &bed.term]))?;
        run(Command::new("ip").args([
            "-n", &bed.gw, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
            "netns", &bed.term,
        ]))?;
        for (ns, addrs) in [
            (&bed.gw, vec![GW_UNDERLAY]),
            (&bed.term, vec![TERM_UNDERLAY, TERM_UNDERLAY_2]),
        ] {
            let dev = if ns == &bed.gw { "veth0" } else { "veth1" };
            for a in addrs {
                run(Command::new("ip").args([
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{a}/24"),
                    "dev",
                    dev,
                ]))?;
            }
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        Ok(bed)
    }

    /// Run a command inside a namespace and wait for it.
    pub fn exec(&self, ns: &str, args: &[&str]) -> io::Result<Output> {
        run(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// Start a long-running command inside a namespace; killed on drop.
    pub fn spawn(&mut self, ns: &str, args: &[&str]) -> io::Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(child);
        Ok(())
    }

    /// A file in the bed's own temporary directory.
    pub fn file(&self, name: &str, contents: &str) -> io::Result<String> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents)?;
        Ok(path.to_string_lossy().into_owned())
    }

    /// Bring up wireguard-go in `ns` as interface `iface` with address `address/prefix`,
    /// private key `private_b64`, listening on `listen_port` (0: any), and one peer.
    #[allow(clippy::too_many_arguments)]
    pub fn wireguard_go(
        &mut self,
        ns: &str,
        iface: &str,
        address: Ipv4Addr,
        prefix: u8,
        private_b64: &str,
        listen_port: u16,
        peer: WgPeer<'_>,
    ) -> io::Result<()> {
        let key = self.file(&format!("{iface}.key"), private_b64)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "wireguard-go", "-f", iface])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(child);
        self.wg_ifaces.push(iface.to_string());
        let sock = format!("/var/run/wireguard/{iface}.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&sock).exists() {
            if Instant::now() > deadline {
                return Err(io::Error::other("wireguard-go did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = listen_port.to_string();
        let mut args = vec![
            "wg",
            "set",
            iface,
            "private-key",
            &key,
            "listen-port",
            &port,
            "peer",
            peer.public_b64,
            "allowed-ips",
            peer.allowed_ips,
        ];
        if let Some(e) = peer.endpoint {
            args.extend(["endpoint", e]);
        }
        if let Some(k) = peer.keepalive {
            args.extend(["persistent-keepalive", k]);
        }
        self.exec(ns, &args)?;
        self.exec(
            ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{address}/{prefix}"),
                "dev",
                iface,
            ],
        )?;
        self.exec(ns, &["ip", "link", "set", iface, "mtu", "1420", "up"])?;
        // As wg-quick does: route the peer's allowed IPs into the tunnel.
        for net in peer.allowed_ips.split(',') {
            let _ = self.exec(ns, &["ip", "route", "replace", net.trim(), "dev", iface]);
        }
        Ok(())
    }

    /// Run `f` on a new thread that has entered namespace `ns` (sockets and TUN devices it
    /// creates, and threads it spawns, live there).
    pub fn in_ns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = ns.to_string();
        std::thread::spawn(move || {
            enter(&ns).expect("setns");
            f()
        })
    }
}

pub struct WgPeer<'a> {
    pub public_b64: &'a str,
    pub allowed_ips: &'a str,
    pub endpoint: Option<&'a str>,
    pub keepalive: Option<&'a str>,
}

/// Move the calling thread into network namespace `ns`.
pub fn enter(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: signalling a child process we spawned and have not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for iface in &self.wg_ifaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{iface}.sock"));
        }
        for ns in [&self.gw, &self.term] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
