"""Handlers for test/faults-ops.test.ts: a chatty handler, and one that counts its calls."""
import sys
import time

CALLS = [0]


def chatty(payload):
    """Prints `lines` lines to stdout and stderr, then sleeps `sleep` seconds."""
    for i in range(payload.get("lines", 0)):
        print("chatty line %d %s" % (i, "x" * 100))
        sys.stderr.write("chatty stderr line %d\n" % i)
    time.sleep(payload.get("sleep", 0))
    return {"ok": True}


def counted(payload):
    """Returns how many times it has been called in this process, after sleeping `sleep` seconds."""
    CALLS[0] += 1
    sys.stderr.write("call %d started\n" % CALLS[0])  # the tests' sign that the call is running
    sys.stderr.flush()
    time.sleep(payload.get("sleep", 0))
    return {"calls": CALLS[0]}
