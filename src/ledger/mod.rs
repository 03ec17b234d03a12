//! The usage ledger: exact counters per quota period in memory, the journal that makes admitted usage
//! durable, and the folds and checkpoints that carry it into the database.
//!
//! Invariants:
//! - Admission (check and count) happens under one lock against in-memory period totals that
//!   equal the database's totals plus every unfolded admitted event, so the limit holds under
//!   any concurrency.
//! - A durable event is acknowledged only once its journal record is on disk (group commit),
//!   or a durable checkpoint covers it. A refusal or a duplicate waits until the state it saw
//!   is durable, so a crash can never make a refusal wrong.
//! - Every fold writes, in the same transaction as the counters, the last journal sequence it
//!   covers; replay after a crash applies only later records, so nothing counts twice even
//!   when an unrelated durable commit persisted a fold.
//! - The journal restarts at offset 0 under a new generation only after a durable checkpoint
//!   covering everything written before, taken while admissions wait.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::error::{Error, Result};
use crate::model::alert::{DEFAULT_THRESHOLDS, THRESHOLDS_MAX};
use crate::model::period::QuotaPeriod;
use crate::model::usage::UsageReceipt;
use crate::store::journal::{Journal, META_GENERATION, META_SEQ, META_WRITE_SEQ};
use crate::store::{day_number, Backend, DayRow, OrgRecord, Span, UsageWrite, Writes};

mod admit;
pub(crate) use admit::no_receipt;
mod board;
pub(crate) use board::LeaseView;
mod fold;
mod lease;
mod shared;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Idempotency keys are remembered at least this long.
pub(crate) const KEY_RETENTION: TimeDelta = TimeDelta::hours(48);

/// What the ledger needs from the operations above it, which call it (the ledger calls no
/// operation): the time of the call, an organization's quota, and what a fold does when a
/// period's stored total grows (the operations append `usage.threshold` audit events).
pub(crate) trait UsageEnv {
    /// The time of the call.
    fn now(&self) -> DateTime<Utc>;
    /// The organization's `monthly_requests` quota.
    fn quota(&self, org: &OrgRecord) -> Quota;
    /// Called by a fold, in its transaction, after it stored a period's new total.
    fn period_total_grew(&self, tx: &mut dyn Writes, growth: &PeriodGrowth<'_>) -> Result<()>;
}

/// An organization's usage quota: the `monthly_requests` limit, the bound admission enforces
/// (the limit when hard; the limit plus the overage cap when soft; `None`: no bound), and how
/// it resets. The one check of every admission path (this ledger, the shared one, leases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) limit: Option<u64>,
    pub(crate) ceiling: Option<u64>,
    pub(crate) period: QuotaPeriod,
    /// The usage alert thresholds a fold announces the crossing of.
    pub(crate) alerts: Thresholds,
}

/// An organization's usage alert thresholds in percent, ascending: a copy of at most
/// [`THRESHOLDS_MAX`] (what `set_usage_alerts` allows), so a `Quota` stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Thresholds {
    len: u8,
    at: [u32; THRESHOLDS_MAX],
}

impl Thresholds {
    /// The organization's thresholds (`None`: the defaults, 80 % and 100 %).
    pub(crate) fn of(list: Option<&[u32]>) -> Thresholds {
        let list = list.unwrap_or(&DEFAULT_THRESHOLDS);
        let mut t = Thresholds {
            len: 0,
            at: [0; THRESHOLDS_MAX],
        };
        for (slot, &p) in t.at.iter_mut().zip(list) {
            *slot = p;
            t.len += 1;
        }
        t
    }

    /// The thresholds, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.at[..usize::from(self.len)].iter().copied()
    }
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds::of(None)
    }
}

