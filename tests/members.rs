//! Members: paging, role filter, cursor, get, add, role changes, removal, leave, transfer,
//! and users (touch, delete).

mod common;

use common::*;
use orgdb::{Actor, MemberQuery, MemberRef, NewInvitation, Role, UserPatch};

fn query(page: u32, per_page: u32, role: Option<&str>) -> MemberQuery {
    MemberQuery {
        page: Some(page),
        per_page: Some(per_page),
        role: role.map(str::to_owned),
        status: None,
        search: None,
        cursor: None,
    }
}

#[test]
fn paging_filters_and_cursors_agree() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Big", "enterprise");
    let a = actor(&owner);
    let mut expected = vec![owner.id.clone()];
    for i in 0..45 {
        clock.advance(chrono::TimeDelta::seconds(1));
        let u = user(&db, &format!("User {i}"));
        let role = if i % 3 == 0 { "admin" } else { "member" };
        db.add_member(&a, &org, &u.id, role).unwrap();
        expected.push(u.id);
    }

    let first = db.list_members(&a, &org, &MemberQuery::default()).unwrap();
    assert_eq!(first.pagination.page, 1);
    assert_eq!(first.pagination.per_page, 20);
    assert_eq!(first.pagination.total, 46);
    assert_eq!(first.pagination.total_pages, 3);
    assert_eq!(first.data.len(), 20);

    // Offset pages, in joined_at order.
    let mut by_offset = Vec::new();
    for page in 1..=3 {
        let p = db.list_members(&a, &org, &query(page, 20, None)).unwrap();
        by_offset.extend(p.data.into_iter().map(|m| m.id));
    }
    assert_eq!(by_offset, expected);
    assert!(db
        .list_members(&a, &org, &query(4, 20, None))
        .unwrap()
        .data
        .is_empty());

    // Keyset cursor walk gives the same order and ends with no cursor.
    let mut by_cursor = Vec::new();
    let mut q = query(1, 7, None);
    loop {
        let p = db.list_members(&a, &org, &q).unwrap();
        by_cursor.extend(p.data.iter().map(|m| m.id.clone()));
        match p.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(by_cursor, expected);

    // Role filter, case-insensitive; total counts only matches.
    let admins = db
        .list_members(&a, &org, &query(1, 100, Some("ADMIN")))
        .unwrap();
    assert_eq!(admins.pagination.total, 15);
    assert!(admins.data.iter().all(|m| m.role == Role::Admin));
    let owners = db
        .list_members(&a, &org, &query(1, 100, Some("owner")))
        .unwrap();
    assert_eq!(owners.data.len(), 1);
    assert_err(
        db.list_members(&a, &org, &query(1, 100, Some("root"))),
        "validation_error",
        Some("role"),
    );
    let bad_cursor = MemberQuery {
        cursor: Some("garbage".into()),
        ..Default::default()
    };
    assert_err(
        db.list_members(&a, &org, &bad_cursor),
        "validation_error",
        Some("cursor"),
    );
}

#[test]
fn a_member_list_answers_who_may_see_it_before_what_was_asked() {
    // The organization, the actor's role and the page are read together (one statement on
    // PostgreSQL): the page never reaches an actor who may not see it, and the errors come
    // in the order of every read: not_found, forbidden, then the input's.
    let (db, _) = db();
    let (org, owner) = org(&db, "Listed", "enterprise");
    let member = user(&db, "Member");
    db.add_member(&actor(&owner), &org, &member.id, "viewer")
        .unwrap();
    let stranger = actor(&user(&db, "Stranger"));
    let bad = MemberQuery {
        cursor: Some("not-a-cursor".into()),
        ..MemberQuery::default()
    };
    for q in [&MemberQuery::default(), &query(2, 1, Some("viewer")), &bad] {
        assert_err(db.list_members(&stranger, &org, q), "forbidden", None);
        assert_err(
            db.list_members(&stranger, "org_missing", q),
            "not_found",
            None,
        );
    }
    assert_err(
        db.list_members(&actor(&member), &org, &bad),
        "validation_error",
        Some("cursor"),
    );
    // A viewer and the system see the same page; past the end, none, with the total.
    let seen = db
        .list_members(&actor(&member), &org, &query(1, 1, None))
        .unwrap();
    let system = db
        .list_members(&Actor::System, &org, &query(1, 1, None))
        .unwrap();
    assert_eq!(seen.data, system.data);
    assert_eq!(seen.data[0].id, owner.id);
    assert!(seen.next_cursor.is_some());
    let past = db
        .list_members(&Actor::System, &org, &query(3, 1, None))
        .unwrap();
    assert!(past.data.is_empty());
    assert_eq!(past.pagination.total, 2);
    let viewers = db
        .list_members(&actor(&member), &org, &query(1, 5, Some("viewer")))
        .unwrap();
    assert_eq!(viewers.data.len(), 1);
    assert_eq!(viewers.data[0].id, member.id);
}

