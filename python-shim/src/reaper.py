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
