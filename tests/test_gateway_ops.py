"""End-to-end operation of the gateway: health and discovery routes, readiness that follows a
backend, SIGTERM drain, SIGHUP reload under load, request ids, metrics, access logs, the
``check-config`` command, demo mode and the sidecar shortcut.

Backends are a real KServe ModelServer and, where the test must see what the backend received, a
small recording V2 server (stdlib ``http.server``) run in a thread of the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorgate
import tritonclient.grpc as grpcclient
import yaml
from conftest import ServerFactory
from oip import infer_request, message
from recorder import Recorder
from servers import (
    HOST,
    ROOT,
    Server,
    SplitProcess,
    free_port,
    metric,
    python_path,
    start_gateway,
    start_gateway_split,
    start_kserve_on,
    wait_until,
)

ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]
ROW_SUMS = [6.0, 15.5]
TIMEOUT = 10.0
SCRIPT = Path(sys.executable).parent / "tensorgate"


def v2_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    """A V2 JSON request with input ``x`` FP32 [N, K]."""
    shape = [len(rows), len(rows[0])]
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": flat}], **extra}


def status_of(url: str) -> int:
    """The status of ``GET url``, or 0 when the request fails."""
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return 0


def grpc_sum(target: str, model: str) -> list[float]:
    """Output ``sum`` of a gRPC ModelInfer of :data:`ROWS`."""
    client = grpcclient.InferenceServerClient(target)
    try:
        x = np.array(ROWS, np.float32)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor], client_timeout=TIMEOUT)
        values: list[float] = result.as_numpy("sum").tolist()
        return values
    finally:
        client.close()


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# -- a recording V2 backend ---------------------------------------------------------------------


# -- the shared gateway -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(
    kserve_backend: Server, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    config = {
        "models": [
            {"name": "sum", "backend": {"url": kserve_backend.http_url}},
            {
                "name": "sum-v1",
                "backend": {"url": kserve_backend.http_url, "protocol": "v1", "model": "sum"},
            },
            {"name": "echo", "backend": {"url": recorder.url}},
            {"name": "demo", "backend": {"python": "tensorgate.demo:sum"}},
        ]
    }
    log_dir = tmp_path_factory.mktemp("gateway-ops")
    with start_gateway(config, log_dir=log_dir) as server:
        yield server


@pytest.fixture
def client(gateway: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
        yield http


# -- health and discovery -----------------------------------------------------------------------


def test_health_and_server_routes(client: httpx.Client) -> None:
    expected = {
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/": {"status": "alive"},
        "/v2/models": {"models": ["sum", "sum-v1", "echo", "demo"]},
        "/v1/models": {"models": ["sum", "sum-v1", "echo", "demo"]},
        "/v1/models/sum": {"name": "sum", "ready": True},
        "/v2/models/sum/ready": {"name": "sum", "ready": True},
        "/v2/models/demo/ready": {"name": "demo", "ready": True},
    }
    for path, body in expected.items():
        r = client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("application/json"), path
        assert r.json() == body, path
    server = client.get("/v2")
    assert server.status_code == 200, server.text
    metadata = server.json()
    assert metadata["name"] == "tensorgate"
    assert metadata["version"] == tensorgate.__version__
    assert all(isinstance(e, str) for e in metadata["extensions"])


def test_model_metadata_through_the_gateway(client: httpx.Client) -> None:
    r = client.get("/v2/models/sum")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "sum"
    assert body["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert body["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [-1]}]


def test_grpc_health_and_metadata(gateway: Server) -> None:
    client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        assert client.is_server_live(client_timeout=TIMEOUT)
        assert client.is_server_ready(client_timeout=TIMEOUT)
        assert client.is_model_ready("sum", client_timeout=TIMEOUT)
        assert client.get_server_metadata(client_timeout=TIMEOUT).name == "tensorgate"
    finally:
        client.close()
    assert grpc_sum(gateway.grpc_target, "sum") == ROW_SUMS


# -- readiness follows the backend --------------------------------------------------------------


def test_readiness_follows_a_backend_that_stops_and_comes_back(
    start_kserve: ServerFactory, tmp_path: Path
) -> None:
    backend = start_kserve()
    config = {
        "health_check_interval_s": 0.2,
        "models": [{"name": "sum", "backend": {"url": backend.http_url}}],
    }
    with start_gateway(config, log_dir=tmp_path / "gateway") as gateway:
        ready = gateway.http_url + "/v2/health/ready"
        model_ready = gateway.http_url + "/v2/models/sum/ready"
        assert status_of(ready) == 200
        assert status_of(model_ready) == 200

        backend.stop()
        wait_until(lambda: status_of(ready) == 503, 3.0, "server ready 503 after backend stop")
        r = httpx.get(model_ready, timeout=TIMEOUT)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "Model with name sum is not ready."}
        assert status_of(gateway.http_url + "/v1/models/sum") == 503
        assert status_of(gateway.http_url + "/v2/health/live") == 200

        ports = (backend.http_port, backend.grpc_port)
        with start_kserve_on(tmp_path / "restarted", *ports):
            wait_until(lambda: status_of(ready) == 200, 3.0, "server ready 200 after restart")
            assert status_of(model_ready) == 200
            infer = httpx.post(
                gateway.http_url + "/v2/models/sum/infer", json=v2_body(ROWS), timeout=TIMEOUT
            )
            assert infer.status_code == 200, infer.text
            assert infer.json()["outputs"][0]["data"] == ROW_SUMS


def test_a_backend_never_reached_is_not_ready_in_kserve_words(tmp_path: Path) -> None:
    """Without health checks, readiness asks the backend; one that cannot be reached makes the
    model not ready (KServe's text, gRPC ready=false), not a connection error."""
    config = {
        "health_check_interval_s": 0,
        "models": [{"name": "m", "backend": {"url": f"http://{HOST}:{free_port()}"}}],
    }
    with start_gateway(config, log_dir=tmp_path) as gateway:
        r = httpx.get(gateway.http_url + "/v2/models/m/ready", timeout=TIMEOUT)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "Model with name m is not ready."}
        client = grpcclient.InferenceServerClient(gateway.grpc_target)
        assert client.is_model_ready("m", client_timeout=TIMEOUT) is False


