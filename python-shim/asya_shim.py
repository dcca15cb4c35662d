"""Asya runtime shim: the small Python process that runs your handler.

The Asya supervisor (a Node.js program) owns the Unix socket the sidecar talks to.
It starts this file with your image's Python and exchanges messages with it over
stdin/stdout. For every message this file:

  1. decodes the JSON payload (or the whole envelope in envelope mode),
  2. calls your function or method with it,
  3. encodes what you returned as JSON and hands it back.

Everything else (the socket, validation, routing, logs, restarts) happens in the
supervisor. This file uses only the standard library and runs on Python 3.7+.

Anything your code prints (print, os.write(1, ...), C printf) goes to the logs,
never into the channel: the channel's file descriptors are moved aside first.

On Linux the process the supervisor starts splits in two before loading your code: a
small "reaper" that adopts and reaps every process your handler leaves behind, and
kills all of them when the shim ends or the supervisor goes away.

The file reads in that order: loading your handler, calling it (its context, generators,
coroutines, time limits), your logging and the main loop. Then comes the plumbing, each part
kept in a source file of its own under python-shim/src/ and joined into this one: your output
(sys.stdout and sys.stderr as log records), JSON, the reaper, the template (ASYA_PRELOAD), the
channel and its MessagePack codec.
"""

import time

STARTED = time.time()  # the first thing the shim does: the runtime's startup log line shows when it ran

import gc
import importlib
import importlib.util
import inspect
import json
import math
import os
import select
import signal
import struct
import sys
import traceback
import types

MIN_PYTHON = (3, 7)


# -------------------------------------------------------- handler loading ---

class LoadError(Exception):
    """The handler cannot be loaded; the message says why, in the user's terms."""

    kind = "LoadError"


def import_module_prefix(spec):
    """Import the longest importable prefix of `spec`; return (module, rest)."""
    parts = spec.split(".")
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        except Exception as exc:
            raise LoadError("importing a parent package of %r raised %s: %s"
                            % (name, type(exc).__name__, exc))
        if found is None:
            continue
        try:
            return importlib.import_module(name), parts[i:]
        except Exception as exc:
            raise LoadError("importing module %r raised %s: %s" % (name, type(exc).__name__, exc))
    tried = ", ".join(repr(".".join(parts[:i])) for i in range(len(parts) - 1, 0, -1))
    raise LoadError("no module found for handler %r: tried %s on sys.path %s "
                    "(set PYTHONPATH to the directory that holds your module)"
                    % (spec, tried, [p for p in sys.path if p]))


def handler_module_file(spec):
    """The file of the module the handler was loaded from (for `asya-runtime call --watch`) and the
    import path entry it was found in (the file's directory above the module's packages), or Nones."""
    parts = spec.split(".")
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        module = sys.modules.get(name)
        if module is not None:
            found = getattr(module, "__file__", None)
            if not isinstance(found, str):
                return None, None
            found = os.path.abspath(found)
            root = os.path.dirname(found)
            # a.b.c is a/b/c.py or a/b/c/__init__.py below the entry, namespace packages included
            for _ in range(name.count(".") + (os.path.basename(found).startswith("__init__.") and 1 or 0)):
                root = os.path.dirname(root)
            return found, root
    return None, None


def instantiate(cls, where, kwargs):
    """Create the class once, with ASYA_HANDLER_ARGS as keyword arguments (none when unset)."""
    init = cls.__init__
    if init is object.__init__:
        if kwargs:
            raise LoadError("ASYA_HANDLER_ARGS gives %s, but %s has no __init__ of its own to take them"
                            % (", ".join(sorted(kwargs)), where))
    else:
        try:
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):  # a C-level __init__: let the call itself say what is wrong
            params = []
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
        named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(k for k in kwargs if k not in named) if not takes_any else []
        if unknown:
            raise LoadError("ASYA_HANDLER_ARGS gives %s, which %s.__init__() does not take (its parameters: %s)"
                            % (", ".join(unknown), where, ", ".join(named) or "none"))
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
                continue
            if p.name in kwargs and p.kind != p.POSITIONAL_ONLY:
                continue
            raise LoadError("%s.__init__() parameter %r has no default value: the runtime creates the class "
                            "with the keyword arguments of ASYA_HANDLER_ARGS (%s), so every other parameter "
                            "needs a default; add %r to ASYA_HANDLER_ARGS or give it a default"
                            % (where, p.name, ", ".join(sorted(kwargs)) or "unset", p.name))
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise LoadError("%s() raised %s: %s" % (where, type(exc).__name__, exc))


def did_you_mean(name, owner):
    """': did you mean 'process'?' when `owner` has names close to `name` (difflib: the same on 3.7-3.13)."""
    import difflib  # only for this message: 3-4 ms of every start otherwise
    names = [n for n in _safe_dir(owner) if not n.startswith("__")]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:
        return ""
    return ": did you mean %s?" % " or ".join(repr(n) for n in close)


def _safe_dir(owner):
    try:
        return [n for n in dir(owner) if isinstance(n, str)]
    except Exception:
        return []


def describe_callable(target, is_method):
    """What `check` and the ready log call the handler: 'async generator method', 'function', ..."""
    probe = target
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        probe = getattr(target, "__call__", target)  # a callable object: its __call__ decides
    if inspect.isasyncgenfunction(probe):
        kind = "async generator "
    elif inspect.iscoroutinefunction(probe):
        kind = "async "
    elif inspect.isgeneratorfunction(probe):
        kind = "generator "
    else:
        kind = ""
    if is_method:
        noun = "method"
    elif inspect.isfunction(target) or inspect.isbuiltin(target):
        noun = "function"
    else:
        noun = "callable object"
    return kind + noun


def check_one_argument(target, where):
    """The runtime calls the handler with one positional argument, and `context=` when it has a
    parameter of that name; refuse one that cannot take them. Returns whether it takes `context`."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return False  # no signature to read (some builtins): the first call will tell
    param = signature.parameters.get("context")
    takes_context = param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    try:
        if takes_context:
            signature.bind(None, context=None)
        else:
            signature.bind(None)
    except TypeError as exc:
        raise LoadError("%s%s cannot be called with one argument (the payload or envelope)%s: %s"
                        % (where, signature, " and context=" if takes_context else "", exc))
    return takes_context


def load_handler(spec, kwargs=None):
    """Import and create the handler. Returns (callable, 'function' or 'class', description, instance)."""
    module, rest = import_module_prefix(spec)
    where = module.__name__
    if len(rest) > 2:
        raise LoadError("%r: after module %r expected 'function' or 'Class.method', got %r"
                        % (spec, where, ".".join(rest)))
    target = module
    for name in rest[:1]:
        if not hasattr(target, name):
            raise LoadError("module %r has no attribute %r%s" % (where, name, did_you_mean(name, target)))
        target = getattr(target, name)
        where = "%s.%s" % (where, name)
    if len(rest) == 1:
        if inspect.isclass(target):
            raise LoadError("%s is a class: name one of its methods, e.g. %s.process" % (where, where))
        if not callable(target):
            raise LoadError("%s is not callable (it is a %s)" % (where, type(target).__name__))
        if kwargs is not None:
            raise LoadError("ASYA_HANDLER_ARGS is set, but %s is a function: constructor arguments are for a "
                            "class handler (module.Class.method); unset it" % where)
        LOADED.context = check_one_argument(target, where)
        return target, "function", describe_callable(target, False), None
    if not inspect.isclass(target):
        raise LoadError("%s is not a class (it is a %s), so %r cannot be its method"
                        % (where, type(target).__name__, rest[1]))
    instance = instantiate(target, where, kwargs or {})
    method = getattr(instance, rest[1], None)
    if method is None:
        raise LoadError("class %s has no method %r%s" % (where, rest[1], did_you_mean(rest[1], instance)))
    if not callable(method):
        raise LoadError("%s.%s is not callable" % (where, rest[1]))
    LOADED.context = check_one_argument(method, "%s.%s" % (where, rest[1]))
    return method, "class", describe_callable(method, True), instance


# ---------------------------------------------------------------- calling ---

def error_reply(kind, exc):
    """The reply for an exception, whatever its __str__, __repr__ or __traceback__ do."""
    name = _safe(lambda: type(exc).__name__, "BaseException")
    return {"t": kind, "type": name,
            "message": _safe(lambda: str(exc), "<%s: str() failed>" % name),
            "traceback": _safe(lambda: format_user_exception(exc),
                               "<the traceback of %s could not be formatted>" % name)}


def _own_frame(frame):
    # The shim's frames (this file, or "<string>" when the single executable runs it with -c) and
    # the import machinery's say nothing about the user's code.
    return frame.filename == SHIM_FILE or frame.filename.startswith("<frozen importlib")


def format_user_exception(exc):
    """The traceback as Python prints it, with only the user's frames (chained exceptions too)."""
    return "".join(_user_traceback(exc)[0].format())


def _user_traceback(exc):
    """`exc`'s TracebackException with only the user's frames, and those frames, the chain's included."""
    top = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    todo, seen, frames = [top], set(), []
    while todo:
        te = todo.pop()
        if te is None or id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _own_frame(f)])
        frames.extend(te.stack)
        todo.extend((te.__cause__, te.__context__))
        todo.extend(getattr(te, "exceptions", None) or ())  # exception groups, 3.11+
    return top, frames


def unencodable_reply(result, exc):
    """The handler returned something JSON cannot hold: say what, and where in the result."""
    name = _safe(lambda: type(exc).__name__, "TypeError")
    detail = _safe(lambda: str(exc), name)
    found = _safe(lambda: find_unencodable(result), None)
    where = ("%s (%s)" % (found, detail)) if found else detail
    return {"t": "enc", "type": name, "traceback": _encoding_traceback(exc),
            "message": "the handler's result cannot be encoded as JSON: " + where}


