"""The handler of the CLI's exactness test: what it was given, at the level of repr(), and values
that JavaScript numbers cannot hold, computed here."""
import json

# 1.0 and -0.0 are floats, 2**70 and -2**64-1 integers beyond 64 bits: JSON.parse and
# JSON.stringify would print them as 1, 0, 1.1805916207174113e+21 and -18446744073709552000.
COMPUTED = [1.0, 2 ** 70, -0.0, -(2 ** 64) - 1, 1e300, 1.7976931348623157e308, 5e-324, 0.1 + 0.2, 1e16, 1e-7, "\ud800"]


def facts(payload):
    return {"repr": repr(payload), "json": json.dumps(payload), "echo": payload, "computed": COMPUTED}
