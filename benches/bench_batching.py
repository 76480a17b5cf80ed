"""Dynamic batching benchmark (issue 4): tensorgate's batcher against MLServer's, same run.

    .venv/bin/python benches/bench_batching.py --python /tmp/benchvenv-batch/bin/python

The model is a simulated accelerator (``benches/backends_batching/accelerator.py``): a call on N
rows blocks for ACCEL_FIXED_MS + N * ACCEL_PER_ROW_US (2 ms + 20 µs: one row 2.02 ms, a batch of
32 2.64 ms) in a ``time.sleep``, so it costs the machine no CPU; calls never overlap. The same
code runs in a KServe ModelServer (``backends_batching/kserve_model.py``, a sync ``predict``) and
in MLServer (``backends_batching/mlserver_runtime.py``). Both count the rows of every call and
answer the counters on a second model, ``stats``, so every row of the tables reports the mean
batch the backend actually received and how busy the "device" was. Every client request is one
row: V2 JSON ``x`` FP32 ``[1,4]``.

Sections (``--only``, default all):

ceiling  wrk sends batch-32 requests ``[32,4]`` straight to the KServe model at a few
         concurrencies; the best rows/s is the backend's batched ceiling. One more row sends
         them through the gateway without batching (the hop's own cost, not counted).
sweep    at each client concurrency (1, 8, 32, 128), wrk -> tensorgate with batching
         (max_batch_size 32, max_queue_delay_ms 2, and "auto" with target_latency_ms 50) ->
         KServe; tensorgate without batching -> KServe; MLServer with adaptive batching
         (max_batch_size 32, max_batch_time 0.005 s; parallel_workers 0, its faster setting
         on one core), no gateway; and KServe directly. The highest concurrency's rows also
         rerun the ceiling (batch-32, one connection) between them, for per-round ratios. The
         targets (>= 0.9x the ceiling, >= 2x MLServer at equal or lower p99) are printed for
         the highest concurrency.
open     Poisson arrivals (``benches/open_loop.py``: requests from independent clients, sent at
         their arrival times whatever the answers) at each of OPEN_RATES requests per second,
         through the gateway without batching, with max_queue_delay_ms 2 and with "auto":
         p50/p90/p99 from the scheduled arrival, and the mean batch the backend received.
overhead at concurrency 1, p50 through the gateway with batching at max_queue_delay_ms 0
         against the same gateway without batching, in front of a fixed-response nginx (the
         precise measure) and in front of the KServe model. The difference is what batching
         adds per request beyond the configured delay (target <= 20 µs). A 2 ms-delay route in
         front of nginx shows how long a lone request really waits.

Placement (2 cores): backends (KServe, MLServer, nginx) on BACKEND_CPUS (0); the gateway on
GATEWAY_CPUS (1) and wrk on CLIENT_CPUS (1). The gateway runs from BENCH_PYTHON, an interpreter
with a *release* build of tensorgate (see benches/RESULTS.md); this script and KServe run from
``.venv``, MLServer from ``.venv-mlserver``. When that build rejects a ``batching:`` key
(``tensorgate check-config``), the batching rows are skipped and reported as such.

Each timed row gets one WARMUP-second wrk run (discarded), then REPS rounds of DURATION seconds,
interleaved across the rows of a concurrency; req/s and latencies are medians over the rounds,
CPU, calls and rows are totalled over them. Rows that would overrun BUDGET_S are skipped.

Knobs (flag, or environment variable): --duration / DURATION (5 s), --reps / REPS (3),
--overhead-reps / OVERHEAD_REPS (3), --warmup / WARMUP (1 s), --python / BENCH_PYTHON
(/tmp/benchvenv-batch/bin/python), --backend-cpus / BACKEND_CPUS (0), --gateway-cpus / GATEWAY_CPUS
(1), --client-cpus / CLIENT_CPUS (1), --budget / BUDGET_S (590 s), --only / ONLY
(ceiling,sweep,overhead,open), --concurrency / CONCURRENCY (1,8,32,128), --open-rates /
OPEN_RATES (100,300), --inflight / INFLIGHT
(max_inflight_batches, 2), --mlserver-workers / MLSERVER_WORKERS (MLServer parallel_workers, 0),
ACCEL_FIXED_MS (2), ACCEL_PER_ROW_US (20).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_gateway import (
    OTHER_NOTE_PERCENT,
    Array,
    Row,
    Settings,
    _sigterm,
    describe_build,
    fmt,
    log,
    matrix,
    pin,
    post_check,
    ratio,
    row_sums_check,
    run_wrk,
    start_nginx,
    start_tensorgate,
    v2_request,
)
from servers import HOST, MLSERVER, Server, _start, free_ports

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ROOT / "benches" / "backends_batching"
SECTIONS = ("ceiling", "sweep", "overhead", "open")
#: Rows of a client request / of a ceiling request; columns of every row.
ROWS_PER_REQUEST, CEILING_ROWS, COLS = 1, 32, 4
MAX_BATCH = 32
CEILING_CONNS = (1, 2, 4)
PAIRED = f"KServe direct, batch-{CEILING_ROWS} requests (ceiling, paired with this table)"
OVERHEAD_CONNS = 1
STATS_BODY = b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[0]}]}'
T_START = time.monotonic()


# --------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Knobs:
    """What bench_gateway's Settings does not carry."""

    settings: Settings
    backend_cpus: str
    overhead_reps: int
    concurrency: tuple[int, ...]
    inflight: int
    mlserver_workers: int
    fixed_ms: float
    per_row_us: float
    open_rates: tuple[float, ...]


