//! Replacing the issuing CA — its five years run out, or its key is in doubt — while the
//! terminals it certified keep working. The root signs a new issuing CA with a name of its own
//! (`OU=Generation N`: a relying party matches a CRL to a certificate by issuer name, so two
//! issuing CAs must not share one), and the old one moves to `retired/`, where it still signs
//! the CRLs for its certificates until the last of them has expired. The root key is read only
//! here and when the CA is made.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{DnType, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use zeroize::Zeroizing;

use crate::CaError;
use crate::authority::{
    Authority, CLOCK_SKEW, ISSUING_LIFETIME_DAYS, KeyAlgorithm, ca_params, now_seconds, parse_cert,
    serial_hex,
};
use crate::cadir;
use crate::crl::{self, Crl, RevokedEntry};
use crate::encoding::pem_encode;
use crate::keyfile::{decode_key_file, encode_key_file};

/// Where replaced issuing CAs are kept: `issuing-<serial>.crt` and `.key`.
pub const RETIRED_DIR: &str = "retired";

/// A replaced issuing CA that may still have certificates in use.
pub(crate) struct Retired {
    pub der: Vec<u8>,
    key_id: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn inconsistent(dir: &Path, reason: String) -> CaError {
    CaError::Inconsistent {
        dir: dir.to_path_buf(),
        reason,
    }
}

/// The retired issuing CAs that have not expired, each checked: signed by the root, its key
/// its own.
pub(crate) fn load_retired(
    dir: &Path,
    passphrase: Option<&str>,
    root_der: &[u8],
) -> Result<Vec<Retired>, CaError> {
    let rdir = dir.join(RETIRED_DIR);
    let mut names: Vec<String> = match fs::read_dir(&rdir) {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("issuing-") && n.ends_with(".crt"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CaError::io("read", &rdir, e)),
    };
    names.sort();
    let root = parse_cert(root_der).map_err(|e| inconsistent(dir, format!("root.crt: {e}")))?;
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for name in names {
        let bytes = cadir::read(&rdir, &name)?;
        let der = crate::encoding::pem_or_der(&bytes, &["CERTIFICATE"], "certificate")
            .map_err(|e| inconsistent(dir, format!("retired/{name}: {e}")))?;
        let cert =
            parse_cert(&der).map_err(|e| inconsistent(dir, format!("retired/{name}: {e}")))?;
        if cert.validity().not_after.to_datetime() <= now {
            continue; // every certificate it issued has expired with it
        }
        cert.verify_signature(Some(root.public_key()))
            .map_err(|_| inconsistent(dir, format!("retired/{name} is not signed by root.crt")))?;
        let key_name = name.replace(".crt", ".key");
        let key_text = Zeroizing::new(cadir::read(&rdir, &key_name)?);
        let key_text = std::str::from_utf8(&key_text)
            .map_err(|_| CaError::BadKey(format!("retired/{key_name}: not a PEM file")))?;
        let key_der = decode_key_file(key_text, passphrase, &rdir.join(&key_name))?;
        let key = KeyPair::try_from(key_der.as_slice())
            .map_err(|e| CaError::BadKey(format!("retired/{key_name}: {e}")))?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(inconsistent(
                dir,
                format!("retired/{key_name} is not the key of {name}"),
            ));
        }
        let key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| {
                inconsistent(dir, format!("retired/{name} has no subject key identifier"))
            })?;
        drop(cert);
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(der.as_slice()), key)
            .map_err(|e| inconsistent(dir, format!("retired/{name}: {e}")))?;
        out.push(Retired {
            der,
            key_id,
            issuer,
        });
    }
    Ok(out)
}

impl Authority {
    /// The retired issuing CAs still trusted (DER), oldest first.
    pub fn retired_ders(&self) -> Vec<&[u8]> {
        self.retired.iter().map(|r| r.der.as_slice()).collect()
    }

