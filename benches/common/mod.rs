//! What the two harnesses share (`compare`: orgdb against SQLite; `postgres`: orgdb on
//! PostgreSQL against hand-written SQL): the command line, measuring, the table's rows, the
//! fixtures and the hand-written side's helpers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Utc};
use orgdb::{
    Actor, Db, Durability, Limit, LimitOverrides, Limits, ManualClock, NewInvitation,
    NewOrganization, NewUser, Options, Period, PlanCatalog, ResourceKind, Role, UsageEvent, User,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Command line

/// What a run measures and for how long; `own` holds what only one harness sets.
pub struct Config<X> {
    pub rounds: usize,
    /// How long one side of a durable workload runs in a round.
    pub durable: Duration,
    /// How long one side of a read workload runs in a round.
    pub read: Duration,
    /// How long each disk probe around a durable pair runs.
    pub probe: Duration,
    /// `accept_invitation` calls a side may make in a round (the invitations are made first).
    pub accept_per_round: usize,
    /// The workloads named by `--workload` (none: all).
    pub only: Vec<String>,
    /// `--keep`: leave the data behind.
    pub keep: bool,
    pub own: X,
}

impl<X> Config<X> {
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == name)
    }

    pub fn wants_any(&self, names: &[&str]) -> bool {
        names.iter().any(|w| self.wants(w))
    }
}

/// A harness's command line: the flags both harnesses take (`--rounds N`, `--workload
/// NAME[,NAME]`, `--keep`, `--list`, `--help`); each handles its own others.
pub struct Cli {
    /// The prefix of error messages.
    pub name: &'static str,
    /// The usage line, printed after an error and for `--help`.
    pub usage: &'static str,
    /// (name, description) of every workload.
    pub workloads: &'static [(&'static str, &'static str)],
}

impl Cli {
    /// `cfg` as the process's arguments change it. `own(cfg, flag, value)` handles the
    /// harness's own flags (`value(flag)` takes the flag's value) and returns false for an
    /// unknown one; `--rounds` wins over them whatever the order.
    pub fn parse<X>(
        &self,
        mut cfg: Config<X>,
        mut own: impl FnMut(&mut Config<X>, &str, &mut dyn FnMut(&str) -> String) -> bool,
    ) -> Config<X> {
        let mut rounds = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| self.exit(&format!("{name} needs a value")))
            };
            match arg.as_str() {
                "--rounds" => rounds = Some(self.number("--rounds", value("--rounds"))),
                "--workload" | "-w" => cfg.only.extend(
                    value("--workload")
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "--keep" => cfg.keep = true,
                "--list" => {
                    for (name, what) in self.workloads {
                        println!("{name:<22} {what}");
                    }
                    std::process::exit(0);
                }
                "--help" | "-h" => self.exit(""),
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                other => {
                    if !own(&mut cfg, other, &mut value) {
                        self.exit(&format!("unknown argument {other}"));
                    }
                }
            }
        }
        cfg.rounds = rounds.unwrap_or(cfg.rounds).max(1);
        for w in &cfg.only {
            if !self.workloads.iter().any(|(n, _)| n == w) {
                self.exit(&format!("unknown workload {w} (see --list)"));
            }
        }
        cfg
    }

    /// The value of `flag` as a number; exits when it is not one.
    pub fn number<T: std::str::FromStr>(&self, flag: &str, value: String) -> T {
        value
            .parse()
            .unwrap_or_else(|_| self.exit(&format!("{flag} needs a number")))
    }

    /// Prints `problem` (none for `--help`) and the usage line, and exits.
    pub fn exit(&self, problem: &str) -> ! {
        if !problem.is_empty() {
            eprintln!("{}: {problem}", self.name);
        }
        eprintln!("{}", self.usage);
        std::process::exit(if problem.is_empty() { 0 } else { 2 });
    }
}

/// Whether this process runs from `cargo bench` (which passes `--bench`); otherwise says that
/// `bench` is skipped. `cargo test --all-targets` runs bench targets too (without `--bench`, in
/// a debug build): the comparison only means something from `cargo bench`.
pub fn from_cargo_bench(bench: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("{bench}: skipped outside `cargo bench --bench {bench}`");
    }
    yes
}

