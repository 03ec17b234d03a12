//! orgdb on PostgreSQL against hand-written SQL doing the same operations on the same server.
//!
//! ```sh
//! scripts/pg-server.sh run --durable -- cargo bench --bench postgres                 # 3 rounds
//! scripts/pg-server.sh run --durable -- cargo bench --bench postgres -- --quick      # 1 short round
//! scripts/pg-server.sh run --durable -- cargo bench --bench postgres -- --workload get_organization,usage_report
//! scripts/pg-server.sh run --durable -- cargo bench --bench postgres -- --rounds 5
//! cargo bench --bench postgres -- --list                                             # workload names
//! ```
//!
//! Other flags: `--keep` (leave both schemas on the server), `--no-count` (skip the
//! statement-counting pass). `PG_EXPLAIN=1` prints the server's plans of the SQL side's member
//! page and usage report after the fixtures are built.
//!
//! The server is `ORGDB_TEST_POSTGRES_URL` (`scripts/pg-server.sh run --durable` sets it and
//! runs PostgreSQL with `fsync` and `synchronous_commit` on, as production would). orgdb works
//! in a fresh schema `bench_orgdb_<pid>` (`Db::open("postgres://…?schema=…")`, default options:
//! commits wait for the server's `synchronous_commit`); the hand-written side in
//! `bench_sql_<pid>`, a schema a careful engineer would write for the same data ([`SCHEMA`]),
//! through one `postgres::Client` per thread with every statement prepared once per
//! connection. Both sides use the same server, the same durability and the same data.
//!
//! Every workload runs in rounds; inside a round each workload runs orgdb then SQL (the order
//! flips every round). The table shows the median over rounds of each side's rate and the
//! median of the per-round ratios. Before the rounds, a counting pass runs each operation a
//! few times on each side through a local TCP relay that counts the protocol messages the
//! client sends (Execute / Query / Parse): statements per call, and round trips per call (the
//! times the client sent after the server had answered: statements pipelined together are one
//! round trip). When
//! `ORGDB_TEST_POSTGRES_DATA` names the server's directory, the ERROR lines its `server.log`
//! gained while each side ran (serialization failures that orgdb retried, for instance) are
//! counted too.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use common::{
    add_usage, day_slots, effective_limits, eventual, fmt_rate, from_cargo_bench, in_order, lo,
    load_durable, load_reads, machine, median, mode_of, month_of, new_id, new_token, odb_durable,
    odb_reads, reads_start, receipt, report_count, report_month, report_of, role_of, rotation,
    slug_of, token_hash, ByResource, Cli, Invites, Load, Overrides, ReadOrgs, Threaded, UsageOrgs,
    REPORT_RESOURCES, USAGE_ORGS, USAGE_RES,
};
use orgdb::{
    Actor, Db, ManualClock, MemberQuery, Options, OrganizationSettings, Period, PlanCatalog,
    UsageEvent, UsageQuery,
};
use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};

// ---------------------------------------------------------------------------------------------
// Command line

const WORKLOADS: &[(&str, &str)] = &[
    (
        "baseline",
        "PostgreSQL alone, 1 thread: a prepared SELECT 1 (one round trip) and a one-row UPDATE \
         in autocommit (one durable commit)",
    ),
    (
        "record_usage_1t",
        "durable record_usage with an idempotency key, 1 thread, 64 orgs x 8 MCP resources, \
         monthly limit set",
    ),
    (
        "record_usage_1t_nokey",
        "the same events without idempotency keys",
    ),
    (
        "record_usage_16t",
        "16 threads (one Db clone / one connection each), keyed, spread over the 64 orgs",
    ),
    (
        "record_usage_16t_1org",
        "16 threads, keyed, every event on one organization (its 8 resources)",
    ),
    (
        "usage_4proc_1org",
        "4 processes x 4 threads (each process its own Db / connections), keyed, one \
         organization",
    ),
    (
        "buffered_leases_4proc",
        "orgdb only: 4 processes each recording through a UsageRecorder (leases) on one \
         organization with a monthly limit; events/s per process, the stored total checked",
    ),
    (
        "accept_invitation",
        "durable accept_invitation (membership, seat check, counters, invitation, 2 audit rows)",
    ),
    (
        "list_members_page1",
        "list_members page 1 (20 rows + total) of a 2 000-member organization",
    ),
    (
        "list_members_deep",
        "list_members page 91 by offset (rows 1 801-1 820) of the same organization",
    ),
    (
        "get_organization",
        "get_organization with limits and the four live usage counts",
    ),
    (
        "usage_report",
        "usage_report for a month, 100 MCP resources with usage every day",
    ),
];

/// What only this harness sets.
struct ConfigOwn {
    /// Run the statement-counting pass (`--no-count`: skip it).
    count: bool,
}

type Config = common::Config<ConfigOwn>;

const CLI: Cli = Cli {
    name: "postgres bench",
    usage:
        "usage: scripts/pg-server.sh run --durable -- cargo bench --bench postgres -- [--quick] \
            [--rounds N] [--workload NAME[,NAME]] [--keep] [--no-count] [--list]",
    workloads: WORKLOADS,
};

impl Config {
    fn from_args() -> Config {
        let defaults = Config {
            rounds: 3,
            durable: Duration::from_millis(1000),
            read: Duration::from_millis(500),
            probe: Duration::from_millis(200),
            accept_per_round: 2000,
            only: Vec::new(),
            keep: false,
            own: ConfigOwn { count: true },
        };
        CLI.parse(defaults, |cfg, flag, _| {
            match flag {
                "--quick" => {
                    cfg.rounds = 1;
                    cfg.durable = Duration::from_millis(400);
                    cfg.read = Duration::from_millis(200);
                    cfg.probe = Duration::from_millis(100);
                    cfg.accept_per_round = 800;
                }
                "--no-count" => cfg.own.count = false,
                _ => return false,
            }
            true
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Failed calls of one side of one workload (they are not counted in its rate).
#[derive(Default)]
struct Errors {
    n: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    fn add(&self, e: String) {
        self.n.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
    }

    /// Whether `r` is a success; a failure is counted.
    fn ok(&self, r: Outcome) -> bool {
        r.map_err(|e| self.add(e)).is_ok()
    }

    fn describe(&self) -> Option<String> {
        let n = self.n.load(Ordering::Relaxed);
        (n > 0).then(|| {
            let first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            format!("{n} failed (first: {})", first.as_deref().unwrap_or("?"))
        })
    }
}

type Outcome = Result<(), String>;

/// [`common::timed`] reading the clock after every call; failed calls go to `errs`.
fn timed(dur: Duration, errs: &Errors, mut op: impl FnMut(u64) -> Option<Outcome>) -> f64 {
    common::timed(dur, 1, |i| op(i).map(|r| errs.ok(r)))
}

/// [`common::threaded`]; failed calls go to `errs`.
fn threaded<S: Send>(
    dur: Duration,
    states: &mut [S],
    errs: &Errors,
    op: &(dyn Fn(&mut S) -> Outcome + Sync),
) -> Threaded {
    common::threaded(dur, states, &|state| errs.ok(op(state)))
}

/// The server's log (`$ORGDB_TEST_POSTGRES_DATA/server.log`, written by `scripts/pg-server.sh`):
/// the ERROR lines it gains while one side runs.
struct ServerLog {
    path: PathBuf,
}

impl ServerLog {
    fn find() -> Option<ServerLog> {
        let dir = std::env::var_os("ORGDB_TEST_POSTGRES_DATA")?;
        let path = PathBuf::from(dir).join("server.log");
        std::fs::File::open(&path).ok()?;
        Some(ServerLog { path })
    }

    fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// ERROR messages (first 80 characters) written since `mark`, with their counts.
    fn errors_since(&self, mark: u64) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return out;
        };
        let mut text = String::new();
        if f.seek(SeekFrom::Start(mark)).is_err() || f.read_to_string(&mut text).is_err() {
            return out;
        }
        for line in text.lines() {
            if let Some((_, msg)) = line.split_once("ERROR:") {
                let msg: String = msg.trim().chars().take(80).collect();
                *out.entry(msg).or_insert(0) += 1;
            }
        }
        out
    }
}

/// Durable commits per second of a one-row UPDATE in autocommit (one round trip, one WAL
/// flush): the ceiling of a one-thread durable transaction right now.
fn commit_probe(c: &mut SqlConn, dur: Duration) -> f64 {
    let e = Errors::default();
    let SqlConn { c, s } = c;
    timed(dur, &e, |_| Some(done(c.execute(&s.probe, &[]))))
}

/// A server call's outcome, its value dropped.
fn done<T>(r: Result<T, postgres::Error>) -> Outcome {
    r.map(|_| ()).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Counting statements: a TCP relay between a client and the server

mod wire {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    /// Frontend messages seen, by type.
    #[derive(Default)]
    pub struct Counters {
        execute: AtomicU64,
        query: AtomicU64,
        exchanges: AtomicU64,
        parse: AtomicU64,
    }

    #[derive(Clone, Copy, Default, Debug)]
    pub struct Snapshot {
        /// Extended-protocol statements run (`Execute`).
        pub execute: u64,
        /// Simple-protocol queries (`Query`: BEGIN / START TRANSACTION, COMMIT, SET).
        pub query: u64,
        /// Round trips: the times a client sent after the server had sent to it (statements
        /// sent together, a pipeline, are one).
        pub exchanges: u64,
        /// Statements prepared (`Parse`).
        pub parse: u64,
    }

    impl Snapshot {
        pub fn since(self, before: Snapshot) -> Snapshot {
            Snapshot {
                execute: self.execute - before.execute,
                query: self.query - before.query,
                exchanges: self.exchanges - before.exchanges,
                parse: self.parse - before.parse,
            }
        }

        pub fn statements(&self) -> u64 {
            self.execute + self.query
        }

        pub fn round_trips(&self) -> u64 {
            self.exchanges
        }
    }

    impl Counters {
        pub fn snapshot(&self) -> Snapshot {
            Snapshot {
                execute: self.execute.load(Ordering::SeqCst),
                query: self.query.load(Ordering::SeqCst),
                exchanges: self.exchanges.load(Ordering::SeqCst),
                parse: self.parse.load(Ordering::SeqCst),
            }
        }
    }

    pub struct Proxy {
        pub port: u16,
        pub counters: Arc<Counters>,
    }

    /// Listens on a free local port and relays every connection to `target` (`host:port`),
    /// counting what clients send. Runs until the process ends.
    pub fn start(target: String) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(client_back), Ok(server_back)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let counters = shared.clone();
                // Set when the server sent something since the client last did.
                let answered = Arc::new(AtomicBool::new(true));
                let heard = answered.clone();
                std::thread::spawn(move || relay_counted(client, server, &counters, &answered));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match (&server_back).read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        heard.store(true, Ordering::SeqCst);
                        if (&client_back).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client_back.shutdown(Shutdown::Write);
                });
            }
        });
        Ok(Proxy { port, counters })
    }

    /// SSLRequest and GSSENCRequest: start-up messages after which another one follows.
    const SSL_REQUEST: u32 = 80_877_103;
    const GSS_REQUEST: u32 = 80_877_104;

    fn relay_counted(
        mut from: TcpStream,
        mut to: TcpStream,
        counters: &Counters,
        answered: &AtomicBool,
    ) {
        let mut buf = [0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut startup = true;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if answered.swap(false, Ordering::SeqCst) {
                counters.exchanges.fetch_add(1, Ordering::SeqCst);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            let mut at = 0;
            loop {
                let rest = &pending[at..];
                if startup {
                    if rest.len() < 8 {
                        break;
                    }
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    let len = len.max(8);
                    if rest.len() < len {
                        break;
                    }
                    let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                    if code != SSL_REQUEST && code != GSS_REQUEST {
                        startup = false;
                    }
                    at += len;
                } else {
                    if rest.len() < 5 {
                        break;
                    }
                    let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                    let total = 1 + len.max(4);
                    if rest.len() < total {
                        break;
                    }
                    let slot = match rest[0] {
                        b'E' => Some(&counters.execute),
                        b'Q' => Some(&counters.query),
                        b'P' => Some(&counters.parse),
                        _ => None,
                    };
                    if let Some(slot) = slot {
                        slot.fetch_add(1, Ordering::SeqCst);
                    }
                    at += total;
                }
            }
            pending.drain(..at);
        }
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// `url` with its host and port replaced by `127.0.0.1:port` (the relay), or `None` for a URL
/// this cannot rewrite (a Unix socket in `host=`).
fn via_port(url: &str, port: u16) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains("host=") {
        return None;
    }
    let user = authority.rsplit_once('@').map(|(u, _)| u);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return None;
    }
    Some(match user {
        Some(u) => format!("{scheme}://{u}@127.0.0.1:{port}{tail}"),
        None => format!("{scheme}://127.0.0.1:{port}{tail}"),
    })
}

