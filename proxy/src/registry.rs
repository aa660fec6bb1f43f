//! The gateway's live view of the terminal registry, and the registry of open connections.
//! Every connection is checked against the view when it opens and on every request; when the
//! store's change counter moves, the view is reloaded and connections whose terminal is no
//! longer active are closed at once (R-TERM-4: a removed terminal's access stops; R-LOG-3: so
//! are a suspended or closed facility's).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use arc_swap::ArcSwap;
use sekisho_protocol::Reason;
use tokio::sync::Notify;

use sekisho_store::Store;
use sekisho_store::facilities::FacilityStatus;
use sekisho_store::terminals::{self, CertState, TerminalStatus};

/// Why a certificate that passed TLS verification is not allowed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotRegistered,
    Suspended,
    Revoked,
    CrlExpired,
    FacilitySuspended,
    FacilityClosed,
}

impl Refusal {
    pub fn refusal(self) -> Reason {
        match self {
            Refusal::NotRegistered => Reason::TerminalNotRegistered,
            Refusal::Suspended => Reason::TerminalSuspended,
            Refusal::Revoked => Reason::TerminalRevoked,
            Refusal::CrlExpired => Reason::CrlExpired,
            Refusal::FacilitySuspended => Reason::FacilitySuspended,
            Refusal::FacilityClosed => Reason::FacilityClosed,
        }
    }
}

#[derive(Default)]
struct View {
    generation: i64,
    certs: HashMap<String, CertState>,
}

pub struct Registry {
    view: ArcSwap<View>,
    /// False once the CRL has expired: revocation status is then unknown, so nobody gets in.
    crl_current: std::sync::atomic::AtomicBool,
    conns: Mutex<HashMap<u64, LiveConn>>,
    next_id: AtomicU64,
}

struct LiveConn {
    serial: String,
    /// Whether the terminal had access at some point while this connection was open. A
    /// connection that never had it only ever gets refusal pages, so there is nothing to cut.
    admitted: bool,
    close: Arc<Notify>,
}

/// Held by a connection task; leaving scope unregisters it.
pub struct ConnGuard {
    registry: Arc<Registry>,
    id: u64,
    close: Arc<Notify>,
}

impl ConnGuard {
    /// Resolves when the connection must be closed because its terminal lost access.
    pub async fn revoked(&self) {
        self.close.notified().await
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry
            .conns
            .lock()
            .expect("conn registry poisoned")
            .remove(&self.id);
    }
}

impl Registry {
    pub async fn load(store: &Store) -> Result<Arc<Registry>> {
        let r = Arc::new(Registry {
            view: ArcSwap::from_pointee(View::default()),
            crl_current: std::sync::atomic::AtomicBool::new(true),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        r.reload(store).await?;
        Ok(r)
    }

    pub fn generation(&self) -> i64 {
        self.view.load().generation
    }

    /// The terminal a certificate serial belongs to, if it may come in.
    pub fn check(&self, serial: &str) -> Result<CertState, Refusal> {
        if !self.crl_current.load(Ordering::Acquire) {
            return Err(Refusal::CrlExpired);
        }
        let view = self.view.load();
        let Some(c) = view.certs.get(serial) else {
            return Err(Refusal::NotRegistered);
        };
        // The facility first: its page says why all of its terminals are out.
        match c.facility_status {
            FacilityStatus::Active => {}
            FacilityStatus::Suspended => return Err(Refusal::FacilitySuspended),
            FacilityStatus::Closed => return Err(Refusal::FacilityClosed),
        }
        if c.cert_revoked || c.status == TerminalStatus::Revoked {
            return Err(Refusal::Revoked);
        }
        if c.status == TerminalStatus::Suspended {
            return Err(Refusal::Suspended);
        }
        Ok(c.clone())
    }

    /// Re-reads the registry (the change counter is read first, so a change committed while
    /// reading is seen again on the next poll), then closes connections that lost access.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let generation = store.generation().await?;
        self.reload_at(store, generation).await
    }

    /// Re-reads the registry, recording `generation`, which the caller read before anything
    /// else it reloads (the CRL): a change that lands in between moves the counter past it and
    /// is picked up on the next poll.
    pub async fn reload_at(&self, store: &Store, generation: i64) -> Result<()> {
        let certs = terminals::cert_states(store)
            .await?
            .into_iter()
            .map(|c| (c.serial.clone(), c))
            .collect();
        self.view.store(Arc::new(View { generation, certs }));
        self.sweep();
        Ok(())
    }

    /// Returns whether the state changed; closes live connections when the CRL runs out.
    pub fn set_crl_current(&self, current: bool) -> bool {
        let changed = self.crl_current.swap(current, Ordering::AcqRel) != current;
        if changed {
            self.sweep();
        }
        changed
    }

    pub fn track(self: &Arc<Self>, serial: &str) -> ConnGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let admitted = self.check(serial).is_ok();
        self.conns.lock().expect("conn registry poisoned").insert(
            id,
            LiveConn {
                serial: serial.to_string(),
                admitted,
                close: close.clone(),
            },
        );
        ConnGuard {
            registry: self.clone(),
            id,
            close,
        }
    }

    pub fn open_connections(&self) -> usize {
        self.conns.lock().expect("conn registry poisoned").len()
    }

    fn sweep(&self) {
        let mut conns = self.conns.lock().expect("conn registry poisoned");
        for c in conns.values_mut() {
            match self.check(&c.serial) {
                Ok(_) => c.admitted = true,
                // notify_one keeps a permit, so a task not yet waiting still sees it.
                Err(_) if c.admitted => c.close.notify_one(),
                Err(_) => {}
            }
        }
    }
}
