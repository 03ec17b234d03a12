"""Direct method calls (orgdb/_runtime.py `_direct_methods`, src/ffi/py.rs): a generated method
made one foreign call, with the values, errors and object lifetimes of UniFFI's own call."""

import ctypes
import gc
import inspect
import threading
import types

import orgdb
from orgdb import _generated, _runtime
from helpers import as_user, generated, metered, raises, rich_organization

DESCRIPTION = "ü" * 1_999  # 3 998 bytes

# The calls the bindings benchmark measures, and the lean ones of each return shape.
HOT = {
    "OrgDb.get_organization",
    "OrgDb.get_organization_json",
    "OrgDb.list_members",
    "OrgDb.usage_report",
    "OrgDb.record_usage",
    "OrgDb.accept_invitation",
    "OrgDb.usage_recorder",  # returns a handle
    "OrgDb.now",  # no argument but the handle
    "OrgDb.flush",  # returns nothing
    "UsageRecorder.record",
    "UsageRecorder.add",
    "UsageRecorder.for_resource",
    "ManualClock.set",
}



def test_the_hot_methods_are_direct_and_keep_their_signatures():
    assert orgdb.FAST_RUNTIME
    assert HOT <= _runtime.direct_calls
    for name in HOT:
        cls, method = name.split(".")
        direct = vars(getattr(_generated, cls))[method]
        original = _runtime._originals[(cls, method)]
        assert direct.__code__.co_filename.startswith("<orgdb direct call")
        assert inspect.signature(direct) == inspect.signature(original)
        assert direct.__doc__ == original.__doc__ and direct.__qualname__ == original.__qualname__
    with _runtime.generated_runtime(_generated):
        assert vars(_generated.OrgDb)["list_members"] is _runtime._originals[("OrgDb", "list_members")]
    assert vars(_generated.OrgDb)["list_members"].__code__.co_filename.startswith("<orgdb")


def test_values_of_every_return_shape_are_the_generated_calls(db, clock, make_user):
    owner = make_user("Ωmega Owner")
    org = rich_organization(db, owner, DESCRIPTION)
    actor = as_user(owner)
    # A buffer back, read from the scratch memory; a string; a handle; an integer; nothing.
    assert db.get_organization(actor, org.id) == generated(db.get_organization, actor, org.id)
    assert db.get_organization_json(actor, org.id) == generated(
        db.get_organization_json, actor, org.id
    )
    page = db.list_members(actor, org.id, orgdb.MemberQuery(per_page=1))
    assert page == generated(db.list_members, actor, org.id, orgdb.MemberQuery(per_page=1))
    recorder = db.usage_recorder(org.id)
    assert isinstance(recorder, orgdb.UsageRecorder)
    assert recorder.record(None, 2).used == 2
    assert generated(recorder.record, None, 1).used == 3
    assert recorder.add(3) == 6
    assert generated(recorder.add, 1) == 7
    assert db.flush() is None
    at = clock.now()
    assert db.now() == at == generated(db.now)
    clock.set(at.replace(year=2030))
    assert db.now().year == 2030


def test_a_result_bigger_than_the_scratch_memory_comes_back_whole(db, make_user):
    owner = make_user("Owner")
    for _ in range(20):
        rich_organization(db, owner, DESCRIPTION)
    orgs = db.list_organizations_for_user(owner.id)
    assert len(orgs) == 20
    assert sum(len(o.organization.description.encode()) for o in orgs) > _runtime._SCRATCH
    assert orgs == generated(db.list_organizations_for_user, owner.id)
    # And the next call on the thread reads the scratch memory again.
    assert db.get_user(owner.id) == generated(db.get_user, owner.id)


def test_errors_are_the_generated_calls_and_leave_the_next_call_clean(db, clock, make_user):
    owner = make_user("Owner")
    small = metered(clock, monthly_requests=5)
    payer = small.create_user(orgdb.NewUser(email="p@example.com", name="P"))
    paying = small.create_organization(payer.id, orgdb.NewOrganization(name="P")).organization
    org = rich_organization(db, owner, DESCRIPTION)
    stranger = as_user(make_user("Stranger"))
    for run in (lambda f, *a: f(*a), generated):
        err = raises(orgdb.OrgDbError.Forbidden, run, db.get_organization, stranger, org.id)
        assert err.code == "forbidden"
        # The call right after an error succeeds: the status it wrote is not reused.
        assert run(db.get_organization, as_user(owner), org.id).organization.id == org.id
    recorder = small.usage_recorder(paying.id)
    fast = raises(orgdb.OrgDbError.Validation, recorder.record, "", 1)
    slow = generated(lambda: raises(orgdb.OrgDbError.Validation, recorder.record, "", 1))
    assert (fast.code, fast.message, fast.details) == (slow.code, slow.message, slow.details)
    assert "resource_id" in fast.details
    # A multi-byte id nobody registered: the same error through both writers of an optional id.
    fast = raises(orgdb.OrgDbError.NotFound, recorder.record, "res_ü" * 9, 1)
    slow = generated(lambda: raises(orgdb.OrgDbError.NotFound, recorder.record, "res_ü" * 9, 1))
    assert (fast.code, fast.message, fast.details) == (slow.code, slow.message, slow.details)
    assert recorder.add(5) == 5
    over = raises(orgdb.OrgDbError.QuotaExceeded, recorder.add, 1)
    assert over.details["limit"] == "5"
    # A bad argument is refused in Python before any call, as the generated check does.
    for run in (lambda f, *a: f(*a), generated):
        try:
            run(recorder.add, -1)
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            raise AssertionError("a negative count crossed")


