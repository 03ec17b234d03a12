"""Seed 000 end to end: organization with plan, limits and usage; members with paging and a
role filter; invitations; role changes; the usage report; the seed's errors."""

from datetime import datetime, timedelta, timezone

import pytest

import orgdb
from conftest import START
from helpers import as_user, raises

# The calendar month of the tests' clock (receipts name their quota period).
JANUARY = ("2024-01-01", "2024-01-31")

Role = orgdb.Role


@pytest.fixture
def company(db, make_user):
    """Alice's "My Company" on the pro plan, as in the seed."""
    alice = make_user("Alice Smith")
    created = db.create_organization(
        alice.id,
        orgdb.NewOrganization(
            name="My Company",
            description="Building cool stuff with AI",
            plan="pro",
            settings=orgdb.OrganizationSettings(pin_protection=True),
        ),
    )
    return alice, created.organization


def test_create_and_get_organization(db, company):
    alice, org = company
    assert org.id.startswith("org_")
    assert org.slug == "my-company"
    assert org.plan == "pro"
    assert org.created_at == START

    details = db.get_organization(as_user(alice), org.id)
    assert details.organization == org
    assert details.organization.settings.pin_protection is True
    assert details.limits == orgdb.Limits(
        mcps=10, api_keys=10, team_members=5, monthly_requests=50_000
    )
    assert details.usage == orgdb.Usage(mcps=0, api_keys=0, team_members=1, monthly_requests=0)
    assert db.get_organization_by_slug(as_user(alice), "my-company").organization.id == org.id


def test_invite_accept_change_role_and_remove(db, clock, company, make_user):
    alice, org = company
    owner = as_user(alice)

    created = db.create_invitation(
        owner, org.id, orgdb.NewInvitation(email="Bob@Example.com ", role="member")
    )
    assert created.invite_id == created.invitation.id
    assert created.invite_id.startswith("inv_")
    assert len(created.token) == 64
    assert created.token in created.invite_url
    inv = created.invitation
    assert (inv.email, inv.role, inv.status) == (
        "bob@example.com",
        Role.MEMBER,
        orgdb.InvitationStatus.PENDING,
    )
    assert inv.expires_at == START + timedelta(days=7)
    assert inv.invited_by == alice.id

    preview = db.get_invitation_by_token(created.token)
    assert preview.organization_name == "My Company"
    assert preview.organization_slug == "my-company"
    assert preview.inviter_name == "Alice Smith"
    assert preview.inviter_email == "alice.smith@example.com"

    clock.advance_seconds(3600)
    bob = make_user("Bob")
    membership = db.accept_invitation(created.token, bob.id)
    assert membership.id.startswith("mem_")
    assert membership.user_id == bob.id
    assert membership.role == Role.MEMBER
    assert membership.joined_at == START + timedelta(hours=1)
    accepted = db.get_invitation(owner, org.id, inv.id)
    assert accepted.status == orgdb.InvitationStatus.ACCEPTED
    assert accepted.accepted_at == membership.joined_at

    clock.advance_seconds(60)
    promoted = db.update_member_role(owner, org.id, bob.id, "admin")
    assert promoted.role == Role.ADMIN
    assert promoted.updated_at == START + timedelta(hours=1, minutes=1)

    db.touch_user(bob.id)
    member = db.get_member(owner, org.id, bob.id)
    assert member.last_active == db.now()
    assert member.membership_id == membership.id

    removed = db.remove_member(owner, org.id, bob.id)
    assert removed == orgdb.RemovedMember(
        removed=True, user_id=bob.id, membership_id=membership.id
    )
    err = raises(orgdb.OrgDbError.NotFound, db.get_member, owner, org.id, bob.id)
    assert (err.code, err.message) == ("not_found", "Member not found")


