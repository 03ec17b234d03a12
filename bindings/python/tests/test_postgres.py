"""A PostgreSQL URL instead of a file: two handles (as two app servers would hold) share one
database, its rules and its exact quotas. Runs when ORGDB_TEST_POSTGRES_URL names a server
(scripts/test-all.sh starts one with scripts/pg-server.sh); skipped otherwise."""

import os

import pytest

import orgdb
from helpers import as_user, raises

SERVER = os.environ.get("ORGDB_TEST_POSTGRES_URL")


@pytest.mark.skipif(not SERVER, reason="no PostgreSQL server (scripts/pg-server.sh)")
def test_two_handles_share_a_postgres_database():
    url = f"{SERVER}?schema=py_{os.getpid()}"
    first = orgdb.OrgDb.open(url)
    second = orgdb.OrgDb.open(url)  # a file would be "in use"; a server is shared

    owner = first.create_user(orgdb.NewUser(email="o@example.com", name="Owner"))
    org = first.create_organization(
        owner.id, orgdb.NewOrganization(name="Shared", plan="free")
    ).organization
    assert second.get_organization(as_user(owner), org.id).organization == org

    # free: 3 seats. Each handle fills one; the third add is refused whichever handle asks.
    for db, name in [(first, "a"), (second, "b")]:
        user = db.create_user(orgdb.NewUser(email=f"{name}@example.com", name=name))
        db.add_member(as_user(owner), org.id, user.id, "member")
    late = second.create_user(orgdb.NewUser(email="late@example.com", name="Late"))
    err = raises(
        orgdb.OrgDbError.QuotaExceeded, first.add_member, as_user(owner), org.id, late.id, "member"
    )
    assert err.details["quota"] == "team_members"

    # An override one handle sets is what the other reads.
    first.set_entitlement_override(
        orgdb.Actor.SYSTEM(), org.id, "sso", orgdb.EntitlementValue.FEATURE(enabled=True)
    )
    sso = second.entitlement(as_user(owner), org.id, "sso")
    assert sso.has_access and sso.source == orgdb.EntitlementSource.OVERRIDE

    # Usage from both handles counts against one exact monthly total; a key counts once.
    first.record_usage(org.id, orgdb.UsageEvent(count=600, idempotency_key="k"))
    assert second.record_usage(org.id, orgdb.UsageEvent(count=600, idempotency_key="k")).duplicate
    raises(orgdb.OrgDbError.QuotaExceeded, second.record_usage, org.id, orgdb.UsageEvent(count=401))
    assert second.record_usage(org.id, orgdb.UsageEvent(count=400)).used == 1000

    report = second.check()
    assert report.ok, report.problems
    tables = {s.table for s in first.stats()}
    assert "memberships" in tables and "usage_periods" in tables
