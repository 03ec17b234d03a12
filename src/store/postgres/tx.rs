//! One PostgreSQL transaction behind the typed interface: every `Reads` / `Writes` method is
//! one or two SQL statements, prepared once per connection. BEGIN leaves with the first
//! statement, and writes with the next statement that is waited for, or with COMMIT (`Open`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::error::{Error, Result};
use crate::model::audit::AuditEvent;
use crate::model::entitlement::EntitlementValue;
use crate::model::invitation::InvitationStatus;
use crate::model::membership::Membership;
use crate::model::project::{Project, ProjectMembership};
use crate::model::reservation::Reservation;
use crate::model::resource::{Resource, ResourceKind};
use crate::model::role::Role;
use crate::model::transfer::Record;
use crate::model::user::User;
use crate::store::{
    day_number, org_terms, AlertFired, CheckReport, DayRow, Directory, InvitationRecord,
    MemberPage, MemberPos, MemberSet, OrgMembers, OrgOverview, OrgRecord, OrgStats, Reads,
    ResourceRecord, Span, UsageAsk, UsageGuess, UsageState, UsageWrite, UserMembership, Writes,
};

use super::client::{Answer, Client, Step};
use super::rows::*;
use super::{is_connection_loss, is_retryable, pg_error};
use crate::model::user::search_terms;

/// `UPDATE organizations` adding `$3` to the counter of role `$2` (the caller adds `WHERE`).
macro_rules! role_count_update {
    () => {
        "UPDATE organizations SET
            count_owner = count_owner + CASE WHEN $2 = 'owner' THEN $3::BIGINT ELSE 0 END,
            count_admin = count_admin + CASE WHEN $2 = 'admin' THEN $3::BIGINT ELSE 0 END,
            count_member = count_member + CASE WHEN $2 = 'member' THEN $3::BIGINT ELSE 0 END,
            count_viewer = count_viewer + CASE WHEN $2 = 'viewer' THEN $3::BIGINT ELSE 0 END"
    };
}

