"""Messages through the real Go sidecar and a private RabbitMQ (../shared/pipeline's stack.py) to this runtime.

    python3 test/pipeline/driver.py [--pipeline DIR] [--node PATH | --runtime CMD] [CASE ...]   (after npm run build)

One broker for the run; each case starts its actors (runtime + sidecar each), sends, collects what reaches
asya-happy-end and asya-error-end, stops its actors, and prints one JSON line {"case": NAME, ...} with what it
saw (or {"case": NAME, "error": ...}). test/sidecar.test.ts asserts on those lines; this file only observes.
The pipeline: --pipeline, else $ASYA_PIPELINE_DIR, else <repo>/../shared/pipeline (after its prepare.sh).
Every process started carries ASYA_TEST_RUN when set (scripts/run-tests.mjs stops what a run leaves behind).
"""
import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMD = ["node", os.path.join(ROOT, "dist", "cli.js")]
HANDLERS = os.path.join(ROOT, "test", "handlers")
EXAMPLE = os.path.join(ROOT, "examples", "pipeline")
PYTHONPATH = [HANDLERS, EXAMPLE]
PIPELINE = ["preprocessor", "classifier", "translator"]
TEXTS = ["Hello World", "  Goodbye my friend ", "The cat sat"]


def marker_env():
    run = os.environ.get("ASYA_TEST_RUN")
    return {"ASYA_TEST_RUN": run} if run else {}


def until(what, probe, timeout):
    """Poll probe() every 5 ms until it returns something truthy; raise after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.005)


class Cases:
    def __init__(self, stack):
        self.s = stack
        self.scratch = tempfile.mkdtemp(prefix="asya-sc-")

    def collect(self, expected, timeout=60.0):
        """What reaches happy-end and error-end, until `expected` messages in all."""
        happy, errors = [], []

        def enough():
            happy.extend(self.s.drain("happy-end"))
            errors.extend(self.s.drain("error-end"))
            return len(happy) + len(errors) >= expected
        until("%d messages in happy-end + error-end" % expected, enough, timeout)
        return happy, errors

    def run(self, actors, body):
        """Start the actors ({name, handler, [mode, env, runtime_timeout]}), run body(them), stop them whatever
        happens; then what else reached happy-end or error-end (nothing, when the counts are exact)."""
        started = []
        try:
            for a in actors:
                env = dict(marker_env(), **a.pop("env", {}))
                started.append(self.s.add_actor(a.pop("name"), CMD, a.pop("handler"), pythonpath=PYTHONPATH, env=env,
                                                sidecar_env=marker_env(), **a))
            out = body(started)
        finally:
            codes = {a.name: self.s.remove_actor(a.name) for a in started}
        out["exit_codes"] = {k: {"sidecar": v[0], "runtime": v[1]} for k, v in codes.items()}
        for q in ("happy-end", "error-end"):
            out["left_in_" + q] = len(self.s.drain(q))
        return out

    # ------------------------------------------------------------------------------------------ cases
    def pipeline_payload(self):
        return self.run([{"name": "preprocessor", "handler": "preprocessor.process"},
                         {"name": "classifier", "handler": "classifier.TextClassifier.process"},
                         {"name": "translator", "handler": "translator.process"}], self._texts)

    def pipeline_envelope(self):
        handlers = ["pipeline_handlers.preprocess_envelope", "pipeline_handlers.ClassifierEnvelope.process",
                    "pipeline_handlers.translate_envelope"]
        actors = [{"name": name, "handler": handler, "mode": "envelope"} for name, handler in zip(PIPELINE, handlers)]
        return self.run(actors, self._texts)

    def _texts(self, _actors):
        for i, text in enumerate(TEXTS):
            self.s.send(PIPELINE, {"text": text}, id="text-%d" % i)
        happy, errors = self.collect(len(TEXTS))
        return {"happy": sorted(happy, key=lambda m: m["id"]), "errors": errors}

    def error(self):
        def body(_actors):
            self.s.send(["preprocessor", "fails", "translator"], {"text": "Hello World"}, id="err-1")
            happy, errors = self.collect(1)
            return {"happy": happy, "errors": errors}
        return self.run([{"name": "preprocessor", "handler": "preprocessor.process"},
                         {"name": "fails", "handler": "basic.raise_value"},
                         {"name": "translator", "handler": "translator.process"}], body)

    def fanout(self):
        def body(_actors):
            self.s.send(["split", "enrich"], {"n": 5}, id="fan")
            happy, errors = self.collect(5)
            return {"happy": sorted(happy, key=lambda m: m["id"]), "errors": errors}
        return self.run([{"name": "split", "handler": "pipeline_handlers.split"},
                         {"name": "enrich", "handler": "basic.enrich"}], body)

    def large(self):
        # 10 MiB of UTF-8: random base64, and every 4 KiB the characters JSON escapes or encodes in several bytes
        rng = random.Random(26)
        special = '"\\/\n\t\x00\x1f\u00e9\u6f22\U0001f600\u2028'
        chunks, size = [], 0
        while size < 10 * 2 ** 20:
            chunk = base64.b64encode(rng.getrandbits(3072 * 8).to_bytes(3072, "little")).decode() + special
            chunks.append(chunk)
            size += len(chunk.encode())
        blob = "".join(chunks).encode()[:10 * 2 ** 20].decode("utf-8", "ignore")
        sent = blob.encode()

        def body(_actors):
            t0 = time.monotonic()
            self.s.send(["echo"], {"blob": blob}, id="big")
            happy, errors = self.collect(1, timeout=120)
            seconds = time.monotonic() - t0
            got = happy[0]["payload"]["blob"].encode() if happy else b""
            return {"sent_bytes": len(sent), "sent_sha256": hashlib.sha256(sent).hexdigest(),
                    "got_bytes": len(got), "got_sha256": hashlib.sha256(got).hexdigest(),
                    "happy": [{k: v for k, v in m.items() if k != "payload"} for m in happy],
                    "payload_keys": sorted(happy[0]["payload"]) if happy else None,
                    "errors": [m["payload"].get("error") for m in errors], "seconds": round(seconds, 3)}
        return self.run([{"name": "echo", "handler": "basic.echo"}], body)

    def recovery(self, preload):
        """200 messages queued at once; three of them (the victims) block in the handler after writing the
        serving process's pid, which is then SIGKILLed; the others pass through."""
        n_messages, victims = 200, [40, 100, 160]
        victim_dir = tempfile.mkdtemp(dir=self.scratch)
        marks = os.path.join(victim_dir, "inits")
        env = {"PIPELINE_INIT_MARKS": marks}
        env.update({"ASYA_PRELOAD": "true", "ASYA_WORKERS": "2"} if preload else {"ASYA_WORKERS": "1"})

        def body(_actors):
            for n in range(n_messages):
                payload = {"n": n, "sleep": 0.002}
                if n in victims:
                    payload["victim"] = victim_dir
                self.s.send(["worker"], payload, id="m-%d" % n)
            killed = []
            for n in victims:
                path = os.path.join(victim_dir, str(n))
                until("message %d in the handler" % n, lambda: os.path.exists(path), 60)
                with open(path) as f:
                    pid = int(f.read())
                os.kill(pid, signal.SIGKILL)
                killed.append({"n": n, "pid": pid})
            happy, errors = self.collect(n_messages)
            # a replacement records its load when it starts; the last one may still be starting
            loads = 1 if preload else 1 + len(victims)
            try:
                until("%d loads" % loads, lambda: len(read_lines(marks)) >= loads, 10)
            except TimeoutError:
                pass  # the test reports the count
            return {"sent": n_messages, "killed": killed, "happy": [m["payload"] for m in happy],
                    "happy_ids": [m["id"] for m in happy],
                    "errors": [{"id": m["id"], "error": m["payload"].get("error"),
                                "details": m["payload"].get("details"),
                                "original_payload": m["payload"].get("original_payload")} for m in errors],
                    "queue_depth": self.s.depth("worker")}
        out = self.run([{"name": "worker", "handler": "pipeline_handlers.Worker.process", "env": env}], body)
        out["inits"] = [int(x) for x in read_lines(marks)]
        return out

    def cancel(self):
        """The sidecar gives up on the call after its ASYA_RUNTIME_TIMEOUT (2s), publishes the timeout to
        error-end and exits; the handler (context_handlers.watch) waits for context.cancelled()."""
        mark = os.path.join(self.scratch, "cancelled-mark")
        logs = {}

        def body(actors):
            watcher = actors[0]
            logs["runtime"] = watcher.runtime.log_path
            sent = time.time()
            self.s.send(["watcher"], {"mark": mark}, id="slow")
            happy, errors = self.collect(1, timeout=30)
            until("the handler's mark", lambda: os.path.exists(mark), 10)
            with open(mark) as f:
                seen = float(f.read())
            until("the sidecar's exit", lambda: not watcher.sidecar.running(), 10)
            return {"mark": mark, "happy": happy, "errors": errors, "cancelled_after_s": round(seen - sent, 3),
                    "sidecar_exit": watcher.sidecar.popen.returncode, "runtime_running": watcher.runtime.running()}
        out = self.run([{"name": "watcher", "handler": "context_handlers.watch", "runtime_timeout": "2s"}], body)
        out["runtime_log"] = [json.loads(line) for line in read_lines(logs["runtime"]) if line.startswith("{")]
        return out


