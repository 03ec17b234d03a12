//! Imports across the two ways of numbering the audit change feed: the embedded backend has
//! one feed for the whole database, PostgreSQL one per organization plus one for events
//! outside any organization. A per-organization export (header `audit_feeds`) imported into
//! a single-feed database is renumbered 1, 2, 3… in export order; every other combination
//! keeps the numbers.
//!
//! The per-organization exports here are made from an embedded database's export, renumbered
//! and ordered as PostgreSQL's export writes them (the user feed, then each organization by
//! id), so these tests need no server; tests/postgres.rs moves a real PostgreSQL export.

mod common;

use std::collections::BTreeMap;

use common::*;
use orgdb::{Actor, Db, MemberRef};
use serde_json::{json, Value};

/// A database whose change feed interleaves two organizations and events without one.
fn source() -> (Db, [String; 2], orgdb::User) {
    let db = Db::in_memory().unwrap();
    let (acme, acme_owner) = org(&db, "Acme", "pro");
    let (beta, beta_owner) = org(&db, "Beta", "pro");
    for name in ["Ada", "Bob", "Cy"] {
        let u = user(&db, name);
        db.add_member(&actor(&acme_owner), &acme, &u.id, "member")
            .unwrap();
        db.add_member(&actor(&beta_owner), &beta, &u.id, "member")
            .unwrap();
        db.update_member_role(&actor(&acme_owner), &acme, &MemberRef::User(u.id), "admin")
            .unwrap();
    }
    (db, [acme, beta], acme_owner)
}

fn lines(db: &Db) -> Vec<Value> {
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(records: &[Value]) -> String {
    records
        .iter()
        .map(|r| r.to_string() + "\n")
        .collect::<String>()
}

fn events(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["type"] == "audit_event")
        .map(|r| r["data"].clone())
        .collect()
}

/// `records` as PostgreSQL would export them: each feed numbered from 1, the user feed first,
/// then the organizations by id; the header says so unless `marked` is false (an export
/// written before the header had the field).
fn per_organization(records: &[Value], marked: bool) -> Vec<Value> {
    let mut feeds: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for e in events(records) {
        let feed = e["organization_id"].as_str().map(str::to_owned);
        feeds.entry(feed).or_default().push(e);
    }
    let mut out: Vec<Value> = records
        .iter()
        .filter(|r| r["type"] != "audit_event")
        .cloned()
        .collect();
    if marked {
        out[0]["data"]["audit_feeds"] = json!("per_organization");
    }
    // `None` sorts first, as the user feed comes first in PostgreSQL's export.
    for (_, feed) in feeds {
        for (i, mut e) in feed.into_iter().enumerate() {
            e["seq"] = json!(i + 1);
            out.push(json!({"type": "audit_event", "data": e}));
        }
    }
    out
}

/// An event without its number, to compare one across a renumbering.
fn unnumbered(e: &Value) -> Value {
    let mut e = e.clone();
    e.as_object_mut().unwrap().remove("seq");
    e
}

#[test]
fn a_per_organization_export_is_renumbered_into_one_feed() {
    let (db, orgs, owner) = source();
    let original = lines(&db);
    let header = original[0].to_string();
    assert!(!header.contains("audit_feeds"), "one feed: {header}");
    let export = per_organization(&original, true);
    let exported = events(&export);
    let users = exported
        .iter()
        .filter(|e| e["organization_id"].is_null())
        .count();
    assert!(users >= 2, "events outside any organization: {users}");
    assert!(
        exported.iter().filter(|e| e["seq"] == 1).count() >= 3,
        "the numbers repeat across feeds"
    );

    for batch in [None, Some(3), Some(1)] {
        let copy = Db::in_memory().unwrap();
        copy.import_jsonl(text(&export).as_bytes(), batch, &mut |_| {})
            .unwrap();
        assert_sound(&copy);
        assert_eq!(
            copy.check().unwrap().audit_events,
            exported.len() as u64,
            "every event, batch {batch:?}"
        );
        // Numbered 1, 2, 3… in the order the export lists them.
        let imported = events(&lines(&copy));
        assert_eq!(imported.len(), exported.len());
        for (i, (got, sent)) in imported.iter().zip(&exported).enumerate() {
            assert_eq!(got["seq"], i + 1, "batch {batch:?}");
            assert_eq!(unnumbered(got), unnumbered(sent), "batch {batch:?}");
        }
        // Each organization's feed reads in its original order.
        for org in &orgs {
            let before: Vec<Value> = db
                .audit_log(&Actor::System, org, 0, 1000)
                .unwrap()
                .iter()
                .map(|e| unnumbered(&serde_json::to_value(e).unwrap()))
                .collect();
            let after = copy.audit_log(&Actor::System, org, 0, 1000).unwrap();
            assert!(after.windows(2).all(|w| w[0].seq < w[1].seq));
            let after: Vec<Value> = after
                .iter()
                .map(|e| unnumbered(&serde_json::to_value(e).unwrap()))
                .collect();
            assert_eq!(before, after, "{org}, batch {batch:?}");
        }
        // The counter continues after the last renumbered event.
        copy.update_member_role(
            &actor(&owner),
            &orgs[0],
            &MemberRef::User(user_id(&copy, "ada@example.com")),
            "viewer",
        )
        .unwrap();
        let newest = copy.audit_log(&Actor::System, &orgs[0], 0, 1000).unwrap();
        assert_eq!(newest.last().unwrap().seq, exported.len() as u64 + 1);
        assert_sound(&copy);
    }
}

