//! `orgdb demo`: both seeds' flows, step by step, as the JSON a host would serve.

use std::path::Path;
use std::process::ExitCode;

use orgdb::{
    json, Actor, Address, Db, InvitationQuery, MemberQuery, MemberRef, NewInvitation,
    NewOrganization, NewProject, NewUser, OrganizationPatch, OrganizationSettings, ResourceKind,
};
use serde::Serialize;

fn show<T: Serialize>(step: &str, result: &orgdb::Result<T>) {
    let (status, body) = json::respond(result);
    crate::emit(&format!("## {step} ({status})"));
    crate::emit(&serde_json::to_string_pretty(&body).unwrap_or_default());
}

pub fn run(path: &Path, fresh: bool) -> orgdb::Result<ExitCode> {
    if fresh && path.exists() {
        std::fs::remove_file(path).map_err(|e| orgdb::Error::Storage {
            message: format!("removing {}: {e}", path.display()),
        })?;
    }
    let db = Db::open(path)?;
    let suffix = db.now().timestamp_micros().to_string();
    let email = |name: &str| format!("{name}+{suffix}@example.com");
    let new_user = |name: &str, display: &str| NewUser {
        email: email(name),
        name: display.to_owned(),
    };

    // Seed 000: an MCP platform on the pro plan.
    let alice = db.create_user(&new_user("alice", "Alice Smith"))?;
    let bob = db.create_user(&new_user("bob", "Bob Jones"))?;
    let carol = db.create_user(&new_user("carol", "Carol White"))?;
    let dave = db.create_user(&new_user("dave", "Dave Brown"))?;
    let created = db.create_organization(
        &alice.id,
        &NewOrganization {
            name: "My Company".into(),
            description: Some("Building cool stuff with AI".into()),
            plan: Some("pro".into()),
            settings: Some(OrganizationSettings {
                pin_protection: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    show("create organization", &created);
    let org = created?.organization.id;
    let owner = Actor::user(&alice.id);
    show("add admin", &db.add_member(&owner, &org, &bob.id, "admin"));
    show(
        "add member",
        &db.add_member(&owner, &org, &carol.id, "member"),
    );
    show(
        "add viewer",
        &db.add_member(&owner, &org, &dave.id, "viewer"),
    );
    for name in ["Weather API", "Calculator"] {
        show(
            "register MCP server",
            &db.register_resource(&owner, &org, ResourceKind::Mcp, name),
        );
    }
    show(
        "register API key",
        &db.register_resource(&owner, &org, ResourceKind::ApiKey, "CI key"),
    );
    show("GET /v1/organization", &db.get_organization(&owner, &org));
    show(
        "GET /v1/organization/members?per_page=2",
        &db.list_members(
            &owner,
            &org,
            &MemberQuery {
                per_page: Some(2),
                ..Default::default()
            },
        )
        .map(|p| p.data),
    );
    let page = db.list_members(
        &owner,
        &org,
        &MemberQuery {
            role: Some("ADMIN".into()),
            ..Default::default()
        },
    )?;
    crate::emit("## GET /v1/organization/members?role=admin (200)");
    crate::emit(&serde_json::to_string_pretty(&json::page(&page)).unwrap_or_default());
    show(
        "PATCH /v1/organization",
        &db.update_organization(
            &owner,
            &org,
            &OrganizationPatch {
                name: Some("New Company Name".into()),
                description: Some(Some("Updated description".into())),
                ..Default::default()
            },
        ),
    );
    show(
        "POST /v1/organization/members/invite",
        &db.create_invitation(
            &owner,
            &org,
            &NewInvitation {
                email: email("newuser"),
                role: Some("member".into()),
                ..Default::default()
            },
        ),
    );
    show(
        "PATCH /v1/organization/members/{user_id} as a viewer (forbidden)",
        &db.update_member_role(
            &Actor::user(&dave.id),
            &org,
            &MemberRef::User(carol.id.clone()),
            "admin",
        ),
    );
    show(
        "PATCH /v1/organization/members/{user_id} with a bad role",
        &db.update_member_role(
            &owner,
            &org,
            &MemberRef::User(carol.id.clone()),
            "superuser",
        ),
    );
    show(
        "PATCH /v1/organization/members/{user_id}",
        &db.update_member_role(&owner, &org, &MemberRef::User(carol.id.clone()), "admin"),
    );
    show(
        "DELETE /v1/organization/members/{user_id}",
        &db.remove_member(&owner, &org, &MemberRef::User(dave.id.clone())),
    );
    show(
        "DELETE /v1/organization/members/{unknown}",
        &db.remove_member(&owner, &org, &MemberRef::User("user_missing".into())),
    );

    // Seed 001: an AI platform with addresses, projects and upper-case roles.
    let erin = db.create_user(&new_user("erin", "Erin Green"))?;
    let frank = db.create_user(&new_user("frank", "Frank Black"))?;
    let created = db.create_organization(
        &erin.id,
        &NewOrganization {
            name: "My Organization".into(),
            plan: Some("team".into()),
            address: Address {
                address_line1: Some("123 Main St".into()),
                city: Some("San Francisco".into()),
                state: Some("CA".into()),
                zipcode: Some("94105".into()),
                country: Some("USA".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    show("POST /organizations", &created);
    let org2 = created?.organization.id;
    let erin_actor = Actor::user(&erin.id);
    let project = db.create_project(
        &erin_actor,
        &org2,
        &NewProject {
            name: "Research".into(),
            description: None,
        },
    )?;
    let invite = db.create_invitation(
        &erin_actor,
        &org2,
        &NewInvitation {
            email: frank.email.clone(),
            role: Some("MEMBER".into()),
            project_id: Some(project.id.clone()),
            project_role: Some("ADMIN".into()),
            ..Default::default()
        },
    );
    show("POST /organizations/{id}/invitations", &invite);
    let invite = invite?;
    show(
        "GET invitation by token (accept page)",
        &db.get_invitation_by_token(&invite.token),
    );
    show(
        "accept invitation",
        &db.accept_invitation(&invite.token, &frank.id),
    );
    show(
        "GET /organizations (for Frank)",
        &db.list_organizations_for_user(&frank.id),
    );
    show(
        "GET /organizations/{id}/memberships",
        &db.list_members(&erin_actor, &org2, &MemberQuery::default())
            .map(|p| p.data),
    );
    show(
        "GET /organizations/{id}/invitations",
        &db.list_invitations(&erin_actor, &org2, &InvitationQuery::default())
            .map(|p| p.data),
    );
    show(
        "project members",
        &db.list_project_members(&erin_actor, &org2, &project.id),
    );

    let report = db.check()?;
    crate::emit(&format!("## check: {} problems", report.problems.len()));
    crate::emit(&format!("Database: {}", path.display()));
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
