//! Admission on a shared backend (PostgreSQL): several processes count against the same
//! quotas, so no process may trust totals it holds in memory. Calls are admitted in write
//! transactions that read the stored period totals and idempotency keys, check, and write the
//! period totals, the day rows, the keys and any `usage.threshold` event together, as usage
//! transactions of their organizations (`Backend::write_usage_dyn`): the backend runs those of
//! one organization one after the other, in any process. A refused call writes nothing.
//!
//! **Group commit.** Concurrent callers in one process share transactions: a caller queues its
//! call; while fewer than `LEADERS` batches run, a caller takes every queued call of the
//! organizations no running batch holds and admits them in one transaction, in queue order,
//! each exactly as if it ran alone after the ones before it (a call that does not fit is
//! refused on its own; the others still count). An organization's calls are never in two
//! running batches, so a busy organization's calls gather while its batch commits, and no two
//! batches of a process wait on each other's row locks. A batch costs one lock of its
//! organizations' rows, one read of their limits' state (period totals, leases, keys,
//! resources) and one write of their rows, whatever the number of calls and organizations in
//! it (`Reads::usage_states`, `Writes::apply_usages`), so throughput grows with callers.
//! Callers wait for their own answer: it is given only once the transaction committed.
//!
//! **Gathering.** A batch started as soon as a leader's place is free takes only the calls
//! queued at that instant: when one batch ends, the first of its callers to come back would
//! start the next batch nearly alone while the others are on their way. So a caller about to
//! start a batch while another batch runs waits up to `GATHER` until every caller seen lately
//! that is not in a running batch has queued (the most calls queued and running together when
//! a batch started, over the last `PEAK_BATCHES` batches); no batch starts meanwhile, and each
//! call queued or batch ended wakes it. A lone caller never waits: no other batch runs when it
//! comes back.
//!
//! **Guesses.** A batch runs on what this handle's last batch of each of its organizations
//! saw when it committed (`Last`: the record, the period totals after it, the resources'
//! columns): the store answers the transaction's reads from those guesses and sends the
//! lock, the write with a check of the guesses and COMMIT in one round trip instead of two.
//! A guess the check finds wrong (another process counted since) fails the transaction with
//! nothing applied, and the batch runs again on what it reads; after misses the batch's
//! organizations go without guesses for a while (`GUESS_PAUSE_MAX`). A batch guesses only
//! when it can guess for every organization in it.
//! ARCHITECTURE.md, "Guessed usage transactions".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::period::QuotaPeriod;
use crate::model::usage::UsageReceipt;
use crate::store::{
    Backend, DayRow, OrgRecord, Reads, Span, UsageAsk, UsageGuess, UsageState, Writes,
};

use super::{lock, Admit, Mode, Quota, SharedUsage, UsageEnv};

/// One event of a queued call, owned (the call's thread waits while another admits it).
#[derive(Debug, Clone)]
struct Event {
    resource: Option<String>,
    count: u64,
    day: u32,
    key: Option<String>,
    at_micros: i64,
}

impl Event {
    fn of(e: &Admit<'_>) -> Event {
        Event {
            resource: e.resource.map(str::to_owned),
            count: e.count,
            day: e.day,
            key: e.key.map(str::to_owned),
            at_micros: e.at_micros,
        }
    }
}

/// A queued call and, once its batch committed, its answer.
struct Call {
    org: String,
    events: Vec<Event>,
    answer: Mutex<Option<Result<Vec<UsageReceipt>>>>,
    /// Its caller waits here, with the queue's lock: notified when the call is answered, or
    /// when its caller may lead the next batch (`Running::drop`). Only those callers are
    /// woken: waking every waiting caller after each batch cost 16 callers over 64
    /// organizations about 9 % of their throughput (BENCHMARKS.md, PostgreSQL).
    wake: Condvar,
    /// Its caller leads a batch (of other calls: its own still waits while its organization
    /// is busy), so a wake-up to lead would be lost on it. Read and written under the
    /// queue's lock.
    leading: AtomicBool,
}

/// The group committer's queue.
#[derive(Default)]
struct Queue {
    waiting: Vec<Arc<Call>>,
    /// Batches running.
    leading: usize,
    /// The organizations of the running batches (no two batches share one).
    busy: HashSet<String>,
    /// A caller is gathering the next batch (no other starts one meanwhile).
    gathering: bool,
    /// How many calls the running batches hold.
    running: usize,
    /// The most calls seen in the queue and the running batches together when a batch
    /// started, over the last `PEAK_BATCHES` batches: about how many callers there are.
    peak: usize,
    /// Batches started since `peak` was last set afresh.
    since_peak: u32,
}

