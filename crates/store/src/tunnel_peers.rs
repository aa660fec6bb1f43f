//! Tunnel peers (R-TERM-3): a terminal's WireGuard public key and its fixed address in the
//! tunnel subnet. Addresses are handed out lowest-free-first and never change for a terminal
//! (a new key on re-enrollment keeps the address); the UNIQUE constraints settle two processes
//! assigning at once (the loser retries).

use std::net::Ipv4Addr;

use anyhow::{Result, bail};
use sqlx::Row;

use super::{Store, now};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRow {
    pub terminal: String,
    /// Base64, as `wg` writes keys.
    pub public_key: String,
    pub address: Ipv4Addr,
}

/// The tunnel subnet: the gateway's own address and the prefix length.
#[derive(Clone, Copy, Debug)]
pub struct Subnet {
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Host addresses a terminal may get: inside the subnet, not the network or broadcast
    /// address, not the gateway's.
    fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let bits = 32 - u32::from(self.prefix.clamp(8, 30));
        let mask = if bits == 32 { 0 } else { u32::MAX << bits };
        let network = u32::from(self.gateway) & mask;
        let gateway = u32::from(self.gateway);
        (1..(1u32 << bits) - 1)
            .map(move |i| network + i)
            .filter(move |a| *a != gateway)
            .map(Ipv4Addr::from)
    }
}

/// Records `public_key` for `terminal`, keeping its address if it has one, else assigning the
/// lowest free one. Returns the address.
pub async fn assign(
    store: &Store,
    terminal: &str,
    public_key: &str,
    subnet: Subnet,
) -> Result<Ipv4Addr> {
    for _ in 0..5 {
        if let Some(existing) = get(store, terminal).await? {
            let mut tx = store.begin_write().await?;
            sqlx::query(
                "UPDATE tunnel_peers SET public_key = $1, updated_at = $2 WHERE terminal = $3",
            )
            .bind(public_key)
            .bind(now())
            .bind(terminal)
            .execute(&mut *tx)
            .await?;
            // Running gateways re-read their peers when the change counter moves.
            super::bump_generation(&mut tx).await?;
            tx.commit().await?;
            return Ok(existing.address);
        }
        let used: std::collections::HashSet<String> =
            sqlx::query("SELECT address FROM tunnel_peers")
                .fetch_all(store.pool())
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("address"))
                .collect::<Result<_, _>>()?;
        let Some(address) = subnet.hosts().find(|a| !used.contains(&a.to_string())) else {
            bail!(
                "the tunnel subnet {}/{} has no free address left; widen tunnel.address's prefix",
                subnet.gateway,
                subnet.prefix
            );
        };
        let t = now();
        let mut tx = store.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO tunnel_peers (terminal, public_key, address, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(terminal)
        .bind(public_key)
        .bind(address.to_string())
        .bind(t)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                // Running gateways re-read their peers when the change counter moves.
                super::bump_generation(&mut tx).await?;
                tx.commit().await?;
                return Ok(address);
            }
            // Someone took the address (or the key is another terminal's): look again.
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                if sqlx::query("SELECT 1 FROM tunnel_peers WHERE public_key = $1")
                    .bind(public_key)
                    .fetch_optional(store.pool())
                    .await?
                    .is_some()
                {
                    bail!("that WireGuard public key belongs to another terminal");
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("could not assign a tunnel address (too much contention); try again")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub async fn get(store: &Store, terminal: &str) -> Result<Option<PeerRow>> {
    let row =
        sqlx::query("SELECT terminal, public_key, address FROM tunnel_peers WHERE terminal = $1")
            .bind(terminal)
            .fetch_optional(store.pool())
            .await?;
    row.map(|r| peer_row(&r)).transpose()
}

/// The peers the gateway should have: those of active terminals of facilities neither
/// suspended nor closed.
pub async fn active(store: &Store) -> Result<Vec<PeerRow>> {
    sqlx::query(
        "SELECT p.terminal, p.public_key, p.address FROM tunnel_peers p
         JOIN terminals t ON t.terminal = p.terminal
         WHERE t.status = 'active'
           AND NOT EXISTS (SELECT 1 FROM facilities f WHERE f.facility = t.facility AND f.status <> 'active')
         ORDER BY p.address",
    )
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(peer_row)
    .collect()
}

fn peer_row(r: &sqlx::any::AnyRow) -> Result<PeerRow> {
    let address: String = r.try_get("address")?;
    Ok(PeerRow {
        terminal: r.try_get("terminal")?,
        public_key: r.try_get("public_key")?,
        address: address.parse()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    #[test]
    fn hosts_skip_network_broadcast_and_gateway() {
        let s = Subnet {
            gateway: Ipv4Addr::new(10, 77, 0, 1),
            prefix: 29,
        };
        let v: Vec<_> = s.hosts().map(|a| a.to_string()).collect();
        assert_eq!(
            v,
            [
                "10.77.0.2",
                "10.77.0.3",
                "10.77.0.4",
                "10.77.0.5",
                "10.77.0.6"
            ]
        );
    }

    #[tokio::test]
    async fn addresses_are_assigned_kept_and_exhausted_on_both_databases() {
        for db in TestDb::both().await {
            let store = db.store.clone();
            for t in ["t1", "t2", "t3"] {
                sqlx::query(
                    "INSERT INTO terminals (terminal, facility, status, created_at, updated_at) VALUES ($1, 'f1', 'active', 0, 0)",
                )
                .bind(t)
                .execute(store.pool())
                .await
                .unwrap();
            }
            let subnet = Subnet {
                gateway: Ipv4Addr::new(10, 77, 0, 1),
                prefix: 30,
            };
            let a1 = assign(&store, "t1", "k1", subnet).await.unwrap();
            assert_eq!(a1, Ipv4Addr::new(10, 77, 0, 2));
            // A new key keeps the address.
            assert_eq!(assign(&store, "t1", "k1b", subnet).await.unwrap(), a1);
            assert_eq!(get(&store, "t1").await.unwrap().unwrap().public_key, "k1b");
            // A /30 has one host besides the gateway: the next terminal finds none.
            let e = assign(&store, "t2", "k2", subnet).await.unwrap_err();
            assert!(e.to_string().contains("no free address"), "{e}");
            let wide = Subnet {
                prefix: 24,
                ..subnet
            };
            assert_eq!(
                assign(&store, "t2", "k2", wide).await.unwrap(),
                Ipv4Addr::new(10, 77, 0, 3)
            );
            // A key cannot be shared between terminals.
            assert!(assign(&store, "t3", "k2", wide).await.is_err());
            // Only active terminals are peers.
            sqlx::query("UPDATE terminals SET status = 'suspended' WHERE terminal = 't2'")
                .execute(store.pool())
                .await
                .unwrap();
            let peers = active(&store).await.unwrap();
            assert_eq!(peers.len(), 1);
            assert_eq!(peers[0].terminal, "t1");
            // Nor are the terminals of a suspended facility (R-LOG-3), until it is resumed.
            let mut tx = store.begin_write().await.unwrap();
            crate::facilities::ensure_open(&mut tx, "f1").await.unwrap();
            crate::facilities::set_status(
                &mut tx,
                "f1",
                crate::facilities::Change::Suspend,
                "x",
                "",
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            assert!(active(&store).await.unwrap().is_empty());
            let mut tx = store.begin_write().await.unwrap();
            crate::facilities::set_status(
                &mut tx,
                "f1",
                crate::facilities::Change::Resume,
                "x",
                "",
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(active(&store).await.unwrap().len(), 1);
        }
    }
}
