#!/usr/bin/env python3
"""Propagation of a revocation between two veto nodes on one PostgreSQL (design budget: p99 <=
100 ms on loopback).

Starts two release `veto serve` processes (A and B) on a fresh database of the PostgreSQL server
at --database-url (default: $VETO_TEST_DATABASE_URL, which scripts/test.sh and
`scripts/lib.sh ensure_postgres` provide), issues --n tokens, then for each: revokes it on A and,
from the moment A acknowledges, asks B (verify, keep-alive) in a tight loop until B rejects it.
Prints p50/p90/p99/max of that delay. With --redis-url, both nodes also use Redis.

Usage: scripts/bench/propagation.py [--n 300] [--binary target/release/veto]
Bounded: every wait has a timeout.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

ADMIN = "bench-admin-" + uuid.uuid4().hex


def fresh_database(admin_url):
    name = "veto_bench_" + uuid.uuid4().hex
    u = urllib.parse.urlparse(admin_url)
    subprocess.run(["psql", "-X", "-q", admin_url, "-c", f"CREATE DATABASE {name}"], check=True)
    return u._replace(path="/" + name).geturl()


def start(binary, env_extra, data_dir):
    env = dict(os.environ, VETO_LISTEN="127.0.0.1:0", VETO_DATA_DIR=data_dir,
               VETO_BOOTSTRAP_ADMIN_KEY=ADMIN, VETO_LOG="warn",
               VETO_PUBLIC_URL="http://veto.bench", **env_extra)
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        sys.exit(f"server did not start: {line!r}")
    host, port = line.split()[-1].rsplit(":", 1)
    return p, http.client.HTTPConnection(host, int(port), timeout=30)


def call(conn, method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100 * (len(sorted_ms) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--binary", default="target/release/veto")
    ap.add_argument("--database-url", default=os.environ.get("VETO_TEST_DATABASE_URL"))
    ap.add_argument("--redis-url", default=None)
    a = ap.parse_args()
    if not a.database_url:
        sys.exit("no PostgreSQL: pass --database-url or set VETO_TEST_DATABASE_URL")
    db = fresh_database(a.database_url)
    extra = {"VETO_DATABASE_URL": db}
    if a.redis_url:
        extra["VETO_REDIS_URL"] = a.redis_url
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "master.key")
        subprocess.run([a.binary, "gen-master-key"], stdout=open(key, "w"), check=True)
        extra["VETO_MASTER_KEY_FILE"] = key
        pa, ca = start(a.binary, extra, d)
        pb, cb = start(a.binary, extra, d)
        try:
            tokens = []
            while len(tokens) < a.n:
                k = min(1000, a.n - len(tokens))
                s, r = call(ca, "POST", "/v1/tenants/default/tokens/batch",
                            {"requests": [{"sub": f"u{i}", "ttl_seconds": 3600} for i in range(k)]})
                assert s == 200, r
                tokens += [x["token"] for x in r["results"]]
            delays = []
            for t in tokens:
                s, r = call(ca, "POST", "/v1/tenants/default/revocations", {"token": t})
                assert s == 201, (s, r)
                acked = time.perf_counter()
                while True:
                    s, r = call(cb, "POST", "/v1/tenants/default/tokens/verify", {"token": t})
                    if not r["active"]:
                        assert r["reason"] == "revoked", r
                        break
                    if time.perf_counter() - acked > 30:
                        sys.exit("B did not see a revocation within 30 s")
                delays.append((time.perf_counter() - acked) * 1000)
            delays.sort()
            print(json.dumps({
                "revocations": len(delays),
                "redis": bool(a.redis_url),
                "p50_ms": round(pct(delays, 50), 2),
                "p90_ms": round(pct(delays, 90), 2),
                "p99_ms": round(pct(delays, 99), 2),
                "max_ms": round(delays[-1], 2),
            }))
        finally:
            for p in (pa, pb):
                p.kill()
                p.wait()
            subprocess.run(["psql", "-X", "-q", a.database_url, "-c", f"DROP DATABASE IF EXISTS {db.rsplit('/', 1)[1]}"])


if __name__ == "__main__":
    main()
