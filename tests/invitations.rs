//! Invitations: every lifecycle step and every error of the lifecycle, on a manual clock.

mod common;

use chrono::TimeDelta;
use common::*;
use orgdb::{
    Actor, InvitationQuery, InvitationStatus, Limit, LimitOverrides, MemberQuery, NewInvitation,
    NewProject, Role,
};

fn invite(email: &str) -> NewInvitation {
    NewInvitation {
        email: email.to_owned(),
        ..Default::default()
    }
}

#[test]
fn create_shows_the_token_once_and_stores_only_its_hash() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let created = db
        .create_invitation(&a, &org, &invite("  NewUser@Example.com "))
        .unwrap();
    let inv = &created.invitation;
    assert_eq!(inv.email, "newuser@example.com");
    assert_eq!(inv.role, Role::Member, "role defaults to member");
    assert_eq!(inv.status, InvitationStatus::Pending);
    assert_eq!(inv.invited_by, owner.id);
    assert_eq!(inv.expires_at - inv.created_at, TimeDelta::days(7));
    assert_eq!(created.invite_id, inv.id);
    assert_eq!(created.token.len(), 64);
    assert!(created.invite_url.ends_with(&created.token));

    // Neither lists, the admin view nor the audit log carry the token.
    let page = db
        .list_invitations(&a, &org, &InvitationQuery::default())
        .unwrap();
    let listed = serde_json::to_string(&page).unwrap();
    let audit = serde_json::to_string(&db.audit_log(&a, &org, 0, 100).unwrap()).unwrap();
    let admin_view = serde_json::to_string(&db.get_invitation(&a, &org, &inv.id).unwrap()).unwrap();
    for text in [listed, audit, admin_view] {
        assert!(!text.contains(&created.token), "token leaked: {text}");
    }
    // An id is not a token.
    assert_err(db.get_invitation_by_token(&inv.id), "not_found", None);
    assert_err(db.accept_invitation(&inv.id, &owner.id), "not_found", None);
}

#[test]
fn accept_creates_membership_and_project_membership_in_one_go() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let project = db
        .create_project(
            &a,
            &org,
            &NewProject {
                name: "Research".into(),
                description: None,
            },
        )
        .unwrap();
    let frank = user(&db, "Frank");
    let created = db
        .create_invitation(
            &a,
            &org,
            &NewInvitation {
                email: frank.email.clone(),
                role: Some("ADMIN".into()),
                project_id: Some(project.id.clone()),
                project_role: Some("VIEWER".into()),
                expires_in: None,
            },
        )
        .unwrap();

    let preview = db.get_invitation_by_token(&created.token).unwrap();
    assert_eq!(preview.status, InvitationStatus::Pending);
    assert_eq!(preview.organization_slug, "acme");
    assert_eq!(preview.project_name.as_deref(), Some("Research"));
    assert_eq!(preview.inviter_email.as_deref(), Some(owner.email.as_str()));
    assert!(!serde_json::to_string(&preview)
        .unwrap()
        .contains(&created.token));

    let m = db.accept_invitation(&created.token, &frank.id).unwrap();
    assert_eq!(m.role, Role::Admin);
    assert_eq!(m.user_id, frank.id);
    let pm = db.list_project_members(&a, &org, &project.id).unwrap();
    assert_eq!(pm.len(), 1);
    assert_eq!(
        (pm[0].id.as_str(), pm[0].role),
        (frank.id.as_str(), Role::Viewer)
    );
    let inv = db.get_invitation(&a, &org, &created.invite_id).unwrap();
    assert_eq!(inv.status, InvitationStatus::Accepted);
    assert_eq!(inv.accepted_at, Some(db.now()));

    // Safe retry by the same user; anyone else gets conflict; decline/revoke are conflicts now.
    assert_eq!(db.accept_invitation(&created.token, &frank.id).unwrap(), m);
    let other = user(&db, "Other");
    assert_err(
        db.accept_invitation(&created.token, &other.id),
        "conflict",
        None,
    );
    assert_err(db.decline_invitation(&created.token), "conflict", None);
    assert_err(
        db.revoke_invitation(&a, &org, &created.invite_id),
        "conflict",
        None,
    );
    assert_err(
        db.resend_invitation(&a, &org, &created.invite_id),
        "conflict",
        None,
    );
    assert_sound(&db);
}

