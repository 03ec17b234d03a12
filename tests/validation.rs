//! Input rules of SPEC section 6, one table: each bad input is `validation_error` naming the
//! field and writes nothing; each boundary value just inside a rule is accepted. Then email
//! normalization, derived slugs and taken slugs.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use orgdb::{
    Actor, Db, InvitationQuery, MemberQuery, MemberRef, NewInvitation, NewOrganization, NewProject,
    NewUser, OrganizationPatch, ProjectPatch, ResourceKind, User, UserPatch,
};

const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

/// What a case should give.
#[derive(Debug, Clone, Copy)]
enum Exp {
    /// `validation_error` whose `details` names every one of these fields.
    Invalid(&'static [&'static str]),
    /// Another error code, with a field its `details` must name.
    Err(&'static str, Option<&'static str>),
    /// Accepted.
    Ok,
}

use Exp::{Invalid, Ok as Accepted};

const FORBIDDEN: Exp = Exp::Err("forbidden", None);

/// An organization "Acme" (slug `acme`, plan `team`) with an owner, an admin, a viewer and a
/// member, one project and one resource; and a second organization "Beta" of the same owner.
struct Fx {
    org: String,
    other_org: String,
    owner: User,
    admin: User,
    viewer: User,
    target: User,
    outsider: User,
    project: String,
    resource: String,
}

impl Fx {
    fn owner(&self) -> Actor {
        actor(&self.owner)
    }
}

