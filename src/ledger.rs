//! The usage ledger: exact monthly counters in memory, the journal that makes admitted usage
//! durable, and the folds and checkpoints that carry it into the database.
//!
//! Invariants:
//! - Admission (check and count) happens under one lock against in-memory month totals that
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
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, Result};
use crate::model::usage::UsageReceipt;
use crate::store::journal::{self, Cursor, Journal, JournalBatch, JournalEvent};
use crate::store::{day_number, DayRow, KvRead, KvWrite, OrgRecord, Reads, RedbStore, Writes};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Idempotency keys are remembered at least this long.
pub(crate) const KEY_RETENTION: TimeDelta = TimeDelta::hours(48);
const META_GENERATION: &str = "journal_generation";
const META_SEQ: &str = "journal_seq";

/// What the ledger needs from the operations above it, which call it (the ledger calls no
/// operation): the time of the call, an organization's monthly limit, and what a fold does
/// when a month's stored total grows (the operations append `usage.threshold` audit events).
pub(crate) trait UsageEnv {
    /// The time of the call.
    fn now(&self) -> DateTime<Utc>;
    /// The organization's `monthly_requests` limit (`None`: unlimited).
    fn monthly_limit(&self, org: &OrgRecord) -> Option<u64>;
    /// Called by a fold, in its transaction, after it stored a month's new total.
    fn month_total_grew(&self, tx: &mut dyn KvWrite, growth: &MonthGrowth<'_>) -> Result<()>;
}

/// A month total a fold raised.
pub(crate) struct MonthGrowth<'a> {
    pub(crate) org: &'a str,
    /// `yyyymm`.
    pub(crate) month: u32,
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) limit: Option<u64>,
}

/// One event, validated, with its day and month worked out.
#[derive(Debug, Clone)]
pub(crate) struct Admit<'a> {
    pub(crate) resource: Option<&'a str>,
    pub(crate) count: u64,
    pub(crate) day: u32,
    pub(crate) month: u32,
    pub(crate) key: Option<&'a str>,
    pub(crate) at_micros: i64,
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
    months: Map<u32, u64>,
    days: Map<u32, DayRow>,
    keys: Vec<(String, i64)>,
    expired_keys: Vec<String>,
}

impl OrgDelta {
    fn is_empty(&self) -> bool {
        self.months.is_empty()
            && self.days.is_empty()
            && self.keys.is_empty()
            && self.expired_keys.is_empty()
    }

    fn merge(&mut self, other: OrgDelta) {
        for (m, n) in other.months {
            *self.months.entry(m).or_default() += n;
        }
        for (d, row) in other.days {
            self.days.entry(d).or_default().merge(&row);
        }
        self.keys.extend(other.keys);
        self.expired_keys.extend(other.expired_keys);
    }
}

/// One organization's counters. Organizations live in a slab (`State::slots`) so a
/// [`UsageRecorder`](crate::UsageRecorder) reaches its own by position, hashing no string.
#[derive(Debug, Default)]
struct OrgUsage {
    /// The organization's id (empty in a vacant slot).
    id: String,
    /// Which occupant of the slot this is: unique in the ledger, 0 when vacant.
    epoch: u64,
    /// `monthly_requests`; reloaded when `limit_known` is false.
    limit: Option<u64>,
    limit_known: bool,
    /// Live resources of this organization seen so far: id → report slot.
    resources: Map<String, u32>,
    /// Absolute totals (database + unfolded), per month touched since load.
    months: Map<u32, u64>,
    keys: Map<String, i64>,
    oldest_key: i64,
    delta: OrgDelta,
}

impl OrgUsage {
    /// Counts one admitted event: its month's total (already loaded), and the unfolded delta.
    fn count(&mut self, e: &Admit<'_>, slot: Option<u32>) -> u64 {
        let total = self.months.entry(e.month).or_default();
        *total = total.saturating_add(e.count);
        let total = *total;
        *self.delta.months.entry(e.month).or_default() += e.count;
        self.delta.days.entry(e.day).or_default().add(slot, e.count);
        if let Some(k) = e.key {
            self.keys.insert(k.to_owned(), e.at_micros);
            self.oldest_key = self.oldest_key.min(e.at_micros);
            self.delta.keys.push((k.to_owned(), e.at_micros));
        }
        total
    }

