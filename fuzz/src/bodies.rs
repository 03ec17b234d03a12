//! The bodies of the fuzz targets, in ONE file used twice, verbatim:
//!
//! - by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, through this crate's `lib.rs`);
//! - by the CI smoke test `tests/fuzz_smoke.rs`, which includes this file with
//!   `#[path = "../fuzz/src/bodies.rs"]` (the main crate cannot depend on the fuzz crate).
//!
//! So the smoke pass and the fuzzer run the same code. It may use only `orgdb`, `chrono`,
//! `crc32fast` and `std`: both packages have those. Every body panics (with the call and the input named) when
//! an invariant breaks; a panic is what the fuzzer reports as a crash.

use std::collections::BTreeMap;
use std::io::Cursor;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use orgdb::{
    Actor, Db, InvitationQuery, Limit, LimitOverrides, ManualClock, MemberQuery, NewInvitation,
    NewOrganization, NewProject, NewUser, Options, OrganizationPatch, OrganizationSettings, Period,
    ProjectPatch, ResourceKind, UsageEvent, UsageQuery, UserPatch,
};

/// Target `decode_stored`: every decoder of stored bytes and journal records on `data`. Must
/// return (a value or an error) and never panic or allocate without bound.
///
/// Stored values carry a crc32 that random bytes almost never match, which would keep the
/// decoders behind it out of reach; so the same bytes are also given behind a valid checksum,
/// in each layout of `store::codec` and `store::journal` (update these if those change):
/// a record `[tag][crc32 of body, LE][body]`, a counter or id `[bytes][crc32, LE]`, a journal
/// record `[crc32 of the rest, LE][len][...]` spanning the input.
pub fn decode_stored(data: &[u8]) {
    let _ = orgdb::fuzzing::decode_stored(data);
    if let Some((&tag, body)) = data.split_first() {
        let mut record = vec![tag];
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        let _ = orgdb::fuzzing::decode_stored(&record);
    }
    let mut value = data.to_vec();
    value.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let _ = orgdb::fuzzing::decode_stored(&value);
    if data.len() >= 24 {
        let mut journal = data[..data.len() / 8 * 8].to_vec();
        let len = journal.len() as u32;
        journal[4..8].copy_from_slice(&len.to_le_bytes());
        let sum = crc32fast::hash(&journal[4..]);
        journal[0..4].copy_from_slice(&sum.to_le_bytes());
        let _ = orgdb::fuzzing::decode_stored(&journal);
    }
}

/// Target `import_lines`: `data` as a JSON-lines import into an empty in-memory database.
/// Ok, or a typed error after which the database is still empty. After an Ok, the database
/// is sound and its export imports again into an equal database.
pub fn import_lines(data: &[u8]) {
    let db = Db::in_memory_with(Options::with_clock(ManualClock::new(start()))).unwrap();
    let empty = db.stats().unwrap();
    match db.import_jsonl(Cursor::new(data), None, &mut |_| {}) {
        Ok(_) => {
            let report = db.check().unwrap();
            assert!(report.is_ok(), "import Ok but check: {:?}", report.problems);
            let mut first = Vec::new();
            db.export_jsonl(&mut first).unwrap();
            let again = Db::in_memory_with(Options::with_clock(ManualClock::new(start()))).unwrap();
            if let Err(e) = again.import_jsonl(Cursor::new(&first), None, &mut |_| {}) {
                panic!("an export of an imported database does not import again: {e:?}");
            }
            let mut second = Vec::new();
            again.export_jsonl(&mut second).unwrap();
            assert!(
                first == second,
                "export -> import -> export changed the data:\n{}\n---\n{}",
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&second)
            );
        }
        Err(e) => {
            // The input is in memory: reading it cannot fail, so a bad line (not UTF-8
            // included) is the input's fault, never `storage_error`.
            assert!(
                ["validation_error", "incompatible_version"].contains(&e.code()),
                "import_jsonl: undocumented error {e:?}"
            );
            assert_eq!(
                db.stats().unwrap(),
                empty,
                "a failed import left rows: {e:?}"
            );
        }
    }
}

/// Target `validate_inputs`: a sequence of calls decoded from `data` (see [`Input`]) against a
/// small in-memory database. Each call must return Ok or an error whose code its documentation
/// lists; a failed call must change nothing; after every call `check()` must be ok.
pub fn validate_inputs(data: &[u8]) {
    validate_inputs_calls(data);
}