def parse_knobs(argv: Sequence[str] | None = None) -> Knobs:
    env = os.environ
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=int(env.get("DURATION", 5)))
    parser.add_argument("--reps", type=int, default=int(env.get("REPS", 3)))
    parser.add_argument("--overhead-reps", type=int, default=int(env.get("OVERHEAD_REPS", 3)))
    parser.add_argument("--warmup", type=int, default=int(env.get("WARMUP", 1)))
    parser.add_argument(
        "--python", default=env.get("BENCH_PYTHON", "/tmp/benchvenv-batch/bin/python")
    )
    parser.add_argument("--backend-cpus", default=env.get("BACKEND_CPUS", "0"))
    parser.add_argument("--gateway-cpus", default=env.get("GATEWAY_CPUS", "1"))
    parser.add_argument("--client-cpus", default=env.get("CLIENT_CPUS", "1"))
    parser.add_argument("--budget", type=float, default=float(env.get("BUDGET_S", 590)))
    parser.add_argument("--only", default=env.get("ONLY", ",".join(SECTIONS)))
    parser.add_argument("--concurrency", default=env.get("CONCURRENCY", "1,8,32,128"))
    parser.add_argument("--inflight", type=int, default=int(env.get("INFLIGHT", 2)))
    parser.add_argument("--mlserver-workers", type=int, default=int(env.get("MLSERVER_WORKERS", 0)))
    parser.add_argument("--open-rates", default=env.get("OPEN_RATES", "100,300"))
    args = parser.parse_args(argv)
    only = tuple(s for s in args.only.split(",") if s)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if args.mlserver_workers not in (0, 1):
        parser.error("--mlserver-workers: 0 or 1 (the stats model must share the model's process)")
    settings = Settings(
        duration=args.duration,
        reps=args.reps,
        warmup=args.warmup,
        python=args.python,
        proxy_cpus=args.gateway_cpus,
        client_cpus=args.client_cpus,
        budget_s=args.budget,
        only=only,
        perf_s=0,
        run_dir=Path(tempfile.mkdtemp(prefix="bench-batching-")),
    )
    return Knobs(
        settings=settings,
        backend_cpus=args.backend_cpus,
        overhead_reps=args.overhead_reps,
        concurrency=tuple(int(c) for c in args.concurrency.split(",") if c),
        inflight=args.inflight,
        mlserver_workers=args.mlserver_workers,
        fixed_ms=float(env.get("ACCEL_FIXED_MS", 2)),
        per_row_us=float(env.get("ACCEL_PER_ROW_US", 20)),
        open_rates=tuple(float(r) for r in args.open_rates.split(",") if r),
    )


def left(settings: Settings) -> float:
    """Seconds left of the budget (counted from this script's start)."""
    return settings.budget_s - (time.monotonic() - T_START)


# --------------------------------------------------------------------------------- backends


def accel_env(knobs: Knobs) -> dict[str, str]:
    return {"ACCEL_FIXED_MS": str(knobs.fixed_ms), "ACCEL_PER_ROW_US": str(knobs.per_row_us)}


def start_kserve_accel(knobs: Knobs) -> Server:
    """``backends_batching/kserve_model.py`` (logging off) on BACKEND_CPUS."""
    http_port, grpc_port = free_ports(2)
    argv = [
        *pin(knobs.backend_cpus),
        sys.executable,
        str(BACKENDS / "kserve_model.py"),
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
        "--configure_logging=false",
        "--enable_latency_logging=false",
    ]
    env = {
        **os.environ,
        **accel_env(knobs),
        # FastAPI 0.165 warns about kserve's ORJSONResponse on every request.
        "PYTHONWARNINGS": "ignore:ORJSONResponse is deprecated",
    }
    run_dir = knobs.settings.run_dir
    ports = (http_port, grpc_port)
    return _start(Server, "kserve", argv, run_dir, ports, "/v2/models/m/ready", env=env, timeout=60)


def start_mlserver_accel(knobs: Knobs) -> Server:
    """MLServer from ``.venv-mlserver``: model ``m`` with adaptive batching 32 / 5 ms, ``stats``."""
    if not MLSERVER.exists():
        raise RuntimeError(f"{MLSERVER} is missing: run scripts/test.sh to create .venv-mlserver")
    repo = knobs.settings.run_dir / "mlserver-repo"
    settings = {
        "debug": False,
        "host": HOST,
        "load_models_at_startup": True,
        "parallel_workers": knobs.mlserver_workers,
        "metrics_endpoint": None,
    }
    tensor_x = {"name": "x", "datatype": "FP32", "shape": [-1, -1]}
    tensor_sum = {"name": "sum", "datatype": "FP32", "shape": [-1]}
    models = {
        "m": {
            "name": "m",
            "implementation": "mlserver_runtime.AcceleratorRuntime",
            "max_batch_size": MAX_BATCH,
            "max_batch_time": 0.005,
            "inputs": [tensor_x],
            "outputs": [tensor_sum],
        },
        "stats": {"name": "stats", "implementation": "mlserver_runtime.StatsRuntime"},
    }
    for name, model in models.items():
        (repo / name).mkdir(parents=True, exist_ok=True)
        (repo / name / "model-settings.json").write_text(json.dumps(model, indent=1))
    (repo / "settings.json").write_text(json.dumps(settings, indent=1))
    http_port, grpc_port = free_ports(2)
    env = {
        **os.environ,
        **accel_env(knobs),
        "PYTHONPATH": str(BACKENDS),
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_GRPC_PORT": str(grpc_port),
    }
    env.pop("VIRTUAL_ENV", None)
    argv = [*pin(knobs.backend_cpus), str(MLSERVER), "start", str(repo)]
    return _start(
        Server, "mlserver", argv, knobs.settings.run_dir, (http_port, grpc_port),
        "/v2/models/m/ready", env=env, cwd=repo, timeout=90,
    )  # fmt: skip