fn user_id(db: &Db, email: &str) -> String {
    db.find_user_by_email(email).unwrap().id
}

#[test]
fn an_export_without_audit_feeds_keeps_its_numbers() {
    let (db, _, _) = source();
    let original = lines(&db);
    // A header as exports always wrote it: no `audit_feeds`, so one feed, numbers kept.
    let old = text(&original);
    assert!(old.starts_with(r#"{"type":"header","data":{"schema_version":5,"audit_seq":"#));
    let copy = Db::in_memory().unwrap();
    copy.import_jsonl(old.as_bytes(), Some(4), &mut |_| {})
        .unwrap();
    assert_sound(&copy);
    assert_eq!(lines(&copy), original);
    // Saying so explicitly is the same.
    let mut explicit = original.clone();
    explicit[0]["data"]["audit_feeds"] = json!("global");
    let copy = Db::in_memory().unwrap();
    copy.import_jsonl(text(&explicit).as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_eq!(lines(&copy), original);

    // Per-organization numbers under a header that does not say so are duplicates.
    let unmarked = per_organization(&original, false);
    let fresh = Db::in_memory().unwrap();
    let err = assert_err(
        fresh.import_jsonl(text(&unmarked).as_bytes(), None, &mut |_| {}),
        "validation_error",
        Some("line"),
    );
    assert!(
        err.details()["line"]
            .as_str()
            .unwrap()
            .contains("is duplicated"),
        "{err:?}"
    );
    assert_eq!(fresh.check().unwrap().users, 0, "nothing written");

    // An unknown way of numbering is refused, naming the line.
    let mut bad = original.clone();
    bad[0]["data"]["audit_feeds"] = json!("sharded");
    let err = assert_err(
        Db::in_memory()
            .unwrap()
            .import_jsonl(text(&bad).as_bytes(), None, &mut |_| {}),
        "validation_error",
        Some("line"),
    );
    assert!(err.to_string().contains("sharded"), "{err}");
}

#[test]
fn a_renumbered_feed_still_refuses_a_repeated_number() {
    let (db, _, _) = source();
    let mut export = per_organization(&lines(&db), true);
    // The last event again, under another id: its feed's number repeats.
    let mut again = export.last().unwrap().clone();
    again["data"]["id"] = json!("evt_again");
    export.push(again);
    let fresh = Db::in_memory().unwrap();
    let err = assert_err(
        fresh.import_jsonl(text(&export).as_bytes(), None, &mut |_| {}),
        "validation_error",
        Some("line"),
    );
    assert!(
        err.details()["line"]
            .as_str()
            .unwrap()
            .contains("duplicated or out of order"),
        "{err:?}"
    );
    assert_eq!(fresh.check().unwrap().audit_events, 0, "nothing written");
}

/// Into a database with a feed per organization (PostgreSQL, when the suite runs on it), a
/// per-organization export keeps every number.
#[test]
fn a_per_organization_export_keeps_its_numbers_on_postgres() {
    if !on_postgres() {
        return;
    }
    let (db, _, _) = source();
    let export = per_organization(&lines(&db), true);
    let pg = db_with(orgdb::Options::default());
    pg.import_jsonl(text(&export).as_bytes(), Some(5), &mut |_| {})
        .unwrap();
    assert_sound(&pg);
    let back = lines(&pg);
    assert_eq!(back.len(), export.len());
    // The header's `audit_seq` is PostgreSQL's highest number of any feed: compared apart.
    assert_eq!(back[0]["data"]["audit_feeds"], "per_organization");
    for v in &export[1..] {
        assert!(back.contains(v), "missing after the move: {v}");
    }
}
