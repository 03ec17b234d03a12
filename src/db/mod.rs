//! The database handle: opening, the transaction helpers every operation goes through, and
//! the background checkpoint. The operations are `impl Db` blocks in the files beside this
//! one, one per area (as in `ops/`).

mod audit;
mod entitlements;
mod invitations;
mod maintenance;
mod members;
mod orgs;
mod projects;
mod recorder;
mod reservations;
mod resources;
mod usage;
mod users;

pub use recorder::UsageRecorder;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::IdGen;
use crate::ledger::Ledger;
use crate::ops::Ctx;
use crate::options::{Durability, Options};
use crate::store::journal::Journal;
#[cfg(feature = "postgres")]
use crate::store::postgres;
use crate::store::{Backend, CommitDurability, Reads, RedbStore, Writes};

/// What the handles and the checkpoint thread share.
struct Core {
    store: Box<dyn Backend>,
    opts: Options,
    ids: IdGen,
    ledger: Ledger,
}

/// What the handles share: the core and the checkpoint thread. Only handles hold it, so its
/// drop (the last handle's) runs on a caller's thread, never on the checkpoint thread: the
/// final flush finishes before the caller goes on (and before its process can exit).
struct Inner {
    core: Arc<Core>,
    flusher: Option<Flusher>,
}

impl std::ops::Deref for Inner {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

/// The background checkpoint thread and what stops it.
struct Flusher {
    signal: Arc<FlusherSignal>,
    thread: std::thread::JoinHandle<()>,
}

/// Stops the background checkpoint thread.
#[derive(Default)]
struct FlusherSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Core {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now: crate::model::time::truncate(self.opts.clock.now()),
            opts: &self.opts,
            ids: &self.ids,
            ledger: Some(&self.ledger),
            leases: self.ledger.lease_view(),
        }
    }

    /// Folds admitted usage into the tables (a non-durable commit), so a read that follows sees
    /// every admitted event and the `usage.threshold` events its crossings appended.
    fn fold_usage(&self, ctx: &Ctx) -> Result<()> {
        self.ledger.fold(&*self.store, ctx, false, false)
    }

    /// A durable checkpoint of the usage ledger, restarting the journal when half full.
    fn checkpoint(&self) -> Result<()> {
        let reset = self.ledger.journal_fill() > 0.5;
        self.ledger.fold(&*self.store, &self.ctx(), true, reset)
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop the checkpoint thread (waiting for a checkpoint it is
    /// running), then make buffered usage durable and return this handle's leases.
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            *flusher
                .signal
                .stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = true;
            flusher.signal.wake.notify_all();
            let _ = flusher.thread.join();
        }
        let core: &Core = &self.core;
        let close = || {
            if core.ledger.needs_checkpoint() {
                let _ = core.checkpoint();
            }
            let _ = core.ledger.release_leases(&*core.store, &core.ctx());
        };
        if !core.store.is_shared() {
            close();
            return;
        }
        // On a server these last calls block on the connections' own runtimes, which tokio
        // refuses (with a panic) on a thread of a host's async runtime, where the last handle
        // of an async host may well drop: a thread of their own runs them. Should none start,
        // the leases expire on the server instead.
        std::thread::scope(|scope| {
            if let Ok(closing) = std::thread::Builder::new()
                .name("orgdb-close".to_owned())
                .spawn_scoped(scope, close)
            {
                let _ = closing.join();
            }
        });
    }
}

/// Checkpoints every `interval` while the database is open; ends when its handles are gone.
fn spawn_flusher(core: Arc<Core>, interval: Duration) -> Option<Flusher> {
    let signal = Arc::new(FlusherSignal::default());
    let stop = signal.clone();
    let thread = std::thread::Builder::new()
        .name("orgdb-usage-flush".to_owned())
        .spawn(move || loop {
            {
                let stopped = stop.stopped.lock().unwrap_or_else(|p| p.into_inner());
                let (stopped, _) = stop
                    .wake
                    .wait_timeout_while(stopped, interval, |s| !*s)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
            }
            if core.ledger.needs_checkpoint() {
                // A failure leaves the changes queued for the next try; callers meet the
                // underlying storage error on their own next write.
                let _ = core.checkpoint();
            }
        })
        .ok()?;
    Some(Flusher { signal, thread })
}

/// A handle to one orgdb database. Cheap to clone; clones share the database and may be used
/// from many threads at once. Each method is one transaction.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

/// A database file of 0 bytes beside a journal that holds records was truncated, not created:
/// the journal is written only once the database opened. redb would take the empty file for a
/// new database and every row would be silently gone, so opening refuses it.
fn refuse_truncated(path: &Path, journal: &Path) -> Result<()> {
    let empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0);
    if empty && crate::store::journal::holds_records(journal)? {
        return Err(Error::corrupted(format!(
            "{} is empty but its journal {} holds records: the database file was truncated. \
             Restore it from a backup, or remove both files to start a new database",
            path.display(),
            journal.display()
        )));
    }
    Ok(())
}

