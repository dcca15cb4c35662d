"""Handlers for test/keep-loaded.test.ts: time limits, recycling, async, generators, constructor args, close()."""
import asyncio
import os
import sys
import time

MARKS = os.environ.get("KEEP_MARKS", "")  # a file each close() and finally appends a line to


def mark(text):
    if MARKS:
        with open(MARKS, "a") as f:
            f.write("%s %d\n" % (text, os.getpid()))


class Slow:
    """One instance; `sleep` overruns, `stubborn` swallows the interruption and keeps going."""

    def __init__(self):
        self.calls = 0

    def process(self, payload):
        self.calls += 1
        try:
            if payload.get("stubborn"):
                deadline = time.monotonic() + payload["stubborn"]
                while time.monotonic() < deadline:
                    try:
                        time.sleep(0.05)
                    except BaseException:
                        pass  # a handler that catches everything: only the hard stage ends it
            time.sleep(payload.get("s", 0))
        finally:
            mark("finally")
        return {"pid": os.getpid(), "instance": id(self), "calls": self.calls}


class AsyncQueue:
    """An asyncio.Queue made in __init__ (outside any running loop) must work on every message."""

    def __init__(self):
        self.queue = asyncio.Queue()
        self.loops = set()

    async def process(self, payload):
        self.loops.add(id(asyncio.get_event_loop()))
        await self.queue.put(payload.get("n", 0))
        try:
            await asyncio.sleep(payload.get("s", 0))
        finally:
            mark("async-finally")
        return {"got": await self.queue.get(), "loops": len(self.loops), "pid": os.getpid()}


async def async_function(payload):
    await asyncio.sleep(0)
    return {"async": True, "python": "%d.%d" % sys.version_info[:2]}


def sync_generator(payload):
    for i in range(payload["n"]):
        yield {"i": i}


async def async_generator(payload):
    for i in range(payload["n"]):
        await asyncio.sleep(0.001 * (payload["n"] - i))  # later items are quicker: order must hold anyway
        yield {"i": i}


class WithArgs:
    def __init__(self, model_path, threshold=0.5, *, labels=("a",)):
        self.config = {"model_path": model_path, "threshold": threshold, "labels": list(labels)}

    def process(self, payload):
        return self.config


class Closable:
    def __init__(self):
        self.pid = os.getpid()

    def process(self, payload):
        if payload.get("memory_error"):
            raise MemoryError("pretend the allocator failed")
        if payload.get("grow"):
            self.ballast = bytearray(payload["grow"])  # resident: bytearray() zero-fills
        return {"pid": os.getpid()}

    def close(self):
        mark("close")
        if os.environ.get("KEEP_CLOSE_RAISES"):
            raise RuntimeError("the model would not let go")


def two_arguments(payload, extra):
    return payload
