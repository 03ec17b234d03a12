//! The buffered usage recorder: one organization's hot path.

use std::fmt;

use crate::db::Db;
use crate::ledger::OrgHandle;
use crate::ops::usage::validate_count;

use crate::error::{Error, Result};
use crate::model::usage::{UsageEvent, UsageReceipt};

/// Records buffered usage for one organization, from [`Db::usage_recorder`].
///
/// Each call is admitted in memory against the organization's exact quota of the period, the same
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
    /// The resource [`add`](UsageRecorder::add) counts on ([`for_resource`](UsageRecorder::for_resource)).
    resource: Option<String>,
}

impl fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("organization_id", &self.org)
            .field("resource_id", &self.resource)
            .finish_non_exhaustive()
    }
}

impl UsageRecorder {
    pub(crate) fn new(db: Db, org: String, handle: OrgHandle) -> UsageRecorder {
        UsageRecorder {
            db,
            org,
            handle,
            resource: None,
        }
    }

    /// The organization this recorder counts for.
    pub fn organization_id(&self) -> &str {
        &self.org
    }

    /// The resource [`add`](UsageRecorder::add) counts on (`None`: on no resource).
    pub fn resource_id(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// A recorder of the same organization whose [`add`](UsageRecorder::add) counts on
    /// `resource_id` (an MCP server or API key of it). The resource is checked by each `add`,
    /// as [`record`](UsageRecorder::record) checks it: one removed later answers `not_found`.
    ///
    /// # Errors
    /// `validation_error` (`resource_id`: empty).
    pub fn for_resource(&self, resource_id: &str) -> Result<UsageRecorder> {
        Ok(UsageRecorder {
            resource: Some(resource_arg(resource_id)?.to_owned()),
            ..self.clone()
        })
    }

    /// Admits `count` requests now on this recorder's resource (or on none), as
    /// [`record`](UsageRecorder::record) does, and answers the period's usage after it (the
    /// receipt's `used`). The leanest call from a binding: a number in, a number out.
    ///
    /// ```
    /// use orgdb::{Actor, Db, NewOrganization, NewUser, ResourceKind};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization;
    /// let search = db.register_resource(&Actor::user(&ada.id), &org.id, ResourceKind::Mcp, "search")?;
    /// let usage = db.usage_recorder(&org.id)?;
    /// let on_search = usage.for_resource(&search.id)?;
    /// assert_eq!(on_search.add(3)?, 3);
    /// assert_eq!(usage.add(2)?, 5); // on no resource
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`record`](UsageRecorder::record).
    pub fn add(&self, count: u64) -> Result<u64> {
        Ok(self.record(self.resource.as_deref(), count)?.used)
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
        let resource = resource_id.map(resource_arg).transpose()?;
        self.db
            .admit_recorded(&self.org, self.handle, resource, count)
    }

    /// Admits many events at once, all now, all or none: the batch counts against the monthly
    /// quota as its sum, so either every event is admitted or (`quota_exceeded`, with the
    /// batch's sum as `requested`) none is. Each event is a resource id (or `None`) and a
    /// count. The receipt is the last event's: the period's usage after the whole batch.
    /// Durable like [`UsageRecorder::record`]. The fastest way to count from a binding, where
    /// each call costs far more than the admission itself.
    ///
    /// ```
    /// use orgdb::{Actor, Db, NewOrganization, NewUser, ResourceKind};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?.organization;
    /// let search = db.register_resource(&Actor::user(&ada.id), &org.id, ResourceKind::Mcp, "search")?;
    /// let usage = db.usage_recorder(&org.id)?;
    /// let receipt = usage.record_many(&[(Some(search.id.as_str()), 3), (None, 2)])?;
    /// assert_eq!(receipt.used, 5);
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `validation_error` (`events`: 1 to 10 000 of them; `events[i].count`: 1 to 2^53;
    /// `events[i].resource_id`: empty; `count`: the period's total would pass 2^64, on an
    /// unlimited plan), `not_found` (the organization was deleted, or a
    /// resource is not live in it), `quota_exceeded`, `storage_error`.
    pub fn record_many(&self, events: &[(Option<&str>, u64)]) -> Result<UsageReceipt> {
        self.db.admit_recorded_many(&self.org, events)
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

/// A resource id argument, trimmed; empty is `validation_error` (`resource_id`).
fn resource_arg(id: &str) -> Result<&str> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Error::invalid("resource_id", "Must not be empty"));
    }
    Ok(id)
}
