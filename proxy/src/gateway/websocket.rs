//! WebSockets on routes that allow them (`websocket = true`): once both sides have upgraded,
//! bytes are spliced between them. The splice outlives the HTTP connection's task, so it holds
//! its own place in the connection registry: revoking the terminal closes it too.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::{debug, info};

use super::Gateway;

impl Gateway {
    pub(super) fn splice(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        serial: Option<String>,
        request_id: String,
    ) {
        let guard = serial.map(|s| self.registry.track(&s));
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
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                _ = revoked => info!(request_id, "closing a WebSocket whose terminal lost access"),
            }
        });
    }
}
