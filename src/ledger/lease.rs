//! Buffered usage on a shared backend: **leases**. A process claims a slice of an
//! organization's remaining quota of the current period in one transaction (a row of `usage_leases`: the
//! amount reserved and when the reservation expires, by the server's clock), admits buffered
//! events against it in memory at once, and at each flush adds what it used to the stored
//! totals and renews or returns the rest. Every admission anywhere counts the stored total plus
//! every live reservation, so the sum of all leases and totals never passes the bound admission
//! enforces (the limit, or a soft limit's ceiling: `Quota`).
//!
//! Rules:
//! - A reservation is granted only from quota that is neither used nor reserved by a live
//!   lease of any process (`Reads::usage_state`), in a usage transaction of the organization (run
//!   after every other one of it, in any process: `Backend::write_usage_dyn`).
//! - A process admits against its lease only until half its lifetime has passed (measured
//!   from before the transaction that granted it, on its own monotonic clock); the flush
//!   that renews it runs every `usage_flush_interval`, far more often. So its admissions are
//!   always covered by a lease the server still counts.
//! - A crashed process's lease expires and its quota returns; what it admitted and had not
//!   flushed is lost, as buffered usage on a file is lost by a crash before its checkpoint.
//! - Events with an idempotency key, or of an earlier period than the lease's, take the
//!   durable path (keys must be checked against every process).
//! - A change of the organization's quota period moves every live lease to today's period of
//!   the new rule (`Writes::move_leases`, in the transaction that changes the rule), where
//!   what the leases admitted will be stored: every other process counts them there at once.
//!   A holder's next sync finds the rule changed, stores what its lease admitted in the
//!   periods of the new rule and returns the lease (whatever period it names); the next
//!   admission opens one on the new period.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::usage::UsageReceipt;
use crate::store::{Backend, DayRow, Span, UsageAsk, Writes};

use super::board::Board;
use super::{lock, Admit, Quota, UsageEnv};

/// The smallest slice asked for at once; a busy organization asks for more (see `want`).
const MIN_SLICE: u64 = 1_000;

/// One organization's lease as this process holds it.
#[derive(Debug)]
struct OrgLease {
    /// The period leased (cut by `quota.period`).
    span: Span,
    quota: Quota,
    /// Reserved on the server and not yet flushed (what `used` counts against).
    reserved: u64,
    /// Admitted here since the last flush.
    used: u64,
    /// `used` as readers see it (`Board`).
    posted: Arc<AtomicU64>,
    /// The stored period total at the last flush (other processes' flushed usage included).
    base: u64,
    /// After this, no admission until a flush renews the lease.
    deadline: Instant,
    /// What was admitted since the last flush, by day.
    days: BTreeMap<u32, DayRow>,
    /// Live resources' columns (`None`: not a live resource of the organization).
    columns: HashMap<String, Option<u32>>,
    /// How much the last slice was: doubled while the organization keeps using them up.
    slice: u64,
}

/// The leases of one database handle.
pub(crate) struct Leases {
    /// This handle's name in `usage_leases.holder`.
    holder: String,
    /// How long a lease lives on the server without renewal (`Options::usage_lease_ttl`).
    ttl: Duration,
    orgs: Mutex<HashMap<String, OrgLease>>,
    /// What readers add to stored totals, posted by admissions and syncs.
    pub(crate) board: Board,
}

impl Leases {
    pub(crate) fn new(ttl: Duration) -> Leases {
        Leases {
            ttl,
            holder: format!(
                "{}:{}",
                std::process::id(),
                crate::ids::IdGen::default().next("lease", chrono::Utc::now())
            ),
            orgs: Mutex::new(HashMap::new()),
            board: Board::default(),
        }
    }

    /// Whether a flush has work: usage to store, or leases to renew or return.
    pub(crate) fn held(&self) -> bool {
        !lock(&self.orgs).is_empty()
    }

