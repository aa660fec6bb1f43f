//! Card-driven sessions: sign in when an HPKI card is inserted, sign out when it leaves.
//!
//! A Sekisho patient card (one that selects the patient-card application,
//! [`sekisho_cardreader::patient_card`]) is not a sign-in card: it is handed over for `sekisho-agent
//! consent`, often in a second reader while the physician is signed in. Each inserted card is
//! first asked whether it is one; a patient card is ignored silently (no event, no login, and
//! its removal ends nothing). Any other card, and a card that cannot be asked, is tried as an
//! HPKI card as before.
//!
//! One loop owns the state and makes every session-changing call to the gateway itself, in
//! order (a removal's logout can never overtake the login it ends). Card work and PIN prompts
//! run in a spawned attempt that only produces a signed challenge; the loop sends it if, and
//! only if, that same card is still in the reader.
//!
//! While a card session lasts, the loop has the card prove its presence to the gateway every
//! so often (`POST /.sekisho/auth/presence`, the interval the gateway asks for): the card
//! signs a fresh gateway nonce over the connection kept since the sign-in, without the PIN.
//! The gateway ends a card session whose proofs stop, so a killed agent or a terminal gone
//! from the network does not leave it open. A proof the card cannot give (it was reset and
//! wants its PIN again) signs out and starts a new sign-in with the card in the reader.
//!
//! Fail-closed rules: a removal (or the smart-card service going away, which the card watcher
//! reports as removals) signs out at once; a logout the gateway did not get is retried until it
//! does; a card session the agent cannot account for when it starts (an HPKI session with no
//! card other than patient cards in any reader) is ended.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::card::CardSession;
use crate::error::AgentError;
use crate::pin::{CancelToken, PinSource};
use crate::{
    AgentConfig, Gateway, LogoutReason, SignedChallenge, SignedIn, prove_presence, sign_challenge,
};
use sekisho_cardreader::apdu::CardError;
use sekisho_cardreader::watch::{CardEvent, Watcher};
use sekisho_protocol::Reason;

/// Pause before trying the smart-card service again.
const SERVICE_RETRY: Duration = Duration::from_secs(2);
/// First pause before a login is tried again after a transient failure; doubles up to the max.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Pause between tries of a logout the gateway has not received.
const LOGOUT_RETRY: Duration = Duration::from_secs(2);
/// After start, how long the card watcher gets to report the cards already in before the
/// agent looks for a session without a card.
const SETTLE: Duration = Duration::from_secs(3);
/// When the first presence proof is sent after a sign-in (later ones: when the gateway says).
const FIRST_PROOF: Duration = Duration::from_secs(5);
/// Pause before a presence proof the gateway did not get is sent again.
const PROOF_RETRY: Duration = Duration::from_secs(3);
/// The most the gateway may ask the agent to wait between proofs.
const PROOF_MAX_WAIT: Duration = Duration::from_secs(300);
/// How soon the start-up check looks again while an inserted card is still being asked whether
/// it is a patient card.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// What the watcher tells its owner (to print, or to check in tests).
#[derive(Debug)]
pub enum WatchEvent {
    /// The smart-card service is not running; the agent waits for it.
    ServiceUnavailable,
    /// Watching the readers.
    Watching,
    ReaderAdded {
        reader: String,
    },
    ReaderRemoved {
        reader: String,
    },
    /// A card was inserted. Patient cards are not reported (nor their removal).
    CardInserted {
        reader: String,
    },
    /// A card was inserted while another card's session or login is in progress; it is used
    /// when that one leaves.
    CardWaiting {
        reader: String,
        in_use: String,
    },
    SignedIn {
        reader: String,
        info: SignedIn,
    },
    LoginFailed {
        reader: String,
        error: AgentError,
        retry: Retry,
    },
    CardRemoved {
        reader: String,
    },
    /// The gateway ended the session (`ended: false`: it had none). `reader` is `None` for a
    /// session found without a card at start.
    SignedOut {
        reader: Option<String>,
        reason: LogoutReason,
        ended: bool,
    },
    /// The card proved its presence to the gateway; the next proof is due in `next_in`.
    Present {
        reader: String,
        next_in: Duration,
    },
    /// A presence proof failed; `retry_in` is `None` when the session is given up (signed
    /// out, and a new sign-in started if the card is still there).
    PresenceFailed {
        reader: String,
        error: AgentError,
        retry_in: Option<Duration>,
    },
    /// The gateway did not get the logout; it is sent again after `retry_in`.
    LogoutFailed {
        error: AgentError,
        retry_in: Duration,
    },
    Stopped,
}

