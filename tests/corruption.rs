//! Corruption: damaged database and journal files give a typed error, never a panic or wrong
//! data returned without a word.
//!
//! `damaged_database_files`: a small file database (organizations, members of every role,
//! invitations, a project, resources, usage over several days, audit history) is built once
//! and read back from a pristine copy (the baseline). Each trial (deterministic seed) copies
//! the file, damages it (flips 1-8 bytes anywhere, flips bytes in used pages, truncates, zeroes
//! a used 4 KiB page, flips bytes in the header page), opens it and reads everything inside
//! `catch_unwind`. Asserted: no panic (in the call or in any thread); every error of an open or
//! a `check()` is `corrupted` or `storage_error` (`incompatible_version` where the flip hit the
//! schema version); every read equals the baseline or fails with one of those codes, unless
//! `check()` reports a problem (a damaged key can hide a row, so a read answers `not_found`:
//! that is wrong data, and `check()` must report it).
//! `ORGDB_CORRUPTION_TRIALS` and `ORGDB_CORRUPTION_SEED` override the count and the seed.
//!
//! `damaged_journal_records`: unfolded usage in the journal; each trial damages one record and
//! asserts that replay keeps exactly the records before it.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};
use common::start;
use orgdb::{
    Actor, Db, InvitationQuery, ManualClock, MemberQuery, NewInvitation, NewOrganization,
    NewProject, NewUser, Options, ResourceKind, UsageEvent, UsageQuery,
};

const DEFAULT_TRIALS: u64 = 300;
const DEFAULT_SEED: u64 = 0x0c0f_fee5_eed5_0001;
const PAGE: usize = 4096;

/// Panics seen by the hook, with the thread's name (the flusher thread's are caught here too).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records panics instead of printing them (hundreds of trials would flood the output).
fn quiet_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            let msg = format!(
                "[thread {}] {info}",
                thread.name().unwrap_or("unnamed").to_owned()
            );
            PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
        }));
    });
}

/// Panics since `mark`: (in this thread, in orgdb's own threads). The other test's are left
/// out. A panic in this thread may have been caught inside orgdb (which maps redb's panics on
/// damaged pages to `corrupted`): only one that reaches the caller is a failure.
fn panics_since(mark: usize) -> (Vec<String>, Vec<String>) {
    let me = format!(
        "[thread {}]",
        std::thread::current().name().unwrap_or("unnamed")
    );
    let all = PANICS.lock().unwrap_or_else(|p| p.into_inner())[mark..].to_vec();
    let own = all.iter().filter(|m| m.starts_with(&me)).cloned().collect();
    let background = all
        .into_iter()
        .filter(|m| m.starts_with("[thread orgdb"))
        .collect();
    (own, background)
}

