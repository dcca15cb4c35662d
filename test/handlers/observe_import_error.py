def _fail():
    raise RuntimeError("cannot load the weights")


_fail()
