//! Who is signed in on which terminal, as the gateway sees it: one person per terminal at a
//! time. The store is the truth (so replicas agree); this is its in-memory view, re-read with
//! the registry whenever the store's change counter moves, and updated at once on this node's
//! own sign-ins and sign-outs.
//!
//! Sessions also end when idle (no request attributed for `signin.idle_minutes`) and, for card
//! sessions, when the card stops proving it is in the reader (`signin.card_presence_secs`).
//! Activity is kept here per session and written to the store at most once per
//! [`Limits::flush_secs`] (never once per request); presence proofs are written by whichever
//! replica receives them. A session that looks lapsed from here is checked against the store
//! before a request is refused, since another replica may have seen it alive; the sweep
//! (`crate::serve::lapse`) ends lapsed sessions on record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use arc_swap::ArcSwap;
use sekisho_protocol::Reason;

use sekisho_store::Store;
use sekisho_store::sessions::{self as rows, Liveness};
use sekisho_store::users;

/// What a request is attributed to.
#[derive(Clone, Debug)]
pub struct Session {
    pub session_id: String,
    pub terminal: String,
    pub user_id: String,
    pub facility: String,
    pub roles: Vec<String>,
    /// "hpki" or "password".
    pub method: String,
    pub qualification: Option<String>,
    pub expires_at: i64,
    /// A password session whose password must be changed before anything else.
    pub must_change_password: bool,
    /// The HPKI card (`issuer|serial`) an HPKI session was opened with.
    pub card: Option<String>,
    /// Activity and presence as the store had them when this view was read.
    pub live: Liveness,
}

/// How long a session may go without a request, and a card session without a presence proof.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub idle_secs: i64,
    pub presence_secs: i64,
    /// Activity is written to the store at most this often per session (and by the sweep).
    pub flush_secs: i64,
}

impl Limits {
    pub fn new(idle_secs: i64, presence_secs: i64) -> Limits {
        Limits {
            idle_secs,
            presence_secs,
            // A session may end this much early on a replica set (another replica's last
            // requests not yet written); a tenth of the idle time, at most a minute.
            flush_secs: (idle_secs / 10).clamp(1, 60),
        }
    }

    /// Why a session with this liveness has lapsed at `now`, if it has.
    pub fn lapsed(&self, method: &str, l: Liveness, now: i64) -> Option<&'static str> {
        if now - l.activity > self.idle_secs {
            Some("session_idle")
        } else if method == "hpki" && now - l.presence > self.presence_secs {
            Some("heartbeat_missed")
        } else {
            None
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new(15 * 60, 60)
    }
}

/// This node's knowledge of a session beyond its last read of the store.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    live: Liveness,
    /// The activity time last written to the store by this node.
    flushed: i64,
}

#[derive(Default)]
pub struct Sessions {
    limits: Limits,
    /// Session id → what this node has seen since (or refreshed from the store).
    seen: Mutex<HashMap<String, Seen>>,
    by_terminal: ArcSwap<HashMap<String, Arc<Session>>>,
    /// Counts this node's own changes (`put`, `remove`). A reload whose read of the store
    /// overlapped one of them would replace a sign-in made meanwhile with the older snapshot
    /// (the person, just signed in, would be signed out until the next poll); such a read is
    /// done again.
    local_changes: std::sync::Mutex<u64>,
}

impl Sessions {
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The best this node knows of a session's activity and presence.
    fn known(&self, s: &Session) -> Liveness {
        let seen = self.seen.lock().expect("sessions lock");
        let mine = seen.get(&s.session_id).map(|x| x.live).unwrap_or_default();
        Liveness {
            activity: s.live.activity.max(mine.activity),
            presence: s.live.presence.max(mine.presence),
        }
    }

