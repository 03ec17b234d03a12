"""A faster runtime for the UniFFI-generated module: the same wire format, fewer Python steps.

UniFFI generates `orgdb/orgdb/orgdb.py`: the classes, converters and FFI declarations, and a
small runtime under them that moves values across the boundary. That runtime spends most of
a call's time (issue 18's profile):

- it reads a result with one `struct.unpack` of a fresh slice of a ctypes pointer per
  integer, inside a `contextlib` generator, and a record with a converter call per field and
  a stream call per value in it (a `Member` is about ten converter calls);
- it writes an argument into a Rust buffer of 16 bytes that it grows with a Rust call, so a
  30-character id costs two Rust calls before the call itself;
- it builds each call's status from a nested `default()`.

`install` replaces those pieces, and only those:

- Results are copied out of the Rust buffer once (a slice of its `c_char` pointer) and read
  with precompiled `struct.Struct`s, a string in one step. In the generated module:
  `_UniffiConverterRustBuffer.lift`, `_UniffiFfiConverterString.lift` / `read`,
  `_UniffiRustBuffer.consume_with_stream` / `read_with_stream`.
- Fused readers (`_fuse`): for each generated converter whose `read` has one of UniFFI's
  shapes (integer, bool, string, option, list, map, record, enum, custom type) all the way
  down, one function, written from the converters' source and compiled at its first call,
  reads the whole value with local variables: adjacent fixed-size fields in one unpack, nested
  values inline, records and variants built as the generated `read` builds them (a generated
  record class whose `__init__` only stores its arguments: `object.__new__` and the same
  stores), custom types converted with their generated expression (the timestamps of
  `uniffi.toml`, with its paths from a module to a type, a builtin function or an immutable
  value read once; a second field holding the same integer gets the first one's value when it
  is of an immutable builtin type, `created_at` and `updated_at` of a new row). A value with
  strings in a list (a page of members) slices them from its bytes decoded once as Latin-1
  when they are ASCII, and decodes the others as UTF-8. It replaces
  that converter's `read` and, for those that inherit it, its `lift`. Bytes it does not
  accept (cut short, a bad tag or flag) are read again by the generated `read`, which raises
  what it always has. A converter holding anything else (an object handle, a duration) is left
  as generated; `fused` names the ones replaced.
- Arguments are written to a `bytearray` and copied into a Rust buffer of their exact size
  with one Rust call (`rustbuffer_from_bytes`, where the generated runtime allocates and then
  copies with a second foreign call); result buffers are released by calling the Rust
  function directly: `_UniffiConverterRustBuffer.lower`, `_UniffiFfiConverterString.lower`.
- A call's status is a zeroed structure, which is what `default()` built:
  `_uniffi_rust_call` / `_uniffi_rust_call_with_error` (the handle's clone goes through the
  first).

- Direct calls (`_direct_methods`): each generated object method whose body is UniFFI's
  template is compiled again with its checks and defaults as generated and the lowering, the
  call and the lift replaced by one call of the library's `orgdb_py_<shape>` entry point for
  the scaffolding function's signature (src/ffi/py.rs: it clones the handle, builds the
  argument buffers from `bytes`, calls, and copies the result into this thread's scratch
  memory, read by the fused reader). `direct_calls` names the methods replaced.

The converters' values, their wire format and every error path stay UniFFI's;
`generated_runtime` puts the generated pieces back for a block (the tests compare the two). If
the generated module does not have the pieces this expects (another UniFFI version), nothing
is replaced and `orgdb.FAST_RUNTIME` is False; parts it does not recognize (a converter's
source, the buffer functions) keep the generated code.
"""

import ast
import contextlib
import ctypes
import datetime
import decimal
import enum
import inspect
import itertools
import linecache
import re
import struct
import threading
import types

# What `install` replaces: (the class holding it, or None for the module itself, attribute);
# and the `read` (and `lift`) of each converter `_fuse` fuses.
_PLACES = (
    ("_UniffiConverterRustBuffer", "lift"),
    ("_UniffiConverterRustBuffer", "lower"),
    ("_UniffiFfiConverterString", "lift"),
    ("_UniffiFfiConverterString", "lower"),
    ("_UniffiFfiConverterString", "read"),
    ("_UniffiRustBuffer", "consume_with_stream"),
    ("_UniffiRustBuffer", "read_with_stream"),
    (None, "_uniffi_rust_call_with_error"),
    (None, "_uniffi_rust_call"),
)
# What the replacements use from the generated module without replacing it.
_USED = (
    ("_UniffiRustBuffer", "alloc"),
    ("_UniffiRustBuffer", "free"),
    (None, "_UniffiRustCallStatus"),
    (None, "_uniffi_check_call_status"),
    (None, "InternalError"),
)

_I8 = struct.Struct(">b")
_U8 = struct.Struct(">B")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_SIZE_T = struct.Struct("@N")

_originals = {}


def _reader(internal_error):
    class Reader:
        """Reads a Rust buffer's bytes, copied out once, with the generated stream's methods."""

        __slots__ = ("data", "len", "offset")

        def __init__(self, data, n):
            self.data = data  # exactly `n` bytes
            self.len = n
            self.offset = 0

        @classmethod
        def of(cls, rbuf):
            n = rbuf.len
            # A slice of a `POINTER(c_char)` is its bytes, copied (4 times faster than
            # `ctypes.string_at`, a foreign call).
            return cls(rbuf.data[:n] if n else b"", n)

        def remaining(self):
            return self.len - self.offset

        def _take(self, size):
            at = self.offset
            if at + size > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = at + size
            return at

        def read(self, size):
            at = self.offset
            end = at + size
            if end > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = end
            return self.data[at:end]

        # The hot reads check their bounds inline: a call less each (the generated record
        # readers make one of these calls per field).
        def read_u8(self):
            at = self.offset
            if at >= self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = at + 1
            return self.data[at]

        def read_i32(self):
            at = self.offset
            if at + 4 > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = at + 4
            return _I32.unpack_from(self.data, at)[0]

        def read_i64(self):
            at = self.offset
            if at + 8 > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = at + 8
            return _I64.unpack_from(self.data, at)[0]

        def read_u64(self):
            at = self.offset
            if at + 8 > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = at + 8
            return _U64.unpack_from(self.data, at)[0]

        def read_string(self):
            """A length-prefixed UTF-8 string, as the generated string converter reads it."""
            at = self.offset
            if at + 4 > self.len:
                raise internal_error("read past end of rust buffer")
            size = _I32.unpack_from(self.data, at)[0]
            if size < 0:
                raise internal_error("Unexpected negative string length")
            end = at + 4 + size
            if end > self.len:
                raise internal_error("read past end of rust buffer")
            self.offset = end
            return self.data[at + 4:end].decode("utf-8")

        def read_i8(self):
            return _I8.unpack_from(self.data, self._take(1))[0]

        def read_i16(self):
            return _I16.unpack_from(self.data, self._take(2))[0]

        def read_u16(self):
            return _U16.unpack_from(self.data, self._take(2))[0]

        def read_u32(self):
            return _U32.unpack_from(self.data, self._take(4))[0]

        def read_float(self):
            return _F32.unpack_from(self.data, self._take(4))[0]

        def read_double(self):
            return _F64.unpack_from(self.data, self._take(8))[0]

        def read_c_size_t(self):
            return _SIZE_T.unpack_from(self.data, self._take(_SIZE_T.size))[0]

    return Reader


