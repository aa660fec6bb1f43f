//! Upgrades: a data dir made by the previous release (`tests/fixtures/upgrade/`, README there)
//! is served by this build. It must migrate to every migration this build has, once, also when
//! two gateways start on it at the same moment; the old terminal, password and operator token
//! must still work; the old audit log must verify and stay searchable, and new records append
//! to it. The fixture stays as it was made: whatever migrations are added later, this test
//! upgrades from the same old state.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sekisho_store::testdb;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/upgrade");
/// The listeners and upstream the fixtures were made with (make.sh); replaced by free ports.
const OLD_LISTEN: [&str; 3] = ["127.0.0.1:18443", "127.0.0.1:18444", "127.0.0.1:19090"];
const OLD_UPSTREAM: &str = "http://127.0.0.1:18080";

struct Fixture {
    /// What make.sh wrote in fixture.env: the terminal, user, password, token.
    env: HashMap<String, String>,
    /// The database the fixture holds (PostgreSQL: a plain-SQL dump), once loaded.
    sql: Option<PathBuf>,
}

/// Unpacks fixture `variant` into a new temp dir as a gateway (not serving) with its own ports,
/// upstream and `node` name; on PostgreSQL over `store_url` instead of the one it was made with.
fn unpack(variant: &str, node: &str, store_url: Option<&str>) -> (Gateway, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let tar = Path::new(FIXTURES).join(format!("{variant}.tar.gz"));
    let st = Command::new("tar")
        .args(["-xzf", tar.to_str().unwrap(), "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "cannot unpack {}", tar.display());
    let env: HashMap<String, String> = std::fs::read_to_string(dir.path().join("fixture.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let data = dir.path().join("data");
    let upstream = Upstream::start();
    let ports = (free_port(), free_port(), free_port());
    let cfg = data.join("sekisho.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    for (old, new) in OLD_LISTEN.iter().zip([ports.0, ports.1, ports.2]) {
        let old = format!("\"{old}\"");
        assert!(text.contains(&old), "sekisho.toml has no {old}");
        text = text.replace(&old, &format!("\"127.0.0.1:{new}\""));
    }
    text = text.replace(
        &format!("\"{OLD_UPSTREAM}\""),
        &format!("\"http://{}\"", upstream.addr),
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for l in &mut lines {
        if l.starts_with("node = ") {
            *l = format!("node = {node:?}");
        }
        if let (Some(url), true) = (store_url, l.starts_with("url = \"postgres")) {
            *l = format!("url = {url:?}");
        }
    }
    std::fs::write(&cfg, lines.join("\n") + "\n").unwrap();
    let (db, url) = match store_url {
        None => (
            Db::Sqlite,
            format!("sqlite://{}", data.join("sekisho.db").display()),
        ),
        Some(u) => (Db::Postgres, u.to_string()),
    };
    let sql = dir.path().join("sekisho.sql");
    let sql = sql.exists().then_some(sql);
    let out = dir.path().join("t1");
    let g = Gateway::adopt(dir, data, out, ports, upstream, db, url, None);
    (g, Fixture { env, sql })
}

/// The migrations a database has, in order, as (version, name).
fn applied(g: &Gateway) -> Vec<(i64, String)> {
    g.sql_rows("SELECT version, name FROM schema_migrations ORDER BY version")
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect()
}

/// Every audit record as stored (idx, the hashed record text): what an upgrade must not touch.
fn log_rows(g: &Gateway) -> Vec<Vec<String>> {
    g.sql_rows("SELECT idx, record FROM audit_records ORDER BY idx")
}

fn verify(g: &Gateway) -> String {
    run_ok(&["audit", "verify", "--data-dir", g.data_str()])
}

/// The old database is at the previous release's migrations, a part of this build's.
fn check_old_schema(g: &Gateway) -> Vec<(i64, String)> {
    let before = applied(g);
    let now = testdb::migrations();
    assert!(!before.is_empty(), "the fixture has no schema_migrations");
    assert!(
        before.iter().all(|m| now.contains(m)),
        "the fixture has migrations this build does not know: {before:?} vs {now:?}"
    );
    before
}

/// After the upgrade: exactly this build's migrations, each once.
fn check_migrated(g: &Gateway) {
    assert_eq!(applied(g), testdb::migrations());
    let dupes =
        g.sql_rows("SELECT version FROM schema_migrations GROUP BY version HAVING COUNT(*) > 1");
    assert!(dupes.is_empty(), "applied more than once: {dupes:?}");
}

/// What the old release left must still work: its terminal gets through with its certificate,
/// its user signs in with the password set back then, its operator token searches the log and
/// finds the old records, each still matching its leaf and under a signed checkpoint.
fn check_old_state_works(g: &Gateway, fx: &Fixture, old_log: &[Vec<String>]) {
    let term = &fx.env["terminal"];
    let hits = g.upstream.hits();
    let (c, k) = g.cert(term);
    let (status, _, _) = g.curl("/", &["--cert", &c, "--key", &k]);
    assert_eq!(status, 200, "the old terminal's request");
    assert_eq!(g.upstream.hits(), hits + 1, "reached the application");

    let jar = g.dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let user = &fx.env["user"];
    let (s, _, loc) = post(
        g,
        term,
        jar,
        "/.sekisho/login",
        &[("id", user), ("password", &fx.env["password"])],
    );
    assert_eq!(s, 303, "sign-in with the old password");
    assert_ne!(loc, "/.sekisho/password", "the password was not temporary");
    let (s, body) = get(g, term, jar, "/.sekisho/auth/status");
    assert_eq!(s, 200, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["user"], user.as_str(), "{st}");

    let old_requests: Vec<String> = old_log
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r[1]).unwrap())
        .filter(|r| r["event"] == "request" && r["terminal"] == term.as_str())
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!old_requests.is_empty(), "the fixture has request records");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H"])
        .arg(format!(
            "Authorization: Bearer {}",
            fx.env["operator_token"]
        ))
        .arg(format!(
            "http://127.0.0.1:{}/api/v1/audit/records?terminal={term}&event=request&limit=200",
            g.mgmt_port
        ))
        .output()
        .unwrap();
    let found: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let found = found["records"].as_array().expect("records");
    for id in &old_requests {
        let r = found
            .iter()
            .find(|f| f["record"]["request_id"] == id.as_str())
            .unwrap_or_else(|| panic!("old request {id} not found by the search"));
        assert_eq!(r["leaf_matches"], true, "{r}");
        assert_eq!(r["in_signed_checkpoint"], true, "{r}");
    }
}

/// The old records are there as they were, and new ones follow them.
fn check_log_grew(g: &Gateway, old_log: &[Vec<String>]) {
    let now = log_rows(g);
    assert!(now.len() > old_log.len(), "no new records were appended");
    assert_eq!(&now[..old_log.len()], old_log, "the old records changed");
}

/// SQLite: the gateway and a CLI command (`audit verify`, which opens the store and so
/// migrates too) start on the old data dir at once; both succeed, the schema is this build's,
/// and the old state works.
#[test]
fn a_sqlite_data_dir_of_the_previous_release() {
    let (mut g, fx) = unpack("sqlite", "upgraded", None);
    let before = check_old_schema(&g);
    let old_log = log_rows(&g);
    assert!(!old_log.is_empty());

    g.spawn();
    let verified = verify(&g);
    assert!(verified.contains("OK"), "{verified}");
    g.wait_ready();
    check_migrated(&g);
    eprintln!(
        "upgraded from {} ({} migrations) to {} migrations",
        fx.env["made_by"],
        before.len(),
        testdb::migrations().len()
    );
    check_old_state_works(&g, &fx, &old_log);
    g.stop();

    check_log_grew(&g, &old_log);
    let verified = verify(&g);
    assert!(verified.contains("OK"), "{verified}");
}

/// PostgreSQL: the previous release's database (loaded from its dump) under two replicas that
/// start at the same moment, each with its copy of the old data dir — a rolling upgrade where
/// both reach the new version together. Migrations serialise on `schema_migrations`: both come
/// up (a migration's DDL run twice would fail the second), each migration is recorded once.
#[test]
fn a_postgres_database_of_the_previous_release_under_two_replicas_at_once() {
    let (url, _pg) = PgDb::create();
    let (mut a, fx) = unpack("postgres", "upgraded-a", Some(&url));
    let (mut b, _) = unpack("postgres", "upgraded-b", Some(&url));
    let dump = fx.sql.as_ref().expect("the fixture's dump");
    let load = Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(dump)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "loading the dump: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let before = check_old_schema(&a);
    let old_log = log_rows(&a);
    assert!(!old_log.is_empty());

    a.spawn();
    b.spawn();
    a.wait_ready();
    b.wait_ready();
    check_migrated(&a);
    eprintln!(
        "upgraded from {} ({} migrations) to {} migrations",
        fx.env["made_by"],
        before.len(),
        testdb::migrations().len()
    );
    check_old_state_works(&a, &fx, &old_log);
    let (c, k) = b.cert(&fx.env["terminal"]);
    assert_eq!(b.curl("/", &["--cert", &c, "--key", &k]).0, 200);
    a.stop();
    b.stop();

    check_log_grew(&a, &old_log);
    let verified = verify(&a);
    assert!(verified.contains("OK"), "{verified}");
    drop(b);
    drop(a);
}
