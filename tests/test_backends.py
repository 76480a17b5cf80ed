"""The built-in demo models, and the real backends end-to-end tests run against.

The demo models are called directly. The KServe and MLServer backends are real servers started by
the fixtures of conftest.py (tests/servers.py), reached with httpx and tritonclient.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import ServerFactory
from servers import Process, Server, ServerError, free_port, free_ports
from tensorgate import demo, models

ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]
ROW_SUMS = [6.0, 15.5]
#: Iris samples, one per class (setosa, versicolor, virginica).
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]], np.float32)


def v2_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    """A V2 JSON request with input ``x`` FP32 [N, K]."""
    shape = [len(rows), len(rows[0])]
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": flat}], **extra}


def post(url: str, body: object) -> httpx.Response:
    """POSTs JSON (KServe 0.21 treats a body without content-type as binary)."""
    return httpx.post(url, json=body, timeout=10.0)


def grpc_sum(target: str, model: str, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Output ``sum`` of a gRPC ModelInfer with input ``x`` sent as raw contents."""
    client = grpcclient.InferenceServerClient(target)
    try:
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("sum")])
        out: np.ndarray[Any, Any] = result.as_numpy("sum")
        return out
    finally:
        client.close()


# -- demo models ------------------------------------------------------------------------------


def test_demo_targets_load_with_their_specs() -> None:
    assert set(demo.DEMO_MODELS) == {"sum", "echo", "classifier"}
    for name, target in demo.DEMO_MODELS.items():
        loaded = models.load(target)
        assert loaded.inputs[0].name == "x", name
        assert loaded.outputs, name
    assert [s.name for s in models.load("tensorgate.demo:classifier").outputs] == [
        "probabilities",
        "label",
    ]


def test_demo_sum_rows() -> None:
    out = demo.sum.predict({"x": np.array(ROWS, np.float64)})
    assert out["sum"].dtype == np.float32
    np.testing.assert_array_equal(out["sum"], np.array(ROW_SUMS, np.float32))
    empty = demo.sum.predict({"x": np.zeros((0, 3), np.float32)})["sum"]
    assert empty.shape == (0,)


@pytest.mark.parametrize("x", [np.zeros(3, np.float32), np.zeros((1, 2, 3), np.float32)])
def test_demo_sum_rejects_non_matrices(x: np.ndarray[Any, Any]) -> None:
    with pytest.raises(ValueError, match=r"input 'x' has shape"):
        demo.sum.predict({"x": x})


def test_demo_missing_input_is_named() -> None:
    with pytest.raises(ValueError, match="missing input tensor 'x'"):
        demo.classifier.predict({"y": IRIS})


@pytest.mark.parametrize(
    "x",
    [
        np.array([b"a", b"", b"\xff"], dtype=object),
        np.arange(6, dtype=np.int16).reshape(2, 3),
        np.array([1.5, -0.0], np.float32),
    ],
)
def test_demo_echo_returns_the_array_unchanged(x: np.ndarray[Any, Any]) -> None:
    assert demo.echo.predict({"x": x})["y"] is x


def test_demo_classifier_labels_iris_samples() -> None:
    out = demo.classifier.predict({"x": IRIS})
    probabilities, label = out["probabilities"], out["label"]
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (3, 3)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, [0, 1, 2])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert (probabilities.max(axis=1) > 0.8).all()
    # Deterministic: the fixed weights give the same numbers every time.
    logits = IRIS[:1] @ demo.CLASSIFIER_WEIGHTS + demo.CLASSIFIER_BIAS
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probabilities[0], expected[0], rtol=1e-5)


def test_demo_classifier_is_stable_and_checks_width() -> None:
    extreme = demo.classifier.predict({"x": np.full((1, 4), 1e30, np.float32)})
    assert np.isfinite(extreme["probabilities"]).all()
    assert demo.classifier.predict({"x": np.zeros((0, 4), np.float32)})["label"].shape == (0,)
    with pytest.raises(ValueError, match=r"expected \[-1, 4\]"):
        demo.classifier.predict({"x": np.zeros((2, 3), np.float32)})


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8


def test_a_server_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"]
    process = Process(argv, tmp_path / "boom.log")
    with pytest.raises(ServerError, match=r"(?s)exited with 3.*boom"):
        process.wait_http(f"http://127.0.0.1:{free_port()}/", timeout=10.0)
    assert process.stop() == 3


