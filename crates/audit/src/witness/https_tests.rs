//! The HTTPS witness over real TLS (a rustls/hyper receiver made in the test, serving
//! `receive` on a directory witness): what it takes and refuses, and a witness that was down
//! catching up, on SQLite and PostgreSQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sekisho_store::testdb::TestDb;

use super::tests::{eventually, failures, gauge, quick, signed};
use super::*;
use crate::tests::{ORIGIN, fill, key, open_log};
use crate::{Verifier, verify_witnessed};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Witness test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// `receive` on `witness` over TLS at `addr`, until the task is aborted.
async fn serve(
    addr: SocketAddr,
    pki: &Pki,
    witness: DirWitness,
    token: &'static str,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, witness) = (acceptor.clone(), witness.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let witness = witness.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(receive(&witness, Some(token), req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    })
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

const TOKEN: &str = "witness-token-0123456789";

fn client(pki: &Pki, addr: SocketAddr, token: &str) -> HttpsWitness {
    HttpsWitness::new(
        "peer",
        &format!("https://localhost:{}/audit/witness", addr.port()),
        pki.ca_pem.as_bytes(),
        Some(zeroize::Zeroizing::new(token.to_string())),
        Duration::from_secs(2),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_witness_takes_newer_checkpoints_and_refuses_the_rest() {
    let pki = pki();
    let tmp = tempfile::tempdir().unwrap();
    let k = key();
    let addr = free_addr();
    let witness = DirWitness::new(tmp.path())
        .require_signature(vec![Verifier::parse(&k.verifier_key()).unwrap()]);
    let server = serve(addr, &pki, witness, TOKEN).await;
    let w = client(&pki, addr, TOKEN);
    assert_eq!(w.held().await.unwrap(), None);
    let c5 = signed(&k, ORIGIN, 5, "");
    assert_eq!(w.submit(&c5).await.unwrap(), Outcome::Accepted);
    assert_eq!(w.held().await.unwrap(), Some(c5.clone()));
    assert_eq!(w.submit(&c5).await.unwrap(), Outcome::Accepted);
    assert_eq!(
        w.submit(&signed(&k, ORIGIN, 4, "")).await.unwrap(),
        Outcome::Refused {
            refusal: Refusal::Older {
                held: 5,
                offered: 4
            },
            held: Some(c5.clone())
        }
    );
    assert_eq!(
        w.submit(&signed(&k, ORIGIN, 5, "fork")).await.unwrap(),
        Outcome::Refused {
            refusal: Refusal::Fork { size: 5 },
            held: Some(c5.clone())
        }
    );
    // Not the log's key, not the token, not the witness's CA: failures, nothing taken.
    let err = w
        .submit(&signed(&self::key(), ORIGIN, 9, ""))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("403"), "{err:#}");
    let err = client(&pki, addr, "wrong-token").held().await.unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");
    let stranger = HttpsWitness::new(
        "peer",
        &format!("https://localhost:{}/", addr.port()),
        self::pki().ca_pem.as_bytes(),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(stranger.held().await.is_err());
    assert!(
        HttpsWitness::new(
            "x",
            "http://localhost/",
            pki.ca_pem.as_bytes(),
            None,
            Duration::from_secs(1)
        )
        .is_err()
    );
    assert_eq!(DirWitness::new(tmp.path()).latest().unwrap(), Some(c5));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_witness_that_was_down_gets_the_newest_checkpoint_when_back() {
    for db in TestDb::both().await {
        let kind = db.store.kind();
        let pki = pki();
        let tmp = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let k = key();
        let (log, metrics) = open_log(&db.store, &k, "gw1", 16).await;
        let pump = WitnessPump::start(
            db.store.clone(),
            log.checkpoints(),
            vec![Witness::https(client(&pki, addr, TOKEN))],
            quick(),
            metrics.witness.clone(),
        );
        // Down: appends go on, at full speed; failures are counted.
        let started = Instant::now();
        fill(&log, 64, 16).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{kind:?}");
        assert_eq!(metrics.failures.get(), 0);
        eventually("failures counted", || async {
            failures(&metrics.witness, "peer") > 0
        })
        .await;
        // Back: the newest reaches it.
        let server = serve(addr, &pki, DirWitness::new(tmp.path()), TOKEN).await;
        eventually("caught up", || async {
            DirWitness::new(tmp.path())
                .latest()
                .unwrap()
                .is_some_and(|c| c.size() == 64)
        })
        .await;
        // The gauge moves once the answer is back (just after the witness's files).
        eventually("the gauge says so", || async {
            gauge(&metrics.witness, "peer") == (64, 0)
        })
        .await;
        fill(&log, 16, 16).await;
        eventually("and keeps up", || async {
            DirWitness::new(tmp.path())
                .latest()
                .unwrap()
                .is_some_and(|c| c.size() == 80)
        })
        .await;
        log.shutdown().await;
        pump.stop(Duration::from_secs(2)).await;
        server.abort();
        let r = verify_witnessed(
            &db.store,
            &k.verifier_key(),
            vec![
                Witness::https(client(&pki, addr, TOKEN))
                    .notes()
                    .await
                    .unwrap_or_else(|_| {
                        // The receiver is stopped: read its directory instead.
                        WitnessCopy {
                            name: "peer".into(),
                            notes: DirWitness::new(tmp.path()).notes().unwrap(),
                        }
                    }),
            ],
        )
        .await
        .unwrap();
        assert!(r.is_clean(), "{kind:?}: {:#?}", r.problems);
    }
}
