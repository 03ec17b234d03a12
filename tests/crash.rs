//! Crash harness: a child process runs random durable operations (users, organizations,
//! members, invitations, usage) and prints each one before it starts and after it is
//! acknowledged; the parent kills it with SIGKILL at a random moment, reopens the file and
//! checks that every acknowledged operation is there, that the one operation in flight is
//! either wholly there or wholly absent, and that `Db::check()` passes.
//!
//! `ORGDB_CRASH_CYCLES` sets the number of kill cycles (100 by default; the CI run). A long run:
//! `ORGDB_CRASH_CYCLES=5000 cargo test --release --test crash -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use orgdb::{
    Actor, Db, InvitationStatus, ManualClock, MemberQuery, MemberRef, NewInvitation,
    NewOrganization, NewUser, Options, Role, UsageEvent,
};
use serde_json::{json, Value};

const CHILD_DB: &str = "ORGDB_CRASH_CHILD_DB";
const CHILD_SEED: &str = "ORGDB_CRASH_CHILD_SEED";

/// xorshift64*: reproducible from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

fn options(seed: u64) -> Options {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2024, 6, 15, 12, 0, 0).unwrap());
    Options {
        journal_size: 64 << 10,
        // Some cycles checkpoint often, so kills land inside checkpoints and journal restarts.
        usage_flush_interval: Duration::from_millis(if seed.is_multiple_of(2) { 5 } else { 1000 }),
        ..Options::with_clock(clock)
    }
}

const ROLES: [&str; 4] = ["viewer", "member", "admin", "owner"];

