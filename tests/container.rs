//! The container image (deploy/Containerfile) built with podman and run: `init` and `terminal
//! add` in the image on a volume, then the image's default command serving with its ports
//! published, a terminal through mTLS, the non-root user, the HEALTHCHECK. No registry is
//! reached: the base image is made with debootstrap (deploy/make-base-image.sh, cached for the
//! day) and the image takes the binary cargo built for these tests (`--target prebuilt`).
//! Needs root, podman, runc and debootstrap (tests/run.sh installs them).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BASE: &str = "localhost/sekisho-test-base:bookworm";
const DATA: &str = "/var/lib/sekisho/data";

/// podman's engine settings for the machines the tests run on (root, no systemd as PID 1,
/// cgroup v1 with a v2 hierarchy beside it, no CAP_SYS_RESOURCE): runc (crun refuses hybrid
/// cgroups), cgroupfs, events in a file, and rlimits no higher than the host's (podman would
/// raise them). They work on an ordinary host as well.
const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"#;

struct Podman {
    conf: std::path::PathBuf,
    /// Containers, the volume and the image to remove at the end (the base image stays).
    made: std::cell::RefCell<Vec<(&'static str, String)>>,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, CONTAINERS_CONF).unwrap();
        let p = Podman {
            conf,
            made: Default::default(),
        };
        let v = p.run(&["--version"]);
        assert!(
            v.status.success(),
            "podman is needed (tests/run.sh installs it): {}",
            String::from_utf8_lossy(&v.stderr)
        );
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("podman {args:?}: {e} (tests/run.sh installs podman)"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn remove_later(&self, kind: &'static str, name: &str) {
        self.made.borrow_mut().push((kind, name.to_string()));
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for (kind, name) in self.made.borrow().iter().rev() {
            let args: &[&str] = match *kind {
                "container" => &["rm", "-f", "-t", "0"],
                "volume" => &["volume", "rm", "-f"],
                _ => &["rmi", "-f"],
            };
            let _ = self.cmd().args(args).arg(name).output();
        }
    }
}

/// The application behind the gateway, on every address: the container reaches it at
/// `host.containers.internal`, not on the host's loopback.
struct Upstream {
    port: u16,
    hits: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

fn upstream() -> Upstream {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("0.0.0.0:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(sekisho::demo::upstream::serve_counting(
        listener,
        hits.clone(),
    ));
    Upstream {
        port,
        hits,
        _rt: rt,
    }
}

fn elapsed(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

#[test]
fn the_image_serves_terminals_as_a_non_root_user_and_reports_its_health() {
    let dir = tempfile::tempdir().unwrap();
    let podman = Podman::new(dir.path());
    let id = format!("{}-{}", std::process::id(), free_port());

    let t = Instant::now();
    let made = Command::new(format!("{REPO}/deploy/make-base-image.sh"))
        .arg(BASE)
        .env("CONTAINERS_CONF", &podman.conf)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "the base image (debootstrap; tests/run.sh installs it): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    eprintln!("base image: {}", elapsed(t));

    // The build context holds only the binary, as the `prebuilt` target expects.
    let t = Instant::now();
    let ctx = dir.path().join("context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sekisho"), ctx.join("sekisho")).unwrap();
    let image = format!("localhost/sekisho-test:{id}");
    podman.remove_later("image", &image);
    podman.ok(&[
        "build",
        "--format",
        "docker",
        "--target",
        "prebuilt",
        "--build-arg",
        &format!("BASE={BASE}"),
        "-f",
        &format!("{REPO}/deploy/Containerfile"),
        "-t",
        &image,
        ctx.to_str().unwrap(),
    ]);
    eprintln!("image build: {}", elapsed(t));

    let t = Instant::now();
    let volume = format!("sekisho-test-{id}");
    podman.remove_later("volume", &volume);
    podman.ok(&["volume", "create", &volume]);
    let up = upstream();
    let mount = format!("{volume}:/var/lib/sekisho");
    let out = dir.path().join("t1");
    std::fs::create_dir(&out).unwrap();
    // The image's user writes the terminal's files here.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out_mount = format!("{}:/out", out.display());
    let one_off = |args: &[&str]| {
        let mut a = vec![
            "run",
            "--rm",
            "--no-healthcheck",
            "-e",
            "SEKISHO_OPERATOR=container-test",
            "-v",
            &mount,
            "-v",
            &out_mount,
            &image,
        ];
        a.extend_from_slice(args);
        podman.ok(&a)
    };
    let upstream_url = format!("http://host.containers.internal:{}", up.port);
    one_off(&[
        "init",
        "--data-dir",
        DATA,
        "--upstream",
        &upstream_url,
        "--listen",
        "0.0.0.0:8443",
        "--enroll-listen",
        "0.0.0.0:8444",
        "--mgmt-listen",
        "0.0.0.0:9090",
    ]);
    one_off(&[
        "terminal",
        "add",
        "--data-dir",
        DATA,
        "--facility",
        "f1",
        "--terminal",
        "t1",
        "--out",
        "/out",
    ]);

    // The image's own command, its ports published on the host's loopback.
    let (gw, mgmt) = (free_port(), free_port());
    let name = format!("sekisho-test-{id}");
    podman.remove_later("container", &name);
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{gw}:8443"),
        "-p",
        &format!("127.0.0.1:{mgmt}:9090"),
        "-v",
        &mount,
        &image,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let readyz = format!("http://127.0.0.1:{mgmt}/readyz");
    loop {
        let (s, body, _) = curl(&readyz, "/dev/null", &[]);
        if s == 200 {
            assert!(body.contains("ready"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer 200 (last {s}); logs:\n{}",
            podman.ok(&["logs", &name])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("init, terminal add, serve until ready: {}", elapsed(t));

    let url = format!("https://localhost:{gw}/");
    let ca = out.join("ca.crt");
    let (c, k) = (out.join("t1.crt"), out.join("t1.key"));
    let (s, _, _) = curl(
        &url,
        ca.to_str().unwrap(),
        &["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()],
    );
    assert_eq!(s, 200, "terminal t1 through the container");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1, "reached the upstream");
    let (s, _, _) = curl(&url, ca.to_str().unwrap(), &[]);
    assert_ne!(s, 200, "no certificate, no way through");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);

    // Not root: the process, and the data dir it owns, private.
    let users = podman.ok(&["top", &name, "user", "args"]);
    let serving = users
        .lines()
        .find(|l| l.contains("serve"))
        .unwrap_or_else(|| panic!("no serve process: {users}"));
    assert!(serving.starts_with("sekisho "), "{serving}");
    assert_eq!(
        podman.ok(&["exec", &name, "stat", "-c", "%U %a", DATA]),
        "sekisho 700"
    );

    // The HEALTHCHECK, run by hand (no systemd to schedule it here): healthy while serving,
    // unhealthy in a container of the image where nothing listens.
    podman.ok(&["healthcheck", "run", &name]);
    assert_eq!(
        podman.ok(&["inspect", &name, "--format", "{{.State.Health.Status}}"]),
        "healthy"
    );
    let idle = format!("sekisho-test-idle-{id}");
    podman.remove_later("container", &idle);
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &idle,
        "--entrypoint",
        "sleep",
        "-v",
        &mount,
        &image,
        "120",
    ]);
    // (Its status stays "starting" through the start period; the check itself fails.)
    let o = podman.run(&["healthcheck", "run", &idle]);
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).trim()),
        (Some(1), "unhealthy"),
        "a container that serves nothing: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // It stops on SIGTERM in time (podman's default 10 s before SIGKILL).
    let t = Instant::now();
    podman.ok(&["stop", &name]);
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "stop took {}",
        elapsed(t)
    );
    let exit = podman.ok(&["inspect", &name, "--format", "{{.State.ExitCode}}"]);
    assert_eq!(exit, "0", "exit code after SIGTERM");
}
