"""Envelope-mode handlers for the route rules."""


def echo(envelope):
    return envelope


def current_plus_one(envelope):
    envelope["route"]["current"] += 1
    return envelope


def add_future(envelope):
    envelope["route"]["actors"] = envelope["route"]["actors"] + ["d", "e"]
    return envelope


def replace_future(envelope):
    route = envelope["route"]
    route["actors"] = route["actors"][: route["current"] + 1] + ["x", "y"]
    return envelope


def erase_processed(envelope):
    envelope["route"] = {"actors": ["c", "d"], "current": 0}
    return envelope


def modify_processed(envelope):
    envelope["route"]["actors"][0] = "a-new"
    return envelope


def replace_current_actor(envelope):
    route = envelope["route"]
    route["actors"][route["current"]] = "impostor"
    return envelope


def truncate_all(envelope):
    envelope["route"]["actors"] = []
    return envelope


def current_out_of_range(envelope):
    envelope["route"]["current"] = 99
    return envelope


def no_payload(envelope):
    del envelope["payload"]
    return envelope


def not_a_dict(envelope):
    return "not an envelope"


def fanout(envelope):
    out = []
    for i in range(3):
        out.append({"id": "%s-%d" % (envelope.get("id"), i), "parent_id": envelope.get("id"),
                    "route": dict(envelope["route"], current=envelope["route"]["current"] + 1),
                    "headers": envelope.get("headers", {}), "payload": {"part": i}})
    return out


def second_bad(envelope):
    good = dict(envelope)
    bad = dict(envelope, route={"actors": ["zzz"], "current": 0})
    return [good, bad]


def abort(envelope):
    return None


def extra_fields(envelope):
    envelope["status"] = "extra top-level field"
    return envelope


def show(envelope):
    """What the handler saw, as the payload."""
    return {"payload": {"saw": envelope}, "route": envelope["route"]}
