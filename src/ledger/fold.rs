//! Folds, checkpoints and replay: carrying admitted usage into the database, with the
//! journal position each fold covers, and rebuilding it from the journal at open.

use std::sync::{Arc, Condvar, Mutex};

use crate::error::Result;
use crate::store::journal::{Journal, JournalBatch, Record};
use crate::store::{Backend, Commit, DayRow, Reads, Writes};

use super::{
    lock, Ledger, Map, OrgDelta, PeriodGrowth, State, UsageEnv, KEY_RETENTION, META_GENERATION,
    META_SEQ, META_WRITE_SEQ,
};

impl Ledger {
    /// Opens the journal, replays the usage the last fold did not cover, and starts a new
    /// generation. The store has replayed the journaled writes already (they may have moved
    /// `journal_seq`: a fold is a write).
    pub(crate) fn open(
        store: &dyn Backend,
        env: &dyn UsageEnv,
        journal: Arc<Journal>,
    ) -> Result<Ledger> {
        let (generation, folded, written) = store.read(|tx| {
            Ok((
                tx.meta_u64(META_GENERATION)?.map(|g| g as u32),
                tx.meta_u64(META_SEQ)?.unwrap_or(0),
                tx.meta_u64(META_WRITE_SEQ)?.unwrap_or(0),
            ))
        })?;
        // A database that never opened its ledger owns nothing in a journal file that happens
        // to lie beside it (left by a deleted database of the same name): skip it.
        let records = match generation {
            Some(generation) => journal.read_generation(generation)?.0,
            None => {
                // Cleared before any record of this database lands in it.
                journal.clear()?;
                Vec::new()
            }
        };
        let generation = generation.unwrap_or(1);
        // Sequence numbers go on after every one given so far: the stored marks and the
        // records read (a later replay skips records at or below the marks).
        let last = records
            .last()
            .map_or(0, Record::seq)
            .max(folded)
            .max(written);
        let replay: Vec<JournalBatch> = records
            .into_iter()
            .filter_map(|r| match r {
                Record::Usage(batch) if batch.seq > folded => Some(batch),
                _ => None,
            })
            .collect();
        let next = generation.wrapping_add(1).max(1);
        store.write_with(Commit::Durable, |tx| {
            let mut deltas: Map<String, OrgDelta> = Map::default();
            for batch in &replay {
                let delta = delta_of_batch(tx, batch)?;
                deltas.entry(batch.org.clone()).or_default().merge(delta);
            }
            apply_deltas(tx, env, deltas)?;
            tx.set_meta_u64(META_GENERATION, u64::from(next))?;
            tx.set_meta_u64(META_SEQ, last)
        })?;
        journal.start(next, last);
        journal.committed_durably(last);
        journal.mark_durable(last);
        Ok(Ledger {
            state: Mutex::new(State::default()),
            resumed: Condvar::new(),
            fold_lock: Mutex::new(()),
            journal: Some(journal),
            shared: None,
        })
    }