/// As [`validate_inputs`], returning the calls it made (to read what a crash input does).
pub fn validate_inputs_calls(data: &[u8]) -> Vec<String> {
    report_calls_on_panic();
    let mut world = World::new();
    let mut input = Input { data };
    let mut calls = Vec::new();
    while !input.data.is_empty() && calls.len() < MAX_CALLS {
        world.step(&mut input);
        calls.push(std::mem::take(&mut world.call));
    }
    calls
}

/// Calls per input.
const MAX_CALLS: usize = 24;

thread_local! {
    /// The call `validate_inputs` is making, for the panic report.
    static CALL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Makes a panic inside a call name the call (then defers to the previous hook: the
/// fuzzer's, which records the crash, or the test harness's).
fn report_calls_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let call = CALL.with(|c| std::mem::take(&mut *c.borrow_mut()));
            if !call.is_empty() {
                eprintln!("validate_inputs: panic during {call}");
            }
            previous(info);
        }));
    });
}

/// 2024-01-15T10:30:00Z, the clock every database starts at.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 10, 30, 0).unwrap()
}

/// Reads choices from the fuzzer's bytes; zeros once they run out.
pub struct Input<'a> {
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.byte() as usize % from.len()].clone()
    }
}

/// Strings every call may get, besides raw bytes and the ids of the world.
const WORDS: &[&str] = &[
    "",
    " ",
    "owner",
    "OWNER",
    " Admin ",
    "admin",
    "member",
    "viewer",
    "root",
    "a@b.co",
    "Alice@Example.com",
    " carol@example.com ",
    "dave@example.com",
    "a@b",
    "@",
    "a@@b.co",
    "x@y..z",
    "a b@c.de",
    "\0",
    "a\0b",
    "\u{7f}",
    "\t",
    "\n",
    "line\nbreak",
    "\u{200b}",
    "é",
    "日本",
    "\u{202e}rtl",
    "\u{fffd}",
    "🦀",
    "free",
    "pro",
    "team",
    "enterprise",
    "gold",
    "api",
    "www",
    "my-company",
    "acme",
    "-",
    "a-",
    "Z",
    "0",
    "mcp",
    "api_key",
    "pending",
    "accepted",
    "revoked",
    "EXPIRED",
    "0.user_x",
    "-1.a",
    "9223372036854775807.u",
    "-9223372036854775808.u",
    "1705314600000000.",
    "1705314600000000.\0",
    "abc.def",
    "key-1",
    "key-2",
    "org_",
    "user_",
    "mem_",
    "res_",
    "proj_",
    "inv_",
];

/// Lengths around every limit (names 200, slugs 64, keys 255, text 2 000, metadata 1 000).
const LENGTHS: &[usize] = &[
    0, 1, 63, 64, 65, 199, 200, 201, 254, 255, 256, 999, 1_000, 1_001, 2_000, 2_001, 70_000,
];

