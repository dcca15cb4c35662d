"""Handlers for the worker pool tests (ASYA_WORKERS)."""
import os
import sys
import time


def say(line):
    """A line on stderr, which the runtime logs: the test's sign that the call is running."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def work(payload):
    """Sleep, or exit the process at once; says which process ran it and when."""
    started = time.time()
    if payload.get("crash"):
        os._exit(1)
    say("work %s started" % payload.get("n"))
    time.sleep(payload.get("sleep", 0))
    return {"pid": os.getpid(), "n": payload.get("n"), "start": started, "end": time.time()}


class SlowInit:
    """A model that takes POOL_INIT_SECONDS to load; close() leaves a mark per process."""

    def __init__(self):
        time.sleep(float(os.environ.get("POOL_INIT_SECONDS", "3")))

    def process(self, payload):
        say("process %s started" % payload.get("n"))
        time.sleep(payload.get("sleep", 0))
        return {"pid": os.getpid(), "n": payload.get("n")}

    def close(self):
        marks = os.environ.get("POOL_CLOSE_MARKS")
        if marks:
            with open(marks, "a") as f:
                f.write("closed %d\n" % os.getpid())


class OnlyOneFits:
    """Loads in the first process only, as a second copy of a large model would not fit on the GPU."""

    def __init__(self):
        try:
            os.close(os.open(os.environ["POOL_SLOT_FILE"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            time.sleep(0.3)
            raise RuntimeError("CUDA out of memory (pretend)")

    def process(self, payload):
        return {"pid": os.getpid()}