    /// Admits buffered events without keys, all of one period, as one: in memory when the
    /// lease covers their sum, else after a transaction that flushes and claims more; all or
    /// none. `None` when they must take the durable path (an earlier period than the lease's).
    /// One receipt per event, in order.
    pub(crate) fn admit(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
    ) -> Option<Result<Vec<UsageReceipt>>> {
        let e = events.first()?;
        if events.iter().any(|x| x.key.is_some()) {
            return None;
        }
        let mut orgs = lock(&self.orgs);
        if let Some(l) = orgs.get(org) {
            let span = l.quota.span(e.day);
            if span != l.span {
                if span.start < l.span.start {
                    return None;
                }
                // A new period began: carry the old one's usage in, then start afresh.
                if let Err(err) = self.sync(store, env, org, &mut orgs, 0, true) {
                    return Some(Err(err));
                }
            }
        }
        if !orgs.contains_key(org) {
            if let Err(err) = self.open(store, env, org, e.day, &mut orgs) {
                return Some(Err(err));
            }
        }
        let span = orgs.get(org).map(|l| l.span)?;
        if events.iter().any(|x| !span.holds(x.day)) {
            return None;
        }
        Some(self.admit_locked(store, env, org, events, &mut orgs))
    }

    fn admit_locked(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        orgs: &mut HashMap<String, OrgLease>,
    ) -> Result<Vec<UsageReceipt>> {
        let mut columns = Vec::with_capacity(events.len());
        // The batch's sum, checked: `None` once it passes u64 (then nothing is admitted).
        let mut count = Some(0u64);
        for e in events {
            columns.push(match e.resource {
                None => None,
                Some(id) => Some(self.column(store, org, id, orgs)?),
            });
            count = count.and_then(|c| c.checked_add(e.count));
        }
        let l = orgs.get_mut(org).ok_or_else(not_loaded)?;
        let total = l.base.checked_add(l.used);
        let Some(count) = count.filter(|c| total.and_then(|t| t.checked_add(*c)).is_some()) else {
            let used = total.unwrap_or(u64::MAX);
            let asked = count.unwrap_or(u64::MAX);
            return Err(l.quota.refusal(used, asked));
        };
        // Without a bound nothing is reserved, but the lease still syncs every half-TTL, so
        // a plan change (to a bound) and other processes' usage reach this process.
        let fits = |l: &OrgLease| {
            Instant::now() < l.deadline
                && (l.quota.ceiling.is_none() || l.used.saturating_add(count) <= l.reserved)
        };
        if !fits(l) {
            let want = want(l, count);
            self.sync(store, env, org, orgs, want, false)?;
        }
        let l = orgs.get_mut(org).ok_or_else(not_loaded)?;
        if !fits(l) {
            let ceiling = l.quota.ceiling.unwrap_or(u64::MAX);
            return Err(Error::quota(
                "monthly_requests",
                ceiling,
                ceiling.saturating_sub(l.reserved.saturating_sub(l.used)),
                count,
            ));
        }
        let mut receipts = Vec::with_capacity(events.len());
        let dates = l.span.dates();
        for (e, column) in events.iter().zip(columns) {
            l.used += e.count;
            l.days.entry(e.day).or_default().add(column, e.count);
            receipts.push(l.quota.receipt_dated(false, l.base + l.used, dates));
        }
        l.posted.store(l.used, Ordering::Release);
        Ok(receipts)
    }

    fn column(
        &self,
        store: &dyn Backend,
        org: &str,
        id: &str,
        orgs: &mut HashMap<String, OrgLease>,
    ) -> Result<u32> {
        let l = orgs.get_mut(org).ok_or_else(not_loaded)?;
        let known = match l.columns.get(id) {
            Some(column) => *column,
            None => {
                let column = store.read(|tx| tx.live_resource_column(org, id))?;
                l.columns.insert(id.to_owned(), column);
                column
            }
        };
        known.ok_or_else(|| Error::not_found("Resource"))
    }

