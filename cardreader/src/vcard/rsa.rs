//! The virtual card's RSA key and the raw private-key operation that `PSO: COMPUTE DIGITAL
//! SIGNATURE` performs on an HPKI card (the host sends the padded block; the card computes
//! `m^d mod n` and nothing else).
//!
//! aws-lc-rs only signs with its own padding, so the raw operation is done here with
//! `num-bigint` (CRT, then a check with the public exponent). It is not constant-time: this is
//! a test card holding test keys, never a place for a real key.

use num_bigint::BigUint;

use crate::der;

/// Why a key, certificate or PIN cannot go on the virtual card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub &'static str);

impl From<der::DerError> for KeyError {
    fn from(_: der::DerError) -> Self {
        KeyError("malformed DER in the key or certificate")
    }
}

/// `rsaEncryption` (1.2.840.113549.1.1.1), the OID's content bytes.
const RSA_ENCRYPTION: [u8; 9] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];

pub struct RsaKey {
    n: BigUint,
    e: BigUint,
    p: BigUint,
    q: BigUint,
    dp: BigUint,
    dq: BigUint,
    qinv: BigUint,
    size: usize,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits)", self.n.bits())
    }
}

impl RsaKey {
    /// A key from PEM: PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<RsaKey, KeyError> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        match PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError("no private key in PEM"))? {
            PrivateKeyDer::Pkcs8(k) => RsaKey::from_pkcs8_der(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKey::from_pkcs1_der(k.secret_pkcs1_der()),
            _ => Err(KeyError("not an RSA key")),
        }
    }

    /// `PrivateKeyInfo { version, rsaEncryption, OCTET STRING { RSAPrivateKey } }`.
    pub fn from_pkcs8_der(input: &[u8]) -> Result<RsaKey, KeyError> {
        let (info, _) = der::expect(input, 0x30)?;
        let (_version, rest) = der::unsigned_integer(info)?;
        let (alg, rest) = der::expect(rest, 0x30)?;
        let (oid, _) = der::expect(alg, 0x06)?;
        if oid != RSA_ENCRYPTION {
            return Err(KeyError("not an RSA key"));
        }
        let (key, _) = der::expect(rest, 0x04)?;
        RsaKey::from_pkcs1_der(key)
    }

    /// `RSAPrivateKey { 0, n, e, d, p, q, dp, dq, qinv }` (two-prime only).
    pub fn from_pkcs1_der(input: &[u8]) -> Result<RsaKey, KeyError> {
        let (seq, _) = der::expect(input, 0x30)?;
        let (version, mut rest) = der::unsigned_integer(seq)?;
        if !version.is_empty() {
            return Err(KeyError("multi-prime RSA keys are not supported"));
        }
        let mut parts = Vec::with_capacity(8);
        for _ in 0..8 {
            let (v, r) = der::unsigned_integer(rest)?;
            parts.push(BigUint::from_bytes_be(v));
            rest = r;
        }
        let [n, e, _d, p, q, dp, dq, qinv]: [BigUint; 8] = parts
            .try_into()
            .map_err(|_| KeyError("RSA key with missing parts"))?;
        let bits = n.bits();
        if !(1024..=4096).contains(&bits) {
            return Err(KeyError("the RSA modulus must be 1024 to 4096 bits"));
        }
        if &p * &q != n || e < BigUint::from(3u8) || p.bits() < 2 || q.bits() < 2 {
            return Err(KeyError("inconsistent RSA key parts"));
        }
        let size = bits.div_ceil(8) as usize;
        Ok(RsaKey {
            n,
            e,
            p,
            q,
            dp,
            dq,
            qinv,
            size,
        })
    }

    /// Modulus length in bytes: the block the card signs and the signature it returns.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Big-endian modulus and public exponent.
    pub fn public_parts(&self) -> (Vec<u8>, Vec<u8>) {
        (self.n.to_bytes_be(), self.e.to_bytes_be())
    }

    /// `input^d mod n`, left-padded to the modulus length. `None` if `input` is not exactly
    /// `size()` bytes, is not below `n`, or the result does not check out.
    pub fn raw_private(&self, input: &[u8]) -> Option<Vec<u8>> {
        if input.len() != self.size {
            return None;
        }
        let m = BigUint::from_bytes_be(input);
        if m >= self.n {
            return None;
        }
        // CRT: s = m2 + q * (qinv * (m1 - m2) mod p).
        let m1 = (&m % &self.p).modpow(&self.dp, &self.p);
        let m2 = (&m % &self.q).modpow(&self.dq, &self.q);
        let diff = (&m1 + &self.p - (&m2 % &self.p)) % &self.p;
        let h = (&self.qinv * diff) % &self.p;
        let s = m2 + &self.q * h;
        // A wrong dp/dq/qinv in the file would give a wrong signature; never hand one out.
        if s.modpow(&self.e, &self.n) != m {
            return None;
        }
        let bytes = s.to_bytes_be();
        let mut out = vec![0; self.size - bytes.len()];
        out.extend_from_slice(&bytes);
        Some(out)
    }
}

/// Modulus and exponent of the RSA key in an X.509 certificate (DER), to check that a
/// certificate and a key belong together.
pub fn certificate_rsa_public(cert: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let (certificate, _) = der::expect(cert, 0x30)?;
    let (tbs, _) = der::expect(certificate, 0x30)?;
    let mut rest = tbs;
    // [0] version is optional.
    if rest.first() == Some(&0xA0) {
        rest = der::read(rest)?.1;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der::read(rest)?.1;
    }
    let (spki, _) = der::expect(rest, 0x30)?;
    let (alg, rest) = der::expect(spki, 0x30)?;
    let (oid, _) = der::expect(alg, 0x06)?;
    if oid != RSA_ENCRYPTION {
        return Err(KeyError("certificate key is not RSA"));
    }
    let (bits, _) = der::expect(rest, 0x03)?;
    let Some((&0, key)) = bits.split_first() else {
        return Err(KeyError("malformed public key bit string"));
    };
    let (seq, _) = der::expect(key, 0x30)?;
    let (n, rest) = der::unsigned_integer(seq)?;
    let (e, _) = der::unsigned_integer(rest)?;
    Ok((n.to_vec(), e.to_vec()))
}
