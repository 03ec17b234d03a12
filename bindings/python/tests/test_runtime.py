"""The package's faster runtime (orgdb/_runtime.py) in place of UniFFI's: in place, and every
value and error crossing the boundary exactly as UniFFI's own runtime carries it."""

import types
from datetime import datetime, timezone

import pytest

import orgdb
from orgdb import _generated, _runtime
from helpers import as_user, generated, raises, rich_organization

# Values that stress the wire format: empty, multi-byte, longer than the generated builder's
# first 16 bytes, longer than 64 KiB (the Rust buffer grows), and unsigned extremes.
LONG = "ü" * 40_000
DESCRIPTION = "ü" * 1_999  # the longest description: 3 998 bytes



def both(call, *args):
    fast = call(*args)
    slow = generated(call, *args)
    assert fast == slow
    return fast


def test_the_fast_runtime_is_in_place():
    assert orgdb.FAST_RUNTIME is True
    assert _runtime.fits(_generated)
    # A module without the expected pieces (another UniFFI version) is left alone.
    assert not _runtime.fits(types.SimpleNamespace())
    names = {name or attr for name, attr in _runtime._PLACES + _runtime._USED}
    partial = types.SimpleNamespace(**{n: getattr(_generated, n) for n in names})
    assert _runtime.fits(partial)
    partial._UniffiFfiConverterString = type("S", (), {"lift": None, "lower": None})
    assert not _runtime.fits(partial)
    assert _generated._uniffi_rust_call_with_error.__module__ == "orgdb._runtime"
    with _runtime.generated_runtime(_generated):
        assert _generated._uniffi_rust_call_with_error.__module__ != "orgdb._runtime"
    assert _generated._uniffi_rust_call_with_error.__module__ == "orgdb._runtime"


@pytest.fixture
def rich(db, clock, make_user):
    """An organization whose fields use every kind of value."""
    owner = make_user("Ωmega Owner")
    org = rich_organization(db, owner, DESCRIPTION)
    clock.advance_seconds(1)
    db.add_member(as_user(owner), org.id, make_user("Bob").id, "admin")
    return owner, org


def test_results_are_the_same_through_both_runtimes(db, rich):
    owner, org = rich
    actor = as_user(owner)
    details = both(db.get_organization, actor, org.id)
    assert details.organization.description == DESCRIPTION
    assert details.organization.metadata["emoji"] == "🦀"
    page = both(db.list_members, actor, org.id, orgdb.MemberQuery(per_page=1))
    assert page.next_cursor is not None
    both(db.list_members_json, actor, org.id, orgdb.MemberQuery())
    both(db.get_organization_json, actor, org.id)
    both(db.usage_report, actor, org.id, orgdb.UsageQuery())
    events = both(db.audit_log, actor, org.id, 0, 100)
    assert len(events) >= 2
    assert both(orgdb.normalize_email, "  ÀDA@Example.COM ") == "àda@example.com"
    assert both(orgdb.normalize_email, "") == ""
    assert both(orgdb.normalize_email, LONG) == LONG


def test_arguments_cross_the_same_through_both_runtimes(db, rich):
    owner, org = rich
    actor = as_user(owner)
    patch = orgdb.OrganizationPatch(description=orgdb.FieldUpdate.SET(value=DESCRIPTION[1:] + "!"))
    fast = db.update_organization(actor, org.id, patch)
    slow = generated(db.update_organization, actor, org.id, patch)
    assert fast.description == slow.description == DESCRIPTION[1:] + "!"
    recorder = db.usage_recorder(org.id)
    big = 2**53
    assert raises(orgdb.OrgDbError.Validation, recorder.record, None, big + 1).details == (
        generated(lambda: raises(orgdb.OrgDbError.Validation, recorder.record, None, big + 1))
        .details
    )
    assert recorder.record(None, 7).used == 7
    assert generated(recorder.record, None, 7).used == 14


def test_errors_are_the_same_through_both_runtimes(db, rich, make_user):
    owner, org = rich
    stranger = as_user(make_user("Stranger"))
    for run in (lambda f, *a: f(*a), generated):
        err = raises(orgdb.OrgDbError.Forbidden, run, db.get_organization, stranger, org.id)
        assert err.code == "forbidden"
        err = raises(
            orgdb.OrgDbError.QuotaExceeded, run, db.check_quota, org.id, 50_001
        )
        assert err.details == {
            "quota": "monthly_requests",
            "limit": "50000",
            "used": "0",
            "requested": "50001",
        }
        err = raises(orgdb.OrgDbError.Validation, run, db.create_user, orgdb.NewUser(email="x", name=""))
        assert {"email", "name"} <= set(err.details)


def test_timestamps_and_unsigned_extremes(db, clock):
    at = datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)
    clock.set(at)
    assert both(db.now) == at
    user = db.create_user(orgdb.NewUser(email="u@example.com", name="U"))
    org = db.create_organization(user.id, orgdb.NewOrganization(name="Max", plan="enterprise"))
    receipt = db.record_usage(org.organization.id, orgdb.UsageEvent(count=2**53))
    assert receipt.used == 2**53 and receipt.limit is None
    assert both(db.check_quota, org.organization.id, 2**53).used == 2**54