class _Writer:
    """Collects an argument's bytes with the generated builder's methods."""

    __slots__ = ("out",)

    def __init__(self):
        self.out = bytearray()

    def write(self, value):
        self.out += value

    def write_i8(self, v):
        self.out += _I8.pack(v)

    def write_u8(self, v):
        self.out += _U8.pack(v)

    def write_i16(self, v):
        self.out += _I16.pack(v)

    def write_u16(self, v):
        self.out += _U16.pack(v)

    def write_i32(self, v):
        self.out += _I32.pack(v)

    def write_u32(self, v):
        self.out += _U32.pack(v)

    def write_i64(self, v):
        self.out += _I64.pack(v)

    def write_u64(self, v):
        self.out += _U64.pack(v)

    def write_float(self, v):
        self.out += _F32.pack(v)

    def write_double(self, v):
        self.out += _F64.pack(v)

    def write_c_size_t(self, v):
        self.out += _SIZE_T.pack(v)


# ---- Fused readers -------------------------------------------------------------------------
#
# A generated record converter reads a value with one converter call per field, each a few
# stream calls; a list of records repeats that per element. `_shape` reads each generated
# converter's `read` in the module's source (compacted text, matched against UniFFI's
# templates) and `_Emitter` writes, for each converter whose shapes it knows all the way
# down, one function that reads the whole value (see the module docstring).

_FIXED = {
    "read_i8": "b", "read_u8": "B", "read_i16": "h", "read_u16": "H", "read_i32": "i",
    "read_u32": "I", "read_i64": "q", "read_u64": "Q", "read_float": "f", "read_double": "d",
}

# The generated bodies this knows, compacted as `_source` compacts them, with the converters
# they call as CONV0, CONV1.
_TEMPLATES = {
    "string": """
        size = buf.read_i32()
        if size < 0:
            raise InternalError("Unexpected negative string length")
        utf8_bytes = buf.read(size)
        return utf8_bytes.decode("utf-8")
    """,
    "optional": """
        flag = buf.read_u8()
        if flag == 0:
            return None
        elif flag == 1:
            return CONV0.read(buf)
        else:
            raise InternalError("Unexpected flag byte for optional type")
    """,
    "sequence": """
        count = buf.read_i32()
        if count < 0:
            raise InternalError("Unexpected negative sequence length")
        return [
            CONV0.read(buf) for i in range(count)
        ]
    """,
    "map": """
        count = buf.read_i32()
        if count < 0:
            raise InternalError("Unexpected negative map size")
        d = {}
        for i in range(count):
            key = CONV0.read(buf)
            val = CONV1.read(buf)
            d[key] = val
        return d
    """,
    "bool": "return cls.lift(buf.read_u8())",
}
_BOOL_LIFT = "return value != 0"  # the generated bool's `lift(value)`

_CONVERTER = re.compile(r"_Uniffi\w*Converter\w+")
_FIXED_READ = re.compile(r"returnbuf\.(read_\w+)\(\)")
_CONVERTER_READ = re.compile(r"(?:(\w+)=)?(\w+)\.read\(buf\),?")
_BUILD = re.compile(r"return([A-Za-z_][\w.]*)\(")


_BUILTIN = "_fz_builtin"  # the builtin value in a custom type's expression
# The names a fused reader's own code uses besides `_fz...`.
_READER_LOCALS = frozenset(["data", "start", "at", "n", "_", "buf", "cls"])
_IMMUTABLE = frozenset(
    [bool, int, float, complex, str, bytes, type(None), datetime.datetime, datetime.date,
     datetime.time, datetime.timedelta, datetime.timezone, decimal.Decimal]
)
_constants = itertools.count()


class _Unfusable(Exception):
    """A converter (or one it reads) that `_fuse` leaves to the generated code."""


class _Malformed(Exception):
    """Bytes a fused reader does not accept; the generated reader then reads them again."""


