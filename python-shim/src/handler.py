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