def test_list_members_pages_cursor_and_role_filter(db, clock, company, make_user):
    alice, org = company
    owner = as_user(alice)
    roles = {"Bob": "ADMIN", "Carol": "viewer", "Dave": "Member", "Erin": "member"}
    users = {}
    for name, role in roles.items():
        clock.advance_seconds(60)
        users[name] = make_user(name)
        db.add_member(owner, org.id, users[name].id, role)

    first = db.list_members(owner, org.id, orgdb.MemberQuery())
    assert first.pagination == orgdb.Pagination(page=1, per_page=20, total=5, total_pages=1)
    assert [m.name for m in first.data] == ["Alice Smith", "Bob", "Carol", "Dave", "Erin"]
    assert [m.role for m in first.data] == [
        Role.OWNER,
        Role.ADMIN,
        Role.VIEWER,
        Role.MEMBER,
        Role.MEMBER,
    ]
    assert first.next_cursor is None
    assert all(m.last_active is None for m in first.data)

    page2 = db.list_members(owner, org.id, orgdb.MemberQuery(page=2, per_page=2))
    assert page2.pagination == orgdb.Pagination(page=2, per_page=2, total=5, total_pages=3)
    assert [m.name for m in page2.data] == ["Carol", "Dave"]

    # Keyset paging over the whole list gives the same rows in the same order.
    seen, cursor = [], None
    while True:
        page = db.list_members(owner, org.id, orgdb.MemberQuery(per_page=2, cursor=cursor))
        seen += [m.id for m in page.data]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [m.id for m in first.data]

    members = db.list_members(owner, org.id, orgdb.MemberQuery(role="MEMBER"))
    assert [m.name for m in members.data] == ["Dave", "Erin"]
    assert members.pagination.total == 2

    # A viewer may read the list.
    viewer = as_user(users["Carol"])
    assert db.list_members(viewer, org.id, orgdb.MemberQuery(per_page=1)).pagination.total == 5


def test_seed_errors(db, company, make_user):
    alice, org = company
    owner = as_user(alice)
    viewer = make_user("Victor")
    db.add_member(owner, org.id, viewer.id, "viewer")

    err = raises(
        orgdb.OrgDbError.Forbidden,
        db.update_organization,
        as_user(viewer),
        org.id,
        orgdb.OrganizationPatch(name="Mine now"),
    )
    assert err.code == "forbidden"
    assert err.message == "You don't have permission to perform this action"
    assert err.details == {}
    assert err.http_status() == 403

    err = raises(orgdb.OrgDbError.NotFound, db.get_member, owner, org.id, "user_nobody")
    assert (err.code, err.message, err.http_status()) == ("not_found", "Member not found", 404)

    err = raises(
        orgdb.OrgDbError.Validation, db.update_member_role, owner, org.id, viewer.id, "superuser"
    )
    assert err.code == "validation_error"
    assert err.message == "Invalid role specified"
    assert err.details == {"role": "Must be one of: viewer, member, admin, owner"}
    assert err.http_status() == 422

    # Permission is checked before input: a viewer learns nothing about the bad role.
    raises(
        orgdb.OrgDbError.Forbidden,
        db.update_member_role,
        as_user(viewer),
        org.id,
        alice.id,
        "superuser",
    )
    # Nothing changed.
    assert db.get_member(owner, org.id, viewer.id).role == Role.VIEWER


def test_team_members_quota(db, company, make_user):
    alice, org = company
    owner = as_user(alice)
    for name in ["Bob", "Carol"]:
        db.add_member(owner, org.id, make_user(name).id, "member")
    for email in ["dave@example.com", "erin@example.com"]:
        db.create_invitation(owner, org.id, orgdb.NewInvitation(email=email))

    # 3 members + 2 pending invitations = the pro plan's 5 seats.
    assert db.get_organization(owner, org.id).usage.team_members == 5
    err = raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.create_invitation,
        owner,
        org.id,
        orgdb.NewInvitation(email="frank@example.com"),
    )
    assert err.code == "quota_exceeded"
    assert err.details == {"quota": "team_members", "limit": "5", "used": "5", "requested": "1"}
    assert err.http_status() == 403
    raises(
        orgdb.OrgDbError.QuotaExceeded, db.add_member, owner, org.id, make_user("Gus").id, "viewer"
    )


