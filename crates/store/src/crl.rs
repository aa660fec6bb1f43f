//! The CRL the issuing CA last signed. It lives in the store so that every replica serves the
//! same one, and its number only grows.

use anyhow::Result;
use sqlx::{Any, Row, Transaction};

use super::{Store, bump_generation};

#[derive(Clone, Debug)]
pub struct StoredCrl {
    pub number: i64,
    pub der: Vec<u8>,
    pub next_update: i64,
    /// The CRLs of retired issuing CAs, signed at the same time with the same number.
    pub retired: Vec<Vec<u8>>,
}

impl StoredCrl {
    /// Every CRL to install: the issuing CA's, then the retired CAs'.
    pub fn all(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.der.clone())
            .chain(self.retired.iter().cloned())
            .collect()
    }
}

/// Each DER prefixed with its length as 8 hex digits.
fn pack(crls: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in crls {
        out.extend_from_slice(format!("{:08x}", c.len()).as_bytes());
        out.extend_from_slice(c);
    }
    out
}

fn unpack(mut b: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = b
            .get(..8)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .filter(|&n| b.len() >= 8 + n)
            .ok_or_else(|| anyhow::anyhow!("the stored retired CRLs are damaged"))?;
        out.push(b[8..8 + len].to_vec());
        b = &b[8 + len..];
    }
    Ok(out)
}

pub async fn current(store: &Store) -> Result<Option<StoredCrl>> {
    let row = sqlx::query(
        "SELECT crl_number, der, next_update, retired_crls FROM crl_state WHERE id = 1",
    )
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(StoredCrl {
            number: r.try_get("crl_number")?,
            der: r.try_get("der")?,
            next_update: r.try_get("next_update")?,
            retired: unpack(
                &r.try_get::<Option<Vec<u8>>, _>("retired_crls")?
                    .unwrap_or_default(),
            )?,
        })
    })
    .transpose()
}

/// The number the next CRL gets; also takes the row's write lock first so that two writers
/// re-signing at once serialise (SQLite's write lock, PostgreSQL's row lock).
pub async fn lock_next_number(tx: &mut Transaction<'_, Any>) -> Result<i64> {
    sqlx::query("UPDATE crl_state SET crl_number = crl_number WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let n: Option<i64> = sqlx::query_scalar("SELECT crl_number FROM crl_state WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(n.map_or(1, |n| n + 1))
}

pub async fn save(tx: &mut Transaction<'_, Any>, crl: &StoredCrl) -> Result<()> {
    sqlx::query(
        "INSERT INTO crl_state (id, crl_number, der, next_update, retired_crls) VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET crl_number = $1, der = $2, next_update = $3, retired_crls = $4",
    )
    .bind(crl.number)
    .bind(&crl.der)
    .bind(crl.next_update)
    .bind(pack(&crl.retired))
    .execute(&mut **tx)
    .await?;
    bump_generation(tx).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn packed_crls_come_back_and_damage_is_refused() {
        let crls = vec![vec![0x30, 1, 2], Vec::new(), vec![9; 300]];
        assert_eq!(super::unpack(&super::pack(&crls)).unwrap(), crls);
        assert!(super::unpack(b"").unwrap().is_empty());
        assert!(super::unpack(b"0000000a012").is_err());
        assert!(super::unpack(b"zz").is_err());
    }
}
