//! The redb implementation of the raw key-value traits. The only file that names redb types
//! (with `schema.rs`'s open path in `mod.rs`).

use std::cell::RefCell;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError,
    TableDefinition, TableError,
};

use super::backend::{Backend, Commit};
use super::journal::{self, Change, Journal, Record, WriteSet, META_GENERATION, META_WRITE_SEQ};
use super::overlay::{Generation, Layered, Local, Stack, View, META_OVERLAY_THROUGH};
use super::tables::Table;
use super::{KvRead, KvWrite, ReadValue, Reads, Visit, Writes};
use crate::error::{Error, Result};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// The newest overlay generation a snapshot holds (0: none).
fn overlay_through(read: &RedbRead) -> Result<u64> {
    Ok(read.meta_u64(META_OVERLAY_THROUGH)?.unwrap_or(0))
}

/// Maps every redb error to orgdb's storage-level codes.
fn storage_err(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(msg) => Error::corrupted(msg),
        redb::Error::DatabaseAlreadyOpen => Error::storage(format!(
            "the database is in use by another process or handle ({IN_USE_HINT})"
        )),
        redb::Error::UpgradeRequired(v) => {
            Error::storage(format!("the file uses an old storage format ({v})"))
        }
        other => Error::storage(other.to_string()),
    }
}

/// Maps the errors only opening a file gives, naming the file; the rest as [`storage_err`].
fn open_err(path: &Path, e: DatabaseError) -> Error {
    match e {
        // redb reports a file that does not start with its magic number (any other format, or
        // a file shorter than the number) as an I/O error of kind `InvalidData`; only opening
        // reads the magic number. A 0-byte file never gets here: it is a new database.
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::corrupted(format!(
                "not an orgdb database: {}: the file holds another format (it does not start \
                 with the storage engine's header)",
                path.display()
            ))
        }
        DatabaseError::DatabaseAlreadyOpen => Error::storage(format!(
            "database in use by another process or handle: {} ({IN_USE_HINT})",
            path.display()
        )),
        other => storage_err(other),
    }
}

/// How to copy a database that a live process holds (others cannot open it).
const IN_USE_HINT: &str = "a live database is backed up from inside the process that holds it, \
    with Db::backup_to (backup_to in Python, backupTo in Kotlin), or after that process stops";

/// Runs a call into redb; a panic inside it (redb panics on some damaged pages instead of
/// reporting them) becomes `corrupted`, so no input file can panic the host.
///
/// Only calls into redb run under it: opening, beginning, each table operation, each step of
/// a range, closing tables and committing. orgdb's own code and a host's callbacks (a
/// transaction's closure, a scan's visitor) run outside it, so a panic there is not taken
/// for damage: it unwinds to the caller as the bug it is, and the unfinished transaction is
/// dropped, which rolls it back.
fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown failure".to_owned());
            Err(Error::corrupted(format!(
                "the storage engine failed: {what}"
            )))
        }
    }
}

/// Drops a redb value (a transaction, its tables) under [`guard`]: closing written tables
/// and abandoning a transaction walk pages, which can panic on a damaged file.
fn release<T>(value: T) -> Result<()> {
    guard(move || {
        drop(value);
        Ok(())
    })
}

/// How long `compact` looks for a moment without running transactions.
const COMPACT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

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
    /// A file's journal (shared with the usage ledger). With `Immediate` durability every
    /// write transaction is journaled (ARCHITECTURE.md, "Journaled writes").
    journal: Option<Arc<Journal>>,
    /// Where journaled writes wait for a checkpoint (ARCHITECTURE.md, "The write overlay"):
    /// present when writes are journaled.
    overlay: Option<Overlay>,
}

/// The write overlay's generations and the writer lock.
struct Overlay {
    /// The next generation's number.
    next_id: std::sync::atomic::AtomicU64,
    /// Held by every write transaction, from before it reads until it published (or, for a
    /// durable commit, until the generations it wrote into the file are replaced).
    writer: Mutex<()>,
    current: Mutex<Stack>,
    /// Held by a checkpoint that writes the generation below into the file while writers go
    /// on ([`RedbStore::flush_overlay`]): one at a time.
    flushing: Mutex<()>,
}

impl Overlay {
    /// An overlay for a file whose newest written generation is `through`.
    fn new(through: u64) -> Overlay {
        Overlay {
            next_id: std::sync::atomic::AtomicU64::new(through + 2),
            writer: Mutex::new(()),
            current: Mutex::new(Stack::new(through + 1)),
            flushing: Mutex::new(()),
        }
    }