    /// Why the session has lapsed, if it has: decided from this node's knowledge, and only
    /// when that says lapsed, from the store's (another replica may have seen a request or a
    /// presence proof). `Some("ended")` when the store has it ended already.
    pub async fn lapsed(&self, store: &Store, s: &Session) -> Result<Option<&'static str>> {
        let now = sekisho_store::now();
        if self.limits.lapsed(&s.method, self.known(s), now).is_none() {
            return Ok(None);
        }
        let Some(fresh) = rows::liveness(store, &s.session_id).await? else {
            return Ok(Some("ended"));
        };
        self.learn(&s.session_id, fresh);
        Ok(self.limits.lapsed(&s.method, self.known(s), now))
    }

    fn learn(&self, session_id: &str, l: Liveness) {
        let mut seen = self.seen.lock().expect("sessions lock");
        let e = seen.entry(session_id.to_string()).or_default();
        e.live.activity = e.live.activity.max(l.activity);
        e.live.presence = e.live.presence.max(l.presence);
        // The store has it: nothing to write back.
        e.flushed = e.flushed.max(l.activity);
    }

    /// A request was attributed to the session. `Some(time)` when that activity should be
    /// written to the store now (the last write from here is `flush_secs` old).
    pub fn active(&self, s: &Session) -> Option<i64> {
        let now = sekisho_store::now();
        let mut seen = self.seen.lock().expect("sessions lock");
        // Every request passes here: no allocation once the session is known.
        if !seen.contains_key(&s.session_id) {
            seen.insert(s.session_id.clone(), Default::default());
        }
        let e = seen.get_mut(&s.session_id).expect("inserted above");
        e.live.activity = e.live.activity.max(now);
        let stored = e.flushed.max(s.live.activity);
        (now - stored >= self.limits.flush_secs).then(|| {
            e.flushed = now;
            now
        })
    }

    /// A presence proof for the session was recorded in the store by this node.
    pub fn present(&self, session_id: &str, at: i64) {
        self.learn(
            session_id,
            Liveness {
                activity: 0,
                presence: at,
            },
        );
    }

    /// Activity seen here and not yet written, once the last write is `flush_secs` old:
    /// (session id, time), marked written. So the store lags this node by at most that.
    pub fn unflushed(&self) -> Vec<(String, i64)> {
        let now = sekisho_store::now();
        let mut seen = self.seen.lock().expect("sessions lock");
        seen.iter_mut()
            .filter(|(_, e)| {
                e.live.activity > e.flushed && now - e.flushed >= self.limits.flush_secs
            })
            .map(|(id, e)| {
                e.flushed = e.live.activity;
                (id.clone(), e.live.activity)
            })
            .collect()
    }

    pub fn for_terminal(&self, terminal: &str) -> Option<Arc<Session>> {
        let s = self.by_terminal.load().get(terminal).cloned()?;
        (s.expires_at > sekisho_store::now()).then_some(s)
    }

    pub async fn reload(&self, store: &Store) -> Result<()> {
        for _ in 0..3 {
            let before = *self.local_changes.lock().expect("sessions lock");
            let map = Self::read(store).await?;
            let changes = self.local_changes.lock().expect("sessions lock");
            if *changes == before {
                // What was seen of sessions that are gone is of no further use.
                let open: std::collections::HashSet<&str> =
                    map.values().map(|s| s.session_id.as_str()).collect();
                self.seen
                    .lock()
                    .expect("sessions lock")
                    .retain(|id, _| open.contains(id.as_str()));
                self.by_terminal.store(Arc::new(map));
                return Ok(());
            }
        }
        // Sign-ins on this node kept overlapping the read: the next poll reads again.
        tracing::warn!("sessions not reloaded: this node's sign-ins kept overlapping the read");
        Ok(())
    }

    async fn read(store: &Store) -> Result<HashMap<String, Arc<Session>>> {
        let open = rows::open_sessions(store).await?;
        let mut map = HashMap::with_capacity(open.len());
        for (r, live) in open {
            // A user row is read per session; sessions are few (one per terminal).
            let Some(u) = users::get(store, &r.user_id).await? else {
                continue;
            };
            let must_change = r.method == "password" && password_change_due(&u);
            map.insert(
                r.terminal.clone(),
                Arc::new(Session {
                    session_id: r.session_id,
                    terminal: r.terminal,
                    user_id: r.user_id,
                    facility: u.facility,
                    roles: u.roles,
                    method: r.method,
                    qualification: r.qualification,
                    expires_at: r.absolute_expires_at,
                    must_change_password: must_change,
                    card: r.card,
                    live,
                }),
            );
        }
        Ok(map)
    }

    /// The person a request from `terminal` is attributed to. An HPKI session covers every
    /// connection of its terminal; a password session also needs its cookie (the person who
    /// typed the password is the one holding it). A cookie of another terminal's session is
    /// refused outright.
    pub fn for_request(
        &self,
        terminal: &str,
        cookie: Option<&str>,
    ) -> Result<Option<Arc<Session>>, Reason> {
        match (self.for_terminal(terminal), cookie) {
            (Some(s), _) if s.method != "password" => Ok(Some(s)),
            (Some(s), Some(c)) if c == s.session_id => Ok(Some(s)),
            (_, Some(c)) if self.by_id(c).is_some_and(|o| o.terminal != terminal) => {
                Err(Reason::SessionOtherTerminal)
            }
            _ => Ok(None),
        }
    }

    /// The session a password cookie names, with the terminal it belongs to.
    pub fn by_id(&self, session_id: &str) -> Option<Arc<Session>> {
        self.by_terminal
            .load()
            .values()
            .find(|s| s.session_id == session_id)
            .cloned()
    }

    /// This node's own sign-in: visible to the next request without waiting for the poll.
    pub fn put(&self, s: Session) {
        let mut changes = self.local_changes.lock().expect("sessions lock");
        *changes += 1;
        let mut map = HashMap::clone(&self.by_terminal.load());
        map.insert(s.terminal.clone(), Arc::new(s));
        self.by_terminal.store(Arc::new(map));
    }

    /// Takes one session off this node's view (ended here); a newer session of the terminal
    /// stays.
    pub fn remove_session(&self, terminal: &str, session_id: &str) {
        let mut changes = self.local_changes.lock().expect("sessions lock");
        *changes += 1;
        let mut map = HashMap::clone(&self.by_terminal.load());
        if map
            .get(terminal)
            .is_some_and(|s| s.session_id == session_id)
        {
            map.remove(terminal);
            self.by_terminal.store(Arc::new(map));
        }
    }

    pub fn remove(&self, terminal: &str) {
        let mut changes = self.local_changes.lock().expect("sessions lock");
        *changes += 1;
        let mut map = HashMap::clone(&self.by_terminal.load());
        if map.remove(terminal).is_some() {
            self.by_terminal.store(Arc::new(map));
        }
    }
}

/// Whether a password must be changed now: set by the secretariat, or older than its profile
/// allows.
pub fn password_change_due(u: &users::UserRow) -> bool {
    if u.must_change_password {
        return true;
    }
    let profile = u
        .password_profile
        .as_deref()
        .and_then(|p| p.parse::<crate::password::Profile>().ok());
    match (
        profile.and_then(|p| p.max_age_days()),
        u.password_changed_at,
    ) {
        (Some(days), Some(at)) => sekisho_store::now() - at > days * 86_400,
        _ => false,
    }
}
