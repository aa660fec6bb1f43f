//! The command line: wrong input gets a clear message and a non-zero exit and leaves nothing
//! half-written; the CA passphrase protects the keys.

mod common;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_refuses_bad_input_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("gw");
    let ds = d.to_str().unwrap();
    for (args, msg) in [
        (vec!["--upstream", "ftp://x"], "http:// or https://"),
        (vec!["--upstream", "not a url"], "upstream.url"),
        (
            vec![
                "--upstream",
                "http://127.0.0.1:1",
                "--hostname",
                "bad_host!",
            ],
            "not a valid host name",
        ),
        (
            vec!["--upstream", "http://127.0.0.1:1", "--listen", "nowhere"],
            "invalid value",
        ),
    ] {
        let mut a = vec!["init", "--data-dir", ds];
        a.extend(args);
        let o = run(&a);
        assert!(!o.status.success(), "{a:?} must fail");
        assert!(stderr(&o).contains(msg), "{a:?}: {}", stderr(&o));
        assert!(!d.exists(), "{a:?} left {ds} behind");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no staging leftovers"
        );
    }
    run_ok(&["init", "--data-dir", ds, "--upstream", "http://127.0.0.1:1"]);
    let o = run(&["init", "--data-dir", ds, "--upstream", "http://127.0.0.1:1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already holds a Sekisho data dir"));
    use std::os::unix::fs::PermissionsExt;
    for key in [
        "ca/issuing.key",
        "ca/root.key",
        "tls/server.key",
        "assertion.key",
        "audit/checkpoint.key",
    ] {
        let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // Terminal ids are checked before anything is issued.
    let out = dir.path().join("out");
    let o = run(&[
        "terminal",
        "add",
        "--data-dir",
        ds,
        "--facility",
        "f1",
        "--terminal",
        "bad id",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(!out.exists());
    let list = run_ok(&["terminal", "list", "--data-dir", ds]);
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
    // Another facility cannot take over a terminal id.
    run_ok(&[
        "terminal",
        "add",
        "--data-dir",
        ds,
        "--facility",
        "f1",
        "--terminal",
        "t1",
        "--out",
        out.to_str().unwrap(),
        "--lifetime-days",
        "30",
    ]);
    let o = run(&[
        "terminal",
        "add",
        "--data-dir",
        ds,
        "--facility",
        "f2",
        "--terminal",
        "t1",
        "--out",
        dir.path().join("o2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("registered to facility f1"),
        "{}",
        stderr(&o)
    );
    // The lifetime was honoured.
    let (ok, text) = openssl(
        &[
            "x509",
            "-noout",
            "-enddate",
            "-in",
            out.join("t1.crt").to_str().unwrap(),
        ],
        "",
    );
    assert!(ok);
    let end = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][end.month() as usize - 1];
    assert!(
        text.contains(month) && text.contains(&end.year().to_string()),
        "{text}"
    );
    // A generated .p12 password is printed, and the bundle opens with it.
    let o = run_ok(&[
        "terminal",
        "add",
        "--data-dir",
        ds,
        "--facility",
        "f1",
        "--terminal",
        "t2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let pw = o
        .lines()
        .find_map(|l| l.strip_prefix("Password of t2.p12: "))
        .expect("password printed")
        .trim()
        .to_string();
    let (ok, text) = openssl(
        &[
            "pkcs12",
            "-in",
            out.join("t2.p12").to_str().unwrap(),
            "-nokeys",
            "-passin",
            &format!("pass:{pw}"),
        ],
        "",
    );
    assert!(ok, "{text}");
}

#[test]
fn encrypted_ca_keys_need_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("gw");
    let ds = d.to_str().unwrap();
    let o = sekisho()
        .env("SEKISHO_CA_PASSPHRASE", "correct horse")
        .args(["init", "--data-dir", ds, "--upstream", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let key = std::fs::read_to_string(d.join("ca/issuing.key")).unwrap();
    assert!(key.contains("ENCRYPTED PRIVATE KEY"));
    let out = dir.path().join("out");
    let o = run(&[
        "terminal",
        "add",
        "--data-dir",
        ds,
        "--facility",
        "f1",
        "--terminal",
        "t1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SEKISHO_CA_PASSPHRASE"),
        "{}",
        stderr(&o)
    );
    let o = sekisho()
        .env("SEKISHO_CA_PASSPHRASE", "correct horse")
        .args([
            "terminal",
            "add",
            "--data-dir",
            ds,
            "--facility",
            "f1",
            "--terminal",
            "t1",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("t1.crt").exists());
}

/// The README's first command: `sekisho demo` makes its data dir (its set-up on record as
/// `sekisho-demo`, with no operator in the environment), starts, prints its instructions with
/// the console's officer, and answers its own terminal as they say.
#[test]
fn the_demo_starts_and_answers_its_terminal() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (port, enroll, mgmt) = (free_port(), free_port(), free_port());
    let mut child = sekisho()
        .env_remove("SEKISHO_OPERATOR")
        .args(["demo", "--data-dir"])
        .arg(&data)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--enroll-listen",
            &format!("127.0.0.1:{enroll}"),
            "--mgmt-listen",
            &format!("127.0.0.1:{mgmt}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("Audit check:") {
            break;
        }
    }
    assert!(said.contains("Sekisho demo is running"), "{said}");
    assert!(said.contains("ID demoofficer1, first password"), "{said}");
    let term = data.join("demo-terminal");
    let (s, body, _) = curl(
        &format!("https://localhost:{port}/"),
        term.join("ca.crt").to_str().unwrap(),
        &[
            "--cert",
            term.join("reception-pc.crt").to_str().unwrap(),
            "--key",
            term.join("reception-pc.key").to_str().unwrap(),
        ],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(s, 200, "{body}");
    // Its set-up is on record as the demo's.
    let out = run_ok(&["audit", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(out.contains("audit log OK"), "{out}");
}
