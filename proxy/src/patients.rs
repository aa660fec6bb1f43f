//! The patient facts every patient decision needs — consent, care team, open consent windows,
//! active emergency grants —
//! held in memory, so a decision costs no store round trip however many patients the network
//! has. Loaded whole at start; kept current from the store's change log (`changes`), which the
//! watcher reads whenever the change counter moves (every 250 ms at most), so a withdrawal or
//! a care-team change recorded anywhere applies on every replica within a poll; the replica that
//! made a change applies it at once ([`PatientView::refresh`]).
//!
//! Fail closed: the view is only trusted while the store has been read recently
//! ([`PatientView::is_current`]); a gateway cut off from its store refuses patient requests
//! (`policy_unavailable`) rather than deciding on facts that may have changed.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use sekisho_store::Store;
use sekisho_store::break_glass;
use sekisho_store::changes::{self, topic};
use sekisho_store::consent::{self, Window};
use sekisho_store::patients::{self, PatientFacts};

const SHARDS: usize = 64;
/// Changes read per round trip while catching up.
const CHANGES_PER_READ: i64 = 10_000;
/// More changed patients than this in one read (an import): reload everything instead.
const RELOAD_ABOVE: usize = 5_000;

/// What a decision about one patient reads.
#[derive(Clone, Debug)]
pub struct Patient {
    pub facts: PatientFacts,
    /// Open consent windows: (user, window).
    pub windows: Vec<(String, Window)>,
    /// Active break-glass grants.
    pub grants: Vec<Grant>,
}

/// An active emergency grant (R-PAT-4, R-BG-1): this physician, with this card, may access the
/// patient until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub card: String,
    pub category: String,
    pub allows_write: bool,
    pub starts_at: i64,
    pub expires_at: i64,
}

impl From<break_glass::Declaration> for Grant {
    fn from(d: break_glass::Declaration) -> Grant {
        Grant {
            id: d.id,
            user_id: d.user_id,
            card: d.card,
            category: d.category,
            allows_write: d.allows_write,
            starts_at: d.starts_at.unwrap_or(i64::MAX),
            expires_at: d.expires_at.unwrap_or(i64::MIN),
        }
    }
}

impl Patient {
    /// The open window of `user`, card-opened ones first, then the newest.
    pub fn window(&self, user: &str, at: i64) -> Option<&Window> {
        self.windows
            .iter()
            .filter(|(u, w)| u == user && w.expires_at > at)
            .map(|(_, w)| w)
            .min_by_key(|w| (w.basis != consent::Basis::PatientCard, -w.opened_at))
    }

    /// The grant of `user` signed in with `card` at `at`: the grant holds wherever that
    /// physician's card is signed in, and nowhere else.
    pub fn grant(&self, user: &str, card: Option<&str>, at: i64) -> Option<&Grant> {
        let card = card?;
        self.grants
            .iter()
            .filter(|g| {
                g.user_id == user && g.card == card && g.starts_at <= at && at < g.expires_at
            })
            .max_by_key(|g| g.expires_at)
    }
}

pub struct PatientView {
    shards: Vec<RwLock<HashMap<String, Patient>>>,
    hasher: RandomState,
    /// The last change applied.
    seen: AtomicI64,
    /// When the store was last read successfully, in ms since `epoch`.
    read_ms: AtomicU64,
    epoch: Instant,
    /// How long the view is trusted without a successful read of the store.
    max_age: Duration,
    /// Held from a read of the store to the write of what it read. Without it, two refreshes of
    /// one patient (the watcher's and a desk's) could land out of order and leave the older
    /// state — an ended grant still open — until the next change. Refreshes are rare (changes
    /// only); requests never take it.
    reading: tokio::sync::Mutex<()>,
}

impl PatientView {
    /// Loads every patient's facts and open windows.
    pub async fn load(store: &Store, max_age: Duration) -> Result<PatientView> {
        let view = PatientView {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            seen: AtomicI64::new(0),
            read_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            max_age,
            reading: tokio::sync::Mutex::new(()),
        };
        view.reload_all(store).await?;
        Ok(view)
    }

    fn shard(&self, id: &str) -> &RwLock<HashMap<String, Patient>> {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
    }

    /// The patient's facts as of the last change applied; `None` for an unknown patient.
    pub fn get(&self, id: &str) -> Option<Patient> {
        self.shard(id)
            .read()
            .expect("patient view lock")
            .get(id)
            .cloned()
    }

