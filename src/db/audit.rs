//! `Db`: The audit change feed.

use crate::authz::Actor;
use crate::error::Result;
use crate::model::audit::AuditEvent;
use crate::ops;

use super::Db;

impl Db {
    /// The organization's audit events after `after_seq`, in order, at most `limit`
    /// (1–1 000). Admins and owners read it; after deletion, `Actor::System` still can.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`limit`).
    pub fn audit_log(
        &self,
        actor: &Actor,
        org: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        // Fold first, as reports do: a `usage.threshold` crossing admitted a moment ago is in
        // the change feed now, not at the next checkpoint.
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner
            .store
            .read(|tx| ops::audit::log(tx, actor, org, after_seq, limit))
    }
}
