//! The buffered usage recorder: one organization's hot path.

use std::fmt;

use crate::db::Db;
use crate::ledger::OrgHandle;
use crate::ops::usage::validate_count;

use crate::error::{Error, Result};
use crate::model::usage::{UsageEvent, UsageReceipt};

/// Records buffered usage for one organization, from [`Db::usage_recorder`].
///
/// Each call is admitted in memory against the organization's exact monthly quota, the same
/// check [`Db::record_usage`] makes, and returns at once. Admitted events become durable at
/// the next checkpoint (within `Options::usage_flush_interval`), on [`Db::flush`] or
/// [`UsageRecorder::flush`], or when the last handle of the database is dropped; a crash
/// before then loses them, never half of one. A refused event records nothing.
///
/// The recorder keeps its organization's place in the ledger, so a call hashes at most the
/// resource id. It is cheap to clone and may be shared between threads; it keeps the
/// database open while it lives.
#[derive(Clone)]
pub struct UsageRecorder {
    db: Db,
    org: String,
    handle: OrgHandle,
}

impl fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("organization_id", &self.org)
            .finish_non_exhaustive()
    }
}

impl UsageRecorder {
    pub(crate) fn new(db: Db, org: String, handle: OrgHandle) -> UsageRecorder {
        UsageRecorder { db, org, handle }
    }

    /// The organization this recorder counts for.
    pub fn organization_id(&self) -> &str {
        &self.org
    }

    /// Admits `count` requests now, on `resource_id` (an MCP server or API key of the
    /// organization) or on none.
    ///
    /// # Errors
    /// `validation_error` (`count`: 1 to 2^53; `resource_id`: empty), `not_found` (the
    /// organization was deleted, or the resource is not live in it), `quota_exceeded` (with
    /// limit, used and requested; nothing is recorded), `storage_error`.
    pub fn record(&self, resource_id: Option<&str>, count: u64) -> Result<UsageReceipt> {
        validate_count(count)?;
        let resource = resource_id.map(str::trim);
        if resource == Some("") {
            return Err(Error::invalid("resource_id", "Must not be empty"));
        }
        self.db
            .admit_recorded(&self.org, self.handle, resource, count)
    }

    /// Admits a full event (with its own time or idempotency key), as
    /// [`Db::record_usage_buffered`] does.
    ///
    /// # Errors
    /// As [`Db::record_usage_buffered`].
    pub fn record_event(&self, event: &UsageEvent) -> Result<UsageReceipt> {
        self.db.record_usage_buffered(&self.org, event)
    }

    /// Makes every admitted usage event of the database durable now (a checkpoint).
    ///
    /// # Errors
    /// `storage_error`.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()
    }
}