fn fixture(db: &Db) -> Fx {
    let (org, owner) = org(db, "Acme", "team");
    let other_org = db
        .create_organization(
            &owner.id,
            &NewOrganization {
                name: "Beta".into(),
                plan: Some("team".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .organization
        .id;
    let sys = Actor::System;
    let add = |name: &str, role: &str| {
        let u = user(db, name);
        db.add_member(&sys, &org, &u.id, role).unwrap();
        u
    };
    let admin = add("Ada Admin", "admin");
    let viewer = add("Vera Viewer", "viewer");
    let target = add("Tom Target", "member");
    let outsider = user(db, "Otto Outsider");
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
    let resource = db
        .register_resource(&sys, &org, ResourceKind::Mcp, "Search MCP")
        .unwrap()
        .id;
    Fx {
        org,
        other_org,
        owner,
        admin,
        viewer,
        target,
        outsider,
        project,
        resource,
    }
}

fn s(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn meta(keys: usize) -> BTreeMap<String, String> {
    (0..keys)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect()
}

fn create_user(db: &Db, email: &str, name: &str) -> orgdb::Result<()> {
    db.create_user(&NewUser {
        email: email.into(),
        name: name.into(),
    })
    .map(|_| ())
}

fn create_org(db: &Db, fx: &Fx, new: NewOrganization) -> orgdb::Result<()> {
    db.create_organization(&fx.owner.id, &new).map(|_| ())
}

fn named(name: &str) -> NewOrganization {
    NewOrganization {
        name: name.into(),
        plan: Some("team".into()),
        ..Default::default()
    }
}

fn slugged(slug: &str) -> NewOrganization {
    NewOrganization {
        slug: Some(slug.into()),
        ..named("Some Org")
    }
}

fn patch_org(db: &Db, fx: &Fx, a: &Actor, patch: OrganizationPatch) -> orgdb::Result<()> {
    db.update_organization(a, &fx.org, &patch).map(|_| ())
}

fn name_patch(name: &str) -> OrganizationPatch {
    OrganizationPatch {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn slug_patch(slug: &str) -> OrganizationPatch {
    OrganizationPatch {
        slug: Some(slug.into()),
        ..Default::default()
    }
}

fn invite(db: &Db, fx: &Fx, a: &Actor, new: NewInvitation) -> orgdb::Result<()> {
    db.create_invitation(a, &fx.org, &new).map(|_| ())
}

fn inv(email: &str) -> NewInvitation {
    NewInvitation {
        email: email.into(),
        ..Default::default()
    }
}

fn inv_lifetime(secs: u64) -> NewInvitation {
    NewInvitation {
        expires_in: Some(std::time::Duration::from_secs(secs)),
        ..inv("new@example.com")
    }
}

fn members(
    db: &Db,
    fx: &Fx,
    a: &Actor,
    page: Option<u32>,
    per_page: Option<u32>,
) -> orgdb::Result<()> {
    let q = MemberQuery {
        page,
        per_page,
        ..Default::default()
    };
    db.list_members(a, &fx.org, &q).map(|_| ())
}

fn invitations(db: &Db, fx: &Fx, page: Option<u32>, per_page: Option<u32>) -> orgdb::Result<()> {
    let q = InvitationQuery {
        page,
        per_page,
        ..Default::default()
    };
    db.list_invitations(&fx.owner(), &fx.org, &q).map(|_| ())
}

type Run = fn(&Db, &Fx) -> orgdb::Result<()>;

struct Case {
    name: &'static str,
    run: Run,
    expect: Exp,
}

fn case(name: &'static str, expect: Exp, run: Run) -> Case {
    Case { name, run, expect }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // Names: 1–200 characters after trimming, no control characters.
        case("user name empty", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "")),
        case("user name blank", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "   \t ")),
        case("user name 201 chars", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", &s('a', 201))),
        case("user name 201 multibyte chars", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", &s('é', 201))),
        case("user name with NUL", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "Al\u{0}ice")),
        case("user name with BEL", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "Al\u{7}ice")),
        case("user name with newline", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "Al\nice")),
        case("user name with DEL", Invalid(&["name"]), |db, _| create_user(db, "a@example.com", "Al\u{7f}ice")),
        case("user name 1 char", Accepted, |db, _| create_user(db, "a@example.com", "A")),
        case("user name 200 chars", Accepted, |db, _| create_user(db, "a@example.com", &s('a', 200))),
        case("user name 200 multibyte chars", Accepted, |db, _| create_user(db, "a@example.com", &s('é', 200))),
        case("user name 200 chars plus padding", Accepted, |db, _| {
            create_user(db, "a@example.com", &format!("  {}  ", s('a', 200)))
        }),
        case("update_user name empty", Invalid(&["name"]), |db, fx| {
            db.update_user(&fx.target.id, &UserPatch { name: Some(" ".into()), email: None }).map(|_| ())
        }),
        case("organization name empty", Invalid(&["name"]), |db, fx| create_org(db, fx, named(""))),
        case("organization name 201 chars", Invalid(&["name"]), |db, fx| create_org(db, fx, named(&s('x', 201)))),
        case("organization name with control char", Invalid(&["name"]), |db, fx| create_org(db, fx, named("Ac\u{1b}me"))),
        case("organization name 200 chars", Accepted, |db, fx| create_org(db, fx, named(&s('x', 200)))),
        case("update_organization name empty", Invalid(&["name"]), |db, fx| patch_org(db, fx, &fx.owner(), name_patch(""))),
        case("update_organization name 201 chars", Invalid(&["name"]), |db, fx| {
            patch_org(db, fx, &fx.owner(), name_patch(&s('x', 201)))
        }),
        case("create_project name empty", Invalid(&["name"]), |db, fx| {
            db.create_project(&fx.owner(), &fx.org, &NewProject { name: "".into(), description: None }).map(|_| ())
        }),
        case("update_project name 201 chars", Invalid(&["name"]), |db, fx| {
            let patch = ProjectPatch { name: Some(s('p', 201)), ..Default::default() };
            db.update_project(&fx.owner(), &fx.org, &fx.project, &patch).map(|_| ())
        }),
        case("register_resource name with control char", Invalid(&["name"]), |db, fx| {
            db.register_resource(&fx.owner(), &fx.org, ResourceKind::ApiKey, "key\u{0}").map(|_| ())
        }),
        case("rename_resource name blank", Invalid(&["name"]), |db, fx| {
            db.rename_resource(&fx.owner(), &fx.org, &fx.resource, "  ").map(|_| ())
        }),
        // Slugs: [a-z0-9-], 1–64; reserved slugs refused on create (and update).
        case("slug empty", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged(""))),
        case("slug upper case", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("Acme-Two"))),
        case("slug underscore", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("acme_two"))),
        case("slug space", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("acme two"))),
        case("slug non-ascii", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("café"))),
        case("slug 65 chars", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged(&s('a', 65)))),
        case("slug 64 chars", Accepted, |db, fx| create_org(db, fx, slugged(&s('a', 64)))),
        case("slug 1 char", Accepted, |db, fx| create_org(db, fx, slugged("a"))),
        case("slug digits and dashes", Accepted, |db, fx| create_org(db, fx, slugged("acme-2-go"))),
        case("reserved slug admin on create", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("admin"))),
        case("reserved slug www on create", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("www"))),
        case("reserved slug settings on create", Invalid(&["slug"]), |db, fx| create_org(db, fx, slugged("settings"))),
        case("reserved slug api on update", Invalid(&["slug"]), |db, fx| patch_org(db, fx, &fx.owner(), slug_patch("api"))),
        case("update_organization slug upper case", Invalid(&["slug"]), |db, fx| {
            patch_org(db, fx, &fx.owner(), slug_patch("ACME"))
        }),
        case("taken slug on create", Exp::Err("conflict", Some("slug")), |db, fx| create_org(db, fx, slugged("acme"))),
        case("taken slug on update", Exp::Err("conflict", Some("slug")), |db, fx| {
            db.update_organization(&fx.owner(), &fx.other_org, &slug_patch("acme")).map(|_| ())
        }),
        case("org keeps its own slug on update", Accepted, |db, fx| patch_org(db, fx, &fx.owner(), slug_patch("acme"))),
        // Emails: a plausible local@domain.
        case("email without @", Invalid(&["email"]), |db, _| create_user(db, "not-an-email", "Al")),
        case("email empty", Invalid(&["email"]), |db, _| create_user(db, "  ", "Al")),
        case("email without local part", Invalid(&["email"]), |db, _| create_user(db, "@example.com", "Al")),
        case("email without domain", Invalid(&["email"]), |db, _| create_user(db, "al@", "Al")),
        case("email domain without dot", Invalid(&["email"]), |db, _| create_user(db, "al@localhost", "Al")),
        case("email with inner space", Invalid(&["email"]), |db, _| create_user(db, "a l@example.com", "Al")),
        case("email domain with double dot", Invalid(&["email"]), |db, _| create_user(db, "al@example..com", "Al")),
        case("email with tag and subdomain", Accepted, |db, _| create_user(db, "first.last+tag@sub.example.org", "Al")),
        case("update_user bad email", Invalid(&["email"]), |db, fx| {
            db.update_user(&fx.target.id, &UserPatch { email: Some("nope".into()), name: None }).map(|_| ())
        }),
        case("create_invitation bad email", Invalid(&["email"]), |db, fx| invite(db, fx, &fx.owner(), inv("nope@"))),
        case("create_invitations bad email", Invalid(&["email"]), |db, fx| {
            db.create_invitations(&fx.owner(), &fx.org, &[inv("ok@example.com"), inv("bad")]).map(|_| ())
        }),
        // Metadata: at most 64 keys.
        case("create_organization 65 metadata keys", Invalid(&["metadata"]), |db, fx| {
            create_org(db, fx, NewOrganization { metadata: meta(65), ..named("Meta") })
        }),
        case("create_organization 64 metadata keys", Accepted, |db, fx| {
            create_org(db, fx, NewOrganization { metadata: meta(64), ..named("Meta") })
        }),
        case("update_organization 65 metadata keys", Invalid(&["metadata"]), |db, fx| {
            patch_org(db, fx, &fx.owner(), OrganizationPatch { metadata: Some(meta(65)), ..Default::default() })
        }),
        case("update_organization 64 metadata keys", Accepted, |db, fx| {
            patch_org(db, fx, &fx.owner(), OrganizationPatch { metadata: Some(meta(64)), ..Default::default() })
        }),
        // Paging: per_page 1–100, page ≥ 1.
        case("list_members per_page 0", Invalid(&["per_page"]), |db, fx| members(db, fx, &fx.owner(), None, Some(0))),
        case("list_members per_page 101", Invalid(&["per_page"]), |db, fx| members(db, fx, &fx.owner(), None, Some(101))),
        case("list_members page 0", Invalid(&["page"]), |db, fx| members(db, fx, &fx.owner(), Some(0), None)),
        case("list_members per_page 1", Accepted, |db, fx| members(db, fx, &fx.owner(), Some(1), Some(1))),
        case("list_members per_page 100", Accepted, |db, fx| members(db, fx, &fx.owner(), Some(1), Some(100))),
        case("list_invitations per_page 0", Invalid(&["per_page"]), |db, fx| invitations(db, fx, None, Some(0))),
        case("list_invitations per_page 101", Invalid(&["per_page"]), |db, fx| invitations(db, fx, None, Some(101))),
        case("list_invitations page 0", Invalid(&["page"]), |db, fx| invitations(db, fx, Some(0), None)),
        case("list_invitations per_page 100", Accepted, |db, fx| invitations(db, fx, Some(2), Some(100))),
        // Role names.
        case("list_members role filter unknown", Invalid(&["role"]), |db, fx| {
            let q = MemberQuery { role: Some("boss".into()), ..Default::default() };
            db.list_members(&fx.owner(), &fx.org, &q).map(|_| ())
        }),
        case("add_member role unknown", Invalid(&["role"]), |db, fx| {
            db.add_member(&fx.owner(), &fx.org, &fx.outsider.id, "superadmin").map(|_| ())
        }),
        case("add_member role empty", Invalid(&["role"]), |db, fx| {
            db.add_member(&fx.owner(), &fx.org, &fx.outsider.id, "").map(|_| ())
        }),
        case("add_member role upper case", Accepted, |db, fx| {
            db.add_member(&fx.owner(), &fx.org, &fx.outsider.id, "ADMIN").map(|_| ())
        }),
        case("update_member_role role unknown", Invalid(&["role"]), |db, fx| {
            db.update_member_role(&fx.owner(), &fx.org, &MemberRef::User(fx.target.id.clone()), "root").map(|_| ())
        }),
        case("create_invitation role unknown", Invalid(&["role"]), |db, fx| {
            invite(db, fx, &fx.owner(), NewInvitation { role: Some("king".into()), ..inv("new@example.com") })
        }),
        case("create_invitation project_role unknown", Invalid(&["project_role"]), |db, fx| {
            let new = NewInvitation {
                project_id: Some(fx.project.clone()),
                project_role: Some("boss".into()),
                ..inv("new@example.com")
            };
            invite(db, fx, &fx.owner(), new)
        }),
        case("add_project_member role unknown", Invalid(&["role"]), |db, fx| {
            db.add_project_member(&fx.owner(), &fx.org, &fx.project, &fx.target.id, Some("boss".into())).map(|_| ())
        }),
        // Invitation lifetime: 1 hour to 30 days.
        case("expires_in 0", Invalid(&["expires_in"]), |db, fx| invite(db, fx, &fx.owner(), inv_lifetime(0))),
        case("expires_in 1 hour - 1s", Invalid(&["expires_in"]), |db, fx| {
            invite(db, fx, &fx.owner(), inv_lifetime(HOUR - 1))
        }),
        case("expires_in 30 days + 1s", Invalid(&["expires_in"]), |db, fx| {
            invite(db, fx, &fx.owner(), inv_lifetime(30 * DAY + 1))
        }),
        case("expires_in u64::MAX", Invalid(&["expires_in"]), |db, fx| {
            invite(db, fx, &fx.owner(), inv_lifetime(u64::MAX))
        }),
        case("expires_in 1 hour", Accepted, |db, fx| invite(db, fx, &fx.owner(), inv_lifetime(HOUR))),
        case("expires_in 30 days", Accepted, |db, fx| invite(db, fx, &fx.owner(), inv_lifetime(30 * DAY))),
        // Audit log limit: 1 to 1 000.
        case("audit_log limit 0", Invalid(&["limit"]), |db, fx| db.audit_log(&fx.owner(), &fx.org, 0, 0).map(|_| ())),
        case("audit_log limit 1001", Invalid(&["limit"]), |db, fx| db.audit_log(&fx.owner(), &fx.org, 0, 1001).map(|_| ())),
        case("audit_log limit 1", Accepted, |db, fx| db.audit_log(&fx.owner(), &fx.org, 0, 1).map(|_| ())),
        case("audit_log limit 1000", Accepted, |db, fx| db.audit_log(&fx.owner(), &fx.org, 0, 1000).map(|_| ())),
        // Plans (documented on Db: `validation_error` naming `plan`).
        case("create_organization unknown plan", Invalid(&["plan"]), |db, fx| {
            create_org(db, fx, NewOrganization { plan: Some("platinum".into()), ..named("Plan") })
        }),
        case("set_plan unknown plan", Invalid(&["plan"]), |db, fx| db.set_plan(&fx.owner(), &fx.org, "platinum").map(|_| ())),
        // Several bad fields at once: all named.
        case("create_user: email and name", Invalid(&["email", "name"]), |db, _| create_user(db, "bad", "")),
        case("create_organization: name, slug, metadata, plan", Invalid(&["name", "slug", "metadata", "plan"]), |db, fx| {
            let new = NewOrganization {
                name: " ".into(),
                slug: Some("Not A Slug".into()),
                plan: Some("platinum".into()),
                metadata: meta(65),
                ..Default::default()
            };
            create_org(db, fx, new)
        }),
        case("update_organization: name, slug, metadata", Invalid(&["name", "slug", "metadata"]), |db, fx| {
            let patch = OrganizationPatch {
                name: Some(s('n', 201)),
                slug: Some("bad_slug".into()),
                metadata: Some(meta(65)),
                ..Default::default()
            };
            patch_org(db, fx, &fx.owner(), patch)
        }),
        case("create_invitation: email, role, expires_in", Invalid(&["email", "role", "expires_in"]), |db, fx| {
            let new = NewInvitation {
                email: "x".into(),
                role: Some("boss".into()),
                expires_in: Some(std::time::Duration::from_secs(1)),
                ..Default::default()
            };
            invite(db, fx, &fx.owner(), new)
        }),
        case("list_members: page, per_page, role", Invalid(&["page", "per_page", "role"]), |db, fx| {
            let q = MemberQuery { page: Some(0), per_page: Some(500), role: Some("boss".into()), status: None, search: None, cursor: None };
            db.list_members(&fx.owner(), &fx.org, &q).map(|_| ())
        }),
        case("list_invitations: page, per_page", Invalid(&["page", "per_page"]), |db, fx| invitations(db, fx, Some(0), Some(0))),
        // Forbidden before validation: a caller without rights learns nothing.
        case("viewer: update_organization bad name", FORBIDDEN, |db, fx| patch_org(db, fx, &actor(&fx.viewer), name_patch(""))),
        case("viewer: update_organization many bad fields", FORBIDDEN, |db, fx| {
            let patch = OrganizationPatch { name: Some("".into()), slug: Some("admin".into()), metadata: Some(meta(65)), ..Default::default() };
            patch_org(db, fx, &actor(&fx.viewer), patch)
        }),
        case("non-member: update_organization bad name", FORBIDDEN, |db, fx| patch_org(db, fx, &actor(&fx.outsider), name_patch(""))),
        case("member: create_invitation bad email", FORBIDDEN, |db, fx| invite(db, fx, &actor(&fx.target), inv("bad"))),
        case("viewer: add_member bad role", FORBIDDEN, |db, fx| db.add_member(&actor(&fx.viewer), &fx.org, &fx.outsider.id, "boss").map(|_| ())),
        case("member: update_member_role bad role", FORBIDDEN, |db, fx| {
            db.update_member_role(&actor(&fx.target), &fx.org, &MemberRef::User(fx.viewer.id.clone()), "boss").map(|_| ())
        }),
        case("viewer: create_project empty name", FORBIDDEN, |db, fx| {
            db.create_project(&actor(&fx.viewer), &fx.org, &NewProject { name: "".into(), description: None }).map(|_| ())
        }),
        case("viewer: register_resource empty name", FORBIDDEN, |db, fx| {
            db.register_resource(&actor(&fx.viewer), &fx.org, ResourceKind::Mcp, "").map(|_| ())
        }),
        case("viewer: list_invitations page 0", FORBIDDEN, |db, fx| {
            let q = InvitationQuery { page: Some(0), ..Default::default() };
            db.list_invitations(&actor(&fx.viewer), &fx.org, &q).map(|_| ())
        }),
        case("non-member: list_members per_page 0", FORBIDDEN, |db, fx| members(db, fx, &actor(&fx.outsider), None, Some(0))),
        case("member: audit_log limit 0", FORBIDDEN, |db, fx| db.audit_log(&actor(&fx.target), &fx.org, 0, 0).map(|_| ())),
        case("admin: set_plan unknown plan", FORBIDDEN, |db, fx| db.set_plan(&actor(&fx.admin), &fx.org, "platinum").map(|_| ())),
    ]
}

