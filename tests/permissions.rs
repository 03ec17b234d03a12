//! The permission matrix of SPEC section 3, one table: every action is tried by a viewer, a
//! member, an admin, an owner, a user who is not a member, and `Actor::System`, each on a
//! fresh database, through the real `Db` method.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use orgdb::{
    Actor, Db, InvitationQuery, LimitOverrides, MemberQuery, MemberRef, NewInvitation, NewProject,
    OrganizationPatch, OrganizationSettings, Permissions, ProjectPatch, ResourceKind, User,
};

/// What one actor should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exp {
    /// Allowed: `Ok`.
    Ok,
    /// Refused with this error code.
    Err(&'static str),
    /// Does not apply to this actor.
    Na,
}

const Y: Exp = Exp::Ok;
const F: Exp = Exp::Err("forbidden");
const C: Exp = Exp::Err("conflict");
const NF: Exp = Exp::Err("not_found");
const NA: Exp = Exp::Na;

/// Column order of every expectation row.
const WHO: [&str; 6] = ["viewer", "member", "admin", "owner", "non-member", "system"];

/// Any membership reads; `Actor::System` is never checked.
const READ: [Exp; 6] = [Y, Y, Y, Y, F, Y];
/// Admins and owners.
const ADMIN: [Exp; 6] = [F, F, Y, Y, F, Y];
/// Owners only.
const OWNER: [Exp; 6] = [F, F, F, Y, F, Y];

/// One organization on the `team` plan with one user per role, plus the things the actions
/// act on.
struct Fx {
    org: String,
    viewer: User,
    member: User,
    admin: User,
    owner: User,
    outsider: User,
    /// A second owner (only when the case asks for one).
    co_owner: Option<User>,
    /// A `member`, in no project: the target of role changes, removal, transfer.
    target: User,
    /// A `member` who is a `member` of `project`.
    proj_member: User,
    /// A user who exists and belongs to no organization.
    spare: User,
    project: String,
    resource: String,
    invitation: String,
}

impl Fx {
    fn actor(&self, column: usize) -> Actor {
        match column {
            0 => actor(&self.viewer),
            1 => actor(&self.member),
            2 => actor(&self.admin),
            3 => actor(&self.owner),
            4 => actor(&self.outsider),
            _ => Actor::System,
        }
    }

    fn co_owner(&self) -> &User {
        self.co_owner.as_ref().expect("case needs co_owner: true")
    }
}

fn fixture(db: &Db, co_owner: bool) -> Fx {
    let (org, owner) = org(db, "Acme", "team");
    let sys = Actor::System;
    let add = |name: &str, role: &str| {
        let u = user(db, name);
        db.add_member(&sys, &org, &u.id, role).unwrap();
        u
    };
    let viewer = add("Vera Viewer", "viewer");
    let member = add("Max Member", "member");
    let admin = add("Ada Admin", "admin");
    let target = add("Tom Target", "member");
    let proj_member = add("Pia Project", "member");
    let co_owner = co_owner.then(|| add("Olga Coowner", "owner"));
    let outsider = user(db, "Otto Outsider");
    let spare = user(db, "Sam Spare");
    let project = db
        .create_project(
            &sys,
            &org,
            &NewProject {
                name: "Apollo".into(),
                description: None,
            },
        )
        .unwrap()
        .id;
    db.add_project_member(
        &sys,
        &org,
        &project,
        &proj_member.id,
        Some(orgdb::Role::Member.into()),
    )
    .unwrap();
    let resource = db
        .register_resource(&sys, &org, ResourceKind::Mcp, "Search MCP")
        .unwrap()
        .id;
    let invitation = db
        .create_invitation(&sys, &org, &invite("pending@example.com", "member"))
        .unwrap()
        .invite_id;
    Fx {
        org,
        viewer,
        member,
        admin,
        owner,
        outsider,
        co_owner,
        target,
        proj_member,
        spare,
        project,
        resource,
        invitation,
    }
}

fn invite(email: &str, role: &str) -> NewInvitation {
    NewInvitation {
        email: email.into(),
        role: Some(role.into()),
        ..Default::default()
    }
}

fn by_user(u: &User) -> MemberRef {
    MemberRef::User(u.id.clone())
}

type Run = fn(&Db, &Fx, &Actor) -> orgdb::Result<()>;