/// CPUs, kernel, `software` (after the kernel) and load average.
pub fn machine(software: &[String]) -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut parts = vec![
        format!("{cpus} CPUs ({cpu})"),
        format!("Linux {}", read("/proc/sys/kernel/osrelease")),
    ];
    parts.extend(software.iter().cloned());
    parts.push(format!("load average {}", read("/proc/loadavg")));
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Successful calls per second of `op` run repeatedly for `dur`, the clock read every `every`
/// calls. `op(i)` makes call `i` and returns whether it succeeded (a failed call is not
/// counted), or `None` when it has no more work; the rate covers what ran.
pub fn timed(dur: Duration, every: u64, mut op: impl FnMut(u64) -> Option<bool>) -> f64 {
    let start = Instant::now();
    let mut ok = 0u64;
    let mut i = 0u64;
    'outer: loop {
        for _ in 0..every {
            match op(i) {
                None => break 'outer,
                Some(succeeded) => ok += u64::from(succeeded),
            }
            i += 1;
        }
        if start.elapsed() >= dur {
            break;
        }
    }
    ok as f64 / start.elapsed().as_secs_f64()
}

/// What [`threaded`] measured.
pub struct Threaded {
    /// Successful calls per second, all threads together.
    pub rate: f64,
    /// The smallest and the largest count of one thread (fairness).
    pub min: u64,
    pub max: u64,
}

/// Runs `op` on one thread per state, all at once, until `dur` has passed; `op` returns
/// whether its call succeeded (only those count).
pub fn threaded<S: Send>(
    dur: Duration,
    states: &mut [S],
    op: &(dyn Fn(&mut S) -> bool + Sync),
) -> Threaded {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(states.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter_mut()
            .map(|state| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if op(state) {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<u64> = handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect();
        let secs = start.elapsed().as_secs_f64();
        Threaded {
            rate: counts.iter().sum::<u64>() as f64 / secs,
            min: counts.iter().copied().min().unwrap_or(0),
            max: counts.iter().copied().max().unwrap_or(0),
        }
    })
}

/// Runs the two sides in this round's order; returns (orgdb's, the other side's).
pub fn in_order<T>(orgdb_first: bool, o: impl FnOnce() -> T, other: impl FnOnce() -> T) -> (T, T) {
    if orgdb_first {
        let a = o();
        (a, other())
    } else {
        let b = other();
        (o(), b)
    }
}

/// A durable flush (an fdatasync, a one-row commit) faster than ~0.67 ms: the disk's fast mode
/// (this kind of machine flushes in ~0.1-0.3 ms for minutes, then in ~2-4 ms for minutes).
pub const FAST_SYNCS_PER_SEC: f64 = 1500.0;

/// The disk's flush speed around a measurement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fast,
    Slow,
    /// Fast before and slow after, or the reverse.
    Mixed,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fast => "fast",
            Mode::Slow => "slow",
            Mode::Mixed => "mixed",
        }
    }
}