def _compact(lines):
    """Source lines without blank lines, comments and whitespace, one string a line."""
    out = []
    for line in lines:
        line = "".join(line.split())
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _source(func, params, lines):
    """The body of `func` (a function, or a static or class method) as lines of the generated
    module's source `lines`: (compacted, as written); None unless its parameters are
    `params`."""
    func = getattr(func, "__func__", func)
    code = getattr(func, "__code__", None)
    if code is None or code.co_varnames[: code.co_argcount + code.co_kwonlyargcount] != params:
        return None
    at = code.co_firstlineno - 1  # its first decorator, or its `def`
    while at < len(lines) and not lines[at].lstrip().startswith("def "):
        at += 1
    if at >= len(lines) or not lines[at].rstrip().endswith(":"):
        return None
    indent = len(lines[at]) - len(lines[at].lstrip())
    body = []
    for line in lines[at + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    written = [line.strip() for line in body if line.strip() and not line.strip().startswith("#")]
    return _compact(body), written


def _masked(compact, converters):
    """`compact` with the converters it names replaced by CONV0, CONV1 (in order), and them."""
    found = []

    def mask(match):
        if match.group(0) not in converters:
            raise _Unfusable(match.group(0))
        found.append(match.group(0))
        return f"CONV{len(found) - 1}"

    return "\n".join(_CONVERTER.sub(mask, line) for line in compact), found


def _templates():
    return {kind: "\n".join(_compact(text.splitlines())) for kind, text in _TEMPLATES.items()}


def _build(compact, converters):
    """`return Type(field=Converter.read(buf), ...)` or `return Type.Variant(Converter.read(buf),
    ...)` (compacted lines): ("build", the callee, [(keyword or None, converter)], False)."""
    head = _BUILD.fullmatch(compact[0]) if compact else None
    if head is None or compact[-1] != ")":
        return None
    fields = []
    for line in compact[1:-1]:
        match = _CONVERTER_READ.fullmatch(line)
        if match is None or match.group(2) not in converters:
            return None
        if match.group(1) is None and fields and fields[-1][0] is not None:
            return None  # a positional argument after a keyword
        fields.append((match.group(1), match.group(2)))
    return ("build", head.group(1), fields, False)


def _stores_only(cls, fields, lines):
    """Whether `cls(**fields)` is `object.__new__(cls)` and then one plain attribute store per
    argument, in the order of `cls.__init__`'s parameters: the generated record classes. Their
    fused reader does those steps itself (a call with keywords costs as much as the stores)."""
    names = [k for k, _ in fields]
    if not (
        isinstance(cls, type)
        and type(cls) is type
        and None not in names
        and len(set(names)) == len(names)
        and cls.__new__ is object.__new__
        and cls.__setattr__ is object.__setattr__
        and all("__slots__" not in vars(k) for k in cls.__mro__)
        and not any(name in vars(k) for k in cls.__mro__ for name in names)
    ):
        return False
    init = vars(cls).get("__init__")
    code = getattr(init, "__code__", None)
    if (
        code is None
        or code.co_argcount != 1
        or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
    ):
        return False
    params = code.co_varnames[: 1 + code.co_kwonlyargcount]
    # Every parameter is given (a default, `over: bool = False`, never applies).
    if sorted(params[1:]) != sorted(names):
        return False
    source = _source(init, params, lines)
    return source is not None and source[0] == [f"{params[0]}.{p}={p}" for p in params[1:]]


def _enum(compact, converters, namespace):
    """`variant = buf.read_i32()`, then `if variant == k: return <variant>` for each variant,
    then a raise: ("enum", {k: ("const", member) or ("build", ...)})."""
    if len(compact) < 4 or compact[0] != "variant=buf.read_i32()":
        return None
    if not compact[-1].startswith("raise"):
        return None
    variants = {}
    lines = compact[1:-1]
    at = 0
    while at < len(lines):
        case = re.fullmatch(r"ifvariant==(\d+):", lines[at])
        if case is None:
            return None
        end = at + 1
        while end < len(lines) and not lines[end].startswith("ifvariant=="):
            end += 1
        body = lines[at + 1:end]
        built = _build(body, converters)
        if built is None:
            # A variant without fields of an `enum.Enum`: the member, which cannot change.
            path = re.fullmatch(r"return([A-Za-z_]\w*)\.(\w+)", body[0]) if len(body) == 1 else None
            cls = path and namespace.get(path.group(1))
            if not (isinstance(cls, enum.EnumMeta) and path.group(2) in cls.__members__):
                return None
            built = ("const", cls.__members__[path.group(2)])
        variants[int(case.group(1))] = built
        at = end
    return ("enum", variants)


def _shape(cls, converters, namespace, lines, templates):
    """What the generated `cls.read` reads, as a tuple; None when not one of the known shapes."""
    read = vars(cls)["read"]
    params = ("cls", "buf") if isinstance(read, classmethod) else ("buf",)
    source = _source(read, params, lines)
    if source is None:
        return None
    compact, written = source
    try:
        masked, found = _masked(compact, converters)
    except _Unfusable:
        return None
    for kind, template in templates.items():
        if masked == template:
            if kind == "bool":
                lift = _source(vars(cls).get("lift"), ("value",), lines)
                if lift is None or lift[0] != _compact([_BOOL_LIFT]):
                    return None
            return (kind, *found)
    if len(compact) == 1:
        fixed = _FIXED_READ.fullmatch(compact[0])
        if fixed:
            return ("fixed", _FIXED[fixed.group(1)]) if fixed.group(1) in _FIXED else None
        alias = re.fullmatch(r"return(\w+)\.read\(buf\)", compact[0])
        if alias:
            return ("alias", alias.group(1)) if alias.group(1) in converters else None
    custom = re.fullmatch(r"builtin_value=(\w+)\.read\(buf\)", compact[0])
    if custom and len(written) == 2 and written[1].startswith("return "):
        # A custom type: the builtin value, then uniffi.toml's expression of it.
        text = written[1][len("return "):]
        try:
            expression = ast.parse(text, mode="eval")
        except SyntaxError:
            return None
        names = {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}
        if custom.group(1) not in converters or names & _READER_LOCALS or "_fz" in text:
            return None  # it would see the fused reader's variables

        class Rename(ast.NodeTransformer):
            def visit_Name(self, node):
                if node.id == "builtin_value":
                    node.id = _BUILTIN
                return node

        return ("custom", custom.group(1), ast.unparse(Rename().visit(expression)))
    built = _build(compact, converters)
    if built is not None:
        callee, fields = built[1], built[2]
        return ("build", callee, fields, _stores_only(namespace.get(callee), fields, lines))
    return _enum(compact, converters, namespace)


class _Emitter:
    """Writes one fused reader: Python source over `data` (the bytes), `at` (the offset) and
    `n` (the length). Fixed-size reads wait in `pending` so that adjacent ones share one
    unpack; any other statement writes them out first."""

    def __init__(self, shapes, scope, text=False):
        self.shapes = shapes
        self.scope = scope  # the readers' globals, where their constants go
        # Strings are sliced from `_fz_text`, the bytes decoded as Latin-1 (`read_string`).
        self.text = text
        self.loops = 0  # `for` blocks around the next line
        self.loop_strings = False  # a string is read inside a loop
        self.hoisted = {}  # dotted path in a custom type's expression: its constant
        self.lines = []
        self.pending = []  # (format character, variable)
        self.after = []  # statements converting pending values, once read
        self.depth = 1
        self.count = 0
        self.within = []
        # Custom-type values read so far, by converter, in the blocks around the next line:
        # [(builtin variable, value variable)], innermost block last.
        self.seen = [{}]

    def var(self):
        self.count += 1
        return f"_fz{self.count}"

    def constant(self, value):
        name = f"_fz_c{next(_constants)}"
        self.scope[name] = value
        return name

    def flush(self):
        if not self.pending:
            return
        fmt = ">" + "".join(f for f, _ in self.pending)
        size = struct.calcsize(fmt)
        pad = "    " * self.depth
        if fmt == ">B":  # an option's flag, a bool: the byte itself (past the end: IndexError)
            self.lines.append(f"{pad}{self.pending[0][1]} = data[at]")
        else:
            unpack = "_fz_unpack_" + fmt[1:]
            if unpack not in self.scope:
                self.scope[unpack] = struct.Struct(fmt).unpack_from
            targets = "".join(v + ", " for _, v in self.pending)
            self.lines.append(f"{pad}{targets}= {unpack}(data, at)")
        self.lines.append(f"{pad}at += {size}")
        self.lines.extend(pad + s for s in self.after)
        self.pending, self.after = [], []

    def line(self, text):
        self.flush()
        self.lines.append("    " * self.depth + text)

    def convert(self, text):
        """A statement over values read so far: after the pending unpack if there is one."""
        if self.pending:
            self.after.append(text)
        else:
            self.line(text)

    def fixed(self, fmt):
        v = self.var()
        self.pending.append((fmt, v))
        return v

    def loop(self, header, write):
        """A `for` block: strings read in it make the reader slice them from `_fz_text`."""
        self.loops += 1
        try:
            self.block(header, write)
        finally:
            self.loops -= 1

    def block(self, header, write):
        self.line(header)
        self.depth += 1
        self.seen.append({})
        write()
        self.flush()
        self.seen.pop()
        self.depth -= 1

    def read(self, name):
        """Writes the reading of one `name` value; the variable (or constant) holding it."""
        shape = self.shapes.get(name)
        if shape is None or name in self.within:
            raise _Unfusable(name)
        self.within.append(name)
        try:
            return getattr(self, "read_" + shape[0])(*shape[1:])
        finally:
            self.within.pop()

    def read_fixed(self, fmt):
        return self.fixed(fmt)

    def read_alias(self, inner):
        return self.read(inner)

    def read_bool(self):
        raw, v = self.fixed("B"), self.var()
        self.convert(f"{v} = {raw} != 0")
        return v

    def read_string(self):
        size, end, v = self.fixed("i"), self.var(), self.var()
        self.line(f"{end} = at + {size}")
        self.line(f"if {size} < 0 or {end} > n: raise _fz_Malformed")
        self.loop_strings = self.loop_strings or self.loops > 0
        if self.text:
            # Latin-1 maps each byte to the code point of its value, so a slice of `_fz_text`
            # whose characters are all ASCII is what UTF-8 decodes from the same bytes
            # (`isascii` reads a flag of the string); any other is decoded, and checked, as
            # UTF-8. A slice and a flag cost less than a slice and a decode.
            self.line(f"{v} = _fz_text[at:{end}]")
            self.line(f'if not {v}.isascii(): {v} = data[at:{end}].decode("utf-8")')
        else:
            self.line(f'{v} = data[at:{end}].decode("utf-8")')
        self.line(f"at = {end}")
        return v

    def hoist(self, expression):
        """`expression` with each dotted path from a module to a type, a builtin function or
        an immutable value (`datetime.datetime.fromtimestamp`, `datetime.timezone.utc`) read
        once, as a constant: a global and two attribute lookups less per use. Read when the
        reader is compiled (at its first call): a module attribute rebound later (a test's
        fake clock patching `datetime.datetime`) is not seen, where the generated code would
        build the patched type; the values are equal."""
        emitter = self

        class Hoist(ast.NodeTransformer):
            def visit_Attribute(self, node):
                path, root = [], node
                while isinstance(root, ast.Attribute):
                    path.append(root.attr)
                    root = root.value
                value = emitter.scope.get(root.id) if isinstance(root, ast.Name) else None
                if isinstance(value, types.ModuleType):
                    dotted = ".".join([root.id, *reversed(path)])
                    try:
                        for attr in reversed(path):
                            value = getattr(value, attr)
                    except AttributeError:
                        return node
                    if isinstance(value, (type, types.BuiltinFunctionType)) or (
                        type(value) in _IMMUTABLE and value is not None
                    ):
                        if dotted not in emitter.hoisted:
                            emitter.hoisted[dotted] = emitter.constant(value)
                        return ast.Name(emitter.hoisted[dotted], ast.Load())
                return self.generic_visit(node)

        return ast.unparse(Hoist().visit(ast.parse(expression, mode="eval")))

    def read_custom(self, inner, expression):
        builtin, v = self.read(inner), self.var()
        expression = self.hoist(expression).replace(_BUILTIN, builtin)
        shape = self.shapes[inner]
        while shape[0] == "alias":
            shape = self.shapes[shape[1]]
        name = self.within[-1]
        earlier = [seen[name][-1] for seen in self.seen if name in seen]
        if shape[0] == "fixed" and shape[1] in "bBhHiIqQ" and earlier:
            # The same integer as a value of the same type read before it (a record's
            # `created_at` and `updated_at`): that value, when it is of an immutable builtin
            # type, cannot be told apart from the expression's new one.
            last_builtin, last = earlier[-1]
            expression = (
                f"{last} if {builtin} == {last_builtin} and type({last}) in _fz_immutable "
                f"else ({expression})"
            )
        self.seen[-1].setdefault(name, []).append((builtin, v))
        self.convert(f"{v} = {expression}")
        return v

    def read_optional(self, inner):
        flag, v = self.fixed("B"), self.var()
        self.block(f"if {flag} == 0:", lambda: self.line(f"{v} = None"))

        def some():
            value = self.read(inner)
            self.line(f"{v} = {value}")

        self.block(f"elif {flag} == 1:", some)
        self.block("else:", lambda: self.line("raise _fz_Malformed"))
        return v

    def read_sequence(self, inner):
        count, v = self.fixed("i"), self.var()
        self.line(f"if {count} < 0: raise _fz_Malformed")
        self.line(f"{v} = []")
        self.loop(
            f"for _ in range({count}):", lambda: self.line(f"{v}.append({self.read(inner)})")
        )
        return v

    def read_map(self, key, value):
        count, v = self.fixed("i"), self.var()
        self.line(f"if {count} < 0: raise _fz_Malformed")
        self.line(f"{v} = {{}}")

        def entry():
            k = self.read(key)
            self.line(f"{v}[{k}] = {self.read(value)}")

        self.loop(f"for _ in range({count}):", entry)
        return v

    def read_build(self, callee, fields, stores_only):
        values = [self.read(converter) for _, converter in fields]
        v = self.var()
        if stores_only:
            # `callee.__init__`'s stores, in its order, without the call (see `_stores_only`).
            init = self.scope[callee].__init__.__code__
            by_name = {k: a for (k, _), a in zip(fields, values)}
            self.line(f"{v} = _fz_new({callee})")
            for name in init.co_varnames[1 : 1 + init.co_kwonlyargcount]:
                self.line(f"{v}.{name} = {by_name[name]}")
            return v
        args = ", ".join(a if k is None else f"{k}={a}" for (k, _), a in zip(fields, values))
        self.line(f"{v} = {callee}({args})")
        return v

    def read_enum(self, variants):
        tag, v = self.fixed("i"), self.var()
        if all(kind == "const" for kind, *_ in variants.values()):
            table = self.constant({k: member for k, (_, member) in variants.items()})
            self.convert(f"{v} = {table}[{tag}]")  # KeyError: not a variant
            return v
        keyword = "if"
        for k, (kind, *rest) in variants.items():
            if kind == "const":
                body = lambda c=self.constant(rest[0]): self.line(f"{v} = {c}")
            else:
                body = lambda rest=rest: self.line(f"{v} = {self.read_build(*rest)}")
            self.block(f"{keyword} {tag} == {k}:", body)
            keyword = "elif"
        self.block("else:", lambda: self.line("raise _fz_Malformed"))
        return v


def _fuse(gen, Reader, lines, free):
    """{converter name: (`read(stream)`, `lift(rbuf)` or None, `value_of(data)`)}: fused
    readers for the generated converters whose whole tree `_shape` knows. Each is written and
    compiled at its first call (most of them are never called); until then it costs an entry
    here."""
    namespace = vars(gen)
    converters = {
        name: value
        for name, value in namespace.items()
        if name.startswith(("_UniffiFfiConverter", "_UniffiConverter"))
        and isinstance(value, type)
        and "read" in vars(value)
    }
    if not lines:
        return {}
    templates = _templates()
    shapes = {}
    for name, cls in converters.items():
        shape = _shape(cls, converters, namespace, lines, templates)
        if shape is not None:
            shapes[name] = shape

    def fusable(name, within=()):
        shape = shapes.get(name)
        if shape is None or name in within:
            return False  # unknown, or a recursive type
        inner = [c for c in shape[1:] if isinstance(c, str) and c in converters]
        if shape[0] == "build":
            inner = [c for _, c in shape[2]]
        elif shape[0] == "enum":
            inner = [c for kind, *rest in shape[1].values() if kind == "build" for _, c in rest[1]]
        return all(fusable(c, within + (name,)) for c in inner)

    rust_buffer = namespace.get("_UniffiConverterRustBuffer")
    scope = dict(namespace)  # the readers' globals: the generated names, and their own
    scope.update(_fz_Malformed=_Malformed, _fz_replay=_replay(Reader), _fz_immutable=_IMMUTABLE,
                 _fz_new=object.__new__)
    lock = threading.Lock()
    readers = {}
    for name, shape in shapes.items():
        if shape[0] in ("fixed", "string") or not fusable(name):
            continue  # one read already, or left as generated
        cls = converters[name]
        scope[f"_fz_generated_{name}"] = cls.read
        lift = issubclass(cls, rust_buffer) if rust_buffer is not None else False
        readers[name] = _fused(name, shapes, scope, lock, cls.read, Reader, lift and free)
    return readers


def _replay(Reader):
    def replay(generated_read, data, start, n):
        # Bytes the fused reader did not accept: the generated reader reads them again, from
        # the same offset, and raises (or returns) what it always has.
        stream = Reader(data, n)
        stream.offset = start
        value = generated_read(stream)
        return value, stream.offset

    return replay


def _compile(name, shapes, scope):
    """Writes and compiles the fused reader of `name`: `core(data, start, n)` -> (value, end)."""

    def emit(text):
        emitter = _Emitter(shapes, scope, text)
        emitter.line(f"return {emitter.read(name)}, at")
        return emitter

    emitter = emit(False)
    plain = _define(name, emitter.lines, scope)
    if not emitter.loop_strings:
        return plain
    # Strings read in a loop: sliced from the bytes decoded once (`read_string`), when the
    # value starts the bytes (a result); a value inside bytes a generated reader reads (a
    # field of a record left as generated) is read by `plain`, which decodes only its own.
    scope[f"_fz_plain_{name}"] = plain
    head = [
        f"    if start: return _fz_plain_{name}(data, start, n)",
        "    _fz_text = data.decode('latin-1')",
    ]
    return _define(name, head + emit(True).lines, scope)


def _define(name, lines, scope):
    """Compiles the reader of `name` whose body is `lines` (indented for its `try`)."""
    source = (
        f"def _fz_read(data, start, n):\n"
        "    at = start\n"
        "    try:\n"
        + "\n".join("    " + line for line in lines)
        + "\n    except Exception:\n"
        f"        return _fz_replay(_fz_generated_{name}, data, start, n)\n"
    )
    code = compile(source, f"<orgdb fused reader of {name}>", "exec")
    exec(code, scope)
    return scope.pop("_fz_read")


def _fused(name, shapes, scope, lock, generated_read, Reader, free):
    """`name`'s fused `read(stream)`, `lift(rbuf)` (None without `free`, the function that
    frees a Rust buffer) and `value_of(data)` (the value that is all of `data`), compiled at
    their first call."""
    core = None

    def build():
        nonlocal core
        with lock:
            if core is None:
                try:
                    core = _compile(name, shapes, scope)
                except Exception:
                    # Source Python cannot compile (blocks nested past its limit): the
                    # generated reader, always.
                    replay = scope["_fz_replay"]
                    core = lambda data, start, n: replay(generated_read, data, start, n)
        return core

    def read(stream):
        if type(stream) is not Reader:
            return generated_read(stream)
        value, stream.offset = (core or build())(stream.data, stream.offset, stream.len)
        return value

    def value_of(data):
        n = len(data)
        value, at = (core or build())(data, 0, n)
        if at != n:
            raise RuntimeError(f"junk data left in buffer at end of consume_with_stream {n - at}")
        return value

    def lift(rbuf):
        try:
            n = rbuf.len
            return value_of(rbuf.data[:n] if n else b"")
        finally:
            free(rbuf)

    return read, (lift if free else None), value_of


# ---- Rust buffers without the generated helpers' steps -------------------------------------

# ForeignBytes' length is an i32.
_FOREIGN_BYTES_MAX = 2**31 - 1


def _source_lines(gen):
    try:
        return linecache.getlines(inspect.getsourcefile(gen))
    except TypeError:
        return []


def _buffer_calls(gen, lines):
    """(`from_bytes(data)`, `free(rbuf)`): a Rust buffer holding a copy of `data`, in one Rust
    call (`rustbuffer_from_bytes`, where the generated runtime allocates and then copies with
    a second foreign call), and the release of one, each calling the Rust function the
    generated `_UniffiRustBuffer.alloc` / `free` name directly, with the same status check.
    A module whose pieces are not as expected gets the generated helpers' ways instead."""
    buffer_type = gen._UniffiRustBuffer
    status_type = gen._UniffiRustCallStatus
    check = gen._uniffi_check_call_status
    byref = ctypes.byref

    def generated_free(rbuf):
        rbuf.free()

    names = {}
    for method, param in (("alloc", "size"), ("free", "self")):
        source = _source(vars(buffer_type)[method], (param,), lines)
        match = source and re.fullmatch(
            rf"return_uniffi_rust_call\(_UniffiLib\.(\w+),{param}\)", "".join(source[0])
        )
        if not match:
            return None, generated_free
        names[method] = match.group(1)
    lib = getattr(gen, "_UniffiLib", None)
    lib_free = getattr(lib, names["free"], None)
    if lib_free is None or lib_free.argtypes != (buffer_type, ctypes.POINTER(status_type)):
        return None, generated_free

    def free(rbuf):
        status = status_type()
        lib_free(rbuf, byref(status))
        if status.code:
            check(None, status)

    # `rustbuffer_from_bytes(ForeignBytes)`, declared again with the pointer as a c_char_p:
    # the same layout, and ctypes passes a bytes object's own buffer for it, without a copy.
    name = names["alloc"][: -len("alloc")] + "from_bytes"
    foreign = getattr(gen, "_UniffiForeignBytes", None)
    declared = getattr(lib, name, None)
    if not (
        names["alloc"].endswith("alloc")
        and declared is not None
        and foreign is not None
        and [(f, t) for f, t in foreign._fields_]
        == [("len", ctypes.c_int32), ("data", ctypes.POINTER(ctypes.c_char))]
        and declared.argtypes == (foreign, ctypes.POINTER(status_type))
        and declared.restype is buffer_type
    ):
        return None, free

    class ForeignBytes(ctypes.Structure):
        _fields_ = [("len", ctypes.c_int32), ("data", ctypes.c_char_p)]

    lib_from_bytes = lib._FuncPtr((name, lib))
    lib_from_bytes.argtypes = (ForeignBytes, ctypes.POINTER(status_type))
    lib_from_bytes.restype = buffer_type

    def from_bytes(data):
        status = status_type()
        rbuf = lib_from_bytes(ForeignBytes(len(data), data), byref(status))
        if status.code:
            check(None, status)
        return rbuf

    return from_bytes, free


# ---- Direct method calls --------------------------------------------------------------------
#
# A generated method clones its object's handle, lowers each buffer argument into a new Rust
# buffer, calls the scaffolding function and frees the returned buffer: a foreign call each,
# about a microsecond apiece. The library's `orgdb_py_<shape>` entry points (src/ffi/py.rs) do
# all of that in one call: they take the clone and scaffolding functions' addresses, the
# handle, each buffer argument as Python bytes (an 8-byte little-endian length, then the
# bytes: passed without a copy), and copy a returned buffer into the scratch memory of the call
# slot the caller passes. `_direct_methods` rewrites each generated method whose body is
# UniFFI's template so that it calls one: the statements before the lowering (argument checks,
# defaults) stay as generated; the lowering, the call and the lift become the entry point's
# call written into the method.

_SCRATCH = 64 * 1024  # bytes of a thread's scratch memory; a bigger result comes back whole
_FAILED = -2  # what an entry point returning a buffer or nothing returns after an error
_LEN = struct.Struct("<Q")
_ARGS = "_uniffi_lowered_args"


def _call_state(buffer_type, status_type):
    """(the per-thread state, a function making a call slot). A call takes a slot from its
    thread's `free` list (or a new one) and gives it back once it has read what the entry
    point left there: Python code that runs in between (a signal handler, a `__del__` run by
    the collector, a trace hook) and calls orgdb again gets a slot of its own, so nothing
    overwrites a result or status not yet read. A slot whose call was interrupted before it
    gave it back is not used again."""

    class Context(ctypes.Structure):
        # src/ffi/py.rs `Context`: the scratch memory, a result too big for it, the status.
        _fields_ = [("scratch", ctypes.c_void_p), ("cap", ctypes.c_uint64),
                    ("out", buffer_type), ("status", status_type)]

    class Slot:
        """A call context, its scratch memory and their views."""

        __slots__ = ("scratch", "view", "context", "at", "status", "out")

        def __init__(self):
            self.scratch = ctypes.create_string_buffer(_SCRATCH)
            self.view = memoryview(self.scratch)
            self.context = Context(ctypes.addressof(self.scratch), _SCRATCH)
            self.at = ctypes.addressof(self.context)
            self.status = self.context.status  # a view of the context's own memory
            self.out = self.context.out

        def failed(self):
            """The status an error was written to, as a copy; the slot's is zeroed."""
            status = status_type.from_buffer_copy(self.status)
            ctypes.memset(ctypes.addressof(self.status), 0, ctypes.sizeof(status_type))
            return status

    class CallState(threading.local):
        def __init__(self):
            self.free = [Slot()]

    return CallState(), Slot


def _shape_code(ctype, buffer_type):
    """The shape letter of a scaffolding function's parameter or return type, or None."""
    if ctype is buffer_type:
        return "R"
    if ctype is None:
        return "U"
    if isinstance(ctype, type) and issubclass(ctype, ctypes._SimpleCData) and ctype._type_ in \
            "bBhHiIlLqQ":
        return {8: "L", 4: "I", 1: "B"}.get(ctypes.sizeof(ctype))
    return None


def _method_tree(func, lines):
    """The `def` of a generated method, parsed from the module's source lines, or None."""
    code = getattr(func, "__code__", None)
    if code is None or not lines:
        return None
    first = code.co_firstlineno - 1
    last = max((line for _, _, line in code.co_lines() if line), default=0)
    raw = lines[first:last]
    if not raw or not raw[0].lstrip().startswith("def "):
        return None
    indent = len(raw[0]) - len(raw[0].lstrip())
    # Docstrings end at column 0: only lines with the whole indent lose it (a line inside a
    # string keeps its text either way).
    text = "".join(line[indent:] if line[:indent].isspace() else line for line in raw)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    node = tree.body[0] if len(tree.body) == 1 else None
    return node if isinstance(node, ast.FunctionDef) and node.name == func.__name__ else None


def _is_name(node, name):
    return isinstance(node, ast.Name) and node.id == name


def _assigned(stmt, name):
    """The value of `stmt` if it is `name = value`, else None."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _is_name(stmt.targets[0], name):
        return stmt.value
    return None


def _template_tail(node):
    """(the statements before the lowering, the lowered arguments, the lift and error
    expressions, the scaffolding function's name) of a method made from UniFFI's template;
    None for any other body."""
    body = node.body
    if len(body) < 5:
        return None
    lowered, lift, error, call = (
        _assigned(stmt, name)
        for stmt, name in zip(body[-5:-1], (
            _ARGS, "_uniffi_lift_return", "_uniffi_error_converter", "_uniffi_ffi_result"
        ))
    )
    ret = body[-1]
    if not (isinstance(lowered, ast.Tuple) and lowered.elts and None not in (lift, error)):
        return None
    first, *args = lowered.elts
    if ast.unparse(first) != "self._uniffi_clone_handle()":
        return None
    for arg in args:
        if not (
            isinstance(arg, ast.Call)
            and isinstance(arg.func, ast.Attribute)
            and arg.func.attr == "lower"
            and isinstance(arg.func.value, ast.Name)
            and len(arg.args) == 1
            and not arg.keywords
        ):
            return None
    if not (
        isinstance(call, ast.Call)
        and _is_name(call.func, "_uniffi_rust_call_with_error")
        and len(call.args) == 3
        and _is_name(call.args[0], "_uniffi_error_converter")
        and isinstance(call.args[1], ast.Attribute)
        and _is_name(call.args[1].value, "_UniffiLib")
        and isinstance(call.args[2], ast.Starred)
        and _is_name(call.args[2].value, _ARGS)
    ):
        return None
    if ast.unparse(ret) != "return _uniffi_lift_return(_uniffi_ffi_result)":
        return None
    pre = body[:-5]
    if pre and isinstance(pre[0], ast.Expr) and isinstance(pre[0].value, ast.Constant):
        pre = pre[1:]  # the docstring: the replacement takes the generated one's
    return pre, args, lift, error, call.args[1].attr


def _direct_methods(gen, lines, Reader, values=None):
    """{(class name, method name): replacement} for the generated object methods that can call
    an `orgdb_py_<shape>` entry point; empty when the library has none. `values` holds the
    fused readers' `value_of(data)` by converter name."""
    values = values or {}
    namespace = vars(gen)
    lib = namespace.get("_UniffiLib")
    buffer_type = gen._UniffiRustBuffer
    status_type = gen._UniffiRustCallStatus
    rust_buffer = namespace.get("_UniffiConverterRustBuffer")
    string = namespace.get("_UniffiFfiConverterString")
    optional_string = namespace.get("_UniffiFfiConverterOptionalString")
    check = gen._uniffi_check_call_status
    if lib is None or rust_buffer is None or string is None:
        return {}
    try:
        lib._FuncPtr(("orgdb_py_LR_R", lib))
    except AttributeError:
        return {}  # a library without the entry points
    state, slot = _call_state(buffer_type, status_type)
    scope = dict(namespace)
    pieces = {}

    def writer(conv):
        """`conv`'s value as an entry point's buffer argument, or None if it is not one."""
        generic = written(conv)
        if generic is not None and conv is optional_string:
            # The commonest argument after a string, written without the generated writers;
            # used only if it writes what they write.
            absent = _LEN.pack(1) + b"\0"

            def to_bytes(value):
                if value is None:
                    return absent
                data = value.encode("utf-8")
                n = len(data)
                return _LEN.pack(n + 5) + b"\1" + _I32.pack(n) + data

            samples = (None, "", "res_01", "ü" * 40)
            try:
                if all(to_bytes(v) == generic(v) for v in samples):
                    return to_bytes
            except Exception:
                pass
        return generic

    def written(conv):
        if conv is string:
            def to_bytes(value):
                data = value.encode("utf-8")
                return _LEN.pack(len(data)) + data
        elif isinstance(conv, type) and issubclass(conv, rust_buffer):
            write = conv.write

            def to_bytes(value):
                w = _Writer()
                w.out = bytearray(8)
                write(value, w)
                out = w.out
                _LEN.pack_into(out, 0, len(out) - 8)
                return bytes(out)
        else:
            return None
        return to_bytes

    def reader(conv):
        """Reads `conv`'s value from a returned buffer's bytes, or None."""
        if conv is string:
            return lambda data: data.decode("utf-8")
        if not (isinstance(conv, type) and issubclass(conv, rust_buffer)):
            return None
        if conv.__name__ in values:
            return values[conv.__name__]

        read = conv.read
        return lambda data: _read_whole(Reader, read, data)

    def failed(free, t, error):
        status = t.failed()
        free.append(t)
        check(error, status)  # raises the error the status holds

    def whole(free, t, n, error, lift):
        """A returned buffer that did not fit the scratch memory (or an error)."""
        if n == _FAILED:
            failed(free, t, error)
        out = buffer_type.from_buffer_copy(t.out)
        ctypes.memset(ctypes.addressof(t.out), 0, ctypes.sizeof(buffer_type))
        free.append(t)
        return lift(out)  # the generated lift frees it

    scope.update(_dc_state=state, _dc_slot=slot, _dc_failed=failed, _dc_whole=whole,
                 _dc_FAILED=_FAILED)

    def call_source(prefix, shape, args, lift, error):
        """The statements that call the entry point `prefix`_shim and return the value, lifted
        by the expression `lift`, or raise the error `error` (an expression) lifts."""
        call = (f"{prefix}_shim({prefix}_clone, {prefix}_entry, self._handle"
                + "".join(", " + a for a in args) + ", _dc_t.at)")
        take = "_dc_f = _dc_state.free\n_dc_t = _dc_f.pop() if _dc_f else _dc_slot()\n"
        ret = shape[-1]
        if ret == "R":
            return (
                f"{take}_dc_n = {call}\n"
                "if _dc_n >= 0:\n"
                "    _dc_b = _dc_t.view[:_dc_n].tobytes()\n"
                "    _dc_f.append(_dc_t)\n"
                f"    return {prefix}_value(_dc_b)\n"
                f"return _dc_whole(_dc_f, _dc_t, _dc_n, {error}, {lift})\n"
            )
        if ret == "U":
            return (
                f"{take}if {call} == _dc_FAILED:\n"
                f"    _dc_failed(_dc_f, _dc_t, {error})\n"
                "_dc_f.append(_dc_t)\nreturn None\n"
            )
        return (
            f"{take}_dc_v = {call}\nif _dc_t.status.code:\n"
            f"    _dc_failed(_dc_f, _dc_t, {error})\n"
            "_dc_f.append(_dc_t)\n"
            f"return ({lift})(_dc_v)\n"
        )

    def declare(shim, shape, ctypes_args, restype):
        shim.argtypes = (ctypes.c_size_t, ctypes.c_size_t, *ctypes_args, ctypes.c_void_p)
        shim.restype = ctypes.c_int64 if shape[-1] in "RU" else restype
        return shim

    def address(fn):
        return ctypes.cast(fn, ctypes.c_void_p).value

    for cls_name, cls in list(namespace.items()):
        if not (isinstance(cls, type) and "_uniffi_clone_handle" in vars(cls)):
            continue
        clone_tree = _method_tree(vars(cls)["_uniffi_clone_handle"], lines)
        clone_src = ast.unparse(clone_tree.body[-1]) if clone_tree else ""
        match = re.fullmatch(r"return _uniffi_rust_call\(_UniffiLib\.(\w+), self\._handle\)",
                             clone_src)
        clone_fn = match and getattr(lib, match.group(1), None)
        if clone_fn is None:
            continue
        clone = address(clone_fn)
        for method_name, func in list(vars(cls).items()):
            if method_name.startswith("__") or not inspect.isfunction(func):
                continue
            node = _method_tree(func, lines)
            tail = node and _template_tail(node)
            entry_fn = tail and getattr(lib, tail[4], None)
            if entry_fn is None or entry_fn.argtypes is None:
                continue
            pre, args, lift, error, _ = tail
            argtypes = list(entry_fn.argtypes)
            if len(argtypes) != len(args) + 2 or argtypes[-1] != ctypes.POINTER(status_type):
                continue
            codes = [_shape_code(t, buffer_type) for t in argtypes[:-1]]
            ret = _shape_code(entry_fn.restype, buffer_type)
            if None in codes or ret is None or codes[0] != "L":
                continue
            shape = "".join(codes) + "_" + ret
            try:
                shim = lib._FuncPtr((f"orgdb_py_{shape}", lib))
            except AttributeError:
                continue  # no entry point of this shape: the generated call stays
            lift_bytes = None
            if ret == "R":
                conv = (namespace.get(lift.value.id)
                        if isinstance(lift, ast.Attribute) and lift.attr == "lift"
                        and isinstance(lift.value, ast.Name) else None)
                lift_bytes = reader(conv)
                if lift_bytes is None:
                    continue
            new_args, ctypes_args, ok = [], [argtypes[0]], True
            for arg, code, ctype in zip(args, codes[1:], argtypes[1:-1]):
                if code == "R":
                    to_bytes = writer(namespace.get(arg.func.value.id))
                    if to_bytes is None:
                        ok = False
                        break
                    helper = f"_dc_bytes_{arg.func.value.id}"
                    scope[helper] = to_bytes
                    new_args.append(ast.Call(ast.Name(helper, ast.Load()), arg.args, []))
                    ctypes_args.append(ctypes.c_char_p)
                else:
                    new_args.append(arg)
                    ctypes_args.append(ctype)
            if not ok:
                continue
            prefix = f"_dc_{cls_name}_{method_name}"
            scope.update({
                f"{prefix}_shim": declare(shim, shape, ctypes_args, entry_fn.restype),
                f"{prefix}_clone": clone,
                f"{prefix}_entry": address(entry_fn),
                f"{prefix}_value": lift_bytes,
            })
            tail_src = call_source(prefix, shape, [ast.unparse(a) for a in new_args],
                                   ast.unparse(lift), ast.unparse(error))
            node.body = pre + ast.parse(tail_src).body
            node.decorator_list = []
            node.returns = None
            for a in node.args.args + node.args.kwonlyargs:
                a.annotation = None
            module = ast.fix_missing_locations(ast.Module([node], []))
            try:
                code = compile(module, f"<orgdb direct call of {cls_name}.{method_name}>", "exec")
                exec(code, scope)
            except Exception:
                continue
            direct = scope.pop(node.name)
            direct.__doc__ = func.__doc__
            direct.__qualname__ = func.__qualname__
            direct.__module__ = func.__module__
            direct.__annotations__ = dict(func.__annotations__)
            pieces[(cls_name, method_name)] = direct
    return pieces


def _read_whole(Reader, read, data):
    """The value `read` reads from all of `data` (bytes), as the generated lift reads it."""
    stream = Reader(data, len(data))
    value = read(stream)
    if stream.offset != stream.len:
        raise RuntimeError(
            f"junk data left in buffer at end of consume_with_stream {stream.remaining()}"
        )
    return value


def _holder(gen, name):
    return gen if name is None else getattr(gen, name, None)


def fits(gen):
    """Whether `gen` has every piece `install` replaces or uses, where it expects them."""
    for name, attr in _PLACES + _USED:
        holder = _holder(gen, name)
        if holder is None or attr not in vars(holder):
            return False
    return True


_ABSENT = object()  # an attribute the class did not have (it inherited it)


def _current(gen, places):
    return {(name, attr): vars(_holder(gen, name)).get(attr, _ABSENT) for name, attr in places}


def _apply(gen, pieces):
    for (name, attr), value in pieces.items():
        holder = _holder(gen, name)
        if value is not _ABSENT:
            setattr(holder, attr, value)
        elif attr in vars(holder):
            delattr(holder, attr)


def install(gen):
    """Replaces the runtime pieces of the generated module `gen`; whether it did."""
    if _originals:
        return True
    if not fits(gen):
        return False
    buffer_type = gen._UniffiRustBuffer
    status_type = gen._UniffiRustCallStatus
    alloc = buffer_type.alloc
    check = gen._uniffi_check_call_status
    Reader = _reader(gen.InternalError)
    lines = _source_lines(gen)
    from_bytes, free = _buffer_calls(gen, lines)

    def to_rust(data):
        n = len(data)
        if from_bytes is not None and n <= _FOREIGN_BYTES_MAX:
            return from_bytes(bytes(data))
        rbuf = alloc(n)
        if n:
            ctypes.memmove(rbuf.data, bytes(data), n)
        rbuf.len = n
        return rbuf

    def lift_buffer(cls, rbuf):
        try:
            n = rbuf.len
            return _read_whole(Reader, cls.read, rbuf.data[:n] if n else b"")
        finally:
            free(rbuf)

    def lower_buffer(cls, value):
        writer = _Writer()
        cls.write(value, writer)
        return to_rust(writer.out)

    def lift_string(rbuf):
        try:
            n = rbuf.len
            return rbuf.data[:n].decode("utf-8") if n else ""
        finally:
            free(rbuf)

    def lower_string(value):
        return to_rust(value.encode("utf-8"))

    def read_string(stream):
        return stream.read_string()

    def rust_call_with_error(error_ffi_converter, fn, *args):
        status = status_type()  # zeroed: CALL_SUCCESS and an empty error buffer
        result = fn(*args, ctypes.byref(status))
        if status.code:
            check(error_ffi_converter, status)
        return result

    def rust_call(fn, *args):
        status = status_type()
        result = fn(*args, ctypes.byref(status))
        if status.code:
            check(None, status)
        return result

    @contextlib.contextmanager
    def consume_with_stream(rbuf):
        try:
            stream = Reader.of(rbuf)
            yield stream
            if stream.offset != stream.len:
                raise RuntimeError(
                    f"junk data left in buffer at end of consume_with_stream {stream.remaining()}"
                )
        finally:
            free(rbuf)

    @contextlib.contextmanager
    def read_with_stream(rbuf):
        stream = Reader.of(rbuf)
        yield stream
        if stream.offset != stream.len:
            raise RuntimeError(
                f"junk data left in buffer at end of read_with_stream {stream.remaining()}"
            )

    pieces = {}
    values = {}
    for name, (read, lift, value_of) in _fuse(gen, Reader, lines, free).items():
        pieces[(name, "read")] = staticmethod(read)
        if lift is not None:
            pieces[(name, "lift")] = staticmethod(lift)
        values[name] = value_of
    fused.update(name for name, _ in pieces)
    direct = _direct_methods(gen, lines, Reader, values)
    direct_calls.update(f"{cls}.{method}" for cls, method in direct)
    pieces.update(direct)
    pieces.update(
        {
            ("_UniffiConverterRustBuffer", "lift"): classmethod(lift_buffer),
            ("_UniffiConverterRustBuffer", "lower"): classmethod(lower_buffer),
            ("_UniffiFfiConverterString", "lift"): staticmethod(lift_string),
            ("_UniffiFfiConverterString", "lower"): staticmethod(lower_string),
            ("_UniffiFfiConverterString", "read"): staticmethod(read_string),
            ("_UniffiRustBuffer", "consume_with_stream"): consume_with_stream,
            ("_UniffiRustBuffer", "read_with_stream"): read_with_stream,
            (None, "_uniffi_rust_call_with_error"): rust_call_with_error,
            (None, "_uniffi_rust_call"): rust_call,
        }
    )
    _originals.update(_current(gen, pieces))
    _apply(gen, pieces)
    _replaced.update(_current(gen, pieces))
    return True


_replaced = {}
# The converters whose `read` (and `lift`) `install` replaced with a fused reader.
fused = set()
# The methods (`Class.method`) that `install` made direct calls.
direct_calls = set()


@contextlib.contextmanager
def generated_runtime(gen):
    """Runs the block with UniFFI's own runtime pieces back in place (for tests that compare
    the two); not thread-safe."""
    if not _originals:
        yield
        return
    _apply(gen, _originals)
    try:
        yield
    finally:
        _apply(gen, _replaced)