#[test]
fn get_member_by_user_or_membership_id_and_scoping() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let (other, other_owner) = common::org(&db, "Other", "pro");
    let a = actor(&owner);
    let by_user = db
        .get_member(&a, &org, &MemberRef::User(owner.id.clone()))
        .unwrap();
    let by_mem = db
        .get_member(
            &a,
            &org,
            &MemberRef::Membership(by_user.membership_id.clone()),
        )
        .unwrap();
    assert_eq!(by_user, by_mem);
    assert_eq!(by_user.email, owner.email);
    assert_eq!(by_user.last_active, None);
    // A membership of another organization is not found here.
    let foreign = db
        .get_member(
            &actor(&other_owner),
            &other,
            &MemberRef::User(other_owner.id.clone()),
        )
        .unwrap();
    assert_err(
        db.get_member(&a, &org, &MemberRef::Membership(foreign.membership_id)),
        "not_found",
        None,
    );
    assert_err(
        db.get_member(&a, &org, &"user_nobody".into()),
        "not_found",
        None,
    );

    db.touch_user(&owner.id).unwrap();
    let touched = db.get_member(&a, &org, &owner.id.as_str().into()).unwrap();
    assert_eq!(touched.last_active, Some(db.now()));
}

#[test]
fn add_member_checks_user_duplicates_and_seats() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Small", "free"); // team_members 3
    let a = actor(&owner);
    let b = user(&db, "B");
    let c = user(&db, "C");
    let d = user(&db, "D");
    assert_err(
        db.add_member(&a, &org, "user_nobody", Role::Member),
        "not_found",
        None,
    );
    db.add_member(&a, &org, &b.id, Role::Member).unwrap();
    assert_err(
        db.add_member(&a, &org, &b.id, Role::Member),
        "conflict",
        Some("user_id"),
    );
    db.add_member(&a, &org, &c.id, Role::Viewer).unwrap();
    let err = assert_err(
        db.add_member(&a, &org, &d.id, Role::Member),
        "quota_exceeded",
        Some("limit"),
    );
    let details = err.details();
    assert_eq!(details["quota"], "team_members");
    assert_eq!(details["limit"], 3);
    assert_eq!(details["used"], 3);
    assert_eq!(details["requested"], 1);
    assert_eq!(err.http_status(), 403);
    // System is not exempt from seats.
    assert_err(
        db.add_member(&Actor::System, &org, &d.id, Role::Member),
        "quota_exceeded",
        None,
    );
    assert_sound(&db);
}

