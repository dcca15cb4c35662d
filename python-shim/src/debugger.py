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
