#!/usr/bin/env python3
"""Hostile clients for scripts/load/hostile.sh: hold CONNECTIONS connections to veto, spread
over several loopback source addresses (127.0.0.2, .3, ...; each address stays below veto's
per-address cap), half of them sending headers that never finish, half announcing a form body
that never finishes. A connection the server closes (its timeouts) is opened again at once, so
the count held stays near CONNECTIONS for the whole run. Prints a JSON summary at the end.

    hostile.py HOST:PORT TENANT CONNECTIONS SECONDS
"""
import asyncio
import json
import sys

PER_SOURCE = 480  # below veto's default VETO_MAX_CONNECTIONS_PER_IP (512)


async def hold(host, port, source, body, tenant, stats, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.2)
            continue
        stats["opened"] += 1
        stats["held"] += 1
        try:
            if body:
                writer.write(
                    (f"POST /t/{tenant}/oauth2/revoke HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: 30000\r\n\r\ntoken=").encode())
            else:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            await writer.drain()
            # Hold it until the server gives up on it (or the run ends).
            done = asyncio.ensure_future(reader.read(65536))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if done.done():
                stats["closed_by_server"] += 1
            for f in (done, stopped):
                f.cancel()
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            stats["held"] -= 1
            writer.close()


async def main():
    addr, tenant, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    host, port = addr.rsplit(":", 1)
    stats = {"opened": 0, "held": 0, "closed_by_server": 0, "connect_errors": 0, "peak_held": 0}
    stop = asyncio.Event()
    tasks = []
    for i in range(n):
        source = f"127.0.0.{2 + i // PER_SOURCE}"
        tasks.append(asyncio.create_task(hold(host, int(port), source, i % 2 == 1, tenant, stats, stop)))
        if i % 200 == 199:
            await asyncio.sleep(0.01)
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        stats["peak_held"] = max(stats["peak_held"], stats["held"])
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(stats))


asyncio.run(main())
