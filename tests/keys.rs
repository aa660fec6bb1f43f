//! Rotating the gateway's signing keys (`sekisho keys rotate`, `docs/operations.md`): after a
//! restart the gateway signs assertions and checkpoints with the new keys; the JWKS still
//! lists the old assertion key, and `audit verify` checks the checkpoints of both keys — and
//! fails without the retired one, so the old checkpoints are really the old key's.

mod common;

use base64::Engine;
use common::*;

fn kid(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// The assertion the upstream got for one request through terminal t1.
fn assertion(g: &Gateway) -> String {
    let (status, body, _) = g.curl_t1("/debug/headers", &[]);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["headers"]["sekisho-assertion"][0]
        .as_str()
        .unwrap()
        .to_string()
}

fn verify(g: &Gateway) -> (bool, String) {
    let o = run(&["audit", "verify", "--data-dir", g.data_str()]);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn rotated_keys_sign_after_a_restart_and_the_old_ones_still_verify() {
    let mut g = Gateway::start(Db::Sqlite);
    let old_kid = kid(&assertion(&g));
    run_ok(&[
        "keys",
        "rotate",
        "--data-dir",
        g.data_str(),
        "--key",
        "assertion",
    ]);
    run_ok(&[
        "keys",
        "rotate",
        "--data-dir",
        g.data_str(),
        "--key",
        "checkpoint",
    ]);
    // Until it restarts, the gateway signs with the keys it started with.
    assert_eq!(kid(&assertion(&g)), old_kid);
    g.stop();
    g.serve();
    let jwt = assertion(&g);
    let new_kid = kid(&jwt);
    assert_ne!(new_kid, old_kid);
    let (_, jwks) = g.mgmt_get("/jwks.json").unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    assert!(verify_es256(&jwt, &jwks["keys"][0]));
    assert!(!verify_es256(&jwt, &jwks["keys"][1]));

    // Checkpoints of both keys are in the log: verify takes both, and needs the retired one.
    let (ok, out) = verify(&g);
    assert!(ok, "{out}");
    let retired = g.data.join("audit/checkpoint.retired");
    let kept = std::fs::read(&retired).unwrap();
    std::fs::remove_file(&retired).unwrap();
    let (ok, out) = verify(&g);
    assert!(
        !ok,
        "the old checkpoints verified without the old key: {out}"
    );
    std::fs::write(&retired, kept).unwrap();
    assert!(verify(&g).0);

    for action in ["assertion_key_rotated", "checkpoint_key_rotated"] {
        g.wait_audit(|r| {
            r["action"] == action
                && r["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(TEST_OPERATOR))
        });
    }
    let list = run_ok(&["keys", "list", "--data-dir", g.data_str()]);
    assert!(list.contains(&format!("kid {new_kid}  in use")), "{list}");
    assert!(
        list.contains(&format!("kid {old_kid}  retired, published")),
        "{list}"
    );
    assert!(list.contains("trusted (retired"), "{list}");
    // Without an operator nothing is rotated.
    let o = sekisho()
        .env_remove("SEKISHO_OPERATOR")
        .args([
            "keys",
            "rotate",
            "--data-dir",
            g.data_str(),
            "--key",
            "assertion",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(kid(&assertion(&g)), new_kid);
}

/// `sekisho ca rotate-issuing`: a new issuing CA signed by the root; the old one's terminals
/// keep working after the restart and are still revocable (it signs their CRL), the new one's
/// terminals get in, and the server certificate still chains to the root terminals hold.
#[test]
fn a_new_issuing_ca_takes_over_and_the_old_ones_terminals_stay_until_revoked() {
    for db in BOTH {
        let mut g = Gateway::start(db);
        let ok = |g: &Gateway, t: &str| {
            let (c, k) = g.cert(t);
            g.curl("/debug/headers", &["--cert", &c, "--key", &k]).0
        };
        assert_eq!(ok(&g, "t1"), 200);
        let out = run_ok(&["ca", "rotate-issuing", "--data-dir", g.data_str()]);
        assert!(out.contains("retired; the new issuing CA is"), "{out}");
        g.stop();
        g.serve();
        // The old CA's terminal, and the server's new certificate checked against the root.
        assert_eq!(ok(&g, "t1"), 200, "{db:?}");
        g.add_terminal("f1", "t2", &g.out.clone());
        let t2 = std::fs::read_to_string(g.out.join("t2.crt")).unwrap();
        let issuer = openssl(&["x509", "-noout", "-issuer"], &t2).1;
        assert!(issuer.contains("Generation 2"), "{issuer}");
        let (c, k) = g.cert("t2");
        let got = within_a_poll(
            || g.curl("/debug/headers", &["--cert", &c, "--key", &k]),
            |r| r.0 == 200,
        );
        assert_eq!(got.0, 200, "{db:?}: the new CA's terminal: {}", got.1);
        let crls = run_ok(&["ca", "crl", "--data-dir", g.data_str()]);
        assert_eq!(crls.matches("BEGIN X509 CRL").count(), 2, "{crls}");

        // Revoking the old CA's terminal: its CRL (signed by the retired CA) says so.
        run_ok(&[
            "terminal",
            "revoke",
            "--data-dir",
            g.data_str(),
            "--terminal",
            "t1",
            "--reason",
            "key-compromise",
        ]);
        let refused = within_a_poll(|| ok(&g, "t1"), |s| *s != 200);
        assert_ne!(
            refused, 200,
            "{db:?}: a revoked terminal of the retired CA got in"
        );
        assert_eq!(ok(&g, "t2"), 200);
        run_ok(&[
            "terminal",
            "revoke",
            "--data-dir",
            g.data_str(),
            "--terminal",
            "t2",
            "--reason",
            "key-compromise",
        ]);
        assert_ne!(within_a_poll(|| ok(&g, "t2"), |s| *s != 200), 200);
        g.wait_audit(|r| r["action"] == "issuing_ca_rotated");
        assert!(verify(&g).0);
    }
}
