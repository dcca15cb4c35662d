# ---------------------------------------------------------------- channel ---

def claim_channel(out=3):
    """Move the channel off fds 0/1 so handler output cannot corrupt it.

    fd 0 becomes /dev/null (input() sees EOF), fd 1 becomes the supervisor's
    handler-output pipe (`out`, fd 3 when spawned, else stderr).
    """
    chan_in = os.dup(0)
    chan_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        os.fstat(out)
        os.dup2(out, 1)
        os.close(out)
    except OSError:
        os.dup2(2, 1)
    return os.fdopen(chan_in, "rb", buffering=65536), chan_out


# Up to this size a message is copied out of the reader's buffer; above, read in place.
SMALL_MESSAGE = 64 * 1024
_U32 = struct.Struct(">I")


def read_exact(reader, n):
    view = memoryview(bytearray(n))
    got = 0
    while got < n:
        chunk = reader.readinto(view[got:])
        if not chunk:
            return None
        got += chunk
    return view


def read_message(reader):
    # `reader` is buffered: a small message is one read syscall, copied out of the buffer; a
    # large one is read straight into its own buffer.
    head = reader.read(4)
    if len(head) < 4:
        return None
    size = _U32.unpack(head)[0]
    if size <= SMALL_MESSAGE:
        body = reader.read(size)
        if len(body) < size:
            return None
        return unpack(memoryview(body))
    body = read_exact(reader, size)
    if body is None:
        return None
    return unpack(body)


def write_message(fd, obj):
    parts = [b""]
    if obj.get("t") == "ok" and len(obj) == 2:
        pack_ok(obj["o"], parts)
    else:
        pack(obj, parts)
    parts[0] = _U32.pack(sum(len(p) for p in parts))
    data = memoryview(b"".join(parts))  # one copy, header included: one write
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------- msgpack ---
# A minimal MessagePack codec: just the types the supervisor exchanges.

def pack(obj, out):
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        if 0 <= obj < 0x80:
            out.append(struct.pack("B", obj))
        elif -32 <= obj < 0:
            out.append(struct.pack("b", obj))
        elif 0 <= obj < 2 ** 32:
            out.append(b"\xce" + struct.pack(">I", obj))
        elif -2 ** 31 <= obj < 0:
            out.append(b"\xd2" + struct.pack(">i", obj))
        elif 0 <= obj < 2 ** 64:
            out.append(b"\xcf" + struct.pack(">Q", obj))
        else:
            out.append(b"\xd3" + struct.pack(">q", obj))
    elif isinstance(obj, float):
        out.append(b"\xcb" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "replace")
        out.append(_sized(len(data), 0xA0, 32, b"\xd9", b"\xda", b"\xdb"))
        out.append(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(_sized(len(obj), None, 0, b"\xc4", b"\xc5", b"\xc6"))
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        out.append(_sized(len(obj), 0x90, 16, None, b"\xdc", b"\xdd"))
        for item in obj:
            pack(item, out)
    elif isinstance(obj, dict):
        out.append(_sized(len(obj), 0x80, 16, None, b"\xde", b"\xdf"))
        for key, value in obj.items():
            pack(key, out)
            pack(value, out)
    else:
        raise TypeError("cannot pack %s" % type(obj).__name__)


def _sized(n, fix_base, fix_limit, tag8, tag16, tag32):
    if fix_base is not None and n < fix_limit:
        return struct.pack("B", fix_base | n)
    if tag8 is not None and n < 0x100:
        return tag8 + struct.pack("B", n)
    if n < 0x10000:
        return tag16 + struct.pack(">H", n)
    return tag32 + struct.pack(">I", n)


# The hot path: the supervisor writes every call as {"t": "call", "p": <bin32>, ...} in this order
# (channel.ts, encodeCall), and most replies are {"t": "ok", "o": [<bin>, ...]}. Both are read and
# written at fixed offsets here; the generic codec below gives the same result, ~4x slower per message.
_CALL_HEAD = b"\xa1t\xa4call\xa1p\xc6"
_OK_HEAD = b"\x82\xa1t\xa2ok\xa1o"


def pack_ok(items, out):
    """`{"t": "ok", "o": items}` for a list of bytes, as pack() would write it."""
    out.append(_OK_HEAD)
    out.append(_sized(len(items), 0x90, 16, None, b"\xdc", b"\xdd"))
    for item in items:
        n = len(item)
        out.append(b"\xc4" + bytes((n,)) if n < 0x100 else _sized(n, None, 0, b"\xc4", b"\xc5", b"\xc6"))
        out.append(item)


def unpack(view):
    if 0x82 <= view[0] <= 0x84 and view[1:11] == _CALL_HEAD:
        end = 15 + _U32.unpack_from(view, 11)[0]
        msg = {"t": "call", "p": view[15:end]}
        pos = end
        for _ in range((view[0] & 0x0F) - 2):  # "m" and "w", when present
            key, pos = _unpack_at(view, pos)
            msg[key], pos = _unpack_at(view, pos)
        return msg
    obj, _ = _unpack_at(view, 0)
    return obj


_FIXED = {0xC0: None, 0xC2: False, 0xC3: True}
_NUMBERS = {0xCA: ">f", 0xCB: ">d", 0xCC: "B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: "b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
_LENGTHS = {0xC4: ("bin", "B"), 0xC5: ("bin", ">H"), 0xC6: ("bin", ">I"),
            0xD9: ("str", "B"), 0xDA: ("str", ">H"), 0xDB: ("str", ">I"),
            0xDC: ("array", ">H"), 0xDD: ("array", ">I"),
            0xDE: ("map", ">H"), 0xDF: ("map", ">I")}


def _unpack_at(view, pos):
    tag = view[pos]
    pos += 1
    if tag < 0x80:
        return tag, pos
    if tag >= 0xE0:
        return tag - 0x100, pos
    if tag in _FIXED:
        return _FIXED[tag], pos
    if tag in _NUMBERS:
        fmt = _NUMBERS[tag]
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, view, pos)[0], pos + size
    if 0xA0 <= tag <= 0xBF:
        kind, n = "str", tag & 0x1F
    elif 0x90 <= tag <= 0x9F:
        kind, n = "array", tag & 0x0F
    elif 0x80 <= tag <= 0x8F:
        kind, n = "map", tag & 0x0F
    elif tag in _LENGTHS:
        kind, fmt = _LENGTHS[tag]
        n = struct.unpack_from(fmt, view, pos)[0]
        pos += struct.calcsize(fmt)
    else:
        raise ValueError("unsupported msgpack tag 0x%02x" % tag)
    if kind == "bin":
        return view[pos:pos + n], pos + n  # a zero-copy slice
    if kind == "str":
        return str(view[pos:pos + n], "utf-8"), pos + n
    if kind == "array":
        items = []
        for _ in range(n):
            item, pos = _unpack_at(view, pos)
            items.append(item)
        return items, pos
    result = {}
    for _ in range(n):
        key, pos = _unpack_at(view, pos)
        result[key], pos = _unpack_at(view, pos)
    return result, pos
