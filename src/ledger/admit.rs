//! Admission: the exact check of a call against the in-memory period totals, its journal
//! record, and the answer (a receipt, or the refusal once the state it saw is durable).

use crate::error::{Error, Result};
use crate::model::usage::UsageReceipt;
use crate::store::journal::{self, JournalBatch, JournalEvent};
use crate::store::Backend;

use super::{
    ensure_org, lock, resolve_resource, Admit, Ledger, Mode, OrgHandle, Outcome, State, UsageEnv,
};

impl Ledger {
    /// Loads the organization (`not_found` when it does not exist) and says where it sits.
    pub(crate) fn org_handle(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
    ) -> Result<OrgHandle> {
        if self.shared.is_some() {
            store
                .read(|tx| tx.org(org))?
                .ok_or_else(|| Error::not_found("Organization"))?;
            // No place in memory: every event takes the general path (`admit_buffered` says
            // `None`), which admits in a transaction.
            return Ok(OrgHandle {
                index: usize::MAX,
                epoch: 0,
            });
        }
        let mut st = lock(&self.state);
        let index = ensure_org(&mut st, store, env, org)?;
        Ok(OrgHandle {
            index,
            epoch: st.orgs[index].epoch,
        })
    }

    /// A recorder's hot path: one buffered event, admitted at once when its organization and
    /// resource are loaded. `None` sends the caller to the general path, which loads them.
    pub(crate) fn admit_buffered(
        &self,
        store: &dyn Backend,
        handle: OrgHandle,
        e: &Admit<'_>,
    ) -> Option<Result<UsageReceipt>> {
        if self.shared.is_some() {
            return None;
        }
        let mut st = self.admitting();
        let usage = st.orgs.get(handle.index)?;
        if usage.epoch != handle.epoch {
            return Some(Err(Error::not_found("Organization")));
        }
        if !usage.limit_known {
            return None;
        }
        let column = match e.resource {
            None => None,
            Some(id) => Some(*usage.resources.get(id)?),
        };
        let now = e.at_micros;
        match self.admit_resolved(&mut st, store, handle.index, column, e, Mode::Buffered, now) {
            Ok(Some((receipt, _))) => Some(Ok(receipt)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }

    /// Validator and (unless `Mode::Check`) counts one call's events for `org`.
    pub(crate) fn admit(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Outcome> {
        if let Some(shared) = &self.shared {
            if mode == Mode::Buffered {
                if let Some(done) = shared.leases.admit(store, env, org, events) {
                    return done.map(|receipts| Outcome {
                        receipts,
                        wait_for: None,
                    });
                }
            }
            let receipts = shared.admit(store, env, org, events, mode)?;
            return Ok(Outcome {
                receipts,
                wait_for: None,
            });
        }
        loop {
            let mut st = self.admitting();
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
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        event: &Admit<'_>,
        mode: Mode,
    ) -> Result<(UsageReceipt, Option<u64>)> {
        if self.shared.is_some() {
            // The shared path has no single-event shortcut: the batch path, with one event.
            let mut outcome = self.admit(store, env, org, std::slice::from_ref(event), mode)?;
            let receipt = outcome.receipts.pop().ok_or_else(no_receipt)?;
            return Ok((receipt, None));
        }
        loop {
            let mut st = self.admitting();
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
    fn refuse<T>(&self, durable: bool, err: Error) -> Result<T> {
        if durable {
            if let Some(j) = &self.journal {
                // Called under the ledger lock: no gathering (see `wait_durable`).
                // Everything written so far, not only what was written when the call began:
                // what it read of the database may be a journaled write made meanwhile.
                j.wait_durable(j.last_seq(), false)?;
            }
        }
        Err(err)
    }

    fn admit_one_locked(
        &self,
        st: &mut State,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        e: &Admit<'_>,
        mode: Mode,
    ) -> Result<Option<(UsageReceipt, Option<u64>)>> {
        let durable = mode == Mode::Durable && self.journal.is_some();
        let index = match ensure_org(st, store, env, org) {
            Ok(index) => index,
            Err(err) => return self.refuse(durable, err),
        };
        let column = match e.resource {
            None => None,
            Some(id) => match resolve_resource(st, store, index, id) {
                Ok(column) => Some(column),
                Err(err) => return self.refuse(durable, err),
            },
        };
        let now = env.now().timestamp_micros();
        self.admit_resolved(st, store, index, column, e, mode, now)
    }

    /// Admits one event of the organization at `index`, its resource already resolved; live
    /// reservations at `now_micros` count against the quota.
    #[allow(clippy::too_many_arguments)]
    fn admit_resolved(
        &self,
        st: &mut State,
        store: &dyn Backend,
        index: usize,
        column: Option<u32>,
        e: &Admit<'_>,
        mode: Mode,
        now_micros: i64,
    ) -> Result<Option<(UsageReceipt, Option<u64>)>> {
        let durable = mode == Mode::Durable && self.journal.is_some();
        let usage = &mut st.orgs[index];
        let span = usage.span_of(e.day);
        let dates = usage.span_dates;
        let used = usage.period_total(store, span.start)?;
        let quota = usage.quota;
        if e.key.is_some_and(|k| usage.keys.contains_key(k)) {
            return Ok(Some((
                quota.receipt_dated(true, used, dates),
                durable.then(|| self.last_seq()),
            )));
        }
        let held = usage.held(now_micros);
        let total = match quota.admit(used.saturating_add(held), e.count) {
            Ok(_) => used.saturating_add(e.count),
            Err(err) => return self.refuse(durable, err),
        };
        if mode == Mode::Check {
            return Ok(Some((quota.receipt_dated(false, total, dates), None)));
        }
        let mut wait_for = None;
        if durable {
            match self.journal_append(st, index, std::iter::once(e))? {
                Some(seq) => wait_for = Some(seq),
                None => return Ok(None),
            }
        }
        st.orgs[index].count(e, span, column);
        st.dirty = true;
        Ok(Some((quota.receipt_dated(false, total, dates), wait_for)))
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
        let mut batch = JournalBatch {
            seq: 0,
            org: st.orgs[index].id.clone(),
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
        let mut tail = journal.tail();
        let Some(tail) = tail.as_mut() else {
            return Err(Error::storage("the journal was not started"));
        };
        batch.seq = tail.seq + 1;
        let record = journal::encode(tail.generation, &batch);
        if record.len() as u64 > journal.size() / 2 {
            return Err(Error::invalid("events", "Too many events in one call"));
        }
        Ok(journal.append(tail, &record)?.ok())
    }

    fn admit_locked(
        &self,
        st: &mut State,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Option<Outcome>> {
        let durable = mode == Mode::Durable && self.journal.is_some();
        let index = match ensure_org(st, store, env, org) {
            Ok(index) => index,
            Err(err) => return self.refuse(durable, err),
        };
        let mut columns: Vec<Option<u32>> = Vec::with_capacity(events.len());
        for e in events {
            let column = match e.resource {
                None => None,
                Some(id) => match resolve_resource(st, store, index, id) {
                    Ok(column) => Some(column),
                    Err(err) => return self.refuse(durable, err),
                },
            };
            columns.push(column);
        }
        let usage = &mut st.orgs[index];

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

        // Each event's period; sums per period of what would be counted; every period's
        // total must be loaded.
        let spans: Vec<_> = events.iter().map(|e| usage.span_of(e.day)).collect();
        let mut sums: Vec<(u32, u64)> = Vec::new();
        for (i, (e, span)) in events.iter().zip(&spans).enumerate() {
            usage.period_total(store, span.start)?;
            if duplicate[i] {
                continue;
            }
            match sums.iter_mut().find(|(p, _)| *p == span.start) {
                Some((_, sum)) => match sum.checked_add(e.count) {
                    Some(s) => *sum = s,
                    None => {
                        let err = usage.quota.refusal(usage.periods[&span.start], e.count);
                        return self.refuse(durable, err);
                    }
                },
                None => sums.push((span.start, e.count)),
            }
        }
        let held = usage.held(env.now().timestamp_micros());
        for &(start, add) in &sums {
            let used = usage.periods[&start].saturating_add(held);
            if let Err(err) = usage.quota.admit(used, add) {
                return self.refuse(durable, err);
            }
        }

        let counted = duplicate.iter().any(|d| !d);
        let mut wait_for = durable.then(|| self.last_seq());
        if mode != Mode::Check && counted {
            if durable {
                let counted = events.iter().zip(&duplicate).filter(|(_, dup)| !**dup);
                match self.journal_append(st, index, counted.map(|(e, _)| e))? {
                    Some(seq) => wait_for = Some(seq),
                    None => return Ok(None),
                }
            }
            let usage = &mut st.orgs[index];
            for (((e, dup), column), span) in
                events.iter().zip(&duplicate).zip(&columns).zip(&spans)
            {
                if *dup {
                    continue;
                }
                usage.count(e, *span, *column);
            }
            st.dirty = true;
        }

        let usage = &st.orgs[index];
        let quota = usage.quota;
        let receipts = spans
            .iter()
            .zip(&duplicate)
            .map(|(span, dup)| {
                let used = usage.periods[&span.start];
                if mode == Mode::Check && !dup {
                    let after = sums
                        .iter()
                        .find(|(p, _)| *p == span.start)
                        .map_or(0, |s| s.1);
                    quota.receipt(false, used.saturating_add(after), *span)
                } else {
                    quota.receipt(*dup, used, *span)
                }
            })
            .collect();
        Ok(Some(Outcome { receipts, wait_for }))
    }
}

pub(crate) fn no_receipt() -> Error {
    Error::storage("admission returned no receipt")
}