def encoding_raised_reply(exc):
    """The handler's own code raised while its result was encoded (a tolist(), an item(), a __iter__)."""
    reply = error_reply("err", exc)
    reply["message"] = "the handler's result cannot be encoded as JSON: encoding it raised %s: %s" % (
        reply["type"], reply["message"])
    return reply


_JSON_DIR = os.path.dirname(json.__file__)


def _encoding_traceback(exc):
    # Where the encoder alone refused a value, its own frames say nothing; where the handler's code ran
    # during the encoding (a tolist() that raised TypeError, which orjson reports as the cause of its
    # own error), that code's frames say where.
    try:
        top, frames = _user_traceback(exc)
        if any(os.path.dirname(f.filename) != _JSON_DIR for f in frames):
            return "".join(top.format())
    except BaseException:  # the handler's exception runs its own code when formatted
        pass
    return ""


_JSON_KEYS = (str, int, float, bool)


def find_unencodable(result):
    """`result["when"]: datetime`: the first value the encoder refuses, and its path; None if none found."""
    return _find_unencodable(result, "result", set())


def _item_key(key):
    """A numpy integer or bool key: written as the int or bool its .item() gives (json_codec)."""
    try:
        return isinstance(key.item(), _JSON_KEYS)
    except Exception:
        return False


def _find_unencodable(value, path, ancestors):
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    if not isinstance(value, (dict, list, tuple)):
        if callable(getattr(value, "tolist", None)):
            return _find_unencodable(value.tolist(), path, ancestors)
        return "%s: %s" % (path, type(value).__name__)
    if id(value) in ancestors:
        return "%s: a circular reference (it contains itself)" % path
    ancestors.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, _JSON_KEYS) and not _item_key(key):
                return "%s: a key of type %s (%s)" % (path, type(key).__name__, _safe(lambda: repr(key)[:80], "?"))
            where = "%s[%s]" % (path, json.dumps(key) if isinstance(key, str) else repr(key))
            found = _find_unencodable(item, where, ancestors)
            if found:
                return found
    else:
        for i, item in enumerate(value):
            found = _find_unencodable(item, "%s[%d]" % (path, i), ancestors)
            if found:
                return found
    ancestors.discard(id(value))
    return None


def _safe(produce, fallback):
    # A handler's exception object runs its own code in str() and in traceback formatting; none
    # of it may take the shim down.
    try:
        text = produce()
        if isinstance(text, str):
            return text
    except BaseException:
        pass
    return fallback


def as_list(result):
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return result
    return [result]


def encode_envelopes(items):
    # Payload and the rest travel apart so the supervisor can check the route
    # without ever parsing the (possibly large) payload.
    out = []
    for item in items:
        if isinstance(item, dict):
            meta = {k: v for k, v in item.items() if k != "payload"}
            payload = encode_json(item["payload"]) if "payload" in item else None
            out.append([encode_json(meta), payload])
        else:
            out.append([encode_json(item), None])
    return out


def handle_call(handler, envelope_mode, msg):
    call = CALL
    call.seq += 1  # counted for every call message, as the supervisor counts them
    try:
        # The supervisor marks payloads with integers beyond 64 bits, which orjson would turn into
        # floats; the rest of the envelope is small and always read by the stdlib.
        field = "payload"
        arg = (decode_json_exact if msg.get("w") else decode_json)(msg["p"])
        if "m" in msg:
            field = "envelope"
            envelope = decode_json_exact(msg["m"])
            envelope["payload"] = arg  # the payload's own place: the supervisor left null there
            arg = envelope
    except (ValueError, RecursionError) as exc:
        return dict(error_reply("bad", exc), field=field)
    except BaseException as exc:  # MemoryError on a huge payload: an answer, not a dead process
        return error_reply("err", exc)
    context = oom_reply = None
    if LOADED.context:
        try:
            context = call_context(msg, arg if field == "envelope" else None)
        except (ValueError, RecursionError) as exc:
            return dict(error_reply("bad", exc), field="envelope")
    try:
        # Only between these two stores may the time limit interrupt: the handler's own code, its
        # generator's items and its coroutine, never the shim's decoding or encoding.
        call.interrupted = False
        call.context = context
        call.cancels = set(n for n in call.cancels if n >= call.seq)
        if context is not None and call.seq in call.cancels:
            context.cancel()  # its client left before it started
        call.active = True
        try:
            result = handler(arg) if context is None else handler(arg, context=context)
            resolve = RESOLVERS.get(type(result))
            if resolve is not None:
                result = resolve(result)
        finally:
            call.active = False
            call.context = None
            if DEBUG.session is not None:
                close_debugger()
        if call.interrupted:
            return timeout_reply(None)
    except BaseException as exc:
        # Whatever a handler raises (SystemExit, KeyboardInterrupt, GeneratorExit included) is its
        # answer for this message; the process and the loaded model stay.
        if call.interrupted:
            return timeout_reply(exc)
        reply = error_reply("err", exc)
        if DEBUG.quit and reply["type"] == "BdbQuit":  # q in the debugger: pdb raised BdbQuit in the handler
            DEBUG.quit = False
            reply["message"] = "quit in the debugger (q): the call ended there"
        if not is_cuda_oom(exc):
            return reply
        # The frames of the failed call still hold its tensors: clear them, then (out of this block,
        # where the exception is no longer alive) collect and return the cache to the GPU.
        _safe(lambda: traceback.clear_frames(exc.__traceback__), "")
        oom_reply = reply
    if oom_reply is not None:
        release_after_oom()
        return oom_reply
    try:
        items = as_list(result)
        if envelope_mode:
            return {"t": "env", "o": encode_envelopes(items)}
        return {"t": "ok", "o": [encode_json(item) for item in items]}
    except (TypeError, ValueError) as exc:  # what json's encoder raises: unknown type, bad key, cycle
        return unencodable_reply(result, exc)
    except BaseException as exc:
        return encoding_raised_reply(exc)


SHIM_FILE = handle_call.__code__.co_filename


# ---------------------------------------------------------------- context ---
# A handler with a parameter named `context` gets one per call: what the message is, how long it has,
# whether anyone still waits for its answer, its own logger and metrics. Every other handler is called
# without one and pays nothing for it.

class Context(object):
    """The message a handler is working on. Constructible in a test: Context(id="t-1", deadline=time.time() + 5)."""

    def __init__(self, id=None, route=None, headers=None, deadline=None, log=None, metrics=None):
        self.id = id
        self.route = dict(route) if isinstance(route, dict) else {}
        self.headers = dict(headers) if isinstance(headers, dict) else {}
        self.deadline = deadline  # seconds since the epoch, or None
        self.log = log if log is not None else handler_logger()
        self.metrics = metrics if metrics is not None else Metrics()
        self._cancelled = False

    def remaining(self):
        """Seconds left until `deadline` (negative once past), or None without one."""
        return None if self.deadline is None else self.deadline - time.time()

    def cancelled(self):
        """True once nobody waits for the answer: the client left, or the deadline passed."""
        return self._cancelled or (self.deadline is not None and time.time() >= self.deadline)

    def cancel(self):
        """What the runtime does when the client leaves (and what a test may do)."""
        self._cancelled = True


class LoadedState(object):
    __slots__ = ("context",)

    def __init__(self):
        self.context = False  # the handler takes `context`


LOADED = LoadedState()


def call_context(msg, envelope):
    """The call's Context. The envelope the handler itself receives (envelope mode, ASYA_INCLUDE_METADATA)
    is copied from, so neither sees the other's changes; otherwise the metadata is decoded for it alone."""
    if envelope is not None:
        meta = {key: copy_json(envelope.get(key)) for key in ("id", "route", "headers")}
    else:
        raw = msg.get("m", msg.get("e"))
        meta = decode_json_exact(raw) if raw is not None else {}
    deadline = msg.get("d")
    if CALL.timeout is not None:
        limit = time.time() + CALL.timeout
        deadline = limit if deadline is None else min(deadline, limit)
    return Context(id=meta.get("id"), route=meta.get("route"), headers=meta.get("headers"),
                   deadline=deadline, log=handler_logger(), metrics=METRICS)


def copy_json(value):
    import copy
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


_LOGGER = []


def handler_logger():
    """`context.log`: the logger "asya.handler", whose records carry the message's id (record.asya_id)."""
    if not _LOGGER:
        import logging

        class MessageId(logging.Filter):
            def filter(self, record):
                context = CALL.context
                record.asya_id = getattr(context, "id", None)
                return True

        logger = logging.getLogger("asya.handler")
        logger.addFilter(MessageId())
        _LOGGER.append(logger)
    return _LOGGER[0]


