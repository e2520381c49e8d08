#!/usr/bin/env python3
"""Ledger benchmarks against the real release binary on loopback:

1. batch revocation: POST /revocations/batch with 10,000 items, repeated until N rows are stored
   (docs/architecture.md budget: a batch of 10,000 in <= 1 s);
2. start-up with N revocations in the store: time from exec to the `listening on` line
   (budget: <= 5 s for 1M), and the server's resident memory after start.

Usage: scripts/bench/ledger.py [--total 1000000] [--binary target/release/veto]
Bounded: it stops after --total rows, and every request has a timeout.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ADMIN = "bench-admin-" + uuid.uuid4().hex


def start(binary, data_dir):
    env = dict(os.environ, VETO_LISTEN="127.0.0.1:0", VETO_DATA_DIR=data_dir,
               VETO_BOOTSTRAP_ADMIN_KEY=ADMIN, VETO_LOG="warn")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    elapsed = time.monotonic() - t0
    if not line.startswith("listening on "):
        p.kill()
        sys.exit(f"server did not start: {line!r}")
    return p, "http://" + line.split()[-1], elapsed


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body, separators=(",", ":")).encode(),
                                 headers={"Authorization": "Bearer " + ADMIN,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read() or b"null")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=1_000_000)
    ap.add_argument("--binary", default="target/release/veto")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p, base, _ = start(a.binary, d)
        try:
            call(base, "POST", "/v1/tenants", {"id": "bench"})
            times = []
            exp = "2099-01-01T00:00:00Z"
            for _ in range(a.total // 10_000):
                # jti, expiry and a short reason: 10,000 such items fit in the default 1 MiB
                # body limit (longer items need VETO_BODY_LIMIT raised).
                items = [{"jti": str(uuid.uuid4()), "expires_at": exp, "reason": "bench"}
                         for _ in range(10_000)]
                t0 = time.monotonic()
                status, out = call(base, "POST", "/v1/tenants/bench/revocations/batch", {"revocations": items})
                times.append(time.monotonic() - t0)
                assert status == 200 and out["created"] == 10_000, out
            rss_before = rss_mib(p.pid)
        finally:
            p.terminate()
            p.wait(timeout=30)
        times.sort()
        med = times[len(times) // 2]
        print(f"batch of 10,000 revocations: median {med*1000:.0f} ms, max {times[-1]*1000:.0f} ms "
              f"over {len(times)} batches ({10_000/med:,.0f} revocations/s)")
        print(f"rss after writing {a.total:,} revocations: {rss_before:.0f} MiB")
        startups = []
        for _ in range(3):
            p, base, elapsed = start(a.binary, d)
            status, ready = call(base, "GET", "/readyz")
            rss = rss_mib(p.pid)
            p.terminate()
            p.wait(timeout=30)
            startups.append(elapsed)
        print(f"start-up with {a.total:,} revocations: {min(startups):.2f} s best, "
              f"{max(startups):.2f} s worst of 3; index holds {ready.get('revocations_indexed')}; rss {rss:.0f} MiB")


if __name__ == "__main__":
    main()
