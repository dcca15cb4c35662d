"""Class handlers for loading and state tests."""
import os
import sys
import time


class Counter:
    def __init__(self, start: int = 0):
        self.count = start

    def process(self, payload):
        self.count += 1
        return {"count": self.count}


class NoInit:
    def process(self, payload):
        return {"no_init": True}


class VarArgs:
    def __init__(self, *args, **kwargs):
        self.args = args

    def process(self, payload):
        return {"args": list(self.args)}


class NeedsArg:
    def __init__(self, model_path: str):
        self.model_path = model_path

    def process(self, payload):
        return payload


class KeywordOnly:
    def __init__(self, *, threshold):
        self.threshold = threshold

    def process(self, payload):
        return payload


class InitRaises:
    def __init__(self):
        raise RuntimeError("model file /models/x.bin not found")

    def process(self, payload):
        return payload


class SlowInit:
    def __init__(self):
        seconds = os.environ.get("SLOW_INIT_SECONDS", "2")
        sys.stderr.write("__init__ for %s s\n" % seconds)  # the tests' sign that the model is loading
        sys.stderr.flush()
        time.sleep(float(seconds))
        self.pid = os.getpid()

    def process(self, payload):
        return {"pid": self.pid}


class AttrNotCallable:
    process = 5


def not_a_class():
    return None