const COUNTS: &[u64] = &[
    0,
    1,
    2,
    999,
    1_000,
    1_001,
    50_000,
    (1 << 53) - 1,
    1 << 53,
    (1 << 53) + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// The world one input acts on.
struct World {
    db: Db,
    clock: ManualClock,
    users: Vec<String>,
    orgs: Vec<String>,
    /// Ids, tokens, slugs and emails seen so far: what a string choice may name.
    names: Vec<String>,
    /// Reservations made so far (a commit or release may name the last).
    reservations: Vec<String>,
    call: String,
}

impl World {
    fn new() -> World {
        let clock = ManualClock::new(start());
        let db = Db::in_memory_with(Options::with_clock(clock.clone())).unwrap();
        let mut names = Vec::new();
        let mut users = Vec::new();
        for who in ["owner", "admin", "member", "viewer", "outsider"] {
            let u = db
                .create_user(&NewUser {
                    email: format!("{who}@example.com"),
                    name: who.to_owned(),
                })
                .unwrap();
            names.push(u.email.clone());
            users.push(u.id);
        }
        let owner = &users[0];
        let created = db
            .create_organization(
                owner,
                &NewOrganization {
                    name: "Acme".into(),
                    plan: Some("pro".into()),
                    external_id: Some("ext-1".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let org = created.organization.id.clone();
        names.push(created.membership.id.clone());
        let by = Actor::user(owner);
        for (user, role) in users[1..4].iter().zip(["admin", "member", "viewer"]) {
            let m = db.add_member(&by, &org, user, role).unwrap();
            names.push(m.membership_id);
        }
        let project = db
            .create_project(
                &by,
                &org,
                &NewProject {
                    name: "P".into(),
                    description: None,
                },
            )
            .unwrap();
        names.push(project.id);
        for (kind, name) in [(ResourceKind::Mcp, "m1"), (ResourceKind::ApiKey, "k1")] {
            names.push(db.register_resource(&by, &org, kind, name).unwrap().id);
        }
        let gone = db
            .register_resource(&by, &org, ResourceKind::Mcp, "gone")
            .unwrap();
        db.remove_resource(&by, &org, &gone.id).unwrap();
        names.push(gone.id);
        let inv = db
            .create_invitation(
                &by,
                &org,
                &NewInvitation {
                    email: "invitee@example.com".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        names.push(inv.invite_id);
        names.push(inv.token);
        names.extend(["acme".to_owned(), "ext-1".to_owned()]);
        let mut orgs = vec![org];
        // A second organization the users do not belong to (except its owner, `outsider`).
        let other = db
            .create_organization(
                &users[4],
                &NewOrganization {
                    name: "Other".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        orgs.push(other.organization.id);
        names.extend(users.iter().cloned());
        names.extend(orgs.iter().cloned());
        World {
            db,
            clock,
            users,
            orgs,
            names,
            reservations: Vec::new(),
            call: String::new(),
        }
    }

    fn string(&mut self, input: &mut Input) -> String {
        let sel = input.byte();
        match sel {
            0..=63 => input.pick(WORDS).to_owned(),
            64..=127 => {
                let name = input.pick(&self.names);
                match input.byte() % 6 {
                    0 => format!("{name}\0"),
                    1 => format!(" {name} "),
                    2 => name.to_uppercase(),
                    3 => format!("{name}x"),
                    4 => name.chars().take(name.chars().count() / 2).collect(),
                    _ => name,
                }
            }
            128..=199 => {
                let n = input.byte() as usize;
                String::from_utf8_lossy(input.bytes(n)).into_owned()
            }
            200..=219 => {
                let n = input.u16() as usize;
                String::from_utf8_lossy(input.bytes(n)).into_owned()
            }
            _ => {
                let len = input.pick(LENGTHS);
                let c = input.pick(&['a', 'é', '日', '\0', ' ', '-', '🦀']);
                let mut s: String = std::iter::repeat_n(c, len).collect();
                if input.bool() {
                    s.insert(0, 'x');
                }
                s
            }
        }
    }

    fn opt_string(&mut self, input: &mut Input) -> Option<String> {
        input.bool().then(|| self.string(input))
    }

    fn opt_opt_string(&mut self, input: &mut Input) -> Option<Option<String>> {
        match input.byte() % 3 {
            0 => None,
            1 => Some(None),
            _ => Some(Some(self.string(input))),
        }
    }

    fn map(&mut self, input: &mut Input) -> BTreeMap<String, String> {
        let n = input.pick(&[0usize, 0, 1, 2, 3, 64, 65]);
        let mut map = BTreeMap::new();
        for i in 0..n {
            let k = if n > 3 {
                format!("k{i}")
            } else {
                self.string(input)
            };
            let v = if n > 3 {
                "v".to_owned()
            } else {
                self.string(input)
            };
            map.insert(k, v);
        }
        map
    }

    fn settings(&mut self, input: &mut Input) -> OrganizationSettings {
        OrganizationSettings {
            pin_protection: input.bool(),
            extra: self.map(input),
        }
    }

    fn actor(&mut self, input: &mut Input) -> Actor {
        match input.byte() % 8 {
            0 => Actor::System,
            1..=5 => Actor::user(input.pick(&self.users)),
            _ => Actor::user(self.string(input)),
        }
    }

    fn org(&mut self, input: &mut Input) -> String {
        if input.byte() < 224 {
            input.pick(&self.orgs)
        } else {
            self.string(input)
        }
    }

    fn user(&mut self, input: &mut Input) -> String {
        if input.byte() < 192 {
            input.pick(&self.users)
        } else {
            self.string(input)
        }
    }

    fn count(&mut self, input: &mut Input) -> u64 {
        if input.byte() < 224 {
            input.pick(COUNTS)
        } else {
            input.u64()
        }
    }

    fn at(&mut self, input: &mut Input) -> Option<DateTime<Utc>> {
        let now = self.db.now();
        let micro = TimeDelta::microseconds(1);
        let five = TimeDelta::minutes(5);
        let late = TimeDelta::days(35);
        Some(match input.byte() % 16 {
            0 | 1 => return None,
            2 => now,
            3 => now + five,
            4 => now + five + micro,
            5 => now - late,
            6 => now - late - micro,
            7 => now - TimeDelta::days(3),
            8 => DateTime::<Utc>::MIN_UTC,
            9 => DateTime::<Utc>::MAX_UTC,
            10 => DateTime::UNIX_EPOCH,
            11 => Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            12 => Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            13 => Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            14 => now + TimeDelta::nanoseconds(input.u32() as i64),
            _ => {
                let micros = input.u64() as i64;
                Utc.timestamp_micros(micros)
                    .single()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC)
            }
        })
    }

    fn date(&mut self, input: &mut Input) -> Option<NaiveDate> {
        let today = self.db.now().date_naive();
        Some(match input.byte() % 10 {
            0 | 1 => return None,
            2 => today,
            3 => NaiveDate::MIN,
            4 => NaiveDate::MAX,
            5 => today - TimeDelta::days(365),
            6 => today - TimeDelta::days(366),
            7 => today + TimeDelta::days(400),
            8 => NaiveDate::from_ymd_opt(-1, 1, 1).unwrap(),
            _ => NaiveDate::from_num_days_from_ce_opt(input.u32() as i32).unwrap_or(today),
        })
    }

    fn event(&mut self, input: &mut Input) -> UsageEvent {
        let resource_id = match input.byte() % 4 {
            0 | 1 => None,
            _ => Some(self.string(input)),
        };
        let count = self.count(input);
        let at = self.at(input);
        let idempotency_key = self.opt_string(input);
        UsageEvent {
            resource_id,
            count,
            at,
            idempotency_key,
        }
    }

    fn invitation(&mut self, input: &mut Input) -> NewInvitation {
        NewInvitation {
            email: self.string(input),
            role: self.opt_string(input),
            project_id: self.opt_string(input),
            project_role: self.opt_string(input),
            expires_in: match input.byte() % 8 {
                0..=2 => None,
                3 => Some(3_599),
                4 => Some(3_600),
                5 => Some(30 * 86_400),
                6 => Some(30 * 86_400 + 1),
                _ => Some(input.u64()),
            }
            .map(std::time::Duration::from_secs),
        }
    }

    /// Decodes and runs one call, then checks the invariants.
    fn step(&mut self, input: &mut Input) {
        let before = self.db.stats().unwrap();
        let op = input.byte() % 41;
        let outcome: Result<(), orgdb::Error> = self.run(op, input);
        if let Err(e) = &outcome {
            let allowed = allowed_codes(op);
            assert!(
                allowed.contains(&e.code()),
                "{}: undocumented error code {:?} (documented: {allowed:?}): {e:?}",
                self.call,
                e.code()
            );
            if e.code() == "validation_error" {
                assert!(
                    !e.details().is_empty(),
                    "{}: validation_error names no field: {e:?}",
                    self.call
                );
            }
            assert_eq!(
                self.db.stats().unwrap(),
                before,
                "{}: failed with {e:?} but changed the database",
                self.call
            );
        }
        CALL.with(|c| c.borrow_mut().clear());
        let report = self.db.check().unwrap();
        assert!(
            report.is_ok(),
            "{} -> {outcome:?}: check found {:?}",
            self.call,
            report.problems
        );
    }

    fn run(&mut self, op: u8, input: &mut Input) -> Result<(), orgdb::Error> {
        let db = self.db.clone();
        macro_rules! call {
            ($name:literal, $($arg:expr),*) => {{
                self.call = format!(concat!($name, "{:?}"), ($(&$arg,)*));
                let mut end = self.call.len().min(2_000);
                while !self.call.is_char_boundary(end) {
                    end -= 1;
                }
                self.call.truncate(end);
                CALL.with(|c| c.borrow_mut().clone_from(&self.call));
            }};
        }
        match op {
            0 => {
                let new = NewUser {
                    email: self.string(input),
                    name: self.string(input),
                };
                call!("create_user", new);
                let u = db.create_user(&new)?;
                self.users.push(u.id.clone());
                self.names.push(u.id);
            }
            1 => {
                let id = self.user(input);
                let patch = UserPatch {
                    email: self.opt_string(input),
                    name: self.opt_string(input),
                };
                call!("update_user", id, patch);
                db.update_user(&id, &patch)?;
            }
            2 => {
                let owner = self.user(input);
                let settings = input.bool().then(|| self.settings(input));
                let new = NewOrganization {
                    name: self.string(input),
                    slug: self.opt_string(input),
                    external_id: self.opt_string(input),
                    description: self.opt_string(input),
                    plan: self.opt_string(input),
                    address_line1: self.opt_string(input),
                    address_line2: self.opt_string(input),
                    city: self.opt_string(input),
                    state: self.opt_string(input),
                    zipcode: self.opt_string(input),
                    country: self.opt_string(input),
                    settings,
                    metadata: self.map(input),
                };
                call!("create_organization", owner, new);
                let created = db.create_organization(&owner, &new)?;
                self.names.push(created.organization.slug.clone());
                self.orgs.push(created.organization.id.clone());
                self.names.push(created.organization.id);
            }
            3 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let settings = input.bool().then(|| self.settings(input));
                let metadata = input.bool().then(|| self.map(input));
                let patch = OrganizationPatch {
                    name: self.opt_string(input),
                    slug: self.opt_string(input),
                    external_id: self.opt_opt_string(input),
                    description: self.opt_opt_string(input),
                    address_line1: self.opt_opt_string(input),
                    address_line2: self.opt_opt_string(input),
                    city: self.opt_opt_string(input),
                    state: self.opt_opt_string(input),
                    zipcode: self.opt_opt_string(input),
                    country: self.opt_opt_string(input),
                    settings,
                    metadata,
                };
                call!("update_organization", actor, org, patch);
                let o = db.update_organization(&actor, &org, &patch)?;
                self.names.push(o.slug);
            }
            4 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let settings = self.settings(input);
                call!("update_settings", actor, org, settings);
                db.update_settings(&actor, &org, &settings)?;
            }
            5 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let query = MemberQuery {
                    page: input.bool().then(|| input.pick(&[0, 1, 2, u32::MAX])),
                    per_page: input
                        .bool()
                        .then(|| input.pick(&[0, 1, 2, 100, 101, u32::MAX])),
                    role: self.opt_string(input),
                    status: input.bool().then(|| {
                        input
                            .pick(&["active", "deactivated", "all", "ALL", "gone"])
                            .to_owned()
                    }),
                    search: self.opt_string(input),
                    cursor: self.opt_string(input),
                };
                call!("list_members", actor, org, query);
                let page = db.list_members(&actor, &org, &query)?;
                if let Some(c) = page.next_cursor {
                    self.names.push(c);
                }
            }
            6 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let new = self.invitation(input);
                call!("create_invitation", actor, org, new);
                let created = db.create_invitation(&actor, &org, &new)?;
                self.names.push(created.invite_id);
                self.names.push(created.token);
            }
            7 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let n = input.pick(&[0usize, 1, 2, 3]);
                let batch: Vec<NewInvitation> = (0..n).map(|_| self.invitation(input)).collect();
                call!("create_invitations", actor, org, batch);
                for created in db.create_invitations(&actor, &org, &batch)? {
                    self.names.push(created.token);
                }
            }
            8 => {
                let org = self.org(input);
                let event = self.event(input);
                call!("record_usage", org, event);
                db.record_usage(&org, &event)?;
            }
            9 => {
                let org = self.org(input);
                let n = input.pick(&[0usize, 1, 2, 3, 5, 10_000, 10_001]);
                let mut events: Vec<UsageEvent> =
                    (0..n.min(4)).map(|_| self.event(input)).collect();
                while events.len() < n {
                    events.push(UsageEvent::new(1));
                }
                call!("record_usage_batch", org, &events[..events.len().min(8)]);
                db.record_usage_batch(&org, &events)?;
            }
            10 => {
                let org = self.org(input);
                let event = self.event(input);
                call!("record_usage_buffered", org, event);
                db.record_usage_buffered(&org, &event)?;
            }
            11 => {
                let org = self.org(input);
                let count = self.count(input);
                call!("check_quota", org, count);
                db.check_quota(&org, count)?;
            }
            12 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let query = UsageQuery {
                    period: input
                        .bool()
                        .then(|| input.pick(&[Period::Day, Period::Week, Period::Month])),
                    start_date: self.date(input),
                    end_date: self.date(input),
                };
                call!("usage_report", actor, org, query);
                db.usage_report(&actor, &org, &query)?;
            }
            13 => {
                let slug = self.string(input);
                call!("check_slug", slug);
                db.check_slug(&slug)?;
            }
            14 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let after = input.pick(&[0, 1, 5, u64::MAX]);
                let limit = input.pick(&[0, 1, 10, 1_000, 1_001, u32::MAX]);
                call!("audit_log", actor, org, after, limit);
                db.audit_log(&actor, &org, after, limit)?;
            }
            15 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let query = InvitationQuery {
                    status: self.opt_string(input),
                    page: input.bool().then(|| input.pick(&[0, 1, 2, u32::MAX])),
                    per_page: input
                        .bool()
                        .then(|| input.pick(&[0, 1, 100, 101, u32::MAX])),
                };
                call!("list_invitations", actor, org, query);
                db.list_invitations(&actor, &org, &query)?;
            }
            16 => {
                let (actor, org, user) = (self.actor(input), self.org(input), self.user(input));
                let role = self.string(input);
                call!("add_member", actor, org, user, role);
                db.add_member(&actor, &org, &user, &role)?;
            }
            17 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let who = self.string(input);
                let role = self.string(input);
                call!("update_member_role", actor, org, who, role);
                db.update_member_role(&actor, &org, &who.as_str().into(), &role)?;
            }
            18 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let new = NewProject {
                    name: self.string(input),
                    description: self.opt_string(input),
                };
                call!("create_project", actor, org, new);
                let p = db.create_project(&actor, &org, &new)?;
                self.names.push(p.id);
            }
            19 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let id = self.string(input);
                let patch = ProjectPatch {
                    name: self.opt_string(input),
                    description: self.opt_opt_string(input),
                };
                call!("update_project", actor, org, id, patch);
                db.update_project(&actor, &org, &id, &patch)?;
            }
            20 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let kind = input.pick(&[ResourceKind::Mcp, ResourceKind::ApiKey]);
                let name = self.string(input);
                call!("register_resource", actor, org, kind, name);
                let r = db.register_resource(&actor, &org, kind, &name)?;
                self.names.push(r.id);
            }
            21 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let (id, name) = (self.string(input), self.string(input));
                call!("rename_resource", actor, org, id, name);
                db.rename_resource(&actor, &org, &id, &name)?;
            }
            22 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let plan = self.string(input);
                call!("set_plan", actor, org, plan);
                db.set_plan(&actor, &org, &plan)?;
            }
            23 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let mut limit = || match input.byte() % 4 {
                    0 => None,
                    1 => Some(Limit::Unlimited),
                    2 => Some(Limit::Count(input.pick(COUNTS))),
                    _ => Some(Limit::Count(input.pick(&[0, 1, 2, 3]))),
                };
                let overrides = LimitOverrides {
                    mcps: limit(),
                    api_keys: limit(),
                    team_members: limit(),
                    monthly_requests: limit(),
                };
                call!("set_limit_overrides", actor, org, overrides);
                db.set_limit_overrides(&actor, &org, &overrides.into())?;
            }
            24 => {
                let text = self.string(input);
                match input.byte() % 3 {
                    0 => {
                        call!("find_user_by_email", text);
                        db.find_user_by_email(&text)?;
                    }
                    1 => {
                        call!("get_organization_by_slug", text);
                        db.get_organization_by_slug(&Actor::System, &text)?;
                    }
                    _ => {
                        call!("get_organization_by_external_id", text);
                        db.get_organization_by_external_id(&Actor::System, &text)?;
                    }
                }
            }
            25 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let (project, user) = (self.string(input), self.user(input));
                let role = self.opt_string(input);
                call!("add_project_member", actor, org, project, user, role);
                db.add_project_member(
                    &actor,
                    &org,
                    &project,
                    &user,
                    role.as_deref().map(orgdb::RoleArg::from),
                )?;
            }
            26 => {
                let (token, user) = (self.string(input), self.user(input));
                call!("accept_invitation", token, user);
                db.accept_invitation(&token, &user)?;
            }
            27 => {
                let before = self.date(input).unwrap_or(NaiveDate::MAX);
                call!("prune_usage", before);
                db.prune_usage(before)?;
            }
            28 => {
                let (actor, org, to) = (self.actor(input), self.org(input), self.user(input));
                call!("transfer_ownership", actor, org, to);
                db.transfer_ownership(&actor, &org, &to)?;
            }
            29 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let who = self.string(input);
                call!("remove_member", actor, org, who);
                db.remove_member(&actor, &org, &who.as_str().into())?;
            }
            30 => {
                let (actor, org) = (self.actor(input), self.org(input));
                call!("get_organization", actor, org);
                db.get_organization(&actor, &org)?;
            }
            31 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let who = self.string(input);
                call!("deactivate_member", actor, org, who);
                db.deactivate_member(&actor, &org, &who.as_str().into())?;
            }
            32 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let who = self.string(input);
                call!("reactivate_member", actor, org, who);
                db.reactivate_member(&actor, &org, &who.as_str().into())?;
            }
            33 => {
                let (actor, org) = (self.actor(input), self.org(input));
                call!("permissions", actor, org);
                db.permissions(&actor, &org)?;
            }
            34 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let days_back = input.pick(&[0i64, 1, 34, 35, 36, -1]);
                let today = orgdb::Clock::now(&self.clock).date_naive();
                let near = today - chrono::Days::new(days_back.max(0) as u64)
                    + chrono::Days::new(days_back.min(0).unsigned_abs());
                let date = match input.bool() {
                    true => self.date(input).unwrap_or(near),
                    false => near,
                };
                let correction = orgdb::UsageCorrection {
                    date,
                    resource_id: self.opt_string(input),
                    delta: input.pick(&[1i64, -1, 5, -5, 0, i64::MIN, i64::MAX, 1 << 53]),
                    idempotency_key: self.opt_string(input),
                    reason: self.opt_string(input),
                };
                call!("correct_usage", actor, org, correction);
                db.correct_usage(&actor, &org, &correction)?;
            }
            35 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let rule = match input.byte() % 5 {
                    0 => orgdb::QuotaPeriod::CalendarMonth,
                    1 => orgdb::QuotaPeriod::Day,
                    2 => orgdb::QuotaPeriod::Week,
                    3 => orgdb::QuotaPeriod::Year,
                    _ => orgdb::QuotaPeriod::Anchored {
                        anchor: self.date(input).unwrap_or(NaiveDate::MIN),
                    },
                };
                call!("set_billing_anchor", actor, org, rule);
                db.set_billing_anchor(&actor, &org, rule)?;
            }
            36 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let thresholds: Option<Vec<u32>> = match input.byte() % 4 {
                    0 => None,
                    _ => {
                        let n = usize::from(input.byte() % 13);
                        Some(
                            (0..n)
                                .map(|_| {
                                    input.pick(&[0, 1, 50, 80, 100, 120, 1_000, 1_001, u32::MAX])
                                })
                                .collect(),
                        )
                    }
                };
                call!("set_usage_alerts", actor, org, thresholds);
                db.set_usage_alerts(&actor, &org, thresholds.as_deref())?;
            }
            37 => {
                let (actor, org) = (self.actor(input), self.org(input));
                if input.bool() {
                    call!("usage_alerts", actor, org);
                    db.usage_alerts(&actor, &org)?;
                } else {
                    call!("billing_period", actor, org);
                    db.billing_period(&actor, &org)?;
                }
            }
            38 => {
                let (actor, org) = (self.actor(input), self.org(input));
                let name = match input.byte() % 3 {
                    0 => input
                        .pick(&["sso", "projects", "mcps", "monthly_requests"])
                        .to_owned(),
                    _ => self.string(input),
                };
                if input.bool() {
                    let value = match input.byte() % 4 {
                        0 => None,
                        1 => Some(orgdb::EntitlementValue::Feature {
                            enabled: input.bool(),
                        }),
                        2 => Some(orgdb::EntitlementValue::Limit { limit: None }),
                        _ => Some(orgdb::EntitlementValue::Limit {
                            limit: Some(self.count(input)),
                        }),
                    };
                    call!("set_entitlement_override", actor, org, name, value);
                    db.set_entitlement_override(&actor, &org, &name, value.as_ref())?;
                } else {
                    call!("entitlement", actor, org, name);
                    db.entitlement(&actor, &org, &name)?;
                }
            }
            39 => {
                let org = self.org(input);
                match input.byte() % 3 {
                    0 => {
                        let new = orgdb::NewReservation {
                            count: self.count(input),
                            resource_id: self.opt_string(input),
                            expires_in: input
                                .pick(&[
                                    None,
                                    Some(0),
                                    Some(1),
                                    Some(300),
                                    Some(86_400),
                                    Some(86_401),
                                ])
                                .map(std::time::Duration::from_secs),
                        };
                        call!("reserve_usage", org, new);
                        let r = db.reserve_usage(&org, &new)?;
                        self.reservations.push(r.id);
                    }
                    1 => {
                        let id = match self.reservations.last() {
                            Some(id) if input.bool() => id.clone(),
                            _ => self.string(input),
                        };
                        let actual = self.count(input);
                        call!("commit_reservation", org, id, actual);
                        db.commit_reservation(&org, &id, actual)?;
                    }
                    _ => {
                        let id = match self.reservations.last() {
                            Some(id) if input.bool() => id.clone(),
                            _ => self.string(input),
                        };
                        call!("release_reservation", org, id);
                        db.release_reservation(&org, &id)?;
                    }
                }
            }
            _ => {
                let by = input.pick(&[
                    TimeDelta::microseconds(1),
                    TimeDelta::hours(1),
                    TimeDelta::days(1),
                    TimeDelta::days(8),
                    TimeDelta::days(31),
                    TimeDelta::days(400),
                ]);
                call!("advance_clock", by);
                self.clock.advance(by);
            }
        }
        Ok(())
    }
}