class Metrics(object):
    """`context.metrics`: counters, gauges and histograms served at /metrics as asya_handler_<name>.

    Each call is checked as Prometheus would check it, so a bad name is an error in the handler that
    made it; `recorded` holds what is not yet sent (a test reads it).
    """

    _NAME = None

    def __init__(self):
        self.recorded = []
        self.kinds = {}  # name -> (kind, label names)
        self.series = {}  # what /metrics shows -> the name that has it

    def inc(self, name, value=1, **labels):
        self._record("counter", name, value, labels)

    def set(self, name, value, **labels):
        self._record("gauge", name, value, labels)

    def observe(self, name, value, **labels):
        self._record("histogram", name, value, labels)

    def _record(self, kind, name, value, labels):
        import re
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            raise ValueError("metric name %r is not valid in Prometheus: letters, digits, _ and :, not starting "
                             "with a digit" % (name,))
        for label in labels:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label) or label.startswith("__"):
                raise ValueError("label name %r of metric %r is not valid in Prometheus: letters, digits and _, "
                                 "not starting with a digit or __" % (label, name))
            if kind == "histogram" and label == "le":
                raise ValueError("label name 'le' of histogram %r is reserved by Prometheus" % name)
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an int beyond any float
            finite = False
        if not finite:
            raise ValueError("metric %r: the value must be a finite number, got %.80r" % (name, value))
        if kind == "counter" and value < 0:
            raise ValueError("counter %r can only go up: inc() by %r" % (name, value))
        names = tuple(sorted(labels))
        known = self.kinds.get(name)
        if known is None:
            self._claim(kind, name, names)
        elif known != (kind, names):
            raise ValueError("metric %r is a %s with labels (%s); it cannot also be a %s with labels (%s)"
                             % (name, known[0], ", ".join(known[1]), kind, ", ".join(names)))
        self.recorded.append([kind, name, float(value), [[k, str(labels[k])] for k in names]])

    def _claim(self, kind, name, labels):
        """Register `name`, unless a series it would be served as is another metric's already."""
        for series in self.served_as(kind, name):
            owner = self.series.get(series)
            if owner is not None and owner != name:
                raise ValueError("metric %r would be served as %s, which metric %r is already (%s)"
                                 % (name, "asya_handler_" + series, owner, self.kinds[owner][0]))
        self.kinds[name] = (kind, labels)
        for series in self.served_as(kind, name):
            self.series[series] = name

    @staticmethod
    def served_as(kind, name):
        """The series names /metrics shows for it (without asya_handler_), as the supervisor names them."""
        if kind == "counter":
            return [(name[:-6] if name.endswith("_total") else name) + "_total"]
        if kind == "histogram":
            return [name, name + "_bucket", name + "_sum", name + "_count"]
        return [name]

    def drain(self):
        taken, self.recorded = self.recorded, []
        return taken


METRICS = Metrics()


