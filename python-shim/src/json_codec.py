# ------------------------------------------------------------------- JSON ---

def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _to_plain(obj):
    # numpy scalars and arrays (and anything else with tolist) become JSON numbers/lists
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_to_plain)


def _finite(obj):
    """Replace NaN and +-Infinity with None (JSON null), like JavaScript and orjson do."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if callable(getattr(obj, "tolist", None)) and not isinstance(obj, (str, bytes)):
        return _finite(obj.tolist())
    return obj


def decode_json_exact(data):
    """The stdlib decoder: what json.loads gives, the reference every other decoder must equal."""
    return _decoder.decode(str(data, "utf-8"))


decode_json = decode_json_exact  # use_orjson() may replace it with a faster equivalent


def encode_json(obj):
    try:
        text = _encoder.encode(obj)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        text = _encoder.encode(_finite(obj))
    except TypeError:
        # numpy integer and bool keys (dict(zip(clf.classes_, proba)), the scikit-learn idiom) are
        # written as int and bool keys are; anything else still fails as json fails.
        plain = _plain_keys(obj)
        if plain is obj:
            raise
        return encode_json(plain)
    return text.encode("utf-8")


_KEYS = (str, int, float, bool)


def _plain_keys(obj):
    """`obj` with every dict key that has .item() giving a JSON key type replaced by it; `obj` itself
    when there is none."""
    if isinstance(obj, dict):
        changed = False
        out = {}
        for key, value in obj.items():
            if key is not None and not isinstance(key, _KEYS):
                item = getattr(key, "item", None)
                plain = item() if callable(item) else key
                if plain is not key and isinstance(plain, _KEYS):
                    key, changed = plain, True
            new = _plain_keys(value)
            changed = changed or new is not value
            out[key] = new
        return out if changed else obj
    if isinstance(obj, (list, tuple)):
        items = [_plain_keys(v) for v in obj]
        return items if any(a is not b for a, b in zip(items, obj)) else obj
    return obj


MAX_ORJSON_DEPTH = 500  # well below the default recursion limit of 1000


def _nests_without_limit(orjson):
    deep = b"[" * 2000 + b"]" * 2000
    try:
        orjson.loads(deep)
    except orjson.JSONDecodeError:
        return False
    return True


def _has_brackets(data, limit):
    """Whether data holds at least `limit` of '[' and '{' together.

    find() stops at the limit and runs at memchr speed; count() scans everything, about 9 ms
    for a 10 MB payload, more than orjson takes to parse it.
    """
    found = 0
    for bracket in (b"[", b"{"):
        pos = data.find(bracket)
        while pos >= 0:
            found += 1
            if found >= limit:
                return True
            pos = data.find(bracket, pos + 1)
    return False


def use_orjson(choice):
    """Switch to orjson when asked ("orjson") or available ("auto"), keeping stdlib semantics.

    orjson is only trusted where its result equals the stdlib path's: anything it would treat
    differently (big ints, str/int/dict subclasses, dataclasses, datetimes) is handed back to the
    stdlib encoder, and any input it rejects is re-parsed by the stdlib decoder so errors read the
    same. NaN/Infinity become null in both.
    """
    global decode_json, encode_json
    if choice == "json":
        return "json"
    try:
        import orjson
    except ImportError:
        if choice == "orjson":
            raise LoadError("ASYA_JSON_CODEC=orjson but orjson is not installed for %s" % sys.executable)
        return "json"
    std_decode, std_encode = decode_json, encode_json
    # Without OPT_NON_STR_KEYS, a dict with a key that is not a str goes to the stdlib: orjson would
    # write 1e20 as "1e20" (stdlib "1e+20") and NaN as "null" (stdlib: an error).
    options = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_DATETIME)

    # orjson before 3.9 nests without limit where the stdlib stops at the recursion limit; on
    # those versions input that could nest that deep (bounded by its bracket count) goes to the
    # stdlib, so it is refused the same way.
    unbounded = _nests_without_limit(orjson)

    # The fallbacks run outside the except blocks so their errors carry no orjson context.
    def fast_decode(data):
        if unbounded:
            data = bytes(data)
            if _has_brackets(data, MAX_ORJSON_DEPTH):
                return std_decode(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        return std_decode(data)

    def fast_encode(obj):
        try:
            return orjson.dumps(obj, default=_to_plain, option=options)
        except TypeError:
            pass
        return std_encode(obj)

    decode_json, encode_json = fast_decode, fast_encode
    return "orjson " + orjson.__version__