impl Quota {
    /// The alert thresholds (percent) a period total of `total` has reached: none without a
    /// limit, or with a limit of 0.
    pub(crate) fn alerts_reached(&self, total: u64) -> impl Iterator<Item = u32> + '_ {
        let limit = self.limit;
        self.alerts.iter().filter(move |&p| {
            limit
                .and_then(|l| crate::model::alert::mark(l, p))
                .is_some_and(|m| total >= m)
        })
    }

    /// `used + add` when admission allows it, else the refusal.
    pub(crate) fn admit(self, used: u64, add: u64) -> Result<u64> {
        match used.checked_add(add) {
            Some(total) if self.ceiling.is_none_or(|c| total <= c) => Ok(total),
            _ => Err(self.refusal(used, add)),
        }
    }

    /// Why `add` more on `used` is refused: past the enforced bound, or past what a total
    /// can hold.
    pub(crate) fn refusal(self, used: u64, add: u64) -> Error {
        match self.ceiling {
            Some(ceiling) => Error::quota("monthly_requests", ceiling, used, add),
            None => Error::invalid("count", "Would overflow the period's total"),
        }
    }

    /// The receipt of the period `span` at `used`.
    pub(crate) fn receipt(self, duplicate: bool, used: u64, span: Span) -> UsageReceipt {
        self.receipt_dated(duplicate, used, span.dates())
    }

    /// The receipt of the period from `dates.0` to `dates.1` at `used` (the hot path keeps
    /// its period's dates worked out).
    pub(crate) fn receipt_dated(
        self,
        duplicate: bool,
        used: u64,
        (period_start, period_end): (NaiveDate, NaiveDate),
    ) -> UsageReceipt {
        let overage = self.limit.map_or(0, |l| used.saturating_sub(l));
        UsageReceipt {
            duplicate,
            used,
            limit: self.limit,
            remaining: self.limit.map(|l| l.saturating_sub(used)),
            over: overage > 0,
            overage,
            period_start,
            period_end,
        }
    }

    /// The period of this quota that holds day number `day`.
    pub(crate) fn span(self, day: u32) -> Span {
        Span::of(self.period, day)
    }
}

/// A period total a fold raised, and to what.
pub(crate) struct PeriodGrowth<'a> {
    pub(crate) org: &'a str,
    pub(crate) span: Span,
    pub(crate) after: u64,
    /// The organization's quota (its limit and alert thresholds).
    pub(crate) quota: Quota,
}

/// One event, validated, with its day worked out (its period depends on the organization's
/// rule, which admission reads).
#[derive(Debug, Clone)]
pub(crate) struct Admit<'a> {
    pub(crate) resource: Option<&'a str>,
    pub(crate) count: u64,
    pub(crate) day: u32,
    pub(crate) key: Option<&'a str>,
    pub(crate) at_micros: i64,
}

impl<'a> Admit<'a> {
    /// An event without an idempotency key at `at_micros` (a recorder's: now).
    pub(crate) fn keyless(resource: Option<&'a str>, count: u64, at_micros: i64) -> Admit<'a> {
        Admit {
            resource,
            count,
            day: day_of_micros(at_micros),
            key: None,
            at_micros,
        }
    }
}

/// How an admitted call is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Journaled; the call returns once it is on disk.
    Durable,
    /// In memory; durable at the next checkpoint.
    Buffered,
    /// Answer only; nothing is counted.
    Check,
}

/// Unfolded changes of one organization.
#[derive(Debug, Clone, Default)]
struct OrgDelta {
    periods: Map<Span, u64>,
    days: Map<u32, DayRow>,
    keys: Vec<(String, i64)>,
    expired_keys: Vec<String>,
}

impl OrgDelta {
    fn is_empty(&self) -> bool {
        self.periods.is_empty()
            && self.days.is_empty()
            && self.keys.is_empty()
            && self.expired_keys.is_empty()
    }

    fn merge(&mut self, other: OrgDelta) {
        for (p, n) in other.periods {
            *self.periods.entry(p).or_default() += n;
        }
        for (d, row) in other.days {
            self.days.entry(d).or_default().merge(&row);
        }
        self.keys.extend(other.keys);
        self.expired_keys.extend(other.expired_keys);
    }
}