#[test]
fn adding_an_invited_user_accepts_the_invitation_and_counts_once() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Small", "free");
    let a = actor(&owner);
    let b = user(&db, "B");
    let c = user(&db, "C");
    let inv_b = db
        .create_invitation(
            &a,
            &org,
            &NewInvitation {
                email: b.email.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    db.create_invitation(
        &a,
        &org,
        &NewInvitation {
            email: c.email.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    // 1 member + 2 pending = 3 = limit: B's own pending seat turns into B's membership.
    db.add_member(&a, &org, &b.id, Role::Member).unwrap();
    let inv = db.get_invitation(&a, &org, &inv_b.invite_id).unwrap();
    assert_eq!(inv.status, orgdb::InvitationStatus::Accepted);
    assert_eq!(db.get_organization(&a, &org).unwrap().usage.team_members, 3);
    // A later accept by the same user is a safe retry: the same membership comes back.
    let again = db.accept_invitation(&inv_b.token, &b.id).unwrap();
    assert_eq!(again.user_id, b.id);
    assert_eq!(again.role, Role::Member);
    assert_sound(&db);
}

#[test]
fn role_changes_respect_owners_and_escalation() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let admin = user(&db, "Admin");
    let member = user(&db, "Member");
    db.add_member(&a, &org, &admin.id, Role::Admin).unwrap();
    let m = db.add_member(&a, &org, &member.id, Role::Member).unwrap();
    clock.advance(chrono::TimeDelta::minutes(5));

    let changed = db
        .update_member_role(
            &actor(&admin),
            &org,
            &MemberRef::Membership(m.membership_id.clone()),
            "VIEWER",
        )
        .unwrap();
    assert_eq!(changed.role, Role::Viewer);
    assert_eq!(changed.updated_at, db.now());
    assert!(changed.updated_at > changed.joined_at);
    assert_err(
        db.update_member_role(&actor(&admin), &org, &member.id.as_str().into(), "owner"),
        "forbidden",
        None,
    );
    assert_err(
        db.update_member_role(&actor(&admin), &org, &owner.id.as_str().into(), "member"),
        "forbidden",
        None,
    );
    // The last owner cannot step down, even for the system.
    assert_err(
        db.update_member_role(&a, &org, &owner.id.as_str().into(), "admin"),
        "conflict",
        None,
    );
    assert_err(
        db.update_member_role(&Actor::System, &org, &owner.id.as_str().into(), "admin"),
        "conflict",
        None,
    );
    // An owner may promote another owner, then step down.
    db.update_member_role(&a, &org, &admin.id.as_str().into(), "owner")
        .unwrap();
    db.update_member_role(&a, &org, &owner.id.as_str().into(), "member")
        .unwrap();
    let owners = db
        .list_members(
            &actor(&admin),
            &org,
            &MemberQuery {
                role: Some("owner".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        owners
            .data
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        [admin.id.as_str()]
    );

    let log = db.audit_log(&actor(&admin), &org, 0, 100).unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.action, "member.role_changed");
    assert_eq!(last.actor, owner.id);
    assert_eq!(last.details["role"]["before"], "owner");
    assert_eq!(last.details["role"]["after"], "member");
    assert_sound(&db);
}

#[test]
fn remove_leave_and_reruns() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let admin = user(&db, "Admin");
    let member = user(&db, "Member");
    db.add_member(&a, &org, &admin.id, Role::Admin).unwrap();
    db.add_member(&a, &org, &member.id, Role::Member).unwrap();

    assert_err(
        db.remove_member(&actor(&admin), &org, &owner.id.as_str().into()),
        "forbidden",
        None,
    );
    let removed = db
        .remove_member(&actor(&admin), &org, &member.id.as_str().into())
        .unwrap();
    assert!(removed.removed);
    assert_eq!(removed.user_id, member.id);
    assert_err(
        db.remove_member(&actor(&admin), &org, &member.id.as_str().into()),
        "not_found",
        None,
    );

    assert_err(db.leave_organization(&owner.id, &org), "conflict", None);
    assert_err(
        db.remove_member(&Actor::System, &org, &owner.id.as_str().into()),
        "conflict",
        None,
    );
    db.leave_organization(&admin.id, &org).unwrap();
    assert_err(db.leave_organization(&admin.id, &org), "not_found", None);
    assert_err(
        db.leave_organization(&admin.id, "org_nothing"),
        "not_found",
        None,
    );
    assert_eq!(
        db.list_members(&a, &org, &MemberQuery::default())
            .unwrap()
            .pagination
            .total,
        1
    );
    assert_sound(&db);
}

#[test]
fn transfer_ownership_rules() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    let stranger = user(&db, "Stranger");
    db.add_member(&a, &org, &bob.id, Role::Member).unwrap();

    assert_err(
        db.transfer_ownership(&actor(&bob), &org, &bob.id),
        "forbidden",
        None,
    );
    assert_err(
        db.transfer_ownership(&a, &org, &stranger.id),
        "not_found",
        None,
    );
    assert_err(
        db.transfer_ownership(&a, &org, &owner.id),
        "validation_error",
        None,
    );
    let new_owner = db.transfer_ownership(&a, &org, &bob.id).unwrap();
    assert_eq!(new_owner.role, Role::Owner);
    let me = db
        .get_member(&actor(&bob), &org, &owner.id.as_str().into())
        .unwrap();
    assert_eq!(me.role, Role::Admin, "the old owner becomes admin");
    // Audited like a role change: the event targets the new owner and carries both changes.
    let log = db.audit_log(&Actor::System, &org, 0, 1000).unwrap();
    let event = log.last().unwrap();
    assert_eq!(event.action, "organization.ownership_transferred");
    assert_eq!(event.target, new_owner.membership_id);
    let d = &event.details;
    assert_eq!(d["user_id"], bob.id.as_str());
    assert_eq!(d["role"]["before"], "member");
    assert_eq!(d["role"]["after"], "owner");
    assert_eq!(d["previous_owner"]["user_id"], owner.id.as_str());
    assert_eq!(d["previous_owner"]["role"]["before"], "owner");
    assert_eq!(d["previous_owner"]["role"]["after"], "admin");
    // The former owner is an admin now: transferring is no longer theirs to do.
    assert_err(db.transfer_ownership(&a, &org, &bob.id), "forbidden", None);
    db.update_member_role(&actor(&bob), &org, &owner.id.as_str().into(), "owner")
        .unwrap();
    assert_err(
        db.transfer_ownership(&actor(&bob), &org, &owner.id),
        "conflict",
        None,
    );
    assert_sound(&db);
}

/// A member whose email changes to an address with a pending invitation in their organization
/// is not counted twice: the invitation becomes accepted. And `check()` notices a member that
/// holds a pending invitation in the same organization however it arose (here: an import).
#[test]
fn changing_email_to_an_invited_address_counts_nobody_twice() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&a, &org, &bob.id, Role::Member).unwrap();
    let inv = db
        .create_invitation(
            &a,
            &org,
            &NewInvitation {
                email: "bob.work@example.com".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .invitation;
    let seats = |db: &orgdb::Db| db.get_organization(&a, &org).unwrap().usage.team_members;
    assert_eq!(seats(&db), 3, "two members and one pending invitation");

    // The export of this moment, doctored below into the state the fix prevents.
    let mut before = Vec::new();
    db.export_jsonl(&mut before).unwrap();

    db.update_user(
        &bob.id,
        &UserPatch {
            email: Some("Bob.Work@example.com".into()),
            name: None,
        },
    )
    .unwrap();
    assert_eq!(seats(&db), 2, "bob is counted once");
    let now = db.get_invitation(&a, &org, &inv.id).unwrap();
    assert_eq!(now.status, orgdb::InvitationStatus::Accepted);
    let log = db.audit_log(&a, &org, 0, 1000).unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == "invitation.accepted" && e.target == inv.id));
    assert_sound(&db);

    // The same state without the fix: bob's user row carries the invited address while the
    // invitation stays pending. check() (run by import) reports it.
    let text = String::from_utf8(before)
        .unwrap()
        .replace("\"bob@example.com\"", "\"bob.work@example.com\"");
    let (fresh, _) = common::db();
    let err = assert_err(
        fresh.import_jsonl(std::io::Cursor::new(text), None, &mut |_| {}),
        "validation_error",
        Some("import"),
    );
    assert!(
        err.details()["import"]
            .as_str()
            .unwrap()
            .contains("already a member"),
        "{err:?}"
    );
}

