//! The signed identity assertion the upstream receives in `Sekisho-Assertion`: a short-lived
//! ES256 JWT naming the terminal (and, in later stages, the person and patient). Its public key
//! is published as a JWKS (`jwks.json` in the data dir and on the management listener), so the
//! upstream trusts the assertion, not headers a client could have sent.

use std::path::Path;

use anyhow::{Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sekisho_ca::KeyPem;
use serde::Serialize;

/// Lifetime of an assertion; the upstream must see it within this many seconds.
pub const LIFETIME_SECS: i64 = 30;

pub struct AssertionSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    /// `{"alg":"ES256","typ":"JWT","kid":…}`, base64url, made once.
    header_b64: String,
    issuer: String,
    audience: String,
    /// What is published: this key's JWK first, then recently retired ones.
    jwks: serde_json::Value,
}

/// What the gateway vouches for on one request.
#[derive(Serialize, Debug, Default)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: &'a str,
    /// `urn:sekisho:terminal:<facility>:<terminal>`
    pub sub: &'a str,
    pub terminal: &'a str,
    pub facility: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<&'a str>,
    /// The person signed in on the terminal, their facility, qualification (hcRole) and how
    /// they signed in; absent on terminal-only routes with nobody signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_facility: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualification: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<&'a str>,
    /// On patient routes: why the access is made (HL7 purpose of use: TREAT, later ETREAT /
    /// BTG for break-glass) and what consent rests on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_basis: Option<&'a str>,
    /// R-ROLE-2: on `enter`, the id the gateway gave the assistant's entry (the application
    /// keeps it pending under that id); on `confirm`, the entry confirmed, with who entered it
    /// and their facility from the gateway's own record. The application registers an entry
    /// only on a `confirm` assertion naming it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_facility: Option<&'a str>,
    /// R-ACCT-8: on admin routes, the facility whose users or terminals are managed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_facility: Option<&'a str>,
    /// R-PAT-4, R-BG-1: the emergency grant the access rests on, so the application can show
    /// a banner (and `purpose_of_use` is `BTG`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassClaim<'a>>,
    pub action: &'a str,
    pub route: &'a str,
}

/// The `break_glass` claim.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassClaim<'a> {
    pub id: &'a str,
    pub reason_category: &'a str,
    /// Unix time the grant ends.
    pub expires: i64,
}

/// Retired assertion keys' public JWKs, beside the key, each with `retired_at` (Unix time):
/// still published for [`RETIRED_PUBLISHED_SECS`] after a rotation, so an upstream checking an
/// assertion signed just before it (or by a replica not yet restarted) still finds its key.
pub const RETIRED_FILE: &str = "assertion-retired.jwks";
/// A week: every replica restarted with the new key, every upstream's JWKS cache refreshed.
pub const RETIRED_PUBLISHED_SECS: i64 = 7 * 86_400;

/// The P-256 key in a PKCS#8 PEM file, made (0600) when missing.
fn load_key(key_path: &Path, rng: &SystemRandom) -> Result<EcdsaKeyPair> {
    let pkcs8 = if key_path.exists() {
        let pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        KeyPem::from_pem(&pem)
            .with_context(|| format!("{} is not a PKCS#8 PEM key", key_path.display()))?
            .der()
            .to_vec()
    } else {
        let der = new_key(rng)?;
        sekisho_ca::write_private_file(
            key_path,
            KeyPem::from_pkcs8_der(&der)?.as_str().as_bytes(),
        )?;
        der
    };
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
        .map_err(|_| anyhow::anyhow!("{} is not a P-256 key", key_path.display()))
}

fn new_key(rng: &SystemRandom) -> Result<Vec<u8>> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| anyhow::anyhow!("cannot generate the assertion key"))?;
    Ok(doc.as_ref().to_vec())
}

/// The key's JWK and its `kid`, the RFC 7638 thumbprint.
fn jwk_of(key: &EcdsaKeyPair) -> (String, serde_json::Value) {
    let public = key.public_key().as_ref();
    // Uncompressed point: 0x04 || x || y.
    let (x, y) = (
        B64URL.encode(&public[1..33]),
        B64URL.encode(&public[33..65]),
    );
    // RFC 7638 thumbprint: the required members in lexicographic order, no spaces.
    let thumb_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = B64URL.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        thumb_input.as_bytes(),
    ));
    let jwk = serde_json::json!({"kty":"EC","crv":"P-256","x":x,"y":y,"kid":kid,"use":"sig","alg":"ES256"});
    (kid, jwk)
}

fn retired_path(key_path: &Path) -> std::path::PathBuf {
    key_path.with_file_name(RETIRED_FILE)
}

