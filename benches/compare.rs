//! orgdb against SQLite: the comparison harness of SPEC section 10.
//!
//! ```sh
//! cargo bench --bench compare                       # every workload, 5 interleaved rounds
//! cargo bench --bench compare -- --quick            # 2 short rounds, small bulk load
//! cargo bench --bench compare -- --workload usage_report,get_organization
//! cargo bench --bench compare -- --full-bulk        # bulk load at 100 000 orgs / 1 000 000 memberships
//! cargo bench --bench compare -- --list             # workload names
//! cargo bench --bench compare -- --keep             # keep the temporary files (path printed)
//! ```
//!
//! `COMPARE_EXPLAIN=1` prints SQLite's plan of the member-page query after the read fixtures
//! are built.
//!
//! One process, both engines, files in the same temporary directory (same disk). Every
//! workload runs in repeated rounds; a round runs orgdb then SQLite (the order alternates
//! between rounds) and the workloads are interleaved inside a round, so a change of the disk's
//! flush speed (it is bimodal on this kind of machine) hits both sides alike. Durable rounds
//! also measure the raw fdatasync rate before and after the pair and report the disk mode.
//! The table shows medians over rounds; the ratio is the median of the per-round ratios.
//! `BENCHMARKS.md` explains every workload and the latest table.

mod common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use common::{
    add_usage, day_slots, effective_limits, eventual, fmt_rate, from_cargo_bench, in_order, lo,
    load_durable, load_reads, machine, median, mode_of, month_of, new_id, new_token, odb_durable,
    odb_invite, odb_org, odb_reads, odb_user, reads_start, receipt, report_month, report_of,
    role_of, rotation, slug_of, token_hash, ByResource, Cli, Invites, Load, Mode, Overrides,
    Threaded, UsageOrgs, FAST_SYNCS_PER_SEC, REPORT_RESOURCES, USAGE_ORGS, USAGE_RES,
};
use orgdb::model::transfer::Record;
use orgdb::{
    Actor, Db, InvitationQuery, InvitationStatus, ManualClock, MemberQuery, OrganizationSettings,
    Period, PlanCatalog, Role, UsageEvent, UsageQuery, UsageRecorder,
};
use rusqlite::{params, Connection, OptionalExtension};

// ---------------------------------------------------------------------------------------------
// Command line

const WORKLOADS: &[(&str, &str)] = &[
    (
        "fsync",
        "raw pwrite + fdatasync into a pre-zeroed file: 1 thread, and 16 threads at once",
    ),
    (
        "record_usage_1t",
        "durable record_usage, 1 thread (orgdb Db::open journal vs SQLite WAL synchronous=FULL)",
    ),
    (
        "record_usage_16t",
        "durable record_usage, 16 threads (one Db clone / one SQLite connection per thread)",
    ),
    (
        "reserve_commit",
        "durable reserve_usage(5) + commit_reservation(4), 1 thread, vs SQLite doing both in one IMMEDIATE transaction (and in two, as a note)",
    ),
    (
        "buffered_usage",
        "UsageRecorder::record + final flush vs SQLite upserts, 1 000 events a transaction",
    ),
    (
        "accept_invitation",
        "durable accept_invitation (membership, counters, invitation, 2 audit rows)",
    ),
    (
        "accept_invitation_16t",
        "durable accept_invitation, 16 threads (one Db clone each / one shared SQLite connection)",
    ),
    (
        "list_members_page1",
        "list_members page 1 (20 rows + total) of a 10 000-member organization",
    ),
    (
        "list_members_deep",
        "list_members page 451 by offset (rows 9 001-9 020) of the same organization",
    ),
    (
        "list_members_cursor",
        "the same deep page by keyset cursor (next_cursor / row-value WHERE)",
    ),
    (
        "search_members_page1",
        "list_members with search \"mar\" (a prefix of emails, names and later words of names; \
         thousands of hits) page 1 of a 100 000-member organization",
    ),
    (
        "search_members_deep",
        "the same search, page 100 by offset (hits 1 981-2 000)",
    ),
    (
        "list_invitations_page1",
        "list_invitations page 1 (20 rows + total) of an organization with 10 000 invitations",
    ),
    (
        "list_invitations_deep",
        "list_invitations page 451 by offset (rows 9 001-9 020) of the same organization",
    ),
    (
        "usage_report",
        "usage_report for a month, 100 MCP resources with usage every day",
    ),
    (
        "get_organization",
        "get_organization with limits and the four live usage counts",
    ),
    (
        "bulk_load",
        "bulk load through the normal calls (users, orgs, add_member), then flush; file sizes",
    ),
    (
        "bulk_import",
        "the same data as a JSON-lines export: Db::import_jsonl vs SQLite inserts",
    ),
];

/// What only this harness sets.
struct ConfigOwn {
    /// How long one side of the buffered workload runs in a round.
    buffered: Duration,
    bulk_orgs: usize,
    /// Where the temporary directory goes.
    dir: Option<PathBuf>,
}

type Config = common::Config<ConfigOwn>;

const CLI: Cli = Cli {
    name: "compare",
    usage: "usage: cargo bench --bench compare -- [--quick] [--rounds N] [--workload NAME[,NAME]] \
            [--full-bulk | --bulk-orgs N] [--dir PATH] [--keep] [--list]",
    workloads: WORKLOADS,
};

impl Config {
    fn from_args() -> Config {
        let defaults = Config {
            rounds: 5,
            durable: Duration::from_millis(1000),
            read: Duration::from_millis(300),
            probe: Duration::from_millis(200),
            accept_per_round: 1500,
            only: Vec::new(),
            keep: false,
            own: ConfigOwn {
                buffered: Duration::from_millis(500),
                bulk_orgs: 10_000,
                dir: None,
            },
        };
        let mut bulk = None;
        let mut cfg = CLI.parse(defaults, |cfg, flag, value| {
            match flag {
                "--quick" => {
                    cfg.rounds = 2;
                    cfg.durable = Duration::from_millis(400);
                    cfg.read = Duration::from_millis(150);
                    cfg.own.buffered = Duration::from_millis(250);
                    cfg.probe = Duration::from_millis(100);
                    cfg.accept_per_round = 600;
                    cfg.own.bulk_orgs = 2_000;
                }
                "--full-bulk" => bulk = Some(100_000),
                "--bulk-orgs" => bulk = Some(CLI.number("--bulk-orgs", value("--bulk-orgs"))),
                "--dir" => cfg.own.dir = Some(PathBuf::from(value("--dir"))),
                _ => return false,
            }
            true
        });
        if let Some(b) = bulk {
            cfg.own.bulk_orgs = b;
        }
        cfg
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// [`common::timed`] for calls that do not fail (they panic): `op` returns false when it has no
/// more work.
fn timed(dur: Duration, every: u64, mut op: impl FnMut(u64) -> bool) -> f64 {
    common::timed(dur, every, |i| op(i).then_some(true))
}

/// [`common::threaded`] for calls that do not fail (they panic).
fn threaded<S: Send>(dur: Duration, states: &mut [S], op: &(dyn Fn(&mut S) + Sync)) -> Threaded {
    common::threaded(dur, states, &|state| {
        op(state);
        true
    })
}

/// The disk's raw flush rate: 512-byte pwrites into a pre-zeroed 1 MiB file, each followed by
/// fdatasync (no size change, so no filesystem journal commit): the ceiling of a durable commit.
struct Disk {
    file: File,
}

impl Disk {
    fn new(dir: &Path) -> Disk {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("fsync.probe"))
            .expect("probe file");
        file.write_all_at(&vec![0u8; 1 << 20], 0)
            .expect("zero fill");
        file.sync_all().expect("sync");
        Disk { file }
    }

    fn rate(&self, threads: usize, dur: Duration) -> f64 {
        let block = [7u8; 512];
        if threads <= 1 {
            return timed(dur, 1, |i| {
                self.file
                    .write_all_at(&block, (i % 256) * 4096)
                    .expect("pwrite");
                self.file.sync_data().expect("fdatasync");
                true
            });
        }
        let mut slots: Vec<(u64, u64)> = (0..threads as u64).map(|t| (t, 0)).collect();
        threaded(dur, &mut slots, &|(t, i)| {
            let at = (*t * 16 + (*i % 16)) % 256 * 4096;
            self.file.write_all_at(&block, at).expect("pwrite");
            self.file.sync_data().expect("fdatasync");
            *i += 1;
        })
        .rate
    }
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Clone, Copy)]
struct Sample {
    orgdb: f64,
    sqlite: f64,
    fsync: Option<(f64, Mode)>,
    /// Workload-specific second figure (buffered: `Db::record_usage_buffered`).
    extra: Option<f64>,
}

enum Target {
    None,
    Ratio(f64),
    /// Buffered: absolute orgdb rate and ratio.
    Both(f64, f64),
}

/// What only this harness records of a row.
struct RowOwn {
    /// A disk measurement, not a comparison.
    raw: bool,
    target: Target,
    /// [`Sample::extra`] of each round that had one.
    extra: Vec<f64>,
}

type Row = common::Row<RowOwn>;