    /// The month's total, read from the database the first time.
    fn month_total(&mut self, store: &RedbStore, month: u32) -> Result<u64> {
        match self.months.get(&month) {
            Some(total) => Ok(*total),
            None => {
                let total = store.read(|tx| tx.month_usage(&self.id, month))?;
                self.months.insert(month, total);
                Ok(total)
            }
        }
    }
}

/// Where a recorder's organization sits in the ledger: slot and occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrgHandle {
    index: usize,
    epoch: u64,
}

#[derive(Default)]
struct State {
    /// Organization id → position in `slots`.
    index: Map<String, usize>,
    slots: Vec<OrgUsage>,
    /// Vacant positions in `slots` (organizations deleted).
    free: Vec<usize>,
    last_epoch: u64,
    seq: u64,
    cursor: Option<Cursor>,
    /// Admitted changes not yet folded.
    dirty: bool,
    /// Folded with a non-durable commit since the last checkpoint.
    undurable: bool,
}

/// What admission decided.
pub(crate) struct Outcome {
    pub(crate) receipts: Vec<UsageReceipt>,
    /// The journal sequence to wait for before answering.
    pub(crate) wait_for: Option<u64>,
}

pub(crate) struct Ledger {
    state: Mutex<State>,
    fold_lock: Mutex<()>,
    journal: Option<Journal>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn org(&self, org: &str) -> Option<&OrgUsage> {
        self.index.get(org).map(|&i| &self.slots[i])
    }

    fn org_mut(&mut self, org: &str) -> Option<&mut OrgUsage> {
        self.index.get(org).map(|&i| &mut self.slots[i])
    }

    /// The organization's position, taking a slot (vacant or new) the first time.
    fn slot_for(&mut self, org: &str) -> usize {
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
                self.slots[i] = usage;
                i
            }
            None => {
                self.slots.push(usage);
                self.slots.len() - 1
            }
        };
        self.index.insert(org.to_owned(), i);
        i
    }
}

/// `yyyymm` of a day number.
pub(crate) fn month_of_day(day: u32) -> u32 {
    crate::store::day_from_number(day).map_or(0, crate::model::time::month_of)
}

fn receipt(duplicate: bool, used: u64, limit: Option<u64>) -> UsageReceipt {
    UsageReceipt {
        duplicate,
        used,
        limit,
        remaining: limit.map(|l| l.saturating_sub(used)),
    }
}

impl Ledger {
    /// A ledger without a journal (in-memory databases).
    pub(crate) fn in_memory() -> Ledger {
        Ledger {
            state: Mutex::new(State::default()),
            fold_lock: Mutex::new(()),
            journal: None,
        }
    }

    /// Opens the journal, replays what the last fold did not cover, and starts a new
    /// generation.
    pub(crate) fn open(store: &RedbStore, env: &dyn UsageEnv, journal: Journal) -> Result<Ledger> {
        let (generation, folded) = store.read(|tx| {
            Ok((
                tx.meta_u64(META_GENERATION)?.map(|g| g as u32),
                tx.meta_u64(META_SEQ)?.unwrap_or(0),
            ))
        })?;
        // A database that never opened its ledger owns nothing in a journal file that happens
        // to lie beside it (left by a deleted database of the same name): skip it.
        let replay: Vec<JournalBatch> = match generation {
            Some(generation) => {
                let (batches, _) = journal.read_generation(generation)?;
                batches.into_iter().filter(|b| b.seq > folded).collect()
            }
            None => Vec::new(),
        };
        let generation = generation.unwrap_or(1);
        let last = replay.last().map_or(folded, |b| b.seq);
        let next = generation.wrapping_add(1).max(1);
        store.write_durable(|tx| {
            let mut deltas: Map<String, OrgDelta> = Map::default();
            for batch in &replay {
                let delta = delta_of_batch(tx, batch)?;
                deltas.entry(batch.org.clone()).or_default().merge(delta);
            }
            apply_deltas(tx, env, deltas)?;
            tx.set_meta_u64(META_GENERATION, u64::from(next))?;
            tx.set_meta_u64(META_SEQ, last)
        })?;
        journal.mark_durable(last);
        Ok(Ledger {
            state: Mutex::new(State {
                seq: last,
                cursor: Some(Cursor {
                    generation: next,
                    offset: 0,
                }),
                ..State::default()
            }),
            fold_lock: Mutex::new(()),
            journal: Some(journal),
        })
    }