struct Case {
    action: &'static str,
    /// Whether the fixture has a second owner.
    co_owner: bool,
    /// Whether a success must append to the audit log (reads must not).
    mutates: bool,
    run: Run,
    expect: [Exp; 6],
}

fn read(action: &'static str, expect: [Exp; 6], run: Run) -> Case {
    Case {
        action,
        co_owner: false,
        mutates: false,
        run,
        expect,
    }
}

fn write(action: &'static str, expect: [Exp; 6], run: Run) -> Case {
    Case {
        action,
        co_owner: false,
        mutates: true,
        run,
        expect,
    }
}

fn write2(action: &'static str, expect: [Exp; 6], run: Run) -> Case {
    Case {
        co_owner: true,
        ..write(action, expect, run)
    }
}

/// Leaving is done by a user, not on behalf of one: the actor's own id leaves.
fn leave(db: &Db, fx: &Fx, a: &Actor) -> orgdb::Result<()> {
    match a {
        Actor::User(id) => db.leave_organization(id, &fx.org).map(|_| ()),
        Actor::System => unreachable!("leave does not apply to Actor::System"),
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // Reads: any membership.
        read("read organization", READ, |db, fx, a| db.get_organization(a, &fx.org).map(|_| ())),
        read("list members", READ, |db, fx, a| {
            db.list_members(a, &fx.org, &MemberQuery::default()).map(|_| ())
        }),
        read("get member", READ, |db, fx, a| db.get_member(a, &fx.org, &by_user(&fx.target)).map(|_| ())),
        read("list projects", READ, |db, fx, a| db.list_projects(a, &fx.org).map(|_| ())),
        read("get project", READ, |db, fx, a| db.get_project(a, &fx.org, &fx.project).map(|_| ())),
        read("list project members", READ, |db, fx, a| {
            db.list_project_members(a, &fx.org, &fx.project).map(|_| ())
        }),
        read("list resources", READ, |db, fx, a| db.list_resources(a, &fx.org, None).map(|_| ())),
        // SPEC is silent on who reads the audit log; the code allows admins and owners.
        read("audit log", ADMIN, |db, fx, a| db.audit_log(a, &fx.org, 0, 100).map(|_| ())),
        // Organization details and settings.
        write("update organization", ADMIN, |db, fx, a| {
            let patch = OrganizationPatch { name: Some("Acme Renamed".into()), ..Default::default() };
            db.update_organization(a, &fx.org, &patch).map(|_| ())
        }),
        write("update settings", ADMIN, |db, fx, a| {
            let settings = OrganizationSettings { pin_protection: true, ..Default::default() };
            db.update_settings(a, &fx.org, &settings).map(|_| ())
        }),
        // Invitations.
        read("list invitations", ADMIN, |db, fx, a| {
            db.list_invitations(a, &fx.org, &InvitationQuery::default()).map(|_| ())
        }),
        read("get invitation", ADMIN, |db, fx, a| db.get_invitation(a, &fx.org, &fx.invitation).map(|_| ())),
        write("create invitation (member)", ADMIN, |db, fx, a| {
            db.create_invitation(a, &fx.org, &invite("new@example.com", "member")).map(|_| ())
        }),
        write("create invitation (admin)", ADMIN, |db, fx, a| {
            db.create_invitation(a, &fx.org, &invite("new@example.com", "admin")).map(|_| ())
        }),
        write("create invitation (owner)", OWNER, |db, fx, a| {
            db.create_invitation(a, &fx.org, &invite("new@example.com", "owner")).map(|_| ())
        }),
        write("create invitations (bulk)", ADMIN, |db, fx, a| {
            let batch = [invite("one@example.com", "member"), invite("two@example.com", "viewer")];
            db.create_invitations(a, &fx.org, &batch).map(|_| ())
        }),
        write("revoke invitation", ADMIN, |db, fx, a| db.revoke_invitation(a, &fx.org, &fx.invitation).map(|_| ())),
        write("resend invitation", ADMIN, |db, fx, a| db.resend_invitation(a, &fx.org, &fx.invitation).map(|_| ())),
        // Members.
        write("add member (member)", ADMIN, |db, fx, a| db.add_member(a, &fx.org, &fx.spare.id, "member").map(|_| ())),
        write("add member (admin)", ADMIN, |db, fx, a| db.add_member(a, &fx.org, &fx.spare.id, "admin").map(|_| ())),
        write("add member (owner)", OWNER, |db, fx, a| db.add_member(a, &fx.org, &fx.spare.id, "owner").map(|_| ())),
        write("change role member -> viewer", ADMIN, |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(&fx.target), "viewer").map(|_| ())
        }),
        write("change role member -> admin", ADMIN, |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(&fx.target), "admin").map(|_| ())
        }),
        write("change role member -> owner (grant owner)", OWNER, |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(&fx.target), "owner").map(|_| ())
        }),
        write("change role by membership id", ADMIN, |db, fx, a| {
            let m = db.get_member(&Actor::System, &fx.org, &by_user(&fx.target))?;
            db.update_member_role(a, &fx.org, &MemberRef::Membership(m.membership_id), "viewer").map(|_| ())
        }),
        write2("change an owner's role (co-owner -> admin)", OWNER, |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(fx.co_owner()), "admin").map(|_| ())
        }),
        write2("owner steps down while another owner remains", OWNER, |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(&fx.owner), "admin").map(|_| ())
        }),
        write("demote the last owner", [F, F, F, C, F, C], |db, fx, a| {
            db.update_member_role(a, &fx.org, &by_user(&fx.owner), "admin").map(|_| ())
        }),
        write("remove a member", ADMIN, |db, fx, a| db.remove_member(a, &fx.org, &by_user(&fx.target)).map(|_| ())),
        write2("remove an owner (co-owner)", OWNER, |db, fx, a| {
            db.remove_member(a, &fx.org, &by_user(fx.co_owner())).map(|_| ())
        }),
        write("remove the last owner", [F, F, F, C, F, C], |db, fx, a| {
            db.remove_member(a, &fx.org, &by_user(&fx.owner)).map(|_| ())
        }),
        write("leave (sole owner)", [Y, Y, Y, C, NF, NA], leave),
        write2("leave (another owner remains)", [Y, Y, Y, Y, NF, NA], leave),
        // Projects and project members.
        write("create project", ADMIN, |db, fx, a| {
            db.create_project(a, &fx.org, &NewProject { name: "Gemini".into(), description: None }).map(|_| ())
        }),
        write("update project", ADMIN, |db, fx, a| {
            let patch = ProjectPatch { name: Some("Apollo 2".into()), ..Default::default() };
            db.update_project(a, &fx.org, &fx.project, &patch).map(|_| ())
        }),
        write("delete project", ADMIN, |db, fx, a| db.delete_project(a, &fx.org, &fx.project)),
        write("add project member", ADMIN, |db, fx, a| {
            db.add_project_member(a, &fx.org, &fx.project, &fx.target.id, Some(orgdb::Role::Member.into())).map(|_| ())
        }),
        write("change project member role", ADMIN, |db, fx, a| {
            db.update_project_member_role(a, &fx.org, &fx.project, &fx.proj_member.id, "viewer").map(|_| ())
        }),
        write("remove project member", ADMIN, |db, fx, a| {
            db.remove_project_member(a, &fx.org, &fx.project, &fx.proj_member.id)
        }),
        // Resources.
        write("register resource (mcp)", ADMIN, |db, fx, a| {
            db.register_resource(a, &fx.org, ResourceKind::Mcp, "Docs MCP").map(|_| ())
        }),
        write("rename resource", ADMIN, |db, fx, a| db.rename_resource(a, &fx.org, &fx.resource, "Renamed").map(|_| ())),
        write("remove resource", ADMIN, |db, fx, a| db.remove_resource(a, &fx.org, &fx.resource).map(|_| ())),
        // Owner-only actions.
        write("transfer ownership", OWNER, |db, fx, a| db.transfer_ownership(a, &fx.org, &fx.target.id).map(|_| ())),
        write2("transfer ownership to an owner", [F, F, F, C, F, C], |db, fx, a| {
            db.transfer_ownership(a, &fx.org, &fx.co_owner().id).map(|_| ())
        }),
        write("set plan", OWNER, |db, fx, a| db.set_plan(a, &fx.org, "enterprise").map(|_| ())),
        write("delete organization", OWNER, |db, fx, a| db.delete_organization(a, &fx.org)),
        // `set_limit_overrides(Actor::System, …)`: the host's billing only.
        write("set limit overrides", [F, F, F, F, F, Y], |db, fx, a| {
            let o = LimitOverrides { mcps: Some(orgdb::Limit::Count(7)), ..Default::default() };
            db.set_limit_overrides(a, &fx.org, &o.into()).map(|_| ())
        }),
    ]
}

