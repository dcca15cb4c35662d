"""Prints while its module is imported, and in __init__: lines of the process that then serves."""
import os

print("importing in %d" % os.getpid())


class Model:
    def __init__(self):
        print("building in %d" % os.getpid())

    def process(self, payload):
        return {"pid": os.getpid()}