/// The retired keys' JWKs, newest first, with their `retired_at`.
pub fn retired(key_path: &Path) -> Result<Vec<serde_json::Value>> {
    let path = retired_path(key_path);
    match std::fs::read(&path) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .with_context(|| format!("{} is not a JWKS", path.display()))?;
            Ok(v["keys"].as_array().cloned().unwrap_or_default())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the assertion key with a new one; the old one's public JWK is kept in
/// [`RETIRED_FILE`] first (so a crash in between leaves the old key working and listed).
/// Returns (old kid, new kid). Gateways sign with the new key from their next start.
pub fn rotate(key_path: &Path) -> Result<(String, String)> {
    let rng = SystemRandom::new();
    let old = load_key(key_path, &rng)?;
    let (old_kid, mut old_jwk) = jwk_of(&old);
    old_jwk["retired_at"] = time::OffsetDateTime::now_utc().unix_timestamp().into();
    let mut keys = vec![old_jwk];
    keys.extend(retired(key_path)?);
    write_if_changed(
        &retired_path(key_path),
        &serde_json::to_vec_pretty(&serde_json::json!({ "keys": keys }))?,
    )?;
    let der = new_key(&rng)?;
    sekisho_ca::write_private_file(key_path, KeyPem::from_pkcs8_der(&der)?.as_str().as_bytes())?;
    let new = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| anyhow::anyhow!("the new assertion key does not load"))?;
    Ok((old_kid, jwk_of(&new).0))
}

impl AssertionSigner {
    /// Creates the key on first use (0600) and writes the JWKS next to it: this key, and the
    /// keys retired in the last week (`rotate`).
    pub fn load_or_create(
        key_path: &Path,
        jwks_path: &Path,
        issuer: String,
        audience: String,
    ) -> Result<Self> {
        let rng = SystemRandom::new();
        let key = load_key(key_path, &rng)?;
        let (kid, jwk) = jwk_of(&key);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut published = vec![jwk.clone()];
        for mut k in retired(key_path)? {
            let at = k["retired_at"].as_i64().unwrap_or(0);
            if now - at < RETIRED_PUBLISHED_SECS && k["kid"] != kid.as_str() {
                if let Some(o) = k.as_object_mut() {
                    o.remove("retired_at");
                }
                published.push(k);
            }
        }
        let jwks = serde_json::to_vec_pretty(&serde_json::json!({ "keys": published }))?;
        write_if_changed(jwks_path, &jwks)?;
        let header = serde_json::json!({"alg":"ES256","typ":"JWT","kid":kid});
        Ok(AssertionSigner {
            key,
            rng,
            header_b64: B64URL.encode(serde_json::to_vec(&header)?),
            kid,
            issuer,
            audience,
            jwks: serde_json::json!({ "keys": published }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }

    pub fn sign(&self, claims: &Claims<'_>) -> Result<String> {
        let payload = B64URL.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{}.{}", self.header_b64, payload);
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| anyhow::anyhow!("assertion signing failed"))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(sig.as_ref())))
    }
}

fn write_if_changed(path: &Path, data: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    // Whole or not at all, and synced: the retired keys' file is what keeps old assertions
    // verifiable, and a crash must not leave it (or the JWKS) torn or a temporary file behind.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sekisho_store::durable::replace_file(dir, path, data, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signs_a_jwt_the_jwks_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let s = AssertionSigner::load_or_create(
            &dir.path().join("a.key"),
            &dir.path().join("jwks.json"),
            "sekisho.test".into(),
            "http://up".into(),
        )
        .unwrap();
        let claims = Claims {
            iss: s.issuer(),
            aud: s.audience(),
            iat: 10,
            nbf: 10,
            exp: 40,
            jti: "r1",
            sub: "urn:sekisho:terminal:f:t",
            terminal: "t",
            facility: "f",
            action: "view",
            route: "/",
            ..Default::default()
        };
        let jwt = s.sign(&claims).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], s.kid());
        let mut point = vec![4u8];
        point.extend(B64URL.decode(k["x"].as_str().unwrap()).unwrap());
        point.extend(B64URL.decode(k["y"].as_str().unwrap()).unwrap());
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        let sig = B64URL.decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        key.verify(input.as_bytes(), &sig).unwrap();
        assert!(key.verify(b"other", &sig).is_err());
        let payload: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["terminal"], "t");
        assert!(payload.get("patient").is_none());
        // Reloading keeps the same key.
        let again = AssertionSigner::load_or_create(
            &dir.path().join("a.key"),
            &dir.path().join("jwks.json"),
            "x".into(),
            "y".into(),
        )
        .unwrap();
        assert_eq!(again.kid(), s.kid());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_rotated_key_signs_and_the_retired_one_stays_published_for_a_week() {
        let dir = tempfile::tempdir().unwrap();
        let (key, jwks) = (
            dir.path().join("assertion.key"),
            dir.path().join("jwks.json"),
        );
        let load = || {
            AssertionSigner::load_or_create(&key, &jwks, "https://gw".into(), "https://app".into())
                .unwrap()
        };
        let first = load();
        let (old, new) = rotate(&key).unwrap();
        assert_eq!(old, first.kid());
        assert_ne!(old, new);
        let second = load();
        assert_eq!(second.kid(), new);
        let kids: Vec<String> = second.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kids, [new.clone(), old.clone()]);
        assert!(second.jwks()["keys"][1].get("retired_at").is_none());
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&jwks).unwrap()).unwrap();
        assert_eq!(on_disk, second.jwks());
        // A week later the retired key is no longer published (still listed in the file).
        let mut r = retired(&key).unwrap();
        r[0]["retired_at"] =
            (time::OffsetDateTime::now_utc().unix_timestamp() - RETIRED_PUBLISHED_SECS - 1).into();
        std::fs::write(
            dir.path().join(RETIRED_FILE),
            serde_json::to_vec(&serde_json::json!({ "keys": r })).unwrap(),
        )
        .unwrap();
        assert_eq!(load().jwks()["keys"].as_array().unwrap().len(), 1);
    }
}