fn audit_len(db: &Db, org: &str) -> usize {
    db.audit_log(&Actor::System, org, 0, 1000).unwrap().len()
}

/// Runs one case on a fresh database: checks the outcome and that a refused call wrote
/// nothing (rows per table and the audit log unchanged).
fn check(case: &Case) {
    let (db, _clock) = db();
    let fx = fixture(&db);
    let stats_before = db.stats().unwrap();
    let audit_before = audit_len(&db, &fx.org);

    let result = (case.run)(&db, &fx);

    match case.expect {
        Exp::Ok => {
            assert!(result.is_ok(), "expected Ok, got {result:?}");
        }
        Exp::Invalid(fields) => {
            let err = assert_err(result, "validation_error", None);
            let details = err.details();
            for field in fields {
                let reason = details.get(*field);
                assert!(
                    reason
                        .and_then(|r| r.as_str())
                        .is_some_and(|r| !r.is_empty()),
                    "details lack a reason for {field:?}: {err:?}"
                );
            }
        }
        Exp::Err(code, field) => {
            assert_err(result, code, field);
        }
    }
    if !matches!(case.expect, Exp::Ok) {
        assert_eq!(
            db.stats().unwrap(),
            stats_before,
            "a refused call wrote rows"
        );
        assert_eq!(
            audit_len(&db, &fx.org),
            audit_before,
            "a refused call wrote audit events"
        );
    }
    assert_sound(&db);
}