/// The disk's mode from the flush rates measured before and after.
pub fn mode_of(before: f64, after: f64) -> Mode {
    match (before >= FAST_SYNCS_PER_SEC, after >= FAST_SYNCS_PER_SEC) {
        (true, true) => Mode::Fast,
        (false, false) => Mode::Slow,
        _ => Mode::Mixed,
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A rate as the tables show it (`1.23 M`, `45.6 k`, `1.23 k`, `987`); `-` when not finite.
pub fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        "-".to_owned()
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.2} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// One workload's line of the table; `own` holds what only one harness records.
pub struct Row<X> {
    pub name: &'static str,
    pub unit: &'static str,
    /// (orgdb, the other side) per round; orgdb is NaN where only the other side runs.
    pub samples: Vec<(f64, f64)>,
    /// The disk's flush rate in each durable round (around a pair: the mean of the probes
    /// before and after it) and its mode.
    pub disk: Vec<(f64, Mode)>,
    pub note: String,
    pub own: X,
}

impl<X> Row<X> {
    pub fn with(name: &'static str, unit: &'static str, own: X) -> Row<X> {
        Row {
            name,
            unit,
            samples: Vec::new(),
            disk: Vec::new(),
            note: String::new(),
            own,
        }
    }

    /// orgdb's median rate.
    pub fn orgdb(&self) -> f64 {
        median(self.samples.iter().map(|s| s.0).collect())
    }

    /// The other side's median rate.
    pub fn other(&self) -> f64 {
        median(self.samples.iter().map(|s| s.1).collect())
    }

    /// orgdb / the other side, per round (finite ones only).
    pub fn ratios(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| s.0 / s.1)
            .filter(|r| r.is_finite())
            .collect()
    }

    /// The median of the per-round ratios.
    pub fn ratio(&self) -> f64 {
        median(self.ratios())
    }

    /// The median flush rate (empty without durable rounds).
    pub fn disk_rate(&self) -> String {
        if self.disk.is_empty() {
            return String::new();
        }
        fmt_rate(median(self.disk.iter().map(|d| d.0).collect()))
    }

    /// Rounds per disk mode, e.g. `fast 2, mixed 1` (empty without durable rounds).
    pub fn disk_modes(&self) -> String {
        let mut parts = Vec::new();
        for m in [Mode::Fast, Mode::Slow, Mode::Mixed] {
            let n = self.disk.iter().filter(|d| d.1 == m).count();
            if n > 0 {
                parts.push(format!("{} {n}", m.name()));
            }
        }
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures (the same data on both sides)

pub const USAGE_ORGS: usize = 64;
pub const USAGE_RES: usize = 8;
const MONTH_LIMIT: u64 = 1_000_000_000_000_000;
const ACCEPT_PER_ORG: usize = 150;
pub const REPORT_RESOURCES: usize = 100;
/// The report organization's monthly limit.
const REPORT_LIMIT: u64 = 10_000_000;

/// (organization id, its MCP resources' ids) of each usage organization.
pub type UsageOrgs = Vec<(String, Vec<String>)>;
/// (token, user id) of each pending invitation.
pub type Invites = Vec<(String, String)>;

/// Event `i` of the usage rotation: (org index, resource index).
pub fn rotation(i: u64) -> (usize, usize) {
    let i = i as usize;
    (i % USAGE_ORGS, (i / USAGE_ORGS) % USAGE_RES)
}

/// Requests of report resource `res` on day `day` of January 2026.
pub fn report_count(day: usize, res: usize) -> u64 {
    ((day * 7 + res * 13) % 50 + 1) as u64
}

/// The read fixtures' clock: stopped late on 31 January 2026, so every day of January can take
/// usage (events may be at most 35 days late); member joins advance it by 50 ms each.
pub fn reads_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 22, 0, 0).unwrap()
}

/// The first and last day of the report's month.
pub fn report_month() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2026, 1, 31).unwrap(),
    )
}

/// When day `day`'s report usage happened.
fn report_day(day: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day as u32, 10, 0, 0).unwrap()
}

/// The durable fixtures on orgdb, then a flush: [`USAGE_ORGS`] organizations with a monthly
/// limit of [`MONTH_LIMIT`] and [`USAGE_RES`] MCP resources each; `invitations` pending
/// invitations to users made for them, [`ACCEPT_PER_ORG`] an organization (with a seat limit
/// when `seats` is set).
pub fn odb_durable(db: &Db, invitations: usize, seats: Option<u64>) -> (UsageOrgs, Invites) {
    let owner = odb_user(db, "owner", 0);
    let mut usage = Vec::new();
    for i in 0..USAGE_ORGS {
        let org = odb_org(db, &owner.id, &format!("Usage Org {i}"), "enterprise");
        odb_month_limit(db, &org, MONTH_LIMIT);
        let res = (0..USAGE_RES)
            .map(|r| {
                db.register_resource(&Actor::System, &org, ResourceKind::Mcp, &format!("mcp {r}"))
                    .expect("register_resource")
                    .id
            })
            .collect();
        usage.push((org, res));
    }
    let mut accept = Vec::new();
    let mut n = 0;
    for i in 0..invitations.div_ceil(ACCEPT_PER_ORG).max(1) {
        let org = odb_org(db, &owner.id, &format!("Accept Org {i}"), "enterprise");
        if let Some(seats) = seats {
            let over = LimitOverrides {
                team_members: Some(Limit::Count(seats)),
                ..Default::default()
            };
            odb_limits(db, &org, over);
        }
        let mut users = Vec::new();
        let mut batch = Vec::new();
        for _ in 0..ACCEPT_PER_ORG.min(invitations - n) {
            let u = odb_user(db, "invitee", n);
            batch.push(NewInvitation {
                email: u.email.clone(),
                role: Some("member".to_owned()),
                ..Default::default()
            });
            users.push(u.id);
            n += 1;
        }
        let created = db
            .create_invitations(&Actor::user(&owner.id), &org, &batch)
            .expect("create_invitations");
        accept.extend(created.into_iter().map(|c| c.token).zip(users));
    }
    db.flush().expect("flush");
    (usage, accept)
}