    /// The month's total as the ledger knows it, when it has the organization loaded.
    pub(crate) fn month_total(&self, org: &str, month: u32) -> Option<u64> {
        let st = lock(&self.state);
        st.org(org).and_then(|o| o.months.get(&month).copied())
    }

    /// The plan or overrides changed: read the limit again on next use.
    pub(crate) fn refresh_limit(&self, org: &str) {
        if let Some(o) = lock(&self.state).org_mut(org) {
            o.limit_known = false;
        }
    }

    /// The organization is gone: drop its counters (its rows were deleted with it). Its slot
    /// gets a new occupant later, so its recorders answer `not_found`.
    pub(crate) fn forget_org(&self, org: &str) {
        let mut st = lock(&self.state);
        if let Some(i) = st.index.remove(org) {
            st.slots[i] = OrgUsage::default();
            st.free.push(i);
        }
    }

    /// The resource was removed: later events naming it are refused.
    pub(crate) fn forget_resource(&self, org: &str, id: &str) {
        if let Some(o) = lock(&self.state).org_mut(org) {
            o.resources.remove(id);
        }
    }

    /// Whether a checkpoint has work: unfolded changes, or folds not yet durable.
    pub(crate) fn needs_checkpoint(&self) -> bool {
        let st = lock(&self.state);
        st.dirty || st.undurable
    }

    /// Fraction of the journal in use (0 without a journal).
    pub(crate) fn journal_fill(&self) -> f64 {
        match (&self.journal, lock(&self.state).cursor) {
            (Some(j), Some(c)) => c.offset as f64 / j.size() as f64,
            _ => 0.0,
        }
    }

    /// Loads the organization (`not_found` when it does not exist) and says where it sits.
    pub(crate) fn org_handle(
        &self,
        store: &RedbStore,
        env: &dyn UsageEnv,
        org: &str,
    ) -> Result<OrgHandle> {
        let mut st = lock(&self.state);
        let index = ensure_org(&mut st, store, env, org)?;
        Ok(OrgHandle {
            index,
            epoch: st.slots[index].epoch,
        })
    }

