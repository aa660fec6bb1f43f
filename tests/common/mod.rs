//! Test rig: a real `sekisho` process (init, terminal add, serve) in a temp data dir, in front
//! of the demo upstream (which counts what reaches it), on SQLite or on a fresh PostgreSQL
//! database. Clients are real: curl, openssl, and a Rust rustls/hyper client.

#![allow(dead_code)]

mod card;
mod clients;
mod gateway;
mod people;
mod setup;
mod webdriver;

#[allow(unused_imports)]
pub use card::*;
#[allow(unused_imports)]
pub use clients::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use people::*;
#[allow(unused_imports)]
pub use setup::*;
#[allow(unused_imports)]
pub use webdriver::*;

use std::net::TcpListener as StdListener;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;

use sekisho_store::testdb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const BOTH: [Db; 2] = [Db::Sqlite, Db::Postgres];

/// The secretariat member the tests' administrative commands are recorded as
/// (`SEKISHO_OPERATOR`); a test that needs another person passes `--operator`.
pub const TEST_OPERATOR: &str = "test-secretariat";

pub fn sekisho() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sekisho"));
    c.env("SEKISHO_LOG", "warn");
    c.env("SEKISHO_OPERATOR", TEST_OPERATOR);
    c
}

/// Runs a sekisho command; returns its output whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    sekisho()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sekisho")
}

pub fn run_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "sekisho {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A port for a listener of a test gateway. Taken from a range below Linux's ephemeral ports
/// (so no outgoing connection holds it) and never handed out twice in this process (tests run
/// in parallel threads); checked free when handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 12_000 + (std::process::id() % 40) * 500;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 19_000) as u16;
        if port < 32_000 && StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Calls `f` until `done` holds for its answer, for up to two seconds, and returns the last
/// answer: a change made outside the gateway (the CLI, SQL) reaches a running gateway within
/// one 250 ms poll of the store's change counter, not on the very next request.
pub fn within_a_poll<T>(mut f: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let v = f();
        if done(&v) || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
