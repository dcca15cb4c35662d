"""Handlers that take `context` (and one that does not), for test/context.test.ts."""
import asyncio
import os
import time
import weakref


def describe(payload, context):
    return {"id": context.id, "route": context.route, "headers": context.headers, "deadline": context.deadline,
            "remaining": context.remaining(), "cancelled": context.cancelled(), "payload": payload}


def plain(payload):
    return {"payload": payload}


def started(payload):
    """Leaves an empty file at payload["started"], if named: the test's sign that the call is running."""
    if payload.get("started"):
        open(payload["started"], "w").close()


def watch(payload, context):
    """Runs until its client leaves (or its deadline passes); leaves a mark with when it noticed."""
    started(payload)
    started_at = time.time()
    while not context.cancelled():
        time.sleep(0.005)
        if time.time() - started_at > 30:
            return "never cancelled"
    with open(payload["mark"], "w") as f:
        f.write("%f" % time.time())
    return "cancelled"


async def wait_async(payload, context):
    started(payload)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        with open(payload["mark"], "w") as f:
            f.write("%f cancelled=%s" % (time.time(), context.cancelled()))
        raise
    return "slept"


def count(payload, context):
    for item in payload.get("inc", []):
        context.metrics.inc(item["name"], item.get("value", 1), **item.get("labels", {}))
    for item in payload.get("set", []):
        context.metrics.set(item["name"], item["value"], **item.get("labels", {}))
    for item in payload.get("observe", []):
        context.metrics.observe(item["name"], item["value"], **item.get("labels", {}))
    return {"pid": os.getpid()}


def log(payload, context):
    context.log.warning("working on %s", payload.get("what"))
    return {}


class Tensor(object):
    """Stands for memory on the GPU: alive as long as something refers to it."""


_HELD = []


def oom(payload, context=None):
    import torch
    if payload.get("check"):
        return {"tensor_alive": _HELD[0]() is not None, "cache_emptied": torch.cuda.cache_emptied}
    activations = Tensor()
    activations.graph = activations  # autograd graphs are cycles: only a collection frees them
    _HELD[:] = [weakref.ref(activations)]
    if payload.get("runtime_error"):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if payload.get("wrapped"):
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        except RuntimeError as oom:
            raise ValueError("inference failed") from oom
    raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")


def describe_envelope(envelope, context):
    """Envelope mode: the same report, as the payload of the next hop."""
    route = dict(envelope["route"], current=envelope["route"]["current"] + 1)
    return {"route": route, "payload": describe(envelope["payload"], context)}
