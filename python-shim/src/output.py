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
