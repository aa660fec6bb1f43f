//! The patient-card CA: made once under Sekisho's root, loaded from the CA directory, and
//! issuing the cards' certificates (see the documentation of `crate::patient_card`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use super::verify::PatientCardAnchors;
use super::{
    EXT_KEY_USAGE_ARCS, PATIENT_CA_LIFETIME_DAYS, PATIENT_CARD_COMMON_NAME, eku_extension_value,
    is_valid_patient_id, patient_urn,
};
use crate::CaError;
use crate::authority::{
    CLOCK_SKEW, IssuedCert, ca_params, now_seconds, parse_cert, serial_hex, validity,
};
use crate::cadir::{self, NewFile};
use crate::encoding::{pem_encode, pem_or_der, random_serial};
use crate::keyfile::{KeyPem, decode_key_file, encode_key_file};

/// The patient-card CA, loaded from the CA directory with its key in memory.
pub struct PatientCardCa {
    dir: PathBuf,
    root_der: Vec<u8>,
    ca_der: Vec<u8>,
    ca_not_after: OffsetDateTime,
    pub(super) issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for PatientCardCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientCardCa")
            .field("dir", &self.dir)
            .field("ca_not_after", &self.ca_not_after)
            .finish_non_exhaustive()
    }
}

/// Loads the patient-card CA of the CA in `dir`, making it first if it does not exist yet
/// (which needs the root key, `root.key`, and `passphrase` if the root key is encrypted). The
/// new key is stored encrypted with `passphrase` when one is given. Safe against a concurrent
/// call: the CA files are never overwritten, and the loser of a race loads the winner's CA.
pub fn ensure_patient_card_ca(
    dir: &Path,
    passphrase: Option<&str>,
) -> Result<PatientCardCa, CaError> {
    PatientCardCa::ensure(dir, passphrase)
}

impl PatientCardCa {
    /// See [`ensure_patient_card_ca`].
    pub fn ensure(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        let exists = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
        if exists(cadir::PATIENT_CA_CERT) || exists(cadir::PATIENT_CA_KEY) {
            return Self::load(dir, passphrase);
        }
        match Self::create(dir, passphrase) {
            Err(CaError::AlreadyExists { .. }) => Self::load(dir, passphrase),
            other => other,
        }
    }

    /// Loads an existing patient-card CA; [`CaError::Missing`] if there is none.
    pub fn load(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        let root_der = read_cert(dir, cadir::ROOT_CERT)?;
        let ca_der = read_cert(dir, cadir::PATIENT_CA_CERT)?;
        let key_der = read_key(dir, cadir::PATIENT_CA_KEY, passphrase)?;
        Self::from_parts(dir, root_der, ca_der, &key_der)
    }

    fn create(dir: &Path, passphrase: Option<&str>) -> Result<PatientCardCa, CaError> {
        if passphrase == Some("") {
            return Err(CaError::EmptyPassphrase);
        }
        let inconsistent = |reason: String| CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        let root_der = read_cert(dir, cadir::ROOT_CERT)?;
        let root_key_der = match read_key(dir, cadir::ROOT_KEY, passphrase) {
            Err(CaError::Missing(path)) => return Err(CaError::RootKeyNeeded(path)),
            other => other?,
        };
        let root_key = KeyPair::try_from(root_key_der.as_slice())
            .map_err(|e| CaError::BadKey(format!("root.key: {e}")))?;
        let (name, root_not_after) = {
            let root = parse_cert(&root_der).map_err(|e| inconsistent(format!("root.crt: {e}")))?;
            if root_key.public_key_raw() != root.public_key().subject_public_key.data.as_ref() {
                return Err(inconsistent("root.key is not the key of root.crt".into()));
            }
            let name = root
                .subject()
                .iter_organization()
                .next()
                .and_then(|o| o.as_str().ok())
                .unwrap_or("Sekisho")
                .to_owned();
            (name, root.validity().not_after.to_datetime())
        };
        let root_issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(root_der.as_slice()), root_key)
                .map_err(|e| inconsistent(format!("root.crt: {e}")))?;

