//! Storage: the only module that knows how data is laid out.
//!
//! Two layers:
//! - [`KvRead`] / [`KvWrite`]: the backend contract (ordered byte tables, get, scan, put,
//!   delete). `redb_backend` implements it; a second backend implements only this.
//! - [`Reads`] / [`Writes`]: the typed interface the operations use, written once on top of the
//!   raw traits. It keeps every secondary index and stored counter in step with its rows, so an
//!   operation cannot forget one.

mod access;
mod backend;
mod check;
mod codec;
mod counted;
pub(crate) mod journal;
mod keys;
mod overlay;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod records;
mod redb_backend;
mod schema;
mod tables;
pub(crate) mod transfer;

pub(crate) use access::{KvReadExt, Reads, Writes};
pub(crate) use backend::{Backend, Commit};
pub use check::CheckReport;
pub(crate) use keys::{
    day_from_number, day_number, prefix_end, status_entry, AlertFired, Key, KeyReader, MemberPos,
    Span,
};
pub(crate) use records::{
    fuzz_decode_all, org_terms, DayRow, Directory, InvitationRecord, MemberPage, MemberSet,
    OrgMembers, OrgOverview, OrgRecord, OrgStats, ResourceRecord, Stored, UsageAsk, UsageGuess,
    UsageState, UsageWrite, UserMembership,
};
pub(crate) use redb_backend::{CommitDurability, RedbStore};
pub(crate) use tables::Table;

use crate::error::Result;

/// A scan visitor: gets each (key, value) in order and returns whether to go on.
/// The meta value naming the first day whose usage rows were never pruned (day number): the
/// highest `before` any `prune_usage` was given. Day rows before it may be gone, so period
/// totals cannot be computed from them again.
pub(crate) const USAGE_PRUNED_BEFORE: &str = "usage_pruned_before";

pub(crate) type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool>;

/// What [`KvRead::get_with`] runs on a value: a decode. It must not use the transaction: it
/// may run under the lock of an overlay generation (a writer waiting to publish would block a
/// second read) or while a write transaction holds the table out of its cache.
pub(crate) type ReadValue<'a> = &'a mut dyn FnMut(&[u8]) -> Result<()>;

/// Runs `read` on `value` when there is one (`None`: deleted or absent); whether there was.
pub(crate) fn read_found(value: Option<&[u8]>, read: ReadValue<'_>) -> Result<bool> {
    match value {
        Some(v) => read(v).map(|()| true),
        None => Ok(false),
    }
}

/// Reading side of a backend transaction.
pub(crate) trait KvRead {
    /// Runs `read` on the value of `key` where it lies (no copy), when there is one; says
    /// whether there was. A decode reads a record this way: the value's bytes are copied
    /// only into the strings the record keeps.
    fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool>;
    /// Whether `key` has a value (nothing copied).
    fn contains(&self, table: Table, key: &[u8]) -> Result<bool> {
        self.get_with(table, key, &mut |_| Ok(()))
    }
    /// The value of `key`, copied.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut value = None;
        self.get_with(table, key, &mut |v| {
            value = Some(v.to_vec());
            Ok(())
        })?;
        Ok(value)
    }
    /// Visits keys in `[start, end)` (`end` None = to the end), ascending or descending.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()>;
    /// How many entries the table holds (kept by the engine: no scan).
    fn len(&self, table: Table) -> Result<u64>;
}

/// Writing side of a backend transaction.
pub(crate) trait KvWrite: KvRead {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes a key; says whether it existed.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool>;
    /// Makes sure the table exists.
    fn touch(&mut self, table: Table) -> Result<()>;
}
