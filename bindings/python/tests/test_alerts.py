"""Usage alerts from Python: thresholds per organization, announced once per quota period."""

import json
from datetime import datetime, timezone

import orgdb
from helpers import as_user, metered, raises


def test_thresholds_fire_once_per_period_and_owners_set_them(clock):
    clock.set(datetime(2024, 3, 10, 12, tzinfo=timezone.utc))
    db = metered(clock, 100)
    owner_user = db.create_user(orgdb.NewUser(email="owner@example.com", name="Owner"))
    org = db.create_organization(owner_user.id, orgdb.NewOrganization(name="Acme")).organization
    owner = as_user(owner_user)

    alerts = db.usage_alerts(owner, org.id)
    assert alerts.default_thresholds
    assert [a.threshold_percent for a in alerts.alerts] == [80, 100]
    assert (alerts.period_start, alerts.period_end) == ("2024-03-01", "2024-03-31")

    alerts = db.set_usage_alerts(owner, org.id, [90, 50])
    assert [(a.threshold_percent, a.mark) for a in alerts.alerts] == [(50, 50), (90, 90)]
    assert not alerts.default_thresholds

    db.record_usage(org.id, orgdb.UsageEvent(count=60))
    alerts = db.usage_alerts(owner, org.id)
    assert alerts.used == 60 and alerts.percentage == 60
    half, most = alerts.alerts
    assert half.reached and half.fired_this_period
    assert half.fired_period_start == "2024-03-01"
    assert not most.reached and most.fired_period_start is None
    fired = [
        json.loads(e.details)["threshold_percent"]
        for e in db.audit_log(orgdb.Actor.SYSTEM(), org.id, 0, 100)
        if e.action == "usage.threshold"
    ]
    assert fired == [50]

    # The next month announces afresh.
    clock.set(datetime(2024, 4, 2, tzinfo=timezone.utc))
    db.usage_recorder(org.id).record(None, 55)
    db.flush()
    alerts = db.usage_alerts(owner, org.id)
    assert alerts.alerts[0].fired_period_start == "2024-04-01"

    err = raises(orgdb.OrgDbError.Validation, db.set_usage_alerts, owner, org.id, [0])
    assert "thresholds[0]" in err.details
    assert db.set_usage_alerts(owner, org.id, []).alerts == []
    assert db.set_usage_alerts(orgdb.Actor.SYSTEM(), org.id, None).default_thresholds
