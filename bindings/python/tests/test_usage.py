"""Usage: monthly quota, idempotency, batches, buffered admission, month rollover and the
errors of bad events."""

from datetime import datetime, timedelta, timezone

import pytest

import orgdb
from conftest import START
from helpers import as_user, raises

# The calendar month of the tests' clock (receipts name their quota period).
JANUARY = ("2024-01-01", "2024-01-31")


@pytest.fixture
def org(db, make_user):
    """An organization whose monthly_requests limit is overridden to 100."""
    owner = make_user("Owner")
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Metered")).organization
    details = db.set_limit_overrides(
        orgdb.Actor.SYSTEM(),
        org.id,
        orgdb.LimitOverridesPatch(
            monthly_requests=orgdb.LimitUpdate.SET(limit=orgdb.Limit.COUNT(value=100))
        ),
    )
    assert details.limits.monthly_requests == 100
    return org


def test_quota_exceeded_records_nothing(db, org):
    assert db.record_usage(org.id, orgdb.UsageEvent(count=60)).remaining == 40
    err = raises(orgdb.OrgDbError.QuotaExceeded, db.record_usage, org.id, orgdb.UsageEvent(count=50))
    assert err.code == "quota_exceeded"
    assert err.details == {
        "quota": "monthly_requests",
        "limit": "100",
        "used": "60",
        "requested": "50",
    }
    assert err.http_status() == 429
    assert "monthly_requests" in err.message

    # Nothing was recorded; exactly the rest still fits.
    assert db.check_quota(org.id, 40) == orgdb.UsageReceipt(
        duplicate=False,
        used=100,
        limit=100,
        remaining=0,
        period_start=JANUARY[0],
        period_end=JANUARY[1],
    )
    raises(orgdb.OrgDbError.QuotaExceeded, db.check_quota, org.id, 41)
    assert db.record_usage(org.id, orgdb.UsageEvent(count=40)).remaining == 0
    raises(orgdb.OrgDbError.QuotaExceeded, db.record_usage, org.id, orgdb.UsageEvent(count=1))


def test_idempotency_key_counts_once(db, org):
    event = orgdb.UsageEvent(count=10, idempotency_key="req-1")
    first = db.record_usage(org.id, event)
    again = db.record_usage(org.id, orgdb.UsageEvent(count=99, idempotency_key="req-1"))
    assert (first.duplicate, first.used) == (False, 10)
    assert (again.duplicate, again.used) == (True, 10)


def test_batch_is_all_or_nothing(db, org):
    receipts = db.record_usage_batch(
        org.id, [orgdb.UsageEvent(count=30), orgdb.UsageEvent(count=20, idempotency_key="k")]
    )
    assert [r.used for r in receipts][-1] == 50
    raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.record_usage_batch,
        org.id,
        [orgdb.UsageEvent(count=30), orgdb.UsageEvent(count=30)],
    )
    assert db.check_quota(org.id, 1).used == 51


def test_buffered_usage_shares_the_quota(db, org):
    assert db.record_usage_buffered(org.id, orgdb.UsageEvent(count=70)).used == 70
    raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.record_usage_buffered,
        org.id,
        orgdb.UsageEvent(count=31),
    )
    db.flush()
    assert db.record_usage(org.id, orgdb.UsageEvent(count=30)).remaining == 0


def test_a_recorder_counts_against_the_same_quota(db, org):
    recorder = db.usage_recorder(org.id)
    assert recorder.organization_id() == org.id
    assert recorder.record(None, 60) == orgdb.UsageReceipt(
        duplicate=False,
        used=60,
        limit=100,
        remaining=40,
        period_start=JANUARY[0],
        period_end=JANUARY[1],
    )
    assert db.record_usage(org.id, orgdb.UsageEvent(count=30)).used == 90
    err = raises(orgdb.OrgDbError.QuotaExceeded, recorder.record, None, 11)
    assert err.details["used"] == "90"
    err = raises(orgdb.OrgDbError.Validation, recorder.record, None, 0)
    assert list(err.details) == ["count"]
    raises(orgdb.OrgDbError.NotFound, recorder.record, "res_missing", 1)
    again = orgdb.UsageEvent(count=5, idempotency_key="r-1")
    assert recorder.record_event(again).used == 95
    assert recorder.record_event(again).duplicate
    recorder.flush()
    raises(orgdb.OrgDbError.NotFound, db.usage_recorder, "org_missing")


def test_month_rollover_with_the_manual_clock(db, clock, org):
    db.record_usage(org.id, orgdb.UsageEvent(count=100))
    raises(orgdb.OrgDbError.QuotaExceeded, db.record_usage, org.id, orgdb.UsageEvent(count=1))
    clock.set(datetime(2024, 2, 1, tzinfo=timezone.utc))
    assert db.record_usage(org.id, orgdb.UsageEvent(count=1)).used == 1
    # A late event counts in its own month, against that month's limit.
    late = datetime(2024, 1, 31, 23, tzinfo=timezone.utc)
    raises(
        orgdb.OrgDbError.QuotaExceeded,
        db.record_usage,
        org.id,
        orgdb.UsageEvent(count=1, at=late),
    )


