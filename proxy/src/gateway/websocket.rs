//! WebSockets on routes that allow them (`websocket = true`): once both sides have upgraded,
//! bytes are spliced between them. The splice outlives the HTTP connection's task, so it holds
//! its own place in the connection registry: revoking or suspending the terminal (or its
//! facility) closes it too. It also ends when the session it was opened in ends (the person
//! signed out or was suspended, or their facility was) and when a maintenance window comes
//! into force for it: checked twice a second, after the store's change reaches this node.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::{debug, info};

use super::Gateway;

/// Who a WebSocket was opened for: what must stay true for it to stay open.
pub(super) struct Owner {
    pub serial: Option<String>,
    pub terminal: String,
    pub facility: String,
    /// The session it was opened in, if someone was signed in.
    pub session: Option<(String, String)>,
}

/// How often an open WebSocket checks its session and the maintenance windows.
const RECHECK: Duration = Duration::from_millis(500);

impl Gateway {
    pub(super) fn splice(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        owner: Owner,
        request_id: String,
    ) {
        let guard = owner.serial.as_deref().map(|s| self.registry.track(s));
        let sessions = self.sessions.clone();
        let notices = self.notices.clone();
        tokio::spawn(async move {
            let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
                debug!(request_id, "upgrade did not complete");
                return;
            };
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            let revoked = async {
                match &guard {
                    Some(g) => g.revoked().await,
                    None => std::future::pending().await,
                }
            };
            let lost = async {
                let mut tick = tokio::time::interval(RECHECK);
                loop {
                    tick.tick().await;
                    let (session_id, user) = match &owner.session {
                        Some((id, user)) => (Some(id.as_str()), Some(user.as_str())),
                        None => (None, None),
                    };
                    if let Some(id) = session_id
                        && sessions
                            .for_terminal(&owner.terminal)
                            .is_none_or(|s| s.session_id != id)
                    {
                        return "its session ended";
                    }
                    if notices
                        .stopping(&owner.facility, &owner.terminal, user, sekisho_store::now())
                        .is_some()
                    {
                        return "maintenance is in force";
                    }
                }
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                _ = revoked => info!(request_id, "closing a WebSocket whose terminal lost access"),
                why = lost => info!(request_id, why, "closing a WebSocket"),
            }
        });
    }
}
