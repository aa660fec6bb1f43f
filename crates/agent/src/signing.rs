//! The card's part of signing a text with its authentication key, shared by sign-in and the
//! emergency declaration: open the card, ask for the PIN, sign. PC/SC blocks, so each step
//! runs on a blocking thread; the PIN goes from the [`PinSource`] to the card and nowhere else.
//!
//! What may be signed is decided by the callers, each for its own text, before [`sign`]: the
//! card's authentication key signs sign-in challenges and declarations alike, so neither path
//! may sign the other's text (or anything else).

use std::sync::Arc;

use sekisho_cardreader::hpki::{Pin, PinState};

use crate::blocking;
use crate::card::{self, CardSession};
use crate::error::AgentError;
use crate::pin::{CancelToken, PinRequest, PinSource};

/// Opens the HPKI card in `reader` (or the first one found) and reads its PIN state, without
/// spending a try. A locked card stops here.
pub(crate) async fn open(reader: Option<String>) -> Result<(CardSession, PinState), AgentError> {
    let (session, state) = blocking(move || {
        let mut s = card::open(reader.as_deref())?;
        let state = s.pin_state()?;
        Ok::<_, AgentError>((s, state))
    })
    .await??;
    if state == PinState::Blocked {
        return Err(AgentError::CardLocked);
    }
    Ok((session, state))
}

/// Asks `pins` for the PIN of the card in `session`, saying how many tries are left.
pub(crate) async fn ask_pin(
    pins: Arc<dyn PinSource>,
    session: &CardSession,
    state: PinState,
    cancel: &CancelToken,
) -> Result<Pin, AgentError> {
    let request = PinRequest {
        reader: session.reader.clone(),
        holder: session.holder(),
        tries_left: match state {
            PinState::TriesLeft(n) => Some(n),
            PinState::Verified | PinState::Blocked => None,
        },
        cancel: cancel.clone(),
    };
    let text = blocking(move || pins.pin(&request)).await??;
    Ok(Pin::new(&text)?)
}

/// Verifies `pin` (when given) and signs `message` (RSASSA-PKCS1-v1_5, SHA-256) with the
/// authentication key, in one PC/SC transaction. The session comes back for further use; the
/// PIN is shared so that several texts in one card session can each verify it (it is wiped
/// when the last holder drops it).
pub(crate) async fn sign(
    mut session: CardSession,
    pin: Option<Arc<Pin>>,
    message: Vec<u8>,
) -> Result<(CardSession, Result<Vec<u8>, AgentError>), AgentError> {
    blocking(move || {
        let r = session.verify_and_sign(pin.as_deref(), &message);
        drop(pin);
        (session, r)
    })
    .await
}