    /// Carries every unfolded change into the database in one transaction, with the journal
    /// position it covers. `durable` makes it a checkpoint; `reset` also restarts the journal
    /// under a new generation (admissions wait meanwhile).
    pub(crate) fn fold(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        durable: bool,
        reset: bool,
    ) -> Result<()> {
        if let Some(shared) = &self.shared {
            // Store what the leases admitted (a read that follows sees it), renew the busy
            // leases and return the idle ones.
            let _ = (durable, reset);
            return shared.leases.flush(store, env, false);
        }
        let _one_fold_at_a_time = lock(&self.fold_lock);
        let mut st = lock(&self.state);
        let reset = reset && self.journal.is_some();
        // A checkpoint also makes journaled writes durable in the file (they are replayed
        // from the journal until then).
        let undurable = st.undurable || self.journal.as_ref().is_some_and(|j| j.undurable());
        if !st.dirty && !reset && (!durable || !undurable) {
            return Ok(());
        }
        let deltas = take_deltas(&mut st, env);
        let seq = self.last_seq();
        let generation = self.generation();
        let next = if reset {
            generation.wrapping_add(1).max(1)
        } else {
            generation
        };
        // A restart holds admissions up until the new generation is written: a record written
        // meanwhile would land in the old one, after the commit that names the new one.
        st.held = reset;
        drop(st);
        // Ends the hold when this returns, after `st` below is released, or if the write
        // panics (a hold left on would block every later admission).
        let _hold = reset.then_some(Hold(self));
        let has_journal = self.journal.is_some();
        let result = store.write_with(
            if reset {
                Commit::Restart(next)
            } else if durable {
                Commit::Durable
            } else {
                Commit::Deferred
            },
            |tx| {
                apply_deltas(tx, env, deltas.clone())?;
                if has_journal {
                    tx.set_meta_u64(META_GENERATION, u64::from(next))?;
                    tx.set_meta_u64(META_SEQ, seq)?;
                }
                Ok(())
            },
        );
        let mut st = lock(&self.state);
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
            if durable || reset {
                journal.mark_durable(seq);
            }
        }
        Ok(())
    }

    /// Runs `write` in one transaction, on disk when it returns (`Commit::Synced`), after a
    /// fold of every admitted change, with admissions held meanwhile: `write` reads the
    /// organization's stored usage as complete (nothing of it is left in memory) and may
    /// change it (a usage correction). The journal's records up to here are covered by the
    /// same commit, so a replay never applies them twice. Afterwards the organization's
    /// cached period totals and quota are dropped (the next admission reads the stored ones)
    /// and `key` (with its time) joins its known keys. On a shared backend there is nothing in
    /// memory to fold: `write` runs as a usage transaction of the organization.
    pub(crate) fn fold_and_write<T>(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        key: Option<(&str, i64)>,
        write: &dyn Fn(&mut dyn Writes) -> Result<T>,
    ) -> Result<T> {
        if let Some(shared) = &self.shared {
            // This process's lease is given back first, its usage stored.
            shared.leases.release(store, env, org)?;
            return store.write_usage(&[org], &[], |tx| write(tx));
        }
        let _one_fold_at_a_time = lock(&self.fold_lock);
        let mut st = lock(&self.state);
        let deltas = take_deltas(&mut st, env);
        let seq = self.last_seq();
        let generation = self.generation();
        let has_journal = self.journal.is_some();
        st.held = true;
        drop(st);
        let _hold = Hold(self);
        // On disk when it returns (journaled on a file that journals its writes), so the
        // records up to `seq`, which it covers, are too.
        let result = store.write_with(Commit::Synced, |tx| {
            apply_deltas(tx, env, deltas.clone())?;
            if has_journal {
                tx.set_meta_u64(META_GENERATION, u64::from(generation))?;
                tx.set_meta_u64(META_SEQ, seq)?;
            }
            write(tx)
        });
        let mut st = lock(&self.state);
        let outcome = match result {
            Ok(value) => {
                st.undurable = false;
                if let Some(journal) = &self.journal {
                    journal.mark_durable(seq);
                }
                if let Some(usage) = st.org_mut(org) {
                    usage.periods.clear();
                    usage.limit_known = false;
                    if let Some((k, at)) = key {
                        usage.keys.insert(k.to_owned(), at);
                        usage.oldest_key = usage.oldest_key.min(at);
                    }
                }
                Ok(value)
            }
            Err(e) => {
                // Nothing was written: the changes go back for the next fold.
                for (org, delta) in deltas {
                    if let Some(usage) = st.org_mut(&org) {
                        usage.delta.merge(delta);
                    }
                }
                st.dirty = true;
                Err(e)
            }
        };
        drop(st);
        outcome
    }

    /// The last handle closes: on a shared backend, store what the leases admitted and give
    /// every reservation back.
    pub(crate) fn release_leases(&self, store: &dyn Backend, env: &dyn UsageEnv) -> Result<()> {
        match &self.shared {
            Some(shared) if shared.leases.held() => shared.leases.flush(store, env, true),
            _ => Ok(()),
        }
    }

    /// Drops in-memory months and keys that `prune_usage` removed from the database.
    pub(crate) fn forget_before(&self, period_end: u32, key_cutoff: i64) {
        let mut st = lock(&self.state);
        for usage in st.orgs.iter_mut() {
            let quota = usage.quota;
            usage
                .periods
                .retain(|start, _| quota.span(*start).end >= period_end);
            usage.keys.retain(|_, at| *at >= key_cutoff);
        }
    }
}

/// A hold of admissions (`State::held`), ended when dropped: on return or on unwinding.
struct Hold<'a>(&'a Ledger);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        self.0.resume(&mut st);
    }
}

/// Takes every organization's unfolded changes out of the state (and the keys past their
/// retention, to delete), leaving it clean.
fn take_deltas(st: &mut State, env: &dyn UsageEnv) -> Map<String, OrgDelta> {
    let cutoff = crate::model::time::minus(env.now(), KEY_RETENTION).timestamp_micros();
    let mut deltas: Map<String, OrgDelta> = Map::default();
    for usage in st.orgs.iter_mut().filter(|u| u.epoch != 0) {
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
    deltas
}

/// The changes a replayed journal record makes. Its events count in the periods of the
/// organization's rule as stored: a rule change folds every admitted event first, in its own
/// transaction, so the records a replay applies were admitted under the stored rule.
fn delta_of_batch(tx: &dyn Reads, batch: &JournalBatch) -> Result<OrgDelta> {
    let mut delta = OrgDelta::default();
    let rule = tx
        .org(&batch.org)?
        .map(|rec| rec.period)
        .unwrap_or_default();
    for e in &batch.events {
        let column = match &e.resource {
            Some(id) => tx
                .resource_record(id)?
                .filter(|r| r.resource.organization_id == batch.org)
                .map(|r| r.column),
            None => None,
        };
        *delta
            .periods
            .entry(crate::store::Span::of(rule, e.day))
            .or_default() += e.count;
        delta.days.entry(e.day).or_default().add(column, e.count);
        if let Some(k) = &e.key {
            delta.keys.push((k.clone(), e.at_micros));
        }
    }
    Ok(delta)
}

/// Adds the deltas to the stored rows (skipping deleted organizations), telling `env` of each
/// period total it raises.
fn apply_deltas(
    tx: &mut dyn Writes,
    env: &dyn UsageEnv,
    deltas: Map<String, OrgDelta>,
) -> Result<()> {
    let mut orgs: Vec<(String, OrgDelta)> = deltas.into_iter().collect();
    orgs.sort_by(|a, b| a.0.cmp(&b.0));
    for (org, delta) in orgs {
        let Some(rec) = tx.org(&org)? else {
            continue;
        };
        let quota = env.quota(&rec);
        let mut periods: Vec<(crate::store::Span, u64)> = delta.periods.into_iter().collect();
        periods.sort_unstable();
        for (span, add) in periods {
            let before = tx.period_usage(&org, span.start)?;
            let after = before.saturating_add(add);
            tx.put_period_usage(&org, span, after)?;
            env.period_total_grew(
                tx,
                &PeriodGrowth {
                    org: &org,
                    span,
                    after,
                    quota,
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
