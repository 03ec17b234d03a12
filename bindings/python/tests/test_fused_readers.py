"""The fused readers (orgdb/_runtime.py): every result they read is the value UniFFI's own
generated converters read from the same bytes, and bytes they do not accept raise what the
generated converters raise."""

import ctypes
from datetime import datetime, timezone

import pytest

import orgdb
from orgdb import _generated, _runtime
from helpers import as_user, generated, rich_organization

# Values for a timestamp that take both of uniffi.toml's paths, at their edges.
INSTANTS = [0, 1, -1, 2**52 - 1, 2**52, 2**52 + 1, -(2**52), 253402300799999999, -62135596800000000]
HOT = [
    "_UniffiFfiConverterTypeOrganizationDetails",
    "_UniffiFfiConverterTypeMemberPage",
    "_UniffiFfiConverterSequenceTypeMember",
    "_UniffiFfiConverterTypeMember",
    "_UniffiFfiConverterTypeUsageReport",
    "_UniffiFfiConverterTypeOrgDbError",
]



def same(fast, slow):
    """Equal, and built the same way: the same types and attributes, in the same order."""
    assert fast == slow
    assert type(fast) is type(slow)
    if isinstance(fast, list):
        for f, s in zip(fast, slow):
            same(f, s)
    elif hasattr(slow, "__dict__") and not isinstance(slow, type):
        assert list(vars(fast)) == list(vars(slow))
        for name, value in vars(slow).items():
            same(getattr(fast, name), value)


def both(call, *args):
    fast = call(*args)
    same(fast, generated(call, *args))
    return fast


def test_the_result_converters_are_fused_and_put_back_with_the_generated_runtime():
    assert set(HOT) <= _runtime.fused
    member = _generated._UniffiFfiConverterTypeMember
    assert member.read.__module__ == "orgdb._runtime"
    with _runtime.generated_runtime(_generated):
        assert member.read.__module__ != "orgdb._runtime"
        # `lift` was inherited: it is again.
        assert "lift" not in vars(member)
    assert "lift" in vars(member)
    # A type holding what the fused readers do not read (a duration) is left as generated.
    assert "_UniffiFfiConverterTypeNewInvitation" not in _runtime.fused


@pytest.fixture
def rich(db, clock, make_user):
    """An organization with optional fields set and not, maps, and members in every state."""
    owner = make_user("Ωmega Owner")
    org = rich_organization(db, owner, "ü" * 300)
    for name, role in [("Bob", "admin"), ("Carol", "member"), ("Dan", "viewer")]:
        clock.advance_seconds(61)
        db.add_member(as_user(owner), org.id, make_user(name).id, role)
    members = db.list_members(as_user(owner), org.id, orgdb.MemberQuery()).data
    clock.advance_seconds(5)
    db.touch_user(members[1].id)
    db.deactivate_member(as_user(owner), org.id, members[3].id)
    return owner, org


def test_results_are_the_generated_readers_values(db, rich):
    owner, org = rich
    actor = as_user(owner)
    details = both(db.get_organization, actor, org.id)
    assert details.organization.metadata["emoji"] == "🦀"
    assert details.organization.address_line2 is None
    page = both(db.list_members, actor, org.id, orgdb.MemberQuery())
    assert any(m.last_active is not None for m in page.data)
    gone = both(db.list_members, actor, org.id, orgdb.MemberQuery(status="deactivated")).data
    assert [m.status for m in gone] == [orgdb.MemberStatus.DEACTIVATED]
    assert gone[0].deactivated_at is not None
    assert all(m.joined_at.tzinfo is timezone.utc for m in page.data)
    page = both(db.list_members, actor, org.id, orgdb.MemberQuery(per_page=2))
    assert page.next_cursor is not None
    assert both(db.list_members, actor, org.id, orgdb.MemberQuery(page=9)).data == []
    both(db.list_organizations, orgdb.Actor.SYSTEM(), orgdb.ListQuery())
    both(db.usage_report, actor, org.id, orgdb.UsageQuery())
    assert len(both(db.audit_log, actor, org.id, 0, 100)) >= 4
    both(db.get_user, owner.id)


def test_errors_are_the_generated_readers_errors(db, rich, make_user):
    owner, org = rich
    stranger = as_user(make_user("Stranger"))
    for call, args in [
        (db.get_organization, (stranger, org.id)),
        (db.check_quota, (org.id, 50_001)),
        (db.create_user, (orgdb.NewUser(email="x", name=""),)),
    ]:
        with pytest.raises(orgdb.OrgDbError) as fast:
            call(*args)
        with pytest.raises(orgdb.OrgDbError) as slow:
            generated(call, *args)
        assert type(fast.value) is type(slow.value)
        assert (fast.value.code, fast.value.message, fast.value.details) == (
            slow.value.code,
            slow.value.message,
            slow.value.details,
        )


# ---- Bytes: values written by the generated converters, read back both ways ---------------


