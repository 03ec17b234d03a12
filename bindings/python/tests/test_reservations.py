"""Usage reservations from Python: hold quota before an expensive call, settle the real cost
after it."""

from datetime import timedelta

import orgdb
from helpers import as_user, metered, raises


def test_a_hold_counts_at_once_and_settles_exactly(clock):
    db = metered(clock, 100)
    owner = db.create_user(orgdb.NewUser(email="owner@example.com", name="Owner"))
    org = db.create_organization(owner.id, orgdb.NewOrganization(name="Acme")).organization

    hold = db.reserve_usage(org.id, orgdb.NewReservation(count=60))
    assert hold.id.startswith("rsv_") and hold.count == 60
    assert hold.expires_at - hold.created_at == timedelta(minutes=5)
    raises(orgdb.OrgDbError.QuotaExceeded, db.check_quota, org.id, 41)
    db.usage_recorder(org.id).record(None, 40)

    receipt = db.commit_reservation(org.id, hold.id, 45)
    assert (receipt.used, receipt.duplicate) == (85, False)
    assert db.commit_reservation(org.id, hold.id, 45).duplicate

    short = db.reserve_usage(
        org.id, orgdb.NewReservation(count=15, expires_in=timedelta(seconds=30))
    )
    assert db.release_reservation(org.id, short.id)
    assert not db.release_reservation(org.id, short.id)
    raises(orgdb.OrgDbError.NotFound, db.commit_reservation, org.id, short.id, 1)

    err = raises(orgdb.OrgDbError.Validation, db.reserve_usage, org.id, orgdb.NewReservation(count=0))
    assert list(err.details) == ["count"]
    assert db.get_organization(as_user(owner), org.id).usage.monthly_requests == 85