#[test]
fn users_update_touch_and_delete() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&a, &org, &bob.id, Role::Admin).unwrap();

    let updated = db
        .update_user(
            &bob.id,
            &UserPatch {
                email: Some("  BOB2@Example.com ".into()),
                name: None,
            },
        )
        .unwrap();
    assert_eq!(updated.email, "bob2@example.com");
    assert_eq!(
        db.find_user_by_email("Bob2@example.com").unwrap().id,
        bob.id
    );
    assert_err(db.find_user_by_email(&bob.email), "not_found", None);
    assert_err(
        db.update_user(
            &bob.id,
            &UserPatch {
                email: Some(owner.email.clone()),
                name: None,
            },
        ),
        "conflict",
        Some("email"),
    );

    // The sole owner cannot be deleted; the error names the organization.
    let err = assert_err(db.delete_user(&owner.id), "conflict", Some("organizations"));
    assert_eq!(err.details()["organizations"][0], org.as_str());
    db.delete_user(&bob.id).unwrap();
    assert_err(db.get_user(&bob.id), "not_found", None);
    assert_err(db.delete_user(&bob.id), "not_found", None);
    assert_eq!(
        db.list_members(&a, &org, &MemberQuery::default())
            .unwrap()
            .pagination
            .total,
        1
    );
    // With a second owner the first can go.
    let carol = user(&db, "Carol");
    db.add_member(&a, &org, &carol.id, Role::Owner).unwrap();
    db.delete_user(&owner.id).unwrap();
    assert_sound(&db);
}