def encode(converter, value):
    writer = _runtime._Writer()
    converter.write(value, writer)
    return bytes(writer.out)


def lift(converter, data):
    """What `converter.lift` makes of `data` in a Rust buffer: ("value", v) or ("error", ...)."""
    rbuf = _generated._UniffiRustBuffer.alloc(len(data))
    if data:
        ctypes.memmove(rbuf.data, data, len(data))
    rbuf.len = len(data)
    try:
        return ("value", converter.lift(rbuf))
    except Exception as e:  # compared, not hidden
        return ("error", type(e), str(e))


def lift_both(converter, data):
    fast = lift(converter, data)
    slow = generated(lift, converter, data)
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "value":
        same(fast[1], slow[1])
    else:
        assert fast == slow
    return fast


def member(**changes):
    at = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    fields = dict(
        id="user_1",
        membership_id="mem_ü",
        email="a@example.com",
        name="Ada 🚀",
        role=orgdb.Role.ADMIN,
        joined_at=at,
        updated_at=at,
        last_active=None,
        status=orgdb.MemberStatus.ACTIVE,
        deactivated_at=None,
    )
    fields.update(changes)
    return orgdb.Member(**fields)


def page(*members):
    return orgdb.MemberPage(
        data=list(members),
        pagination=orgdb.Pagination(page=1, per_page=20, total=2**64 - 1, total_pages=0),
        next_cursor="c" * 70,
    )


MEMBER = _generated._UniffiFfiConverterTypeMember
PAGE = _generated._UniffiFfiConverterTypeMemberPage
TIMESTAMP = _generated._UniffiFfiConverterTypeUtcTimestamp


@pytest.mark.parametrize("micros", INSTANTS)
def test_timestamps_read_as_the_generated_expression_reads_them(micros):
    at = TIMESTAMP.lift(micros)  # the generated expression
    data = encode(MEMBER, member(joined_at=at, updated_at=at, last_active=at))
    _, value = lift_both(MEMBER, data)
    assert value.joined_at == value.updated_at == value.last_active == at
    # A second timestamp of another integer is not given the first one's value.
    y2k = datetime(2000, 1, 1, tzinfo=timezone.utc)
    other = encode(MEMBER, member(joined_at=at, updated_at=y2k))
    assert lift_both(MEMBER, other)[1].updated_at.year == 2000


def test_pages_of_every_shape_read_the_same():
    at = datetime(2150, 6, 7, 8, 9, 10, 123457, tzinfo=timezone.utc)
    members = [
        member(),
        member(role=orgdb.Role.OWNER, last_active=at, deactivated_at=at,
               status=orgdb.MemberStatus.DEACTIVATED, name="", email="ü" * 5000),
    ]
    for data in [encode(PAGE, page()), encode(PAGE, page(*members))]:
        assert lift_both(PAGE, data)[0] == "value"
    details = orgdb.OrganizationDetails(
        organization=orgdb.Organization(
            id="org_1", name="N", slug="n", external_id=None, description="d" * 3000, plan="free",
            address_line1="", address_line2=None, city="Zürich", state=None, zipcode=None,
            country="CH",
            settings=orgdb.OrganizationSettings(pin_protection=True, extra={"a": "b"}),
            metadata={}, created_at=at, updated_at=at,
        ),
        limits=orgdb.Limits(mcps=None, api_keys=0, team_members=2**64 - 1, monthly_requests=None),
        usage=orgdb.Usage(mcps=0, api_keys=1, team_members=2, monthly_requests=2**64 - 1),
    )
    converter = _generated._UniffiFfiConverterTypeOrganizationDetails
    assert lift_both(converter, encode(converter, details))[1] == details


def test_bytes_the_readers_do_not_accept_raise_what_the_generated_readers_raise():
    active = member(last_active=datetime(2024, 2, 1, tzinfo=timezone.utc))
    data = encode(PAGE, page(active, member()))
    # Cut anywhere: read past the end.
    for end in range(len(data)):
        assert lift_both(PAGE, data[:end])[0] == "error"
    # Bytes left over.
    assert lift_both(PAGE, data + b"\0")[0] == "error"
    # A bad enum tag, option flag, negative list or string length, invalid UTF-8.
    one = encode(MEMBER, member())
    role_at = sum(4 + len(s.encode()) for s in ["user_1", "mem_ü", "a@example.com", "Ada 🚀"])
    for at, patch in [
        (role_at, b"\0\0\0\x09"),
        (role_at + 4 + 16, b"\x02"),
        (0, b"\xff\xff\xff\xfe"),
        (4, b"\xff"),
    ]:
        bad = one[:at] + patch + one[at + len(patch):]
        kind, *error = lift_both(MEMBER, bad)
        assert kind == "error", error
    assert lift_both(PAGE, b"\xff\xff\xff\xff" + data[4:])[0] == "error"


