"""Results where JSON codecs could disagree; the runtime must answer the same with json and orjson."""
import dataclasses
import datetime
import enum

import numpy as np


class Label(str):
    pass


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int = 1


def mixed(payload):
    return {
        "big": 2 ** 70,
        "neg": -(2 ** 65),
        "label": Label("cat"),
        "level": Level.HIGH,
        "keys": {1: "a", 2.5: "b", False: "c", None: "d"},
        "nan": [float("nan"), float("inf")],
        "f32": np.float32(0.1),
        "arr": np.array([0.1, 0.2], dtype=np.float32),
        "i8": np.arange(3, dtype=np.int8),
        "tiny": 1e-7,
        "huge": 1e300,
        "unicode": "héllo \u2603 \U0001F600",
        "echo": payload,
    }


def dataclass_result(payload):
    return Point()


def datetime_result(payload):
    return {"at": datetime.datetime(2026, 1, 1)}


def echo(payload):
    return payload