/// How many batches of one handle may run at once, on organizations apart: the next batch
/// gathers while one commits. 16 callers over 64 organizations ran 1.66-1.72x hand-written SQL
/// with 2, 1.51x with 3, and 1.33-1.36x with one batch at a time in each of two lanes by
/// organization (the layout before); the one-organization rows did not move (BENCHMARKS.md,
/// PostgreSQL).
const LEADERS: usize = 2;

/// How long a caller about to start a batch may wait for more calls to gather, while another
/// batch runs: callers that loop come back within microseconds of their answer. 16 callers over
/// 64 organizations ran 1.97-2.07x hand-written SQL against 1.50-1.61x without gathering
/// (BENCHMARKS.md, PostgreSQL).
const GATHER: Duration = Duration::from_micros(200);

/// How many batches a caller count (`Queue::peak`) lasts before it is measured afresh: callers
/// that left stop being waited for after that many batches.
const PEAK_BATCHES: u32 = 256;

/// The longest a waiting caller sleeps before it looks at the queue again.
const RECHECK: Duration = Duration::from_millis(10);

/// How many organizations [`Shared`] remembers what it last saw of; past that it forgets them
/// all and starts again (a period guessed wrong costs its batch one round trip, a batch
/// without a guess one more).
const SEEN_KEPT: usize = 4096;

/// How many resources' columns [`Seen`] keeps of one organization before it keeps only the
/// last batch's.
const COLUMNS_KEPT: usize = 1024;

/// How many periods' totals [`Seen`] keeps of one organization before it keeps only the last
/// batch's (a daily quota adds one a day).
const PERIODS_KEPT: usize = 64;

/// The most a miss count grows to (the pause it gives is [`GUESS_PAUSE_MAX`]).
const MISSES_MAX: u32 = 8;

/// The most batches of an organization that go without a guess after its guesses missed
/// (another process counts there too). Each miss adds one to a count and each guess that
/// holds takes one off; after a miss that leaves the count at n, the next 2^n - 1 batches (at
/// most this many) read under the lock first, so an organization where guesses hold less
/// often than they miss soon gets one now and then only. A guess that missed on the server
/// cost one round trip; 4 processes on one organization ran 3-7 % slower when a guess that
/// held set the count back to 0.
const GUESS_PAUSE_MAX: u32 = 255;

/// The group committer and the leases of one database handle.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Notified when a call is queued while a caller gathers.
    queued: Condvar,
    pub(crate) leases: super::lease::Leases,
    /// What the last batch of each organization saw when it committed: the next batch's
    /// prefetch is computed from the quota period there (the calendar month if none), and
    /// the next batch runs on what it saw, as a guess (`Backend::write_usage_dyn`). Guesses
    /// only: the store checks them, and the batch asks again from what it reads under the
    /// lock when they are wrong.
    seen: Mutex<HashMap<String, Seen>>,
}

/// What the last committed batch of one organization saw, and how its guesses fared.
#[derive(Default)]
struct Seen {
    /// Its quota period.
    period: QuotaPeriod,
    /// What the last batch left stored of the organization.
    last: Option<Last>,
    /// How many of the last guesses missed, less those that held (a guess that holds takes
    /// one off), and batches left to run without one.
    misses: u32,
    pause: u32,
}

/// What a batch left stored of one organization, as it saw it.
struct Last {
    org: OrgRecord,
    /// Each period's stored total after the batch, and what leases and reservations held.
    periods: HashMap<u32, (u64, u64)>,
    /// Whether the holds were read (the quota has a bound to count them against); when not,
    /// they are 0 here and no guess says what they are.
    holds: bool,
    /// The resources' columns seen (`None`: not a live resource).
    columns: HashMap<String, Option<u32>>,
}

impl Seen {
    /// The guess for a batch of `prepared` (computed with this quota period): what the store
    /// would answer if nobody else counted since (and none of the batch's keys is stored),
    /// unless guessing pauses or the batch names a period or resource not seen.
    fn guess(&self, prepared: &Prepared<'_>) -> Option<UsageGuess> {
        if self.pause > 0 {
            return None;
        }
        let last = self.last.as_ref()?;
        let periods = prepared
            .starts
            .iter()
            .map(|start| {
                let &(total, leased) = last.periods.get(start)?;
                Some((*start, total, leased))
            })
            .collect::<Option<Vec<_>>>()?;
        // A resource seen not live is not guessed: the store checks live resources only.
        let columns = prepared
            .resources
            .iter()
            .map(|&id| Some((id.to_owned(), Some((*last.columns.get(id)?)?))))
            .collect::<Option<Vec<_>>>()?;
        Some(UsageGuess {
            holds: last.holds,
            org: last.org.clone(),
            state: UsageState {
                periods,
                keys: Vec::new(),
                columns,
            },
        })
    }
}

