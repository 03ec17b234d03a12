//! Maintenance: export / import round trip, import refusals, backup of an open database,
//! compaction, and `check` catching a broken index.

mod common;

use std::io::BufReader;

use chrono::TimeDelta;
use common::*;
use orgdb::{
    Actor, Db, MemberQuery, NewInvitation, NewProject, ResourceKind, UsageEvent, UsageQuery,
};

/// A database with a bit of everything: several organizations, members, projects,
/// resources (one removed), invitations in every state, usage over days, audit history.
fn populated() -> Db {
    let (db, clock) = db();
    for o in 0..12 {
        let (org, owner) = org(
            &db,
            &format!("Org {o}"),
            if o % 2 == 0 { "team" } else { "enterprise" },
        );
        let a = actor(&owner);
        let project = db
            .create_project(
                &a,
                &org,
                &NewProject {
                    name: format!("P{o}"),
                    description: None,
                },
            )
            .unwrap();
        for m in 0..20 {
            let u = user(&db, &format!("Member {o} {m}"));
            db.add_member(&a, &org, &u.id, if m % 4 == 0 { "admin" } else { "member" })
                .unwrap();
            if m % 3 == 0 {
                db.add_project_member(
                    &a,
                    &org,
                    &project.id,
                    &u.id,
                    Some(orgdb::Role::Viewer.into()),
                )
                .unwrap();
            }
        }
        let mcp = db
            .register_resource(&a, &org, ResourceKind::Mcp, "Weather")
            .unwrap();
        let gone = db
            .register_resource(&a, &org, ResourceKind::Mcp, "Old")
            .unwrap();
        for i in 0..3 {
            db.create_invitation(
                &a,
                &org,
                &NewInvitation {
                    email: format!("inv{o}-{i}@example.com"),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        for d in 0..5 {
            db.record_usage(
                &org,
                &UsageEvent::new(10 + d)
                    .resource(&mcp.id)
                    .key(format!("k{o}-{d}")),
            )
            .unwrap();
            db.record_usage(&org, &UsageEvent::new(3).resource(&gone.id))
                .unwrap();
            db.record_usage(&org, &UsageEvent::new(1)).unwrap();
            clock.advance(TimeDelta::hours(7));
        }
        db.remove_resource(&a, &org, &gone.id).unwrap();
    }
    clock.advance(TimeDelta::days(8)); // some invitations expire (status derived, not stored)
    db
}

fn export(db: &Db) -> Vec<u8> {
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    out
}

#[test]
fn export_then_import_gives_an_identical_export() {
    let db = populated();
    let first = export(&db);
    let lines = first
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(lines > 1_000, "{lines} records");
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.starts_with(r#"{"type":"header""#));
    assert!(!text.contains("token"), "no token or hash is exported");

    for batch in [None, Some(100)] {
        let copy = common::db_with(orgdb::Options::default());
        let mut seen = 0;
        let report = copy
            .import_jsonl(BufReader::new(&first[..]), batch, &mut |n| seen = n)
            .unwrap();
        assert_eq!(report.records as usize, lines);
        assert_eq!(seen as usize, lines);
        if batch.is_some() {
            assert!(report.transactions > 10);
        }
        assert_eq!(export(&copy), first, "round trip with batch {batch:?}");
        assert_sound(&copy);
        // The copy works: counts and usage read the same, and new audit events continue the
        // sequence.
        let org = db
            .list_organizations_for_user(
                &db.find_user_by_email("org.0.owner@example.com").unwrap().id,
            )
            .unwrap()[0]
            .organization
            .id
            .clone();
        let q = UsageQuery {
            start_date: chrono::NaiveDate::from_ymd_opt(2024, 1, 15),
            ..Default::default()
        };
        let report = db.usage_report(&Actor::System, &org, &q).unwrap();
        assert!(report.requests.total > 0);
        assert_eq!(copy.usage_report(&Actor::System, &org, &q).unwrap(), report);
        assert_eq!(
            copy.list_members(&Actor::System, &org, &MemberQuery::default())
                .unwrap(),
            db.list_members(&Actor::System, &org, &MemberQuery::default())
                .unwrap()
        );
    }
}

#[test]
fn import_refuses_bad_input_and_changes_nothing() {
    let db = populated();
    let good = export(&db);
    // Not into a database with data.
    assert_err(
        db.import_jsonl(BufReader::new(&good[..]), None, &mut |_| {}),
        "conflict",
        None,
    );

    let text = String::from_utf8(good).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".to_owned(), "line"),
        (lines[1..].join("\n"), "line"), // no header first
    ];
    for (input, field) in cases {
        let fresh = common::db_with(orgdb::Options::default());
        let before = fresh.stats().unwrap();
        assert_err(
            fresh.import_jsonl(BufReader::new(input.as_bytes()), None, &mut |_| {}),
            "validation_error",
            Some(field),
        );
        assert_eq!(fresh.stats().unwrap(), before, "nothing written");
    }
    // A membership whose user was left out is refused and names the line.
    let without_users: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with(r#"{"type":"user""#))
        .collect();
    let fresh = common::db_with(orgdb::Options::default());
    let err = assert_err(
        fresh.import_jsonl(
            BufReader::new(without_users.join("\n").as_bytes()),
            None,
            &mut |_| {},
        ),
        "validation_error",
        Some("line"),
    );
    assert!(
        err.details()["line"]
            .as_str()
            .unwrap()
            .contains("membership"),
        "{err:?}"
    );
    // A line that is not UTF-8 is the input's fault: a validation error naming the line.
    let not_utf8 = [
        lines[0].as_bytes(),
        b"\n{\"type\":\"user\",\"data\":\"\xff\"}\n",
    ]
    .concat();
    let fresh = common::db_with(orgdb::Options::default());
    let err = assert_err(
        fresh.import_jsonl(BufReader::new(&not_utf8[..]), None, &mut |_| {}),
        "validation_error",
        Some("line"),
    );
    assert_eq!(err.details()["line"], "2: not valid UTF-8", "{err:?}");
    assert_eq!(
        fresh.stats().unwrap(),
        common::db_with(orgdb::Options::default()).stats().unwrap()
    );
    // A newer schema is refused.
    let newer = text.replacen(r#""schema_version":5"#, r#""schema_version":99"#, 1);
    assert_err(
        common::db_with(orgdb::Options::default()).import_jsonl(
            BufReader::new(newer.as_bytes()),
            None,
            &mut |_| {},
        ),
        "incompatible_version",
        None,
    );
}

#[test]
fn an_import_stopped_by_its_progress_callback_returns_its_error() {
    let db = populated();
    let good = export(&db);
    let stop = |at: u64| {
        move |n: u64| {
            if n == at {
                Err(orgdb::Error::Conflict {
                    message: "stopped by the operator".into(),
                    details: Default::default(),
                })
            } else {
                Ok(())
            }
        }
    };
    // One transaction: nothing is written.
    let fresh = common::db_with(orgdb::Options::default());
    let empty = fresh.stats().unwrap();
    let err = fresh
        .import_jsonl_with(BufReader::new(&good[..]), None, &mut stop(3))
        .unwrap_err();
    assert_eq!(err.message(), "stopped by the operator");
    assert_eq!(fresh.stats().unwrap(), empty);
    // Batches of 2: the first batch (header + one user) stays, the second is rolled back.
    let fresh = common::db_with(orgdb::Options::default());
    let err = fresh
        .import_jsonl_with(BufReader::new(&good[..]), Some(2), &mut stop(4))
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    let users = fresh.stats().unwrap();
    let users = users.iter().find(|(t, _)| *t == "users").unwrap().1;
    assert_eq!(users, 1, "records 1-2 committed, 3-4 rolled back");
}

/// A panic in the host's own callback is the host's panic, not damage: it reaches the caller
/// as a panic (never `corrupted`), the import's transaction is rolled back, and the database
/// stays usable. (Panics inside the storage engine are `corrupted`: tests/corruption.rs.)
#[test]
fn a_panicking_progress_callback_is_a_panic_not_corruption() {
    let db = populated();
    let good = export(&db);
    let fresh = common::db_with(orgdb::Options::default());
    let empty = fresh.stats().unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fresh.import_jsonl_with(BufReader::new(&good[..]), None, &mut |n| {
            assert!(n < 3, "the host's own bug");
            Ok(())
        })
    }));
    let payload = outcome.expect_err("the callback's panic reaches the caller");
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(text.contains("the host's own bug"), "{text}");
    assert_eq!(fresh.stats().unwrap(), empty, "rolled back");
    fresh
        .import_jsonl(BufReader::new(&good[..]), None, &mut |_| {})
        .unwrap();
    assert!(fresh.check().unwrap().is_ok());
}

#[test]
fn backup_of_an_open_database_opens_and_matches() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("live.redb")).unwrap();
    let (org, owner) = org(&db, "Acme", "pro");
    let bob = user(&db, "Bob");
    db.add_member(&actor(&owner), &org, &bob.id, "member")
        .unwrap();
    db.record_usage_buffered(&org, &UsageEvent::new(42))
        .unwrap();
    let target = dir.path().join("copy.redb");
    db.backup_to(&target).unwrap();
    assert_err(db.backup_to(&target), "validation_error", Some("path"));
    // The live database keeps working after the backup.
    db.record_usage(&org, &UsageEvent::new(1)).unwrap();
    let copy = Db::open(&target).unwrap();
    let d = copy.get_organization(&actor(&owner), &org).unwrap();
    assert_eq!(
        d.usage.monthly_requests, 42,
        "as of the backup, buffered usage included"
    );
    assert_eq!(d.usage.team_members, 2);
    assert_sound(&copy);
}

