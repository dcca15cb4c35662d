"""Handlers that report exactly what they saw, for the differential exactness test."""
import json


def canon(obj):
    """A text that tells apart every value json.loads can give: int from float (1 and 1.0), -0.0 from
    0.0, big integers, every code point (lone surrogates escaped), and dict key order."""
    return json.dumps(obj)


def seen_payload(payload):
    return {"seen": canon(payload), "echo": payload}


def seen_envelope(envelope):
    out = dict(envelope)
    out["route"] = dict(envelope["route"], current=envelope["route"]["current"] + 1)
    out["payload"] = {"seen": canon(envelope), "echo": envelope["payload"]}
    return out
