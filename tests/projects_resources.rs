//! Projects, project members and resources.

mod common;

use common::*;
use orgdb::{MemberRef, NewProject, ProjectPatch, ResourceKind, Role};

#[test]
fn project_lifecycle_and_membership_follows_the_organization() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "team");
    let (other, other_owner) = common::org(&db, "Other", "team");
    let a = actor(&owner);
    let bob = user(&db, "Bob");
    let stranger = user(&db, "Stranger");
    db.add_member(&a, &org, &bob.id, "member").unwrap();

    let p = db
        .create_project(
            &a,
            &org,
            &NewProject {
                name: " Research ".into(),
                description: Some("d".into()),
            },
        )
        .unwrap();
    assert_eq!(p.name, "Research");
    assert!(p.id.starts_with("proj_"));
    assert_eq!(db.get_project(&actor(&bob), &org, &p.id).unwrap(), p);
    assert_err(
        db.get_project(&actor(&other_owner), &other, &p.id),
        "not_found",
        None,
    );

    let patched = db
        .update_project(
            &a,
            &org,
            &p.id,
            &ProjectPatch {
                name: None,
                description: Some(None),
            },
        )
        .unwrap();
    assert_eq!(
        (patched.name.as_str(), patched.description),
        ("Research", None)
    );

    db.add_project_member(&a, &org, &p.id, &bob.id, Some("ADMIN".into()))
        .unwrap();
    // Without a role: member, as an invitation's project role defaults.
    let carol = user(&db, "Carol");
    db.add_member(&a, &org, &carol.id, "viewer").unwrap();
    let pm = db
        .add_project_member(&a, &org, &p.id, &carol.id, None)
        .unwrap();
    assert_eq!(pm.role, Role::Member);
    db.remove_project_member(&a, &org, &p.id, &carol.id)
        .unwrap();
    assert_err(
        db.add_project_member(&a, &org, &p.id, &bob.id, Some(orgdb::Role::Admin.into())),
        "conflict",
        None,
    );
    assert_err(
        db.add_project_member(
            &a,
            &org,
            &p.id,
            &stranger.id,
            Some(orgdb::Role::Member.into()),
        ),
        "not_found",
        None,
    );
    assert_err(
        db.add_project_member(&a, &org, &p.id, &owner.id, Some("boss".into())),
        "validation_error",
        Some("role"),
    );
    let changed = db
        .update_project_member_role(&a, &org, &p.id, &bob.id, "viewer")
        .unwrap();
    assert_eq!(changed.role, Role::Viewer);

    // Removing the member from the organization removes the project membership.
    db.remove_member(&a, &org, &MemberRef::User(bob.id.clone()))
        .unwrap();
    assert!(db.list_project_members(&a, &org, &p.id).unwrap().is_empty());
    assert_err(
        db.remove_project_member(&a, &org, &p.id, &bob.id),
        "not_found",
        None,
    );

    db.add_project_member(&a, &org, &p.id, &owner.id, Some(orgdb::Role::Owner.into()))
        .unwrap();
    db.remove_project_member(&a, &org, &p.id, &owner.id)
        .unwrap();
    assert_eq!(db.list_projects(&a, &org).unwrap().len(), 1);
    db.delete_project(&a, &org, &p.id).unwrap();
    assert_err(db.delete_project(&a, &org, &p.id), "not_found", None);
    assert!(db.list_projects(&a, &org).unwrap().is_empty());
    assert_sound(&db);
}

#[test]
fn resources_count_against_their_limits_and_removal_frees_the_slot() {
    let (db, _) = db();
    let (org, owner) = org(&db, "Acme", "free"); // mcps 3, api_keys 2
    let a = actor(&owner);
    let mut mcps = Vec::new();
    for name in ["A", "B", "C"] {
        mcps.push(
            db.register_resource(&a, &org, ResourceKind::Mcp, name)
                .unwrap(),
        );
    }
    let err = assert_err(
        db.register_resource(&a, &org, ResourceKind::Mcp, "D"),
        "quota_exceeded",
        None,
    );
    assert_eq!(err.details()["quota"], "mcps");
    db.register_resource(&a, &org, ResourceKind::ApiKey, "k1")
        .unwrap();
    db.register_resource(&a, &org, ResourceKind::ApiKey, "k2")
        .unwrap();
    assert_err(
        db.register_resource(&a, &org, ResourceKind::ApiKey, "k3"),
        "quota_exceeded",
        None,
    );

    let removed = db.remove_resource(&a, &org, &mcps[0].id).unwrap();
    assert!(removed.removed_at.is_some());
    assert_err(db.remove_resource(&a, &org, &mcps[0].id), "not_found", None);
    assert_err(
        db.rename_resource(&a, &org, &mcps[0].id, "X"),
        "not_found",
        None,
    );
    db.register_resource(&a, &org, ResourceKind::Mcp, "D")
        .unwrap();

    let renamed = db
        .rename_resource(&a, &org, &mcps[1].id, "Weather API")
        .unwrap();
    assert_eq!(renamed.name, "Weather API");
    let listed = db
        .list_resources(&a, &org, Some(ResourceKind::Mcp))
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["Weather API", "C", "D"]
    );
    assert_eq!(db.list_resources(&a, &org, None).unwrap().len(), 5);
    let d = db.get_organization(&a, &org).unwrap();
    assert_eq!((d.usage.mcps, d.usage.api_keys), (3, 2));

    // Lowering the plan deletes nothing and refuses additions.
    let (org2, owner2) = common::org(&db, "Pro", "pro");
    let a2 = actor(&owner2);
    for i in 0..5 {
        db.register_resource(&a2, &org2, ResourceKind::Mcp, &format!("m{i}"))
            .unwrap();
    }
    db.set_plan(&a2, &org2, "free").unwrap();
    assert_eq!(db.list_resources(&a2, &org2, None).unwrap().len(), 5);
    assert_err(
        db.register_resource(&a2, &org2, ResourceKind::Mcp, "more"),
        "quota_exceeded",
        None,
    );
    assert_sound(&db);
}
