//! TLS-level tests: which certificates the handshake refuses (and that each refusal is audited
//! with its reason), protocol versions and suites, and that a resumed session is checked like a
//! new one.

mod common;

use std::time::Duration;

use common::*;

/// A terminal certificate signed by the gateway's own issuing CA, with chosen validity and EKU.
fn our_ca_cert(
    g: &Gateway,
    name: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    client_auth: bool,
) -> (String, String) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    let ca_dir = g.data.join("ca");
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("issuing.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(ca_dir.join("issuing.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::OrganizationName, "f1");
    p.distinguished_name.push(DnType::CommonName, name);
    p.subject_alt_names = vec![SanType::URI(
        format!("urn:sekisho:terminal:f1:{name}")
            .try_into()
            .unwrap(),
    )];
    p.extended_key_usages = vec![if client_auth {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    p.not_before = not_before;
    p.not_after = not_after;
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let dir = g.dir.path();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.to_str().unwrap().into(), k.to_str().unwrap().into())
}

#[test]
fn expired_not_yet_valid_and_wrong_purpose_certificates_fail_the_handshake() {
    for db in BOTH {
        let g = Gateway::start(db);
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        for (name, nb, na, client_auth, reason) in [
            (
                "old",
                now - day * 30,
                now - day,
                true,
                "certificate_expired",
            ),
            (
                "future",
                now + day,
                now + day * 30,
                true,
                "certificate_not_yet_valid",
            ),
            (
                "server-eku",
                now - day,
                now + day,
                false,
                "certificate_wrong_purpose",
            ),
        ] {
            let (c, k) = our_ca_cert(&g, name, nb, na, client_auth);
            let (status, _, code) = g.curl("/", &["--cert", &c, "--key", &k]);
            assert_eq!(status, 0, "{db:?} {name}: must not get an HTTP answer");
            assert_ne!(code, 0);
            g.wait_audit(|r| r["event"] == "tls" && r["reason"] == reason);
        }
        // The same CA with a valid profile but never registered: refused at the HTTP layer.
        let now = time::OffsetDateTime::now_utc();
        let (c, k) = our_ca_cert(&g, "ghost", now - day, now + day, true);
        let (status, body, _) = g.curl("/", &["--cert", &c, "--key", &k]);
        assert_eq!(status, 403, "{db:?}");
        assert!(body.contains("terminal_not_registered"));
        assert_eq!(g.upstream.hits(), 0);
    }
}

fn s_client(g: &Gateway, extra: &[&str], request: &str) -> (bool, String) {
    let (c, k) = g.cert("t1");
    let port = format!("127.0.0.1:{}", g.port);
    let mut args = vec![
        "s_client",
        "-connect",
        &port,
        "-servername",
        "localhost",
        "-CAfile",
        g.out.join("ca.crt").to_str().unwrap(),
        "-cert",
        &c,
        "-key",
        &k,
        "-ign_eof",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&args, request)
}

const GET: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[test]
fn only_tls13_and_tls12_with_ecdhe_aead() {
    let g = Gateway::start(Db::Sqlite);
    let (ok, out) = s_client(&g, &[], GET);
    assert!(
        ok && out.contains("TLSv1.3") && out.contains("HTTP/1.1 200"),
        "{out}"
    );
    assert!(out.contains("Verify return code: 0"), "{out}");
    let (ok, out) = s_client(
        &g,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        GET,
    );
    assert!(
        ok && out.contains("HTTP/1.1 200"),
        "TLS 1.2 with ECDHE + AES-GCM works: {out}"
    );
    for cipher in [
        "AES128-SHA",
        "AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES128-SHA256",
    ] {
        let (_, out) = s_client(&g, &["-tls1_2", "-cipher", cipher], GET);
        assert!(
            !out.contains("HTTP/1.1 200"),
            "{cipher} must be refused: {out}"
        );
    }
    // OpenSSL 3 refuses TLS 1.1 on its own at the default security level; at level 0 it
    // offers it, so the refusal seen is the gateway's: an alert it sent.
    let (_, out) = s_client(&g, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], GET);
    assert!(
        !out.contains("HTTP/1.1 200"),
        "TLS 1.1 must be refused: {out}"
    );
    assert!(
        out.contains("SSL alert number"),
        "the gateway, not the client, refuses TLS 1.1: {out}"
    );
}

#[test]
fn a_resumed_session_is_checked_like_a_new_one() {
    for db in BOTH {
        let g = Gateway::start(db);
        let sess = g.dir.path().join("t1.sess");
        let sess = sess.to_str().unwrap();
        let (ok, out) = s_client(&g, &["-sess_out", sess], GET);
        assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
        // TLS 1.3 tickets are single-use: each connection saves the next one.
        let (_, out) = s_client(&g, &["-sess_in", sess, "-sess_out", sess], GET);
        assert!(
            out.contains("Reused"),
            "{db:?}: the session should resume: {out}"
        );
        assert!(out.contains("HTTP/1.1 200"), "{out}");
        // Suspended: the resumed session gets the refusal, not the upstream.
        run_ok(&[
            "terminal",
            "suspend",
            "--data-dir",
            g.data_str(),
            "--terminal",
            "t1",
        ]);
        std::thread::sleep(Duration::from_millis(800));
        let (ok, out) = s_client(&g, &["-sess_in", sess, "-sess_out", sess], GET);
        assert!(ok, "{out}");
        assert!(out.contains("Reused"), "{db:?}: {out}");
        assert!(
            out.contains("HTTP/1.1 403") && out.contains("terminal_suspended"),
            "{db:?}: {out}"
        );
        // Revoked: the CRL changed, so the old session cache is gone and the full handshake fails.
        run_ok(&[
            "terminal",
            "revoke",
            "--data-dir",
            g.data_str(),
            "--terminal",
            "t1",
        ]);
        std::thread::sleep(Duration::from_millis(800));
        let (_, out) = s_client(&g, &["-sess_in", sess], GET);
        assert!(
            !out.contains("HTTP/1.1"),
            "{db:?}: a revoked terminal gets no HTTP answer: {out}"
        );
        assert!(!out.contains("Reused"), "{db:?}: {out}");
        assert_eq!(g.upstream.hits(), 2);
    }
}
