"""Members at scale: what an actor may do (permissions), deactivation and reactivation, and
the status filter of the member list."""

import pytest

import orgdb
from helpers import as_user, raises

Role = orgdb.Role
Action = orgdb.Action
Status = orgdb.MemberStatus


@pytest.fixture
def team(db, make_user):
    """An organization on the `pro` plan (5 seats): an owner, an admin and a member."""
    owner = make_user("Olivia Owner")
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Acme", plan="pro"))
    admin, member = make_user("Adam Admin"), make_user("Mia Member")
    db.add_member(as_user(owner), org.organization.id, admin.id, "admin")
    db.add_member(as_user(owner), org.organization.id, member.id, "member")
    return org.organization.id, owner, admin, member


def test_permissions_follow_the_matrix(db, team, make_user):
    org, owner, admin, member = team
    mine = db.permissions(as_user(owner), org)
    assert mine.role == Role.OWNER
    assert Action.DELETE_ORGANIZATION in mine.actions
    # The only owner may not leave.
    assert Action.LEAVE_ORGANIZATION not in mine.actions
    assert mine.grantable_roles == [Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER]

    admins = db.permissions(as_user(admin), org)
    assert Action.MANAGE_INVITATIONS in admins.actions
    assert Action.CHANGE_PLAN not in admins.actions
    assert admins.grantable_roles == [Role.VIEWER, Role.MEMBER, Role.ADMIN]
    assert Role.OWNER not in admins.manageable_roles

    members = db.permissions(as_user(member), org)
    assert members.actions == [Action.READ_ORGANIZATION, Action.LEAVE_ORGANIZATION]
    assert members.grantable_roles == []

    system = db.permissions(orgdb.Actor.SYSTEM(), org)
    assert system.role is None
    assert Action.LEAVE_ORGANIZATION not in system.actions

    stranger = make_user("Stranger")
    raises(orgdb.OrgDbError.Forbidden, db.permissions, as_user(stranger), org)
    raises(orgdb.OrgDbError.NotFound, db.permissions, as_user(owner), "org_missing")


def test_deactivate_frees_the_seat_and_reactivate_takes_it_back(db, clock, team, make_user):
    org, owner, admin, member = team
    by_owner = as_user(owner)
    assert db.get_organization(by_owner, org).usage.team_members == 3

    clock.advance_seconds(60)
    off = db.deactivate_member(by_owner, org, member.id)
    assert off.status == Status.DEACTIVATED
    assert off.deactivated_at is not None
    assert off.role == Role.MEMBER
    assert db.get_organization(by_owner, org).usage.team_members == 2
    # Mia cannot act there any more, and is listed only under the status filters.
    raises(orgdb.OrgDbError.Forbidden, db.get_organization, as_user(member), org)
    raises(orgdb.OrgDbError.Forbidden, db.leave_organization, member.id, org)
    active = db.list_members(by_owner, org, orgdb.MemberQuery())
    assert [m.name for m in active.data] == ["Olivia Owner", "Adam Admin"]
    gone = db.list_members(by_owner, org, orgdb.MemberQuery(status="deactivated"))
    assert [(m.name, m.status) for m in gone.data] == [("Mia Member", Status.DEACTIVATED)]
    everyone = db.list_members(by_owner, org, orgdb.MemberQuery(status="all"))
    assert [m.name for m in everyone.data] == ["Olivia Owner", "Adam Admin", "Mia Member"]
    err = raises(
        orgdb.OrgDbError.Validation, db.list_members, by_owner, org, orgdb.MemberQuery(status="x")
    )
    assert "status" in err.details
    # A role change needs an active member.
    raises(orgdb.OrgDbError.Conflict, db.update_member_role, by_owner, org, member.id, "admin")

    # The freed seats fill up; reactivation is then refused.
    for name in ["Extra One", "Extra Two", "Extra Three"]:
        db.add_member(by_owner, org, make_user(name).id, "viewer")
    err = raises(orgdb.OrgDbError.QuotaExceeded, db.reactivate_member, by_owner, org, member.id)
    assert err.code == "quota_exceeded"
    db.remove_member(by_owner, org, db.find_user_by_email("extra.one@example.com").id)
    on = db.reactivate_member(by_owner, org, member.id)
    assert on.status == Status.ACTIVE and on.deactivated_at is None
    db.get_organization(as_user(member), org)

    # The last active owner stays; an admin never acts on an owner.
    raises(orgdb.OrgDbError.Conflict, db.deactivate_member, by_owner, org, owner.id)
    raises(orgdb.OrgDbError.Forbidden, db.deactivate_member, as_user(admin), org, owner.id)
    actions = [e.action for e in db.audit_log(by_owner, org, 0, 100)]
    assert actions.count("member.deactivated") == 1
    assert actions.count("member.reactivated") == 1