impl Db {
    /// Opens (creating if missing) the database at `path` with default options: a file, or a
    /// PostgreSQL database when `path` is a URL (`postgres://user:password@host:5432/db`).
    ///
    /// A file is used by one process (its handles may be shared by any number of threads).
    /// A PostgreSQL database may be opened by any number of processes at once, on any number
    /// of machines, with the same rules and exact quotas: orgdb creates or upgrades its tables
    /// on open. The URL takes libpq's parameters that the client knows (`connect_timeout`,
    /// `application_name`, …), `sslmode` as libpq reads it (`disable`; `prefer`, the default,
    /// and `require` encrypt; `verify-ca` and `verify-full` also check the server's
    /// certificate, the latter its host name too), and three of orgdb's: `schema=name` (its
    /// tables in a schema of their own, created when missing), `sslrootcert=/path/ca.pem` (the
    /// authorities to trust for TLS instead of the web's roots) and `pool_max=N` (connections
    /// per handle, default 16).
    ///
    /// # Errors
    /// `storage_error` when the file cannot be opened or is in use by another process or
    /// handle, or the server cannot be reached; `incompatible_version` when a newer orgdb
    /// wrote it; `corrupted` when a file is damaged, not an orgdb database (another format),
    /// or empty (0 bytes) beside a journal that holds records (a truncated file, not a new
    /// one); `validation_error` (`url`) for a URL the client cannot parse.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(path, Options::default())
    }

    /// Opens (creating if missing) the database at `path`, a file or a PostgreSQL URL (see
    /// [`Db::open`]).
    ///
    /// `Options::durability` applies to both: `Eventual` commits on PostgreSQL with
    /// `synchronous_commit = off`.
    ///
    /// # Errors
    /// As [`Db::open`], and `validation_error` for invalid options.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let durability = match opts.durability {
            Durability::Immediate => CommitDurability::Immediate,
            Durability::Eventual => CommitDurability::Eventual,
        };
        #[cfg(feature = "postgres")]
        if let Some(url) = path.as_ref().to_str().filter(|p| postgres::is_url(p)) {
            if opts.usage_lease_ttl < opts.usage_flush_interval * 2 {
                return Err(Error::invalid(
                    "usage_lease_ttl",
                    "Must be at least twice usage_flush_interval (each flush renews leases)",
                ));
            }
            let store = postgres::PgStore::open(url, opts.durability == Durability::Immediate)?;
            return Db::start(Box::new(store), opts, None);
        }
        let path = path.as_ref();
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let journal_path = Path::new(&journal_path);
        refuse_truncated(path, journal_path)?;
        let store = RedbStore::open(path, durability)?;
        let journal = Arc::new(Journal::open(journal_path, opts.journal_size)?);
        let store = store.with_journal(journal.clone())?;
        Db::start(Box::new(store), opts, Some(journal))
    }

    /// A throw-away database in memory, with default options.
    ///
    /// # Errors
    /// Only if memory cannot be had.
    pub fn in_memory() -> Result<Db> {
        Db::in_memory_with(Options::default())
    }

    /// A throw-away database in memory.
    ///
    /// # Errors
    /// `validation_error` for invalid options.
    pub fn in_memory_with(opts: Options) -> Result<Db> {
        opts.validate()?;
        Db::start(Box::new(RedbStore::in_memory()?), opts, None)
    }

    fn start(store: Box<dyn Backend>, opts: Options, journal: Option<Arc<Journal>>) -> Result<Db> {
        let ids = IdGen::default();
        let ledger = match journal {
            None if store.is_shared() => Ledger::for_shared_backend(opts.usage_lease_ttl),
            Some(journal) => {
                let ctx = Ctx {
                    now: crate::model::time::truncate(opts.clock.now()),
                    opts: &opts,
                    ids: &ids,
                    ledger: None,
                    leases: crate::ledger::LeaseView::default(),
                };
                Ledger::open(&*store, &ctx, journal)?
            }
            None => Ledger::in_memory(),
        };
        let file_backed = !store.is_memory();
        let interval = opts.usage_flush_interval;
        let core = Arc::new(Core {
            store,
            opts,
            ids,
            ledger,
        });
        let flusher = if file_backed {
            spawn_flusher(core.clone(), interval)
        } else {
            None
        };
        Ok(Db {
            inner: Arc::new(Inner { core, flusher }),
        })
    }

    /// The options this handle was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// The current time by this database's clock.
    pub fn now(&self) -> DateTime<Utc> {
        crate::model::time::truncate(self.inner.opts.clock.now())
    }

    fn ctx(&self) -> Ctx<'_> {
        self.inner.ctx()
    }

    /// Runs `f` in one write transaction. It may run more than once (a backend retries
    /// serialization failures), so it changes nothing outside the transaction.
    pub(crate) fn write<T>(&self, f: impl Fn(&mut dyn Writes, &Ctx) -> Result<T>) -> Result<T> {
        let ctx = self.ctx();
        self.inner.store.write(|tx| f(tx, &ctx))
    }

    /// Runs `f` in one read transaction (it may run more than once).
    #[track_caller]
    pub(crate) fn read<T>(&self, f: impl Fn(&dyn Reads, &Ctx) -> Result<T>) -> Result<T> {
        let ctx = self.ctx();
        self.inner.store.read(|tx| f(tx, &ctx))
    }
}
