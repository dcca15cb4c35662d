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
