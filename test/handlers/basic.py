"""Function handlers for payload-mode tests."""
import ctypes
import os
import sys
import time


def echo(payload):
    return payload


def enrich(payload):
    return {**payload, "seen": True}


def fanout(payload):
    return [{"i": i} for i in range(payload["n"])]


def fanout_tuple(payload):
    return ({"t": 1}, {"t": 2})


def abort_none(payload):
    return None


def abort_empty(payload):
    return []


def raise_value(payload):
    raise ValueError("Invalid input")


def raise_memory(payload):
    raise MemoryError("pretend the model ran out of memory")


def call_exit(payload):
    sys.exit(3)


def scalar(payload):
    return 42


def text(payload):
    return "just a string"


def unencodable(payload):
    return {"when": object()}


def nan(payload):
    return {"nan": float("nan"), "list": [float("inf"), 1.5, float("-inf")], "ok": 2.0}


def nonstr_keys(payload):
    return {1: "int", 2.5: "float", False: "bool", None: "none"}


def printer(payload):
    print("hello from print")
    os.write(1, b"hello from os.write\n")
    libc = ctypes.CDLL(None)
    libc.printf(b"hello from printf\n")
    libc.fflush(None)
    sys.stderr.write("hello from stderr\n")
    return {"printed": True}


def big(payload):
    return "x" * payload["size"]


def length(payload):
    return {"len": len(payload)}


def sleep(payload):
    sys.stderr.write("sleeping %s s\n" % payload["s"])  # the tests' sign that the call is running
    sys.stderr.flush()
    time.sleep(payload["s"])
    return {"slept": payload["s"]}


def read_stdin(payload):
    return {"stdin": sys.stdin.read()}


def environ(payload):
    return {name: os.environ.get(name) for name in payload["names"]}
