"""Handlers for test/sidecar.test.ts: messages through the real Go sidecar and RabbitMQ (test/pipeline/driver.py)."""
import os
import time

import classifier
import preprocessor
import translator


def split(payload):
    """A generator: one output envelope per item, in order (fan-out)."""
    for i in range(payload["n"]):
        yield {"i": i, "of": payload["n"]}


# --- the seeds' pipeline (examples/pipeline) in envelope mode: the same steps, the whole envelope in and out,
# each actor moving route.current on and recording itself in route.metadata (which the sidecar carries).
def _step(envelope, name, step):
    route = dict(envelope["route"], current=envelope["route"]["current"] + 1)
    metadata = dict(route.get("metadata") or {})
    metadata["steps"] = list(metadata.get("steps", [])) + [name]
    route["metadata"] = metadata
    return {"id": envelope["id"], "route": route, "payload": step(envelope["payload"])}


def preprocess_envelope(envelope):
    return _step(envelope, "preprocessor", preprocessor.process)


class ClassifierEnvelope:
    def __init__(self):
        self.model = classifier.TextClassifier()

    def process(self, envelope):
        return _step(envelope, "classifier", self.model.process)


def translate_envelope(envelope):
    return _step(envelope, "translator", translator.process)


# --- recovery: a worker killed while messages flow
class Worker:
    """Records each load (PIPELINE_INIT_MARKS); a message with "victim": DIR writes DIR/<n> (this process's
    pid) and then waits for the SIGKILL the test sends it."""

    def __init__(self):
        self.loaded_in = os.getpid()
        marks = os.environ.get("PIPELINE_INIT_MARKS")
        if marks:
            with open(marks, "a") as f:
                f.write("%d\n" % os.getpid())

    def process(self, payload):
        victim = payload.get("victim")
        if victim:
            path = os.path.join(victim, str(payload["n"]))
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(path + ".tmp", path)
            time.sleep(60)
            return {"survived": payload["n"]}
        time.sleep(payload.get("sleep", 0))
        return {"pid": os.getpid(), "loaded_in": self.loaded_in, "n": payload["n"]}