/// One organization's counters. Organizations live in a slab (`State::orgs`) so a
/// [`UsageRecorder`](crate::UsageRecorder) reaches its own by position, hashing no string.
#[derive(Debug, Default)]
struct OrgUsage {
    /// The organization's id (empty in a vacant place).
    id: String,
    /// Which occupant of the place this is: unique in the ledger, 0 when vacant.
    epoch: u64,
    /// `monthly_requests` and its period; reloaded when `limit_known` is false.
    quota: Quota,
    limit_known: bool,
    /// The period last asked for (the hot path asks for today's over and over), and its
    /// first and last day as dates.
    span: Span,
    span_dates: (NaiveDate, NaiveDate),
    /// Live resources of this organization seen so far: id → report column.
    resources: Map<String, u32>,
    /// Absolute totals (database + unfolded), per period (by first day) touched since load.
    periods: Map<u32, u64>,
    keys: Map<String, i64>,
    oldest_key: i64,
    delta: OrgDelta,
    /// Live usage reservations (count, expiry in micros), read with the quota (every change
    /// of them runs in `fold_and_write`, which makes the next admission read them again).
    /// They count against every period: what a commit records lands on the commit's day.
    holds: Vec<(u64, i64)>,
}

impl OrgUsage {
    /// The period of the organization's rule that holds day number `day`.
    fn span_of(&mut self, day: u32) -> Span {
        if !self.span.holds(day) {
            self.span = self.quota.span(day);
            self.span_dates = self.span.dates();
        }
        self.span
    }

    /// Counts one admitted event of period `span`: the period's total (already loaded), and
    /// the unfolded delta.
    fn count(&mut self, e: &Admit<'_>, span: Span, column: Option<u32>) -> u64 {
        let total = self.periods.entry(span.start).or_default();
        *total = total.saturating_add(e.count);
        let total = *total;
        *self.delta.periods.entry(span).or_default() += e.count;
        self.delta
            .days
            .entry(e.day)
            .or_default()
            .add(column, e.count);
        if let Some(k) = e.key {
            self.keys.insert(k.to_owned(), e.at_micros);
            self.oldest_key = self.oldest_key.min(e.at_micros);
            self.delta.keys.push((k.to_owned(), e.at_micros));
        }
        total
    }

    /// What live reservations hold at `now_micros` (expired ones are skipped, not dropped:
    /// a clock set back makes them live again, as the stored rows are).
    fn held(&self, now_micros: i64) -> u64 {
        self.holds
            .iter()
            .filter(|&&(_, expires)| expires > now_micros)
            .fold(0u64, |sum, &(count, _)| sum.saturating_add(count))
    }

    /// The total of the period starting on day number `start`, read from the database the
    /// first time.
    fn period_total(&mut self, store: &dyn Backend, start: u32) -> Result<u64> {
        match self.periods.get(&start) {
            Some(total) => Ok(*total),
            None => {
                let total = store.read(|tx| tx.period_usage(&self.id, start))?;
                self.periods.insert(start, total);
                Ok(total)
            }
        }
    }
}

/// What was admitted of one organization on a shared backend, to store in its usage
/// transaction: each period's total raised from `before` to `after` (with its threshold
/// events), the day rows' increments, new keys.
pub(crate) struct SharedUsage<'a> {
    org: &'a str,
    periods: &'a [(Span, u64, u64)],
    days: &'a [(u32, &'a DayRow)],
    keys: &'a [(String, i64)],
    quota: Quota,
}