/// Runs every case, collecting failures so one report lists them all.
fn run_all<T>(items: &[T], label: impl Fn(&T) -> String, f: impl Fn(&T)) {
    let mut failures = Vec::new();
    for item in items {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(item))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", label(item)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        items.len(),
        failures.join("\n")
    );
}

#[test]
fn validation_rules() {
    let cases = cases();
    assert!(cases.len() > 90, "the table shrank");
    run_all(&cases, |c| format!("{} ({:?})", c.name, c.expect), check);
}

#[test]
fn emails_are_normalized() {
    // (stored as, look-ups that find it)
    const CASES: [(&str, &str, &[&str]); 3] = [
        (
            "  Alice@Example.COM ",
            "alice@example.com",
            &[
                "alice@example.com",
                "ALICE@EXAMPLE.COM",
                "\tAlice@example.com\n",
            ],
        ),
        (
            "BOB@EXAMPLE.ORG",
            "bob@example.org",
            &["bob@example.org", " Bob@Example.Org "],
        ),
        (
            "carol@example.net",
            "carol@example.net",
            &["CAROL@example.NET"],
        ),
    ];
    run_all(
        &CASES,
        |c| format!("{:?}", c.0),
        |&(input, stored, lookups)| {
            let (db, _clock) = db();
            let created = db
                .create_user(&NewUser {
                    email: input.into(),
                    name: "Someone".into(),
                })
                .unwrap();
            assert_eq!(created.email, stored);
            assert_eq!(db.get_user(&created.id).unwrap().email, stored);
            for lookup in lookups {
                assert_eq!(
                    db.find_user_by_email(lookup).unwrap().id,
                    created.id,
                    "{lookup:?}"
                );
            }
            // The same email in another spelling is taken, and nothing is written.
            let before = db.stats().unwrap();
            let dup = db.create_user(&NewUser {
                email: stored.to_uppercase(),
                name: "Twin".into(),
            });
            assert_err(dup, "conflict", Some("email"));
            assert_eq!(db.stats().unwrap(), before);
            // Invitations normalize the same way.
            let (org, owner) = org(&db, "Acme", "team");
            let sent = db
                .create_invitation(
                    &actor(&owner),
                    &org,
                    &inv(&format!(" {} ", stored.to_uppercase())),
                )
                .unwrap();
            assert_eq!(sent.invitation.email, stored);
            let pending = db
                .list_invitations_for_email(&stored.to_uppercase())
                .unwrap();
            assert_eq!(pending.len(), 1);
            let again = db.create_invitation(&actor(&owner), &org, &inv(stored));
            assert_err(again, "conflict", Some("invitation_id"));
            assert_sound(&db);
        },
    );
}