def is_cuda_oom(exc):
    """torch.cuda.OutOfMemoryError or a RuntimeError saying "CUDA out of memory", also as the cause or
    context of what the handler raised (an OOM wrapped in an error of its own)."""
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < 20:
        seen.add(id(exc))
        name = _safe(lambda: type(exc).__name__, "")
        if name == "OutOfMemoryError" and "torch" in _safe(lambda: type(exc).__module__, ""):
            return True
        if isinstance(exc, RuntimeError) and _safe(lambda: str(exc), "").startswith("CUDA out of memory"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def release_after_oom():
    """After a CUDA out-of-memory error: let go of what the failed call held before the next message."""
    for name in ("last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None:
            torch.cuda.empty_cache()
    except Exception:
        pass


# ------------------------------------------------- generators, coroutines ---
# A handler's result is resolved before it is encoded: a generator's items (sync or async) are the
# fan-out outputs in order; a coroutine is run to its result. Every coroutine runs on one event
# loop that lives as long as the process, so what a handler binds to it (an async HTTP client, an
# asyncio.Queue made in __init__) keeps working from one message to the next.

def event_loop():
    loop = CALL.loop
    if loop is None:
        import asyncio
        import warnings
        # The loop that asyncio.get_event_loop() hands out in the main thread is the one objects made
        # at import or in __init__ bound themselves to on Python 3.7-3.9: keep it when there is one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                loop = None
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        CALL.loop = loop
    return loop


def run_coroutine(awaitable):
    loop = event_loop()
    task = loop.create_task(_interruptible(awaitable))
    CALL.task = task  # the time limit cancels it, so the handler's `finally` and `async with` run
    if CALL.context is not None and CALL.context._cancelled:
        task.cancel()  # its client left before the coroutine started
    try:
        return loop.run_until_complete(task)
    finally:
        CALL.task = None


def collect_async(agen):
    return run_coroutine(_collect(agen))


async def _collect(agen):
    return [item async for item in agen]


async def _interruptible(awaitable):
    import asyncio
    try:
        return await awaitable
    except asyncio.CancelledError as exc:
        if not CALL.interrupted:
            raise
        # The cancellation's traceback runs through the handler's await: where it was.
        raise HandlerTimeout(timeout_message()).with_traceback(exc.__traceback__) from None


RESOLVERS = {types.GeneratorType: list, types.CoroutineType: run_coroutine,
             types.AsyncGeneratorType: collect_async}


# ------------------------------------------------------------ time limits ---
# Two stages. At ASYA_HANDLER_TIMEOUT the supervisor writes the call's number to the reaper (over
# the lifeline), which puts it on this process's control pipe and sends INTERRUPT_SIGNAL. The
# signal handler raises HandlerTimeout in the main thread (or cancels the handler's task) only if
# that very call is still running: a signal that arrives late finds another number, or no call,
# and does nothing. A handler still running ASYA_HANDLER_KILL_GRACE seconds later (stuck in a C
# call that holds the GIL, or swallowing the exception) is killed with its process by the
# supervisor (the hard stage).

INTERRUPT_SIGNAL = signal.SIGUSR2


class HandlerTimeout(TimeoutError):
    """Raised inside a handler that ran longer than ASYA_HANDLER_TIMEOUT.

    A TimeoutError, so `finally` blocks, context managers and `except TimeoutError` see it; the
    process and the loaded model stay for the next message.
    """


class CallState(object):
    __slots__ = ("seq", "active", "interrupted", "where", "task", "loop", "timeout", "control", "context", "cancels")

    def __init__(self):
        self.seq = 0              # number of the current (or last) call, counted from 1
        self.active = False       # the handler's code is running
        self.interrupted = False  # the time limit hit the current call
        self.where = ""           # the stack when it did
        self.task = None          # the asyncio task of an async handler's call
        self.loop = None
        self.timeout = None       # seconds, for messages
        self.control = None       # read end of the control pipe (call numbers to interrupt or cancel)
        self.context = None       # the call's Context, when the handler takes one
        self.cancels = set()      # numbers of calls whose client left, this one's or the next


CALL = CallState()


def timeout_message():
    return "the handler ran longer than ASYA_HANDLER_TIMEOUT=%ss and was interrupted" % (CALL.timeout,)


def timeout_reply(exc):
    if exc is None:
        return {"t": "timeout", "type": "HandlerTimeout", "returned": True, "traceback": CALL.where,
                "message": timeout_message() + "; it returned afterwards, and its result was discarded"}
    reply = error_reply("timeout", exc)
    reply["returned"] = False
    return reply


def read_call_numbers(fd):
    data = read_available(fd)
    whole = len(data) // 4
    return struct.unpack(">%dI" % whole, data[:whole * 4])


CANCEL_BIT = 0x80000000  # on a call number: its client left (cancel), rather than its time is up


def on_interrupt(signum, frame):
    call = CALL
    targets = read_call_numbers(call.control)
    for number in targets:
        # A cancellation may arrive before its call has started here (still being read or decoded):
        # kept until that call's context exists (call_context), never applied to another call.
        if number & CANCEL_BIT and (number & ~CANCEL_BIT) >= call.seq:
            call.cancels.add(number & ~CANCEL_BIT)
    if call.context is not None and call.seq in call.cancels:
        cancel_call(call)
    if not call.active or call.interrupted or call.seq not in targets:
        return  # late, early or foreign: nothing of the handler's to interrupt
    call.interrupted = True
    call.where = _safe(lambda: "".join(traceback.format_stack(frame)), "")
    if call.task is not None:
        # The loop is waiting in select() or running the handler's step: cancel from the loop.
        call.loop.call_soon_threadsafe(call.task.cancel)
        return
    raise HandlerTimeout(timeout_message())


def cancel_call(call):
    """Its client left: context.cancelled() is True from now on, and an async handler is cancelled."""
    call.context.cancel()
    if call.task is not None:  # an async handler: CancelledError inside it
        call.loop.call_soon_threadsafe(call.task.cancel)


def arm_time_limit(control, timeout):
    """The control path: the time limit's interruptions and, for a handler with `context`, cancellations."""
    CALL.timeout = timeout
    if control is None or (timeout is None and not LOADED.context):
        return False
    os.set_blocking(control, False)
    CALL.control = control
    signal.signal(INTERRUPT_SIGNAL, on_interrupt)
    return True


def close_handler(instance):
    """Call the class handler's optional close() (async too) once; report how it went, never raise."""
    hook = getattr(instance, "close", None)
    if instance is None or not callable(hook):
        return None
    started = time.monotonic()
    try:
        result = hook()
        resolve = RESOLVERS.get(type(result))
        if resolve is not None:
            resolve(result)
        reply = {"t": "closed"}
    except BaseException as exc:
        reply = error_reply("closed", exc)
    reply["ms"] = round((time.monotonic() - started) * 1000)
    return reply


# ---------------------------------------------------------------- logging ---
# The handler's `logging` records reach the supervisor as structured lines on stderr: this mark,
# then one JSON object. The supervisor maps the level, adds the message's id and logs it.
#
# What the handler writes is one log record per line, except (the output section below does it):
#   - one write() of several lines to sys.stdout or sys.stderr is one record: print("a\nb"), a logging
#     handler's line with its traceback (basicConfig's), a thread's uncaught exception on 3.7;
#   - a traceback the traceback module prints (print_exc, print_exception, print_stack), or a thread's
#     uncaught exception, is one record;
#   - a warnings.warn() is one WARNING record of the logger "py.warnings", with category, filename, lineno.
# Writes to the descriptors themselves (os.write, C printf, sys.stderr.buffer) stay a record per line.

LOG_MARK = "\x1easya-log "
LOG_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
# The supervisor splits lines at 16 KiB: a record stays well under it.
LOG_MESSAGE_LIMIT = 6000
LOG_TRACEBACK_LIMIT = 8000


def setup_logging(level):
    """Records nobody handles go to the supervisor, at ASYA_LOG_LEVEL.

    Only Python's "last resort" is replaced and the root logger's level set: a module that
    configures logging itself (basicConfig, dictConfig, its own handlers and levels) at import or
    in __init__ keeps exactly its configuration, and its output reaches the logs as stderr lines.
    """
    import logging

    class SupervisorHandler(logging.Handler):
        def emit(self, record):
            try:
                exc = record.exc_info[1] if record.exc_info else None
                fields = {"l": record.levelno, "n": record.name, "m": record.getMessage()[:LOG_MESSAGE_LIMIT]}
                if getattr(record, "asya_id", None) is not None:
                    fields["i"] = record.asya_id  # context.log: the message's id, whenever the line is read
                if exc is not None:
                    fields["e"] = _safe(lambda: format_user_exception(exc), "")[-LOG_TRACEBACK_LIMIT:]
                send_record(fields)
            except Exception:
                self.handleError(record)

    root = logging.getLogger()
    if root.handlers:  # configured before us (sitecustomize): theirs stands
        return
    logging.lastResort = SupervisorHandler()
    root.setLevel(LOG_LEVELS.get(level, logging.INFO))


# -------------------------------------------------------------- main loop ---

def fatal(chan_out, reply):
    """The load failed: why, and in which interpreter (the FATAL line names it)."""
    message = {"t": "fatal"}  # "t" first: the supervisor checks every frame's head
    message.update(reply, t="fatal", python=sys.version.split()[0], executable=sys.executable)
    write_message(chan_out, message)


def main():
    lifeline = take_fd(LIFELINE_VARIABLE)
    fork_requests = take_fd(FORK_VARIABLE)
    control = None
    if sys.version_info >= MIN_PYTHON:
        # only the shim returns; the reaper exits with the shim's status
        control = start_reaper(lifeline, private=(fork_requests,))
    elif lifeline is not None:
        os.close(lifeline)
    chan_in, chan_out = claim_channel()
    if sys.version_info < MIN_PYTHON:
        fatal(chan_out, {"type": "UnsupportedPython", "traceback": "",
                         "message": "Python %s is too old: the runtime needs 3.7 or newer" % sys.version.split()[0]})
        return 3
    # The shim's own directory (or, run with -c by the single executable, the working directory)
    # is not part of the user's import path.
    here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else ""
    if sys.path and (sys.path[0] == here or (here and os.path.abspath(sys.path[0]) == here)):
        del sys.path[0]
    waiting = time.time()
    init = read_message(chan_in)
    if init is None:
        return 0
    got_init = time.time()
    started = time.monotonic()
    preload = bool(init.get("preload")) and fork_requests is not None
    if fork_requests is not None and not preload:
        os.close(fork_requests)
    if init.get("log_level"):
        setup_logging(init["log_level"])
    capture_output()
    install_debugger(init.get("terminal"), chan_out)
    try:
        # The codec first: a module of the user's in a directory `call` adds (a platform.py in the
        # current directory) must not shadow what orjson imports.
        codec = use_orjson(init.get("codec", "auto"))
        for path in reversed(init.get("path") or []):
            sys.path.insert(0, path)
        kwargs = json.loads(init["args"]) if init.get("args") is not None else None  # checked by the supervisor
        handler, kind, described, instance = load_handler(init["handler"], kwargs)
        if preload:
            refuse_cuda()
    except LoadError as exc:
        fatal(chan_out, {"type": exc.kind, "message": str(exc), "traceback": _cause_traceback(exc)})
        return 3
    except Exception as exc:
        fatal(chan_out, error_reply("fatal", exc))
        return 3
    flush_output()
    settle_heap()
    # At most 15 keys with the template's: the supervisor checks each frame's head as a fixmap.
    module_file, module_root = handler_module_file(init["handler"])
    ready = {"t": "ready", "kind": kind, "python": sys.version.split()[0], "codec": codec,
             "executable": sys.executable, "pid": os.getpid(),
             "load_ms": round((time.monotonic() - started) * 1000),
             "callable": described, "close": callable(getattr(instance, "close", None)),
             "interruptible": False, "context": LOADED.context,
             "module_file": module_file, "module_root": module_root,
             "startup": {"started": STARTED, "waiting": waiting, "init": got_init, "loaded": time.time()}}
    if preload:
        # The template: it never handles a message. serve_template() returns only in a worker forked
        # from it, with that worker's channel; the handler is already loaded there.
        write_message(chan_out, dict(ready, threads=template_threads(), close=False))  # close() is the workers'
        chan_in, chan_out, control, forked = serve_template(fork_requests, chan_in, chan_out, control)
        init = read_message(chan_in)
        if init is None:
            return 0
        ready.update(pid=os.getpid(), load_ms=round((time.monotonic() - forked) * 1000), forked=True)
    install_debugger(init.get("terminal"), chan_out)  # again: a fork's own terminal and channel (ASYA_PRELOAD)
    ready["interruptible"] = arm_time_limit(control, init.get("timeout"))
    write_message(chan_out, ready)
    envelope_mode = init.get("mode") == "envelope"
    metrics = bool(init.get("metrics"))  # served at /metrics: else checked, then dropped
    for name, (kind, labels) in (init.get("metric_kinds") or {}).items():
        _safe(lambda: METRICS._claim(kind, name, tuple(labels)) or "", "")  # what other processes registered
    while True:
        msg = read_message(chan_in)
        if msg is None:
            break
        reply = handle_call(handler, envelope_mode, msg)
        flush_output()
        if METRICS.recorded:
            taken = METRICS.drain()
            if metrics:
                reply["x"] = taken
        write_message(chan_out, reply)
    # The supervisor closed the channel on purpose (shutdown, recycling): let the model let go.
    closed = close_handler(instance)
    if closed is not None:
        try:
            write_message(chan_out, closed)
        except OSError:
            pass  # the supervisor no longer listens
    end_process(own_exit_functions=not preload)  # a fork's are the template's


def end_process(own_exit_functions):
    """How the shim ends once it has nothing more to do (its close() has run): the exit functions the
    handler registered (atexit, finalizers such as a TemporaryDirectory's) run when they are this
    process's own, never those a fork inherited from the template (as multiprocessing's forks do); then
    it exits at once, whatever threads the handler left running, daemon or not: nobody will stop them,
    and the pod's termination grace is not theirs to spend."""
    if own_exit_functions:
        import atexit
        _safe(lambda: atexit._run_exitfuncs() or "", "")
    for stream in (sys.stdout, sys.stderr):
        _safe(lambda: stream.flush() or "", "")
    os._exit(0)


def settle_heap():
    """Move everything loading created (modules, the model) out of the garbage collector's sight.

    A full collection walks every tracked object, and Python starts one, on a message's time,
    whenever enough objects have survived since the last: with a scikit-learn model loaded that
    walk took tens of milliseconds on the benchmark VM. Frozen objects are never walked again;
    what messages allocate is collected as usual.
    """
    gc.collect()
    if hasattr(gc, "freeze"):  # 3.7+
        gc.freeze()


def _cause_traceback(exc):
    cause = exc.__context__
    if cause is None:
        return ""
    return _safe(lambda: format_user_exception(cause), "")


# ----------------------------------------------------------------- output ---
# What the handler writes becomes log records (the rule is in the logging section above): sys.stdout and
# sys.stderr are replaced by HandlerOutput, the same kind of stream on the same descriptors, which sends a
# write of several lines as one structured line (LOG_MARK, then {"o": text}) and everything else as it
# is. Tracebacks the traceback module prints, and a thread's uncaught exception, are written as one write;
# a warning is a structured record of its own.

import io

# The supervisor cuts lines longer than 16 KiB (UTF-16 units): a record that would be longer is written as
# its lines.
OUTPUT_LINE_LIMIT = 16000
# A write of several lines that does not end its last line waits for the write that does (print() writes
# its "\n" separately), up to this many characters.
OUTPUT_HOLD_LIMIT = 8000


class HandlerOutput(io.TextIOWrapper):
    """sys.stdout or sys.stderr for the handler: one record per write of several lines (see above)."""

    def __init__(self, stream):
        import threading
        io.TextIOWrapper.__init__(self, stream.buffer, encoding=stream.encoding, errors=stream.errors,
                                  newline="\n", line_buffering=stream.line_buffering, write_through=True)
        self._lock = threading.RLock()
        self._ident = threading.get_ident
        self._held = ""         # a write of several lines whose last line is not ended yet
        self._midline = False   # what went out as written ended inside a line
        self._groups = {}       # thread id -> [depth, texts]: what print_whole() is gathering
        # A fork (the handler's own, or a worker forked from the template) may happen while another
        # thread holds the lock: the child starts with a free one.
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self):
        import threading
        self._lock = threading.RLock()
        self._groups = {}

    def write(self, text):
        if not isinstance(text, str):
            return io.TextIOWrapper.write(self, text)  # the TypeError every text stream raises
        with self._lock:
            if self._groups:
                group = self._groups.get(self._ident())
                if group is not None:
                    group[1].append(text)
                    return len(text)
            self._emit(text)
        return len(text)

    def flush(self):
        with self._lock:
            if self._held:
                held, self._held = self._held, ""
                self._record(held)
        io.TextIOWrapper.flush(self)

    def end_line(self):
        """What is held goes out, and an open line is ended."""
        with self._lock:
            if self._held:
                held, self._held = self._held, ""
                self._record(held)
            if self._midline:
                self._raw("\n")

    def send_line(self, data):
        """A structured line (bytes, ending in a newline), after whatever line is still open is ended."""
        with self._lock:
            self.end_line()
            write_all(self.fileno(), data)

    def group(self, begin):
        """Gather this thread's writes (begin) or write them as one (not begin); nests."""
        ident = self._ident()
        with self._lock:
            group = self._groups.get(ident)
            if begin:
                if group is None:
                    self._groups[ident] = [1, []]
                else:
                    group[0] += 1
                return
            if group is None:
                return
            group[0] -= 1
            if group[0] == 0:
                del self._groups[ident]
                if group[1]:
                    self._emit("".join(group[1]))

    def _emit(self, text):
        text, self._held = self._held + text, ""
        if self._midline:
            # A line begun by an earlier write is finished as written; what follows it is judged alone.
            cut = text.find("\n") + 1
            if cut == 0:
                self._raw(text)
                return
            self._raw(text[:cut])
            text = text[cut:]
            if not text:
                return
        first = text.find("\n")
        if first == -1 or first == len(text) - 1:
            self._raw(text)  # one line, or a part of one: as written
        elif text.endswith("\n"):
            self._record(text[:-1])
        elif len(text) > OUTPUT_HOLD_LIMIT:
            self._record(text)
        else:
            self._held = text

    def _raw(self, text):
        io.TextIOWrapper.write(self, text)
        self._midline = not text.endswith("\n")

    def _record(self, text):
        line = LOG_MARK + json.dumps({"o": text}, ensure_ascii=False) + "\n"
        if len(line.encode("utf-16-le")) // 2 > OUTPUT_LINE_LIMIT:
            self._raw(text + "\n")  # too long for one line of the log: its lines, as written
            return
        if self._midline:
            self._raw("\n")
        write_all(self.fileno(), line.encode("utf-8", "replace"))


def write_all(fd, data):
    data = memoryview(data)
    while data:
        data = data[os.write(fd, data):]


def send_record(fields):
    """One structured record on stderr (a `logging` record, a warning): the supervisor logs it."""
    data = (LOG_MARK + json.dumps(fields, ensure_ascii=False) + "\n").encode("utf-8", "replace")
    stream = sys.stderr
    if isinstance(stream, HandlerOutput) and not stream.closed:
        stream.send_line(data)
    else:
        write_all(2, data)


def print_whole(function):
    """`function`, writing what it prints to sys.stdout and sys.stderr as one write each."""
    import functools

    @functools.wraps(function)
    def whole(*args, **kwargs):
        streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, HandlerOutput)]
        for stream in streams:
            stream.group(True)
        try:
            return function(*args, **kwargs)
        finally:
            for stream in streams:
                stream.group(False)
    return whole


