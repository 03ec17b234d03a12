//! The system lists (`list_organizations`, `list_users`: every row for `Actor::System`, in
//! creation order, searched by prefix, paged by offset and cursor) and the projects of a user.

mod common;

use common::*;
use orgdb::{
    Actor, Db, ListQuery, MemberRef, NewOrganization, NewProject, NewUser, OrganizationPatch, Role,
    UserPatch,
};

/// Every id a list gives for `search`, by offset pages and by cursor pages of each size; both
/// must agree and be in id order. Returns them with the total.
fn walk(db: &Db, users: bool, search: Option<&str>) -> (u64, Vec<String>) {
    let fetch = |q: &ListQuery| -> (u64, Vec<String>, Option<String>) {
        if users {
            let p = db.list_users(&Actor::System, q).unwrap();
            let ids = p.data.into_iter().map(|u| u.id).collect();
            (p.pagination.total, ids, p.next_cursor)
        } else {
            let p = db.list_organizations(&Actor::System, q).unwrap();
            let ids = p.data.into_iter().map(|o| o.id).collect();
            (p.pagination.total, ids, p.next_cursor)
        }
    };
    let mut reference: Option<(u64, Vec<String>)> = None;
    for per_page in [1u32, 2, 3, 100] {
        let (mut by_offset, mut by_cursor) = (Vec::new(), Vec::new());
        let mut total = 0;
        for page in 1.. {
            let (t, ids, _) = fetch(&ListQuery {
                page: Some(page),
                per_page: Some(per_page),
                search: search.map(str::to_owned),
                cursor: None,
            });
            total = t;
            if ids.is_empty() {
                break;
            }
            by_offset.extend(ids);
        }
        let mut cursor = None;
        loop {
            let (t, ids, next) = fetch(&ListQuery {
                per_page: Some(per_page),
                search: search.map(str::to_owned),
                cursor,
                ..Default::default()
            });
            assert_eq!(t, total);
            by_cursor.extend(ids);
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(by_offset, by_cursor, "per page {per_page}");
        let mut sorted = by_offset.clone();
        sorted.sort();
        assert_eq!(by_offset, sorted, "id order");
        assert_eq!(by_offset.len() as u64, total);
        match &reference {
            Some(r) => assert_eq!(r, &(total, by_offset)),
            None => reference = Some((total, by_offset)),
        }
    }
    reference.unwrap()
}

fn create_org(db: &Db, owner: &str, name: &str) -> String {
    db.create_organization(
        owner,
        &NewOrganization {
            name: name.into(),
            ..Default::default()
        },
    )
    .unwrap()
    .organization
    .id
}

#[test]
fn organizations_list_and_search_follow_renames_and_deletions() {
    let (db, clock) = db();
    let ada = user(&db, "Ada");
    let mut ids = Vec::new();
    for name in [
        "Acme Rockets",
        "Globex",
        "Acme Anvils",
        "Initech",
        "Rocket Science",
    ] {
        clock.advance(chrono::TimeDelta::seconds(1));
        ids.push(create_org(&db, &ada.id, name));
    }
    let (total, all) = walk(&db, false, None);
    assert_eq!((total, all.clone()), (5, ids.clone()));
    // By the slug, the whole name, a later word; any case.
    assert_eq!(
        walk(&db, false, Some("ACME")).1,
        [ids[0].clone(), ids[2].clone()]
    );
    assert_eq!(walk(&db, false, Some("acme an")).1, [ids[2].clone()]);
    assert_eq!(
        walk(&db, false, Some("rocket")).1,
        [ids[0].clone(), ids[4].clone()],
        "a later word and a first word"
    );
    assert_eq!(walk(&db, false, Some("globex")).1, [ids[1].clone()]);
    assert_eq!(walk(&db, false, Some("zzz")), (0, vec![]));
    // A rename moves the organization between searches; a deletion removes it.
    db.update_organization(
        &Actor::System,
        &ids[1],
        &OrganizationPatch {
            name: Some("Umbrella".into()),
            slug: Some("umbrella".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(walk(&db, false, Some("globex")).0, 0);
    assert_eq!(walk(&db, false, Some("umb")).1, [ids[1].clone()]);
    db.delete_organization(&Actor::System, &ids[0]).unwrap();
    assert_eq!(walk(&db, false, Some("acme")).1, [ids[2].clone()]);
    assert_eq!(walk(&db, false, None).0, 4);
    assert_sound(&db);
}

#[test]
fn users_list_and_search_follow_changes_and_deletions() {
    let (db, clock) = db();
    let mut ids = Vec::new();
    for (email, name) in [
        ("ada@example.com", "Ada Lovelace"),
        ("alan@example.com", "Alan Turing"),
        ("grace@example.com", "Grace Hopper"),
    ] {
        clock.advance(chrono::TimeDelta::seconds(1));
        let u = db
            .create_user(&NewUser {
                email: email.into(),
                name: name.into(),
            })
            .unwrap();
        ids.push(u.id);
    }
    assert_eq!(walk(&db, true, None), (3, ids.clone()));
    assert_eq!(
        walk(&db, true, Some("a")).1,
        [ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(walk(&db, true, Some("hop")).1, [ids[2].clone()]);
    db.update_user(
        &ids[2],
        &UserPatch {
            email: Some("rear.admiral@example.com".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        walk(&db, true, Some("grace")).1,
        [ids[2].clone()],
        "the name stays"
    );
    assert_eq!(walk(&db, true, Some("rear")).1, [ids[2].clone()]);
    db.delete_user(&ids[1]).unwrap();
    assert_eq!(walk(&db, true, Some("a")).1, [ids[0].clone()]);
    assert_eq!(walk(&db, true, None).0, 2);
    assert_sound(&db);
}

#[test]
fn system_lists_are_the_hosts_and_validate_their_query() {
    let (db, _) = db();
    let ada = user(&db, "Ada");
    create_org(&db, &ada.id, "Acme");
    assert_err(
        db.list_organizations(&actor(&ada), &ListQuery::default()),
        "forbidden",
        None,
    );
    assert_err(
        db.list_users(&actor(&ada), &ListQuery::default()),
        "forbidden",
        None,
    );
    for (query, field) in [
        (
            ListQuery {
                per_page: Some(0),
                ..Default::default()
            },
            "per_page",
        ),
        (
            ListQuery {
                page: Some(0),
                ..Default::default()
            },
            "page",
        ),
        (
            ListQuery {
                search: Some("x".repeat(201)),
                ..Default::default()
            },
            "search",
        ),
        (
            ListQuery {
                cursor: Some("a\0b".into()),
                ..Default::default()
            },
            "cursor",
        ),
        (
            ListQuery {
                search: Some("ada\0user_".into()),
                ..Default::default()
            },
            "search",
        ),
    ] {
        assert_err(
            db.list_organizations(&Actor::System, &query),
            "validation_error",
            Some(field),
        );
        assert_err(
            db.list_users(&Actor::System, &query),
            "validation_error",
            Some(field),
        );
    }
    // A cursor past the end is an empty page, not an error.
    let past = db
        .list_users(
            &Actor::System,
            &ListQuery {
                cursor: Some("user_zzzz".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(past.data.is_empty() && past.next_cursor.is_none());
    assert_eq!(past.pagination.total, 1);
}

#[test]
fn the_projects_of_a_user() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let o = actor(&owner);
    let bob = user(&db, "Bob");
    let stranger = user(&db, "Stranger");
    db.add_member(&o, &org, &bob.id, Role::Member).unwrap();
    let mut projects = Vec::new();
    for name in ["Apollo", "Gemini", "Mercury"] {
        projects.push(
            db.create_project(
                &o,
                &org,
                &NewProject {
                    name: name.into(),
                    description: None,
                },
            )
            .unwrap(),
        );
    }
    db.add_project_member(&o, &org, &projects[0].id, &bob.id, Some(Role::Admin.into()))
        .unwrap();
    db.add_project_member(
        &o,
        &org,
        &projects[2].id,
        &bob.id,
        Some(Role::Viewer.into()),
    )
    .unwrap();
    let got = db
        .list_user_projects(&actor(&bob), &org, &MemberRef::User(bob.id.clone()))
        .unwrap();
    let seen: Vec<(String, Role)> = got
        .iter()
        .map(|p| (p.project.name.clone(), p.project_role))
        .collect();
    assert_eq!(
        seen,
        [
            ("Apollo".to_owned(), Role::Admin),
            ("Mercury".to_owned(), Role::Viewer)
        ]
    );
    let json = serde_json::to_value(&got[0]).unwrap();
    assert_eq!(json["name"], "Apollo", "the project's fields are flat");
    assert_eq!(json["project_role"], "admin");
    // By membership id too; nobody else's business; members only.
    let m = db
        .get_member(&o, &org, &MemberRef::User(bob.id.clone()))
        .unwrap();
    assert_eq!(
        db.list_user_projects(&o, &org, &MemberRef::Membership(m.membership_id))
            .unwrap()
            .len(),
        2
    );
    assert!(db
        .list_user_projects(&o, &org, &MemberRef::User(owner.id.clone()))
        .unwrap()
        .is_empty());
    assert_err(
        db.list_user_projects(&actor(&stranger), &org, &MemberRef::User(bob.id.clone())),
        "forbidden",
        None,
    );
    assert_err(
        db.list_user_projects(&o, &org, &MemberRef::User(stranger.id.clone())),
        "not_found",
        None,
    );
}
