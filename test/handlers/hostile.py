"""Handlers whose exceptions do their worst, for the hostile-input tests."""
import os


def pid(payload):
    return {"pid": os.getpid()}


def keyboard_interrupt(payload):
    raise KeyboardInterrupt("stop")


def system_exit(payload):
    raise SystemExit(3)


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("__str__ exploded")

    def __repr__(self):
        raise RuntimeError("__repr__ exploded")


def bad_str(payload):
    raise BadStr()


class StrNotAString(Exception):
    def __str__(self):
        return 42


def str_not_a_string(payload):
    raise StrNotAString()


class BadTraceback(Exception):
    @property
    def __traceback__(self):
        raise RuntimeError("no traceback for you")


def bad_traceback(payload):
    raise BadTraceback("x")


class Cyclic(Exception):
    pass


def cyclic_cause(payload):
    a, b = Cyclic("a"), Cyclic("b")
    a.__cause__, b.__cause__ = b, a
    raise a


class BaseExit(BaseException):
    def __str__(self):
        raise KeyboardInterrupt("even str raises a BaseException")


def base_exit(payload):
    raise BaseExit()
