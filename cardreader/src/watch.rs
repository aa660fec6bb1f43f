//! Card insertion and removal, and reader hot-plug, from PC/SC status changes.
//!
//! A session that a card opened must end when the card leaves, so the watcher fails closed:
//! if the PC/SC service goes away it reports every card removed and every reader gone, then
//! reconnects and reports what it finds.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::apdu::CardError;
use crate::pcsc_transport::establish;

/// What the watcher reports. The first events describe the state at start: `ReaderAdded` for
/// each reader, then `Inserted` for each card already in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    ReaderAdded { reader: String },
    ReaderRemoved { reader: String },
    Inserted { reader: String, atr: Vec<u8> },
    Removed { reader: String },
}

/// Longest wait in one status-change call: bounds how long a missed cancel or a reader list
/// change the service did not signal can go unnoticed.
const POLL: Duration = Duration::from_millis(500);
/// Pause before reconnecting to a service that went away.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

struct Shared {
    stop: AtomicBool,
    // The context the thread is blocked on, so that `stop` can cancel the wait.
    ctx: Mutex<Option<pcsc::Context>>,
}

/// A running watcher; stops when [`Watcher::stop`] is called or it is dropped.
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Watches `reader` (or every reader when `None`) and calls `on_event` from a thread of its own.
///
/// Fails at once if the PC/SC service is not running; after that it rides out service
/// restarts (reporting removals while the service is gone).
pub fn watch<F>(reader: Option<&str>, on_event: F) -> Result<Watcher, CardError>
where
    F: FnMut(CardEvent) + Send + 'static,
{
    let ctx = establish()?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        ctx: Mutex::new(Some(ctx.clone())),
    });
    let filter = reader.map(str::to_string);
    let thread_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("card-watch".into())
        .spawn(move || run(&thread_shared, filter, on_event, ctx))
        .map_err(|e| CardError::Link(format!("cannot start the card watcher: {e}")))?;
    Ok(Watcher {
        shared,
        thread: Some(thread),
    })
}

impl Watcher {
    /// Stops watching and waits for the thread (at most about one poll interval).
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// False once the thread has ended (stopped, or the callback panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(ctx) = self
            .shared
            .ctx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            // Nothing to do if no wait is in progress: the thread sees the flag within POLL.
            let _ = ctx.cancel();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One watched reader: its PC/SC state record and what we last reported.
struct Tracked {
    name: String,
    present: bool,
    events: u32,
}

fn run<F: FnMut(CardEvent)>(
    shared: &Shared,
    filter: Option<String>,
    mut emit: F,
    mut ctx: pcsc::Context,
) {
    // states[0] is the hot-plug pseudo-reader; states[i + 1] belongs to tracked[i].
    let mut states = vec![pnp_state()];
    let mut tracked: Vec<Tracked> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let listed = match list(&ctx) {
            Ok(names) => names,
            Err(_) => {
                ctx = match lost_service(shared, &mut states, &mut tracked, &mut emit) {
                    Some(c) => c,
                    None => return,
                };
                continue;
            }
        };
        reconcile(
            &listed,
            filter.as_deref(),
            &mut states,
            &mut tracked,
            &mut emit,
        );

        for s in states.iter_mut() {
            s.sync_current_state();
        }
        match ctx.get_status_change(POLL, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout)
            | Err(pcsc::Error::Cancelled)
            | Err(pcsc::Error::UnknownReader) => continue,
            Err(_) => {
                ctx = match lost_service(shared, &mut states, &mut tracked, &mut emit) {
                    Some(c) => c,
                    None => return,
                };
                continue;
            }
        }
        for (t, s) in tracked.iter_mut().zip(states.iter().skip(1)) {
            let state = s.event_state();
            if state.intersects(pcsc::State::UNKNOWN | pcsc::State::IGNORE) {
                // The reader is going; the next listing reports it.
                continue;
            }
            let present =
                state.contains(pcsc::State::PRESENT) && !state.contains(pcsc::State::MUTE);
            let events = s.event_count();
            // Same "present" before and after but a new event count: the card was swapped
            // between two calls. Report both halves.
            let swapped = t.present && present && events != t.events;
            if t.present && (!present || swapped) {
                t.present = false;
                emit(CardEvent::Removed {
                    reader: t.name.clone(),
                });
            }
            if !t.present && present {
                t.present = true;
                emit(CardEvent::Inserted {
                    reader: t.name.clone(),
                    atr: s.atr().to_vec(),
                });
            }
            t.events = events;
        }
    }
}

fn pnp_state() -> pcsc::ReaderState {
    pcsc::ReaderState::new(pcsc::PNP_NOTIFICATION(), pcsc::State::UNAWARE)
}

fn list(ctx: &pcsc::Context) -> Result<Vec<String>, pcsc::Error> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Brings the tracked readers in line with the service's list.
fn reconcile<F: FnMut(CardEvent)>(
    listed: &[String],
    filter: Option<&str>,
    states: &mut Vec<pcsc::ReaderState>,
    tracked: &mut Vec<Tracked>,
    emit: &mut F,
) {
    let mut i = 0;
    while i < tracked.len() {
        if listed.contains(&tracked[i].name) {
            i += 1;
            continue;
        }
        let gone = tracked.remove(i);
        states.remove(i + 1);
        if gone.present {
            emit(CardEvent::Removed {
                reader: gone.name.clone(),
            });
        }
        emit(CardEvent::ReaderRemoved { reader: gone.name });
    }
    for name in listed {
        if filter.is_some_and(|f| f != name) || tracked.iter().any(|t| &t.name == name) {
            continue;
        }
        // Names come from the service as C strings, so they hold no NUL.
        let Ok(cname) = CString::new(name.as_str()) else {
            continue;
        };
        states.push(pcsc::ReaderState::new(cname, pcsc::State::UNAWARE));
        tracked.push(Tracked {
            name: name.clone(),
            present: false,
            events: 0,
        });
        emit(CardEvent::ReaderAdded {
            reader: name.clone(),
        });
    }
}

/// The service is gone: report everything removed, then wait for it to come back. `None` when
/// asked to stop meanwhile.
fn lost_service<F: FnMut(CardEvent)>(
    shared: &Shared,
    states: &mut Vec<pcsc::ReaderState>,
    tracked: &mut Vec<Tracked>,
    emit: &mut F,
) -> Option<pcsc::Context> {
    reconcile(&[], None, states, tracked, emit);
    states.clear();
    states.push(pnp_state());
    *shared.ctx.lock().unwrap_or_else(PoisonError::into_inner) = None;
    loop {
        // Sleep in short steps so that a stop request is honoured quickly.
        for _ in 0..10 {
            if shared.stop.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(RECONNECT_PAUSE / 10);
        }
        if let Ok(ctx) = establish() {
            *shared.ctx.lock().unwrap_or_else(PoisonError::into_inner) = Some(ctx.clone());
            return Some(ctx);
        }
    }
}
