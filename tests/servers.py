"""Real servers for end-to-end tests: the gateway, a KServe ModelServer and an MLServer.

Every server runs as a subprocess on 127.0.0.1 with free ports, in its own session (process group),
with stdout and stderr captured to a log file. It is stopped by its process group id: SIGTERM, then
SIGKILL after a few seconds. Every wait is bounded and, when it fails, raises with the log's tail.

kserve is never imported here: its generated protos and tritonclient's both define protobuf
package ``inference``, so the KServe backend only runs as a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ROOT / "tests" / "backends"
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
HOST = "127.0.0.1"

#: Seconds between SIGTERM and SIGKILL in :meth:`Process.stop`.
STOP_GRACE = 5.0
#: Characters of log quoted in a startup failure.
LOG_TAIL = 4000


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago (the kernel's choice).

    The sockets are held open together so that the kernel cannot hand out one port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


class ServerError(RuntimeError):
    """A server did not come up in time, or exited early; the message quotes its log."""


class Process:
    """A subprocess in its own session whose output goes to ``log_path`` (stderr too, unless
    ``stderr_path`` is given)."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self._stderr: IO[bytes] | None = stderr_path.open("wb") if stderr_path else None
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._stderr or subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        return self.popen.pid

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far (stdout and stderr interleaved)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def fail(self, what: str) -> ServerError:
        """An error saying ``what`` went wrong, with the exit status and the log's tail."""
        status = "running" if self.running() else f"exited with {self.popen.returncode}"
        return ServerError(
            f"{what} ({self.argv[0]} ..., pid {self.pid}, {status}); "
            f"log {self.log_path}:\n{self.log()[-LOG_TAIL:]}"
        )

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        """Polls ``ready()`` until it is true; raises if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise self.fail(f"exited while waiting for {what}")
            if ready():
                return
            time.sleep(0.05)
        raise self.fail(f"no {what} within {timeout:.0f} s")

    def wait_http(self, url: str, timeout: float = 30.0, status: int = 200) -> None:
        """Waits until ``GET url`` answers ``status``."""

        def ready() -> bool:
            try:
                return httpx.get(url, timeout=1.0).status_code == status
            except httpx.HTTPError:
                return False

        self._wait(ready, f"HTTP {status} from {url}", timeout)

    def wait_grpc_port(self, port: int, timeout: float = 30.0) -> None:
        """Waits until the gRPC port accepts TCP connections."""

        def ready() -> bool:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                return True
            return False

        self._wait(ready, f"a listener on {HOST}:{port}", timeout)

    def signal(self, sig: int) -> None:
        """Sends ``sig`` to the process itself (not its group)."""
        if self.running():
            os.kill(self.pid, sig)

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(grace)
        # Children left behind in the group by a parent that already exited.
        self._signal_group(signal.SIGKILL)
        self._log.close()
        return self.popen.returncode

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


@dataclass
class Server:
    """A started server: where to reach it and the process behind it."""

    name: str
    process: Process
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """``127.0.0.1:port``, as gRPC clients take it."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def log(self) -> str:
        """The server's output so far."""
        return self.process.log()

    def signal(self, sig: int) -> None:
        """Sends ``sig`` to the server process (e.g. ``signal.SIGTERM`` for a graceful stop)."""
        self.process.signal(sig)

    def stop(self) -> int | None:
        """Stops the server's process group; returns its exit code."""
        return self.process.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Gateway(Server):
    """A running ``tensorgate serve``."""


S = TypeVar("S", bound=Server)


def _start(
    kind: type[S],
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    ports: tuple[int, int],
    health: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float,
) -> S:
    """Starts ``argv`` and waits for ``GET health`` and the gRPC port; stops it on failure."""
    log_dir.mkdir(parents=True, exist_ok=True)
    process = Process(argv, log_dir / f"{name}-{ports[0]}.log", env=env, cwd=cwd)
    server = kind(name, process, *ports)
    try:
        process.wait_http(server.http_url + health, timeout)
        process.wait_grpc_port(server.grpc_port, timeout)
    except BaseException:
        process.stop()
        raise
    return server


def start_kserve(log_dir: Path, *, timeout: float = 60.0) -> Server:
    """Starts ``tests/backends/kserve_server.py`` (models sum, slow, picky, stats).

    KServe has no host option: it listens on all interfaces; clients use 127.0.0.1.
    """
    http_port, grpc_port = free_ports(2)
    return start_kserve_on(log_dir, http_port, grpc_port, timeout=timeout)