fn panic_mark() -> usize {
    PANICS.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn opts() -> Options {
    Options {
        usage_flush_interval: Duration::from_secs(3600),
        journal_size: 64 * 1024,
        ..Options::with_clock(ManualClock::new(start() + TimeDelta::days(3)))
    }
}

/// A scratch directory, in memory where there is one (hundreds of copies and syncs).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn journal_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// What the reads name: every organization and user, and the usage range.
struct World {
    orgs: Vec<String>,
    users: Vec<String>,
}

/// Builds the database at `path` through the public API; returns what to read.
fn build(path: &Path) -> World {
    let clock = ManualClock::new(start());
    let db = Db::open_with(
        path,
        Options {
            clock: std::sync::Arc::new(clock.clone()),
            ..opts()
        },
    )
    .unwrap();
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(
            db.create_user(&NewUser {
                email: format!("user{i}@example.com"),
                name: format!("User {i}"),
            })
            .unwrap()
            .id,
        );
    }
    let mut orgs = Vec::new();
    for (o, plan) in ["team", "team", "enterprise"].iter().enumerate() {
        let owner = &users[o];
        let org = db
            .create_organization(
                owner,
                &NewOrganization {
                    name: format!("Org {o}"),
                    plan: Some((*plan).to_owned()),
                    external_id: Some(format!("ext-{o}")),
                    description: Some("described".into()),
                    metadata: BTreeMap::from([("k".to_owned(), format!("v{o}"))]),
                    ..Default::default()
                },
            )
            .unwrap()
            .organization
            .id;
        let by = Actor::user(owner);
        for (u, role) in [(3, "admin"), (4, "member"), (5, "viewer")] {
            db.add_member(&by, &org, &users[(u + o) % 8], role).unwrap();
        }
        let project = db
            .create_project(
                &by,
                &org,
                &NewProject {
                    name: "Project".into(),
                    description: None,
                },
            )
            .unwrap();
        db.add_project_member(
            &by,
            &org,
            &project.id,
            &users[(4 + o) % 8],
            Some(orgdb::Role::Member.into()),
        )
        .unwrap();
        let mcp = db
            .register_resource(&by, &org, ResourceKind::Mcp, "server")
            .unwrap();
        let key = db
            .register_resource(&by, &org, ResourceKind::ApiKey, "key")
            .unwrap();
        db.remove_resource(&by, &org, &key.id).unwrap();
        for i in 0..3 {
            db.create_invitation(
                &by,
                &org,
                &NewInvitation {
                    email: format!("invitee{i}@example.com"),
                    role: Some("member".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        for day in 0..3 {
            clock.set(start() + TimeDelta::days(day));
            db.record_usage(
                &org,
                &UsageEvent::new(10 + day as u64)
                    .resource(&mcp.id)
                    .key(format!("d{day}")),
            )
            .unwrap();
            db.record_usage(&org, &UsageEvent::new(1)).unwrap();
        }
        clock.set(start());
        orgs.push(org);
    }
    World { orgs, users }
}

type Reads = Vec<(String, Result<String, orgdb::Error>)>;

thread_local! {
    /// The call a trial is in, for naming where a panic happened.
    static STEP: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn set_step(what: &str) {
    STEP.with(|s| *s.borrow_mut() = what.to_owned());
}

fn step() -> String {
    STEP.with(|s| s.borrow().clone())
}

/// Every read, as (what, debug rendering or error).
fn read_all(db: &Db, world: &World) -> Reads {
    fn dbg<T: std::fmt::Debug>(r: orgdb::Result<T>) -> Result<String, orgdb::Error> {
        r.map(|v| format!("{v:?}"))
    }
    let sys = Actor::System;
    let mut out: Reads = Vec::new();
    let mut read = |what: String, f: &dyn Fn() -> Result<String, orgdb::Error>| {
        set_step(&what);
        out.push((what, f()));
    };
    for org in &world.orgs {
        read(format!("get_organization {org}"), &|| {
            dbg(db.get_organization(&sys, org))
        });
        read(format!("list_members {org}"), &|| {
            let q = MemberQuery {
                per_page: Some(100),
                ..Default::default()
            };
            dbg(db.list_members(&sys, org, &q))
        });
        read(format!("list_invitations {org}"), &|| {
            let q = InvitationQuery {
                per_page: Some(100),
                ..Default::default()
            };
            dbg(db.list_invitations(&sys, org, &q))
        });
        read(format!("usage_report {org}"), &|| {
            let q = UsageQuery {
                period: None,
                start_date: NaiveDate::from_ymd_opt(2024, 1, 1),
                end_date: NaiveDate::from_ymd_opt(2024, 1, 31),
            };
            dbg(db.usage_report(&sys, org, &q))
        });
        read(format!("audit_log {org}"), &|| {
            dbg(db.audit_log(&sys, org, 0, 1000))
        });
        read(format!("list_projects {org}"), &|| {
            dbg(db.list_projects(&sys, org))
        });
        read(format!("list_resources {org}"), &|| {
            dbg(db.list_resources(&sys, org, None))
        });
    }
    for user in &world.users {
        read(format!("get_user {user}"), &|| dbg(db.get_user(user)));
    }
    read("export_jsonl".to_owned(), &|| {
        let mut export = Vec::new();
        db.export_jsonl(&mut export)
            .map(|_| String::from_utf8_lossy(&export).into_owned())
    });
    out
}

/// What redb's own integrity check (checksums of every page) says of a damaged file: run on
/// a separate copy, for the report only (orgdb does not call it).
fn redb_verdict(path: &Path) -> &'static str {
    let outcome = catch_unwind(|| {
        let mut db = match redb::Database::open(path) {
            Ok(db) => db,
            Err(_) => return "error on open",
        };
        match db.check_integrity() {
            Ok(true) => "intact",
            Ok(false) => "damage found (repaired)",
            Err(_) => "damage found (error)",
        }
    });
    outcome.unwrap_or("panic")
}

#[derive(Debug, Default)]
struct Tally {
    clean_identical: u64,
    open_errors: BTreeMap<String, u64>,
    read_errors: u64,
    detected_by_check: u64,
    /// Trials where redb panicked and orgdb caught it (and returned an error).
    panics_caught_inside: u64,
    /// Trials with wrong data that `check()` reported.
    notes: Vec<String>,
    wrong_data_detected_by_check: u64,
    by_mode: BTreeMap<&'static str, [u64; 4]>,
    failures: Vec<String>,
    /// For failing trials: what redb's `check_integrity` said of the damaged file.
    redb_on_failures: BTreeMap<&'static str, u64>,
}

const MODES: [&str; 5] = [
    "flip anywhere",
    "flip in used pages",
    "truncate",
    "zero a used page",
    "flip in header page",
];

/// Damages `bytes` in place (or shortens them); returns a description.
fn damage(bytes: &mut Vec<u8>, pristine: &[u8], mode: usize, rng: &mut Rng) -> String {
    let used: Vec<usize> = pristine
        .chunks(PAGE)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|b| *b != 0))
        .map(|(i, _)| i)
        .collect();
    let flip = |bytes: &mut Vec<u8>, at: usize, rng: &mut Rng| {
        let x = (rng.next() % 255 + 1) as u8;
        bytes[at] ^= x;
        format!("{at:#x}^{x:#04x}")
    };
    match mode {
        0 | 1 | 4 => {
            let n = 1 + rng.below(8);
            let mut what = Vec::new();
            for _ in 0..n {
                let at = match mode {
                    0 => rng.below(bytes.len()),
                    1 => used[rng.below(used.len())] * PAGE + rng.below(PAGE),
                    _ => rng.below(PAGE.min(bytes.len())),
                };
                let at = at.min(bytes.len() - 1);
                what.push(flip(bytes, at, rng));
            }
            format!("flip {}", what.join(" "))
        }
        2 => {
            let at = if rng.next().is_multiple_of(2) {
                rng.below(bytes.len() / PAGE) * PAGE
            } else {
                rng.below(bytes.len())
            };
            bytes.truncate(at);
            format!("truncate to {at:#x}")
        }
        _ => {
            let page = used[rng.below(used.len())];
            let end = ((page + 1) * PAGE).min(bytes.len());
            bytes[page * PAGE..end].fill(0);
            format!("zero page {page} ({:#x})", page * PAGE)
        }
    }
}

/// Where two renderings first differ, with a little context.
fn difference(want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let around = |s: &str| {
        let mut from = at.saturating_sub(30);
        while !s.is_char_boundary(from) {
            from -= 1;
        }
        let mut to = (at + 30).min(s.len());
        while !s.is_char_boundary(to) {
            to += 1;
        }
        s[from..to].to_owned()
    };
    format!("expected …{}… got …{}…", around(want), around(got))
}

fn allowed(code: &str) -> bool {
    ["corrupted", "storage_error", "incompatible_version"].contains(&code)
}

#[test]
fn damaged_database_files() {
    quiet_panics();
    let trials: u64 = std::env::var("ORGDB_CORRUPTION_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TRIALS);
    let seed: u64 = std::env::var("ORGDB_CORRUPTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let dir = scratch();
    let built = dir.path().join("built.redb");
    let world = build(&built);
    let pristine = std::fs::read(&built).unwrap();
    let journal = std::fs::read(journal_of(&built)).unwrap();

    // The baseline: the pristine file opened the way every trial opens its copy.
    let base_path = dir.path().join("base.redb");
    std::fs::write(&base_path, &pristine).unwrap();
    std::fs::write(journal_of(&base_path), &journal).unwrap();
    let baseline = {
        let db = Db::open_with(&base_path, opts()).unwrap();
        let reads = read_all(&db, &world);
        let report = db.check().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        reads
    };
    for (what, r) in &baseline {
        assert!(r.is_ok(), "baseline {what}: {r:?}");
    }

    let mut tally = Tally::default();
    let trial_path = dir.path().join("trial.redb");
    let probe_path = dir.path().join("probe.redb");
    let started = std::time::Instant::now();
    for trial in 0..trials {
        let mut rng = Rng(seed ^ trial.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mode = (trial % MODES.len() as u64) as usize;
        let mut bytes = pristine.clone();
        let what = damage(&mut bytes, &pristine, mode, &mut rng);
        std::fs::write(&trial_path, &bytes).unwrap();
        std::fs::write(journal_of(&trial_path), &journal).unwrap();
        std::fs::write(&probe_path, &bytes).unwrap();
        let failures_before = tally.failures.len();
        let label = format!("trial {trial} (seed {seed:#x}, {}: {what})", MODES[mode]);
        let mark = panic_mark();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            set_step("open");
            let db = match Db::open_with(&trial_path, opts()) {
                Ok(db) => db,
                Err(e) => return Err(e),
            };
            let reads = read_all(&db, &world);
            set_step("check");
            let check = db.check();
            set_step("drop");
            drop(db);
            Ok((reads, check))
        }));
        let (panics, background) = panics_since(mark);
        let slot = tally.by_mode.entry(MODES[mode]).or_default();
        if outcome.is_ok() && !panics.is_empty() {
            tally.panics_caught_inside += 1;
        }
        match outcome {
            Err(_) => {
                tally.failures.push(format!(
                    "{label}: PANIC in {} {}",
                    step(),
                    panics.join(" | ")
                ));
            }
            Ok(_) if !background.is_empty() => {
                tally.failures.push(format!(
                    "{label}: PANIC in a background thread {}",
                    background.join(" | ")
                ));
            }
            Ok(Err(e)) => {
                slot[1] += 1;
                if !allowed(e.code()) {
                    tally
                        .failures
                        .push(format!("{label}: open gave {}: {e}", e.code()));
                }
                *tally.open_errors.entry(e.code().to_owned()).or_default() += 1;
            }
            Ok(Ok(_)) if bytes.is_empty() => {
                // The journal beside it holds records: `Db::open` must refuse the empty file
                // rather than take it for a new database.
                tally.failures.push(format!(
                    "{label}: an empty file beside a journal with records opened as new"
                ));
            }
            Ok(Ok((reads, check))) => {
                let detected = match &check {
                    Ok(report) => !report.is_ok(),
                    Err(e) => {
                        if !allowed(e.code()) {
                            tally
                                .failures
                                .push(format!("{label}: check gave {}: {e}", e.code()));
                        }
                        true
                    }
                };
                let mut errors = 0;
                let mut wrong = Vec::new();
                for ((name, got), (_, want)) in reads.iter().zip(&baseline) {
                    match got {
                        Err(e) if allowed(e.code()) => errors += 1,
                        // A damaged key or branch page can hide a row: the look-up misses
                        // (`not_found`), which no read can tell from absence. Like changed data,
                        // it must be reported by `check()`, or the trial fails below.
                        Err(e) => wrong.push(format!("{name} [gave {}: {e}]", e.code())),
                        Ok(v) if Ok(v) != want.as_ref() => {
                            let want = want.as_ref().map(String::as_str).unwrap_or_default();
                            wrong.push(format!("{name} [{}]", difference(want, v)));
                        }
                        Ok(_) => {}
                    }
                }
                if !wrong.is_empty() && !detected {
                    tally.failures.push(format!(
                        "{label}: WRONG DATA, no error and check() ok, from {}",
                        wrong.join(", ")
                    ));
                } else if !wrong.is_empty() {
                    tally.wrong_data_detected_by_check += 1;
                    slot[3] += 1;
                    let problems = check.as_ref().map(|r| r.problems.len()).unwrap_or(0);
                    tally.notes.push(format!(
                        "{label}: different data from {}, and check() reports {problems} problems",
                        wrong.join(", ")
                    ));
                } else if detected {
                    tally.detected_by_check += 1;
                    slot[3] += 1;
                } else if errors > 0 {
                    tally.read_errors += 1;
                    slot[2] += 1;
                } else {
                    tally.clean_identical += 1;
                    slot[0] += 1;
                }
            }
        }
        if tally.failures.len() > failures_before {
            let verdict = redb_verdict(&probe_path);
            *tally.redb_on_failures.entry(verdict).or_default() += 1;
            let last = tally.failures.len() - 1;
            tally.failures[last].push_str(&format!(" [redb check_integrity: {verdict}]"));
        }
    }
    println!(
        "corruption: {trials} trials (seed {seed:#x}) in {:.1} s; file {} bytes, {} used pages",
        started.elapsed().as_secs_f64(),
        pristine.len(),
        pristine
            .chunks(PAGE)
            .filter(|p| p.iter().any(|b| *b != 0))
            .count()
    );
    println!(
        "  clean open + identical data: {}\n  typed error on open: {:?}\n  typed error on a read: {}\n  \
         detected by check (data equal): {}\n  wrong data but detected by check: {}\n  \
         failures (panic, wrong data undetected, other code): {}\n  \
         trials where a storage panic was caught inside orgdb: {}",
        tally.clean_identical,
        tally.open_errors,
        tally.read_errors,
        tally.detected_by_check,
        tally.wrong_data_detected_by_check,
        tally.failures.len(),
        tally.panics_caught_inside
    );
    for (mode, [clean, open, read, check]) in &tally.by_mode {
        println!(
            "  {mode:>20}: clean {clean}, open error {open}, read error {read}, check {check}"
        );
    }
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for f in &tally.failures {
        let kind = if let Some(at) = f.find("panicked at ") {
            let rest = &f[at + 12..];
            let loc = rest.split(':').take(2).collect::<Vec<_>>().join(":");
            let loc = loc.rsplit("/src/").next().unwrap_or(&loc).to_owned();
            format!("panic at {loc}")
        } else if f.contains("WRONG DATA") {
            "wrong data, undetected".to_owned()
        } else {
            "an error code other than corrupted/storage_error".to_owned()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    println!(
        "  redb check_integrity() on the failing trials' files: {:?}",
        tally.redb_on_failures
    );
    for (kind, n) in &kinds {
        println!("  failures: {n:>3} x {kind}");
    }
    for n in &tally.notes {
        println!("  note: {n}");
    }
    for f in &tally.failures {
        println!("  FAILURE {f}");
    }
    assert!(
        tally.failures.is_empty(),
        "{} of {trials} trials failed; first: {}",
        tally.failures.len(),
        tally.failures[0]
    );
}

// The journal.

/// CRC-32 (IEEE), as the journal computes it.
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// (offset, length) of each record of the journal's current generation, from offset 0.
fn records(journal: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    let generation = journal.get(8..12).map(|g| g.to_vec());
    while at + 24 <= journal.len() {
        let len = u32::from_le_bytes(journal[at + 4..at + 8].try_into().unwrap()) as usize;
        if len < 24
            || at + len > journal.len()
            || journal.get(at + 8..at + 12).map(|g| g.to_vec()) != generation
        {
            break;
        }
        let crc = u32::from_le_bytes(journal[at..at + 4].try_into().unwrap());
        if crc != crc32(&journal[at + 4..at + len]) {
            break;
        }
        out.push((at, len));
        at += len;
    }
    out
}

/// Creates the file with an owner and an enterprise organization, and closes it: a reopen
/// starts a new journal generation, so its records are what follows alone (writes are
/// journaled too). Returns (owner, organization).
fn owner_and_org(path: &Path) -> (String, String) {
    let db = Db::open_with(path, opts()).unwrap();
    let (org, owner) = common::org(&db, "Acme", "enterprise");
    (owner.id, org)
}

#[test]
fn damaged_journal_records() {
    quiet_panics();
    let dir = scratch();
    let live = dir.path().join("live.redb");
    // Usage the journal holds but no checkpoint folded: the handle is leaked (as by a crash),
    // so the last checkpoint never runs; the files are copied while it is open.
    let calls: Vec<Vec<u64>> = (0..12u64)
        .map(|i| (0..(1 + i % 3)).map(|j| i * 10 + j + 1).collect())
        .collect();
    let org = {
        let (_, org) = owner_and_org(&live);
        let db = Db::open_with(&live, opts()).unwrap();
        for (i, counts) in calls.iter().enumerate() {
            let events: Vec<UsageEvent> = counts
                .iter()
                .enumerate()
                .map(|(j, c)| UsageEvent::new(*c).key(format!("r{i}e{j}")))
                .collect();
            db.record_usage_batch(&org, &events).unwrap();
        }
        std::mem::forget(db);
        org
    };
    let db_bytes = std::fs::read(&live).unwrap();
    let journal = std::fs::read(journal_of(&live)).unwrap();
    let recs = records(&journal);
    assert_eq!(recs.len(), calls.len(), "one record per acknowledged call");
    let prefix = |k: usize| -> u64 { calls[..k].iter().flatten().sum() };
    let end = recs.last().map(|(a, l)| a + l).unwrap();

    // (what, damaged journal, records expected to survive)
    let mut cases: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut rng = Rng(DEFAULT_SEED);
    for (k, &(at, len)) in recs.iter().enumerate() {
        for _ in 0..3 {
            let mut j = journal.clone();
            let i = at + rng.below(len);
            let x = (rng.next() % 255 + 1) as u8;
            j[i] ^= x;
            cases.push((format!("record {k}: byte {i:#x} ^ {x:#04x}"), j, k));
        }
        let mut j = journal.clone();
        j[at..at + 24].fill(0);
        cases.push((format!("record {k}: header zeroed"), j, k));
        let mut j = journal.clone();
        j[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push((format!("record {k}: length u32::MAX"), j, k));
        // A foreign generation behind a valid checksum.
        let mut j = journal.clone();
        let g = u32::from_le_bytes(j[at + 8..at + 12].try_into().unwrap());
        j[at + 8..at + 12].copy_from_slice(&(g + 1).to_le_bytes());
        let crc = crc32(&j[at + 4..at + len]);
        j[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        cases.push((format!("record {k}: next generation, valid crc"), j, k));
        // Out of sequence behind a valid checksum (from the second record on).
        if k > 0 {
            let mut j = journal.clone();
            let seq = u64::from_le_bytes(j[at + 16..at + 24].try_into().unwrap());
            j[at + 16..at + 24].copy_from_slice(&(seq + 5).to_le_bytes());
            let crc = crc32(&j[at + 4..at + len]);
            j[at..at + 4].copy_from_slice(&crc.to_le_bytes());
            cases.push((format!("record {k}: sequence skips, valid crc"), j, k));
        }
    }
    // Garbage after the last record: every record survives.
    let mut j = journal.clone();
    for b in &mut j[end..end + 4096] {
        *b = rng.next() as u8;
    }
    cases.push(("random bytes after the last record".into(), j, recs.len()));
    // The last record again after itself: sequence repeats, ignored.
    let mut j = journal.clone();
    let (at, len) = *recs.last().unwrap();
    let copy = j[at..at + len].to_vec();
    j[end..end + len].copy_from_slice(&copy);
    cases.push(("last record repeated".into(), j, recs.len()));
    // A journal shorter than its minimum size was never fully created (records are written
    // only after the zero fill is durable): it is filled again and nothing is replayed.
    cases.push((
        "truncated to 32 KiB".into(),
        journal[..32 * 1024].to_vec(),
        0,
    ));
    cases.push(("journal missing".into(), Vec::new(), 0));

    let path = dir.path().join("trial.redb");
    let mut failures = Vec::new();
    for (what, damaged, keep) in &cases {
        std::fs::write(&path, &db_bytes).unwrap();
        if what == "journal missing" {
            let _ = std::fs::remove_file(journal_of(&path));
        } else {
            std::fs::write(journal_of(&path), damaged).unwrap();
        }
        let mark = panic_mark();
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            let db = Db::open_with(&path, opts()).map_err(|e| format!("open: {e:?}"))?;
            let got = db
                .get_organization(&Actor::System, &org)
                .map_err(|e| format!("get: {e:?}"))?
                .usage
                .monthly_requests;
            if got != prefix(*keep) {
                return Err(format!(
                    "replayed total {got}, expected {} (the first {keep} records)",
                    prefix(*keep)
                ));
            }
            let report = db.check().map_err(|e| format!("check: {e:?}"))?;
            if !report.is_ok() {
                return Err(format!("check: {:?}", report.problems));
            }
            // The last kept record's keys are remembered; the first lost one's are not.
            if *keep > 0 {
                let r = db
                    .record_usage(&org, &UsageEvent::new(1).key(format!("r{}e0", keep - 1)))
                    .map_err(|e| format!("record: {e:?}"))?;
                if !r.duplicate {
                    return Err(format!("key of record {} forgotten", keep - 1));
                }
            }
            if *keep < calls.len() {
                let r = db
                    .record_usage(&org, &UsageEvent::new(1).key(format!("r{keep}e0")))
                    .map_err(|e| format!("record: {e:?}"))?;
                if r.duplicate {
                    return Err(format!("key of lost record {keep} remembered"));
                }
            }
            Ok(())
        }));
        let (own, background) = panics_since(mark);
        let panics = [own, background].concat();
        match result {
            Err(_) => failures.push(format!("{what}: PANIC {}", panics.join(" | "))),
            Ok(Err(e)) => failures.push(format!("{what}: {e}")),
            Ok(Ok(())) if !panics.is_empty() => {
                failures.push(format!("{what}: PANIC in a thread {}", panics.join(" | ")))
            }
            Ok(Ok(())) => {}
        }
    }
    println!(
        "journal: {} records, {} damage cases, {} failures",
        recs.len(),
        cases.len(),
        failures.len()
    );
    for f in &failures {
        println!("  FAILURE {f}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Writes on a file opened with immediate durability are journaled (ARCHITECTURE.md,
/// "Journaled writes"): the file holds them only from the next checkpoint. A crash before it
/// is replayed from the journal in commit order; a record the journal lost (torn, zeroed)
/// ends the replay there, so the file holds exactly the writes before it, checked clean.
#[test]
fn journaled_writes_replay_to_a_prefix_of_the_commits() {
    quiet_panics();
    let dir = scratch();
    let live = dir.path().join("live.redb");
    let (owner, org) = owner_and_org(&live);
    // Reopened: a new journal generation, so its records are the writes below alone.
    let db = Db::open_with(&live, opts()).unwrap();
    let export = |db: &Db| {
        let mut out = Vec::new();
        db.export_jsonl(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let actor = Actor::User(owner.clone());
    // The state after each write: inserts, overwrites and deletes of many tables.
    let mut states = vec![export(&db)];
    for i in 0..6 {
        let user = db
            .create_user(&NewUser {
                email: format!("u{i}@example.com"),
                name: format!("U{i}"),
            })
            .unwrap()
            .id;
        states.push(export(&db));
        db.add_member(&actor, &org, &user, "member").unwrap();
        states.push(export(&db));
        db.update_user(
            &user,
            &orgdb::UserPatch {
                name: Some(format!("Renamed {i}")),
                ..Default::default()
            },
        )
        .unwrap();
        states.push(export(&db));
        if i % 2 == 1 {
            db.remove_member(&actor, &org, &orgdb::MemberRef::User(user))
                .unwrap();
            states.push(export(&db));
        }
    }
    // A crash: no checkpoint runs, the files are copied while the handle is open.
    std::mem::forget(db);
    let db_bytes = std::fs::read(&live).unwrap();
    let journal = std::fs::read(journal_of(&live)).unwrap();
    let recs = records(&journal);
    assert_eq!(recs.len(), states.len() - 1, "one record per write");

    let path = dir.path().join("trial.redb");
    let mut failures = Vec::new();
    for (keep, want) in states.iter().enumerate() {
        let mut j = journal.clone();
        if let Some(&(at, _)) = recs.get(keep) {
            j[at..at + 24].fill(0);
        }
        std::fs::write(&path, &db_bytes).unwrap();
        std::fs::write(journal_of(&path), &j).unwrap();
        let db = match Db::open_with(&path, opts()) {
            Ok(db) => db,
            Err(e) => {
                failures.push(format!("{keep} records: open: {e:?}"));
                continue;
            }
        };
        if export(&db) != *want {
            failures.push(format!("{keep} records: not the state after {keep} writes"));
        }
        let report = db.check().unwrap();
        if !report.is_ok() {
            failures.push(format!("{keep} records: check: {:?}", report.problems));
        }
        // Replayed once: opened again, the same.
        drop(db);
        let db = Db::open_with(&path, opts()).unwrap();
        if export(&db) != *want {
            failures.push(format!("{keep} records: changed by a second open"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