/// Where a [`PgTx`]'s statements run.
enum Session<'c> {
    /// In a transaction.
    Tx(Open<'c>),
    /// A read of one statement, on the bare connection: a statement is its own snapshot, so
    /// one needs no BEGIN and COMMIT (two round trips saved). A second statement is refused
    /// (`wants_tx`): the read runs again in a transaction.
    Single { client: &'c mut Client, ran: bool },
}

/// A parameter held by the statement's side (boxed), for a statement built apart from where
/// it runs.
pub(super) type Owned<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// The parameters of `owned`, as a statement takes them.
pub(super) fn params_of<'p>(owned: &'p [Owned<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    owned.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

/// A transaction on a connection. BEGIN is not sent alone: it leaves with the transaction's
/// first statement, in one pipeline (one round trip saved). Writes whose answer nothing waits
/// for (`PgTx::exec`) leave with the next statement that is waited for, or with COMMIT. Dropped
/// unfinished (a panic in the closure), it rolls back, so the connection goes back to the
/// pool outside any transaction.
pub(crate) struct Open<'c> {
    client: &'c mut Client,
    /// BEGIN with its options, until it is sent.
    begin: Option<String>,
    /// Whether BEGIN was sent.
    begun: bool,
    /// Writes not sent yet, in order.
    later: Vec<(Statement, Vec<Encoded>)>,
    /// Set when a statement failed: the server aborted the transaction.
    failed: bool,
    /// BEGIN leaves with the writes kept for later (`lock_guessed`: they start with the lock
    /// and the guess's check), not on its own.
    begin_with_writes: bool,
}

impl<'c> Open<'c> {
    /// A transaction that `begin` (BEGIN and its settings, in the simple protocol) starts.
    pub(crate) fn new(client: &'c mut Client, begin: String) -> Open<'c> {
        Open {
            client,
            begin: Some(begin),
            begun: false,
            later: Vec::new(),
            failed: false,
            begin_with_writes: false,
        }
    }

    /// Sends BEGIN if not sent yet, the writes kept for later, and `steps`, together: the
    /// answers to `steps`, or the first failure of the whole pipeline. Once one failed, the
    /// transaction is aborted and never commits (`failed`).
    fn run(&mut self, steps: &[Step<'_>]) -> std::result::Result<Vec<Answer>, Failed> {
        if self.failed {
            return Err(Failed::Aborted);
        }
        let result = self.send(steps);
        self.failed = result.is_err();
        result
    }

    fn send(&mut self, steps: &[Step<'_>]) -> std::result::Result<Vec<Answer>, Failed> {
        if !self.later.is_empty() && !self.begin_with_writes {
            if let Some(begin) = self.begin.take() {
                // Writes first: BEGIN on its own, so that a BEGIN that failed cannot leave the
                // writes after it to run one by one outside a transaction.
                self.begun = true;
                self.client
                    .batch_execute(&begin)
                    .map_err(|error| Failed::Statement {
                        last_not_run: true,
                        error,
                    })?;
            }
        }
        let later = std::mem::take(&mut self.later);
        let later_params: Vec<Vec<&(dyn ToSql + Sync)>> = later
            .iter()
            .map(|(_, params)| params.iter().map(|p| p as &(dyn ToSql + Sync)).collect())
            .collect();
        let begin = self.begin.take();
        let mut all: Vec<Step<'_>> = Vec::with_capacity(1 + later.len() + steps.len());
        if let Some(begin) = &begin {
            all.push(Step::Simple(begin));
            // Sent: whatever its answer, ROLLBACK ends it (a warning if it did not begin).
            self.begun = true;
        }
        let ahead = all.len() + later.len();
        for ((st, _), params) in later.iter().zip(&later_params) {
            all.push(Step::Execute(st, params));
        }
        all.extend_from_slice(steps);
        let last = all.len().saturating_sub(1);
        let (answered, sent) = self.client.pipeline(&all);
        let mut answers = Vec::with_capacity(steps.len());
        for (i, answer) in answered.into_iter().enumerate() {
            match answer {
                Some(Ok(answer)) if i >= ahead => answers.push(answer),
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    // The last step cannot have run to its end if it was never sent, or if
                    // the server answered a step before it with an error (the transaction
                    // was aborted, or the session ended).
                    let last_not_run = sent <= last || (i < last && error.as_db_error().is_some());
                    return Err(Failed::Statement {
                        last_not_run,
                        error,
                    });
                }
                // After a failure only (returned above): never sent.
                None => return Err(Failed::Unanswered),
            }
        }
        Ok(answers)
    }

    /// Commits: the writes kept for later and COMMIT leave together. A failed write makes the
    /// server roll back at COMMIT, so the first failure is the outcome. A transaction in
    /// which a statement failed (its error seen by the closure or not) never commits.
    pub(crate) fn commit(mut self) -> std::result::Result<(), Failed> {
        if self.begin.is_some() && self.later.is_empty() {
            // Nothing ran: nothing to commit.
            self.begin = None;
            return Ok(());
        }
        self.run(&[Step::Simple("COMMIT")])?;
        // Ended. (Failed, it is rolled back when dropped: a ROLLBACK after an answered
        // COMMIT is only a warning, and one after a COMMIT never sent ends the transaction.)
        self.begun = false;
        Ok(())
    }

    /// Rolls back (the writes kept for later are never sent).
    pub(crate) fn rollback(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.later.clear();
        self.begin = None;
        if std::mem::take(&mut self.begun) {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// How many writes a transaction keeps for later at most; the next is sent with them.
const LATER_MAX: usize = 64;

/// A parameter already encoded for its statement (a write sent later keeps no borrow).
#[derive(Debug)]
pub(super) struct Encoded(Option<Vec<u8>>);

impl Encoded {
    /// `p` encoded as parameter `i` (from 0) of type `ty`.
    fn of(p: &(dyn ToSql + Sync), ty: &Type, i: usize) -> Result<Encoded> {
        let mut buf = BytesMut::new();
        match p.to_sql_checked(ty, &mut buf) {
            Ok(IsNull::Yes) => Ok(Encoded(None)),
            Ok(IsNull::No) => Ok(Encoded(Some(buf.to_vec()))),
            Err(e) => Err(Error::storage(format!(
                "PostgreSQL parameter ${}: {e}",
                i + 1
            ))),
        }
    }
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    /// Checked when it was encoded, for this statement's type.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A failed pipeline.
pub(crate) enum Failed {
    /// A statement failed: its error, and whether the pipeline's last step (COMMIT, at
    /// commit) certainly did not run to its end: it was never sent, or the server answered a
    /// step before it with an error (the transaction aborted, or the session ended).
    Statement {
        error: tokio_postgres::Error,
        last_not_run: bool,
    },
    /// A statement failed earlier in the transaction (whether or not the closure saw its
    /// error): the server aborted it, and nothing more was sent.
    Aborted,
    /// A statement was left unanswered without an error before it (not expected).
    Unanswered,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// A transaction in progress, with the connection's prepared statements.
pub(crate) struct PgTx<'c> {
    session: RefCell<Session<'c>>,
    statements: RefCell<&'c mut HashMap<SqlKey, Statement>>,
    /// Set when a statement failed in a way that running the transaction again may cure.
    retry: Cell<bool>,
    /// Set when a single-statement read asked for a second statement.
    wants_tx: Cell<bool>,
    /// Organization rows as this transaction read them (`keep_org`): locked by a usage
    /// transaction (`lock_orgs`), which read committed then cannot see change but by its own
    /// writes, or read along with another row in a transaction on one snapshot. Dropped by
    /// any write of the row.
    known: RefCell<HashMap<String, OrgRecord>>,
    /// Organizations' counters as this transaction last read them with their rows; dropped
    /// by any change of them (`forget_stats`).
    stats: RefCell<HashMap<String, OrgStats>>,
    /// Whether every statement reads one snapshot (serializable, repeatable read, or a
    /// single statement): not a usage transaction's read committed, where only a locked row
    /// cannot change under it.
    one_snapshot: bool,
    /// The usage read sent with the lock (`lock_orgs`), or guessed (`lock_guessed`): what it
    /// asked, and its answer; taken by the first `usage_states` that asks exactly that,
    /// dropped by any write.
    prefetched: RefCell<Option<Prefetched<'c>>>,
    /// Set by `lock_guessed`: reads other than the guessed ones are refused (`missed`).
    guessing: Cell<bool>,
    /// Set when a run on a guess asked for a read beyond it.
    missed: Cell<bool>,
    /// The guess's check, until it leaves with the usage write (or alone, before COMMIT).
    check: RefCell<Option<GuessCheck>>,
}

/// A statement's SQL as the key of a connection's prepared statements: its address and
/// length, not its text. Hashing and comparing the text (up to a few kilobytes) on every
/// statement ran would cost more than the rest of the lookup; the same address and length
/// are the same text, and the same text at two addresses is only prepared twice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SqlKey(&'static str);

impl PartialEq for SqlKey {
    fn eq(&self, other: &SqlKey) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for SqlKey {}

impl std::hash::Hash for SqlKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.as_ptr() as usize);
        state.write_usize(self.0.len());
    }
}

/// What [`PgTx::lock_guessed`] guessed of its organizations' usage state, as
/// [`USAGE_WRITE_CHECKED`]'s `$12`-`$27` compare it: one row per period, key, resource and
/// organization, each naming its organization; empty by default, filled by
/// [`add`](Self::add).
#[derive(Default)]
struct GuessCheck {
    /// Each period's organization, first day, stored total (0: no row) and what leases and
    /// reservations held (NULL: not guessed) for reservations outliving `p_at`.
    p_orgs: Vec<String>,
    starts: Vec<NaiveDate>,
    totals: Vec<i64>,
    held: Vec<Option<i64>>,
    p_at: Vec<DateTime<Utc>>,
    /// Keys guessed not stored, and their organizations.
    k_orgs: Vec<String>,
    keys: Vec<String>,
    /// Resources guessed live, with their usage columns, and their organizations.
    r_orgs: Vec<String>,
    ids: Vec<String>,
    columns: Vec<i32>,
    /// Each organization's row as its quota derives from it: plan, monthly request limit,
    /// quota period and billing anchor, alert thresholds (an array literal; NULL: none).
    orgs: Vec<String>,
    plans: Vec<String>,
    limits: Vec<Option<i64>>,
    periods: Vec<&'static str>,
    anchors: Vec<Option<NaiveDate>>,
    alerts: Vec<Option<String>>,
}

impl GuessCheck {
    /// Adds `org`'s `guess` of what `ask` reads, if it is of the kind checked: leases asked,
    /// no key stored, every resource live, the ask's periods and resources. `false` (nothing
    /// added) when not.
    fn add(&mut self, org: &str, ask: &UsageAsk<'_>, guess: &UsageGuess) -> Result<bool> {
        let state = &guess.state;
        let guessable = ask.leases
            && ask.except_holder.is_none()
            && state.keys.is_empty()
            && state.columns.iter().all(|(_, c)| c.is_some())
            && state.columns.len() == ask.resources.len()
            && state
                .columns
                .iter()
                .zip(ask.resources)
                .all(|((id, _), r)| id == r)
            && state.periods.len() == ask.periods.len()
            && state
                .periods
                .iter()
                .zip(ask.periods)
                .all(|(p, s)| p.0 == *s);
        if !guessable {
            return Ok(false);
        }
        let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let now = DateTime::<Utc>::from_timestamp_micros(ask.now_micros)
            .ok_or_else(|| Error::invalid("now", "Out of range"))?;
        for &(start, total, held) in &state.periods {
            self.p_orgs.push(org.to_owned());
            self.starts.push(date_of(start)?);
            self.totals.push(big(total));
            self.held.push(guess.holds.then(|| big(held)));
            self.p_at.push(now);
        }
        for &key in ask.keys {
            self.k_orgs.push(org.to_owned());
            self.keys.push(key.to_owned());
        }
        for (id, column) in &state.columns {
            self.r_orgs.push(org.to_owned());
            self.ids.push(id.clone());
            self.columns
                .push(column.map_or(-1, |c| i32::try_from(c).unwrap_or(-1)));
        }
        let rec = &guess.org;
        let (period, anchor) = period_columns(rec.period);
        self.orgs.push(org.to_owned());
        self.plans.push(rec.org.plan.clone());
        self.limits.push(limit_value(
            rec.overrides.monthly_requests,
            "monthly_requests",
        )?);
        self.periods.push(period);
        self.anchors.push(anchor);
        self.alerts
            .push(alerts_column(rec.alerts.as_deref()).map(|v| int_array_literal(&v)));
        Ok(true)
    }

    /// The parameters of the resources' and the organization row's checks of a check of one
    /// organization: the last ones of [`USAGE_WRITE_ONE_CHECKED`].
    fn resources_and_row(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.ids,
            &self.columns,
            &self.plans[0],
            &self.limits[0],
            &self.periods[0],
            &self.anchors[0],
            &self.alerts[0],
        ]
    }
}

/// A usage read sent ahead, or guessed: what it asked, and its answer.
struct Prefetched<'c> {
    asks: &'c [(&'c str, UsageAsk<'c>)],
    states: Vec<UsageState>,
}

/// What became of a [`PgTx`] (`PgTx::finish`).
pub(crate) struct Finished<'c> {
    /// The transaction (`None` for a single-statement read).
    pub(crate) tx: Option<Open<'c>>,
    /// Whether a failure seen in it is worth another attempt.
    pub(crate) retry: bool,
    /// Whether it needs a transaction (a single-statement read that asked for a second
    /// statement).
    pub(crate) wants_tx: bool,
    /// Whether it ran on a guess (`lock_guessed`).
    pub(crate) guessed: bool,
    /// Whether the run on a guess read beyond it: it must not commit.
    pub(crate) missed: bool,
}

impl<'c> PgTx<'c> {
    /// A transaction; `one_snapshot` unless it runs at read committed.
    pub(crate) fn new(
        tx: Open<'c>,
        statements: &'c mut HashMap<SqlKey, Statement>,
        one_snapshot: bool,
    ) -> PgTx<'c> {
        PgTx::on(Session::Tx(tx), statements, one_snapshot)
    }

    /// A read that may run one statement, outside any transaction.
    pub(crate) fn single(
        client: &'c mut Client,
        statements: &'c mut HashMap<SqlKey, Statement>,
    ) -> PgTx<'c> {
        PgTx::on(Session::Single { client, ran: false }, statements, true)
    }

    fn on(
        session: Session<'c>,
        statements: &'c mut HashMap<SqlKey, Statement>,
        one_snapshot: bool,
    ) -> PgTx<'c> {
        PgTx {
            one_snapshot,
            session: RefCell::new(session),
            statements: RefCell::new(statements),
            retry: Cell::new(false),
            wants_tx: Cell::new(false),
            known: RefCell::new(HashMap::new()),
            stats: RefCell::new(HashMap::new()),
            prefetched: RefCell::new(None),
            guessing: Cell::new(false),
            missed: Cell::new(false),
            check: RefCell::new(None),
        }
    }

    /// Locks the organizations' rows (sorted, so that two transactions never wait on each
    /// other) and keeps them: the transaction's reads of them cost nothing more.
    ///
    /// With `prefetch`, the usage read it names leaves with the lock (and BEGIN), in one round
    /// trip. At read committed each statement reads what was committed when it starts, and
    /// the read starts only once the lock is granted, so it sees every usage transaction of
    /// these organizations committed before: the same as reading after the lock returned.
    pub(crate) fn lock_orgs(
        &self,
        orgs: &[&str],
        prefetch: &'c [(&'c str, UsageAsk<'c>)],
    ) -> Result<()> {
        let ids = lock_order(orgs);
        const LOCK: &str = sql!(ORG_SELECT, " WHERE id = ANY($1) ORDER BY id FOR UPDATE");
        let rows = if prefetch.is_empty() {
            self.rows(LOCK, &[&ids])?
        } else {
            let (read, owned) = usage_read(prefetch)?;
            let mut answers = self
                .rows_together(&[(LOCK, &[&ids]), (read, &params_of(&owned))])?
                .into_iter();
            let (Some(rows), Some(read_rows)) = (answers.next(), answers.next()) else {
                return Err(Error::storage("PostgreSQL left a statement unanswered"));
            };
            *self.prefetched.borrow_mut() = Some(Prefetched {
                asks: prefetch,
                states: states_of(&read_rows, prefetch)?,
            });
            rows
        };
        for r in &rows {
            self.keep_org(org_of(r)?, stats_of(r, ORG_STATS_AT)?);
        }
        Ok(())
    }

    /// As [`lock_orgs`](Self::lock_orgs) for organizations and their prefetched asks, one
    /// each, whose answers and the organizations' records are guessed (ARCHITECTURE.md,
    /// "Guessed usage transactions"): the transaction's reads of them are answered from
    /// `guesses` (one per ask, in order), and nothing is read now. The lock leaves with the
    /// writes and COMMIT in one round trip, BEGIN with them, and the usage write carries a
    /// check ([`USAGE_WRITE_CHECKED`]) that fails the transaction (division by zero) unless
    /// what each quota derives from in the records and the rows the asks read are the
    /// guessed ones; with nothing to write, the check goes alone before COMMIT
    /// ([`before_commit`](Self::before_commit)). It runs once the lock is granted, so it reads
    /// what the read sent with the lock would. Any other read is refused (`missed`), nothing
    /// sent: the transaction then runs again without the guesses. `false` (nothing done)
    /// without guesses, or when one is not of the kind checked ([`GuessCheck::add`]).
    ///
    /// BEGIN leaves with the writes here: a BEGIN refused on a healthy idle session (which
    /// does not happen: a session in an aborted transaction refuses the statements after it
    /// too) would let the lock go untaken; the usage write is one statement, so even then it
    /// could not be applied in part.
    pub(crate) fn lock_guessed(
        &self,
        orgs: &[&str],
        prefetch: &'c [(&'c str, UsageAsk<'c>)],
        guesses: &[UsageGuess],
    ) -> Result<bool> {
        // One guess per ask, and one ask per organization locked, in the same order.
        if guesses.is_empty()
            || guesses.len() != prefetch.len()
            || orgs.len() != prefetch.len()
            || !orgs
                .iter()
                .zip(prefetch)
                .all(|(org, (asked, _))| org == asked)
        {
            return Ok(false);
        }
        let mut check = GuessCheck::default();
        for ((org, ask), guess) in prefetch.iter().zip(guesses) {
            if !check.add(org, ask, guess)? {
                return Ok(false);
            }
        }
        if let [org] = orgs {
            self.exec(LOCK_ONE, &[org])?;
        } else {
            self.exec(LOCK_MANY, &[&lock_order(orgs)])?;
        }
        if let Session::Tx(open) = &mut *self.session.borrow_mut() {
            open.begin_with_writes = true;
        }
        let mut known = self.known.borrow_mut();
        for (org, guess) in orgs.iter().zip(guesses) {
            known.insert((*org).to_owned(), guess.org.clone());
        }
        drop(known);
        *self.prefetched.borrow_mut() = Some(Prefetched {
            asks: prefetch,
            states: guesses.iter().map(|g| g.state.clone()).collect(),
        });
        *self.check.borrow_mut() = Some(check);
        self.guessing.set(true);
        Ok(true)
    }

    /// [`USAGE_WRITE_ONE_CHECKED`] when `writes` and the guess's check are of its kind (one
    /// organization, one period, one day row, at most one key; the check of one organization,
    /// one period and at most one key); whether it was sent.
    fn write_one_checked(&self, writes: &[UsageWrite<'_>]) -> Result<bool> {
        // Taken, as the general write takes it: it leaves with this statement.
        let Some(check) = self.check.borrow_mut().take() else {
            return Ok(false);
        };
        let one = match (writes, &check.orgs[..]) {
            ([w], [org]) if w.org == org && check.starts.len() == 1 && check.keys.len() <= 1 => {
                match (w.periods, w.days, w.keys) {
                    ([(span, total)], [(day, row)], [] | [_]) => Some((w, span, total, day, row)),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((w, span, total, day, row)) = one else {
            *self.check.borrow_mut() = Some(check);
            return Ok(false);
        };
        let (names, times) = key_columns(w.keys)?;
        let params: [&(dyn ToSql + Sync); 14] = [
            &check.orgs[0],
            &date_of(span.start)?,
            &date_of(span.end)?,
            &signed(*total, "total")?,
            &date_of(*day)?,
            &signed(row.total, "total")?,
            &columns_literal(row),
            &names.first(),
            &times.first(),
            &check.starts[0],
            &check.totals[0],
            &check.held[0],
            &check.p_at[0],
            &check.keys.first(),
        ];
        let mut all = params.to_vec();
        all.extend_from_slice(&check.resources_and_row());
        self.exec(USAGE_WRITE_ONE_CHECKED, &all)?;
        Ok(true)
    }

    /// The usage write `params` (of [`USAGE_WRITE`]) with the guess's `check`, in one
    /// statement.
    fn exec_checked(&self, params: &[&(dyn ToSql + Sync); 11], check: &GuessCheck) -> Result<()> {
        let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        all.extend_from_slice(&[
            &check.p_orgs,
            &check.starts,
            &check.totals,
            &check.held,
            &check.p_at,
            &check.k_orgs,
            &check.keys,
            &check.r_orgs,
            &check.ids,
            &check.columns,
            &check.orgs,
            &check.plans,
            &check.limits,
            &check.periods,
            &check.anchors,
            &check.alerts,
        ]);
        self.exec(USAGE_WRITE_CHECKED, &all)
    }

    /// Sends what must precede COMMIT: the guess's check, if no usage write took it (the
    /// calls were all refused, or duplicates).
    pub(crate) fn before_commit(&self) -> Result<()> {
        let Some(check) = self.check.borrow_mut().take() else {
            return Ok(());
        };
        let none: Vec<&str> = Vec::new();
        let (no_dates, no_numbers): (Vec<NaiveDate>, Vec<i64>) = (Vec::new(), Vec::new());
        let no_times: Vec<DateTime<Utc>> = Vec::new();
        self.exec_checked(
            &[
                &none,
                &no_dates,
                &no_dates,
                &no_numbers,
                &none,
                &no_dates,
                &no_numbers,
                &none,
                &none,
                &none,
                &no_times,
            ],
            &check,
        )
    }

    /// What became of the transaction.
    pub(crate) fn finish(self) -> Finished<'c> {
        let tx = match self.session.into_inner() {
            Session::Tx(tx) => Some(tx),
            Session::Single { .. } => None,
        };
        Finished {
            tx,
            retry: self.retry.get(),
            wants_tx: self.wants_tx.get(),
            guessed: self.guessing.get(),
            missed: self.missed.get(),
        }
    }

    /// The session, for one statement that runs now: a single-statement read refuses its
    /// second, and a run on a guess any.
    fn session(&self) -> Result<std::cell::RefMut<'_, Session<'c>>> {
        if self.guessing.get() {
            self.missed.set(true);
            return Err(Error::storage(
                "a usage transaction on a guess read beyond it",
            ));
        }
        let mut session = self.session.borrow_mut();
        if let Session::Single { ran, .. } = &mut *session {
            if *ran {
                self.wants_tx.set(true);
                return Err(Error::storage(
                    "a single-statement read ran a second statement",
                ));
            }
            *ran = true;
        }
        Ok(session)
    }

    fn failed(&self, f: Failed) -> Error {
        match f {
            Failed::Statement { error, .. } => self.fail(error),
            Failed::Unanswered => Error::storage("PostgreSQL left a statement unanswered"),
            Failed::Aborted => Error::storage("PostgreSQL: a statement before this one failed"),
        }
    }

    fn fail(&self, e: tokio_postgres::Error) -> Error {
        // A serialization failure, or a connection that broke before COMMIT (the server rolls
        // the transaction back): either way nothing was applied, and another attempt may pass.
        if is_retryable(&e) || is_connection_loss(&e) {
            self.retry.set(true);
        }
        pg_error(&e)
    }

    fn statement(&self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(&SqlKey(sql)) {
            return Ok(s.clone());
        }
        let prepared = match &mut *self.session.borrow_mut() {
            Session::Tx(open) => open.client.prepare(sql),
            Session::Single { client, .. } => client.prepare(sql),
        }
        .map_err(|e| self.fail(e))?;
        self.statements
            .borrow_mut()
            .insert(SqlKey(sql), prepared.clone());
        Ok(prepared)
    }

    fn rows(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        match self.run(Step::Query(&st, params))? {
            Answer::Rows(rows) => Ok(rows),
            _ => Err(Error::storage("PostgreSQL answered a query without rows")),
        }
    }

    /// Runs one statement now (in a transaction, with BEGIN and the writes kept for later
    /// ahead of it, in one round trip).
    fn run(&self, step: Step<'_>) -> Result<Answer> {
        let mut session = self.session()?;
        let answer = match &mut *session {
            Session::Tx(open) => open.run(&[step]).map(|mut answers| answers.pop()),
            Session::Single { client, .. } => {
                client
                    .step(step)
                    .map(Some)
                    .map_err(|error| Failed::Statement {
                        error,
                        last_not_run: false,
                    })
            }
        };
        answer
            .map_err(|f| self.failed(f))?
            .ok_or_else(|| Error::storage("PostgreSQL left a statement unanswered"))
    }

    /// Runs the statements now, together (in a transaction, after BEGIN and the writes kept
    /// for later): one round trip. Their rows, in order.
    pub(super) fn rows_together(
        &self,
        statements: &[(&'static str, Params<'_>)],
    ) -> Result<Vec<Vec<Row>>> {
        let prepared = statements
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<Statement>>>()?;
        let steps: Vec<Step<'_>> = prepared
            .iter()
            .zip(statements)
            .map(|(st, (_, params))| Step::Query(st, params))
            .collect();
        let mut session = self.session()?;
        let Session::Tx(open) = &mut *session else {
            return Err(Error::storage("statements together need a transaction"));
        };
        open.run(&steps)
            .map_err(|f| self.failed(f))?
            .into_iter()
            .map(|answer| match answer {
                Answer::Rows(rows) => Ok(rows),
                _ => Err(Error::storage("PostgreSQL answered a query without rows")),
            })
            .collect()
    }

    fn row(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        let mut rows = self.rows(sql, params)?;
        if rows.len() > 1 {
            return Err(Error::corrupted(format!(
                "PostgreSQL returned {} rows where one was expected",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// Runs a write now and returns its count of rows.
    fn exec_counted(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        self.prefetched.borrow_mut().take();
        let st = self.statement(sql)?;
        match self.run(Step::Execute(&st, params))? {
            Answer::Count(n) => Ok(n),
            _ => Err(Error::storage(
                "PostgreSQL answered a write without a count",
            )),
        }
    }

    /// A write whose answer nothing waits for: in a transaction it is sent with the next
    /// statement that is waited for, or with COMMIT (its parameters encoded now, so an
    /// encoding error is reported here). Its failure fails the transaction there, and nothing
    /// of it is applied: the server runs the transaction's statements in order, and one that
    /// fails aborts it.
    fn exec(&self, sql: &'static str, params: Params<'_>) -> Result<()> {
        // A usage read sent ahead answers only reads made before any write.
        self.prefetched.borrow_mut().take();
        let st = self.statement(sql)?;
        let mut session = self.session.borrow_mut();
        let Session::Tx(open) = &mut *session else {
            drop(session);
            return self.exec_counted(sql, params).map(drop);
        };
        if params.len() != st.params().len() {
            return Err(Error::storage(format!(
                "PostgreSQL statement takes {} parameters, {} given",
                st.params().len(),
                params.len()
            )));
        }
        let encoded = params
            .iter()
            .zip(st.params())
            .enumerate()
            .map(|(i, (p, ty))| Encoded::of(*p, ty, i))
            .collect::<Result<Vec<Encoded>>>()?;
        open.later.push((st, encoded));
        if open.later.len() >= LATER_MAX {
            // Sent (with nothing to wait for but their answers): a long import keeps its
            // pipeline bounded.
            open.run(&[]).map_err(|f| self.failed(f))?;
        }
        Ok(())
    }

    fn strings(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<String>> {
        self.rows(sql, params)?
            .iter()
            .map(|r| get::<String>(r, 0))
            .collect()
    }

    fn string(&self, sql: &'static str, params: Params<'_>) -> Result<Option<String>> {
        self.row(sql, params)?
            .map(|r| get::<String>(&r, 0))
            .transpose()
    }

    fn count(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        match self.row(sql, params)? {
            Some(r) => unsigned(get::<i64>(&r, 0)?),
            None => Ok(0),
        }
    }

    /// Rows per table, for `stats`.
    pub(crate) fn table_lens(&self) -> Result<Vec<(&'static str, u64)>> {
        self.whole_tables()?;
        let mut out = Vec::new();
        for (name, sql) in COUNTS {
            out.push((*name, self.count(sql, &[])?));
        }
        Ok(out)
    }

    /// Moves one row of a system list from search terms `old` to `new` (either may be
    /// empty): a statement for the terms that go and one for those that come, each only when
    /// there are some (CockroachDB refuses one statement that deletes from and inserts into
    /// the same table).
    fn directory_terms(
        &self,
        which: Directory,
        id: &str,
        old: &[String],
        new: &[String],
    ) -> Result<()> {
        let gone: Vec<&String> = old.iter().filter(|t| !new.contains(t)).collect();
        let come: Vec<&String> = new.iter().filter(|t| !old.contains(t)).collect();
        let (delete, insert) = match which {
            Directory::Orgs => (
                "DELETE FROM org_terms WHERE organization_id = $1 AND term = ANY($2)",
                "INSERT INTO org_terms (term, organization_id)
                 SELECT unnest($2::TEXT[]), $1 ON CONFLICT DO NOTHING",
            ),
            Directory::Users => (
                "DELETE FROM user_terms WHERE user_id = $1 AND term = ANY($2)",
                "INSERT INTO user_terms (term, user_id)
                 SELECT unnest($2::TEXT[]), $1 ON CONFLICT DO NOTHING",
            ),
        };
        if !gone.is_empty() {
            self.exec(delete, &[&id, &gone])?;
        }
        if !come.is_empty() {
            self.exec(insert, &[&id, &come])?;
        }
        Ok(())
    }

    /// One organization's counters by role, kept on its row.
    fn adjust_role_count(&self, org: &str, role: Role, delta: i64) -> Result<()> {
        self.forget_stats(org);
        self.exec(
            concat!(role_count_update!(), " WHERE id = $1"),
            &[&org, &role.as_str(), &delta],
        )?;
        Ok(())
    }

    /// This transaction reads whole tables (check, export, stats): the scans every other
    /// statement is kept from (`Manager::connect`) are the right plan here.
    fn whole_tables(&self) -> Result<()> {
        self.exec("SET LOCAL enable_seqscan = on", &[])?;
        Ok(())
    }

    /// Writes an organization's row with `sql` (an INSERT or UPDATE whose parameters $1..$21
    /// are the row's columns in one order).
    fn write_org(&self, sql: &'static str, rec: &OrgRecord) -> Result<()> {
        let (o, l) = (&rec.org, &rec.overrides);
        self.forget_org(&o.id);
        let (settings, metadata) = (map_json(&o.settings.extra), map_json(&o.metadata));
        let (period, anchor) = period_columns(rec.period);
        let alerts = alerts_column(rec.alerts.as_deref());
        let limits = [
            limit_value(l.mcps, "mcps")?,
            limit_value(l.api_keys, "api_keys")?,
            limit_value(l.team_members, "team_members")?,
            limit_value(l.monthly_requests, "monthly_requests")?,
        ];
        self.exec(
            sql,
            &[
                &o.id,
                &o.name,
                &o.slug,
                &o.external_id,
                &o.description,
                &o.plan,
                &o.city,
                &o.state,
                &o.zipcode,
                &o.country,
                &o.settings.pin_protection,
                &settings,
                &metadata,
                &o.created_at,
                &o.updated_at,
                &limits[0],
                &limits[1],
                &limits[2],
                &limits[3],
                &o.address_line1,
                &o.address_line2,
                &period,
                &anchor,
                &alerts,
            ],
        )?;
        Ok(())
    }

    /// Keeps an organization's row and counters as this transaction read them, for its next
    /// reads of them.
    fn keep_org(&self, rec: OrgRecord, stats: OrgStats) {
        self.stats.borrow_mut().insert(rec.org.id.clone(), stats);
        self.known.borrow_mut().insert(rec.org.id.clone(), rec);
    }

    /// Drops what the transaction keeps of an organization's row (its row is written).
    fn forget_org(&self, org: &str) {
        self.known.borrow_mut().remove(org);
        self.forget_stats(org);
    }

    /// An organization's counters as last read, while this transaction has not changed them.
    fn forget_stats(&self, org: &str) {
        self.stats.borrow_mut().remove(org);
    }

    fn adjust_resource_count(&self, org: &str, kind: ResourceKind, delta: i64) -> Result<()> {
        self.forget_stats(org);
        self.exec(
            "UPDATE organizations SET
                count_mcp = GREATEST(count_mcp + CASE WHEN $2 = 'mcp' THEN $3::BIGINT ELSE 0 END, 0),
                count_api_key =
                    GREATEST(count_api_key + CASE WHEN $2 = 'api_key' THEN $3::BIGINT ELSE 0 END, 0)
             WHERE id = $1",
            &[&org, &kind.as_str(), &delta],
        )?;
        Ok(())
    }
}

const COUNTS: &[(&str, &str)] = &[
    ("users", "SELECT count(*) FROM users"),
    ("organizations", "SELECT count(*) FROM organizations"),
    ("memberships", "SELECT count(*) FROM memberships"),
    ("member_terms", "SELECT count(*) FROM member_terms"),
    ("org_terms", "SELECT count(*) FROM org_terms"),
    ("user_terms", "SELECT count(*) FROM user_terms"),
    ("invitations", "SELECT count(*) FROM invitations"),
    ("projects", "SELECT count(*) FROM projects"),
    ("project_members", "SELECT count(*) FROM project_members"),
    ("resources", "SELECT count(*) FROM resources"),
    ("usage_periods", "SELECT count(*) FROM usage_periods"),
    ("usage_days", "SELECT count(*) FROM usage_days"),
    ("idempotency_keys", "SELECT count(*) FROM idempotency_keys"),
    (
        "entitlement_overrides",
        "SELECT count(*) FROM entitlement_overrides",
    ),
    (
        "usage_alert_state",
        "SELECT count(*) FROM usage_alert_state",
    ),
    (
        "usage_reservations",
        "SELECT count(*) FROM usage_reservations",
    ),
    ("audit_events", "SELECT count(*) FROM audit_events"),
    (
        "user_audit_events",
        "SELECT count(*) FROM user_audit_events",
    ),
];

/// The columns and joins of a member page: the page is cut from an index alone
/// (`memberships_by_join` / `memberships_by_role`, which order the active members before the
/// deactivated ones: positions only, the skipped rows are never read from the table), then
/// joined to its memberships and users. `$1` the organization, `$2` / `$3` the lowest and
/// highest value of `deactivated`; `$cut` the rest of the index's condition, its order and
/// its window. [`member_row_at`] reads a row.
macro_rules! member_page_from {
    ($cut:literal) => {
        concat!(
            membership_columns!("m."),
            ", ",
            user_columns!("u."),
            ",
                p.off AS page_off, p.joined_at AS page_at, p.user_id AS page_user
             FROM (SELECT deactivated AS off, joined_at, user_id
                   FROM memberships
                   WHERE organization_id = $1 AND deactivated >= $2
                     AND deactivated <= $3",
            $cut,
            ") p
             JOIN memberships m ON m.organization_id = $1 AND m.user_id = p.user_id
             JOIN users u ON u.id = p.user_id"
        )
    };
}

/// A member page ([`Reads::member_rows`]) in one statement.
macro_rules! member_page {
    ($cut:literal) => {
        concat!(
            "SELECT ",
            member_page_from!($cut),
            " ORDER BY p.off, p.joined_at, p.user_id"
        )
    };
}

/// The organization (`$1`) with the acting role of user `$user` and, joined to it, a member
/// page ([`Reads::org_with_members`]): the page's columns start at `ORG_STATS_AT + 8`.
macro_rules! with_org {
    ($user:literal, $cut:literal) => {
        concat!(
            "SELECT o.*, pg.*
             FROM (SELECT ",
            org_columns!(),
            ",
                (SELECT role FROM memberships a WHERE a.organization_id = $1
                    AND a.user_id = ",
            $user,
            " AND NOT a.deactivated)
                FROM organizations WHERE id = $1) o
             LEFT JOIN LATERAL (SELECT ",
            member_page_from!($cut),
            ") pg ON true
             ORDER BY pg.page_off, pg.page_at, pg.page_user"
        )
    };
}

/// The four statements of a member page, by [`PgTx::page_rows`]: without a cursor or after
/// one, of every role or of one (`$4`), each made by `$wrap` (`member_page`, or `with_org`
/// with the number of its user parameter, the last one).
macro_rules! member_pages {
    ($wrap:ident $(, $user:literal, $user_after:literal)?) => {
        [
            $wrap!($($user,)? " AND $4 = '' ORDER BY deactivated, joined_at, user_id
                 OFFSET $5 LIMIT $6"),
            $wrap!($($user,)? " AND role = $4 ORDER BY deactivated, joined_at, user_id
                 OFFSET $5 LIMIT $6"),
            $wrap!($($user_after,)? " AND $4 = ''
                 AND (deactivated, joined_at, user_id) > ($5, $6, $7)
                 ORDER BY deactivated, joined_at, user_id
                 OFFSET $8 LIMIT $9"),
            $wrap!($($user_after,)? " AND role = $4
                 AND (deactivated, joined_at, user_id) > ($5, $6, $7)
                 ORDER BY deactivated, joined_at, user_id
                 OFFSET $8 LIMIT $9"),
        ]
    };
}

/// [`Reads::member_rows`]' statements.
const MEMBER_PAGES: [&str; 4] = member_pages!(member_page);

/// [`Reads::org_with_members`]' statements.
const ORG_WITH_MEMBER_PAGES: [&str; 4] = member_pages!(with_org, "$7", "$10");

impl PgTx<'_> {
    /// The rows of one of [`member_pages`]' statements for `page` (`sqls`: which four),
    /// with `user` as the last parameter when given.
    fn page_rows(
        &self,
        sqls: &[&'static str; 4],
        org: &str,
        page: &MemberPage<'_>,
        user: Option<&Option<&str>>,
    ) -> Result<Vec<Row>> {
        let skip = signed(page.skip, "page")?;
        let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
        // The part(s) of the list: (lowest, highest) value of "deactivated".
        let (low, high) = (!page.set.includes(false), page.set.includes(true));
        let role = page.role.map(Role::as_str).unwrap_or_default();
        type Param<'p> = &'p (dyn ToSql + Sync);
        let mut params: Vec<Param<'_>> = vec![&org, &low, &high, &role];
        if let Some((off, at, after)) = page.after {
            params.extend::<[Param<'_>; 3]>([off, at, after]);
        }
        params.extend::<[Param<'_>; 2]>([&skip, &limit]);
        if let Some(user) = user {
            params.push(user);
        }
        let variant = 2 * usize::from(page.after.is_some()) + usize::from(!role.is_empty());
        self.rows(sqls[variant], &params)
    }
}

impl Reads for PgTx<'_> {
    fn run_again(&self, why: &str) -> Error {
        self.retry.set(true);
        Error::storage(why)
    }

    fn meta_u64(&self, name: &str) -> Result<Option<u64>> {
        self.row("SELECT value FROM orgdb_meta WHERE name = $1", &[&name])?
            .map(|r| unsigned(get(&r, 0)?))
            .transpose()
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.row(
            sql!("SELECT ", sql!(USER_COLUMNS, " FROM users WHERE id = $1")),
            &[&id],
        )?
        .map(|r| user_of(&r))
        .transpose()
    }

    fn user_id_by_email(&self, email: &str) -> Result<Option<String>> {
        self.string("SELECT id FROM users WHERE email = $1", &[&email])
    }

    fn org(&self, id: &str) -> Result<Option<OrgRecord>> {
        if let Some(rec) = self.known.borrow().get(id) {
            return Ok(Some(rec.clone()));
        }
        let Some(r) = self.row(sql!(ORG_SELECT, " WHERE id = $1"), &[&id])? else {
            return Ok(None);
        };
        self.stats
            .borrow_mut()
            .insert(id.to_owned(), stats_of(&r, ORG_STATS_AT)?);
        org_of(&r).map(Some)
    }

    fn org_id_by_slug(&self, slug: &str) -> Result<Option<String>> {
        self.string("SELECT id FROM organizations WHERE slug = $1", &[&slug])
    }

    fn org_id_by_external(&self, external_id: &str) -> Result<Option<String>> {
        self.string(
            "SELECT id FROM organizations WHERE external_id = $1",
            &[&external_id],
        )
    }

    fn org_stats(&self, org: &str) -> Result<OrgStats> {
        if let Some(stats) = self.stats.borrow().get(org) {
            return Ok(*stats);
        }
        match self.row(
            "SELECT count_viewer, count_member, count_admin, count_owner, count_mcp,
                count_api_key, resource_columns FROM organizations WHERE id = $1",
            &[&org],
        )? {
            Some(r) => stats_of(&r, 0),
            None => Ok(OrgStats::default()),
        }
    }

    fn org_with_role(&self, org: &str, user: &str) -> Result<Option<(OrgRecord, Option<Role>)>> {
        if let Some(rec) = self.known.borrow().get(org) {
            let role = self.membership(org, user)?.and_then(|m| m.acting_role());
            return Ok(Some((rec.clone(), role)));
        }
        let Some(r) = self.row(ORG_WITH_ROLE, &[&org, &user])? else {
            return Ok(None);
        };
        self.stats
            .borrow_mut()
            .insert(org.to_owned(), stats_of(&r, ORG_STATS_AT)?);
        let role = get::<Option<String>>(&r, ORG_STATS_AT + 7)?
            .map(|role| role_of(&role))
            .transpose()?;
        Ok(Some((org_of(&r)?, role)))
    }

    fn org_overview(
        &self,
        org: &str,
        user: Option<&str>,
        now: DateTime<Utc>,
        day: Option<u32>,
    ) -> Result<Option<OrgOverview>> {
        let day = day.map(date_of).transpose()?;
        let Some(r) = self.row(ORG_OVERVIEW, &[&org, &user, &now, &day])? else {
            return Ok(None);
        };
        let at = ORG_STATS_AT + 7;
        Ok(Some(OrgOverview {
            rec: org_of(&r)?,
            stats: stats_of(&r, ORG_STATS_AT)?,
            role: get::<Option<String>>(&r, at)?
                .map(|role| role_of(&role))
                .transpose()?,
            pending: unsigned(get(&r, at + 1)?)?,
            period_total: get::<Option<i64>>(&r, at + 2)?
                .map(unsigned)
                .transpose()?
                .unwrap_or(0),
        }))
    }

    fn membership(&self, org: &str, user: &str) -> Result<Option<Membership>> {
        self.row(
            sql!(
                MEMBERSHIP_SELECT,
                " WHERE organization_id = $1 AND user_id = $2"
            ),
            &[&org, &user],
        )?
        .map(|r| membership_of(&r))
        .transpose()
    }

    fn membership_by_id(&self, membership_id: &str) -> Result<Option<Membership>> {
        self.row(sql!(MEMBERSHIP_SELECT, " WHERE id = $1"), &[&membership_id])?
            .map(|r| membership_of(&r))
            .transpose()
    }

    /// One statement: the page of memberships joined to their users. The page is cut from an
    /// index alone (`memberships_by_join` / `memberships_by_role`, which order the active
    /// members before the deactivated ones: positions only, the skipped rows are never read
    /// from the table), then joined to its memberships and users.
    fn member_rows(&self, org: &str, page: &MemberPage<'_>) -> Result<Vec<(Membership, User)>> {
        let rows = self.page_rows(&MEMBER_PAGES, org, page, None)?;
        rows.iter().map(|r| member_row_at(r, 0)).collect()
    }

    /// One statement: the organization's row (`$1`) with the role of user `$N` (the last
    /// parameter) and, joined to it, the page `member_rows` reads (none: one row of NULLs).
    fn org_with_members(
        &self,
        org: &str,
        user: Option<&str>,
        page: &MemberPage<'_>,
    ) -> Result<Option<OrgMembers>> {
        if self.known.borrow().contains_key(org) {
            // A known organization is read from its copy (`org_with_role`).
            return crate::store::access::org_with_members_apart(self, org, user, page);
        }
        let rows = self.page_rows(&ORG_WITH_MEMBER_PAGES, org, page, Some(&user))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        self.stats
            .borrow_mut()
            .insert(org.to_owned(), stats_of(first, ORG_STATS_AT)?);
        let acting = get::<Option<String>>(first, ORG_STATS_AT + 7)?
            .map(|role| role_of(&role))
            .transpose()?;
        let page_at = ORG_STATS_AT + 8;
        let mut members = Vec::with_capacity(rows.len());
        for r in &rows {
            // The LEFT JOIN's one row of NULLs when the page is empty.
            if get::<Option<String>>(r, page_at)?.is_none() {
                continue;
            }
            members.push(member_row_at(r, page_at)?);
        }
        Ok(Some((org_of(first)?, acting, members)))
    }

    /// One statement: the hits (memberships whose user has a term in the prefix's range of
    /// `member_terms`), their number, and the page of them joined to their users.
    fn member_search(
        &self,
        org: &str,
        set: MemberSet,
        role: Option<Role>,
        prefix: &str,
        after: Option<&MemberPos>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<(Membership, User)>)> {
        let skip = signed(skip, "page")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (low, high) = (!set.includes(false), set.includes(true));
        let role = role.map(Role::as_str).unwrap_or_default();
        // Every term starting with `prefix` sorts in [prefix, prefix + U+10FFFF).
        let end = format!("{prefix}{}", char::MAX);
        let (off, at, user) = match after {
            Some((off, at, user)) => (Some(*off), Some(*at), Some(user.as_str())),
            None => (None, None, None),
        };
        let rows = self.rows(
            concat!(
                "WITH hits AS (
                    SELECT m.deactivated AS off, m.joined_at, m.user_id
                    FROM (SELECT DISTINCT user_id FROM member_terms
                          WHERE organization_id = $1 AND term >= $2 AND term < $3) t,
                    -- Each hit's membership by its primary key (LIMIT 1 keeps the planner
                    -- from a hash join that reads every membership of the organization).
                    LATERAL (SELECT deactivated, joined_at, user_id, role FROM memberships
                             WHERE organization_id = $1 AND user_id = t.user_id LIMIT 1) m
                    WHERE m.deactivated >= $4 AND m.deactivated <= $5
                      AND ($6 = '' OR m.role = $6)),
                 page AS (
                    SELECT * FROM hits
                    WHERE $7::BOOLEAN IS NULL OR (off, joined_at, user_id) > ($7, $8, $9)
                    ORDER BY off, joined_at, user_id OFFSET $10 LIMIT $11)
                 SELECT (SELECT count(*) FROM hits), ",
                membership_columns!("m."),
                ", ",
                user_columns!("u."),
                "
                 FROM (SELECT 1) one
                 LEFT JOIN (page p
                    JOIN memberships m ON m.organization_id = $1 AND m.user_id = p.user_id
                    JOIN users u ON u.id = p.user_id) ON true
                 ORDER BY p.off, p.joined_at, p.user_id"
            ),
            &[
                &org, &prefix, &end, &low, &high, &role, &off, &at, &user, &skip, &limit,
            ],
        )?;
        let total = match rows.first() {
            Some(r) => unsigned(get(r, 0)?)?,
            None => 0,
        };
        let mut out = Vec::new();
        for r in &rows {
            if get::<Option<String>>(r, 1)?.is_none() {
                continue;
            }
            let m = membership_at(r, 1)?;
            let u = User {
                id: get(r, 8)?,
                email: get(r, 9)?,
                name: get(r, 10)?,
                created_at: get(r, 11)?,
                last_active: get(r, 12)?,
            };
            out.push((m, u));
        }
        Ok((total, out))
    }

    /// One statement: the number of rows (or hits) and the page's ids.
    fn directory(
        &self,
        which: Directory,
        prefix: Option<&str>,
        after: Option<&str>,
        skip: u64,
        limit: usize,
    ) -> Result<(u64, Vec<String>)> {
        // Without a search: the table's primary key in order (a cursor is a range of it)
        // and its count. With one: the ids behind the prefix's range of the terms table.
        macro_rules! plain {
            ($table:literal) => {
                concat!(
                    "SELECT (SELECT count(*) FROM ",
                    $table,
                    "), p.id FROM (SELECT 1) one
                     LEFT JOIN (SELECT id FROM ",
                    $table,
                    " WHERE id > coalesce($3, '') ORDER BY id OFFSET $4 LIMIT $5) p ON true
                     WHERE $1::TEXT IS NULL AND $2::TEXT IS NULL
                     ORDER BY p.id"
                )
            };
        }
        macro_rules! search {
            ($terms:literal, $id:literal) => {
                concat!(
                    "WITH hits AS (SELECT DISTINCT ",
                    $id,
                    " AS id FROM ",
                    $terms,
                    " WHERE term >= $1 AND term < $2),
                     page AS (SELECT id FROM hits WHERE id > coalesce($3, '')
                              ORDER BY id OFFSET $4 LIMIT $5)
                     SELECT (SELECT count(*) FROM hits), p.id
                     FROM (SELECT 1) one LEFT JOIN page p ON true ORDER BY p.id"
                )
            };
        }
        let skip = signed(skip, "page")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let end = prefix.map(|p| format!("{p}{}", char::MAX));
        let sql = match (which, prefix.is_some()) {
            (Directory::Orgs, false) => plain!("organizations"),
            (Directory::Users, false) => plain!("users"),
            (Directory::Orgs, true) => search!("org_terms", "organization_id"),
            (Directory::Users, true) => search!("user_terms", "user_id"),
        };
        let rows = self.rows(sql, &[&prefix, &end, &after, &skip, &limit])?;
        let total = match rows.first() {
            Some(r) => unsigned(get(r, 0)?)?,
            None => 0,
        };
        let mut ids = Vec::new();
        for r in &rows {
            if let Some(id) = get::<Option<String>>(r, 1)? {
                ids.push(id);
            }
        }
        Ok((total, ids))
    }

    fn owned_org_count(&self, user: &str) -> Result<u64> {
        self.count(
            "SELECT count(*) FROM memberships
             WHERE user_id = $1 AND role = 'owner' AND NOT deactivated",
            &[&user],
        )
    }

    fn deactivated_count(&self, org: &str, role: Option<Role>) -> Result<u64> {
        let role = role.map(Role::as_str);
        self.count(
            "SELECT count(*) FROM memberships
             WHERE organization_id = $1 AND deactivated
               AND ($2::TEXT IS NULL OR role = $2)",
            &[&org, &role],
        )
    }

    fn member_user_ids(&self, org: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT user_id FROM memberships WHERE organization_id = $1
             ORDER BY deactivated, joined_at, user_id",
            &[&org],
        )
    }

    fn user_org_ids(&self, user: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT organization_id FROM memberships WHERE user_id = $1
             ORDER BY organization_id",
            &[&user],
        )
    }

    fn invitation(&self, id: &str) -> Result<Option<InvitationRecord>> {
        self.row(sql!(INVITATION_SELECT, " WHERE id = $1"), &[&id])?
            .map(|r| invitation_of(&r))
            .transpose()
    }

    fn invitation_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<InvitationRecord>> {
        self.row(
            sql!(INVITATION_SELECT, " WHERE token_hash = $1"),
            &[&hash.as_slice()],
        )?
        .map(|r| invitation_of(&r))
        .transpose()
    }

    fn invitation_with_user(
        &self,
        hash: &[u8; 32],
        user: &str,
    ) -> Result<Option<(InvitationRecord, Option<UserMembership>)>> {
        let Some(r) = self.row(
            concat!(
                "SELECT ",
                invitation_columns!("i."),
                ", ",
                user_columns!("u."),
                ", ",
                membership_columns!("m."),
                ", ",
                org_columns!("o."),
                " FROM invitations i
                 LEFT JOIN users u ON u.id = $2
                 LEFT JOIN memberships m ON m.organization_id = i.organization_id
                    AND m.user_id = u.id
                 LEFT JOIN organizations o ON o.id = i.organization_id
                 WHERE i.token_hash = $1"
            ),
            &[&hash.as_slice(), &user],
        )?
        else {
            return Ok(None);
        };
        // The user's columns follow the invitation's, the membership's the user's, the
        // organization's the membership's.
        let (at_user, at_membership) = (INVITATION_COLUMNS, INVITATION_COLUMNS + 5);
        let at_org = at_membership + 7;
        if self.one_snapshot && get::<Option<String>>(&r, at_org)?.is_some() {
            // Kept for the transaction's next reads of it (accept authorizes and counts seats
            // on it): one statement fewer.
            self.keep_org(org_at(&r, at_org)?, stats_of(&r, at_org + ORG_STATS_AT)?);
        }
        let found = match get::<Option<String>>(&r, at_user)? {
            None => None,
            Some(_) => {
                let membership = match get::<Option<String>>(&r, at_membership)? {
                    Some(_) => Some(membership_at(&r, at_membership)?),
                    None => None,
                };
                Some((user_at_column(&r, at_user)?, membership))
            }
        };
        Ok(Some((invitation_of(&r)?, found)))
    }

    fn pending_invitation_id(&self, org: &str, email: &str) -> Result<Option<String>> {
        self.string(
            "SELECT id FROM invitations
             WHERE organization_id = $1 AND email = $2 AND status = 'pending'",
            &[&org, &email],
        )
    }

    fn pending_unexpired_count(&self, org: &str, now: DateTime<Utc>) -> Result<u64> {
        self.count(
            "SELECT count(*) FROM invitations
             WHERE organization_id = $1 AND status = 'pending' AND expires_at > $2",
            &[&org, &now],
        )
    }

    fn invitation_ids_of_org(&self, org: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM invitations WHERE organization_id = $1 ORDER BY id",
            &[&org],
        )
    }

    fn invitation_ids_of_project(&self, project: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM invitations WHERE project_id = $1 ORDER BY id",
            &[&project],
        )
    }

    fn invitation_page(
        &self,
        org: &str,
        status: Option<InvitationStatus>,
        now: DateTime<Utc>,
        skip: u64,
        limit: usize,
    ) -> Result<(Vec<String>, u64)> {
        // One filter for every status, on the stored status and the expiry: `pending` still
        // ahead of its expiry, `expired` stored so or pending past it.
        const FILTER: &str = " WHERE organization_id = $1 AND (
            $2::TEXT IS NULL
            OR ($2 = 'pending' AND status = 'pending' AND expires_at > $3)
            OR ($2 = 'expired' AND (status = 'expired'
                OR (status = 'pending' AND expires_at <= $3)))
            OR ($2 NOT IN ('pending', 'expired') AND status = $2))";
        let status = status.map(InvitationStatus::as_str);
        let skip = signed(skip, "page")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let total = self.count(
            sql!("SELECT count(*) FROM invitations", FILTER),
            &[&org, &status, &now],
        )?;
        let ids = self.strings(
            sql!(
                sql!("SELECT id FROM invitations", FILTER),
                " ORDER BY id OFFSET $4 LIMIT $5"
            ),
            &[&org, &status, &now, &skip, &limit],
        )?;
        Ok((ids, total))
    }

    fn pending_invitation_ids_for_email(&self, email: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM invitations WHERE email = $1 AND status = 'pending' ORDER BY id",
            &[&email],
        )
    }

    fn project(&self, id: &str) -> Result<Option<Project>> {
        self.row(sql!(PROJECT_SELECT, " WHERE id = $1"), &[&id])?
            .map(|r| project_of(&r))
            .transpose()
    }

    fn project_ids_of_org(&self, org: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT id FROM projects WHERE organization_id = $1 ORDER BY id",
            &[&org],
        )
    }

    fn project_count(&self, org: &str) -> Result<u64> {
        self.count(
            "SELECT count(*) FROM projects WHERE organization_id = $1",
            &[&org],
        )
    }

    fn project_membership(&self, project: &str, user: &str) -> Result<Option<ProjectMembership>> {
        self.row(
            "SELECT project_id, user_id, role, added_at, updated_at FROM project_members
             WHERE project_id = $1 AND user_id = $2",
            &[&project, &user],
        )?
        .map(|r| project_membership_of(&r))
        .transpose()
    }

    fn project_member_ids(&self, project: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT user_id FROM project_members WHERE project_id = $1 ORDER BY user_id",
            &[&project],
        )
    }

    fn project_ids_of_member(&self, org: &str, user: &str) -> Result<Vec<String>> {
        self.strings(
            "SELECT project_id FROM project_members
             WHERE organization_id = $1 AND user_id = $2 ORDER BY project_id",
            &[&org, &user],
        )
    }

    fn resource(&self, id: &str) -> Result<Option<Resource>> {
        Ok(self.resource_record(id)?.map(|r| r.resource))
    }

    fn resource_record(&self, id: &str) -> Result<Option<ResourceRecord>> {
        self.row(sql!(RESOURCE_SELECT, " WHERE id = $1"), &[&id])?
            .map(|r| resource_of(&r))
            .transpose()
    }

    fn resource_ids_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<String>> {
        // MCP servers before API keys, each oldest first, as on the embedded backend.
        self.strings(
            "SELECT id FROM resources
             WHERE organization_id = $1 AND ($2::TEXT IS NULL OR kind = $2)
               AND ($3 OR removed_at IS NULL)
             ORDER BY CASE kind WHEN 'mcp' THEN 0 ELSE 1 END, id",
            &[&org, &kind.map(ResourceKind::as_str), &include_removed],
        )
    }

    fn resources_of_org(
        &self,
        org: &str,
        kind: Option<ResourceKind>,
        include_removed: bool,
    ) -> Result<Vec<ResourceRecord>> {
        self.rows(
            sql!(
                RESOURCE_SELECT,
                " WHERE organization_id = $1 AND ($2::TEXT IS NULL OR kind = $2)
                   AND ($3 OR removed_at IS NULL)
                 ORDER BY CASE kind WHEN 'mcp' THEN 0 ELSE 1 END, id"
            ),
            &[&org, &kind.map(ResourceKind::as_str), &include_removed],
        )?
        .iter()
        .map(resource_of)
        .collect()
    }

    fn period_usage(&self, org: &str, start: u32) -> Result<u64> {
        self.count(
            "SELECT total FROM usage_periods WHERE organization_id = $1 AND period_start = $2",
            &[&org, &date_of(start)?],
        )
    }

    fn day_row(&self, org: &str, day: u32) -> Result<Option<DayRow>> {
        self.row(
            "SELECT total, by_column FROM usage_days WHERE organization_id = $1 AND day = $2",
            &[&org, &date_of(day)?],
        )?
        .map(|r| day_of(&r, 0))
        .transpose()
    }

    fn day_rows(&self, org: &str, first: u32, last: u32) -> Result<Vec<(u32, DayRow)>> {
        let rows = self.rows(
            "SELECT day, total, by_column FROM usage_days
             WHERE organization_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
            &[&org, &date_of(first)?, &date_of(last)?],
        )?;
        rows.iter()
            .map(|r| Ok((day_number(get::<NaiveDate>(r, 0)?), day_of(r, 1)?)))
            .collect()
    }

    fn usage_state(&self, org: &str, ask: &UsageAsk<'_>) -> Result<UsageState> {
        self.usage_states(&[(org, *ask)])?
            .pop()
            .ok_or_else(|| Error::storage("usage_state left out the organization"))
    }

    fn usage_states(&self, asks: &[(&str, UsageAsk<'_>)]) -> Result<Vec<UsageState>> {
        let sent = self.prefetched.borrow_mut().take();
        match sent {
            Some(sent) if answers_all(sent.asks, asks) => {
                let mut states = sent.states;
                for (state, (_, ask)) in states.iter_mut().zip(asks) {
                    if !ask.leases {
                        // Read for an ask with leases ([`answers_all`]): this one wants none.
                        for (_, _, leased) in &mut state.periods {
                            *leased = 0;
                        }
                    }
                }
                Ok(states)
            }
            _ => {
                let (sql, owned) = usage_read(asks)?;
                states_of(&self.rows(sql, &params_of(&owned))?, asks)
            }
        }
    }

    fn idempotency_keys(&self, org: &str) -> Result<Vec<(String, i64)>> {
        let rows = self.rows(
            "SELECT key, recorded_at FROM idempotency_keys WHERE organization_id = $1
             ORDER BY key",
            &[&org],
        )?;
        rows.iter()
            .map(|r| Ok((get(r, 0)?, get::<DateTime<Utc>>(r, 1)?.timestamp_micros())))
            .collect()
    }

    fn entitlement_override(&self, org: &str, name: &str) -> Result<Option<EntitlementValue>> {
        self.row(
            "SELECT kind, enabled, limit_value FROM entitlement_overrides
             WHERE organization_id = $1 AND name = $2",
            &[&org, &name],
        )?
        .map(|r| override_of(&r, 0))
        .transpose()
    }

    fn entitlement_overrides(&self, org: &str) -> Result<Vec<(String, EntitlementValue)>> {
        let rows = self.rows(
            "SELECT name, kind, enabled, limit_value FROM entitlement_overrides
             WHERE organization_id = $1 ORDER BY name",
            &[&org],
        )?;
        rows.iter()
            .map(|r| Ok((get(r, 0)?, override_of(r, 1)?)))
            .collect()
    }

    fn reservation(&self, org: &str, id: &str) -> Result<Option<Reservation>> {
        self.row(
            "SELECT id, organization_id, count, resource_id, created_at, expires_at,
                period_start, period_end
             FROM usage_reservations WHERE organization_id = $1 AND id = $2",
            &[&org, &id],
        )?
        .map(|r| reservation_of(&r))
        .transpose()
    }

    fn reservations(&self, org: &str) -> Result<Vec<Reservation>> {
        self.rows(
            "SELECT id, organization_id, count, resource_id, created_at, expires_at,
                period_start, period_end
             FROM usage_reservations WHERE organization_id = $1 ORDER BY id",
            &[&org],
        )?
        .iter()
        .map(reservation_of)
        .collect()
    }

    fn alerts_fired(&self, org: &str, span: Span) -> Result<Vec<AlertFired>> {
        self.rows(
            "SELECT period_start, period_end, threshold_percent, limit_value
             FROM usage_alert_state
             WHERE organization_id = $1 AND period_start = $2 AND period_end = $3
             ORDER BY threshold_percent",
            &[&org, &date_of(span.start)?, &date_of(span.end)?],
        )?
        .iter()
        .map(alert_fired_of)
        .collect()
    }

    fn alert_states(&self, org: &str) -> Result<Vec<AlertFired>> {
        self.rows(
            "SELECT period_start, period_end, threshold_percent, limit_value
             FROM usage_alert_state WHERE organization_id = $1
             ORDER BY period_start, period_end, threshold_percent",
            &[&org],
        )?
        .iter()
        .map(alert_fired_of)
        .collect()
    }

    fn audit_events(
        &self,
        org: Option<&str>,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        let after = signed(after_seq, "after_seq")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match org {
            Some(org) => self
                .rows(
                    "SELECT seq, id, at, actor, action, target, details FROM audit_events
                     WHERE organization_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&org, &after, &limit],
                )?
                .iter()
                .map(|r| audit_of(r, Some(org.to_owned())))
                .collect(),
            None => self
                .rows(
                    "SELECT seq, id, at, actor, action, target, details FROM user_audit_events
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &limit],
                )?
                .iter()
                .map(|r| audit_of(r, None))
                .collect(),
        }
    }

    fn check(&self, now: DateTime<Utc>) -> Result<CheckReport> {
        self.whole_tables()?;
        super::whole::check(self, now)
    }

    fn export(&self, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<u64> {
        self.whole_tables()?;
        super::whole::export(self, visit)
    }

    fn is_empty(&self) -> Result<bool> {
        Ok(self.count(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1) u)
                  + (SELECT count(*) FROM (SELECT 1 FROM organizations LIMIT 1) o)
                  + (SELECT count(*) FROM (SELECT 1 FROM user_audit_events LIMIT 1) e)
                  + (SELECT count(*) FROM (SELECT 1 FROM audit_events LIMIT 1) a)",
            &[],
        )? == 0)
    }
}

impl Writes for PgTx<'_> {
    fn set_meta_u64(&mut self, name: &str, value: u64) -> Result<()> {
        self.exec(
            "INSERT INTO orgdb_meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &signed(value, name)?],
        )?;
        Ok(())
    }

    /// One statement: the row and its search terms.
    fn insert_user(&mut self, user: &User) -> Result<()> {
        self.exec(
            "WITH t AS (INSERT INTO user_terms (term, user_id) SELECT unnest($6::TEXT[]), $1)
             INSERT INTO users (id, email, name, created_at, last_active)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &user.id,
                &user.email,
                &user.name,
                &user.created_at,
                &user.last_active,
                &search_terms(&user.email, &user.name),
            ],
        )?;
        Ok(())
    }

    fn replace_user(&mut self, old: &User, new: &User) -> Result<()> {
        let terms = search_terms(&new.email, &new.name);
        let old_terms = search_terms(&old.email, &old.name);
        if old_terms != terms {
            self.directory_terms(Directory::Users, &new.id, &old_terms, &terms)?;
            // The terms of every membership of the user: the old ones out, the new ones in.
            // Two statements: CockroachDB refuses one that deletes from and inserts into the
            // same table.
            self.exec(
                "DELETE FROM member_terms t USING memberships m
                 WHERE m.user_id = $1 AND t.organization_id = m.organization_id
                   AND t.user_id = $1 AND t.term <> ALL($2)",
                &[&new.id, &terms],
            )?;
            self.exec(
                "INSERT INTO member_terms (organization_id, term, user_id)
                 SELECT m.organization_id, x.term, $1
                 FROM memberships m CROSS JOIN unnest($2::TEXT[]) AS x(term)
                 WHERE m.user_id = $1
                 ON CONFLICT DO NOTHING",
                &[&new.id, &terms],
            )?;
        }
        self.exec(
            "UPDATE users SET email = $2, name = $3, created_at = $4, last_active = $5
             WHERE id = $1",
            &[
                &new.id,
                &new.email,
                &new.name,
                &new.created_at,
                &new.last_active,
            ],
        )?;
        Ok(())
    }

    fn remove_user(&mut self, user: &User) -> Result<()> {
        let terms = search_terms(&user.email, &user.name);
        self.directory_terms(Directory::Users, &user.id, &terms, &[])?;
        self.exec("DELETE FROM users WHERE id = $1", &[&user.id])?;
        Ok(())
    }

    fn insert_org(&mut self, rec: &OrgRecord) -> Result<()> {
        self.directory_terms(Directory::Orgs, &rec.org.id, &[], &org_terms(&rec.org))?;
        self.write_org(
            "INSERT INTO organizations (id, name, slug, external_id, description, plan, city,
                state, zipcode, country, pin_protection, settings, metadata, created_at,
                updated_at, limit_mcps, limit_api_keys, limit_team_members,
                limit_monthly_requests, address_line1, address_line2, quota_period,
                billing_anchor, alert_thresholds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                $17, $18, $19, $20, $21, $22, $23, $24)",
            rec,
        )
    }

    fn replace_org(&mut self, old: &OrgRecord, new: &OrgRecord) -> Result<()> {
        let (old_terms, new_terms) = (org_terms(&old.org), org_terms(&new.org));
        if old_terms != new_terms {
            self.directory_terms(Directory::Orgs, &new.org.id, &old_terms, &new_terms)?;
        }
        self.write_org(
            "UPDATE organizations SET name = $2, slug = $3, external_id = $4,
                description = $5, plan = $6, city = $7, state = $8, zipcode = $9,
                country = $10, pin_protection = $11, settings = $12, metadata = $13,
                created_at = $14, updated_at = $15, limit_mcps = $16, limit_api_keys = $17,
                limit_team_members = $18, limit_monthly_requests = $19,
                address_line1 = $20, address_line2 = $21, quota_period = $22,
                billing_anchor = $23, alert_thresholds = $24
             WHERE id = $1",
            new,
        )
    }

    fn remove_org(&mut self, rec: &OrgRecord) -> Result<()> {
        self.forget_org(&rec.org.id);
        self.directory_terms(Directory::Orgs, &rec.org.id, &org_terms(&rec.org), &[])?;
        self.exec("DELETE FROM organizations WHERE id = $1", &[&rec.org.id])?;
        Ok(())
    }

    /// One statement: the row, (when active) its role's counter, and its search terms.
    fn insert_membership(&mut self, m: &Membership, user: &User) -> Result<()> {
        self.forget_stats(&m.organization_id);
        self.exec(
            concat!(
                "WITH c AS (",
                role_count_update!(),
                " WHERE id = $1 RETURNING id),
                 t AS (INSERT INTO member_terms (organization_id, term, user_id)
                    SELECT $1, unnest($9::TEXT[]), $4)
                 INSERT INTO memberships (organization_id, user_id, id, role, joined_at,
                    updated_at, deactivated_at, deactivated)
                 VALUES ($1, $4, $5, $2, $6, $7, $8, $8::TIMESTAMPTZ IS NOT NULL)"
            ),
            &[
                &m.organization_id,
                &m.role.as_str(),
                &i64::from(m.is_active()),
                &m.user_id,
                &m.id,
                &m.joined_at,
                &m.updated_at,
                &m.deactivated_at,
                &search_terms(&user.email, &user.name),
            ],
        )?;
        Ok(())
    }

    fn replace_membership(&mut self, old: &Membership, new: &Membership) -> Result<()> {
        self.exec(
            "UPDATE memberships SET id = $3, role = $4, joined_at = $5, updated_at = $6,
                deactivated_at = $7, deactivated = $7::TIMESTAMPTZ IS NOT NULL
             WHERE organization_id = $1 AND user_id = $2",
            &[
                &new.organization_id,
                &new.user_id,
                &new.id,
                &new.role.as_str(),
                &new.joined_at,
                &new.updated_at,
                &new.deactivated_at,
            ],
        )?;
        if old.acting_role() != new.acting_role() {
            if let Some(role) = old.acting_role() {
                self.adjust_role_count(&old.organization_id, role, -1)?;
            }
            if let Some(role) = new.acting_role() {
                self.adjust_role_count(&new.organization_id, role, 1)?;
            }
        }
        Ok(())
    }

    fn remove_membership(&mut self, m: &Membership) -> Result<()> {
        let removed = self.exec_counted(
            "WITH t AS (DELETE FROM member_terms WHERE organization_id = $1 AND user_id = $2)
             DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2",
            &[&m.organization_id, &m.user_id],
        )?;
        if removed > 0 && m.is_active() {
            self.adjust_role_count(&m.organization_id, m.role, -1)?;
        }
        Ok(())
    }

    fn insert_invitation(&mut self, rec: &InvitationRecord) -> Result<()> {
        let i = &rec.invitation;
        self.exec(
            "INSERT INTO invitations (id, organization_id, email, role, project_id,
                project_role, status, invited_by, created_at, expires_at, accepted_at,
                token_hash, lifetime_secs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &i.id,
                &i.organization_id,
                &i.email,
                &i.role.as_str(),
                &i.project_id,
                &i.project_role.map(Role::as_str),
                &i.status.as_str(),
                &i.invited_by,
                &i.created_at,
                &i.expires_at,
                &i.accepted_at,
                &rec.token_hash.as_slice(),
                &rec.lifetime_secs,
            ],
        )?;
        Ok(())
    }

    fn replace_invitation(
        &mut self,
        _old: &InvitationRecord,
        new: &InvitationRecord,
    ) -> Result<()> {
        let i = &new.invitation;
        self.exec(
            "UPDATE invitations SET email = $3, role = $4, project_id = $5, project_role = $6,
                status = $7, invited_by = $8, created_at = $9, expires_at = $10,
                accepted_at = $11, token_hash = $12, lifetime_secs = $13
             WHERE organization_id = $2 AND id = $1",
            &[
                &i.id,
                &i.organization_id,
                &i.email,
                &i.role.as_str(),
                &i.project_id,
                &i.project_role.map(Role::as_str),
                &i.status.as_str(),
                &i.invited_by,
                &i.created_at,
                &i.expires_at,
                &i.accepted_at,
                &new.token_hash.as_slice(),
                &new.lifetime_secs,
            ],
        )?;
        Ok(())
    }

    fn remove_invitation(&mut self, rec: &InvitationRecord) -> Result<()> {
        let i = &rec.invitation;
        self.exec(
            "DELETE FROM invitations WHERE organization_id = $1 AND id = $2",
            &[&i.organization_id, &i.id],
        )?;
        Ok(())
    }

    fn put_project(&mut self, p: &Project) -> Result<()> {
        self.exec(
            "INSERT INTO projects (organization_id, id, name, description, created_at,
                updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (organization_id, id) DO UPDATE SET name = excluded.name,
                description = excluded.description, created_at = excluded.created_at,
                updated_at = excluded.updated_at",
            &[
                &p.organization_id,
                &p.id,
                &p.name,
                &p.description,
                &p.created_at,
                &p.updated_at,
            ],
        )?;
        Ok(())
    }

    fn remove_project(&mut self, p: &Project) -> Result<()> {
        self.exec(
            "DELETE FROM project_members WHERE organization_id = $1 AND project_id = $2",
            &[&p.organization_id, &p.id],
        )?;
        self.exec(
            "DELETE FROM projects WHERE organization_id = $1 AND id = $2",
            &[&p.organization_id, &p.id],
        )?;
        Ok(())
    }

    fn put_project_membership(&mut self, org: &str, pm: &ProjectMembership) -> Result<()> {
        self.exec(
            "INSERT INTO project_members (organization_id, project_id, user_id, role,
                added_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (organization_id, project_id, user_id) DO UPDATE SET
                role = excluded.role, added_at = excluded.added_at,
                updated_at = excluded.updated_at",
            &[
                &org,
                &pm.project_id,
                &pm.user_id,
                &pm.role.as_str(),
                &pm.added_at,
                &pm.updated_at,
            ],
        )?;
        Ok(())
    }

    fn remove_project_membership(&mut self, org: &str, project: &str, user: &str) -> Result<bool> {
        Ok(self.exec_counted(
            "DELETE FROM project_members
             WHERE organization_id = $1 AND project_id = $2 AND user_id = $3",
            &[&org, &project, &user],
        )? > 0)
    }

    fn remove_project_memberships_of(&mut self, org: &str, user: &str) -> Result<()> {
        self.exec(
            "DELETE FROM project_members WHERE organization_id = $1 AND user_id = $2",
            &[&org, &user],
        )?;
        Ok(())
    }

    fn insert_resource(&mut self, res: &Resource) -> Result<()> {
        self.forget_stats(&res.organization_id);
        let column: i32 = self
            .row(
                "UPDATE organizations SET resource_columns = resource_columns + 1
                 WHERE id = $1 RETURNING resource_columns - 1",
                &[&res.organization_id],
            )?
            .map(|r| get(&r, 0))
            .transpose()?
            .ok_or_else(|| Error::not_found("Organization"))?;
        self.exec(
            "INSERT INTO resources (organization_id, id, kind, name, created_at, removed_at,
                usage_column)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &res.organization_id,
                &res.id,
                &res.kind.as_str(),
                &res.name,
                &res.created_at,
                &res.removed_at,
                &column,
            ],
        )?;
        self.adjust_resource_count(&res.organization_id, res.kind, 1)
    }

    fn put_resource(&mut self, res: &Resource) -> Result<()> {
        self.exec(
            "UPDATE resources SET kind = $3, name = $4, created_at = $5, removed_at = $6
             WHERE organization_id = $1 AND id = $2",
            &[
                &res.organization_id,
                &res.id,
                &res.kind.as_str(),
                &res.name,
                &res.created_at,
                &res.removed_at,
            ],
        )?;
        Ok(())
    }

    fn retire_resource(&mut self, res: &Resource) -> Result<()> {
        self.put_resource(res)?;
        self.adjust_resource_count(&res.organization_id, res.kind, -1)
    }

    fn put_period_usage(&mut self, org: &str, span: Span, total: u64) -> Result<()> {
        self.exec(
            "INSERT INTO usage_periods (organization_id, period_start, period_end, total)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (organization_id, period_start) DO UPDATE
             SET period_end = excluded.period_end, total = excluded.total",
            &[
                &org,
                &date_of(span.start)?,
                &date_of(span.end)?,
                &signed(total, "total")?,
            ],
        )?;
        Ok(())
    }

    fn replace_period_totals(&mut self, org: &str, totals: &[(Span, u64)]) -> Result<()> {
        self.exec(
            "DELETE FROM usage_periods WHERE organization_id = $1",
            &[&org],
        )?;
        for &(span, total) in totals {
            self.put_period_usage(org, span, total)?;
        }
        Ok(())
    }

    fn put_day_row(&mut self, org: &str, day: u32, row: &DayRow) -> Result<()> {
        let columns = row
            .columns
            .iter()
            .map(|n| signed(*n, "count"))
            .collect::<Result<Vec<i64>>>()?;
        self.exec(
            "INSERT INTO usage_days (organization_id, day, total, by_column)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (organization_id, day) DO UPDATE SET total = excluded.total,
                by_column = excluded.by_column",
            &[&org, &date_of(day)?, &signed(row.total, "total")?, &columns],
        )?;
        Ok(())
    }

    fn put_idempotency(&mut self, org: &str, key: &str, at_micros: i64) -> Result<()> {
        let at = DateTime::<Utc>::from_timestamp_micros(at_micros)
            .ok_or_else(|| Error::invalid("recorded_at", "Out of range"))?;
        self.exec(
            "INSERT INTO idempotency_keys (organization_id, key, recorded_at)
             VALUES ($1, $2, $3)
             ON CONFLICT (organization_id, key) DO UPDATE SET recorded_at = excluded.recorded_at",
            &[&org, &key, &at],
        )?;
        Ok(())
    }

    fn put_lease(
        &mut self,
        org: &str,
        period: u32,
        holder: &str,
        amount: u64,
        ttl: std::time::Duration,
    ) -> Result<()> {
        // Expired leases of the organization count for nothing: clear them on the way.
        self.exec(
            "DELETE FROM usage_leases WHERE organization_id = $1 AND expires_at <= now()",
            &[&org],
        )?;
        if amount == 0 {
            // Whatever period it names: a rule change may have moved it (`move_leases`).
            self.exec(
                "DELETE FROM usage_leases WHERE organization_id = $1 AND holder = $2",
                &[&org, &holder],
            )?;
            return Ok(());
        }
        // A holder has one lease of an organization: the one of another period (moved by a
        // rule change, or of the period before a rollover) is replaced.
        self.exec(
            "DELETE FROM usage_leases
             WHERE organization_id = $1 AND holder = $3 AND period_start <> $2",
            &[&org, &date_of(period)?, &holder],
        )?;
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.exec(
            "INSERT INTO usage_leases (organization_id, period_start, holder, amount, expires_at)
             VALUES ($1, $2, $3, $4, now() + $5::BIGINT * INTERVAL '1 millisecond')
             ON CONFLICT (organization_id, period_start, holder) DO UPDATE
             SET amount = excluded.amount, expires_at = excluded.expires_at",
            &[
                &org,
                &date_of(period)?,
                &holder,
                &signed(amount, "amount")?,
                &millis,
            ],
        )?;
        Ok(())
    }

    fn move_leases(&mut self, org: &str, period: u32) -> Result<()> {
        self.exec(
            "WITH moved AS (
                DELETE FROM usage_leases WHERE organization_id = $1 AND period_start <> $2
                RETURNING holder, amount, expires_at)
             INSERT INTO usage_leases (organization_id, period_start, holder, amount, expires_at)
             SELECT $1, $2, holder, sum(amount), max(expires_at) FROM moved GROUP BY holder
             ON CONFLICT (organization_id, period_start, holder) DO UPDATE
             SET amount = usage_leases.amount + excluded.amount,
                 expires_at = greatest(usage_leases.expires_at, excluded.expires_at)",
            &[&org, &date_of(period)?],
        )?;
        Ok(())
    }

    fn apply_usage(
        &mut self,
        org: &str,
        periods: &[(Span, u64)],
        days: &[(u32, &DayRow)],
        keys: &[(String, i64)],
    ) -> Result<()> {
        self.apply_usages(&[UsageWrite {
            org,
            periods,
            days,
            keys,
        }])
    }

    fn apply_usages(&mut self, writes: &[UsageWrite<'_>]) -> Result<()> {
        if self.write_one_checked(writes)? {
            return Ok(());
        }
        let (mut p_org, mut starts, mut ends, mut totals) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut d_org, mut day_dates, mut day_totals) = (Vec::new(), Vec::new(), Vec::new());
        // Rows of different lengths do not make one array: each goes as an array literal
        // (`columns_literal`).
        let mut day_columns: Vec<String> = Vec::new();
        let (mut k_org, mut names, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for w in writes {
            for &(span, total) in w.periods {
                p_org.push(w.org);
                starts.push(date_of(span.start)?);
                ends.push(date_of(span.end)?);
                totals.push(signed(total, "total")?);
            }
            for &(day, row) in w.days {
                d_org.push(w.org);
                day_dates.push(date_of(day)?);
                day_totals.push(signed(row.total, "total")?);
                day_columns.push(columns_literal(row));
            }
            let (n, t) = key_columns(w.keys)?;
            k_org.extend(std::iter::repeat_n(w.org, n.len()));
            names.extend(n);
            times.extend(t);
        }
        if p_org.is_empty() && d_org.is_empty() && k_org.is_empty() {
            return Ok(());
        }
        let params: [&(dyn ToSql + Sync); 11] = [
            &p_org,
            &starts,
            &ends,
            &totals,
            &d_org,
            &day_dates,
            &day_totals,
            &day_columns,
            &k_org,
            &names,
            &times,
        ];
        // Nothing of this transaction waits for the write's answer: it leaves with COMMIT.
        match self.check.borrow_mut().take() {
            None => self.exec(USAGE_WRITE, &params),
            Some(check) => self.exec_checked(&params, &check),
        }
    }

    fn delete_idempotency(&mut self, org: &str, key: &str) -> Result<bool> {
        Ok(self.exec_counted(
            "DELETE FROM idempotency_keys WHERE organization_id = $1 AND key = $2",
            &[&org, &key],
        )? > 0)
    }

    fn prune_usage_rows(
        &mut self,
        day: u32,
        period_end: u32,
        key_cutoff: i64,
    ) -> Result<(u64, u64, u64)> {
        let cutoff = DateTime::<Utc>::from_timestamp_micros(key_cutoff)
            .ok_or_else(|| Error::invalid("before", "Out of range"))?;
        let days = self.exec_counted("DELETE FROM usage_days WHERE day < $1", &[&date_of(day)?])?;
        let months = self.exec_counted(
            "DELETE FROM usage_periods WHERE period_end < $1",
            &[&date_of(period_end)?],
        )?;
        self.exec(
            "DELETE FROM usage_alert_state WHERE period_end < $1",
            &[&date_of(period_end)?],
        )?;
        let keys = self.exec_counted(
            "DELETE FROM idempotency_keys WHERE recorded_at < $1",
            &[&cutoff],
        )?;
        Ok((days, months, keys))
    }

    fn remove_org_scoped(&mut self, org: &str) -> Result<()> {
        for sql in [
            "DELETE FROM invitations WHERE organization_id = $1",
            "DELETE FROM project_members WHERE organization_id = $1",
            "DELETE FROM projects WHERE organization_id = $1",
            "DELETE FROM resources WHERE organization_id = $1",
            "DELETE FROM usage_periods WHERE organization_id = $1",
            "DELETE FROM usage_days WHERE organization_id = $1",
            "DELETE FROM idempotency_keys WHERE organization_id = $1",
            "DELETE FROM usage_leases WHERE organization_id = $1",
            "DELETE FROM entitlement_overrides WHERE organization_id = $1",
            "DELETE FROM usage_alert_state WHERE organization_id = $1",
            "DELETE FROM usage_reservations WHERE organization_id = $1",
        ] {
            self.exec(sql, &[&org])?;
        }
        Ok(())
    }

    fn put_entitlement_override(
        &mut self,
        org: &str,
        name: &str,
        value: Option<&EntitlementValue>,
    ) -> Result<()> {
        let Some(value) = value else {
            self.exec(
                "DELETE FROM entitlement_overrides WHERE organization_id = $1 AND name = $2",
                &[&org, &name],
            )?;
            return Ok(());
        };
        let (enabled, limit) = match *value {
            EntitlementValue::Feature { enabled } => (Some(enabled), None),
            EntitlementValue::Limit { limit } => {
                (None, limit.map(|n| signed(n, "limit")).transpose()?)
            }
        };
        self.exec(
            "INSERT INTO entitlement_overrides (organization_id, name, kind, enabled, limit_value)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (organization_id, name) DO UPDATE SET kind = excluded.kind,
                enabled = excluded.enabled, limit_value = excluded.limit_value",
            &[&org, &name, &value.kind().as_str(), &enabled, &limit],
        )?;
        Ok(())
    }

    fn put_reservation(&mut self, r: &Reservation) -> Result<()> {
        self.exec(
            "INSERT INTO usage_reservations (organization_id, id, count, resource_id,
                created_at, expires_at, period_start, period_end)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (organization_id, id) DO UPDATE SET count = excluded.count,
                resource_id = excluded.resource_id, created_at = excluded.created_at,
                expires_at = excluded.expires_at, period_start = excluded.period_start,
                period_end = excluded.period_end",
            &[
                &r.organization_id,
                &r.id,
                &signed(r.count, "count")?,
                &r.resource_id,
                &r.created_at,
                &r.expires_at,
                &r.period_start,
                &r.period_end,
            ],
        )?;
        Ok(())
    }

    fn delete_reservation(&mut self, org: &str, id: &str) -> Result<bool> {
        Ok(self.exec_counted(
            "DELETE FROM usage_reservations WHERE organization_id = $1 AND id = $2",
            &[&org, &id],
        )? > 0)
    }

    fn put_alert_fired(&mut self, org: &str, fired: &AlertFired) -> Result<()> {
        self.exec(
            "INSERT INTO usage_alert_state
                (organization_id, period_start, period_end, threshold_percent, limit_value)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (organization_id, period_start, period_end, threshold_percent)
             DO UPDATE SET limit_value = excluded.limit_value",
            &[
                &org,
                &date_of(fired.span.start)?,
                &date_of(fired.span.end)?,
                &signed(u64::from(fired.percent), "threshold_percent")?,
                &signed(fired.limit, "limit")?,
            ],
        )?;
        Ok(())
    }

    fn forget_alerts(&mut self, org: &str, percent: u32) -> Result<()> {
        self.exec(
            "DELETE FROM usage_alert_state
             WHERE organization_id = $1 AND threshold_percent = $2",
            &[&org, &signed(u64::from(percent), "threshold_percent")?],
        )?;
        Ok(())
    }

    /// One statement: the feed's head row numbers the event, which is inserted with it.
    fn append_audit(&mut self, mut event: AuditEvent) -> Result<AuditEvent> {
        let e = &event;
        let seq: i64 = match &e.organization_id {
            Some(org) => self.row(
                "WITH h AS (
                    INSERT INTO audit_heads (organization_id, seq) VALUES ($1, 1)
                    ON CONFLICT (organization_id) DO UPDATE SET seq = audit_heads.seq + 1
                    RETURNING seq)
                 INSERT INTO audit_events (organization_id, seq, id, at, actor, action, target,
                    details)
                 SELECT $1, h.seq, $2, $3, $4, $5, $6, $7 FROM h
                 RETURNING seq",
                &[
                    org, &e.id, &e.at, &e.actor, &e.action, &e.target, &e.details,
                ],
            )?,
            None => self.row(
                "WITH h AS (
                    INSERT INTO orgdb_meta (name, value) VALUES ('user_audit_seq', 1)
                    ON CONFLICT (name) DO UPDATE SET value = orgdb_meta.value + 1
                    RETURNING value)
                 INSERT INTO user_audit_events (seq, id, at, actor, action, target, details)
                 SELECT h.value, $1, $2, $3, $4, $5, $6 FROM h
                 RETURNING seq",
                &[&e.id, &e.at, &e.actor, &e.action, &e.target, &e.details],
            )?,
        }
        .map(|r| get(&r, 0))
        .transpose()?
        .ok_or_else(|| Error::storage("the audit sequence returned no row"))?;
        event.seq = unsigned(seq)?;
        Ok(event)
    }

    fn insert_audit_event(&mut self, event: &AuditEvent) -> Result<bool> {
        let seq = signed(event.seq, "seq")?;
        let taken = match &event.organization_id {
            Some(org) => self.count(
                "SELECT count(*) FROM audit_events WHERE organization_id = $1 AND seq = $2",
                &[org, &seq],
            )?,
            None => self.count(
                "SELECT count(*) FROM user_audit_events WHERE seq = $1",
                &[&seq],
            )?,
        };
        if taken > 0 {
            return Ok(false);
        }
        self.insert_event(event)?;
        match &event.organization_id {
            Some(org) => self.exec(
                "INSERT INTO audit_heads (organization_id, seq) VALUES ($1, $2)
                 ON CONFLICT (organization_id) DO UPDATE
                 SET seq = GREATEST(audit_heads.seq, excluded.seq)",
                &[org, &seq],
            )?,
            None => self.exec(
                "INSERT INTO orgdb_meta (name, value) VALUES ('user_audit_seq', $1)
                 ON CONFLICT (name) DO UPDATE
                 SET value = GREATEST(orgdb_meta.value, excluded.value)",
                &[&seq],
            )?,
        };
        Ok(true)
    }

    /// Each feed's counter already follows its imported events (`insert_audit_event`); the
    /// header's number belongs to the embedded backend's single feed and means nothing here.
    fn set_audit_seq(&mut self, _seq: u64) -> Result<()> {
        Ok(())
    }

    /// One feed per organization (`audit_heads`) plus the user feed: imported events keep
    /// their numbers.
    fn single_audit_feed(&self) -> bool {
        false
    }
}

