"""Seed 001 end to end: organizations with an address, a user's organizations, memberships by
their own ids, upper-case roles, invitations naming a project and a project role, deletion."""

import json

import pytest

import orgdb
from helpers import as_user, raises

Role = orgdb.Role


@pytest.fixture
def acme(db, make_user):
    owner = make_user("Olivia Owner")
    created = db.create_organization(
        owner.id,
        orgdb.NewOrganization(
            name="My Organization",
            address_line1="123 Main St",
            city="San Francisco",
            state="CA",
            zipcode="94105",
            country="USA",
            metadata={"crm_id": "42"},
        ),
    )
    return owner, created


def test_create_and_list_organizations_for_user(db, acme, make_user):
    owner, created = acme
    org = created.organization
    assert (org.address_line1, org.address_line2, org.city, org.state, org.zipcode, org.country) == (
        "123 Main St",
        None,
        "San Francisco",
        "CA",
        "94105",
        "USA",
    )
    assert org.metadata == {"crm_id": "42"}
    assert org.plan == "free"
    assert created.membership.role == Role.OWNER
    assert created.membership.organization_id == org.id

    second = db.create_organization(owner.id, orgdb.NewOrganization(name="My Organization"))
    assert second.organization.slug == "my-organization-2"

    listed = db.list_organizations_for_user(owner.id)
    assert [(o.organization.id, o.membership.role) for o in listed] == [
        (org.id, Role.OWNER),
        (second.organization.id, Role.OWNER),
    ]
    assert db.list_organizations_for_user(make_user("Nobody").id) == []


def test_invitation_with_project_and_memberships_by_id(db, acme, make_user):
    owner, created = acme
    org = created.organization
    actor = as_user(owner)
    project = db.create_project(actor, org.id, orgdb.NewProject(name="Website"))
    assert project.id.startswith("proj_")

    invited = db.create_invitation(
        actor,
        org.id,
        orgdb.NewInvitation(
            email="pat@example.com", role="MEMBER", project_id=project.id, project_role="ADMIN"
        ),
    )
    assert invited.invitation.project_id == project.id
    assert invited.invitation.project_role == Role.ADMIN
    assert db.get_invitation_by_token(invited.token).project_name == "Website"

    page = db.list_invitations(actor, org.id, orgdb.InvitationQuery(status="PENDING"))
    assert page.pagination.total == 1
    assert page.data[0].id == invited.invite_id

    pat = make_user("Pat")
    pending = db.list_invitations_for_email(" PAT@example.com")
    assert [(p.invitation.id, p.organization_name) for p in pending] == [
        (invited.invite_id, "My Organization")
    ]

    membership = db.accept_invitation(invited.token, pat.id)
    assert membership.role == Role.MEMBER
    # Accepting twice by the same user is a safe retry.
    assert db.accept_invitation(invited.token, pat.id) == membership
    project_members = db.list_project_members(actor, org.id, project.id)
    assert [(m.id, m.role) for m in project_members] == [(pat.id, Role.ADMIN)]

    # Memberships are addressed by their own `mem_` ids too.
    updated = db.update_member_role(actor, org.id, membership.id, "ADMIN")
    assert (updated.id, updated.role) == (pat.id, Role.ADMIN)
    removed = db.remove_member(actor, org.id, membership.id)
    assert removed.membership_id == membership.id
    assert db.list_project_members(actor, org.id, project.id) == []
    err = raises(orgdb.OrgDbError.NotFound, db.remove_member, actor, org.id, membership.id)
    assert err.code == "not_found"


