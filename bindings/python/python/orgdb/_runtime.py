"""A faster runtime for the UniFFI-generated module: the same wire format, fewer Python steps.

UniFFI generates `orgdb/orgdb/orgdb.py`: the classes, converters and FFI declarations, and a
small runtime under them that moves values across the boundary. That runtime spends most of
a call's time (issue 18's profile):

- it reads a result with one `struct.unpack` of a fresh slice of a ctypes pointer per
  integer, inside a `contextlib` generator;
- it writes an argument into a Rust buffer of 16 bytes that it grows with a Rust call, so a
  30-character id costs two Rust calls before the call itself;
- it builds each call's status from a nested `default()`.

`install` replaces those few pieces, and only those: results are copied out of the Rust
buffer once (`ctypes.string_at`) and read with precompiled `struct.Struct`s, a string in one
step; arguments are written to a `bytearray` and copied into one Rust buffer of their exact
size; a call's status is a zeroed structure, which is what `default()` built. In the generated
module: `_UniffiConverterRustBuffer.lift` / `lower` (every record, enum, option, list and map),
`_UniffiFfiConverterString.lift` / `lower` / `read`, `_UniffiRustBuffer.consume_with_stream` /
`read_with_stream`, and `_uniffi_rust_call` / `_uniffi_rust_call_with_error` (the handle's
clone, buffer allocation and release go through the first). The converters, their wire format and
every error path stay UniFFI's. If the generated module does not have the pieces this
expects (another UniFFI version), nothing is replaced and `orgdb.FAST_RUNTIME` is False.
"""

import contextlib
import ctypes
import struct

# What `install` replaces: (the class holding it, or None for the module itself, attribute).
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

        def __init__(self, rbuf):
            n = rbuf.len
            self.data = ctypes.string_at(rbuf.data, n) if n else b""
            self.len = n
            self.offset = 0

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


def _holder(gen, name):
    return gen if name is None else getattr(gen, name, None)


def fits(gen):
    """Whether `gen` has every piece `install` replaces or uses, where it expects them."""
    for name, attr in _PLACES + _USED:
        holder = _holder(gen, name)
        if holder is None or attr not in vars(holder):
            return False
    return True


def _current(gen):
    return {(name, attr): vars(_holder(gen, name))[attr] for name, attr in _PLACES}


def _apply(gen, pieces):
    for (name, attr), value in pieces.items():
        setattr(_holder(gen, name), attr, value)


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

    def to_rust(data):
        n = len(data)
        rbuf = alloc(n)
        if n:
            ctypes.memmove(rbuf.data, bytes(data), n)
        rbuf.len = n
        return rbuf

    def lift_buffer(cls, rbuf):
        try:
            stream = Reader(rbuf)
            value = cls.read(stream)
            if stream.offset != stream.len:
                raise RuntimeError(
                    f"junk data left in buffer at end of consume_with_stream {stream.remaining()}"
                )
            return value
        finally:
            rbuf.free()

    def lower_buffer(cls, value):
        writer = _Writer()
        cls.write(value, writer)
        return to_rust(writer.out)

    def lift_string(rbuf):
        try:
            return ctypes.string_at(rbuf.data, rbuf.len).decode("utf-8") if rbuf.len else ""
        finally:
            rbuf.free()

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
            stream = Reader(rbuf)
            yield stream
            if stream.offset != stream.len:
                raise RuntimeError(
                    f"junk data left in buffer at end of consume_with_stream {stream.remaining()}"
                )
        finally:
            rbuf.free()

    @contextlib.contextmanager
    def read_with_stream(rbuf):
        stream = Reader(rbuf)
        yield stream
        if stream.offset != stream.len:
            raise RuntimeError(
                f"junk data left in buffer at end of read_with_stream {stream.remaining()}"
            )

    _originals.update(_current(gen))
    _apply(
        gen,
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
        },
    )
    _replaced.update(_current(gen))
    return True


_replaced = {}


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