    /// Whether the view may be decided on: the store was read within `max_age`.
    pub fn is_current(&self) -> bool {
        let read = Duration::from_millis(self.read_ms.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(read) <= self.max_age
    }

    /// Notes a successful read of the store's change counter with nothing new for this view.
    pub fn mark_read(&self) {
        self.read_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// Applies the change log from the last change seen; reloads everything if the log was
    /// pruned past it.
    pub async fn catch_up(&self, store: &Store) -> Result<()> {
        loop {
            let from = self.seen.load(Ordering::Acquire);
            let Some(batch) = changes::since(store, from, CHANGES_PER_READ).await? else {
                return self.reload_all(store).await;
            };
            let mut ids: Vec<&str> = batch
                .iter()
                .filter(|c| c.topic == topic::PATIENT)
                .map(|c| c.item.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() > RELOAD_ABOVE {
                return self.reload_all(store).await;
            }
            for id in ids {
                self.refresh(store, id).await?;
            }
            if let Some(last) = batch.last() {
                self.seen.fetch_max(last.seq, Ordering::AcqRel);
            }
            if (batch.len() as i64) < CHANGES_PER_READ {
                self.mark_read();
                return Ok(());
            }
        }
    }

    /// Re-reads one patient now (after this replica changed it, or for a change in the log).
    pub async fn refresh(&self, store: &Store, id: &str) -> Result<()> {
        let _reading = self.reading.lock().await;
        let (facts, windows, grants) = tokio::try_join!(
            patients::facts(store, id),
            consent::open_windows(store, Some(id)),
            break_glass::for_patient(store, Some(id))
        )?;
        let mut shard = self.shard(id).write().expect("patient view lock");
        match facts {
            Some(facts) => {
                let windows = windows.into_iter().map(|w| (w.user_id, w.window)).collect();
                let grants = grants.into_iter().map(Grant::from).collect();
                shard.insert(
                    id.to_string(),
                    Patient {
                        facts,
                        windows,
                        grants,
                    },
                );
            }
            None => {
                shard.remove(id);
            }
        }
        Ok(())
    }

    async fn reload_all(&self, store: &Store) -> Result<()> {
        let _reading = self.reading.lock().await;
        // The counter first: a change committed while loading moves it past, and is applied
        // again on the next catch-up.
        let seen = store.generation().await?;
        let (all, windows, grants) = tokio::try_join!(
            patients::all_facts(store),
            consent::open_windows(store, None),
            break_glass::for_patient(store, None)
        )?;
        let mut fresh: Vec<HashMap<String, Patient>> =
            (0..SHARDS).map(|_| HashMap::new()).collect();
        for facts in all {
            let i = self.hasher.hash_one(facts.patient_id.as_str()) as usize % SHARDS;
            fresh[i].insert(
                facts.patient_id.clone(),
                Patient {
                    facts,
                    windows: Vec::new(),
                    grants: Vec::new(),
                },
            );
        }
        for w in windows {
            let i = self.hasher.hash_one(w.patient_id.as_str()) as usize % SHARDS;
            if let Some(p) = fresh[i].get_mut(&w.patient_id) {
                p.windows.push((w.user_id, w.window));
            }
        }
        for g in grants {
            let Some(patient) = g.patient_id.clone() else {
                continue;
            };
            let i = self.hasher.hash_one(patient.as_str()) as usize % SHARDS;
            if let Some(p) = fresh[i].get_mut(&patient) {
                p.grants.push(Grant::from(g));
            }
        }
        for (shard, map) in self.shards.iter().zip(fresh) {
            *shard.write().expect("patient view lock") = map;
        }
        self.seen.store(seen, Ordering::Release);
        self.mark_read();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("patient view lock").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekisho_store::patients::{Consent, NewPatient};
    use sekisho_store::testdb::TestDb;

    async fn add(store: &Store, id: &str) {
        let mut tx = store.begin_write().await.unwrap();
        patients::insert(
            &mut tx,
            &NewPatient {
                patient_id: id.into(),
                name: "n".into(),
                consent: Some("granted".into()),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn the_view_follows_the_change_log_and_goes_stale_without_the_store() {
        for db in TestDb::both().await {
            let s = &db.store;
            add(s, "P1").await;
            let v = PatientView::load(s, Duration::from_millis(300))
                .await
                .unwrap();
            assert_eq!(v.get("P1").unwrap().facts.consent, Consent::Granted);
            assert!(v.get("P2").is_none());
            // Changes made elsewhere arrive with the next catch-up.
            add(s, "P2").await;
            patients::set_consent(s, "P1", Consent::Withdrawn, "test", None)
                .await
                .unwrap();
            patients::care_team_change(s, "P2", "user", "u1", true, "test")
                .await
                .unwrap();
            assert_eq!(v.get("P1").unwrap().facts.consent, Consent::Granted);
            v.catch_up(s).await.unwrap();
            assert_eq!(v.get("P1").unwrap().facts.consent, Consent::Withdrawn);
            assert_eq!(v.get("P2").unwrap().facts.care_team_users, ["u1"]);
            assert!(v.is_current());
            std::thread::sleep(Duration::from_millis(400));
            assert!(
                !v.is_current(),
                "not trusted once the store has not been read"
            );
            v.catch_up(s).await.unwrap();
            assert!(v.is_current());
            // A pruned log makes it reload everything.
            changes::prune(s, sekisho_store::now() + 10).await.unwrap();
            patients::set_consent(s, "P2", Consent::Suspended, "test", None)
                .await
                .unwrap();
            changes::prune(s, sekisho_store::now() + 10).await.unwrap();
            v.catch_up(s).await.unwrap();
            assert_eq!(v.get("P2").unwrap().facts.consent, Consent::Suspended);
            assert_eq!(v.len(), 2);
        }
    }
}
