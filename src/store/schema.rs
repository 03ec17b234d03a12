//! Schema version: written when a file is created, checked on every open.

use super::{codec, counted, redb_backend::RedbStore, KvWrite, Reads, Table, Writes};
use crate::error::{Error, Result};

/// The format this build writes. Bump it with a migration in [`ensure_schema`] and a test that
/// opens a file of the old format.
///
/// - 1: the first format.
/// - 2: `pending_invitations` values carry the invitation's expiry before its id, so counting
///   an organization's unexpired pending invitations (every seat check) reads the index only;
///   `member_counts` holds the buckets of the counted member indexes (offset pages seek).
pub(crate) const SCHEMA_VERSION: u32 = 2;

pub(crate) const SCHEMA_KEY: &str = "schema_version";
pub(crate) const AUDIT_SEQ: &str = "audit_seq";

/// Creates the tables and version of a new file, refuses a file of a newer version, and
/// migrates an older one. Runs in one write transaction.
pub(crate) fn ensure_schema(tx: &mut dyn KvWrite) -> Result<()> {
    match tx.meta_u64(SCHEMA_KEY)? {
        None => {
            RedbStore::create_tables(tx)?;
            tx.set_meta_u64(SCHEMA_KEY, u64::from(SCHEMA_VERSION))
        }
        Some(found) if found > u64::from(SCHEMA_VERSION) => Err(Error::IncompatibleVersion {
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION,
        }),
        Some(found) if found == u64::from(SCHEMA_VERSION) => Ok(()),
        Some(1) => {
            RedbStore::create_tables(tx)?;
            pending_entries_carry_expiry(tx)?;
            counted::rebuild(tx)?;
            tx.set_meta_u64(SCHEMA_KEY, u64::from(SCHEMA_VERSION))
        }
        Some(found) => Err(Error::corrupted(format!(
            "schema version {found} predates the first format"
        ))),
    }
}

/// Migration 1 → 2: rewrites every `pending_invitations` value from the id alone to
/// (expiry, id), reading the expiry from the invitation.
///
/// Damage found on the way never fails the open (the file must still open so that `check()`
/// can report it and export can save the rest, as version 1 allowed): an entry whose id fails
/// its checksum is left as it is (it fails the same way in the new layout, so that
/// organization's seat checks answer `corrupted`); an entry naming an invitation that is
/// missing or unreadable points at nothing usable and is dropped (the index is derived data;
/// `check()` still reports an unreadable invitation record).
fn pending_entries_carry_expiry(tx: &mut dyn KvWrite) -> Result<()> {
    let mut entries = Vec::new();
    tx.scan_prefix(Table::PendingInvitations, &[], &mut |k, v| {
        if let Ok(id) = codec::decode_id(v) {
            entries.push((k.to_vec(), id));
        }
        Ok(true)
    })?;
    for (key, id) in entries {
        let inv = match tx.invitation(&id) {
            Ok(Some(rec)) => rec.invitation,
            Ok(None) | Err(Error::Corrupted { .. }) => {
                tx.delete(Table::PendingInvitations, &key)?;
                continue;
            }
            Err(other) => return Err(other),
        };
        let value = codec::encode_pending(&inv.id, inv.expires_at.timestamp_micros());
        tx.put(Table::PendingInvitations, &key, &value)?;
    }
    Ok(())
}