# -- signals ------------------------------------------------------------------------------------


def refused(port: int) -> bool:
    """Whether a new TCP connection to ``port`` is refused."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sigterm_drains_in_flight_requests(kserve_backend: Server, tmp_path: Path) -> None:
    drain_timeout = 5.0
    config = {
        "drain_timeout_s": drain_timeout,
        "models": [{"name": "slow", "backend": {"url": kserve_backend.http_url}}],
    }
    with start_gateway(config, log_dir=tmp_path) as gateway:
        results: list[httpx.Response | BaseException] = []

        def in_flight() -> None:
            body = v2_body(ROWS, parameters={"sleep": 1.5})
            try:
                results.append(
                    httpx.post(f"{gateway.http_url}/v2/models/slow/infer", json=body, timeout=10)
                )
            except httpx.HTTPError as error:
                results.append(error)

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.3)
        gateway.signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            wait_until(lambda: refused(gateway.http_port), 1.0, "HTTP port refuses after SIGTERM")
            wait_until(lambda: refused(gateway.grpc_port), 1.0, "gRPC port refuses after SIGTERM")
            assert thread.is_alive(), "the slow request ended before the listeners closed"
        finally:
            thread.join(TIMEOUT)
        assert len(results) == 1
        response = results[0]
        assert isinstance(response, httpx.Response), repr(response)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == ROW_SUMS
        code = gateway.process.popen.wait(drain_timeout + 2.0 - (time.monotonic() - signalled))
        assert code == 0, gateway.log()


def thread_names(pid: int) -> set[str]:
    """The names of a process's threads."""
    return {(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()}


def usable_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (the rule
    the gateway's runtime choice follows)."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cpus


def terminate_while_in_flight(
    gateway: Server, requests: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    """POSTs each ``(model, V2 body)`` at once, sends SIGTERM half a second later (the requests
    must take longer than that), and returns the answers' first outputs in order; the gateway
    must exit 0 (everything drained). ``/metrics`` cannot tell when they are in flight: a Python
    worker renders it, and in-process calls may hold every worker."""
    answers: dict[int, Any] = {}

    def post(index: int, model: str, body: dict[str, Any]) -> None:
        url = f"{gateway.http_url}/v2/models/{model}/infer"
        response = httpx.post(url, json=body, timeout=TIMEOUT)
        answers[index] = response.json()["outputs"][0]["data"] if response.is_success else response

    threads = [
        threading.Thread(target=post, args=(index, model, body))
        for index, (model, body) in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    gateway.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(TIMEOUT)
    assert gateway.process.popen.wait(TIMEOUT) == 0, gateway.log()
    return [answers.get(index) for index in range(len(requests))]


def test_sigterm_drains_in_process_calls(tmp_path: Path) -> None:
    """In-process calls in flight at SIGTERM finish, including one still queued for the only
    Python worker: workers stop after the drain, not at the signal."""
    config = {
        "python_workers": 1,
        "models": [{"name": "sleepy", "backend": {"python": "inproc_models:sleepy"}}],
    }
    rows = [[1.5, 2.0]]  # 1.5 s each: one runs at SIGTERM, the other waits for the worker
    with start_gateway(config, log_dir=tmp_path, env=python_path()) as gateway:
        requests = [("sleepy", v2_body(rows)), ("sleepy", v2_body(rows))]
        assert terminate_while_in_flight(gateway, requests) == [rows[0], rows[0]]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_gateway_on_one_cpu_runs_on_one_io_thread(kserve_backend: Server, tmp_path: Path) -> None:
    """Given one CPU, the gateway drives tokio from a single I/O thread (a current-thread
    runtime): remote and in-process models over REST and gRPC, SIGHUP and SIGTERM still work."""
    config: dict[str, Any] = {
        "drain_timeout_s": 5.0,
        "models": [
            {"name": "sum", "backend": {"url": kserve_backend.http_url}},
            {"name": "slow", "backend": {"url": kserve_backend.http_url}},
            {"name": "demo", "backend": {"python": "tensorgate.demo:sum"}},
            {"name": "sleepy", "backend": {"python": "inproc_models:sleepy"}},
        ],
    }
    pinned = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    with start_gateway(config, log_dir=tmp_path, prefix=pinned, env=python_path()) as gateway:
        names = thread_names(gateway.pid)
        assert "tensorgate-io" in names, names
        assert "tensorgate" not in names, names
        for model in ("sum", "demo"):
            response = httpx.post(
                f"{gateway.http_url}/v2/models/{model}/infer", json=v2_body(ROWS), timeout=TIMEOUT
            )
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == ROW_SUMS
            assert grpc_sum(gateway.grpc_target, model) == ROW_SUMS
        gateway.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in gateway.log(), TIMEOUT, "the gateway logs the reload")
        assert grpc_sum(gateway.grpc_target, "demo") == ROW_SUMS
        requests = [
            ("slow", v2_body(ROWS, parameters={"sleep": 1.5})),
            ("sleepy", v2_body([[1.5, 2.0]])),
        ]
        assert terminate_while_in_flight(gateway, requests) == [ROW_SUMS, [1.5, 2.0]]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_worker_count_asked_for_keeps_worker_threads_on_one_cpu(tmp_path: Path) -> None:
    pinned = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    env = {"TOKIO_WORKER_THREADS": "2"}
    with start_gateway(None, log_dir=tmp_path, prefix=pinned, env=env) as gateway:
        names = thread_names(gateway.pid)
        assert "tensorgate-io" not in names, names
        assert "tensorgate" in names, names
        assert status_of(f"{gateway.http_url}/v2/health/ready") == 200


@pytest.mark.skipif(usable_cpus() < 2, reason="needs two CPUs")
def test_gateway_on_several_cpus_runs_worker_threads(tmp_path: Path) -> None:
    with start_gateway(None, log_dir=tmp_path) as gateway:
        names = thread_names(gateway.pid)
        assert "tensorgate" in names, names
        assert "tensorgate-io" not in names, names


def test_sighup_reloads_under_load_without_failures(kserve_backend: Server, tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "models": [
            {"name": "sum", "backend": {"url": kserve_backend.http_url}},
            {"name": "demo", "backend": {"python": "tensorgate.demo:sum"}},
        ]
    }
    with start_gateway(config, log_dir=tmp_path) as gateway:
        path = tmp_path / f"gateway-{gateway.http_port}.yaml"
        assert path.exists()
        reloaded = threading.Event()
        lock = threading.Lock()
        done = [0]
        after_reload = [0]
        failures: list[str] = []

        def load(worker: int) -> None:
            requests = [
                ("/v2/models/sum/infer", v2_body(ROWS)),
                ("/v1/models/sum:predict", {"instances": ROWS}),
                ("/v2/models/demo/infer", v2_body(ROWS)),
            ]
            mine = after = 0
            with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
                # At least 75 each; then on until 10 more have gone through after the reload.
                while mine < 400 and not (mine >= 75 and after >= 10):
                    url, body = requests[(mine + worker) % len(requests)]
                    try:
                        r = http.post(url, json=body)
                        if r.status_code != 200:
                            failures.append(f"{url}: {r.status_code} {r.text}")
                    except httpx.HTTPError as error:
                        failures.append(f"{url}: {error!r}")
                    mine += 1
                    if reloaded.is_set():
                        after += 1
                    with lock:
                        done[0] += 1
            with lock:
                after_reload[0] += after

        threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: done[0] >= 40, TIMEOUT, "40 requests before the reload")
            config["models"] += [
                {"name": "sum-again", "backend": {"url": kserve_backend.http_url, "model": "sum"}},
                {"name": "classifier", "backend": {"python": "tensorgate.demo:classifier"}},
            ]
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            gateway.signal(signal.SIGHUP)

            def listed() -> bool:
                r = httpx.get(gateway.http_url + "/v2/models", timeout=TIMEOUT)
                return "sum-again" in r.json()["models"]

            wait_until(listed, 5.0, "the new route listed after SIGHUP")
            reloaded.set()
        finally:
            reloaded.set()
            for thread in threads:
                thread.join(30.0)
        assert not any(t.is_alive() for t in threads)
        assert failures == [], failures[:5]
        assert done[0] >= 300
        assert after_reload[0] >= 40
        # A new in-process model is served too, with its declared metadata.
        iris = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        answer = httpx.post(
            gateway.http_url + "/v2/models/classifier/infer",
            json={"inputs": [iris]},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200, answer.text
        labels = [o["data"] for o in answer.json()["outputs"] if o["name"] == "label"]
        assert labels == [[0]]
        r = httpx.post(
            gateway.http_url + "/v2/models/sum-again/infer", json=v2_body(ROWS), timeout=TIMEOUT
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == ROW_SUMS
        assert gateway.process.running()


# -- request ids --------------------------------------------------------------------------------


def test_request_id_is_generated_echoed_and_forwarded_over_rest(
    client: httpx.Client, recorder: Recorder
) -> None:
    generated = client.post("/v2/models/echo/infer", json=v2_body(ROWS))
    assert generated.status_code == 200, generated.text
    rid = generated.headers["x-request-id"]
    assert is_uuid(rid), rid
    assert recorder.headers_of(rid) is not None, "the backend got another id"

    given = "client-id-" + uuid.uuid4().hex
    echoed = client.post(
        "/v2/models/echo/infer", json=v2_body(ROWS), headers={"x-request-id": given}
    )
    assert echoed.status_code == 200, echoed.text
    assert echoed.headers["x-request-id"] == given
    assert recorder.headers_of(given) is not None
    # Translated (V1 front, V2 backend) too.
    v1_id = "v1-" + uuid.uuid4().hex
    v1 = client.post(
        "/v1/models/echo:predict", json={"instances": ROWS}, headers={"x-request-id": v1_id}
    )
    assert v1.status_code == 200, v1.text
    assert v1.headers["x-request-id"] == v1_id
    assert recorder.headers_of(v1_id) is not None
    # Errors carry it as well.
    missing = client.get("/v2/models/nope/ready", headers={"x-request-id": given})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == given
    assert is_uuid(client.get("/v3").headers["x-request-id"])


def grpc_infer_with_metadata(
    target: str, model: str, metadata: list[tuple[str, str]]
) -> tuple[Any, dict[str, str]]:
    """A raw gRPC ModelInfer of :data:`ROWS`: the response and its initial metadata."""
    request = infer_request(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend(v for row in ROWS for v in row)
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelInferResponse").FromString,
        )
        response, call = infer.with_call(request, metadata=metadata, timeout=TIMEOUT)
        return response, {k: v for k, v in call.initial_metadata() if isinstance(v, str)}


def test_request_id_over_grpc_is_echoed_and_forwarded(gateway: Server, recorder: Recorder) -> None:
    given = "grpc-" + uuid.uuid4().hex
    _, headers = grpc_infer_with_metadata(gateway.grpc_target, "echo", [("x-request-id", given)])
    assert headers.get("x-request-id") == given
    assert recorder.headers_of(given) is not None


def test_grpc_model_calls_return_the_request_id(gateway: Server) -> None:
    given = "grpc-ready-" + uuid.uuid4().hex
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        ready = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message("ModelReadyResponse").FromString,
        )
        request = message("ModelReadyRequest")(name="echo")
        response, call = ready.with_call(request, metadata=[("x-request-id", given)], timeout=10)
    assert response.ready
    assert dict(call.initial_metadata()).get("x-request-id") == given


def test_grpc_errors_carry_the_request_id(gateway: Server) -> None:
    given = "grpc-err-" + uuid.uuid4().hex
    with pytest.raises(grpc.RpcError) as failed:
        grpc_infer_with_metadata(gateway.grpc_target, "nope", [("x-request-id", given)])
    error: Any = failed.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert dict(error.trailing_metadata() or ()).get("x-request-id") == given


def test_a_backend_retry_after_reaches_the_client(client: httpx.Client) -> None:
    r = client.post("/v2/models/echo/infer", json=v2_body(ROWS, parameters={"busy": True}))
    assert r.status_code == 503, r.text
    assert r.json() == {"error": "busy, come back later"}
    assert r.headers["retry-after"] == "7"


def test_generated_grpc_request_id_is_the_one_forwarded(
    gateway: Server, recorder: Recorder
) -> None:
    """Without a client id, the id the gateway answers with is the one the backend saw."""
    _, headers = grpc_infer_with_metadata(gateway.grpc_target, "echo", [])
    rid = headers.get("x-request-id", "")
    assert is_uuid(rid), headers
    assert recorder.headers_of(rid) is not None, "the backend received a different x-request-id"


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_count_requests_per_model(client: httpx.Client, gateway: Server) -> None:
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/v2/models/sum/infer", json=v2_body(ROWS)).status_code == 200
    assert client.post("/v2/models/nope/infer", json=v2_body(ROWS)).status_code == 404
    # Whatever KServe answers (its sum model has no explainer), the call is an explain.
    client.post("/v1/models/sum-v1:explain", json={"instances": ROWS})
    assert grpc_sum(gateway.grpc_target, "demo") == ROW_SUMS
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert "tensorgate_requests_total" in after
    assert 'model="nope"' not in after
    assert 'model_name="nope"' not in after
    assert "request_predict_seconds" in after
    ok_v2 = {"model": "sum", "protocol": "v2", "code": "200"}
    assert (
        metric(after, "tensorgate_requests_total", ok_v2)
        - metric(before, "tensorgate_requests_total", ok_v2)
        == 3
    )
    grpc_ok = {"model": "demo", "protocol": "grpc", "code": "OK"}
    assert metric(after, "tensorgate_requests_total", grpc_ok) >= 1
    count = "request_predict_seconds_count"
    # In-process and remote (KServe) models alike: KServe counts every predict call.
    assert metric(after, count, {"model_name": "demo"}) >= 1
    assert (
        metric(after, count, {"model_name": "sum"}) - metric(before, count, {"model_name": "sum"})
        == 3
    )
    assert metric(after, count, {"model_name": "sum-v1"}) == 0
    explains = "request_explain_seconds_count"
    assert (
        metric(after, explains, {"model_name": "sum-v1"})
        - metric(before, explains, {"model_name": "sum-v1"})
        == 1
    )


def test_metrics_do_not_wait_for_busy_python_workers(tmp_path: Path) -> None:
    """A scrape has its own thread: with the only worker busy and a call queued behind it, the
    page still comes at once."""
    config = {
        "python_workers": 1,
        "models": [{"name": "sleepy", "backend": {"python": "inproc_models:sleepy"}}],
    }
    with start_gateway(config, log_dir=tmp_path, env=python_path()) as gateway:
        calls = [
            threading.Thread(
                target=httpx.post,
                args=(f"{gateway.http_url}/v2/models/sleepy/infer",),
                kwargs={"json": v2_body([[2.0, 0.0]]), "timeout": TIMEOUT},
            )
            for _ in range(2)
        ]
        for call in calls:
            call.start()
        in_flight = 0.0
        deadline = time.monotonic() + 1.5  # the calls take 2 s each, one after the other
        while in_flight < 2 and time.monotonic() < deadline:
            started = time.monotonic()
            page = httpx.get(f"{gateway.http_url}/metrics", timeout=TIMEOUT)
            took = time.monotonic() - started
            assert page.status_code == 200
            assert took < 1.0, f"/metrics took {took:.2f} s behind the model calls"
            in_flight = metric(page.text, "tensorgate_in_flight_requests", {"model": "sleepy"})
        assert in_flight == 2, "both calls in flight (one running, one queued) while scraping"
        for call in calls:
            call.join(TIMEOUT)


# -- access log ---------------------------------------------------------------------------------


def access_log_gateway(fmt: str, log_dir: Path) -> Server:
    config = {
        "access_log": fmt,
        "models": [{"name": "sum", "backend": {"python": "tensorgate.demo:sum"}}],
    }
    return start_gateway_split(config, log_dir=log_dir)


def stderr_of(gateway: Server) -> str:
    assert isinstance(gateway.process, SplitProcess)
    return gateway.process.stderr()


def test_access_log_text_on_stdout(tmp_path: Path) -> None:
    with access_log_gateway("text", tmp_path) as gateway:
        rid = "text-" + uuid.uuid4().hex
        r = httpx.post(
            gateway.http_url + "/v2/models/sum/infer",
            json=v2_body(ROWS),
            headers={"x-request-id": rid},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: rid in gateway.log(), 3.0, "the access log line on stdout")
        (line,) = [ln for ln in gateway.log().splitlines() if rid in ln]
        assert line.startswith(f"{rid} POST /v2/models/sum/infer model=sum protocol=v2 status=200 ")
        assert "latency_ms=" in line
        assert rid not in stderr_of(gateway)
        assert "listening on" in stderr_of(gateway)  # the banner is on stderr, not stdout


def test_access_log_json_on_stdout(tmp_path: Path) -> None:
    with access_log_gateway("json", tmp_path) as gateway:
        rid = "json-" + uuid.uuid4().hex
        r = httpx.post(
            gateway.http_url + "/v1/models/sum:predict",
            json={"instances": ROWS},
            headers={"x-request-id": rid},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        missing = httpx.get(gateway.http_url + "/v2/models/nope/ready", timeout=TIMEOUT)
        wait_until(lambda: rid in gateway.log(), 3.0, "the access log line on stdout")
        wait_until(lambda: missing.headers["x-request-id"] in gateway.log(), 3.0, "the 404's line")
        records = [json.loads(ln) for ln in gateway.log().splitlines() if ln.startswith("{")]
        (record,) = [rec for rec in records if rec["request_id"] == rid]
        assert record["method"] == "POST"
        assert record["path"] == "/v1/models/sum:predict"
        assert record["model"] == "sum"
        assert record["protocol"] == "v1"
        assert record["status"] == 200
        assert isinstance(record["latency_ms"], float | int)
        (error,) = [rec for rec in records if rec["request_id"] == missing.headers["x-request-id"]]
        assert error["status"] == 404
        assert rid not in stderr_of(gateway)
        # gRPC calls about a model are logged too, with the gRPC status code.
        grpc_id = "grpc-" + uuid.uuid4().hex
        client = grpcclient.InferenceServerClient(gateway.grpc_target)
        assert client.is_model_ready("sum", headers={"x-request-id": grpc_id})
        wait_until(lambda: grpc_id in gateway.log(), 3.0, "the ModelReady line")
        records = [json.loads(ln) for ln in gateway.log().splitlines() if ln.startswith("{")]
        (ready,) = [rec for rec in records if rec["request_id"] == grpc_id]
        assert ready["path"] == "/inference.GRPCInferenceService/ModelReady"
        assert (ready["model"], ready["protocol"], ready["status"]) == ("sum", "grpc", 0)


def test_access_log_off_is_silent(tmp_path: Path) -> None:
    with access_log_gateway("off", tmp_path) as gateway:
        rid = "off-" + uuid.uuid4().hex
        r = httpx.post(
            gateway.http_url + "/v2/models/sum/infer",
            json=v2_body(ROWS),
            headers={"x-request-id": rid},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        httpx.get(gateway.http_url + "/v3", headers={"x-request-id": rid}, timeout=TIMEOUT)
        time.sleep(0.3)
        assert rid not in gateway.log()
        assert rid not in stderr_of(gateway)
        assert gateway.log() == ""


# -- command line -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def test_check_config_accepts_the_example() -> None:
    result = run_cli("check-config", "examples/gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "examples/gateway.yaml: ok" in result.stdout


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"models": [{"name": "m", "backend": {"url": "ftp://x:1"}}]}, "models[0].backend.url"),
        ({"models": [{"name": "m", "backend": {"python": "a:b"}, "timeout": 3}]}, "models[0]"),
        ({"http_port": "eighty"}, "http_port"),
        ({"access_log": "loud"}, "access_log"),
        (
            {
                "models": [
                    {"name": "ok", "backend": {"python": "tensorgate.demo:sum"}},
                    {"name": "m", "backend": {"python": "no_such_module_xyz:predict"}},
                ]
            },
            "models[1].backend.python",
        ),
    ],
)
def test_check_config_rejects_a_bad_file_naming_the_field(
    tmp_path: Path, document: dict[str, Any], field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"{path}: {field}" in result.stderr, result.stderr


# -- demo mode and the sidecar shortcut ---------------------------------------------------------


def test_serve_without_config_serves_the_demo_models(tmp_path: Path) -> None:
    with start_gateway(None, log_dir=tmp_path) as gateway:
        models = httpx.get(gateway.http_url + "/v2/models", timeout=TIMEOUT).json()["models"]
        assert {"sum", "echo", "classifier"} <= set(models)
        r = httpx.post(gateway.http_url + "/v2/models/sum/infer", json=v2_body(ROWS), timeout=10)
        assert r.status_code == 200, r.text
        (output,) = r.json()["outputs"]
        assert output["name"] == "sum"
        assert output["data"] == ROW_SUMS
        v1 = httpx.post(
            gateway.http_url + "/v1/models/sum:predict", json={"instances": ROWS}, timeout=10
        )
        assert v1.json() == {"predictions": ROW_SUMS}
        assert grpc_sum(gateway.grpc_target, "sum") == ROW_SUMS


def test_a_listing_does_not_wait_for_a_silent_wildcard_backend(tmp_path: Path) -> None:
    """A wildcard backend that accepts connections but never answers costs a listing at most
    its own short timeout; the configured models are still listed."""
    with socket.create_server((HOST, 0)) as silent:  # listens, never accepts nor answers
        config = {
            "models": [
                {"name": "sum", "backend": {"python": "tensorgate.demo:sum"}},
                {"name": "*", "backend": {"url": f"http://{HOST}:{silent.getsockname()[1]}"}},
            ]
        }
        with start_gateway(config, log_dir=tmp_path) as gateway:
            started = time.monotonic()
            r = httpx.get(gateway.http_url + "/v2/models", timeout=TIMEOUT)
            assert r.json() == {"models": ["sum"]}
            assert time.monotonic() - started < 4.0


def test_sidecar_backend_flag_forwards_any_model(kserve_backend: Server, tmp_path: Path) -> None:
    with start_gateway(None, args=["--backend", kserve_backend.http_url], log_dir=tmp_path) as gw:
        for model in ("sum", "picky", "slow"):
            body = v2_body(ROWS, parameters={"sleep": 0})  # slow sleeps for 0 s
            r = httpx.post(f"{gw.http_url}/v2/models/{model}/infer", json=body, timeout=10)
            assert r.status_code == 200, (model, r.text)
            assert r.json()["outputs"][0]["data"] == ROW_SUMS
        v1 = httpx.post(
            f"{gw.http_url}/v1/models/sum:predict", json={"instances": ROWS}, timeout=10
        )
        assert v1.status_code == 200, v1.text
        assert v1.json() == {"predictions": ROW_SUMS}
        picky = httpx.post(
            f"{gw.http_url}/v2/models/picky/infer", json=v2_body([[1.0, -2.0]]), timeout=10
        )
        assert picky.status_code == 400
        assert picky.json() == {"error": "negative values are not allowed"}
        unknown = httpx.post(f"{gw.http_url}/v2/models/nope/infer", json=v2_body(ROWS), timeout=10)
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "Model with name nope does not exist."}
        assert httpx.get(f"{gw.http_url}/v2/models/sum/ready", timeout=10).status_code == 200
        assert grpc_sum(gw.grpc_target, "sum") == ROW_SUMS
        # The listings are the model server's.
        for listing in ("/v1/models", "/v2/models"):
            models = httpx.get(gw.http_url + listing, timeout=10).json()["models"]
            assert {"sum", "slow", "picky"} <= set(models), (listing, models)
        # Names the backend knows get their own series; made-up ones count under '*'.
        page = httpx.get(f"{gw.http_url}/metrics", timeout=10).text
        requests = "tensorgate_requests_total"
        assert metric(page, requests, {"model": "picky", "code": "400"}) == 1
        assert metric(page, requests, {"model": "*", "protocol": "v2", "code": "404"}) == 1
        assert metric(page, requests, {"model": "sum", "protocol": "grpc", "code": "OK"}) == 1
        assert 'model="nope"' not in page
