"""The oracle of the CLI's exactness test: the handler called in plain Python on json.loads of each
message, against what `asya-runtime call` and `send` printed.

Reads one JSON document on stdin: {"cases": [{"message", "printed" (or null), "whole", "headers"}],
"exact": bool, "pretty": text or null}; writes {"problems": [...]}. `printed` is a payload (or, with
`whole`, an answer); with `exact` it must be the bytes the shim's stdlib encoder writes; `pretty` is a
terminal's stdout, which must be json.dumps(..., indent=2) of each expected payload in turn.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "handlers"))
from cli_exact import facts  # noqa: E402

ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def finite(obj):
    """What the runtime writes: NaN and +-Infinity as null (strict JSON for Go)."""
    return json.loads(json.dumps(obj), parse_constant=lambda _: None)


def expected_of(message):
    return finite(facts(json.loads(message)))


def check(case, exact):
    expected = expected_of(case["message"])
    got = json.loads(case["printed"])
    if case["whole"]:
        if not isinstance(got, list) or len(got) != 1 or "error" in got[0]:
            return ["expected one output envelope, got %s" % case["printed"][:500]]
        if case["headers"] is not None and repr(got[0].get("headers")) != repr(json.loads(case["headers"])):
            return ["headers came back as %r" % (got[0].get("headers"),)]
        got = got[0]["payload"]
    if repr(got) != repr(expected):
        return ["printed %s\nexpected %r" % (case["printed"][:2000], expected)]
    if exact and case["printed"] != ENCODER.encode(expected):
        return ["printed %s\nPython encodes %s" % (case["printed"][:2000], ENCODER.encode(expected)[:2000])]
    return []


def main():
    job = json.load(sys.stdin)
    problems = []
    for i, case in enumerate(job["cases"]):
        if case["printed"] is None:
            continue
        try:
            found = check(case, job["exact"])
        except Exception as exc:  # a malformed line is a finding, not an oracle crash
            found = ["the oracle could not read it: %r" % (exc,)]
        problems += ["message %d %s: %s" % (i, case["message"][:300], p) for p in found]
    if job["pretty"] is not None:
        want = "".join(json.dumps(expected_of(c["message"]), indent=2) + "\n" for c in job["cases"])
        if job["pretty"] != want:
            problems.append("pretty output:\n%s\nexpected:\n%s" % (job["pretty"][:3000], want[:3000]))
    json.dump({"problems": problems}, sys.stdout)


main()
