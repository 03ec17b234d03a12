"""Small helpers of the binding tests."""

import pytest

import orgdb


def as_user(user):
    """The actor of a user record."""
    return orgdb.Actor.USER(id=user.id)


def raises(variant, call, *args, **kwargs):
    """Calls and returns the orgdb error of the expected variant, failing otherwise."""
    with pytest.raises(variant) as caught:
        call(*args, **kwargs)
    err = caught.value
    assert isinstance(err, orgdb.OrgDbError)
    return err


def metered(clock, monthly_requests=10):
    """An in-memory database on `clock` whose default plan, "metered", allows
    `monthly_requests` a quota period."""
    return orgdb.OrgDb.in_memory_with(
        orgdb.Options(
            clock=clock,
            plans={"metered": orgdb.Limits(monthly_requests=monthly_requests)},
            default_plan="metered",
        )
    )
