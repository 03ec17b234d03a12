//! Admission on a shared backend (PostgreSQL): several processes count against the same
//! quotas, so no process may trust totals it holds in memory. Every call is one write
//! transaction that reads the stored month totals and idempotency keys, checks, and writes the
//! month total, the day rows, the keys and any `usage.threshold` event together; the
//! backend's serializable isolation makes concurrent calls, in any process, behave as if one
//! ran after the other. A refusal writes nothing.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::usage::UsageReceipt;
use crate::store::{Backend, Reads, Writes};

use super::admit::{overflow, receipt};
use super::{Admit, Mode, MonthGrowth, UsageEnv};

/// Checks and (unless `Mode::Check`) counts one call's events for `org`, durably: buffered
/// calls are durable too on a shared backend.
pub(crate) fn admit(
    store: &dyn Backend,
    env: &dyn UsageEnv,
    org: &str,
    events: &[Admit<'_>],
    mode: Mode,
) -> Result<Vec<UsageReceipt>> {
    if mode == Mode::Check {
        return store.read(|tx| Ok(plan(tx, env, org, events)?.receipts(events, true)));
    }
    store.write(|tx| {
        let plan = plan(&*tx, env, org, events)?;
        plan.apply(tx, env, org, events)?;
        Ok(plan.receipts(events, false))
    })
}

/// What a call would do, decided from one consistent read.
struct Plan {
    limit: Option<u64>,
    columns: Vec<Option<u32>>,
    duplicate: Vec<bool>,
    /// Each month the call touches: (stored total, what the call adds).
    months: BTreeMap<u32, (u64, u64)>,
}

fn plan(tx: &dyn Reads, env: &dyn UsageEnv, org: &str, events: &[Admit<'_>]) -> Result<Plan> {
    let rec = tx
        .org(org)?
        .ok_or_else(|| Error::not_found("Organization"))?;
    let limit = env.monthly_limit(&rec);
    let mut columns = Vec::with_capacity(events.len());
    for e in events {
        columns.push(match e.resource {
            None => None,
            Some(id) => Some(
                tx.resource_record(id)?
                    .filter(|r| {
                        r.resource.removed_at.is_none() && r.resource.organization_id == org
                    })
                    .ok_or_else(|| Error::not_found("Resource"))?
                    .column,
            ),
        });
    }
    let mut duplicate = vec![false; events.len()];
    let mut batch_keys: Vec<&str> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(k) = e.key {
            // A stored key is remembered until `prune_usage` removes it (past its retention).
            if tx.idempotency_key(org, k)?.is_some() || batch_keys.contains(&k) {
                duplicate[i] = true;
            } else {
                batch_keys.push(k);
            }
        }
    }
    let mut months: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (e, dup) in events.iter().zip(&duplicate) {
        let (used, add) = match months.entry(e.month) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((tx.month_usage(org, e.month)?, 0))
            }
        };
        if *dup {
            continue;
        }
        *add = add
            .checked_add(e.count)
            .ok_or_else(|| overflow(limit, *used, e.count))?;
    }
    for &(used, add) in months.values() {
        match (used.checked_add(add), limit) {
            (Some(total), Some(limit)) if total > limit => {
                return Err(Error::quota("monthly_requests", limit, used, add));
            }
            (None, limit) => return Err(overflow(limit, used, add)),
            _ => {}
        }
    }
    Ok(Plan {
        limit,
        columns,
        duplicate,
        months,
    })
}

impl Plan {
    /// Writes the counted events: month totals (with their threshold events), day rows, keys.
    fn apply(
        &self,
        tx: &mut dyn Writes,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
    ) -> Result<()> {
        for (&month, &(used, add)) in &self.months {
            if add == 0 {
                continue;
            }
            tx.put_month_usage(org, month, used + add)?;
            env.month_total_grew(
                tx,
                &MonthGrowth {
                    org,
                    month,
                    before: used,
                    after: used + add,
                    limit: self.limit,
                },
            )?;
        }
        let mut days: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, dup) in self.duplicate.iter().enumerate() {
            if !dup {
                days.entry(events[i].day).or_default().push(i);
            }
        }
        for (day, indexes) in days {
            let mut row = tx.day_row(org, day)?.unwrap_or_default();
            for i in indexes {
                row.add(self.columns[i], events[i].count);
                if let Some(key) = events[i].key {
                    tx.put_idempotency(org, key, events[i].at_micros)?;
                }
            }
            tx.put_day_row(org, day, &row)?;
        }
        Ok(())
    }

    /// One receipt per event: its month's total after the call (for a check: what the call
    /// would make it, or the total as it is for a duplicate).
    fn receipts(&self, events: &[Admit<'_>], check: bool) -> Vec<UsageReceipt> {
        events
            .iter()
            .zip(&self.duplicate)
            .map(|(e, dup)| {
                let (used, add) = self.months.get(&e.month).copied().unwrap_or_default();
                let shown = if check && *dup { used } else { used + add };
                receipt(*dup, shown, self.limit)
            })
            .collect()
    }
}