fn fmt_bytes(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

impl Row {
    fn new(name: &'static str, unit: &'static str, target: Target) -> Row {
        let own = RowOwn {
            raw: name.starts_with("fsync"),
            target,
            extra: Vec::new(),
        };
        Row::with(name, unit, own)
    }

    fn push(&mut self, round: usize, s: Sample) {
        let fsync = match s.fsync {
            Some((rate, mode)) => format!("  fsync {}/s ({})", fmt_rate(rate), mode.name()),
            None => String::new(),
        };
        let extra = s
            .extra
            .map(|e| format!("  (Db::record_usage_buffered {}/s)", fmt_rate(e)))
            .unwrap_or_default();
        println!(
            "round {:>2}  {:<20} orgdb {:>9}/s  sqlite {:>9}/s  ratio {:>6.2}{fsync}{extra}",
            round + 1,
            self.name,
            fmt_rate(s.orgdb),
            fmt_rate(s.sqlite),
            s.orgdb / s.sqlite,
        );
        let _ = std::io::stdout().flush();
        self.samples.push((s.orgdb, s.sqlite));
        self.disk.extend(s.fsync);
        self.own.extra.extend(s.extra);
    }

    fn verdict(&self) -> String {
        let ratio = self.ratio();
        match self.own.target {
            Target::None => "".to_owned(),
            Target::Ratio(want) => {
                let ok = if ratio >= want { "met" } else { "MISSED" };
                format!("≥ {want}x: {ok}")
            }
            Target::Both(abs, want) => {
                let ok_abs = self.orgdb() >= abs;
                let ok_ratio = ratio >= want;
                let ok = if ok_abs && ok_ratio { "met" } else { "MISSED" };
                format!("≥ {} /s and ≥ {want}x: {ok}", fmt_rate(abs))
            }
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| workload | unit | orgdb | SQLite | orgdb/SQLite | raw fdatasync/s | disk mode (rounds) | target |"
    );
    println!("|---|---|---:|---:|---:|---:|---|---|");
    for r in rows {
        if r.samples.is_empty() {
            continue;
        }
        if r.own.raw {
            println!(
                "| {} | {} | - | - | - | {} | {} | |",
                r.name,
                r.unit,
                r.disk_rate(),
                r.disk_modes()
            );
            continue;
        }
        println!(
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} |",
            r.name,
            r.unit,
            fmt_rate(r.orgdb()),
            fmt_rate(r.other()),
            r.ratio(),
            r.disk_rate(),
            r.disk_modes(),
            r.verdict(),
        );
    }
    let notes: Vec<&Row> = rows.iter().filter(|r| !r.note.is_empty()).collect();
    if !notes.is_empty() {
        println!();
        for r in notes {
            println!("- {}: {}", r.name, r.note);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: the schema a careful engineer would write for the same product

const SCHEMA: &str = include_str!("sqlite_schema.sql");

/// Opens a SQLite file the way a careful engineer would: WAL, the given `synchronous`, a 64 MiB
/// page cache, a busy timeout, and a statement cache large enough for every statement here.
fn lite_open(path: &Path, synchronous: &str) -> Connection {
    let c = Connection::open(path).expect("sqlite open");
    let mode: String = c
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
    c.pragma_update(None, "synchronous", synchronous)
        .expect("synchronous");
    c.pragma_update(None, "cache_size", -65536)
        .expect("cache_size");
    c.pragma_update(None, "temp_store", "MEMORY")
        .expect("temp_store");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy_timeout");
    c.set_prepared_statement_cache_capacity(64);
    c.execute_batch(SCHEMA).expect("schema");
    c
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).expect("timestamp")
}

fn day_of(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

fn begin(c: &Connection, immediate: bool) {
    let sql = if immediate {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    };
    c.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .expect("begin");
}

fn commit(c: &Connection) {
    c.prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .expect("commit");
}

fn rollback(c: &Connection) {
    c.prepare_cached("ROLLBACK")
        .and_then(|mut s| s.execute([]))
        .expect("rollback");
}

fn audit(
    c: &Connection,
    at: DateTime<Utc>,
    actor: &str,
    org: Option<&str>,
    action: &str,
    target: &str,
    details: serde_json::Value,
) {
    c.prepare_cached(
        "INSERT INTO audit(id, at, actor, org_id, action, target, details)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            new_id("evt"),
            micros(at),
            actor,
            org,
            action,
            target,
            details.to_string()
        ])
    })
    .expect("audit insert");
}

fn lite_role(c: &Connection, org: &str, user: &str) -> Option<Role> {
    c.prepare_cached("SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2")
        .and_then(|mut s| {
            s.query_row(params![org, user], |r| r.get::<_, String>(0))
                .optional()
        })
        .expect("role")
        .map(|r| role_of(&r))
}

/// SQLite's `create_user`: insert (the UNIQUE index refuses a taken email) + audit.
fn lite_create_user(c: &Connection, email: &str, name: &str, now: DateTime<Utc>) -> String {
    let id = new_id("user");
    c.prepare_cached("INSERT INTO users(id, email, name, created_at) VALUES(?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![id, email, name, micros(now)]))
        .expect("insert user");
    let details = serde_json::json!({ "email": email, "name": name });
    audit(c, now, "system", None, "user.created", &id, details);
    id
}

/// SQLite's `create_organization`: org row, owner membership, counter, audit.
fn lite_create_org(
    c: &Connection,
    owner: &str,
    name: &str,
    plan: &str,
    now: DateTime<Utc>,
) -> String {
    let id = new_id("org");
    let slug = slug_of(name);
    let exists: bool = c
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1)")
        .and_then(|mut s| s.query_row([owner], |r| r.get(0)))
        .expect("owner");
    assert!(exists, "owner exists");
    c.prepare_cached(
        "INSERT INTO orgs(id, name, slug, plan, settings, metadata, member_count, created_at,
                          updated_at)
         VALUES(?1, ?2, ?3, ?4, '{\"pin_protection\":false}', '{}', 1, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![id, name, slug, plan, micros(now)]))
    .expect("insert org");
    c.prepare_cached(
        "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
         VALUES(?1, ?2, ?3, 'owner', ?4, ?4)",
    )
    .and_then(|mut s| s.execute(params![id, owner, new_id("mem"), micros(now)]))
    .expect("insert owner");
    let details = serde_json::json!({ "name": name, "slug": slug, "plan": plan, "owner": owner });
    audit(
        c,
        now,
        owner,
        Some(&id),
        "organization.created",
        &id,
        details,
    );
    id
}

/// SQLite's `add_member` (by the system): user exists, not a member yet, pending invitation
/// marked accepted, seats checked (members + pending unexpired), insert, counter, audit.
fn lite_add_member(
    c: &Connection,
    plans: &PlanCatalog,
    org: &str,
    user: &str,
    role: &str,
    now: DateTime<Utc>,
) {
    let (plan, ov_team, members): (String, Option<i64>, i64) = c
        .prepare_cached("SELECT plan, ov_team_members, member_count FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .expect("org");
    let email: String = c
        .prepare_cached("SELECT email FROM users WHERE id = ?1")
        .and_then(|mut s| s.query_row([user], |r| r.get(0)))
        .expect("user");
    assert!(lite_role(c, org, user).is_none(), "already a member");
    let pending: Option<String> = c
        .prepare_cached(
            "SELECT id FROM invitations WHERE org_id = ?1 AND email = ?2 AND status = 'pending'
               AND expires_at > ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![org, email, micros(now)], |r| r.get(0))
                .optional()
        })
        .expect("pending invitation");
    let limits = effective_limits(plans, &plan, [None, None, ov_team, None]);
    if let Some(limit) = limits.team_members {
        let pending_seats: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM invitations WHERE org_id = ?1 AND status = 'pending'
                   AND expires_at > ?2",
            )
            .and_then(|mut s| s.query_row(params![org, micros(now)], |r| r.get(0)))
            .expect("pending count");
        let used = members + pending_seats - i64::from(pending.is_some());
        assert!((used as u64) < limit, "seats");
    }
    let mem_id = new_id("mem");
    c.prepare_cached(
        "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
         VALUES(?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![org, user, mem_id, role, micros(now)]))
    .expect("insert member");
    c.prepare_cached("UPDATE orgs SET member_count = member_count + 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([org]))
        .expect("member count");
    if let Some(inv) = pending {
        c.prepare_cached(
            "UPDATE invitations SET status = 'accepted', accepted_at = ?2 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![inv, micros(now)]))
        .expect("accept pending");
    }
    let details = serde_json::json!({ "user_id": user, "role": role });
    audit(
        c,
        now,
        "system",
        Some(org),
        "member.added",
        &mem_id,
        details,
    );
}

fn lite_register_mcp(c: &Connection, org: &str, name: &str, now: DateTime<Utc>) -> String {
    let id = new_id("res");
    c.prepare_cached(
        "INSERT INTO resources(id, org_id, kind, name, created_at) VALUES(?1, ?2, 'mcp', ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![id, org, name, micros(now)]))
    .expect("insert resource");
    c.prepare_cached("UPDATE orgs SET mcps = mcps + 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([org]))
        .expect("mcps count");
    let details = serde_json::json!({ "kind": "mcp", "name": name });
    audit(
        c,
        now,
        "system",
        Some(org),
        "resource.registered",
        &id,
        details,
    );
    id
}

/// SQLite's `create_invitation` (by the owner): not a member, no pending duplicate, seats,
/// insert with the token's hash, audit. Returns the token.
fn lite_create_invitation(
    c: &Connection,
    plans: &PlanCatalog,
    org: &str,
    inviter: &str,
    email: &str,
    now: DateTime<Utc>,
) -> String {
    let (plan, ov_team, members): (String, Option<i64>, i64) = c
        .prepare_cached("SELECT plan, ov_team_members, member_count FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .expect("org");
    let is_member: bool = c
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM users u JOIN memberships m ON m.user_id = u.id
                           WHERE u.email = ?1 AND m.org_id = ?2)",
        )
        .and_then(|mut s| s.query_row(params![email, org], |r| r.get(0)))
        .expect("member check");
    assert!(!is_member);
    let dup: bool = c
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM invitations WHERE org_id = ?1 AND email = ?2
                           AND status = 'pending' AND expires_at > ?3)",
        )
        .and_then(|mut s| s.query_row(params![org, email, micros(now)], |r| r.get(0)))
        .expect("duplicate check");
    assert!(!dup);
    if let Some(limit) = effective_limits(plans, &plan, [None, None, ov_team, None]).team_members {
        let pending: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM invitations WHERE org_id = ?1 AND status = 'pending'
                   AND expires_at > ?2",
            )
            .and_then(|mut s| s.query_row(params![org, micros(now)], |r| r.get(0)))
            .expect("pending count");
        assert!(((members + pending) as u64) < limit, "seats");
    }
    let token = new_token();
    let id = new_id("inv");
    let lifetime = TimeDelta::days(7);
    c.prepare_cached(
        "INSERT INTO invitations(id, org_id, email, role, status, invited_by, created_at,
                                 expires_at, token_hash, lifetime_secs)
         VALUES(?1, ?2, ?3, 'member', 'pending', ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            org,
            email,
            inviter,
            micros(now),
            micros(now + lifetime),
            token_hash(&token),
            lifetime.num_seconds()
        ])
    })
    .expect("insert invitation");
    let details = serde_json::json!({ "email": email, "role": "member", "project_id": null,
        "expires_at": (now + lifetime).to_rfc3339() });
    audit(
        c,
        now,
        inviter,
        Some(org),
        "invitation.created",
        &id,
        details,
    );
    token
}