/// What happens after a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Tried again by itself (the gateway or network was away).
    In(Duration),
    /// The PIN is asked for again at once.
    AskAgain,
    /// The card must be taken out and inserted again.
    Reinsert,
}

/// A running watcher. [`WatchHandle::stop`] signs out a card session and ends it; dropping
/// the handle asks it to stop too.
pub struct WatchHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Stops watching: a card session is ended (`logout`), then the watcher returns.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Watches `cfg.reader` (or every reader) and keeps the gateway session in step with the card.
/// Must be called inside a tokio runtime; events go to `events` (a closed receiver is fine).
pub fn watch(
    cfg: AgentConfig,
    pins: Arc<dyn PinSource>,
    events: UnboundedSender<WatchEvent>,
) -> WatchHandle {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut lp = Loop::new(cfg, pins, events);
        lp.run(stop_rx).await;
    });
    WatchHandle {
        stop: Some(stop_tx),
        task: Some(task),
    }
}

type AttemptResult = (String, u64, Result<SignedChallenge, AgentError>);
/// (insertion, the card connection unless lost, the gateway's answer).
type ProofResult = (
    u64,
    Option<CardSession>,
    Result<sekisho_protocol::wire::PresenceAnswer, AgentError>,
);
/// (reader, insertion, is it a patient card).
type ProbeResult = (String, u64, bool);

