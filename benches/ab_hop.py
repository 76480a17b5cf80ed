"""Paired A/B of two tensorgate builds on the proxy hop of ``bench_gateway.py``.

    .venv/bin/python benches/ab_hop.py --a <venv A>/bin/python --b <venv B>/bin/python [--rounds 6]

On a shared VM whole runs drift by tens of percent, so a change worth 10-20 % does not show
between two runs of ``bench_gateway.py``. Here both gateways run at once, pinned to the same CPU
(0), in front of one fixed-response nginx backend (CPU 1), and wrk (CPU 1) loads them in turn,
3 s each, order swapped every round, at 16 and at 1 connection. Each round gives B's CPU per
request over A's measured moments apart; the median of those ratios is the result.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics

import bench_gateway as bench
import numpy as np

SECONDS = 3
CONNS = (16, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", required=True, help="Python of the venv with build A")
    parser.add_argument("--b", required=True, help="Python of the venv with build B")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    settings = bench.parse_settings(["--only", "hop"])
    with contextlib.ExitStack() as stack:
        x = bench.matrix(1, 16, seed=1)
        body = settings.run_dir / "v2_1x16.json"
        body.write_bytes(bench.v2_request(x))
        total = float(x.astype(np.float32).sum(dtype=np.float32))
        output = {"name": "sum", "datatype": "FP32", "shape": [1], "data": [total]}
        answer = json.dumps({"model_name": "m", "id": "1", "outputs": [output]})
        backend = stack.enter_context(
            bench.start_nginx("backend", settings, settings.client_cpus, response=answer)
        )
        config = {
            "access_log": "off",
            "models": [{"name": "m", "backend": {"url": backend.http_url, "protocol": "v2"}}],
        }
        gateways = {
            name: stack.enter_context(
                bench.start_tensorgate(
                    f"gateway-{name}",
                    config,
                    dataclasses.replace(settings, python=python),
                    settings.proxy_cpus,
                )
            )
            for name, python in (("A", args.a), ("B", args.b))
        }
        check = bench.equals_check(answer.encode())
        cpu: dict[tuple[str, int], list[float]] = {(n, c): [] for n in gateways for c in CONNS}
        for round_ in range(args.rounds):
            order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
            for conns in CONNS:
                for name in order:
                    gateway = gateways[name]
                    url = gateway.http_url + "/v2/models/m/infer"
                    row = bench.Row(name, url, body, conns, {"proxy": (gateway.pid,)}, check)
                    measured = bench.run_wrk(row, SECONDS, settings)
                    cpu[(name, conns)].append(1e6 * measured.cpu_s["proxy"] / measured.requests)
        print("| wrk conns | A CPU µs/req | B CPU µs/req | B / A per round | median B / A |")
        print("|---:|---:|---:|---|---:|")
        for conns in CONNS:
            a, b = cpu[("A", conns)], cpu[("B", conns)]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            rounds = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"| {conns} | {statistics.median(a):.1f} | {statistics.median(b):.1f} "
                f"| {rounds} | **{statistics.median(ratios):.2f}** |"
            )


if __name__ == "__main__":
    main()