/// The read organizations' ids on one side.
pub struct ReadOrgs {
    pub owner: String,
    /// The big organization (owned by `owner`).
    pub big: String,
    pub report_owner: String,
    /// The usage report's organization.
    pub report: String,
}

/// The read fixtures on orgdb, then a flush: an organization of `members` members, owner
/// included (every 100th an admin), joining 50 ms apart on `clock`; a report organization with
/// 4 members besides its owner, 3 pending invitations, a monthly limit and
/// [`REPORT_RESOURCES`] MCP resources with usage on every day of January 2026.
pub fn odb_reads(db: &Db, clock: &ManualClock, members: usize) -> ReadOrgs {
    let owner = odb_user(db, "bigowner", 0);
    let big = odb_org(db, &owner.id, "Big Org", "enterprise");
    for i in 1..members {
        clock.advance(TimeDelta::milliseconds(50));
        let u = odb_user(db, "member", i);
        let role = if i % 100 == 0 { "admin" } else { "member" };
        db.add_member(&Actor::System, &big, &u.id, role)
            .expect("add_member");
    }
    let rep_owner = odb_user(db, "reportowner", 0);
    let report = odb_org(db, &rep_owner.id, "Report Org", "enterprise");
    odb_month_limit(db, &report, REPORT_LIMIT);
    for i in 0..4 {
        let u = odb_user(db, "reportmember", i);
        db.add_member(&Actor::System, &report, &u.id, "member")
            .expect("add_member");
    }
    for i in 0..3 {
        odb_invite(
            db,
            &rep_owner.id,
            &report,
            format!("pending{i}@example.com"),
        );
    }
    let res: Vec<String> = (0..REPORT_RESOURCES)
        .map(|r| {
            db.register_resource(
                &Actor::System,
                &report,
                ResourceKind::Mcp,
                &format!("mcp server {r}"),
            )
            .expect("register_resource")
            .id
        })
        .collect();
    for day in 1..=31usize {
        let at = report_day(day);
        let events: Vec<UsageEvent> = res
            .iter()
            .enumerate()
            .map(|(r, id)| UsageEvent::new(report_count(day, r)).resource(id).at(at))
            .collect();
        db.record_usage_batch(&report, &events)
            .expect("record_usage_batch");
    }
    db.flush().expect("flush");
    ReadOrgs {
        owner: owner.id,
        big,
        report_owner: rep_owner.id,
        report,
    }
}

/// Overrides of (team members, monthly requests); `None`: the plan's.
pub type Overrides = (Option<i64>, Option<i64>);

/// The hand-written side's fixture writes (not timed).
pub trait Load {
    /// Returns the user's id.
    fn user(&mut self, email: &str, name: &str, at: DateTime<Utc>) -> String;
    /// An organization on the enterprise plan and its owner's membership; returns its id.
    fn org(&mut self, owner: &str, name: &str, ov: Overrides, at: DateTime<Utc>) -> String;
    fn member(&mut self, org: &str, user: &str, role: &str, at: DateTime<Utc>);
    /// A pending invitation (7 days); returns its token.
    fn invitation(&mut self, org: &str, inviter: &str, email: &str, at: DateTime<Utc>) -> String;
    /// An MCP resource; returns its id.
    fn mcp(&mut self, org: &str, name: &str, at: DateTime<Utc>) -> String;
    /// `n` requests of `resource` at `at`.
    fn usage(&mut self, org: &str, resource: &str, n: i64, at: DateTime<Utc>);
}

