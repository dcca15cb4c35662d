"""Handlers that take the interpreter down."""
import ctypes
import os


def exit_hard(payload):
    os._exit(17)


def segfault(payload):
    ctypes.string_at(0)


def ok(payload):
    return {"ok": True, "pid": os.getpid()}


def crash_after(payload):
    """Runs `s` seconds (saying so on stderr), then ends the process if asked to, else answers."""
    import sys
    import time
    sys.stderr.write("running %s\n" % payload.get("n"))
    sys.stderr.flush()
    time.sleep(payload.get("s", 0))
    if payload.get("crash"):
        os._exit(3)
    return {"n": payload.get("n")}


def maybe_crash(payload):
    if payload.get("crash"):
        os._exit(1)
    return {"ok": True, "pid": os.getpid()}


class FailsAfterFirstStart:
    """Starts once; every re-initialisation after a crash fails (a model file that vanished)."""

    def __init__(self):
        marker = os.environ["CRASH_MARKER"]
        if os.path.exists(marker):
            raise RuntimeError("model file vanished")
        open(marker, "w").close()

    def process(self, payload):
        os._exit(1)
