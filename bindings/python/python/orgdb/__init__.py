"""orgdb: an embedded engine for multi-tenant SaaS state (organizations, users, members and
roles, invitations, projects, plans with limits, exact usage quotas), from Python.

Everything public comes from the module UniFFI generates from the Rust crate (`orgdb.orgdb`,
written by maturin at build time). `_runtime` gives that module a faster runtime for moving
values across the boundary (same wire format); `FAST_RUNTIME` says whether it is in place.
"""

from .orgdb import *  # noqa: F401,F403  (the generated bindings)
from .orgdb import orgdb as _generated
from . import _runtime

FAST_RUNTIME = _runtime.install(_generated)
