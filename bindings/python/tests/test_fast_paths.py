"""The speed entry points: the recorder's batch (`record_many`) and lean `add`, the JSON
variants of the read calls, and timestamps crossing as integers (exact at every microsecond
and year)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

import orgdb
from conftest import START
from helpers import as_user, raises

# The calendar month of the tests' clock (receipts name their quota period).
JANUARY = ("2024-01-01", "2024-01-31")


@pytest.fixture
def metered(db, make_user):
    """An organization with two MCP servers and a monthly_requests limit of 1 000."""
    owner = make_user("Owner")
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Metered")).organization
    db.set_limit_overrides(
        orgdb.Actor.SYSTEM(),
        org.id,
        orgdb.LimitOverridesPatch(
            monthly_requests=orgdb.LimitUpdate.SET(limit=orgdb.Limit.COUNT(value=1000))
        ),
    )
    calc = db.register_resource(as_user(owner), org.id, orgdb.ResourceKind.MCP, "calc")
    search = db.register_resource(as_user(owner), org.id, orgdb.ResourceKind.MCP, "search")
    return owner, org, calc, search


def test_record_many_is_admitted_whole_or_not_at_all(db, metered):
    owner, org, calc, search = metered
    recorder = db.usage_recorder(org.id)
    # One count per event by default; None is an event outside any resource.
    receipt = recorder.record_many([calc.id, None, search.id, calc.id])
    assert receipt == orgdb.UsageReceipt(
        duplicate=False,
        used=4,
        limit=1000,
        remaining=996,
        period_start=JANUARY[0],
        period_end=JANUARY[1],
    )
    assert recorder.record_many([calc.id, search.id], counts=[300, 200]).used == 504
    # Past the limit as a sum: refused whole, the sum as `requested`.
    err = raises(orgdb.OrgDbError.QuotaExceeded, recorder.record_many, [None, None], [400, 97])
    assert (err.details["used"], err.details["requested"]) == ("504", "497")
    # An unknown resource refuses the batch.
    raises(orgdb.OrgDbError.NotFound, recorder.record_many, [calc.id, "res_missing"])
    assert db.check_quota(org.id, 1).used == 505

    report = db.usage_report(as_user(owner), org.id, orgdb.UsageQuery())
    assert {m.mcp_id: m.requests for m in report.by_mcp} == {calc.id: 302, search.id: 201}
    assert report.requests.total == 504


@pytest.mark.parametrize(
    "ids, counts, field",
    [
        ([], None, "resource_ids"),
        ([None] * 10_001, None, "resource_ids"),
        ([None, ""], None, "resource_ids[1]"),
        ([None, "  "], None, "resource_ids[1]"),
        (["mcp_a\nmcp_b"], None, "resource_ids"),
        ([None, None], [1], "counts"),
        ([None, None], [1, 0], "counts[1]"),
        ([None, None], [2**53 + 1, 1], "counts[0]"),
        ([None], [-1], "counts[0]"),
        ([None], [2**64], "counts[0]"),
    ],
)
def test_record_many_names_the_bad_field_and_counts_nothing(db, metered, ids, counts, field):
    _, org, _, _ = metered
    recorder = db.usage_recorder(org.id)
    err = raises(orgdb.OrgDbError.Validation, recorder.record_many, ids, counts)
    assert field in err.details, err.details
    assert db.check_quota(org.id, 1).used == 1


def test_record_many_rejects_what_is_not_a_list_of_ids(db, metered):
    _, org, _, _ = metered
    recorder = db.usage_recorder(org.id)
    with pytest.raises(TypeError):
        recorder.record_many([1, 2])
    with pytest.raises(TypeError):
        recorder.record_many(None)
    # Counts are ints: text (even with a comma in it) or floats are refused, not parsed.
    for counts in (["5"], ["3,4"], "12", [1.5]):
        with pytest.raises(TypeError):
            recorder.record_many([None, None], counts)
    assert db.check_quota(org.id, 1).used == 1


def test_record_many_is_durable_after_flush_and_reopen(tmp_path):
    path = str(tmp_path / "batch.orgdb")
    db = orgdb.OrgDb.open(path)
    owner = db.create_user(orgdb.NewUser(email="o@example.com", name="O"))
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Batch")).organization
    recorder = db.usage_recorder(org.id)
    for _ in range(10):
        recorder.record_many([None] * 100)
    recorder.flush()
    del recorder, db
    again = orgdb.OrgDb.open(path)
    assert again.get_organization(orgdb.Actor.SYSTEM(), org.id).usage.monthly_requests == 1000


def test_add_counts_as_record_does_and_returns_the_total(db, metered):
    owner, org, calc, search = metered
    recorder = db.usage_recorder(org.id)
    on_calc = recorder.for_resource(calc.id)
    assert (on_calc.resource_id(), recorder.resource_id()) == (calc.id, None)
    assert on_calc.organization_id() == org.id
    assert on_calc.add(600) == 600
    assert recorder.add(300) == 900
    # `record`'s errors, and a refused call records nothing.
    err = raises(orgdb.OrgDbError.QuotaExceeded, on_calc.add, 101)
    assert (err.details["used"], err.details["requested"]) == ("900", "101")
    assert "count" in raises(orgdb.OrgDbError.Validation, on_calc.add, 0).details
    assert "resource_id" in raises(orgdb.OrgDbError.Validation, recorder.for_resource, " ").details
    raises(orgdb.OrgDbError.NotFound, recorder.for_resource("res_missing").add, 1)
    with pytest.raises(ValueError):
        on_calc.add(-1)
    with pytest.raises(TypeError):
        on_calc.add("1")
    assert db.check_quota(org.id, 1).used == 901
    report = db.usage_report(as_user(owner), org.id, orgdb.UsageQuery())
    assert {m.mcp_id: m.requests for m in report.by_mcp} == {calc.id: 600}


def instant(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_get_organization_json_is_the_typed_result_as_the_seed_sends_it(db, metered):
    owner, org, _, _ = metered
    typed = db.get_organization(as_user(owner), org.id)
    body = json.loads(db.get_organization_json(as_user(owner), org.id))
    assert body["success"] is True
    data = body["data"]
    assert data["id"] == typed.organization.id
    assert data["slug"] == typed.organization.slug
    assert data["plan"] == typed.organization.plan
    assert data["settings"] == {"pin_protection": False}
    assert instant(data["created_at"]) == typed.organization.created_at == START
    assert data["limits"] == {
        "mcps": typed.limits.mcps,
        "api_keys": typed.limits.api_keys,
        "team_members": typed.limits.team_members,
        "monthly_requests": 1000,
    }
    assert data["usage"] == {"mcps": 2, "api_keys": 0, "team_members": 1, "monthly_requests": 0}


def test_list_members_json_is_the_typed_page(db, clock, metered, make_user):
    owner, org, _, _ = metered
    for name in ["Bob", "Carol"]:  # the free plan seats 3
        clock.advance_seconds(61)
        db.add_member(as_user(owner), org.id, make_user(name).id, "member")
    query = orgdb.MemberQuery(per_page=2)
    typed = db.list_members(as_user(owner), org.id, query)
    body = json.loads(db.list_members_json(as_user(owner), org.id, query))
    assert body["success"] is True
    assert body["pagination"] == {"page": 1, "per_page": 2, "total": 3, "total_pages": 2}
    assert body["next_cursor"] == typed.next_cursor is not None
    assert [m["id"] for m in body["data"]] == [m.id for m in typed.data]
    assert [m["role"] for m in body["data"]] == ["owner", "member"]
    assert [instant(m["joined_at"]) for m in body["data"]] == [m.joined_at for m in typed.data]
    assert body["data"][0]["last_active"] is None
    last = json.loads(
        db.list_members_json(as_user(owner), org.id, orgdb.MemberQuery(page=2, per_page=2))
    )
    assert "next_cursor" not in last
    assert [m["name"] for m in last["data"]] == ["Carol"]


def test_usage_report_json_is_the_typed_report(db, metered):
    owner, org, calc, _ = metered
    db.record_usage(org.id, orgdb.UsageEvent(count=7, resource_id=calc.id))
    query = orgdb.UsageQuery(period=orgdb.Period.DAY)
    typed = db.usage_report(as_user(owner), org.id, query)
    data = json.loads(db.usage_report_json(as_user(owner), org.id, query))["data"]
    assert data["period"] == "day"
    assert data["requests"] == {
        "total": 7,
        "limit": 1000,
        "percentage": typed.requests.percentage,
    }
    assert data["by_mcp"] == [{"mcp_id": calc.id, "name": "calc", "requests": 7}]
    assert [d["requests"] for d in data["by_day"]] == [d.requests for d in typed.by_day]
    assert instant(data["start_date"]) == typed.start_date


def test_json_variants_raise_what_the_typed_calls_raise(db, metered, make_user):
    owner, org, _, _ = metered
    stranger = as_user(make_user("Stranger"))
    for call in (db.get_organization, db.get_organization_json):
        raises(orgdb.OrgDbError.Forbidden, call, stranger, org.id)
        raises(orgdb.OrgDbError.NotFound, call, as_user(owner), "org_missing")
    for call in (db.list_members, db.list_members_json):
        raises(orgdb.OrgDbError.Forbidden, call, stranger, org.id, orgdb.MemberQuery())
        err = raises(
            orgdb.OrgDbError.Validation, call, as_user(owner), org.id, orgdb.MemberQuery(role="x")
        )
        assert "role" in err.details
    for call in (db.usage_report, db.usage_report_json):
        err = raises(
            orgdb.OrgDbError.Validation,
            call,
            as_user(owner),
            org.id,
            orgdb.UsageQuery(start_date="2024-13-01"),
        )
        assert "start_date" in err.details


@pytest.mark.parametrize(
    "at",
    [
        datetime(2024, 1, 15, 10, 30, 0, 1, tzinfo=timezone.utc),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        # Outside the float fast path (|t| >= 2^52 µs from 1970): the exact path.
        datetime(2150, 6, 7, 8, 9, 10, 123457, tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(1800, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(1, 1, 1, tzinfo=timezone.utc),
    ],
)
def test_timestamps_cross_exactly_in_every_year(db, clock, at):
    clock.set(at)
    user = db.create_user(orgdb.NewUser(email="t@example.com", name="T"))
    assert user.created_at == at
    assert user.created_at.tzinfo is not None
    # And back in: an event at the same instant is counted on its day.
    org = db.create_organization(user.id, orgdb.NewOrganization(name="Time")).organization
    receipt = db.record_usage(org.id, orgdb.UsageEvent(count=1, at=at))
    assert receipt.used == 1


def test_timestamps_in_other_zones_are_the_same_instant(db, clock):
    zone = timezone(timedelta(hours=-5))
    clock.set(datetime(2024, 3, 1, 12, tzinfo=timezone.utc))
    user = db.create_user(orgdb.NewUser(email="z@example.com", name="Z"))
    org = db.create_organization(user.id, orgdb.NewOrganization(name="Zone")).organization
    local = datetime(2024, 3, 1, 6, 30, tzinfo=zone)  # 11:30 UTC, inside the window
    db.record_usage(org.id, orgdb.UsageEvent(count=3, at=local))
    report = db.usage_report(
        orgdb.Actor.SYSTEM(), org.id, orgdb.UsageQuery(period=orgdb.Period.DAY)
    )
    assert report.requests.total == 3
    with pytest.raises(TypeError):
        db.record_usage(org.id, orgdb.UsageEvent(count=1, at=datetime(2024, 3, 1)))