/// A day row's columns as an array literal (`{1,0,3}`): rows of different lengths do not
/// make one two-dimensional array.
fn columns_literal(row: &DayRow) -> String {
    int_array_literal(&row.columns)
}

/// An array literal of numbers (`{1,2,3}`), for a column of arrays of different lengths.
fn int_array_literal<T: ToString>(numbers: &[T]) -> String {
    let numbers: Vec<String> = numbers.iter().map(T::to_string).collect();
    format!("{{{}}}", numbers.join(","))
}

/// Whether the read of `sent` answers `asked`: the same asks, except that one with leases
/// answers one without ([`states_of`] leaves out what leases hold for an ask without them).
fn answers_all(sent: &[(&str, UsageAsk<'_>)], asked: &[(&str, UsageAsk<'_>)]) -> bool {
    sent.len() == asked.len()
        && sent.iter().zip(asked).all(|((s_org, s), (a_org, a))| {
            s_org == a_org
                && *s
                    == UsageAsk {
                        leases: a.leases || s.leases,
                        ..*a
                    }
        })
}

/// The usage-state read of one organization (`usage_read`): `$1` the organization, `$2` the
/// periods' first days, `$3` whether leases and reservations count, `$4` a lease holder left
/// out, `$5` keys, `$6` resource ids, `$7` the time reservations must outlive.
const USAGE_READ_ONE: &str = "SELECT 0, 0, NULL::INT, NULL::TEXT, coalesce(u.total, 0)::BIGINT,
    CASE WHEN $3::BOOL THEN coalesce((SELECT sum(l.amount) FROM usage_leases l
        WHERE l.organization_id = $1 AND l.period_start = p.start
          AND l.expires_at > now()
          AND ($4::TEXT IS NULL OR l.holder <> $4)), 0)
        + coalesce((SELECT sum(r.count) FROM usage_reservations r
        WHERE r.organization_id = $1 AND r.expires_at > $7), 0)
        ELSE 0 END::BIGINT,
    p.start
 FROM unnest($2::DATE[]) AS p(start)
 LEFT JOIN usage_periods u ON u.organization_id = $1 AND u.period_start = p.start
 UNION ALL
 SELECT 1, 0, NULL, i.key, 0, 0, NULL FROM unnest($5::TEXT[]) AS k(key),
    LATERAL (SELECT key FROM idempotency_keys
             WHERE organization_id = $1 AND key = k.key LIMIT 1) i
 UNION ALL
 SELECT 2, 0, r.usage_column, r.id, 0, 0, NULL FROM unnest($6::TEXT[]) AS k(id),
    LATERAL (SELECT usage_column, id FROM resources
             WHERE organization_id = $1 AND id = k.id AND removed_at IS NULL
             LIMIT 1) r";