    /// One CRL per retired issuing CA, listing `entries` (every revoked serial: a serial
    /// another CA issued is simply never met under this one).
    pub fn retired_crls(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<Crl>, CaError> {
        self.retired
            .iter()
            .map(|r| {
                crl::build(
                    &r.issuer,
                    &r.key_id,
                    entries,
                    crl_number,
                    this_update,
                    next_update,
                )
            })
            .collect()
    }

    /// Replaces the issuing CA in `dir` with a new one signed by the root; the old one goes to
    /// `retired/`. Returns the old and new issuing CAs' serials. The files are written so that
    /// a crash leaves either the old CA in place or both (the retired copy is written first).
    pub fn rotate_issuing(
        dir: &Path,
        passphrase: Option<&str>,
    ) -> Result<(String, String), CaError> {
        let current = Authority::load(dir, passphrase)?;
        let root_path = dir.join(cadir::ROOT_KEY);
        let root_text = Zeroizing::new(cadir::read(dir, cadir::ROOT_KEY)?);
        let root_text = std::str::from_utf8(&root_text)
            .map_err(|_| CaError::BadKey(format!("{}: not a PEM file", root_path.display())))?;
        let root_key_der = decode_key_file(root_text, passphrase, &root_path)?;
        let root_key = KeyPair::try_from(root_key_der.as_slice())
            .map_err(|e| CaError::BadKey(format!("root.key: {e}")))?;
        let algorithm = if root_key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else {
            KeyAlgorithm::Rsa2048
        };
        let root_not_after = parse_cert(current.root_der())
            .map_err(|e| inconsistent(dir, format!("root.crt: {e}")))?
            .validity()
            .not_after
            .to_datetime();
        let root_issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(current.root_der()), root_key)
                .map_err(|e| inconsistent(dir, format!("root.crt: {e}")))?;

        let rdir = dir.join(RETIRED_DIR);
        let generation = 2 + match fs::read_dir(&rdir) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".crt"))
                .count(),
            Err(_) => 0,
        };
        let now = now_seconds();
        let not_after = (now + time::Duration::days(ISSUING_LIFETIME_DAYS)).min(root_not_after);
        let mut params = ca_params(
            current.name(),
            &format!("{} Issuing CA", current.name()),
            0,
            now - CLOCK_SKEW,
            not_after,
        )?;
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("Generation {generation}"),
        );
        params.use_authority_key_identifier_extension = true;
        let key = algorithm.generate()?;
        let cert = params.signed_by(&key, &root_issuer)?;
        let key_file = encode_key_file(&Zeroizing::new(key.serialize_der()), passphrase)?;

        let old_serial = serial_hex(current.issuing_der())?;
        let new_serial = serial_hex(cert.der())?;
        fs::create_dir_all(&rdir).map_err(|e| CaError::io("create", &rdir, e))?;
        fs::set_permissions(&rdir, fs::Permissions::from_mode(0o700))
            .map_err(|e| CaError::io("chmod", &rdir, e))?;
        let old_key = cadir::read(dir, cadir::ISSUING_KEY)?;
        cadir::write_private_file(&rdir.join(format!("issuing-{old_serial}.key")), &old_key)?;
        write_cert(
            &rdir.join(format!("issuing-{old_serial}.crt")),
            current.issuing_der(),
        )?;
        cadir::write_private_file(&dir.join(cadir::ISSUING_KEY), key_file.as_bytes())?;
        write_cert(&dir.join(cadir::ISSUING_CERT), cert.der())?;
        // What was written must load.
        Authority::load(dir, passphrase)?;
        Ok((old_serial, new_serial))
    }
}

fn write_cert(path: &Path, der: &[u8]) -> Result<(), CaError> {
    cadir::write_private_file(path, pem_encode("CERTIFICATE", der).as_bytes())?;
    fs::set_permissions(path, fs::Permissions::from_mode(cadir::CERT_MODE))
        .map_err(|e| CaError::io("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaOptions, RevocationReason, TerminalId, parse_crl};

    #[test]
    fn a_new_issuing_ca_with_its_own_name_and_the_old_one_still_signing_its_crl() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create(
            dir.path(),
            &CaOptions {
                algorithm: KeyAlgorithm::EcdsaP256,
                passphrase: Some("pass".into()),
                name: "Test Net".into(),
            },
        )
        .unwrap();
        let old_issuing = ca.issuing_der().to_vec();
        let id = TerminalId::new("f1", "t1").unwrap();
        let (old_cert, _) = ca
            .issue_terminal(
                &id,
                std::time::Duration::from_secs(86_400),
                KeyAlgorithm::EcdsaP256,
            )
            .unwrap();
        assert!(Authority::rotate_issuing(dir.path(), Some("wrong")).is_err());
        let (old, new) = Authority::rotate_issuing(dir.path(), Some("pass")).unwrap();
        assert_eq!(old, serial_hex(&old_issuing).unwrap());
        let ca = Authority::load(dir.path(), Some("pass")).unwrap();
        assert_eq!(serial_hex(ca.issuing_der()).unwrap(), new);
        assert_eq!(ca.retired_ders(), [old_issuing.as_slice()]);
        // Two issuers, two names; the new one is the root's too.
        let (new_cert, _) = ca
            .issue_terminal(
                &id,
                std::time::Duration::from_secs(86_400),
                KeyAlgorithm::EcdsaP256,
            )
            .unwrap();
        let issuer = |der: &[u8]| parse_cert(der).unwrap().issuer().to_string();
        assert_ne!(issuer(&old_cert.der), issuer(&new_cert.der));
        assert!(
            issuer(&new_cert.der).contains("Generation 2"),
            "{}",
            issuer(&new_cert.der)
        );
        let root = parse_cert(ca.root_der()).unwrap();
        parse_cert(ca.issuing_der())
            .unwrap()
            .verify_signature(Some(root.public_key()))
            .unwrap();
        // The retired CA signs a CRL that revokes its own certificate.
        let entries = [RevokedEntry {
            serial_hex: old_cert.serial_hex.clone(),
            revoked_at: OffsetDateTime::now_utc(),
            reason: RevocationReason::KeyCompromise,
        }];
        let now = OffsetDateTime::now_utc();
        let crls = ca
            .retired_crls(&entries, 7, now, now + time::Duration::hours(1))
            .unwrap();
        assert_eq!(crls.len(), 1);
        let parsed = parse_crl(&crls[0].der, &old_issuing).unwrap();
        assert_eq!(parsed.entries[0].serial_hex, old_cert.serial_hex);
        assert!(parse_crl(&crls[0].der, ca.issuing_der()).is_err());
        // A second rotation: generation 3, two retired.
        Authority::rotate_issuing(dir.path(), Some("pass")).unwrap();
        let ca = Authority::load(dir.path(), Some("pass")).unwrap();
        assert_eq!(ca.retired_ders().len(), 2);
        assert!(
            issuer(
                &ca.issue_terminal(
                    &id,
                    std::time::Duration::from_secs(60),
                    KeyAlgorithm::EcdsaP256
                )
                .unwrap()
                .0
                .der
            )
            .contains("Generation 3")
        );
    }
}
