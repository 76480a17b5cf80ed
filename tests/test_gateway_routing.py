"""End-to-end routing of the gateway: replicas (balancing, retries, ejection, health checks, all
down), h2c and gRPC on the HTTP port, the repository API passed to backends, in-process Python
models, forwarded headers, the gRPC message size limit and failures at start.

Backends are real KServe ModelServers (subprocesses), a recording V2 REST server (stdlib
``http.server``) and recording gRPC servers (grpcio generic handlers over the OIP messages of
``tests/oip.py``), both run in threads of the test process. In-process models come from
``tests/backends/inproc_models.py``, put on the gateway's ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from oip import message
from recorder import Recorder, running_recorder
from servers import (
    HOST,
    Server,
    free_port,
    free_ports,
    python_path,
    start_gateway,
    start_kserve,
    wait_until,
)
from tritonclient.utils import InferenceServerException

ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]
ROW_SUMS = [6.0, 15.5]
TIMEOUT = 10.0
SERVICE = "inference.GRPCInferenceService"
#: grpc_max_message_bytes of the shared gateway.
MAX_MESSAGE = 65536


def v2_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    """A V2 JSON request with input ``x`` FP32 [N, K]."""
    shape = [len(rows), len(rows[0])]
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": flat}], **extra}


def error_of(response: httpx.Response) -> str:
    """The message of a ``{"error": "..."}`` body (and nothing else in it)."""
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    text = body["error"]
    assert isinstance(text, str), body
    return text


def dead_url() -> str:
    """``http://127.0.0.1:port`` of a port nothing listens on."""
    return f"http://{HOST}:{free_port()}"


def grpc_input(x: np.ndarray[Any, Any]) -> Any:
    tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def grpc_status(error: Any) -> str:
    """``"NOT_FOUND"`` from tritonclient's ``"StatusCode.NOT_FOUND"``."""
    return str(error.status()).removeprefix("StatusCode.")


def grpc_unary(
    target: str,
    method: str,
    request: Any,
    metadata: Sequence[tuple[str, str]] = (),
) -> Any:
    """A raw OIP call (``method`` of the service) with the private-pool messages of oip.py."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message(f"{method}Response").FromString,
        )
        return call(request, metadata=list(metadata), timeout=TIMEOUT)


def grpc_rows_request(model: str) -> Any:
    """A ModelInferRequest of :data:`ROWS` as input ``x``."""
    request = message("ModelInferRequest")(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend(v for row in ROWS for v in row)
    return request


# -- a recording V2 REST backend ----------------------------------------------------------------

#: Seconds the recording backend takes to answer a repository call for model ``hang``.
# -- recording gRPC backends --------------------------------------------------------------------


@dataclass(frozen=True)
class GrpcCall:
    """One call a :class:`FakeGrpc` received."""

    method: str
    model: str
    metadata: dict[str, str]


class FakeGrpc:
    """An OIP gRPC backend: ServerReady, ModelInfer (output ``sum`` = [1.0]) and the repository
    calls; keeps every call with its model name and metadata."""

    METHODS = ("ServerReady", "ModelInfer", "RepositoryModelLoad", "RepositoryModelUnload")

    def __init__(self) -> None:
        self.calls: list[GrpcCall] = []
        self.lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=8))
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._handler(method),
                request_deserializer=message(f"{method}Request").FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
            for method in self.METHODS
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port: int = self.server.add_insecure_port(f"{HOST}:0")
        self.server.start()

    @property
    def url(self) -> str:
        """``grpc://127.0.0.1:port``."""
        return f"grpc://{HOST}:{self.port}"

    def _handler(self, method: str) -> Callable[[Any, Any], Any]:
        def handle(request: Any, context: Any) -> Any:
            model = str(getattr(request, "model_name", ""))
            metadata = {str(m.key): str(m.value) for m in context.invocation_metadata()}
            with self.lock:
                self.calls.append(GrpcCall(method, model, metadata))
            if method == "ServerReady":
                return message("ServerReadyResponse")(ready=True)
            if method == "RepositoryModelLoad":
                return message("RepositoryModelLoadResponse")(model_name=model, isLoaded=True)
            if method == "RepositoryModelUnload":
                return message("RepositoryModelUnloadResponse")(model_name=model, isUnloaded=True)
            response = message("ModelInferResponse")(model_name=model, id=request.id)
            response.outputs.add(name="sum", datatype="FP32", shape=[1])
            response.raw_output_contents.append(struct.pack("<f", 1.0))
            return response

        return handle

    def received(self, method: str) -> list[GrpcCall]:
        """The calls of ``method`` so far."""
        with self.lock:
            return [c for c in self.calls if c.method == method]

    def metadata_of(self, request_id: str) -> dict[str, str] | None:
        """The metadata of the ModelInfer received with this ``x-request-id``."""
        for call in self.received("ModelInfer"):
            if call.metadata.get("x-request-id") == request_id:
                return call.metadata
        return None


@pytest.fixture(scope="module")
def fake_grpc() -> Iterator[tuple[FakeGrpc, FakeGrpc]]:
    """Two recording gRPC backends, the replicas of route ``echo-grpc``."""
    servers = (FakeGrpc(), FakeGrpc())
    try:
        yield servers
    finally:
        for server in servers:
            server.server.stop(None)


