#!/usr/bin/env python3
"""The floor under one durable revocation on the embedded store: a bare single-row INSERT per
transaction into a SQLite file opened with the settings veto's store uses
(crates/veto-store/src/sqlite/mod.rs, `SqliteStore::open`: WAL journal, synchronous=FULL,
foreign keys on, busy timeout 5 s; writes begin with BEGIN IMMEDIATE). The table has the
ledger's columns and primary key (tenant, jti) and none of its secondary indexes, audit event
or change row. One writer, because SQLite has one: peer of `scripts/load/revoke.sh` with one
connection; veto with 64 connections shares each fsync among the revocations queued behind it
(group commit), which a loop of single-row transactions cannot.

    python3 scripts/bench/peers/sqlite_insert.py DIR SECONDS

DIR must be on the file system veto's data dir would be on (fsync cost is the figure).
stdout: "inserts<TAB>N", "per_second<TAB>X", "p50_ms<TAB>X", "p99_ms<TAB>X", and
"fsync_p50_ms<TAB>X": the median of 50 bare fdatasync calls after an 8 KiB overwrite in DIR,
taken just before, what one durable commit cannot go below on this disk right now. (On the
project's VM that figure is about 4 ms while the cores are idle and about 0.1 ms while they are
busy: an idle virtual CPU seems to notice the completed flush only at the next timer tick, so a
lone writer waits longer than one among busy threads.)
"""
import os
import sqlite3
import sys
import time
import uuid

directory, seconds = sys.argv[1], float(sys.argv[2])

probe = os.path.join(directory, "fsync-probe")
fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
syncs = []
for _ in range(50):
    os.pwrite(fd, b"x" * 8192, 0)
    t0 = time.perf_counter_ns()
    os.fdatasync(fd)
    syncs.append(time.perf_counter_ns() - t0)
os.close(fd)
os.unlink(probe)
syncs.sort()
path = os.path.join(directory, "bare.sqlite")
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("PRAGMA foreign_keys=ON")
db.execute("PRAGMA busy_timeout=5000")
db.execute(
    "CREATE TABLE IF NOT EXISTS revocations (tenant TEXT NOT NULL, jti TEXT NOT NULL, sub TEXT,"
    " expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL, reason TEXT,"
    " revoked_by TEXT NOT NULL, metadata TEXT NOT NULL, until INTEGER,"
    " PRIMARY KEY (tenant, jti))"
)
latencies = []
start = time.perf_counter_ns()
end = start + int(seconds * 1e9)
while time.perf_counter_ns() < end:
    t0 = time.perf_counter_ns()
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO revocations VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        ("loadtest", str(uuid.uuid4()), "load-user", 4102444800, int(time.time()), "load", "bench", "{}"),
    )
    db.execute("COMMIT")
    latencies.append(time.perf_counter_ns() - t0)
took = (time.perf_counter_ns() - start) / 1e9
db.close()
latencies.sort()
print(f"inserts\t{len(latencies)}")
print(f"per_second\t{len(latencies) / took:.1f}")
print(f"p50_ms\t{latencies[len(latencies) // 2] / 1e6:.3f}")
print(f"p99_ms\t{latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e6:.3f}")
print(f"fsync_p50_ms\t{syncs[len(syncs) // 2] / 1e6:.3f}")