#[test]
fn wrong_user_is_forbidden_and_leaves_it_pending() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let created = db
        .create_invitation(&actor(&owner), &org, &invite("frank@example.com"))
        .unwrap();
    let mallory = user(&db, "Mallory");
    assert_err(
        db.accept_invitation(&created.token, &mallory.id),
        "forbidden",
        None,
    );
    assert_err(
        db.accept_invitation(&created.token, "user_nobody"),
        "not_found",
        None,
    );
    assert_err(
        db.accept_invitation("0".repeat(64).as_str(), &mallory.id),
        "not_found",
        None,
    );
    assert_eq!(
        db.get_invitation_by_token(&created.token).unwrap().status,
        InvitationStatus::Pending
    );
}

#[test]
fn expiry_is_derived_from_the_clock() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 3 seats
    let a = actor(&owner);
    let frank = user(&db, "Frank");
    let created = db
        .create_invitation(&a, &org, &invite(&frank.email))
        .unwrap();
    assert_eq!(db.get_organization(&a, &org).unwrap().usage.team_members, 2);

    clock.advance(TimeDelta::days(7) - TimeDelta::seconds(1));
    assert_eq!(
        db.get_invitation_by_token(&created.token).unwrap().status,
        InvitationStatus::Pending
    );
    clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        db.get_invitation_by_token(&created.token).unwrap().status,
        InvitationStatus::Expired
    );
    let err = assert_err(
        db.accept_invitation(&created.token, &frank.id),
        "invitation_expired",
        None,
    );
    assert_eq!(err.http_status(), 410);
    // An expired invitation holds no seat and blocks no new invitation for the same email.
    assert_eq!(db.get_organization(&a, &org).unwrap().usage.team_members, 1);
    assert!(db
        .list_invitations_for_email(&frank.email)
        .unwrap()
        .is_empty());
    let filtered = db
        .list_invitations(
            &a,
            &org,
            &InvitationQuery {
                status: Some("expired".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.pagination.total, 1);
    let again = db
        .create_invitation(&a, &org, &invite(&frank.email))
        .unwrap();
    assert_ne!(again.invite_id, created.invite_id);
    // The old one stays expired; the old token cannot be revived by accepting.
    assert_err(
        db.accept_invitation(&created.token, &frank.id),
        "invitation_expired",
        None,
    );
    db.accept_invitation(&again.token, &frank.id).unwrap();
    assert_sound(&db);
}

#[test]
fn per_invitation_lifetime_bounds() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let short = NewInvitation {
        expires_in: Some(std::time::Duration::from_secs(3600)),
        ..invite("a@example.com")
    };
    let inv = db.create_invitation(&a, &org, &short).unwrap().invitation;
    assert_eq!(inv.expires_at - inv.created_at, TimeDelta::hours(1));
    for bad in [0, 3599, 30 * 86_400 + 1, u64::MAX] {
        let new = NewInvitation {
            expires_in: Some(std::time::Duration::from_secs(bad)),
            ..invite("b@example.com")
        };
        assert_err(
            db.create_invitation(&a, &org, &new),
            "validation_error",
            Some("expires_in"),
        );
    }
}

