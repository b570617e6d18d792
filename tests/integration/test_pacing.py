"""Pacing shared through a blob in Azurite: several processes, each with several threads, never
put more than the limit into any window between them, and a 429 pauses every one of them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from broker.pacing import SharedWindowLimiter, WindowLimiter

ROOT = Path(__file__).resolve().parents[2]
LIMIT, PER = 20, 2.0  # the vault's shape (300 per 10 s), scaled down to keep the test short
# the stamps below are taken after take() returns, on a machine that may be busy: more slack
# than production's 0.3 s between a permit's time and the moment its stamp is taken

TAKER = """
import json, sys, threading, time
from azure.storage.blob import BlobServiceClient
from broker.pacing import SharedWindowLimiter
conn, blob, limit, per, seconds, threads = sys.argv[1:7]
container = BlobServiceClient.from_connection_string(conn).get_container_client("broker-leases")
pacer = SharedWindowLimiter(container, blob, int(limit), float(per), slack=0.6)
stamps, lock = [], threading.Lock()
end = time.time() + float(seconds)
def run():
    while time.time() < end:
        pacer.take()
        with lock:
            stamps.append(time.time())
workers = [threading.Thread(target=run) for _ in range(int(threads))]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"stamps": stamps, "claims": pacer.claims, "conflicts": pacer.conflicts}))
"""


def most_in_any_window(stamps: list[float], per: float) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - per:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_processes_sharing_the_blob_stay_under_the_limit_together(azurite):
    blob = f"pacing/test-{uuid.uuid4().hex}.json"
    processes = [subprocess.Popen(
        [sys.executable, "-c", TAKER, azurite, blob, str(LIMIT), str(PER), "6", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err[-2000:] for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    stamps = [t for r in reports for t in r["stamps"]]

    assert most_in_any_window(stamps, PER) <= LIMIT
    # and the limit is used, not wasted: about LIMIT per PER over the run, shared by all three
    assert len(stamps) >= 0.7 * LIMIT * 6 / PER
    assert all(r["stamps"] for r in reports)  # every process got permits


def test_one_process_alone_would_overshoot_per_instance_pacing(azurite):
    """What the shared blob fixes: three processes pacing themselves alone put three times the
    limit into a window."""
    stamps: list[float] = []
    pacers = [WindowLimiter(LIMIT, PER) for _ in range(3)]
    end = time.monotonic() + PER
    for pacer in pacers:
        while time.monotonic() < end and len(pacer._taken) < LIMIT:
            pacer.take()
            stamps.append(time.monotonic())
    assert most_in_any_window(stamps, PER) > LIMIT


def test_a_429_seen_by_one_process_pauses_the_others(azurite):
    container = BlobServiceClient.from_connection_string(azurite).get_container_client(
        "broker-leases")
    blob = f"pacing/test-{uuid.uuid4().hex}.json"
    first = SharedWindowLimiter(container, blob, LIMIT, PER)
    second = SharedWindowLimiter(container, blob, LIMIT, PER)
    first.take()
    first.throttled(1.5)
    # its next claim writes the pause into the blob, then waits it out
    waiter = threading.Thread(target=first.take)
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    second.take()
    waiter.join()
    assert time.monotonic() - started >= 0.8  # the other process waited for the pause too


def test_a_throttled_local_pacer_waits_out_retry_after():
    pacer = WindowLimiter(LIMIT, PER)
    pacer.take()
    pacer.throttled(0.6)
    assert pacer.take() >= 0.5
