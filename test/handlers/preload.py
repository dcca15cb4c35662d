"""Handlers for the fork-mode tests (ASYA_PRELOAD): which process loaded, which serves, what is shared."""
import logging
import os
import sys
import threading
import time


def _mark(variable, text):
    path = os.environ.get(variable)
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


class Model:
    """A model that takes PRELOAD_INIT_SECONDS to load and PRELOAD_MODEL_MB of numpy memory (when set)."""

    def __init__(self):
        self.loaded_in = os.getpid()
        _mark("PRELOAD_INIT_MARKS", "init %d" % os.getpid())
        time.sleep(float(os.environ.get("PRELOAD_INIT_SECONDS", "0")))
        megabytes = int(os.environ.get("PRELOAD_MODEL_MB", "0"))
        self.weights = None
        if megabytes:
            import numpy
            self.weights = numpy.ones(megabytes * 2 ** 20 // 8)  # touched: every page resident
        if os.environ.get("PRELOAD_THREAD"):
            self._start_busy_thread()

    def _start_busy_thread(self):
        # Holds the logging module's and stdout's locks as often as it can, while the template forks.
        def busy():
            log = logging.getLogger("prefetch")
            while True:
                log.debug("tick")
                sys.stdout.write("")
                time.sleep(0.001)

        threading.Thread(target=busy, name="model-prefetch", daemon=True).start()

    def process(self, payload):
        if payload.get("crash"):
            os._exit(1)
        if payload.get("stuck"):
            while True:  # swallows the soft time limit: only the hard one ends it
                try:
                    time.sleep(30)
                except BaseException:
                    pass
        time.sleep(payload.get("sleep", 0))
        if payload.get("talk"):
            print("printed by %d" % os.getpid())
            logging.getLogger("handler").warning("logged by %d", os.getpid())
        total = float(self.weights[:1000].sum()) if self.weights is not None else None
        return {"pid": os.getpid(), "loaded_in": self.loaded_in, "n": payload.get("n"), "total": total}

    def close(self):
        _mark("PRELOAD_CLOSE_MARKS", "closed %d" % os.getpid())


class OnGpu:
    """Initialises CUDA in __init__ (the stand-in torch in fake_cuda/ records it)."""

    def __init__(self):
        import torch
        torch.cuda.init()

    def process(self, payload):
        return payload


class Particular:
    """Loading does what real models do: ignores SIGCHLD, handles SIGTERM, keeps a file and a temporary
    directory open (its finalizer registered at exit)."""

    def __init__(self):
        import signal
        import tempfile
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.on_term)
        self.scratch = tempfile.TemporaryDirectory(prefix="asya-preload-test-")
        with open(os.path.join(self.scratch.name, "weights.bin"), "w") as f:
            f.write("w" * 100)
        self.weights = open(os.path.join(self.scratch.name, "weights.bin"))
        _mark("PRELOAD_INIT_MARKS", "init %d %s" % (os.getpid(), self.scratch.name))

    def on_term(self, signum, frame):
        pass

    def process(self, payload):
        import signal
        with open(os.path.join(self.scratch.name, "weights.bin")) as f:
            size = len(f.read())
        return {"pid": os.getpid(), "size": size,
                "sigchld_ignored": signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN,
                "sigterm_handler": getattr(signal.getsignal(signal.SIGTERM), "__name__", None),
                "weights_fd": self.weights.fileno()}
