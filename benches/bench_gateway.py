"""Gateway benchmarks (issue 3): tensorgate against nginx and KServe, same run, on 127.0.0.1.

    .venv/bin/python benches/bench_gateway.py [--only hop,large,inproc] [--duration 5] ...

Three sections, each printing a markdown table, its ratios and the exact wrk commands:

hop     wrk -> proxy -> fixed-response nginx backend, V2 JSON [1,16] FP32: tensorgate (a
        passthrough V2 route) against nginx ``proxy_pass``, and wrk -> backend directly; req/s,
        p50/p99, the proxy's CPU time per request and its added p50. The proxy runs on PROXY_CPUS,
        wrk and the backend on CLIENT_CPUS.
large   V2 JSON [64,1024] FP32 into tensorgate, forwarded to a V2 backend as the binary extension
        (``binary: true``) or unchanged as JSON (``binary: false``); backends KServe's ``sum`` and
        a second tensorgate serving ``tensorgate.demo:sum`` in-process. The gateway runs on
        PROXY_CPUS, the backends and wrk on CLIENT_CPUS.
inproc  ``tensorgate.demo:sum`` served in-process by tensorgate (python_workers 1 and 2) against
        KServe's ModelServer (per-request logging off), V2 JSON [1,16]; every server on
        PROXY_CPUS, wrk on CLIENT_CPUS.

The gateways run from BENCH_PYTHON, an interpreter with a *release* build of tensorgate
(``python3 -m venv /tmp/benchvenv && MATURIN_NO_INSTALL_RUST=1 /tmp/benchvenv/bin/pip install .``,
plus numpy pyyaml prometheus-client); this script and KServe run from ``.venv``. Each timed row
gets one WARMUP-second wrk run (discarded), then REPS rounds of DURATION seconds, interleaved
across the rows of a table so that drift hits them alike. req/s and latencies are medians over
the rounds; CPU time (utime + stime of every process in the server's process group, all threads,
from /proc) is totalled over the rounds and divided by the requests. Every server runs in its own
process group and is stopped by it; rows that would overrun BUDGET_S are skipped, not cut short.

Knobs (flag, or environment variable): --duration / DURATION (5 s), --reps / REPS (3),
--warmup / WARMUP (1 s), --python / BENCH_PYTHON (/tmp/benchvenv/bin/python), --proxy-cpus /
PROXY_CPUS (0), --client-cpus / CLIENT_CPUS (1), --budget / BUDGET_S (450 s), --only / ONLY
(hop,large,inproc), --perf / PERF (seconds of ``perf record`` on the hop gateway; 0 = off).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
sys.path.insert(0, str(ROOT / "tests"))

from servers import HOST, Gateway, Server, _start, free_ports, start_kserve  # noqa: E402

SECTIONS = ("hop", "large", "inproc")
#: A round where other processes used more than this (% of a core) gets a note: it is noisy.
OTHER_NOTE_PERCENT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()
Array = npt.NDArray[Any]
Check = Callable[[bytes], None]


def log(*parts: object) -> None:
    """Progress on stderr (stdout carries the tables)."""
    print(f"[{time.monotonic() - T0:6.1f}s]", *parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    duration: int
    reps: int
    warmup: int
    python: str
    proxy_cpus: str
    client_cpus: str
    budget_s: float
    only: tuple[str, ...]
    perf_s: int
    run_dir: Path

    def left(self) -> float:
        """Seconds left of the budget."""
        return self.budget_s - (time.monotonic() - T0)


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    env = os.environ
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=int(env.get("DURATION", 5)))
    parser.add_argument("--reps", type=int, default=int(env.get("REPS", 3)))
    parser.add_argument("--warmup", type=int, default=int(env.get("WARMUP", 1)))
    parser.add_argument("--python", default=env.get("BENCH_PYTHON", "/tmp/benchvenv/bin/python"))
    parser.add_argument("--proxy-cpus", default=env.get("PROXY_CPUS", "0"))
    parser.add_argument("--client-cpus", default=env.get("CLIENT_CPUS", "1"))
    parser.add_argument("--budget", type=float, default=float(env.get("BUDGET_S", 450)))
    parser.add_argument("--only", default=env.get("ONLY", ",".join(SECTIONS)))
    parser.add_argument("--perf", type=int, default=int(env.get("PERF", 0)))
    args = parser.parse_args(argv)
    only = tuple(s for s in args.only.split(",") if s)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    return Settings(
        duration=args.duration,
        reps=args.reps,
        warmup=args.warmup,
        python=args.python,
        proxy_cpus=args.proxy_cpus,
        client_cpus=args.client_cpus,
        budget_s=args.budget,
        only=only,
        perf_s=args.perf,
        run_dir=Path(tempfile.mkdtemp(prefix="bench-gateway-")),
    )


def pin(cpus: str) -> list[str]:
    """``taskset -c CPUS`` (nothing when ``cpus`` is empty)."""
    return ["taskset", "-c", cpus] if cpus else []


# --------------------------------------------------------------------------------- /proc


def group_pids(pgids: Sequence[int]) -> list[int]:
    """Every live process whose process group is one of ``pgids``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in pgids and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def group_cpu_split(pgids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU seconds, all threads, of every process in the groups ``pgids``."""
    user = system = 0
    for pid in group_pids(pgids):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def group_cpu(pgids: Sequence[int]) -> float:
    """CPU seconds (utime + stime, all threads) of every process in the groups ``pgids``."""
    return sum(group_cpu_split(pgids))


def machine_busy() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def pin_group(pgid: int, cpus: str) -> None:
    """Moves every thread of every process of group ``pgid`` to ``cpus`` (new threads follow)."""
    if not cpus:
        return
    for pid in group_pids([pgid]):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cpus, str(pid)],
            check=True,
            capture_output=True,
            timeout=10,
        )


# --------------------------------------------------------------------------------- servers


def start_nginx(
    role: str, settings: Settings, cpus: str, *, upstream_port: int = 0, response: str = ""
) -> Server:
    """nginx from benches/nginx_hop.conf as ``backend`` (fixed response) or ``proxy``."""
    other = "proxy" if role == "backend" else "backend"
    lines, keep = [], True
    for line in (BENCHES / "nginx_hop.conf").read_text().splitlines():
        if line.startswith(f"# >>> {other}"):
            keep = False
        elif line.startswith(f"# <<< {other}"):
            keep = True
        elif keep:
            lines.append(line)
    (port,) = free_ports(1)
    prefix = settings.run_dir / f"nginx-{role}"
    prefix.mkdir(parents=True, exist_ok=True)
    values = {
        "@RUN@": str(prefix),
        "@PORT@": str(port),
        "@UPSTREAM_PORT@": str(upstream_port),
        "@RESPONSE@": response,
    }
    text = "\n".join(lines) + "\n"
    for key, value in values.items():
        text = text.replace(key, value)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    error_log = str(prefix / "error.log")
    argv = [*pin(cpus), "nginx", "-p", str(prefix), "-c", str(conf), "-e", error_log]
    # No gRPC port: the "gRPC" wait of _start is a TCP connect to the same port.
    return _start(Server, f"nginx-{role}", argv, settings.run_dir, (port, port), "/", timeout=20)


def start_tensorgate(
    name: str, config: Mapping[str, Any], settings: Settings, cpus: str
) -> Gateway:
    """``BENCH_PYTHON -m tensorgate serve`` pinned to ``cpus`` (servers.start_gateway runs the
    interpreter of this script, whose tensorgate is the debug build of the source tree)."""
    http_port, grpc_port = free_ports(2)
    path = settings.run_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    argv = [*pin(cpus), settings.python, "-m", "tensorgate", "serve", "--config", str(path)]
    argv += ["--host", HOST, "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    ports = (http_port, grpc_port)
    health = "/v2/health/live"
    return _start(Gateway, name, argv, settings.run_dir, ports, health, env=env, timeout=30)


def start_kserve_pinned(settings: Settings, cpus: str) -> Server:
    """tests/backends/kserve_server.py (logging off), every thread moved to ``cpus``."""
    server = start_kserve(settings.run_dir)
    try:
        pin_group(server.pid, cpus)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------------- payloads


def v2_request(x: Array) -> bytes:
    """A V2 JSON request with input ``x`` (FP32; the values as the short decimals in ``x``)."""
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def matrix(rows: int, cols: int, seed: int) -> Array:
    """Standard-normal values rounded to 2 decimals (float64 so that they print short)."""
    x: Array = np.round(np.random.default_rng(seed).standard_normal((rows, cols)), 2)
    return x


def row_sums_check(x: Array) -> Check:
    """Checks a V2 JSON response: output 0 holds the FP32 row sums of ``x``."""
    expected = x.astype(np.float32).sum(axis=1, dtype=np.float32)

    def check(body: bytes) -> None:
        output = json.loads(body)["outputs"][0]
        got = np.asarray(output["data"], dtype=np.float32)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-3):
            raise ValueError(f"wrong row sums: {got[:4]}... != {expected[:4]}...")

    return check


def equals_check(expected: bytes) -> Check:
    """Checks a response body against ``expected`` (as parsed JSON)."""

    def check(body: bytes) -> None:
        if json.loads(body) != json.loads(expected):
            raise ValueError(f"unexpected body {body[:200]!r}")

    return check


def post_check(url: str, body: bytes, check: Check) -> None:
    """POSTs ``body`` once and runs ``check`` on the answer; raises on anything else than 200."""
    assert url.startswith("http://")
    netloc, _, path = url.removeprefix("http://").partition("/")
    host, _, port = netloc.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/" + path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"HTTP {response.status}: {data[:300]!r}")
    check(data)


# --------------------------------------------------------------------------------- wrk


@dataclass
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    wall_s: float
    cpu_s: dict[str, float]
    client_cpu_s: float
    other_cpu_s: float
    """Busy CPU time of the whole machine outside wrk and the row's server groups."""


@dataclass
class Row:
    """One line of a table: what wrk loads and which process groups' CPU is counted."""

    label: str
    url: str
    body: Path | None
    """POSTed as application/json; ``None``: a plain GET."""
    conns: int
    cpu_groups: dict[str, tuple[int, ...]]
    check: Check | None = None
    rounds: list[Round] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""
    failed: bool = False

    def median(self, key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in self.rounds))

    def spread(self) -> str:
        values = [r.rps for r in self.rounds]
        return f"{min(values):,.0f}-{max(values):,.0f}" if len(values) > 1 else ""

    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    def cpu_per_request_us(self, group: str) -> float:
        """Microseconds of the group's CPU per request, over every round."""
        requests = self.requests()
        return 1e6 * sum(r.cpu_s[group] for r in self.rounds) / requests if requests else 0.0

    def cpu_percent(self, group: str) -> float:
        """The group's CPU use during the rounds, in % of one core."""
        wall = sum(r.wall_s for r in self.rounds)
        return 100 * sum(r.cpu_s[group] for r in self.rounds) / wall if wall else 0.0

    def client_percent(self) -> float:
        wall = sum(r.wall_s for r in self.rounds)
        return 100 * sum(r.client_cpu_s for r in self.rounds) / wall if wall else 0.0

    def other_percent(self) -> float:
        """CPU % (of one core) used by other processes during the rounds: noise."""
        wall = sum(r.wall_s for r in self.rounds)
        return 100 * sum(r.other_cpu_s for r in self.rounds) / wall if wall else 0.0


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read the wrk time {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def wrk_command(row: Row, seconds: int, settings: Settings) -> list[str]:
    script = [] if row.body is None else ["-s", str(BENCHES / "wrk_post.lua")]
    wrk = ["wrk", "-t1", f"-c{row.conns}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    return [*pin(settings.client_cpus), *wrk, *script, row.url]


def run_wrk(row: Row, seconds: int, settings: Settings) -> Round:
    """One wrk run against ``row``, with the CPU time of its groups before and after."""
    cmd = wrk_command(row, seconds, settings)
    body_env = {} if row.body is None else {"BODY_FILE": str(row.body)}
    env = {**os.environ, **body_env}
    groups = {name: group_cpu_split(pgids) for name, pgids in row.cpu_groups.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 30)
    busy = machine_busy() - busy
    cpu = {}
    for name, (user, system) in groups.items():
        user_after, system_after = group_cpu_split(row.cpu_groups[name])
        cpu[name] = user_after + system_after - user - system
        cpu[f"{name} user"] = user_after - user
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    out = done.stdout
    row.command = "".join(f"{k}={v} " for k, v in body_env.items()) + shlex.join(cmd)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {(done.stderr or out)[-300:]}")
    with (settings.run_dir / "wrk.log").open("a") as wrk_log:
        wrk_log.write(f"$ {row.command}\n{out}\n")

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"wrk output without {pattern!r}: {out[-400:]}")
        return match

    requests = find(r"(\d+) requests in ([\d.]+\w+)")
    errors = 0
    if (non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) is not None:
        errors += int(non2xx.group(1))
    sockets = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    if (sock := re.search(sockets, out)) is not None:
        errors += sum(int(g) for g in sock.groups())
    return Round(
        rps=float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_ms(find(r"\n\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"\n\s+99%\s+(\S+)").group(1)),
        requests=int(requests.group(1)),
        errors=errors,
        wall_s=_ms(requests.group(2)) / 1e3,
        cpu_s=cpu,
        client_cpu_s=client,
        other_cpu_s=busy - client - sum(v for k, v in cpu.items() if not k.endswith(" user")),
    )


def measure(rows: Sequence[Row], settings: Settings) -> None:
    """Checks every row once, warms each up, then runs REPS interleaved rounds."""
    live = []
    for row in rows:
        if row.check is not None and row.body is not None:
            try:
                post_check(row.url, row.body.read_bytes(), row.check)
            except Exception as error:
                row.failed = True
                row.notes.append(f"FAILED check: {type(error).__name__}: {error}")
                log(f"{row.label}: check failed: {error}")
                continue
        live.append(row)
    for row in live:
        if settings.left() > settings.warmup + 15 and settings.warmup > 0:
            run_wrk(row, settings.warmup, settings)
    for rep in range(settings.reps):
        for row in live:
            if settings.left() < settings.duration + 15:
                if "skipped: time budget exhausted" not in row.notes:
                    row.notes.append("skipped: time budget exhausted")
                continue
            result = run_wrk(row, settings.duration, settings)
            row.rounds.append(result)
            if result.errors:
                row.notes.append(f"round {rep + 1}: {result.errors} errors")
            other = 100 * result.other_cpu_s / result.wall_s
            if other > OTHER_NOTE_PERCENT:
                row.notes.append(f"round {rep + 1}: other processes used {other:.0f} % of a core")
            log(
                f"{row.label} -c{row.conns} round {rep + 1}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, "
                + ", ".join(f"{k} CPU {v:.2f}s" for k, v in result.cpu_s.items())
                + f", client CPU {result.client_cpu_s:.2f}s, other CPU {result.other_cpu_s:.2f}s"
            )


def idle_cpu_percent(groups: Mapping[str, tuple[int, ...]], seconds: float = 2.0) -> str:
    """CPU % of one core each group uses while nothing is sent."""
    before = {name: group_cpu(pgids) for name, pgids in groups.items()}
    time.sleep(seconds)
    after = {name: group_cpu(pgids) for name, pgids in groups.items()}
    return ", ".join(f"{n} {100 * (after[n] - before[n]) / seconds:.1f} %" for n in groups)


# --------------------------------------------------------------------------------- output


def fmt(value: float | None, spec: str = ",.2f") -> str:
    return "-" if value is None else format(value, spec)


def commands(rows: Sequence[Row]) -> None:
    print("\nCommands (one round; BODY_FILE is generated in the run directory):\n")
    for row in rows:
        if row.command:
            print(f"- {row.label}, -c{row.conns}: `{row.command}`")


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


# --------------------------------------------------------------------------------- hop


def section_hop(settings: Settings, stack: contextlib.ExitStack) -> list[str]:
    """Proxy hop cost: tensorgate vs nginx, both in front of the same fixed-response backend."""
    x = matrix(1, 16, seed=1)
    body = settings.run_dir / "v2_1x16.json"
    body.write_bytes(v2_request(x))
    total = float(x.astype(np.float32).sum(dtype=np.float32))
    answer = {
        "model_name": "m",
        "id": "1",
        "outputs": [{"name": "sum", "datatype": "FP32", "shape": [1], "data": [total]}],
    }
    response = json.dumps(answer, separators=(",", ":"))
    backend = stack.enter_context(
        start_nginx("backend", settings, settings.client_cpus, response=response)
    )
    nginx = stack.enter_context(
        start_nginx("proxy", settings, settings.proxy_cpus, upstream_port=backend.http_port)
    )
    config = {
        "access_log": "off",
        "models": [
            {"name": "m", "backend": {"url": backend.http_url, "protocol": "v2"}},
        ],
    }
    gateway = stack.enter_context(
        start_tensorgate("tensorgate-hop", config, settings, settings.proxy_cpus)
    )
    groups = {
        "backend": (backend.pid,),
        "nginx": (nginx.pid,),
        "tensorgate": (gateway.pid,),
    }
    idle = idle_cpu_percent(groups)
    log("hop idle CPU:", idle)
    check = equals_check(response.encode())
    path = "/v2/models/m/infer"
    tables: dict[int, list[Row]] = {}
    for conns in (16, 1):
        tables[conns] = [
            Row("direct (wrk -> backend)", backend.http_url + path, body, conns,
                {"backend": groups["backend"]}, check),
            Row("nginx proxy_pass", nginx.http_url + path, body, conns,
                {"proxy": groups["nginx"], "backend": groups["backend"]}, check),
            Row("tensorgate", gateway.http_url + path, body, conns,
                {"proxy": groups["tensorgate"], "backend": groups["backend"]}, check),
        ]  # fmt: skip
        measure(tables[conns], settings)
    # The server half alone: each proxy answers GET /v2/health/live itself, no upstream.
    live = "/v2/health/live"
    local = [
        Row("nginx, GET answered locally", nginx.http_url + live, None, 16,
            {"proxy": groups["nginx"]}),
        Row("tensorgate, GET answered locally", gateway.http_url + live, None, 16,
            {"proxy": groups["tensorgate"]}),
    ]  # fmt: skip
    measure(local, settings)
    if settings.perf_s > 0:
        perf_profile(gateway, tables[16][2], settings)

    print("\n### Hop cost: wrk -> proxy -> fixed-response nginx backend, V2 JSON [1,16] FP32\n")
    print(
        f"Proxy on CPU {settings.proxy_cpus}; wrk and the backend on CPU {settings.client_cpus}. "
        f"wrk -t1; {settings.reps} rounds of {settings.duration} s per row, interleaved. "
        f"Idle CPU while nothing is sent: {idle}.\n"
    )
    print(
        "| proxy | wrk conns | req/s (rounds) | p50 µs | p99 µs | added p50 µs | "
        "proxy CPU µs/req | of which user | proxy CPU % | backend CPU % | errors | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    verdicts: list[str] = []
    for conns, rows in tables.items():
        direct = rows[0]
        for row in rows:
            if not row.rounds:
                print(f"| {row.label} | {conns} | - | - | - | - | - | - | - | - | - | "
                      f"{'; '.join(row.notes)} |")  # fmt: skip
                continue
            p50 = row.median("p50_ms") * 1e3
            direct_p50 = direct.median("p50_ms") * 1e3 if direct.rounds else None
            added = p50 - direct_p50 if direct_p50 is not None and row is not direct else None
            proxy = "proxy" in row.cpu_groups
            print(
                f"| {row.label} | {conns} | {row.median('rps'):,.0f} ({row.spread()}) | "
                f"{p50:,.0f} | {row.median('p99_ms') * 1e3:,.0f} | {fmt(added, ',.0f')} | "
                f"{fmt(row.cpu_per_request_us('proxy') if proxy else None, ',.1f')} | "
                f"{fmt(row.cpu_per_request_us('proxy user') if proxy else None, ',.1f')} | "
                f"{fmt(row.cpu_percent('proxy') if proxy else None, '.0f')} | "
                f"{fmt(row.cpu_percent('backend') if proxy else None, '.0f')} | "
                f"{sum(r.errors for r in row.rounds)} | {'; '.join(row.notes)} |"
            )
        _, ng, tg = rows
        if ng.rounds and tg.rounds and direct.rounds:
            cpu_ratio = ratio(tg.cpu_per_request_us("proxy"), ng.cpu_per_request_us("proxy"))
            rps_ratio = ratio(tg.median("rps"), ng.median("rps"))
            added_tg = (tg.median("p50_ms") - direct.median("p50_ms")) * 1e3
            added_ng = (ng.median("p50_ms") - direct.median("p50_ms")) * 1e3
            verdicts.append(
                f"-c{conns}: tensorgate/nginx CPU per request {fmt(cpu_ratio)}x "
                f"({'met' if cpu_ratio is not None and cpu_ratio <= 1 else 'NOT met'}: ≤ 1x); "
                f"req/s {fmt(rps_ratio)}x nginx; added p50 tensorgate {added_tg:,.0f} µs, "
                f"nginx {added_ng:,.0f} µs"
                + (f" ({'met' if added_tg <= 100 else 'NOT met'}: ≤ 100 µs)" if conns == 1 else "")
            )
    print()
    for line in verdicts:
        print(f"- {line}")
    print(
        f"\nServer half alone: GET {live} answered by the proxy itself (nginx: `return 200`), "
        "wrk -t1 -c16. 'upstream half' = proxy CPU per proxied request (-c16 above) minus this.\n"
    )
    print("| proxy | req/s | p50 µs | CPU µs/req | of which user | upstream half µs/req |")
    print("|---|---:|---:|---:|---:|---:|")
    for row, proxied in zip(local, tables[16][1:], strict=True):
        if not row.rounds:
            print(f"| {row.label} | - | - | - | - | - |")
            continue
        cpu = row.cpu_per_request_us("proxy")
        upstream = proxied.cpu_per_request_us("proxy") - cpu if proxied.rounds else None
        print(
            f"| {row.label} | {row.median('rps'):,.0f} | {row.median('p50_ms') * 1e3:,.0f} | "
            f"{cpu:,.1f} | {row.cpu_per_request_us('proxy user'):,.1f} | {fmt(upstream, ',.1f')} |"
        )
    commands([r for rows in tables.values() for r in rows] + local)
    return verdicts


def perf_profile(gateway: Server, row: Row, settings: Settings) -> None:
    """``perf record`` of the gateway while wrk loads it; prints the hottest symbols."""
    if shutil.which("perf") is None:
        log("perf not installed; no profile")
        return
    data = settings.run_dir / "perf.data"
    seconds = settings.perf_s
    record = subprocess.Popen(
        ["perf", "record", "-F", "1999", "-g", "-p", str(gateway.pid), "-o", str(data),
         "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        run_wrk(row, seconds, settings)
    finally:
        _, err = record.communicate(timeout=seconds + 60)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--percent-limit", "1",
         "--sort", "dso,sym", "-g", "none"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [ln for ln in report.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    print(f"\n#### perf: tensorgate hop, wrk -c{row.conns}, {seconds} s (self time, ≥ 1 %)\n")
    print("```")
    print("\n".join(lines[:45]) or f"(no samples: {err.strip()[-300:]})")
    print("```")


# --------------------------------------------------------------------------------- large


def section_large(settings: Settings, stack: contextlib.ExitStack) -> list[str]:
    """Large tensors: JSON in, forwarded as binary vs JSON, to KServe and to a tensorgate."""
    x = matrix(64, 1024, seed=2)
    body = settings.run_dir / "v2_64x1024.json"
    body.write_bytes(v2_request(x))
    kserve = stack.enter_context(start_kserve_pinned(settings, settings.client_cpus))
    backend_config = {
        "access_log": "off",
        "models": [{"name": "sum", "backend": {"python": "tensorgate.demo:sum"}}],
    }
    tg_backend = stack.enter_context(
        start_tensorgate("tensorgate-backend", backend_config, settings, settings.client_cpus)
    )
    models = []
    for prefix, server in (("ks", kserve), ("tg", tg_backend)):
        for binary in (False, True):
            name = f"{prefix}-{'bin' if binary else 'json'}"
            backend = {"url": server.http_url, "protocol": "v2", "binary": binary, "model": "sum"}
            models.append({"name": name, "backend": backend})
    gateway = stack.enter_context(
        start_tensorgate(
            "tensorgate-large", {"access_log": "off", "models": models}, settings,
            settings.proxy_cpus,
        )
    )  # fmt: skip
    check = row_sums_check(x)
    gw = (gateway.pid,)

    def infer(server: Server, model: str) -> str:
        return f"{server.http_url}/v2/models/{model}/infer"

    rows = [
        Row("KServe direct (JSON)", infer(kserve, "sum"), body, 8,
            {"gateway": (), "backend": (kserve.pid,)}, check),
        Row("tensorgate -> KServe, JSON passthrough", infer(gateway, "ks-json"), body, 8,
            {"gateway": gw, "backend": (kserve.pid,)}, check),
        Row("tensorgate -> KServe, binary", infer(gateway, "ks-bin"), body, 8,
            {"gateway": gw, "backend": (kserve.pid,)}, check),
        Row("tensorgate backend direct (JSON)", infer(tg_backend, "sum"), body, 8,
            {"gateway": (), "backend": (tg_backend.pid,)}, check),
        Row("tensorgate -> tensorgate, JSON passthrough", infer(gateway, "tg-json"), body, 8,
            {"gateway": gw, "backend": (tg_backend.pid,)}, check),
        Row("tensorgate -> tensorgate, binary", infer(gateway, "tg-bin"), body, 8,
            {"gateway": gw, "backend": (tg_backend.pid,)}, check),
    ]  # fmt: skip
    measure(rows, settings)

    size_kb = body.stat().st_size / 1e3
    print(
        f"\n### Large tensors: V2 JSON [64,1024] FP32 ({size_kb:,.0f} kB) in, forwarded as "
        "binary vs JSON\n"
    )
    print(
        f"Gateway on CPU {settings.proxy_cpus}; backends and wrk on CPU {settings.client_cpus}. "
        f"wrk -t1 -c8; {settings.reps} rounds of {settings.duration} s per row, interleaved.\n"
    )
    print(
        "| path | req/s (rounds) | p50 ms | p99 ms | gateway CPU ms/req | backend CPU ms/req | "
        "gateway CPU % | backend CPU % | errors | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if not row.rounds:
            print(f"| {row.label} | - | - | - | - | - | - | - | - | {'; '.join(row.notes)} |")
            continue
        has_gw = bool(row.cpu_groups["gateway"])
        print(
            f"| {row.label} | {row.median('rps'):,.1f} ({row.spread()}) | "
            f"{row.median('p50_ms'):,.2f} | {row.median('p99_ms'):,.2f} | "
            f"{fmt(row.cpu_per_request_us('gateway') / 1e3 if has_gw else None)} | "
            f"{row.cpu_per_request_us('backend') / 1e3:,.2f} | "
            f"{fmt(row.cpu_percent('gateway') if has_gw else None, '.0f')} | "
            f"{row.cpu_percent('backend'):.0f} | {sum(r.errors for r in row.rounds)} | "
            f"{'; '.join(row.notes)} |"
        )
    verdicts = []
    for name, json_row, bin_row in (("KServe", rows[1], rows[2]), ("tensorgate", rows[4], rows[5])):
        if json_row.rounds and bin_row.rounds:
            gain = ratio(bin_row.median("rps"), json_row.median("rps"))
            p50 = ratio(json_row.median("p50_ms"), bin_row.median("p50_ms"))
            verdicts.append(
                f"{name} backend: binary/JSON req/s {fmt(gain)}x, p50 JSON/binary {fmt(p50)}x"
            )
    print()
    for line in verdicts:
        print(f"- {line}")
    commands(rows)
    return verdicts


# --------------------------------------------------------------------------------- inproc


def section_inproc(settings: Settings, stack: contextlib.ExitStack) -> list[str]:
    """The same numpy row-sum model in-process in tensorgate vs in KServe's ModelServer."""
    x = matrix(1, 16, seed=3)
    body = settings.run_dir / "v2_1x16_sum.json"
    body.write_bytes(v2_request(x))
    cpus = settings.proxy_cpus
    kserve = stack.enter_context(start_kserve_pinned(settings, cpus))
    gateways = {}
    for workers in (1, 2):
        config = {
            "access_log": "off",
            "python_workers": workers,
            "models": [{"name": "sum", "backend": {"python": "tensorgate.demo:sum"}}],
        }
        gateways[workers] = stack.enter_context(
            start_tensorgate(f"tensorgate-inproc-w{workers}", config, settings, cpus)
        )
    groups = {
        "KServe": (kserve.pid,),
        **{f"tensorgate w{w}": (g.pid,) for w, g in gateways.items()},
    }
    idle = idle_cpu_percent(groups)
    log("inproc idle CPU:", idle)
    check = row_sums_check(x)
    path = "/v2/models/sum/infer"
    rows = [
        Row("KServe ModelServer (logging off)", kserve.http_url + path, body, 32,
            {"server": (kserve.pid,)}, check),
        *(Row(f"tensorgate in-process, python_workers {w}", g.http_url + path, body, 32,
              {"server": (g.pid,)}, check) for w, g in gateways.items()),
    ]  # fmt: skip
    measure(rows, settings)

    print("\n### In-process model vs KServe: V2 JSON [1,16] FP32, numpy row sums\n")
    print(
        f"Every server on CPU {cpus} (all started, one loaded at a time); wrk -t1 -c32 on CPU "
        f"{settings.client_cpus}; {settings.reps} rounds of {settings.duration} s per row, "
        f"interleaved. Idle CPU while nothing is sent: {idle}.\n"
    )
    print(
        "| server | req/s (rounds) | p50 ms | p99 ms | server CPU µs/req | server CPU % | "
        "client CPU % | vs KServe | errors | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base = rows[0].median("rps") if rows[0].rounds else 0.0
    for row in rows:
        if not row.rounds:
            print(f"| {row.label} | - | - | - | - | - | - | - | - | {'; '.join(row.notes)} |")
            continue
        print(
            f"| {row.label} | {row.median('rps'):,.0f} ({row.spread()}) | "
            f"{row.median('p50_ms'):,.2f} | {row.median('p99_ms'):,.2f} | "
            f"{row.cpu_per_request_us('server'):,.0f} | {row.cpu_percent('server'):.0f} | "
            f"{row.client_percent():.0f} | {fmt(ratio(row.median('rps'), base))}x | "
            f"{sum(r.errors for r in row.rounds)} | {'; '.join(row.notes)} |"
        )
    verdicts = []
    for row in rows[1:]:
        if row.rounds and base:
            r = row.median("rps") / base
            verdicts.append(
                f"{row.label}: {r:.2f}x KServe req/s ({'met' if r >= 3 else 'NOT met'}: ≥ 3x)"
            )
    print()
    for line in verdicts:
        print(f"- {line}")
    commands(rows)
    return verdicts


# --------------------------------------------------------------------------------- main


def describe_build(settings: Settings) -> str:
    """Where BENCH_PYTHON's tensorgate comes from; exits if it cannot serve."""
    probe = subprocess.run(
        [settings.python, "-c",
         "import tensorgate, tensorgate._core as c, yaml, prometheus_client; "
         "print(tensorgate.__version__, c.__file__)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        raise SystemExit(
            f"{settings.python} cannot run the gateway ({probe.stderr.strip()[-300:]}); build a "
            "release wheel into a venv: python3 -m venv /tmp/benchvenv && "
            "MATURIN_NO_INSTALL_RUST=1 /tmp/benchvenv/bin/pip install . numpy pyyaml "
            "prometheus-client"
        )
    where = probe.stdout.strip()
    if str(ROOT / "python") in where:
        log(f"WARNING: {settings.python} imports tensorgate from the source tree ({where}); "
            "that is usually a debug build")  # fmt: skip
    return where


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}")


def main() -> None:
    settings = parse_settings()
    signal.signal(signal.SIGTERM, _sigterm)
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk nginx util-linux)")
    needs_kserve = {"large", "inproc"} & set(settings.only)
    if needs_kserve and importlib.util.find_spec("kserve") is None:
        raise SystemExit("kserve is not importable here: run this script with .venv/bin/python")
    build = describe_build(settings)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print("## bench_gateway.py run\n")
    print(f"- tensorgate: {build}")
    print(f"- load average at start: {' '.join(load)}; CPUs: {os.cpu_count()}")
    print(f"- run directory (logs, configs, bodies): {settings.run_dir}")
    sections: dict[str, Callable[[Settings, contextlib.ExitStack], list[str]]] = {
        "hop": section_hop,
        "large": section_large,
        "inproc": section_inproc,
    }
    summary: dict[str, list[str]] = {}
    for name in settings.only:
        log(f"section {name}")
        with contextlib.ExitStack() as stack:
            try:
                summary[name] = sections[name](settings, stack)
            except Exception as error:
                log(f"section {name} failed: {type(error).__name__}: {error}")
                summary[name] = [f"FAILED: {type(error).__name__}: {str(error)[:300]}"]
        log(f"section {name} done, servers stopped")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\n### Summary ({time.monotonic() - T0:.0f} s, load average at end {' '.join(load)})\n")
    for name, lines in summary.items():
        for line in lines:
            print(f"- {name}: {line}")
    Path(settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