def _no_sizes() -> Array:
    return np.zeros(0, dtype=np.int64)


@dataclass
class Stats:
    """The accelerator's cumulative counters, or their change between two readings."""

    calls: int = 0
    rows: int = 0
    busy_us: int = 0
    sizes: Array = field(default_factory=_no_sizes)
    """``sizes[k]``: calls with ``k`` rows."""

    def __sub__(self, other: Stats) -> Stats:
        return Stats(self.calls - other.calls, self.rows - other.rows,
                     self.busy_us - other.busy_us, self.sizes - other.sizes)  # fmt: skip

    def __add__(self, other: Stats) -> Stats:
        sizes = other.sizes if not self.sizes.size else self.sizes + other.sizes
        return Stats(self.calls + other.calls, self.rows + other.rows,
                     self.busy_us + other.busy_us, sizes)  # fmt: skip

    def max_rows(self) -> int:
        """The largest call."""
        nonzero = np.flatnonzero(self.sizes)
        return int(nonzero[-1]) if nonzero.size else 0

    def common_sizes(self, count: int = 4) -> str:
        """The ``count`` most frequent call sizes: "32 rows x 120 calls (95 %), ..."."""
        if not self.calls:
            return ""
        order = np.argsort(self.sizes, kind="stable")[::-1][:count]
        return ", ".join(
            f"{k} rows x {self.sizes[k]} ({100 * self.sizes[k] / self.calls:.0f} %)"
            for k in order
            if self.sizes[k]
        )


def read_stats(server: Server) -> Stats:
    """The backend's cumulative counters."""
    got: dict[str, list[int]] = {}

    def keep(body: bytes) -> None:
        got.update({o["name"]: o["data"] for o in json.loads(body)["outputs"]})

    post_check(f"{server.http_url}/v2/models/stats/infer", STATS_BODY, keep)
    sizes = np.asarray(got["sizes"], dtype=np.int64)
    return Stats(got["calls"][0], got["rows"][0], got["busy_us"][0], sizes)


def settled_stats(server: Server, timeout: float = 3.0) -> Stats:
    """:func:`read_stats` once two readings 0.1 s apart agree (requests that wrk abandoned at
    the end of a run still reach the model for a while)."""
    deadline = time.monotonic() + timeout
    last = read_stats(server)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read_stats(server)
        if now.calls == last.calls:
            return now
        last = now
    return last


# --------------------------------------------------------------------------------- rows


@dataclass
class BRow(Row):
    """A bench_gateway Row that also reads its backend's counters around every round."""

    backend: Server | None = None
    stats: Stats = field(default_factory=Stats)
    rows_per_request: int = ROWS_PER_REQUEST

    def mean_batch(self) -> float | None:
        return self.stats.rows / self.stats.calls if self.stats.calls else None

    def busy_percent(self) -> float | None:
        wall = sum(r.wall_s for r in self.rounds)
        return 100 * self.stats.busy_us / 1e6 / wall if wall and self.backend else None

    def rows_per_s(self) -> float:
        return self.median("rps") * self.rows_per_request

    def cpu(self, group: str) -> float | None:
        return self.cpu_percent(group) if self.cpu_groups.get(group) else None


def concurrent_check(url: str, threads: int = 48) -> str:
    """``threads`` concurrent requests, each with its own values; every answer must hold its own
    row sums (a batcher that mixed rows up would fail). Returns "" or the first failure."""
    bodies = [matrix(ROWS_PER_REQUEST, COLS, seed=100 + i) for i in range(threads)]
    barrier = threading.Barrier(threads)

    def one(x: Array) -> str:
        barrier.wait(timeout=30)
        try:
            post_check(url, v2_request(x), row_sums_check(x))
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return ""

    with ThreadPoolExecutor(threads) as pool:
        failures = [f for f in pool.map(one, bodies) if f]
    return failures[0] if failures else ""


def measure(rows: Sequence[BRow], settings: Settings, reps: int, *, prepare: bool = True) -> None:
    """Runs ``reps`` interleaved rounds of ``rows``, reading the backend's counters around each.

    With ``prepare``, first checks every row (one request; for a one-row request at more than one
    connection also concurrent distinct requests) and warms it up; a row that fails is marked
    ``failed`` and never run."""
    if prepare:
        for row in rows:
            try:
                if row.check is not None and row.body is not None:
                    post_check(row.url, row.body.read_bytes(), row.check)
                if row.rows_per_request == ROWS_PER_REQUEST and row.conns > 1:
                    failure = concurrent_check(row.url)
                    if failure:
                        raise ValueError(f"concurrent distinct requests: {failure}")
            except Exception as error:
                row.failed = True
                row.notes.append(f"FAILED check: {type(error).__name__}: {str(error)[:200]}")
                log(f"{row.label} -c{row.conns}: check failed: {error}")
        for row in rows:
            if not row.failed and left(settings) > settings.warmup + 20 and settings.warmup > 0:
                run_wrk(row, settings.warmup, settings)
    for _ in range(reps):
        for row in rows:
            if row.failed:
                continue
            if left(settings) < settings.duration + 20:
                if "skipped: time budget exhausted" not in row.notes:
                    row.notes.append("skipped: time budget exhausted")
                continue
            before = settled_stats(row.backend) if row.backend else None
            try:
                result = run_wrk(row, settings.duration, settings)
            except Exception as error:
                row.notes.append(f"round {len(row.rounds) + 1}: {type(error).__name__}: "
                                 f"{str(error)[:150]}")  # fmt: skip
                log(f"{row.label} -c{row.conns} failed: {error}")
                continue
            if row.backend is not None and before is not None:
                row.stats = row.stats + (settled_stats(row.backend) - before)
            row.rounds.append(result)
            if result.errors:
                row.notes.append(f"round {len(row.rounds)}: {result.errors} errors")
            other = 100 * result.other_cpu_s / result.wall_s
            if other > OTHER_NOTE_PERCENT:
                row.notes.append(
                    f"round {len(row.rounds)}: other processes {other:.0f} % of a core"
                )
            log(
                f"{row.label} -c{row.conns} round {len(row.rounds)}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms; mean batch so far "
                f"{fmt(row.mean_batch(), '.1f')}"
            )


