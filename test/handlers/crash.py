"""Handlers that take the interpreter down."""
import ctypes
import os


def exit_hard(payload):
    os._exit(17)


def segfault(payload):
    ctypes.string_at(0)


def ok(payload):
    return {"ok": True, "pid": os.getpid()}


def maybe_crash(payload):
    if payload.get("crash"):
        os._exit(1)
    return {"ok": True, "pid": os.getpid()}
