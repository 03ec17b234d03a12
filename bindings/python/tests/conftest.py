"""Fixtures shared by the binding tests: a manual clock, databases, users and errors."""

from datetime import datetime, timezone

import pytest

import orgdb

# Seed 000's timestamps: the organization is created at 2024-01-15T10:30:00Z.
START = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return orgdb.ManualClock(START)


@pytest.fixture
def db(clock):
    return orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock))


@pytest.fixture
def make_user(db):
    def make(name):
        email = name.lower().replace(" ", ".") + "@example.com"
        return db.create_user(orgdb.NewUser(email=email, name=name))

    return make
