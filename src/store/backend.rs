//! The storage seam: what [`Db`](crate::Db) and the usage ledger hold, so that a storage
//! engine is an implementation of [`Backend`], not a rewrite.
//!
//! A transaction is a closure over the typed interface ([`Reads`] / [`Writes`]) that commits
//! only when it returns `Ok`. The closures are `Fn` and touch nothing outside their
//! transaction, so a backend may run one again: engines with optimistic or serializable
//! concurrency (PostgreSQL, CockroachDB) retry a transaction that lost a conflict, and only
//! report `conflict` once their retries are spent.

use std::panic::Location;
use std::path::Path;

use super::{Reads, UsageAsk, UsageGuess, Writes};
use crate::error::Result;

/// How durable a write transaction's commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// As the database was opened (`Options::durability`).
    AsOpened,
    /// Durable when the commit returns (checkpoints).
    Durable,
    /// On disk when the commit returns, by the cheapest means the backend has: a file with
    /// immediate durability journals the transaction (ARCHITECTURE.md, "Journaled writes"),
    /// others commit durably. Whatever the database's durability option.
    Synced,
    /// Visible at once; durable by a later durable commit (usage folds between checkpoints).
    Deferred,
    /// Durable, and a file's journal then restarts at offset 0 under this generation, with no
    /// record written between the commit and the restart (the transaction names the
    /// generation in `meta`). A backend without a journal takes it as `Durable`.
    Restart(u32),
}

/// A storage engine. Every table access of the library goes through one of these.
pub(crate) trait Backend: Send + Sync {
    /// Runs `f` in one read transaction (a consistent snapshot). `f` may run more than once.
    /// `site` names the call site (`None`: `f` must not run twice): a backend may learn which
    /// sites read with one statement and run those without a transaction.
    fn read_dyn(
        &self,
        site: Option<&'static Location<'static>>,
        f: &mut dyn FnMut(&dyn Reads) -> Result<()>,
    ) -> Result<()>;

    /// Runs `f` in one write transaction, committing only when it returns `Ok`. `f` may run
    /// more than once (after a serialization failure); only the last run's effects commit.
    fn write_dyn(
        &self,
        commit: Commit,
        f: &mut dyn FnMut(&mut dyn Writes) -> Result<()>,
    ) -> Result<()>;

    /// As [`write_dyn`](Self::write_dyn), for a transaction that reads the records of `orgs`
    /// and changes only their usage state (month totals, day rows, idempotency keys, leases,
    /// threshold events). Every such transaction of an organization writes the same rows, so
    /// on an engine with optimistic checks its concurrent writers would keep failing each
    /// other; such an engine locks the organizations' rows first and runs them one after the
    /// other instead. By default, a plain write.
    ///
    /// `prefetch`: what `f` will likely ask of [`Reads::usage_states`] (its first call), if the
    /// caller can tell before `f` runs. A server backend may send that read with the lock, in
    /// one round trip, and answer `f`'s call from it if `f` asks exactly that; anything else
    /// is read when asked.
    ///
    /// `guesses`: none, or one per prefetched ask (each of an organization of `orgs`, in the
    /// same order): what `f`'s reads of the organizations' records and of the asks will
    /// likely answer. A server backend may answer them from the guesses and send the lock, a
    /// check of the guesses and `f`'s writes with COMMIT in one round trip; the check fails
    /// the transaction unless the rows read then are the ones guessed, and `f` then runs
    /// again without the guesses. A run of `f` on guesses reads nothing else: any other read
    /// fails it, and it runs again without them.
    fn write_usage_dyn(
        &self,
        commit: Commit,
        orgs: &[&str],
        prefetch: &[(&str, UsageAsk<'_>)],
        guesses: &[UsageGuess],
        f: &mut dyn FnMut(&mut dyn Writes) -> Result<()>,
    ) -> Result<()> {
        let _ = (orgs, prefetch, guesses);
        self.write_dyn(commit, f)
    }

    /// Whether the data lives in this process's memory only (no file, no server).
    fn is_memory(&self) -> bool;

    /// Whether other processes may write the same database at the same time (a server).
    fn is_shared(&self) -> bool;

    /// Writes a consistent copy of the database to a new file at `path`.
    fn backup_to(&self, path: &Path) -> Result<()>;

    /// Gives free space back; returns whether anything changed.
    fn compact(&self) -> Result<bool>;

    /// Rows per table (for `stats`).
    fn table_lens(&self) -> Result<Vec<(&'static str, u64)>>;
}

impl dyn Backend + '_ {
    /// Runs `f` in one read transaction and returns its result.
    #[track_caller]
    pub(crate) fn read<T>(&self, f: impl Fn(&dyn Reads) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.read_dyn(Some(Location::caller()), &mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }

    /// Runs `f` in one read transaction, never twice: for reads that stream out as they go
    /// (exports). If the backend would need to run it again, the call fails instead.
    pub(crate) fn read_once<T>(&self, f: impl FnOnce(&dyn Reads) -> Result<T>) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        self.read_dyn(None, &mut |tx| {
            let f = f.take().ok_or_else(|| {
                crate::error::Error::storage("the read failed after it had started streaming")
            })?;
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }

    /// Runs `f` in one write transaction (durable as opened) and returns its result.
    pub(crate) fn write<T>(&self, f: impl Fn(&mut dyn Writes) -> Result<T>) -> Result<T> {
        self.write_with(Commit::AsOpened, f)
    }

    /// As [`write`](Self::write), choosing the commit's durability.
    pub(crate) fn write_with<T>(
        &self,
        commit: Commit,
        f: impl Fn(&mut dyn Writes) -> Result<T>,
    ) -> Result<T> {
        let mut out = None;
        self.write_dyn(commit, &mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }

    /// Runs `f` in one write transaction on the usage state of `orgs` (durable as opened;
    /// see [`Backend::write_usage_dyn`]) and returns its result.
    pub(crate) fn write_usage<T>(
        &self,
        orgs: &[&str],
        prefetch: &[(&str, UsageAsk<'_>)],
        f: impl Fn(&mut dyn Writes) -> Result<T>,
    ) -> Result<T> {
        self.write_usage_guessed(orgs, prefetch, &[], f)
    }

    /// As [`write_usage`](Self::write_usage), with guesses of what `f` reads (see
    /// [`Backend::write_usage_dyn`]).
    pub(crate) fn write_usage_guessed<T>(
        &self,
        orgs: &[&str],
        prefetch: &[(&str, UsageAsk<'_>)],
        guesses: &[UsageGuess],
        f: impl Fn(&mut dyn Writes) -> Result<T>,
    ) -> Result<T> {
        let mut out = None;
        self.write_usage_dyn(Commit::AsOpened, orgs, prefetch, guesses, &mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(not_run)
    }
}

/// A backend that reported success without running the transaction: a bug in the backend.
fn not_run() -> crate::error::Error {
    crate::error::Error::storage("the storage backend committed without running the transaction")
}
