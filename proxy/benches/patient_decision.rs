//! The cost of a patient-route decision (the patient's consent and care team read from the
//! store, then the Cedar policy decision) with a realistic network in the store: 100,000
//! patients, 5,000 users, 500 facilities, and the same with 1,000 patients, to show the cost
//! does not grow with the number of patients. Prints figures; not a test.
//!
//! cargo bench -p sekisho --bench patient_decision

use std::time::{Duration, Instant};

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
    for p in 0..patients {
        let id = format!("P{p:07}");
        sqlx::query("INSERT INTO patients (patient_id, name, consent, consent_changed_at, consent_changed_by, created_at) VALUES ($1, 'x', $2, $3, 'bench', $3)")
            .bind(&id)
            .bind(if p % 10 == 0 { "withdrawn" } else { "granted" })
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
        for m in 0..TEAM {
            let (kind, member) = if m == 0 {
                ("facility", format!("fac{:03}", p % FACILITIES))
            } else {
                ("user", format!("user{:06}", (p * 7 + m * 13) % USERS))
            };
            sqlx::query("INSERT INTO care_team (patient_id, member_kind, member, added_at, added_by) VALUES ($1, $2, $3, $4, 'bench') ON CONFLICT DO NOTHING")
                .bind(&id)
                .bind(kind)
                .bind(member)
                .bind(t)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

async fn run(patients: usize) -> (f64, Duration, Duration, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let fill_start = Instant::now();
    fill(&store, patients).await;
    eprintln!(
        "  filled {patients} patients in {:.1} s",
        fill_start.elapsed().as_secs_f64()
    );
    write_default_policies(&dir.path().join("policies")).unwrap();
    let auth = Authorizer::load(dir.path().join("policies"), false, 300).unwrap();
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
        };
        let t = Instant::now();
        let r = auth
            .patient(
                &store,
                &session,
                &format!("P{p:07}"),
                sekisho_policies::Action::View,
                None,
                true,
            )
            .await;
        lat.push(t.elapsed());
        allowed += usize::from(r.is_ok());
    }
    let total = started.elapsed().as_secs_f64();
    lat.sort();
    (
        n as f64 / total,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        allowed,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "patient-route decision (store lookup + Cedar), one thread, SQLite, {USERS} users, {FACILITIES} facilities, care teams of {TEAM}"
    );
    let mut results = Vec::new();
    for patients in [1_000, 100_000] {
        let (rate, p50, p99, p999, allowed) = rt.block_on(run(patients));
        println!(
            "  {patients:>7} patients: {rate:>8.0} decisions/s  p50 {:>6.1} us  p99 {:>6.1} us  p99.9 {:>6.1} us  ({allowed} allowed of 20000; 1 in 10 patients withdrawn)",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            p999.as_secs_f64() * 1e6
        );
        results.push(p99);
    }
    println!(
        "p99 growth from 1,000 to 100,000 patients: {:.2}x (should stay near 1)",
        results[1].as_secs_f64() / results[0].as_secs_f64()
    );
}
