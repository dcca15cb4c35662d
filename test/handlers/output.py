"""Handlers for test/handler-output.test.ts: what a handler writes, and the log records it becomes."""
import logging
import os
import sys
import threading
import traceback
import warnings

# A handler of its own on a logger of its own, in the format basicConfig gives (the root stays the runtime's).
configured = logging.getLogger("configured")
_own = logging.StreamHandler()  # sys.stderr
_own.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
configured.addHandler(_own)
configured.propagate = False
plain = logging.getLogger("plain")


def _chained():
    try:
        {}["missing"]
    except KeyError:
        raise ValueError("bad value")


def write(payload):
    what = payload["what"]
    if what == "print_exc":
        try:
            _chained()
        except ValueError:
            traceback.print_exc()
    elif what == "print_stack":
        traceback.print_stack(limit=1)
    elif what == "exception_default":
        try:
            _chained()
        except ValueError:
            plain.exception("it failed")
    elif what == "exception_configured":
        try:
            _chained()
        except ValueError:
            configured.exception("it failed")
    elif what == "warn":
        warnings.warn("the old api", UserWarning)
    elif what == "prints":
        print("two\nlines")
        print("one line")
        sys.stdout.write("begun ")
        sys.stdout.write("and ended\nthen two\nmore\n")
    elif what == "held":
        print("held\nunended", end="")
        return {}
    elif what == "open":
        sys.stdout.write("a line left open by %s" % payload.get("n"))
        return {}
    elif what == "native":
        os.write(1, b"native one\nnative two\n")
    elif what == "thread":
        thread = threading.Thread(target=_chained, name="background")
        thread.start()
        thread.join()
    print("done %s" % what)
    return {}
