//! Shared helpers for the integration tests: a fresh CA in a temporary directory, and running
//! the real `openssl` command line.

#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sekisho_ca::{Authority, CaOptions, KeyAlgorithm};
use tempfile::TempDir;

pub struct TestCa {
    pub dir: TempDir,
    pub ca: Authority,
}

pub fn new_ca(algorithm: KeyAlgorithm) -> TestCa {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::create(
        &dir.path().join("ca"),
        &CaOptions {
            algorithm,
            passphrase: None,
            name: "Sekisho Test Network".into(),
        },
    )
    .expect("create CA");
    TestCa { dir, ca }
}

/// Runs `openssl` with `args` in `cwd`, feeding `stdin`. Panics with a clear message if the
/// tool is missing (these tests are meant to use the real tool, not to be skipped).
pub fn openssl(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl command line tool must be installed for these tests");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        pipe.write_all(data).expect("write to openssl");
    }
    drop(pipe);
    child.wait_with_output().expect("openssl ran")
}

/// As `openssl`, asserting success; returns stdout and stderr together as text.
pub fn openssl_ok(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = openssl(cwd, args, stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}