    /// A new empty generation, numbered after every one before.
    fn fresh(&self) -> Arc<Generation> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Generation::new(id))
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stack(&self) -> MutexGuard<'_, Stack> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Stack {
        self.stack().clone()
    }

    /// After a durable commit that wrote every generation into the file.
    fn reset(&self) {
        let top = self.fresh();
        *self.stack() = Stack { top, below: None };
    }
}

/// How one write transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A durable redb commit.
    Durable,
    /// A durable redb commit, then the journal restarts under this generation.
    Restart(u32),
    /// A journal record and the changes published in the write overlay; `wait`: return once
    /// the record is on disk; `gather`: a sync this caller leads may first wait for others'
    /// records (not for a caller that holds admissions up, `Commit::Synced`: see
    /// `Journal::wait_durable`).
    Journaled { wait: bool, gather: bool },
    /// A non-durable commit, nothing journaled (`Durability::Eventual`, memory).
    Eventual,
}

impl Drop for RedbStore {
    /// Closes the file under the same guard as every other call: redb's close walks the
    /// allocator state, and on a damaged file it can panic (found by the corruption test when
    /// an open failed after redb had accepted the file).
    fn drop(&mut self) {
        let db = self.db.get_mut().unwrap_or_else(|p| p.into_inner());
        let Ok(placeholder) =
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())
        else {
            return;
        };
        let real = std::mem::replace(db, placeholder);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || real.close()));
    }
}

impl RedbStore {
    /// Opens the file. Nothing is read or written before [`RedbStore::with_journal`].
    pub(crate) fn open(path: &Path, durability: CommitDurability) -> Result<RedbStore> {
        let db = guard(|| {
            Database::builder()
                .create(path)
                .map_err(|e| open_err(path, e))
        })?;
        Ok(RedbStore {
            db: RwLock::new(db),
            durability,
            memory: false,
            journal: None,
            overlay: None,
        })
    }

    /// Takes the file's journal, applies the journaled writes the file does not hold yet, then
    /// checks or upgrades its schema (the records were written under the schema the file had).
    pub(crate) fn with_journal(mut self, journal: Arc<Journal>) -> Result<RedbStore> {
        self.journal = Some(journal);
        self.replay_writes()?;
        if self.durability == CommitDurability::Immediate {
            let through = self.with_read(|tx| tx.meta_u64(META_OVERLAY_THROUGH))?;
            self.overlay = Some(Overlay::new(through.unwrap_or(0)));
        }
        self.ensure_schema()
    }