# -- the shared gateway -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kserve_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second KServe ModelServer, owned by this module (its ``picky`` gets unloaded)."""
    with start_kserve(tmp_path_factory.mktemp("kserve-b")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    kserve_backend: Server,
    kserve_b: Server,
    recorder: Recorder,
    fake_grpc: tuple[FakeGrpc, FakeGrpc],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    inproc = {
        "double": "inproc_models:double",
        "scaler": "inproc_models:Scaler",
        "strict": "inproc_models:strict",
        "strict-async": "inproc_models:strict_async",
        "not-a-dict": "inproc_models:not_a_dict",
        "demo": "tensorgate.demo:sum",
    }
    config = {
        "grpc_max_message_bytes": MAX_MESSAGE,
        "forward_headers": ["X-Tenant"],
        "health_check_interval_s": 0,
        "models": [
            {"name": "sum", "backend": {"url": kserve_backend.http_url}},
            {"name": "repo", "backend": {"url": kserve_b.http_url, "model": "picky"}},
            {"name": "total", "backend": {"url": kserve_backend.http_url, "model": "sum"}},
            {
                "name": "repo-hang",
                "backend": {"url": recorder.url, "model": "hang"},
                "timeout_s": 0.5,
            },
            {"name": "echo-rest", "backend": {"url": recorder.url, "model": "echo"}},
            {
                "name": "echo-grpc",
                "backend": {"urls": [s.url for s in fake_grpc], "model": "echo"},
            },
            *({"name": name, "backend": {"python": target}} for name, target in inproc.items()),
        ],
    }
    log_dir = tmp_path_factory.mktemp("gateway-routing")
    with start_gateway(config, log_dir=log_dir, env=python_path()) as server:
        yield server


@pytest.fixture
def client(gateway: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
        yield http


# -- replicas -----------------------------------------------------------------------------------


def calls_of(backend: Server, model: str) -> list[int]:
    """Rows per predict call of ``model`` on a KServe backend (its ``stats`` model)."""
    r = httpx.post(
        f"{backend.http_url}/v1/models/stats:predict", json={"instances": [model]}, timeout=TIMEOUT
    )
    assert r.status_code == 200, r.text
    calls: list[int] = r.json()["predictions"][0]
    return calls


def post_statuses(url: str, count: int, body: object) -> list[tuple[int, str]]:
    """``count`` sequential POSTs of ``body``: status and text of each."""
    with httpx.Client(timeout=TIMEOUT) as http:
        responses = [http.post(url, json=body) for _ in range(count)]
    return [(r.status_code, r.text) for r in responses]


def test_concurrent_requests_spread_over_both_replicas(
    kserve_backend: Server, kserve_b: Server, tmp_path: Path
) -> None:
    config = {
        "health_check_interval_s": 0,
        "models": [
            {"name": "slow", "backend": {"urls": [kserve_backend.http_url, kserve_b.http_url]}}
        ],
    }
    count = 8
    before_a, before_b = len(calls_of(kserve_backend, "slow")), len(calls_of(kserve_b, "slow"))
    with start_gateway(config, log_dir=tmp_path) as gw:
        url = f"{gw.http_url}/v2/models/slow/infer"
        body = v2_body(ROWS, parameters={"sleep": 0.3})

        def one(_: int) -> tuple[int, str]:
            r = httpx.post(url, json=body, timeout=TIMEOUT)
            return r.status_code, r.text

        with ThreadPoolExecutor(count) as pool:
            results = list(pool.map(one, range(count)))
    assert all(status == 200 for status, _ in results), results
    on_a = len(calls_of(kserve_backend, "slow")) - before_a
    on_b = len(calls_of(kserve_b, "slow")) - before_b
    assert on_a + on_b == count, (on_a, on_b)
    assert on_a >= count // 4, (on_a, on_b)
    assert on_b >= count // 4, (on_a, on_b)


def test_a_sidecar_for_both_protocols_passes_each_client_through(
    kserve_backend: Server, tmp_path: Path
) -> None:
    """``--protocol both`` in front of KServe's ModelServer: a V1 client reaches a V1-only model
    as V1 (a ``v2`` route translates it, and that model refuses V2), a V2 client stays V2, and
    gRPC goes as V2, a model version it names dropped as KServe's own gRPC server ignores it."""
    args = ["--backend", kserve_backend.http_url, "--protocol", "both"]
    with (
        start_gateway(None, args=args, log_dir=tmp_path) as gw,
        httpx.Client(timeout=TIMEOUT) as http,
    ):
        v1 = http.post(f"{gw.http_url}/v1/models/stats:predict", json={"instances": ["sum"]})
        assert v1.status_code == 200, v1.text
        assert isinstance(v1.json()["predictions"][0], list)
        v2 = http.post(f"{gw.http_url}/v2/models/sum/infer", json=v2_body(ROWS))
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == ROW_SUMS
        v1_sum = http.post(f"{gw.http_url}/v1/models/sum:predict", json={"instances": ROWS})
        assert v1_sum.status_code == 200, v1_sum.text
        assert v1_sum.json() == {"predictions": ROW_SUMS}
        client = grpcclient.InferenceServerClient(gw.grpc_target)
        try:
            result = client.infer("sum", [grpc_input(np.array(ROWS, np.float32))])
            assert result.as_numpy("sum").tolist() == ROW_SUMS
            assert client.is_model_ready("sum")
            # A pinned version, which KServe's gRPC ignores (its REST answers 501 for one).
            pinned = client.infer("sum", [grpc_input(np.array(ROWS, np.float32))], "1")
            assert pinned.as_numpy("sum").tolist() == ROW_SUMS
            assert client.is_model_ready("sum", "1")
            assert client.get_model_metadata("sum", "1", as_json=True)["name"] == "sum"
        finally:
            client.close()
        ready = f"{gw.http_url}/v2/health/ready"
        wait_until(lambda: http.get(ready).status_code == 200, 3.0, "ready (V2 health check)")
    # The same V1 call on a `v2` route is translated, and this model refuses it.
    args[-1] = "v2"
    with start_gateway(None, args=args, log_dir=tmp_path) as gw:
        v1 = httpx.post(
            f"{gw.http_url}/v1/models/stats:predict", json={"instances": ["sum"]}, timeout=TIMEOUT
        )
        assert v1.status_code == 400, v1.text
        assert "V1 only" in error_of(v1)


def test_retry_goes_to_the_live_replica_when_one_is_down(
    kserve_backend: Server, tmp_path: Path
) -> None:
    """``retries: 1`` with one replica on a closed port: every request succeeds, the failed
    attempt being retried on the other replica (health checks off, ejection not reached)."""
    config = {
        "health_check_interval_s": 0,
        "models": [
            {
                "name": "sum",
                "backend": {"urls": [dead_url(), kserve_backend.http_url]},
                "retries": 1,
                "retry_backoff_s": 0.01,
                "eject_after_failures": 5,
            }
        ],
    }
    with start_gateway(config, log_dir=tmp_path) as gw:
        results = post_statuses(f"{gw.http_url}/v2/models/sum/infer", 10, v2_body(ROWS))
    assert [status for status, _ in results] == [200] * 10, results


def test_a_dead_replica_is_ejected_after_consecutive_failures(
    kserve_backend: Server, tmp_path: Path
) -> None:
    eject_s = 1.5
    config = {
        "health_check_interval_s": 0,
        "models": [
            {
                "name": "sum",
                "backend": {"urls": [dead_url(), kserve_backend.http_url]},
                "retries": 0,
                "eject_after_failures": 1,
                "eject_s": eject_s,
            }
        ],
    }
    with start_gateway(config, log_dir=tmp_path) as gw:
        url = f"{gw.http_url}/v2/models/sum/infer"
        # Ties between idle replicas rotate, so one of the first two requests meets the dead
        # replica (a 503 naming it unreachable), which one failure ejects.
        first = post_statuses(url, 2, v2_body(ROWS))
        ejected_at = time.monotonic()
        failed = [text for status, text in first if status != 200]
        assert len(failed) == 1, first
        assert [s for s, _ in first if s != 200] == [503], first
        assert "unreachable" in failed[0], first
        after = post_statuses(url, 10, v2_body(ROWS))
        assert [s for s, _ in after] == [200] * 10, after
        assert time.monotonic() - ejected_at < eject_s, "too slow to tell ejection apart"
        # The ejection lasts eject_s: then the dead replica is in the rotation again.
        time.sleep(max(0.0, ejected_at + eject_s + 0.2 - time.monotonic()))
        again = post_statuses(url, 2, v2_body(ROWS))
        assert sorted(s for s, _ in again) == [200, 503], again


def test_health_checks_take_a_dead_replica_out(kserve_backend: Server, tmp_path: Path) -> None:
    config = {
        "health_check_interval_s": 0.2,
        "models": [
            {
                "name": "sum",
                "backend": {"urls": [dead_url(), kserve_backend.http_url]},
                "eject_after_failures": 100,
            }
        ],
    }
    with start_gateway(config, log_dir=tmp_path) as gw:
        url = f"{gw.http_url}/v2/models/sum/infer"

        def ok() -> bool:
            return httpx.post(url, json=v2_body(ROWS), timeout=TIMEOUT).status_code == 200

        wait_until(ok, 3.0, "a request served once the health check ran")
        results = post_statuses(url, 10, v2_body(ROWS))
        assert [s for s, _ in results] == [200] * 10, results
        ready = httpx.get(f"{gw.http_url}/v2/health/ready", timeout=TIMEOUT)
        assert ready.status_code == 200, ready.text


def test_all_replicas_down_is_503_and_unavailable(tmp_path: Path) -> None:
    config = {
        "health_check_interval_s": 0.2,
        "models": [
            {
                "name": "m",
                "backend": {"urls": [dead_url(), dead_url()]},
                "retries": 2,
                "retry_backoff_s": 0.01,
            }
        ],
    }
    with start_gateway(config, log_dir=tmp_path) as gw, httpx.Client(timeout=TIMEOUT) as http:
        started = time.monotonic()
        v2 = http.post(f"{gw.http_url}/v2/models/m/infer", json=v2_body(ROWS))
        assert v2.status_code == 503, v2.text
        assert error_of(v2)
        v1 = http.post(f"{gw.http_url}/v1/models/m:predict", json={"instances": ROWS})
        assert v1.status_code == 503, v1.text
        client = grpcclient.InferenceServerClient(gw.grpc_target)
        try:
            with pytest.raises(InferenceServerException) as caught:
                client.infer("m", [grpc_input(np.array(ROWS, np.float32))], client_timeout=TIMEOUT)
        finally:
            client.close()
        assert grpc_status(caught.value) == "UNAVAILABLE"
        assert caught.value.message()
        assert time.monotonic() - started < 5.0
        ready = f"{gw.http_url}/v2/health/ready"
        wait_until(lambda: http.get(ready).status_code == 503, 3.0, "server ready 503")
        model_ready = http.get(f"{gw.http_url}/v2/models/m/ready")
        assert model_ready.status_code == 503, model_ready.text
        assert error_of(model_ready) == "Model with name m is not ready."
        after = http.post(f"{gw.http_url}/v2/models/m/infer", json=v2_body(ROWS))
        assert after.status_code == 503, after.text


def checked_at_start(url: str) -> dict[str, Any]:
    """A config with one route, ``m``, to ``url``, whose backend is checked at start and then
    only every 30 s: readiness shows the first check's verdict."""
    return {"health_check_interval_s": 30, "models": [{"name": "m", "backend": {"url": url}}]}


def test_a_backend_is_not_ready_before_its_first_health_check_passes(tmp_path: Path) -> None:
    """A sidecar started before its model server is not ready at once (the first check runs at
    start, not one interval later), and is once the backend answers the check."""
    with (
        start_gateway(checked_at_start(dead_url()), log_dir=tmp_path) as gw,
        httpx.Client(timeout=TIMEOUT) as http,
    ):
        assert http.get(f"{gw.http_url}/v2/health/ready").status_code == 503
        client = grpcclient.InferenceServerClient(gw.grpc_target)
        try:
            assert not client.is_server_ready(client_timeout=TIMEOUT)
        finally:
            client.close()
    with running_recorder() as backend:
        config = checked_at_start(backend.url)
        with start_gateway(config, log_dir=tmp_path) as gw, httpx.Client(timeout=TIMEOUT) as http:
            ready = f"{gw.http_url}/v2/health/ready"
            wait_until(lambda: http.get(ready).status_code == 200, 3.0, "ready after one check")


def test_a_reload_keeps_the_readiness_its_health_checks_found(tmp_path: Path) -> None:
    """After SIGHUP the new routes start from the old checks' verdicts: a slow check of the
    reloaded backend does not turn the gateway unready meanwhile."""
    with running_recorder() as backend:
        config = checked_at_start(backend.url)
        with start_gateway(config, log_dir=tmp_path) as gw, httpx.Client(timeout=TIMEOUT) as http:
            ready = f"{gw.http_url}/v2/health/ready"
            wait_until(lambda: http.get(ready).status_code == 200, 3.0, "ready after one check")
            backend.health_delay_s = 1.5
            path = tmp_path / f"gateway-{gw.http_port}.yaml"
            path.write_text(yaml.safe_dump({**config, "access_log": "off"}))
            gw.signal(signal.SIGHUP)
            deadline = time.monotonic() + 1.0
            statuses = set()
            while time.monotonic() < deadline:
                statuses.add(http.get(ready).status_code)
                time.sleep(0.02)
            assert statuses == {200}
            backend.health_delay_s = 0.0


def test_server_readiness_follows_the_readiness_setting(tmp_path: Path) -> None:
    """``readiness: all`` (default) is 503 while any backend is down, ``any`` while all are,
    ``live`` never; over REST and gRPC, changed by SIGHUP. The down model is 503 in every case."""
    up = {"name": "up", "backend": {"python": "tensorgate.demo:sum"}}
    down = {"name": "down", "backend": {"url": dead_url()}}
    config: dict[str, Any] = {"health_check_interval_s": 0.2, "models": [up, down]}
    with start_gateway(config, log_dir=tmp_path) as gw, httpx.Client(timeout=TIMEOUT) as http:
        path = tmp_path / f"gateway-{gw.http_port}.yaml"
        client = grpcclient.InferenceServerClient(gw.grpc_target)

        def ready() -> tuple[int, bool]:
            status = http.get(f"{gw.http_url}/v2/health/ready").status_code
            return status, client.is_server_ready(client_timeout=TIMEOUT)

        def reload(readiness: str, models: list[dict[str, Any]]) -> None:
            path.write_text(yaml.safe_dump({**config, "readiness": readiness, "models": models}))
            gw.signal(signal.SIGHUP)

        try:
            # The health check has marked `down` once the default rule turns 503.
            wait_until(lambda: ready() == (503, False), 3.0, "all: 503 with a backend down")
            reload("any", [up, down])
            wait_until(lambda: ready() == (200, True), 3.0, "any: 200 with one backend up")
            assert http.get(f"{gw.http_url}/v2/models/down/ready").status_code == 503
            assert http.get(f"{gw.http_url}/v2/models/up/ready").status_code == 200
            reload("any", [down])
            wait_until(lambda: ready() == (503, False), 3.0, "any: 503 with every backend down")
            reload("live", [down])
            wait_until(lambda: ready() == (200, True), 3.0, "live: 200 with every backend down")
            infer = http.post(f"{gw.http_url}/v2/models/down/infer", json=v2_body(ROWS))
            assert infer.status_code == 503, infer.text
        finally:
            client.close()


# -- h2c and gRPC on the HTTP port --------------------------------------------------------------


#: curl's ``-w``: the HTTP version and status on a last line of their own.
WRITE_OUT = "\n%{http_version} %{http_code}"


def curl_h2c(url: str, *args: str) -> tuple[str, int, str]:
    """``curl --http2-prior-knowledge``: the HTTP version used, the status and the body."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    features = subprocess.run([curl, "-V"], capture_output=True, text=True, check=False).stdout
    if "HTTP2" not in features:
        pytest.skip("this curl has no HTTP/2 support")
    options = ["-sS", "--http2-prior-knowledge", "--max-time", str(TIMEOUT), "-w", WRITE_OUT]
    result = subprocess.run(
        [curl, *options, *args, url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 5,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.rpartition("\n")
    version, status = tail.split()
    return version, int(status), body


def test_rest_over_h2c_prior_knowledge(gateway: Server) -> None:
    version, status, body = curl_h2c(f"{gateway.http_url}/v2/health/ready")
    assert (version, status) == ("2", 200), body
    assert json.loads(body) == {"ready": True}

    post = ["-H", "content-type: application/json", "--data-binary", json.dumps(v2_body(ROWS))]
    version, status, body = curl_h2c(f"{gateway.http_url}/v2/models/sum/infer", *post)
    assert (version, status) == ("2", 200), body
    assert json.loads(body)["outputs"][0]["data"] == ROW_SUMS

    version, status, body = curl_h2c(f"{gateway.http_url}/v2/models/double/infer", *post)
    assert (version, status) == ("2", 200), body
    (output,) = json.loads(body)["outputs"]
    assert output["name"] == "y"
    assert output["data"] == [2 * v for row in ROWS for v in row]

    v1 = ["--data-binary", json.dumps({"instances": ROWS})]
    version, status, body = curl_h2c(f"{gateway.http_url}/v1/models/demo:predict", *v1)
    assert (version, status) == ("2", 200), body
    assert json.loads(body) == {"predictions": ROW_SUMS}

    version, status, body = curl_h2c(f"{gateway.http_url}/v2/models/nope/ready")
    assert (version, status) == ("2", 404), body
    assert json.loads(body) == {"error": "Model with name nope does not exist."}


def test_grpc_on_the_http_port(gateway: Server) -> None:
    client = grpcclient.InferenceServerClient(f"{HOST}:{gateway.http_port}")
    try:
        assert client.is_server_live(client_timeout=TIMEOUT)
        assert client.is_server_ready(client_timeout=TIMEOUT)
        assert client.is_model_ready("sum", client_timeout=TIMEOUT)
        assert client.get_server_metadata(client_timeout=TIMEOUT).name == "tensorgate"
        x = np.array(ROWS, np.float32)
        result = client.infer("sum", [grpc_input(x)], client_timeout=TIMEOUT)
        assert result.as_numpy("sum").tolist() == ROW_SUMS
        doubled = client.infer("double", [grpc_input(x)], client_timeout=TIMEOUT)
        np.testing.assert_array_equal(doubled.as_numpy("y"), x * 2)
    finally:
        client.close()


# -- the repository API -------------------------------------------------------------------------


def test_repository_load_and_unload_reach_a_kserve_backend(
    client: httpx.Client, kserve_b: Server
) -> None:
    """Route ``repo`` is KServe B's ``picky``: the gateway answers under the route's name."""
    picky_ready = f"{kserve_b.http_url}/v2/models/picky/ready"
    load = client.post("/v2/repository/models/repo/load")
    assert load.status_code == 200, load.text
    assert load.json() == {"name": "repo", "load": True}
    assert httpx.get(picky_ready, timeout=TIMEOUT).status_code == 200

    unload = client.post("/v2/repository/models/repo/unload")
    assert unload.status_code == 200, unload.text
    assert unload.json() == {"name": "repo", "unload": True}
    # KServe really dropped the model.
    gone = httpx.get(picky_ready, timeout=TIMEOUT)
    assert gone.status_code == 404, gone.text

    # KServe cannot load it back (nothing on disk): its 503 and message come through.
    reload = client.post("/v2/repository/models/repo/load")
    assert reload.status_code == 503, reload.text
    assert "picky" in error_of(reload)


def test_repository_calls_reach_every_grpc_replica(
    gateway: Server, client: httpx.Client, fake_grpc: tuple[FakeGrpc, FakeGrpc]
) -> None:
    """gRPC RepositoryModelLoad/Unload (KServe's message layout) and the REST routes, on a route
    of two gRPC replicas whose backend model is ``echo``: each replica gets each call."""

    def counts(method: str) -> list[int]:
        return [len(s.received(method)) for s in fake_grpc]

    before_load, before_unload = counts("RepositoryModelLoad"), counts("RepositoryModelUnload")
    request = message("RepositoryModelLoadRequest")(model_name="echo-grpc")
    loaded = grpc_unary(gateway.grpc_target, "RepositoryModelLoad", request)
    assert loaded.model_name == "echo-grpc"
    assert loaded.isLoaded
    request = message("RepositoryModelUnloadRequest")(model_name="echo-grpc")
    unloaded = grpc_unary(gateway.grpc_target, "RepositoryModelUnload", request)
    assert unloaded.model_name == "echo-grpc"
    assert unloaded.isUnloaded
    rest = client.post("/v2/repository/models/echo-grpc/load")
    assert rest.status_code == 200, rest.text
    assert rest.json() == {"name": "echo-grpc", "load": True}

    assert [n - b for n, b in zip(counts("RepositoryModelLoad"), before_load, strict=True)] == [
        2,
        2,
    ]
    assert [n - b for n, b in zip(counts("RepositoryModelUnload"), before_unload, strict=True)] == [
        1,
        1,
    ]
    for server in fake_grpc:
        calls = server.received("RepositoryModelLoad") + server.received("RepositoryModelUnload")
        assert {c.model for c in calls} == {"echo"}


def test_repository_on_an_in_process_route_is_501(client: httpx.Client, gateway: Server) -> None:
    for action in ("load", "unload"):
        r = client.post(f"/v2/repository/models/demo/{action}")
        assert r.status_code == 501, r.text
        assert "in-process" in error_of(r)
    request = message("RepositoryModelLoadRequest")(model_name="demo")
    with pytest.raises(grpc.RpcError) as caught:
        grpc_unary(gateway.grpc_target, "RepositoryModelLoad", request)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "in-process" in caught.value.details()


def test_repository_on_an_unknown_model_is_404(client: httpx.Client, gateway: Server) -> None:
    r = client.post("/v2/repository/models/nope/load")
    assert r.status_code == 404, r.text
    assert error_of(r) == "Model with name nope does not exist."
    request = message("RepositoryModelUnloadRequest")(model_name="nope")
    with pytest.raises(grpc.RpcError) as caught:
        grpc_unary(gateway.grpc_target, "RepositoryModelUnload", request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_repository_call_to_a_hanging_rest_backend_times_out(client: httpx.Client) -> None:
    """Route ``repo-hang`` has ``timeout_s: 0.5``; its backend takes HANG_S to answer a load.
    The route's timeout bounds the call, as it does for inference (and for gRPC backends)."""
    started = time.monotonic()
    r = client.post("/v2/repository/models/repo-hang/load")
    elapsed = time.monotonic() - started
    assert r.status_code == 504, (r.status_code, r.text, elapsed)
    assert elapsed < 1.5, elapsed


# -- in-process models --------------------------------------------------------------------------


def test_async_function_model(client: httpx.Client, gateway: Server) -> None:
    x = np.array(ROWS, np.float32)
    r = client.post("/v2/models/double/infer", json=v2_body(ROWS))
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    assert output == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": (x * 2).reshape(-1).tolist(),
    }
    v1 = client.post("/v1/models/double:predict", json={"instances": ROWS})
    assert v1.status_code == 200, v1.text
    assert v1.json() == {"predictions": (x * 2).tolist()}
    grpc_client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        result = grpc_client.infer("double", [grpc_input(x)], client_timeout=TIMEOUT)
    finally:
        grpc_client.close()
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2)


def test_class_model_is_instantiated_and_loaded_once(client: httpx.Client) -> None:
    for _ in range(3):
        r = client.post("/v2/models/scaler/infer", json=v2_body(ROWS))
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert outputs["y"]["data"] == [3.0 * v for row in ROWS for v in row]  # SCALE, set by load
        assert outputs["loads"] == {"name": "loads", "datatype": "INT64", "shape": [1], "data": [1]}


@pytest.mark.parametrize("model", ["strict", "strict-async"])
def test_invalid_input_is_400_and_invalid_argument(
    client: httpx.Client, gateway: Server, model: str
) -> None:
    expected = "x must be non-negative, got -2.0"
    bad = [[1.0, -2.0]]
    v2 = client.post(f"/v2/models/{model}/infer", json=v2_body(bad))
    assert v2.status_code == 400, v2.text
    assert error_of(v2) == expected
    v1 = client.post(f"/v1/models/{model}:predict", json={"instances": bad})
    assert v1.status_code == 400, v1.text
    assert error_of(v1) == expected
    grpc_client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.infer(
                model, [grpc_input(np.array(bad, np.float32))], client_timeout=TIMEOUT
            )
    finally:
        grpc_client.close()
    assert grpc_status(caught.value) == "INVALID_ARGUMENT"
    assert caught.value.message() == expected
    ok = client.post(f"/v2/models/{model}/infer", json=v2_body(ROWS))
    assert ok.status_code == 200, ok.text


def test_model_returning_a_non_dict_is_500_with_a_clear_message(
    client: httpx.Client, gateway: Server
) -> None:
    r = client.post("/v2/models/not-a-dict/infer", json=v2_body(ROWS))
    assert r.status_code == 500, r.text
    text = error_of(r)
    assert "inproc_models:not_a_dict" in text, text
    assert "returned list" in text, text
    assert "expected a dict of numpy arrays" in text, text
    grpc_client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.infer(
                "not-a-dict", [grpc_input(np.array(ROWS, np.float32))], client_timeout=TIMEOUT
            )
    finally:
        grpc_client.close()
    assert grpc_status(caught.value) == "INTERNAL"
    assert "returned list" in caught.value.message()


X_SPEC = {"name": "x", "datatype": "FP32", "shape": [-1, -1]}
Y_SPEC = {"name": "y", "datatype": "FP32", "shape": [-1, -1]}
LOADS_SPEC = {"name": "loads", "datatype": "INT64", "shape": [1]}


@pytest.mark.parametrize(
    ("model", "inputs", "outputs"),
    [
        ("scaler", [X_SPEC], [Y_SPEC, LOADS_SPEC]),
        ("double", [X_SPEC], [Y_SPEC]),
        ("not-a-dict", [], []),
    ],
)
def test_model_metadata_comes_from_the_declared_tensor_specs(
    client: httpx.Client,
    gateway: Server,
    model: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> None:
    r = client.get(f"/v2/models/{model}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == model
    assert body["platform"] == "tensorgate-python"
    assert body["inputs"] == inputs
    assert body["outputs"] == outputs
    grpc_client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        metadata = grpc_client.get_model_metadata(model, as_json=True, client_timeout=TIMEOUT)
    finally:
        grpc_client.close()
    assert metadata["name"] == model
    assert metadata["platform"] == "tensorgate-python"

    def specs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Protobuf JSON: int64 dims as strings.
        return [{**t, "shape": [int(d) for d in t.get("shape", [])]} for t in items]

    assert specs(metadata.get("inputs", [])) == inputs
    assert specs(metadata.get("outputs", [])) == outputs


# -- forwarded headers --------------------------------------------------------------------------

FORWARDED = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=opaque",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-sampled": "1",
    "authorization": "Bearer token-123",
    "x-tenant": "acme",  # configured as forward_headers: [X-Tenant]
}
NOT_FORWARDED = {"x-secret": "do-not-forward", "x-other-tenant": "nope"}


def send_with_headers(gateway: Server, front: str, model: str, headers: Mapping[str, str]) -> None:
    """One inference request to ``model`` through ``front`` with ``headers``; must succeed."""
    if front == "grpc":
        grpc_unary(
            gateway.grpc_target, "ModelInfer", grpc_rows_request(model), list(headers.items())
        )
        return
    path, body = (
        (f"/v2/models/{model}/infer", v2_body(ROWS))
        if front == "v2"
        else (f"/v1/models/{model}:predict", {"instances": ROWS})
    )
    r = httpx.post(gateway.http_url + path, json=body, headers=dict(headers), timeout=TIMEOUT)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("backend", ["rest", "grpc"])
@pytest.mark.parametrize("front", ["v2", "v1", "grpc"])
def test_tracing_auth_and_configured_headers_reach_the_backend(
    gateway: Server,
    recorder: Recorder,
    fake_grpc: tuple[FakeGrpc, FakeGrpc],
    front: str,
    backend: str,
) -> None:
    rid = f"hdr-{front}-{backend}-{uuid.uuid4().hex}"
    headers = {**FORWARDED, **NOT_FORWARDED, "x-request-id": rid}
    send_with_headers(gateway, front, f"echo-{backend}", headers)
    if backend == "rest":
        seen = recorder.headers_of(rid)
    else:
        seen = next((m for s in fake_grpc if (m := s.metadata_of(rid)) is not None), None)
    assert seen is not None, f"the backend got no request with x-request-id {rid}"
    for name, value in FORWARDED.items():
        assert seen.get(name) == value, (name, seen)
    for name in NOT_FORWARDED:
        assert name not in seen, (name, seen)


def test_an_aliased_model_keeps_its_route_name_in_metadata(gateway: Server) -> None:
    """Route ``total`` serves KServe's ``sum``: its metadata (from KServe) names ``total``, the
    model the client asked for, over REST and gRPC."""
    r = httpx.get(f"{gateway.http_url}/v2/models/total", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "total"
    assert r.json()["inputs"], r.json()  # KServe's own description of the model
    client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        metadata = client.get_model_metadata("total", as_json=True, client_timeout=TIMEOUT)
    finally:
        client.close()
    assert metadata["name"] == "total"


def test_a_passthrough_answer_keeps_the_backend_headers(gateway: Server) -> None:
    """The backend's own headers reach the client, as through any reverse proxy; hop-by-hop
    ones, framing, ``Server`` and ``Date`` are the gateway's. A busy 503 keeps ``Retry-After``."""
    url = f"{gateway.http_url}/v2/models/echo-rest/infer"
    with httpx.Client(timeout=TIMEOUT) as http:
        answer = http.post(url, json=v2_body(ROWS), headers={"x-request-id": "kept-1"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-recorded"] == "1"
        assert "BaseHTTP" not in answer.headers.get("server", "")
        assert answer.headers["x-request-id"] == "kept-1"
        assert answer.headers["content-length"] == str(len(answer.content))
        busy = http.post(url, json=v2_body(ROWS, parameters={"busy": True}))
        assert busy.status_code == 503, busy.text
        assert (busy.headers["retry-after"], busy.headers["x-recorded"]) == ("7", "1")


# -- gRPC message size --------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["grpc", "http"])
def test_grpc_message_over_the_limit_is_refused_at_once(gateway: Server, port: str) -> None:
    target = gateway.grpc_target if port == "grpc" else f"{HOST}:{gateway.http_port}"
    client = grpcclient.InferenceServerClient(target)
    try:
        big = np.ones((1, 50_000), np.float32)  # 200 KB of raw tensor data
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as caught:
            client.infer("double", [grpc_input(big)], client_timeout=TIMEOUT)
        assert time.monotonic() - started < 5.0
        assert grpc_status(caught.value) in ("RESOURCE_EXHAUSTED", "OUT_OF_RANGE"), caught.value
        assert str(MAX_MESSAGE) in caught.value.message(), caught.value.message()
        small = np.ones((2, 1_000), np.float32)
        result = client.infer("double", [grpc_input(small)], client_timeout=TIMEOUT)
        np.testing.assert_array_equal(result.as_numpy("y"), small * 2)
    finally:
        client.close()


# -- failures at start --------------------------------------------------------------------------


def run_serve(
    tmp_path: Path, config: Mapping[str, Any] | None, ports: tuple[int, int] | None = None
) -> tuple[subprocess.CompletedProcess[str], float, Path | None]:
    """``python -m tensorgate serve`` that is expected to exit: the result, the seconds it took
    and the config file."""
    http_port, grpc_port = ports or tuple(free_ports(2))
    argv = [sys.executable, "-m", "tensorgate", "serve"]
    path = None
    if config is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        argv += ["--config", str(path)]
    argv += ["--host", HOST, "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    env = {**os.environ, **python_path()}
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False, env=env)
    return result, time.monotonic() - started, path


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"models": [{"name": "m", "backend": {"url": "ftp://x:1"}}]}, "models[0].backend.url"),
        (
            {"models": [{"name": "m", "backend": {"url": "http://h:1"}, "retires": 1}]},
            "models[0]: unknown key 'retires'",
        ),
        ({"grpc_max_message_bytes": 10}, "grpc_max_message_bytes"),
        (
            {"models": [{"name": "m", "backend": {"urls": ["http://h:1", "grpc://h:2"]}}]},
            "models[0].backend.urls[1]",
        ),
    ],
)
def test_serve_with_an_invalid_file_exits_2_naming_file_and_field(
    tmp_path: Path, config: dict[str, Any], field: str
) -> None:
    result, elapsed, path = run_serve(tmp_path, config)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert f"{path}: {field}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert elapsed < 10.0


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("no_such_module_xyz:predict", "cannot be loaded: No module named 'no_such_module_xyz'"),
        ("inproc_models:BrokenLoad", "failed to load: RuntimeError: weights.bin is missing"),
    ],
)
def test_serve_with_a_model_that_cannot_load_exits_2_naming_it(
    tmp_path: Path, target: str, reason: str
) -> None:
    """A python target that cannot be imported, or whose load() fails, is an invalid
    configuration value: exit 2 and a one-line message naming it, like every other invalid
    value (not a traceback)."""
    config = {"models": [{"name": "m", "backend": {"python": target}}]}
    result, elapsed, path = run_serve(tmp_path, config)
    assert elapsed < 10.0
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    expected = f"{path}: models[0].backend.python: model 'm': python model {target!r} {reason}"
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("taken", ["http", "grpc"])
def test_a_port_in_use_fails_naming_the_address(tmp_path: Path, taken: str) -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        busy = int(holder.getsockname()[1])
        other = free_port()
        ports = (busy, other) if taken == "http" else (other, busy)
        result, elapsed, _ = run_serve(tmp_path, None, ports)
    assert result.returncode != 0, result.stderr
    assert f"{HOST}:{busy}" in result.stderr, result.stderr
    assert "in use" in result.stderr.lower(), result.stderr
    assert elapsed < 10.0


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_worker_thread_count_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """tokio's ``TOKIO_WORKER_THREADS`` is read by the gateway: a bad value is a one-line error
    and exit 1, not a panic."""
    monkeypatch.setenv("TOKIO_WORKER_THREADS", value)
    result, elapsed, _ = run_serve(tmp_path, None)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert f'TOKIO_WORKER_THREADS must be a positive integer, not "{value}"' in result.stderr
    assert "panic" not in result.stderr.lower(), result.stderr
    assert elapsed < 10.0


def test_a_full_python_queue_sheds_with_503(tmp_path: Path) -> None:
    """One worker busy, one call waiting (python_queue_size 1): the next calls are shed at once,
    and the ones admitted still finish."""
    config = {
        "python_workers": 1,
        "python_queue_size": 1,
        "models": [{"name": "slow", "backend": {"python": "inproc_models:slow"}}],
    }
    with start_gateway(config, env=python_path(), log_dir=tmp_path) as gw:
        url = f"{gw.http_url}/v2/models/slow/infer"

        def post(_: int) -> tuple[int, str]:
            with httpx.Client(timeout=TIMEOUT) as http:
                response = http.post(url, json=v2_body(ROWS))
            return response.status_code, response.text

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(post, range(6)))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(200) >= 2, answers
    assert 503 in statuses, answers
    shed = [text for status, text in answers if status == 503]
    assert all("python_queue_size" in text for text in shed), shed