/// A period total's insert meeting the stored row: the new total (computed from the one read)
/// replaces it.
macro_rules! period_merge {
    () => {
        "ON CONFLICT (organization_id, period_start) DO UPDATE
            SET period_end = excluded.period_end, total = excluded.total"
    };
}

/// An idempotency key's insert meeting a stored one: the stored key takes the new time.
macro_rules! key_merge {
    () => {
        "ON CONFLICT (organization_id, key) DO UPDATE SET recorded_at = excluded.recorded_at"
    };
}

/// A day row's insert meeting the stored row: the totals added, and the columns added one by
/// one (the longer array's tail kept).
macro_rules! day_merge {
    () => {
        "ON CONFLICT (organization_id, day) DO UPDATE
            SET total = usage_days.total + excluded.total,
                by_column = coalesce((
                    SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY n)
                    FROM unnest(usage_days.by_column, excluded.by_column)
                        WITH ORDINALITY AS t(a, b, n)), '{}')"
    };
}

/// The part of a guess's check ([`USAGE_WRITE_CHECKED`]) that compares the organization's
/// row with what its quota was derived from; the parameters named: organization, plan,
/// monthly request limit, quota period, billing anchor, alert thresholds.
macro_rules! org_row_check {
    ($org:literal, $plan:literal, $limit:literal, $period:literal, $anchor:literal, $alerts:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM organizations o WHERE o.id = ",
            $org,
            " AND o.plan = ",
            $plan,
            " AND o.limit_monthly_requests IS NOT DISTINCT FROM ",
            $limit,
            " AND o.quota_period = ",
            $period,
            " AND o.billing_anchor IS NOT DISTINCT FROM ",
            $anchor,
            " AND o.alert_thresholds IS NOT DISTINCT FROM ",
            $alerts,
            ")"
        )
    };
}

