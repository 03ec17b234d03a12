//! Member deactivation and reactivation: the member keeps the row, its history and its
//! project memberships, holds no seat, cannot act, and is listed under the status filters;
//! reactivation is seat-checked; the last active owner stays; races at the seat limit.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use orgdb::{
    Actor, Clock, Db, Member, MemberQuery, MemberRef, MemberStatus, NewInvitation, NewProject,
    Role, User,
};

fn by(u: &User) -> MemberRef {
    MemberRef::User(u.id.clone())
}

fn list(db: &Db, org: &str, status: Option<&str>, role: Option<&str>) -> Vec<Member> {
    let mut out = Vec::new();
    let mut query = MemberQuery {
        per_page: Some(3),
        status: status.map(str::to_owned),
        role: role.map(str::to_owned),
        ..Default::default()
    };
    loop {
        let page = db.list_members(&Actor::System, org, &query).unwrap();
        out.extend(page.data);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out,
        }
    }
}

fn ids(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.id.clone()).collect()
}

fn seats(db: &Db, org: &str) -> u64 {
    db.get_organization(&Actor::System, org)
        .unwrap()
        .usage
        .team_members
}

#[test]
fn a_deactivated_member_keeps_history_holds_no_seat_and_cannot_act() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let o = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&o, &org, &bob.id, Role::Admin).unwrap();
    let project = db
        .create_project(
            &o,
            &org,
            &NewProject {
                name: "Apollo".into(),
                description: None,
            },
        )
        .unwrap();
    db.add_project_member(&o, &org, &project.id, &bob.id, Some(Role::Member.into()))
        .unwrap();
    let seats_before = seats(&db, &org);
    let audit_before = db.audit_log(&o, &org, 0, 100).unwrap().len();

    clock.advance(chrono::TimeDelta::minutes(5));
    let off = db.deactivate_member(&o, &org, &by(&bob)).unwrap();
    assert_eq!(off.status, MemberStatus::Deactivated);
    assert_eq!(off.deactivated_at, Some(clock.now()));
    assert_eq!(off.role, Role::Admin, "the role is kept");
    assert_eq!(seats(&db, &org), seats_before - 1, "no seat held");

    // The row, its project membership and its history stay.
    let got = db.get_member(&o, &org, &by(&bob)).unwrap();
    assert_eq!(got.status, MemberStatus::Deactivated);
    assert_eq!(got.membership_id, off.membership_id);
    let project_members = db.list_project_members(&o, &org, &project.id).unwrap();
    assert!(project_members.iter().any(|m| m.id == bob.id));
    let events = db.audit_log(&o, &org, 0, 100).unwrap();
    assert_eq!(events.len(), audit_before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.action, "member.deactivated");
    assert_eq!(last.target, off.membership_id);
    assert_eq!(last.details["status"]["before"], "active");
    assert_eq!(last.details["status"]["after"], "deactivated");
    let mine = db.list_organizations_for_user(&bob.id).unwrap();
    assert_eq!(mine[0].membership.status, MemberStatus::Deactivated);

    // Bob cannot act there: reads, writes, leaving, his permissions.
    let b = actor(&bob);
    assert_err(db.get_organization(&b, &org), "forbidden", None);
    assert_err(
        db.list_members(&b, &org, &MemberQuery::default()),
        "forbidden",
        None,
    );
    assert_err(
        db.create_invitation(
            &b,
            &org,
            &NewInvitation {
                email: "x@example.com".into(),
                role: Some("member".into()),
                ..Default::default()
            },
        ),
        "forbidden",
        None,
    );
    assert_err(db.leave_organization(&bob.id, &org), "forbidden", None);
    assert_err(db.permissions(&b, &org), "forbidden", None);
    // Changes that need an active member are refused; a second deactivation changes nothing.
    assert_err(
        db.update_member_role(&o, &org, &by(&bob), Role::Member),
        "conflict",
        Some("user_id"),
    );
    assert_err(
        db.transfer_ownership(&o, &org, &bob.id),
        "conflict",
        Some("user_id"),
    );
    assert_err(
        db.add_member(&o, &org, &bob.id, Role::Member),
        "conflict",
        None,
    );
    let again = db.deactivate_member(&o, &org, &by(&bob)).unwrap();
    assert_eq!(again, off);
    assert_eq!(
        db.audit_log(&o, &org, 0, 100).unwrap().len(),
        audit_before + 1
    );
    assert_sound(&db);

    // Reactivated: the seat, the role and the right to act come back.
    clock.advance(chrono::TimeDelta::minutes(5));
    let on = db.reactivate_member(&o, &org, &by(&bob)).unwrap();
    assert_eq!(on.status, MemberStatus::Active);
    assert_eq!(on.deactivated_at, None);
    assert_eq!(on.role, Role::Admin);
    assert_eq!(on.joined_at, off.joined_at, "joined_at is kept");
    assert_eq!(seats(&db, &org), seats_before);
    db.get_organization(&b, &org).unwrap();
    let last = db.audit_log(&o, &org, 0, 100).unwrap().pop().unwrap();
    assert_eq!(last.action, "member.reactivated");
    assert_eq!(last.details["status"]["after"], "active");
    assert_eq!(db.reactivate_member(&o, &org, &by(&bob)).unwrap(), on);
    assert_sound(&db);
}