        let now = now_seconds();
        let not_after = (now + time::Duration::days(PATIENT_CA_LIFETIME_DAYS)).min(root_not_after);
        if not_after <= now + time::Duration::days(1) {
            return Err(CaError::InvalidLifetime(format!(
                "the root CA expires on {}: renew the CA before making a patient-card CA",
                root_not_after.date()
            )));
        }
        let mut key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(
            &name,
            &format!("{name} Patient Card CA"),
            0,
            now - CLOCK_SKEW,
            not_after,
        )?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &root_issuer)?;
        drop(root_issuer);

        let key_der = Zeroizing::new(key.serialize_der());
        key.zeroize();
        let key_file = encode_key_file(&key_der, passphrase)?;
        let cert_pem = pem_encode("CERTIFICATE", cert.der());
        cadir::write_all_or_nothing(
            dir,
            &[
                NewFile {
                    name: cadir::PATIENT_CA_KEY,
                    contents: key_file.as_bytes(),
                    mode: cadir::KEY_MODE,
                },
                NewFile {
                    name: cadir::PATIENT_CA_CERT,
                    contents: cert_pem.as_bytes(),
                    mode: cadir::CERT_MODE,
                },
            ],
        )?;
        Self::from_parts(dir, root_der, cert.der().to_vec(), &key_der)
    }

    fn from_parts(
        dir: &Path,
        root_der: Vec<u8>,
        ca_der: Vec<u8>,
        key_pkcs8: &[u8],
    ) -> Result<PatientCardCa, CaError> {
        let inconsistent = |reason: String| CaError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        // The same checks as the gateway's: what this CA issues, the gateway accepts.
        PatientCardAnchors::new(&root_der, &ca_der)
            .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
        let key = KeyPair::try_from(key_pkcs8)
            .map_err(|e| CaError::BadKey(format!("{}: {e}", cadir::PATIENT_CA_KEY)))?;
        let ca_not_after = {
            let ca = parse_cert(&ca_der)
                .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
            if key.public_key_raw() != ca.public_key().subject_public_key.data.as_ref() {
                return Err(inconsistent(format!(
                    "{} is not the key of {}",
                    cadir::PATIENT_CA_KEY,
                    cadir::PATIENT_CA_CERT
                )));
            }
            ca.validity().not_after.to_datetime()
        };
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca_der.as_slice()), key)
            .map_err(|e| inconsistent(format!("{}: {e}", cadir::PATIENT_CA_CERT)))?;
        Ok(PatientCardCa {
            dir: dir.to_path_buf(),
            root_der,
            ca_der,
            ca_not_after,
            issuer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the CA certificate is, for the gateway's configuration.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(cadir::PATIENT_CA_CERT)
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    pub fn ca_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.ca_der)
    }

    /// Root and patient-card CA, PEM: what [`PatientCardAnchors::from_pem_bundle`] reads.
    pub fn anchors_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root_der) + &self.ca_pem()
    }

    /// The verifier's trust anchors for this CA's cards.
    pub fn anchors(&self) -> PatientCardAnchors {
        PatientCardAnchors::new(&self.root_der, &self.ca_der)
            .expect("checked when the CA was loaded")
    }

    /// When the CA expires: no card is issued beyond it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.ca_not_after
    }

    /// A new ECDSA P-256 key for a card, and its certificate for `patient_id` (the profile is in
    /// the documentation of [`patient_card`](super)). Returns the certificate and the key
    /// (PKCS#8). `lifetime` is usually
    /// [`DEFAULT_PATIENT_CARD_LIFETIME`](super::DEFAULT_PATIENT_CARD_LIFETIME); it must end
    /// before the CA does.
    pub fn issue_patient_card(
        &self,
        patient_id: &str,
        lifetime: Duration,
    ) -> Result<(IssuedCert, KeyPem), CaError> {
        let mut key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = self.sign_patient_card(patient_id, &key, lifetime);
        let pem = KeyPem::from_pkcs8_der(&Zeroizing::new(key.serialize_der()));
        key.zeroize();
        Ok((cert?, pem?))
    }

    fn sign_patient_card(
        &self,
        patient_id: &str,
        key: &impl PublicKeyData,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        if !is_valid_patient_id(patient_id) {
            return Err(CaError::InvalidPatientId(patient_id.to_owned()));
        }
        let (not_before, not_after) = validity(lifetime, self.ca_not_after, "patient-card CA")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, PATIENT_CARD_COMMON_NAME);
        params.distinguished_name = dn;
        let urn = patient_urn(patient_id)
            .try_into()
            .map_err(|e| CaError::Signing(format!("patient URN: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(urn)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &EXT_KEY_USAGE_ARCS,
            eku_extension_value(),
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(key, &self.issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            serial_hex: serial_hex(&der)?,
            der,
            not_before,
            not_after,
        })
    }
}

fn read_cert(dir: &Path, name: &str) -> Result<Vec<u8>, CaError> {
    let bytes = cadir::read(dir, name)?;
    pem_or_der(&bytes, &["CERTIFICATE"], "certificate").map_err(|e| CaError::Inconsistent {
        dir: dir.to_path_buf(),
        reason: format!("{name}: {e}"),
    })
}

fn read_key(
    dir: &Path,
    name: &str,
    passphrase: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, CaError> {
    let path = dir.join(name);
    let text = Zeroizing::new(cadir::read(dir, name)?);
    let text = std::str::from_utf8(&text)
        .map_err(|_| CaError::BadKey(format!("{}: not a PEM file", path.display())))?;
    decode_key_file(text, passphrase, &path)
}