#[test]
fn duplicates_members_and_projects_of_other_orgs_are_refused() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let (other, other_owner) = common::org(&db, "Other", "team");
    let a = actor(&owner);
    let first = db
        .create_invitation(&a, &org, &invite("x@example.com"))
        .unwrap();
    let err = assert_err(
        db.create_invitation(&a, &org, &invite("X@example.com ")),
        "conflict",
        Some("invitation_id"),
    );
    assert_eq!(err.details()["invitation_id"], first.invite_id.as_str());
    // The same email may be invited by another organization.
    db.create_invitation(&actor(&other_owner), &other, &invite("x@example.com"))
        .unwrap();
    assert_eq!(
        db.list_invitations_for_email("x@example.com")
            .unwrap()
            .len(),
        2
    );
    // A current member cannot be invited.
    assert_err(
        db.create_invitation(&a, &org, &invite(&owner.email)),
        "conflict",
        None,
    );
    // A project of another organization is not found here.
    let foreign = db
        .create_project(
            &actor(&other_owner),
            &other,
            &NewProject {
                name: "F".into(),
                description: None,
            },
        )
        .unwrap();
    let new = NewInvitation {
        project_id: Some(foreign.id),
        ..invite("y@example.com")
    };
    assert_err(db.create_invitation(&a, &org, &new), "not_found", None);
    // Another organization's invitation id is not found here.
    let theirs = db
        .list_invitations(&actor(&other_owner), &other, &InvitationQuery::default())
        .unwrap();
    assert_err(
        db.revoke_invitation(&a, &org, &theirs.data[0].id),
        "not_found",
        None,
    );
}

#[test]
fn decline_revoke_and_resend() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);

    let d = db
        .create_invitation(&a, &org, &invite("d@example.com"))
        .unwrap();
    assert_eq!(
        db.decline_invitation(&d.token).unwrap().status,
        InvitationStatus::Declined
    );
    assert_err(db.decline_invitation(&d.token), "conflict", None);

    let r = db
        .create_invitation(&a, &org, &invite("r@example.com"))
        .unwrap();
    assert_eq!(
        db.revoke_invitation(&a, &org, &r.invite_id).unwrap().status,
        InvitationStatus::Revoked
    );
    assert_err(
        db.revoke_invitation(&a, &org, &r.invite_id),
        "conflict",
        None,
    );
    assert_err(
        db.revoke_invitation(&a, &org, "inv_nothing"),
        "not_found",
        None,
    );

    // Resend: same id, new token, new expiry; the old token stops working.
    let s = db
        .create_invitation(&a, &org, &invite("s@example.com"))
        .unwrap();
    clock.advance(TimeDelta::days(8));
    assert_eq!(
        db.get_invitation(&a, &org, &s.invite_id).unwrap().status,
        InvitationStatus::Expired
    );
    let resent = db.resend_invitation(&a, &org, &s.invite_id).unwrap();
    assert_eq!(resent.invite_id, s.invite_id);
    assert_ne!(resent.token, s.token);
    assert_eq!(resent.invitation.status, InvitationStatus::Pending);
    assert_eq!(resent.invitation.expires_at, db.now() + TimeDelta::days(7));
    assert_err(db.get_invitation_by_token(&s.token), "not_found", None);
    let sam = orgdb::NewUser {
        email: "s@example.com".into(),
        name: "Sam".into(),
    };
    let sam = db.create_user(&sam).unwrap();
    db.accept_invitation(&resent.token, &sam.id).unwrap();

    // Declining an expired invitation works too.
    let e = db
        .create_invitation(&a, &org, &invite("e@example.com"))
        .unwrap();
    clock.advance(TimeDelta::days(8));
    assert_eq!(
        db.decline_invitation(&e.token).unwrap().status,
        InvitationStatus::Declined
    );

    let actions: Vec<String> = db
        .audit_log(&a, &org, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for want in [
        "invitation.created",
        "invitation.declined",
        "invitation.revoked",
        "invitation.resent",
        "invitation.accepted",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "no {want} in {actions:?}"
        );
    }
    assert_sound(&db);
}

