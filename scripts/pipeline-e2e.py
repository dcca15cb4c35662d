"""ASYA_PRELOAD and the handler's context through the real Go sidecar and RabbitMQ (../shared/pipeline,
after its prepare.sh; run by hand: python3 scripts/pipeline-e2e.py, after npm run build):

A. Two workers forked from a template (2 s __init__), 400 messages; three serving workers SIGKILLed
   while messages flow. Every message must reach happy-end or error-end (the ones in flight at a kill as
   worker_crashed), and the model must have been built once.
B. The sidecar gives up on a call after ASYA_RUNTIME_TIMEOUT=2s; the handler watches context.cancelled().
Exit 1 if a message is missing or the handler never saw the cancellation.
"""
import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("ASYA_PIPELINE", os.path.join(ROOT, "..", "shared", "pipeline")))
from stack import Stack  # noqa: E402

CMD = "node %s" % os.path.join(ROOT, "dist", "cli.js")
HANDLERS = os.path.join(ROOT, "test", "handlers")
MESSAGES, KILLS = 400, 3


def recovery(s):
    s.add_actor("w", CMD, "preload.Model.process", pythonpath=[HANDLERS], timeout=120,
                env={"ASYA_PRELOAD": "true", "ASYA_WORKERS": "2", "PRELOAD_INIT_SECONDS": "2"})
    for n in range(MESSAGES):
        s.send(["w"], {"n": n, "sleep": 0.01})
    happy, errors, killed = [], [], []
    deadline = time.time() + 120
    while len(happy) + len(errors) < MESSAGES and time.time() < deadline:
        happy += s.drain("happy-end")
        errors += s.drain("error-end")
        pid = happy[-1]["payload"]["pid"] if happy else None
        if len(killed) < KILLS and len(happy) > 60 * (len(killed) + 1) and pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)
    s.remove_actor("w")
    counted = len(happy) + len(errors) == MESSAGES and len({m["payload"]["n"] for m in happy}) == len(happy)
    print("A: sent %d: happy-end %d, error-end %d (%s), %d workers killed; model built in %s; every message "
          "accounted for: %s" % (MESSAGES, len(happy), len(errors),
                                 ", ".join(sorted({m["payload"]["error"] for m in errors})) or "none",
                                 len(killed), sorted({m["payload"]["loaded_in"] for m in happy}), counted))
    return counted


def cancellation(s):
    mark = os.path.join(s.run_dir, "cancelled-mark")
    s.add_actor("c", CMD, "context_handlers.watch", pythonpath=[HANDLERS], runtime_timeout="2s", timeout=60)
    sent = time.time()
    s.send(["c"], {"mark": mark})
    errors = s.wait_for("error-end", 1, timeout=30)
    deadline = time.time() + 5
    while not os.path.exists(mark) and time.time() < deadline:
        time.sleep(0.01)
    seen = os.path.exists(mark)
    after = float(open(mark).read()) - sent if seen else None
    print("B: the sidecar's answer: %s; the handler saw cancelled(): %s%s" % (
        json.dumps(errors[0]["payload"]["error"]) if errors else None, seen,
        " %.3f s after the message was sent" % after if seen else ""))
    s.remove_actor("c")
    return seen


if __name__ == "__main__":
    with Stack() as stack:
        ok = recovery(stack) and cancellation(stack)
    sys.exit(0 if ok else 1)
