//! The database handle, its options and clocks.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::authz::Actor;
use crate::error::{Error, Result};
use crate::ids::IdGen;
use crate::ledger::{day_and_month_micros, Ledger, Mode, OrgHandle};
use crate::model::audit::AuditEvent;
use crate::model::invitation::{
    CreatedInvitation, Invitation, InvitationPreview, InvitationQuery, NewInvitation,
    PendingInvitation,
};
use crate::model::membership::{Member, MemberQuery, MemberRef, Membership, RemovedMember};
use crate::model::org::{
    LimitOverrides, LimitOverridesPatch, NewOrganization, Organization, OrganizationDetails,
    OrganizationPatch, OrganizationSettings, OrganizationWithMembership, SlugCheck,
};
use crate::model::page::Page;
use crate::model::plan::PlanCatalog;
use crate::model::project::{NewProject, Project, ProjectMember, ProjectPatch};
use crate::model::resource::{Resource, ResourceKind};
use crate::model::usage::{UsageEvent, UsageQuery, UsageReceipt, UsageReport};
use crate::model::user::{NewUser, User, UserPatch};
use crate::ops::usage::PruneReport;
use crate::ops::{self, Ctx};
use crate::recorder::UsageRecorder;
use crate::store::journal::Journal;
use crate::store::{ensure_schema, CheckReport, CommitDurability, KvRead, KvWrite, RedbStore};

/// A source of the current time. Every timestamp orgdb writes comes from the clock in
/// [`Options`], so tests (and binding users) can drive expiry and month rollover.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// The current instant in microseconds since the Unix epoch. A clock may answer this
    /// without building a calendar date, for the usage hot path.
    fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// The system clock (default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn now_micros(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        match since {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// Moves the clock to `at` (it may go backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When a committed write reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every write is on disk when its call returns (default).
    #[default]
    Immediate,
    /// Writes are visible at once and reach the disk with a later immediate commit or a clean
    /// close: faster, but a crash may lose the most recent writes (never tear one).
    Eventual,
}

/// Settings of a database handle.
#[derive(Debug, Clone)]
pub struct Options {
    /// Source of time (the system clock by default).
    pub clock: Arc<dyn Clock>,
    /// Default invitation lifetime (7 days); 1 hour to 30 days.
    pub invitation_lifetime: TimeDelta,
    /// Invite URL with `{token}` where the token goes.
    pub invite_url_template: String,
    /// Plan name → limits.
    pub plans: PlanCatalog,
    /// Slugs no organization may take.
    pub reserved_slugs: Vec<String>,
    /// Commit durability of file databases.
    pub durability: Durability,
    /// How often buffered and journaled usage is checkpointed into the database (1 s).
    pub usage_flush_interval: Duration,
    /// Size of the usage journal file beside the database (32 MiB, at least 64 KiB). A larger
    /// journal checkpoints less often.
    pub journal_size: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            clock: Arc::new(SystemClock),
            invitation_lifetime: TimeDelta::days(7),
            invite_url_template: "https://app.example.com/invite/{token}".to_owned(),
            plans: PlanCatalog::default(),
            reserved_slugs: ["admin", "api", "app", "new", "settings", "www"]
                .map(str::to_owned)
                .to_vec(),
            durability: Durability::Immediate,
            usage_flush_interval: Duration::from_secs(1),
            journal_size: 32 << 20,
        }
    }
}

impl Options {
    /// Options with a manual clock (everything else default).
    pub fn with_clock(clock: impl Clock + 'static) -> Options {
        Options {
            clock: Arc::new(clock),
            ..Options::default()
        }
    }

    fn validate(&self) -> Result<()> {
        use crate::ops::invitations::{MAX_LIFETIME, MIN_LIFETIME};
        if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&self.invitation_lifetime) {
            return Err(Error::invalid(
                "invitation_lifetime",
                "Must be between 1 hour and 30 days",
            ));
        }
        if self.plans.limits(&self.plans.default_plan).is_none() {
            return Err(Error::invalid(
                "default_plan",
                "Must name a plan of the catalog",
            ));
        }
        if !self.invite_url_template.contains("{token}") {
            return Err(Error::invalid(
                "invite_url_template",
                "Must contain {token}",
            ));
        }
        Ok(())
    }
}

struct Inner {
    store: RedbStore,
    opts: Options,
    ids: IdGen,
    ledger: Ledger,
    flusher: Arc<FlusherSignal>,
}