def show_warning(message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning: a warning for sys.stderr is one WARNING record (a `file` of its own: as Python does)."""
    if file is not None and file is not sys.stderr:
        return SHOW_WARNING[0](message, category, filename, lineno, file, line)
    name = _safe(lambda: category.__name__, "Warning")
    text = "%s: %s" % (name, _safe(lambda: str(message), "<str() failed>"))
    send_record({"l": 30, "n": "py.warnings", "m": text[:LOG_MESSAGE_LIMIT],
                 "f": {"category": name, "filename": _safe(lambda: str(filename), "?"), "lineno": lineno}})


SHOW_WARNING = []  # Python's own showwarning, for a warning written to a file of the handler's


def capture_output():
    """Install the rule: HandlerOutput for sys.stdout and sys.stderr, whole tracebacks, warnings as records."""
    import threading
    import warnings
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, io.TextIOWrapper) and not isinstance(stream, HandlerOutput):
            setattr(sys, name, HandlerOutput(stream))
    traceback.print_exception = print_whole(traceback.print_exception)  # print_exc, print_last
    traceback.print_list = print_whole(traceback.print_list)  # print_tb, print_stack
    if hasattr(threading, "excepthook"):  # 3.8+; 3.7 prints a thread's traceback in one print()
        threading.excepthook = print_whole(threading.excepthook)
    SHOW_WARNING.append(warnings.showwarning)
    warnings.showwarning = show_warning


def flush_output():
    """The end of a call (or of the load): a write of several lines still waiting for its end goes as it
    is, and a line left open is ended, so it is logged with this call, not joined to the next one's."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, HandlerOutput) and (stream._held or stream._midline):
            _safe(lambda: stream.end_line() or "", "")


# --------------------------------------------------------------- debugger ---
# breakpoint() in a handler. Under `asya-runtime call` on a terminal (the supervisor names it in `init`)
# it opens pdb on that terminal, and the handler's time limit waits while pdb is open: the shim tells the
# supervisor on the channel ({"t": "debugger", "open": ...}) when it opens, and when it closes (c, q, or
# the end of the call). Anywhere else (the deployed runtime, `call` with stdin not a terminal)
# breakpoint() raises DebuggerUnavailable, which fails the message saying why, instead of pdb reading
# EOF from /dev/null (BdbQuit) or waiting for ever. PYTHONBREAKPOINT=0 makes breakpoint() do nothing;
# another PYTHONBREAKPOINT (ipdb.set_trace, ...) is called as Python would call it.


class DebuggerUnavailable(RuntimeError):
    """breakpoint() where no terminal is: the message fails with this."""


class DebugState(object):
    __slots__ = ("terminal", "channel", "main", "session", "open", "quit")

    def __init__(self):
        self.terminal = None  # the terminal's path (e.g. /dev/pts/3), or None: no debugger
        self.channel = None   # where the supervisor hears that the debugger opened or closed
        self.main = None      # the main thread's id: the only one that calls the handler
        self.session = None   # (pdb, terminal fd) while a breakpoint() of this call is being debugged
        self.open = False     # what the supervisor was last told
        self.quit = False     # the last session ended with q (pdb raises BdbQuit in the handler)


DEBUG = DebugState()


def on_breakpoint(*args, **kwargs):
    """sys.breakpointhook (see above)."""
    hook = os.environ.get("PYTHONBREAKPOINT", "")
    if hook == "0":
        return None
    if hook:
        return sys.__breakpointhook__(*args, **kwargs)
    if DEBUG.terminal is None:
        raise DebuggerUnavailable(
            "breakpoint() needs a terminal: run `asya-runtime call` on one (its stdin a terminal) to debug "
            "the handler; here there is none (the deployed runtime, or call with piped input). "
            "PYTHONBREAKPOINT=0 makes breakpoint() do nothing")
    import threading
    if threading.get_ident() != DEBUG.main:
        raise DebuggerUnavailable("breakpoint() in a thread of the handler's: the debugger opens in the "
                                  "handler's own call (the main thread) only")
    if DEBUG.session is None:
        DEBUG.session = open_debugger(DEBUG.terminal, kwargs.get("header"))
    DEBUG.session[0].set_trace(sys._getframe(1))


def open_debugger(terminal, header):
    import pdb
    try:
        fd = os.open(terminal, os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise DebuggerUnavailable("breakpoint(): cannot open the terminal %s: %s" % (terminal, exc))
    reader = io.open(fd, "r", encoding="utf-8", errors="replace", closefd=False)
    writer = io.open(fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)

    class TerminalPdb(pdb.Pdb):
        # Open from each stop until `c` or `q`: the time limit waits meanwhile, stepping included.
        def interaction(self, frame, tb):
            debugger_opened(True)
            pdb.Pdb.interaction(self, frame, tb)

        def set_continue(self):
            pdb.Pdb.set_continue(self)
            debugger_opened(False)

        def set_quit(self):
            pdb.Pdb.set_quit(self)
            debugger_opened(False)

    # The shim's frames (module __main__) are not stepped into: the call ends where the handler returns.
    debugger = TerminalPdb(stdin=reader, stdout=writer, skip=["__main__"], nosigint=True)
    if header is not None:
        writer.write("%s\n" % (header,))
    return debugger, fd, reader, writer


def debugger_opened(now_open):
    """Tell the supervisor, during a call (the main thread is in the handler: the channel is free)."""
    if DEBUG.open == now_open or DEBUG.channel is None or not CALL.active:
        return
    DEBUG.open = now_open
    write_message(DEBUG.channel, {"t": "debugger", "open": now_open})


def close_debugger():
    """The call ended: no more tracing, the terminal let go, the supervisor told."""
    debugger, fd, reader, writer = DEBUG.session
    DEBUG.session = None
    DEBUG.quit = bool(debugger.quitting)
    _safe(lambda: debugger.clear_all_breaks() or "", "")
    _safe(lambda: debugger.set_continue() or "", "")  # no breakpoints left: tracing off, frames untraced
    sys.settrace(None)
    for stream in (reader, writer):
        _safe(lambda: stream.close() or "", "")
    _safe(lambda: os.close(fd) or "", "")
    if DEBUG.open:
        DEBUG.open = False
        write_message(DEBUG.channel, {"t": "debugger", "open": False})


def install_debugger(terminal, channel):
    import threading
    DEBUG.terminal = terminal or None
    DEBUG.channel = channel
    DEBUG.main = threading.get_ident()
    sys.breakpointhook = on_breakpoint


# ------------------------------------------------------------------- JSON ---

def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _to_plain(obj):
    # numpy scalars and arrays (and anything else with tolist) become JSON numbers/lists
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_to_plain)


def _finite(obj):
    """Replace NaN and +-Infinity with None (JSON null), like JavaScript and orjson do."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if callable(getattr(obj, "tolist", None)) and not isinstance(obj, (str, bytes)):
        return _finite(obj.tolist())
    return obj


def decode_json_exact(data):
    """The stdlib decoder: what json.loads gives, the reference every other decoder must equal."""
    return _decoder.decode(str(data, "utf-8"))


decode_json = decode_json_exact  # use_orjson() may replace it with a faster equivalent


def encode_json(obj):
    try:
        text = _encoder.encode(obj)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        text = _encoder.encode(_finite(obj))
    except TypeError:
        # numpy integer and bool keys (dict(zip(clf.classes_, proba)), the scikit-learn idiom) are
        # written as int and bool keys are; anything else still fails as json fails.
        plain = _plain_keys(obj)
        if plain is obj:
            raise
        return encode_json(plain)
    return text.encode("utf-8")


_KEYS = (str, int, float, bool)


def _plain_keys(obj):
    """`obj` with every dict key that has .item() giving a JSON key type replaced by it; `obj` itself
    when there is none."""
    if isinstance(obj, dict):
        changed = False
        out = {}
        for key, value in obj.items():
            if key is not None and not isinstance(key, _KEYS):
                item = getattr(key, "item", None)
                plain = item() if callable(item) else key
                if plain is not key and isinstance(plain, _KEYS):
                    key, changed = plain, True
            new = _plain_keys(value)
            changed = changed or new is not value
            out[key] = new
        return out if changed else obj
    if isinstance(obj, (list, tuple)):
        items = [_plain_keys(v) for v in obj]
        return items if any(a is not b for a, b in zip(items, obj)) else obj
    return obj


MAX_ORJSON_DEPTH = 500  # well below the default recursion limit of 1000


def _nests_without_limit(orjson):
    deep = b"[" * 2000 + b"]" * 2000
    try:
        orjson.loads(deep)
    except orjson.JSONDecodeError:
        return False
    return True


def _has_brackets(data, limit):
    """Whether data holds at least `limit` of '[' and '{' together.

    find() stops at the limit and runs at memchr speed; count() scans everything, about 9 ms
    for a 10 MB payload, more than orjson takes to parse it.
    """
    found = 0
    for bracket in (b"[", b"{"):
        pos = data.find(bracket)
        while pos >= 0:
            found += 1
            if found >= limit:
                return True
            pos = data.find(bracket, pos + 1)
    return False


def use_orjson(choice):
    """Switch to orjson when asked ("orjson") or available ("auto"), keeping stdlib semantics.

    orjson is only trusted where its result equals the stdlib path's: anything it would treat
    differently (big ints, str/int/dict subclasses, dataclasses, datetimes) is handed back to the
    stdlib encoder, and any input it rejects is re-parsed by the stdlib decoder so errors read the
    same. NaN/Infinity become null in both.
    """
    global decode_json, encode_json
    if choice == "json":
        return "json"
    try:
        import orjson
    except ImportError:
        if choice == "orjson":
            raise LoadError("ASYA_JSON_CODEC=orjson but orjson is not installed for %s" % sys.executable)
        return "json"
    std_decode, std_encode = decode_json, encode_json
    # Without OPT_NON_STR_KEYS, a dict with a key that is not a str goes to the stdlib: orjson would
    # write 1e20 as "1e20" (stdlib "1e+20") and NaN as "null" (stdlib: an error).
    options = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_DATETIME)

    # orjson before 3.9 nests without limit where the stdlib stops at the recursion limit; on
    # those versions input that could nest that deep (bounded by its bracket count) goes to the
    # stdlib, so it is refused the same way.
    unbounded = _nests_without_limit(orjson)

    # The fallbacks run outside the except blocks so their errors carry no orjson context.
    def fast_decode(data):
        if unbounded:
            data = bytes(data)
            if _has_brackets(data, MAX_ORJSON_DEPTH):
                return std_decode(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        return std_decode(data)

    def fast_encode(obj):
        try:
            return orjson.dumps(obj, default=_to_plain, option=options)
        except TypeError:
            pass
        return std_encode(obj)

    decode_json, encode_json = fast_decode, fast_encode
    return "orjson " + orjson.__version__


# >>> porter
# ------------------------------------------------------------ process helpers, porter ---
# Plumbing: what the reaper and the template share, and the porter (ASYA_PRELOAD), which the supervisor
# starts with this section alone (from the first line above to the last below), so a worker forked from
# the template costs a Python start and a few hundred lines, not this whole file.
#
# The porter is a worker's process as the supervisor spawned it, when the worker is forked from the
# template (see the template section): it holds the worker's pipes (channel, stderr, handler stdout,
# lifeline), hands them to the template over the template's fork-request socket, lets go of the
# channel once the worker has it, and exits as the worker did (its reaper reports the wait status).

import array
import os
import select
import signal
import socket
import struct
import sys

LIFELINE_VARIABLE = "ASYA_SHIM_LIFELINE_FD"
FORK_VARIABLE = "ASYA_SHIM_FORK_FD"  # a possible template's end of its fork-request socket
TEMPLATE_VARIABLE = "ASYA_SHIM_TEMPLATE_FD"  # a porter's way to the template (ASYA_PRELOAD)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
# How a porter that forked no worker exits (the supervisor reads them, src/worker/template.ts).
TEMPLATE_GONE = 75  # the template's socket is closed: it died, or is being replaced
FORK_FAILED = 71  # the template could not fork (out of memory or processes)


def take_fd(variable):
    """A descriptor the supervisor passed and named in `variable`, or None."""
    value = os.environ.pop(variable, None)  # not for the handler's eyes
    try:
        fd = int(value)
        os.fstat(fd)
    except (TypeError, ValueError, OSError):
        return None
    return fd

def load_prctl():
    """prctl(2) through ctypes, or None with the reason (not Linux, no ctypes, no libc)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        raw = libc.prctl
    except (ImportError, OSError, AttributeError) as exc:
        return None, exc

    def prctl(option, arg):
        value = ctypes.c_char_p(arg) if isinstance(arg, bytes) else ctypes.c_ulong(arg)
        zero = ctypes.c_ulong(0)
        if raw(ctypes.c_int(option), value, zero, zero, zero) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return prctl, None


def _ignore_signal(signum, frame):
    pass  # the wakeup descriptor carries the signal to the reaper's loop

def prctl_name(name):
    prctl, _ = load_prctl()
    try:
        if prctl is not None:
            prctl(PR_SET_NAME, name)  # what ps -e and top show
            return True
    except OSError:
        pass
    return False

def read_available(fd):
    """What the non-blocking `fd` holds now, without waiting (what was read before an error or EOF)."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # BlockingIOError: nothing more for now
            return data
        if not chunk:
            return data
        data += chunk


def drain(fd):
    """The signal numbers a wakeup descriptor carries."""
    return set(read_available(fd))

def exit_like(status, prctl):
    """Exit as the shim did, so the supervisor reports the shim's exit code or signal."""
    if status is None:  # the shim was not reaped within the limit: it was SIGKILLed
        sig = signal.SIGKILL
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
    else:
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
    import faulthandler
    import resource
    faulthandler.disable()  # its own report would be about the reaper, which did not crash
    signal.set_wakeup_fd(-1)
    try:  # the shim already left its core dump, if any
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
        if prctl is not None:
            prctl(PR_SET_DUMPABLE, 0)
    except (OSError, ValueError):
        pass
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP cannot be caught anyway
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)

