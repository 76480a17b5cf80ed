"""An open-loop load generator: POSTs a body at Poisson arrival times, whatever the answers.

    python benches/open_loop.py URL BODY_FILE --rate 200 --duration 5 [--seed 1]

wrk keeps each connection in a closed loop (the next request leaves when the last one is
answered), so it cannot show what a batcher costs traffic that does not wait for it: requests
from many independent clients. This sends request i at the i-th arrival of a Poisson process of
``--rate`` per second, on as many connections as are needed, and times each one from its
scheduled arrival (so a slow server cannot hide its lag; the client's own timer lag, well under
a millisecond, is counted too and is the same for every route). Prints one JSON line:
``{"sent", "errors", "rate", "connections", "p50_ms", "p90_ms", "p99_ms"}``; an answer other
than 200 is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


class Connections:
    """HTTP/1.1 keep-alive connections to one server, opened as arrivals need them. A raw
    client: httpx's pool cost milliseconds per request at a few hundred per second, which
    measured the client instead of the server."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.path = parsed.path
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def exchange(self, request: bytes) -> int:
        """Sends `request` and reads the whole answer: its status. A connection is reused only
        after a whole answer framed by Content-Length without `Connection: close`."""
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length is None:
                raise ValueError("an answer without Content-Length")
            await reader.readexactly(int(length.group(1)))
        except BaseException:
            writer.close()
            raise
        if re.search(rb"(?i)\r\nconnection:\s*close", head):
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def run(url: str, body: bytes, rate: float, duration: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    connections = Connections(url)
    request = connections.request(body)
    latencies: list[float] = []
    errors = 0

    async def one(at: float) -> None:
        nonlocal errors
        try:
            ok = await connections.exchange(request) == 200
        except (OSError, asyncio.IncompleteReadError, ValueError):
            ok = False
        if ok:
            latencies.append(time.perf_counter() - at)
        else:
            errors += 1

    tasks = []
    start = time.perf_counter()
    at = start
    while (at := at + float(rng.exponential(1 / rate))) < start + duration:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    connections.close()
    # No answer at all gives no latency (NaN), not a flattering zero.
    ms = np.asarray(latencies) * 1e3 if latencies else np.full(1, np.nan)
    return {
        "sent": len(tasks),
        "errors": errors,
        "rate": len(tasks) / duration,
        "connections": connections.opened,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    body = args.body.read_bytes()
    print(json.dumps(asyncio.run(run(args.url, body, args.rate, args.duration, args.seed))))


if __name__ == "__main__":
    main()
