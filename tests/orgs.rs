//! Organizations: create, slugs, read with limits and usage, PATCH, settings, plan, overrides,
//! delete with cascade, and the audit trail of each.

mod common;

use std::collections::BTreeMap;

use common::*;
use orgdb::{
    Actor, InvitationQuery, Limit, LimitOverrides, LimitOverridesPatch, MemberQuery, NewInvitation,
    NewOrganization, NewProject, OrganizationPatch, OrganizationSettings, ResourceKind,
};

fn named(name: &str) -> NewOrganization {
    NewOrganization {
        name: name.to_owned(),
        ..Default::default()
    }
}

#[test]
fn create_makes_the_creator_owner_and_derives_unique_slugs() {
    let (db, _) = db();
    let alice = user(&db, "Alice");
    let first = db
        .create_organization(&alice.id, &named("My Company"))
        .unwrap();
    assert_eq!(first.organization.slug, "my-company");
    assert_eq!(first.organization.plan, "free");
    assert_eq!(first.membership.role, orgdb::Role::Owner);
    assert_eq!(first.membership.user_id, alice.id);
    assert!(first.organization.id.starts_with("org_"));
    assert!(first.membership.id.starts_with("mem_"));

    let second = db
        .create_organization(&alice.id, &named("My  Company!"))
        .unwrap();
    let third = db
        .create_organization(&alice.id, &named("my company"))
        .unwrap();
    assert_eq!(second.organization.slug, "my-company-2");
    assert_eq!(third.organization.slug, "my-company-3");
    // Reserved slugs are skipped when deriving.
    let admin = db.create_organization(&alice.id, &named("Admin")).unwrap();
    assert_eq!(admin.organization.slug, "admin-2");
    let empty = db.create_organization(&alice.id, &named("???")).unwrap();
    assert_eq!(empty.organization.slug, "org");
    assert_sound(&db);
}

#[test]
fn explicit_slug_and_external_id_are_unique() {
    let (db, _) = db();
    let alice = user(&db, "Alice");
    let new = NewOrganization {
        slug: Some("acme".into()),
        external_id: Some("cus_1".into()),
        ..named("Acme")
    };
    let acme = db
        .create_organization(&alice.id, &new)
        .unwrap()
        .organization;
    assert_err(
        db.create_organization(&alice.id, &new),
        "conflict",
        Some("slug"),
    );
    let other_ext = NewOrganization {
        slug: Some("acme-2".into()),
        ..new.clone()
    };
    assert_err(
        db.create_organization(&alice.id, &other_ext),
        "conflict",
        Some("external_id"),
    );

    let owner = actor(&alice);
    assert_eq!(
        db.get_organization_by_slug(&owner, "acme")
            .unwrap()
            .organization
            .id,
        acme.id
    );
    assert_eq!(
        db.get_organization_by_external_id(&owner, "cus_1")
            .unwrap()
            .organization
            .id,
        acme.id
    );
    assert_err(
        db.get_organization_by_slug(&owner, "nope"),
        "not_found",
        None,
    );

    let check = db.check_slug("acme").unwrap();
    assert!(!check.available);
    assert_eq!(check.reason.as_deref(), Some("taken"));
    assert_eq!(
        db.check_slug("www").unwrap().reason.as_deref(),
        Some("reserved")
    );
    assert_eq!(
        db.check_slug("Bad Slug").unwrap().reason.as_deref(),
        Some("invalid")
    );
    assert!(db.check_slug("free-one").unwrap().available);
}