/// `host:port` of a URL's server.
fn target_of(url: &str) -> Option<String> {
    let config: postgres::Config = url.parse().ok()?;
    let host = match config.get_hosts().first()? {
        postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some(format!("{host}:{port}"))
}

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

// ---------------------------------------------------------------------------------------------
// Results

/// One side of a row: its failed calls and the server's ERROR lines while it ran.
#[derive(Default)]
struct Side {
    err: Errors,
    log: BTreeMap<String, u64>,
}

impl Side {
    /// Runs `f`, counting its failed calls and the server's ERROR lines meanwhile.
    fn run(&mut self, log: Option<&ServerLog>, f: &mut dyn FnMut(&Errors) -> f64) -> f64 {
        let mark = log.map(ServerLog::mark);
        let rate = f(&self.err);
        if let (Some(log), Some(mark)) = (log, mark) {
            for (msg, n) in log.errors_since(mark) {
                *self.log.entry(msg).or_insert(0) += n;
            }
        }
        rate
    }
}

/// One round: its index, which side runs first, the server log.
#[derive(Clone, Copy)]
struct Turn<'a> {
    round: usize,
    orgdb_first: bool,
    log: Option<&'a ServerLog>,
}

/// What only this harness records of a row.
#[derive(Default)]
struct RowOwn {
    orgdb: Side,
    sql: Side,
    /// Protocol messages per call from the counting pass: (orgdb, SQL, calls).
    counts: Option<(wire::Snapshot, wire::Snapshot, u64)>,
}

type Row = common::Row<RowOwn>;

impl Row {
    fn new(name: &'static str, unit: &'static str) -> Row {
        Row::with(name, unit, RowOwn::default())
    }

    fn push(&mut self, round: usize, orgdb: f64, sql: f64) {
        if orgdb.is_finite() {
            let disk = match self.disk.get(self.samples.len()) {
                Some((rate, mode)) => {
                    format!("  commit probe {}/s ({})", fmt_rate(*rate), mode.name())
                }
                None => String::new(),
            };
            println!(
                "round {:>2}  {:<22} orgdb {:>9}/s  SQL {:>9}/s  ratio {:>6.3}{disk}",
                round + 1,
                self.name,
                fmt_rate(orgdb),
                fmt_rate(sql),
                orgdb / sql,
            );
        } else {
            println!(
                "round {:>2}  {:<22} PostgreSQL {:>9}/s",
                round + 1,
                self.name,
                fmt_rate(sql)
            );
        }
        let _ = std::io::stdout().flush();
        self.samples.push((orgdb, sql));
    }

    /// [`Row::measure`] between two commit probes (durable workloads).
    fn measure_durable(
        &mut self,
        turn: Turn,
        probe: &mut dyn FnMut() -> f64,
        o: &mut dyn FnMut(&Errors) -> f64,
        s: &mut dyn FnMut(&Errors) -> f64,
    ) {
        let before = probe();
        let (a, b) = self.pair(turn, o, s);
        let after = probe();
        self.disk
            .push(((before + after) / 2.0, mode_of(before, after)));
        self.push(turn.round, a, b);
    }

    /// Both sides in this round's order, each counting its failures and server errors.
    fn pair(
        &mut self,
        turn: Turn,
        o: &mut dyn FnMut(&Errors) -> f64,
        s: &mut dyn FnMut(&Errors) -> f64,
    ) -> (f64, f64) {
        let RowOwn { orgdb, sql, .. } = &mut self.own;
        let log = turn.log;
        in_order(turn.orgdb_first, || orgdb.run(log, o), || sql.run(log, s))
    }

    fn disk(&self) -> String {
        if self.disk.is_empty() {
            return String::new();
        }
        format!("{} ({})", self.disk_rate(), self.disk_modes())
    }

    /// Both sides in this round's order; records the sample.
    fn measure(
        &mut self,
        turn: Turn,
        o: &mut dyn FnMut(&Errors) -> f64,
        s: &mut dyn FnMut(&Errors) -> f64,
    ) {
        let (a, b) = self.pair(turn, o, s);
        self.push(turn.round, a, b);
    }