# -- KServe -----------------------------------------------------------------------------------


def test_kserve_v1_predict(kserve_backend: Server) -> None:
    r = post(f"{kserve_backend.http_url}/v1/models/sum:predict", {"instances": ROWS})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": ROW_SUMS}


def test_kserve_v2_infer_json(kserve_backend: Server) -> None:
    r = post(f"{kserve_backend.http_url}/v2/models/sum/infer", v2_body(ROWS, id="r1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "r1"
    assert body["outputs"][0] | {"parameters": None} == {
        "name": "sum",
        "shape": [2],
        "datatype": "FP32",
        "parameters": None,
        "data": ROW_SUMS,
    }


def test_kserve_v2_binary_output_is_honoured(kserve_backend: Server) -> None:
    client = httpclient.InferenceServerClient(kserve_backend.http_url.removeprefix("http://"))
    try:
        x = np.array(ROWS, np.float32)
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = httpclient.InferRequestedOutput("sum", binary_data=True)
        result = client.infer("sum", [tensor], outputs=[wanted])
        assert "binary_data_size" in result.get_output("sum")["parameters"]
        np.testing.assert_array_equal(result.as_numpy("sum"), np.array(ROW_SUMS, np.float32))
    finally:
        client.close()


def test_kserve_grpc(kserve_backend: Server) -> None:
    y = grpc_sum(kserve_backend.grpc_target, "sum", np.array(ROWS, np.float32))
    np.testing.assert_array_equal(y, np.array(ROW_SUMS, np.float32))


def test_kserve_picky_rejects_negatives_with_400(kserve_backend: Server) -> None:
    r = post(f"{kserve_backend.http_url}/v2/models/picky/infer", v2_body([[1.0, -2.0]]))
    assert r.status_code == 400
    assert r.json() == {"error": "negative values are not allowed"}
    ok = post(f"{kserve_backend.http_url}/v1/models/picky:predict", {"instances": ROWS})
    assert ok.json() == {"predictions": ROW_SUMS}


def test_kserve_slow_sleeps_for_the_parameter(kserve_backend: Server) -> None:
    start = time.monotonic()
    body = v2_body(ROWS, parameters={"sleep": 0.3})
    r = post(f"{kserve_backend.http_url}/v2/models/slow/infer", body)
    assert r.status_code == 200, r.text
    assert time.monotonic() - start >= 0.3
    assert r.json()["outputs"][0]["data"] == ROW_SUMS


def test_kserve_stats_counts_rows_per_call(kserve_backend: Server) -> None:
    stats = f"{kserve_backend.http_url}/v1/models/stats:predict"
    post(stats, {"instances": [], "reset": True})
    post(f"{kserve_backend.http_url}/v1/models/sum:predict", {"instances": ROWS})
    grpc_sum(kserve_backend.grpc_target, "sum", np.ones((5, 2), np.float32))
    r = post(stats, {"instances": ["sum", "picky"]})
    assert r.json() == {"predictions": [[2, 5], []]}


def test_kserve_factory_starts_and_stops_a_fresh_server(start_kserve: ServerFactory) -> None:
    server = start_kserve()
    r = post(f"{server.http_url}/v1/models/sum:predict", {"instances": ROWS})
    assert r.json() == {"predictions": ROW_SUMS}
    assert server.stop() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.http_url}/v2/health/live", timeout=2.0)


# -- MLServer ---------------------------------------------------------------------------------


def test_mlserver_v2_rest(mlserver_backend: Server) -> None:
    r = post(f"{mlserver_backend.http_url}/v2/models/sum/infer", v2_body(ROWS))
    assert r.status_code == 200, r.text
    output = r.json()["outputs"][0]
    assert (output["name"], output["shape"], output["datatype"]) == ("sum", [2], "FP32")
    assert output["data"] == ROW_SUMS


def test_mlserver_grpc(mlserver_backend: Server) -> None:
    y = grpc_sum(mlserver_backend.grpc_target, "sum", np.array(ROWS, np.float32))
    assert y.shape == (2,)
    np.testing.assert_array_equal(y, np.array(ROW_SUMS, np.float32))
