"""Invitation expiry driven by the manual clock, timestamps across the boundary, and databases
reopened from their file."""

import gc
from datetime import datetime, timedelta, timezone

import pytest

import orgdb
from conftest import START
from helpers import as_user, raises


def test_manual_clock(clock, db):
    assert clock.now() == START
    assert db.now() == START
    clock.advance_seconds(90)
    assert db.now() == START + timedelta(seconds=90)
    clock.advance_seconds(-30)
    assert clock.now() == START + timedelta(seconds=60)
    later = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    clock.set(later)
    assert db.now() == later
    assert db.now().tzinfo is not None
    # A naive datetime is refused by the bindings (its zone would be a guess).
    with pytest.raises(TypeError):
        clock.set(datetime(2030, 1, 1))
    with pytest.raises(orgdb.OrgDbError.Validation):
        clock.advance_seconds(2**62)


def test_invitation_expiry(db, clock, make_user):
    owner = make_user("Owner")
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Expiring")).organization
    actor = as_user(owner)
    created = db.create_invitation(
        actor, org.id, orgdb.NewInvitation(email="late@example.com", expires_in=timedelta(hours=1))
    )
    assert created.invitation.expires_at == START + timedelta(hours=1)
    too_short = orgdb.NewInvitation(email="soon@example.com", expires_in=timedelta(minutes=59))
    err = raises(orgdb.OrgDbError.Validation, db.create_invitation, actor, org.id, too_short)
    assert list(err.details) == ["expires_in"]
    late = make_user("Late")

    clock.advance_seconds(3599)
    assert db.get_invitation_by_token(created.token).status == orgdb.InvitationStatus.PENDING
    clock.advance_seconds(1)
    assert db.get_invitation_by_token(created.token).status == orgdb.InvitationStatus.EXPIRED
    assert db.list_invitations_for_email("late@example.com") == []
    # An expired invitation holds no seat.
    assert db.get_organization(actor, org.id).usage.team_members == 1

    err = raises(orgdb.OrgDbError.InvitationExpired, db.accept_invitation, created.token, late.id)
    assert err.code == "invitation_expired"
    assert err.details == {"invitation_id": created.invite_id}
    assert err.http_status() == 410

    resent = db.resend_invitation(actor, org.id, created.invite_id)
    assert resent.invite_id == created.invite_id
    assert resent.token != created.token
    # A resend grants the invitation's own lifetime again, from now.
    assert resent.invitation.expires_at == db.now() + timedelta(hours=1)
    raises(orgdb.OrgDbError.NotFound, db.accept_invitation, created.token, late.id)
    assert db.accept_invitation(resent.token, late.id).user_id == late.id


def test_options_are_applied(clock):
    db = orgdb.OrgDb.in_memory_with(
        orgdb.Options(
            clock=clock,
            invitation_lifetime_secs=2 * 24 * 3600,
            invite_url_template="https://example.test/join?t={token}",
            plans={"solo": orgdb.Limits(team_members=1), "big": orgdb.Limits()},
            default_plan="solo",
            reserved_slugs=["blocked"],
        )
    )
    owner = db.create_user(orgdb.NewUser(email="o@example.com", name="O"))
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Solo")).organization
    assert org.plan == "solo"
    assert db.check_slug("blocked") == orgdb.SlugCheck(
        slug="blocked", available=False, reason="reserved"
    )
    assert db.check_slug("fresh").available
    raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.create_invitation,
        as_user(owner),
        org.id,
        orgdb.NewInvitation(email="x@example.com"),
    )
    db.set_plan(as_user(owner), org.id, "big")
    created = db.create_invitation(
        as_user(owner), org.id, orgdb.NewInvitation(email="x@example.com")
    )
    assert created.invite_url == "https://example.test/join?t=" + created.token
    assert created.invitation.expires_at == START + timedelta(days=2)

    for bad in [
        orgdb.Options(invitation_lifetime_secs=60),
        orgdb.Options(invite_url_template="https://no-token.test/"),
        orgdb.Options(default_plan="missing"),
    ]:
        raises(orgdb.OrgDbError.Validation, orgdb.OrgDb.in_memory_with, bad)


