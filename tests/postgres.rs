//! The PostgreSQL backend itself: opening by URL, the tables an operator reads, migrations,
//! the file-to-server migration path, exact limits between OS processes, and a server restart
//! in the middle of a workload.
//!
//! These tests need a server: `scripts/pg-server.sh run -- env ORGDB_TEST_BACKEND=postgres
//! cargo test --test postgres` (the README's test command does this). Without one they say so
//! and return.
//!
//! The processes are this test binary run again (`--exact child_process_body`) with
//! `ORGDB_CHILD` holding the task as JSON: each opens its own `Db` (its own connection pool),
//! prints `READY`, waits for `GO` on stdin so that all start together, does its task and
//! prints `RESULT` and a JSON line of what was acknowledged.

mod common;

use std::path::Path;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use orgdb::{
    Actor, Db, Limit, LimitOverrides, MemberRef, NewInvitation, Options, ResourceKind, UsageEvent,
};
use serde_json::{json, Value};

const CHILD_ENV: &str = "ORGDB_CHILD";

/// The tests of this file share the server with the one that restarts it: they hold this
/// for reading, the restart test for writing.
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The server, or `None` (the test returns) when the suite runs without one; holds the server
/// against a restart while the guard lives.
fn server() -> Option<(String, std::sync::RwLockReadGuard<'static, ()>)> {
    let url = postgres_url();
    if url.is_none() {
        eprintln!("skipped: no PostgreSQL server (run through scripts/pg-server.sh)");
    }
    url.map(|u| (u, SERVER.read().unwrap_or_else(|p| p.into_inner())))
}

/// A new schema on the test server holding one organization, "Acme" on `plan`: its URL,
/// the server guard, a handle, the organization's id and its owner. `None` without a server.
fn acme(
    plan: &str,
) -> Option<(
    String,
    std::sync::RwLockReadGuard<'static, ()>,
    Db,
    String,
    orgdb::User,
)> {
    let (url, guard) = server()?;
    let url = fresh_schema(&url);
    let db = Db::open(&url).unwrap();
    let (org, owner) = org(&db, "Acme", plan);
    Some((url, guard, db, org, owner))
}

/// A plain client on the server of an orgdb URL (without orgdb's own parameters).
fn sql(url: &str) -> postgres::Client {
    let server = url.split('?').next().unwrap();
    postgres::Client::connect(server, postgres::NoTls).unwrap()
}

/// The schema a `fresh_schema` URL points at.
fn schema_of(url: &str) -> String {
    url.rsplit("schema=").next().unwrap().to_owned()
}

fn limits(db: &Db, org: &str, over: LimitOverrides) {
    db.set_limit_overrides(&Actor::System, org, &over.into())
        .unwrap();
}

/// Sets the organization's `monthly_requests` limit.
fn monthly_limit(db: &Db, org: &str, quota: u64) {
    limits(
        db,
        org,
        LimitOverrides {
            monthly_requests: Some(Limit::Count(quota)),
            ..Default::default()
        },
    );
}