#[test]
fn who_may_deactivate_and_reactivate_and_the_last_active_owner() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let o = actor(&owner);
    let (admin, member, co) = (user(&db, "Ada"), user(&db, "Mo"), user(&db, "Co"));
    db.add_member(&o, &org, &admin.id, Role::Admin).unwrap();
    db.add_member(&o, &org, &member.id, Role::Member).unwrap();

    // The sole owner cannot be deactivated, by anyone.
    assert_err(
        db.deactivate_member(&o, &org, &by(&owner)),
        "conflict",
        Some("organization_id"),
    );
    assert_err(
        db.deactivate_member(&Actor::System, &org, &by(&owner)),
        "conflict",
        None,
    );
    // Below admin: forbidden; an admin never acts on an owner.
    assert_err(
        db.deactivate_member(&actor(&member), &org, &by(&admin)),
        "forbidden",
        None,
    );
    assert_err(
        db.deactivate_member(&actor(&admin), &org, &by(&owner)),
        "forbidden",
        None,
    );
    // An admin deactivates and reactivates a member.
    db.deactivate_member(&actor(&admin), &org, &by(&member))
        .unwrap();
    db.reactivate_member(&actor(&admin), &org, &by(&member))
        .unwrap();
    // With a second owner, one owner may be deactivated; then the other is the last active
    // one, and an admin may not bring the deactivated owner back.
    db.add_member(&o, &org, &co.id, Role::Owner).unwrap();
    db.deactivate_member(&o, &org, &by(&co)).unwrap();
    assert_err(
        db.deactivate_member(&o, &org, &by(&owner)),
        "conflict",
        None,
    );
    assert_err(db.leave_organization(&owner.id, &org), "conflict", None);
    assert_err(
        db.update_member_role(&o, &org, &by(&owner), Role::Admin),
        "conflict",
        None,
    );
    assert_err(
        db.reactivate_member(&actor(&admin), &org, &by(&co)),
        "forbidden",
        None,
    );
    // The deactivated owner can be removed, or deleted as a user: not the last owner.
    let p = db.permissions(&o, &org).unwrap();
    assert!(!p.allows(orgdb::Action::LeaveOrganization));
    db.delete_user(&co.id).unwrap();
    assert_sound(&db);
    // Not members: not found.
    let stranger = user(&db, "Stranger");
    assert_err(
        db.deactivate_member(&o, &org, &by(&stranger)),
        "not_found",
        None,
    );
    assert_err(
        db.reactivate_member(&o, &org, &by(&stranger)),
        "not_found",
        None,
    );
}