#[test]
fn slugs_are_derived_from_names() {
    // In this order, in one database: later names collide with earlier ones.
    const CASES: [(&str, &str); 12] = [
        ("Acme", "acme"),
        ("ACME", "acme-2"),
        ("acme!", "acme-3"),
        ("Ærøskøbing Café & Co.!", "aeroskobing-cafe-co"),
        ("  Crème Brûlée -- 2024 ", "creme-brulee-2024"),
        ("Hello,   World!!!", "hello-world"),
        ("Straße über Äpfel", "strasse-uber-apfel"),
        ("!!!", "org"),
        ("???", "org-2"),
        // Reserved slugs are never derived (SPEC is silent; the code suffixes them).
        ("Admin", "admin-2"),
        ("WWW", "www-2"),
        ("日本", "ri-ben"),
    ];
    let (db, _clock) = db();
    let owner = user(&db, "Owner");
    run_all(
        &CASES,
        |c| format!("{:?}", c.0),
        |&(name, slug)| {
            let created = db
                .create_organization(&owner.id, &named(name))
                .unwrap()
                .organization;
            assert_eq!(created.slug, slug);
            assert_eq!(created.name, name.trim());
        },
    );
    // At most 64 characters, also with a collision suffix.
    let long = s('a', 100);
    let first = db.create_organization(&owner.id, &named(&long)).unwrap();
    let second = db.create_organization(&owner.id, &named(&long)).unwrap();
    assert_eq!(first.organization.slug, s('a', 64));
    assert_eq!(second.organization.slug, format!("{}-2", s('a', 62)));
    assert!(db.check_slug("acme").unwrap().reason.as_deref() == Some("taken"));
    assert!(db.check_slug("admin").unwrap().reason.as_deref() == Some("reserved"));
    assert!(db.check_slug("Bad Slug").unwrap().reason.as_deref() == Some("invalid"));
    assert!(db.check_slug("acme-4").unwrap().available);
    assert_sound(&db);
}

