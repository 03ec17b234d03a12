"""Quota periods from Python: a billing anchor, calendar periods, and the period in receipts
and reports."""

from datetime import datetime, timezone

import orgdb
from helpers import as_user, metered, raises


def owned_org(db):
    owner = db.create_user(orgdb.NewUser(email="owner@example.com", name="Owner"))
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Acme"))
    return org.organization, as_user(owner)


def test_an_anchored_quota_resets_on_the_billing_day(clock):
    clock.set(datetime(2024, 2, 10, 12, tzinfo=timezone.utc))
    db = metered(clock)
    org, owner = owned_org(db)
    assert db.billing_period(owner, org.id).rule == orgdb.QuotaPeriod.CALENDAR_MONTH()
    period = db.set_billing_anchor(
        orgdb.Actor.SYSTEM(), org.id, orgdb.QuotaPeriod.ANCHORED(anchor="2023-01-31")
    )
    assert (period.period_start, period.period_end) == ("2024-01-31", "2024-02-28")
    receipt = db.record_usage(org.id, orgdb.UsageEvent(count=10))
    assert (receipt.used, receipt.period_start) == (10, "2024-01-31")
    raises(orgdb.OrgDbError.QuotaExceeded, db.record_usage, org.id, orgdb.UsageEvent(count=1))
    clock.set(datetime(2024, 2, 29, tzinfo=timezone.utc))
    receipt = db.usage_recorder(org.id).record(None, 2)
    assert (receipt.used, receipt.period_start, receipt.period_end) == (
        2,
        "2024-02-29",
        "2024-03-30",
    )
    report = db.usage_report(owner, org.id, orgdb.UsageQuery())
    assert report.period == orgdb.Period.BILLING
    assert report.requests.total == 2


def test_changing_the_rule_keeps_every_count(clock):
    db = metered(clock)
    org, owner = owned_org(db)
    db.record_usage(org.id, orgdb.UsageEvent(count=4))
    daily = db.set_billing_anchor(orgdb.Actor.SYSTEM(), org.id, orgdb.QuotaPeriod.DAY())
    assert daily.period_start == daily.period_end == "2024-01-15"
    assert db.get_organization(owner, org.id).usage.monthly_requests == 4
    assert db.check_quota(org.id, 6).used == 10
    events = db.audit_log(orgdb.Actor.SYSTEM(), org.id, 0, 100)
    assert events[-1].action == "organization.quota_period_changed"


def test_only_the_operator_sets_it(clock):
    db = metered(clock)
    org, owner = owned_org(db)
    raises(orgdb.OrgDbError.Forbidden, db.set_billing_anchor, owner, org.id, orgdb.QuotaPeriod.WEEK())
    err = raises(
        orgdb.OrgDbError.Validation,
        db.set_billing_anchor,
        orgdb.Actor.SYSTEM(),
        org.id,
        orgdb.QuotaPeriod.ANCHORED(anchor="1800-01-01"),
    )
    assert list(err.details) == ["anchor"]
