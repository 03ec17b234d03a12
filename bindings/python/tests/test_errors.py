"""The error hierarchy: one exception class per stable code, all catchable as OrgDbError."""

import pytest

import orgdb
from helpers import raises

VARIANTS = [
    "NotFound",
    "Forbidden",
    "Validation",
    "Conflict",
    "QuotaExceeded",
    "InvitationExpired",
    "Storage",
    "IncompatibleVersion",
    "Corrupted",
]


@pytest.mark.parametrize("name", VARIANTS)
def test_every_code_has_an_exception_class(name):
    variant = getattr(orgdb.OrgDbError, name)
    assert issubclass(variant, orgdb.OrgDbError)
    assert issubclass(variant, Exception)


@pytest.mark.parametrize(
    "call, code, status",
    [
        (lambda db: db.get_user("user_missing"), "not_found", 404),
        (lambda db: db.create_user(orgdb.NewUser(email="nope", name="X")), "validation_error", 422),
        (lambda db: db.prune_usage("yesterday"), "validation_error", 422),
        (lambda db: db.set_plan(orgdb.Actor.SYSTEM(), "org_missing", "pro"), "not_found", 404),
        (lambda db: db.import_jsonl("/nonexistent/orgdb.jsonl", None), "storage_error", 500),
    ],
)
def test_caught_as_the_base_class(db, call, code, status):
    with pytest.raises(orgdb.OrgDbError) as caught:
        call(db)
    err = caught.value
    assert err.code == code
    assert err.http_status() == status
    assert isinstance(err.message, str) and err.message
    assert isinstance(err.details, dict)


def test_validation_names_every_field(db):
    err = raises(
        orgdb.OrgDbError.Validation,
        db.create_user,
        orgdb.NewUser(email="not-an-email", name="Ok"),
    )
    assert list(err.details) == ["email"]
    assert all(isinstance(v, str) for v in err.details.values())
    # Nothing was written.
    raises(orgdb.OrgDbError.NotFound, db.find_user_by_email, "not-an-email")


def test_conflict_on_taken_email(db, make_user):
    make_user("Taken")
    err = raises(
        orgdb.OrgDbError.Conflict,
        db.create_user,
        orgdb.NewUser(email="TAKEN@example.com", name="Other"),
    )
    assert err.code == "conflict"
    assert err.http_status() == 409
