//! Schema version: written when a file is created, checked on every open.

use super::{redb_backend::RedbStore, KvWrite, Reads, Writes};
use crate::error::{Error, Result};

/// The format this build writes. Bump it with a migration in [`ensure_schema`] and a test that
/// opens a file of the old format.
pub(crate) const SCHEMA_VERSION: u32 = 1;

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
        Some(found) => Err(Error::corrupted(format!(
            "schema version {found} predates the first format"
        ))),
    }
}
