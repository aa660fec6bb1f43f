//! Lockout (R-ACCT-5): failed sign-ins count per terminal and per account; each failure doubles
//! the wait before the answer (to slow guessing without locking anyone out sooner); after the
//! configured number the account is locked until the secretariat unlocks it and signed out
//! everywhere, while a terminal's lock lapses by itself. The counters are in the store, so they
//! survive restarts and hold across replicas.

use std::time::Duration;

use anyhow::Result;
use sekisho_audit::AuditRecord;
use sekisho_protocol::Reason;
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::now;
use sekisho_store::sessions as session_rows;
use tracing::warn;

use super::{Caller, SignIn};

impl SignIn {
    pub(super) async fn terminal_locked(&self, caller: &Caller<'_>) -> Option<Reason> {
        // A lock that cannot be read is not "no lock": refuse until the store answers.
        let c = match lockouts::get(&self.store, Scope::Terminal, &caller.terminal.terminal).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read the terminal's lockout");
                return Some(Reason::Internal);
            }
        };
        let locked_at = c.locked_at?;
        if now() - locked_at >= i64::from(self.cfg.signin.terminal_lock_minutes) * 60 {
            // A terminal's lock lapses by itself; an account's does not.
            let _ = lockouts::unlock(&self.store, Scope::Terminal, &caller.terminal.terminal).await;
            return None;
        }
        Some(Reason::TerminalLocked)
    }

    /// Counts a failure; returns how long to wait before answering (doubling per failure, to
    /// slow guessing without locking anyone out sooner).
    pub(super) async fn count_failure(
        &self,
        caller: &Caller<'_>,
        account: Option<&str>,
        rec: &mut AuditRecord,
    ) -> Duration {
        let s = &self.cfg.signin;
        let t = lockouts::record_failure(
            &self.store,
            Scope::Terminal,
            &caller.terminal.terminal,
            i64::from(s.terminal_max_failures.max(1)),
        )
        .await;
        let mut failures = t.as_ref().map(|c| c.failures).unwrap_or(1);
        if let Some(user) = account
            && let Ok(c) = lockouts::record_failure(
                &self.store,
                Scope::Account,
                user,
                i64::from(s.max_failures.max(1)),
            )
            .await
        {
            failures = failures.max(c.failures);
            if c.locked_at.is_some() && c.failures == i64::from(s.max_failures.max(1)) {
                rec.detail = Some(format!(
                    "{}; account locked",
                    rec.detail.clone().unwrap_or_default()
                ));
                // A locked account is signed out everywhere, like a suspended one.
                if let Err(e) = self.end_sessions(user).await {
                    warn!(error = %e, user, "cannot end the sessions of a locked account");
                }
            }
        }
        Duration::from_millis((250u64 << (failures.clamp(1, 5) - 1) as u32).min(4000))
    }

    async fn end_sessions(&self, user: &str) -> Result<u64> {
        let mut tx = self.store.begin_write().await?;
        let n = session_rows::end_for_user(&mut tx, user, "account_locked").await?;
        tx.commit().await?;
        Ok(n)
    }
}