#[test]
fn details_carry_plan_limits_overrides_and_live_usage() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "pro");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&a, &org, &bob.id, "admin").unwrap();
    db.register_resource(&a, &org, ResourceKind::Mcp, "Weather API")
        .unwrap();
    db.register_resource(&a, &org, ResourceKind::ApiKey, "CI")
        .unwrap();
    db.create_invitation(
        &a,
        &org,
        &NewInvitation {
            email: "new@example.com".into(),
            ..Default::default()
        },
    )
    .unwrap();

    let d = db.get_organization(&a, &org).unwrap();
    assert_eq!((d.limits.mcps, d.limits.api_keys), (Some(10), Some(10)));
    assert_eq!(
        (d.limits.team_members, d.limits.monthly_requests),
        (Some(5), Some(50_000))
    );
    assert_eq!((d.usage.mcps, d.usage.api_keys), (1, 1));
    assert_eq!(
        d.usage.team_members, 3,
        "two members and one pending invitation"
    );
    assert_eq!(d.usage.monthly_requests, 0);

    let overrides = LimitOverrides {
        mcps: Some(Limit::Unlimited),
        team_members: Some(Limit::Count(9)),
        ..Default::default()
    };
    assert_err(
        db.set_limit_overrides(&a, &org, &overrides.into()),
        "forbidden",
        None,
    );
    let d = db
        .set_limit_overrides(&Actor::System, &org, &overrides.into())
        .unwrap();
    assert_eq!(d.limits.mcps, None);
    assert_eq!(d.limits.team_members, Some(9));
    assert_eq!(
        d.limits.api_keys,
        Some(10),
        "plan limit stays where not overridden"
    );
    // A patch: fields not given stay; one can be cleared back to the plan's value.
    let d = db
        .set_limit_overrides(
            &Actor::System,
            &org,
            &LimitOverridesPatch {
                api_keys: Some(Some(Limit::Count(4))),
                team_members: Some(None),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(d.limits.mcps, None, "the mcps override stays");
    assert_eq!(d.limits.api_keys, Some(4));
    assert_eq!(d.limits.team_members, Some(5), "back to the plan's value");
    assert_eq!(
        db.get_limit_overrides(&Actor::System, &org).unwrap(),
        LimitOverrides {
            mcps: Some(Limit::Unlimited),
            api_keys: Some(Limit::Count(4)),
            ..Default::default()
        }
    );
    let patch = LimitOverridesPatch {
        api_keys: Some(None),
        team_members: Some(Some(Limit::Count(9))),
        ..Default::default()
    };
    db.set_limit_overrides(&Actor::System, &org, &patch)
        .unwrap();

    let d = db.set_plan(&a, &org, "enterprise").unwrap();
    assert_eq!(d.plan, "enterprise");
    let d = db.get_organization(&a, &org).unwrap();
    assert_eq!(d.limits.api_keys, None);
    assert_eq!(d.limits.team_members, Some(9), "override still wins");
    assert_err(
        db.set_plan(&a, &org, "platinum"),
        "validation_error",
        Some("plan"),
    );
    assert_sound(&db);
}

#[test]
fn patch_sets_clears_and_keeps_fields() {
    let (db, clock) = db();
    let alice = user(&db, "Alice");
    let created = db
        .create_organization(
            &alice.id,
            &NewOrganization {
                description: Some("first".into()),
                external_id: Some("ext-1".into()),
                address_line1: Some("123 Main St".into()),
                city: Some("San Francisco".into()),
                metadata: BTreeMap::from([("a".into(), "1".into())]),
                ..named("Acme")
            },
        )
        .unwrap()
        .organization;
    clock.advance(chrono::TimeDelta::hours(1));
    let a = actor(&alice);
    let patched = db
        .update_organization(
            &a,
            &created.id,
            &OrganizationPatch {
                name: Some("New Company Name".into()),
                description: Some(None),
                external_id: Some(None),
                city: Some(Some("Oakland".into())),
                metadata: Some(BTreeMap::from([("b".into(), "2".into())])),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(patched.name, "New Company Name");
    assert_eq!(patched.slug, "acme", "the slug does not follow the name");
    assert_eq!(patched.description, None);
    assert_eq!(patched.external_id, None);
    assert_eq!(
        patched.address_line1.as_deref(),
        Some("123 Main St"),
        "untouched field kept"
    );
    assert_eq!(patched.city.as_deref(), Some("Oakland"));
    assert_eq!(
        patched.metadata,
        BTreeMap::from([("b".into(), "2".into())]),
        "metadata replaced"
    );
    assert_eq!(patched.updated_at, clock_now(&db));
    assert!(patched.updated_at > patched.created_at);
    // The cleared external id is free again, and no longer resolves.
    assert_err(
        db.get_organization_by_external_id(&a, "ext-1"),
        "not_found",
        None,
    );

    // An org may keep its own slug; another's is a conflict.
    let other = db
        .create_organization(&alice.id, &named("Other"))
        .unwrap()
        .organization;
    let keep = OrganizationPatch {
        slug: Some("acme".into()),
        ..Default::default()
    };
    db.update_organization(&a, &created.id, &keep).unwrap();
    assert_err(
        db.update_organization(&a, &other.id, &keep),
        "conflict",
        Some("slug"),
    );

    let settings = OrganizationSettings {
        pin_protection: true,
        extra: BTreeMap::from([("theme".into(), "dark".into())]),
    };
    let s = db.update_settings(&a, &created.id, &settings).unwrap();
    assert_eq!(s.settings, settings);

    let log = db.audit_log(&a, &created.id, 0, 100).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "organization.created",
            "organization.updated",
            "organization.updated"
        ]
    );
    let change = &log[1].details;
    assert_eq!(change["name"]["before"], "Acme");
    assert_eq!(change["name"]["after"], "New Company Name");
    assert!(
        change.get("slug").is_none(),
        "only changed fields are recorded"
    );
    assert_sound(&db);
}

fn clock_now(db: &orgdb::Db) -> chrono::DateTime<chrono::Utc> {
    db.now()
}

#[test]
fn delete_cascades_in_one_transaction_and_keeps_the_audit_history() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    db.add_member(&a, &org, &bob.id, "member").unwrap();
    let project = db
        .create_project(
            &a,
            &org,
            &NewProject {
                name: "P".into(),
                description: None,
            },
        )
        .unwrap();
    db.add_project_member(
        &a,
        &org,
        &project.id,
        &bob.id,
        Some(orgdb::Role::Admin.into()),
    )
    .unwrap();
    db.register_resource(&a, &org, ResourceKind::Mcp, "Weather")
        .unwrap();
    let inv = db
        .create_invitation(
            &a,
            &org,
            &NewInvitation {
                email: "x@example.com".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let (other, other_owner) = common::org(&db, "Other", "free");

    assert_err(
        db.delete_organization(&actor(&bob), &org),
        "forbidden",
        None,
    );
    db.delete_organization(&a, &org).unwrap();

    assert_err(db.get_organization(&a, &org), "not_found", None);
    assert_err(db.delete_organization(&a, &org), "not_found", None);
    assert!(db.list_organizations_for_user(&bob.id).unwrap().is_empty());
    assert_err(db.get_invitation_by_token(&inv.token), "not_found", None);
    assert!(db
        .list_invitations_for_email("x@example.com")
        .unwrap()
        .is_empty());
    assert!(
        db.check_slug("acme").unwrap().available,
        "the slug is free again"
    );
    // Users survive; other organizations are untouched.
    db.get_user(&bob.id).unwrap();
    assert_eq!(
        db.list_members(&actor(&other_owner), &other, &MemberQuery::default())
            .unwrap()
            .pagination
            .total,
        1
    );

    // Only the system reads the history of a deleted organization; it ends with the delete.
    assert_err(db.audit_log(&a, &org, 0, 100), "not_found", None);
    let log = db.audit_log(&Actor::System, &org, 0, 1000).unwrap();
    assert_eq!(log.first().unwrap().action, "organization.created");
    assert_eq!(log.last().unwrap().action, "organization.deleted");
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    let stats: BTreeMap<String, u64> = db.stats().unwrap().into_iter().collect();
    assert_eq!(stats["projects"], 0);
    assert_eq!(stats["project_members"], 0);
    assert_eq!(stats["resources"], 0);
    assert_eq!(stats["invitations"], 0);
    assert_sound(&db);
}

#[test]
fn list_organizations_for_user_returns_each_membership() {
    let (db, _) = db();
    let alice = user(&db, "Alice");
    let bob = user(&db, "Bob");
    let one = db
        .create_organization(&alice.id, &named("One"))
        .unwrap()
        .organization;
    let two = db
        .create_organization(&bob.id, &named("Two"))
        .unwrap()
        .organization;
    db.add_member(&actor(&bob), &two.id, &alice.id, "viewer")
        .unwrap();
    let list = db.list_organizations_for_user(&alice.id).unwrap();
    let got: Vec<(&str, orgdb::Role)> = list
        .iter()
        .map(|o| (o.organization.id.as_str(), o.membership.role))
        .collect();
    assert_eq!(
        got,
        [
            (one.id.as_str(), orgdb::Role::Owner),
            (two.id.as_str(), orgdb::Role::Viewer)
        ]
    );
    assert_err(
        db.list_organizations_for_user("user_nobody"),
        "not_found",
        None,
    );
    // Invitations are listed for an owner only.
    let page = db
        .list_invitations(&actor(&bob), &two.id, &InvitationQuery::default())
        .unwrap();
    assert_eq!(page.pagination.total, 0);
}

#[test]
fn plan_names_match_in_any_case_and_overrides_can_be_read() {
    let (db, _) = db();
    let alice = user(&db, "Alice");
    let new = NewOrganization {
        plan: Some(" PRO ".into()),
        ..named("Acme")
    };
    let org = db
        .create_organization(&alice.id, &new)
        .unwrap()
        .organization;
    assert_eq!(org.plan, "pro", "stored in the catalog's spelling");
    let a = actor(&alice);
    assert_eq!(db.set_plan(&a, &org.id, "Team").unwrap().plan, "team");
    assert_eq!(
        db.get_limit_overrides(&a, &org.id).unwrap(),
        LimitOverrides::default()
    );
    let over = LimitOverrides {
        api_keys: Some(Limit::Count(1)),
        ..Default::default()
    };
    db.set_limit_overrides(&Actor::System, &org.id, &over.into())
        .unwrap();
    assert_eq!(db.get_limit_overrides(&a, &org.id).unwrap(), over);
    let outsider = user(&db, "Outsider");
    assert_err(
        db.get_limit_overrides(&actor(&outsider), &org.id),
        "forbidden",
        None,
    );
}