impl Shared {
    pub(crate) fn new(lease_ttl: std::time::Duration) -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            leases: super::lease::Leases::new(lease_ttl),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Checks and (unless `Mode::Check`) counts one call's events for `org`, durably: on a
    /// shared backend buffered calls are durable too.
    pub(crate) fn admit(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        org: &str,
        events: &[Admit<'_>],
        mode: Mode,
    ) -> Result<Vec<UsageReceipt>> {
        // This process's own lease of the organization is given back first (its usage stored):
        // a durable call or a check here must neither count the unused part of our own
        // reservation as taken nor spend it while the lease could still spend it too.
        self.leases.release(store, env, org)?;
        let events: Vec<Event> = events.iter().map(Event::of).collect();
        if mode == Mode::Check {
            return store.read(|tx| {
                let mut plan = OrgPlan::load(tx, env, org, &[&events])?;
                plan.decide(&events, true)
            });
        }
        let call = Arc::new(Call {
            org: org.to_owned(),
            events,
            answer: Mutex::new(None),
            wake: Condvar::new(),
            leading: AtomicBool::new(false),
        });
        let mut queue = lock(&self.queue);
        queue.waiting.push(call.clone());
        if queue.gathering {
            self.queued.notify_one();
        }
        let mut gathered = false;
        loop {
            if let Some(answer) = lock(&call.answer).take() {
                return answer;
            }
            if queue.leading < LEADERS && !queue.gathering {
                // Gathering (module docs): only while another batch runs, only while callers
                // seen lately are neither queued nor in a running batch, only for a batch that
                // could start now, and only by a caller whose own call still waits (it then
                // leads what it gathered).
                if !gathered
                    && queue.leading > 0
                    && queue.waiting.len() < queue.target()
                    && queue.any_ready()
                    && queue.waiting.iter().any(|c| Arc::ptr_eq(c, &call))
                {
                    gathered = true;
                    queue = self.gather(queue);
                    continue;
                }
                // Every waiting call whose organization no running batch holds, in queue
                // order: an organization's calls never run in two batches at once.
                let (batch, rest): (Vec<Arc<Call>>, Vec<Arc<Call>>) =
                    std::mem::take(&mut queue.waiting)
                        .into_iter()
                        .partition(|c| !queue.busy.contains(&c.org));
                queue.waiting = rest;
                if !batch.is_empty() {
                    queue.started(batch.len());
                    queue.leading += 1;
                    for c in &batch {
                        queue.busy.insert(c.org.clone());
                    }
                    call.leading.store(true, Ordering::Relaxed);
                    drop(queue);
                    let running = Running {
                        shared: self,
                        batch: &batch,
                        own: &call,
                    };
                    let answers = self.run_batch(store, env, &batch);
                    for (c, answer) in batch.iter().zip(answers) {
                        *lock(&c.answer) = Some(answer);
                    }
                    drop(running);
                    queue = lock(&self.queue);
                    call.leading.store(false, Ordering::Relaxed);
                    continue;
                }
            }
            // Timed: a wake-up lost to a rule above costs a caller at most this, never a hang.
            queue = call
                .wake
                .wait_timeout(queue, RECHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Queue {
    /// How many calls should be queued before a batch starts: every caller seen lately that
    /// is not in a running batch.
    fn target(&self) -> usize {
        self.peak.saturating_sub(self.running)
    }

    /// Counts a batch of `n` calls starting (taken out of `waiting` already).
    fn started(&mut self, n: usize) {
        let seen = self.running + n + self.waiting.len();
        self.since_peak += 1;
        if self.since_peak >= PEAK_BATCHES {
            self.since_peak = 0;
            self.peak = seen;
        } else {
            self.peak = self.peak.max(seen);
        }
        self.running += n;
    }

    /// Whether a batch started now would take a call.
    fn any_ready(&self) -> bool {
        self.waiting.iter().any(|c| !self.busy.contains(&c.org))
    }
}

impl Shared {
    /// Waits, for at most [`GATHER`], until as many calls are queued as there are callers seen
    /// lately outside the running batches (`Queue::target`); no batch starts meanwhile
    /// (callers queued in between wait for this one). A call queued, or a batch ending (its
    /// organizations free again), wakes it.
    fn gather<'q>(&self, mut queue: MutexGuard<'q, Queue>) -> MutexGuard<'q, Queue> {
        queue.gathering = true;
        let deadline = Instant::now() + GATHER;
        loop {
            let now = Instant::now();
            if now >= deadline || queue.waiting.len() >= queue.target() {
                break;
            }
            queue = self
                .queued
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        queue.gathering = false;
        queue
    }
}

/// A running batch. However it ends (a panic included), its organizations are freed, its
/// callers woken and the next leader too; after a panic its unanswered calls get a
/// `storage_error` rather than waiting for ever, and the leader's own call, if it still
/// waits, leaves the queue (its caller is unwinding: nobody would take its answer).
struct Running<'a> {
    shared: &'a Shared,
    batch: &'a [Arc<Call>],
    /// The leader's own call.
    own: &'a Arc<Call>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in self.batch {
                let mut answer = lock(&c.answer);
                if answer.is_none() {
                    *answer = Some(Err(Error::storage("a usage batch failed unexpectedly")));
                }
            }
        }
        let mut queue = lock(&self.shared.queue);
        if std::thread::panicking() {
            queue.waiting.retain(|c| !Arc::ptr_eq(c, self.own));
        }
        queue.leading -= 1;
        queue.running = queue.running.saturating_sub(self.batch.len());
        for c in self.batch {
            queue.busy.remove(&c.org);
        }
        let gathering = queue.gathering;
        // A leader's place is free: the first waiting caller that leads no batch may lead the
        // next one (a gatherer leads it instead). Callers are woken after the lock is let go:
        // each waits under it, so one that looked before this change waits already, and one
        // that looks after sees it.
        let next = if gathering {
            None
        } else {
            queue
                .waiting
                .iter()
                .find(|c| !c.leading.load(Ordering::Relaxed))
                .cloned()
        };
        drop(queue);
        for c in self.batch {
            c.wake.notify_one();
        }
        if let Some(next) = next {
            next.wake.notify_one();
        }
        if gathering {
            // Its organizations are free now: the gatherer's batch may take more.
            self.shared.queued.notify_one();
        }
    }
}

