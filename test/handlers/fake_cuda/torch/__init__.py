"""A stand-in for torch (no GPU here): just what the runtime asks of it, and what a test reads back."""


class OutOfMemoryError(RuntimeError):
    pass


class _Cuda(object):
    OutOfMemoryError = OutOfMemoryError

    def __init__(self):
        self._initialized = False
        self.cache_emptied = 0

    def init(self):
        self._initialized = True

    def is_initialized(self):
        return self._initialized

    def empty_cache(self):
        self.cache_emptied += 1


cuda = _Cuda()