/// [`odb_durable`]'s data on the hand-written side, every row at `now`.
pub fn load_durable(
    l: &mut impl Load,
    now: DateTime<Utc>,
    invitations: usize,
    seats: Option<u64>,
) -> (UsageOrgs, Invites) {
    let owner = l.user("owner0@example.com", "owner user 0", now);
    let month = (None, Some(MONTH_LIMIT as i64));
    let mut usage = Vec::new();
    for i in 0..USAGE_ORGS {
        let org = l.org(&owner, &format!("Usage Org {i}"), month, now);
        let res = (0..USAGE_RES)
            .map(|r| l.mcp(&org, &format!("mcp {r}"), now))
            .collect();
        usage.push((org, res));
    }
    let mut accept = Vec::new();
    let mut n = 0;
    let seats = (seats.map(|s| s as i64), None);
    for i in 0..invitations.div_ceil(ACCEPT_PER_ORG).max(1) {
        let org = l.org(&owner, &format!("Accept Org {i}"), seats, now);
        for _ in 0..ACCEPT_PER_ORG.min(invitations - n) {
            let email = format!("invitee{n}@example.com");
            let user = l.user(&email, &format!("invitee user {n}"), now);
            let token = l.invitation(&org, &owner, &email, now);
            accept.push((token, user));
            n += 1;
        }
    }
    (usage, accept)
}

/// [`odb_reads`]'s data on the hand-written side, the same timestamps from [`reads_start`];
/// also returns the time of the last member's join.
pub fn load_reads(l: &mut impl Load, members: usize) -> (ReadOrgs, DateTime<Utc>) {
    let mut t = reads_start();
    let owner = l.user("bigowner0@example.com", "bigowner user 0", t);
    let big = l.org(&owner, "Big Org", (None, None), t);
    for i in 1..members {
        t += TimeDelta::milliseconds(50);
        let u = l.user(
            &format!("member{i}@example.com"),
            &format!("member user {i}"),
            t,
        );
        let role = if i % 100 == 0 { "admin" } else { "member" };
        l.member(&big, &u, role, t);
    }
    let report_owner = l.user("reportowner0@example.com", "reportowner 0", t);
    let ov = (None, Some(REPORT_LIMIT as i64));
    let report = l.org(&report_owner, "Report Org", ov, t);
    for i in 0..4 {
        let u = l.user(
            &format!("reportmember{i}@example.com"),
            &format!("reportmember {i}"),
            t,
        );
        l.member(&report, &u, "member", t);
    }
    for i in 0..3 {
        l.invitation(
            &report,
            &report_owner,
            &format!("pending{i}@example.com"),
            t,
        );
    }
    let res: Vec<String> = (0..REPORT_RESOURCES)
        .map(|r| l.mcp(&report, &format!("mcp server {r}"), t))
        .collect();
    for day in 1..=31usize {
        for (r, id) in res.iter().enumerate() {
            l.usage(&report, id, report_count(day, r) as i64, report_day(day));
        }
    }
    let orgs = ReadOrgs {
        owner,
        big,
        report_owner,
        report,
    };
    (orgs, t)
}

// ---------------------------------------------------------------------------------------------
// orgdb helpers

pub fn odb_user(db: &Db, tag: &str, i: usize) -> User {
    db.create_user(&NewUser {
        email: format!("{tag}{i}@example.com"),
        name: format!("{tag} user {i}"),
    })
    .expect("create_user")
}

/// Returns the organization's id.
pub fn odb_org(db: &Db, owner: &str, name: &str, plan: &str) -> String {
    db.create_organization(
        owner,
        &NewOrganization {
            name: name.to_owned(),
            plan: Some(plan.to_owned()),
            ..Default::default()
        },
    )
    .expect("create_organization")
    .organization
    .id
}

/// A pending invitation to `email` (the default role) from `inviter`.
pub fn odb_invite(db: &Db, inviter: &str, org: &str, email: String) {
    db.create_invitation(
        &Actor::user(inviter),
        org,
        &NewInvitation {
            email,
            ..Default::default()
        },
    )
    .expect("create_invitation");
}

fn odb_limits(db: &Db, org: &str, over: LimitOverrides) {
    db.set_limit_overrides(&Actor::System, org, &over.into())
        .expect("set_limit_overrides");
}