#[test]
fn tables_are_plain_and_readable_by_an_operator() {
    let Some((url, _server, db, org, owner)) = acme("pro") else {
        return;
    };
    let ada = user(&db, "Ada");
    db.add_member(&actor(&owner), &org, &ada.id, "admin")
        .unwrap();
    db.record_usage(&org, &UsageEvent::new(7)).unwrap();

    let mut client = sql(&url);
    client
        .batch_execute(&format!("SET search_path = {}", schema_of(&url)))
        .unwrap();
    let rows = client
        .query(
            "SELECT user_id, role FROM memberships WHERE organization_id = $1 ORDER BY role",
            &[&org],
        )
        .unwrap();
    let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        seen,
        [
            (ada.id.clone(), "admin".into()),
            (owner.id.clone(), "owner".into())
        ]
    );
    let total: i64 = client
        .query_one(
            "SELECT total FROM usage_periods WHERE organization_id = $1",
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(total, 7);
    let version: i64 = client
        .query_one(
            "SELECT value FROM orgdb_meta WHERE name = 'schema_version'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, PG_CURRENT);
    // The change feed is numbered per organization, from 1, without gaps.
    let seqs: Vec<i64> = client
        .query(
            "SELECT seq FROM audit_events WHERE organization_id = $1 ORDER BY seq",
            &[&org],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert!(seqs.len() >= 2);

    // A second handle (another process would do the same) sees the same data and reopening
    // runs no migration twice.
    let again = Db::open(&url).unwrap();
    let details = again.get_organization(&actor(&owner), &org).unwrap();
    assert_eq!(details.usage.team_members, 2);
    assert_eq!(details.usage.monthly_requests, 7);
    assert_sound(&again);
}

#[test]
fn a_newer_schema_is_refused_and_a_bad_url_names_the_problem() {
    let Some((url, _server)) = server() else {
        return;
    };
    let url = fresh_schema(&url);
    drop(Db::open(&url).unwrap());
    let mut client = sql(&url);
    client
        .execute(
            &format!(
                "UPDATE {}.orgdb_meta SET value = 99 WHERE name = 'schema_version'",
                schema_of(&url)
            ),
            &[],
        )
        .unwrap();
    let err = assert_err(Db::open(&url), "incompatible_version", None);
    assert!(err.to_string().contains("99"), "{err}");

    assert_err(
        Db::open("postgres://nobody@127.0.0.1:1/none?connect_timeout=2"),
        "storage_error",
        None,
    );
    assert_err(
        Db::open("postgres://localhost/db?no_such_option=1"),
        "validation_error",
        Some("url"),
    );
}

#[test]
fn a_version_1_database_is_upgraded_on_open() {
    let Some((url, _server, db, org, owner)) = acme("pro") else {
        return;
    };
    drop(db);
    // What version 1 was: no lease table, no deactivation column, the first list indexes.
    let schema = schema_of(&url);
    let mut client = sql(&url);
    client
        .batch_execute(&format!(
            "DROP TABLE {schema}.usage_leases;
             ALTER TABLE {schema}.memberships DROP COLUMN deactivated_at;
             ALTER TABLE {schema}.memberships DROP COLUMN deactivated;
             DROP TABLE {schema}.member_terms;
             DROP TABLE {schema}.org_terms;
             DROP TABLE {schema}.user_terms;
             CREATE INDEX memberships_by_join
                ON {schema}.memberships (organization_id, joined_at, user_id);
             CREATE INDEX memberships_by_role
                ON {schema}.memberships (organization_id, role, joined_at, user_id);
             UPDATE {schema}.orgdb_meta SET value = 1 WHERE name = 'schema_version'"
        ))
        .unwrap();
    let db = Db::open(&url).unwrap();
    let version: i64 = client
        .query_one(
            &format!("SELECT value FROM {schema}.orgdb_meta WHERE name = 'schema_version'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, PG_CURRENT);
    // Leases work on the upgraded database, and the data is all there.
    db.usage_recorder(&org).unwrap().record(None, 5).unwrap();
    db.flush().unwrap();
    let details = db.get_organization(&actor(&owner), &org).unwrap();
    assert_eq!(details.usage.monthly_requests, 5);
    // The members of version 1 are found by a search (the migration filled the terms).
    let hits = db
        .list_members(
            &actor(&owner),
            &org,
            &orgdb::MemberQuery {
                search: Some(owner.name.to_lowercase()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(hits.data.len(), 1, "{hits:?}");
    // Members deactivate there; the first list indexes gave way to the ones by status.
    let bo = user(&db, "Bo");
    db.add_member(&actor(&owner), &org, &bo.id, "member")
        .unwrap();
    let off = db
        .deactivate_member(&actor(&owner), &org, &orgdb::MemberRef::User(bo.id.clone()))
        .unwrap();
    assert_eq!(off.status, orgdb::MemberStatus::Deactivated);
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname::TEXT FROM pg_indexes WHERE schemaname = $1
               AND tablename = 'memberships' ORDER BY indexname",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.contains(&"memberships_by_status_join".to_owned())
            && !indexes.contains(&"memberships_by_join".to_owned()),
        "{indexes:?}"
    );
    assert_sound(&db);
}

/// The schema version this build writes on PostgreSQL.
const PG_CURRENT: i64 = 6;

/// The export format this build writes (the header's `schema_version`).
const EXPORT_FORMAT: u64 = 5;

/// `tests/fixtures/pg-vN/`: a database written by schema version N (`orgdb demo`, dumped with
/// `pg_dump --inserts`) and its export at the time. Restored into a new schema and opened, it
/// migrates to the current version with exactly that content (in today's export format:
/// memberships gained `status` and `deactivated_at` in version 3, all active; usage totals
/// are `usage_period` records since version 5), checks clean,
/// and takes the new features: its members are found by search and deactivate.
fn migrates_from_fixture(version: i64) {
    let Some((url, _server)) = server() else {
        return;
    };
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/pg-v{version}"));
    let db_url = fresh_schema(&url);
    let schema = schema_of(&db_url);
    let dump = std::fs::read_to_string(fixture.join("dump.sql"))
        .unwrap()
        .replace("__SCHEMA__", &schema);
    sql(&url).batch_execute(&dump).unwrap();
    let db = Db::open(&db_url).unwrap();
    let found: i64 = sql(&url)
        .query_one(
            &format!("SELECT value FROM {schema}.orgdb_meta WHERE name = 'schema_version'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, PG_CURRENT);
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(fixture.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            match v["type"].as_str() {
                Some("header") => v["data"]["schema_version"] = EXPORT_FORMAT.into(),
                Some("membership") if version < 3 => {
                    v["data"]["status"] = "active".into();
                    v["data"]["deactivated_at"] = serde_json::Value::Null;
                }
                // Export format 4: a total per quota period (the calendar month, then).
                Some("usage_month") => v = usage_period_of_month(&v),
                _ => {}
            }
            v
        })
        .collect();
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let exported: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        exported, expected,
        "the content is what version {version} wrote"
    );
    assert_sound(&db);
    // The search terms are there (filled by the migration to version 3, or written by it):
    // members and organizations are found.
    let alice = db.find_user_by_email("alice@example.com").unwrap();
    let orgs = db
        .list_organizations(
            &Actor::System,
            &orgdb::ListQuery {
                search: Some("NEW COMP".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(orgs.data.len(), 1, "{orgs:?}");
    let org = orgs.data[0].id.clone();
    let hits = db
        .list_members(
            &Actor::System,
            &org,
            &orgdb::MemberQuery {
                search: Some("ALICE".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(hits.data[0].id, alice.id);
    let bob = db.find_user_by_email("bob@example.com").unwrap();
    let is_member = db
        .get_member(
            &Actor::System,
            &org,
            &orgdb::MemberRef::User(bob.id.clone()),
        )
        .is_ok();
    if is_member {
        db.deactivate_member(&Actor::System, &org, &orgdb::MemberRef::User(bob.id))
            .unwrap();
    }
    // The migration to version 4 made the overrides table.
    let on = orgdb::EntitlementValue::Feature { enabled: true };
    let sso = db
        .set_entitlement_override(&Actor::System, &org, "sso", Some(&on))
        .unwrap();
    assert_eq!(sso.source, orgdb::EntitlementSource::Override);
    assert_sound(&db);
}

/// `pg-v2`: `orgdb demo` at c00fc5c.
#[test]
fn a_version_2_database_from_its_fixture_migrates_with_its_content() {
    migrates_from_fixture(2);
}

/// `pg-v3`: `orgdb demo` at c530b82.
#[test]
fn a_version_3_database_from_its_fixture_migrates_with_its_content() {
    migrates_from_fixture(3);
}

/// `pg-v4`: `orgdb demo`, then overrides of `sso` and `projects` on my-company.
#[test]
fn a_version_4_database_from_its_fixture_migrates_with_its_content() {
    migrates_from_fixture(4);
}

/// `pg-v5`: `orgdb demo`, then a billing anchor on the 31st and more usage for my-company.
#[test]
fn a_version_5_database_from_its_fixture_migrates_with_its_content() {
    migrates_from_fixture(5);
}

#[test]
fn a_file_database_moves_to_postgres_by_export_and_import() {
    let Some((url, _server)) = server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = Db::open(dir.path().join("app.redb")).unwrap();
    let (org, owner) = org(&file, "Acme", "pro");
    let mut members = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let u = user(&file, name);
        file.add_member(&actor(&owner), &org, &u.id, "member")
            .unwrap();
        members.push(u.id);
    }
    let mcp = file
        .register_resource(&actor(&owner), &org, ResourceKind::Mcp, "search")
        .unwrap();
    file.record_usage(&org, &UsageEvent::new(3).resource(&mcp.id).key("k1"))
        .unwrap();
    file.create_invitation(
        &actor(&owner),
        &org,
        &NewInvitation {
            email: "dee@example.com".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut exported = Vec::new();
    file.export_jsonl(&mut exported).unwrap();

    let pg = Db::open(fresh_schema(&url)).unwrap();
    pg.import_jsonl(&exported[..], Some(2), &mut |_| {})
        .unwrap();
    assert_sound(&pg);
    let mut back = Vec::new();
    pg.export_jsonl(&mut back).unwrap();
    // The same records in any order (PostgreSQL's JSONB keeps an audit event's details with
    // their keys in its own order: compared as JSON values, not text).
    let records = |b: &[u8]| -> Vec<Value> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (mut back, exported_records) = (records(&back), records(&exported));
    assert_eq!(back.len(), exported_records.len());
    // Only the header tells how each side numbers its feed (a single-feed export leaves the
    // field out).
    assert!(exported_records[0]["data"].get("audit_feeds").is_none());
    let feeds = back[0]["data"]
        .as_object_mut()
        .unwrap()
        .remove("audit_feeds");
    assert_eq!(feeds, Some(json!("per_organization")));
    for v in &exported_records {
        assert!(back.contains(v), "missing after the move: {v}");
    }
    // The organization keeps its change feed and its cursor: new events follow the old.
    let before = file.audit_log(&Actor::System, &org, 0, 1000).unwrap();
    let after = pg.audit_log(&Actor::System, &org, 0, 1000).unwrap();
    assert_eq!(before, after);
    let last = after.last().unwrap().seq;
    pg.update_member_role(
        &actor(&owner),
        &org,
        &MemberRef::User(members[0].clone()),
        "viewer",
    )
    .unwrap();
    let newer = pg.audit_log(&Actor::System, &org, last, 10).unwrap();
    assert!(!newer.is_empty() && newer.iter().all(|e| e.seq > last));
    // Idempotency keys came along.
    assert!(
        pg.record_usage(&org, &UsageEvent::new(3).key("k1"))
            .unwrap()
            .duplicate
    );
}

/// The other way: PostgreSQL numbers each organization's feed (and the user feed) from 1, so
/// its export repeats numbers; a file database, with one feed, renumbers every event in
/// export order, which keeps each organization's order.
#[test]
fn a_postgres_database_moves_to_a_file_by_export_and_import() {
    let Some((url, _server)) = server() else {
        return;
    };
    let pg = Db::open(fresh_schema(&url)).unwrap();
    let (acme, acme_owner) = org(&pg, "Acme", "pro");
    let (beta, beta_owner) = org(&pg, "Beta", "pro");
    let mut people = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let u = user(&pg, name);
        pg.add_member(&actor(&acme_owner), &acme, &u.id, "member")
            .unwrap();
        pg.add_member(&actor(&beta_owner), &beta, &u.id, "member")
            .unwrap();
        pg.update_member_role(
            &actor(&acme_owner),
            &acme,
            &MemberRef::User(u.id.clone()),
            "admin",
        )
        .unwrap();
        pg.update_user(
            &u.id,
            &orgdb::UserPatch {
                name: Some(format!("{name} Renamed")),
                ..Default::default()
            },
        )
        .unwrap();
        people.push(u.id);
    }
    let mut exported = Vec::new();
    pg.export_jsonl(&mut exported).unwrap();
    let text = String::from_utf8(exported.clone()).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["data"]["audit_feeds"], "per_organization");
    let firsts = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "audit_event" && v["data"]["seq"] == 1)
        .count();
    assert_eq!(
        firsts, 3,
        "two organizations' feeds and the user feed start at 1"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let file = Db::open(&path).unwrap();
    file.import_jsonl(&exported[..], Some(3), &mut |_| {})
        .unwrap();
    assert_sound(&file);
    let total = pg.check().unwrap().audit_events;
    assert!(total > 10, "{total} events");
    assert_eq!(file.check().unwrap().audit_events, total, "every event");
    // Each organization's events in the same order, only their numbers changed.
    let unnumbered = |db: &Db, org: &str| -> Vec<orgdb::AuditEvent> {
        let events = db.audit_log(&Actor::System, org, 0, 1000).unwrap();
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
        events
            .into_iter()
            .map(|mut e| {
                e.seq = 0;
                e
            })
            .collect()
    };
    for org in [&acme, &beta] {
        let before = unnumbered(&pg, org);
        assert!(before.len() >= 4, "{org}: {} events", before.len());
        assert_eq!(unnumbered(&file, org), before, "{org}");
    }
    // The single feed continues after the last imported event, also after a reopen.
    drop(file);
    let file = Db::open(&path).unwrap();
    file.update_member_role(
        &actor(&beta_owner),
        &beta,
        &MemberRef::User(people[0].clone()),
        "viewer",
    )
    .unwrap();
    let newest = file.audit_log(&Actor::System, &beta, 0, 1000).unwrap();
    assert_eq!(newest.last().unwrap().seq, total + 1);
    assert_sound(&file);
}

// Several processes at each limit.

/// The body of a child process; does nothing in a normal run.
#[test]
fn child_process_body() {
    let Ok(task) = std::env::var(CHILD_ENV) else {
        return;
    };
    let task: Value = serde_json::from_str(&task).unwrap();
    let mut opts = Options::default();
    if let Some(ms) = task["lease_ttl_ms"].as_u64() {
        opts.usage_lease_ttl = std::time::Duration::from_millis(ms);
        opts.usage_flush_interval = std::time::Duration::from_millis(ms / 4);
    }
    let db = Db::open_with(task["url"].as_str().unwrap(), opts).unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let org = task["org"].as_str().unwrap_or_default().to_owned();
    let strings = |key: &str| -> Vec<String> {
        task[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let ok = |r: orgdb::Result<()>| -> bool {
        match r {
            Ok(()) => true,
            Err(e)
                if ["quota_exceeded", "conflict", "not_found", "forbidden"].contains(&e.code()) =>
            {
                false
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    };
    let result: Value = match task["task"].as_str().unwrap() {
        "seats" => {
            let mut added = Vec::new();
            for user in strings("users") {
                if ok(db
                    .add_member(&Actor::System, &org, &user, "member")
                    .map(drop))
                {
                    added.push(user);
                }
            }
            json!(added)
        }
        "invite" => {
            let mut sent = Vec::new();
            for email in strings("emails") {
                let new = NewInvitation {
                    email: email.clone(),
                    ..Default::default()
                };
                if ok(db.create_invitation(&Actor::System, &org, &new).map(drop)) {
                    sent.push(email);
                }
            }
            json!(sent)
        }
        "usage" => {
            let mut counted = 0u64;
            for i in 0..task["n"].as_u64().unwrap() {
                let mut event = UsageEvent::new(1);
                if task["keys"].as_bool().unwrap_or(false) {
                    event = event.key(format!("k{i}"));
                }
                match db.record_usage(&org, &event) {
                    Ok(r) if !r.duplicate => counted += 1,
                    Ok(_) => {}
                    Err(e) => {
                        ok(Err(e));
                    }
                }
            }
            json!(counted)
        }
        "buffered" => {
            // A recorder: admitted against this process's lease, in memory.
            let recorder = db.usage_recorder(&org).unwrap();
            let mut counted = 0u64;
            // With "batch": k, each call is one `record_many` of k such events (all or none).
            let batch = task["batch"].as_u64().unwrap_or(1) as usize;
            for _ in 0..task["n"].as_u64().unwrap() {
                let n = task["count"].as_u64().unwrap_or(1);
                let admitted = if batch > 1 {
                    recorder.record_many(&vec![(None, n); batch])
                } else {
                    recorder.record(None, n)
                };
                if ok(admitted.map(drop)) {
                    counted += n * batch as u64;
                }
            }
            if task["crash"].as_bool().unwrap_or(false) {
                // Die holding the lease: no flush, no release, no destructor.
                println!("RESULT {counted}");
                std::io::stdout().flush().unwrap();
                std::process::abort();
            }
            json!(counted)
        }
        "reserve" => {
            // Hold, then commit a little less (or, every third, a little more) than held.
            let mut counted = 0u64;
            for i in 0..task["n"].as_u64().unwrap() {
                let held = 1 + i % 7;
                let Ok(hold) = db.reserve_usage(&org, &orgdb::NewReservation::new(held)) else {
                    continue;
                };
                let actual = if i % 3 == 0 { held + 2 } else { held - 1 };
                match db.commit_reservation(&org, &hold.id, actual) {
                    Ok(_) => counted += actual,
                    Err(e) => {
                        ok(Err(e));
                        db.release_reservation(&org, &hold.id).unwrap();
                    }
                }
            }
            json!(counted)
        }
        "mcps" => {
            let mut made = 0u64;
            for i in 0..task["n"].as_u64().unwrap() {
                let r =
                    db.register_resource(&Actor::System, &org, ResourceKind::Mcp, &format!("m{i}"));
                made += u64::from(ok(r.map(drop)));
            }
            json!(made)
        }
        "projects" => {
            let mut made = 0u64;
            for i in 0..task["n"].as_u64().unwrap() {
                let new = orgdb::NewProject {
                    name: format!("p{i}"),
                    ..Default::default()
                };
                made += u64::from(ok(db.create_project(&Actor::System, &org, &new).map(drop)));
            }
            json!(made)
        }
        "leave" => {
            // Each org has two owners; this process makes its owner leave every one.
            let user = task["user"].as_str().unwrap();
            let left: Vec<String> = strings("orgs")
                .into_iter()
                .filter(|o| ok(db.leave_organization(user, o).map(drop)))
                .collect();
            json!(left)
        }
        "accept" => {
            let user = task["user"].as_str().unwrap();
            let done: Vec<String> = strings("tokens")
                .into_iter()
                .filter(|t| ok(db.accept_invitation(t, user).map(drop)))
                .collect();
            json!(done)
        }
        "revoke" => {
            let done: Vec<String> = strings("ids")
                .into_iter()
                .filter(|id| ok(db.revoke_invitation(&Actor::System, &org, id).map(drop)))
                .collect();
            json!(done)
        }
        other => panic!("unknown task {other}"),
    };
    println!("RESULT {result}");
}

/// Runs one child per task, all started at once; returns their results in order.
fn run_children(tasks: &[Value]) -> Vec<Value> {
    let mut children: Vec<_> = tasks
        .iter()
        .map(|task| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_process_body",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, task.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for out in &mut outs {
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "child died before READY"
            );
        }
    }
    for child in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "GO").unwrap();
    }
    let results = outs
        .iter_mut()
        .map(|out| {
            let mut line = String::new();
            loop {
                line.clear();
                assert!(
                    out.read_line(&mut line).unwrap() > 0,
                    "child died before RESULT"
                );
                // libtest prints `test child_process_body ... ` before the body's output.
                if let Some((_, rest)) = line.split_once("RESULT ") {
                    return serde_json::from_str(rest.trim()).unwrap();
                }
            }
        })
        .collect();
    for (mut child, task) in children.into_iter().zip(tasks) {
        let status = child.wait().unwrap();
        if task["crash"].as_bool().unwrap_or(false) {
            assert!(!status.success(), "the child was to die");
        } else {
            assert!(status.success());
        }
    }
    results
}

const PROCESSES: usize = 4;

#[test]
fn seats_hold_across_processes_adding_members_and_inviting() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    let seats = 12;
    limits(
        &db,
        &org,
        LimitOverrides {
            team_members: Some(Limit::Count(seats)),
            ..Default::default()
        },
    );
    let tasks: Vec<Value> = (0..PROCESSES)
        .map(|p| {
            if p % 2 == 0 {
                let users: Vec<String> = (0..8)
                    .map(|i| user(&db, &format!("P{p} U{i}")).id)
                    .collect();
                json!({"task": "seats", "url": url, "org": org, "users": users})
            } else {
                let emails: Vec<String> =
                    (0..8).map(|i| format!("p{p}.i{i}@example.com")).collect();
                json!({"task": "invite", "url": url, "org": org, "emails": emails})
            }
        })
        .collect();
    let results = run_children(&tasks);
    let acknowledged: usize = results.iter().map(|r| r.as_array().unwrap().len()).sum();
    // The owner holds one seat; members and pending invitations the rest, never more.
    let pending = db
        .list_invitations(&Actor::System, &org, &Default::default())
        .unwrap()
        .pagination
        .total;
    let members = db
        .list_members(&Actor::System, &org, &Default::default())
        .unwrap()
        .pagination
        .total;
    assert_eq!(
        members + pending,
        1 + acknowledged as u64,
        "every acknowledged seat is there"
    );
    assert_eq!(
        members + pending,
        seats,
        "the limit is reached and not passed"
    );
    assert_sound(&db);
}

#[test]
fn monthly_quota_and_idempotency_keys_hold_across_processes() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    let (keyed, _) = common::org(&db, "Keyed", "pro");
    let quota = 150;
    monthly_limit(&db, &org, quota);
    let mut tasks: Vec<Value> = (0..PROCESSES)
        .map(|_| json!({"task": "usage", "url": url, "org": org, "n": 60}))
        .collect();
    // The same 40 keys from every process: each counts once.
    tasks.extend(
        (0..PROCESSES)
            .map(|_| json!({"task": "usage", "url": url, "org": keyed, "n": 40, "keys": true})),
    );
    let results = run_children(&tasks);
    let counted: u64 = results[..PROCESSES]
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    assert_eq!(counted, quota, "240 asked, exactly the quota acknowledged");
    let used = |org: &str| {
        db.get_organization(&Actor::System, org)
            .unwrap()
            .usage
            .monthly_requests
    };
    assert_eq!(used(&org), quota);
    let keyed_counted: u64 = results[PROCESSES..]
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    assert_eq!(keyed_counted, 40);
    assert_eq!(used(&keyed), 40);
    assert_sound(&db);
}

/// A lone caller's usage transaction runs on what its handle saw its last one commit (one
/// round trip, ARCHITECTURE.md "Guessed usage transactions"). Whatever another handle (another
/// app server) changes in between is found there: the call is answered as the stored state
/// says, never as the guess did.
#[test]
fn a_usage_guess_made_stale_by_another_handle_is_caught() {
    let Some((url, _server, a, org, owner)) = acme("pro") else {
        return;
    };
    let b = Db::open(&url).unwrap();
    let admin = Actor::user(&owner.id);
    monthly_limit(&a, &org, 30);
    // No alert thresholds: a call that reaches one reads the alert state, which no guess
    // answers, so it would not run on a guess at all.
    a.set_usage_alerts(&admin, &org, Some(&[])).unwrap();
    let mcp = a
        .register_resource(&admin, &org, ResourceKind::Mcp, "Weather")
        .unwrap();
    let one = || UsageEvent::new(1).resource(&mcp.id);
    let mut used = 0;
    // A's calls until one ran on a guess that held (after a guess missed, A's next call
    // reads under the lock first), so that the next one runs on a guess.
    let settle = |used: &mut u64, event: &dyn Fn() -> UsageEvent| {
        for _ in 0..3 {
            *used += 1;
            assert_eq!(a.record_usage(&org, &event()).unwrap().used, *used);
        }
    };
    settle(&mut used, &one);
    // B counts: A's guess of the total is 5 short.
    assert_eq!(
        b.record_usage(&org, &UsageEvent::new(5)).unwrap().used,
        used + 5
    );
    used += 6;
    assert_eq!(a.record_usage(&org, &one()).unwrap().used, used);
    settle(&mut used, &one);
    // B raises the limit: A's guess of the organization's row is stale.
    monthly_limit(&b, &org, 60);
    used += 1;
    let r = a.record_usage(&org, &one()).unwrap();
    assert_eq!((r.used, r.limit), (used, Some(60)));
    settle(&mut used, &one);
    // A key stored since A's guess (by A's own last call: the guess says no key is stored)
    // is a duplicate, counted once.
    used += 1;
    assert!(!a.record_usage(&org, &one().key("k-1")).unwrap().duplicate);
    let r = a.record_usage(&org, &one().key("k-1")).unwrap();
    assert!(r.duplicate, "{r:?}");
    assert_eq!(r.used, used);
    settle(&mut used, &one);
    // A reservation B holds counts against A's calls until B lets it go.
    let held = b
        .reserve_usage(&org, &orgdb::NewReservation::new(60 - used))
        .unwrap();
    assert_err(a.record_usage(&org, &one()), "quota_exceeded", None);
    assert!(b.release_reservation(&org, &held.id).unwrap());
    settle(&mut used, &one);
    // A resource B removed is gone for A.
    b.remove_resource(&admin, &org, &mcp.id).unwrap();
    assert_err(a.record_usage(&org, &one()), "not_found", None);
    let plain = || UsageEvent::new(1);
    settle(&mut used, &plain);
    // B takes the quota up to the limit: A's guess says there is room.
    b.record_usage(&org, &UsageEvent::new(60 - used)).unwrap();
    assert_err(a.record_usage(&org, &plain()), "quota_exceeded", None);
    // Every acknowledged call is stored, once.
    let usage = b.get_organization(&Actor::System, &org).unwrap().usage;
    assert_eq!(usage.monthly_requests, 60);
    assert_sound(&a);
    // An organization B deleted is gone for A.
    monthly_limit(&b, &org, 100);
    let mut more = 60;
    settle(&mut more, &plain);
    b.delete_organization(&admin, &org).unwrap();
    assert_err(a.record_usage(&org, &plain()), "not_found", None);

    // What the quota derives from the organization's row, changed by B: A's guess of the row
    // is stale each time, and each time A's answer follows the row.
    let (beta, beta_owner) = common::org(&a, "Beta", "free");
    let owner = Actor::user(&beta_owner.id);
    a.set_usage_alerts(&owner, &beta, Some(&[])).unwrap();
    let settle = |used: &mut u64| {
        for _ in 0..3 {
            *used += 1;
            assert_eq!(a.record_usage(&beta, &plain()).unwrap().used, *used);
        }
    };
    let mut used = 0;
    settle(&mut used);
    // The plan.
    b.set_plan(&owner, &beta, "team").unwrap();
    used += 1;
    let r = a.record_usage(&beta, &plain()).unwrap();
    assert_eq!((r.used, r.limit), (used, Some(1_000_000)));
    settle(&mut used);
    // The quota period: A's receipt names the new rule's period (which does not start on the
    // first of a month, as the calendar month A guessed does).
    let mut anchor = chrono::Utc::now().date_naive() - chrono::TimeDelta::days(10);
    if chrono::Datelike::day(&anchor) == 1 {
        anchor -= chrono::TimeDelta::days(1);
    }
    let period = b
        .set_billing_anchor(
            &Actor::System,
            &beta,
            orgdb::QuotaPeriod::Anchored { anchor },
        )
        .unwrap();
    let r = a.record_usage(&beta, &plain()).unwrap();
    assert_eq!(
        (r.period_start, r.period_end),
        (period.period_start, period.period_end)
    );
    used = r.used;
    settle(&mut used);
    // Alert thresholds: with 1 % of the team plan's 1 000 000 reached, A's next call
    // announces it (a call that reaches a threshold reads the alert state, so this one last).
    used += 10_000;
    a.record_usage(&beta, &UsageEvent::new(10_000)).unwrap();
    settle(&mut used);
    b.set_usage_alerts(&owner, &beta, Some(&[1])).unwrap();
    a.record_usage(&beta, &plain()).unwrap();
    let alerts = a.usage_alerts(&owner, &beta).unwrap();
    assert!(alerts.alerts[0].fired_this_period, "{alerts:?}");
    assert_sound(&b);
}

/// What each caller of [`guesses_of_batches_of_several_organizations_are_checked`] expects of
/// its calls in a round.
#[derive(Clone, Debug)]
enum Expect {
    /// Counted on what is stored: the round's first call finds the total and the limit
    /// another handle may have changed.
    Counts,
    /// Refused with this code.
    Refused(&'static str),
    /// A duplicate of the key another handle stored.
    Duplicate(String),
}

/// Concurrent callers of several organizations share batches, and a batch runs on what this
/// handle's last batch of each organization saw (ARCHITECTURE.md, "Guessed usage
/// transactions"). Between rounds another handle changes one organization or several: each
/// change is found by the batch that next holds the organization, whatever others it holds.
#[test]
fn guesses_of_batches_of_several_organizations_are_checked() {
    let Some((url, _server, a, first, first_owner)) = acme("pro") else {
        return;
    };
    let b = Db::open(&url).unwrap();
    const ORGS: usize = 6;
    const CALLS: u64 = 6;
    let mut orgs = vec![(first, first_owner)];
    for i in 1..ORGS {
        orgs.push(common::org(&a, &format!("Org {i}"), "pro"));
    }
    let mut resources = Vec::new();
    for (org, owner) in &orgs {
        monthly_limit(&a, org, 1_000);
        // No alert thresholds: a call that reaches one reads the alert state, which no guess
        // answers.
        let admin = Actor::user(&owner.id);
        a.set_usage_alerts(&admin, org, Some(&[])).unwrap();
        let mcp = a
            .register_resource(&admin, org, ResourceKind::Mcp, "Weather")
            .unwrap();
        resources.push(Some(mcp.id));
    }
    // Per organization: what its caller expects this round, and the resource its calls name.
    let mut expect = vec![Expect::Counts; ORGS];
    let mut acknowledged = [0u64; ORGS];
    let mut added = [0u64; ORGS];
    let mut held = None;
    // Each change is followed by rounds without one: after a guess missed, the organizations
    // of its batch go without guesses for a while, and rounds that count let them guess again.
    let changes = [1, 2, 3, 4, 5, 6].into_iter().flat_map(|c| [0, 0, c]);
    for change in changes.chain([0, 0]) {
        expect.fill(Expect::Counts);
        match change {
            // Totals moved by another handle, on every other organization.
            1 => {
                for i in (0..ORGS).step_by(2) {
                    b.record_usage(&orgs[i].0, &UsageEvent::new(5)).unwrap();
                    added[i] += 5;
                }
            }
            // A limit raised, and one lowered below what is stored (raised again after the
            // round).
            2 => {
                monthly_limit(&b, &orgs[1].0, 2_000);
                monthly_limit(&b, &orgs[4].0, 1);
                expect[4] = Expect::Refused("quota_exceeded");
            }
            // What is left of a quota, reserved by another handle (let go after the round).
            3 => {
                let org = &orgs[3].0;
                let stored = b.get_organization(&Actor::System, org).unwrap();
                let left = 1_000 - stored.usage.monthly_requests;
                let r = b
                    .reserve_usage(org, &orgdb::NewReservation::new(left))
                    .unwrap();
                held = Some(r.id);
                expect[3] = Expect::Refused("quota_exceeded");
            }
            // A resource removed (its organization's calls go on without it after the round).
            4 => {
                let (org, owner) = &orgs[5];
                let resource = resources[5].as_deref().unwrap();
                b.remove_resource(&Actor::user(&owner.id), org, resource)
                    .unwrap();
                expect[5] = Expect::Refused("not_found");
            }
            // A key stored by another handle.
            5 => {
                b.record_usage(&orgs[0].0, &UsageEvent::new(1).key("dup"))
                    .unwrap();
                added[0] += 1;
                expect[0] = Expect::Duplicate("dup".to_owned());
            }
            // An alert threshold set, which the total is past: the next call announces it.
            6 => {
                let (org, owner) = &orgs[2];
                b.set_usage_alerts(&Actor::user(&owner.id), org, Some(&[1]))
                    .unwrap();
            }
            _ => {}
        }
        // The callers of a round start together, so that their calls share batches.
        let start = std::sync::Barrier::new(ORGS);
        std::thread::scope(|scope| {
            for (i, ((org, _), acknowledged)) in orgs.iter().zip(&mut acknowledged).enumerate() {
                let (a, b, start) = (a.clone(), &b, &start);
                let (expect, resource) = (&expect[i], &resources[i]);
                scope.spawn(move || {
                    let stored = b.get_organization(&Actor::System, org).unwrap();
                    let (mut used, limit) = (
                        stored.usage.monthly_requests,
                        stored.limits.monthly_requests,
                    );
                    start.wait();
                    for _ in 0..CALLS {
                        let mut event = UsageEvent::new(1);
                        if let Some(r) = resource {
                            event = event.resource(r);
                        }
                        match expect {
                            Expect::Counts => {
                                let r = a.record_usage(org, &event).unwrap();
                                used += 1;
                                *acknowledged += 1;
                                assert_eq!((r.used, r.limit), (used, limit), "org {i}");
                            }
                            Expect::Refused(code) => {
                                assert_err(a.record_usage(org, &event), code, None);
                            }
                            Expect::Duplicate(key) => {
                                let r = a.record_usage(org, &event.key(key)).unwrap();
                                assert!(r.duplicate, "org {i}: {r:?}");
                                assert_eq!(r.used, used, "org {i}");
                            }
                        }
                    }
                });
            }
        });
        match change {
            2 => monthly_limit(&b, &orgs[4].0, 1_000),
            3 => assert!(b
                .release_reservation(&orgs[3].0, &held.take().unwrap())
                .unwrap()),
            4 => resources[5] = None,
            6 => {
                let (org, owner) = &orgs[2];
                let alerts = a.usage_alerts(&Actor::user(&owner.id), org).unwrap();
                assert!(alerts.alerts[0].fired_this_period, "{alerts:?}");
            }
            _ => {}
        }
    }
    // Every acknowledged call is stored, once.
    for (i, (org, _)) in orgs.iter().enumerate() {
        let stored = b.get_organization(&Actor::System, org).unwrap().usage;
        assert_eq!(
            stored.monthly_requests,
            acknowledged[i] + added[i],
            "org {i}"
        );
    }
    assert_sound(&a);
}

#[test]
fn resource_limits_last_owners_and_accept_against_revoke_hold_across_processes() {
    let Some((url, _server, db, org, owner)) = acme("pro") else {
        return;
    };
    limits(
        &db,
        &org,
        LimitOverrides {
            mcps: Some(Limit::Count(5)),
            ..Default::default()
        },
    );
    // Ten organizations with two owners each; one process makes each owner leave.
    let (a, b) = (user(&db, "Owner A"), user(&db, "Owner B"));
    let orgs: Vec<String> = (0..10)
        .map(|i| {
            let o = db
                .create_organization(
                    &a.id,
                    &orgdb::NewOrganization {
                        name: format!("Pair {i}"),
                        ..Default::default()
                    },
                )
                .unwrap()
                .organization
                .id;
            db.add_member(&Actor::System, &o, &b.id, "owner").unwrap();
            o
        })
        .collect();
    // Ten invitations, each accepted by one process and revoked by another.
    let invitee = user(&db, "Invitee");
    let created: Vec<_> = (0..10)
        .map(|i| {
            let o = &orgs[i];
            db.create_invitation(
                &Actor::System,
                o,
                &NewInvitation {
                    email: invitee.email.clone(),
                    ..Default::default()
                },
            )
            .unwrap()
        })
        .collect();
    let tokens: Vec<&str> = created.iter().map(|c| c.token.as_str()).collect();
    let mut tasks = vec![
        json!({"task": "mcps", "url": url, "org": org, "n": 4}),
        json!({"task": "mcps", "url": url, "org": org, "n": 4}),
        json!({"task": "leave", "url": url, "user": a.id, "orgs": orgs}),
        json!({"task": "leave", "url": url, "user": b.id, "orgs": orgs}),
        json!({"task": "accept", "url": url, "user": invitee.id, "tokens": tokens}),
    ];
    for c in &created {
        tasks.push(json!({"task": "revoke", "url": url, "org": c.invitation.organization_id, "ids": [c.invite_id]}));
    }
    let results = run_children(&tasks);
    let made = results[0].as_u64().unwrap() + results[1].as_u64().unwrap();
    assert_eq!(made, 5, "8 asked, the limit of 5 made");
    let live = db
        .list_resources(&actor(&owner), &org, Some(ResourceKind::Mcp))
        .unwrap();
    assert_eq!(live.len(), 5);
    let left_a: BTreeSet<String> = serde_json::from_value(results[2].clone()).unwrap();
    let left_b: BTreeSet<String> = serde_json::from_value(results[3].clone()).unwrap();
    assert!(
        left_a.is_disjoint(&left_b),
        "no organization lost both owners"
    );
    let accepted: BTreeSet<String> = serde_json::from_value(results[4].clone()).unwrap();
    let revoked: usize = results[5..]
        .iter()
        .map(|r| r.as_array().unwrap().len())
        .sum();
    assert_eq!(
        accepted.len() + revoked,
        10,
        "each invitation accepted or revoked, not both"
    );
    assert_sound(&db);
}

/// The `projects` limit of an override holds between processes: four processes ask for 12
/// projects against a limit of 7, and exactly 7 exist afterwards.
#[test]
fn the_projects_limit_holds_across_processes() {
    let Some((url, _server, db, org, owner)) = acme("pro") else {
        return;
    };
    let seven = orgdb::EntitlementValue::Limit { limit: Some(7) };
    db.set_entitlement_override(&Actor::System, &org, "projects", Some(&seven))
        .unwrap();
    let tasks: Vec<Value> = (0..4)
        .map(|_| json!({"task": "projects", "url": url, "org": org, "n": 3}))
        .collect();
    let made: u64 = run_children(&tasks)
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    assert_eq!(made, 7, "12 asked, the limit of 7 made");
    assert_eq!(db.list_projects(&actor(&owner), &org).unwrap().len(), 7);
    let e = db.entitlement(&actor(&owner), &org, "projects").unwrap();
    assert_eq!((e.used, e.has_access), (Some(7), false));
    assert_sound(&db);
}

/// The server restarts in the middle of a workload: each call either succeeds or fails with
/// `storage_error` (or `conflict`), nothing is half-applied, nothing acknowledged is lost, and
/// later calls reconnect by themselves.
#[test]
fn a_server_restart_mid_workload_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some(url) = postgres_url() else { return };
    let _alone = SERVER.write().unwrap_or_else(|p| p.into_inner());
    let Ok(script) = std::env::var("ORGDB_PG_SERVER_SCRIPT") else {
        eprintln!("skipped: the server was not started by scripts/pg-server.sh");
        return;
    };
    let url = fresh_schema(&url);
    let db = Db::open(&url).unwrap();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let restarted = Arc::new(AtomicBool::new(false));
    #[derive(Default)]
    struct Tally {
        usage: u64,
        users: Vec<String>,
        failed: u64,
        after_restart: u64,
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (db, org, restarted, tally) =
                (db.clone(), org.clone(), restarted.clone(), tally.clone());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                for i in 0.. {
                    let done = restarted.load(Ordering::SeqCst);
                    let usage = db.record_usage(&org, &UsageEvent::new(1).key(format!("w{w}-{i}")));
                    let user = db.create_user(&orgdb::NewUser {
                        email: format!("w{w}.u{i}@example.com"),
                        name: format!("W{w} U{i}"),
                    });
                    let mut t = tally.lock().unwrap();
                    for code in [usage.as_ref().err(), user.as_ref().err()]
                        .into_iter()
                        .flatten()
                        .map(orgdb::Error::code)
                    {
                        assert!(["storage_error", "conflict"].contains(&code), "{code}");
                        t.failed += 1;
                    }
                    if usage.is_ok() {
                        t.usage += 1;
                    }
                    if let Ok(u) = user {
                        t.users.push(u.id);
                    }
                    if done && usage.is_ok() {
                        t.after_restart += 1;
                    }
                    let enough = done && t.after_restart >= 40;
                    drop(t);
                    if enough || started.elapsed() > std::time::Duration::from_secs(60) {
                        break;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = Command::new(&script).arg("restart").status().unwrap();
    assert!(status.success(), "the restart failed");
    restarted.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let t = tally.lock().unwrap();
    assert!(t.after_restart >= 40, "calls reconnect after the restart");
    eprintln!(
        "{} usage calls and {} users acknowledged, {} calls failed across the restart",
        t.usage,
        t.users.len(),
        t.failed
    );
    // A failure during COMMIT may have applied (its outcome is unknown to the client), so the
    // total lies between what was acknowledged and that plus the failures.
    let total = db
        .get_organization(&actor(&owner), &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert!(
        (t.usage..=t.usage + t.failed).contains(&total),
        "{} acknowledged, {} failed, {total} stored",
        t.usage,
        t.failed
    );
    for id in &t.users {
        assert!(db.get_user(id).is_ok(), "acknowledged user {id} is there");
    }
    assert_sound(&db);
}

/// Connections killed by the server in the middle of transactions (`pg_terminate_backend`,
/// as an operator or a failover does): a call either succeeds, or fails with `storage_error`
/// or `conflict` having changed nothing (unless its error says the connection broke during
/// COMMIT, when the outcome is unknown), and the database stays sound.
#[test]
fn connections_killed_mid_transaction_leave_no_partial_change() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some((url, _server)) = server() else {
        return;
    };
    let app = format!("orgdb_kill_{}", std::process::id());
    let url = format!("{}&application_name={app}", fresh_schema(&url));
    let db = Db::open(&url).unwrap();
    let (org, _) = org(&db, "Acme", "enterprise");
    let users: Vec<String> = (0..120)
        .map(|i| user(&db, &format!("Member {i}")).id)
        .collect();
    let stop = AtomicBool::new(false);
    let mut killed = 0u64;
    // Each add is one transaction of several statements: the membership, the role counter
    // and the audit event.
    let outcomes: Vec<(String, Result<(), orgdb::Error>)> = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut client = sql(&url);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&app],
                    )
                    .map_or(0, |rows| rows.len() as u64);
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            n
        });
        let workers: Vec<_> = users
            .chunks(30)
            .map(|chunk| {
                let (db, org) = (db.clone(), org.clone());
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|u| {
                            let r = db.add_member(&Actor::System, &org, u, "member").map(drop);
                            (u.clone(), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        stop.store(true, Ordering::SeqCst);
        killed = killer.join().unwrap();
        outcomes
    });
    assert!(killed > 0, "no connection was killed");
    let mut failed = 0;
    for (u, r) in &outcomes {
        let member = db
            .get_member(&Actor::System, &org, &orgdb::MemberRef::User(u.clone()))
            .is_ok();
        match r {
            Ok(()) => assert!(member, "acknowledged member {u} is there"),
            Err(e) => {
                failed += 1;
                assert!(["storage_error", "conflict"].contains(&e.code()), "{e:?}");
                let unknown = e.to_string().contains("may or may not");
                assert!(unknown || !member, "a failed add left {u} a member: {e}");
            }
        }
    }
    let acknowledged = outcomes.len() - failed;
    eprintln!("{killed} connections killed; {acknowledged} adds acknowledged, {failed} failed");
    // A call whose connection was killed before COMMIT runs again on a new one.
    assert!(
        acknowledged >= outcomes.len() / 2,
        "calls reconnect by themselves ({acknowledged} of {} acknowledged)",
        outcomes.len()
    );
    // Counters, audit feed and rows agree: no transaction was half applied.
    let listed = db
        .list_members(&Actor::System, &org, &Default::default())
        .unwrap()
        .pagination
        .total;
    let counted = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .team_members;
    assert_eq!(listed, counted);
    assert_sound(&db);
}

/// A durable usage call is two round trips: BEGIN, the lock and the read together, then the
/// write and COMMIT together. Its connection killed while either waits (here, on a row that
/// another transaction holds): the server answers the waiting statement with its error and
/// never runs what follows (COMMIT included), so the call runs again on a new connection and
/// counts once: totals, day rows and keys agree.
#[test]
fn usage_calls_killed_between_their_round_trips_apply_nothing_or_run_again() {
    let Some((url, _server)) = server() else {
        return;
    };
    let app = format!("orgdb_usage_kill_{}", std::process::id());
    let url = fresh_schema(&url);
    let schema = schema_of(&url);
    let url = format!("{url}&application_name={app}");
    let db = Db::open(&url).unwrap();
    let (org, _) = org(&db, "Acme", "enterprise");
    let used = || {
        db.get_organization(&Actor::System, &org)
            .unwrap()
            .usage
            .monthly_requests
    };
    db.record_usage(&org, &UsageEvent::new(1).key("k0"))
        .unwrap();
    assert_eq!(used(), 1);
    let mut blocker = sql(&url);
    blocker
        .batch_execute(&format!("SET search_path = {schema}"))
        .unwrap();
    // Records `event` while the blocker holds the row `hold` locks: kills the orgdb
    // connection once it waits on it, then lets go.
    let mut killed_while_waiting = |hold: &str, event: UsageEvent| {
        blocker.batch_execute("BEGIN").unwrap();
        blocker.query(hold, &[&org]).unwrap();
        std::thread::scope(|scope| {
            let call = scope.spawn(|| db.record_usage(&org, &event));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let killed = blocker
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[&app],
                    )
                    .unwrap()
                    .len();
                if killed > 0 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the call never waited"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            blocker.batch_execute("COMMIT").unwrap();
            call.join().unwrap()
        })
    };
    // The second round trip: the write waits on the period's row.
    let receipt = killed_while_waiting(
        "SELECT total FROM usage_periods WHERE organization_id = $1 FOR UPDATE",
        UsageEvent::new(5).key("k1"),
    )
    .expect("the write was refused before COMMIT ran: the call ran again");
    assert!(!receipt.duplicate);
    assert_eq!(used(), 6, "counted once");
    let again = db
        .record_usage(&org, &UsageEvent::new(5).key("k1"))
        .unwrap();
    assert!(again.duplicate, "its key was stored once, with the count");
    assert_eq!(used(), 6);
    // The first round trip: the lock waits on the organization's row.
    let receipt = killed_while_waiting(
        "SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE",
        UsageEvent::new(2).key("k2"),
    )
    .expect("killed before COMMIT, the call ran again on a new connection");
    assert!(!receipt.duplicate);
    assert_eq!(used(), 8, "counted once");
    let report = db
        .usage_report(&Actor::System, &org, &Default::default())
        .unwrap();
    assert_eq!(
        report.requests.total, 8,
        "the day rows agree with the total"
    );
    assert_sound(&db);
}

/// Buffered usage through leases from four processes at once (and a durable caller beside
/// them): the limit is never passed, and once the processes closed every acknowledged event is
/// stored and every lease returned.
#[test]
fn leases_keep_buffered_usage_exact_across_processes() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    let quota = 20_000;
    monthly_limit(&db, &org, quota);
    // Every other process admits its events ten at a time (`record_many`): the same 9 000.
    let mut tasks: Vec<Value> = (0..PROCESSES)
        .map(|i| {
            let (n, batch) = if i % 2 == 1 { (300, 10) } else { (3_000, 1) };
            json!({"task": "buffered", "url": url, "org": org, "n": n, "count": 3, "batch": batch})
        })
        .collect();
    tasks.push(json!({"task": "usage", "url": url, "org": org, "n": 300}));
    // An organization without a limit needs no lease: counted in memory, stored at flush.
    let (free, _) = common::org(&db, "Unlimited", "enterprise");
    tasks.push(json!({"task": "buffered", "url": url, "org": free, "n": 1_000, "count": 2}));
    let results = run_children(&tasks);
    assert_eq!(results[PROCESSES + 1], 2_000);
    let unlimited = db
        .get_organization(&Actor::System, &free)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(unlimited, 2_000);
    let buffered: u64 = results[..PROCESSES]
        .iter()
        .map(|r| r.as_u64().unwrap())
        .sum();
    let durable = results[PROCESSES].as_u64().unwrap();
    let stored = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(
        stored,
        buffered + durable,
        "every acknowledged event is stored"
    );
    assert!(stored <= quota, "{stored} > {quota}");
    assert!(
        stored > quota / 2,
        "36 300 asked of 20 000: most of the quota is used ({stored})"
    );
    let mut client = sql(&url);
    let leases: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.usage_leases WHERE organization_id = $1",
                schema_of(&url)
            ),
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "closing handles returned their leases");
    assert_sound(&db);
}

/// A read of the period total counts buffered usage once while flushes store it: each
/// `get_organization` answers at least what was acknowledged before it began and at most what
/// was acknowledged when it ended, while one thread records through a recorder (a lease) and
/// another flushes as fast as it can, moving usage from memory to the stored total.
#[test]
fn reads_count_buffered_usage_once_while_flushes_store_it() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let Some((_url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    let acked = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let recorder = db.usage_recorder(&org).unwrap();
    let reads = std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3_000 {
                recorder.record(None, 1).unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                db.flush().unwrap();
            }
        });
        let mut reads = 0;
        while !done.load(Ordering::SeqCst) {
            let lo = acked.load(Ordering::SeqCst);
            let total = db
                .get_organization(&Actor::System, &org)
                .unwrap()
                .usage
                .monthly_requests;
            // One event may be admitted and not yet acknowledged (its call not returned).
            let hi = acked.load(Ordering::SeqCst) + 1;
            assert!(
                (lo..=hi).contains(&total),
                "read {total}, acknowledged {lo} before the read and {} after",
                hi - 1
            );
            reads += 1;
        }
        reads
    });
    assert!(reads > 0, "the reads ran alongside the records");
    let total = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(total, 3_000);
    assert_sound(&db);
}

/// Reservations are exact across processes: processes holding and committing race others
/// recording durably and through leases, at one limit. Nothing passes it, every
/// acknowledged commit and event is stored, and no hold is left behind.
#[test]
fn reservations_hold_across_processes() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    let quota = 2_000;
    monthly_limit(&db, &org, quota);
    let mut tasks: Vec<Value> = (0..PROCESSES)
        .map(|_| json!({"task": "reserve", "url": url, "org": org, "n": 150}))
        .collect();
    tasks.push(json!({"task": "usage", "url": url, "org": org, "n": 400}));
    tasks.push(json!({"task": "buffered", "url": url, "org": org, "n": 800, "count": 1}));
    let results = run_children(&tasks);
    let acknowledged: u64 = results.iter().map(|r| r.as_u64().unwrap()).sum();
    let stored = db
        .get_organization(&Actor::System, &org)
        .unwrap()
        .usage
        .monthly_requests;
    assert_eq!(stored, acknowledged, "every acknowledged count is stored");
    assert!(stored <= quota, "{stored} > {quota}");
    assert!(stored > quota / 2, "the race reached the limit ({stored})");
    let holds: i64 = sql(&url)
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.usage_reservations WHERE organization_id = $1",
                schema_of(&url)
            ),
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(holds, 0, "every hold was settled");
    assert_sound(&db);
}

/// A process that dies holding a lease: its reserved quota is not free until the lease
/// expires, then it is; what it admitted and never stored is lost (buffered usage), and
/// nothing else is.
#[test]
fn a_crashed_process_lease_expires_and_its_quota_returns() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    limits(
        &db,
        &org,
        LimitOverrides {
            monthly_requests: Some(Limit::Count(3_000)),
            ..Default::default()
        },
    );
    let ttl_ms = 1_500;
    let results = run_children(&[json!({
        "task": "buffered", "url": url, "org": org, "n": 1, "count": 1,
        "crash": true, "lease_ttl_ms": ttl_ms,
    })]);
    assert_eq!(results[0], 1);
    let started = std::time::Instant::now();
    // Its lease (a slice of 1 000) still holds: 2 500 more do not fit in 3 000.
    assert_err(
        db.record_usage(&org, &UsageEvent::new(2_500)),
        "quota_exceeded",
        None,
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(ttl_ms));
    std::thread::sleep(std::time::Duration::from_millis(ttl_ms + 200));
    let r = db.record_usage(&org, &UsageEvent::new(2_500)).unwrap();
    assert_eq!(
        r.used, 2_500,
        "the dead process's one event was never stored"
    );
    assert_sound(&db);
}

