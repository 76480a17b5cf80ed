"""How long the gateway's batcher really holds a lone request for ``max_queue_delay_ms: 2``.

    .venv/bin/python benches/batch_delay_check.py

Starts a gateway (from this interpreter) with a 2 ms batching route in front of the test
suite's recording backend, sends 400 one-row requests one at a time, 1 ms apart, and prints the
mean of ``tensorgate_batch_queue_delay_seconds`` (enqueue to batch sent) from ``/metrics``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from recorder import running_recorder
from servers import start_gateway

REQUESTS = 400
DELAY_MS = 2


def main() -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    with running_recorder() as backend:
        route = {
            "name": "m",
            "backend": {"url": backend.url},
            "batching": {"max_batch_size": 32, "max_queue_delay_ms": DELAY_MS},
        }
        config = {"access_log": "off", "health_check_interval_s": 0, "models": [route]}
        with start_gateway(config) as gateway, httpx.Client(base_url=gateway.http_url) as client:
            for _ in range(REQUESTS):
                client.post("/v2/models/m/infer", json=body).raise_for_status()
                time.sleep(0.001)
            text = client.get("/metrics").text
    name = "tensorgate_batch_queue_delay_seconds"
    total, count = (
        float(re.search(rf'{name}_{part}\{{model="m"\}} (\S+)', text).group(1))  # type: ignore[union-attr]
        for part in ("sum", "count")
    )
    mean_us = total / count * 1e6
    print(f"max_queue_delay_ms {DELAY_MS}: mean queue delay {mean_us:.0f} µs over {count:.0f}")


if __name__ == "__main__":
    main()
