"""A stand-in for torch (no GPU here): just what the runtime asks of it."""


class _Cuda(object):
    def __init__(self):
        self._initialized = False

    def init(self):
        self._initialized = True

    def is_initialized(self):
        return self._initialized

    def empty_cache(self):
        pass


cuda = _Cuda()