/// A change of quota period moves every live lease to today's period of the new rule, where
/// what it admitted will be stored: another handle's durable call counts it at once (the rule
/// change must not free the quota a lease holds), and the holder's next sync stores its usage
/// in the new period and returns the lease.
#[test]
fn a_rule_change_keeps_other_processes_leases_counted() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    limits(
        &db,
        &org,
        LimitOverrides {
            monthly_requests: Some(Limit::Count(3_000)),
            ..Default::default()
        },
    );
    // Mid-month, so that a day's period and the month's start on different days.
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2030, 6, 15, 12, 0, 0).unwrap();
    let handle = || {
        let mut opts = Options::with_clock(orgdb::ManualClock::new(now));
        // No background flush: the lease stays as the first record left it.
        opts.usage_flush_interval = std::time::Duration::from_secs(3_600);
        opts.usage_lease_ttl = std::time::Duration::from_secs(7_200);
        Db::open_with(&url, opts).unwrap()
    };
    let (holder, other) = (handle(), handle());
    holder
        .usage_recorder(&org)
        .unwrap()
        .record(None, 1)
        .unwrap();
    other
        .set_billing_anchor(&Actor::System, &org, orgdb::QuotaPeriod::Day)
        .unwrap();
    // The holder's slice (1 000) still holds: 2 500 more do not fit in 3 000.
    assert_err(
        other.record_usage(&org, &UsageEvent::new(2_500)),
        "quota_exceeded",
        None,
    );
    assert_eq!(
        other
            .record_usage(&org, &UsageEvent::new(2_000))
            .unwrap()
            .used,
        2_000
    );
    holder.flush().unwrap();
    let leases: i64 = sql(&url)
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.usage_leases WHERE organization_id = $1",
                schema_of(&url)
            ),
            &[&org],
        )
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "the holder returned its moved lease");
    let r = other.record_usage(&org, &UsageEvent::new(999)).unwrap();
    assert_eq!(r.used, 3_000, "the holder's event is in today's period");
    assert_err(
        other.record_usage(&org, &UsageEvent::new(1)),
        "quota_exceeded",
        None,
    );
    drop(holder);
    assert_sound(&other);
}

