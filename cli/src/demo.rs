//! `orgdb demo`: both seeds' flows, step by step, as the JSON a host would serve.
//!
//! Seed 000 (an MCP platform): an organization on the pro plan with members in all four
//! roles, MCP servers and an API key, a week of usage across the servers (idempotent retry,
//! quota check, a refused over-quota call), the organization with limits and usage, the
//! usage reports, member lists, role changes and their refusals, the audit log.
//! Seed 001 (an AI platform): an organization with an address, a project, an invitation with
//! a project role that its invitee previews and accepts, and the lists that follow.
//!
//! On a database that already holds a demo, a new run adds another set (emails `alice+2@…`),
//! so it never collides; `--fresh` starts over.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, Utc};
use orgdb::{
    json, Actor, Db, Error, InvitationQuery, MemberQuery, MemberRef, NewInvitation,
    NewOrganization, NewProject, NewUser, OrganizationPatch, OrganizationSettings, Page,
    ResourceKind, UsageEvent, UsageQuery,
};
use serde::Serialize;

use crate::output::{emit, pretty, to_value, Format, Out, View};
use crate::table;

/// Prints one step: a heading with the HTTP status a host would answer, then the envelope
/// (or a table).
fn show<T: Serialize>(out: Out, step: &str, result: &orgdb::Result<T>) {
    let (status, body) = json::respond(result);
    emit(&format!("## {step} ({status})"));
    match (out.format, result) {
        (Format::Json, _) => emit(&pretty(&body)),
        (Format::Table, Ok(value)) => {
            let text = table::render(&to_value(value), View::Record);
            emit(text.trim_end());
        }
        (Format::Table, Err(err)) => {
            emit(&format!("error: {}: {}", err.code(), err.message()));
            for (field, value) in err.details() {
                emit(&format!(
                    "  {field}: {}",
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned)
                ));
            }
        }
    }
}

fn show_page<T: Serialize>(out: Out, step: &str, page: &Page<T>) {
    emit(&format!("## {step} (200)"));
    match out.format {
        Format::Json => emit(&pretty(&json::page(page))),
        Format::Table => out.page(page, &[]),
    }
}

/// Deletes the database (and its usage journal), but only if it opens as an orgdb database:
/// a mistyped `--db` never deletes another file.
fn reset(path: &Path) -> orgdb::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    drop(Db::open(path).map_err(|e| Error::Storage {
        message: format!(
            "refusing to delete {}: it does not open as an orgdb database ({}: {})",
            path.display(),
            e.code(),
            e.message()
        ),
    })?);
    let journal = crate::commands::maintenance::journal_path(path);
    for file in [path, journal.as_path()] {
        if file.exists() {
            std::fs::remove_file(file).map_err(|e| Error::Storage {
                message: format!("removing {}: {e}", file.display()),
            })?;
        }
    }
    Ok(())
}