fn odb_month_limit(db: &Db, org: &str, n: u64) {
    let over = LimitOverrides {
        monthly_requests: Some(Limit::Count(n)),
        ..Default::default()
    };
    odb_limits(db, org, over);
}

/// Default options (or with `clock`) but eventual durability: for loading fixtures.
pub fn eventual(clock: Option<ManualClock>) -> Options {
    let mut opts = match clock {
        Some(c) => Options::with_clock(c),
        None => Options::default(),
    };
    opts.durability = Durability::Eventual;
    opts
}

// ---------------------------------------------------------------------------------------------
// The hand-written side

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// 32 random bytes in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the invitations table stores of a token: its SHA-256.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The month counter's key: `yyyymm`.
pub fn month_of(t: DateTime<Utc>) -> i32 {
    t.year() * 100 + t.month() as i32
}

/// `name` lowercased, every character but ASCII letters and digits made `-`.
pub fn slug_of(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect()
}

pub fn role_of(text: &str) -> Role {
    text.parse().expect("role text")
}

/// Plan limits with the per-organization overrides (NULL: the plan's; -1: unlimited).
pub fn effective_limits(plans: &PlanCatalog, plan: &str, ov: [Option<i64>; 4]) -> Limits {
    let base = plans.limits(plan).unwrap_or_default();
    let pick = |o: Option<i64>, b: Option<u64>| match o {
        None => b,
        Some(-1) => None,
        Some(n) => Some(n as u64),
    };
    Limits {
        mcps: pick(ov[0], base.mcps),
        api_keys: pick(ov[1], base.api_keys),
        team_members: pick(ov[2], base.team_members),
        monthly_requests: pick(ov[3], base.monthly_requests),
    }
}

pub fn receipt(duplicate: bool, used: u64, limit: Option<u64>) -> lo::UsageReceipt {
    lo::UsageReceipt {
        duplicate,
        used,
        limit,
        remaining: limit.map(|l| l.saturating_sub(used)),
    }
}

/// Adds `n` to `resource`'s sum (the empty id, usage without a resource, has none).
pub fn add_usage(sums: &mut HashMap<String, u64>, resource: &str, n: u64) {
    if resource.is_empty() {
        return;
    }
    match sums.get_mut(resource) {
        Some(sum) => *sum += n,
        None => {
            sums.insert(resource.to_owned(), n);
        }
    }
}

/// A month report's per-resource totals, by kind.
#[derive(Default)]
pub struct ByResource {
    by_mcp: Vec<lo::ResourceUsage>,
    by_api_key: Vec<lo::ApiKeyUsage>,
}

impl ByResource {
    pub fn push(&mut self, id: String, name: String, kind: &str, requests: u64) {
        if kind == "mcp" {
            self.by_mcp.push(lo::ResourceUsage {
                mcp_id: id,
                name,
                requests,
            });
        } else {
            self.by_api_key.push(lo::ApiKeyUsage {
                api_key_id: id,
                name,
                requests,
            });
        }
    }
}

/// One counter per day from `first` to `last`.
pub fn day_slots(first: NaiveDate, last: NaiveDate) -> Vec<u64> {
    vec![0u64; (last - first).num_days() as usize + 1]
}

/// The month report from its sums: `per_day[i]` is day `first + i`'s; resources sorted by
/// requests (most first), then id.
pub fn report_of(
    first: NaiveDate,
    last: NaiveDate,
    limit: Option<u64>,
    per_day: Vec<u64>,
    by: ByResource,
) -> lo::UsageReport {
    let ByResource {
        mut by_mcp,
        mut by_api_key,
    } = by;
    by_mcp.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.mcp_id.cmp(&b.mcp_id))
    });
    by_api_key.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.api_key_id.cmp(&b.api_key_id))
    });
    let total: u64 = per_day.iter().sum();
    let by_day = per_day
        .iter()
        .enumerate()
        .map(|(i, n)| lo::DayUsage {
            date: first + TimeDelta::days(i as i64),
            requests: *n,
        })
        .collect();
    lo::UsageReport {
        period: Period::Month,
        start_date: first.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
        end_date: last.and_hms_opt(23, 59, 59).expect("end").and_utc(),
        requests: lo::RequestTotals {
            total,
            limit,
            percentage: limit.filter(|l| *l > 0).map(|l| total * 100 / l),
        },
        by_mcp,
        by_api_key,
        by_day,
    }
}