/// Not a test of its own: the child's body (it returns at once unless the harness set the
/// environment). It never returns when it runs: the parent kills it.
#[test]
fn child_process_body() {
    let (Ok(path), Ok(seed)) = (std::env::var(CHILD_DB), std::env::var(CHILD_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let mut rng = Rng(seed | 1);
    let db = Db::open_with(&path, options(seed)).unwrap();
    let mut users: Vec<String> = Vec::new();
    let mut orgs: Vec<String> = Vec::new();
    let mut invites: Vec<(String, String, String)> = Vec::new(); // (org, email, token)
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut holds: Vec<(String, String, u64)> = Vec::new(); // (org, reservation, count)
    let mut n = 0u64;
    loop {
        n += 1;
        let op = match rng.below(14) {
            _ if users.len() < 3 => {
                json!({"op": "user", "email": format!("c{seed}-{n}@example.com")})
            }
            _ if orgs.is_empty() => json!({"op": "org", "owner": users[0]}),
            0 => json!({"op": "user", "email": format!("c{seed}-{n}@example.com")}),
            1 => json!({"op": "org", "owner": rng.pick(&users)}),
            2 | 3 => json!({"op": "add", "org": rng.pick(&orgs), "user": rng.pick(&users),
                            "role": ROLES[rng.below(4) as usize]}),
            4 => json!({"op": "role", "org": rng.pick(&orgs), "user": rng.pick(&users),
                        "role": ROLES[rng.below(4) as usize]}),
            5 => json!({"op": "remove", "org": rng.pick(&orgs), "user": rng.pick(&users)}),
            6 => {
                json!({"op": "invite", "org": rng.pick(&orgs), "email": format!("i{seed}-{n}@example.com")})
            }
            7 if !invites.is_empty() => {
                let (org, email, token) = rng.pick(&invites).unwrap().clone();
                json!({"op": "accept", "org": org, "email": email, "token": token})
            }
            8 if !keys.is_empty() => {
                let (org, key) = rng.pick(&keys).unwrap().clone();
                json!({"op": "usage", "org": org, "count": 1, "key": key})
            }
            9 => {
                let org = rng.pick(&orgs).unwrap().clone();
                let events: Vec<Value> = (0..1 + rng.below(40))
                    .map(|i| json!([1 + rng.below(9), format!("b{seed}-{n}-{i}")]))
                    .collect();
                json!({"op": "batch", "org": org, "events": events})
            }
            10 => {
                // A correction of today's count (lowering may be refused: below zero).
                let delta = [-3i64, -1, 2, 5][rng.below(4) as usize];
                json!({"op": "correct", "org": rng.pick(&orgs), "delta": delta,
                       "key": format!("x{seed}-{n}")})
            }
            11 => json!({"op": "period", "org": rng.pick(&orgs), "rule": rng.below(5)}),
            // Reservations: settle one of this child's holds, or make one.
            12 => match rng.pick(&holds).cloned() {
                Some((org, id, count)) if rng.below(3) > 0 => {
                    if rng.below(2) == 0 {
                        json!({"op": "release", "org": org, "id": id})
                    } else {
                        json!({"op": "commit", "org": org, "id": id,
                               "actual": rng.below(count + 5)})
                    }
                }
                _ => json!({"op": "reserve", "org": rng.pick(&orgs), "count": 1 + rng.below(50)}),
            },
            _ => json!({"op": "usage", "org": rng.pick(&orgs), "count": 1 + rng.below(20),
                        "key": format!("u{seed}-{n}")}),
        };
        println!("BEGIN {op}");
        match run(&db, &op) {
            Ok(result) => {
                match op["op"].as_str().unwrap() {
                    "user" => users.push(result["user"].as_str().unwrap().to_owned()),
                    "org" => orgs.push(result["org"].as_str().unwrap().to_owned()),
                    "invite" => invites.push((
                        op["org"].as_str().unwrap().to_owned(),
                        op["email"].as_str().unwrap().to_owned(),
                        result["token"].as_str().unwrap().to_owned(),
                    )),
                    "usage" if !result["duplicate"].as_bool().unwrap() => keys.push((
                        op["org"].as_str().unwrap().to_owned(),
                        op["key"].as_str().unwrap().to_owned(),
                    )),
                    "reserve" => holds.push((
                        op["org"].as_str().unwrap().to_owned(),
                        result["id"].as_str().unwrap().to_owned(),
                        op["count"].as_u64().unwrap(),
                    )),
                    "commit" | "release" => holds.retain(|h| h.1 != op["id"].as_str().unwrap()),
                    _ => {}
                }
                println!("ACK {result}");
            }
            Err(e) => println!("ERR {}", e.code()),
        }
    }
}

/// Runs one operation; its result carries what the parent needs to model it.
fn run(db: &Db, op: &Value) -> orgdb::Result<Value> {
    let s = |k: &str| op[k].as_str().unwrap_or_default().to_owned();
    let sys = Actor::System;
    Ok(match op["op"].as_str().unwrap() {
        "user" => {
            let u = db.create_user(&NewUser {
                email: s("email"),
                name: "Crash".into(),
            })?;
            json!({"user": u.id})
        }
        "org" => {
            let new = NewOrganization {
                name: "Crash Org".into(),
                plan: Some("team".into()),
                ..Default::default()
            };
            let org = db.create_organization(&s("owner"), &new)?.organization.id;
            // Low usage alerts, so that kills land around their announcements too.
            db.set_limit_overrides(
                &Actor::System,
                &org,
                &orgdb::LimitOverrides {
                    monthly_requests: Some(orgdb::Limit::Count(20_000)),
                    ..Default::default()
                }
                .into(),
            )?;
            db.set_usage_alerts(&Actor::System, &org, Some(&[1, 2, 5, 10, 20]))?;
            json!({ "org": org })
        }
        "add" => {
            db.add_member(&sys, &s("org"), &s("user"), &s("role"))?;
            json!({})
        }
        "role" => {
            db.update_member_role(&sys, &s("org"), &MemberRef::User(s("user")), &s("role"))?;
            json!({})
        }
        "remove" => {
            db.remove_member(&sys, &s("org"), &MemberRef::User(s("user")))?;
            json!({})
        }
        "invite" => {
            let created = db.create_invitation(
                &sys,
                &s("org"),
                &NewInvitation {
                    email: s("email"),
                    ..Default::default()
                },
            )?;
            json!({"inv": created.invite_id, "token": created.token})
        }
        "accept" => {
            let user = match db.find_user_by_email(&s("email")) {
                Ok(u) => u,
                Err(_) => db.create_user(&NewUser {
                    email: s("email"),
                    name: "Invitee".into(),
                })?,
            };
            let m = db.accept_invitation(&s("token"), &user.id)?;
            json!({"user": user.id, "role": m.role})
        }
        "usage" => {
            let e = UsageEvent::new(op["count"].as_u64().unwrap()).key(s("key"));
            let r = db.record_usage(&s("org"), &e)?;
            json!({"duplicate": r.duplicate, "used": r.used})
        }
        "batch" => {
            let events: Vec<UsageEvent> = op["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| UsageEvent::new(e[0].as_u64().unwrap()).key(e[1].as_str().unwrap()))
                .collect();
            let r = db.record_usage_batch(&s("org"), &events)?;
            json!({"used": r.last().map(|r| r.used)})
        }
        "correct" => {
            // The harness's clock never moves: its day is the day of every event.
            let today = chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap();
            let r = db.correct_usage(
                &sys,
                &s("org"),
                &orgdb::UsageCorrection {
                    date: today,
                    resource_id: None,
                    delta: op["delta"].as_i64().unwrap(),
                    idempotency_key: Some(s("key")),
                    reason: None,
                },
            )?;
            json!({"month_total": r.month_total})
        }
        "period" => {
            // Every rule's current period holds today, the day of every event (the clock
            // never moves): the organization's usage is the same under each, and a change of
            // rule (a fold, then every period total computed again) must lose or double
            // nothing, even when a crash follows.
            let rules = [
                orgdb::QuotaPeriod::CalendarMonth,
                orgdb::QuotaPeriod::Day,
                orgdb::QuotaPeriod::Week,
                orgdb::QuotaPeriod::Year,
                orgdb::QuotaPeriod::Anchored {
                    anchor: chrono::NaiveDate::from_ymd_opt(2023, 1, 31).unwrap(),
                },
            ];
            let rule = rules[op["rule"].as_u64().unwrap() as usize];
            let p = db.set_billing_anchor(&sys, &s("org"), rule)?;
            json!({"period_start": p.period_start})
        }
        "reserve" => {
            let r = db.reserve_usage(
                &s("org"),
                &orgdb::NewReservation::new(op["count"].as_u64().unwrap()),
            )?;
            json!({"id": r.id})
        }
        "commit" => {
            let r = db.commit_reservation(&s("org"), &s("id"), op["actual"].as_u64().unwrap())?;
            json!({"used": r.used, "duplicate": r.duplicate})
        }
        "release" => json!({"released": db.release_reservation(&s("org"), &s("id"))?}),
        other => panic!("unknown op {other}"),
    })
}

/// What the parent knows must be in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    members: BTreeMap<String, BTreeMap<String, Role>>,
    usage: BTreeMap<String, u64>,
    keys: BTreeMap<String, BTreeSet<String>>,
    /// Invitations by (org, email) → accepted?
    invitations: BTreeMap<(String, String), bool>,
    users: BTreeSet<String>,
    /// Live usage reservations: id → organization (the harness's clock never moves, so none
    /// expires).
    holds: BTreeMap<String, String>,
}

impl Model {
    /// Applies an acknowledged operation (`result` is its ACK payload). With `result` None the
    /// operation is the one in flight: apply its effect as if it had succeeded, where the
    /// effect does not depend on what it would have returned.
    fn apply(&mut self, op: &Value, result: Option<&Value>) {
        let s = |k: &str| op[k].as_str().unwrap_or_default().to_owned();
        match op["op"].as_str().unwrap() {
            "user" => {
                if let Some(r) = result {
                    self.users.insert(r["user"].as_str().unwrap().to_owned());
                }
            }
            "org" => {
                if let Some(r) = result {
                    let org = r["org"].as_str().unwrap().to_owned();
                    self.members
                        .insert(org, BTreeMap::from([(s("owner"), Role::Owner)]));
                }
            }
            "add" => {
                if let Some(m) = self.members.get_mut(&s("org")) {
                    m.insert(s("user"), s("role").parse().unwrap());
                }
            }
            "role" => {
                if let Some(m) = self.members.get_mut(&s("org")) {
                    if let Some(role) = m.get_mut(&s("user")) {
                        *role = s("role").parse().unwrap();
                    }
                }
            }
            "remove" => {
                if let Some(m) = self.members.get_mut(&s("org")) {
                    m.remove(&s("user"));
                }
            }
            "invite" => {
                self.invitations.insert((s("org"), s("email")), false);
            }
            "accept" => {
                // The user may have been created by this very call.
                if let Some(r) = result {
                    let user = r["user"].as_str().unwrap().to_owned();
                    self.users.insert(user.clone());
                    if let Some(m) = self.members.get_mut(&s("org")) {
                        m.entry(user)
                            .or_insert(r["role"].as_str().unwrap().parse().unwrap());
                    }
                    self.invitations.insert((s("org"), s("email")), true);
                }
            }
            "usage" => {
                let keys = self.keys.entry(s("org")).or_default();
                if keys.insert(s("key")) {
                    *self.usage.entry(s("org")).or_default() += op["count"].as_u64().unwrap();
                }
            }
            "reserve" => {
                if let Some(r) = result {
                    self.holds
                        .insert(r["id"].as_str().unwrap().to_owned(), s("org"));
                }
            }
            "commit" => {
                // Each hold is committed once: a commit that held counts its actual.
                if self.holds.remove(&s("id")).is_some() {
                    *self.usage.entry(s("org")).or_default() += op["actual"].as_u64().unwrap();
                }
            }
            "release" => {
                self.holds.remove(&s("id"));
            }
            "correct" => {
                // Keys are unique to each correction; one refused (below zero) never ACKs.
                let keys = self.keys.entry(s("org")).or_default();
                if keys.insert(s("key")) {
                    let used = self.usage.entry(s("org")).or_default();
                    let delta = op["delta"].as_i64().unwrap();
                    *used = used.saturating_add_signed(delta);
                }
            }
            // The usage the model follows is the same under every rule (see `run`).
            "period" => {}
            "batch" => {
                let keys = self.keys.entry(s("org")).or_default();
                for e in op["events"].as_array().unwrap() {
                    if keys.insert(e[1].as_str().unwrap().to_owned()) {
                        *self.usage.entry(s("org")).or_default() += e[0].as_u64().unwrap();
                    }
                }
            }
            other => panic!("unknown op {other}"),
        }
    }
}

/// The part of the database's state the model predicts.
fn observe(db: &Db, model: &Model) -> Model {
    let mut seen = Model {
        keys: model.keys.clone(),
        invitations: model.invitations.clone(),
        users: model.users.clone(),
        ..Model::default()
    };
    for org in model.members.keys() {
        let q = MemberQuery {
            per_page: Some(100),
            ..Default::default()
        };
        let page = db.list_members(&Actor::System, org, &q).unwrap();
        assert!(
            page.pagination.total <= 100,
            "the harness keeps organizations small"
        );
        seen.members.insert(
            org.clone(),
            page.data.into_iter().map(|m| (m.id, m.role)).collect(),
        );
        let used = db
            .get_organization(&Actor::System, org)
            .unwrap()
            .usage
            .monthly_requests;
        if used > 0 || model.usage.contains_key(org) {
            seen.usage.insert(org.clone(), used);
        }
    }
    seen
}

/// The pending operation could not have changed what `observe` looks at in ways `apply`
/// cannot express (accept's result is unknown): compare members and usage loosely for it.
fn agrees(seen: &Model, want: &Model) -> bool {
    seen.members == want.members && seen.usage == want.usage
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    let cycles: u64 = std::env::var("ORGDB_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut acked_total, mut in_flight_applied, mut in_flight_absent) = (0u64, 0u64, 0u64);
    let mut thresholds_seen = 0u64;
    let mut holds_verified = 0u64;

    for cycle in 0..cycles {
        let seed = rng.next() % 1_000_000_007;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_process_body",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_SEED, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Let it get through a random number of acknowledgements, then kill it mid-stream.
        let wait_for = rng.below(60);
        let mut text = String::new();
        let mut acks = 0;
        while acks < wait_for {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if line.contains("ACK ") || line.contains("ERR ") {
                acks += 1;
            }
            text.push_str(&line);
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        out.read_to_string(&mut text).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            !status.success(),
            "cycle {cycle}: the child ended by itself:\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "cycle {cycle}: the child panicked:\n{stderr}"
        );

        // Replay the log: ACK/ERR close the BEGIN before them; a BEGIN at the end (or a torn
        // line) is the operation in flight.
        let mut pending: Option<Value> = None;
        for line in text.lines() {
            let line = line
                .split_once("BEGIN ")
                .map(|(_, r)| ("B", r))
                .or_else(|| line.split_once("ACK ").map(|(_, r)| ("A", r)))
                .or_else(|| line.split_once("ERR ").map(|(_, r)| ("E", r)));
            match line {
                Some(("B", rest)) => pending = serde_json::from_str(rest).ok(),
                Some(("A", rest)) => {
                    let (Some(op), Ok(result)) =
                        (pending.take(), serde_json::from_str::<Value>(rest))
                    else {
                        continue; // a torn acknowledgement was never complete
                    };
                    model.apply(&op, Some(&result));
                    acked_total += 1;
                }
                Some(("E", _)) => pending = None,
                _ => {}
            }
        }

        let db = Db::open_with(&path, options(seed)).unwrap();
        let report = db.check().unwrap();
        assert!(
            report.is_ok(),
            "cycle {cycle} (seed {seed}): {:#?}",
            report.problems
        );
        // A usage alert is announced once per period, threshold and limit, whatever was
        // replayed from the journal after the kills (read every tenth cycle: the feeds grow).
        let audited = if cycle % 10 == 9 || cycle + 1 == cycles {
            model.members.keys().collect()
        } else {
            Vec::new()
        };
        for org in audited {
            let mut announced = std::collections::BTreeSet::new();
            let mut events = Vec::new();
            loop {
                let after = events.last().map_or(0, |e: &orgdb::AuditEvent| e.seq);
                let page = db.audit_log(&Actor::System, org, after, 1_000).unwrap();
                if page.is_empty() {
                    break;
                }
                events.extend(page);
            }
            for e in events {
                if e.action == "usage.threshold" {
                    let d = &e.details;
                    let id = (
                        d["period_start"].to_string(),
                        d["period_end"].to_string(),
                        d["threshold_percent"].to_string(),
                        d["limit"].to_string(),
                    );
                    assert!(
                        announced.insert(id),
                        "cycle {cycle} (seed {seed}): announced twice: {d}"
                    );
                    thresholds_seen += 1;
                }
            }
        }
        let seen = observe(&db, &model);
        if agrees(&seen, &model) {
            in_flight_absent += u64::from(pending.is_some());
        } else {
            let op = pending.as_ref().unwrap_or_else(|| {
                panic!("cycle {cycle} (seed {seed}): lost acknowledged work\nseen {seen:#?}\nwant {model:#?}")
            });
            let mut with = model.clone();
            with.apply(op, None);
            if op["op"] == "accept" {
                // Its user and role are unknown to the parent: take them from what is seen,
                // but only for this organization and only as one added member.
                let org = op["org"].as_str().unwrap();
                let (now, before) = (&seen.members[org], &model.members[org]);
                let added: Vec<_> = now.keys().filter(|u| !before.contains_key(*u)).collect();
                assert_eq!(added.len(), 1, "cycle {cycle}: accept added {added:?}");
                with.members
                    .get_mut(org)
                    .unwrap()
                    .insert(added[0].clone(), now[added[0]]);
            }
            assert!(
                agrees(&seen, &with),
                "cycle {cycle} (seed {seed}): half-applied or lost work for {op}\nseen {seen:#?}\nwant {model:#?}"
            );
            in_flight_applied += 1;
            model = with;
        }
        // Reservations: every acknowledged live hold is still held. The one in flight is
        // learned from what is stored (a reserve's new hold, a settled hold gone).
        let in_flight = pending
            .as_ref()
            .and_then(|op| op["op"].as_str())
            .filter(|op| ["reserve", "commit", "release"].contains(op));
        if in_flight.is_some() || cycle % 10 == 9 || cycle + 1 == cycles {
            let mut out = Vec::new();
            db.export_jsonl(&mut out).unwrap();
            let stored: BTreeMap<String, String> = String::from_utf8(out)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["type"] == "reservation")
                .map(|v| {
                    let d = &v["data"];
                    let field = |k: &str| d[k].as_str().unwrap().to_owned();
                    (field("id"), field("organization_id"))
                })
                .collect();
            let op = pending.as_ref();
            let id = op.and_then(|op| op["id"].as_str()).map(str::to_owned);
            match in_flight {
                Some("reserve") => {
                    let new: Vec<_> = stored
                        .iter()
                        .filter(|(id, _)| !model.holds.contains_key(*id))
                        .collect();
                    assert!(new.len() <= 1, "cycle {cycle}: unknown holds {new:?}");
                    for (id, org) in new {
                        model.holds.insert(id.clone(), org.clone());
                    }
                }
                Some(_) => {
                    if let Some(id) = id.filter(|id| !stored.contains_key(id)) {
                        model.holds.remove(&id);
                    }
                }
                None => {}
            }
            assert_eq!(
                stored, model.holds,
                "cycle {cycle} (seed {seed}): live reservations"
            );
            holds_verified += stored.len() as u64;
        }
        // Acknowledged keys are remembered: a retry counts nothing.
        for (org, keys) in model.keys.iter().take(3) {
            if let Some(key) = keys.iter().next() {
                let r = db
                    .record_usage(org, &UsageEvent::new(1).key(key.clone()))
                    .unwrap();
                assert!(r.duplicate, "cycle {cycle}: key {key} forgotten");
            }
        }
        for ((org, email), accepted) in &model.invitations {
            if *accepted {
                let found = db
                    .list_invitations(
                        &Actor::System,
                        org,
                        &orgdb::InvitationQuery {
                            per_page: Some(100),
                            ..Default::default()
                        },
                    )
                    .unwrap()
                    .data
                    .into_iter()
                    .any(|i| &i.email == email && i.status == InvitationStatus::Accepted);
                assert!(found, "cycle {cycle}: accepted invitation of {email} lost");
            }
        }
    }
    println!(
        "crash harness: {cycles} kill cycles, {acked_total} acknowledged operations verified, \
         in-flight operations applied {in_flight_applied} / absent {in_flight_absent}, \
         {thresholds_seen} threshold announcements read (every tenth cycle), none twice, \
         {holds_verified} live reservations found held"
    );
    assert!(acked_total > cycles, "the children did real work");
}
