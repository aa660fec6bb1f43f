//! Throughput and latency of `PolicyEngine::decide` on one thread with realistic requests
//! (care team of 20 users and 5 facilities). Prints figures; not a test. Target: p99 ≤ 50 µs.
//!
//!     cargo bench -p sekisho-policies --bench decide

use std::hint::black_box;
use std::time::{Duration, Instant};

use sekisho_policies::{
    AdminKind, AdminObject, AuthMethod, Consent, DecisionRequest, PatientResource, PolicyAction,
    PolicyEngine, Principal, RequestContext, Resource, default_policy_dir,
};

fn requests() -> Vec<DecisionRequest> {
    let team_users: Vec<String> = (0..20).map(|i| format!("user-{i:03}")).collect();
    let team_facilities: Vec<String> = (0..5).map(|i| format!("facility-{i}")).collect();
    let patient = |consent| {
        Resource::Patient(PatientResource {
            id: "patient-0012345".into(),
            consent,
            care_team_users: team_users.clone(),
            care_team_facilities: team_facilities.clone(),
        })
    };
    let user = |id: &str, q: &str, f: &str, roles: &[&str]| Principal {
        id: id.into(),
        qualification: q.into(),
        facility: f.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    let ctx = |auth, card, bg| RequestContext {
        auth_method: auth,
        patient_card_present: card,
        consent_window: false,
        break_glass: bg,
        break_glass_write: false,
        tunnel: true,
        hour: 14,
        network_requires_card: true,
        entry_facility: None,
    };
    let mut out = Vec::new();
    let quals = ["physician", "nurse", "pharmacist", "care-manager", "clerk"];
    for (i, q) in quals.iter().enumerate() {
        // A care-team member by name (the last in the set), one through a facility, an outsider.
        out.push(DecisionRequest {
            principal: user("user-019", q, "facility-x", &[]),
            action: PolicyAction::View,
            resource: patient(Consent::Granted),
            context: ctx(AuthMethod::Hpki, true, false),
        });
        out.push(DecisionRequest {
            principal: user("user-900", q, &format!("facility-{}", i % 5), &[]),
            action: PolicyAction::View,
            resource: patient(Consent::Granted),
            context: ctx(AuthMethod::Password, false, false),
        });
        out.push(DecisionRequest {
            principal: user("user-901", q, "facility-x", &[]),
            action: PolicyAction::Write,
            resource: patient(Consent::Granted),
            context: ctx(AuthMethod::Password, true, false),
        });
    }
    out.push(DecisionRequest {
        principal: user("user-003", "physician", "facility-1", &[]),
        action: PolicyAction::Confirm,
        resource: patient(Consent::Granted),
        context: RequestContext {
            entry_facility: Some("facility-1".into()),
            ..ctx(AuthMethod::Hpki, true, false)
        },
    });
    out.push(DecisionRequest {
        principal: user("user-er", "physician", "facility-er", &[]),
        action: PolicyAction::View,
        resource: patient(Consent::None),
        context: ctx(AuthMethod::Hpki, false, true),
    });
    out.push(DecisionRequest {
        principal: user("user-er", "physician", "facility-er", &[]),
        action: PolicyAction::BreakGlass,
        resource: patient(Consent::None),
        context: ctx(AuthMethod::Hpki, false, false),
    });
    out.push(DecisionRequest {
        principal: user("admin-1", "", "facility-1", &["facility-admin"]),
        action: PolicyAction::ManageUsers,
        resource: Resource::Admin(AdminObject {
            id: "user-005".into(),
            kind: AdminKind::User,
            facility: "facility-2".into(),
        }),
        context: ctx(AuthMethod::Password, false, false),
    });
    out
}

fn main() {
    let engine = PolicyEngine::load(&default_policy_dir()).expect("default policy set");
    let requests = requests();
    let allowed = requests.iter().filter(|r| engine.decide(r).allowed).count();

    // Warm up.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        for r in &requests {
            black_box(engine.decide(black_box(r)));
        }
    }

    // Throughput: back-to-back decisions.
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            black_box(engine.decide(black_box(r)));
        }
    }
    let elapsed = start.elapsed();
    let n = rounds * requests.len();
    let per_sec = n as f64 / elapsed.as_secs_f64();

    // Latency: each decision timed on its own.
    let mut samples = Vec::with_capacity(n);
    for _ in 0..rounds {
        for r in &requests {
            let t = Instant::now();
            black_box(engine.decide(black_box(r)));
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p99 = pct(0.99);
    println!(
        "decide: {} request shapes ({allowed} allowed), care team 20 users / 5 facilities, 1 thread",
        requests.len()
    );
    println!("  throughput: {per_sec:.0} decisions/s ({n} decisions in {elapsed:.2?})");
    println!(
        "  latency:    p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        us(pct(0.50)),
        us(pct(0.90)),
        us(p99),
        us(pct(0.999)),
        us(samples[samples.len() - 1])
    );
    println!(
        "  target p99 <= 50 µs: {}",
        if us(p99) <= 50.0 { "met" } else { "NOT met" }
    );
}
