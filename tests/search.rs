//! Member search: a case-insensitive prefix of the email, the whole name, or a later word of
//! the name, combined with the role and status filters, paged by offset and by cursor like
//! `list_members`, and kept in step with renames, email changes, role changes, deactivation,
//! removal and deletion.

mod common;

use common::*;
use orgdb::{Actor, Db, MemberQuery, MemberRef, NewUser, Role, User, UserPatch};

fn query(search: &str) -> MemberQuery {
    MemberQuery {
        search: Some(search.into()),
        per_page: Some(100),
        ..Default::default()
    }
}

fn found(db: &Db, org: &str, q: &MemberQuery) -> Vec<String> {
    db.list_members(&Actor::System, org, q)
        .unwrap()
        .data
        .into_iter()
        .map(|m| m.email)
        .collect()
}

fn named(db: &Db, email: &str, name: &str) -> User {
    db.create_user(&NewUser {
        email: email.into(),
        name: name.into(),
    })
    .unwrap()
}

#[test]
fn prefixes_of_email_name_and_later_words_case_insensitively() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let o = actor(&owner);
    let people = [
        ("ada@example.com", "Ada Lovelace", Role::Admin),
        ("alan@turing.org", "Alan Mathison Turing", Role::Member),
        ("grace@navy.mil", "Grace Hopper", Role::Member),
        ("emile@zola.fr", "Émile Zola", Role::Viewer),
        ("lovelace.fan@example.com", "Charles Babbage", Role::Viewer),
    ];
    for (email, name, role) in people {
        clock.advance(chrono::TimeDelta::seconds(1));
        let u = named(&db, email, name);
        db.add_member(&o, &org, &u.id, role).unwrap();
    }
    // The email, the whole name, a later word, any case; in list order (join time).
    assert_eq!(
        found(&db, &org, &query("ADA")),
        ["ada@example.com"],
        "email and first name"
    );
    assert_eq!(
        found(&db, &org, &query("love")),
        ["ada@example.com", "lovelace.fan@example.com"],
        "a later word of a name, and an email"
    );
    assert_eq!(
        found(&db, &org, &query("  alan   MATH ")),
        ["alan@turing.org"]
    );
    assert_eq!(found(&db, &org, &query("turing")), ["alan@turing.org"]);
    assert_eq!(found(&db, &org, &query("émile z")), ["emile@zola.fr"]);
    assert_eq!(found(&db, &org, &query("ÉMILE")), ["emile@zola.fr"]);
    assert!(
        found(&db, &org, &query("athison")).is_empty(),
        "prefixes only"
    );
    assert!(found(&db, &org, &query("zz")).is_empty());
    // A blank search is no search.
    assert_eq!(found(&db, &org, &query("   ")).len(), 6);
    // Combined with the role filter; the total counts every hit.
    let page = db
        .list_members(
            &Actor::System,
            &org,
            &MemberQuery {
                search: Some("a".into()),
                role: Some("member".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.pagination.total, 1);
    assert_eq!(page.data[0].email, "alan@turing.org");
    // A viewer may search; a stranger may not.
    let viewer = db.find_user_by_email("emile@zola.fr").unwrap();
    assert_eq!(
        db.list_members(&actor(&viewer), &org, &query("grace"))
            .unwrap()
            .data
            .len(),
        1
    );
    let stranger = user(&db, "Stranger");
    assert_err(
        db.list_members(&actor(&stranger), &org, &query("grace")),
        "forbidden",
        None,
    );
    assert_err(
        db.list_members(&Actor::System, &org, &query(&"x".repeat(201))),
        "validation_error",
        Some("search"),
    );
    assert_err(
        db.list_members(&Actor::System, &org, &query("ada@\0user_")),
        "validation_error",
        Some("search"),
    );
    // Every prefix of a word finds it, in any script and case (no final-sigma rule).
    let odysseus = named(&db, "o@ithaca.gr", "ΟΔΥΣΣΕΥΣ Λαέρτιος");
    db.add_member(&o, &org, &odysseus.id, Role::Viewer).unwrap();
    for prefix in ["ΟΔΥ", "ΟΔΥΣ", "ΟΔΥΣΣ", "οδυσσευσ", "λαέρ", "ΛΑΈΡΤΙΟΣ"]
    {
        assert_eq!(
            found(&db, &org, &query(prefix)),
            ["o@ithaca.gr"],
            "{prefix}"
        );
    }
    assert_sound(&db);
}

/// Every page size, by offset and by cursor, with each status filter, gives the reference
/// order: the hits among the active members by join time, then among the deactivated ones.
#[test]
fn search_pages_like_the_list() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Big", "enterprise");
    let o = actor(&owner);
    let mut reference = Vec::new();
    for i in 0..30 {
        clock.advance(chrono::TimeDelta::seconds(1));
        let first = if i % 3 == 0 { "Sam" } else { "Kim" };
        let u = named(
            &db,
            &format!("p{i:02}@example.com"),
            &format!("{first} P{i:02}"),
        );
        db.add_member(&o, &org, &u.id, Role::Member).unwrap();
        let off = i % 4 == 1;
        if off {
            db.deactivate_member(&o, &org, &MemberRef::User(u.id.clone()))
                .unwrap();
        }
        if first == "Sam" {
            reference.push((off, u.email));
        }
    }
    for status in ["active", "deactivated", "all"] {
        let part = |off: bool| {
            reference
                .iter()
                .filter(move |(o, _)| *o == off)
                .map(|(_, e)| e.clone())
        };
        let expected: Vec<String> = match status {
            "active" => part(false).collect(),
            "deactivated" => part(true).collect(),
            _ => part(false).chain(part(true)).collect(),
        };
        for per_page in [1u32, 2, 3, 7, 100] {
            let q = |page: Option<u32>, cursor: Option<String>| MemberQuery {
                page,
                per_page: Some(per_page),
                status: Some(status.into()),
                search: Some("sam".into()),
                cursor,
                ..Default::default()
            };
            let (mut by_offset, mut by_cursor) = (Vec::new(), Vec::new());
            for page in 1.. {
                let got = db
                    .list_members(&Actor::System, &org, &q(Some(page), None))
                    .unwrap();
                assert_eq!(got.pagination.total, expected.len() as u64);
                if got.data.is_empty() {
                    break;
                }
                by_offset.extend(got.data.into_iter().map(|m| m.email));
            }
            let mut cursor = None;
            loop {
                let got = db
                    .list_members(&Actor::System, &org, &q(None, cursor))
                    .unwrap();
                by_cursor.extend(got.data.into_iter().map(|m| m.email));
                cursor = got.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(by_offset, expected, "{status} per page {per_page}, offset");
            assert_eq!(by_cursor, expected, "{status} per page {per_page}, cursor");
        }
    }
}

#[test]
fn search_follows_renames_roles_deactivation_removal_and_deletion() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let (other, _) = org_of(&db, &owner);
    let o = actor(&owner);
    let u = named(&db, "bob@example.com", "Bob Builder");
    db.add_member(&o, &org, &u.id, Role::Member).unwrap();
    db.add_member(&o, &other, &u.id, Role::Member).unwrap();
    let who = MemberRef::User(u.id.clone());

    // Renamed and re-addressed: found by the new words only, in both organizations.
    db.update_user(
        &u.id,
        &UserPatch {
            email: Some("robert@example.com".into()),
            name: Some("Robert Fixer".into()),
        },
    )
    .unwrap();
    for org in [&org, &other] {
        assert!(found(&db, org, &query("bob")).is_empty());
        assert!(found(&db, org, &query("build")).is_empty());
        assert_eq!(found(&db, org, &query("fix")), ["robert@example.com"]);
        assert_eq!(found(&db, org, &query("rob")), ["robert@example.com"]);
    }
    // A role change moves the hit between role filters.
    db.update_member_role(&o, &org, &who, Role::Admin).unwrap();
    let admins = MemberQuery {
        role: Some("admin".into()),
        ..query("rob")
    };
    assert_eq!(found(&db, &org, &admins).len(), 1);
    // Deactivated: found under `deactivated` and `all`, not by default.
    db.deactivate_member(&o, &org, &who).unwrap();
    assert!(found(&db, &org, &query("rob")).is_empty());
    let deactivated = MemberQuery {
        status: Some("deactivated".into()),
        ..query("rob")
    };
    let hits = db.list_members(&Actor::System, &org, &deactivated).unwrap();
    assert_eq!(hits.data.len(), 1);
    assert_eq!(hits.data[0].status, orgdb::MemberStatus::Deactivated);
    assert_sound(&db);
    // Removed from one organization, deleted as a user: gone everywhere.
    db.remove_member(&o, &org, &who).unwrap();
    assert!(found(
        &db,
        &org,
        &MemberQuery {
            status: Some("all".into()),
            ..query("rob")
        }
    )
    .is_empty());
    assert_eq!(found(&db, &other, &query("rob")).len(), 1);
    db.delete_user(&u.id).unwrap();
    assert!(found(&db, &other, &query("rob")).is_empty());
    assert_sound(&db);
}

/// A second organization with the same owner.
fn org_of(db: &Db, owner: &User) -> (String, User) {
    let created = db
        .create_organization(
            &owner.id,
            &orgdb::NewOrganization {
                name: "Other".into(),
                plan: Some("enterprise".into()),
                ..Default::default()
            },
        )
        .unwrap();
    (created.organization.id, owner.clone())
}

#[test]
fn export_and_import_keep_members_searchable() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let u = named(&db, "zed@example.com", "Zed Shaw");
    db.add_member(&actor(&owner), &org, &u.id, Role::Member)
        .unwrap();
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let copy = db_with(orgdb::Options::default());
    copy.import_jsonl(out.as_slice(), None, &mut |_| {})
        .unwrap();
    assert_eq!(found(&copy, &org, &query("shaw")), ["zed@example.com"]);
    assert_sound(&copy);
}