def test_objects_outlive_the_calls_that_made_and_used_them(tmp_path, clock, make_user):
    db = orgdb.OrgDb.open_with(str(tmp_path / "o.redb"), orgdb.Options(clock=clock))
    user = db.create_user(orgdb.NewUser(email="u@example.com", name="U"))
    org = db.create_organization(user.id, orgdb.NewOrganization(name="O", plan="enterprise"))
    recorder = db.usage_recorder(org.organization.id)
    # Each call clones the handle it passes: thousands of calls leave the object usable.
    for _ in range(5_000):
        recorder.add(1)
    del db
    gc.collect()
    # The recorder keeps its database open.
    assert recorder.add(1) == 5_001
    recorder.flush()


def test_threads_each_have_their_own_scratch_memory(db, make_user):
    owner = make_user("Owner")
    orgs = [rich_organization(db, owner, f"{i}" * (i * 500 + 1)) for i in range(4)]
    actor = as_user(owner)
    want = [db.get_organization(actor, o.id) for o in orgs]
    errors = []

    def work(i):
        try:
            for _ in range(300):
                got = db.get_organization(actor, orgs[i].id)
                if got != want[i]:
                    errors.append((i, got))
                    return
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_library_without_the_entry_points_keeps_every_generated_call(monkeypatch):
    # libc has none of them: nothing is rewritten.
    fake = types.SimpleNamespace(**vars(_generated))
    fake._UniffiLib = ctypes.CDLL(None)
    lines = _runtime._source_lines(_generated)
    reader = _runtime._reader(_generated.InternalError)
    assert _runtime._direct_methods(fake, lines, reader) == {}
    # Without the module's source, nothing either.
    monkeypatch.setattr(_runtime, "_method_tree", lambda func, lines: None)
    assert _runtime._direct_methods(_generated, lines, reader) == {}


def test_calls_made_from_a_callback_inside_a_call_leave_that_call_whole(tmp_path, db, clock, make_user):
    owner = make_user("Owner")
    org = rich_organization(db, owner, DESCRIPTION)
    dump = str(tmp_path / "dump.jsonl")
    lines = db.export_jsonl(dump)
    seen = []

    class Nested(orgdb.ImportProgress):
        def on_progress(self, records):
            # On this thread, while the import's own call is in Rust: a call that returns a
            # buffer through the thread's scratch memory, and one that fails through its status.
            seen.append(db.get_organization(as_user(owner), org.id).organization.name)
            try:
                db.get_user("nobody")
            except orgdb.OrgDbError:
                seen.append("error")

    fresh = orgdb.OrgDb.in_memory_with(orgdb.Options(clock=clock))
    report = fresh.import_jsonl(dump, None, Nested())
    assert report.records == lines
    assert seen == [org.name, "error"] * lines
    assert fresh.get_organization(orgdb.Actor.SYSTEM(), org.id) == db.get_organization(
        orgdb.Actor.SYSTEM(), org.id
    )


def test_calls_made_between_a_call_and_its_reading_get_their_own_slot(tmp_path, clock):
    # Python code can run after the entry point returned and before the method read its
    # result or status (a signal handler, a `__del__`, a trace hook). A trace hook makes that
    # happen on every line of the direct methods: each time it calls orgdb twice, once
    # succeeding and once failing.
    path = str(tmp_path / "o.redb")
    db = orgdb.OrgDb.open_with(path, orgdb.Options(clock=clock))
    user = db.create_user(orgdb.NewUser(email="u@example.com", name="U"))
    other = db.create_user(orgdb.NewUser(email="o@example.com", name="O"))
    nested = []

    def hook(frame, event, arg):
        if not frame.f_code.co_filename.startswith("<orgdb direct call"):
            return None
        if event == "line":
            nested.append(db.get_user(other.id).name)
            try:
                db.get_user("nobody")
            except orgdb.OrgDbError as e:
                nested.append(e.code)
        return hook

    import sys

    sys.settrace(hook)
    try:
        got = db.get_user(user.id)
        try:
            db.get_user("nobody")
        except orgdb.OrgDbError as e:
            failed = e
        else:
            failed = None
        flushed = db.flush()
        now = db.now()
    finally:
        sys.settrace(None)
    assert nested and set(nested) == {"O", "not_found"}
    assert got == generated(db.get_user, user.id)
    assert isinstance(failed, orgdb.OrgDbError.NotFound)
    assert flushed is None and now == clock.now()
    # No handle was taken and left behind: the file opens again once the handle is gone (the
    # error's traceback holds the method's frame, and so the handle: it goes first).
    del db, failed
    gc.collect()
    again = orgdb.OrgDb.open_with(path, orgdb.Options(clock=clock))
    assert again.get_user(user.id).name == "U"
