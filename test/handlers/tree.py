"""A handler that starts processes, for the process-tree tests: `act` does what payload["do"] says."""
import json
import os
import stat
import struct
import subprocess
import time


def act(payload):
    return ACTIONS[payload["do"]](payload)


def spawn(payload):
    """Start helpers that would outlive the handler, record their pids, then sleep or crash."""
    same_group = subprocess.Popen(["sleep", "1000"])
    own_session = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    # a grandchild in yet another session: its parent is not the handler
    nested = subprocess.Popen(["sh", "-c", "sleep 1000 & wait"], start_new_session=True)
    pids = {"handler": os.getpid(), "children": [same_group.pid, own_session.pid, nested.pid]}
    with open(payload["pidfile"] + ".tmp", "w") as f:
        json.dump(pids, f)
    os.rename(payload["pidfile"] + ".tmp", payload["pidfile"])
    if payload.get("crash"):
        time.sleep(payload["crash"])  # time for the test to see them
        os._exit(1)
    if payload.get("stubborn"):  # swallows the time limit's interruption: only the hard stage ends it
        while True:
            try:
                time.sleep(1000)
            except TimeoutError:
                pass
    time.sleep(payload.get("s", 1000))
    return pids


def orphan(payload):
    """Leave a helper behind whose parent has exited (it finishes 50 ms later)."""
    subprocess.run(["sh", "-c", "sleep 0.05 &"], check=True)
    if payload.get("crash"):
        subprocess.Popen(["sh", "-c", "sleep 0.05 &"]).wait()
        os._exit(1)
    return {"pid": os.getpid()}


def run(payload):
    """What a handler's own subprocess calls see: real exit codes, signals that work."""
    code = subprocess.run(["sh", "-c", "exit 7"]).returncode
    sleeper = subprocess.Popen(["sleep", "30"])
    sleeper.terminate()
    return {"code": code, "terminated": sleeper.wait()}


def corrupt(payload):
    """Write a 2 GiB length prefix into every socket the shim holds (its channel), then return."""
    hit = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):
                # With "head": the three bytes every real shim message starts with, so only the length is wrong
                os.write(fd, struct.pack(">I", 2 ** 31) + (b"\x81\xa1t" if payload.get("head") else b""))
                hit.append(fd)
        except OSError:
            pass
    time.sleep(payload.get("s", 0))
    return {"wrote_to": hit}


def pid(payload):
    return {"pid": os.getpid()}


ACTIONS = {"spawn": spawn, "orphan": orphan, "run": run, "corrupt": corrupt, "pid": pid}