/// What live leases of a period and live reservations of an organization hold; the
/// parameters named: organization, period start, the time reservations must outlive.
macro_rules! held_sum {
    ($org:literal, $start:literal, $now:literal) => {
        concat!(
            "(coalesce((SELECT sum(l.amount) FROM usage_leases l
                WHERE l.organization_id = ",
            $org,
            " AND l.period_start = ",
            $start,
            "
                  AND l.expires_at > now()), 0)
            + coalesce((SELECT sum(r.count) FROM usage_reservations r
                WHERE r.organization_id = ",
            $org,
            " AND r.expires_at > ",
            $now,
            "), 0))"
        )
    };
}

/// The part of a guess's check that finds each resource of `$from` (rows `r(id, col)`, and
/// `org` when each names its organization) live in organization `$org` with usage column
/// `r.col`.
macro_rules! resources_check {
    ($from:literal, $org:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM ",
            $from,
            "
        WHERE NOT EXISTS (SELECT 1 FROM resources x WHERE x.organization_id = ",
            $org,
            "
            AND x.id = r.id AND x.removed_at IS NULL AND x.usage_column = r.col))"
        )
    };
}

/// The usage write of [`Writes::apply_usages`]: period totals (`$1`-`$4`), day rows added
/// column by column (`$5`-`$8`, the longer array's tail kept), keys (`$9`-`$11`); a
/// statement follows.
macro_rules! usage_write {
    () => {
        concat!(
            "WITH m AS (
            INSERT INTO usage_periods (organization_id, period_start, period_end, total)
            SELECT x.org, x.s, x.e, x.total
            FROM unnest($1::TEXT[], $2::DATE[], $3::DATE[], $4::BIGINT[])
                AS x(org, s, e, total)
            ",
            period_merge!(),
            "
         ), d AS (
            INSERT INTO usage_days (organization_id, day, total, by_column)
            SELECT x.org, x.day, x.total, x.by_column::BIGINT[]
            FROM unnest($5::TEXT[], $6::DATE[], $7::BIGINT[], $8::TEXT[])
                AS x(org, day, total, by_column)
            ",
            day_merge!(),
            "
         ), k AS (
            INSERT INTO idempotency_keys (organization_id, key, recorded_at)
            SELECT x.org, x.k, x.t
            FROM unnest($9::TEXT[], $10::TEXT[], $11::TIMESTAMPTZ[]) AS x(org, k, t)
            ",
            key_merge!(),
            "
         )"
        )
    };
}

