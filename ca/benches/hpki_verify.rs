//! HPKI login verifications per second on one thread: the card's certificate against the test
//! HPKI CA (chain to the root, both CRLs along the chain, the HPKI profile, the identity and
//! hcRole), then the card's RSA signature over a login challenge; for the test CA's doctor and
//! for its `critical-policy` certificate (critical certificatePolicies, as real cards have).
//! Not a test: prints figures.
//!
//! Each login verifies two RSA-2048 signatures (the card's certificate by its CA, the login
//! challenge by the card): the CA certificates' and the CRLs' signatures are verified once, when
//! the verifier is built.
//!
//! cargo bench -p sekisho-ca --bench hpki_verify

use std::hint::black_box;
use std::time::Instant;

use rustls_pki_types::UnixTime;
use sekisho_ca::hpki::{HpkiVerifier, Qualification, TestHpki};

const N: usize = 2000;
const ROUNDS: usize = 5;
/// Per core, from the issue.
const TARGET_PER_SECOND: f64 = 2000.0;

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let hpki = TestHpki::generate(dir.path()).expect("test HPKI CA");
    let verifier = HpkiVerifier::new(&hpki.trust_config()).expect("verifier");
    let challenge = b"sekisho-login-v1 gateway=demo terminal=hosp1/term1 nonce=3f9a1c5e7b2d4068";
    let signature = hpki.doctor.sign(challenge).expect("card signature");
    let at = UnixTime::now();

    // Warm up, and check that what is measured succeeds.
    for _ in 0..100 {
        let id = verifier
            .verify_login(&hpki.doctor.der, challenge, &signature, at)
            .expect("the doctor's login verifies");
        assert_eq!(id.qualification(), Some(Qualification::MedicalDoctor));
    }

    let critical_signature = hpki
        .critical_policy
        .sign(challenge)
        .expect("card signature");
    let mut all_met = true;
    for (what, der, sig) in [
        ("doctor", &hpki.doctor.der, &signature),
        (
            "critical-policy",
            &hpki.critical_policy.der,
            &critical_signature,
        ),
    ] {
        let mut rates = Vec::with_capacity(ROUNDS);
        for round in 1..=ROUNDS {
            let start = Instant::now();
            for _ in 0..N {
                let id =
                    verifier.verify_login(black_box(der), black_box(challenge), black_box(sig), at);
                black_box(id.expect("verifies"));
            }
            let secs = start.elapsed().as_secs_f64();
            let rate = N as f64 / secs;
            println!(
                "{what} round {round}: {N} logins in {:.1} ms: {rate:.0}/s ({:.1} µs each)",
                secs * 1e3,
                secs * 1e6 / N as f64
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[ROUNDS / 2];
        println!(
            "hpki_verify {what}: median {median:.0} verifications/s on one thread (chain + 2 CRLs + login signature; 2 RSA-2048 verifications each)"
        );
        all_met &= median >= TARGET_PER_SECOND;
    }
    println!(
        "target >= {TARGET_PER_SECOND:.0}/s per core: {}",
        if all_met { "met" } else { "NOT met" }
    );
}