    /// Loads an organization's limit and opens a lease on the period that holds day number
    /// `day` (nothing reserved yet).
    fn open(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        day: u32,
        orgs: &mut HashMap<String, OrgLease>,
    ) -> Result<()> {
        let (quota, span, base) = store.read(|tx| {
            let rec = tx
                .org(org)?
                .ok_or_else(|| Error::not_found("Organization"))?;
            let quota = env.quota(&rec);
            let span = quota.span(day);
            Ok((quota, span, tx.period_usage(org, span.start)?))
        })?;
        let posted = Arc::new(AtomicU64::new(0));
        self.board.opened(org, span, posted.clone());
        orgs.insert(
            org.to_owned(),
            OrgLease {
                span,
                quota,
                reserved: 0,
                used: 0,
                posted,
                base,
                deadline: Instant::now(),
                days: BTreeMap::new(),
                columns: HashMap::new(),
                slice: MIN_SLICE,
            },
        );
        Ok(())
    }

    /// One transaction: store what was admitted since the last sync (period total, day rows,
    /// threshold events), then reserve `want` more (as much of it as is free) and renew the
    /// lease, or give it all back when `release`. Forgets the organization locally when it
    /// was deleted or the lease is released.
    fn sync(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        orgs: &mut HashMap<String, OrgLease>,
        want: u64,
        release: bool,
    ) -> Result<()> {
        let l = orgs.get_mut(org).ok_or_else(not_loaded)?;
        let storing = l.used > 0;
        if storing {
            self.board.before_storing(org);
        }
        // Should the transaction unwind, the mark is still cleared (as for an unknown outcome).
        let unwinding = storing.then(|| StampOnUnwind {
            board: &self.board,
            org,
            used: l.used,
            span: l.span,
        });
        let started = Instant::now();
        let holder = self.holder.as_str();
        let done = store.write_usage(&[org], &[], |tx| {
            let Some(rec) = tx.org(org)? else {
                return Ok(None);
            };
            let quota = env.quota(&rec);
            // The organization's quota period changed: the lease's period means nothing now.
            let release = release || quota.period != l.quota.period;
            let reserving = !release && quota.ceiling.is_some();
            let state = tx.usage_state(
                org,
                &UsageAsk {
                    periods: &[l.span.start],
                    leases: reserving,
                    except_holder: Some(holder),
                    now_micros: env.now().timestamp_micros(),
                    ..UsageAsk::default()
                },
            )?;
            let (stored, others) = state
                .periods
                .first()
                .map_or((0, 0), |&(_, stored, leased)| (stored, leased));
            let base = store_lease_usage(tx, env, org, l, quota, stored)?;
            // What is still reserved and unused stays reserved, but never past the bound (a
            // lower limit since the last sync takes it back); then as much of `want` as is free.
            let room = quota
                .ceiling
                .unwrap_or(u64::MAX)
                .saturating_sub(base.saturating_add(others));
            let keep = l.reserved.saturating_sub(l.used).min(room);
            let reserved = if !reserving {
                0
            } else {
                keep + want.min(room - keep)
            };
            tx.put_lease(org, l.span.start, holder, reserved, self.ttl)?;
            Ok(Some((quota, base, reserved, release)))
        });
        std::mem::forget(unwinding);
        match done {
            Ok(Some((quota, base, reserved, release))) => {
                let grew = reserved > l.reserved.saturating_sub(l.used);
                l.quota = quota;
                l.base = base;
                l.reserved = reserved;
                l.used = 0;
                l.days.clear();
                l.deadline = started + self.ttl / 2;
                if grew && want > 0 {
                    l.slice = l.slice.saturating_mul(2).min(1 << 40);
                }
                let span = (!release).then_some(l.span);
                if storing {
                    self.board.stored(org, 0, span);
                } else if release {
                    self.board.closed(org);
                }
                if release {
                    orgs.remove(org);
                }
                Ok(())
            }
            Ok(None) => {
                orgs.remove(org);
                self.board.closed(org);
                Err(Error::not_found("Organization"))
            }
            Err(err) => {
                if storing {
                    // The commit may have happened: readers read again.
                    self.board.stored(org, l.used, Some(l.span));
                }
                Err(err)
            }
        }
    }