/// Audit events of the organization, read by the host (works after a delete too).
fn audit_len(db: &Db, org: &str) -> usize {
    db.audit_log(&Actor::System, org, 0, 1000).unwrap().len()
}

/// Runs one action as one actor on a fresh database and checks the outcome and what was
/// written.
fn check(case: &Case, column: usize) {
    let expect = case.expect[column];
    let (db, _clock) = db();
    let fx = fixture(&db, case.co_owner);
    let who = fx.actor(column);
    let audit_before = audit_len(&db, &fx.org);
    let stats_before = db.stats().unwrap();

    let result = (case.run)(&db, &fx, &who);

    let audit_after = audit_len(&db, &fx.org);
    match expect {
        Exp::Ok => {
            assert!(result.is_ok(), "expected Ok, got {result:?}");
            if case.mutates {
                assert!(
                    audit_after > audit_before,
                    "a successful change wrote no audit event"
                );
            } else {
                assert_eq!(audit_after, audit_before, "a read wrote audit events");
                assert_eq!(db.stats().unwrap(), stats_before, "a read wrote rows");
            }
        }
        Exp::Err(code) => {
            assert_err(result, code, None);
            assert_eq!(
                audit_after, audit_before,
                "a refused call wrote audit events"
            );
            assert_eq!(
                db.stats().unwrap(),
                stats_before,
                "a refused call wrote rows"
            );
        }
        Exp::Na => unreachable!(),
    }
    assert_sound(&db);
}