/// Every member's user id in list order (optionally one role), by walking the cursor.
fn walk(db: &orgdb::Db, org: &str, role: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = db
            .list_members(
                &Actor::System,
                org,
                &MemberQuery {
                    per_page: Some(100),
                    role: role.map(str::to_owned),
                    cursor: cursor.take(),
                    ..Default::default()
                },
            )
            .unwrap();
        out.extend(page.data.into_iter().map(|m| m.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

/// Offset pages against the cursor walk, for every role filter and a spread of offsets.
fn assert_offsets_agree(db: &orgdb::Db, org: &str) {
    for role in [
        None,
        Some("owner"),
        Some("admin"),
        Some("member"),
        Some("viewer"),
    ] {
        let all = walk(db, org, role);
        for per_page in [20u32, 37] {
            let pages = all.len() as u32 / per_page + 2; // one page past the end
            let mut picks: Vec<u32> = vec![1, 2, pages / 3, pages / 2, pages - 2, pages - 1, pages];
            picks.extend((1..pages).step_by(11));
            for page in picks.into_iter().filter(|p| *p >= 1) {
                let got = db
                    .list_members(&Actor::System, org, &query(page, per_page, role))
                    .unwrap();
                let from = ((page - 1) * per_page) as usize;
                let want: Vec<&String> = all.iter().skip(from).take(per_page as usize).collect();
                let ids: Vec<&String> = got.data.iter().map(|m| &m.id).collect();
                assert_eq!(ids, want, "role {role:?}, page {page} of {per_page}");
                assert_eq!(got.pagination.total, all.len() as u64);
            }
        }
    }
}

#[test]
fn offset_pages_seek_through_counted_buckets_and_stay_exact() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Big", "enterprise");
    let a = actor(&owner);
    // 1 500 members: more than two buckets' worth in every index, with splits as they join.
    let roles = ["member", "viewer", "admin"];
    let mut users = Vec::new();
    for i in 0..1_500 {
        let u = user(&db, &format!("User {i:04}"));
        db.add_member(&a, &org, &u.id, roles[i % 3]).unwrap();
        if i % 7 == 0 {
            clock.advance(chrono::TimeDelta::seconds(1));
        }
        users.push(u.id);
    }
    assert_offsets_agree(&db, &org);
    assert_sound(&db);

    // Remove the earliest joiners (the first bucket empties and hands over), a run in the
    // middle, and every fifth; change roles of others.
    let mut removed = std::collections::HashSet::new();
    for (i, id) in users.iter().enumerate() {
        if i < 600 || (900..1_000).contains(&i) || i % 5 == 0 {
            db.remove_member(&a, &org, &MemberRef::User(id.clone()))
                .unwrap();
            removed.insert(i);
        }
    }
    for (i, id) in users
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
    {
        if i % 4 == 1 {
            db.update_member_role(&a, &org, &MemberRef::User(id.clone()), "viewer")
                .unwrap();
        }
    }
    assert_offsets_agree(&db, &org);
    assert_sound(&db);

    // A thousand more join (their buckets split as they fill), then seven in eight of them
    // leave: those buckets shrink below the minimum and merge.
    let bucket_rows = |db: &orgdb::Db| {
        db.stats()
            .unwrap()
            .into_iter()
            .find(|(table, _)| *table == "member_counts")
            .map_or(0, |(_, rows)| rows)
    };
    let mut late = Vec::new();
    for i in 0..1_000 {
        let u = user(&db, &format!("Late {i:04}"));
        db.add_member(&a, &org, &u.id, roles[i % 3]).unwrap();
        late.push(u.id);
    }
    let before = bucket_rows(&db);
    for (i, id) in late.iter().enumerate() {
        if i % 8 != 0 {
            db.remove_member(&a, &org, &MemberRef::User(id.clone()))
                .unwrap();
        }
    }
    // Counted buckets are the embedded backend's; PostgreSQL pages with its own indexes.
    if !common::on_postgres() {
        assert!(
            bucket_rows(&db) < before,
            "thinned buckets merged: {before} -> {}",
            bucket_rows(&db)
        );
    }
    assert_offsets_agree(&db, &org);
    assert_sound(&db);
    for (i, id) in late.iter().enumerate() {
        if i % 8 == 0 {
            db.remove_member(&a, &org, &MemberRef::User(id.clone()))
                .unwrap();
        }
    }

    // Down to the owner alone, then one member again.
    for (_, id) in users
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
    {
        db.remove_member(&a, &org, &MemberRef::User(id.clone()))
            .unwrap();
    }
    assert_offsets_agree(&db, &org);
    db.add_member(&a, &org, &users[0], Role::Member).unwrap();
    assert_offsets_agree(&db, &org);
    assert_sound(&db);
}