/// Stores what was admitted of several organizations on a shared backend, in their usage
/// transaction (one statement for the rows, whatever their number). The one writer of
/// `shared.rs` and `lease.rs`, here so neither imports the other's.
fn store_shared_usage(
    tx: &mut dyn Writes,
    env: &dyn UsageEnv,
    usages: &[SharedUsage<'_>],
) -> Result<()> {
    let totals: Vec<Vec<(Span, u64)>> = usages
        .iter()
        .map(|u| u.periods.iter().map(|&(s, _, after)| (s, after)).collect())
        .collect();
    let writes: Vec<UsageWrite<'_>> = usages
        .iter()
        .zip(&totals)
        .map(|(u, periods)| UsageWrite {
            org: u.org,
            periods,
            days: u.days,
            keys: u.keys,
        })
        .collect();
    tx.apply_usages(&writes)?;
    for u in usages {
        for &(span, _, after) in u.periods {
            env.period_total_grew(
                tx,
                &PeriodGrowth {
                    org: u.org,
                    span,
                    after,
                    quota: u.quota,
                },
            )?;
        }
    }
    Ok(())
}

/// Where a recorder's organization sits in the ledger: place and occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrgHandle {
    index: usize,
    epoch: u64,
}

#[derive(Default)]
struct State {
    /// Organization id → position in `orgs`.
    index: Map<String, usize>,
    orgs: Vec<OrgUsage>,
    /// Vacant positions in `orgs` (organizations deleted).
    free: Vec<usize>,
    last_epoch: u64,
    /// Admitted changes not yet folded.
    dirty: bool,
    /// Folded with a non-durable commit since the last checkpoint.
    undurable: bool,
    /// A fold that holds admissions up is writing (a journal restart, `fold_and_write`):
    /// admissions wait on `Ledger::resumed`. A flag rather than the lock held across the
    /// write: operations read the ledger inside their write transactions (database writer,
    /// then ledger lock), so a fold may not wait for the writer under the ledger lock.
    held: bool,
}

/// What admission decided.
pub(crate) struct Outcome {
    pub(crate) receipts: Vec<UsageReceipt>,
    /// The journal sequence to wait for before answering.
    pub(crate) wait_for: Option<u64>,
}

pub(crate) struct Ledger {
    state: Mutex<State>,
    /// Signalled when a fold stops holding admissions up (`State::held`).
    resumed: Condvar,
    fold_lock: Mutex<()>,
    /// Shared with the store, which journals its write transactions through it.
    journal: Option<Arc<Journal>>,
    /// Set when other processes count against the same quotas (a shared backend): calls are
    /// admitted in transactions against stored totals, with group commit (`shared.rs`);
    /// nothing else is held in memory.
    shared: Option<shared::Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn org(&self, org: &str) -> Option<&OrgUsage> {
        self.index.get(org).map(|&i| &self.orgs[i])
    }

    fn org_mut(&mut self, org: &str) -> Option<&mut OrgUsage> {
        self.index.get(org).map(|&i| &mut self.orgs[i])
    }

    /// The organization's position, taking a place (vacant or new) the first time.
    fn place_of(&mut self, org: &str) -> usize {
        if let Some(&i) = self.index.get(org) {
            return i;
        }
        self.last_epoch += 1;
        let usage = OrgUsage {
            id: org.to_owned(),
            epoch: self.last_epoch,
            oldest_key: i64::MAX,
            ..OrgUsage::default()
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.orgs[i] = usage;
                i
            }
            None => {
                self.orgs.push(usage);
                self.orgs.len() - 1
            }
        };
        self.index.insert(org.to_owned(), i);
        i
    }
}

/// A period total as [`Ledger::period_total`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeriodTotal {
    /// The total.
    Exact(u64),
    /// A lease sync stored the organization's usage since the call began: read again.
    Moved,
}

impl Ledger {
    /// A ledger without a journal (in-memory databases).
    pub(crate) fn in_memory() -> Ledger {
        Ledger {
            state: Mutex::new(State::default()),
            resumed: Condvar::new(),
            fold_lock: Mutex::new(()),
            journal: None,
            shared: None,
        }
    }

    /// The state, for an admission: waits while a fold holds admissions up.
    fn admitting(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.state);
        while st.held {
            st = self.resumed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st
    }

    /// Ends a hold of admissions (`State::held`).
    fn resume(&self, st: &mut State) {
        st.held = false;
        self.resumed.notify_all();
    }