impl Shared {
    /// Admits a batch in one write transaction; one answer per call. If the transaction
    /// fails (after the backend's retries), every call of the batch gets its error: none was
    /// counted.
    fn run_batch(
        &self,
        store: &dyn Backend,
        env: &dyn UsageEnv,
        batch: &[Arc<Call>],
    ) -> Vec<Result<Vec<UsageReceipt>>> {
        // Calls grouped by organization, in queue order within each.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            match groups.iter_mut().find(|(org, _)| *org == c.org) {
                Some((_, calls)) => calls.push(i),
                None => groups.push((&c.org, vec![i])),
            }
        }
        let orgs: Vec<&str> = groups.iter().map(|(org, _)| *org).collect();
        let events_of = |calls: &[usize]| -> Vec<&[Event]> {
            calls.iter().map(|&i| &batch[i].events[..]).collect()
        };
        // The time of the first attempt, taken before it: the prefetched read must ask what
        // the transaction asks (also in the run that follows a guess that missed, which
        // sends it again: with a guess the first two runs take it, so a retry after a guess
        // the store did not use takes it once more, still sent with the lock). A later attempt
        // takes its own time (and reads again).
        let now = env.now().timestamp_micros();
        // What the transaction will likely ask: its periods by the rule its last batch read
        // (the calendar month if none other), with what leases and reservations hold (the
        // prefetched read answers an ask without them too).
        let (guessed, guesses): (Vec<Prepared<'_>>, Vec<UsageGuess>) = {
            let mut seen = lock(&self.seen);
            let guessed: Vec<Prepared<'_>> = groups
                .iter()
                .map(|(org, calls)| {
                    let quota = Quota {
                        period: seen.get(*org).map(|s| s.period).unwrap_or_default(),
                        ..Quota::default()
                    };
                    Prepared::with(quota, &events_of(calls))
                })
                .collect();
            // The batch runs on what each organization's last batch saw, if it saw each (a
            // batch of an organization paused counts toward its pause).
            let mut guesses = Vec::with_capacity(orgs.len());
            for (org, prepared) in orgs.iter().zip(&guessed) {
                let guess = seen.get_mut(*org).and_then(|s| {
                    let guess = s.guess(prepared);
                    s.pause = s.pause.saturating_sub(1);
                    guess
                });
                guesses.extend(guess);
            }
            if guesses.len() < orgs.len() {
                guesses.clear();
            }
            (guessed, guesses)
        };
        let prefetch: Vec<(&str, UsageAsk<'_>)> = orgs
            .iter()
            .copied()
            .zip(guessed.iter().map(|p| UsageAsk {
                leases: true,
                ..p.ask(now)
            }))
            .collect();
        let runs = std::cell::Cell::new(0u32);
        let runs_on_prefetch = if guesses.is_empty() { 1 } else { 2 };
        let done = store.write_usage_guessed(&orgs, &prefetch, &guesses, |tx| {
            runs.set(runs.get() + 1);
            let mut answers: Vec<Option<Result<Vec<UsageReceipt>>>> = vec![None; batch.len()];
            // What each organization's calls need, read for all of them at once.
            let mut live: Vec<(&str, &[usize], Prepared<'_>)> = Vec::new();
            for (org, calls) in &groups {
                match Prepared::of(&*tx, env, org, &events_of(calls), true) {
                    Ok(prepared) => live.push((org, calls, prepared)),
                    // The organization is gone: its calls are refused, the others go on.
                    Err(e @ Error::NotFound { .. }) => {
                        for &i in calls {
                            answers[i] = Some(Err(e.clone()));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let states = {
                let now = if runs.get() <= runs_on_prefetch {
                    now
                } else {
                    env.now().timestamp_micros()
                };
                let asks: Vec<(&str, UsageAsk<'_>)> = live
                    .iter()
                    .map(|(org, _, prepared)| (*org, prepared.ask(now)))
                    .collect();
                tx.usage_states(&asks)?
            };
            // A run after one on guesses (which missed, or failed): which organizations made
            // it miss, by what this run reads and decides.
            let after_guesses = runs.get() > 1 && !guesses.is_empty();
            let mut missed_by: Vec<&str> = Vec::new();
            let mut plans: Vec<(&str, OrgPlan)> = Vec::with_capacity(live.len());
            for ((org, calls, prepared), state) in live.into_iter().zip(states) {
                let guessed_wrong = after_guesses
                    && !orgs
                        .iter()
                        .position(|o| *o == org)
                        .and_then(|i| guesses.get(i))
                        .is_some_and(|g| guess_held(g, prepared.rec.as_ref(), &state));
                let mut plan = OrgPlan::of(prepared, state)?;
                for &i in calls {
                    answers[i] = Some(plan.decide(&batch[i].events, false));
                }
                if guessed_wrong || (after_guesses && plan.reads_alerts()) {
                    missed_by.push(org);
                }
                plans.push((org, plan));
            }
            OrgPlan::write(tx, env, &plans)?;
            let saw: Vec<(&str, QuotaPeriod, Option<Last>)> = plans
                .into_iter()
                .map(|(org, plan)| (org, plan.quota.period, plan.last()))
                .collect();
            Ok((answers, saw, missed_by))
        });
        match done {
            Ok((answers, saw, missed_by)) => {
                let mut seen = lock(&self.seen);
                // An organization found gone: nothing of it is left to guess.
                for org in &orgs {
                    if !saw.iter().any(|(o, ..)| o == org) {
                        seen.remove(*org);
                    }
                }
                for (org, period, last) in saw {
                    if seen.len() >= SEEN_KEPT && !seen.contains_key(org) {
                        seen.clear();
                    }
                    let entry = match seen.get_mut(org) {
                        Some(entry) => entry,
                        None => seen.entry(org.to_owned()).or_default(),
                    };
                    entry.period = period;
                    entry.last = match (last, entry.last.take()) {
                        // Periods and resources the batch did not name stay as seen before
                        // (the store checks them when a guess uses them).
                        (Some(mut now), Some(before)) => {
                            if before.periods.len() < PERIODS_KEPT {
                                for (start, v) in before.periods {
                                    now.periods.entry(start).or_insert(v);
                                }
                            }
                            if before.columns.len() < COLUMNS_KEPT {
                                for (id, c) in before.columns {
                                    now.columns.entry(id).or_insert(c);
                                }
                            }
                            Some(now)
                        }
                        (now, _) => now,
                    };
                    if missed_by.contains(&org) {
                        entry.misses = (entry.misses + 1).min(MISSES_MAX);
                        entry.pause = (1u32 << entry.misses)
                            .saturating_sub(1)
                            .min(GUESS_PAUSE_MAX);
                    } else if !guesses.is_empty() {
                        entry.misses = entry.misses.saturating_sub(1);
                    }
                }
                drop(seen);
                answers
                    .into_iter()
                    .map(|a| {
                        a.unwrap_or_else(|| Err(Error::storage("a usage call went unanswered")))
                    })
                    .collect()
            }
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// Whether `guess` was right about an organization, as a run without it read the
/// organization's record (`rec`) and usage state. Holds are compared when guessed; the
/// periods and resources in any order.
fn guess_held(guess: &UsageGuess, rec: Option<&OrgRecord>, state: &UsageState) -> bool {
    let periods = |s: &UsageState| {
        let mut p: Vec<(u32, u64, u64)> = s
            .periods
            .iter()
            .map(|&(start, total, held)| (start, total, if guess.holds { held } else { 0 }))
            .collect();
        p.sort_unstable();
        p
    };
    let columns = |s: &UsageState| {
        let mut c: Vec<(String, Option<u32>)> = s.columns.clone();
        c.sort_unstable();
        c
    };
    rec == Some(&guess.org)
        && state.keys.is_empty()
        && periods(state) == periods(&guess.state)
        && columns(state) == columns(&guess.state)
}

/// One organization's admission state inside a transaction: what is stored, and what the
/// calls admitted so far add to it.
struct OrgPlan {
    /// The organization's record, when read in the transaction.
    rec: Option<OrgRecord>,
    quota: Quota,
    /// Live resources' columns (`None`: not a live resource of this organization).
    columns: HashMap<String, Option<u32>>,
    /// Keys stored or admitted in this batch.
    keys: HashSet<String>,
    /// Period totals: (stored, after the calls admitted so far).
    periods: BTreeMap<Span, (u64, u64)>,
    /// Quota of each period reserved by live leases (`lease.rs`): it counts against the limit.
    leased: BTreeMap<Span, u64>,
    /// Day rows' increments and new keys, written once at the end.
    days: BTreeMap<u32, DayRow>,
    new_keys: Vec<(String, i64)>,
}

/// A period's total before and after a batch's calls.
type Growth = (Span, u64, u64);

/// One organization's part of a batch before its stored state is read: its quota, and the
/// periods, keys and resources its calls name.
struct Prepared<'e> {
    /// The organization's record, when read in the transaction.
    rec: Option<OrgRecord>,
    quota: Quota,
    spans: Vec<Span>,
    starts: Vec<u32>,
    keys: Vec<&'e str>,
    resources: Vec<&'e str>,
}

impl<'e> Prepared<'e> {
    /// Reads the organization's limit (locked by the usage transaction) and cuts the calls'
    /// periods by the rule read here, in the transaction; keeps the record if `keep`.
    fn of(
        tx: &dyn Reads,
        env: &dyn UsageEnv,
        org: &str,
        calls: &[&'e [Event]],
        keep: bool,
    ) -> Result<Self> {
        let rec = tx
            .org(org)?
            .ok_or_else(|| Error::not_found("Organization"))?;
        let prepared = Prepared::with(env.quota(&rec), calls);
        Ok(Prepared {
            rec: keep.then_some(rec),
            ..prepared
        })
    }

    /// The part of the calls under `quota`.
    fn with(quota: Quota, calls: &[&'e [Event]]) -> Self {
        let events = || calls.iter().flat_map(|c| c.iter());
        let mut spans: Vec<Span> = events().map(|e| quota.span(e.day)).collect();
        spans.sort_unstable();
        spans.dedup();
        let starts = spans.iter().map(|s| s.start).collect();
        let keys = events().filter_map(|e| e.key.as_deref()).collect();
        let mut resources: Vec<&str> = events().filter_map(|e| e.resource.as_deref()).collect();
        resources.sort_unstable();
        resources.dedup();
        Prepared {
            rec: None,
            quota,
            spans,
            starts,
            keys,
            resources,
        }
    }

    /// What to read of the store (`now_micros`: the call's time).
    fn ask(&self, now_micros: i64) -> UsageAsk<'_> {
        UsageAsk {
            periods: &self.starts,
            leases: self.quota.ceiling.is_some(),
            except_holder: None,
            now_micros,
            keys: &self.keys,
            resources: &self.resources,
        }
    }
}

impl OrgPlan {
    /// Reads what the calls need: the organization's limit, their resources, which of their
    /// keys are stored, their periods' totals.
    fn load(tx: &dyn Reads, env: &dyn UsageEnv, org: &str, calls: &[&[Event]]) -> Result<OrgPlan> {
        let prepared = Prepared::of(tx, env, org, calls, false)?;
        let state = tx.usage_state(org, &prepared.ask(env.now().timestamp_micros()))?;
        OrgPlan::of(prepared, state)
    }

    /// The plan of a prepared organization, from what the store answered.
    fn of(prepared: Prepared<'_>, state: UsageState) -> Result<OrgPlan> {
        let mut plan = OrgPlan {
            rec: prepared.rec,
            quota: prepared.quota,
            columns: HashMap::new(),
            keys: HashSet::new(),
            periods: BTreeMap::new(),
            leased: BTreeMap::new(),
            days: BTreeMap::new(),
            new_keys: Vec::new(),
        };
        // Each row names its period: a SQL backend returns them in no promised order.
        let found: HashMap<u32, (u64, u64)> = state
            .periods
            .into_iter()
            .map(|(start, stored, leased)| (start, (stored, leased)))
            .collect();
        for span in prepared.spans {
            let (stored, leased) = found
                .get(&span.start)
                .copied()
                .ok_or_else(|| Error::storage("usage_state left out a period asked for"))?;
            plan.periods.insert(span, (stored, stored));
            plan.leased.insert(span, leased);
        }
        plan.columns = state.columns.into_iter().collect();
        // A stored key is remembered until `prune_usage` removes it (past its retention).
        plan.keys = state.keys.into_iter().collect();
        Ok(plan)
    }

    /// Decides one call against the state left by the calls before it: all its events
    /// counted, or none (`check` only answers, counting nothing).
    fn decide(&mut self, events: &[Event], check: bool) -> Result<Vec<UsageReceipt>> {
        for e in events {
            if let Some(id) = &e.resource {
                if self.columns.get(id).copied().flatten().is_none() {
                    return Err(Error::not_found("Resource"));
                }
            }
        }
        let mut duplicate = vec![false; events.len()];
        let mut fresh: Vec<&str> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(k) = e.key.as_deref() {
                if self.keys.contains(k) || fresh.contains(&k) {
                    duplicate[i] = true;
                } else {
                    fresh.push(k);
                }
            }
        }
        // What counts against the limit: the total plus what live leases reserve.
        let counted = |span: &Span| {
            self.periods[span]
                .1
                .saturating_add(self.leased.get(span).copied().unwrap_or(0))
        };
        let spans: Vec<Span> = events.iter().map(|e| self.quota.span(e.day)).collect();
        let mut adds: BTreeMap<Span, u64> = BTreeMap::new();
        for ((e, span), dup) in events.iter().zip(&spans).zip(&duplicate) {
            if *dup {
                continue;
            }
            let used = counted(span);
            let add = adds.entry(*span).or_default();
            *add = add
                .checked_add(e.count)
                .ok_or_else(|| self.quota.refusal(used, e.count))?;
        }
        for (span, add) in &adds {
            let used = counted(span);
            self.quota.admit(used, *add)?;
        }
        let receipts = spans
            .iter()
            .zip(&duplicate)
            .map(|(span, dup)| {
                let used = self.periods[span].1;
                let after = used + adds.get(span).copied().unwrap_or(0);
                let mut r =
                    self.quota
                        .receipt(*dup, if check && *dup { used } else { after }, *span);
                // Quota reserved by leases is not free either.
                let leased = self.leased.get(span).copied().unwrap_or(0);
                r.remaining = r.remaining.map(|left| left.saturating_sub(leased));
                r
            })
            .collect();
        if check {
            return Ok(receipts);
        }
        for (span, add) in adds {
            if let Some((_, after)) = self.periods.get_mut(&span) {
                *after += add;
            }
        }
        for (e, dup) in events.iter().zip(&duplicate) {
            if *dup {
                continue;
            }
            let column = e
                .resource
                .as_ref()
                .and_then(|id| self.columns.get(id).copied().flatten());
            self.days.entry(e.day).or_default().add(column, e.count);
            if let Some(k) = &e.key {
                self.keys.insert(k.clone());
                self.new_keys.push((k.clone(), e.at_micros));
            }
        }
        Ok(receipts)
    }

    /// Whether writing the batch reads the organization's alert state, which no guess holds: a
    /// period total it moves reaches an alert threshold (`UsageEnv::period_total_grew`).
    fn reads_alerts(&self) -> bool {
        self.periods.values().any(|&(before, after)| {
            after != before && self.quota.alerts_reached(after).next().is_some()
        })
    }

    /// What the batch leaves stored of the organization once it commits, when its record was
    /// kept (`Prepared::of`).
    fn last(self) -> Option<Last> {
        Some(Last {
            org: self.rec?,
            periods: self
                .periods
                .iter()
                .map(|(span, &(_, after))| {
                    let leased = self.leased.get(span).copied().unwrap_or(0);
                    (span.start, (after, leased))
                })
                .collect(),
            // The holds were read only for a quota with a bound (`Prepared::ask`).
            holds: self.quota.ceiling.is_some(),
            columns: self.columns,
        })
    }

    /// Writes what the admitted calls of each organization add: period totals (with their
    /// threshold events), day rows, keys; all organizations' rows in one statement.
    fn write(tx: &mut dyn Writes, env: &dyn UsageEnv, plans: &[(&str, OrgPlan)]) -> Result<()> {
        // Periods whose total moved, of the organizations with anything to store.
        let changed: Vec<(&str, &OrgPlan, Vec<Growth>)> = plans
            .iter()
            .filter_map(|(org, plan)| {
                let periods: Vec<Growth> = plan
                    .periods
                    .iter()
                    .filter(|(_, (before, after))| after != before)
                    .map(|(&span, &(before, after))| (span, before, after))
                    .collect();
                (!periods.is_empty() || !plan.new_keys.is_empty()).then_some((*org, plan, periods))
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let days: Vec<Vec<(u32, &DayRow)>> = changed
            .iter()
            .map(|(_, plan, _)| plan.days.iter().map(|(&day, row)| (day, row)).collect())
            .collect();
        let usages: Vec<SharedUsage<'_>> = changed
            .iter()
            .zip(&days)
            .map(|((org, plan, periods), days)| SharedUsage {
                org,
                periods,
                days,
                keys: &plan.new_keys,
                quota: plan.quota,
            })
            .collect();
        super::store_shared_usage(tx, env, &usages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::org::{LimitOverrides, Organization};

    fn record(plan: &str) -> OrgRecord {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        OrgRecord {
            org: Organization {
                id: "org_1".into(),
                name: "Acme".into(),
                slug: "acme".into(),
                external_id: None,
                description: None,
                plan: plan.into(),
                address_line1: None,
                address_line2: None,
                city: None,
                state: None,
                zipcode: None,
                country: None,
                settings: Default::default(),
                metadata: Default::default(),
                created_at: at,
                updated_at: at,
            },
            overrides: LimitOverrides::default(),
            period: QuotaPeriod::default(),
            alerts: Some(Vec::new()),
        }
    }

    fn state(periods: &[(u32, u64, u64)], columns: &[(&str, u32)]) -> UsageState {
        UsageState {
            periods: periods.to_vec(),
            keys: Vec::new(),
            columns: columns
                .iter()
                .map(|&(id, c)| (id.to_owned(), Some(c)))
                .collect(),
        }
    }

    /// A run after a guess that missed charges the miss only to the organizations whose guess
    /// it finds wrong: the record, a total, a hold (when guessed), a stored key or a column.
    #[test]
    fn a_guess_held_only_when_the_run_without_it_reads_the_same() {
        let guessed = state(&[(10, 5, 2), (40, 0, 0)], &[("a", 0), ("b", 1)]);
        let guess = |holds| UsageGuess {
            org: record("pro"),
            state: guessed.clone(),
            holds,
        };
        let rec = record("pro");
        // The same, periods and resources in another order.
        let same = state(&[(40, 0, 0), (10, 5, 2)], &[("b", 1), ("a", 0)]);
        assert!(guess_held(&guess(true), Some(&rec), &same));
        // A total moved.
        let moved = state(&[(10, 6, 2), (40, 0, 0)], &[("a", 0), ("b", 1)]);
        assert!(!guess_held(&guess(true), Some(&rec), &moved));
        // A hold moved: wrong only when holds were guessed.
        let held = state(&[(10, 5, 3), (40, 0, 0)], &[("a", 0), ("b", 1)]);
        assert!(!guess_held(&guess(true), Some(&rec), &held));
        assert!(guess_held(&guess(false), Some(&rec), &held));
        // A key stored.
        let mut keyed = same.clone();
        keyed.keys.push("k".into());
        assert!(!guess_held(&guess(true), Some(&rec), &keyed));
        // A resource's column, or the resource gone.
        let column = state(&[(10, 5, 2), (40, 0, 0)], &[("a", 0), ("b", 2)]);
        assert!(!guess_held(&guess(true), Some(&rec), &column));
        let mut gone = same.clone();
        gone.columns[0].1 = None;
        assert!(!guess_held(&guess(true), Some(&rec), &gone));
        // The record changed, or not read.
        assert!(!guess_held(&guess(true), Some(&record("team")), &same));
        assert!(!guess_held(&guess(true), None, &same));
    }
}