@pytest.mark.parametrize(
    "event, field",
    [
        (orgdb.UsageEvent(count=0), "count"),
        (orgdb.UsageEvent(count=2**53 + 1), "count"),
        (orgdb.UsageEvent(count=1, at=START + timedelta(minutes=6)), "at"),
        (orgdb.UsageEvent(count=1, at=START - timedelta(days=36)), "at"),
        (orgdb.UsageEvent(count=1, idempotency_key=""), "idempotency_key"),
    ],
)
def test_bad_events_name_the_field(db, org, event, field):
    err = raises(orgdb.OrgDbError.Validation, db.record_usage, org.id, event)
    assert err.code == "validation_error"
    assert field in err.details, err.details


def test_usage_of_unknown_things(db, org, make_user):
    raises(orgdb.OrgDbError.NotFound, db.record_usage, "org_missing", orgdb.UsageEvent(count=1))
    raises(
        orgdb.OrgDbError.NotFound,
        db.record_usage,
        org.id,
        orgdb.UsageEvent(count=1, resource_id="res_missing"),
    )


@pytest.mark.parametrize(
    "query, field",
    [
        (orgdb.UsageQuery(start_date="2024-13-01"), "start_date"),
        (orgdb.UsageQuery(start_date="2024-01-01", end_date="01/31/2024"), "end_date"),
        (orgdb.UsageQuery(start_date="2024-02-01", end_date="2024-01-01"), "end_date"),
        (orgdb.UsageQuery(start_date="2023-01-01", end_date="2024-12-31"), "end_date"),
    ],
)
def test_bad_report_ranges(db, org, query, field):
    err = raises(orgdb.OrgDbError.Validation, db.usage_report, orgdb.Actor.SYSTEM(), org.id, query)
    assert field in err.details


def test_report_needs_membership_and_prune(db, clock, org, make_user):
    stranger = make_user("Stranger")
    raises(
        orgdb.OrgDbError.Forbidden,
        db.usage_report,
        as_user(stranger),
        org.id,
        orgdb.UsageQuery(),
    )
    db.record_usage(org.id, orgdb.UsageEvent(count=5))
    clock.set(datetime(2024, 6, 1, tzinfo=timezone.utc))
    pruned = db.prune_usage("2024-05-01")
    assert pruned.day_rows == 1
    raises(orgdb.OrgDbError.Validation, db.prune_usage, "May 1st")


def test_concurrent_callers_never_pass_the_limit(db, org):
    """Threads share one handle; the quota check and the write are one step."""
    from concurrent.futures import ThreadPoolExecutor

    def record(_):
        try:
            db.record_usage(org.id, orgdb.UsageEvent(count=1))
            return "ok"
        except orgdb.OrgDbError.QuotaExceeded as err:
            assert err.code == "quota_exceeded"
            return "refused"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(record, range(160)))
    assert outcomes.count("ok") == 100
    assert outcomes.count("refused") == 60
    raises(orgdb.OrgDbError.QuotaExceeded, db.check_quota, org.id, 1)


def test_api_key_usage_has_its_own_breakdown(db, org):
    sys = orgdb.Actor.SYSTEM()
    key = db.register_resource(sys, org.id, orgdb.ResourceKind.API_KEY, "CI key")
    mcp = db.register_resource(sys, org.id, orgdb.ResourceKind.MCP, "Search")
    db.record_usage(org.id, orgdb.UsageEvent(count=3, resource_id=key.id))
    db.record_usage(org.id, orgdb.UsageEvent(count=2, resource_id=mcp.id))
    report = db.usage_report(sys, org.id, orgdb.UsageQuery())
    assert report.requests.total == 5
    assert [(k.api_key_id, k.name, k.requests) for k in report.by_api_key] == [(key.id, "CI key", 3)]
    assert [(m.mcp_id, m.requests) for m in report.by_mcp] == [(mcp.id, 2)]


def test_limit_overrides_are_a_patch(db, org):
    sys = orgdb.Actor.SYSTEM()
    unlimited = orgdb.LimitUpdate.SET(limit=orgdb.Limit.UNLIMITED())
    details = db.set_limit_overrides(sys, org.id, orgdb.LimitOverridesPatch(mcps=unlimited))
    assert details.limits.mcps is None
    assert details.limits.monthly_requests == 100, "not given: stays"
    details = db.set_limit_overrides(
        sys, org.id, orgdb.LimitOverridesPatch(monthly_requests=orgdb.LimitUpdate.PLAN())
    )
    assert details.limits.monthly_requests == 1_000, "cleared: the free plan's value"
    assert details.limits.mcps is None


def test_correct_usage(db, clock, org):
    db.record_usage(org.id, orgdb.UsageEvent(count=10))
    today = "2024-01-15"  # dates cross the boundary as YYYY-MM-DD
    fixed = db.correct_usage(
        orgdb.Actor.SYSTEM(),
        org.id,
        orgdb.UsageCorrection(date=today, delta=-4, idempotency_key="c1", reason="double count"),
    )
    assert (fixed.before, fixed.after, fixed.month_total, fixed.duplicate) == (10, 6, 6, False)
    again = db.correct_usage(
        orgdb.Actor.SYSTEM(), org.id, orgdb.UsageCorrection(date=today, delta=-4, idempotency_key="c1")
    )
    assert again.duplicate and again.month_total == 6
    err = raises(
        orgdb.OrgDbError.Validation,
        db.correct_usage,
        orgdb.Actor.SYSTEM(),
        org.id,
        orgdb.UsageCorrection(date=today, delta=-7),
    )
    assert "delta" in err.details
