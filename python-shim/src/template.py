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