/// Whether the card in `reader` is a Sekisho patient card (blocking: PC/SC). Only the card's
/// own answer to the SELECT decides; a card that cannot be reached yet (just inserted, still
/// resetting, held by another program for a moment) is asked again for up to a second, and
/// only then taken for a sign-in card.
fn is_patient_card(reader: &str) -> bool {
    use sekisho_cardreader::apdu::CardError;
    use sekisho_cardreader::patient_card::{PatientCardError, probe};
    for _ in 0..10 {
        match probe(reader) {
            Ok(_) => return true,
            Err(PatientCardError::Card(CardError::NoService)) => return false,
            // No answer from the card yet: ask again.
            Err(PatientCardError::Card(_)) => {}
            // The card answered: not ours.
            Err(_) => return false,
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

struct Attempt {
    reader: String,
    generation: u64,
    cancel: CancelToken,
}

struct PendingLogout {
    reason: LogoutReason,
    reader: Option<String>,
    at: Instant,
}

struct Loop {
    cfg: AgentConfig,
    pins: Arc<dyn PinSource>,
    events: UnboundedSender<WatchEvent>,
    /// Insertion counter: each insertion is a new card session, whatever card it is.
    generation: u64,
    /// Cards in readers that may be HPKI cards: reader → insertion.
    present: HashMap<String, u64>,
    /// Cards just inserted, being asked whether they are patient cards: reader → insertion.
    /// Nothing is reported about them until the answer is in.
    probing: HashMap<String, u64>,
    probes: JoinSet<ProbeResult>,
    /// Insertions that failed in a way only a new insertion can fix.
    failed: HashSet<u64>,
    /// Transient failures so far, per insertion (for the back-off).
    failures: HashMap<u64, u32>,
    attempt: Option<Attempt>,
    attempts: JoinSet<AttemptResult>,
    /// A login to try again: (reader, insertion, when).
    retry: Option<(String, u64, Instant)>,
    /// The card whose session the gateway has.
    session: Option<(String, u64)>,
    /// The connection to that card, kept for presence proofs (`None` while a proof uses it).
    card: Option<CardSession>,
    /// When the next presence proof is due.
    proof_at: Option<Instant>,
    proofs: JoinSet<ProofResult>,
    logout_pending: Option<PendingLogout>,
    /// When to look for a session without a card.
    stale_check: Option<Instant>,
    watcher: Option<Watcher>,
    watcher_retry: Option<Instant>,
    service_reported: bool,
}

impl Loop {
    fn new(
        cfg: AgentConfig,
        pins: Arc<dyn PinSource>,
        events: UnboundedSender<WatchEvent>,
    ) -> Loop {
        Loop {
            cfg,
            pins,
            events,
            generation: 0,
            present: HashMap::new(),
            probing: HashMap::new(),
            probes: JoinSet::new(),
            failed: HashSet::new(),
            failures: HashMap::new(),
            attempt: None,
            attempts: JoinSet::new(),
            retry: None,
            session: None,
            card: None,
            proof_at: None,
            proofs: JoinSet::new(),
            logout_pending: None,
            stale_check: Some(Instant::now() + SETTLE),
            watcher: None,
            watcher_retry: None,
            service_reported: false,
        }
    }

    fn emit(&self, e: WatchEvent) {
        let _ = self.events.send(e);
    }

    async fn run(&mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let (card_tx, mut card_rx) = unbounded_channel::<CardEvent>();
        self.start_watcher(&card_tx);
        loop {
            let next = [
                self.retry.as_ref().map(|r| r.2),
                self.logout_pending.as_ref().map(|p| p.at),
                self.proof_at.filter(|_| self.card.is_some()),
                self.stale_check,
                self.watcher_retry,
            ]
            .into_iter()
            .flatten()
            .min();
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(ev) = card_rx.recv() => self.on_card(ev).await,
                Some(done) = self.probes.join_next(), if !self.probes.is_empty() => {
                    // A probe cannot fail (panics are caught) except by being aborted.
                    if let Ok((reader, generation, patient)) = done {
                        self.on_probe(reader, generation, patient);
                    }
                }
                Some(done) = self.attempts.join_next(), if !self.attempts.is_empty() => {
                    match done {
                        Ok((reader, generation, result)) => {
                            self.on_attempt(reader, generation, result).await;
                        }
                        Err(_) => {
                            // The attempt panicked: treat it as a failure that needs a new
                            // insertion.
                            if let Some(a) = self.attempt.take() {
                                self.failed.insert(a.generation);
                                self.emit(WatchEvent::LoginFailed {
                                    reader: a.reader,
                                    error: AgentError::Internal("the login attempt failed".into()),
                                    retry: Retry::Reinsert,
                                });
                            }
                        }
                    }
                    self.maybe_start(None);
                }
                Some(done) = self.proofs.join_next(), if !self.proofs.is_empty() => {
                    match done {
                        Ok((generation, card, result)) => {
                            self.on_proof(generation, card, result).await;
                        }
                        // Panicked: the connection is lost with it; the next sign-in reopens.
                        Err(_) => self.on_proof(self.generation_in_session(), None, Err(
                            AgentError::Internal("the presence proof failed".into()),
                        )).await,
                    }
                }
                _ = timer => self.on_timer(&card_tx).await,
            }
            if self.watcher.as_ref().is_some_and(|w| !w.is_running()) {
                // The card watcher thread ended (it should not): start another, after
                // reporting every card gone (fail closed).
                self.watcher = None;
                self.lost_all().await;
                self.watcher_retry = Some(Instant::now() + SERVICE_RETRY);
            }
        }
        // Events left when stopping are not acted on: the session is ended either way.
        while card_rx.try_recv().is_ok() {}
        self.shutdown().await;
    }

    fn start_watcher(&mut self, card_tx: &UnboundedSender<CardEvent>) {
        let tx = card_tx.clone();
        match sekisho_cardreader::watch::watch(self.cfg.reader.as_deref(), move |ev| {
            let _ = tx.send(ev);
        }) {
            Ok(w) => {
                self.watcher = Some(w);
                self.watcher_retry = None;
                self.service_reported = false;
                self.emit(WatchEvent::Watching);
            }
            Err(e) => {
                if !self.service_reported {
                    self.service_reported = true;
                    match e {
                        CardError::NoService => self.emit(WatchEvent::ServiceUnavailable),
                        other => self.emit(WatchEvent::LoginFailed {
                            reader: self.cfg.reader.clone().unwrap_or_default(),
                            error: other.into(),
                            retry: Retry::In(SERVICE_RETRY),
                        }),
                    }
                }
                self.watcher_retry = Some(Instant::now() + SERVICE_RETRY);
            }
        }
    }

    async fn on_card(&mut self, ev: CardEvent) {
        match ev {
            CardEvent::ReaderAdded { reader } => self.emit(WatchEvent::ReaderAdded { reader }),
            CardEvent::ReaderRemoved { reader } => self.emit(WatchEvent::ReaderRemoved { reader }),
            CardEvent::Inserted { reader, .. } => {
                self.generation += 1;
                let generation = self.generation;
                // Asked off the loop: a slow card must not hold up a removal's logout.
                self.probing.insert(reader.clone(), generation);
                self.probes.spawn_blocking(move || {
                    let patient =
                        std::panic::catch_unwind(|| is_patient_card(&reader)).unwrap_or(false);
                    (reader, generation, patient)
                });
            }
            CardEvent::Removed { reader } => {
                // A card still being asked about was never reported: its removal is not either.
                if self.probing.remove(&reader).is_none() && self.removed(reader).await {
                    self.maybe_start(None);
                }
            }
        }
    }

    /// The answer for an inserted card: a patient card is ignored; any other card is
    /// reported and tried as an HPKI card.
    fn on_probe(&mut self, reader: String, generation: u64, patient: bool) {
        if self.probing.get(&reader) != Some(&generation) {
            // Removed (or swapped) meanwhile.
            return;
        }
        self.probing.remove(&reader);
        if patient {
            return;
        }
        self.present.insert(reader.clone(), generation);
        self.emit(WatchEvent::CardInserted {
            reader: reader.clone(),
        });
        self.maybe_start(Some((reader, generation)));
    }

    /// A card that may be an HPKI card left `reader`; false if there was none (a patient card
    /// or nothing).
    async fn removed(&mut self, reader: String) -> bool {
        let Some(generation) = self.present.remove(&reader) else {
            return false;
        };
        self.failed.remove(&generation);
        self.failures.remove(&generation);
        self.emit(WatchEvent::CardRemoved {
            reader: reader.clone(),
        });
        if let Some(a) = &self.attempt
            && a.generation == generation
        {
            a.cancel.cancel();
        }
        if self.retry.as_ref().is_some_and(|r| r.1 == generation) {
            self.retry = None;
        }
        if self.session.as_ref().is_some_and(|s| s.1 == generation) {
            self.end_card_session();
            self.logout(LogoutReason::CardRemoved, Some(reader)).await;
        }
        true
    }

    fn generation_in_session(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.1)
    }

    /// Forgets the card session here (the connection to the card is let go; a proof in
    /// flight is dropped when it comes back).
    fn end_card_session(&mut self) {
        self.session = None;
        self.card = None;
        self.proof_at = None;
    }

    fn start_proof(&mut self) {
        let (Some(card), Some((_, generation))) = (self.card.take(), self.session.clone()) else {
            return;
        };
        self.proof_at = None;
        let gateway = match Gateway::new(&self.cfg) {
            Ok(g) => g,
            Err(_) => {
                self.card = Some(card);
                self.proof_at = Some(Instant::now() + PROOF_RETRY);
                return;
            }
        };
        self.proofs.spawn(async move {
            let (card, r) = prove_presence(&gateway, card).await;
            (generation, card, r)
        });
    }

    async fn on_proof(
        &mut self,
        generation: u64,
        card: Option<CardSession>,
        result: Result<sekisho_protocol::wire::PresenceAnswer, AgentError>,
    ) {
        let Some((reader, current)) = self.session.clone() else {
            return;
        };
        if current != generation {
            return;
        }
        match (card, result) {
            (Some(card), Ok(a)) => {
                let next_in = Duration::from_secs(a.next_in.max(1)).min(PROOF_MAX_WAIT);
                self.card = Some(card);
                self.proof_at = Some(Instant::now() + next_in);
                self.emit(WatchEvent::Present { reader, next_in });
            }
            // A gateway without presence proofs: nothing more to prove.
            (Some(card), Err(AgentError::Refused(r))) if r.reason == Some(Reason::NotFound) => {
                self.card = Some(card);
            }
            (Some(card), Err(error)) if error.is_transient() => {
                self.card = Some(card);
                self.proof_at = Some(Instant::now() + PROOF_RETRY);
                self.emit(WatchEvent::PresenceFailed {
                    reader,
                    error,
                    retry_in: Some(PROOF_RETRY),
                });
            }
            (_, result) => {
                // The card could not sign (reset, gone) or the gateway ended the session: sign
                // out, and sign in again if the card is still in.
                let error = result.err().unwrap_or(AgentError::CardRemoved);
                self.emit(WatchEvent::PresenceFailed {
                    reader: reader.clone(),
                    error,
                    retry_in: None,
                });
                self.end_card_session();
                self.logout(LogoutReason::CardRemoved, Some(reader)).await;
                self.maybe_start(None);
            }
        }
    }

    /// Every card gone at once (the watcher stopped).
    async fn lost_all(&mut self) {
        self.probing.clear();
        let readers: Vec<String> = self.present.keys().cloned().collect();
        for r in readers {
            self.removed(r).await;
        }
    }

    /// Starts a login for `candidate`, or for a card waiting in another reader, if no card is
    /// in use.
    fn maybe_start(&mut self, candidate: Option<(String, u64)>) {
        let busy = self
            .attempt
            .as_ref()
            .map(|a| a.reader.clone())
            .or_else(|| self.session.as_ref().map(|s| s.0.clone()))
            .or_else(|| self.retry.as_ref().map(|r| r.0.clone()));
        if let Some(in_use) = busy {
            if let Some((reader, _)) = candidate
                && reader != in_use
            {
                self.emit(WatchEvent::CardWaiting { reader, in_use });
            }
            return;
        }
        let next = candidate.or_else(|| {
            self.present
                .iter()
                .filter(|(_, g)| !self.failed.contains(g))
                .max_by_key(|(_, g)| **g)
                .map(|(r, g)| (r.clone(), *g))
        });
        if let Some((reader, generation)) = next
            && self.present.get(&reader) == Some(&generation)
            && !self.failed.contains(&generation)
        {
            self.start_attempt(reader, generation);
        }
    }

    fn start_attempt(&mut self, reader: String, generation: u64) {
        let gateway = match Gateway::new(&self.cfg) {
            Ok(g) => g,
            Err(error) => {
                self.failed.insert(generation);
                self.emit(WatchEvent::LoginFailed {
                    reader,
                    error,
                    retry: Retry::Reinsert,
                });
                return;
            }
        };
        let cancel = CancelToken::new();
        self.attempt = Some(Attempt {
            reader: reader.clone(),
            generation,
            cancel: cancel.clone(),
        });
        let pins = Arc::clone(&self.pins);
        self.attempts.spawn(async move {
            let r = sign_challenge(&gateway, Some(reader.clone()), pins, &cancel).await;
            (reader, generation, r)
        });
    }

    async fn on_attempt(
        &mut self,
        reader: String,
        generation: u64,
        result: Result<SignedChallenge, AgentError>,
    ) {
        self.attempt = None;
        if self.present.get(&reader) != Some(&generation) {
            // The card left meanwhile: whatever came of it is dropped, and nothing was sent.
            return;
        }
        let mut signed = match result {
            Ok(s) => s,
            Err(e) => return self.failed_login(reader, generation, e),
        };
        // A logout still owed to the gateway goes first.
        if self.logout_pending.is_some() {
            self.retry_logout().await;
        }
        let gateway = match Gateway::new(&self.cfg) {
            Ok(g) => g,
            Err(e) => return self.failed_login(reader, generation, e),
        };
        match gateway.login(&signed).await {
            Ok(info) => {
                self.failures.remove(&generation);
                // Superseded: the gateway has the new session now.
                self.logout_pending = None;
                self.session = Some((reader.clone(), generation));
                self.card = signed.card.take();
                self.proof_at = Some(Instant::now() + FIRST_PROOF);
                self.emit(WatchEvent::SignedIn { reader, info });
            }
            Err(e) => self.failed_login(reader, generation, e),
        }
    }

    fn failed_login(&mut self, reader: String, generation: u64, error: AgentError) {
        let retry = if error.is_transient() {
            let n = self.failures.entry(generation).or_insert(0);
            let wait = RETRY_FIRST
                .saturating_mul(1u32 << (*n).min(8))
                .min(RETRY_MAX);
            *n += 1;
            self.retry = Some((reader.clone(), generation, Instant::now() + wait));
            Retry::In(wait)
        } else if matches!(error, AgentError::WrongPin { .. } | AgentError::PinFormat)
            && self.pins.retry_after_wrong_pin()
        {
            Retry::AskAgain
        } else {
            self.failed.insert(generation);
            Retry::Reinsert
        };
        self.emit(WatchEvent::LoginFailed {
            reader: reader.clone(),
            error,
            retry,
        });
        if retry == Retry::AskAgain {
            self.start_attempt(reader, generation);
        }
    }

    async fn logout(&mut self, reason: LogoutReason, reader: Option<String>) {
        let result = match Gateway::new(&self.cfg) {
            Ok(g) => g.logout(reason).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ended) => {
                self.logout_pending = None;
                self.emit(WatchEvent::SignedOut {
                    reader,
                    reason,
                    ended,
                });
            }
            Err(error) => {
                self.logout_pending = Some(PendingLogout {
                    reason,
                    reader,
                    at: Instant::now() + LOGOUT_RETRY,
                });
                self.emit(WatchEvent::LogoutFailed {
                    error,
                    retry_in: LOGOUT_RETRY,
                });
            }
        }
    }

    async fn retry_logout(&mut self) {
        if let Some(p) = self.logout_pending.take() {
            self.logout(p.reason, p.reader).await;
        }
    }

    async fn on_timer(&mut self, card_tx: &UnboundedSender<CardEvent>) {
        let now = Instant::now();
        if self.watcher_retry.is_some_and(|t| t <= now) {
            self.watcher_retry = None;
            self.start_watcher(card_tx);
        }
        if self.logout_pending.as_ref().is_some_and(|p| p.at <= now) {
            self.retry_logout().await;
        }
        if self.card.is_some() && self.proof_at.is_some_and(|t| t <= now) {
            self.start_proof();
        }
        if let Some((reader, generation, at)) = self.retry.clone()
            && at <= now
        {
            self.retry = None;
            if self.attempt.is_none()
                && self.session.is_none()
                && self.present.get(&reader) == Some(&generation)
            {
                self.start_attempt(reader, generation);
            }
        }
        if self.stale_check.is_some_and(|t| t <= now) {
            self.stale_check = None;
            self.check_stale().await;
        }
    }

    /// At start: an HPKI session at the gateway with no card here (a patient card does not count)
    /// is ended.
    async fn check_stale(&mut self) {
        if self.session.is_some() || self.attempt.is_some() || !self.present.is_empty() {
            return;
        }
        if !self.probing.is_empty() {
            // Whether the cards just inserted are HPKI cards is not known yet: look again soon.
            self.stale_check = Some(Instant::now() + PROBE_WAIT);
            return;
        }
        let status = match Gateway::new(&self.cfg) {
            Ok(g) => g.status().await,
            Err(e) => Err(e),
        };
        match status {
            Ok(s) if s.signed_in && s.method.as_deref() == Some("hpki") => {
                self.logout(LogoutReason::CardRemoved, None).await;
            }
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                self.stale_check = Some(Instant::now() + RETRY_MAX);
            }
            Err(_) => {}
        }
    }

    async fn shutdown(&mut self) {
        if let Some(a) = &self.attempt {
            a.cancel.cancel();
        }
        self.attempts.abort_all();
        self.probes.abort_all();
        self.proofs.abort_all();
        self.card = None;
        if let Some((reader, _)) = self.session.take() {
            self.logout(LogoutReason::Logout, Some(reader)).await;
        } else if self.logout_pending.is_some() {
            self.retry_logout().await;
        }
        if let Some(w) = self.watcher.take() {
            // Stopping joins the watcher thread (up to one poll interval): not on this thread.
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
        }
        self.emit(WatchEvent::Stopped);
    }
}