def test_reopen_from_file(tmp_path, clock):
    path = str(tmp_path / "orgs.redb")
    db = orgdb.OrgDb.open_with(path, orgdb.Options(clock=clock))
    owner = db.create_user(orgdb.NewUser(email="o@example.com", name="Owner"))
    org = db.create_organization(
        owner.id, orgdb.NewOrganization(name="Durable", plan="pro")
    ).organization
    member = db.create_user(orgdb.NewUser(email="m@example.com", name="Member"))
    db.add_member(as_user(owner), org.id, member.id, "viewer")
    invited = db.create_invitation(
        as_user(owner), org.id, orgdb.NewInvitation(email="later@example.com")
    )
    db.record_usage(org.id, orgdb.UsageEvent(count=1234, idempotency_key="once"))
    db.record_usage_buffered(org.id, orgdb.UsageEvent(count=6))

    # While open, a second handle on the same file is refused.
    err = raises(orgdb.OrgDbError.Storage, orgdb.OrgDb.open, path)
    assert err.code == "storage_error"

    del db
    gc.collect()

    reopened = orgdb.OrgDb.open_with(path, orgdb.Options(clock=clock))
    details = reopened.get_organization(as_user(owner), org.id)
    assert details.organization == org
    assert details.usage.team_members == 3
    assert details.usage.monthly_requests == 1240
    page = reopened.list_members(as_user(owner), org.id, orgdb.MemberQuery())
    assert [(m.id, m.role) for m in page.data] == [
        (owner.id, orgdb.Role.OWNER),
        (member.id, orgdb.Role.VIEWER),
    ]
    assert reopened.record_usage(
        org.id, orgdb.UsageEvent(count=5, idempotency_key="once")
    ).duplicate
    assert reopened.get_invitation_by_token(invited.token).status == orgdb.InvitationStatus.PENDING
    report = reopened.check()
    assert report.ok, report.problems
    assert (report.users, report.organizations, report.memberships) == (3 - 1, 1, 2)
    stats = {s.table: s.rows for s in reopened.stats()}
    assert stats, "stats lists the tables"


def test_backup_export_and_import(tmp_path, clock, db, make_user):
    owner = make_user("Owner")
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Exported")).organization
    db.record_usage(org.id, orgdb.UsageEvent(count=7))

    backup = str(tmp_path / "backup.redb")
    db.backup_to(backup)
    raises(orgdb.OrgDbError.Validation, db.backup_to, backup)
    copy = orgdb.OrgDb.open_with(backup, orgdb.Options(clock=clock))
    assert copy.get_organization(orgdb.Actor.SYSTEM(), org.id).usage.monthly_requests == 7
    del copy

    dump = str(tmp_path / "dump.jsonl")
    lines = db.export_jsonl(dump)
    with open(dump, encoding="utf-8") as f:
        assert sum(1 for _ in f) == lines
    fresh = orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock))
    imported = fresh.import_jsonl(dump, None)
    assert imported.records == lines
    assert imported.transactions == 1
    assert fresh.get_organization(orgdb.Actor.SYSTEM(), org.id).organization.name == "Exported"
    raises(orgdb.OrgDbError.Conflict, fresh.import_jsonl, dump, 10)
    raises(orgdb.OrgDbError.Storage, fresh.import_jsonl, str(tmp_path / "missing.jsonl"), None)

    # A progress callback hears every record, in order.
    class Counting(orgdb.ImportProgress):
        def __init__(self):
            self.seen = []

        def on_progress(self, records):
            self.seen.append(records)

    counting = Counting()
    other = orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock))
    assert other.import_jsonl(dump, 2, counting).records == lines
    assert counting.seen == list(range(1, lines + 1))

    # Raising from it stops the import: an OrgDbError comes back as raised, anything else as
    # storage_error with its text; with no batches nothing was written.
    class Stopping(orgdb.ImportProgress):
        def __init__(self, error):
            self.error = error

        def on_progress(self, records):
            if records == 3:
                raise self.error

    refusal = orgdb.OrgDbError.Conflict(code="conflict", message="operator said stop", details={})
    for error, expected, text in [
        (refusal, orgdb.OrgDbError.Conflict, "operator said stop"),
        (RuntimeError("disk quota"), orgdb.OrgDbError.Storage, "disk quota"),
    ]:
        empty = orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock))
        with pytest.raises(expected) as caught:
            empty.import_jsonl(dump, None, Stopping(error))
        assert text in caught.value.message
        assert all(t.rows == 0 for t in empty.stats() if t.table != "meta")


def test_normalize_email():
    assert orgdb.normalize_email("  Alice@Example.COM ") == "alice@example.com"
