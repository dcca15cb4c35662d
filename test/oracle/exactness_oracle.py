"""The oracle of the exactness test: Python's stdlib json on the same request text.

Reads one JSON line per case ({"mode", "request", "response"}: texts, base64) and answers one line:
{"problems": [...]} (empty when the runtime's answer is exactly what the stdlib says it must be).
"""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "handlers"))
from exactness import canon  # noqa: E402


def finite(obj):
    """What encoding gives back: the runtime writes NaN and +-Infinity as null (strict JSON for Go).
    Done by the C codec so deep values do not hit the recursion limit."""
    return json.loads(json.dumps(obj), parse_constant=lambda _: None)


def check(mode, request, response):
    problems = []
    try:
        envelope = json.loads(request)
    except (ValueError, RecursionError) as exc:
        return ["the oracle cannot decode the request: %s" % exc]
    answer = json.loads(response)
    if not isinstance(answer, list) or len(answer) != 1 or "error" in answer[0]:
        return ["expected one output envelope, got %s" % response[:500]]
    out = answer[0]
    route = dict(envelope["route"])
    route.setdefault("current", 0)
    if mode == "payload":
        seen = out["payload"]["seen"]
        if seen != canon(envelope["payload"]):
            problems.append("handler saw %s, json.loads gives %s" % (seen, canon(envelope["payload"])))
        if canon(out["payload"]["echo"]) != canon(finite(envelope["payload"])):
            problems.append("echoed payload came back as %s" % canon(out["payload"]["echo"]))
        expected_route = dict(route, current=route["current"] + 1)
        if canon(out["route"]) != canon(expected_route):
            problems.append("route came back as %s, expected %s" % (canon(out["route"]), canon(expected_route)))
        if ("headers" in envelope) != ("headers" in out) or canon(out.get("headers")) != canon(envelope.get("headers")):
            problems.append("headers came back as %s" % canon(out.get("headers")))
        if set(out) - {"route", "headers", "payload"}:
            problems.append("unexpected members %s" % sorted(set(out) - {"route", "headers", "payload"}))
    else:
        envelope["route"] = route
        seen = out["payload"]["seen"]
        if seen != canon(envelope):
            problems.append("handler saw %s, json.loads gives %s" % (seen, canon(envelope)))
        expected = finite(envelope)
        expected["route"] = finite(dict(route, current=route["current"] + 1))
        got = dict(out)
        echo = got.pop("payload")["echo"]
        expected_payload = expected.pop("payload")
        if canon(echo) != canon(expected_payload):
            problems.append("echoed payload came back as %s" % canon(echo))
        # Members in the handler's order (its dict is the request's order), payload last.
        if canon(got) != canon(expected):
            problems.append("envelope came back as %s, expected %s" % (canon(got), canon(expected)))
    return problems


for line in sys.stdin:
    case = json.loads(line)
    text = lambda key: base64.b64decode(case[key]).decode("utf-8")
    try:
        problems = check(case["mode"], text("request"), text("response"))
    except Exception as exc:  # a malformed answer is a finding, not an oracle crash
        problems = ["oracle could not read the answer: %r" % (exc,)]
    sys.stdout.write(json.dumps({"problems": problems}) + "\n")
    sys.stdout.flush()