def test_usage_report_matches_the_seed(db, clock, company):
    alice, org = company
    owner = as_user(alice)
    weather = db.register_resource(owner, org.id, orgdb.ResourceKind.MCP, "Weather API")
    calculator = db.register_resource(owner, org.id, orgdb.ResourceKind.MCP, "Calculator")
    db.register_resource(owner, org.id, orgdb.ResourceKind.API_KEY, "CI key")
    clock.set(datetime(2024, 1, 20, 12, tzinfo=timezone.utc))

    day15 = datetime(2024, 1, 15, 9, tzinfo=timezone.utc)
    day16 = datetime(2024, 1, 16, 9, tzinfo=timezone.utc)
    receipt = db.record_usage(
        org.id, orgdb.UsageEvent(count=450, resource_id=weather.id, at=day15)
    )
    assert receipt == orgdb.UsageReceipt(
        duplicate=False,
        used=450,
        limit=50_000,
        remaining=49_550,
        period_start=JANUARY[0],
        period_end=JANUARY[1],
    )
    db.record_usage_batch(
        org.id,
        [
            orgdb.UsageEvent(count=7_550, resource_id=weather.id, at=day16),
            orgdb.UsageEvent(count=4_500, resource_id=calculator.id, at=day16),
        ],
    )

    report = db.usage_report(owner, org.id, orgdb.UsageQuery())
    assert report.period == orgdb.Period.MONTH
    assert report.by_api_key == []  # beside the seed's by_mcp; no key was used
    assert report.start_date == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert report.end_date == datetime(2024, 1, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert report.requests == orgdb.RequestTotals(total=12_500, limit=50_000, percentage=25)
    assert [(m.mcp_id, m.name, m.requests) for m in report.by_mcp] == [
        (weather.id, "Weather API", 8_000),
        (calculator.id, "Calculator", 4_500),
    ]
    assert len(report.by_day) == 31
    by_day = {d.date: d.requests for d in report.by_day}
    assert by_day["2024-01-15"] == 450
    assert by_day["2024-01-16"] == 12_050
    assert by_day["2024-01-01"] == 0

    details = db.get_organization(owner, org.id)
    assert details.usage == orgdb.Usage(
        mcps=2, api_keys=1, team_members=1, monthly_requests=12_500
    )

    week = db.usage_report(
        owner, org.id, orgdb.UsageQuery(period=orgdb.Period.WEEK, start_date="2024-01-16")
    )
    assert [d.date for d in week.by_day][0] == "2024-01-15"  # ISO weeks start on Monday
    assert week.requests.total == 12_500
    ranged = db.usage_report(
        owner, org.id, orgdb.UsageQuery(start_date="2024-01-16", end_date="2024-01-16")
    )
    assert ranged.requests.total == 12_050
    assert [d.date for d in ranged.by_day] == ["2024-01-16"]


def test_update_organization_patch(db, clock, company):
    alice, org = company
    clock.advance_seconds(5 * 24 * 3600)
    updated = db.update_organization(
        as_user(alice),
        org.id,
        orgdb.OrganizationPatch(
            name="New Company Name",
            description=orgdb.FieldUpdate.SET(value="Updated description"),
        ),
    )
    assert updated.name == "New Company Name"
    assert updated.description == "Updated description"
    assert updated.slug == "my-company"
    assert updated.updated_at == db.now()
    assert updated.created_at == START

    cleared = db.update_organization(
        as_user(alice), org.id, orgdb.OrganizationPatch(description=orgdb.FieldUpdate.CLEAR())
    )
    assert cleared.description is None
    assert cleared.name == "New Company Name"