def run_porter(template, lifeline):
    """A worker's process as the supervisor spawned it, when the worker is forked from the template:
    hand this process's pipes over, then wait for the worker's end and exit the same way."""
    prctl_name(b"asya-porter")
    mine, theirs = socket.socketpair()
    if lifeline is None:  # the supervisor always passes one; without it, this process stands in
        lifeline, keep = os.pipe()
    fds = [theirs.fileno(), 0, 1, 2, 3, lifeline]
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore_signal)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        sock = socket.socket(fileno=template)
        sock.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
        sock.close()
    except OSError as exc:
        return porter_failed(TEMPLATE_GONE, "the template is gone (%s)" % exc)
    theirs.close()
    os.close(lifeline)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        os.close(3)
    except OSError:
        pass
    status, forked, received, worker = None, False, b"", None
    while True:
        readable = select.select([mine, wake_r], [], [])[0]
        if wake_r in readable and set(drain(wake_r)) & {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}:
            try:
                mine.shutdown(socket.SHUT_WR)  # the worker's reaper takes the worker down and reports
            except OSError:
                pass
        if mine not in readable:
            continue
        try:
            chunk = mine.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        received += chunk
        while len(received) >= 5 and received[:1] in (b"P", b"S"):
            if received[:1] == b"P" and not forked:
                forked = True
                worker = struct.unpack(">I", received[1:5])[0]
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 1)  # the worker alone holds the channel now
                os.close(devnull)
            elif received[:1] == b"S":
                status = struct.unpack(">i", received[1:5])[0]
            received = received[5:]
    if not forked:
        if received[:1] == b"E":
            return porter_failed(FORK_FAILED, received[1:].decode("utf-8", "replace"))
        return porter_failed(TEMPLATE_GONE, "the template ended before it forked this worker")
    if status is None and worker is not None:
        # Its reaper died without a word (SIGKILL): the worker follows it, but may not have yet, and
        # must not see the channel close (it would run close() at a random moment) before it does.
        try:
            os.killpg(worker, signal.SIGKILL)
        except OSError:
            pass
    exit_like(None if status is None or status < 0 else status, None)


def porter_failed(code, message):
    """No worker came of it: one line on stderr (the supervisor's log), and an exit code that says why."""
    try:
        os.write(2, ("asya-porter: %s\n" % message).encode("utf-8", "replace"))
    except OSError:
        pass
    return code


def porter_main():
    """The porter's entry point: the supervisor starts it with this section alone."""
    lifeline = take_fd(LIFELINE_VARIABLE)
    template = take_fd(TEMPLATE_VARIABLE)
    if template is None:
        return porter_failed(TEMPLATE_GONE, "started without the template's socket (%s)" % TEMPLATE_VARIABLE)
    return run_porter(template, lifeline)
# <<< porter