def read_lines(path):
    try:
        with open(path) as f:
            return [line for line in f.read().split("\n") if line]
    except OSError:
        return []


CASES = {
    "pipeline-payload": Cases.pipeline_payload,
    "pipeline-envelope": Cases.pipeline_envelope,
    "error": Cases.error,
    "fanout": Cases.fanout,
    "large": Cases.large,
    "recovery-spawn": lambda c: c.recovery(preload=False),
    "recovery-preload": lambda c: c.recovery(preload=True),
    "cancel": Cases.cancel,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", default=os.environ.get("ASYA_PIPELINE_DIR")
                    or os.path.join(ROOT, "..", "shared", "pipeline"))
    ap.add_argument("cases", nargs="*", metavar="CASE", help="any of: %s (default: all)" % ", ".join(CASES))
    ap.add_argument("--node", default="node", help="the Node.js that runs dist/cli.js (default: node on PATH)")
    ap.add_argument("--runtime", help="another runtime's command instead (e.g. python3 ../shared/peer/asya_runtime.py),"
                                      " to see what the cases catch")
    args = ap.parse_args()
    CMD[:] = args.runtime.split() if args.runtime else [args.node, CMD[1]]
    for name in args.cases:
        if name not in CASES:
            ap.error("no case %s (cases: %s)" % (name, ", ".join(CASES)))
    sys.path.insert(0, os.path.abspath(args.pipeline))
    from stack import Stack
    names = args.cases or list(CASES)
    with Stack(management=False, quiet=True) as stack:
        cases = Cases(stack)
        try:
            for name in names:
                t0 = time.monotonic()
                try:
                    out = dict(CASES[name](cases))
                except Exception as exc:
                    out = {"error": "%s: %s" % (type(exc).__name__, exc), "traceback": traceback.format_exc()}
                out = dict({"case": name, "wall_s": round(time.monotonic() - t0, 3)}, **out)
                print(json.dumps(out), flush=True)
        finally:
            shutil.rmtree(cases.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