    /// A ledger for a backend that other processes write too (`shared.rs`, `lease.rs`).
    pub(crate) fn for_shared_backend(lease_ttl: std::time::Duration) -> Ledger {
        Ledger {
            shared: Some(shared::Shared::new(lease_ttl)),
            ..Ledger::in_memory()
        }
    }

    /// What a call sees of this process's leases, taken before its first transaction and
    /// handed to [`period_total`](Self::period_total) (`board.rs`).
    pub(crate) fn lease_view(&self) -> LeaseView<'_> {
        LeaseView::of(self.shared.as_ref().map(|s| &s.leases.board))
    }

    /// The total of the quota period that holds day number `day`, as the ledger knows it when
    /// it has the organization loaded, else `stored` (the stored total of that period); on a
    /// shared backend the stored total plus this process's unstored usage, unless a lease
    /// sync stored the organization's usage since `view` was taken (before the snapshot
    /// `stored` reads): then `Moved`, and the caller runs again on a fresh snapshot.
    pub(crate) fn period_total<'a>(
        &'a self,
        org: &str,
        day: u32,
        view: &LeaseView<'a>,
        stored: &dyn Fn() -> Result<u64>,
    ) -> Result<PeriodTotal> {
        if let Some(shared) = &self.shared {
            let stored = stored()?;
            return Ok(match shared.leases.board.unstored(org, day, view) {
                Some(unstored) => PeriodTotal::Exact(stored.saturating_add(unstored)),
                None => PeriodTotal::Moved,
            });
        }
        match self.known_total(org, day) {
            Some(total) => Ok(PeriodTotal::Exact(total)),
            None => stored().map(PeriodTotal::Exact),
        }
    }

    /// The period total the ledger holds in memory for day number `day`. A plan change
    /// (`limit_known` false) leaves the totals right: only a change of rule drops them, and
    /// it clears `periods` in the same step.
    fn known_total(&self, org: &str, day: u32) -> Option<u64> {
        let st = lock(&self.state);
        let usage = st.org(org)?;
        usage.periods.get(&usage.quota.span(day).start).copied()
    }

    /// Whether [`period_total`](Self::period_total) would read the stored total.
    pub(crate) fn reads_stored_period(&self, org: &str, day: u32) -> bool {
        self.shared.is_some() || self.known_total(org, day).is_none()
    }

    /// The plan or overrides changed: read the limit again on next use.
    pub(crate) fn refresh_limit(&self, org: &str) {
        if let Some(shared) = &self.shared {
            shared.leases.refresh(org);
        }
        if let Some(o) = lock(&self.state).org_mut(org) {
            o.limit_known = false;
        }
    }

    /// The organization is gone: drop its counters (its rows were deleted with it). Its place
    /// gets a new occupant later, so its recorders answer `not_found`.
    pub(crate) fn forget_org(&self, org: &str) {
        if let Some(shared) = &self.shared {
            shared.leases.forget(org, None);
        }
        let mut st = lock(&self.state);
        if let Some(i) = st.index.remove(org) {
            st.orgs[i] = OrgUsage::default();
            st.free.push(i);
        }
    }

    /// The resource was removed: later events naming it are refused.
    pub(crate) fn forget_resource(&self, org: &str, id: &str) {
        if let Some(shared) = &self.shared {
            shared.leases.forget(org, Some(id));
        }
        if let Some(o) = lock(&self.state).org_mut(org) {
            o.resources.remove(id);
        }
    }

    /// Whether a checkpoint has work: unfolded changes, or folds not yet durable.
    pub(crate) fn needs_checkpoint(&self) -> bool {
        if let Some(shared) = &self.shared {
            return shared.leases.held();
        }
        let st = lock(&self.state);
        st.dirty || st.undurable || self.journal.as_ref().is_some_and(|j| j.undurable())
    }

    /// Fraction of the journal in use (0 without a journal).
    pub(crate) fn journal_fill(&self) -> f64 {
        self.journal.as_ref().map_or(0.0, |j| j.fill())
    }

    /// The journal's last sequence number (usage records and journaled writes alike): what
    /// a call that answers from the state it saw waits for.
    fn last_seq(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.last_seq())
    }

    /// The generation the journal writes (1 without a journal).
    fn generation(&self) -> u32 {
        self.journal
            .as_ref()
            .and_then(|j| j.tail().map(|t| t.generation))
            .unwrap_or(1)
    }

    /// Waits until an outcome's journal record is durable.
    pub(crate) fn wait(&self, outcome: &Outcome) -> Result<()> {
        self.wait_for(outcome.wait_for)
    }

    /// Waits until journal record `seq` (if any) is durable.
    pub(crate) fn wait_for(&self, seq: Option<u64>) -> Result<()> {
        match (&self.journal, seq) {
            (Some(j), Some(seq)) => j.wait_durable(seq, true),
            _ => Ok(()),
        }
    }
}

