"""Handlers for test/debugger.test.ts: breakpoint() in a handler."""


def stop(payload):
    answer = payload["x"] + 1
    breakpoint()
    return {"answer": answer, "changed": payload.get("changed", False)}
