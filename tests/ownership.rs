//! The owned-organization cap (`Options::max_owned_organizations`: active owner memberships,
//! not memberships of any role) on every way of becoming an owner, and
//! `create_user_with_organization` as one transaction.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use orgdb::{
    Actor, Db, ManualClock, MemberRef, NewInvitation, NewOrganization, NewUser, Options, Role, User,
};

fn capped(cap: u64) -> (Db, ManualClock) {
    let clock = ManualClock::new(start());
    let mut opts = Options::with_clock(clock.clone());
    opts.max_owned_organizations = Some(cap);
    (db_with(opts), clock)
}

fn new_org(db: &Db, owner: &User, name: &str) -> orgdb::Result<String> {
    db.create_organization(
        &owner.id,
        &NewOrganization {
            name: name.into(),
            plan: Some("enterprise".into()),
            ..Default::default()
        },
    )
    .map(|c| c.organization.id)
}

fn assert_owned_cap(result: orgdb::Result<impl std::fmt::Debug>, limit: u64, used: u64) {
    let err = assert_err(result, "quota_exceeded", None);
    assert_eq!(err.details()["quota"], "owned_organizations", "{err:?}");
    assert_eq!(err.details()["limit"], limit);
    assert_eq!(err.details()["used"], used);
}

#[test]
fn creating_past_the_cap_is_refused_and_other_roles_do_not_count() {
    let (db, _) = capped(2);
    let ada = user(&db, "Ada");
    let bob = user(&db, "Bob");
    let first = new_org(&db, &ada, "One").unwrap();
    new_org(&db, &ada, "Two").unwrap();
    let before = db.stats().unwrap();
    assert_owned_cap(new_org(&db, &ada, "Three"), 2, 2);
    assert_eq!(db.stats().unwrap(), before, "a refusal writes nothing");
    // Bob is an admin of several organizations: only owned ones count.
    for name in ["B1", "B2", "B3"] {
        let org = new_org(&db, &user(&db, &format!("Owner {name}")), name).unwrap();
        db.add_member(&Actor::System, &org, &bob.id, Role::Admin)
            .unwrap();
    }
    new_org(&db, &bob, "Bob's own").unwrap();
    new_org(&db, &bob, "Bob's second").unwrap();
    assert_owned_cap(new_org(&db, &bob, "Bob's third"), 2, 2);
    // Handing one away makes room again.
    let heir = user(&db, "Heir");
    db.add_member(&Actor::user(&ada.id), &first, &heir.id, Role::Member)
        .unwrap();
    db.transfer_ownership(&Actor::user(&ada.id), &first, &heir.id)
        .unwrap();
    new_org(&db, &ada, "Three").unwrap();
    assert_sound(&db);
}

#[test]
fn every_way_of_becoming_an_owner_is_capped() {
    let (db, _) = capped(1);
    let owner = user(&db, "Owner");
    let org = new_org(&db, &owner, "Main").unwrap();
    let o = Actor::user(&owner.id);
    // Cy already owns an organization of their own: at the cap.
    let cy = user(&db, "Cy");
    new_org(&db, &cy, "Cy's").unwrap();
    let who = MemberRef::User(cy.id.clone());

    assert_owned_cap(db.add_member(&o, &org, &cy.id, Role::Owner), 1, 1);
    db.add_member(&o, &org, &cy.id, Role::Member).unwrap();
    assert_owned_cap(db.update_member_role(&o, &org, &who, Role::Owner), 1, 1);
    assert_owned_cap(db.transfer_ownership(&o, &org, &cy.id), 1, 1);
    db.remove_member(&o, &org, &who).unwrap();
    let created = db
        .create_invitation(
            &o,
            &org,
            &NewInvitation {
                email: cy.email.clone(),
                role: Some("owner".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_owned_cap(db.accept_invitation(&created.token, &cy.id), 1, 1);
    // A deactivated owner membership does not count, and its reactivation is capped.
    let dee = user(&db, "Dee");
    db.add_member(&o, &org, &dee.id, Role::Owner).unwrap();
    let dee_ref = MemberRef::User(dee.id.clone());
    db.deactivate_member(&o, &org, &dee_ref).unwrap();
    new_org(&db, &dee, "Dee's").unwrap();
    assert_owned_cap(db.reactivate_member(&o, &org, &dee_ref), 1, 1);
    assert_sound(&db);
}

#[test]
fn two_creations_race_for_the_last_owned_slot() {
    for _ in 0..5 {
        let (db, _) = capped(2);
        let ada = user(&db, "Ada");
        new_org(&db, &ada, "First").unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = ["Left", "Right"]
            .into_iter()
            .map(|name| {
                let (db, ada, barrier) = (db.clone(), ada.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    new_org(&db, &ada, name)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert_eq!(db.list_organizations_for_user(&ada.id).unwrap().len(), 2);
        assert_sound(&db);
    }
}

#[test]
fn create_user_with_organization_is_one_transaction() {
    let (db, _) = db();
    let made = db
        .create_user_with_organization(
            &NewUser {
                email: " Ada@Example.com ".into(),
                name: "Ada".into(),
            },
            &NewOrganization {
                name: "Analytical Engines".into(),
                plan: Some("pro".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(made.user.email, "ada@example.com");
    assert_eq!(made.organization.plan, "pro");
    assert_eq!(made.membership.role, Role::Owner);
    assert_eq!(made.membership.organization_id, made.organization.id);
    let details = db
        .get_organization(&Actor::user(&made.user.id), &made.organization.id)
        .unwrap();
    assert_eq!(details.usage.team_members, 1);
    let audit = db
        .audit_log(&Actor::System, &made.organization.id, 0, 10)
        .unwrap();
    assert_eq!(audit[0].action, "organization.created");

    // A bad organization field: no user either.
    let before = db.stats().unwrap();
    let err = assert_err(
        db.create_user_with_organization(
            &NewUser {
                email: "bob@example.com".into(),
                name: "Bob".into(),
            },
            &NewOrganization {
                name: "  ".into(),
                plan: Some("gold".into()),
                ..Default::default()
            },
        ),
        "validation_error",
        Some("name"),
    );
    assert!(err.details().contains_key("plan"), "{err:?}");
    assert_eq!(db.stats().unwrap(), before);
    assert_err(db.find_user_by_email("bob@example.com"), "not_found", None);
    // A taken email: no organization either.
    assert_err(
        db.create_user_with_organization(
            &NewUser {
                email: "ada@example.com".into(),
                name: "Ada Again".into(),
            },
            &NewOrganization {
                name: "Second".into(),
                ..Default::default()
            },
        ),
        "conflict",
        Some("email"),
    );
    assert_eq!(db.stats().unwrap(), before);

    // With a cap of 0 nobody may own anything: refused whole.
    let (capped, _) = capped(0);
    let before = capped.stats().unwrap();
    assert_owned_cap(
        capped.create_user_with_organization(
            &NewUser {
                email: "cy@example.com".into(),
                name: "Cy".into(),
            },
            &NewOrganization {
                name: "Cy Co".into(),
                ..Default::default()
            },
        ),
        0,
        0,
    );
    assert_eq!(capped.stats().unwrap(), before);
    assert_sound(&db);
}
