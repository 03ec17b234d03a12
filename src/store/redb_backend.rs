//! The redb implementation of the raw key-value traits. The only file that names redb types
//! (with `schema.rs`'s open path in `mod.rs`).

use std::ops::Bound;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
};

use super::tables::Table;
use super::{KvRead, KvWrite, Visit};
use crate::error::{Error, Result};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// Maps every redb error to orgdb's storage-level codes.
fn storage_err(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(msg) => Error::corrupted(msg),
        redb::Error::DatabaseAlreadyOpen => {
            Error::storage("the database is in use: another process or handle has it open")
        }
        redb::Error::UpgradeRequired(v) => {
            Error::storage(format!("the file uses an old storage format ({v})"))
        }
        other => Error::storage(other.to_string()),
    }
}

/// How a write transaction reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitDurability {
    /// fsync before the commit returns.
    Immediate,
    /// Visible at once, made durable by a later immediate commit or a clean close.
    Eventual,
}

pub(crate) struct RedbStore {
    /// Shared by every transaction; `compact` takes it exclusively.
    db: RwLock<Database>,
    durability: CommitDurability,
    memory: bool,
}

impl RedbStore {
    pub(crate) fn open(path: &Path, durability: CommitDurability) -> Result<RedbStore> {
        let db = Database::builder().create(path).map_err(storage_err)?;
        Ok(RedbStore {
            db: RwLock::new(db),
            durability,
            memory: false,
        })
    }

    pub(crate) fn in_memory() -> Result<RedbStore> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage_err)?;
        Ok(RedbStore {
            db: RwLock::new(db),
            durability: CommitDurability::Eventual,
            memory: true,
        })
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn KvRead) -> Result<T>) -> Result<T> {
        let db = self.db();
        let txn = db.begin_read().map_err(storage_err)?;
        f(&RedbRead { txn })
    }

    /// Runs `f` in one write transaction; commits only when it returns `Ok`.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut dyn KvWrite) -> Result<T>) -> Result<T> {
        self.write_with(self.durability == CommitDurability::Immediate, f)
    }

    /// As [`RedbStore::write`], with a commit that is durable when it returns.
    pub(crate) fn write_durable<T>(
        &self,
        f: impl FnOnce(&mut dyn KvWrite) -> Result<T>,
    ) -> Result<T> {
        self.write_with(true, f)
    }

    /// As [`RedbStore::write`], choosing the commit's durability (in-memory stores ignore it).
    pub(crate) fn write_with<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut dyn KvWrite) -> Result<T>,
    ) -> Result<T> {
        let db = self.db();
        let mut txn = db.begin_write().map_err(storage_err)?;
        let durability = if durable && !self.memory {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(durability).map_err(storage_err)?;
        let mut tx = RedbWrite { txn };
        match f(&mut tx) {
            Ok(value) => {
                tx.txn.commit().map_err(storage_err)?;
                Ok(value)
            }
            Err(e) => {
                tx.txn.abort().map_err(storage_err)?;
                Err(e)
            }
        }
    }

    /// Rewrites the file without its free pages; waits for running transactions first.
    pub(crate) fn compact(&self) -> Result<bool> {
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        db.compact().map_err(storage_err)
    }

    /// Copies every table, as of one snapshot, into a new database file at `path`.
    pub(crate) fn backup_to(&self, path: &Path) -> Result<()> {
        if path.exists() {
            return Err(crate::error::Error::invalid(
                "path",
                "A file already exists there",
            ));
        }
        let target = Database::builder().create(path).map_err(storage_err)?;
        let db = self.db();
        let source = db.begin_read().map_err(storage_err)?;
        let out = target.begin_write().map_err(storage_err)?;
        for table in Table::ALL {
            let mut dst = out.open_table(def(table)).map_err(storage_err)?;
            let src = match source.open_table(def(table)) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(storage_err(e)),
            };
            for item in src.range::<&[u8]>(..).map_err(storage_err)? {
                let (k, v) = item.map_err(storage_err)?;
                dst.insert(k.value(), v.value()).map_err(storage_err)?;
            }
        }
        out.commit().map_err(storage_err)?;
        Ok(())
    }

    /// Whether this is an in-memory database.
    pub(crate) fn is_memory(&self) -> bool {
        self.memory
    }

    /// Creates every table, so readers never meet a missing one.
    pub(crate) fn create_tables(tx: &mut dyn KvWrite) -> Result<()> {
        for table in Table::ALL {
            tx.touch(table)?;
        }
        Ok(())
    }

    /// Rows per table (for `stats`).
    pub(crate) fn table_lens(&self) -> Result<Vec<(&'static str, u64)>> {
        let db = self.db();
        let txn = db.begin_read().map_err(storage_err)?;
        let mut out = Vec::new();
        for table in Table::ALL {
            let len = match txn.open_table(def(table)) {
                Ok(t) => t.len().map_err(storage_err)?,
                Err(TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(storage_err(e)),
            };
            out.push((table.name(), len));
        }
        Ok(out)
    }
}

fn bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

fn scan_table(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    visit: Visit<'_>,
) -> Result<()> {
    let range = table
        .range::<&[u8]>(bounds(start, end))
        .map_err(storage_err)?;
    let mut step = |item: std::result::Result<_, redb::StorageError>| -> Result<bool> {
        let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
            item.map_err(storage_err)?;
        visit(k.value(), v.value())
    };
    if reverse {
        for item in range.rev() {
            if !step(item)? {
                break;
            }
        }
    } else {
        for item in range {
            if !step(item)? {
                break;
            }
        }
    }
    Ok(())
}

struct RedbRead {
    txn: redb::ReadTransaction,
}

impl KvRead for RedbRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = match self.txn.open_table(def(table)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage_err(e)),
        };
        Ok(t.get(key).map_err(storage_err)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        match self.txn.open_table(def(table)) {
            Ok(t) => scan_table(&t, start, end, reverse, visit),
            Err(TableError::TableDoesNotExist(_)) => Ok(()),
            Err(e) => Err(storage_err(e)),
        }
    }
}

struct RedbWrite {
    txn: redb::WriteTransaction,
}

impl KvRead for RedbWrite {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(def(table)).map_err(storage_err)?;
        let value = t.get(key).map_err(storage_err)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        let t = self.txn.open_table(def(table)).map_err(storage_err)?;
        scan_table(&t, start, end, reverse, visit)
    }
}

impl KvWrite for RedbWrite {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let mut t = self.txn.open_table(def(table)).map_err(storage_err)?;
        t.insert(key, value).map_err(storage_err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        let mut t = self.txn.open_table(def(table)).map_err(storage_err)?;
        let existed = t.remove(key).map_err(storage_err)?.is_some();
        Ok(existed)
    }

    fn touch(&mut self, table: Table) -> Result<()> {
        self.txn.open_table(def(table)).map_err(storage_err)?;
        Ok(())
    }
}