#[test]
fn seats_count_pending_invitations_and_lowered_limits_refuse_accepts() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // 3 seats
    let a = actor(&owner);
    let b = db
        .create_invitation(&a, &org, &invite("b@example.com"))
        .unwrap();
    let c = db
        .create_invitation(&a, &org, &invite("c@example.com"))
        .unwrap();
    let err = assert_err(
        db.create_invitation(&a, &org, &invite("d@example.com")),
        "quota_exceeded",
        None,
    );
    assert_eq!(err.details()["used"], 3);

    // Lower the limit below what is promised: accepts beyond it are refused and stay pending.
    let over = LimitOverrides {
        team_members: Some(Limit::Count(2)),
        ..Default::default()
    };
    db.set_limit_overrides(&Actor::System, &org, &over.into())
        .unwrap();
    let ub = db
        .create_user(&orgdb::NewUser {
            email: "b@example.com".into(),
            name: "B".into(),
        })
        .unwrap();
    let uc = db
        .create_user(&orgdb::NewUser {
            email: "c@example.com".into(),
            name: "C".into(),
        })
        .unwrap();
    db.accept_invitation(&b.token, &ub.id).unwrap();
    assert_err(
        db.accept_invitation(&c.token, &uc.id),
        "quota_exceeded",
        None,
    );
    assert_eq!(
        db.get_invitation_by_token(&c.token).unwrap().status,
        InvitationStatus::Pending
    );
    // Nothing was deleted by lowering the limit.
    assert_eq!(
        db.list_members(&a, &org, &MemberQuery::default())
            .unwrap()
            .pagination
            .total,
        2
    );
    assert_sound(&db);
}

#[test]
fn bulk_invitations_are_all_or_nothing_and_name_the_email() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro"); // 5 seats
    let a = actor(&owner);
    let before = db.stats().unwrap();
    let batch = [
        invite("a@example.com"),
        invite("b@example.com"),
        invite("A@example.com"),
    ];
    let err = assert_err(
        db.create_invitations(&a, &org, &batch),
        "conflict",
        Some("email"),
    );
    assert_eq!(err.details()["email"], "a@example.com");
    assert_eq!(db.stats().unwrap(), before, "nothing written");

    let bad = [invite("ok@example.com"), invite("not-an-email")];
    let err = assert_err(
        db.create_invitations(&a, &org, &bad),
        "validation_error",
        Some("email"),
    );
    assert_eq!(
        err.details()["email"]
            .as_str()
            .map(|s| s.contains('@') || !s.is_empty()),
        Some(true)
    );

    let too_many: Vec<NewInvitation> = (0..5)
        .map(|i| invite(&format!("U{i}@example.com")))
        .collect();
    let err = assert_err(
        db.create_invitations(&a, &org, &too_many),
        "quota_exceeded",
        Some("email"),
    );
    assert_eq!(err.details()["limit"], 5);
    assert_eq!(err.details()["quota"], "team_members");
    assert_eq!(
        err.details()["email"],
        "u4@example.com",
        "names the (normalized) email that does not fit"
    );
    assert_eq!(db.stats().unwrap(), before);

    let ok: Vec<NewInvitation> = (0..4)
        .map(|i| invite(&format!("u{i}@example.com")))
        .collect();
    assert_eq!(db.create_invitations(&a, &org, &ok).unwrap().len(), 4);
    assert_sound(&db);
}

#[test]
fn accepting_when_already_a_member_closes_the_invitation() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let frank = user(&db, "Frank");
    db.add_member(&a, &org, &frank.id, "viewer").unwrap();
    // An invitation to a new address that the member then takes as their own email.
    let inv = db
        .create_invitation(&a, &org, &invite("frank.new@example.com"))
        .unwrap();
    let patch = orgdb::UserPatch {
        email: Some("frank.new@example.com".into()),
        name: None,
    };
    db.update_user(&frank.id, &patch).unwrap();
    let seats = db.get_organization(&a, &org).unwrap().usage.team_members;
    assert_eq!(seats, 2, "taking the address closed the invitation");
    // Accepting it then is a safe retry that returns the membership.
    let m = db.accept_invitation(&inv.token, &frank.id).unwrap();
    assert_eq!(
        m.role,
        Role::Viewer,
        "the existing membership is returned unchanged"
    );
    let after = db.get_invitation(&a, &org, &inv.invite_id).unwrap();
    assert_eq!(after.status, InvitationStatus::Accepted);
    assert_eq!(
        db.get_organization(&a, &org).unwrap().usage.team_members,
        seats,
        "no seat held twice"
    );
    assert_sound(&db);
}