    /// Applies, in order and in one durable commit, the journaled writes of the stored
    /// generation that come after the last one the file holds (`meta.write_seq`).
    fn replay_writes(&self) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let (generation, written) = self.with_read(|tx| {
            Ok((
                tx.meta_u64(META_GENERATION)?,
                tx.meta_u64(META_WRITE_SEQ)?.unwrap_or(0),
            ))
        })?;
        let Some(generation) = generation else {
            return Ok(());
        };
        let sets: Vec<WriteSet> = journal
            .read_generation(generation as u32)?
            .0
            .into_iter()
            .filter_map(|r| match r {
                Record::Writes(set) if set.seq > written => Some(set),
                _ => None,
            })
            .collect();
        let Some(last) = sets.last().map(|s| s.seq) else {
            return Ok(());
        };
        self.with_write(Mode::Durable, |tx| {
            for set in &sets {
                for (table, key, change) in &set.changes {
                    match change {
                        Change::Put(value) => tx.put(*table, key, value)?,
                        Change::Delete => {
                            tx.delete(*table, key)?;
                        }
                        Change::Touch => tx.touch(*table)?,
                    }
                }
            }
            tx.set_meta_u64(META_WRITE_SEQ, last)
        })
    }

    pub(crate) fn in_memory() -> Result<RedbStore> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(storage_err)?;
        RedbStore {
            db: RwLock::new(db),
            durability: CommitDurability::Eventual,
            memory: true,
            journal: None,
            overlay: None,
        }
        .ensure_schema()
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one read transaction: the file's snapshot, with the overlay's writes
    /// published by then.
    fn with_read<T>(&self, f: impl FnOnce(&dyn Reads) -> Result<T>) -> Result<T> {
        // The generations before the file's snapshot: any the snapshot holds already it names
        // (`META_OVERLAY_THROUGH`), and they are skipped (ARCHITECTURE.md, "The write
        // overlay").
        let generation = self.overlay.as_ref().map(Overlay::current);
        let db = self.db();
        let read = RedbRead::begin(&db)?;
        let result = match &generation {
            Some(stack) if !stack.is_empty() => overlay_through(&read).and_then(|through| {
                // `at` read after the snapshot was taken: whatever the snapshot holds of the
                // top generation, the generation as of now says the same or more.
                f(&Layered::reader(
                    &read,
                    View {
                        stack,
                        at: stack.top.published(),
                        through,
                    },
                ))
            }),
            _ => f(&read),
        };
        release(read)?;
        result
    }

    /// The journal that write transactions go through: a file's, with `Immediate` durability.
    fn write_journal(&self) -> Option<&Journal> {
        self.journal
            .as_deref()
            .filter(|_| self.durability == CommitDurability::Immediate)
    }

    /// Runs `f` in one write transaction; commits only when it returns `Ok`, as `mode` says
    /// (in-memory stores never sync).
    fn with_write<T>(
        &self,
        mode: Mode,
        f: impl FnOnce(&mut StoreWrite<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        if let Some(journal) = self.write_journal() {
            // After a journal I/O error the database may hold commits the journal lacks (a
            // record that failed after its commit): nothing more commits, durably or not, so
            // the file never holds them and a reopen replays the journal's prefix. A fold that
            // failed so puts its changes back in memory, where they stay.
            journal.refuse_if_failed()?;
            if let (Mode::Journaled { wait, gather }, Some(overlay)) = (mode, &self.overlay) {
                return self.overlay_write(overlay, journal, wait, gather, f);
            }
        }
        let writer = self.overlay.as_ref().map(Overlay::writer);
        let generation = self.overlay.as_ref().map(Overlay::current);
        let db = self.db();
        let journal = self.journal.as_deref();
        let durable = matches!(mode, Mode::Durable | Mode::Restart(_)) && !self.memory;
        let mut txn = guard(|| {
            let mut txn = db.begin_write().map_err(storage_err)?;
            if !durable {
                txn.set_durability(redb::Durability::None)
                    .map_err(storage_err)?;
            }
            Ok(txn)
        })?;
        // The tables a call opens stay open until it returns (they borrow the transaction),
        // then close before the commit.
        let mut write = RedbWrite::new(&txn);
        // The overlay's writes first: `f` reads them, and the commit writes them into the
        // file.
        let result = match &generation {
            Some(stack) if !stack.is_empty() => stack.write_into(&mut write),
            _ => Ok(()),
        }
        .and_then(|()| f(&mut StoreWrite::Redb(&mut write)));
        let value = match result {
            Ok(value) => value,
            Err(e) => {
                let _ = release(write);
                guard(|| txn.abort().map_err(storage_err))?;
                return Err(e);
            }
        };
        let journal = match journal {
            Some(journal) if mode != Mode::Eventual => journal,
            _ => {
                release(write)?;
                guard(|| txn.commit().map_err(storage_err))?;
                return Ok(value);
            }
        };
        // Held from before the commit until the journal restarted: no record lands in the old
        // generation after the commit that named the new one. A durable commit names the last
        // record it holds (every record below was committed before it began: journaled writes
        // are published under the writer lock this commit holds).
        let tail = journal.tail();
        if self.write_journal().is_some() {
            // Again under the tail lock: a sync may have failed since.
            if let Err(e) = journal.refuse_if_failed() {
                drop(tail);
                let _ = release(write);
                guard(|| txn.abort().map_err(storage_err))?;
                return Err(e);
            }
        }
        let held = tail.map(|t| t.seq);
        if let Some(seq) = held {
            write.set_meta_u64(META_WRITE_SEQ, seq)?;
        }
        release(write)?;
        // Only a restart keeps the tail across the commit: the writer lock keeps the others'
        // records after this one's `held`.
        let restart = match mode {
            Mode::Restart(generation) => Some((generation, tail)),
            _ => {
                drop(tail);
                None
            }
        };
        if !durable && !self.memory {
            guard(|| {
                txn.set_durability(redb::Durability::Immediate)
                    .map_err(storage_err)
            })?;
        }
        guard(|| txn.commit().map_err(storage_err))?;
        if let Some(seq) = held {
            journal.committed_durably(seq);
        }
        if let Some(overlay) = &self.overlay {
            overlay.reset();
        }
        if let Some((generation, mut tail)) = restart {
            if let Some(t) = tail.as_mut() {
                t.generation = generation;
                t.offset = 0;
            }
        }
        drop(writer);
        Ok(value)
    }

    /// A journaled write: `f` runs over the file and the overlay, and its changes are
    /// published in the overlay once their record is written (ARCHITECTURE.md, "The write
    /// overlay"). A record too large for the journal is committed durably instead, with the
    /// overlay.
    fn overlay_write<T>(
        &self,
        overlay: &Overlay,
        journal: &Journal,
        wait: bool,
        gather: bool,
        f: impl FnOnce(&mut StoreWrite<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let writer = overlay.writer();
        let generation = overlay.current();
        let (result, local, changes) = {
            let db = self.db();
            let read = RedbRead::begin(&db)?;
            let through = match overlay_through(&read) {
                Ok(through) => through,
                Err(e) => {
                    let _ = release(read);
                    return Err(e);
                }
            };
            let mut write = Layered::writer(&read, &generation, through);
            let result = f(&mut StoreWrite::Layered(&mut write));
            let (local, changes) = write.into_changes();
            release(read)?;
            (result, local, changes)
        };
        let value = match result {
            Ok(value) if !changes.is_empty() => value,
            other => {
                // Failed, or wrote nothing: an answer may rest on records not yet on disk.
                drop(writer);
                if wait {
                    journal.wait_durable(journal.last_seq(), gather)?;
                }
                return other;
            }
        };
        let mut tail = journal.tail();
        // Again under the tail lock: a sync may have failed since.
        journal.refuse_if_failed()?;
        let record = tail.as_ref().and_then(|t| {
            let set = WriteSet {
                seq: t.seq + 1,
                changes,
            };
            journal::encode_writes(t.generation, &set).filter(|r| {
                let len = r.len() as u64;
                len <= journal.size() / 8 && t.offset + len <= journal.size()
            })
        });
        let (Some(record), Some(t)) = (record, tail.as_mut()) else {
            // Too large for the journal's free space (or the journal not started yet): one
            // durable commit of the overlay and these changes.
            let held = tail.map(|t| t.seq);
            drop(tail);
            self.commit_with_overlay(overlay, &generation, local, held, journal)?;
            drop(writer);
            return Ok(value);
        };
        let seq = journal
            .append(t, &record)?
            .map_err(|_| Error::storage("the journal is full"))?;
        generation.top.publish(local);
        drop(tail);
        drop(writer);
        if wait {
            journal.wait_durable(seq, gather)?;
        }
        Ok(value)
    }

    /// A durable commit of `generation` and `local` (the caller holds the writer lock), then an
    /// empty generation.
    fn commit_with_overlay(
        &self,
        overlay: &Overlay,
        generation: &Stack,
        local: Local,
        held: Option<u64>,
        journal: &Journal,
    ) -> Result<()> {
        let db = self.db();
        let txn = guard(|| db.begin_write().map_err(storage_err))?;
        let mut write = RedbWrite::new(&txn);
        let applied = generation.write_into(&mut write).and_then(|()| {
            local.write_into(&mut write)?;
            if let Some(seq) = held {
                write.set_meta_u64(META_WRITE_SEQ, seq)?;
            }
            // Just before the commit: a sync may have failed while the overlay was written.
            journal.refuse_if_failed()
        });
        if let Err(e) = applied {
            let _ = release(write);
            guard(|| txn.abort().map_err(storage_err))?;
            return Err(e);
        }
        release(write)?;
        guard(|| txn.commit().map_err(storage_err))?;
        if let Some(seq) = held {
            journal.committed_durably(seq);
        }
        overlay.reset();
        Ok(())
    }

    /// A checkpoint that lets writers go on: the current generation moves below a new one
    /// (both read by every transaction), is written into the file in one durable commit
    /// without the writer lock, then drops out (ARCHITECTURE.md, "The write overlay").
    fn flush_overlay(&self, overlay: &Overlay, journal: &Journal) -> Result<()> {
        let _one = overlay.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let (db, old, held, txn) = {
            let writer = overlay.writer();
            // After a journal I/O error nothing more commits (ARCHITECTURE.md, "Journaled
            // writes", item 9): a generation may hold a write whose caller was told it failed.
            journal.refuse_if_failed()?;
            // Every record written so far is published (under the writer lock), so the
            // generation holds every journaled write the file lacks up to `held`.
            let held = journal.tail().map(|t| t.seq);
            {
                let stack = overlay.stack();
                if stack.below.is_some() {
                    // A checkpoint before this one failed to write it: both, the writers
                    // waiting.
                    drop(stack);
                    drop(writer);
                    return self.with_write(Mode::Durable, |_| Ok(()));
                }
                if stack.top.is_empty() {
                    return Ok(());
                }
            }
            // Begun under the writer lock: a durable commit that follows (it takes the
            // writer lock first) begins after this one committed, so nothing newer is ever
            // written over by the older generation. (The stack does not change meanwhile:
            // only holders of the writer lock replace it.)
            let db = self.db();
            let txn = guard(|| db.begin_write().map_err(storage_err))?;
            let old = {
                let mut stack = overlay.stack();
                let old = std::mem::replace(&mut stack.top, overlay.fresh());
                stack.below = Some(old.clone());
                old
            };
            (db, old, held, txn)
        };
        let mut write = RedbWrite::new(&txn);
        let applied = old.write_into(&mut write).and_then(|()| match held {
            Some(seq) => write.set_meta_u64(META_WRITE_SEQ, seq),
            None => Ok(()),
        });
        // Again before the commit: a sync may have failed meanwhile.
        let applied = applied.and_then(|()| journal.refuse_if_failed());
        if let Err(e) = applied {
            let _ = release(write);
            guard(|| txn.abort().map_err(storage_err))?;
            return Err(e);
        }
        release(write)?;
        guard(|| txn.commit().map_err(storage_err))?;
        drop(db);
        if let Some(seq) = held {
            journal.committed_durably(seq);
        }
        #[cfg(test)]
        if let Some(hook) = tests::AFTER_FLUSH_COMMIT.with(|h| h.borrow_mut().take()) {
            hook(self);
        }
        // Unless a durable commit since wrote every generation and replaced them.
        let mut stack = overlay.stack();
        if stack.below.as_ref().is_some_and(|b| Arc::ptr_eq(b, &old)) {
            stack.below = None;
        }
        Ok(())
    }

    /// Writes the overlay's writes into the file (a durable commit), for the calls that read
    /// the file's tables directly.
    fn write_overlay(&self) -> Result<()> {
        match &self.overlay {
            Some(overlay) if !overlay.current().is_empty() => {
                self.with_write(Mode::Durable, |_| Ok(()))
            }
            _ => Ok(()),
        }
    }

    /// Creates the tables of a new database, or checks and upgrades an existing one's schema.
    fn ensure_schema(self) -> Result<RedbStore> {
        self.with_write(Mode::Durable, |tx| super::schema::ensure_schema(tx))?;
        Ok(self)
    }

    /// Waits for the running transactions without queuing as a writer: std's `RwLock` makes
    /// new readers wait behind a waiting writer, and an admission reads the store under the
    /// ledger lock while a write transaction (a reader of this lock) may wait for that ledger
    /// lock, so a queued `compact` would close the circle. Gives up (`storage_error`) after
    /// [`COMPACT_PATIENCE`] without a moment free of transactions.
    fn compact_unguarded(&self) -> Result<bool> {
        let since = std::time::Instant::now();
        let mut db = loop {
            match self.db.try_write() {
                Ok(db) => break db,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if since.elapsed() >= COMPACT_PATIENCE {
                        return Err(Error::storage(format!(
                            "compact found no moment without a running call in {} s: run it \
                             when the database is quieter",
                            COMPACT_PATIENCE.as_secs()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        };
        db.compact().map_err(storage_err)
    }

    fn backup_unguarded(&self, path: &Path) -> Result<()> {
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

    fn table_lens_unguarded(&self) -> Result<Vec<(&'static str, u64)>> {
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

impl Backend for RedbStore {
    fn read_dyn(
        &self,
        _site: Option<&'static std::panic::Location<'static>>,
        f: &mut dyn FnMut(&dyn Reads) -> Result<()>,
    ) -> Result<()> {
        self.with_read(|tx| f(tx))
    }

    /// One writer at a time (the writer lock, or redb's), so a transaction never loses a
    /// conflict and `f` runs once.
    fn write_dyn(
        &self,
        commit: Commit,
        f: &mut dyn FnMut(&mut dyn Writes) -> Result<()>,
    ) -> Result<()> {
        // With `Immediate` durability on a file every commit that is not durable is
        // journaled, so a replay rebuilds exactly a prefix of the commits.
        let journaled = self.write_journal().is_some();
        let mode = match commit {
            Commit::AsOpened if journaled => Mode::Journaled {
                wait: true,
                gather: true,
            },
            Commit::AsOpened if self.durability == CommitDurability::Immediate => Mode::Durable,
            Commit::Deferred if journaled => Mode::Journaled {
                wait: false,
                gather: false,
            },
            Commit::Synced if journaled => Mode::Journaled {
                wait: true,
                gather: false,
            },
            Commit::AsOpened | Commit::Deferred => Mode::Eventual,
            Commit::Durable | Commit::Synced => Mode::Durable,
            Commit::Restart(generation) => Mode::Restart(generation),
        };
        if let (Commit::Durable | Commit::Restart(_), Some(overlay), Some(journal)) =
            (commit, &self.overlay, self.write_journal())
        {
            // A checkpoint: most of the overlay into the file first, while writers go on;
            // then, with the writers waiting, what they wrote meanwhile and the checkpoint's
            // own changes, in one durable commit (a failure of either writes nothing of
            // `f`, so a fold can put its changes back).
            self.flush_overlay(overlay, journal)?;
        }
        self.with_write(mode, |tx| f(tx))
    }

    fn is_memory(&self) -> bool {
        self.memory
    }

    /// A redb file is open in one process at a time.
    fn is_shared(&self) -> bool {
        false
    }

    /// Copies every table, as of one snapshot, into a new database file at `path`.
    fn backup_to(&self, path: &Path) -> Result<()> {
        self.write_overlay()?;
        guard(|| self.backup_unguarded(path))
    }

    /// Rewrites the file without its free pages; waits for running transactions first.
    fn compact(&self) -> Result<bool> {
        guard(|| self.compact_unguarded())
    }

    fn table_lens(&self) -> Result<Vec<(&'static str, u64)>> {
        self.write_overlay()?;
        guard(|| self.table_lens_unguarded())
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
    let mut range = guard(|| {
        table
            .range::<&[u8]>(bounds(start, end))
            .map_err(storage_err)
    })?;
    loop {
        // Each step into redb is guarded; the visitor (orgdb's code) is not.
        let item = guard(|| {
            Ok(if reverse {
                range.next_back()
            } else {
                range.next()
            })
        })?;
        let Some(item) = item else {
            return Ok(());
        };
        let (k, v) = item.map_err(storage_err)?;
        // Reading an entry's bytes reads its page: guarded too.
        let (k, v) = guard(|| Ok((k.value(), v.value())))?;
        if !visit(k, v)? {
            return Ok(());
        }
    }
}

/// Runs `read` on the value of `key` in `table` where it lies; whether there was one. Only
/// the steps into redb are guarded: `read` (orgdb's code) is not.
fn read_entry(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    read: ReadValue<'_>,
) -> Result<bool> {
    let Some(entry) = guard(|| table.get(key).map_err(storage_err))? else {
        return Ok(false);
    };
    // Reading an entry's bytes reads its page: guarded too.
    let bytes = guard(|| Ok(entry.value()))?;
    read(bytes).map(|()| true)
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
type WriteTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Opening a redb table costs a lookup in the table tree, and closing a written one costs
/// more: a transaction keeps each table it opens until it ends. A read transaction reads its
/// tables where they lie in the cache, borrowed ([`RedbRead::with_table`]); a write
/// transaction takes a table out of the cache while it uses it, so a visitor that reaches the
/// same table again cannot hit a borrowed cell (it gets a `storage_error`: visitors only
/// collect).
fn cache_cell<T>(cache: &mut Vec<Option<T>>, table: Table) -> &mut Option<T> {
    let i = table as usize;
    if cache.len() <= i {
        cache.resize_with(Table::ALL.len().max(i + 1), || None);
    }
    &mut cache[i]
}

pub(crate) struct RedbRead {
    txn: redb::ReadTransaction,
    tables: RefCell<Vec<Option<ReadTable>>>,
}

impl RedbRead {
    /// A read transaction of `db`.
    fn begin(db: &Database) -> Result<RedbRead> {
        let txn = guard(|| db.begin_read().map_err(storage_err))?;
        Ok(RedbRead {
            txn,
            tables: RefCell::new(Vec::new()),
        })
    }

    /// Runs `f` on the table, cached or opened now (and then cached); `None` when it does not
    /// exist yet. The cache stays borrowed (shared) while `f` runs: a table that `f` reaches
    /// again is read where it lies, and one not cached yet is opened for that use alone.
    fn with_table<R>(
        &self,
        table: Table,
        f: impl FnOnce(&ReadTable) -> Result<R>,
    ) -> Result<Option<R>> {
        if let Ok(cache) = self.tables.try_borrow() {
            if let Some(Some(t)) = cache.get(table as usize) {
                return f(t).map(Some);
            }
        }
        let opened = guard(|| match self.txn.open_table(def(table)) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(storage_err(e)),
        })?;
        let Some(t) = opened else {
            return Ok(None);
        };
        let result = f(&t);
        if let Ok(mut cache) = self.tables.try_borrow_mut() {
            *cache_cell(&mut cache, table) = Some(t);
        }
        result.map(Some)
    }
}

impl KvRead for RedbRead {
    fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool> {
        let found = self.with_table(table, |t| read_entry(t, key, read))?;
        Ok(found == Some(true))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        self.with_table(table, |t| scan_table(t, start, end, reverse, visit))
            .map(|_| ())
    }

    fn len(&self, table: Table) -> Result<u64> {
        let len = self.with_table(table, |t| guard(|| t.len().map_err(storage_err)))?;
        Ok(len.unwrap_or(0))
    }
}

pub(crate) struct RedbWrite<'t> {
    txn: &'t redb::WriteTransaction,
    tables: RefCell<Vec<Option<WriteTable<'t>>>>,
}

/// A write transaction as its closure sees it: on the file (durable commits, and every
/// commit without a journal), or through the write overlay (journaled writes).
pub(crate) enum StoreWrite<'w, 't> {
    Redb(&'w mut RedbWrite<'t>),
    Layered(&'w mut Layered<'t, RedbRead>),
}

impl KvRead for StoreWrite<'_, '_> {
    fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool> {
        match self {
            StoreWrite::Redb(w) => w.get_with(table, key, read),
            StoreWrite::Layered(w) => w.get_with(table, key, read),
        }
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        match self {
            StoreWrite::Redb(w) => w.scan(table, start, end, reverse, visit),
            StoreWrite::Layered(w) => w.scan(table, start, end, reverse, visit),
        }
    }

    fn len(&self, table: Table) -> Result<u64> {
        match self {
            StoreWrite::Redb(w) => w.len(table),
            StoreWrite::Layered(w) => w.len(table),
        }
    }
}

impl KvWrite for StoreWrite<'_, '_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            StoreWrite::Redb(w) => w.put(table, key, value),
            StoreWrite::Layered(w) => w.put(table, key, value),
        }
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        match self {
            StoreWrite::Redb(w) => w.delete(table, key),
            StoreWrite::Layered(w) => w.delete(table, key),
        }
    }

    fn touch(&mut self, table: Table) -> Result<()> {
        match self {
            StoreWrite::Redb(w) => w.touch(table),
            StoreWrite::Layered(w) => w.touch(table),
        }
    }
}

impl<'t> RedbWrite<'t> {
    fn new(txn: &'t redb::WriteTransaction) -> RedbWrite<'t> {
        RedbWrite {
            txn,
            tables: RefCell::new(Vec::new()),
        }
    }

    fn take(&self, table: Table) -> Result<WriteTable<'t>> {
        if let Some(t) = cache_cell(&mut self.tables.borrow_mut(), table).take() {
            return Ok(t);
        }
        guard(|| self.txn.open_table(def(table)).map_err(storage_err))
    }

    fn put_back(&self, table: Table, t: WriteTable<'t>) {
        *cache_cell(&mut self.tables.borrow_mut(), table) = Some(t);
    }
}

impl KvRead for RedbWrite<'_> {
    fn get_with(&self, table: Table, key: &[u8], read: ReadValue<'_>) -> Result<bool> {
        let t = self.take(table)?;
        let found = read_entry(&t, key, read);
        // Back in the cache even after a failure: the transaction's release closes it.
        self.put_back(table, t);
        found
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: Visit<'_>,
    ) -> Result<()> {
        let t = self.take(table)?;
        let result = scan_table(&t, start, end, reverse, visit);
        self.put_back(table, t);
        result
    }

    fn len(&self, table: Table) -> Result<u64> {
        let t = self.take(table)?;
        let len = guard(|| t.len().map_err(storage_err));
        self.put_back(table, t);
        len
    }
}

impl KvWrite for RedbWrite<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let mut t = self.take(table)?;
        let result = guard(|| t.insert(key, value).map(|_| ()).map_err(storage_err));
        self.put_back(table, t);
        result
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<bool> {
        let mut t = self.take(table)?;
        let result = guard(|| t.remove(key).map(|old| old.is_some()).map_err(storage_err));
        self.put_back(table, t);
        result
    }

    fn touch(&mut self, table: Table) -> Result<()> {
        let t = self.take(table)?;
        self.put_back(table, t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Commit;

    type Hook = Box<dyn FnOnce(&RedbStore)>;

    thread_local! {
        /// Runs once in `flush_overlay`, between its commit and the generation's drop-out.
        pub(super) static AFTER_FLUSH_COMMIT: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    fn open(dir: &Path) -> RedbStore {
        let journal = Arc::new(Journal::open(&dir.join("t.redb.journal"), 1 << 20).unwrap());
        let store = RedbStore::open(&dir.join("t.redb"), CommitDurability::Immediate)
            .unwrap()
            .with_journal(journal.clone())
            .unwrap();
        if store.write_journal().is_some() && journal.last_seq() == 0 {
            backend(&store)
                .write_with(Commit::Durable, |tx| tx.set_meta_u64(META_GENERATION, 1))
                .unwrap();
            journal.start(1, 0);
        }
        store
    }

    fn backend(store: &RedbStore) -> &dyn Backend {
        store
    }

    fn meta(store: &RedbStore, name: &str) -> Option<u64> {
        backend(store).read(|tx| tx.meta_u64(name)).unwrap()
    }

    fn set(store: &RedbStore, commit: Commit, name: &str, value: u64) {
        backend(store)
            .write_with(commit, |tx| tx.set_meta_u64(name, value))
            .unwrap();
    }

    /// A read transaction reads its cached tables where they lie, borrowed: a scan's visitor
    /// that reads the same table again (a get, a nested scan, its length) or a table not
    /// opened yet reads what the transaction holds, and nothing panics.
    #[test]
    fn a_scan_visitor_reads_the_transaction_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let db = store.db();
        let txn = db.begin_write().unwrap();
        let mut write = RedbWrite::new(&txn);
        for i in 0..3u8 {
            write.put(Table::Users, &[i], &[i, i]).unwrap();
            write.put(Table::Orgs, &[i], &[9, i]).unwrap();
        }
        release(write).unwrap();
        txn.commit().unwrap();
        let tx = RedbRead::begin(&db).unwrap();
        let mut seen = Vec::new();
        tx.scan(Table::Users, &[], None, false, &mut |k, v| {
            assert_eq!(tx.get(Table::Users, k)?.as_deref(), Some(v));
            let mut inner = 0;
            tx.scan(Table::Users, &[], None, true, &mut |_, _| {
                inner += 1;
                Ok(true)
            })?;
            seen.push((
                k.to_vec(),
                tx.get(Table::Orgs, k)?,
                inner,
                tx.len(Table::Users)?,
            ));
            Ok(true)
        })
        .unwrap();
        let expected: Vec<_> = (0..3u8)
            .map(|i| (vec![i], Some(vec![9, i]), 3, 3))
            .collect();
        assert_eq!(seen, expected);
        // Opened inside the scan, for one read each: opened and cached now.
        assert_eq!(tx.len(Table::Orgs).unwrap(), 3);
        assert_eq!(tx.get(Table::Orgs, &[2]).unwrap(), Some(vec![9, 2]));
        assert_eq!(tx.get(Table::Orgs, &[7]).unwrap(), None);
    }

    /// A durable commit that runs after a checkpoint's first step committed the generation
    /// below and before it dropped out: it writes the generation again and the one above it
    /// (newer values of the same key), and the first step then leaves the stack it replaced
    /// alone. Every value is the newest, in memory and after a reopen.
    #[test]
    fn a_durable_commit_between_a_flush_and_its_end_keeps_the_newest_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        set(&store, Commit::AsOpened, "k", 1);
        assert!(!store.overlay.as_ref().unwrap().current().is_empty());
        AFTER_FLUSH_COMMIT.with(|h| {
            *h.borrow_mut() = Some(Box::new(|store: &RedbStore| {
                // Published above the generation being flushed.
                set(store, Commit::AsOpened, "k", 2);
                assert_eq!(meta(store, "k"), Some(2));
                store
                    .with_write(Mode::Durable, |tx| tx.set_meta_u64("k2", 7))
                    .unwrap();
                assert!(store.overlay.as_ref().unwrap().current().is_empty());
                assert_eq!(meta(store, "k"), Some(2));
            }));
        });
        // A checkpoint: the flush (with the hook), then its own durable commit.
        set(&store, Commit::Durable, "k3", 3);
        assert!(
            AFTER_FLUSH_COMMIT.with(|h| h.borrow().is_none()),
            "the hook ran"
        );
        let stack = store.overlay.as_ref().unwrap().current();
        assert!(stack.below.is_none());
        let check = |store: &RedbStore| {
            assert_eq!(meta(store, "k"), Some(2));
            assert_eq!(meta(store, "k2"), Some(7));
            assert_eq!(meta(store, "k3"), Some(3));
        };
        check(&store);
        drop(store);
        check(&open(dir.path()));
    }
}