def test_page_text_that_is_not_utf8_raises_what_the_generated_readers_raise():
    # A page's strings are sliced from its bytes decoded as Latin-1 when ASCII: bytes that
    # Latin-1 reads but UTF-8 refuses (a lone é, a cut emoji) must still be refused.
    data = encode(PAGE, page(member(name="Ada"), member(name="Bob")))
    for bad in [b"\xe9ob", b"\xf0\x9f\x9a"]:
        assert lift_both(PAGE, data.replace(b"Bob", bad))[0] == "error"
    # Every kind of text in a page reads the same both ways.
    texts = ["", "a", "é", "Zoë", "日本", "🚀", "a" * 300 + "ü", "\x7f\x00"]
    members = [member(name=t, email=t[::-1], membership_id=t + "x") for t in texts]
    _, value = lift_both(PAGE, encode(PAGE, page(*members)))
    assert [m.name for m in value.data] == texts


def read_after(converter, prefix, data):
    """`converter.read` of `data` placed after the string `prefix` in one Rust buffer (a value
    that does not start its buffer)."""
    string = _generated._UniffiFfiConverterString
    whole = encode(string, prefix) + data
    rbuf = _generated._UniffiRustBuffer.alloc(len(whole))
    ctypes.memmove(rbuf.data, whole, len(whole))
    rbuf.len = len(whole)
    with _generated._UniffiRustBuffer.consume_with_stream(rbuf) as stream:
        assert string.read(stream) == prefix
        return converter.read(stream)


def test_a_page_inside_other_bytes_reads_the_same():
    members = [member(), member(name="Zoë", email="z@example.com"), member(name="x" * 40)]
    data = encode(PAGE, page(*members))
    for prefix in ["", "p", "ü" * 50]:
        same(read_after(PAGE, prefix, data), generated(read_after, PAGE, prefix, data))


def test_generated_readers_that_call_fused_ones_read_the_same():
    # NewInvitation is not fused (it holds a duration); its fields are read by fused readers.
    converter = _generated._UniffiFfiConverterTypeNewInvitation
    value = generated(
        lambda: orgdb.NewInvitation(email="a@example.com", role="member", project_id="p")
    )
    lift_both(converter, encode(converter, value))


# A generated module in miniature: a record the fuser knows, one whose `read` does something
# else, and one holding it.
MODULE = """
class InternalError(Exception):
    pass


class _UniffiConverterRustBuffer:
    pass


class _UniffiFfiConverterString:
    @staticmethod
    def read(buf):
        size = buf.read_i32()
        if size < 0:
            raise InternalError("Unexpected negative string length")
        utf8_bytes = buf.read(size)
        return utf8_bytes.decode("utf-8")


class Pair:
    def __init__(self, *, a, b):
        self.a = a
        self.b = b


class _UniffiFfiConverterTypePair(_UniffiConverterRustBuffer):
    @staticmethod
    def read(buf):
        return Pair(
            a=_UniffiFfiConverterString.read(buf),
            b=_UniffiFfiConverterString.read(buf),
        )


class _UniffiFfiConverterTypeOdd(_UniffiConverterRustBuffer):
    @staticmethod
    def read(buf):
        buf.read_i32()
        return Pair(
            a=_UniffiFfiConverterString.read(buf),
            b=_UniffiFfiConverterString.read(buf),
        )


class _UniffiFfiConverterTypeHolder(_UniffiConverterRustBuffer):
    @staticmethod
    def read(buf):
        return Pair(
            a=_UniffiFfiConverterTypePair.read(buf),
            b=_UniffiFfiConverterTypeOdd.read(buf),
        )
"""


def test_only_what_matches_the_expected_shapes_is_fused(tmp_path, monkeypatch):
    (tmp_path / "mini_generated.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mini_generated

    lines = _runtime._source_lines(mini_generated)
    fused = _runtime._fuse(mini_generated, object, lines, None)
    assert set(fused) == {"_UniffiFfiConverterTypePair"}
    assert fused["_UniffiFfiConverterTypePair"][1] is None  # no `free`: no lift
    # Without its source, nothing is.
    assert _runtime._fuse(mini_generated, object, [], None) == {}


def test_a_reader_python_cannot_compile_is_the_generated_one(tmp_path, monkeypatch):
    (tmp_path / "mini_generated_2.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import mini_generated_2 as mini

    def refuse(*args):
        raise SyntaxError("too many statically nested blocks")

    monkeypatch.setattr(_runtime, "_compile", refuse)
    reader_type = type(_runtime._reader(Exception)(b"", 0))
    read, _, _ = _runtime._fuse(mini, reader_type, _runtime._source_lines(mini), None)[
        "_UniffiFfiConverterTypePair"
    ]
    data = b"\0\0\0\x01a\0\0\0\x02bc"
    stream = reader_type(data, len(data))
    pair = read(stream)
    assert (pair.a, pair.b, stream.offset) == ("a", "bc", len(data))