/// SQLite's `accept_invitation`, one IMMEDIATE transaction: invitation by token hash, user,
/// email match, status and expiry, existing membership, seats, insert membership, counter,
/// invitation accepted, two audit rows.
fn lite_accept(c: &Connection, plans: &PlanCatalog, token: &str, user: &str) -> lo::Membership {
    let now = Utc::now();
    begin(c, true);
    let (inv_id, org, email, role, status, expires_at): (
        String,
        String,
        String,
        String,
        String,
        i64,
    ) = c
        .prepare_cached(
            "SELECT id, org_id, email, role, status, expires_at FROM invitations
             WHERE token_hash = ?1",
        )
        .and_then(|mut s| {
            s.query_row([token_hash(token)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
        })
        .expect("invitation by token");
    let user_email: String = c
        .prepare_cached("SELECT email FROM users WHERE id = ?1")
        .and_then(|mut s| s.query_row([user], |r| r.get(0)))
        .expect("user");
    assert!(status == "pending" && expires_at > micros(now) && email == user_email);
    assert!(lite_role(c, &org, user).is_none(), "already a member");
    let (plan, ov_team, members): (String, Option<i64>, i64) = c
        .prepare_cached("SELECT plan, ov_team_members, member_count FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([&org], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .expect("org");
    if let Some(limit) = effective_limits(plans, &plan, [None, None, ov_team, None]).team_members {
        if members as u64 + 1 > limit {
            rollback(c);
            panic!("seats");
        }
    }
    let m = lo::Membership {
        id: new_id("mem"),
        organization_id: org.clone(),
        user_id: user.to_owned(),
        role: role.parse().expect("role"),
        joined_at: now,
        updated_at: now,
    };
    c.prepare_cached(
        "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
         VALUES(?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![org, user, m.id, role, micros(now)]))
    .expect("insert member");
    c.prepare_cached("UPDATE orgs SET member_count = member_count + 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([&org]))
        .expect("member count");
    let details = serde_json::json!({ "user_id": user, "role": role, "invitation_id": inv_id });
    audit(c, now, user, Some(&org), "member.added", &m.id, details);
    c.prepare_cached("UPDATE invitations SET status = 'accepted', accepted_at = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![inv_id, micros(now)]))
        .expect("accept");
    let details = serde_json::json!({ "email": email, "role": role, "project_id": null });
    audit(
        c,
        now,
        user,
        Some(&org),
        "invitation.accepted",
        &inv_id,
        details,
    );
    commit(c);
    m
}

/// The usage write inside the caller's transaction: limit (plan + override), resource of this
/// organization, month total, refuse or add to the month row and the (org, day, resource) row.
fn lite_usage(
    c: &Connection,
    plans: &PlanCatalog,
    org: &str,
    resource: Option<&str>,
    count: i64,
    now: DateTime<Utc>,
) -> Result<lo::UsageReceipt, &'static str> {
    let (plan, ov): (String, Option<i64>) = c
        .prepare_cached("SELECT plan, ov_monthly_requests FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| Ok((r.get(0)?, r.get(1)?))))
        .optional()
        .expect("org")
        .ok_or("not_found")?;
    if let Some(res) = resource {
        let owner: Option<String> = c
            .prepare_cached("SELECT org_id FROM resources WHERE id = ?1 AND removed_at IS NULL")
            .and_then(|mut s| s.query_row([res], |r| r.get(0)).optional())
            .expect("resource");
        if owner.as_deref() != Some(org) {
            return Err("not_found");
        }
    }
    let month = month_of(now);
    let used: i64 = lite_month_total(c, org, month);
    let limit = effective_limits(plans, &plan, [None, None, None, ov]).monthly_requests;
    if limit.is_some_and(|l| (used + count) as u64 > l) {
        return Err("quota_exceeded");
    }
    c.prepare_cached(
        "INSERT INTO usage_month(org_id, month, total) VALUES(?1, ?2, ?3)
         ON CONFLICT(org_id, month) DO UPDATE SET total = total + excluded.total",
    )
    .and_then(|mut s| s.execute(params![org, month, count]))
    .expect("month upsert");
    c.prepare_cached(
        "INSERT INTO usage_day(org_id, day, resource_id, requests) VALUES(?1, ?2, ?3, ?4)
         ON CONFLICT(org_id, day, resource_id) DO UPDATE SET requests = requests + excluded.requests",
    )
    .and_then(|mut s| {
        s.execute(params![
            org,
            day_of(now.date_naive()),
            resource.unwrap_or(""),
            count
        ])
    })
    .expect("day upsert");
    Ok(receipt(false, (used + count) as u64, limit))
}

/// SQLite: an organization's stored total of month `month` (yyyymm).
fn lite_month_total(c: &Connection, org: &str, month: i32) -> i64 {
    c.prepare_cached("SELECT total FROM usage_month WHERE org_id = ?1 AND month = ?2")
        .and_then(|mut s| s.query_row(params![org, month], |r| r.get(0)).optional())
        .expect("month total")
        .unwrap_or(0)
}

/// SQLite's reserve + commit of 5 held, 4 used: the hold checked against the month total
/// plus the organization's live holds and inserted, then deleted and the 4 counted
/// (`lite_usage`) — in one IMMEDIATE transaction, or in two when `split` (one per call).
fn lite_reserve_commit(
    c: &Connection,
    plans: &PlanCatalog,
    org: &str,
    resource: &str,
    n: u64,
    split: bool,
) {
    let now = Utc::now();
    begin(c, true);
    let (plan, ov): (String, Option<i64>) = c
        .prepare_cached("SELECT plan, ov_monthly_requests FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| Ok((r.get(0)?, r.get(1)?))))
        .expect("org");
    let used: i64 = lite_month_total(c, org, month_of(now));
    let held: i64 = c
        .prepare_cached(
            "SELECT coalesce(sum(count), 0) FROM usage_reservations
             WHERE org_id = ?1 AND expires_at > ?2",
        )
        .and_then(|mut s| s.query_row(params![org, now.timestamp_micros()], |r| r.get(0)))
        .expect("holds");
    let limit = effective_limits(plans, &plan, [None, None, None, ov]).monthly_requests;
    assert!(
        limit.is_none_or(|l| (used + held + 5) as u64 <= l),
        "sqlite reservation refused"
    );
    let id = format!("rsv_{n}");
    c.prepare_cached(
        "INSERT INTO usage_reservations(org_id, id, count, expires_at) VALUES(?1, ?2, 5, ?3)",
    )
    .and_then(|mut s| s.execute(params![org, id, now.timestamp_micros() + 300_000_000]))
    .expect("hold");
    if split {
        commit(c);
        begin(c, true);
    }
    c.prepare_cached("DELETE FROM usage_reservations WHERE org_id = ?1 AND id = ?2")
        .and_then(|mut s| s.execute(params![org, id]))
        .expect("settle");
    lite_usage(c, plans, org, Some(resource), 4, now).expect("usage");
    commit(c);
}

/// Durable `record_usage` on SQLite: one IMMEDIATE transaction per event.
fn lite_record_usage(
    c: &Connection,
    plans: &PlanCatalog,
    org: &str,
    resource: Option<&str>,
) -> lo::UsageReceipt {
    begin(c, true);
    match lite_usage(c, plans, org, resource, 1, Utc::now()) {
        Ok(r) => {
            commit(c);
            r
        }
        Err(e) => {
            rollback(c);
            panic!("sqlite usage refused: {e}");
        }
    }
}

fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(lo::Member, i64)> {
    let joined: i64 = r.get(5)?;
    let role: String = r.get(4)?;
    Ok((
        lo::Member {
            id: r.get(0)?,
            membership_id: r.get(1)?,
            email: r.get(2)?,
            name: r.get(3)?,
            role: role_of(&role),
            joined_at: from_micros(joined),
            updated_at: from_micros(r.get(6)?),
            last_active: r.get::<_, Option<i64>>(7)?.map(from_micros),
        },
        joined,
    ))
}

/// SQLite's `list_members`: role check, stored member count, then a deferred join: the page's
/// user ids come from the covering (org_id, joined_at, user_id) index (OFFSET or row-value
/// keyset), and only those rows are joined with memberships and users.
fn lite_list_members(
    c: &Connection,
    actor: &str,
    org: &str,
    page: u32,
    per_page: u32,
    after: Option<&(i64, String)>,
) -> lo::Page<lo::Member> {
    begin(c, false);
    lite_role(c, org, actor).expect("actor is a member");
    let total: i64 = c
        .prepare_cached("SELECT member_count FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| r.get(0)))
        .expect("member count");
    let want = i64::from(per_page) + 1;
    let mut rows: Vec<(lo::Member, i64)> = match after {
        None => c
            .prepare_cached(
                "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at,
                        u.last_active
                 FROM (SELECT user_id FROM memberships WHERE org_id = ?1
                       ORDER BY joined_at, user_id LIMIT ?2 OFFSET ?3) p
                 JOIN memberships m ON m.org_id = ?1 AND m.user_id = p.user_id
                 JOIN users u ON u.id = m.user_id
                 ORDER BY m.joined_at, m.user_id",
            )
            .and_then(|mut s| {
                let offset = i64::from(page - 1) * i64::from(per_page);
                let rows = s
                    .query_map(params![org, want, offset], member_row)?
                    .collect::<rusqlite::Result<Vec<_>>>();
                rows
            }),
        Some((at, user)) => c
            .prepare_cached(
                "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at,
                        u.last_active
                 FROM (SELECT user_id FROM memberships
                       WHERE org_id = ?1 AND (joined_at, user_id) > (?3, ?4)
                       ORDER BY joined_at, user_id LIMIT ?2) p
                 JOIN memberships m ON m.org_id = ?1 AND m.user_id = p.user_id
                 JOIN users u ON u.id = m.user_id
                 ORDER BY m.joined_at, m.user_id",
            )
            .and_then(|mut s| {
                let rows = s
                    .query_map(params![org, want, at, user], member_row)?
                    .collect::<rusqlite::Result<Vec<_>>>();
                rows
            }),
    }
    .expect("member page");
    commit(c);
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    let next_cursor = if more {
        rows.last().map(|(m, at)| format!("{at}.{}", m.id))
    } else {
        None
    };
    let data = rows.into_iter().map(|(m, _)| m).collect();
    lo::Page::new(data, page, per_page, total as u64, next_cursor)
}

/// SQLite's `list_invitations` (no status filter): role check, the count, then a deferred
/// join: the page's ids come from the covering (org_id, created_at, id) index by OFFSET, and
/// only those rows are read. Status is derived from the expiry, as orgdb does.
fn lite_list_invitations(
    c: &Connection,
    actor: &str,
    org: &str,
    page: u32,
    per_page: u32,
    now: DateTime<Utc>,
) -> lo::Page<lo::Invitation> {
    begin(c, false);
    let role = lite_role(c, org, actor).expect("actor is a member");
    assert!(role >= Role::Admin, "invitations are for admins");
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM invitations WHERE org_id = ?1")
        .and_then(|mut s| s.query_row([org], |r| r.get(0)))
        .expect("invitation count");
    let data = c
        .prepare_cached(
            "SELECT i.id, i.org_id, i.email, i.role, i.project_id, i.project_role, i.status,
                    i.invited_by, i.created_at, i.expires_at, i.accepted_at
             FROM (SELECT id FROM invitations WHERE org_id = ?1
                   ORDER BY created_at, id LIMIT ?2 OFFSET ?3) p
             JOIN invitations i ON i.id = p.id
             ORDER BY i.created_at, i.id",
        )
        .and_then(|mut s| {
            let offset = i64::from(page - 1) * i64::from(per_page);
            let rows = s
                .query_map(params![org, per_page, offset], |r| {
                    let status: String = r.get(6)?;
                    let expires_at = from_micros(r.get(9)?);
                    let mut status = InvitationStatus::parse(&status).expect("status");
                    if status == InvitationStatus::Pending && now >= expires_at {
                        status = InvitationStatus::Expired;
                    }
                    Ok(lo::Invitation {
                        id: r.get(0)?,
                        organization_id: r.get(1)?,
                        email: r.get(2)?,
                        role: r.get::<_, String>(3)?.parse().expect("role"),
                        project_id: r.get(4)?,
                        project_role: r
                            .get::<_, Option<String>>(5)?
                            .map(|p| p.parse().expect("role")),
                        status,
                        invited_by: r.get(7)?,
                        created_at: from_micros(r.get(8)?),
                        expires_at,
                        accepted_at: r.get::<_, Option<i64>>(10)?.map(from_micros),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .expect("invitation page");
    commit(c);
    lo::Page::new(data, page, per_page, total as u64, None)
}

/// SQLite's `get_organization`: role check, org row (stored counters), pending unexpired
/// invitations (seats), the month's usage row.
fn lite_get_org(
    c: &Connection,
    plans: &PlanCatalog,
    actor: &str,
    org: &str,
    now: DateTime<Utc>,
) -> lo::OrganizationDetails {
    begin(c, false);
    lite_role(c, org, actor).expect("actor is a member");
    let (o, ov, counts) = c
        .prepare_cached(
            "SELECT id, name, slug, external_id, description, plan, address_line1, address_line2,
                    city, state, zipcode, country, settings, metadata, ov_mcps, ov_api_keys,
                    ov_team_members, ov_monthly_requests, member_count, mcps, api_keys,
                    created_at, updated_at
             FROM orgs WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([org], |r| {
                let settings: String = r.get(12)?;
                let metadata: String = r.get(13)?;
                let o = lo::Organization {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    slug: r.get(2)?,
                    external_id: r.get(3)?,
                    description: r.get(4)?,
                    plan: r.get(5)?,
                    address_line1: r.get(6)?,
                    address_line2: r.get(7)?,
                    city: r.get(8)?,
                    state: r.get(9)?,
                    zipcode: r.get(10)?,
                    country: r.get(11)?,
                    settings: serde_json::from_str::<OrganizationSettings>(&settings)
                        .expect("settings json"),
                    metadata: serde_json::from_str(&metadata).expect("metadata json"),
                    created_at: from_micros(r.get(21)?),
                    updated_at: from_micros(r.get(22)?),
                };
                let ov: [Option<i64>; 4] = [r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?];
                let counts: (i64, i64, i64) = (r.get(18)?, r.get(19)?, r.get(20)?);
                Ok((o, ov, counts))
            })
        })
        .expect("org row");
    let pending: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM invitations WHERE org_id = ?1 AND status = 'pending'
               AND expires_at > ?2",
        )
        .and_then(|mut s| s.query_row(params![org, micros(now)], |r| r.get(0)))
        .expect("pending count");
    let month_total: i64 = lite_month_total(c, org, month_of(now));
    commit(c);
    let limits = effective_limits(plans, &o.plan, ov);
    lo::OrganizationDetails {
        organization: o,
        limits,
        usage: lo::Usage {
            mcps: counts.1 as u64,
            api_keys: counts.2 as u64,
            team_members: (counts.0 + pending) as u64,
            monthly_requests: month_total as u64,
        },
    }
}

/// SQLite's month usage report: role check, limit, then one pass over the (org, day, resource)
/// primary-key range aggregated per day and per resource, and the MCP resources' names.
/// (Two GROUP BY queries instead were measured slower; see BENCHMARKS.md.)
fn lite_usage_report(
    c: &Connection,
    plans: &PlanCatalog,
    actor: &str,
    org: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> lo::UsageReport {
    begin(c, false);
    lite_role(c, org, actor).expect("actor is a member");
    let (plan, ov): (String, Option<i64>) = c
        .prepare_cached("SELECT plan, ov_monthly_requests FROM orgs WHERE id = ?1")
        .and_then(|mut s| s.query_row([org], |r| Ok((r.get(0)?, r.get(1)?))))
        .expect("org");
    let (d0, d1) = (day_of(first), day_of(last));
    let mut per_day = day_slots(first, last);
    let mut per_res: HashMap<String, u64> = HashMap::new();
    {
        let mut s = c
            .prepare_cached(
                "SELECT day, resource_id, requests FROM usage_day
                 WHERE org_id = ?1 AND day BETWEEN ?2 AND ?3",
            )
            .expect("day rows");
        let mut rows = s.query(params![org, d0, d1]).expect("day rows");
        while let Some(r) = rows.next().expect("row") {
            let day: i64 = r.get(0).expect("day");
            let n: i64 = r.get(2).expect("requests");
            per_day[(day - d0) as usize] += n as u64;
            let res = r.get_ref(1).expect("resource").as_str().expect("text");
            add_usage(&mut per_res, res, n as u64);
        }
    }
    let mut by = ByResource::default();
    if !per_res.is_empty() {
        let mut s = c
            .prepare_cached("SELECT id, name, kind FROM resources WHERE org_id = ?1")
            .expect("resources");
        let mut rows = s.query([org]).expect("resources");
        while let Some(r) = rows.next().expect("row") {
            let id: String = r.get(0).expect("id");
            if let Some(n) = per_res.get(&id) {
                let name = r.get(1).expect("name");
                let kind: String = r.get(2).expect("kind");
                by.push(id, name, &kind, *n);
            }
        }
    }
    commit(c);
    let limit = effective_limits(plans, &plan, [None, None, None, ov]).monthly_requests;
    report_of(first, last, limit, per_day, by)
}

/// The same report written as two GROUP BY queries (kept to show why the one-pass version is
/// SQLite's best here).
fn lite_usage_report_group_by(
    c: &Connection,
    actor: &str,
    org: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> (u64, usize, usize) {
    begin(c, false);
    lite_role(c, org, actor).expect("actor is a member");
    let (d0, d1) = (day_of(first), day_of(last));
    let by_day: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT day, SUM(requests) FROM usage_day WHERE org_id = ?1 AND day BETWEEN ?2 AND ?3
             GROUP BY day ORDER BY day",
        )
        .and_then(|mut s| {
            let rows = s
                .query_map(params![org, d0, d1], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect();
            rows
        })
        .expect("by day");
    let by_mcp: Vec<(String, String, i64)> = c
        .prepare_cached(
            "SELECT u.resource_id, r.name, SUM(u.requests) AS n
             FROM usage_day u JOIN resources r ON r.id = u.resource_id
             WHERE u.org_id = ?1 AND u.day BETWEEN ?2 AND ?3 AND r.kind = 'mcp'
             GROUP BY u.resource_id ORDER BY n DESC, u.resource_id",
        )
        .and_then(|mut s| {
            let rows = s
                .query_map(params![org, d0, d1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect();
            rows
        })
        .expect("by mcp");
    commit(c);
    let total = by_day.iter().map(|d| d.1 as u64).sum();
    (total, by_day.len(), by_mcp.len())
}

/// The fixtures on SQLite: the operations above, in the caller's transaction.
struct Lite<'a> {
    c: &'a Connection,
    plans: &'a PlanCatalog,
}

impl Load for Lite<'_> {
    fn user(&mut self, email: &str, name: &str, at: DateTime<Utc>) -> String {
        lite_create_user(self.c, email, name, at)
    }

    fn org(&mut self, owner: &str, name: &str, ov: Overrides, at: DateTime<Utc>) -> String {
        let id = lite_create_org(self.c, owner, name, "enterprise", at);
        if ov != (None, None) {
            self.c
                .execute(
                    "UPDATE orgs SET ov_team_members = ?2, ov_monthly_requests = ?3 WHERE id = ?1",
                    params![id, ov.0, ov.1],
                )
                .expect("override");
        }
        id
    }

    fn member(&mut self, org: &str, user: &str, role: &str, at: DateTime<Utc>) {
        lite_add_member(self.c, self.plans, org, user, role, at);
    }

    fn invitation(&mut self, org: &str, inviter: &str, email: &str, at: DateTime<Utc>) -> String {
        lite_create_invitation(self.c, self.plans, org, inviter, email, at)
    }

    fn mcp(&mut self, org: &str, name: &str, at: DateTime<Utc>) -> String {
        lite_register_mcp(self.c, org, name, at)
    }

    fn usage(&mut self, org: &str, resource: &str, n: i64, at: DateTime<Utc>) {
        lite_usage(self.c, self.plans, org, Some(resource), n, at).expect("usage");
    }
}

// ---------------------------------------------------------------------------------------------
// orgdb helpers

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Fixture: the durable databases (usage, invitations)

struct Durable {
    odb: Db,
    lite: Connection,
    lite_buffered: Connection,
    lite_threads: Vec<Mutex<Connection>>,
    /// One connection shared by every thread (writers queue on a mutex, not in SQLite's
    /// busy handler).
    lite_shared: Mutex<Connection>,
    /// (org, resource ids) on each side.
    o_usage: UsageOrgs,
    l_usage: UsageOrgs,
    /// One (token, user) per invitation, consumed by the accept rounds.
    o_accept: Invites,
    l_accept: Invites,
}

fn build_durable(dir: &Path, plans: &PlanCatalog, invitations: usize) -> Durable {
    let path = dir.join("durable.redb");
    let started = Instant::now();
    // orgdb: built with eventual commits, closed (a clean close is durable), reopened with the
    // default options (immediate durability, usage journal).
    let (o_usage, o_accept) = {
        let db = Db::open_with(&path, eventual(None)).expect("open durable (setup)");
        odb_durable(&db, invitations, None)
    };
    let odb = Db::open(&path).expect("open durable");
    // SQLite: the same rows in one transaction.
    let lpath = dir.join("durable.sqlite");
    let lite = lite_open(&lpath, "FULL");
    begin(&lite, true);
    let (l_usage, l_accept) =
        load_durable(&mut Lite { c: &lite, plans }, Utc::now(), invitations, None);
    commit(&lite);
    lite.execute_batch("ANALYZE").expect("analyze");
    let lite_buffered = lite_open(&lpath, "NORMAL");
    let lite_threads = (0..16)
        .map(|_| Mutex::new(lite_open(&lpath, "FULL")))
        .collect();
    let lite_shared = Mutex::new(lite_open(&lpath, "FULL"));
    println!(
        "setup: durable fixtures ({USAGE_ORGS} usage orgs x {USAGE_RES} resources, {} invitations \
         per engine) in {:.1} s",
        invitations,
        started.elapsed().as_secs_f64()
    );
    Durable {
        odb,
        lite,
        lite_buffered,
        lite_threads,
        lite_shared,
        o_usage,
        l_usage,
        o_accept,
        l_accept,
    }
}

fn usage_events(set: &[(String, Vec<String>)]) -> Vec<(String, UsageEvent)> {
    (0..(USAGE_ORGS * USAGE_RES) as u64)
        .map(|i| {
            let (o, r) = rotation(i);
            (set[o].0.clone(), UsageEvent::new(1).resource(&set[o].1[r]))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fixture: member search (a 100 000-member organization)

const SEARCH_MEMBERS: usize = 100_000;
const SEARCH_PREFIX: &str = "mar";
const FIRST_NAMES: [&str; 40] = [
    "Maria", "James", "Mark", "Linda", "Martin", "Olivia", "Noah", "Emma", "Liam", "Ava", "Mario",
    "Sophia", "Lucas", "Mia", "Ethan", "Isabella", "Marta", "Amelia", "Oliver", "Harper", "Elijah",
    "Evelyn", "Marcus", "Abigail", "Henry", "Emily", "Daniel", "Ella", "Samuel", "Grace", "Jack",
    "Chloe", "Owen", "Lily", "Leo", "Zoe", "Ryan", "Nora", "Adam", "Ruby",
];
const LAST_NAMES: [&str; 50] = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Martinez",
    "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill",
    "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
    "Carter", "Roberts", "Marsh", "Parker",
];

/// Member `i` of the search organization: (email, name), the same on both sides.
fn search_person(i: usize) -> (String, String) {
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    (
        format!("{}.{}.{i}@example.com", first, last).to_lowercase(),
        format!("{first} {last}"),
    )
}

/// The search terms the SQLite side indexes: what orgdb documents it matches (the email, the
/// whole name, each later word of the name, lower-cased).
fn lite_terms(email: &str, name: &str) -> Vec<String> {
    let name = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let mut terms = vec![email.to_lowercase(), name.clone()];
    terms.extend(name.split(' ').skip(1).map(str::to_owned));
    terms.sort();
    terms.dedup();
    terms
}

struct Search {
    odb: Db,
    lite: Connection,
    o_owner: String,
    l_owner: String,
    o_org: String,
    l_org: String,
    /// How many members the prefix finds (the same on both sides, checked at setup).
    hits: u64,
}

fn build_search(dir: &Path, plans: &PlanCatalog) -> Search {
    let started = Instant::now();
    let clock = ManualClock::new(reads_start());
    let db =
        Db::open_with(dir.join("search.redb"), eventual(Some(clock.clone()))).expect("open search");
    let owner = db
        .create_user(&orgdb::NewUser {
            email: "search.owner@example.com".into(),
            name: "Search Owner".into(),
        })
        .expect("owner");
    let o_org = odb_org(&db, &owner.id, "Search Org", "enterprise");
    for i in 0..SEARCH_MEMBERS {
        clock.advance(TimeDelta::milliseconds(1));
        let (email, name) = search_person(i);
        let u = db
            .create_user(&orgdb::NewUser { email, name })
            .expect("user");
        db.add_member(&Actor::System, &o_org, &u.id, Role::Member)
            .expect("member");
    }
    db.flush().expect("flush");

    // SQLite: the same members, the same join times, and a table of search terms with the
    // primary key (org_id, term, user_id): a prefix is one range of it.
    let lite = lite_open(&dir.join("search.sqlite"), "FULL");
    lite.execute_batch(
        "CREATE TABLE IF NOT EXISTS member_terms(
           org_id TEXT NOT NULL, term TEXT NOT NULL, user_id TEXT NOT NULL,
           PRIMARY KEY(org_id, term, user_id)) WITHOUT ROWID;",
    )
    .expect("terms table");
    begin(&lite, true);
    let mut at = reads_start();
    let l_owner = lite_create_user(&lite, "search.owner@example.com", "Search Owner", at);
    let l_org = lite_create_org(&lite, &l_owner, "Search Org", "enterprise", at);
    for i in 0..SEARCH_MEMBERS {
        at += TimeDelta::milliseconds(1);
        let (email, name) = search_person(i);
        let user = lite_create_user(&lite, &email, &name, at);
        lite_add_member(&lite, plans, &l_org, &user, "member", at);
        for term in lite_terms(&email, &name) {
            lite.prepare_cached(
                "INSERT INTO member_terms(org_id, term, user_id) VALUES(?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![l_org, term, user]))
            .expect("term");
        }
    }
    commit(&lite);
    lite.execute_batch("ANALYZE").expect("analyze");
    let hits = lite_search_members(&lite, &l_owner, &l_org, SEARCH_PREFIX, 1, 20)
        .pagination
        .total;
    let o_hits = db
        .list_members(
            &Actor::user(&owner.id),
            &o_org,
            &MemberQuery {
                search: Some(SEARCH_PREFIX.into()),
                ..Default::default()
            },
        )
        .expect("search")
        .pagination
        .total;
    assert_eq!(o_hits, hits, "both sides find the same members");
    println!(
        "setup: search fixture ({SEARCH_MEMBERS}-member org, \"{SEARCH_PREFIX}\" finds {hits}) in \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Search {
        odb: db,
        lite,
        o_owner: owner.id,
        l_owner,
        o_org,
        l_org,
        hits,
    }
}

/// SQLite's member search: role check; the hits are the members whose user has a term in the
/// prefix's range of `member_terms` (its primary key); their count; then the page of them in
/// list order (joined_at, user_id), joined with memberships and users.
fn lite_search_members(
    c: &Connection,
    actor: &str,
    org: &str,
    prefix: &str,
    page: u32,
    per_page: u32,
) -> lo::Page<lo::Member> {
    begin(c, false);
    lite_role(c, org, actor).expect("actor is a member");
    let end = format!("{prefix}{}", char::MAX);
    let total: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM memberships m
             WHERE m.org_id = ?1 AND m.user_id IN (
                SELECT user_id FROM member_terms WHERE org_id = ?1 AND term >= ?2 AND term < ?3)",
        )
        .and_then(|mut s| s.query_row(params![org, prefix, end], |r| r.get(0)))
        .expect("hits");
    let offset = i64::from(page - 1) * i64::from(per_page);
    let mut rows: Vec<(lo::Member, i64)> = c
        .prepare_cached(
            "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at,
                    u.last_active
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = ?1 AND m.user_id IN (
                SELECT user_id FROM member_terms WHERE org_id = ?1 AND term >= ?2 AND term < ?3)
             ORDER BY m.joined_at, m.user_id LIMIT ?4 OFFSET ?5",
        )
        .and_then(|mut s| {
            let rows = s
                .query_map(
                    params![org, prefix, end, i64::from(per_page) + 1, offset],
                    member_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows
        })
        .expect("search page");
    commit(c);
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    let next_cursor = if more {
        rows.last().map(|(m, at)| format!("{at}.{}", m.id))
    } else {
        None
    };
    let data = rows.into_iter().map(|(m, _)| m).collect();
    lo::Page::new(data, page, per_page, total as u64, next_cursor)
}

// ---------------------------------------------------------------------------------------------
// Fixture: the read databases (10 000-member org, usage report org)

const BIG_ORG_MEMBERS: usize = 10_000;

struct Reads {
    odb: Db,
    lite: Connection,
    now: DateTime<Utc>,
    o_owner: String,
    l_owner: String,
    o_big: String,
    l_big: String,
    o_report: String,
    l_report: String,
    o_report_owner: String,
    l_report_owner: String,
    /// Keyset position after row 9 000 of the big org.
    o_cursor: String,
    l_cursor: (i64, String),
    /// The organization with [`INVITATIONS`] invitations, and its owner.
    o_inv: String,
    l_inv: String,
    o_inv_owner: String,
    l_inv_owner: String,
}

/// Invitations of the invitation-list workloads' organization.
const INVITATIONS: usize = 10_000;

fn build_reads(dir: &Path, plans: &PlanCatalog) -> Reads {
    let started = Instant::now();
    let clock = ManualClock::new(reads_start());
    let db =
        Db::open_with(dir.join("reads.redb"), eventual(Some(clock.clone()))).expect("open reads");
    let o = odb_reads(&db, &clock, BIG_ORG_MEMBERS);
    let now = orgdb::Clock::now(&clock);
    let first = db
        .list_members(
            &Actor::user(&o.owner),
            &o.big,
            &MemberQuery {
                page: Some(450),
                per_page: Some(20),
                ..Default::default()
            },
        )
        .expect("list_members");
    let o_cursor = first.next_cursor.expect("a cursor after row 9 000");
    let inv_owner = odb_user(&db, "invowner", 0);
    let o_inv = odb_org(&db, &inv_owner.id, "Invite Org", "enterprise");
    for i in 0..INVITATIONS {
        clock.advance(TimeDelta::milliseconds(1));
        odb_invite(
            &db,
            &inv_owner.id,
            &o_inv,
            format!("invitee{i}@example.com"),
        );
    }

    // SQLite: the same data, the same timestamps.
    let lite = lite_open(&dir.join("reads.sqlite"), "FULL");
    begin(&lite, true);
    let (l, t) = load_reads(&mut Lite { c: &lite, plans }, BIG_ORG_MEMBERS);
    let l_inv_owner = lite_create_user(&lite, "invowner0@example.com", "invowner user 0", t);
    let l_inv = lite_create_org(&lite, &l_inv_owner, "Invite Org", "enterprise", t);
    let mut at = t;
    for i in 0..INVITATIONS {
        at += TimeDelta::milliseconds(1);
        lite_create_invitation(
            &lite,
            plans,
            &l_inv,
            &l_inv_owner,
            &format!("invitee{i}@example.com"),
            at,
        );
    }
    commit(&lite);
    // What a careful engineer runs after a load: statistics for the query planner.
    lite.execute_batch("ANALYZE").expect("analyze");
    if std::env::var_os("COMPARE_EXPLAIN").is_some() {
        explain(&lite, &l.big, &l.owner);
    }
    let l_cursor: (i64, String) = lite
        .query_row(
            "SELECT joined_at, user_id FROM memberships WHERE org_id = ?1
             ORDER BY joined_at, user_id LIMIT 1 OFFSET 8999",
            [&l.big],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("keyset position");
    println!(
        "setup: read fixtures ({BIG_ORG_MEMBERS}-member org, {REPORT_RESOURCES}-resource usage \
         org) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Reads {
        odb: db,
        lite,
        now,
        o_owner: o.owner,
        l_owner: l.owner,
        o_big: o.big,
        l_big: l.big,
        o_report: o.report,
        l_report: l.report,
        o_report_owner: o.report_owner,
        l_report_owner: l.report_owner,
        o_cursor,
        l_cursor,
        o_inv,
        l_inv,
        o_inv_owner: inv_owner.id,
        l_inv_owner,
    }
}

/// Prints SQLite's query plans of the read workloads (`COMPARE_EXPLAIN=1`).
fn explain(c: &Connection, org: &str, owner: &str) {
    let page = "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at,
                u.last_active
         FROM (SELECT user_id FROM memberships WHERE org_id = ?1
               ORDER BY joined_at, user_id LIMIT ?2 OFFSET ?3) p
         JOIN memberships m ON m.org_id = ?1 AND m.user_id = p.user_id
         JOIN users u ON u.id = m.user_id
         ORDER BY m.joined_at, m.user_id";
    let mut s = c
        .prepare(&format!("EXPLAIN QUERY PLAN {page}"))
        .expect("explain");
    let rows: Vec<String> = s
        .query_map(params![org, 21, 0], |r| r.get::<_, String>(3))
        .expect("plan")
        .collect::<rusqlite::Result<_>>()
        .expect("plan rows");
    println!("plan of a member page: {rows:?}");
    let t = Instant::now();
    for _ in 0..100 {
        lite_list_members(c, owner, org, 1, 20, None);
    }
    println!("100 pages in {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Bulk load

struct BulkShape {
    orgs: usize,
    users: usize,
    per_org: usize,
}

impl BulkShape {
    fn new(orgs: usize) -> BulkShape {
        BulkShape {
            orgs,
            users: orgs * 5,
            per_org: 10,
        }
    }

    /// User index of member `k` of org `i` (k = 0 is the owner). Every user is in two orgs.
    fn member(&self, i: usize, k: usize) -> usize {
        (i * 5 + k) % self.users
    }

    fn calls(&self) -> usize {
        self.users + self.orgs * self.per_org
    }
}

struct BulkResult {
    secs: f64,
    size: u64,
    compacted: u64,
}

fn bulk_orgdb(dir: &Path, shape: &BulkShape) -> BulkResult {
    let path = dir.join("bulk.redb");
    let start = Instant::now();
    {
        let db = Db::open_with(&path, eventual(None)).expect("open bulk");
        let users: Vec<String> = (0..shape.users)
            .map(|u| odb_user(&db, "bulk", u).id)
            .collect();
        for i in 0..shape.orgs {
            let org = odb_org(
                &db,
                &users[shape.member(i, 0)],
                &format!("Bulk Org {i}"),
                "enterprise",
            );
            for k in 1..shape.per_org {
                db.add_member(&Actor::System, &org, &users[shape.member(i, k)], "member")
                    .expect("add_member");
            }
        }
        db.flush().expect("flush");
    }
    let secs = start.elapsed().as_secs_f64();
    let size = file_len(&path);
    let db = Db::open(&path).expect("reopen bulk");
    db.compact().expect("compact");
    drop(db);
    BulkResult {
        secs,
        size,
        compacted: file_len(&path),
    }
}

fn bulk_sqlite(dir: &Path, plans: &PlanCatalog, shape: &BulkShape) -> BulkResult {
    let path = dir.join("bulk.sqlite");
    let start = Instant::now();
    {
        let c = lite_open(&path, "NORMAL");
        let mut ops = 0usize;
        let mut step = |c: &Connection| {
            ops += 1;
            if ops.is_multiple_of(1000) {
                commit(c);
                begin(c, true);
            }
        };
        begin(&c, true);
        let mut users = Vec::with_capacity(shape.users);
        for u in 0..shape.users {
            let now = Utc::now();
            users.push(lite_create_user(
                &c,
                &format!("bulk{u}@example.com"),
                &format!("bulk user {u}"),
                now,
            ));
            step(&c);
        }
        for i in 0..shape.orgs {
            let org = lite_create_org(
                &c,
                &users[shape.member(i, 0)],
                &format!("Bulk Org {i}"),
                "enterprise",
                Utc::now(),
            );
            step(&c);
            for k in 1..shape.per_org {
                lite_add_member(
                    &c,
                    plans,
                    &org,
                    &users[shape.member(i, k)],
                    "member",
                    Utc::now(),
                );
                step(&c);
            }
        }
        commit(&c);
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let secs = start.elapsed().as_secs_f64();
    let size = file_len(&path);
    let c = Connection::open(&path).expect("reopen");
    c.execute_batch("VACUUM").expect("vacuum");
    drop(c);
    BulkResult {
        secs,
        size,
        compacted: file_len(&path),
    }
}

/// The bulk data as an export (JSON lines) both engines load.
fn bulk_export(shape: &BulkShape) -> Vec<u8> {
    // The export's JSON shapes, written directly (orgdb's output types cannot be built here).
    let now = orgdb::model::time::format(&Utc::now());
    let mut out = Vec::new();
    let mut line = |r: serde_json::Value| {
        serde_json::to_writer(&mut out, &r).expect("json");
        out.push(b'\n');
    };
    line(serde_json::json!({"type": "header", "data": {"schema_version": 1, "audit_seq": 0}}));
    let user_id = |u: usize| format!("user_{:026}", u);
    for u in 0..shape.users {
        line(serde_json::json!({"type": "user", "data": {
            "id": user_id(u), "email": format!("bulk{u}@example.com"),
            "name": format!("bulk user {u}"), "created_at": now, "last_active": null,
        }}));
    }
    let start = Utc::now();
    for i in 0..shape.orgs {
        let org_id = format!("org_{i:026}");
        line(serde_json::json!({"type": "organization", "data": {
            "organization": {
                "id": org_id, "name": format!("Bulk Org {i}"), "slug": format!("bulk-org-{i}"),
                "external_id": null, "description": null, "plan": "enterprise",
                "address_line1": null, "address_line2": null, "city": null, "state": null,
                "zipcode": null, "country": null, "settings": {"pin_protection": false},
                "metadata": {}, "created_at": now, "updated_at": now,
            },
            "limit_overrides": {
                "mcps": null, "api_keys": null, "team_members": null, "monthly_requests": null,
            },
        }}));
        for k in 0..shape.per_org {
            let joined = orgdb::model::time::format(&(start + TimeDelta::microseconds(k as i64)));
            line(serde_json::json!({"type": "membership", "data": {
                "id": format!("mem_{:020}{k:06}", i), "organization_id": org_id,
                "user_id": user_id(shape.member(i, k)),
                "role": if k == 0 { "owner" } else { "member" },
                "joined_at": joined, "updated_at": now,
            }}));
        }
    }
    out
}

fn import_orgdb(dir: &Path, export: &[u8]) -> BulkResult {
    let path = dir.join("import.redb");
    let start = Instant::now();
    {
        let db = Db::open(&path).expect("open import");
        db.import_jsonl(std::io::Cursor::new(export), Some(10_000), &mut |_| {})
            .expect("import_jsonl");
        db.flush().expect("flush");
    }
    let secs = start.elapsed().as_secs_f64();
    let size = file_len(&path);
    let db = Db::open(&path).expect("reopen import");
    db.compact().expect("compact");
    drop(db);
    BulkResult {
        secs,
        size,
        compacted: file_len(&path),
    }
}

/// SQLite loading the same export: parse each line, insert, 10 000 records a transaction
/// (synchronous=FULL, like orgdb's immediate commits), member counts set at the end.
fn import_sqlite(dir: &Path, export: &[u8]) -> BulkResult {
    let path = dir.join("import.sqlite");
    let start = Instant::now();
    {
        let c = lite_open(&path, "FULL");
        begin(&c, true);
        for (n, line) in export.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: Record = serde_json::from_slice(line).expect("record");
            match record {
                Record::User(u) => {
                    c.prepare_cached(
                        "INSERT INTO users(id, email, name, created_at, last_active)
                         VALUES(?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            u.id,
                            u.email,
                            u.name,
                            micros(u.created_at),
                            u.last_active.map(micros)
                        ])
                    })
                    .expect("user");
                }
                Record::Organization {
                    organization: o, ..
                } => {
                    c.prepare_cached(
                        "INSERT INTO orgs(id, name, slug, plan, settings, metadata, created_at,
                                          updated_at)
                         VALUES(?1, ?2, ?3, ?4, '{\"pin_protection\":false}', '{}', ?5, ?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            o.id,
                            o.name,
                            o.slug,
                            o.plan,
                            micros(o.created_at),
                            micros(o.updated_at)
                        ])
                    })
                    .expect("org");
                }
                Record::Membership(m) => {
                    c.prepare_cached(
                        "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at)
                         VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            m.organization_id,
                            m.user_id,
                            m.id,
                            m.role.as_str(),
                            micros(m.joined_at),
                            micros(m.updated_at)
                        ])
                    })
                    .expect("membership");
                }
                _ => {}
            }
            if n % 10_000 == 9_999 {
                commit(&c);
                begin(&c, true);
            }
        }
        c.execute_batch(
            "UPDATE orgs SET member_count =
               (SELECT COUNT(*) FROM memberships m WHERE m.org_id = orgs.id)",
        )
        .expect("member counts");
        commit(&c);
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let secs = start.elapsed().as_secs_f64();
    let size = file_len(&path);
    let c = Connection::open(&path).expect("reopen");
    c.execute_batch("VACUUM").expect("vacuum");
    drop(c);
    BulkResult {
        secs,
        size,
        compacted: file_len(&path),
    }
}

// ---------------------------------------------------------------------------------------------
// Main

fn main() {
    if !from_cargo_bench("compare") {
        return;
    }
    let cfg = Config::from_args();
    let base = cfg.own.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("orgdb-compare-")
        .tempdir_in(&base)
        .expect("temporary directory");
    let dir = tmp.path();
    let sqlite = [format!("SQLite {}", rusqlite::version())];
    println!("orgdb vs SQLite, {}", machine(&sqlite));
    println!(
        "files in {} (both engines); {} round(s); durable {} ms, read {} ms, buffered {} ms a side",
        dir.display(),
        cfg.rounds,
        cfg.durable.as_millis(),
        cfg.read.as_millis(),
        cfg.own.buffered.as_millis()
    );
    let plans = PlanCatalog::default();
    let disk = Disk::new(dir);

    let want_durable = cfg.wants_any(&[
        "record_usage_1t",
        "record_usage_16t",
        "buffered_usage",
        "reserve_commit",
    ]);
    let want_accept = cfg.wants("accept_invitation");
    let want_accept16 = cfg.wants("accept_invitation_16t");
    let want_reads = cfg.wants_any(&[
        "list_members_page1",
        "list_members_deep",
        "list_members_cursor",
        "list_invitations_page1",
        "list_invitations_deep",
        "usage_report",
        "get_organization",
    ]);
    let accept_one = if want_accept {
        cfg.rounds * cfg.accept_per_round
    } else {
        0
    };
    // Sixteen callers accept faster than one: enough invitations that none runs out.
    let accept16_per_round = 8 * cfg.accept_per_round;
    let accept_total = accept_one
        + if want_accept16 {
            cfg.rounds * accept16_per_round
        } else {
            0
        };
    let durable = (want_durable || want_accept || want_accept16)
        .then(|| build_durable(dir, &plans, accept_total));
    let reads = want_reads.then(|| build_reads(dir, &plans));
    let search = cfg
        .wants_any(&["search_members_page1", "search_members_deep"])
        .then(|| build_search(dir, &plans));

    let mut rows: Vec<Row> = Vec::new();
    let mut fsync1 = Row::new("fsync (1 thread)", "syncs/s", Target::None);
    let mut fsync16 = Row::new("fsync (16 threads)", "syncs/s", Target::None);
    let mut usage1 = Row::new("record_usage_1t", "events/s", Target::Ratio(1.0));
    let mut usage16 = Row::new("record_usage_16t", "events/s", Target::Ratio(5.0));
    let mut usage16s = Row::new("record_usage_16t_shared", "events/s", Target::Ratio(5.0));
    let mut buffered = Row::new("buffered_usage", "events/s", Target::Both(5e6, 20.0));
    let mut reserve = Row::new("reserve_commit", "pairs/s", Target::None);
    let mut reserve_split: Vec<f64> = Vec::new();
    let mut accept = Row::new("accept_invitation", "accepts/s", Target::None);
    let mut accept16 = Row::new("accept_invitation_16t", "accepts/s", Target::None);
    let mut page1 = Row::new("list_members_page1", "pages/s", Target::None);
    let mut deep = Row::new("list_members_deep", "pages/s", Target::None);
    let mut cursor = Row::new("list_members_cursor", "pages/s", Target::None);
    let mut search1 = Row::new("search_members_page1", "pages/s", Target::Ratio(1.0));
    let mut search_deep = Row::new("search_members_deep", "pages/s", Target::Ratio(1.0));
    let mut inv_page1 = Row::new("list_invitations_page1", "pages/s", Target::None);
    let mut inv_deep = Row::new("list_invitations_deep", "pages/s", Target::None);
    let mut report = Row::new("usage_report", "reports/s", Target::Ratio(2.0));
    let mut getorg = Row::new("get_organization", "reads/s", Target::None);
    let mut group_by: Vec<f64> = Vec::new();
    let mut fairness16 = String::new();

    for round in 0..cfg.rounds {
        let orgdb_first = round % 2 == 0;
        let pair =
            |o: &mut dyn FnMut() -> f64, l: &mut dyn FnMut() -> f64| in_order(orgdb_first, o, l);
        println!(
            "-- round {} ({} first)",
            round + 1,
            if orgdb_first { "orgdb" } else { "SQLite" }
        );

        if cfg.wants("fsync") {
            let a = disk.rate(1, cfg.probe * 2);
            let b = disk.rate(16, cfg.probe * 2);
            let m = if a >= FAST_SYNCS_PER_SEC {
                Mode::Fast
            } else {
                Mode::Slow
            };
            fsync1.push(
                round,
                Sample {
                    orgdb: a,
                    sqlite: a,
                    fsync: Some((a, m)),
                    extra: None,
                },
            );
            fsync16.push(
                round,
                Sample {
                    orgdb: b,
                    sqlite: b,
                    fsync: Some((b, m)),
                    extra: None,
                },
            );
        }

        if let Some(d) = &durable {
            if cfg.wants("record_usage_1t") {
                let o_events = usage_events(&d.o_usage);
                let before = disk.rate(1, cfg.probe);
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.durable, 1, |i| {
                            let (org, e) = &o_events[i as usize % o_events.len()];
                            d.odb.record_usage(org, e).expect("record_usage");
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.durable, 1, |i| {
                            let (o, r) = rotation(i);
                            let (org, res) = &d.l_usage[o];
                            lite_record_usage(&d.lite, &plans, org, Some(&res[r]));
                            true
                        })
                    },
                );
                let after = disk.rate(1, cfg.probe);
                usage1.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: Some(((before + after) / 2.0, mode_of(before, after))),
                        extra: None,
                    },
                );
            }

            if cfg.wants("reserve_commit") {
                let o_events = usage_events(&d.o_usage);
                let before = disk.rate(1, cfg.probe);
                let hold = |i: u64| {
                    let (org, e) = &o_events[i as usize % o_events.len()];
                    let new = orgdb::NewReservation {
                        count: 5,
                        resource_id: e.resource_id.clone(),
                        expires_in: None,
                    };
                    (org, new)
                };
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.durable, 1, |i| {
                            let (org, new) = hold(i);
                            let r = d.odb.reserve_usage(org, &new).expect("reserve_usage");
                            d.odb
                                .commit_reservation(org, &r.id, 4)
                                .expect("commit_reservation");
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.durable, 1, |i| {
                            let (o, r) = rotation(i);
                            let (org, res) = &d.l_usage[o];
                            lite_reserve_commit(&d.lite, &plans, org, &res[r], i, false);
                            true
                        })
                    },
                );
                reserve_split.push(timed(cfg.durable, 1, |i| {
                    let (o, r) = rotation(i);
                    let (org, res) = &d.l_usage[o];
                    lite_reserve_commit(&d.lite, &plans, org, &res[r], i + (1 << 40), true);
                    true
                }));
                let after = disk.rate(1, cfg.probe);
                reserve.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: Some(((before + after) / 2.0, mode_of(before, after))),
                        extra: None,
                    },
                );
            }

            if cfg.wants("record_usage_16t") {
                let o_events = usage_events(&d.o_usage);
                let before = disk.rate(16, cfg.probe);
                let before1 = disk.rate(1, cfg.probe);
                let mut o_fair = (0, 0);
                let mut l_fair = (0, 0);
                let mut lite_threads: Vec<(usize, u64, &Mutex<Connection>)> = d
                    .lite_threads
                    .iter()
                    .enumerate()
                    .map(|(t, c)| (t, 0u64, c))
                    .collect();
                let (o, l) = pair(
                    &mut || {
                        let mut states: Vec<(Db, u64)> =
                            (0..16).map(|t| (d.odb.clone(), t * 37)).collect();
                        let ev = &o_events;
                        let r = threaded(cfg.durable, &mut states, &|(db, i)| {
                            let (org, e) = &ev[*i as usize % ev.len()];
                            db.record_usage(org, e).expect("record_usage");
                            *i += 1;
                        });
                        o_fair = (r.min, r.max);
                        r.rate
                    },
                    &mut || {
                        let l_usage = &d.l_usage;
                        let r = threaded(cfg.durable, &mut lite_threads, &|(t, i, c)| {
                            let (o, r) = rotation(*t as u64 * 37 + *i);
                            let (org, res) = &l_usage[o];
                            let c = c.lock().expect("connection");
                            lite_record_usage(&c, &plans, org, Some(&res[r]));
                            *i += 1;
                        });
                        l_fair = (r.min, r.max);
                        r.rate
                    },
                );
                // The same 16 threads on SQLite sharing one connection behind a mutex.
                let mut shared: Vec<(usize, u64)> = (0..16).map(|t| (t, 0u64)).collect();
                let l_usage = &d.l_usage;
                let conn = &d.lite_shared;
                let s = threaded(cfg.durable, &mut shared, &|(t, i)| {
                    let (o, r) = rotation(*t as u64 * 37 + *i);
                    let (org, res) = &l_usage[o];
                    let c = conn.lock().expect("connection");
                    lite_record_usage(&c, &plans, org, Some(&res[r]));
                    *i += 1;
                });
                let after = disk.rate(16, cfg.probe);
                let after1 = disk.rate(1, cfg.probe);
                usage16s.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: s.rate,
                        fsync: Some(((before + after) / 2.0, mode_of(before1, after1))),
                        extra: None,
                    },
                );
                fairness16 = format!(
                    "per-thread completed calls in the last round, min..max: orgdb {}..{}, \
                     SQLite {}..{}",
                    o_fair.0, o_fair.1, l_fair.0, l_fair.1
                );
                usage16.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: Some(((before + after) / 2.0, mode_of(before1, after1))),
                        extra: None,
                    },
                );
            }

            if cfg.wants("buffered_usage") {
                let o_events = usage_events(&d.o_usage);
                // A gateway keeps one recorder per organization it serves.
                let recorders: Vec<UsageRecorder> = d
                    .o_usage
                    .iter()
                    .map(|(org, _)| d.odb.usage_recorder(org).expect("usage_recorder"))
                    .collect();
                let mut by_call = 0.0;
                let (o, l) = pair(
                    &mut || {
                        // Db::record_usage_buffered: the organization named on every call.
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < cfg.own.buffered {
                            for _ in 0..1024 {
                                let (org, e) = &o_events[n as usize % o_events.len()];
                                d.odb
                                    .record_usage_buffered(org, e)
                                    .expect("record_usage_buffered");
                                n += 1;
                            }
                        }
                        d.odb.flush().expect("flush");
                        by_call = n as f64 / start.elapsed().as_secs_f64();

                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < cfg.own.buffered {
                            for _ in 0..1024 {
                                let (o, r) = rotation(n);
                                recorders[o]
                                    .record(Some(&d.o_usage[o].1[r]), 1)
                                    .expect("UsageRecorder::record");
                                n += 1;
                            }
                        }
                        d.odb.flush().expect("flush");
                        n as f64 / start.elapsed().as_secs_f64()
                    },
                    &mut || {
                        let c = &d.lite_buffered;
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed() < cfg.own.buffered {
                            begin(c, true);
                            for _ in 0..1000 {
                                let (o, r) = rotation(n);
                                let (org, res) = &d.l_usage[o];
                                lite_usage(c, &plans, org, Some(&res[r]), 1, Utc::now())
                                    .expect("usage");
                                n += 1;
                            }
                            commit(c);
                        }
                        n as f64 / start.elapsed().as_secs_f64()
                    },
                );
                buffered.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: Some(by_call),
                    },
                );
            }

            if want_accept {
                let range = round * cfg.accept_per_round..(round + 1) * cfg.accept_per_round;
                let o_batch = &d.o_accept[range.clone()];
                let l_batch = &d.l_accept[range];
                let before = disk.rate(1, cfg.probe);
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.durable, 1, |i| match o_batch.get(i as usize) {
                            Some((token, user)) => {
                                d.odb
                                    .accept_invitation(token, user)
                                    .expect("accept_invitation");
                                true
                            }
                            None => false,
                        })
                    },
                    &mut || {
                        timed(cfg.durable, 1, |i| match l_batch.get(i as usize) {
                            Some((token, user)) => {
                                lite_accept(&d.lite, &plans, token, user);
                                true
                            }
                            None => false,
                        })
                    },
                );
                let after = disk.rate(1, cfg.probe);
                accept.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: Some(((before + after) / 2.0, mode_of(before, after))),
                        extra: None,
                    },
                );
            }

            if want_accept16 {
                let from = accept_one + round * accept16_per_round;
                let range = from..from + accept16_per_round;
                let o_batch = &d.o_accept[range.clone()];
                let l_batch = &d.l_accept[range];
                let before = disk.rate(16, cfg.probe);
                let (o, l) = pair(
                    &mut || {
                        let next = AtomicUsize::new(0);
                        let mut handles: Vec<Db> = (0..16).map(|_| d.odb.clone()).collect();
                        common::threaded(cfg.durable, &mut handles, &|db| match o_batch
                            .get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            Some((token, user)) => {
                                db.accept_invitation(token, user)
                                    .expect("accept_invitation");
                                true
                            }
                            None => false,
                        })
                        .rate
                    },
                    &mut || {
                        let next = AtomicUsize::new(0);
                        let mut threads = vec![(); 16];
                        let shared = &d.lite_shared;
                        common::threaded(cfg.durable, &mut threads, &|_| match l_batch
                            .get(next.fetch_add(1, Ordering::Relaxed))
                        {
                            Some((token, user)) => {
                                let c = shared.lock().expect("connection");
                                lite_accept(&c, &plans, token, user);
                                true
                            }
                            None => false,
                        })
                        .rate
                    },
                );
                let after = disk.rate(16, cfg.probe);
                accept16.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: Some(((before + after) / 2.0, mode_of(before, after))),
                        extra: None,
                    },
                );
            }
        }

        if let Some(r) = &reads {
            let o_actor = Actor::user(&r.o_owner);
            let query = |page: u32, cursor: Option<&String>| MemberQuery {
                page: Some(page),
                per_page: Some(20),
                role: None,
                status: None,
                search: None,
                cursor: cursor.cloned(),
            };
            if cfg.wants("list_members_page1") {
                let q = query(1, None);
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let p = r.odb.list_members(&o_actor, &r.o_big, &q).expect("list");
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let p = lite_list_members(&r.lite, &r.l_owner, &r.l_big, 1, 20, None);
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                );
                page1.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
            if cfg.wants("list_members_deep") {
                let q = query(451, None);
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 4, |_| {
                            let p = r.odb.list_members(&o_actor, &r.o_big, &q).expect("list");
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 4, |_| {
                            let p = lite_list_members(&r.lite, &r.l_owner, &r.l_big, 451, 20, None);
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                );
                deep.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
            for (page, row) in [(1u32, &mut inv_page1), (451, &mut inv_deep)] {
                if !cfg.wants(row.name) {
                    continue;
                }
                let o_inv_actor = Actor::user(&r.o_inv_owner);
                let q = InvitationQuery {
                    page: Some(page),
                    per_page: Some(20),
                    status: None,
                };
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 4, |_| {
                            let p = r
                                .odb
                                .list_invitations(&o_inv_actor, &r.o_inv, &q)
                                .expect("list");
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 4, |_| {
                            let p = lite_list_invitations(
                                &r.lite,
                                &r.l_inv_owner,
                                &r.l_inv,
                                page,
                                20,
                                r.now,
                            );
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                );
                row.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
            if cfg.wants("list_members_cursor") {
                let q = query(451, Some(&r.o_cursor));
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let p = r.odb.list_members(&o_actor, &r.o_big, &q).expect("list");
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let p = lite_list_members(
                                &r.lite,
                                &r.l_owner,
                                &r.l_big,
                                451,
                                20,
                                Some(&r.l_cursor),
                            );
                            assert_eq!(p.data.len(), 20);
                            true
                        })
                    },
                );
                cursor.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
            if cfg.wants("usage_report") {
                let q = UsageQuery {
                    period: Some(Period::Month),
                    ..Default::default()
                };
                let o_actor = Actor::user(&r.o_report_owner);
                let (first, last) = report_month();
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 8, |_| {
                            let rep = r
                                .odb
                                .usage_report(&o_actor, &r.o_report, &q)
                                .expect("report");
                            assert_eq!(rep.by_mcp.len(), REPORT_RESOURCES);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 8, |_| {
                            let rep = lite_usage_report(
                                &r.lite,
                                &plans,
                                &r.l_report_owner,
                                &r.l_report,
                                first,
                                last,
                            );
                            assert_eq!(rep.by_mcp.len(), REPORT_RESOURCES);
                            true
                        })
                    },
                );
                group_by.push(timed(cfg.read / 2, 4, |_| {
                    let (_, days, mcps) = lite_usage_report_group_by(
                        &r.lite,
                        &r.l_report_owner,
                        &r.l_report,
                        first,
                        last,
                    );
                    assert_eq!((days, mcps), (31, REPORT_RESOURCES));
                    true
                }));
                report.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
            if cfg.wants("get_organization") {
                let o_actor = Actor::user(&r.o_report_owner);
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let d = r.odb.get_organization(&o_actor, &r.o_report).expect("get");
                            assert_eq!(d.usage.team_members, 8);
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 16, |_| {
                            let d = lite_get_org(
                                &r.lite,
                                &plans,
                                &r.l_report_owner,
                                &r.l_report,
                                r.now,
                            );
                            assert_eq!(d.usage.team_members, 8);
                            true
                        })
                    },
                );
                getorg.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
        }

        if let Some(s) = &search {
            let o_actor = Actor::user(&s.o_owner);
            for (name, page, row) in [
                ("search_members_page1", 1u32, &mut search1),
                ("search_members_deep", 100, &mut search_deep),
            ] {
                if !cfg.wants(name) {
                    continue;
                }
                let q = MemberQuery {
                    page: Some(page),
                    per_page: Some(20),
                    search: Some(SEARCH_PREFIX.into()),
                    ..Default::default()
                };
                let (o, l) = pair(
                    &mut || {
                        timed(cfg.read, 1, |_| {
                            let p = s.odb.list_members(&o_actor, &s.o_org, &q).expect("search");
                            assert_eq!((p.data.len(), p.pagination.total), (20, s.hits));
                            true
                        })
                    },
                    &mut || {
                        timed(cfg.read, 1, |_| {
                            let p = lite_search_members(
                                &s.lite,
                                &s.l_owner,
                                &s.l_org,
                                SEARCH_PREFIX,
                                page,
                                20,
                            );
                            assert_eq!((p.data.len(), p.pagination.total), (20, s.hits));
                            true
                        })
                    },
                );
                row.push(
                    round,
                    Sample {
                        orgdb: o,
                        sqlite: l,
                        fsync: None,
                        extra: None,
                    },
                );
            }
        }
    }

    if !buffered.samples.is_empty() {
        let by_call = median(buffered.own.extra.clone());
        buffered.note = format!(
            "orgdb through `UsageRecorder::record`, final flush included; the same events \
             through `Db::record_usage_buffered` (organization named on each call) {}/s; \
             SQLite: WAL, synchronous=NORMAL, 1 000 events a transaction",
            fmt_rate(by_call)
        );
    }
    if !reserve.samples.is_empty() {
        reserve.note = format!(
            "orgdb: two durable calls a pair (reserve_usage, then commit_reservation; each one \
             commit of the database after a fold); SQLite: hold checked against the month \
             total plus live holds and inserted, then deleted and the actual counted, in one \
             IMMEDIATE transaction; in two (one per call, as orgdb): {}/s",
            fmt_rate(median(reserve_split))
        );
    }
    if !usage16.samples.is_empty() {
        accept16.note = "orgdb: 16 threads, one Db clone each (writes share journal syncs); \
            SQLite: the 16 threads share one connection behind a mutex (its writers would \
            otherwise queue in the busy handler)"
            .to_owned();
        usage16.note =
            format!("SQLite: 16 connections, busy_timeout 10 s, BEGIN IMMEDIATE; {fairness16}");
        usage16s.note = "the same orgdb figure against SQLite with the 16 threads sharing one \
                         connection behind a mutex (measured right after, same round)"
            .to_owned();
    }
    if !report.samples.is_empty() {
        report.note = format!(
            "SQLite as two GROUP BY queries instead: {}/s (slower; the table uses the one-pass \
             version)",
            fmt_rate(median(group_by))
        );
    }
    if !deep.samples.is_empty() {
        deep.note =
            "orgdb seeks through the member index's counted buckets (member_counts) and skips \
                     fewer than 512 keys; SQLite skips 9 000 in its covering index"
                .to_owned();
    }

    let mut bulk_rows = Vec::new();
    let shape = BulkShape::new(cfg.own.bulk_orgs);
    if cfg.wants("bulk_load") {
        println!(
            "-- bulk load: {} users, {} orgs, {} memberships ({} calls a side)",
            shape.users,
            shape.orgs,
            shape.orgs * shape.per_org,
            shape.calls()
        );
        let o = bulk_orgdb(dir, &shape);
        let l = bulk_sqlite(dir, &plans, &shape);
        let mut row = Row::new("bulk_load", "calls/s", Target::None);
        row.push(
            0,
            Sample {
                orgdb: shape.calls() as f64 / o.secs,
                sqlite: shape.calls() as f64 / l.secs,
                fsync: None,
                extra: None,
            },
        );
        row.note = format!(
            "{} orgs / {} memberships / {} users: orgdb {:.1} s, file {} ({} after compact(), \
             plus the fixed {} usage journal); SQLite {:.1} s, file {} ({} after VACUUM); \
             size ratio {:.2} ({:.2} compacted)",
            shape.orgs,
            shape.orgs * shape.per_org,
            shape.users,
            o.secs,
            fmt_bytes(o.size),
            fmt_bytes(o.compacted),
            fmt_bytes(file_len(&dir.join("bulk.redb.journal"))),
            l.secs,
            fmt_bytes(l.size),
            fmt_bytes(l.compacted),
            o.size as f64 / l.size as f64,
            o.compacted as f64 / l.compacted as f64,
        );
        bulk_rows.push(row);
    }
    if cfg.wants("bulk_import") {
        let export = bulk_export(&shape);
        let records = export.iter().filter(|b| **b == b'\n').count();
        println!(
            "-- bulk import: {records} JSON lines ({})",
            fmt_bytes(export.len() as u64)
        );
        let o = import_orgdb(dir, &export);
        let l = import_sqlite(dir, &export);
        let mut row = Row::new("bulk_import", "records/s", Target::None);
        row.push(
            0,
            Sample {
                orgdb: records as f64 / o.secs,
                sqlite: records as f64 / l.secs,
                fsync: None,
                extra: None,
            },
        );
        row.note = format!(
            "{records} records: orgdb import_jsonl {:.1} s (includes its final check()), file {} \
             ({} after compact()); SQLite {:.1} s, file {} ({} after VACUUM); size ratio {:.2} \
             ({:.2} compacted)",
            o.secs,
            fmt_bytes(o.size),
            fmt_bytes(o.compacted),
            l.secs,
            fmt_bytes(l.size),
            fmt_bytes(l.compacted),
            o.size as f64 / l.size as f64,
            o.compacted as f64 / l.compacted as f64,
        );
        bulk_rows.push(row);
    }

    rows.extend([
        fsync1,
        fsync16,
        usage1,
        reserve,
        usage16,
        usage16s,
        buffered,
        accept,
        accept16,
        page1,
        deep,
        cursor,
        search1,
        search_deep,
        inv_page1,
        inv_deep,
        report,
        getorg,
    ]);
    rows.extend(bulk_rows);
    println!();
    println!("orgdb vs SQLite, {}", machine(&sqlite));
    print_table(&rows);
    if cfg.keep {
        println!("kept {}", tmp.keep().display());
    }
}