# ----------------------------------------------------------------- reaper ---
# Process plumbing; none of it runs your code. The process the supervisor starts forks before
# anything of yours is imported. The child, in a process group of its own, becomes the shim
# above. The parent, the "reaper", is made the child subreaper of everything below it: a
# process your handler leaves behind (a helper whose parent exited) is re-parented to it
# instead of to PID 1, which in a container is the Node.js supervisor and never reaps what it
# did not start itself. When the shim exits, when the supervisor sends SIGTERM, or when the
# supervisor is gone (its end of the lifeline closes: a SIGKILL or an OOM kill gives it no
# chance to clean up), the reaper kills the shim's process group and every process left
# under it, reaps them all, and exits the way the shim did (same exit code, or same signal).

# Killed processes normally vanish in milliseconds; one stuck in the kernel (a GPU driver, a
# dead NFS mount) is waited for this long before the reaper exits without it.
TEARDOWN_LIMIT_S = 5.0


def reaper_note(text):
    # stderr reaches the supervisor's logs; the reaper has no channel of its own
    try:
        os.write(2, ("asya-reaper: %s\n" % text).encode("utf-8", "replace"))
    except OSError:
        pass


def start_reaper(lifeline, private=(), out=3, reply=None, inherited=False):
    """Fork the reaper off. Returns in the shim (the control pipe's read end, or None); the reaper
    never returns. `private`: descriptors only the shim keeps; `out`: the handler's stdout pipe;
    `reply`: in a worker forked from the template, the socket to its porter (see run_porter)."""
    if not hasattr(os, "fork"):
        if lifeline is not None:
            os.close(lifeline)
        return None
    prctl, why = load_prctl()
    if prctl is not None:
        try:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        except OSError as exc:
            prctl, why = None, exc
    if prctl is None:
        reaper_note("cannot become a child subreaper (%s): processes the handler leaves behind "
                    "are not reaped, and the shim outlives a killed reaper" % why)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    # Call numbers to interrupt, from the supervisor through the reaper to the shim's signal handler.
    control_r, control_w = os.pipe()
    os.set_blocking(control_w, False)
    watched = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
    previous = dict((sig, signal.getsignal(sig)) for sig in watched)
    # Before the fork, so a shim that dies at once still wakes the reaper.
    for sig in watched:
        signal.signal(sig, _ignore_signal)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    reaper = os.getpid()
    try:
        shim = os.fork()
    except OSError as exc:  # out of processes or memory: serve without a reaper rather than not at all
        reaper_note("cannot fork (%s): running without a reaper" % exc)
        shim = 0
        reaper = None
    if shim == 0:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)
        os.close(control_w)
        for fd in (lifeline, reply):
            if fd is not None:
                os.close(fd)
        if reaper is None:
            os.close(control_r)  # nobody to forward interrupts: only the hard time limit applies
            return None
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != reaper:  # the reaper died before the line above
                os._exit(1)
        return control_r
    os.close(control_r)
    try:
        os.setpgid(shim, shim)  # also here: the group must exist before the reaper may kill it
    except OSError:
        pass
    if reply is not None:
        send_all(reply, b"P" + struct.pack(">I", shim))  # the porter lets go of the channel
    # Only the shim may hold the channel, so that its end still reaches the supervisor as EOF.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for fd in (out,) + tuple(private):
        if fd is not None and fd not in (wake_r, wake_w, lifeline, reply):
            try:
                os.close(fd)  # the handler's stdout pipe, and what else is the shim's alone
            except OSError:
                pass
    if inherited:
        # A fork of the template holds what the handler's loading opened (files, sockets): only the
        # worker may keep them open.
        keep = set((wake_r, wake_w, lifeline, reply, control_w))
        try:
            held = [int(fd) for fd in os.listdir("/proc/self/fd")]
        except OSError:
            held = range(3, 1024)
        close_all(fd for fd in held if fd > 2 and fd not in keep)
    if prctl is not None:
        try:
            prctl(PR_SET_NAME, b"asya-reaper")  # what ps -e and top show
        except OSError:
            pass
    status = reap(shim, lifeline, wake_r, control_w, reply)
    if reply is not None:
        send_all(reply, b"S" + struct.pack(">i", -1 if status is None else status))
    exit_like(status, prctl)


def reap(shim, lifeline, wake, control, reply=None):
    """Reap until the shim exits or the reaper is told to stop; then kill and reap the rest."""
    watched = [fd for fd in (wake, lifeline, reply) if fd is not None]
    status = None
    pending = b""
    while status is None:
        status = collect(shim)
        if status is not None:
            break
        readable = select.select(watched, [], [])[0]
        if reply in readable and lifeline_read(reply) is None:
            break  # the porter was told to stop (SIGTERM), or is gone
        if lifeline in readable:
            data = lifeline_read(lifeline)
            if data is None:
                break  # the supervisor is gone: nobody is left to answer to
            pending += data
            whole = len(pending) - len(pending) % 4
            if whole:
                # The shim is not reaped yet (collect() above), so its pid is still its own.
                forward_interrupt(shim, control, pending[:whole])
                pending = pending[whole:]
        if wake in readable:
            signals = drain(wake)
            if signal.SIGTERM in signals or signal.SIGINT in signals:
                break
    return teardown(shim, status, wake)


def collect(shim):
    """Reap every child that has exited; the shim's wait status if it was among them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == shim:
            found = status


def lifeline_read(fd):
    """What the supervisor wrote (4-byte numbers of calls to interrupt), or None once it is gone."""
    try:
        return os.read(fd, 4096) or None
    except BlockingIOError:
        return b""
    except OSError:
        return None


def forward_interrupt(shim, control, numbers):
    try:
        os.write(control, numbers)
        os.kill(shim, INTERRUPT_SIGNAL)
    except OSError:
        pass  # the shim is exiting: the supervisor will see it


def teardown(shim, status, wake):
    """SIGKILL the shim's group and every process re-parented to the reaper, until none is left."""
    try:
        os.killpg(shim, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + TEARDOWN_LIMIT_S
    while True:
        # A killed parent's children are re-parented here only once it is gone: look again each time.
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == shim:
            status = code
        if pid != 0:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            reaper_note("processes %s did not die within %.0f s of SIGKILL; leaving them"
                        % (sorted(children()), TEARDOWN_LIMIT_S))
            return status
        select.select([wake], [], [], min(left, 0.05))
        drain(wake)


def children():
    """PIDs whose parent is this process (the reaper is single-threaded: one task)."""
    me = os.getpid()
    try:
        with open("/proc/%d/task/%d/children" % (me, me)) as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:
        pass
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # the name may contain spaces and parentheses
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


# --------------------------------------------------- template (ASYA_PRELOAD) ---
# Plumbing again. With ASYA_PRELOAD the shim that loads the handler becomes the "template": it
# never handles a message; every worker is a fork of it, sharing the loaded model's memory
# copy-on-write. The supervisor still spawns a small process per worker, the "porter", with the
# worker's pipes (channel, stderr, handler stdout, lifeline). The porter hands those descriptors
# to the template over the template's fork-request socket (SCM_RIGHTS, one byte per request); the
# template forks twice, so the worker's own reaper is re-parented to the template's reaper and the
# template has no children to wait for; that reaper forks the worker onto the porter's pipes,
# reports the worker's pid and, when it is over, its wait status to the porter, which exits the
# same way. To the supervisor a forked worker looks exactly like a spawned one.
#
#   supervisor ── template's reaper ── template          supervisor ── porter (per worker)
#                        └── worker's reaper ── worker       (pipes) ────────────┘ handed over

FORK_FDS = 6  # reply socket, channel in, channel out, stderr, handler stdout, lifeline


def refuse_cuda():
    """A CUDA context does not survive fork(): workers forked from it fail at their first GPU call."""
    torch = sys.modules.get("torch")
    try:
        initialised = torch is not None and bool(torch.cuda.is_initialized())
    except Exception:
        initialised = False
    if initialised:
        error = LoadError("CUDA was initialised while the handler loaded (torch.cuda.is_initialized() is True in "
                          "the template), and processes forked from it cannot use the GPU: initialise the GPU "
                          "lazily, in the first call (move the model to the device there), or unset ASYA_PRELOAD "
                          "to load the handler in every worker")
        error.kind = "CudaInitialized"
        raise error


def template_threads():
    """Names of the threads besides this one: a fork copies only the calling thread."""
    import threading
    me = threading.current_thread()
    return sorted(t.name for t in threading.enumerate() if t is not me and t.is_alive())


def serve_template(requests, chan_in, chan_out, control):
    """Fork a worker for every request until the supervisor closes the channel (then exit: close()
    belongs to the workers, never to the template). Returns only in a forked worker: its channel,
    its control pipe and when it was forked."""
    import socket
    sock = socket.socket(fileno=requests)
    channel = chan_in.fileno()
    prctl_name(b"asya-template")
    while True:
        readable = select.select([channel, sock], [], [])[0]
        if channel in readable:
            try:
                data = os.read(channel, 65536)
            except OSError:
                data = b""
            if not data:
                end_process(own_exit_functions=True)
        if sock not in readable:
            continue
        try:
            data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(FORK_FDS * 4), socket.MSG_CMSG_CLOEXEC)
        except OSError:
            continue
        if not data:
            end_process(own_exit_functions=True)  # nobody can ask for a worker any more
        fds = received_fds(ancillary, socket)
        forked = fork_worker(fds) if len(fds) == FORK_FDS else None  # else: not a porter's request
        if forked is None:
            close_all(fds)
            continue
        try:
            # The template's own descriptors, through their objects (a file object left behind would
            # close its number again when collected, by then one of the worker's).
            sock.close()
            chan_in.close()
            close_all([chan_out] + ([control] if control is not None else []))
            return become_worker(fds, *forked)
        except BaseException:
            os._exit(1)  # never back into the template's loop


