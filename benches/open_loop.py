"""An open-loop load generator: POSTs a body at Poisson arrival times, whatever the answers.

    python benches/open_loop.py URL BODY_FILE --rate 200 --duration 5 [--seed 1]

wrk keeps each connection in a closed loop (the next request leaves when the last one is
answered), so it cannot show what a batcher costs traffic that does not wait for it: requests
from many independent clients. This sends request i at the i-th arrival of a Poisson process of
``--rate`` per second, on as many connections as are needed, and times each one from its
scheduled arrival (so a slow client or server cannot hide its own lag). Prints one JSON line:
``{"sent", "errors", "rate", "p50_ms", "p90_ms", "p99_ms"}``; every answer must be 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np


async def run(url: str, body: bytes, rate: float, duration: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def one(at: float) -> None:
            nonlocal errors
            try:
                response = await client.post(url, content=body, headers=headers)
                ok = response.status_code == 200
            except httpx.HTTPError:
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
    ms = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return {
        "sent": len(tasks),
        "errors": errors,
        "rate": len(tasks) / duration,
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