/// The usage write alone.
const USAGE_WRITE: &str = concat!(usage_write!(), " SELECT 1");

/// The usage write with [`PgTx::lock_guessed`]'s check ([`GuessCheck`]): it divides by zero
/// unless each period of `$12`-`$16` (organization, first day, total, held, time) stored
/// that total (0 when no row) while live leases and reservations outliving that time held
/// what it says (when not NULL), none of the keys `$17`-`$18` (organization, key) was stored,
/// each resource of `$19`-`$21` (organization, id, column) was live with that usage column
/// (what [`usage_read`] reads, compared where it is read), and each organization's row of
/// `$22`-`$27` holds what its quota derives from: plan, monthly request limit, quota period
/// and billing anchor, alert thresholds (an array literal). Every part of one statement reads
/// the same snapshot, so the check sees the rows as they were before the write (with nothing
/// to write, the arrays `$1`-`$11` are empty).
const USAGE_WRITE_CHECKED: &str = concat!(
    usage_write!(),
    " SELECT 1 / CASE WHEN
    NOT EXISTS (SELECT 1 FROM unnest($12::TEXT[], $13::DATE[], $14::BIGINT[], $15::BIGINT[],
            $16::TIMESTAMPTZ[]) AS p(org, start, total, held, at)
        WHERE coalesce((SELECT u.total FROM usage_periods u
                        WHERE u.organization_id = p.org AND u.period_start = p.start), 0)
              <> p.total
           OR (p.held IS NOT NULL AND ",
    held_sum!("p.org", "p.start", "p.at"),
    " <> p.held))
    AND NOT EXISTS (SELECT 1 FROM unnest($17::TEXT[], $18::TEXT[]) AS c(org, key),
        LATERAL (SELECT 1 FROM idempotency_keys
                 WHERE organization_id = c.org AND key = c.key LIMIT 1) i)
    AND ",
    resources_check!(
        "unnest($19::TEXT[], $20::TEXT[], $21::INT[]) AS r(org, id, col)",
        "r.org"
    ),
    "
    AND NOT EXISTS (SELECT 1 FROM unnest($22::TEXT[], $23::TEXT[], $24::BIGINT[], $25::TEXT[],
            $26::DATE[], $27::TEXT[]) AS g(org, plan, lim, period, anchor, alerts)
        WHERE NOT ",
    org_row_check!(
        "g.org",
        "g.plan",
        "g.lim",
        "g.period",
        "g.anchor",
        "g.alerts::INT[]"
    ),
    ")
    THEN 1 ELSE 0 END"
);

/// [`USAGE_WRITE_CHECKED`] for the commonest guessed batch, a lone call: one organization
/// (`$1`), one period (`$2` start, `$3` end, `$4` total), one day row (`$5` day, `$6` total,
/// `$7` columns) and at most one key (`$8`, recorded at `$9`; NULL: none), and a check of one
/// period: its stored total (`$10` start, `$11` total) and, when `$12` is not NULL, what
/// leases and reservations hold (`$13`: the time reservations must outlive); then that the
/// key `$14` (NULL: none) is not stored, the resources (`$15`, `$16`) and the organization's
/// row (`$17`-`$21`). Scalars instead of unnested arrays: the server ran the write without a
/// key in about 35 µs less (BENCHMARKS.md, "A lone call's usage write").
const USAGE_WRITE_ONE_CHECKED: &str = concat!(
    "WITH m AS (
        INSERT INTO usage_periods (organization_id, period_start, period_end, total)
        VALUES ($1, $2, $3, $4)
        ",
    period_merge!(),
    "
     ), d AS (
        INSERT INTO usage_days (organization_id, day, total, by_column)
        VALUES ($1, $5, $6, $7::TEXT::BIGINT[])
        ",
    day_merge!(),
    "
     ), k AS (
        INSERT INTO idempotency_keys (organization_id, key, recorded_at)
        SELECT $1, $8, $9 WHERE $8::TEXT IS NOT NULL
        ",
    key_merge!(),
    "
     )
     SELECT 1 / CASE WHEN
    coalesce((SELECT u.total FROM usage_periods u
              WHERE u.organization_id = $1 AND u.period_start = $10), 0) = $11
    AND ($12::BIGINT IS NULL OR ",
    held_sum!("$1", "$10", "$13"),
    " = $12)
    AND ($14::TEXT IS NULL OR NOT EXISTS (SELECT 1 FROM idempotency_keys
        WHERE organization_id = $1 AND key = $14))
    AND ",
    resources_check!("unnest($15::TEXT[], $16::INT[]) AS r(id, col)", "$1"),
    "
    AND ",
    org_row_check!("$1", "$17", "$18", "$19", "$20", "$21::TEXT::INT[]"),
    "
    THEN 1 ELSE 0 END"
);

/// Organizations' ids in the order their rows are locked, each once: sorted, so that two
/// transactions never wait on each other ([`LOCK_MANY`], [`PgTx::lock_orgs`]).
fn lock_order<'a>(orgs: &[&'a str]) -> Vec<&'a str> {
    let mut ids = orgs.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Locks one organization's row ([`PgTx::lock_guessed`]).
const LOCK_ONE: &str = "SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE";

/// Locks organizations' rows, in the order of their ids ([`PgTx::lock_guessed`]), as
/// [`PgTx::lock_orgs`] does.
const LOCK_MANY: &str = "SELECT 1 FROM organizations WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// The usage-state read of `asks` ([`Reads::usage_states`]): its statement and parameters.
/// Its rows: (kind, ask index, usage column, key or resource id, total, leased, period start),
/// read by [`states_of`].
fn usage_read<'a>(asks: &[(&'a str, UsageAsk<'a>)]) -> Result<(&'static str, Vec<Owned<'a>>)> {
    let now_of = |ask: &UsageAsk<'_>| {
        DateTime::<Utc>::from_timestamp_micros(ask.now_micros)
            .ok_or_else(|| Error::invalid("now", "Out of range"))
    };
    if let [(org, ask)] = asks {
        let periods = ask
            .periods
            .iter()
            .map(|&p| date_of(p))
            .collect::<Result<Vec<NaiveDate>>>()?;
        // The one organization as a parameter: its plans probe the indexes with a constant,
        // which runs about twice as fast as the several organizations' joins on unnested
        // columns (a hot organization's batches are all of this kind). Keys and resources are
        // probed one by one on their whole primary key (LATERAL … LIMIT 1): `key = ANY($5)`
        // let a plan scan all of an organization's keys, which grow with every keyed event.
        return Ok((
            USAGE_READ_ONE,
            vec![
                Box::new(*org),
                Box::new(periods),
                Box::new(ask.leases),
                Box::new(ask.except_holder),
                Box::new(ask.keys),
                Box::new(ask.resources),
                Box::new(now_of(ask)?),
            ],
        ));
    }
    // One row per asked period, key and resource, each naming its ask by index: the asks'
    // arrays go flattened, side by side.
    let (mut p_ask, mut p_org, mut p_start) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p_leases, mut p_holder, mut p_at) = (Vec::new(), Vec::new(), Vec::new());
    let (mut key_ask, mut key_org, mut key_name) = (Vec::new(), Vec::new(), Vec::new());
    let (mut res_ask, mut res_org, mut res_id) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (org, ask)) in asks.iter().enumerate() {
        let i = i32::try_from(i).map_err(|_| Error::storage("too many usage asks"))?;
        let now = now_of(ask)?;
        for &start in ask.periods {
            p_ask.push(i);
            p_org.push(*org);
            p_start.push(date_of(start)?);
            p_leases.push(ask.leases);
            p_holder.push(ask.except_holder);
            p_at.push(now);
        }
        for &key in ask.keys {
            key_ask.push(i);
            key_org.push(*org);
            key_name.push(key);
        }
        for &id in ask.resources {
            res_ask.push(i);
            res_org.push(*org);
            res_id.push(id);
        }
    }
    // As the one organization's statement, each row naming its organization.
    Ok((
        "SELECT 0, p.i, NULL::INT, NULL::TEXT, coalesce(u.total, 0)::BIGINT,
            CASE WHEN p.leases THEN coalesce((SELECT sum(l.amount) FROM usage_leases l
                WHERE l.organization_id = p.org AND l.period_start = p.start
                  AND l.expires_at > now()
                  AND (p.holder IS NULL OR l.holder <> p.holder)), 0)
                + coalesce((SELECT sum(r.count) FROM usage_reservations r
                WHERE r.organization_id = p.org AND r.expires_at > p.at), 0)
                ELSE 0 END::BIGINT,
            p.start
         FROM unnest($1::INT[], $2::TEXT[], $3::DATE[], $4::BOOL[], $5::TEXT[],
                $6::TIMESTAMPTZ[]) AS p(i, org, start, leases, holder, at)
         LEFT JOIN usage_periods u ON u.organization_id = p.org AND u.period_start = p.start
         UNION ALL
         SELECT 1, k.i, NULL, i.key, 0, 0, NULL
         FROM unnest($7::INT[], $8::TEXT[], $9::TEXT[]) AS k(i, org, key),
            LATERAL (SELECT key FROM idempotency_keys
                     WHERE organization_id = k.org AND key = k.key LIMIT 1) i
         UNION ALL
         SELECT 2, k.i, r.usage_column, r.id, 0, 0, NULL
         FROM unnest($10::INT[], $11::TEXT[], $12::TEXT[]) AS k(i, org, id),
            LATERAL (SELECT usage_column, id FROM resources
                     WHERE organization_id = k.org AND id = k.id AND removed_at IS NULL
                     LIMIT 1) r",
        vec![
            Box::new(p_ask),
            Box::new(p_org),
            Box::new(p_start),
            Box::new(p_leases),
            Box::new(p_holder),
            Box::new(p_at),
            Box::new(key_ask),
            Box::new(key_org),
            Box::new(key_name),
            Box::new(res_ask),
            Box::new(res_org),
            Box::new(res_id),
        ],
    ))
}