/// One rule, one answer: every call that takes a role refuses a bad one with the same message
/// and names the field; every call that grants a role refuses one above the caller's own with
/// the same `forbidden` message; and an admin acting on an owner is `forbidden` whatever role
/// string it sends (permission is decided before the value is parsed).
#[test]
fn role_rules_answer_the_same_in_every_call() {
    type Call = fn(&Db, &Fx, &Actor, &str) -> orgdb::Result<()>;
    let calls: [(&str, &str, Call); 7] = [
        ("add_member", "role", |db, fx, a, role| {
            db.add_member(a, &fx.org, &fx.outsider.id, role).map(|_| ())
        }),
        ("update_member_role", "role", |db, fx, a, role| {
            let who = MemberRef::User(fx.target.id.clone());
            db.update_member_role(a, &fx.org, &who, role).map(|_| ())
        }),
        ("create_invitation", "role", |db, fx, a, role| {
            let new = NewInvitation {
                role: Some(role.into()),
                ..inv("new@example.com")
            };
            invite(db, fx, a, new)
        }),
        ("create_invitations", "role", |db, fx, a, role| {
            let new = NewInvitation {
                role: Some(role.into()),
                ..inv("new@example.com")
            };
            db.create_invitations(a, &fx.org, &[new]).map(|_| ())
        }),
        (
            "create_invitation project_role",
            "project_role",
            |db, fx, a, role| {
                let new = NewInvitation {
                    project_id: Some(fx.project.clone()),
                    project_role: Some(role.into()),
                    ..inv("new@example.com")
                };
                invite(db, fx, a, new)
            },
        ),
        ("add_project_member", "role", |db, fx, a, role| {
            db.add_project_member(a, &fx.org, &fx.project, &fx.target.id, Some(role.into()))
                .map(|_| ())
        }),
        ("update_project_member_role", "role", |db, fx, a, role| {
            let _ =
                db.add_project_member(&Actor::System, &fx.org, &fx.project, &fx.target.id, None);
            db.update_project_member_role(a, &fx.org, &fx.project, &fx.target.id, role)
                .map(|_| ())
        }),
    ];
    for (name, field, call) in calls {
        let (db, _) = db();
        let fx = fixture(&db);
        let err = assert_err(
            call(&db, &fx, &fx.owner(), "superuser"),
            "validation_error",
            Some(field),
        );
        assert_eq!(err.message(), "Invalid role specified", "{name}");
        assert_eq!(
            err.details()[field],
            "Must be one of: viewer, member, admin, owner",
            "{name}"
        );
        let err = assert_err(
            call(&db, &fx, &actor(&fx.admin), "OWNER"),
            "forbidden",
            None,
        );
        assert_eq!(
            err.message(),
            "You cannot grant a role above your own",
            "{name}"
        );
    }
    // An admin acting on an owner: forbidden before the role string is looked at.
    let (db, _) = db();
    let fx = fixture(&db);
    let owner = MemberRef::User(fx.owner.id.clone());
    for role in ["superuser", "member", "owner"] {
        let err = assert_err(
            db.update_member_role(&actor(&fx.admin), &fx.org, &owner, role),
            "forbidden",
            None,
        );
        assert_eq!(
            err.message(),
            "You don't have permission to perform this action"
        );
    }
}