/// Version 5's migration run again (a second process that found version 4, or an open after
/// a stop half-way) keeps the live leases of the new table; a lease table of version 4 is
/// made again keyed by period, its live rows kept as their calendar months.
#[test]
fn rerunning_the_version_5_migration_keeps_live_leases() {
    let Some((url, _server, db, org, _)) = acme("pro") else {
        return;
    };
    drop(db);
    let schema = schema_of(&url);
    let mut client = sql(&url);
    let leases = |client: &mut postgres::Client| -> Vec<(String, chrono::NaiveDate, i64)> {
        client
            .query(
                &format!(
                    "SELECT holder, period_start, amount FROM {schema}.usage_leases
                     ORDER BY holder"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.usage_leases VALUES
                ('{org}', '2030-06-01', 'live', 500, now() + INTERVAL '1 hour');
             UPDATE {schema}.orgdb_meta SET value = 4 WHERE name = 'schema_version'"
        ))
        .unwrap();
    drop(Db::open(&url).unwrap());
    let june = chrono::NaiveDate::from_ymd_opt(2030, 6, 1).unwrap();
    assert_eq!(leases(&mut client), vec![("live".to_owned(), june, 500)]);
    client
        .batch_execute(&format!(
            "DROP TABLE {schema}.usage_leases;
             CREATE TABLE {schema}.usage_leases (organization_id TEXT NOT NULL,
                month INTEGER NOT NULL, holder TEXT NOT NULL, amount BIGINT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (organization_id, month, holder));
             INSERT INTO {schema}.usage_leases VALUES
                ('{org}', 203006, 'old', 700, now() + INTERVAL '1 hour'),
                ('{org}', 203005, 'gone', 900, now() - INTERVAL '1 hour');
             UPDATE {schema}.orgdb_meta SET value = 4 WHERE name = 'schema_version'"
        ))
        .unwrap();
    let db = Db::open(&url).unwrap();
    assert_eq!(leases(&mut client), vec![("old".to_owned(), june, 700)]);
    assert_sound(&db);
}

/// TLS, with libpq's modes: `require` encrypts; `verify-full` also checks the certificate
/// against the authority of `sslrootcert` (here the throwaway one of scripts/pg-server.sh) and
/// refuses a server whose authority it does not know; the default `prefer` takes TLS when the
/// server offers it.
#[test]
fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let Some((url, _server)) = server() else {
        return;
    };
    let Ok(ca) = std::env::var("ORGDB_TEST_POSTGRES_CA") else {
        eprintln!("skipped: the test server has no TLS (openssl missing)");
        return;
    };
    let base = fresh_schema(&url);
    let encrypted = |app: &str| -> i64 {
        sql(&url)
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = $1 AND s.ssl",
                &[&app],
            )
            .unwrap()
            .get(0)
    };
    let verified = format!("{base}&sslmode=verify-full&sslrootcert={ca}&application_name=tls_full");
    let db = Db::open(&verified).unwrap();
    let (org, owner) = org(&db, "Sealed", "pro");
    assert_eq!(
        db.get_organization(&actor(&owner), &org)
            .unwrap()
            .organization
            .name,
        "Sealed"
    );
    assert!(
        encrypted("tls_full") > 0,
        "no TLS connection from the handle"
    );
    // `require` and the default `prefer` encrypt without knowing the authority.
    for (mode, app) in [("require", "tls_require"), ("prefer", "tls_prefer")] {
        let db = Db::open(format!("{base}&sslmode={mode}&application_name={app}")).unwrap();
        db.get_organization(&actor(&owner), &org).unwrap();
        assert!(encrypted(app) > 0, "{mode}: not encrypted");
    }
    // Checking against the web's roots, which do not know the throwaway authority: refused.
    for mode in ["verify-ca", "verify-full"] {
        let err = assert_err(
            Db::open(format!("{base}&sslmode={mode}")),
            "storage_error",
            None,
        );
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }
    assert_err(
        Db::open(format!(
            "{base}&sslmode=verify-full&sslrootcert=/no/such/ca.pem"
        )),
        "validation_error",
        Some("url"),
    );
}