#[test]
fn reactivation_is_seat_checked_and_invitations_count() {
    let (db, _) = db();
    // pro: 5 seats.
    let (org, owner) = org(&db, "Acme", "pro");
    let o = actor(&owner);
    let users: Vec<User> = (0..4).map(|i| user(&db, &format!("U{i}"))).collect();
    for u in &users {
        db.add_member(&o, &org, &u.id, Role::Member).unwrap();
    }
    assert_eq!(seats(&db, &org), 5);
    db.deactivate_member(&o, &org, &by(&users[0])).unwrap();
    assert_eq!(seats(&db, &org), 4);
    // The freed seat goes to an invitation; the deactivated member cannot come back.
    db.create_invitation(
        &o,
        &org,
        &NewInvitation {
            email: "new@example.com".into(),
            role: Some("member".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let before = db.stats().unwrap();
    let err = assert_err(
        db.reactivate_member(&o, &org, &by(&users[0])),
        "quota_exceeded",
        None,
    );
    assert_eq!(err.details()["quota"], "team_members");
    assert_eq!(db.stats().unwrap(), before, "a refusal changes nothing");
    // An invitation to a deactivated member's email is refused like a member's.
    assert_err(
        db.create_invitation(
            &o,
            &org,
            &NewInvitation {
                email: users[0].email.clone(),
                role: Some("member".into()),
                ..Default::default()
            },
        ),
        "conflict",
        None,
    );
    // Removing another member frees a seat again.
    db.remove_member(&o, &org, &by(&users[1])).unwrap();
    db.reactivate_member(&o, &org, &by(&users[0])).unwrap();
    assert_eq!(seats(&db, &org), 5);
    // Removing a deactivated member removes them and their list entries.
    db.deactivate_member(&o, &org, &by(&users[2])).unwrap();
    db.remove_member(&o, &org, &by(&users[2])).unwrap();
    assert!(list(&db, &org, Some("all"), None)
        .iter()
        .all(|m| m.id != users[2].id));
    assert_sound(&db);
}

/// Every combination of status filter, role filter and page size, by offset and by cursor,
/// pages to the same rows as the reference: the members in join order, active ones first.
#[test]
fn status_filters_page_by_offset_and_cursor() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Big", "enterprise");
    let o = actor(&owner);
    let mut members = vec![(owner.id.clone(), Role::Owner, true)];
    for i in 0..23 {
        clock.advance(chrono::TimeDelta::seconds(1));
        let u = user(&db, &format!("M{i:02}"));
        let role = [Role::Viewer, Role::Member, Role::Admin][i % 3];
        db.add_member(&o, &org, &u.id, role).unwrap();
        members.push((u.id, role, true));
    }
    for i in [1usize, 4, 5, 9, 13, 14, 20, 22] {
        db.deactivate_member(&o, &org, &MemberRef::User(members[i].0.clone()))
            .unwrap();
        members[i].2 = false;
    }
    for status in [None, Some("active"), Some("deactivated"), Some("all")] {
        for role in [None, Some("member"), Some("ADMIN"), Some("owner")] {
            let want_role = role.map(|r| r.parse::<Role>().unwrap());
            let part = |active: bool| {
                members
                    .iter()
                    .filter(move |(_, r, a)| *a == active && want_role.is_none_or(|w| w == *r))
                    .map(|(id, ..)| id.clone())
            };
            let expected: Vec<String> = match status {
                None | Some("active") => part(true).collect(),
                Some("deactivated") => part(false).collect(),
                _ => part(true).chain(part(false)).collect(),
            };
            assert_eq!(
                ids(&list(&db, &org, status, role)),
                expected,
                "{status:?} {role:?}"
            );
            for per_page in [1u32, 2, 5, 7, 100] {
                let mut by_offset = Vec::new();
                for page in 1.. {
                    let got = db
                        .list_members(
                            &Actor::System,
                            &org,
                            &MemberQuery {
                                page: Some(page),
                                per_page: Some(per_page),
                                role: role.map(str::to_owned),
                                status: status.map(str::to_owned),
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    assert_eq!(got.pagination.total, expected.len() as u64);
                    if got.data.is_empty() {
                        break;
                    }
                    by_offset.extend(ids(&got.data));
                }
                assert_eq!(
                    by_offset, expected,
                    "{status:?} {role:?} per page {per_page}"
                );
            }
        }
    }
    // A cursor of the other part of the list is not this list's.
    let all = db
        .list_members(
            &Actor::System,
            &org,
            &MemberQuery {
                status: Some("all".into()),
                per_page: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
    let into_deactivated = all.next_cursor.unwrap();
    assert_err(
        db.list_members(
            &Actor::System,
            &org,
            &MemberQuery {
                cursor: Some(into_deactivated),
                ..Default::default()
            },
        ),
        "validation_error",
        Some("cursor"),
    );
    assert_err(
        db.list_members(
            &Actor::System,
            &org,
            &MemberQuery {
                status: Some("gone".into()),
                ..Default::default()
            },
        ),
        "validation_error",
        Some("status"),
    );
    assert_sound(&db);
}

#[test]
fn export_and_import_carry_the_status() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let o = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&o, &org, &bob.id, Role::Member).unwrap();
    let off = db.deactivate_member(&o, &org, &by(&bob)).unwrap();
    let mut out = Vec::new();
    db.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    let copy = db_with(orgdb::Options::default());
    copy.import_jsonl(text.as_bytes(), None, &mut |_| {})
        .unwrap();
    assert_sound(&copy);
    let got = copy.get_member(&Actor::System, &org, &by(&bob)).unwrap();
    assert_eq!(got.status, MemberStatus::Deactivated);
    assert_eq!(got.deactivated_at, off.deactivated_at);
    assert_eq!(seats(&copy, &org), 1);
    assert_eq!(
        ids(&list(&copy, &org, Some("deactivated"), None)),
        vec![bob.id]
    );

    // A membership whose status and time disagree is refused, and nothing is imported.
    let broken = text.replacen(r#""status":"deactivated""#, r#""status":"active""#, 1);
    assert_ne!(broken, text);
    let fresh = db_with(orgdb::Options::default());
    let before = fresh.stats().unwrap();
    assert_err(
        fresh.import_jsonl(broken.as_bytes(), None, &mut |_| {}),
        "validation_error",
        None,
    );
    assert_eq!(fresh.stats().unwrap(), before);
}

/// Two callers reactivating into the last free seat: exactly one gets it.
#[test]
fn two_reactivations_race_for_the_last_seat() {
    for _ in 0..5 {
        let (db, _) = db();
        let (org, owner) = org(&db, "Acme", "pro");
        let o = actor(&owner);
        let users: Vec<User> = (0..5).map(|i| user(&db, &format!("R{i}"))).collect();
        for u in &users[..4] {
            db.add_member(&o, &org, &u.id, Role::Member).unwrap();
        }
        db.deactivate_member(&o, &org, &by(&users[0])).unwrap();
        db.deactivate_member(&o, &org, &by(&users[1])).unwrap();
        db.add_member(&o, &org, &users[4].id, Role::Member).unwrap();
        assert_eq!(seats(&db, &org), 4, "one seat left");
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|i| {
                let (db, org, who, barrier) =
                    (db.clone(), org.clone(), by(&users[i]), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    db.reactivate_member(&Actor::System, &org, &who)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), "quota_exceeded", "{e}");
            }
        }
        assert_eq!(seats(&db, &org), 5);
        assert_sound(&db);
    }
}

/// A deactivation and an accept at the seat limit: the accept takes the invitation's own
/// seat, the deactivation frees one; whatever the order, seats never pass the limit and both
/// succeed.
#[test]
fn deactivate_races_accept_at_the_seat_limit() {
    for _ in 0..5 {
        let (db, _) = db();
        let (org, owner) = org(&db, "Acme", "pro");
        let o = actor(&owner);
        let users: Vec<User> = (0..3).map(|i| user(&db, &format!("A{i}"))).collect();
        for u in &users {
            db.add_member(&o, &org, &u.id, Role::Member).unwrap();
        }
        let guest = user(&db, "Guest");
        let created = db
            .create_invitation(
                &o,
                &org,
                &NewInvitation {
                    email: guest.email.clone(),
                    role: Some("member".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(seats(&db, &org), 5, "at the limit");
        let barrier = Arc::new(Barrier::new(2));
        let accept = {
            let (db, token, guest, barrier) = (
                db.clone(),
                created.token.clone(),
                guest.id.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                db.accept_invitation(&token, &guest).map(|_| ())
            })
        };
        let deactivate = {
            let (db, org, who, barrier) = (db.clone(), org.clone(), by(&users[0]), barrier);
            std::thread::spawn(move || {
                barrier.wait();
                db.deactivate_member(&Actor::System, &org, &who).map(|_| ())
            })
        };
        accept.join().unwrap().unwrap();
        deactivate.join().unwrap().unwrap();
        assert_eq!(seats(&db, &org), 4);
        // The freed seat is there to take, once.
        let late = user(&db, "Late");
        db.add_member(&o, &org, &late.id, Role::Member).unwrap();
        assert_err(
            db.reactivate_member(&o, &org, &by(&users[0])),
            "quota_exceeded",
            None,
        );
        assert_sound(&db);
    }
}