def start_mlserver(log_dir: Path, *, timeout: float = 60.0) -> Server:
    """Starts MLServer from ``.venv-mlserver`` on ``tests/backends/mlserver_repo`` (model sum).

    Ports come from the environment (settings.json sets host 127.0.0.1, no metrics server and no
    parallel workers).
    """
    if not MLSERVER.exists():
        raise ServerError(f"{MLSERVER} is missing: run scripts/test.sh to create .venv-mlserver")
    http_port, grpc_port = free_ports(2)
    env = {
        **os.environ,
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_GRPC_PORT": str(grpc_port),
    }
    argv = [str(MLSERVER), "start", str(BACKENDS / "mlserver_repo")]
    return _start(
        Server,
        "mlserver",
        argv,
        log_dir,
        (http_port, grpc_port),
        "/v2/models/sum/ready",
        env=env,
        cwd=log_dir,
        timeout=timeout,
    )


def python_path(*extra: Path) -> dict[str, str]:
    """The gateway's environment addition that makes ``inproc_models`` (and modules in the
    ``extra`` directories) importable."""
    current = os.environ.get("PYTHONPATH", "")
    paths = (*map(str, extra), str(BACKENDS), current)
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def start_gateway(
    config: Mapping[str, Any] | None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 30.0,
    prefix: Sequence[str] = (),
) -> Gateway:
    """Starts ``python -m tensorgate serve`` with ``config`` (written as YAML) on free ports.

    Without a config the gateway serves its built-in demo models. ``args`` are appended to the
    command line; ``env`` is added to this process's environment; ``prefix`` is a command that
    execs the rest, such as ``taskset -c 0``. Returns once
    ``GET /v2/health/live`` answers 200 and the gRPC port listens.
    """
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="tensorgate-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_ports(2)
    argv = [*prefix, sys.executable, "-m", "tensorgate", "serve"]
    if config is not None:
        path = log_dir / f"gateway-{http_port}.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        argv += ["--config", str(path)]
    argv += ["--host", HOST, "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args]
    return _start(
        Gateway,
        "gateway",
        argv,
        log_dir,
        (http_port, grpc_port),
        "/v2/health/live",
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


# -- helpers for tests that restart a backend or read the gateway's stdout alone ----------------


def start_kserve_on(
    log_dir: Path, http_port: int, grpc_port: int, *, timeout: float = 60.0
) -> Server:
    """Starts the KServe backend of :func:`start_kserve` on the given ports.

    For restarting a stopped backend on the SAME ports (the gateway keeps its URL). Use a
    ``log_dir`` other than the first run's: the log file is named after the HTTP port.
    """
    argv = [
        sys.executable,
        str(BACKENDS / "kserve_server.py"),
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
        "--configure_logging=false",
        "--enable_latency_logging=false",
    ]
    # FastAPI 0.165 warns about kserve's ORJSONResponse on every request.
    env = {**os.environ, "PYTHONWARNINGS": "ignore:ORJSONResponse is deprecated"}
    ports = (http_port, grpc_port)
    return _start(
        Server, "kserve", argv, log_dir, ports, "/v2/models/sum/ready", env=env, timeout=timeout
    )


class SplitProcess(Process):
    """A :class:`Process` whose stderr goes to its own file: :meth:`log` is stdout alone."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.stderr_path = log_path.with_suffix(".stderr.log")
        super().__init__(argv, log_path, env=env, cwd=cwd, stderr_path=self.stderr_path)

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        if self._stderr is not None:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def fail(self, what: str) -> ServerError:
        """As :meth:`Process.fail`, quoting stderr after stdout."""
        error = super().fail(what)
        return ServerError(f"{error}\nstderr:\n{self.stderr()[-LOG_TAIL:]}")

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """As :meth:`Process.stop`; also closes the stderr file."""
        code = super().stop(grace)
        if self._stderr is not None:
            self._stderr.close()
        return code


def start_gateway_split(
    config: Mapping[str, Any] | None,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    timeout: float = 30.0,
) -> Gateway:
    """:func:`start_gateway`, but with stdout and stderr in separate files.

    ``gateway.log()`` is stdout only; ``gateway.process.stderr()`` (a :class:`SplitProcess`) is
    stderr. The config file is ``log_dir / f"gateway-{http_port}.yaml"``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_ports(2)
    argv = [sys.executable, "-m", "tensorgate", "serve"]
    if config is not None:
        path = log_dir / f"gateway-{http_port}.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        argv += ["--config", str(path)]
    argv += ["--host", HOST, "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args]
    process = SplitProcess(
        argv, log_dir / f"gateway-{http_port}.log", env={**os.environ, **(env or {})}
    )
    gateway = Gateway("gateway", process, http_port, grpc_port)
    try:
        process.wait_http(gateway.http_url + "/v2/health/live", timeout)
        process.wait_grpc_port(grpc_port, timeout)
    except BaseException:
        process.stop()
        raise
    return gateway


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}")


def metric(text: str, sample: str, labels: dict[str, str]) -> float:
    """The value of ``sample`` with (at least) ``labels`` in a Prometheus page; 0 if absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