/// orgdb's calls block their thread (on PostgreSQL, on a runtime of each connection's own).
/// A host with async code still drops its last handle wherever its last clone goes, which
/// may be a thread of its own tokio runtime: closing there must not panic (tokio refuses to
/// block, or to drop a runtime, on such a thread), and the close still stores what the
/// handle's lease admitted and gives the rest back.
#[test]
fn the_last_handle_may_drop_on_a_thread_of_an_async_runtime() {
    let Some((url, _server, db, org, owner)) = acme("pro") else {
        return;
    };
    monthly_limit(&db, &org, 1_000);
    let member = user(&db, "Async Member");
    db.add_member(&actor(&owner), &org, &member.id, "member")
        .unwrap();
    for _ in 0..5 {
        db.record_usage_buffered(&org, &UsageEvent::new(3)).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        drop(db);
    });
    let again = Db::open(&url).unwrap();
    let details = again.get_organization(&actor(&owner), &org).unwrap();
    assert_eq!(
        details.usage.monthly_requests, 15,
        "the lease's usage was stored"
    );
    // Its unused quota came back: another handle may use all of the rest.
    let rest = 1_000 - 15;
    let receipt = again.record_usage(&org, &UsageEvent::new(rest)).unwrap();
    assert_eq!(receipt.used, 1_000);
}