    fn range(&self) -> String {
        let r = self.ratios();
        if r.len() < 2 {
            return String::new();
        }
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.3}..{hi:.3}")
    }

    fn per_call(&self, pick: fn(&wire::Snapshot) -> u64) -> String {
        match &self.own.counts {
            Some((o, s, n)) => {
                let n = (*n).max(1) as f64;
                format!("{:.1} / {:.1}", pick(o) as f64 / n, pick(s) as f64 / n)
            }
            None => String::new(),
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| workload | unit | orgdb | SQL | orgdb/SQL | per-round ratios | statements/call (orgdb / SQL) | round trips/call (orgdb / SQL) | commit probe/s (disk mode, rounds) |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---:|---|");
    let simple = |r: &Row| {
        r.own.counts.as_ref().map(|(o, s, n)| {
            let n = (*n).max(1) as f64;
            (o.query as f64 / n, s.query as f64 / n)
        })
    };
    for r in rows {
        if r.samples.is_empty() {
            continue;
        }
        if !r.orgdb().is_finite() {
            println!(
                "| {} | {} | - | {} | - | | | | |",
                r.name,
                r.unit,
                fmt_rate(r.other())
            );
            continue;
        }
        println!(
            "| {} | {} | {} | {} | **{:.3}** | {} | {} | {} | {} |",
            r.name,
            r.unit,
            fmt_rate(r.orgdb()),
            fmt_rate(r.other()),
            r.ratio(),
            r.range(),
            r.per_call(wire::Snapshot::statements),
            r.per_call(wire::Snapshot::round_trips),
            r.disk(),
        );
    }
    println!();
    println!(
        "Statements: Execute + Query messages the client sent (BEGIN / START TRANSACTION and \
         COMMIT count); round trips: the times the client sent after the server had answered \
         (statements pipelined together are one). From the counting pass through the relay; \
         the 16-thread rows ran 16 threads at once there too."
    );
    let mut notes = Vec::new();
    for r in rows.iter().filter(|r| !r.samples.is_empty()) {
        if !r.note.is_empty() {
            notes.push(format!("{}: {}", r.name, r.note));
        }
        if let (Some((o, s, _)), Some((oq, sq))) = (&r.own.counts, simple(r)) {
            notes.push(format!(
                "{}: simple-protocol queries per call (BEGIN / START TRANSACTION, COMMIT, \
                 ROLLBACK; 2 per transaction): orgdb {oq:.2}, SQL {sq:.2}",
                r.name
            ));
            if o.parse + s.parse > 0 {
                notes.push(format!(
                    "{}: statements prepared during the counted calls: orgdb {}, SQL {}",
                    r.name, o.parse, s.parse
                ));
            }
        }
        for (side, Side { err, log }) in [("orgdb", &r.own.orgdb), ("SQL", &r.own.sql)] {
            if let Some(e) = err.describe() {
                notes.push(format!("{}: {side} calls {e}", r.name));
            }
            if !log.is_empty() {
                let lines: Vec<String> =
                    log.iter().map(|(m, n)| format!("{n} x \"{m}\"")).collect();
                notes.push(format!(
                    "{}: server ERROR lines while {side} ran (all rounds): {}",
                    r.name,
                    lines.join("; ")
                ));
            }
        }
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The hand-written side: the schema a careful engineer would write for the same product

/// Ported from `benches/compare.rs`'s SQLite schema: stored member and resource counters on
/// the organization row, the member indexes a page and a role filter need, partial unique
/// indexes for pending invitations, month and (day, resource) usage counters, idempotency
/// keys, and one audit table numbered by an identity column.
const SCHEMA: &str = r#"
CREATE TABLE users(
  id TEXT COLLATE "C" PRIMARY KEY, email TEXT COLLATE "C" NOT NULL UNIQUE, name TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL, last_active TIMESTAMPTZ);
CREATE TABLE orgs(
  id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL, slug TEXT COLLATE "C" NOT NULL UNIQUE,
  external_id TEXT COLLATE "C" UNIQUE, description TEXT, plan TEXT NOT NULL,
  address_line1 TEXT, address_line2 TEXT, city TEXT, state TEXT, zipcode TEXT, country TEXT,
  settings JSONB NOT NULL, metadata JSONB NOT NULL,
  ov_mcps BIGINT, ov_api_keys BIGINT, ov_team_members BIGINT, ov_monthly_requests BIGINT,
  member_count BIGINT NOT NULL DEFAULT 0, mcps BIGINT NOT NULL DEFAULT 0,
  api_keys BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE memberships(
  org_id TEXT COLLATE "C" NOT NULL, user_id TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL UNIQUE, role TEXT NOT NULL,
  joined_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY(org_id, user_id));
CREATE INDEX members_by_join ON memberships(org_id, joined_at, user_id);
CREATE INDEX members_by_role ON memberships(org_id, role, joined_at, user_id);
CREATE INDEX memberships_by_user ON memberships(user_id, org_id);
CREATE TABLE invitations(
  id TEXT COLLATE "C" PRIMARY KEY, org_id TEXT COLLATE "C" NOT NULL,
  email TEXT COLLATE "C" NOT NULL, role TEXT NOT NULL,
  project_id TEXT COLLATE "C", project_role TEXT, status TEXT NOT NULL, invited_by TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL, accepted_at TIMESTAMPTZ,
  token_hash BYTEA NOT NULL UNIQUE, lifetime_secs BIGINT NOT NULL);
CREATE INDEX invitations_by_org ON invitations(org_id, created_at, id);
CREATE UNIQUE INDEX pending_by_org_email ON invitations(org_id, email) WHERE status = 'pending';
CREATE INDEX pending_by_email ON invitations(email) WHERE status = 'pending';
CREATE TABLE resources(
  id TEXT COLLATE "C" PRIMARY KEY, org_id TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL,
  name TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, removed_at TIMESTAMPTZ);
CREATE INDEX resources_by_org ON resources(org_id, kind);
CREATE TABLE usage_month(
  org_id TEXT COLLATE "C" NOT NULL, month INTEGER NOT NULL, total BIGINT NOT NULL,
  PRIMARY KEY(org_id, month));
CREATE TABLE usage_day(
  org_id TEXT COLLATE "C" NOT NULL, day DATE NOT NULL, resource_id TEXT COLLATE "C" NOT NULL,
  requests BIGINT NOT NULL,
  PRIMARY KEY(org_id, day, resource_id));
CREATE TABLE idempotency_keys(
  org_id TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
  recorded_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY(org_id, key));
CREATE TABLE audit(
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL,
  actor TEXT NOT NULL, org_id TEXT COLLATE "C", action TEXT NOT NULL, target TEXT NOT NULL,
  details JSONB NOT NULL);
CREATE INDEX audit_by_org ON audit(org_id, seq);
CREATE TABLE probe(id INTEGER PRIMARY KEY, v BIGINT NOT NULL);
INSERT INTO probe VALUES (1, 0);
"#;

/// Why the SQL side refused a call (the orgdb error it stands for), or a server error.
#[derive(Debug)]
enum OpError {
    NotFound(&'static str),
    Forbidden(&'static str),
    Conflict(&'static str),
    Expired,
    Quota {
        quota: &'static str,
        limit: u64,
        used: u64,
        requested: u64,
    },
    Pg(postgres::Error),
}

impl From<postgres::Error> for OpError {
    fn from(e: postgres::Error) -> OpError {
        OpError::Pg(e)
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::NotFound(what) => write!(f, "not_found: {what}"),
            OpError::Forbidden(why) => write!(f, "forbidden: {why}"),
            OpError::Conflict(why) => write!(f, "conflict: {why}"),
            OpError::Expired => write!(f, "invitation_expired"),
            OpError::Quota {
                quota,
                limit,
                used,
                requested,
            } => write!(
                f,
                "quota_exceeded: {quota} (limit {limit}, used {used}, requested {requested})"
            ),
            OpError::Pg(e) => match e.as_db_error() {
                Some(db) => write!(f, "PostgreSQL {}: {}", db.code().code(), db.message()),
                None => write!(f, "PostgreSQL: {e}"),
            },
        }
    }
}

/// Runs a transaction again after a serialization failure or a deadlock (none is expected
/// with the locking used here; a careful engineer still writes the loop).
fn retrying<T>(mut f: impl FnMut() -> Result<T, OpError>) -> Result<T, OpError> {
    let mut attempt = 0u32;
    loop {
        match f() {
            Err(OpError::Pg(e))
                if attempt < 10
                    && matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                let cap = 1_000u64 << attempt.min(7);
                let jitter = getrandom::u64().unwrap_or(0) % (cap / 2 + 1);
                std::thread::sleep(Duration::from_micros(cap / 2 + jitter));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Every statement the SQL side runs, prepared once per connection.
struct Stmts {
    select1: Statement,
    probe: Statement,
    u_org: Statement,
    u_key: Statement,
    u_month: Statement,
    u_month_read: Statement,
    u_day: Statement,
    audit1: Statement,
    audit2: Statement,
    a_inv: Statement,
    a_user: Statement,
    a_member: Statement,
    a_member_read: Statement,
    a_seat: Statement,
    a_mark: Statement,
    l_auth: Statement,
    l_page: Statement,
    g_org: Statement,
    r_auth: Statement,
    r_agg: Statement,
    r_rows: Statement,
    r_res: Statement,
}

impl Stmts {
    fn prepare(c: &mut Client) -> Stmts {
        let mut p = |sql: &str| {
            c.prepare(sql)
                .unwrap_or_else(|e| panic!("prepare {sql}: {e}"))
        };
        Stmts {
            select1: p("SELECT 1"),
            probe: p("UPDATE probe SET v = v + 1 WHERE id = 1"),
            // The limit (plan + override) and whether the resource is a live one of this
            // organization, in one read.
            u_org: p("SELECT o.plan, o.ov_monthly_requests,
                             $2::TEXT IS NULL OR EXISTS (
                               SELECT 1 FROM resources r
                               WHERE r.id = $2 AND r.org_id = o.id AND r.removed_at IS NULL)
                      FROM orgs o WHERE o.id = $1"),
            // Claims the key; a key already there (or being claimed by a transaction that
            // then commits) inserts nothing: a duplicate.
            u_key: p(
                "INSERT INTO idempotency_keys(org_id, key, recorded_at) VALUES ($1, $2, $3)
                      ON CONFLICT (org_id, key) DO NOTHING",
            ),
            // The exact quota: the row lock of the month counter serializes concurrent
            // writers, and the WHERE sees the latest committed total. No row back: refused.
            u_month: p(
                "INSERT INTO usage_month(org_id, month, total) VALUES ($1, $2, $3)
                        ON CONFLICT (org_id, month) DO UPDATE
                          SET total = usage_month.total + excluded.total
                          WHERE $4::BIGINT IS NULL OR usage_month.total + excluded.total <= $4
                        RETURNING total",
            ),
            u_month_read: p("SELECT total FROM usage_month WHERE org_id = $1 AND month = $2"),
            u_day: p("INSERT INTO usage_day(org_id, day, resource_id, requests)
                      VALUES ($1, $2, $3, $4)
                      ON CONFLICT (org_id, day, resource_id) DO UPDATE
                        SET requests = usage_day.requests + excluded.requests"),
            audit1: p(
                "INSERT INTO audit(id, at, actor, org_id, action, target, details)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ),
            audit2: p(
                "INSERT INTO audit(id, at, actor, org_id, action, target, details)
                       VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $2, $3, $4, $9, $10, $11)",
            ),
            // The invitation, locked against a concurrent accept or revoke.
            a_inv: p(
                "SELECT id, org_id, email, role, status, expires_at FROM invitations
                      WHERE token_hash = $1 FOR UPDATE",
            ),
            a_user: p("SELECT email FROM users WHERE id = $1"),
            a_member: p(
                "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $5)
                         ON CONFLICT (org_id, user_id) DO NOTHING RETURNING id",
            ),
            a_member_read: p("SELECT id, role, joined_at, updated_at FROM memberships
                              WHERE org_id = $1 AND user_id = $2"),
            // Takes the seat and returns what the check needs: the row lock makes
            // concurrent accepts of one organization count one after the other.
            a_seat: p(
                "UPDATE orgs SET member_count = member_count + 1 WHERE id = $1
                       RETURNING plan, ov_team_members, member_count",
            ),
            a_mark: p(
                "UPDATE invitations SET status = 'accepted', accepted_at = $2
                       WHERE id = $1",
            ),
            l_auth: p("SELECT o.member_count, m.role FROM orgs o
                       LEFT JOIN memberships m ON m.org_id = o.id AND m.user_id = $2
                       WHERE o.id = $1"),
            // Deferred join: the page's user ids from the covering (org_id, joined_at,
            // user_id) index, then only those rows joined with memberships and users.
            l_page: p(
                "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at,
                              m.updated_at, u.last_active
                       FROM (SELECT user_id FROM memberships WHERE org_id = $1
                             ORDER BY joined_at, user_id LIMIT $2 OFFSET $3) p
                       JOIN memberships m ON m.org_id = $1 AND m.user_id = p.user_id
                       JOIN users u ON u.id = m.user_id
                       ORDER BY m.joined_at, m.user_id",
            ),
            // One statement (one snapshot): the actor's role, the row, pending unexpired
            // invitations, this month's usage.
            g_org: p(
                "SELECT o.id, o.name, o.slug, o.external_id, o.description, o.plan,
                             o.address_line1, o.address_line2, o.city, o.state, o.zipcode,
                             o.country, o.settings, o.metadata, o.ov_mcps, o.ov_api_keys,
                             o.ov_team_members, o.ov_monthly_requests, o.member_count, o.mcps,
                             o.api_keys, o.created_at, o.updated_at, m.role,
                             (SELECT count(*) FROM invitations i
                              WHERE i.org_id = o.id AND i.status = 'pending'
                                AND i.expires_at > $3),
                             COALESCE((SELECT u.total FROM usage_month u
                                       WHERE u.org_id = o.id AND u.month = $4), 0)
                      FROM orgs o
                      LEFT JOIN memberships m ON m.org_id = o.id AND m.user_id = $2
                      WHERE o.id = $1",
            ),
            r_auth: p("SELECT o.plan, o.ov_monthly_requests, m.role FROM orgs o
                       LEFT JOIN memberships m ON m.org_id = o.id AND m.user_id = $2
                       WHERE o.id = $1"),
            // Per day and per resource in one pass over the month's (day, resource) rows, then
            // the resources' names and kinds joined to the 100-odd per-resource sums.
            r_agg: p("WITH a AS (
                        SELECT GROUPING(day) AS g, day, resource_id, SUM(requests)::BIGINT AS n
                        FROM usage_day WHERE org_id = $1 AND day BETWEEN $2 AND $3
                        GROUP BY GROUPING SETS ((day), (resource_id)))
                      SELECT a.g, a.day, r.id, r.name, r.kind, a.n FROM a
                      LEFT JOIN resources r ON r.org_id = $1 AND r.id = a.resource_id"),
            r_rows: p("SELECT day, resource_id, requests FROM usage_day
                       WHERE org_id = $1 AND day BETWEEN $2 AND $3"),
            r_res: p("SELECT id, name, kind FROM resources WHERE org_id = $1"),
        }
    }
}

/// One connection of the hand-written side, with its prepared statements.
struct SqlConn {
    c: Client,
    s: Stmts,
}

fn read_only(c: &mut Client) -> Result<Transaction<'_>, postgres::Error> {
    c.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
}

/// The row of an organization and the actor's role in it (column `role`): refused when there
/// is no such organization or the actor is not a member.
fn authorized(row: Option<postgres::Row>, role: usize) -> Result<postgres::Row, OpError> {
    let Some(row) = row else {
        return Err(OpError::NotFound("Organization"));
    };
    if row.get::<_, Option<&str>>(role).is_none() {
        return Err(OpError::Forbidden("not a member"));
    }
    Ok(row)
}

impl SqlConn {
    fn connect(url: &str, schema: &str) -> SqlConn {
        let mut c = Client::connect(url, NoTls).expect("connect to PostgreSQL");
        c.batch_execute(&format!("SET search_path = {schema}"))
            .expect("search_path");
        let s = Stmts::prepare(&mut c);
        SqlConn { c, s }
    }

    /// Durable `record_usage`: one READ COMMITTED transaction. The limit and the resource in
    /// one read; the idempotency key claimed by an insert; the (day, resource) counter; the
    /// month total raised by a conditional upsert that refuses past the limit (the counter
    /// row's lock makes the limit exact between concurrent writers); `usage.threshold` audit
    /// rows when 80 % or 100 % is crossed. A refusal rolls back (the key and the day with it).
    fn record_usage(
        &mut self,
        plans: &PlanCatalog,
        org: &str,
        resource: Option<&str>,
        key: Option<&str>,
    ) -> Result<lo::UsageReceipt, OpError> {
        const COUNT: i64 = 1;
        retrying(|| {
            let now = Utc::now();
            let SqlConn { c, s } = &mut *self;
            let mut tx = c.transaction()?;
            let Some(row) = tx.query_opt(&s.u_org, &[&org, &resource])? else {
                return Err(OpError::NotFound("Organization"));
            };
            if !row.get::<_, bool>(2) {
                return Err(OpError::NotFound("Resource"));
            }
            let limit = effective_limits(plans, row.get(0), [None, None, None, row.get(1)])
                .monthly_requests;
            let month = month_of(now);
            let used_now = |tx: &mut Transaction<'_>| -> Result<u64, OpError> {
                Ok(tx
                    .query_opt(&s.u_month_read, &[&org, &month])?
                    .map_or(0, |r| r.get::<_, i64>(0) as u64))
            };
            if let Some(k) = key {
                if tx.execute(&s.u_key, &[&org, &k, &now])? == 0 {
                    let used = used_now(&mut tx)?;
                    tx.commit()?;
                    return Ok(receipt(true, used, limit));
                }
            }
            let refuse = |used: u64, limit: u64| OpError::Quota {
                quota: "monthly_requests",
                limit,
                used,
                requested: COUNT as u64,
            };
            if let Some(l) = limit.filter(|l| (COUNT as u64) > *l) {
                return Err(refuse(used_now(&mut tx)?, l));
            }
            // The (day, resource) counter first and the month total last: the month row is the
            // organization's hot lock, held from here to COMMIT only.
            tx.execute(
                &s.u_day,
                &[&org, &now.date_naive(), &resource.unwrap_or(""), &COUNT],
            )?;
            let bound = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            let after: i64 = match tx.query_opt(&s.u_month, &[&org, &month, &COUNT, &bound])? {
                Some(r) => r.get(0),
                None => {
                    let used = used_now(&mut tx)?;
                    return Err(refuse(used, limit.unwrap_or(0)));
                }
            };
            if let Some(l) = limit.filter(|l| *l > 0) {
                let before = (after - COUNT) as u64;
                for percent in [80u64, 100] {
                    let mark = (u128::from(l) * u128::from(percent)).div_ceil(100) as u64;
                    if before < mark && after as u64 >= mark {
                        let details = serde_json::json!({
                            "month": format!("{}-{:02}", month / 100, month % 100),
                            "threshold_percent": percent, "used": after, "limit": l,
                        });
                        tx.execute(
                            &s.audit1,
                            &[
                                &new_id("evt"),
                                &now,
                                &"system",
                                &org,
                                &"usage.threshold",
                                &org,
                                &details,
                            ],
                        )?;
                    }
                }
            }
            tx.commit()?;
            Ok(receipt(false, after as u64, limit))
        })
    }

    /// `accept_invitation`: one READ COMMITTED transaction. The invitation by its token's
    /// hash, locked; the user; status, expiry and email checks; the membership inserted
    /// (nothing when already a member); the seat taken by raising the organization's stored
    /// count under its row lock and checked against plan + override; the invitation marked
    /// accepted; the two audit rows orgdb writes (`member.added`, `invitation.accepted`).
    fn accept(
        &mut self,
        plans: &PlanCatalog,
        token: &str,
        user: &str,
    ) -> Result<lo::Membership, OpError> {
        let hash = token_hash(token);
        retrying(|| {
            let now = Utc::now();
            let SqlConn { c, s } = &mut *self;
            let mut tx = c.transaction()?;
            let Some(inv) = tx.query_opt(&s.a_inv, &[&hash])? else {
                return Err(OpError::NotFound("Invitation"));
            };
            let inv_id: String = inv.get(0);
            let org: String = inv.get(1);
            let email: String = inv.get(2);
            let role: String = inv.get(3);
            let status: &str = inv.get(4);
            let expires_at: DateTime<Utc> = inv.get(5);
            let Some(u) = tx.query_opt(&s.a_user, &[&user])? else {
                return Err(OpError::NotFound("User"));
            };
            let user_email: String = u.get(0);
            match status {
                "pending" if expires_at > now => {}
                "pending" | "expired" => return Err(OpError::Expired),
                _ => return Err(OpError::Conflict("Invitation is not pending")),
            }
            if email != user_email {
                return Err(OpError::Forbidden(
                    "This invitation was sent to another email address",
                ));
            }
            let mem_id = new_id("mem");
            let inserted = tx
                .query_opt(&s.a_member, &[&org, &user, &mem_id, &role, &now])?
                .is_some();
            let membership = if inserted {
                let seat = tx.query_one(&s.a_seat, &[&org])?;
                let members: i64 = seat.get(2);
                let limits = effective_limits(plans, seat.get(0), [None, None, seat.get(1), None]);
                if let Some(limit) = limits.team_members {
                    if members as u64 > limit {
                        return Err(OpError::Quota {
                            quota: "team_members",
                            limit,
                            used: members as u64 - 1,
                            requested: 1,
                        });
                    }
                }
                lo::Membership {
                    id: mem_id,
                    organization_id: org.clone(),
                    user_id: user.to_owned(),
                    role: role_of(&role),
                    joined_at: now,
                    updated_at: now,
                }
            } else {
                let r = tx.query_one(&s.a_member_read, &[&org, &user])?;
                lo::Membership {
                    id: r.get(0),
                    organization_id: org.clone(),
                    user_id: user.to_owned(),
                    role: role_of(r.get(1)),
                    joined_at: r.get(2),
                    updated_at: r.get(3),
                }
            };
            tx.execute(&s.a_mark, &[&inv_id, &now])?;
            let accepted = serde_json::json!({ "email": email, "role": role, "project_id": null });
            if inserted {
                let added =
                    serde_json::json!({ "user_id": user, "role": role, "invitation_id": inv_id });
                tx.execute(
                    &s.audit2,
                    &[
                        &new_id("evt"),
                        &now,
                        &user,
                        &org,
                        &"member.added",
                        &membership.id,
                        &added,
                        &new_id("evt"),
                        &"invitation.accepted",
                        &inv_id,
                        &accepted,
                    ],
                )?;
            } else {
                tx.execute(
                    &s.audit1,
                    &[
                        &new_id("evt"),
                        &now,
                        &user,
                        &org,
                        &"invitation.accepted",
                        &inv_id,
                        &accepted,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(membership)
        })
    }

    /// `list_members`: REPEATABLE READ, READ ONLY (count and page from one snapshot): the
    /// actor's role with the stored member count, then the deferred-join page.
    fn list_members(
        &mut self,
        actor: &str,
        org: &str,
        page: u32,
        per_page: u32,
    ) -> Result<lo::Page<lo::Member>, OpError> {
        let SqlConn { c, s } = self;
        let mut tx = read_only(c)?;
        let a = authorized(tx.query_opt(&s.l_auth, &[&org, &actor])?, 1)?;
        let total = a.get::<_, i64>(0) as u64;
        let want = i64::from(per_page) + 1;
        let offset = i64::from(page - 1) * i64::from(per_page);
        let rows = tx.query(&s.l_page, &[&org, &want, &offset])?;
        tx.commit()?;
        let more = rows.len() > per_page as usize;
        let data: Vec<lo::Member> = rows
            .iter()
            .take(per_page as usize)
            .map(|r| lo::Member {
                id: r.get(0),
                membership_id: r.get(1),
                email: r.get(2),
                name: r.get(3),
                role: role_of(r.get(4)),
                joined_at: r.get(5),
                updated_at: r.get(6),
                last_active: r.get(7),
            })
            .collect();
        let next_cursor = if more {
            data.last()
                .map(|m| format!("{}.{}", m.joined_at.timestamp_micros(), m.id))
        } else {
            None
        };
        Ok(lo::Page::new(data, page, per_page, total, next_cursor))
    }

    /// `get_organization`: one statement (one snapshot, autocommit): role, the row with its
    /// stored counters, pending unexpired invitations, this month's total.
    fn get_organization(
        &mut self,
        plans: &PlanCatalog,
        actor: &str,
        org: &str,
        now: DateTime<Utc>,
    ) -> Result<lo::OrganizationDetails, OpError> {
        let SqlConn { c, s } = self;
        let r = authorized(
            c.query_opt(&s.g_org, &[&org, &actor, &now, &month_of(now)])?,
            23,
        )?;
        let o = lo::Organization {
            id: r.get(0),
            name: r.get(1),
            slug: r.get(2),
            external_id: r.get(3),
            description: r.get(4),
            plan: r.get(5),
            address_line1: r.get(6),
            address_line2: r.get(7),
            city: r.get(8),
            state: r.get(9),
            zipcode: r.get(10),
            country: r.get(11),
            settings: serde_json::from_value::<OrganizationSettings>(r.get(12))
                .expect("settings json"),
            metadata: serde_json::from_value(r.get(13)).expect("metadata json"),
            created_at: r.get(21),
            updated_at: r.get(22),
        };
        let limits = effective_limits(plans, &o.plan, [r.get(14), r.get(15), r.get(16), r.get(17)]);
        let members: i64 = r.get(18);
        let pending: i64 = r.get(24);
        Ok(lo::OrganizationDetails {
            organization: o,
            limits,
            usage: lo::Usage {
                mcps: r.get::<_, i64>(19) as u64,
                api_keys: r.get::<_, i64>(20) as u64,
                team_members: (members + pending) as u64,
                monthly_requests: r.get::<_, i64>(25) as u64,
            },
        })
    }

    /// The month report: REPEATABLE READ, READ ONLY: role and limit, then one GROUPING SETS
    /// aggregate (per day; per resource), the resources' names and kinds joined to its rows.
    /// With `rows`, the month's rows summed in Rust in one pass and the resources read apart
    /// instead (the SQLite harness's shape, for the note).
    fn usage_report(
        &mut self,
        plans: &PlanCatalog,
        actor: &str,
        org: &str,
        (first, last): (NaiveDate, NaiveDate),
        rows: bool,
    ) -> Result<lo::UsageReport, OpError> {
        let SqlConn { c, s } = self;
        let mut tx = read_only(c)?;
        let a = authorized(tx.query_opt(&s.r_auth, &[&org, &actor])?, 2)?;
        let limit =
            effective_limits(plans, a.get(0), [None, None, None, a.get(1)]).monthly_requests;
        let mut per_day = day_slots(first, last);
        let mut by = ByResource::default();
        if rows {
            let mut per_res: HashMap<String, u64> = HashMap::new();
            for r in tx.query(&s.r_rows, &[&org, &first, &last])? {
                let day: NaiveDate = r.get(0);
                let n = r.get::<_, i64>(2) as u64;
                per_day[(day - first).num_days() as usize] += n;
                add_usage(&mut per_res, r.get(1), n);
            }
            if !per_res.is_empty() {
                for r in tx.query(&s.r_res, &[&org])? {
                    let id: String = r.get(0);
                    if let Some(n) = per_res.get(&id).copied().filter(|n| *n > 0) {
                        by.push(id, r.get(1), r.get(2), n);
                    }
                }
            }
            tx.commit()?;
        } else {
            let rows = tx.query(&s.r_agg, &[&org, &first, &last])?;
            tx.commit()?;
            for r in &rows {
                let n = r.get::<_, i64>(5) as u64;
                if r.get::<_, i32>(0) == 0 {
                    let day: NaiveDate = r.get(1);
                    per_day[(day - first).num_days() as usize] += n;
                } else if let Some(id) = r.get::<_, Option<String>>(2) {
                    if n == 0 {
                        continue;
                    }
                    by.push(id, r.get(3), r.get(4), n);
                }
            }
        }
        Ok(report_of(first, last, limit, per_day, by))
    }
}

/// Loads fixtures on the SQL side in one transaction (not timed): rows as the operations
/// would have written them; the organizations' counters are set from the rows at the end.
struct Loader<'a> {
    tx: Transaction<'a>,
    user: Statement,
    org: Statement,
    member: Statement,
    invitation: Statement,
    resource: Statement,
    day: Statement,
    month: Statement,
}

impl<'a> Loader<'a> {
    fn begin(c: &'a mut Client) -> Loader<'a> {
        let mut tx = c.transaction().expect("begin");
        let mut p = |sql: &str| tx.prepare(sql).expect("prepare (setup)");
        let user = p("INSERT INTO users(id, email, name, created_at) VALUES ($1, $2, $3, $4)");
        let org = p(
            r#"INSERT INTO orgs(id, name, slug, plan, settings, metadata, ov_team_members,
                                       ov_monthly_requests, created_at, updated_at)
                      VALUES ($1, $2, $3, $4, '{"pin_protection": false}', '{}', $5, $6, $7, $7)"#,
        );
        let member = p(
            "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, $5)",
        );
        let invitation = p(
            "INSERT INTO invitations(id, org_id, email, role, status, invited_by,
                                                    created_at, expires_at, token_hash,
                                                    lifetime_secs)
                            VALUES ($1, $2, $3, 'member', 'pending', $4, $5, $6, $7, $8)",
        );
        let resource = p("INSERT INTO resources(id, org_id, kind, name, created_at)
                          VALUES ($1, $2, 'mcp', $3, $4)");
        let day = p("INSERT INTO usage_day(org_id, day, resource_id, requests)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (org_id, day, resource_id) DO UPDATE
                       SET requests = usage_day.requests + excluded.requests");
        let month = p(
            "INSERT INTO usage_month(org_id, month, total) VALUES ($1, $2, $3)
                       ON CONFLICT (org_id, month) DO UPDATE
                         SET total = usage_month.total + excluded.total",
        );
        Loader {
            tx,
            user,
            org,
            member,
            invitation,
            resource,
            day,
            month,
        }
    }

    fn finish(mut self) {
        self.tx
            .batch_execute(
                "UPDATE orgs o SET
                   member_count = (SELECT count(*) FROM memberships m WHERE m.org_id = o.id),
                   mcps = (SELECT count(*) FROM resources r
                           WHERE r.org_id = o.id AND r.kind = 'mcp' AND r.removed_at IS NULL),
                   api_keys = (SELECT count(*) FROM resources r
                               WHERE r.org_id = o.id AND r.kind = 'api_key'
                                 AND r.removed_at IS NULL)",
            )
            .expect("counters");
        self.tx.commit().expect("commit (setup)");
    }
}

impl Load for Loader<'_> {
    fn user(&mut self, email: &str, name: &str, at: DateTime<Utc>) -> String {
        let id = new_id("user");
        self.tx
            .execute(&self.user, &[&id, &email, &name, &at])
            .expect("insert user");
        id
    }

    fn org(&mut self, owner: &str, name: &str, ov: Overrides, at: DateTime<Utc>) -> String {
        let id = new_id("org");
        let slug = slug_of(name);
        self.tx
            .execute(
                &self.org,
                &[&id, &name, &slug, &"enterprise", &ov.0, &ov.1, &at],
            )
            .expect("insert org");
        self.member(&id, owner, "owner", at);
        id
    }

    fn member(&mut self, org: &str, user: &str, role: &str, at: DateTime<Utc>) {
        self.tx
            .execute(&self.member, &[&org, &user, &new_id("mem"), &role, &at])
            .expect("insert member");
    }

    fn invitation(&mut self, org: &str, inviter: &str, email: &str, at: DateTime<Utc>) -> String {
        let token = new_token();
        let lifetime = TimeDelta::days(7);
        self.tx
            .execute(
                &self.invitation,
                &[
                    &new_id("inv"),
                    &org,
                    &email,
                    &inviter,
                    &at,
                    &(at + lifetime),
                    &token_hash(&token),
                    &lifetime.num_seconds(),
                ],
            )
            .expect("insert invitation");
        token
    }

    fn mcp(&mut self, org: &str, name: &str, at: DateTime<Utc>) -> String {
        let id = new_id("res");
        self.tx
            .execute(&self.resource, &[&id, &org, &name, &at])
            .expect("insert resource");
        id
    }

    fn usage(&mut self, org: &str, resource: &str, n: i64, at: DateTime<Utc>) {
        self.tx
            .execute(&self.day, &[&org, &at.date_naive(), &resource, &n])
            .expect("usage day");
        self.tx
            .execute(&self.month, &[&org, &month_of(at), &n])
            .expect("usage month");
    }
}

// ---------------------------------------------------------------------------------------------
// orgdb helpers

fn oerr(e: orgdb::Error) -> String {
    format!("{}: {e}", e.code())
}

fn serr(e: OpError) -> String {
    e.to_string()
}

/// Unique idempotency keys, shared by both sides (each side has its own table).
static KEYS: AtomicU64 = AtomicU64::new(0);

fn next_key() -> String {
    // The process id keeps the keys of the multi-process workloads' children apart.
    format!(
        "req-{}-{}",
        std::process::id(),
        KEYS.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Fixture: usage organizations and invitations (durable writes)

/// The accept organizations' seat limit.
const SEAT_LIMIT: u64 = 1_000_000;
/// Calls of the counting pass: warm-up, then counted.
const COUNT_WARM: usize = 3;
const COUNT_CALLS: usize = 20;

struct Durable {
    /// `Db::open` with default options: commits wait for `synchronous_commit`.
    odb: Db,
    /// (org, resource ids) on each side.
    o_usage: UsageOrgs,
    s_usage: UsageOrgs,
    /// One (token, user) per invitation, consumed by the accept rounds and the counting pass.
    o_accept: Invites,
    s_accept: Invites,
}

fn build_durable(o_url: &str, admin: &mut Client, invitations: usize) -> Durable {
    let started = Instant::now();
    let (o_usage, o_accept) = {
        let db = Db::open_with(o_url, eventual(None)).expect("open orgdb (setup)");
        odb_durable(&db, invitations, Some(SEAT_LIMIT))
    };
    let odb = Db::open(o_url).expect("open orgdb");

    let mut l = Loader::begin(admin);
    let (s_usage, s_accept) = load_durable(&mut l, Utc::now(), invitations, Some(SEAT_LIMIT));
    l.finish();
    println!(
        "setup: durable fixtures ({USAGE_ORGS} usage orgs x {USAGE_RES} resources, {invitations} \
         invitations a side) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Durable {
        odb,
        o_usage,
        s_usage,
        o_accept,
        s_accept,
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture: the read organizations

const BIG_ORG_MEMBERS: usize = 2_000;
const DEEP_PAGE: u32 = 91;

struct Reads {
    odb: Db,
    clock: ManualClock,
    now: DateTime<Utc>,
    o: ReadOrgs,
    s: ReadOrgs,
    /// The report's requests, all resources and days.
    report_total: u64,
}

fn build_reads(o_url: &str, admin: &mut Client) -> Reads {
    let started = Instant::now();
    let clock = ManualClock::new(reads_start());
    let db = Db::open_with(o_url, eventual(Some(clock.clone()))).expect("open orgdb (reads)");
    let o = odb_reads(&db, &clock, BIG_ORG_MEMBERS);
    let now = orgdb::Clock::now(&clock);

    // SQL: the same data, the same timestamps.
    let mut l = Loader::begin(admin);
    let (s, _) = load_reads(&mut l, BIG_ORG_MEMBERS);
    l.finish();
    println!(
        "setup: read fixtures ({BIG_ORG_MEMBERS}-member org, {REPORT_RESOURCES}-resource usage \
         org) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report_total = (1..=31)
        .flat_map(|day| (0..REPORT_RESOURCES).map(move |r| report_count(day, r)))
        .sum();
    Reads {
        odb: db,
        clock,
        now,
        o,
        s,
        report_total,
    }
}

/// The server's plans of the SQL side's member pages and report (`PG_EXPLAIN=1`).
fn explain(c: &mut Client, r: &Reads) {
    let page = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at, u.last_active
        FROM (SELECT user_id FROM memberships WHERE org_id = $1
              ORDER BY joined_at, user_id LIMIT $2 OFFSET $3) p
        JOIN memberships m ON m.org_id = $1 AND m.user_id = p.user_id
        JOIN users u ON u.id = m.user_id
        ORDER BY m.joined_at, m.user_id";
    let report = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        WITH a AS (
          SELECT GROUPING(day) AS g, day, resource_id, SUM(requests)::BIGINT AS n
          FROM usage_day WHERE org_id = $1 AND day BETWEEN $2 AND $3
          GROUP BY GROUPING SETS ((day), (resource_id)))
        SELECT a.g, a.day, r.id, r.name, r.kind, a.n FROM a
        LEFT JOIN resources r ON r.org_id = $1 AND r.id = a.resource_id";
    let show = |c: &mut Client,
                title: &str,
                sql: &str,
                params: &[&(dyn postgres::types::ToSql + Sync)]| {
        println!("plan of {title}:");
        for row in c.query(sql, params).expect("explain") {
            println!("  {}", row.get::<_, String>(0));
        }
    };
    show(c, "the SQL member page 1", page, &[&r.s.big, &21i64, &0i64]);
    let deep = i64::from(DEEP_PAGE - 1) * 20;
    show(
        c,
        "the SQL deep member page",
        page,
        &[&r.s.big, &21i64, &deep],
    );
    let (first, last) = report_month();
    show(
        c,
        "the SQL usage report",
        report,
        &[&r.s.report, &first, &last],
    );
}

// ---------------------------------------------------------------------------------------------
// The operations as the rounds and the counting pass call them

fn check(ok: bool, what: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(format!("wrong result: {}", what()))
    }
}

/// One event, keyed or not, on resource `res_i` of usage organization `o`.
fn o_usage(db: &Db, set: &UsageOrgs, (o, res_i): (usize, usize), key: bool) -> Outcome {
    let (org, res) = &set[o];
    let mut e = UsageEvent::new(1).resource(&res[res_i]);
    if key {
        e = e.key(next_key());
    }
    let r = db.record_usage(org, &e).map_err(oerr)?;
    check(!r.duplicate, || format!("{r:?}"))
}

fn s_usage(
    c: &mut SqlConn,
    plans: &PlanCatalog,
    set: &UsageOrgs,
    (o, res_i): (usize, usize),
    key: bool,
) -> Outcome {
    let (org, res) = &set[o];
    let k = key.then(next_key);
    let r = c
        .record_usage(plans, org, Some(&res[res_i]), k.as_deref())
        .map_err(serr)?;
    check(!r.duplicate, || format!("{r:?}"))
}

/// Event `i` of thread `t` in the 16-thread workloads: on one organization, or thread `t`
/// starting at event 37 t of the 1-thread rotation.
fn pick(one_org: bool, t: usize, i: u64) -> (usize, usize) {
    if one_org {
        (0, (t + i as usize) % USAGE_RES)
    } else {
        rotation(t as u64 * 37 + i)
    }
}

/// 16 threads' states: (thread, calls so far, connection).
fn threads<C>(conns: impl IntoIterator<Item = C>) -> Vec<(usize, u64, C)> {
    conns
        .into_iter()
        .enumerate()
        .map(|(t, c)| (t, 0u64, c))
        .collect()
}

/// Thread `t`'s next keyed event on orgdb.
fn o_usage_thread(set: &UsageOrgs, one_org: bool, (t, i, db): &mut (usize, u64, Db)) -> Outcome {
    let at = pick(one_org, *t, *i);
    *i += 1;
    o_usage(db, set, at, true)
}

/// Thread `t`'s next keyed event on the SQL side.
fn s_usage_thread(
    plans: &PlanCatalog,
    set: &UsageOrgs,
    one_org: bool,
    (t, i, c): &mut (usize, u64, &mut SqlConn),
) -> Outcome {
    let at = pick(one_org, *t, *i);
    *i += 1;
    s_usage(c, plans, set, at, true)
}

fn o_accept(db: &Db, (token, user): &(String, String)) -> Outcome {
    db.accept_invitation(token, user).map(|_| ()).map_err(oerr)
}

fn s_accept(c: &mut SqlConn, plans: &PlanCatalog, (token, user): &(String, String)) -> Outcome {
    c.accept(plans, token, user).map(|_| ()).map_err(serr)
}

fn member_query(page: u32) -> MemberQuery {
    MemberQuery {
        page: Some(page),
        per_page: Some(20),
        ..Default::default()
    }
}

/// A member page's check, on both sides.
fn page_ok(rows: usize, total: u64) -> Outcome {
    check(rows == 20 && total == BIG_ORG_MEMBERS as u64, || {
        format!("{rows} rows, total {total}")
    })
}

fn o_list(r: &Reads, db: &Db, page: u32) -> Outcome {
    let p = db
        .list_members(&Actor::user(&r.o.owner), &r.o.big, &member_query(page))
        .map_err(oerr)?;
    page_ok(p.data.len(), p.pagination.total)
}

fn s_list(r: &Reads, c: &mut SqlConn, page: u32) -> Outcome {
    let p = c
        .list_members(&r.s.owner, &r.s.big, page, 20)
        .map_err(serr)?;
    page_ok(p.data.len(), p.pagination.total)
}

/// `get_organization`'s check, on both sides.
fn usage_ok(team_members: u64, mcps: u64, usage: &dyn std::fmt::Debug) -> Outcome {
    check(team_members == 8 && mcps == REPORT_RESOURCES as u64, || {
        format!("{usage:?}")
    })
}

fn o_get(r: &Reads, db: &Db) -> Outcome {
    let d = db
        .get_organization(&Actor::user(&r.o.report_owner), &r.o.report)
        .map_err(oerr)?;
    usage_ok(d.usage.team_members, d.usage.mcps, &d.usage)
}

fn s_get(r: &Reads, c: &mut SqlConn, plans: &PlanCatalog) -> Outcome {
    let d = c
        .get_organization(plans, &r.s.report_owner, &r.s.report, r.now)
        .map_err(serr)?;
    usage_ok(d.usage.team_members, d.usage.mcps, &d.usage)
}

/// The usage report's check, on both sides: resources, days, total.
fn report_ok(r: &Reads, mcps: usize, days: usize, total: u64) -> Outcome {
    check(
        mcps == REPORT_RESOURCES && days == 31 && total == r.report_total,
        || format!("{mcps} resources, total {total}"),
    )
}

fn o_report(r: &Reads, db: &Db) -> Outcome {
    let q = UsageQuery {
        period: Some(Period::Month),
        ..Default::default()
    };
    let rep = db
        .usage_report(&Actor::user(&r.o.report_owner), &r.o.report, &q)
        .map_err(oerr)?;
    report_ok(r, rep.by_mcp.len(), rep.by_day.len(), rep.requests.total)
}

fn s_report(r: &Reads, c: &mut SqlConn, plans: &PlanCatalog, rows: bool) -> Outcome {
    let rep = c
        .usage_report(plans, &r.s.report_owner, &r.s.report, report_month(), rows)
        .map_err(serr)?;
    report_ok(r, rep.by_mcp.len(), rep.by_day.len(), rep.requests.total)
}

// ---------------------------------------------------------------------------------------------
// The counting pass

/// orgdb handles whose traffic goes through the relay.
struct Counted {
    proxy: wire::Proxy,
    odb: Option<Db>,
    odb_reads: Option<Db>,
}

impl Counted {
    /// Protocol messages of `n` calls of `op`, after a few warm-up calls (which prepare the
    /// connection's statements).
    fn count(&self, mut op: impl FnMut(usize) -> Outcome, what: &str) -> wire::Snapshot {
        for i in 0..COUNT_WARM {
            if let Err(e) = op(i) {
                println!("counting: {what} failed: {e}");
            }
        }
        let before = self.proxy.counters.snapshot();
        for i in COUNT_WARM..COUNT_WARM + COUNT_CALLS {
            if let Err(e) = op(i) {
                println!("counting: {what} failed: {e}");
            }
        }
        // The relay counts what it forwarded; every call has had its answer by now.
        self.proxy.counters.snapshot().since(before)
    }

    /// The same with one thread per state, all at once: warm-up calls, then
    /// [`COUNT_CALLS`] calls a thread.
    fn count_threads<S: Send>(
        &self,
        states: &mut [S],
        op: &(dyn Fn(&mut S) -> Outcome + Sync),
        what: &str,
    ) -> wire::Snapshot {
        let barrier = Barrier::new(states.len() + 1);
        let failed = AtomicU64::new(0);
        let run = |state: &mut S, n: usize| {
            for _ in 0..n {
                if op(state).is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let counted = std::thread::scope(|s| {
            for state in states.iter_mut() {
                let (barrier, run) = (&barrier, &run);
                s.spawn(move || {
                    run(state, COUNT_WARM);
                    barrier.wait();
                    barrier.wait();
                    run(state, COUNT_CALLS);
                });
            }
            barrier.wait();
            let before = self.proxy.counters.snapshot();
            barrier.wait();
            before
        });
        let n = failed.load(Ordering::Relaxed);
        if n > 0 {
            println!("counting: {what}: {n} calls failed");
        }
        self.proxy.counters.snapshot().since(counted)
    }
}

// ---------------------------------------------------------------------------------------------
// Main

struct Server {
    version: String,
    settings: Vec<(&'static str, String)>,
}

impl Server {
    fn read(c: &mut Client) -> Server {
        let mut show = |name: &str| -> String {
            c.simple_query(&format!("SHOW {name}"))
                .ok()
                .and_then(|msgs| {
                    msgs.into_iter().find_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    })
                })
                .unwrap_or_else(|| "?".to_owned())
        };
        let version = show("server_version");
        let settings = [
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
            "default_transaction_isolation",
        ]
        .into_iter()
        .map(|n| (n, show(n)))
        .collect();
        Server { version, settings }
    }

    fn setting(&self, name: &str) -> &str {
        self.settings
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("?", |(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let s: Vec<String> = self
            .settings
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!("PostgreSQL {} ({})", self.version, s.join(", "))
    }
}

fn main() {
    if let Ok(task) = std::env::var(CHILD_ENV) {
        child(&task);
        return;
    }
    if !from_cargo_bench("postgres") {
        return;
    }
    let cfg = Config::from_args();
    let Ok(url) = std::env::var("ORGDB_TEST_POSTGRES_URL") else {
        eprintln!(
            "postgres bench: ORGDB_TEST_POSTGRES_URL is not set; it needs a PostgreSQL server:\n  \
             scripts/pg-server.sh run --durable -- cargo bench --bench postgres"
        );
        std::process::exit(2);
    };
    let pid = std::process::id();
    let o_schema = format!("bench_orgdb_{pid}");
    let s_schema = format!("bench_sql_{pid}");
    let plans = PlanCatalog::default();

    let mut admin = Client::connect(&url, NoTls).unwrap_or_else(|e| {
        eprintln!("postgres bench: cannot connect to {url}: {e}");
        std::process::exit(2);
    });
    let server = Server::read(&mut admin);
    println!("orgdb on PostgreSQL vs hand-written SQL, {}", machine(&[]));
    println!("{}", server.describe());
    if server.setting("fsync") != "on" || server.setting("synchronous_commit") != "on" {
        println!(
            "WARNING: the server does not sync commits (fsync={}, synchronous_commit={}): \
             durable rates mean nothing; run through `scripts/pg-server.sh run --durable`",
            server.setting("fsync"),
            server.setting("synchronous_commit")
        );
    }
    println!(
        "schemas {o_schema} (orgdb) and {s_schema} (SQL); {} round(s); durable {} ms, read {} ms \
         a side",
        cfg.rounds,
        cfg.durable.as_millis(),
        cfg.read.as_millis()
    );
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {o_schema} CASCADE; DROP SCHEMA IF EXISTS {s_schema} CASCADE;
             CREATE SCHEMA {s_schema}; SET search_path = {s_schema};"
        ))
        .expect("create the SQL schema");
    admin.batch_execute(SCHEMA).expect("SQL schema");
    // The same transport as the SQL side (which connects without TLS): a server with TLS on
    // would otherwise encrypt only orgdb's traffic (libpq's default `sslmode=prefer`).
    let o_url = with_param(&url, &format!("sslmode=disable&schema={o_schema}"));
    let log = ServerLog::find();
    match &log {
        Some(l) => println!(
            "server log: {} (ERROR lines counted per side)",
            l.path.display()
        ),
        None => println!("server log: not found (ORGDB_TEST_POSTGRES_DATA unset or unreadable)"),
    }

    let want_usage = cfg.wants_any(&[
        "record_usage_1t",
        "record_usage_1t_nokey",
        "record_usage_16t",
        "record_usage_16t_1org",
        "usage_4proc_1org",
        "buffered_leases_4proc",
    ]);
    let want_accept = cfg.wants("accept_invitation");
    let want_reads = cfg.wants_any(&[
        "list_members_page1",
        "list_members_deep",
        "get_organization",
        "usage_report",
    ]);
    let accept_total = if want_accept {
        cfg.rounds * cfg.accept_per_round + 2 * (COUNT_WARM + COUNT_CALLS)
    } else {
        0
    };
    let durable =
        (want_usage || want_accept).then(|| build_durable(&o_url, &mut admin, accept_total));
    let reads = want_reads.then(|| build_reads(&o_url, &mut admin));
    // What a careful operator runs after a load (and autovacuum would do on its own): planner
    // statistics and visibility maps for both schemas; then a checkpoint, so the rounds do not
    // start with the load's dirty pages.
    let started = Instant::now();
    admin.batch_execute("VACUUM (ANALYZE)").expect("vacuum");
    admin.batch_execute("CHECKPOINT").expect("checkpoint");
    println!(
        "setup: VACUUM (ANALYZE) and CHECKPOINT in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let (Some(r), true) = (&reads, std::env::var_os("PG_EXPLAIN").is_some()) {
        explain(&mut admin, r);
    }

    let mut sql = SqlConn::connect(&url, &s_schema);
    // The durable pairs' commit probes run on a connection of their own.
    let mut probe_conn = SqlConn::connect(&url, &s_schema);
    let mut sql_threads: Vec<SqlConn> = if want_usage {
        (0..16).map(|_| SqlConn::connect(&url, &s_schema)).collect()
    } else {
        Vec::new()
    };

    let mut baseline_rt = Row::new("pg_round_trip", "queries/s");
    let mut baseline_commit = Row::new("pg_commit", "commits/s");
    let mut usage1 = Row::new("record_usage_1t", "events/s");
    let mut usage1n = Row::new("record_usage_1t_nokey", "events/s");
    let mut usage16 = Row::new("record_usage_16t", "events/s");
    let mut usage16o = Row::new("record_usage_16t_1org", "events/s");
    let mut usage4p = Row::new("usage_4proc_1org", "events/s");
    let mut leases4p: Vec<f64> = Vec::new();
    let mut leases_note = String::new();
    let mut accept = Row::new("accept_invitation", "accepts/s");
    let mut page1 = Row::new("list_members_page1", "pages/s");
    let mut deep = Row::new("list_members_deep", "pages/s");
    let mut getorg = Row::new("get_organization", "reads/s");
    let mut report = Row::new("usage_report", "reports/s");
    let mut report_rows: Vec<f64> = Vec::new();
    let mut fair16 = String::new();
    let mut fair16o = String::new();

    // The counting pass: statements and round trips per call, each side through the relay.
    if cfg.own.count {
        match target_of(&url).and_then(|t| {
            let proxy = wire::start(t).ok()?;
            let relayed = via_port(&url, proxy.port)?;
            Some((proxy, relayed))
        }) {
            None => println!("counting: cannot relay {url}; skipped"),
            Some((proxy, relayed)) => {
                let o_relayed = with_param(&relayed, &format!("sslmode=disable&schema={o_schema}"));
                let counted = Counted {
                    odb: durable
                        .as_ref()
                        .map(|_| Db::open(&o_relayed).expect("open orgdb (relayed)")),
                    odb_reads: reads.as_ref().map(|r| {
                        Db::open_with(&o_relayed, Options::with_clock(r.clock.clone()))
                            .expect("open orgdb (relayed, reads)")
                    }),
                    proxy,
                };
                let mut sqlc = SqlConn::connect(&relayed, &s_schema);
                let n = COUNT_CALLS as u64;
                if let (Some(d), Some(odb)) = (&durable, &counted.odb) {
                    for (row, key) in [(&mut usage1, true), (&mut usage1n, false)] {
                        if !cfg.wants(row.name) {
                            continue;
                        }
                        let at = |i: usize| (i % USAGE_ORGS, i % USAGE_RES);
                        let o = counted.count(
                            |i| o_usage(odb, &d.o_usage, at(i), key),
                            "orgdb record_usage",
                        );
                        let s = counted.count(
                            |i| s_usage(&mut sqlc, &plans, &d.s_usage, at(i), key),
                            "SQL record_usage",
                        );
                        row.own.counts = Some((o, s, n));
                    }
                    for (row, one_org) in [(&mut usage16, false), (&mut usage16o, true)] {
                        if !cfg.wants(row.name) {
                            continue;
                        }
                        let o = counted.count_threads(
                            &mut threads((0..16).map(|_| odb.clone())),
                            &|st| o_usage_thread(&d.o_usage, one_org, st),
                            "orgdb record_usage, 16 threads",
                        );
                        let mut conns: Vec<SqlConn> = (0..16)
                            .map(|_| SqlConn::connect(&relayed, &s_schema))
                            .collect();
                        let s = counted.count_threads(
                            &mut threads(&mut conns),
                            &|st| s_usage_thread(&plans, &d.s_usage, one_org, st),
                            "SQL record_usage, 16 threads",
                        );
                        row.own.counts = Some((o, s, 16 * n));
                    }
                    if want_accept {
                        let base = cfg.rounds * cfg.accept_per_round;
                        let o = counted.count(
                            |i| o_accept(odb, &d.o_accept[base + i]),
                            "orgdb accept_invitation",
                        );
                        let s = counted.count(
                            |i| s_accept(&mut sqlc, &plans, &d.s_accept[base + i]),
                            "SQL accept_invitation",
                        );
                        accept.own.counts = Some((o, s, n));
                    }
                }
                if let (Some(r), Some(odb)) = (&reads, &counted.odb_reads) {
                    if cfg.wants("list_members_page1") {
                        let o = counted.count(|_| o_list(r, odb, 1), "orgdb list_members");
                        let s = counted.count(|_| s_list(r, &mut sqlc, 1), "SQL list_members");
                        page1.own.counts = Some((o, s, n));
                    }
                    if cfg.wants("list_members_deep") {
                        let o = counted.count(|_| o_list(r, odb, DEEP_PAGE), "orgdb list_members");
                        let s =
                            counted.count(|_| s_list(r, &mut sqlc, DEEP_PAGE), "SQL list_members");
                        deep.own.counts = Some((o, s, n));
                    }
                    if cfg.wants("get_organization") {
                        let o = counted.count(|_| o_get(r, odb), "orgdb get_organization");
                        let s =
                            counted.count(|_| s_get(r, &mut sqlc, &plans), "SQL get_organization");
                        getorg.own.counts = Some((o, s, n));
                    }
                    if cfg.wants("usage_report") {
                        let o = counted.count(|_| o_report(r, odb), "orgdb usage_report");
                        let s = counted.count(
                            |_| s_report(r, &mut sqlc, &plans, false),
                            "SQL usage_report",
                        );
                        report.own.counts = Some((o, s, n));
                    }
                }
                println!("counting: done ({COUNT_CALLS} calls a side after {COUNT_WARM} warm-up)");
            }
        }
    }

    for round in 0..cfg.rounds {
        let orgdb_first = round % 2 == 0;
        println!(
            "-- round {} ({} first)",
            round + 1,
            if orgdb_first { "orgdb" } else { "SQL" }
        );
        let turn = Turn {
            round,
            orgdb_first,
            log: log.as_ref(),
        };

        if cfg.wants("baseline") {
            let SqlConn { c, s } = &mut sql;
            let e = Errors::default();
            let rt = timed(cfg.read, &e, |_| Some(done(c.query_one(&s.select1, &[]))));
            baseline_rt.push(round, f64::NAN, rt);
            let cm = commit_probe(&mut sql, cfg.durable / 2);
            baseline_commit.push(round, f64::NAN, cm);
        }

        if let Some(d) = &durable {
            let mut probe = || commit_probe(&mut probe_conn, cfg.probe);
            for (row, key) in [(&mut usage1, true), (&mut usage1n, false)] {
                if !cfg.wants(row.name) {
                    continue;
                }
                row.measure_durable(
                    turn,
                    &mut probe,
                    &mut |e| {
                        timed(cfg.durable, e, |i| {
                            Some(o_usage(&d.odb, &d.o_usage, rotation(i), key))
                        })
                    },
                    &mut |e| {
                        timed(cfg.durable, e, |i| {
                            Some(s_usage(&mut sql, &plans, &d.s_usage, rotation(i), key))
                        })
                    },
                );
            }

            for (row, one_org, fair) in [
                (&mut usage16, false, &mut fair16),
                (&mut usage16o, true, &mut fair16o),
            ] {
                if !cfg.wants(row.name) {
                    continue;
                }
                let mut o_fair = (0, 0);
                let mut s_fair = (0, 0);
                row.measure_durable(
                    turn,
                    &mut probe,
                    &mut |e| {
                        let mut states = threads((0..16).map(|_| d.odb.clone()));
                        let r = threaded(cfg.durable, &mut states, e, &|st| {
                            o_usage_thread(&d.o_usage, one_org, st)
                        });
                        o_fair = (r.min, r.max);
                        r.rate
                    },
                    &mut |e| {
                        let mut states = threads(&mut sql_threads);
                        let r = threaded(cfg.durable, &mut states, e, &|st| {
                            s_usage_thread(&plans, &d.s_usage, one_org, st)
                        });
                        s_fair = (r.min, r.max);
                        r.rate
                    },
                );
                *fair = format!(
                    "per-thread completed calls in the last round, min..max: orgdb {}..{}, SQL \
                     {}..{}",
                    o_fair.0, o_fair.1, s_fair.0, s_fair.1
                );
            }

            if cfg.wants("usage_4proc_1org") {
                let tasks = |side: &str, task_url: &str, set: &UsageOrgs| -> Vec<ChildTask> {
                    (0..PROCS)
                        .map(|_| ChildTask {
                            side: side.to_owned(),
                            url: task_url.to_owned(),
                            schema: s_schema.clone(),
                            org: set[0].0.clone(),
                            resources: set[0].1.clone(),
                            millis: cfg.durable.as_millis() as u64,
                        })
                        .collect()
                };
                let rate = |results: Vec<(ChildResult, f64)>, e: &Errors| {
                    let ok: u64 = results.iter().map(|(r, _)| r.ok).sum();
                    let failed: u64 = results.iter().map(|(r, _)| r.failed).sum();
                    e.n.fetch_add(failed, Ordering::Relaxed);
                    ok as f64 / cfg.durable.as_secs_f64()
                };
                usage4p.measure_durable(
                    turn,
                    &mut probe,
                    &mut |e| rate(run_children(&tasks("orgdb", &o_url, &d.o_usage)), e),
                    &mut |e| rate(run_children(&tasks("sql", &url, &d.s_usage)), e),
                );
            }

            if cfg.wants("buffered_leases_4proc") {
                let (org, _) = &d.o_usage[1];
                let stored = || {
                    d.odb
                        .get_organization(&Actor::System, org)
                        .expect("get_organization")
                        .usage
                        .monthly_requests
                };
                let before = stored();
                let tasks: Vec<ChildTask> = (0..PROCS)
                    .map(|_| ChildTask {
                        side: "buffered".to_owned(),
                        url: o_url.clone(),
                        schema: String::new(),
                        org: org.clone(),
                        resources: Vec::new(),
                        millis: cfg.durable.as_millis() as u64,
                    })
                    .collect();
                let results = run_children(&tasks);
                let ok: u64 = results.iter().map(|(r, _)| r.ok).sum();
                let failed: u64 = results.iter().map(|(r, _)| r.failed).sum();
                let rates: Vec<f64> = results.iter().map(|(_, rate)| *rate).collect();
                let after = stored();
                let (lo, hi) = rates
                    .iter()
                    .fold((f64::MAX, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
                println!(
                    "round {:>2}  buffered_leases_4proc  per process {}..{}/s, {} acknowledged, \
                     {} refused, stored {} (was {before})",
                    round + 1,
                    fmt_rate(lo),
                    fmt_rate(hi),
                    ok,
                    failed,
                    after
                );
                assert_eq!(
                    after - before,
                    ok,
                    "every acknowledged buffered event is stored once the processes closed"
                );
                leases4p.push(median(rates));
                leases_note = format!(
                    "last round: {ok} events acknowledged by 4 processes, {failed} refused, all \
                     stored when they closed"
                );
            }

            if want_accept {
                let range = round * cfg.accept_per_round..(round + 1) * cfg.accept_per_round;
                let o_batch = &d.o_accept[range.clone()];
                let s_batch = &d.s_accept[range];
                accept.measure_durable(
                    turn,
                    &mut probe,
                    &mut |e| {
                        timed(cfg.durable, e, |i| {
                            o_batch.get(i as usize).map(|inv| o_accept(&d.odb, inv))
                        })
                    },
                    &mut |e| {
                        timed(cfg.durable, e, |i| {
                            s_batch
                                .get(i as usize)
                                .map(|inv| s_accept(&mut sql, &plans, inv))
                        })
                    },
                );
            }
        }

        if let Some(r) = &reads {
            for (row, page) in [(&mut page1, 1u32), (&mut deep, DEEP_PAGE)] {
                if !cfg.wants(row.name) {
                    continue;
                }
                row.measure(
                    turn,
                    &mut |e| timed(cfg.read, e, |_| Some(o_list(r, &r.odb, page))),
                    &mut |e| timed(cfg.read, e, |_| Some(s_list(r, &mut sql, page))),
                );
            }
            if cfg.wants("get_organization") {
                getorg.measure(
                    turn,
                    &mut |e| timed(cfg.read, e, |_| Some(o_get(r, &r.odb))),
                    &mut |e| timed(cfg.read, e, |_| Some(s_get(r, &mut sql, &plans))),
                );
            }
            if cfg.wants("usage_report") {
                report.measure(
                    turn,
                    &mut |e| timed(cfg.read, e, |_| Some(o_report(r, &r.odb))),
                    &mut |e| timed(cfg.read, e, |_| Some(s_report(r, &mut sql, &plans, false))),
                );
                let e = Errors::default();
                report_rows.push(timed(cfg.read / 2, &e, |_| {
                    Some(s_report(r, &mut sql, &plans, true))
                }));
            }
        }
    }

    if !usage1.samples.is_empty() {
        usage1.note = "each event carries a new idempotency key on both sides".to_owned();
    }
    if !usage16.samples.is_empty() {
        usage16.note = format!(
            "64 orgs x 8 resources, thread t starts at event 37 t of the 1-thread rotation; \
             {fair16}"
        );
    }
    if !usage16o.samples.is_empty() {
        usage16o.note = format!("every thread on one organization; {fair16o}");
    }
    if !usage4p.samples.is_empty() {
        usage4p.note = format!(
            "{PROCS} processes x {PROC_THREADS} threads on one organization, each process its \
             own connections (orgdb: its own Db and group commit)"
        );
    }
    if !report.samples.is_empty() {
        report.note = format!(
            "SQL as one GROUPING SETS aggregate over the month's (day, resource) rows; the same \
             report summed in Rust from the 3 100 rows (two queries, the SQLite harness's shape): \
             {}/s",
            fmt_rate(median(report_rows))
        );
    }
    if !deep.samples.is_empty() {
        deep.note = format!("page {DEEP_PAGE}: OFFSET {}", (DEEP_PAGE - 1) * 20);
    }

    let rows = [
        baseline_rt,
        baseline_commit,
        usage1,
        usage1n,
        usage16,
        usage16o,
        usage4p,
        accept,
        page1,
        deep,
        getorg,
        report,
    ];
    println!();
    println!("orgdb on PostgreSQL vs hand-written SQL, {}", machine(&[]));
    println!("{}", server.describe());
    print_table(&rows);
    if !leases4p.is_empty() {
        println!(
            "\nbuffered_leases_4proc (orgdb only): median over rounds of the median process: {} \
             events/s per process; {leases_note}",
            fmt_rate(median(leases4p))
        );
    }

    drop(durable);
    drop(reads);
    drop(sql);
    drop(sql_threads);
    if cfg.keep {
        println!("kept schemas {o_schema} and {s_schema}");
    } else {
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {o_schema} CASCADE; DROP SCHEMA IF EXISTS {s_schema} CASCADE"
            ))
            .expect("drop the schemas");
    }
}

// ---------------------------------------------------------------------------------------------
// Several processes

/// Set in a child process of the multi-process workloads: its task, as JSON.
const CHILD_ENV: &str = "ORGDB_BENCH_CHILD";

/// Processes of the multi-process workloads.
const PROCS: usize = 4;

/// Callers in each process of `usage_4proc_1org`.
const PROC_THREADS: usize = 4;

/// What one child process does (`CHILD_ENV`).
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildTask {
    /// "orgdb", "sql" (durable keyed record_usage from `PROC_THREADS` threads) or
    /// "buffered" (one `UsageRecorder`, no keys).
    side: String,
    url: String,
    /// The SQL side's schema.
    schema: String,
    org: String,
    resources: Vec<String>,
    millis: u64,
}

/// What a child reports: calls acknowledged and failed.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Copy)]
struct ChildResult {
    ok: u64,
    failed: u64,
}

/// A child process's body: connect, say READY, wait for GO on stdin, run, print RESULT.
fn child(task: &str) {
    let task: ChildTask = serde_json::from_str(task).expect("child task");
    let set: UsageOrgs = vec![(task.org.clone(), task.resources.clone())];
    let dur = Duration::from_millis(task.millis);
    let plans = PlanCatalog::default();
    let ready = || {
        println!("READY");
        std::io::stdout().flush().expect("stdout");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).expect("stdin");
    };
    let result = match task.side.as_str() {
        "orgdb" => {
            let db = Db::open(&task.url).expect("open orgdb (child)");
            ready();
            let e = Errors::default();
            let mut states = threads((0..PROC_THREADS).map(|_| db.clone()));
            let r = threaded(dur, &mut states, &e, &|st| o_usage_thread(&set, true, st));
            ChildResult {
                ok: (r.rate * dur.as_secs_f64()).round() as u64,
                failed: e.n.load(Ordering::Relaxed),
            }
        }
        "sql" => {
            let mut conns: Vec<SqlConn> = (0..PROC_THREADS)
                .map(|_| SqlConn::connect(&task.url, &task.schema))
                .collect();
            ready();
            let e = Errors::default();
            let mut states = threads(&mut conns);
            let r = threaded(dur, &mut states, &e, &|st| {
                s_usage_thread(&plans, &set, true, st)
            });
            ChildResult {
                ok: (r.rate * dur.as_secs_f64()).round() as u64,
                failed: e.n.load(Ordering::Relaxed),
            }
        }
        _ => {
            let db = Db::open(&task.url).expect("open orgdb (child)");
            let recorder = db.usage_recorder(&task.org).expect("usage_recorder");
            ready();
            let mut out = ChildResult::default();
            let started = Instant::now();
            'run: loop {
                for _ in 0..256 {
                    match recorder.record(None, 1) {
                        Ok(_) => out.ok += 1,
                        Err(_) => out.failed += 1,
                    }
                }
                if started.elapsed() >= dur {
                    break 'run;
                }
            }
            let rate = out.ok as f64 / started.elapsed().as_secs_f64();
            // Closing the handle stores what the lease admitted and returns the lease.
            drop(recorder);
            drop(db);
            println!("RATE {rate}");
            out
        }
    };
    println!("RESULT {}", serde_json::to_string(&result).expect("result"));
}

/// Runs one child per task, started together; returns each one's result and, for buffered
/// children, its rate (events/s).
fn run_children(tasks: &[ChildTask]) -> Vec<(ChildResult, f64)> {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let mut children: Vec<_> = tasks
        .iter()
        .map(|t| {
            Command::new(std::env::current_exe().expect("current_exe"))
                .env(CHILD_ENV, serde_json::to_string(t).expect("task"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a child")
        })
        .collect();
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| std::io::BufReader::new(c.stdout.take().expect("stdout")))
        .collect();
    for out in &mut outs {
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert!(
                out.read_line(&mut line).expect("read") > 0,
                "child died before READY"
            );
        }
    }
    for c in &mut children {
        writeln!(c.stdin.as_mut().expect("stdin"), "GO").expect("GO");
    }
    let results = outs
        .iter_mut()
        .map(|out| {
            let mut rate = f64::NAN;
            loop {
                let mut line = String::new();
                assert!(
                    out.read_line(&mut line).expect("read") > 0,
                    "child died before RESULT"
                );
                if let Some(r) = line.strip_prefix("RATE ") {
                    rate = r.trim().parse().unwrap_or(f64::NAN);
                }
                if let Some(r) = line.strip_prefix("RESULT ") {
                    return (serde_json::from_str(r.trim()).expect("result"), rate);
                }
            }
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a child failed");
    }
    results
}