def received_fds(ancillary, socket):
    import array
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def fork_worker(fds):
    """Fork twice. None in the template (at once: the middle process exits as soon as it has forked);
    in the grandchild, the worker's reaper-to-be: when the fork started, and the handler's SIGCHLD."""
    import warnings
    started = time.monotonic()
    reaper = os.getppid()  # the template's reaper, the worker's reaper's parent-to-be
    # The handler may ignore SIGCHLD (then the middle process is reaped by the kernel, and waitpid
    # fails): the default while forking; the handler's own setting is given back to the worker.
    handler_sigchld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: the start warned about threads once
            middle = os.fork()
    except OSError as exc:
        signal.signal(signal.SIGCHLD, handler_sigchld)
        send_all(fds[0], b"E" + ("the template could not fork: %s" % exc).encode("utf-8", "replace"))
        return None
    if middle:
        try:
            os.waitpid(middle, 0)
        except ChildProcessError:
            pass
        signal.signal(signal.SIGCHLD, handler_sigchld)
        return None
    try:
        # The grandchild is re-parented to the template's reaper (a subreaper), which reaps it.
        if os.fork():
            os._exit(0)
        # Once it is, the worker's reaper dies with it (as the workers die with the template).
        for _ in range(2000):
            if os.getppid() == reaper:
                break
            time.sleep(0.0005)
        prctl, _ = load_prctl()
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != reaper:
            os._exit(1)
    except BaseException as exc:
        send_all(fds[0], b"E" + ("the template could not fork: %s" % exc).encode("utf-8", "replace"))
        os._exit(1)
    return started, handler_sigchld


def become_worker(fds, started, handler_sigchld):
    """Take the porter's descriptors and fork the worker under a reaper of its own, as a spawned shim has.
    The handler's signal settings from its loading stay the worker's (the reaper sets its own)."""
    import fcntl
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, handler_sigchld)
    # Above the descriptors the handler's __init__ may hold (never 0-2): those stay the worker's.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
    close_all(fds)
    reply, stdin, stdout, stderr, out, lifeline = moved
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    control = start_reaper(lifeline, out=out, reply=reply, inherited=True)  # the worker's reaper never returns
    prctl_name(os.path.basename(sys.executable or "python3").encode()[:15])  # as a spawned worker is named
    chan_in, chan_out = claim_channel(out)
    return chan_in, chan_out, control, started


def send_all(fd, data):
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # the other side is gone: it learns nothing more from us


# ---------------------------------------------------------------- channel ---

def claim_channel(out=3):
    """Move the channel off fds 0/1 so handler output cannot corrupt it.

    fd 0 becomes /dev/null (input() sees EOF), fd 1 becomes the supervisor's
    handler-output pipe (`out`, fd 3 when spawned, else stderr).
    """
    chan_in = os.dup(0)
    chan_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        os.fstat(out)
        os.dup2(out, 1)
        os.close(out)
    except OSError:
        os.dup2(2, 1)
    return os.fdopen(chan_in, "rb", buffering=65536), chan_out


# Up to this size a message is copied out of the reader's buffer; above, read in place.
SMALL_MESSAGE = 64 * 1024
_U32 = struct.Struct(">I")


def read_exact(reader, n):
    view = memoryview(bytearray(n))
    got = 0
    while got < n:
        chunk = reader.readinto(view[got:])
        if not chunk:
            return None
        got += chunk
    return view


def read_message(reader):
    # `reader` is buffered: a small message is one read syscall, copied out of the buffer; a
    # large one is read straight into its own buffer.
    head = reader.read(4)
    if len(head) < 4:
        return None
    size = _U32.unpack(head)[0]
    if size <= SMALL_MESSAGE:
        body = reader.read(size)
        if len(body) < size:
            return None
        return unpack(memoryview(body))
    body = read_exact(reader, size)
    if body is None:
        return None
    return unpack(body)


def write_message(fd, obj):
    parts = [b""]
    if obj.get("t") == "ok" and len(obj) == 2:
        pack_ok(obj["o"], parts)
    else:
        pack(obj, parts)
    parts[0] = _U32.pack(sum(len(p) for p in parts))
    data = memoryview(b"".join(parts))  # one copy, header included: one write
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------- msgpack ---
# A minimal MessagePack codec: just the types the supervisor exchanges.

def pack(obj, out):
    if obj is None:
        out.append(b"\xc0")
    elif obj is True:
        out.append(b"\xc3")
    elif obj is False:
        out.append(b"\xc2")
    elif isinstance(obj, int):
        if 0 <= obj < 0x80:
            out.append(struct.pack("B", obj))
        elif -32 <= obj < 0:
            out.append(struct.pack("b", obj))
        elif 0 <= obj < 2 ** 32:
            out.append(b"\xce" + struct.pack(">I", obj))
        elif -2 ** 31 <= obj < 0:
            out.append(b"\xd2" + struct.pack(">i", obj))
        elif 0 <= obj < 2 ** 64:
            out.append(b"\xcf" + struct.pack(">Q", obj))
        else:
            out.append(b"\xd3" + struct.pack(">q", obj))
    elif isinstance(obj, float):
        out.append(b"\xcb" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "replace")
        out.append(_sized(len(data), 0xA0, 32, b"\xd9", b"\xda", b"\xdb"))
        out.append(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(_sized(len(obj), None, 0, b"\xc4", b"\xc5", b"\xc6"))
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        out.append(_sized(len(obj), 0x90, 16, None, b"\xdc", b"\xdd"))
        for item in obj:
            pack(item, out)
    elif isinstance(obj, dict):
        out.append(_sized(len(obj), 0x80, 16, None, b"\xde", b"\xdf"))
        for key, value in obj.items():
            pack(key, out)
            pack(value, out)
    else:
        raise TypeError("cannot pack %s" % type(obj).__name__)


def _sized(n, fix_base, fix_limit, tag8, tag16, tag32):
    if fix_base is not None and n < fix_limit:
        return struct.pack("B", fix_base | n)
    if tag8 is not None and n < 0x100:
        return tag8 + struct.pack("B", n)
    if n < 0x10000:
        return tag16 + struct.pack(">H", n)
    return tag32 + struct.pack(">I", n)


# The hot path: the supervisor writes every call as {"t": "call", "p": <bin32>, ...} in this order
# (channel.ts, encodeCall), and most replies are {"t": "ok", "o": [<bin>, ...]}. Both are read and
# written at fixed offsets here; the generic codec below gives the same result, ~4x slower per message.
_CALL_HEAD = b"\xa1t\xa4call\xa1p\xc6"
_OK_HEAD = b"\x82\xa1t\xa2ok\xa1o"


def pack_ok(items, out):
    """`{"t": "ok", "o": items}` for a list of bytes, as pack() would write it."""
    out.append(_OK_HEAD)
    out.append(_sized(len(items), 0x90, 16, None, b"\xdc", b"\xdd"))
    for item in items:
        n = len(item)
        out.append(b"\xc4" + bytes((n,)) if n < 0x100 else _sized(n, None, 0, b"\xc4", b"\xc5", b"\xc6"))
        out.append(item)


def unpack(view):
    if 0x82 <= view[0] <= 0x84 and view[1:11] == _CALL_HEAD:
        end = 15 + _U32.unpack_from(view, 11)[0]
        msg = {"t": "call", "p": view[15:end]}
        pos = end
        for _ in range((view[0] & 0x0F) - 2):  # "m" and "w", when present
            key, pos = _unpack_at(view, pos)
            msg[key], pos = _unpack_at(view, pos)
        return msg
    obj, _ = _unpack_at(view, 0)
    return obj


_FIXED = {0xC0: None, 0xC2: False, 0xC3: True}
_NUMBERS = {0xCA: ">f", 0xCB: ">d", 0xCC: "B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: "b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
_LENGTHS = {0xC4: ("bin", "B"), 0xC5: ("bin", ">H"), 0xC6: ("bin", ">I"),
            0xD9: ("str", "B"), 0xDA: ("str", ">H"), 0xDB: ("str", ">I"),
            0xDC: ("array", ">H"), 0xDD: ("array", ">I"),
            0xDE: ("map", ">H"), 0xDF: ("map", ">I")}


def _unpack_at(view, pos):
    tag = view[pos]
    pos += 1
    if tag < 0x80:
        return tag, pos
    if tag >= 0xE0:
        return tag - 0x100, pos
    if tag in _FIXED:
        return _FIXED[tag], pos
    if tag in _NUMBERS:
        fmt = _NUMBERS[tag]
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, view, pos)[0], pos + size
    if 0xA0 <= tag <= 0xBF:
        kind, n = "str", tag & 0x1F
    elif 0x90 <= tag <= 0x9F:
        kind, n = "array", tag & 0x0F
    elif 0x80 <= tag <= 0x8F:
        kind, n = "map", tag & 0x0F
    elif tag in _LENGTHS:
        kind, fmt = _LENGTHS[tag]
        n = struct.unpack_from(fmt, view, pos)[0]
        pos += struct.calcsize(fmt)
    else:
        raise ValueError("unsupported msgpack tag 0x%02x" % tag)
    if kind == "bin":
        return view[pos:pos + n], pos + n  # a zero-copy slice
    if kind == "str":
        return str(view[pos:pos + n], "utf-8"), pos + n
    if kind == "array":
        items = []
        for _ in range(n):
            item, pos = _unpack_at(view, pos)
            items.append(item)
        return items, pos
    result = {}
    for _ in range(n):
        key, pos = _unpack_at(view, pos)
        result[key], pos = _unpack_at(view, pos)
    return result, pos


if __name__ == "__main__":
    sys.exit(main())