#[test]
fn deleting_the_project_keeps_the_invitation_org_only() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let p = db
        .create_project(
            &a,
            &org,
            &NewProject {
                name: "P".into(),
                description: None,
            },
        )
        .unwrap();
    let new = NewInvitation {
        project_id: Some(p.id.clone()),
        project_role: Some("member".into()),
        ..invite("f@example.com")
    };
    let inv = db.create_invitation(&a, &org, &new).unwrap();
    db.delete_project(&a, &org, &p.id).unwrap();
    let after = db.get_invitation(&a, &org, &inv.invite_id).unwrap();
    assert_eq!((after.project_id, after.project_role), (None, None));
    let f = user(&db, "F");
    db.accept_invitation(&inv.token, &f.id).unwrap();
    assert_sound(&db);
}

/// Status filters page through the indexes: `pending` leaves out lapsed invitations,
/// `expired` merges the stored-expired with the lapsed ones in creation order, at any page
/// size, with exact totals.
#[test]
fn status_filters_page_in_creation_order_across_expiry() {
    let (db, clock) = db();
    let (org, owner) = org(&db, "Acme", "enterprise");
    let a = actor(&owner);
    let make = |email: &str, db: &orgdb::Db| {
        db.create_invitation(&a, &org, &invite(email))
            .unwrap()
            .invite_id
    };
    // Day 0: x0, y0, z0; day 3: w3 and v3. Day 8: the day-0 ones have lapsed.
    let x0 = make("x@example.com", &db);
    let y0 = make("y@example.com", &db);
    let z0 = make("z@example.com", &db);
    clock.advance(TimeDelta::days(3));
    let w3 = make("w@example.com", &db);
    let v3 = make("v@example.com", &db);
    clock.advance(TimeDelta::days(5));
    // Re-inviting y stores y0 as expired (a stored-expired entry between lapsed x0 and z0);
    // revoking w3 moves it out of the pending ones.
    let y8 = make("y@example.com", &db);
    db.revoke_invitation(&a, &org, &w3).unwrap();
    clock.advance(TimeDelta::days(4)); // day 12: v3 lapses too; y8 is still pending.
    let expect = [
        (None, vec![&x0, &y0, &z0, &w3, &v3, &y8]),
        (Some("pending"), vec![&y8]),
        (Some("expired"), vec![&x0, &y0, &z0, &v3]),
        (Some("revoked"), vec![&w3]),
        (Some("accepted"), vec![]),
    ];
    for (status, want) in expect {
        for per_page in [1u32, 2, 3, 100] {
            let mut got = Vec::new();
            for page in 1..=(want.len() as u32).div_ceil(per_page).max(1) + 1 {
                let p = db
                    .list_invitations(
                        &a,
                        &org,
                        &InvitationQuery {
                            status: status.map(str::to_owned),
                            page: Some(page),
                            per_page: Some(per_page),
                        },
                    )
                    .unwrap();
                assert_eq!(p.pagination.total, want.len() as u64, "{status:?}");
                if let Some(s) = status {
                    assert!(p.data.iter().all(|i| i.status.as_str() == s));
                }
                got.extend(p.data.into_iter().map(|i| i.id));
            }
            let got: Vec<&String> = got.iter().collect();
            assert_eq!(got, want, "{status:?}, {per_page} a page");
        }
    }
    assert_sound(&db);
}
