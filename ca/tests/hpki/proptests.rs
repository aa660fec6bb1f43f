//! Random and mutated input: the hcRole parser and the verifier never panic.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hcrole_parser_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_subject_directory_attributes(&bytes);
    }

    #[test]
    fn hcrole_parser_never_panics_on_mutated_structures(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut v = sekisho_ca_sda();
        for (i, b) in flips {
            let i = i % v.len();
            v[i] ^= b;
        }
        v.truncate(cut % (v.len() + 1) + 1);
        let _ = parse_subject_directory_attributes(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn certificate_paths_never_panic_on_mutated_certificates(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut der = fx().hpki.doctor.der.clone();
        for (i, b) in flips {
            let i = i % der.len();
            der[i] ^= b;
        }
        let _ = hcrole_from_certificate(&der);
        // A mutated certificate never verifies.
        prop_assert!(fx().verifier.verify(&der, now()).is_err() || der == fx().hpki.doctor.der);
    }
}

/// A valid SubjectDirectoryAttributes value with two roles, to mutate.
fn sekisho_ca_sda() -> Vec<u8> {
    static SDA: OnceLock<Vec<u8>> = OnceLock::new();
    SDA.get_or_init(|| {
        let cert = fx()
            .hpki
            .issue(
                &EeSpec::authentication("A", "B", "C", &["Medical Doctor", "Director of Clinic"]),
                "sda",
            )
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der).unwrap();
        let sda = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "2.5.29.9")
            .unwrap()
            .value
            .to_vec();
        assert_eq!(
            parse_subject_directory_attributes(&sda)
                .unwrap()
                .unwrap()
                .roles
                .len(),
            2
        );
        sda
    })
    .clone()
}
