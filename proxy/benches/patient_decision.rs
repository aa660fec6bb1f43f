//! The cost of a patient-route decision (the patient's consent, care team and consent windows
//! from the in-memory patient view, then the Cedar policy decision) with a realistic network:
//! 5,000 users, 500 facilities, care teams of 8, and 1,000, 100,000 and 1,000,000 patients, to
//! show the cost does not grow with the number of patients. Also: how long loading the view
//! takes and how much memory it holds, and how soon a withdrawal applies (the change log read
//! by the watcher). Prints figures; not a test.
//!
//! cargo bench -p sekisho --bench patient_decision

use std::time::{Duration, Instant};

use sekisho::patients::PatientView;
use sekisho::policy::{Authorizer, write_default_policies};
use sekisho::sessions::Session;
use sekisho_store::Store;

const USERS: usize = 5_000;
const FACILITIES: usize = 500;
const TEAM: usize = 8;

async fn fill(store: &Store, patients: usize) {
    let t = sekisho_store::now();
    let mut tx = store.pool().begin().await.unwrap();
    for u in 0..USERS {
        sqlx::query("INSERT INTO users (user_id, name, facility, roles, status, created_at, updated_at) VALUES ($1, 'x', $2, 'nurse', 'active', $3, $3)")
            .bind(format!("user{u:06}"))
            .bind(format!("fac{:03}", u % FACILITIES))
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    // Many rows per statement: filling a million patients row by row takes minutes.
    const ROWS: usize = 100;
    for chunk in (0..patients).collect::<Vec<_>>().chunks(ROWS) {
        let mut patients_sql = String::from(
            "INSERT INTO patients (patient_id, name, consent, consent_changed_at, consent_changed_by, created_at) VALUES ",
        );
        let mut team_sql = String::from(
            "INSERT INTO care_team (patient_id, member_kind, member, added_at, added_by) VALUES ",
        );
        for (i, p) in chunk.iter().enumerate() {
            let consent = if p % 10 == 0 { "withdrawn" } else { "granted" };
            if i > 0 {
                patients_sql.push(',');
            }
            patients_sql.push_str(&format!("('P{p:07}', 'x', '{consent}', {t}, 'bench', {t})"));
            let mut members = std::collections::BTreeSet::new();
            for m in 0..TEAM {
                members.insert(if m == 0 {
                    ("facility", format!("fac{:03}", p % FACILITIES))
                } else {
                    ("user", format!("user{:06}", (p * 7 + m * 13) % USERS))
                });
            }
            for (j, (kind, member)) in members.iter().enumerate() {
                if i > 0 || j > 0 {
                    team_sql.push(',');
                }
                team_sql.push_str(&format!("('P{p:07}', '{kind}', '{member}', {t}, 'bench')"));
            }
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(patients_sql))
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(team_sql))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    allowed: usize,
    load: Duration,
    view_mib: f64,
    withdrawal: Duration,
}

async fn run(patients: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let fill_start = Instant::now();
    fill(&store, patients).await;
    // The fill leaves a WAL of gigabytes; the first commit after it would copy it back into
    // the database, and that would be timed as the withdrawal below.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.pool())
        .await
        .unwrap();
    eprintln!(
        "  filled {patients} patients in {:.1} s",
        fill_start.elapsed().as_secs_f64()
    );
    write_default_policies(&dir.path().join("policies")).unwrap();
    let auth = Authorizer::load(dir.path().join("policies"), false, 300).unwrap();
    let rss_before = rss_kib();
    let load_start = Instant::now();
    let view = PatientView::load(&store, Duration::from_secs(3600))
        .await
        .unwrap();
    let load = load_start.elapsed();
    let view_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    assert_eq!(view.len(), patients);
    let n = 20_000;
    let mut lat = Vec::with_capacity(n);
    let mut allowed = 0;
    let started = Instant::now();
    for i in 0..n {
        let p = (i * 7919) % patients;
        let u = (p * 7 + 13) % USERS; // a member of p's care team (m = 1)
        let session = Session {
            session_id: String::new(),
            terminal: "t".into(),
            user_id: format!("user{u:06}"),
            facility: format!("fac{:03}", u % FACILITIES),
            roles: vec!["nurse".into()],
            method: "password".into(),
            qualification: None,
            expires_at: i64::MAX,
            must_change_password: false,
            card: None,
            live: Default::default(),
        };
        let t = Instant::now();
        let r = auth.patient(
            &view,
            &session,
            &format!("P{p:07}"),
            sekisho_policies::Action::View,
            None,
            true,
        );
        lat.push(t.elapsed());
        allowed += usize::from(r.is_ok());
    }
    let total = started.elapsed().as_secs_f64();
    lat.sort();
    // Withdrawals made elsewhere (the CLI), each followed by what the watcher does on its next
    // poll; the slowest of ten is reported.
    let mut withdrawal = Duration::ZERO;
    for k in 0..10 {
        let victim = format!("P{:07}", 1 + k * (patients / 10).max(1));
        let t = Instant::now();
        sekisho_store::patients::set_consent(
            &store,
            &victim,
            sekisho_store::patients::Consent::Withdrawn,
            "bench",
            None,
        )
        .await
        .unwrap();
        let recorded = t.elapsed();
        view.catch_up(&store).await.unwrap();
        eprintln!(
            "    withdrawal {k}: recorded in {:.2} ms, applied {:.2} ms later",
            recorded.as_secs_f64() * 1e3,
            (t.elapsed() - recorded).as_secs_f64() * 1e3
        );
        withdrawal = withdrawal.max(t.elapsed());
        assert_eq!(
            view.get(&victim).unwrap().facts.consent,
            sekisho_store::patients::Consent::Withdrawn
        );
    }
    Figures {
        rate: n as f64 / total,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        p999: percentile(&lat, 0.999),
        allowed,
        load,
        view_mib,
        withdrawal,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "patient-route decision (in-memory patient view + Cedar), one thread, SQLite, {USERS} users, {FACILITIES} facilities, care teams of {TEAM}"
    );
    let sizes: Vec<usize> = std::env::var("SEKISHO_BENCH_PATIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    let mut results = Vec::new();
    for patients in sizes {
        let f = rt.block_on(run(patients));
        println!(
            "  {patients:>9} patients: {:>8.0} decisions/s  p50 {:>6.1} us  p99 {:>6.1} us  p99.9 {:>6.1} us  ({} allowed of 20000; 1 in 10 withdrawn)",
            f.rate,
            f.p50.as_secs_f64() * 1e6,
            f.p99.as_secs_f64() * 1e6,
            f.p999.as_secs_f64() * 1e6,
            f.allowed
        );
        println!(
            "  {:>9}           view loaded in {:.2} s, {:.0} MiB; a withdrawal applied at most {:.2} ms after it was recorded (of 10; plus up to one 250 ms poll)",
            "",
            f.load.as_secs_f64(),
            f.view_mib,
            f.withdrawal.as_secs_f64() * 1e3
        );
        results.push((patients, f.p99));
    }
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        println!(
            "p99 growth from {} to {} patients: {:.2}x (should stay near 1); target p99 <= 100 us",
            first.0,
            last.0,
            last.1.as_secs_f64() / first.1.as_secs_f64()
        );
    }
}
