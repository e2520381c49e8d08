#!/usr/bin/env python3
"""Holds N revocation streams open against a veto (GET /v1/tenants/<t>/revocations/stream),
reading and discarding every event, until killed: idle subscribers for a load test to run
beside (scripts/load/introspect.sh with SUBSCRIBERS=N).

Usage: subscribers.py URL TENANT API_KEY N
Prints "open N" once every stream answered 200, then the number of events read on exit.
"""
import asyncio
import signal
import sys
from urllib.parse import urlparse


async def subscribe(host, port, tenant, key, opened, counts):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/tenants/{tenant}/revocations/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise SystemExit(f"stream refused: {status!r}")
    opened.release()
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("a stream ended")
        counts[0] += chunk.count(b"\n\n")


async def main():
    url, tenant, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    u = urlparse(url)
    opened = asyncio.Semaphore(0)
    counts = [0]
    tasks = [asyncio.create_task(subscribe(u.hostname, u.port, tenant, key, opened, counts))
             for _ in range(n)]
    for _ in range(n):
        await opened.acquire()
    print(f"open {n}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(f"events read {counts[0]}", flush=True)
    for t in tasks:
        t.cancel()


asyncio.run(main())