    /// A recorder's hot path: one buffered event, admitted at once when its organization and
    /// resource are loaded. `None` sends the caller to the general path, which loads them.
    pub(crate) fn admit_buffered(
        &self,
        store: &RedbStore,
        handle: OrgHandle,
        e: &Admit<'_>,
    ) -> Option<Result<UsageReceipt>> {
        let mut st = lock(&self.state);
        let usage = st.slots.get(handle.index)?;
        if usage.epoch != handle.epoch {
            return Some(Err(Error::not_found("Organization")));
        }
        if !usage.limit_known {
            return None;
        }
        let slot = match e.resource {
            None => None,
            Some(id) => Some(*usage.resources.get(id)?),
        };
        match self.admit_resolved(&mut st, store, handle.index, slot, e, Mode::Buffered) {
            Ok(Some((receipt, _))) => Some(Ok(receipt)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }

    /// Checks and (unless `Mode::Check`) counts one call's events for `org`.
    pub(crate) fn admit(
        &self,
        store: &RedbStore,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Outcome> {
        loop {
            let mut st = lock(&self.state);
            match self.admit_locked(&mut st, store, env, org, events, mode)? {
                Some(outcome) => return Ok(outcome),
                None => {
                    // The journal is full: checkpoint, start a new generation, try again.
                    drop(st);
                    self.fold(store, env, true, true)?;
                }
            }
        }
    }

    /// [`Ledger::admit`] for one event, without the batch bookkeeping: the gateway's hot path.
    pub(crate) fn admit_one(
        &self,
        store: &RedbStore,
        env: &dyn UsageEnv,
        org: &str,
        event: &Admit<'_>,
        mode: Mode,
    ) -> Result<(UsageReceipt, Option<u64>)> {
        loop {
            let mut st = lock(&self.state);
            match self.admit_one_locked(&mut st, store, env, org, event, mode)? {
                Some(done) => return Ok(done),
                None => {
                    drop(st);
                    self.fold(store, env, true, true)?;
                }
            }
        }
    }

    /// Fails with `err`; a durable call first waits until the state it saw is durable, so a
    /// crash can never make the refusal wrong.
    fn refuse<T>(&self, durable: bool, seen_seq: u64, err: Error) -> Result<T> {
        if durable {
            if let Some(j) = &self.journal {
                // Called under the ledger lock: no gathering (see `wait_durable`).
                j.wait_durable(seen_seq, false)?;
            }
        }
        Err(err)
    }

    fn admit_one_locked(
        &self,
        st: &mut State,
        store: &RedbStore,
        env: &dyn UsageEnv,
        org: &str,
        e: &Admit<'_>,
        mode: Mode,
    ) -> Result<Option<(UsageReceipt, Option<u64>)>> {
        let seen_seq = st.seq;
        let durable = mode == Mode::Durable && self.journal.is_some();
        let index = match ensure_org(st, store, env, org) {
            Ok(index) => index,
            Err(err) => return self.refuse(durable, seen_seq, err),
        };
        let slot = match e.resource {
            None => None,
            Some(id) => match resolve_resource(st, store, index, id) {
                Ok(slot) => Some(slot),
                Err(err) => return self.refuse(durable, seen_seq, err),
            },
        };
        self.admit_resolved(st, store, index, slot, e, mode)
    }

    /// Admits one event of the organization at `index`, its resource already resolved.
    fn admit_resolved(
        &self,
        st: &mut State,
        store: &RedbStore,
        index: usize,
        slot: Option<u32>,
        e: &Admit<'_>,
        mode: Mode,
    ) -> Result<Option<(UsageReceipt, Option<u64>)>> {
        let seen_seq = st.seq;
        let durable = mode == Mode::Durable && self.journal.is_some();
        let usage = &mut st.slots[index];
        let used = usage.month_total(store, e.month)?;
        let limit = usage.limit;
        if e.key.is_some_and(|k| usage.keys.contains_key(k)) {
            return Ok(Some((
                receipt(true, used, limit),
                durable.then_some(seen_seq),
            )));
        }
        let total = match used.checked_add(e.count) {
            Some(total) if limit.is_none_or(|l| total <= l) => total,
            _ => return self.refuse(durable, seen_seq, overflow(limit, used, e.count)),
        };
        if mode == Mode::Check {
            return Ok(Some((receipt(false, total, limit), None)));
        }
        let mut wait_for = None;
        if durable {
            match self.journal_append(st, index, std::iter::once(e))? {
                Some(seq) => wait_for = Some(seq),
                None => return Ok(None),
            }
        }
        st.slots[index].count(e, slot);
        st.dirty = true;
        Ok(Some((receipt(false, total, limit), wait_for)))
    }

    /// Writes the counted events of one call as one journal record; `None` when the journal
    /// is full (checkpoint and retry).
    fn journal_append<'e, 'a: 'e>(
        &self,
        st: &mut State,
        index: usize,
        events: impl Iterator<Item = &'e Admit<'a>>,
    ) -> Result<Option<u64>> {
        let journal = self.journal.as_ref().expect("durable implies a journal");
        let seq = st.seq + 1;
        let batch = JournalBatch {
            seq,
            org: st.slots[index].id.clone(),
            events: events
                .map(|e| JournalEvent {
                    resource: e.resource.map(str::to_owned),
                    day: e.day,
                    count: e.count,
                    key: e.key.map(str::to_owned),
                    at_micros: e.at_micros,
                })
                .collect(),
        };
        let Some(cursor) = st.cursor.as_mut() else {
            return Err(Error::storage("usage journal has no cursor"));
        };
        let record = journal::encode(cursor.generation, &batch);
        if record.len() as u64 > journal.size() / 2 {
            return Err(Error::invalid("events", "Too many events in one call"));
        }
        if journal.append(cursor, &record, seq)?.is_err() {
            return Ok(None);
        }
        st.seq = seq;
        Ok(Some(seq))
    }

    fn admit_locked(
        &self,
        st: &mut State,
        store: &RedbStore,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Option<Outcome>> {
        let seen_seq = st.seq;
        let durable = mode == Mode::Durable && self.journal.is_some();
        let index = match ensure_org(st, store, env, org) {
            Ok(index) => index,
            Err(err) => return self.refuse(durable, seen_seq, err),
        };
        let mut slots: Vec<Option<u32>> = Vec::with_capacity(events.len());
        for e in events {
            let slot = match e.resource {
                None => None,
                Some(id) => match resolve_resource(st, store, index, id) {
                    Ok(slot) => Some(slot),
                    Err(err) => return self.refuse(durable, seen_seq, err),
                },
            };
            slots.push(slot);
        }
        let usage = &mut st.slots[index];

        // Duplicates: keys already recorded, and repeats inside this call.
        let mut duplicate = vec![false; events.len()];
        let mut batch_keys: Vec<&str> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(k) = e.key {
                if usage.keys.contains_key(k) || batch_keys.contains(&k) {
                    duplicate[i] = true;
                } else {
                    batch_keys.push(k);
                }
            }
        }

        // Sums per month of what would be counted; every month's total must be loaded.
        let mut sums: Vec<(u32, u64)> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            usage.month_total(store, e.month)?;
            if duplicate[i] {
                continue;
            }
            match sums.iter_mut().find(|(m, _)| *m == e.month) {
                Some((_, sum)) => match sum.checked_add(e.count) {
                    Some(s) => *sum = s,
                    None => {
                        let err = overflow(usage.limit, usage.months[&e.month], e.count);
                        return self.refuse(durable, seen_seq, err);
                    }
                },
                None => sums.push((e.month, e.count)),
            }
        }
        for &(month, add) in &sums {
            let used = usage.months[&month];
            match (used.checked_add(add), usage.limit) {
                (Some(total), Some(limit)) if total > limit => {
                    let err = Error::quota("monthly_requests", limit, used, add);
                    return self.refuse(durable, seen_seq, err);
                }
                (None, limit) => return self.refuse(durable, seen_seq, overflow(limit, used, add)),
                _ => {}
            }
        }

        let counted = duplicate.iter().any(|d| !d);
        let mut wait_for = durable.then_some(seen_seq);
        if mode != Mode::Check && counted {
            if durable {
                let counted = events.iter().zip(&duplicate).filter(|(_, dup)| !**dup);
                match self.journal_append(st, index, counted.map(|(e, _)| e))? {
                    Some(seq) => wait_for = Some(seq),
                    None => return Ok(None),
                }
            }
            let usage = &mut st.slots[index];
            for ((e, dup), slot) in events.iter().zip(&duplicate).zip(&slots) {
                if *dup {
                    continue;
                }
                usage.count(e, *slot);
            }
            st.dirty = true;
        }

        let usage = &st.slots[index];
        let limit = usage.limit;
        let receipts = events
            .iter()
            .zip(&duplicate)
            .map(|(e, dup)| {
                let used = usage.months[&e.month];
                if mode == Mode::Check && !dup {
                    let after = sums.iter().find(|(m, _)| *m == e.month).map_or(0, |s| s.1);
                    receipt(false, used.saturating_add(after), limit)
                } else {
                    receipt(*dup, used, limit)
                }
            })
            .collect();
        Ok(Some(Outcome { receipts, wait_for }))
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

    /// Carries every unfolded change into the database in one transaction, with the journal
    /// position it covers. `durable` makes it a checkpoint; `reset` also restarts the journal
    /// under a new generation (admissions wait meanwhile).
    pub(crate) fn fold(
        &self,
        store: &RedbStore,
        env: &dyn UsageEnv,
        durable: bool,
        reset: bool,
    ) -> Result<()> {
        let _one_fold_at_a_time = lock(&self.fold_lock);
        let mut st = lock(&self.state);
        let reset = reset && self.journal.is_some();
        if !st.dirty && !reset && (!durable || !st.undurable) {
            return Ok(());
        }
        let cutoff = crate::model::time::minus(env.now(), KEY_RETENTION).timestamp_micros();
        let mut deltas: Map<String, OrgDelta> = Map::default();
        for usage in st.slots.iter_mut().filter(|u| u.epoch != 0) {
            if usage.oldest_key < cutoff && !usage.keys.is_empty() {
                let mut oldest = i64::MAX;
                usage.keys.retain(|k, at| {
                    let keep = *at >= cutoff;
                    if keep {
                        oldest = oldest.min(*at);
                    } else {
                        usage.delta.expired_keys.push(k.clone());
                    }
                    keep
                });
                usage.oldest_key = oldest;
            }
            if !usage.delta.is_empty() {
                deltas.insert(usage.id.clone(), std::mem::take(&mut usage.delta));
            }
        }
        st.dirty = false;
        let seq = st.seq;
        let generation = st.cursor.map_or(1, |c| c.generation);
        let next = if reset {
            generation.wrapping_add(1).max(1)
        } else {
            generation
        };
        let guard = if reset {
            Some(st)
        } else {
            drop(st);
            None
        };
        let has_journal = self.journal.is_some();
        let result = store.write_with(durable || reset, |tx| {
            apply_deltas(tx, env, deltas.clone())?;
            if has_journal {
                tx.set_meta_u64(META_GENERATION, u64::from(next))?;
                tx.set_meta_u64(META_SEQ, seq)?;
            }
            Ok(())
        });
        let mut st = guard.unwrap_or_else(|| lock(&self.state));
        if let Err(e) = result {
            // Nothing was written: put the changes back so the next fold carries them (an
            // organization deleted meanwhile has no rows left to carry them into).
            for (org, delta) in deltas {
                if let Some(usage) = st.org_mut(&org) {
                    usage.delta.merge(delta);
                }
            }
            st.dirty = true;
            return Err(e);
        }
        st.undurable = !(durable || reset);
        if let Some(journal) = &self.journal {
            if reset {
                st.cursor = Some(Cursor {
                    generation: next,
                    offset: 0,
                });
            }
            if durable || reset {
                journal.mark_durable(seq);
            }
        }
        Ok(())
    }

    /// Drops in-memory months and keys that `prune_usage` removed from the database.
    pub(crate) fn forget_before(&self, month: u32, key_cutoff: i64) {
        let mut st = lock(&self.state);
        for usage in st.slots.iter_mut() {
            usage.months.retain(|m, _| *m >= month);
            usage.keys.retain(|_, at| *at >= key_cutoff);
        }
    }
}

fn overflow(limit: Option<u64>, used: u64, add: u64) -> Error {
    match limit {
        Some(limit) => Error::quota("monthly_requests", limit, used, add),
        None => Error::invalid("count", "Would overflow the month's total"),
    }
}

/// Loads an organization's limit and idempotency keys on first use (or the limit after a
/// plan change) and returns its position. `not_found` when the organization does not exist.
fn ensure_org(st: &mut State, store: &RedbStore, env: &dyn UsageEnv, org: &str) -> Result<usize> {
    let known = st.index.get(org).copied();
    if let Some(i) = known.filter(|&i| st.slots[i].limit_known) {
        return Ok(i);
    }
    let fresh = known.is_none();
    let cutoff = crate::model::time::minus(env.now(), KEY_RETENTION).timestamp_micros();
    let (limit, keys) = store.read(|tx| {
        let rec = tx
            .org(org)?
            .ok_or_else(|| Error::not_found("Organization"))?;
        let limit = env.monthly_limit(&rec);
        let keys = if fresh {
            tx.idempotency_keys(org)?
        } else {
            Vec::new()
        };
        Ok((limit, keys))
    })?;
    let i = st.slot_for(org);
    let usage = &mut st.slots[i];
    usage.limit = limit;
    usage.limit_known = true;
    for (k, at) in keys.into_iter().filter(|(_, at)| *at >= cutoff) {
        usage.oldest_key = usage.oldest_key.min(at);
        usage.keys.insert(k, at);
    }
    Ok(i)
}

/// A resource's slot; `not_found` unless it is a live resource of the organization at
/// `index`.
fn resolve_resource(st: &mut State, store: &RedbStore, index: usize, id: &str) -> Result<u32> {
    let usage = &mut st.slots[index];
    if let Some(&slot) = usage.resources.get(id) {
        return Ok(slot);
    }
    let rec = store
        .read(|tx| tx.resource_record(id))?
        .filter(|r| r.resource.removed_at.is_none() && r.resource.organization_id == usage.id)
        .ok_or_else(|| Error::not_found("Resource"))?;
    usage.resources.insert(id.to_owned(), rec.slot);
    Ok(rec.slot)
}

/// The changes a replayed journal record makes.
fn delta_of_batch(tx: &dyn KvRead, batch: &JournalBatch) -> Result<OrgDelta> {
    let mut delta = OrgDelta::default();
    for e in &batch.events {
        let slot = match &e.resource {
            Some(id) => tx
                .resource_record(id)?
                .filter(|r| r.resource.organization_id == batch.org)
                .map(|r| r.slot),
            None => None,
        };
        *delta.months.entry(month_of_day(e.day)).or_default() += e.count;
        delta.days.entry(e.day).or_default().add(slot, e.count);
        if let Some(k) = &e.key {
            delta.keys.push((k.clone(), e.at_micros));
        }
    }
    Ok(delta)
}

/// Adds the deltas to the stored rows (skipping deleted organizations), telling `env` of each
/// month total it raises.
fn apply_deltas(
    tx: &mut dyn KvWrite,
    env: &dyn UsageEnv,
    deltas: Map<String, OrgDelta>,
) -> Result<()> {
    let mut orgs: Vec<(String, OrgDelta)> = deltas.into_iter().collect();
    orgs.sort_by(|a, b| a.0.cmp(&b.0));
    for (org, delta) in orgs {
        let Some(rec) = tx.org(&org)? else {
            continue;
        };
        let limit = env.monthly_limit(&rec);
        let mut months: Vec<(u32, u64)> = delta.months.into_iter().collect();
        months.sort_unstable();
        for (month, add) in months {
            let before = tx.month_usage(&org, month)?;
            let after = before.saturating_add(add);
            tx.put_month_usage(&org, month, after)?;
            env.month_total_grew(
                tx,
                &MonthGrowth {
                    org: &org,
                    month,
                    before,
                    after,
                    limit,
                },
            )?;
        }
        let mut days: Vec<(u32, DayRow)> = delta.days.into_iter().collect();
        days.sort_unstable_by_key(|d| d.0);
        for (day, add) in days {
            let mut row = tx.day_row(&org, day)?.unwrap_or_default();
            row.merge(&add);
            tx.put_day_row(&org, day, &row)?;
        }
        for (key, at) in &delta.keys {
            tx.put_idempotency(&org, key, *at)?;
        }
        for key in &delta.expired_keys {
            tx.delete_idempotency(&org, key)?;
        }
    }
    Ok(())
}

/// Day and month of a timestamp.
pub(crate) fn day_and_month(at: DateTime<Utc>) -> (u32, u32) {
    day_and_month_micros(at.timestamp_micros())
}

/// Day and month of a time in microseconds since the epoch (clamped to the calendar's ends).
/// The calendar arithmetic runs once per UTC day and thread: the hot path asks for today's
/// over and over.
pub(crate) fn day_and_month_micros(micros: i64) -> (u32, u32) {
    thread_local! {
        static LAST: std::cell::Cell<(i64, u32, u32)> = const { std::cell::Cell::new((i64::MIN, 0, 0)) };
    }
    let unix_day = micros.div_euclid(86_400_000_000);
    LAST.with(|last| {
        let (cached_day, day, month) = last.get();
        if cached_day == unix_day {
            return (day, month);
        }
        let date = crate::model::time::from_micros(micros)
            .unwrap_or(if micros < 0 {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            })
            .date_naive();
        let computed = (day_number(date), crate::model::time::month_of(date));
        last.set((unix_day, computed.0, computed.1));
        computed
    })
}
