"""Small helpers of the binding tests."""

import pytest

import orgdb
from orgdb import _generated, _runtime


def generated(call, *args):
    """`call(*args)` through UniFFI's own runtime, for comparison."""
    with _runtime.generated_runtime(_generated):
        return call(*args)


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


def rich_organization(db, owner, description):
    """An organization of `owner` whose fields use every kind of value: non-ASCII text, an
    empty and a missing optional field, settings with extras, metadata at its limits."""
    return db.create_organization(
        owner.id,
        orgdb.NewOrganization(
            name="Ünïcødé 🚀 Org",
            description=description,
            plan="pro",
            address_line1="",
            city="Zürich",
            settings=orgdb.OrganizationSettings(pin_protection=True, extra={"theme": "dark"}),
            metadata={"e": "", "k" * 64: "v" * 1000, "emoji": "🦀"},
        ),
    ).organization