#[test]
fn compact_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    let db = Db::open(&path).unwrap();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let mut users = Vec::new();
    for i in 0..200 {
        let u = user(&db, &format!("U{i}"));
        db.add_member(&actor(&owner), &org, &u.id, "member")
            .unwrap();
        users.push(u);
    }
    for u in &users[..150] {
        db.remove_member(&actor(&owner), &org, &u.id.as_str().into())
            .unwrap();
    }
    let before = export(&db);
    db.compact().unwrap();
    assert_eq!(export(&db), before);
    assert_sound(&db);
}

#[test]
fn check_reports_a_broken_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.redb");
    let org = {
        let db = Db::open(&path).unwrap();
        let (org, _) = org(&db, "Acme", "pro");
        assert_sound(&db);
        org
    };
    {
        // Remove the slug index entry behind orgdb's back.
        let raw = redb::Database::open(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("org_slug");
            let mut t = txn.open_table(def).unwrap();
            assert!(t.remove(&b"acme\0"[..]).unwrap().is_some());
        }
        txn.commit().unwrap();
    }
    let db = Db::open(&path).unwrap();
    let report = db.check().unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("org_slug") && p.contains("missing")),
        "{:?}",
        report.problems
    );
    assert_eq!(report.organizations, 1);
    // Reading by id still works; by slug it no longer resolves.
    db.get_organization(&Actor::System, &org).unwrap();
    assert_err(
        db.get_organization_by_slug(&Actor::System, "acme"),
        "not_found",
        None,
    );
}
