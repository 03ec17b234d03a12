"""orgdb from Python against the same operations hand-written with Python's sqlite3.

    bindings/python/bench.sh [--rounds N] [--seconds S] [--workload a,b]

Both sides use files in one temporary directory, durable commits (orgdb's immediate
durability; SQLite in WAL with synchronous=FULL), the schema of the Rust harness
(benches/sqlite_schema.sql) and the same data: an organization of 31 members, one with a
month of usage over 10 MCP resources, and one taking invitations. Each workload runs for
`--seconds` a side per round, the order of the sides alternating by round; the table gives
the medians and the ratio orgdb / sqlite3 (above 1: orgdb is faster).

The SQLite side does what the orgdb call does: the same authorization, checks, rows written
(counters, audit rows), and the same Python values returned (datetimes, roles, lists).
The `_json` rows return the seeds' response body as text on both sides (SQLite: the same
queries, then `json.dumps`); `buffered_batch` counts events a second, BATCH of them a call
(orgdb: `UsageRecorder.record_many`; SQLite: one transaction with `executemany`). The two
buffered rows run SQLite with synchronous=NORMAL (commits not synced, durable at the next
checkpoint), the counterpart of orgdb's buffered usage; every other row syncs each commit.
"""

import argparse
import hashlib
import json
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orgdb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = open(os.path.join(ROOT, "benches", "sqlite_schema.sql")).read()
START = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
MEMBERS = 31
MCPS = 10
BATCH = 1000
ROLE_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}


def micros(t):
    return int(t.timestamp() * 1_000_000)


def from_micros(v):
    return datetime.fromtimestamp(v / 1_000_000, tz=timezone.utc)


def iso(t):
    """A timestamp as the seeds write it (RFC 3339, UTC as `Z`)."""
    return t.isoformat().replace("+00:00", "Z")


def new_id(prefix):
    # Time-ordered like orgdb's ULIDs (creation order sorts).
    return f"{prefix}_{time.time_ns():020d}{secrets.token_hex(3)}"


# ---- the hand-written side ---------------------------------------------------------------


@dataclass
class Member:
    id: str
    membership_id: str
    email: str
    name: str
    role: str
    joined_at: datetime
    updated_at: datetime
    last_active: object