/// Stops the background checkpoint thread.
#[derive(Default)]
struct FlusherSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Inner {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now: crate::model::time::truncate(self.opts.clock.now()),
            opts: &self.opts,
            ids: &self.ids,
            ledger: Some(&self.ledger),
        }
    }

    /// Folds admitted usage into the tables (a non-durable commit), so a read that follows sees
    /// every admitted event and the `usage.threshold` events its crossings appended.
    fn fold_usage(&self, ctx: &Ctx) -> Result<()> {
        self.ledger.fold(&self.store, ctx, false, false)
    }

    /// A durable checkpoint of the usage ledger, restarting the journal when half full.
    fn checkpoint(&self) -> Result<()> {
        let reset = self.ledger.journal_fill() > 0.5;
        self.ledger.fold(&self.store, &self.ctx(), true, reset)
    }
}

impl Drop for Inner {
    /// The last handle is gone: stop the checkpoint thread and make buffered usage durable.
    fn drop(&mut self) {
        *self
            .flusher
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        self.flusher.wake.notify_all();
        if self.ledger.needs_checkpoint() {
            let _ = self.checkpoint();
        }
    }
}

/// Checkpoints every `interval` while the database is open; ends when it closes.
fn spawn_flusher(inner: Weak<Inner>, signal: Arc<FlusherSignal>, interval: Duration) {
    let _ = std::thread::Builder::new()
        .name("orgdb-usage-flush".to_owned())
        .spawn(move || loop {
            {
                let stopped = signal.stopped.lock().unwrap_or_else(|p| p.into_inner());
                let (stopped, _) = signal
                    .wake
                    .wait_timeout_while(stopped, interval, |s| !*s)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
            }
            let Some(inner) = inner.upgrade() else { return };
            if inner.ledger.needs_checkpoint() {
                // A failure leaves the changes queued for the next try; callers meet the
                // underlying storage error on their own next write.
                let _ = inner.checkpoint();
            }
        });
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
    /// Opens (creating if missing) the database file at `path` with default options.
    ///
    /// # Errors
    /// `storage_error` when the file cannot be opened or is in use by another process or
    /// handle; `incompatible_version` when a newer orgdb wrote it; `corrupted` when it is
    /// damaged, not an orgdb database (another format), or empty (0 bytes) beside a journal
    /// that holds records (a truncated file, not a new one).
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(path, Options::default())
    }

    /// Opens (creating if missing) the database file at `path`.
    ///
    /// # Errors
    /// As [`Db::open`], and `validation_error` for invalid options.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let durability = match opts.durability {
            Durability::Immediate => CommitDurability::Immediate,
            Durability::Eventual => CommitDurability::Eventual,
        };
        let path = path.as_ref();
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let journal_path = Path::new(&journal_path);
        refuse_truncated(path, journal_path)?;
        let store = RedbStore::open(path, durability)?;
        let journal = Journal::open(journal_path, opts.journal_size)?;
        Db::start(store, opts, Some(journal))
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
        Db::start(RedbStore::in_memory()?, opts, None)
    }

    fn start(store: RedbStore, opts: Options, journal: Option<Journal>) -> Result<Db> {
        store.write(ensure_schema)?;
        let ids = IdGen::default();
        let ledger = match journal {
            Some(journal) => {
                let ctx = Ctx {
                    now: crate::model::time::truncate(opts.clock.now()),
                    opts: &opts,
                    ids: &ids,
                    ledger: None,
                };
                Ledger::open(&store, &ctx, journal)?
            }
            None => Ledger::in_memory(),
        };
        let file_backed = !store.is_memory();
        let interval = opts.usage_flush_interval;
        let flusher = Arc::new(FlusherSignal::default());
        let inner = Arc::new(Inner {
            store,
            opts,
            ids,
            ledger,
            flusher: flusher.clone(),
        });
        if file_backed {
            spawn_flusher(Arc::downgrade(&inner), flusher, interval);
        }
        Ok(Db { inner })
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

    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn KvWrite, &Ctx) -> Result<T>,
    ) -> Result<T> {
        let ctx = self.ctx();
        self.inner.store.write(|tx| f(tx, &ctx))
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn KvRead, &Ctx) -> Result<T>) -> Result<T> {
        let ctx = self.ctx();
        self.inner.store.read(|tx| f(tx, &ctx))
    }

    // Usage.

    /// Records usage, durable when it returns. Refused whole (nothing recorded) with
    /// `quota_exceeded` when the month's total would pass `monthly_requests`; a repeated
    /// idempotency key is acknowledged with `duplicate: true` and counts nothing.
    ///
    /// Concurrent callers share journal syncs (group commit), so throughput grows with the
    /// number of callers.
    ///
    /// # Errors
    /// `validation_error` (`count`, `at`, `idempotency_key`, `resource_id`), `not_found`
    /// (organization, or a resource not live in it), `quota_exceeded`, `storage_error`.
    pub fn record_usage(&self, org: &str, event: &UsageEvent) -> Result<UsageReceipt> {
        self.admit_one(org, event, Mode::Durable)
    }

    /// Records many events of one organization as one unit: all counted or none. Duplicates
    /// inside the batch count once. Returns one receipt per event.
    ///
    /// # Errors
    /// As [`Db::record_usage`]; field names carry the index (`events[3].count`).
    pub fn record_usage_batch(
        &self,
        org: &str,
        events: &[UsageEvent],
    ) -> Result<Vec<UsageReceipt>> {
        let ctx = self.ctx();
        let admits = ops::usage::check_batch(&ctx, events)?;
        self.admit(&ctx, org, &admits, Mode::Durable)
    }

    /// Admits an event in memory against the same exact quota and returns at once; it
    /// becomes durable within `Options::usage_flush_interval`, on [`Db::flush`], or when the
    /// last handle is dropped. A crash before then loses it (never half of it).
    ///
    /// # Errors
    /// As [`Db::record_usage`].
    pub fn record_usage_buffered(&self, org: &str, event: &UsageEvent) -> Result<UsageReceipt> {
        self.admit_one(org, event, Mode::Buffered)
    }

    /// Whether `count` more requests fit in this month now, without recording anything.
    ///
    /// # Errors
    /// `quota_exceeded` when they would not fit; `validation_error`, `not_found`.
    pub fn check_quota(&self, org: &str, count: u64) -> Result<UsageReceipt> {
        ops::usage::check_count(count)?;
        self.admit_one(org, &UsageEvent::new(count), Mode::Check)
    }

    fn admit_one(&self, org: &str, event: &UsageEvent, mode: Mode) -> Result<UsageReceipt> {
        let ctx = self.ctx();
        let admit = ops::usage::check_one(&ctx, event)?;
        let ledger = &self.inner.ledger;
        let (receipt, wait_for) =
            ledger.admit_one(&self.inner.store, &ctx, org.trim(), &admit, mode)?;
        ledger.wait_for(wait_for)?;
        Ok(receipt)
    }

    /// A recorder of buffered usage for one organization: the gateway's hot path.
    ///
    /// ```
    /// use orgdb::{Db, NewOrganization, NewUser};
    ///
    /// let db = Db::in_memory()?;
    /// let ada = db.create_user(&NewUser { email: "ada@example.com".into(), name: "Ada".into() })?;
    /// let org = db.create_organization(&ada.id, &NewOrganization {
    ///     name: "Acme".into(),
    ///     ..Default::default()
    /// })?;
    /// let usage = db.usage_recorder(&org.organization.id)?;
    /// let receipt = usage.record(None, 3)?;
    /// assert_eq!(receipt.used, 3);
    /// db.flush()?; // durable now (also within the flush interval, and on the last drop)
    /// # Ok::<(), orgdb::Error>(())
    /// ```
    ///
    /// # Errors
    /// `not_found` when the organization does not exist; `storage_error`.
    pub fn usage_recorder(&self, org: &str) -> Result<UsageRecorder> {
        let org = org.trim();
        let handle = self
            .inner
            .ledger
            .org_handle(&self.inner.store, &self.ctx(), org)?;
        Ok(UsageRecorder::new(self.clone(), org.to_owned(), handle))
    }

    /// A recorder's event: admitted at once when the ledger has the organization and resource
    /// loaded, else through the general path that loads them.
    pub(crate) fn admit_recorded(
        &self,
        org: &str,
        handle: OrgHandle,
        resource: Option<&str>,
        count: u64,
    ) -> Result<UsageReceipt> {
        let at_micros = self.inner.opts.clock.now_micros();
        let (day, month) = day_and_month_micros(at_micros);
        let admit = crate::ledger::Admit {
            resource,
            count,
            day,
            month,
            key: None,
            at_micros,
        };
        let ledger = &self.inner.ledger;
        if let Some(done) = ledger.admit_buffered(&self.inner.store, handle, &admit) {
            return done;
        }
        let ctx = self.ctx();
        let (receipt, _) =
            ledger.admit_one(&self.inner.store, &ctx, org, &admit, Mode::Buffered)?;
        Ok(receipt)
    }

    fn admit(
        &self,
        ctx: &Ctx,
        org: &str,
        admits: &[crate::ledger::Admit<'_>],
        mode: Mode,
    ) -> Result<Vec<UsageReceipt>> {
        let ledger = &self.inner.ledger;
        let outcome = ledger.admit(&self.inner.store, ctx, org.trim(), admits, mode)?;
        ledger.wait(&outcome)?;
        Ok(outcome.receipts)
    }

    /// Makes every admitted usage event durable now (a checkpoint).
    ///
    /// # Errors
    /// `storage_error`.
    pub fn flush(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Seed 000's usage report: totals, limit, percentage, per MCP server and per day (zero
    /// days included) over a day, ISO week or month, or an explicit date range.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `validation_error` (`end_date`: before the start, or a range
    /// over 366 days).
    pub fn usage_report(
        &self,
        actor: &Actor,
        org: &str,
        query: &UsageQuery,
    ) -> Result<UsageReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner
            .store
            .read(|tx| ops::usage::report(tx, &ctx, actor, org, query))
    }

    /// Removes usage day rows before `before`, month totals that can no longer change, and
    /// idempotency keys past their 48-hour retention. Monthly totals still needed for quotas
    /// are kept.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn prune_usage(&self, before: chrono::NaiveDate) -> Result<PruneReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        let (report, month, keys) = self
            .inner
            .store
            .write(|tx| ops::usage::prune(tx, &ctx, before))?;
        self.inner.ledger.forget_before(month, keys);
        Ok(report)
    }

    // Maintenance.

    /// Writes the whole database as JSON lines (one [`Record`](crate::model::transfer::Record)
    /// a line, header first) and returns how many. Token hashes are never exported.
    ///
    /// # Errors
    /// `storage_error` (also for a failing writer).
    pub fn export_jsonl(&self, mut out: impl std::io::Write) -> Result<u64> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.read(|tx| {
            crate::store::transfer::export(tx, &mut |record| {
                serde_json::to_writer(&mut out, &record)
                    .map_err(|e| Error::storage(format!("writing the export: {e}")))?;
                out.write_all(b"\n")
                    .map_err(|e| Error::storage(format!("writing the export: {e}")))
            })
        })
    }

    /// Loads an export into this database, which must be empty. With `batch_size` `None` the
    /// whole import is one transaction (all or nothing); otherwise every `batch_size` records
    /// commit, and a failure leaves the batches before it. The result is checked with
    /// [`Db::check`] before the last commit. `progress` gets the number of records read so far.
    ///
    /// Pending invitations arrive without a usable token: re-send them.
    ///
    /// # Errors
    /// `conflict` when the database is not empty; `validation_error` naming the line for a
    /// malformed or dangling record; `incompatible_version` for an export of a newer schema.
    pub fn import_jsonl(
        &self,
        input: impl std::io::BufRead,
        batch_size: Option<usize>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<crate::model::transfer::ImportReport> {
        self.import_jsonl_with(input, batch_size, &mut |n| {
            progress(n);
            Ok(())
        })
    }

    /// [`Db::import_jsonl`] whose `progress` may stop the import: an error it returns ends the
    /// import with that error, as a bad line would (the current batch is rolled back; with
    /// `batch_size` `None`, nothing is written). `progress` runs inside the import's write
    /// transaction: it must not call into this database (a write, and reads that first fold
    /// buffered usage, would wait for the import forever).
    ///
    /// # Errors
    /// As [`Db::import_jsonl`], and whatever `progress` returns.
    pub fn import_jsonl_with(
        &self,
        input: impl std::io::BufRead,
        batch_size: Option<usize>,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<crate::model::transfer::ImportReport> {
        use crate::store::transfer;
        if !self.inner.store.read(transfer::is_empty)? {
            return Err(Error::conflict("Import needs an empty database"));
        }
        let batch = batch_size.unwrap_or(usize::MAX).max(1);
        let mut state = transfer::ImportState::default();
        let mut report = crate::model::transfer::ImportReport::default();
        let mut lines = input.lines();
        let mut done = false;
        while !done {
            self.inner.store.write(|tx| {
                let mut in_batch = 0usize;
                loop {
                    let Some(line) = lines.next() else {
                        done = true;
                        break;
                    };
                    report.records += 1;
                    let at = report.records;
                    let line = line.map_err(|e| match e.kind() {
                        // `lines()` reports a line that is not UTF-8 as invalid data.
                        std::io::ErrorKind::InvalidData => {
                            Error::invalid("line", format!("{at}: not valid UTF-8"))
                        }
                        _ => Error::storage(format!("reading the import: {e}")),
                    })?;
                    if line.trim().is_empty() {
                        report.records -= 1;
                        continue;
                    }
                    let record = serde_json::from_str(&line)
                        .map_err(|e| Error::invalid("line", format!("{at}: {e}")))?;
                    transfer::import(tx, &mut state, record).map_err(|e| match e {
                        Error::Validation { details, .. } => {
                            let what: Vec<String> = details
                                .iter()
                                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                                .collect();
                            Error::invalid("line", format!("{at}: {}", what.join("; ")))
                        }
                        other => other,
                    })?;
                    progress(at)?;
                    in_batch += 1;
                    if in_batch >= batch {
                        break;
                    }
                }
                transfer::finish_batch(tx, &state)?;
                if done {
                    let found = crate::store::check(&*tx, self.now())?;
                    if let Some(problem) = found.problems.first() {
                        return Err(Error::invalid(
                            "import",
                            format!("the result is inconsistent: {problem}"),
                        ));
                    }
                }
                report.transactions += 1;
                Ok(())
            })?;
        }
        Ok(report)
    }

    /// Writes a consistent copy of the database (as of one moment, usage included) to a new
    /// file at `path`, while this one stays open and in use.
    ///
    /// # Errors
    /// `validation_error` when `path` exists; `storage_error`.
    pub fn backup_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.backup_to(path.as_ref())
    }

    /// Rewrites the file without free space; waits for running calls. Returns whether it
    /// compacted anything.
    ///
    /// # Errors
    /// `storage_error`.
    pub fn compact(&self) -> Result<bool> {
        self.flush()?;
        self.inner.store.compact()
    }

    /// Verifies every invariant, index and stored counter against the rows (after folding
    /// admitted usage into them).
    ///
    /// # Errors
    /// Only storage errors; violations are listed in the report.
    pub fn check(&self) -> Result<CheckReport> {
        let ctx = self.ctx();
        self.inner.fold_usage(&ctx)?;
        self.inner.store.read(|tx| crate::store::check(tx, ctx.now))
    }

    /// Rows per table.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn stats(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .inner
            .store
            .table_lens()?
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect())
    }

    // Users.

    /// Creates a user. The email is normalized and must be unique.
    ///
    /// # Errors
    /// `validation_error` (`email`, `name`), `conflict` when the email is taken.
    pub fn create_user(&self, new: &NewUser) -> Result<User> {
        self.write(|tx, ctx| ops::users::create(tx, ctx, new))
    }

    /// A user by id.
    ///
    /// # Errors
    /// `not_found`.
    pub fn get_user(&self, id: &str) -> Result<User> {
        self.read(|tx, _| ops::users::load(tx, id))
    }

    /// A user by email (normalized before the look-up).
    ///
    /// # Errors
    /// `not_found`.
    pub fn find_user_by_email(&self, email: &str) -> Result<User> {
        self.read(|tx, _| ops::users::find_by_email(tx, email))
    }

    /// Changes a user's email or name.
    ///
    /// # Errors
    /// `not_found`, `validation_error`, `conflict` when the new email is taken.
    pub fn update_user(&self, id: &str, patch: &UserPatch) -> Result<User> {
        self.write(|tx, ctx| ops::users::update(tx, ctx, id, patch))
    }

    /// Sets the user's `last_active` to now.
    ///
    /// # Errors
    /// `not_found`.
    pub fn touch_user(&self, id: &str) -> Result<User> {
        self.write(|tx, ctx| ops::users::touch(tx, ctx, id))
    }

    /// Deletes a user with all their memberships and project memberships. Invitations they
    /// sent stay valid.
    ///
    /// # Errors
    /// `not_found`; `conflict` (naming the organizations in `details.organizations`) while the
    /// user is the only owner of any organization.
    pub fn delete_user(&self, id: &str) -> Result<()> {
        self.write(|tx, ctx| ops::users::delete(tx, ctx, id))
    }

    // Organizations.

    /// Creates an organization; `owner` becomes its first owner. The slug is derived from the
    /// name when not given (and made unique with `-2`, `-3`…).
    ///
    /// # Errors
    /// `validation_error` (any bad field, an unknown plan, a reserved slug), `not_found` for
    /// the owner, `conflict` when an explicit slug or external id is taken.
    pub fn create_organization(
        &self,
        owner: &str,
        new: &NewOrganization,
    ) -> Result<OrganizationWithMembership> {
        self.write(|tx, ctx| ops::orgs::create(tx, ctx, owner, new))
    }

    /// The organization with its limits and live usage (seed 000's `GET /v1/organization`).
    ///
    /// # Errors
    /// `not_found`; `forbidden` for a non-member.
    pub fn get_organization(&self, actor: &Actor, org: &str) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| ops::orgs::get(tx, ctx, actor, org))
    }

    /// As [`Db::get_organization`], by slug.
    ///
    /// # Errors
    /// As [`Db::get_organization`].
    pub fn get_organization_by_slug(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| {
            let id = ops::orgs::id_by_slug(tx, slug)?;
            ops::orgs::get(tx, ctx, actor, &id)
        })
    }

    /// As [`Db::get_organization`], by the host's external id.
    ///
    /// # Errors
    /// As [`Db::get_organization`].
    pub fn get_organization_by_external_id(
        &self,
        actor: &Actor,
        external_id: &str,
    ) -> Result<OrganizationDetails> {
        self.read(|tx, ctx| {
            let id = ops::orgs::id_by_external(tx, external_id)?;
            ops::orgs::get(tx, ctx, actor, &id)
        })
    }

    /// Every organization the user belongs to, with the user's membership, oldest first.
    ///
    /// # Errors
    /// `not_found` for an unknown user.
    pub fn list_organizations_for_user(
        &self,
        user: &str,
    ) -> Result<Vec<OrganizationWithMembership>> {
        self.read(|tx, _| ops::orgs::list_for_user(tx, user))
    }

    /// PATCH: only the fields given change; optional fields can be cleared.
    ///
    /// # Errors
    /// `forbidden` below admin, `validation_error`, `conflict` for a taken slug or external id.
    pub fn update_organization(
        &self,
        actor: &Actor,
        org: &str,
        patch: &OrganizationPatch,
    ) -> Result<Organization> {
        self.write(|tx, ctx| ops::orgs::update(tx, ctx, actor, org, patch))
    }

    /// Replaces the organization's settings.
    ///
    /// # Errors
    /// As [`Db::update_organization`].
    pub fn update_settings(
        &self,
        actor: &Actor,
        org: &str,
        settings: &OrganizationSettings,
    ) -> Result<Organization> {
        self.write(|tx, ctx| ops::orgs::update_settings(tx, ctx, actor, org, settings))
    }

    /// Changes the plan (owners only). Lowering limits below current use deletes nothing; it
    /// refuses new additions.
    ///
    /// # Errors
    /// `forbidden` below owner, `validation_error` (`plan`) for a plan not in the catalog.
    pub fn set_plan(&self, actor: &Actor, org: &str, plan: &str) -> Result<Organization> {
        let org_row = self.write(|tx, ctx| ops::orgs::set_plan(tx, ctx, actor, org, plan))?;
        self.inner.ledger.refresh_limit(org);
        Ok(org_row)
    }

    /// Changes per-organization limit overrides (`Actor::System` only), as a patch: fields
    /// not given stay, `Some(None)` clears one back to the plan's limit. A
    /// [`LimitOverrides`] converts into the patch that sets its given fields.
    ///
    /// # Errors
    /// `forbidden` for a user actor, `not_found`.
    pub fn set_limit_overrides(
        &self,
        actor: &Actor,
        org: &str,
        patch: &LimitOverridesPatch,
    ) -> Result<OrganizationDetails> {
        let details =
            self.write(|tx, ctx| ops::orgs::set_limit_overrides(tx, ctx, actor, org, patch))?;
        self.inner.ledger.refresh_limit(org);
        Ok(details)
    }

    /// The organization's limit overrides (unset fields follow the plan).
    ///
    /// # Errors
    /// `not_found`; `forbidden` for a non-member.
    pub fn get_limit_overrides(&self, actor: &Actor, org: &str) -> Result<LimitOverrides> {
        self.read(|tx, _| ops::orgs::limit_overrides(tx, actor, org))
    }

    /// Deletes the organization with its memberships, invitations, projects, resources and
    /// usage, in one transaction. Its audit history stays readable by `Actor::System`.
    ///
    /// # Errors
    /// `forbidden` below owner, `not_found`.
    pub fn delete_organization(&self, actor: &Actor, org: &str) -> Result<()> {
        self.write(|tx, ctx| ops::orgs::delete(tx, ctx, actor, org))?;
        self.inner.ledger.forget_org(org);
        Ok(())
    }

    /// Whether an organization could take `slug` now, and why not.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn check_slug(&self, slug: &str) -> Result<SlugCheck> {
        self.read(|tx, ctx| ops::orgs::check_slug(tx, ctx, slug))
    }

    // Members.

    /// One page of members, ordered by `joined_at` then id, optionally filtered by role.
    ///
    /// # Errors
    /// `forbidden` for a non-member, `validation_error` (`page`, `per_page`, `role`, `cursor`).
    pub fn list_members(
        &self,
        actor: &Actor,
        org: &str,
        query: &MemberQuery,
    ) -> Result<Page<Member>> {
        self.read(|tx, _| ops::members::list(tx, actor, org, query))
    }

    /// One member, by user id or membership id.
    ///
    /// # Errors
    /// `forbidden` for a non-member actor, `not_found`.
    pub fn get_member(&self, actor: &Actor, org: &str, who: &MemberRef) -> Result<Member> {
        self.read(|tx, _| ops::members::get(tx, actor, org, who))
    }

    /// Adds a user directly (admins and owners; seat-checked). A pending invitation of the
    /// user in this organization is marked accepted.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found` (user), `conflict` (already a
    /// member), `quota_exceeded` (`team_members`).
    pub fn add_member(&self, actor: &Actor, org: &str, user: &str, role: &str) -> Result<Member> {
        self.write(|tx, ctx| ops::members::add(tx, ctx, actor, org, user, role))
    }

    /// Changes a member's role.
    ///
    /// # Errors
    /// `forbidden` (below admin, an admin touching an owner or granting owner),
    /// `validation_error` (`role`), `not_found`, `conflict` (the last owner).
    pub fn update_member_role(
        &self,
        actor: &Actor,
        org: &str,
        who: &MemberRef,
        role: &str,
    ) -> Result<Member> {
        self.write(|tx, ctx| ops::members::update_role(tx, ctx, actor, org, who, role))
    }

    /// Removes a member and their project memberships.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` (the last owner).
    pub fn remove_member(
        &self,
        actor: &Actor,
        org: &str,
        who: &MemberRef,
    ) -> Result<RemovedMember> {
        self.write(|tx, ctx| ops::members::remove(tx, ctx, actor, org, who))
    }

    /// The user leaves the organization.
    ///
    /// # Errors
    /// `not_found`, `conflict` for the last owner.
    pub fn leave_organization(&self, user: &str, org: &str) -> Result<RemovedMember> {
        self.write(|tx, ctx| ops::members::leave(tx, ctx, user, org))
    }

    /// Makes `to` an owner; the calling owner becomes admin.
    ///
    /// # Errors
    /// `forbidden` below owner, `not_found` (`to` is not a member), `validation_error` (`to`
    /// is the caller), `conflict` (`to` is already an owner).
    pub fn transfer_ownership(&self, actor: &Actor, org: &str, to: &str) -> Result<Member> {
        self.write(|tx, ctx| ops::members::transfer_ownership(tx, ctx, actor, org, to))
    }

    // Invitations.

    /// Invites an email (admins and owners; only owners invite owners). The token is in the
    /// result only: just its hash is stored.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found` (project), `conflict` (a member, or a
    /// pending invitation: `details.invitation_id`), `quota_exceeded` (`team_members`).
    pub fn create_invitation(
        &self,
        actor: &Actor,
        org: &str,
        new: &NewInvitation,
    ) -> Result<CreatedInvitation> {
        self.write(|tx, ctx| ops::invitations::create(tx, ctx, actor, org, new))
    }

    /// Many invitations in one transaction: all or nothing; the error names the email.
    ///
    /// # Errors
    /// As [`Db::create_invitation`], with `details.email`.
    pub fn create_invitations(
        &self,
        actor: &Actor,
        org: &str,
        batch: &[NewInvitation],
    ) -> Result<Vec<CreatedInvitation>> {
        self.write(|tx, ctx| ops::invitations::create_many(tx, ctx, actor, org, batch))
    }

    /// Invitations of an organization, oldest first, with an optional status filter.
    ///
    /// # Errors
    /// `forbidden` below admin, `validation_error` (`status`, `page`, `per_page`).
    pub fn list_invitations(
        &self,
        actor: &Actor,
        org: &str,
        query: &InvitationQuery,
    ) -> Result<Page<Invitation>> {
        self.read(|tx, ctx| ops::invitations::list(tx, ctx, actor, org, query))
    }

    /// One invitation (the admin view).
    ///
    /// # Errors
    /// `forbidden` below admin, `not_found`.
    pub fn get_invitation(&self, actor: &Actor, org: &str, id: &str) -> Result<Invitation> {
        self.read(|tx, ctx| ops::invitations::get(tx, ctx, actor, org, id))
    }

    /// What an accept page shows for a token.
    ///
    /// # Errors
    /// `not_found` for an unknown token.
    pub fn get_invitation_by_token(&self, token: &str) -> Result<InvitationPreview> {
        self.read(|tx, ctx| ops::invitations::preview(tx, ctx, token))
    }

    /// Accepts an invitation for a user whose email matches it.
    ///
    /// # Errors
    /// `not_found` (token, user), `forbidden` (other email), `invitation_expired`, `conflict`
    /// (declined, revoked, or accepted by someone else), `quota_exceeded` (`team_members`).
    pub fn accept_invitation(&self, token: &str, user: &str) -> Result<Membership> {
        self.write(|tx, ctx| ops::invitations::accept(tx, ctx, token, user))
    }

    /// Declines a pending or expired invitation.
    ///
    /// # Errors
    /// `not_found`, `conflict` for other statuses.
    pub fn decline_invitation(&self, token: &str) -> Result<Invitation> {
        self.write(|tx, ctx| ops::invitations::decline(tx, ctx, token))
    }

    /// Revokes a pending or expired invitation.
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict` for other statuses.
    pub fn revoke_invitation(&self, actor: &Actor, org: &str, id: &str) -> Result<Invitation> {
        self.write(|tx, ctx| ops::invitations::revoke(tx, ctx, actor, org, id))
    }

    /// New token and expiry for a pending or expired invitation (same id).
    ///
    /// # Errors
    /// `forbidden`, `not_found`, `conflict`, `quota_exceeded` when an expired one no longer
    /// fits.
    pub fn resend_invitation(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
    ) -> Result<CreatedInvitation> {
        self.write(|tx, ctx| ops::invitations::resend(tx, ctx, actor, org, id))
    }

    /// Pending, unexpired invitations of an email across organizations.
    ///
    /// # Errors
    /// Only storage errors.
    pub fn list_invitations_for_email(&self, email: &str) -> Result<Vec<PendingInvitation>> {
        self.read(|tx, ctx| ops::invitations::for_email(tx, ctx, email))
    }

    // Projects.

    /// Creates a project (admins and owners).
    ///
    /// # Errors
    /// `forbidden`, `validation_error`.
    pub fn create_project(&self, actor: &Actor, org: &str, new: &NewProject) -> Result<Project> {
        self.write(|tx, ctx| ops::projects::create(tx, ctx, actor, org, new))
    }

    /// One project.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn get_project(&self, actor: &Actor, org: &str, id: &str) -> Result<Project> {
        self.read(|tx, _| ops::projects::get(tx, actor, org, id))
    }

    /// The organization's projects, oldest first.
    ///
    /// # Errors
    /// `forbidden`.
    pub fn list_projects(&self, actor: &Actor, org: &str) -> Result<Vec<Project>> {
        self.read(|tx, _| ops::projects::list(tx, actor, org))
    }

    /// PATCH of a project.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        patch: &ProjectPatch,
    ) -> Result<Project> {
        self.write(|tx, ctx| ops::projects::update(tx, ctx, actor, org, id, patch))
    }

    /// Deletes a project and its memberships; invitations naming it become organization-only.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn delete_project(&self, actor: &Actor, org: &str, id: &str) -> Result<()> {
        self.write(|tx, ctx| ops::projects::delete(tx, ctx, actor, org, id))
    }

    /// Adds an organization member to a project with `role` (default `member`, as an
    /// invitation's project role).
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`role`), `not_found` (project, member), `conflict`.
    pub fn add_project_member(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
        role: Option<&str>,
    ) -> Result<ProjectMember> {
        self.write(|tx, ctx| ops::projects::add_member(tx, ctx, actor, org, project, user, role))
    }

    /// Changes a project member's role.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn update_project_member_role(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
        role: &str,
    ) -> Result<ProjectMember> {
        self.write(|tx, ctx| {
            ops::projects::update_member_role(tx, ctx, actor, org, project, user, role)
        })
    }

    /// Removes a user from a project (they stay in the organization).
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn remove_project_member(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
        user: &str,
    ) -> Result<()> {
        self.write(|tx, ctx| ops::projects::remove_member(tx, ctx, actor, org, project, user))
    }

    /// Members of a project, by time added.
    ///
    /// # Errors
    /// `forbidden`, `not_found`.
    pub fn list_project_members(
        &self,
        actor: &Actor,
        org: &str,
        project: &str,
    ) -> Result<Vec<ProjectMember>> {
        self.read(|tx, _| ops::projects::list_members(tx, actor, org, project))
    }

    // Resources.

    /// Registers an MCP server or API key, checked against the `mcps` / `api_keys` limit.
    ///
    /// # Errors
    /// `forbidden`, `validation_error` (`name`), `quota_exceeded`.
    pub fn register_resource(
        &self,
        actor: &Actor,
        org: &str,
        kind: ResourceKind,
        name: &str,
    ) -> Result<Resource> {
        self.write(|tx, ctx| ops::resources::register(tx, ctx, actor, org, kind, name))
    }

    /// Renames a resource.
    ///
    /// # Errors
    /// `forbidden`, `validation_error`, `not_found`.
    pub fn rename_resource(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        name: &str,
    ) -> Result<Resource> {
        self.write(|tx, ctx| ops::resources::rename(tx, ctx, actor, org, id, name))
    }

    /// Removes a resource: it stops counting against its limit and keeps its name in reports.
    ///
    /// # Errors
    /// `forbidden`, `not_found` (also when already removed).
    pub fn remove_resource(&self, actor: &Actor, org: &str, id: &str) -> Result<Resource> {
        let removed = self.write(|tx, ctx| ops::resources::remove(tx, ctx, actor, org, id))?;
        self.inner
            .ledger
            .forget_resource(&removed.organization_id, &removed.id);
        Ok(removed)
    }

    /// Live resources of an organization, of one kind or all.
    ///
    /// # Errors
    /// `forbidden`.
    pub fn list_resources(
        &self,
        actor: &Actor,
        org: &str,
        kind: Option<ResourceKind>,
    ) -> Result<Vec<Resource>> {
        self.read(|tx, _| ops::resources::list(tx, actor, org, kind))
    }

    // Audit.

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