/// The states of [`Reads::usage_states`] from its statement's rows: (kind, ask index, usage
/// column, key or resource id, stored total, leased, period start).
fn states_of(rows: &[Row], asks: &[(&str, UsageAsk<'_>)]) -> Result<Vec<UsageState>> {
    let mut states = vec![UsageState::default(); asks.len()];
    let mut columns: Vec<HashMap<String, u32>> = vec![HashMap::new(); asks.len()];
    for r in rows {
        let i = usize::try_from(get::<i32>(r, 1)?)
            .ok()
            .filter(|&i| i < asks.len())
            .ok_or_else(|| Error::storage("usage_states answered an ask not made"))?;
        let state = &mut states[i];
        match get::<i32>(r, 0)? {
            0 => state.periods.push((
                day_number(get::<NaiveDate>(r, 6)?),
                unsigned(get(r, 4)?)?,
                unsigned(get(r, 5)?)?,
            )),
            1 => state.keys.push(get(r, 3)?),
            _ => {
                let column = u32::try_from(get::<i32>(r, 2)?)
                    .map_err(|_| Error::corrupted("negative usage_column"))?;
                columns[i].insert(get(r, 3)?, column);
            }
        }
    }
    for ((state, (_, ask)), columns) in states.iter_mut().zip(asks).zip(&columns) {
        if !ask.leases {
            // Read for an ask with leases ([`answers_all`]): this one wants none.
            for (_, _, leased) in &mut state.periods {
                *leased = 0;
            }
        }
        state.columns = ask
            .resources
            .iter()
            .map(|&id| (id.to_owned(), columns.get(id).copied()))
            .collect();
    }
    Ok(states)
}

/// A membership and its user from the columns of a member page, starting at column `at`.
fn member_row_at(r: &Row, at: usize) -> Result<(Membership, User)> {
    let m = membership_at(r, at)?;
    let u = User {
        id: get(r, at + 7)?,
        email: get(r, at + 8)?,
        name: get(r, at + 9)?,
        created_at: get(r, at + 10)?,
        last_active: get(r, at + 11)?,
    };
    Ok((m, u))
}

/// Keys with their recording times (micros) as two columns for `unnest`.
fn key_columns(keys: &[(String, i64)]) -> Result<(Vec<&str>, Vec<DateTime<Utc>>)> {
    let names = keys.iter().map(|(k, _)| k.as_str()).collect();
    let times = keys
        .iter()
        .map(|(_, at)| {
            DateTime::<Utc>::from_timestamp_micros(*at)
                .ok_or_else(|| Error::invalid("recorded_at", "Out of range"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((names, times))
}

impl PgTx<'_> {
    fn insert_event(&self, e: &AuditEvent) -> Result<()> {
        let seq = signed(e.seq, "seq")?;
        match &e.organization_id {
            Some(org) => self.exec(
                "INSERT INTO audit_events (organization_id, seq, id, at, actor, action, target,
                    details)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    org, &seq, &e.id, &e.at, &e.actor, &e.action, &e.target, &e.details,
                ],
            )?,
            None => self.exec(
                "INSERT INTO user_audit_events (seq, id, at, actor, action, target, details)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &seq, &e.id, &e.at, &e.actor, &e.action, &e.target, &e.details,
                ],
            )?,
        };
        Ok(())
    }
}

impl Query for PgTx<'_> {
    fn query(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        self.rows(sql, params)
    }
}