/// The error codes each call's documentation lists (`not_found` everywhere an id is taken).
fn allowed_codes(op: u8) -> &'static [&'static str] {
    const NF: &str = "not_found";
    const FB: &str = "forbidden";
    const VE: &str = "validation_error";
    const CF: &str = "conflict";
    const QE: &str = "quota_exceeded";
    match op {
        0 => &[VE, CF],
        1 => &[NF, VE, CF],
        2 => &[VE, NF, CF],
        3 | 4 => &[NF, FB, VE, CF],
        5 => &[NF, FB, VE],
        6 | 7 => &[NF, FB, VE, CF, QE],
        8..=10 => &[VE, NF, QE],
        11 => &[QE, VE, NF],
        12 => &[FB, NF, VE],
        13 => &[],
        14 => &[FB, NF, VE],
        15 => &[NF, FB, VE],
        16 => &[FB, VE, NF, CF, QE],
        17 => &[FB, VE, NF, CF],
        18 => &[NF, FB, VE],
        19 => &[FB, VE, NF],
        20 => &[NF, FB, VE, QE],
        21 => &[FB, VE, NF],
        22 => &[NF, FB, VE],
        // A count above i64::MAX is refused, naming the field.
        23 => &[FB, NF, VE],
        24 => &[NF, FB],
        25 => &[FB, VE, NF, CF],
        26 => &[NF, FB, "invitation_expired", CF, QE],
        27 => &[],
        28 => &[FB, NF, VE, CF],
        29 => &[FB, NF, CF],
        30 => &[NF, FB],
        31 => &[FB, NF, CF],
        32 => &[FB, NF, QE],
        33 => &[NF, FB],
        34 => &[FB, NF, VE],
        // A rule whose open period would need pruned days is a conflict.
        35 => &[FB, NF, VE, CF],
        36 => &[FB, NF, VE],
        37 => &[NF, FB],
        // `entitlement`: a name nobody knows is not_found; a malformed one validation_error.
        38 => &[FB, NF, VE],
        // reserve (quota, count, expires_in, resource), commit (quota, actual), release.
        39 => &[NF, VE, QE],
        _ => &[],
    }
}