    /// Stores every organization's admitted usage and renews its lease; returns the lease of
    /// an organization that admitted nothing since the last flush (idle quota goes back to the
    /// others at once), and every lease when `release` (a closing handle).
    pub(crate) fn flush(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        release: bool,
    ) -> Result<()> {
        let mut orgs = lock(&self.orgs);
        let work: Vec<(String, bool)> = orgs
            .iter()
            .map(|(org, l)| (org.clone(), release || l.used == 0))
            .collect();
        let mut first_error = None;
        for (org, give_back) in work {
            match self.sync(store, env, &org, &mut orgs, 0, give_back) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stores what the organization's lease admitted and gives its reservation back (nothing
    /// to do without a lease).
    pub(crate) fn release(&self, store: &dyn Backend, env: &dyn UsageEnv, org: &str) -> Result<()> {
        let mut orgs = lock(&self.orgs);
        if !orgs.contains_key(org) {
            return Ok(());
        }
        self.sync(store, env, org, &mut orgs, 0, true)
    }

    /// The plan or overrides changed: the next admission syncs (and reads the limit).
    pub(crate) fn refresh(&self, org: &str) {
        if let Some(l) = lock(&self.orgs).get_mut(org) {
            l.deadline = Instant::now();
        }
    }

    /// The organization was deleted, or a resource removed: drop what is cached.
    pub(crate) fn forget(&self, org: &str, resource: Option<&str>) {
        let mut orgs = lock(&self.orgs);
        match resource {
            Some(id) => {
                if let Some(l) = orgs.get_mut(org) {
                    l.columns.remove(id);
                }
            }
            None => {
                orgs.remove(org);
                self.board.closed(org);
            }
        }
    }
}

/// How much to reserve for an event of `count` that does not fit: at least what it needs
/// beyond what is left, and a slice that grows while the organization keeps using them up.
fn want(l: &OrgLease, count: u64) -> u64 {
    let short = l.used.saturating_add(count).saturating_sub(l.reserved);
    short.max(l.slice)
}

/// Adds what a lease admitted to the stored rows, in the periods of `quota`'s rule (the
/// lease's own period, whose stored total was `stored`, unless the rule changed since the
/// lease opened); returns the lease period's new stored total.
fn store_lease_usage(
    tx: &mut dyn Writes,
    env: &dyn UsageEnv,
    org: &str,
    l: &OrgLease,
    quota: Quota,
    stored: u64,
) -> Result<u64> {
    if l.used == 0 {
        return Ok(stored);
    }
    let mut adds: BTreeMap<Span, u64> = BTreeMap::new();
    for (&day, row) in &l.days {
        *adds.entry(quota.span(day)).or_default() += row.total;
    }
    let mut periods = Vec::with_capacity(adds.len());
    let mut base = stored;
    for (span, add) in adds {
        let before = if span == l.span {
            stored
        } else {
            tx.period_usage(org, span.start)?
        };
        let after = before.saturating_add(add);
        if span == l.span {
            base = after;
        }
        periods.push((span, before, after));
    }
    let days: Vec<(u32, &DayRow)> = l.days.iter().map(|(&day, row)| (day, row)).collect();
    super::store_shared_usage(
        tx,
        env,
        &[super::SharedUsage {
            org,
            periods: &periods,
            days: &days,
            keys: &[],
            quota,
        }],
    )?;
    Ok(base)
}

/// Stamps a storing organization on the board if its sync unwinds (forgotten otherwise: the
/// sync's outcome stamps it then).
struct StampOnUnwind<'a> {
    board: &'a Board,
    org: &'a str,
    used: u64,
    span: Span,
}

impl Drop for StampOnUnwind<'_> {
    fn drop(&mut self) {
        self.board.stored(self.org, self.used, Some(self.span));
    }
}

fn not_loaded() -> Error {
    Error::storage("usage lease state lost")
}