/// `""` for the first demo in this database, `"+2"`, `"+3"`… after that.
fn run_tag(db: &Db) -> orgdb::Result<String> {
    for run in 1u32.. {
        let tag = if run == 1 {
            String::new()
        } else {
            format!("+{run}")
        };
        match db.find_user_by_email(&format!("alice{tag}@example.com")) {
            Ok(_) => continue,
            Err(e) if e.code() == "not_found" => return Ok(tag),
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 runs out long after the disk")
}

pub(crate) fn run(path: &Path, fresh: bool, out: Out) -> orgdb::Result<ExitCode> {
    if fresh {
        reset(path)?;
    }
    let db = Db::open(path)?;
    let tag = run_tag(&db)?;
    if !tag.is_empty() {
        emit(&format!(
            "## note: {} already holds a demo; adding another set (emails alice{tag}@example.com…). \
             Use `orgdb demo --fresh` to start over.",
            path.display()
        ));
    }
    let new_user = |name: &str, display: &str| NewUser {
        email: format!("{name}{tag}@example.com"),
        name: display.to_owned(),
    };

    // Seed 000: an MCP platform on the pro plan.
    let alice = db.create_user(&new_user("alice", "Alice Smith"));
    show(out, "create user", &alice);
    let alice = alice?;
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
    show(out, "create organization (owner: Alice)", &created);
    let created = created?;
    let org = created.organization.id;
    let slug = created.organization.slug;
    let owner = Actor::user(&alice.id);
    show(
        out,
        "add admin",
        &db.add_member(&owner, &org, &bob.id, "admin"),
    );
    show(
        out,
        "add member",
        &db.add_member(&owner, &org, &carol.id, "member"),
    );
    show(
        out,
        "add viewer",
        &db.add_member(&owner, &org, &dave.id, "viewer"),
    );
    db.touch_user(&bob.id)?;

    let mut servers = Vec::new();
    for name in ["Weather API", "Calculator", "Web Search"] {
        let registered = db.register_resource(&owner, &org, ResourceKind::Mcp, name);
        show(out, "register MCP server", &registered);
        servers.push(registered?);
    }
    show(
        out,
        "register API key",
        &db.register_resource(&owner, &org, ResourceKind::ApiKey, "CI key"),
    );

    // A week of traffic across the three servers, recorded late (`at` in the past), one
    // batch per day, each event with an idempotency key a host would retry with.
    let now = db.now();
    let mut last_event = None;
    for days_ago in (0..7i64).rev() {
        let at: DateTime<Utc> = now - TimeDelta::days(days_ago) - TimeDelta::minutes(1);
        let day = at.format("%Y-%m-%d");
        let weight = 7 - days_ago as u64;
        let mut events = vec![
            UsageEvent::new(120 + 35 * weight)
                .resource(&servers[0].id)
                .at(at)
                .key(format!("{day}-weather")),
            UsageEvent::new(40 + 12 * weight)
                .resource(&servers[1].id)
                .at(at)
                .key(format!("{day}-calculator")),
            UsageEvent::new(15)
                .at(at)
                .key(format!("{day}-unattributed")),
        ];
        if days_ago % 2 == 0 {
            events.push(
                UsageEvent::new(60 + 9 * weight)
                    .resource(&servers[2].id)
                    .at(at)
                    .key(format!("{day}-search")),
            );
        }
        let receipts = db.record_usage_batch(&org, &events);
        if days_ago == 6 {
            show(
                out,
                "record usage: one day's batch (3 MCP servers and unattributed requests), 6 days ago",
                &receipts,
            );
        }
        receipts?;
        last_event = events.into_iter().next();
    }
    if let Some(event) = last_event {
        show(
            out,
            "record usage again with the same idempotency key (counted once)",
            &db.record_usage(&org, &event),
        );
    }
    show(
        out,
        "check quota for 1000 more requests",
        &db.check_quota(&org, 1_000),
    );
    show(
        out,
        "record 50000 requests (over the monthly limit: nothing is recorded)",
        &db.record_usage(&org, &UsageEvent::new(50_000)),
    );

    show(
        out,
        "GET /v1/organization",
        &db.get_organization(&owner, &org),
    );
    show(
        out,
        "GET /v1/organization/usage?period=month",
        &db.usage_report(&owner, &org, &UsageQuery::default()),
    );
    let week_ago = (now - TimeDelta::days(6)).date_naive();
    show(
        out,
        &format!(
            "GET /v1/organization/usage?start_date={week_ago}&end_date={}",
            now.date_naive()
        ),
        &db.usage_report(
            &owner,
            &org,
            &UsageQuery {
                start_date: Some(week_ago),
                end_date: Some(now.date_naive()),
                ..Default::default()
            },
        ),
    );

    let page = db.list_members(
        &owner,
        &org,
        &MemberQuery {
            per_page: Some(2),
            ..Default::default()
        },
    )?;
    show_page(out, "GET /v1/organization/members?per_page=2", &page);
    let page = db.list_members(
        &owner,
        &org,
        &MemberQuery {
            role: Some("ADMIN".into()),
            ..Default::default()
        },
    )?;
    show_page(out, "GET /v1/organization/members?role=admin", &page);
    show(
        out,
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
        out,
        "POST /v1/organization/members/invite",
        &db.create_invitation(
            &owner,
            &org,
            &NewInvitation {
                email: format!("newuser{tag}@example.com"),
                role: Some("member".into()),
                ..Default::default()
            },
        ),
    );
    show(
        out,
        "PATCH /v1/organization/members/{user_id} as a viewer (forbidden)",
        &db.update_member_role(
            &Actor::user(&dave.id),
            &org,
            &MemberRef::User(carol.id.clone()),
            "admin",
        ),
    );
    show(
        out,
        "PATCH /v1/organization/members/{user_id} with a bad role",
        &db.update_member_role(
            &owner,
            &org,
            &MemberRef::User(carol.id.clone()),
            "superuser",
        ),
    );
    show(
        out,
        "PATCH /v1/organization/members/{user_id} as an admin, to owner (forbidden)",
        &db.update_member_role(
            &Actor::user(&bob.id),
            &org,
            &MemberRef::User(carol.id.clone()),
            "owner",
        ),
    );
    show(
        out,
        "PATCH /v1/organization/members/{user_id}",
        &db.update_member_role(&owner, &org, &MemberRef::User(carol.id.clone()), "admin"),
    );
    show(
        out,
        "DELETE /v1/organization/members/{user_id}",
        &db.remove_member(&owner, &org, &MemberRef::User(dave.id.clone())),
    );
    show(
        out,
        "DELETE /v1/organization/members/{unknown}",
        &db.remove_member(&owner, &org, &MemberRef::User("user_missing".into())),
    );
    show(
        out,
        "leave as the last owner (conflict)",
        &db.leave_organization(&alice.id, &org),
    );
    let log = db.audit_log(&owner, &org, 0, 1_000).map(|mut events| {
        let keep = events.len().saturating_sub(4);
        events.split_off(keep)
    });
    show(out, "audit log (the last 4 events)", &log);

    // Seed 001: an AI platform with addresses, projects and upper-case roles.
    let erin = db.create_user(&new_user("erin", "Erin Green"))?;
    let frank = db.create_user(&new_user("frank", "Frank Black"))?;
    let created = db.create_organization(
        &erin.id,
        &NewOrganization {
            name: "My Organization".into(),
            plan: Some("team".into()),
            address_line1: Some("123 Main St".into()),
            city: Some("San Francisco".into()),
            state: Some("CA".into()),
            zipcode: Some("94105".into()),
            country: Some("USA".into()),
            ..Default::default()
        },
    );
    show(out, "POST /organizations", &created);
    let org2 = created?.organization.id;
    let erin_actor = Actor::user(&erin.id);
    let project = db.create_project(
        &erin_actor,
        &org2,
        &NewProject {
            name: "Research".into(),
            description: Some("Model evaluations".into()),
        },
    );
    show(out, "POST /organizations/{id}/projects", &project);
    let project = project?;
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
    show(
        out,
        "POST /organizations/{id}/invitations (with a project role)",
        &invite,
    );
    let invite = invite?;
    show(
        out,
        "GET invitation by token (accept page)",
        &db.get_invitation_by_token(&invite.token),
    );
    show(
        out,
        "GET /invitations for Frank's email",
        &db.list_invitations_for_email(&frank.email),
    );
    show(
        out,
        "accept invitation as another user (forbidden)",
        &db.accept_invitation(&invite.token, &erin.id),
    );
    show(
        out,
        "accept invitation",
        &db.accept_invitation(&invite.token, &frank.id),
    );
    show(
        out,
        "GET /organizations (for Frank)",
        &db.list_organizations_for_user(&frank.id),
    );
    show(
        out,
        "GET /organizations/{id}/memberships",
        &db.list_members(&erin_actor, &org2, &MemberQuery::default())
            .map(|p| p.data),
    );
    show(
        out,
        "GET /organizations/{id}/invitations",
        &db.list_invitations(&erin_actor, &org2, &InvitationQuery::default())
            .map(|p| p.data),
    );
    show(
        out,
        "GET /organizations/{id}/projects/{id}/members",
        &db.list_project_members(&erin_actor, &org2, &project.id),
    );

    let report = db.check()?;
    emit(&format!("## check: {} problems", report.problems.len()));
    for problem in &report.problems {
        emit(&format!("  {problem}"));
    }
    let db_flag = format!("--db {}", path.display());
    emit(&format!("Database: {}", path.display()));
    emit(&format!(
        "Next: orgdb {db_flag} members list {slug} --format table\n      \
         orgdb {db_flag} usage report {slug} --format table\n      \
         orgdb {db_flag} --as {} audit {slug} --format table",
        alice.email
    ));
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_CHECK_FAILED)
    })
}
