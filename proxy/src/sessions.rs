//! Who is signed in on which terminal, as the gateway sees it: one person per terminal at a
//! time. The store is the truth (so replicas agree); this is its in-memory view, re-read with
//! the registry whenever the store's change counter moves, and updated at once on this node's
//! own sign-ins and sign-outs.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;
use sekisho_protocol::Reason;

use sekisho_store::Store;
use sekisho_store::sessions::{self as rows};
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
}

#[derive(Default)]
pub struct Sessions {
    by_terminal: ArcSwap<HashMap<String, Arc<Session>>>,
    /// Counts this node's own changes (`put`, `remove`). A reload whose read of the store
    /// overlapped one of them would replace a sign-in made meanwhile with the older snapshot
    /// (the person, just signed in, would be signed out until the next poll); such a read is
    /// done again.
    local_changes: std::sync::Mutex<u64>,
}

impl Sessions {
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
        for r in open {
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