def test_revoke_and_duplicate_invitations(db, acme):
    owner, created = acme
    org = created.organization
    actor = as_user(owner)
    first = db.create_invitation(actor, org.id, orgdb.NewInvitation(email="sam@example.com"))

    err = raises(
        orgdb.OrgDbError.Conflict,
        db.create_invitation,
        actor,
        org.id,
        orgdb.NewInvitation(email="SAM@example.com"),
    )
    assert err.code == "conflict"
    assert err.details["invitation_id"] == first.invite_id
    assert err.details["email"] == "sam@example.com"
    assert err.http_status() == 409

    revoked = db.revoke_invitation(actor, org.id, first.invite_id)
    assert revoked.status == orgdb.InvitationStatus.REVOKED
    raises(orgdb.OrgDbError.Conflict, db.revoke_invitation, actor, org.id, first.invite_id)
    raises(orgdb.OrgDbError.Conflict, db.accept_invitation, first.token, owner.id)

    db.set_plan(actor, org.id, "team")  # free has 3 seats; team has 25
    batch = db.create_invitations(
        actor,
        org.id,
        [orgdb.NewInvitation(email="a@example.com"), orgdb.NewInvitation(email="b@example.com")],
    )
    assert [c.invitation.email for c in batch] == ["a@example.com", "b@example.com"]
    err = raises(
        orgdb.OrgDbError.Validation,
        db.create_invitations,
        actor,
        org.id,
        [orgdb.NewInvitation(email="c@example.com"), orgdb.NewInvitation(email="not-an-email")],
    )
    assert "email" in json.dumps(err.details)
    # All or nothing: c@ was not invited.
    emails = [i.email for i in db.list_invitations(actor, org.id, orgdb.InvitationQuery()).data]
    assert "c@example.com" not in emails


def test_patch_clears_and_sets_address(db, acme):
    owner, created = acme
    org = created.organization
    updated = db.update_organization(
        as_user(owner),
        org.id,
        orgdb.OrganizationPatch(
            name="Updated Organization Name",
            address_line1=orgdb.FieldUpdate.CLEAR(),
            city=orgdb.FieldUpdate.SET(value="Oakland"),
            metadata={},
        ),
    )
    assert updated.name == "Updated Organization Name"
    assert updated.address_line1 is None
    assert updated.city == "Oakland"
    assert updated.zipcode == "94105"
    assert updated.metadata == {}

    settings = db.update_settings(
        as_user(owner),
        org.id,
        orgdb.OrganizationSettings(pin_protection=True, extra={"theme": "dark"}),
    )
    assert settings.settings == orgdb.OrganizationSettings(
        pin_protection=True, extra={"theme": "dark"}
    )


def test_last_owner_and_ownership_transfer(db, acme, make_user):
    owner, created = acme
    org = created.organization
    actor = as_user(owner)
    err = raises(orgdb.OrgDbError.Conflict, db.leave_organization, owner.id, org.id)
    assert err.code == "conflict"
    raises(orgdb.OrgDbError.Conflict, db.delete_user, owner.id)

    heir = make_user("Heir")
    db.add_member(actor, org.id, heir.id, "member")
    promoted = db.transfer_ownership(actor, org.id, heir.id)
    assert promoted.role == Role.OWNER
    assert db.get_member(actor, org.id, owner.id).role == Role.ADMIN
    left = db.leave_organization(owner.id, org.id)
    assert left.user_id == owner.id


def test_delete_organization_keeps_its_audit_log(db, acme):
    owner, created = acme
    org = created.organization
    actor = as_user(owner)
    db.set_plan(actor, org.id, "team")
    db.delete_organization(actor, org.id)

    raises(orgdb.OrgDbError.NotFound, db.get_organization, actor, org.id)
    raises(orgdb.OrgDbError.NotFound, db.delete_organization, actor, org.id)
    log = db.audit_log(orgdb.Actor.SYSTEM(), org.id, 0, 1000)
    assert [e.seq for e in log] == sorted(e.seq for e in log)
    assert log[-1].action == "organization.deleted"
    assert log[-1].actor == owner.id
    plan_change = next(e for e in log if e.action.startswith("organization.plan"))
    details = json.loads(plan_change.details)
    assert isinstance(details, dict)
    assert "team" in json.dumps(details)