#[test]
fn permission_matrix() {
    let cases = cases();
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        for (column, expect) in case.expect.iter().enumerate() {
            if *expect == Exp::Na {
                continue;
            }
            runs += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| check(case, column)));
            if let Err(panic) = outcome {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{} as {} (expected {:?}): {}",
                    case.action, WHO[column], expect, msg
                ));
            }
        }
    }
    assert!(runs > 250, "the table shrank: {runs} runs");
    assert!(
        failures.is_empty(),
        "{} of {runs} permission checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What `Db::permissions` must say about each case of the table: the matrix action the call
/// checks, and the role it grants or acts on where one decides.
#[rustfmt::skip]
fn predicted(action: &str) -> Option<fn(&Permissions) -> bool> {
    use orgdb::Action as A;
    use orgdb::Role as R;
    let f: fn(&Permissions) -> bool = match action {
        "read organization" | "list members" | "get member" | "list projects" | "get project"
        | "list project members" | "list resources" => |p| p.allows(A::ReadOrganization),
        "audit log" => |p| p.allows(A::ReadAudit),
        "update organization" | "update settings" => |p| p.allows(A::UpdateOrganization),
        "list invitations" | "get invitation" | "revoke invitation" | "resend invitation" => {
            |p| p.allows(A::ManageInvitations)
        }
        "create invitation (member)" | "create invitations (bulk)" => {
            |p| p.allows(A::ManageInvitations) && p.grantable_roles.contains(&R::Member)
        }
        "create invitation (admin)" => {
            |p| p.allows(A::ManageInvitations) && p.grantable_roles.contains(&R::Admin)
        }
        "create invitation (owner)" => {
            |p| p.allows(A::ManageInvitations) && p.grantable_roles.contains(&R::Owner)
        }
        "add member (member)" => |p| p.allows(A::AddMember) && p.grantable_roles.contains(&R::Member),
        "add member (admin)" => |p| p.allows(A::AddMember) && p.grantable_roles.contains(&R::Admin),
        "add member (owner)" => |p| p.allows(A::AddMember) && p.grantable_roles.contains(&R::Owner),
        "change role member -> viewer" | "change role by membership id" => |p| {
            p.allows(A::ChangeRole) && p.manageable_roles.contains(&R::Member)
                && p.grantable_roles.contains(&R::Viewer)
        },
        "change role member -> admin" => |p| {
            p.allows(A::ChangeRole) && p.manageable_roles.contains(&R::Member)
                && p.grantable_roles.contains(&R::Admin)
        },
        "change role member -> owner (grant owner)" => |p| {
            p.allows(A::ChangeRole) && p.manageable_roles.contains(&R::Member)
                && p.grantable_roles.contains(&R::Owner)
        },
        "change an owner's role (co-owner -> admin)" | "owner steps down while another owner remains"
        | "demote the last owner" => |p| p.allows(A::ChangeRole) && p.manageable_roles.contains(&R::Owner),
        "remove a member" => |p| p.allows(A::RemoveMember) && p.manageable_roles.contains(&R::Member),
        "remove an owner (co-owner)" | "remove the last owner" => {
            |p| p.allows(A::RemoveMember) && p.manageable_roles.contains(&R::Owner)
        }
        "leave (sole owner)" | "leave (another owner remains)" => |p| p.allows(A::LeaveOrganization),
        "create project" | "update project" | "delete project" | "add project member"
        | "change project member role" | "remove project member" => |p| p.allows(A::ManageProjects),
        "register resource (mcp)" | "rename resource" | "remove resource" => |p| p.allows(A::ManageResources),
        "transfer ownership" | "transfer ownership to an owner" => |p| p.allows(A::TransferOwnership),
        "set plan" => |p| p.allows(A::ChangePlan),
        "delete organization" => |p| p.allows(A::DeleteOrganization),
        // Not a matrix action: the host's billing only (`Actor::System`).
        "set limit overrides" => return None,
        other => panic!("no prediction for {other:?}: add one"),
    };
    Some(f)
}

/// `Db::permissions` agrees with what every call of the table does: where it says an action
/// (with its role) is allowed, the call is not `forbidden`; where it says not, the call is
/// refused (`forbidden`, or `conflict` where a relational rule decides, such as the last
/// owner leaving). A non-member asking is `forbidden`; `Actor::System` may do everything but
/// leave.
#[test]
fn permissions_agree_with_what_every_call_does() {
    let mut checked = 0;
    for case in cases() {
        let Some(predict) = predicted(case.action) else {
            continue;
        };
        let (db, _clock) = db();
        let fx = fixture(&db, case.co_owner);
        for (column, expect) in case.expect.iter().enumerate() {
            let who = fx.actor(column);
            if column == 4 {
                assert_err(db.permissions(&who, &fx.org), "forbidden", None);
                continue;
            }
            let p = db.permissions(&who, &fx.org).unwrap();
            let allowed = predict(&p);
            let ok = match (allowed, expect) {
                (_, Exp::Na) => continue,
                (true, Exp::Ok | Exp::Err("conflict")) => true,
                (false, Exp::Err("forbidden" | "conflict")) => true,
                _ => false,
            };
            assert!(
                ok,
                "{} as {}: permissions say {allowed} ({p:?}), the call gives {expect:?}",
                case.action, WHO[column]
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "the table shrank: {checked} checks");

    // The answer itself, role by role.
    let (db, _clock) = db();
    let fx = fixture(&db, false);
    let system = db.permissions(&Actor::System, &fx.org).unwrap();
    assert_eq!(system.role, None);
    assert_eq!(system.actions.len(), orgdb::Action::ALL.len() - 1);
    assert!(!system.allows(orgdb::Action::LeaveOrganization));
    assert_eq!(system.grantable_roles, orgdb::Role::ALL);
    let viewer = db.permissions(&actor(&fx.viewer), &fx.org).unwrap();
    assert_eq!(viewer.role, Some(orgdb::Role::Viewer));
    assert_eq!(
        viewer.actions,
        [
            orgdb::Action::ReadOrganization,
            orgdb::Action::LeaveOrganization
        ]
    );
    assert!(viewer.grantable_roles.is_empty() && viewer.manageable_roles.is_empty());
    assert_eq!(
        serde_json::to_value(&viewer).unwrap(),
        serde_json::json!({
            "organization_id": fx.org,
            "role": "viewer",
            "actions": ["read_organization", "leave_organization"],
            "grantable_roles": [],
            "manageable_roles": [],
        })
    );
    assert_err(
        db.permissions(&Actor::System, "org_missing"),
        "not_found",
        None,
    );
    // A second owner lets the first one leave.
    db.add_member(&Actor::System, &fx.org, &fx.spare.id, "owner")
        .unwrap();
    let owner = db.permissions(&actor(&fx.owner), &fx.org).unwrap();
    assert!(owner.allows(orgdb::Action::LeaveOrganization));
    assert_eq!(owner.actions.len(), orgdb::Action::ALL.len());
}