/// Loads an organization's limit and idempotency keys on first use (or the limit after a
/// plan change) and returns its position. `not_found` when the organization does not exist.
fn ensure_org(st: &mut State, store: &dyn Backend, env: &dyn UsageEnv, org: &str) -> Result<usize> {
    let known = st.index.get(org).copied();
    if let Some(i) = known.filter(|&i| st.orgs[i].limit_known) {
        return Ok(i);
    }
    let fresh = known.is_none();
    let cutoff = crate::model::time::minus(env.now(), KEY_RETENTION).timestamp_micros();
    let now = env.now().timestamp_micros();
    let (quota, keys, holds) = store.read(|tx| {
        let rec = tx
            .org(org)?
            .ok_or_else(|| Error::not_found("Organization"))?;
        let quota = env.quota(&rec);
        let keys = if fresh {
            tx.idempotency_keys(org)?
        } else {
            Vec::new()
        };
        let holds: Vec<(u64, i64)> = tx
            .reservations(org)?
            .into_iter()
            .map(|r| (r.count, r.expires_at.timestamp_micros()))
            .filter(|&(_, expires)| expires > now)
            .collect();
        Ok((quota, keys, holds))
    })?;
    let i = st.place_of(org);
    let usage = &mut st.orgs[i];
    if usage.quota.period != quota.period {
        // Totals of another rule's periods mean nothing under this one.
        usage.periods.clear();
    }
    usage.quota = quota;
    usage.holds = holds;
    usage.span = Span::default();
    usage.limit_known = true;
    for (k, at) in keys.into_iter().filter(|(_, at)| *at >= cutoff) {
        usage.oldest_key = usage.oldest_key.min(at);
        usage.keys.insert(k, at);
    }
    Ok(i)
}

/// A resource's column; `not_found` unless it is a live resource of the organization at
/// `index`.
fn resolve_resource(st: &mut State, store: &dyn Backend, index: usize, id: &str) -> Result<u32> {
    let usage = &mut st.orgs[index];
    if let Some(&column) = usage.resources.get(id) {
        return Ok(column);
    }
    let column = store
        .read(|tx| tx.live_resource_column(&usage.id, id))?
        .ok_or_else(|| Error::not_found("Resource"))?;
    usage.resources.insert(id.to_owned(), column);
    Ok(column)
}

/// The day number of a timestamp.
pub(crate) fn day_of(at: DateTime<Utc>) -> u32 {
    day_of_micros(at.timestamp_micros())
}

/// The day number of a time in microseconds since the epoch (clamped to the calendar's
/// ends). The calendar arithmetic runs once per UTC day and thread: the hot path asks for
/// today's over and over.
pub(crate) fn day_of_micros(micros: i64) -> u32 {
    thread_local! {
        static LAST: std::cell::Cell<(i64, u32)> = const { std::cell::Cell::new((i64::MIN, 0)) };
    }
    let unix_day = micros.div_euclid(86_400_000_000);
    LAST.with(|last| {
        let (cached_day, day) = last.get();
        if cached_day == unix_day {
            return day;
        }
        let date = crate::model::time::from_micros(micros)
            .unwrap_or(if micros < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
            .date_naive();
        let day = day_number(date);
        last.set((unix_day, day));
        day
    })
}