class Lite:
    LIMITS = {"free": (3, 2, 3, 1000), "pro": (10, 10, 5, 50000),
              "team": (50, 50, 25, 1000000), "enterprise": (None, None, None, None)}

    def __init__(self, path):
        self.c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.c.execute("PRAGMA journal_mode=WAL")
        self.c.execute("PRAGMA synchronous=FULL")
        self.c.execute("PRAGMA cache_size=-65536")
        self.c.executescript(SCHEMA)

    def role(self, org, user):
        row = self.c.execute(
            "SELECT role FROM memberships WHERE org_id = ? AND user_id = ?", (org, user)
        ).fetchone()
        return row[0] if row else None

    def audit(self, at, actor, org, action, target, details):
        self.c.execute(
            "INSERT INTO audit(id, at, actor, org_id, action, target, details) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (new_id("evt"), micros(at), actor, org, action, target, json.dumps(details)),
        )

    def get_organization(self, actor, org, now):
        c = self.c
        c.execute("BEGIN")
        try:
            if self.role(org, actor) is None:
                raise PermissionError("forbidden")
            r = c.execute(
                "SELECT id, name, slug, description, plan, settings, metadata, created_at, "
                "updated_at, member_count, mcps, api_keys, ov_mcps, ov_api_keys, "
                "ov_team_members, ov_monthly_requests FROM orgs WHERE id = ?", (org,)
            ).fetchone()
            pending = c.execute(
                "SELECT COUNT(*) FROM invitations WHERE org_id = ? AND status = 'pending' "
                "AND expires_at > ?", (org, micros(now))
            ).fetchone()[0]
            month = now.year * 100 + now.month
            used = c.execute(
                "SELECT total FROM usage_month WHERE org_id = ? AND month = ?", (org, month)
            ).fetchone()
        finally:
            c.execute("COMMIT")
        plan = self.LIMITS[r[4]]
        limits = [ov if ov is not None else p for ov, p in zip(r[12:16], plan)]
        return {
            "id": r[0], "name": r[1], "slug": r[2], "description": r[3], "plan": r[4],
            "settings": json.loads(r[5]), "metadata": json.loads(r[6]),
            "created_at": from_micros(r[7]), "updated_at": from_micros(r[8]),
            "limits": dict(zip(["mcps", "api_keys", "team_members", "monthly_requests"], limits)),
            "usage": {"mcps": r[10], "api_keys": r[11], "team_members": r[9] + pending,
                      "monthly_requests": used[0] if used else 0},
        }

    def list_members(self, actor, org, page=1, per_page=20):
        c = self.c
        c.execute("BEGIN")
        try:
            if self.role(org, actor) is None:
                raise PermissionError("forbidden")
            total = c.execute("SELECT member_count FROM orgs WHERE id = ?", (org,)).fetchone()[0]
            rows = c.execute(
                "SELECT m.user_id, m.id, u.email, u.name, m.role, m.joined_at, m.updated_at, "
                "u.last_active FROM (SELECT user_id FROM memberships WHERE org_id = ?1 "
                "ORDER BY joined_at, user_id LIMIT ?2 OFFSET ?3) p "
                "JOIN memberships m ON m.org_id = ?1 AND m.user_id = p.user_id "
                "JOIN users u ON u.id = m.user_id ORDER BY m.joined_at, m.user_id",
                (org, per_page + 1, (page - 1) * per_page),
            ).fetchall()
        finally:
            c.execute("COMMIT")
        data = [
            Member(r[0], r[1], r[2], r[3], r[4], from_micros(r[5]), from_micros(r[6]),
                   from_micros(r[7]) if r[7] is not None else None)
            for r in rows[:per_page]
        ]
        return {"data": data, "total": total, "more": len(rows) > per_page}

    def usage_report(self, actor, org, first, last):
        c = self.c
        c.execute("BEGIN")
        try:
            if self.role(org, actor) is None:
                raise PermissionError("forbidden")
            d0, d1 = first.toordinal(), last.toordinal()
            per_day = [0] * (d1 - d0 + 1)
            per_res = {}
            for day, res, n in c.execute(
                "SELECT day, resource_id, requests FROM usage_day "
                "WHERE org_id = ? AND day BETWEEN ? AND ?", (org, d0, d1)
            ):
                per_day[day - d0] += n
                per_res[res] = per_res.get(res, 0) + n
            names = {
                r[0]: r[1] for r in c.execute(
                    "SELECT id, name FROM resources WHERE org_id = ? AND kind = 'mcp'", (org,)
                )
            }
        finally:
            c.execute("COMMIT")
        total = sum(per_day)
        by_mcp = sorted(
            ({"mcp_id": rid, "name": names[rid], "requests": n}
             for rid, n in per_res.items() if rid in names),
            key=lambda m: (-m["requests"], m["mcp_id"]),
        )
        by_day = [{"date": first + timedelta(days=i), "requests": n}
                  for i, n in enumerate(per_day)]
        return {"total": total, "by_mcp": by_mcp, "by_day": by_day}

    def count_month(self, org, plan, ov, count, now):
        """Checks `count` more against the month's quota and adds it to the month's total
        (inside the caller's transaction); the usage before and the limit."""
        c = self.c
        month = now.year * 100 + now.month
        used = c.execute(
            "SELECT total FROM usage_month WHERE org_id = ? AND month = ?", (org, month)
        ).fetchone()
        used = used[0] if used else 0
        limit = ov if ov is not None else self.LIMITS[plan][3]
        if limit is not None and used + count > limit:
            raise OverflowError("quota_exceeded")
        c.execute(
            "INSERT INTO usage_month(org_id, month, total) VALUES(?, ?, ?) "
            "ON CONFLICT(org_id, month) DO UPDATE SET total = total + excluded.total",
            (org, month, count),
        )
        return used, limit

    def record_usage(self, org, resource, count, now):
        c = self.c
        c.execute("BEGIN IMMEDIATE")
        try:
            plan, ov = c.execute(
                "SELECT plan, ov_monthly_requests FROM orgs WHERE id = ?", (org,)
            ).fetchone()
            owner = c.execute(
                "SELECT org_id FROM resources WHERE id = ? AND removed_at IS NULL", (resource,)
            ).fetchone()
            if owner is None or owner[0] != org:
                raise LookupError("not_found")
            used, limit = self.count_month(org, plan, ov, count, now)
            c.execute(
                "INSERT INTO usage_day(org_id, day, resource_id, requests) VALUES(?, ?, ?, ?) "
                "ON CONFLICT(org_id, day, resource_id) DO UPDATE "
                "SET requests = requests + excluded.requests",
                (org, now.date().toordinal(), resource, count),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"used": used + count, "limit": limit, "duplicate": False}

    # The JSON variants: what a host serving the seeds' HTTP API does by hand, the same
    # queries and then the response body (`{"success": true, "data": ...}`) as text.

    def get_organization_json(self, actor, org, now):
        data = self.get_organization(actor, org, now)
        data["created_at"] = iso(data["created_at"])
        data["updated_at"] = iso(data["updated_at"])
        return json.dumps({"success": True, "data": data}, separators=(",", ":"))

    def list_members_json(self, actor, org, page=1, per_page=20):
        got = self.list_members(actor, org, page, per_page)
        total = got["total"]
        data = [
            {"id": m.id, "membership_id": m.membership_id, "email": m.email, "name": m.name,
             "role": m.role, "joined_at": iso(m.joined_at), "updated_at": iso(m.updated_at),
             "last_active": iso(m.last_active) if m.last_active else None,
             "status": "active", "deactivated_at": None}
            for m in got["data"]
        ]
        pagination = {"page": page, "per_page": per_page, "total": total,
                      "total_pages": -(-total // per_page)}
        return json.dumps({"success": True, "data": data, "pagination": pagination},
                          separators=(",", ":"))

    def usage_report_json(self, actor, org, first, last):
        report = self.usage_report(actor, org, first, last)
        for d in report["by_day"]:
            d["date"] = d["date"].isoformat()
        return json.dumps({"success": True, "data": report}, separators=(",", ":"))

    def record_batch(self, org, resources, now):
        """Many events of 1 in one transaction: the quota checked on their sum, the month
        total raised once, a day row per event (`executemany`)."""
        c = self.c
        count = len(resources)
        c.execute("BEGIN IMMEDIATE")
        try:
            plan, ov = c.execute(
                "SELECT plan, ov_monthly_requests FROM orgs WHERE id = ?", (org,)
            ).fetchone()
            used, limit = self.count_month(org, plan, ov, count, now)
            day = now.date().toordinal()
            c.executemany(
                "INSERT INTO usage_day(org_id, day, resource_id, requests) VALUES(?, ?, ?, 1) "
                "ON CONFLICT(org_id, day, resource_id) DO UPDATE SET requests = requests + 1",
                [(org, day, r) for r in resources],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"used": used + count, "limit": limit}

    def accept(self, token, user, now):
        c = self.c
        c.execute("BEGIN IMMEDIATE")
        try:
            h = hashlib.sha256(token.encode()).digest()
            inv = c.execute(
                "SELECT id, org_id, email, role, status, expires_at FROM invitations "
                "WHERE token_hash = ?", (h,)
            ).fetchone()
            if inv is None:
                raise LookupError("not_found")
            inv_id, org, email, role, status, expires = inv
            u = c.execute("SELECT email FROM users WHERE id = ?", (user,)).fetchone()
            if status != "pending" or expires <= micros(now) or u[0] != email:
                raise ValueError("conflict")
            if self.role(org, user) is not None:
                raise ValueError("conflict")
            plan, ov_team, members = c.execute(
                "SELECT plan, ov_team_members, member_count FROM orgs WHERE id = ?", (org,)
            ).fetchone()
            limit = ov_team if ov_team is not None else self.LIMITS[plan][2]
            if limit is not None and members + 1 > limit:
                raise OverflowError("quota_exceeded")
            mid = new_id("mem")
            c.execute(
                "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at) "
                "VALUES(?, ?, ?, ?, ?, ?)", (org, user, mid, role, micros(now), micros(now)),
            )
            c.execute("UPDATE orgs SET member_count = member_count + 1 WHERE id = ?", (org,))
            self.audit(now, user, org, "member.added", mid,
                       {"user_id": user, "role": role, "invitation_id": inv_id})
            c.execute(
                "UPDATE invitations SET status = 'accepted', accepted_at = ? WHERE id = ?",
                (micros(now), inv_id),
            )
            self.audit(now, user, org, "invitation.accepted", inv_id,
                       {"email": email, "role": role, "project_id": None})
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"id": mid, "organization_id": org, "user_id": user, "role": role,
                "joined_at": now, "updated_at": now}


# ---- fixtures ------------------------------------------------------------------------------


class Fixture:
    """The same data on both sides."""

    def __init__(self, directory, invitations):
        self.clock = orgdb.ManualClock(START)
        self.db = orgdb.OrgDb.open_with(
            os.path.join(directory, "bench.redb"), orgdb.Options(clock=self.clock)
        )
        self.lite = Lite(os.path.join(directory, "bench.sqlite"))
        db, c, system = self.db, self.lite.c, orgdb.Actor.SYSTEM()

        def lite_user(email, name):
            uid = new_id("user")
            c.execute("INSERT INTO users(id, email, name, created_at) VALUES(?, ?, ?, ?)",
                      (uid, email, name, micros(START)))
            return uid

        def lite_org(owner, name, plan):
            oid = new_id("org")
            c.execute(
                "INSERT INTO orgs(id, name, slug, plan, settings, metadata, member_count, "
                "created_at, updated_at) VALUES(?, ?, ?, ?, '{\"pin_protection\":false}', "
                "'{}', 1, ?, ?)", (oid, name, name.lower().replace(" ", "-"), plan,
                                   micros(START), micros(START)))
            c.execute(
                "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at) "
                "VALUES(?, ?, ?, 'owner', ?, ?)", (oid, owner, new_id("mem"), micros(START),
                                                     micros(START)))
            return oid

        c.execute("BEGIN")
        # 1. An organization of 31 members (the owner and 30 more).
        owner = db.create_user(orgdb.NewUser(email="owner@example.com", name="Olivia Owner"))
        self.o_owner = orgdb.Actor.USER(id=owner.id)
        self.o_org = db.create_organization(
            owner.id, orgdb.NewOrganization(name="Members Org", plan="enterprise")
        ).organization.id
        self.l_owner = lite_user("owner@example.com", "Olivia Owner")
        self.l_org = lite_org(self.l_owner, "Members Org", "enterprise")
        for i in range(MEMBERS - 1):
            self.clock.advance_seconds(1)
            email, name = f"member{i}@example.com", f"Member {i}"
            u = db.create_user(orgdb.NewUser(email=email, name=name))
            db.add_member(system, self.o_org, u.id, "member")
            lu = lite_user(email, name)
            at = START + timedelta(seconds=i + 1)
            c.execute(
                "INSERT INTO memberships(org_id, user_id, id, role, joined_at, updated_at) "
                "VALUES(?, ?, ?, 'member', ?, ?)", (self.l_org, lu, new_id("mem"), micros(at),
                                                      micros(at)))
            c.execute("UPDATE orgs SET member_count = member_count + 1 WHERE id = ?",
                      (self.l_org,))
        # 2. A month of usage over 10 MCP resources (January 2026, a row a day each).
        self.o_mcps, self.l_mcps = [], []
        for i in range(MCPS):
            r = db.register_resource(system, self.o_org, orgdb.ResourceKind.MCP, f"MCP {i}")
            self.o_mcps.append(r.id)
            rid = new_id("res")
            c.execute(
                "INSERT INTO resources(id, org_id, kind, name, created_at) "
                "VALUES(?, ?, 'mcp', ?, ?)", (rid, self.l_org, f"MCP {i}", micros(START)))
            self.l_mcps.append(rid)
        c.execute("UPDATE orgs SET mcps = ? WHERE id = ?", (MCPS, self.l_org))
        total = 0
        for day in range(1, 31):
            at = datetime(2026, 1, day, 9, tzinfo=timezone.utc)
            events = [orgdb.UsageEvent(count=day + i, resource_id=self.o_mcps[i], at=at)
                      for i in range(MCPS)]
            db.record_usage_batch(self.o_org, events)
            for i in range(MCPS):
                c.execute(
                    "INSERT INTO usage_day(org_id, day, resource_id, requests) "
                    "VALUES(?, ?, ?, ?)", (self.l_org, at.date().toordinal(), self.l_mcps[i],
                                           day + i))
                total += day + i
        c.execute("INSERT INTO usage_month(org_id, month, total) VALUES(?, 202601, ?)",
                  (self.l_org, total))
        # 3. Invitations to accept, each with its invitee.
        self.o_accept, self.l_accept = [], []
        inviter = db.create_user(orgdb.NewUser(email="inviter@example.com", name="Inviter"))
        self.o_inv_org = db.create_organization(
            inviter.id, orgdb.NewOrganization(name="Invite Org", plan="enterprise")
        ).organization.id
        l_inviter = lite_user("inviter@example.com", "Inviter")
        l_inv_org = lite_org(l_inviter, "Invite Org", "enterprise")
        for i in range(invitations):
            email = f"invitee{i}@example.com"
            created = db.create_invitation(
                orgdb.Actor.USER(id=inviter.id), self.o_inv_org,
                orgdb.NewInvitation(email=email, role="member"),
            )
            invitee = db.create_user(orgdb.NewUser(email=email, name=f"Invitee {i}"))
            self.o_accept.append((created.token, invitee.id))
            token = secrets.token_hex(32)
            c.execute(
                "INSERT INTO invitations(id, org_id, email, role, status, invited_by, "
                "created_at, expires_at, token_hash, lifetime_secs) "
                "VALUES(?, ?, ?, 'member', 'pending', ?, ?, ?, ?, 604800)",
                (new_id("inv"), l_inv_org, email, l_inviter, micros(START),
                 micros(START + timedelta(days=7)), hashlib.sha256(token.encode()).digest()))
            self.l_accept.append((token, lite_user(email, f"Invitee {i}")))
        c.execute("COMMIT")
        c.execute("ANALYZE")
        db.flush()


# ---- timing --------------------------------------------------------------------------------


def rate(seconds, op):
    """Calls `op(i)` until `seconds` pass (or it returns False); calls per second."""
    n, start = 0, time.perf_counter()
    while True:
        if op(n) is False:
            break
        n += 1
        if n % 16 == 0 and time.perf_counter() - start >= seconds:
            break
    return n / (time.perf_counter() - start)


def workloads(fx, seconds):
    db, lite = fx.db, fx.lite
    january = (datetime(2026, 1, 1).date(), datetime(2026, 1, 31).date())
    report_query = orgdb.UsageQuery(period=orgdb.Period.MONTH)
    state = {"o_accept": 0, "l_accept": 0}

    def o_accept(_):
        i = state["o_accept"]
        if i >= len(fx.o_accept):
            return False
        state["o_accept"] += 1
        token, user = fx.o_accept[i]
        db.accept_invitation(token, user)

    def l_accept(_):
        i = state["l_accept"]
        if i >= len(fx.l_accept):
            return False
        state["l_accept"] += 1
        token, user = fx.l_accept[i]
        lite.accept(token, user, START)

    recorder = db.usage_recorder(fx.o_org)

    def o_buffered(i):
        recorder.record(fx.o_mcps[i % MCPS], 1)

    # The lean call: a recorder per resource, a number in and a number out.
    on_mcp = [recorder.for_resource(m) for m in fx.o_mcps]

    def o_add(i):
        on_mcp[i % MCPS].add(1)

    # SQLite's buffered path: commits without a sync (WAL with synchronous=NORMAL, durable
    # at the next checkpoint), as orgdb's buffered usage is durable at its next checkpoint.
    def relaxed():
        lite.c.execute("PRAGMA synchronous=NORMAL")

    def strict():
        if lite.c.in_transaction:
            lite.c.execute("COMMIT")
        lite.c.execute("PRAGMA synchronous=FULL")

    def l_buffered(i):
        # The same statements, 1 000 events a transaction.
        c = lite.c
        if i == 0:
            relaxed()
        if i % 1000 == 0:
            if i:
                c.execute("COMMIT")
            c.execute("BEGIN IMMEDIATE")
        month = 202601
        c.execute(
            "INSERT INTO usage_month(org_id, month, total) VALUES(?, ?, 1) "
            "ON CONFLICT(org_id, month) DO UPDATE SET total = total + 1", (fx.l_org, month))
        c.execute(
            "INSERT INTO usage_day(org_id, day, resource_id, requests) VALUES(?, ?, ?, 1) "
            "ON CONFLICT(org_id, day, resource_id) DO UPDATE SET requests = requests + 1",
            (fx.l_org, START.date().toordinal(), fx.l_mcps[i % MCPS]))

    def l_batch_op(i):
        if i == 0:
            relaxed()
        lite.record_batch(fx.l_org, l_batch, START)

    o_batch = [fx.o_mcps[i % MCPS] for i in range(BATCH)]
    l_batch = [fx.l_mcps[i % MCPS] for i in range(BATCH)]

    return {
        "get_organization": (
            lambda _: db.get_organization(fx.o_owner, fx.o_org),
            lambda _: lite.get_organization(fx.l_owner, fx.l_org, START),
            None,
        ),
        "list_members_page1": (
            lambda _: db.list_members(fx.o_owner, fx.o_org, orgdb.MemberQuery(per_page=20)),
            lambda _: lite.list_members(fx.l_owner, fx.l_org),
            None,
        ),
        "usage_report": (
            lambda _: db.usage_report(fx.o_owner, fx.o_org, report_query),
            lambda _: lite.usage_report(fx.l_owner, fx.l_org, *january),
            None,
        ),
        "record_usage": (
            lambda i: db.record_usage(
                fx.o_org, orgdb.UsageEvent(count=1, resource_id=fx.o_mcps[i % MCPS])),
            lambda i: lite.record_usage(fx.l_org, fx.l_mcps[i % MCPS], 1, START),
            None,
        ),
        "buffered_recorder": (o_buffered, l_buffered, (recorder.flush, strict)),
        # The same events through `for_resource(...).add(1)`.
        "buffered_add": (o_add, l_buffered, (recorder.flush, strict)),
        # Events a second: a call admits BATCH of them.
        "buffered_batch": (
            lambda _: recorder.record_many(o_batch),
            l_batch_op,
            (recorder.flush, strict),
            BATCH,
        ),
        "get_organization_json": (
            lambda _: db.get_organization_json(fx.o_owner, fx.o_org),
            lambda _: lite.get_organization_json(fx.l_owner, fx.l_org, START),
            None,
        ),
        "list_members_page1_json": (
            lambda _: db.list_members_json(fx.o_owner, fx.o_org, orgdb.MemberQuery(per_page=20)),
            lambda _: lite.list_members_json(fx.l_owner, fx.l_org),
            None,
        ),
        "usage_report_json": (
            lambda _: db.usage_report_json(fx.o_owner, fx.o_org, report_query),
            lambda _: lite.usage_report_json(fx.l_owner, fx.l_org, *january),
            None,
        ),
        "accept_invitation": (o_accept, l_accept, None),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--workload", default="")
    args = parser.parse_args()
    wanted = [w for w in args.workload.split(",") if w]
    with tempfile.TemporaryDirectory(prefix="orgdb-pybench-") as directory:
        started = time.perf_counter()
        # Enough invitations that neither side runs out in its last round (a side that ran out
        # would stop early: fewer calls, a shorter time).
        fx = Fixture(directory, invitations=int(args.rounds * max(1.0, args.seconds) * 8000))
        print(f"setup in {time.perf_counter() - started:.1f} s; orgdb {orgdb.__name__}, "
              f"SQLite {sqlite3.sqlite_version}, {args.rounds} round(s) of {args.seconds} s")
        table = workloads(fx, args.seconds)
        results = {name: [] for name in table if not wanted or name in wanted}
        for rnd in range(args.rounds):
            for name in results:
                o_op, l_op, ends, *per_call = table[name]
                per_call = per_call[0] if per_call else 1
                sides = [("orgdb", o_op, ends[0] if ends else None),
                         ("sqlite3", l_op, ends[1] if ends else None)]
                if rnd % 2:
                    sides.reverse()
                got = {}
                for side, op, end in sides:
                    t0 = time.perf_counter()
                    n = rate(args.seconds, op) * args.seconds
                    if end:
                        end()
                    got[side] = n * per_call / (time.perf_counter() - t0)
                results[name].append((got["orgdb"], got["sqlite3"]))
                print(f"round {rnd + 1}  {name:20} orgdb {got['orgdb']:>10.0f}/s  "
                      f"sqlite3 {got['sqlite3']:>10.0f}/s  ratio {got['orgdb'] / got['sqlite3']:.2f}")
        print()
        print("| workload | orgdb (Python) | sqlite3 (Python) | orgdb/sqlite3 | per-round ratios |")
        print("|---|---:|---:|---:|---|")
        for name, rows in results.items():
            o = statistics.median(r[0] for r in rows)
            s = statistics.median(r[1] for r in rows)
            ratios = [r[0] / r[1] for r in rows]
            print(f"| {name} | {o:,.0f}/s | {s:,.0f}/s | **{o / s:.2f}** | "
                  f"{min(ratios):.2f}..{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