def test_search_by_email_name_and_later_words(db, clock, team, make_user):
    org, owner, admin, member = team
    by_owner = as_user(owner)
    ada = db.create_user(orgdb.NewUser(email="ada@example.com", name="Ada Lovelace"))
    db.add_member(by_owner, org, ada.id, "viewer")

    def found(**query):
        page = db.list_members(by_owner, org, orgdb.MemberQuery(**query))
        return [m.email for m in page.data], page.pagination.total

    assert found(search="LOVE") == (["ada@example.com"], 1)
    assert found(search="adam") == (["adam.admin@example.com"], 1)
    assert found(search="ad") == (["adam.admin@example.com", "ada@example.com"], 2)
    assert found(search="ad", role="viewer") == (["ada@example.com"], 1)
    db.deactivate_member(by_owner, org, ada.id)
    assert found(search="love") == ([], 0)
    assert found(search="love", status="deactivated") == (["ada@example.com"], 1)
    err = raises(
        orgdb.OrgDbError.Validation,
        db.list_members,
        by_owner,
        org,
        orgdb.MemberQuery(search="x" * 201),
    )
    assert "search" in err.details


def test_owned_organization_cap_and_sign_up_in_one_call(clock):
    db = orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock, max_owned_organizations=1))
    made = db.create_user_with_organization(
        orgdb.NewUser(email="ada@example.com", name="Ada"),
        orgdb.NewOrganization(name="Analytical Engines"),
    )
    assert made.membership.role == Role.OWNER
    assert made.organization.slug == "analytical-engines"
    err = raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.create_organization,
        made.user.id,
        orgdb.NewOrganization(name="Second"),
    )
    assert err.details["quota"] == "owned_organizations"
    # A bad organization field creates no user either.
    raises(
        orgdb.OrgDbError.Validation,
        db.create_user_with_organization,
        orgdb.NewUser(email="bob@example.com", name="Bob"),
        orgdb.NewOrganization(name=" "),
    )
    raises(orgdb.OrgDbError.NotFound, db.find_user_by_email, "bob@example.com")


def test_system_lists_and_the_projects_of_a_user(db, team, make_user):
    org, owner, admin, member = team
    system = orgdb.Actor.SYSTEM()
    orgs = db.list_organizations(system, orgdb.ListQuery(search="ACM"))
    assert [o.id for o in orgs.data] == [org] and orgs.pagination.total == 1
    users = db.list_users(system, orgdb.ListQuery(per_page=2))
    assert users.pagination.total == 3 and len(users.data) == 2 and users.next_cursor
    rest = db.list_users(system, orgdb.ListQuery(per_page=2, cursor=users.next_cursor))
    assert [u.name for u in rest.data] == ["Mia Member"]
    assert [u.email for u in db.list_users(system, orgdb.ListQuery(search="adam")).data] == [
        "adam.admin@example.com"
    ]
    raises(orgdb.OrgDbError.Forbidden, db.list_users, as_user(owner), orgdb.ListQuery())

    project = db.create_project(as_user(owner), org, orgdb.NewProject(name="Apollo"))
    db.add_project_member(as_user(owner), org, project.id, member.id, "viewer")
    mine = db.list_user_projects(as_user(member), org, member.id)
    assert [(p.project.name, p.project_role) for p in mine] == [("Apollo", Role.VIEWER)]
