"""Entitlements: plan features and named limits, per-organization overrides, and the
`projects` limit, from Python."""

import pytest

import orgdb
from helpers import as_user, raises


@pytest.fixture
def edb(clock):
    """A catalog with features and a `projects` limit on its `starter` plan."""
    return orgdb.OrgDb.in_memory_with(
        orgdb.Options(
            clock=clock,
            plans={"starter": orgdb.Limits(team_members=5), "scale": orgdb.Limits()},
            plan_entitlements={
                "starter": orgdb.PlanEntitlements(
                    features=["audit_export"], limits={"projects": 2}
                ),
                "scale": orgdb.PlanEntitlements(
                    features=["sso"], limits={"projects": None, "seats_sso": 10}
                ),
            },
            default_plan="starter",
        )
    )


def owned_org(db, plan):
    owner = db.create_user(orgdb.NewUser(email=f"{plan}@example.com", name="Owner"))
    org = db.create_organization(owner.id, orgdb.NewOrganization(name=plan.title(), plan=plan))
    return org.organization, as_user(owner)


def test_features_and_overrides(edb):
    org, owner = owned_org(edb, "starter")
    audit = edb.entitlement(owner, org.id, "audit_export")
    assert audit.kind == orgdb.EntitlementKind.FEATURE
    assert audit.has_access
    assert audit.source == orgdb.EntitlementSource.PLAN
    assert audit.plan == "starter"
    assert (audit.limit, audit.used) == (None, None)
    sso = edb.entitlement(owner, org.id, "sso")
    assert not sso.has_access
    assert sso.source == orgdb.EntitlementSource.DEFAULT

    on = edb.set_entitlement_override(
        orgdb.Actor.SYSTEM(), org.id, "sso", orgdb.EntitlementValue.FEATURE(enabled=True)
    )
    assert on.has_access and on.source == orgdb.EntitlementSource.OVERRIDE
    assert edb.entitlement(owner, org.id, "sso") == on
    cleared = edb.set_entitlement_override(orgdb.Actor.SYSTEM(), org.id, "sso", None)
    assert cleared == sso

    names = [e.name for e in edb.entitlements(owner, org.id)]
    assert names == [
        "mcps",
        "api_keys",
        "team_members",
        "monthly_requests",
        "audit_export",
        "projects",
        "seats_sso",
        "sso",
    ]


def test_projects_limit(edb):
    org, owner = owned_org(edb, "starter")
    for name in ["One", "Two"]:
        edb.create_project(owner, org.id, orgdb.NewProject(name=name))
    err = raises(
        orgdb.OrgDbError.QuotaExceeded,
        edb.create_project,
        owner,
        org.id,
        orgdb.NewProject(name="Three"),
    )
    assert err.details["quota"] == "projects"
    projects = edb.entitlement(owner, org.id, "projects")
    assert (projects.limit, projects.used, projects.has_access) == (2, 2, False)
    raised = edb.set_entitlement_override(
        orgdb.Actor.SYSTEM(), org.id, "projects", orgdb.EntitlementValue.LIMIT(limit=3)
    )
    assert (raised.limit, raised.has_access) == (3, True)
    edb.create_project(owner, org.id, orgdb.NewProject(name="Three"))
    unlimited = edb.set_entitlement_override(
        orgdb.Actor.SYSTEM(), org.id, "projects", orgdb.EntitlementValue.LIMIT(limit=None)
    )
    assert unlimited.limit is None and unlimited.has_access


def test_errors_name_their_field(edb):
    org, owner = owned_org(edb, "starter")
    err = raises(orgdb.OrgDbError.Validation, edb.entitlement, owner, org.id, "Bad Name")
    assert list(err.details) == ["name"]
    raises(orgdb.OrgDbError.NotFound, edb.entitlement, owner, org.id, "nothing_here")
    err = raises(
        orgdb.OrgDbError.Validation,
        edb.set_entitlement_override,
        orgdb.Actor.SYSTEM(),
        org.id,
        "sso",
        orgdb.EntitlementValue.LIMIT(limit=1),
    )
    assert list(err.details) == ["value"]
    raises(
        orgdb.OrgDbError.Forbidden,
        edb.set_entitlement_override,
        owner,
        org.id,
        "sso",
        orgdb.EntitlementValue.FEATURE(enabled=True),
    )


def test_a_bad_catalog_is_refused(clock):
    for entitlements in [
        {"missing_plan": orgdb.PlanEntitlements(features=["sso"])},
        {"starter": orgdb.PlanEntitlements(features=["Not A Name"])},
        {"starter": orgdb.PlanEntitlements(limits={"mcps": 1})},
    ]:
        err = raises(
            orgdb.OrgDbError.Validation,
            orgdb.OrgDb.in_memory_with,
            orgdb.Options(
                clock=clock,
                plans={"starter": orgdb.Limits()},
                plan_entitlements=entitlements,
                default_plan="starter",
            ),
        )
        assert list(err.details)[0] in ("plans", "plan_entitlements")


def test_soft_limits(clock):
    db = orgdb.OrgDb.in_memory_with(
        orgdb.Options(
            clock=clock,
            plans={"metered": orgdb.Limits(monthly_requests=100)},
            plan_entitlements={
                "metered": orgdb.PlanEntitlements(soft_limits={"monthly_requests": 50})
            },
            default_plan="metered",
        )
    )
    org, owner = owned_org(db, "metered")
    within = db.record_usage(org.id, orgdb.UsageEvent(count=100))
    assert (within.used, within.over, within.overage) == (100, False, 0)
    over = db.record_usage(org.id, orgdb.UsageEvent(count=30))
    assert (over.used, over.over, over.overage, over.remaining) == (130, True, 30, 0)
    err = raises(orgdb.OrgDbError.QuotaExceeded, db.record_usage, org.id, orgdb.UsageEvent(count=21))
    assert err.details["limit"] == "150"
    quota = db.entitlement(owner, org.id, "monthly_requests")
    assert quota.enforcement == orgdb.Enforcement.SOFT(overage_cap=50)
    assert (quota.limit, quota.used, quota.has_access) == (100, 130, True)
