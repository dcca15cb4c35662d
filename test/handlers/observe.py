"""Handlers for test/observe.test.ts: logs, tracebacks, unencodable results."""
import datetime
import logging
import os
import sys

log = logging.getLogger("observe.model")
log.info("module imported")


def process(payload):
    print("print from", payload.get("n"))
    sys.stderr.write("stderr from %s\n" % payload.get("n"))
    sys.stderr.flush()
    os.write(1, b"native write\n")
    log.debug("debug record")
    log.info("info record %s", payload.get("n"))
    log.warning("warning record")
    try:
        {}["missing"]
    except KeyError:
        log.exception("caught it")
    return [payload, payload]


def nested(payload):
    return _helper(payload)


def _helper(payload):
    raise ValueError("deep down")


def when(payload):
    return {"ok": 1, "when": datetime.datetime(2024, 1, 2, 3, 4, 5)}


def a_set(payload):
    return [1, {"tags": {1, 2}}]


def some_bytes(payload):
    return b"raw"


def bad_key(payload):
    return {(1, 2): "tuple key"}


class Model:
    def __init__(self):
        self.calls = 0

    def predict(self, payload):
        self.calls += 1
        return payload


class _BrokenArray(object):
    """Array-like (tolist()) whose conversion is the model's own code, and fails."""

    def __init__(self, error):
        self.error = error

    def tolist(self):
        raise self.error


def tolist_type_error(payload):
    return {"scores": _BrokenArray(TypeError("scores are not ready"))}


def tolist_zero(payload):
    return {"scores": _BrokenArray(ZeroDivisionError("normalising by zero"))}