def commands(rows: Sequence[Row]) -> None:
    """One wrk command per label (other rows of the label differ in ``-cN`` only)."""
    print("\nCommands (one round; BODY_FILE is generated in the run directory):\n")
    conns: dict[str, list[int]] = {}
    for row in rows:
        if row.command:
            if row.label not in conns:
                print(f"- {row.label}: `{row.command}`")
            conns.setdefault(row.label, []).append(row.conns)
    others = sorted({c for cs in conns.values() for c in cs[1:]})
    if others:
        listed = ", ".join(f"-c{c}" for c in others)
        print(f"\nThe other concurrencies use the same commands with {listed}.")


# --------------------------------------------------------------------------------- gateway


def batching(delay: float | str, inflight: int) -> dict[str, Any]:
    """The route's ``batching:`` block (max_batch_size 32)."""
    policy: dict[str, Any] = {"max_batch_size": MAX_BATCH, "max_queue_delay_ms": delay}
    if delay == "auto":
        policy["target_latency_ms"] = 50
    policy.update(max_queue_size=1024, queue_timeout_ms=5000, max_inflight_batches=inflight)
    return policy


def batching_support(knobs: Knobs) -> dict[str, str]:
    """For each delay tested (2, "auto", 0): "" if BENCH_PYTHON's tensorgate accepts it, else
    why not (``tensorgate check-config``)."""
    answers = {}
    for delay in (2, "auto", 0):
        config = {
            "models": [
                {"name": "m", "backend": {"url": "http://127.0.0.1:9", "protocol": "v2"},
                 "batching": batching(delay, knobs.inflight)},
            ]
        }  # fmt: skip
        path = knobs.settings.run_dir / f"check-batching-{delay}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        done = subprocess.run(
            [knobs.settings.python, "-m", "tensorgate", "check-config", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        message = (done.stderr or done.stdout).strip().splitlines()
        answers[str(delay)] = "" if done.returncode == 0 else (message or ["rejected"])[-1][:200]
        log(f"batching max_queue_delay_ms {delay}: {answers[str(delay)] or 'supported'}")
    return answers


@dataclass
class Bench:
    """The servers every section shares (started once)."""

    knobs: Knobs
    kserve: Server
    gateway: Server | None
    support: dict[str, str]
    routes: dict[str, str]
    """Gateway route name -> what it is (only routes this build accepts)."""
    mlserver: Server | None = None
    nginx: Server | None = None

    @property
    def settings(self) -> Settings:
        return self.knobs.settings


def start_servers(knobs: Knobs, stack: contextlib.ExitStack, sections: Sequence[str]) -> Bench:
    settings = knobs.settings
    support = batching_support(knobs)
    kserve = stack.enter_context(start_kserve_accel(knobs))
    mlserver = stack.enter_context(start_mlserver_accel(knobs)) if "sweep" in sections else None
    nginx = None
    if "overhead" in sections:
        answer = {
            "model_name": "m",
            "outputs": [{"name": "sum", "datatype": "FP32", "shape": [1], "data": [OVERHEAD_SUM]}],
        }
        response = json.dumps(answer, separators=(",", ":"))
        nginx = stack.enter_context(
            start_nginx("backend", settings, knobs.backend_cpus, response=response)
        )
    ks = {"url": kserve.http_url, "protocol": "v2", "model": "m"}
    wanted: dict[str, tuple[dict[str, Any], float | str | None, str]] = {
        "ks-b2": (ks, 2, "tensorgate batching 32 / 2 ms -> KServe"),
        "ks-auto": (ks, "auto", "tensorgate batching 32 / auto (target 50 ms) -> KServe"),
        "ks-nb": (ks, None, "tensorgate no batching -> KServe"),
        "ks-b0": (ks, 0, "tensorgate batching 32 / 0 ms -> KServe"),
    }
    if nginx is not None:
        ng = {"url": nginx.http_url, "protocol": "v2", "model": "m"}
        wanted["ng-nb"] = (ng, None, "tensorgate no batching -> nginx")
        wanted["ng-b0"] = (ng, 0, "tensorgate batching 32 / 0 ms -> nginx")
        wanted["ng-b2"] = (ng, 2, "tensorgate batching 32 / 2 ms -> nginx")
    models, routes = [], {}
    for name, (backend, delay, label) in wanted.items():
        entry: dict[str, Any] = {"name": name, "backend": dict(backend)}  # no YAML aliases
        if delay is not None:
            if support[str(delay)]:
                continue
            entry["batching"] = batching(delay, knobs.inflight)
        models.append(entry)
        routes[name] = label
    config = {"access_log": "off", "models": models}
    gateway = stack.enter_context(
        start_tensorgate("tensorgate", config, settings, settings.proxy_cpus)
    )
    return Bench(knobs, kserve, gateway, support, routes, mlserver, nginx)


def infer(server: Server, model: str) -> str:
    return f"{server.http_url}/v2/models/{model}/infer"


# --------------------------------------------------------------------------------- sections


OVERHEAD_X = matrix(ROWS_PER_REQUEST, COLS, seed=7)
OVERHEAD_SUM = float(OVERHEAD_X.astype(np.float32).sum(dtype=np.float32))


def section_ceiling(bench: Bench) -> tuple[list[str], float | None]:
    """Batch-32 requests straight to the KServe model: the backend's best rows/s. One more row
    sends them through the gateway's route without batching (the hop's own cost, not counted
    in the ceiling)."""
    settings = bench.settings
    x = matrix(CEILING_ROWS, COLS, seed=2)
    body = settings.run_dir / f"v2_{CEILING_ROWS}x{COLS}.json"
    body.write_bytes(v2_request(x))
    groups: dict[str, tuple[int, ...]] = {"gateway": (), "backend": (bench.kserve.pid,)}
    direct = f"KServe direct, batch-{CEILING_ROWS} requests"
    rows = [
        BRow(direct, infer(bench.kserve, "m"), body, conns, groups, row_sums_check(x),
             backend=bench.kserve, rows_per_request=CEILING_ROWS)
        for conns in CEILING_CONNS
    ]  # fmt: skip
    if bench.gateway is not None and "ks-nb" in bench.routes:
        rows.append(
            BRow(f"via tensorgate without batching, batch-{CEILING_ROWS} requests (not counted)",
                 infer(bench.gateway, "ks-nb"), body, 2,
                 {**groups, "gateway": (bench.gateway.pid,)}, row_sums_check(x),
                 backend=bench.kserve, rows_per_request=CEILING_ROWS)
        )  # fmt: skip
    measure(rows, settings, settings.reps)
    print(f"\n### Ceiling: batch-{CEILING_ROWS} requests `[{CEILING_ROWS},{COLS}]` to the "
          "KServe model\n")  # fmt: skip
    print(
        f"KServe on CPU {bench.knobs.backend_cpus}, wrk (and the gateway) on CPU "
        f"{settings.client_cpus}; {settings.reps} rounds of {settings.duration} s per row, "
        "interleaved.\n"
    )
    print("| path | wrk conns | req/s | rows/s | p50 ms | p99 ms | mean rows/call | "
          "accelerator busy % | backend CPU % | errors | notes |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    best: float | None = None
    for row in rows:
        if not row.rounds:
            print(f"| {row.label} | {row.conns} | - | - | - | - | - | - | - | - | "
                  f"{'; '.join(row.notes)} |")  # fmt: skip
            continue
        if row.label == direct:
            best = max(best or 0.0, row.rows_per_s())
        print(
            f"| {row.label} | {row.conns} | {row.median('rps'):,.1f} | {row.rows_per_s():,.0f} | "
            f"{row.median('p50_ms'):,.2f} | {row.median('p99_ms'):,.2f} | "
            f"{fmt(row.mean_batch(), '.1f')} | {fmt(row.busy_percent(), '.0f')} | "
            f"{fmt(row.cpu('backend'), '.0f')} | {sum(r.errors for r in row.rounds)} | "
            f"{'; '.join(row.notes)} |"
        )
    commands(rows)
    verdict = f"backend's best batched throughput: {fmt(best, ',.0f')} rows/s"
    print(f"\n- {verdict}")
    return [verdict], best


def sweep_rows(bench: Bench, body: Path, check: Callable[[bytes], None]) -> list[list[BRow]]:
    """One list of rows per concurrency."""
    gw = bench.gateway
    assert gw is not None
    ks_groups: dict[str, tuple[int, ...]] = {"gateway": (gw.pid,), "backend": (bench.kserve.pid,)}
    tables = []
    for conns in bench.knobs.concurrency:
        rows = [
            BRow(bench.routes[name], infer(gw, name), body, conns, ks_groups, check,
                 backend=bench.kserve)
            for name in ("ks-b2", "ks-auto", "ks-nb") if name in bench.routes
        ]  # fmt: skip
        if bench.mlserver is not None:
            rows.append(
                BRow("MLServer adaptive batching 32 / 5 ms", infer(bench.mlserver, "m"), body,
                     conns, {"gateway": (), "backend": (bench.mlserver.pid,)}, check,
                     backend=bench.mlserver)
            )  # fmt: skip
        rows.append(
            BRow("KServe direct, no batching", infer(bench.kserve, "m"), body, conns,
                 {"gateway": (), "backend": (bench.kserve.pid,)}, check, backend=bench.kserve)
        )  # fmt: skip
        tables.append(rows)
    if tables:
        # The ceiling again, interleaved with the highest concurrency: per-round ratios.
        x = matrix(CEILING_ROWS, COLS, seed=2)
        ceiling_body = bench.settings.run_dir / f"v2_{CEILING_ROWS}x{COLS}.json"
        ceiling_body.write_bytes(v2_request(x))
        tables[-1].append(
            BRow(PAIRED, infer(bench.kserve, "m"), ceiling_body, CEILING_CONNS[0],
                 {"gateway": (), "backend": (bench.kserve.pid,)}, row_sums_check(x),
                 backend=bench.kserve, rows_per_request=CEILING_ROWS)
        )  # fmt: skip
    return tables


def section_sweep(bench: Bench, ceiling: float | None) -> list[str]:
    """Client concurrency sweep: tensorgate with and without batching, MLServer, KServe."""
    settings = bench.settings
    x = matrix(ROWS_PER_REQUEST, COLS, seed=1)
    body = settings.run_dir / f"v2_{ROWS_PER_REQUEST}x{COLS}.json"
    body.write_bytes(v2_request(x))
    tables = sweep_rows(bench, body, row_sums_check(x))
    # Interleave: every round visits each concurrency and each row once.
    for rep in range(settings.reps):
        for rows in tables:
            measure(rows, settings, 1, prepare=rep == 0)
    print(f"\n### Concurrency sweep: one-row requests `[{ROWS_PER_REQUEST},{COLS}]`\n")
    print(
        f"Backends on CPU {bench.knobs.backend_cpus}, gateway on CPU {settings.proxy_cpus}, wrk "
        f"on CPU {settings.client_cpus}. wrk -t1; {settings.reps} rounds of {settings.duration} "
        "s per row, interleaved. 'mean batch' = rows per model call at the backend; "
        "'accelerator busy' = share of the wall time the simulated device was working; "
        f"'of ceiling' = rows/s against the batch-{CEILING_ROWS} ceiling "
        f"({fmt(ceiling, ',.0f')} rows/s).\n"
    )
    print(
        "| system | conns | req/s | p50 ms | p99 ms | mean batch | max batch | accelerator busy % "
        "| of ceiling | gateway CPU % | wrk CPU % | backend CPU % | errors | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rows in tables:
        for row in rows:
            if not row.rounds:
                print(f"| {row.label} | {row.conns} | - | - | - | - | - | - | - | - | - | - | - "
                      f"| {'; '.join(row.notes)} |")  # fmt: skip
                continue
            of_ceiling = ratio(row.rows_per_s(), ceiling or 0.0)
            print(
                f"| {row.label} | {row.conns} | {row.median('rps'):,.0f} | "
                f"{row.median('p50_ms'):,.2f} | {row.median('p99_ms'):,.2f} | "
                f"{fmt(row.mean_batch(), '.1f')} | {row.stats.max_rows()} | "
                f"{fmt(row.busy_percent(), '.0f')} | "
                f"{fmt(None if of_ceiling is None else 100 * of_ceiling, '.0f')}"
                f"{'' if of_ceiling is None else ' %'} | "
                f"{fmt(row.cpu('gateway'), '.0f')} | {row.client_percent():.0f} | "
                f"{fmt(row.cpu('backend'), '.0f')} | {sum(r.errors for r in row.rounds)} | "
                f"{'; '.join(row.notes)} |"
            )
    batched = [r for rows in tables for r in rows if r.rounds and (r.mean_batch() or 0) > 1.05]
    if batched:
        print("\nCall sizes the backend received (most frequent first; rows x calls):\n")
        print("| system | conns | model calls | call sizes |")
        print("|---|---:|---:|---|")
        for row in batched:
            print(f"| {row.label} | {row.conns} | {row.stats.calls:,} | "
                  f"{row.stats.common_sizes()} |")  # fmt: skip
    verdicts = sweep_verdicts(bench, tables, ceiling)
    print()
    for line in verdicts:
        print(f"- {line}")
    commands([r for rows in tables for r in rows])
    return verdicts


def sweep_verdicts(bench: Bench, tables: list[list[BRow]], ceiling: float | None) -> list[str]:
    """The issue's targets, as same-run ratios at the highest concurrency (>= 2x max batch)."""
    verdicts = []
    rows = {r.label: r for r in tables[-1]} if tables else {}
    top = bench.knobs.concurrency[-1] if bench.knobs.concurrency else 0
    mls = rows.get("MLServer adaptive batching 32 / 5 ms")
    nb = rows.get(bench.routes.get("ks-nb", ""))
    paired = rows.get(PAIRED)
    if paired is not None and paired.rounds:
        # The best of the ceiling section and of its rerun among these rows.
        ceiling = max(ceiling or 0.0, paired.rows_per_s())
        verdicts.append(f"ceiling used for the ratios: {ceiling:,.0f} rows/s")
    for name in ("ks-b2", "ks-auto"):
        if name not in bench.routes:
            why = bench.support["2" if name == "ks-b2" else "auto"]
            verdicts.append(f"{name}: not measured: this build rejects the config ({why})")
            continue
        row = rows.get(bench.routes[name])
        if row is None or not row.rounds:
            continue
        label = bench.routes[name].removesuffix(" -> KServe")
        if top < 2 * MAX_BATCH:
            verdicts.append(f"highest concurrency {top} < {2 * MAX_BATCH}: targets not judged")
        of = ratio(row.rows_per_s(), ceiling or 0.0)
        rounds = ""
        if paired is not None and paired.rounds:
            pairs = zip(row.rounds, paired.rounds, strict=False)
            per_round = [r.rps / (c.rps * CEILING_ROWS) for r, c in pairs if c.rps]
            rounds = "; round by round against the paired ceiling row: " + ", ".join(
                f"{v:.2f}x" for v in per_round
            )
        verdicts.append(
            f"-c{top} {label}: {row.rows_per_s():,.0f} rows/s = {fmt(of, '.3f')}x the backend's "
            f"batched ceiling ({'met' if of is not None and of >= 0.9 else 'NOT met'}: ≥ 0.90x)"
            + rounds
        )
        if mls is not None and mls.rounds:
            gain = ratio(row.median("rps"), mls.median("rps"))
            p99, mls_p99 = row.median("p99_ms"), mls.median("p99_ms")
            ok = gain is not None and gain >= 2 and p99 <= mls_p99
            verdicts.append(
                f"-c{top} {label}: {fmt(gain)}x MLServer's req/s, p99 {p99:,.1f} ms vs "
                f"MLServer {mls_p99:,.1f} ms ({'met' if ok else 'NOT met'}: ≥ 2x at equal or "
                "lower p99)"
            )
        if nb is not None and nb.rounds:
            verdicts.append(
                f"-c{top} {label}: {fmt(ratio(row.median('rps'), nb.median('rps')))}x "
                "tensorgate without batching"
            )
    return verdicts


def section_overhead(bench: Bench) -> list[str]:
    """p50 at concurrency 1 with batching (delay 0) vs without, same gateway, same backend; and,
    on nginx, with a 2 ms delay (what a lone request really waits)."""
    settings = bench.settings
    gw = bench.gateway
    assert gw is not None
    body = settings.run_dir / "v2_overhead.json"
    body.write_bytes(v2_request(OVERHEAD_X))
    check = row_sums_check(OVERHEAD_X)
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    rows: dict[str, BRow] = {}
    for prefix, backend in (("ng", bench.nginx), ("ks", bench.kserve)):
        if backend is None:
            continue
        groups[prefix] = {"gateway": (gw.pid,), "backend": (backend.pid,)}
        for route in (f"{prefix}-nb", f"{prefix}-b0", f"{prefix}-b2"):
            if route in bench.routes and not (prefix == "ks" and route == "ks-b2"):
                rows[route] = BRow(
                    bench.routes[route], infer(gw, route), body, OVERHEAD_CONNS,
                    groups[prefix], check, backend=bench.kserve if prefix == "ks" else None,
                )  # fmt: skip
    measure(list(rows.values()), settings, bench.knobs.overhead_reps)
    print("\n### Batching overhead: concurrency 1, max_queue_delay_ms 0 vs no batching\n")
    print(
        f"Same gateway (CPU {settings.proxy_cpus}), same backend (CPU {bench.knobs.backend_cpus}"
        f"), wrk -t1 -c{OVERHEAD_CONNS}; {bench.knobs.overhead_reps} rounds of "
        f"{settings.duration} s per row, interleaved. The nginx backend answers a fixed "
        "one-row V2 response at once, so its rows isolate the gateway; at concurrency 1 every "
        "batch is one request.\n"
    )
    print("| route | req/s | p50 µs | p99 µs | gateway CPU µs/req | mean batch | errors | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows.values():
        if not row.rounds:
            print(f"| {row.label} | - | - | - | - | - | - | {'; '.join(row.notes)} |")
            continue
        print(
            f"| {row.label} | {row.median('rps'):,.0f} | {row.median('p50_ms') * 1e3:,.0f} | "
            f"{row.median('p99_ms') * 1e3:,.0f} | {row.cpu_per_request_us('gateway'):,.1f} | "
            f"{fmt(row.mean_batch(), '.2f')} | {sum(r.errors for r in row.rounds)} | "
            f"{'; '.join(row.notes)} |"
        )

    def added(route: str, base: str) -> tuple[float, list[float]] | None:
        """Median p50 difference in µs, and the per-round differences (rounds interleave)."""
        row, ref = rows.get(route), rows.get(base)
        if row is None or ref is None or not (row.rounds and ref.rounds):
            return None
        pairs = zip(ref.rounds, row.rounds, strict=False)
        diffs = [(b.p50_ms - n.p50_ms) * 1e3 for n, b in pairs]
        return (row.median("p50_ms") - ref.median("p50_ms")) * 1e3, diffs

    verdicts = []
    for prefix, name in (("ng", "nginx"), ("ks", "KServe")):
        if prefix not in groups:
            continue
        got = added(f"{prefix}-b0", f"{prefix}-nb")
        if got is None:
            why = bench.support["0"] or "no rounds"
            verdicts.append(f"{name} backend: batching overhead not measured ({why})")
            continue
        us, diffs = got
        cpu = rows[f"{prefix}-b0"].cpu_per_request_us("gateway") - rows[
            f"{prefix}-nb"
        ].cpu_per_request_us("gateway")
        # KServe's own p50 moves by hundreds of µs between rounds: only nginx can judge 20 µs.
        judged = f"{'met' if us <= 20 else 'NOT met'}: ≤ 20 µs" if prefix == "ng" else "not judged"
        verdicts.append(
            f"{name} backend: batching (delay 0) adds {us:,.0f} µs to p50 (rounds "
            f"{', '.join(f'{d:,.0f}' for d in diffs)}) and {cpu:,.1f} µs of gateway CPU per "
            f"request ({judged})"
        )
    delayed = added("ng-b2", "ng-nb")
    if delayed is not None:
        us, diffs = delayed
        verdicts.append(
            f"nginx backend: max_queue_delay_ms 2 adds {us:,.0f} µs to a lone request's p50 "
            f"(rounds {', '.join(f'{d:,.0f}' for d in diffs)}): {us - 2000:,.0f} µs beyond "
            "the configured 2 ms"
        )
    print()
    for line in verdicts:
        print(f"- {line}")
    commands(list(rows.values()))
    return verdicts


OPEN_ROUTES = ("ks-nb", "ks-b2", "ks-auto")
OPEN_LOOP = ROOT / "benches" / "open_loop.py"


def section_open(bench: Bench) -> list[str]:
    """Poisson arrivals (``benches/open_loop.py``) at each of OPEN_RATES: p50/p90/p99 through
    the gateway without batching, with the fixed 2 ms delay and with ``auto``, and the mean
    batch the backend received. Requests from independent clients do not wait for each other's
    answers, so this is where a batcher's waiting is not paid back by callers coming back."""
    settings, knobs = bench.settings, bench.knobs
    gw = bench.gateway
    assert gw is not None
    body = settings.run_dir / "v2_open.json"
    body.write_bytes(v2_request(OVERHEAD_X))
    routes = [route for route in OPEN_ROUTES if route in bench.routes]
    results: dict[tuple[float, str], list[tuple[dict[str, float], Stats]]] = {}
    for rate in knobs.open_rates:
        for rep in range(settings.reps):
            # Interleaved, the order turned each round, so drift hits every route alike.
            for route in routes[rep % len(routes) :] + routes[: rep % len(routes)]:
                if left(settings) < settings.duration + 10:
                    log(f"open: budget spent, skipping {route} at {rate}/s")
                    continue
                before = settled_stats(bench.kserve)
                argv = [
                    *pin(settings.client_cpus), sys.executable, str(OPEN_LOOP),
                    infer(gw, route), str(body), "--rate", str(rate),
                    "--duration", str(settings.duration), "--seed", str(rep),
                ]  # fmt: skip
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    log(f"open: {route} at {rate}/s failed: {done.stderr.strip()[-300:]}")
                    continue
                outcome = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault((rate, route), []).append(
                    (outcome, settled_stats(bench.kserve) - before)
                )
    print("\n### Open loop: Poisson arrivals, one-row requests\n")
    print(
        f"`benches/open_loop.py` on CPU {settings.client_cpus} sends each request at its "
        f"arrival time (no waiting for answers) for {settings.duration} s per round, "
        f"{settings.reps} rounds per row, interleaved; latency counts from the scheduled "
        "arrival. Medians over rounds; mean batch from the backend's own counters.\n"
    )
    print("| rate | route | sent/s | p50 ms | p90 ms | p99 ms | mean batch | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    p50: dict[tuple[float, str], float] = {}
    for (rate, route), rounds in results.items():
        median = {k: float(np.median([o[k] for o, _ in rounds])) for k in rounds[0][0]}
        stats = sum((st for _, st in rounds), Stats())
        batch = stats.rows / stats.calls if stats.calls else None
        p50[(rate, route)] = median["p50_ms"]
        print(
            f"| {rate:g}/s | {bench.routes[route]} | {median['rate']:,.0f} | "
            f"{median['p50_ms']:.2f} | {median['p90_ms']:.2f} | {median['p99_ms']:.2f} | "
            f"{fmt(batch, '.2f')} | {sum(int(o['errors']) for o, _ in rounds)} |"
        )
    verdicts = []
    for rate in knobs.open_rates:
        base = p50.get((rate, "ks-nb"))
        for route in ("ks-auto", "ks-b2"):
            got = p50.get((rate, route))
            if base is not None and got is not None:
                verdicts.append(
                    f"{rate:g} req/s: {bench.routes[route]} p50 {got:.2f} ms vs "
                    f"{base:.2f} ms without batching ({got - base:+.2f} ms)"
                )
    print()
    for line in verdicts:
        print(f"- {line}")
    return verdicts


# --------------------------------------------------------------------------------- main


def main() -> None:
    knobs = parse_knobs()
    settings = knobs.settings
    signal.signal(signal.SIGTERM, _sigterm)
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk nginx util-linux)")
    if importlib.util.find_spec("kserve") is None:
        raise SystemExit("kserve is not importable here: run this script with .venv/bin/python")
    build = describe_build(settings)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print("## bench_batching.py run\n")
    print(f"- tensorgate: {build}")
    print(
        f"- simulated accelerator: {knobs.fixed_ms:g} ms per call + {knobs.per_row_us:g} µs "
        f"per row (batch of {MAX_BATCH}: {knobs.fixed_ms + knobs.per_row_us * MAX_BATCH / 1e3:g}"
        f" ms); MLServer parallel_workers {knobs.mlserver_workers}; gateway "
        f"max_inflight_batches {knobs.inflight}"
    )
    print(f"- load average at start: {' '.join(load)}; CPUs: {os.cpu_count()}")
    print(f"- run directory (logs, configs, bodies): {settings.run_dir}")
    summary: dict[str, list[str]] = {}
    with contextlib.ExitStack() as stack:
        bench = start_servers(knobs, stack, settings.only)
        log("servers up:", ", ".join(bench.routes))
        ceiling: float | None = None
        for name in settings.only:
            log(f"section {name}")
            try:
                if name == "ceiling":
                    summary[name], ceiling = section_ceiling(bench)
                elif name == "sweep":
                    summary[name] = section_sweep(bench, ceiling)
                elif name == "open":
                    summary[name] = section_open(bench)
                else:
                    summary[name] = section_overhead(bench)
            except Exception as error:
                log(f"section {name} failed: {type(error).__name__}: {error}")
                summary[name] = [f"FAILED: {type(error).__name__}: {str(error)[:300]}"]
    log("servers stopped")
    load = Path("/proc/loadavg").read_text().split()[:3]
    elapsed = time.monotonic() - T_START
    print(f"\n### Summary ({elapsed:.0f} s, load average at end {' '.join(load)})\n")
    for name, lines in summary.items():
        for line in lines:
            print(f"- {name}: {line}")
    (settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