/// What the hand-written side returns: the fields of orgdb's output types, owned the same way
/// (those types are `#[non_exhaustive]`, so no crate but orgdb builds them). The comparison is
/// fair when both sides build the same data. `dead_code` is allowed here: most fields are built
/// and never read, and `Invitation` serves the SQLite side only.
#[allow(dead_code)]
pub mod lo {
    use std::collections::BTreeMap;

    use chrono::{DateTime, NaiveDate, Utc};
    use orgdb::{InvitationStatus, Limits, OrganizationSettings, Period, Role};

    #[derive(Debug)]
    pub struct Member {
        pub id: String,
        pub membership_id: String,
        pub email: String,
        pub name: String,
        pub role: Role,
        pub joined_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub last_active: Option<DateTime<Utc>>,
    }

    #[derive(Debug)]
    pub struct Membership {
        pub id: String,
        pub organization_id: String,
        pub user_id: String,
        pub role: Role,
        pub joined_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Debug)]
    pub struct Pagination {
        pub page: u32,
        pub per_page: u32,
        pub total: u64,
        pub total_pages: u64,
    }

    #[derive(Debug)]
    pub struct Page<T> {
        pub data: Vec<T>,
        pub pagination: Pagination,
        pub next_cursor: Option<String>,
    }

    impl<T> Page<T> {
        /// Page `page` of `per_page` rows out of `total`.
        pub fn new(
            data: Vec<T>,
            page: u32,
            per_page: u32,
            total: u64,
            next_cursor: Option<String>,
        ) -> Page<T> {
            Page {
                data,
                pagination: Pagination {
                    page,
                    per_page,
                    total,
                    total_pages: total.div_ceil(u64::from(per_page)),
                },
                next_cursor,
            }
        }
    }

    #[derive(Debug)]
    pub struct Invitation {
        pub id: String,
        pub organization_id: String,
        pub email: String,
        pub role: Role,
        pub project_id: Option<String>,
        pub project_role: Option<Role>,
        pub status: InvitationStatus,
        pub invited_by: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub accepted_at: Option<DateTime<Utc>>,
    }

    #[derive(Debug)]
    pub struct UsageReceipt {
        pub duplicate: bool,
        pub used: u64,
        pub limit: Option<u64>,
        pub remaining: Option<u64>,
    }

    #[derive(Debug)]
    pub struct Organization {
        pub id: String,
        pub name: String,
        pub slug: String,
        pub external_id: Option<String>,
        pub description: Option<String>,
        pub plan: String,
        pub address_line1: Option<String>,
        pub address_line2: Option<String>,
        pub city: Option<String>,
        pub state: Option<String>,
        pub zipcode: Option<String>,
        pub country: Option<String>,
        pub settings: OrganizationSettings,
        pub metadata: BTreeMap<String, String>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Debug)]
    pub struct Usage {
        pub mcps: u64,
        pub api_keys: u64,
        pub team_members: u64,
        pub monthly_requests: u64,
    }

    #[derive(Debug)]
    pub struct OrganizationDetails {
        pub organization: Organization,
        pub limits: Limits,
        pub usage: Usage,
    }

    #[derive(Debug)]
    pub struct ResourceUsage {
        pub mcp_id: String,
        pub name: String,
        pub requests: u64,
    }

    #[derive(Debug)]
    pub struct ApiKeyUsage {
        pub api_key_id: String,
        pub name: String,
        pub requests: u64,
    }

    #[derive(Debug)]
    pub struct DayUsage {
        pub date: NaiveDate,
        pub requests: u64,
    }

    #[derive(Debug)]
    pub struct RequestTotals {
        pub total: u64,
        pub limit: Option<u64>,
        pub percentage: Option<u64>,
    }

    #[derive(Debug)]
    pub struct UsageReport {
        pub period: Period,
        pub start_date: DateTime<Utc>,
        pub end_date: DateTime<Utc>,
        pub requests: RequestTotals,
        pub by_mcp: Vec<ResourceUsage>,
        pub by_api_key: Vec<ApiKeyUsage>,
        pub by_day: Vec<DayUsage>,
    }
}
