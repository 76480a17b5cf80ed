"""End-to-end error behaviour of the gateway, in front of a real KServe ModelServer.

Every error is checked on the wire: HTTP status and the ``{"error": ...}`` envelope over REST, the
status code and message over gRPC (tritonclient.grpc), for unknown models and paths, malformed
bodies, backend 4xx, unreachable and slow backends, oversize bodies, failing in-process models,
KServe closing keep-alive after a 500, and concurrency shedding.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from servers import Server, free_port, python_path, start_gateway, wait_until
from tritonclient.utils import InferenceServerException

ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]]
ROW_SUMS = [6.0, 15.5]
TIMEOUT = 10.0
NEGATIVE = "negative values are not allowed"

#: An in-process model that always raises.
BOOM_MODULE = """
def predict(inputs):
    raise RuntimeError("kaboom: the model failed")
"""


def v2_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    """A V2 JSON request with input ``x`` FP32 [N, K]."""
    shape = [len(rows), len(rows[0])]
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": flat}], **extra}


def error_of(response: httpx.Response) -> str:
    """The message of a ``{"error": "..."}`` body (and nothing else in it)."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    message = body["error"]
    assert isinstance(message, str), body
    return message


def grpc_error(target: str, model: str, rows: list[list[float]], **kwargs: Any) -> Any:
    """The InferenceServerException a gRPC ModelInfer of ``rows`` raises (fails if none)."""
    client = grpcclient.InferenceServerClient(target)
    try:
        x = np.array(rows, np.float32)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [tensor], client_timeout=TIMEOUT, **kwargs)
        return caught.value
    finally:
        client.close()


def grpc_status(error: Any) -> str:
    """``"NOT_FOUND"`` from tritonclient's ``"StatusCode.NOT_FOUND"``."""
    return str(error.status()).removeprefix("StatusCode.")


# -- the shared gateway -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def boom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``boom_model.py`` (an in-process model that raises)."""
    path = tmp_path_factory.mktemp("boom")
    (path / "boom_model.py").write_text(BOOM_MODULE)
    return path


@pytest.fixture(scope="module")
def gateway(
    kserve_backend: Server, boom_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One gateway with a route for every error case (KServe behind most of them)."""
    url = kserve_backend.http_url
    config = {
        "models": [
            {"name": "sum", "backend": {"url": url}},
            {"name": "picky", "backend": {"url": url}},
            {"name": "picky-v1", "backend": {"url": url, "protocol": "v1", "model": "picky"}},
            {"name": "slow", "backend": {"url": url}, "timeout_s": 0.5},
            {"name": "shed", "backend": {"url": url, "model": "slow"}, "max_concurrency": 1},
            {"name": "down", "backend": {"url": f"http://127.0.0.1:{free_port()}"}},
            {"name": "down-v1", "backend": {"url": f"http://127.0.0.1:{free_port()}"}},
            {"name": "down-grpc", "backend": {"url": f"grpc://127.0.0.1:{free_port()}"}},
            {
                "name": "small",
                "backend": {"url": url, "model": "sum"},
                "limits": {"max_body_bytes": 1024},
            },
            {"name": "demo", "backend": {"python": "tensorgate.demo:sum"}},
            {"name": "boom", "backend": {"python": "boom_model:predict"}},
            {"name": "sleepy", "backend": {"python": "inproc_models:sleepy"}, "timeout_s": 0.5},
        ]
    }
    log_dir = tmp_path_factory.mktemp("gateway-errors")
    with start_gateway(config, log_dir=log_dir, env=python_path(boom_dir)) as server:
        yield server


@pytest.fixture
def client(gateway: Server) -> Iterator[httpx.Client]:
    """A REST client of the shared gateway."""
    with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
        yield http


# -- unknown models, paths and verbs ------------------------------------------------------------

UNKNOWN = "no-such-model"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/v1/models/{UNKNOWN}:predict", {"instances": ROWS}),
        ("POST", f"/v2/models/{UNKNOWN}/infer", v2_body(ROWS)),
        ("GET", f"/v2/models/{UNKNOWN}/ready", None),
        ("GET", f"/v2/models/{UNKNOWN}", None),
        ("GET", f"/v1/models/{UNKNOWN}", None),
    ],
)
def test_unknown_model_is_404_with_kserve_text(
    client: httpx.Client, method: str, path: str, body: object
) -> None:
    r = client.request(method, path, json=body)
    assert r.status_code == 404, r.text
    assert error_of(r) == f"Model with name {UNKNOWN} does not exist."


def test_unknown_model_over_grpc_is_not_found(gateway: Server) -> None:
    error = grpc_error(gateway.grpc_target, UNKNOWN, ROWS)
    assert grpc_status(error) == "NOT_FOUND"
    assert error.message() == f"Model with name {UNKNOWN} does not exist."
    client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        for call in (client.is_model_ready, client.get_model_metadata):
            with pytest.raises(InferenceServerException) as caught:
                call(UNKNOWN, client_timeout=TIMEOUT)
            assert grpc_status(caught.value) == "NOT_FOUND", call
            assert caught.value.message() == f"Model with name {UNKNOWN} does not exist."
    finally:
        client.close()


@pytest.mark.parametrize("path", ["/v3", "/v2/models/sum/x/y/infer", "/v1/models/a/b", "/nope"])
def test_unknown_path_is_404_in_the_error_envelope(client: httpx.Client, path: str) -> None:
    r = client.post(path, json={})
    assert r.status_code == 404, r.text
    assert error_of(r)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v2/models/sum/infer", "POST"),
        ("GET", "/v1/models/sum:predict", "POST"),
        ("POST", "/v2/health/live", "GET, HEAD"),
        ("POST", "/v2/models/sum/ready", "GET, HEAD"),
        ("DELETE", "/v2/models/sum", "GET, HEAD"),
    ],
)
def test_wrong_verb_is_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert error_of(r)
    for verb in allow.split(", "):
        assert client.request(verb, path).status_code != 405, verb


# -- malformed bodies ---------------------------------------------------------------------------

BAD_JSON = b'{"inputs": [{"name": "x",'
#: Bodies that are not JSON at all (syntax errors), whatever they would have held.
MALFORMED = [b"{bad", b'{"instances": [[1, 2]', b'{"instances": [[1, 2]]} x', BAD_JSON]


@pytest.mark.parametrize("model", ["sum", "demo"])
@pytest.mark.parametrize("body", MALFORMED, ids=["bad-key", "truncated", "trailing", "inputs"])
def test_malformed_json_v1_is_400_unrecognized_request_format(
    client: httpx.Client, model: str, body: bytes
) -> None:
    """KServe: any body orjson cannot parse is 400 ``Unrecognized request format: ...``."""
    r = client.post(
        f"/v1/models/{model}:predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert error_of(r).startswith("Unrecognized request format"), r.text


def test_malformed_json_v1_passthrough_is_400(client: httpx.Client) -> None:
    """A V1 backend decodes the body itself; its 400 comes back."""
    r = client.post(
        "/v1/models/picky-v1:predict",
        content=BAD_JSON,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert error_of(r).startswith("Unrecognized request format")


@pytest.mark.parametrize(("model", "status"), [("demo", 400), ("sum", 422)])
def test_malformed_json_v2_is_a_4xx_in_the_error_envelope(
    client: httpx.Client, model: str, status: int
) -> None:
    """Decoded by the gateway (in-process): 400. Passed through to KServe, which answers 422
    `{"detail": [...]}`: the backend's status is kept and its detail rewrapped as the error."""
    r = client.post(
        f"/v2/models/{model}/infer",
        content=BAD_JSON,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert error_of(r)


# -- backend errors passed through --------------------------------------------------------------


def test_backend_400_passes_through_v2_rest(client: httpx.Client) -> None:
    r = client.post("/v2/models/picky/infer", json=v2_body([[1.0, -2.0]]))
    assert r.status_code == 400, r.text
    assert error_of(r) == NEGATIVE


@pytest.mark.parametrize(
    ("path", "bad", "good"),
    [
        # V1 front, V2 backend: translated.
        ("/v1/models/picky:predict", {"instances": [[1.0, -2.0]]}, {"instances": ROWS}),
        # V1 front, V1 backend: passthrough.
        ("/v1/models/picky-v1:predict", {"instances": [[1.0, -2.0]]}, {"instances": ROWS}),
        # V2 front, V1 backend: translated.
        ("/v2/models/picky-v1/infer", v2_body([[1.0, -2.0]]), v2_body(ROWS)),
    ],
    ids=["v1-to-v2", "v1-to-v1", "v2-to-v1"],
)
def test_backend_400_passes_through_translation(
    client: httpx.Client, path: str, bad: object, good: object
) -> None:
    r = client.post(path, json=bad)
    assert r.status_code == 400, r.text
    assert error_of(r) == NEGATIVE
    ok = client.post(path, json=good)
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("model", ["picky", "picky-v1"])
def test_backend_400_over_grpc_front_is_invalid_argument(gateway: Server, model: str) -> None:
    error = grpc_error(gateway.grpc_target, model, [[1.0, -2.0]])
    assert grpc_status(error) == "INVALID_ARGUMENT"
    assert error.message() == NEGATIVE


def test_versions_path_passes_through(client: httpx.Client) -> None:
    """KServe answers 501 for versioned paths; the gateway forwards them and keeps the answer."""
    infer = client.post("/v2/models/sum/versions/1/infer", json=v2_body(ROWS))
    assert infer.status_code == 501, infer.text
    assert error_of(infer) == "Model versioning not supported yet."
    ready = client.get("/v2/models/sum/versions/1/ready")
    assert ready.status_code == 501, ready.text
    assert error_of(ready) == "Model versioning not supported yet."


# -- unreachable and slow backends --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/models/down/infer", v2_body(ROWS)),
        ("/v1/models/down-v1:predict", {"instances": ROWS}),
        ("/v2/models/down-grpc/infer", v2_body(ROWS)),
    ],
)
def test_backend_down_is_503(client: httpx.Client, path: str, body: object) -> None:
    """The message names the backend (its URL), whether the request failed to connect or the
    health check had already taken the backend out."""
    started = time.monotonic()
    r = client.post(path, json=body)
    assert r.status_code == 503, r.text
    assert "://127.0.0.1:" in error_of(r), error_of(r)
    assert time.monotonic() - started < 5.0


def test_backend_down_over_grpc_is_unavailable(gateway: Server) -> None:
    error = grpc_error(gateway.grpc_target, "down", ROWS)
    assert grpc_status(error) == "UNAVAILABLE"
    assert error.message()


def test_a_triton_only_grpc_method_is_unimplemented_with_a_reason(gateway: Server) -> None:
    """tritonclient's ModelConfig and ModelStatistics are Triton's, not KServe's OIP service."""
    client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        for call in (client.get_model_config, client.get_inference_statistics):
            with pytest.raises(InferenceServerException) as caught:
                call("sum", client_timeout=TIMEOUT)
            assert grpc_status(caught.value) == "UNIMPLEMENTED"
            assert "is not served" in caught.value.message()
            assert "ModelInfer" in caught.value.message()
        assert client.is_server_live()  # the connection and the service are fine
    finally:
        client.close()


def test_backend_timeout_is_504_within_a_second(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.post("/v2/models/slow/infer", json=v2_body(ROWS, parameters={"sleep": 3}))
    elapsed = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert error_of(r)
    assert 0.45 <= elapsed < 1.2, elapsed
    # The gateway is still fine afterwards.
    assert client.post("/v2/models/sum/infer", json=v2_body(ROWS)).status_code == 200


def test_backend_timeout_over_grpc_is_deadline_exceeded(gateway: Server) -> None:
    started = time.monotonic()
    error = grpc_error(gateway.grpc_target, "slow", ROWS, parameters={"sleep": 3})
    elapsed = time.monotonic() - started
    assert grpc_status(error) == "DEADLINE_EXCEEDED"
    assert "slow" in error.message()  # the gateway's own message, not the client's deadline
    assert elapsed < 1.2, elapsed


# -- limits, failing in-process models, shedding ------------------------------------------------


def test_oversize_body_is_413(client: httpx.Client) -> None:
    big = v2_body([[1.0] * 400])
    declared = client.post("/v2/models/small/infer", json=big)
    assert declared.status_code == 413, declared.text
    assert "max_body_bytes" in error_of(declared)

    def chunks() -> Iterator[bytes]:  # no content-length: chunked transfer
        for _ in range(8):
            yield b" " * 256

    chunked = client.post("/v2/models/small/infer", content=chunks())
    assert chunked.status_code == 413, chunked.text
    assert error_of(chunked)
    # A body under the limit on the same route goes through (on a kept or a new connection:
    # either the refused body was drained, or the answer said the connection closes).
    assert client.post("/v2/models/small/infer", json=v2_body(ROWS)).status_code == 200


def test_oversize_grpc_message_is_resource_exhausted(gateway: Server) -> None:
    """The route's ``max_body_bytes`` holds for a gRPC request too (1 KiB here)."""
    error = grpc_error(gateway.grpc_target, "small", [[1.0] * 400])
    assert grpc_status(error) == "RESOURCE_EXHAUSTED"
    assert "max_body_bytes (1024 bytes)" in error.message()
    client = grpcclient.InferenceServerClient(gateway.grpc_target)
    try:
        x = np.array(ROWS, np.float32)
        tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("small", [tensor], client_timeout=TIMEOUT)
        assert result.as_numpy("sum").tolist() == ROW_SUMS
    finally:
        client.close()


def test_unread_body_still_arriving_closes_the_connection(gateway: Server) -> None:
    """A refused body the client is still sending cannot be skipped: the 413 says
    `Connection: close` and the gateway closes, instead of a reset on the next request."""
    head = (
        b"POST /v2/models/small/infer HTTP/1.1\r\nHost: a\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    received, _ = raw_exchange(gateway, head + b'{"inputs": [')
    status, headers = received.split(b"\r\n\r\n", 1)[0].split(b"\r\n", 1)
    assert status.startswith(b"HTTP/1.1 413"), received
    assert b"connection: close" in headers.lower(), received


def test_small_unread_body_keeps_the_connection(gateway: Server) -> None:
    """A small body that arrived whole is drained: after a 404 for an unknown model, the same
    connection serves the next request."""
    body = json.dumps(v2_body(ROWS)).encode()

    def post(model: str) -> bytes:
        return (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: a\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=TIMEOUT) as sock:
        sock.sendall(post("no-such-model"))
        first = read_message(sock)
        assert first.startswith(b"HTTP/1.1 404"), first
        assert b"connection: close" not in first.lower()
        sock.sendall(post("small"))
        assert read_message(sock).startswith(b"HTTP/1.1 200")
        # A chunked body read in full keeps the connection too.
        chunked = (
            b"POST /v2/models/small/infer HTTP/1.1\r\nHost: a\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
        )
        sock.sendall(chunked)
        answer = read_message(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" not in answer.lower()
        sock.sendall(post("small"))
        assert read_message(sock).startswith(b"HTTP/1.1 200")


def read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message (request or response) with a Content-Length body, from `sock`."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += receive(sock)
    head, rest = received.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += receive(sock)
    return head + b"\r\n\r\n" + rest


def receive(sock: socket.socket) -> bytes:
    if not (chunk := sock.recv(65536)):
        raise AssertionError("the gateway closed the connection")
    return chunk


def test_in_process_model_error_is_500_with_its_message(
    client: httpx.Client, gateway: Server
) -> None:
    """KServe's form for an unexpected exception: 500 ``<ExcType> : <message>``."""
    r = client.post("/v2/models/boom/infer", json=v2_body(ROWS))
    assert r.status_code == 500, r.text
    assert error_of(r) == "RuntimeError : kaboom: the model failed"
    v1 = client.post("/v1/models/boom:predict", json={"instances": ROWS})
    assert v1.status_code == 500, v1.text
    assert error_of(v1) == "RuntimeError : kaboom: the model failed"
    # The operator sees the traceback, as KServe logs it.

    def logged() -> bool:
        text = gateway.process.log()
        return "model boom failed" in text and "RuntimeError: kaboom: the model failed" in text

    wait_until(logged, 5.0, "the model's traceback in the gateway's log")
    assert "Traceback (most recent call last)" in gateway.process.log()


def test_in_process_model_past_its_timeout_is_504(client: httpx.Client, gateway: Server) -> None:
    """``timeout_s`` bounds in-process models too: the client is answered at the deadline."""
    started = time.monotonic()
    r = client.post("/v2/models/sleepy/infer", json=v2_body([[2.0, 0.0, 0.0]]))
    elapsed = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert "did not answer within 500 ms" in error_of(r)
    assert 0.45 <= elapsed < 1.5, elapsed
    started = time.monotonic()
    error = grpc_error(gateway.grpc_target, "sleepy", [[2.0, 0.0, 0.0]])
    assert grpc_status(error) == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 1.5
    error = grpc_error(gateway.grpc_target, "boom", ROWS)
    assert grpc_status(error) == "INTERNAL"
    assert "kaboom: the model failed" in error.message()


def test_a_following_request_succeeds_after_kserve_closes_on_500(
    kserve_backend: Server, tmp_path: Path
) -> None:
    """KServe closes its keep-alive connection after a 500: the gateway must not reuse it."""
    config = {"models": [{"name": "sum", "backend": {"url": kserve_backend.http_url}}]}
    mismatch = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}
    with (
        start_gateway(config, log_dir=tmp_path) as gateway,
        httpx.Client(
            base_url=gateway.http_url, timeout=TIMEOUT, limits=httpx.Limits(max_connections=1)
        ) as http,
    ):
        for _ in range(5):
            bad = http.post("/v2/models/sum/infer", json=mismatch)
            assert bad.status_code == 500, bad.text
            assert "cannot reshape" in error_of(bad)
            good = http.post("/v2/models/sum/infer", json=v2_body(ROWS))
            assert good.status_code == 200, good.text
            assert good.json()["outputs"][0]["data"] == ROW_SUMS


class DroppingBackend:
    """A V2 backend on a raw socket that answers the first ``answered`` requests on each
    connection and ends the connection at the next one: cleanly once it has read it
    (``reset=False``: it may have run the request), or with a reset once it arrived, unread
    (``reset=True``: as when a backend closes a keep-alive connection as a request comes in).
    Counts connections, the requests it read, and the connections the gateway ended while it
    waited for a request."""

    ANSWER = json.dumps(
        {
            "model_name": "m",
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [1], "data": [1]}],
        }
    ).encode()

    def __init__(self, reset: bool, answered: int = 1) -> None:
        self.reset = reset
        self.answered = answered
        self.connections = 0
        self.requests = 0
        self.closed_by_gateway = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            try:
                self._answer(conn)
            except AssertionError:  # from `receive`: the gateway closed the connection
                self.closed_by_gateway += 1

    def _answer(self, conn: socket.socket) -> None:
        for _ in range(self.answered):
            read_message(conn)
            self.requests += 1
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            conn.sendall(head + b"content-length: %d\r\n\r\n" % len(self.ANSWER) + self.ANSWER)
        if self.reset:
            conn.recv(1, socket.MSG_PEEK)  # the next request is there, unread
        else:
            read_message(conn)
            self.requests += 1
        # SO_LINGER 0: close sends a reset instead of a FIN.
        linger = struct.pack("ii", 1, 0) if self.reset else struct.pack("ii", 0, 0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def close(self) -> None:
        self.listener.close()

    def route_config(self, **settings: Any) -> dict[str, Any]:
        """A gateway config with one route, ``m``, to this backend. Health checks are off: they
        would open connections of their own, which this backend counts (and does not answer)."""
        route = {"name": "m", "backend": {"url": self.url, "protocol": "v2"}}
        return {"health_check_interval_s": 0, **settings, "models": [route]}


def test_a_backend_that_resets_the_connection_is_a_503(tmp_path: Path) -> None:
    backend = DroppingBackend(reset=True, answered=0)
    config = backend.route_config()
    try:
        with start_gateway(config, log_dir=tmp_path) as gateway:
            r = httpx.post(f"{gateway.http_url}/v2/models/m/infer", json=v2_body(ROWS), timeout=10)
            assert r.status_code == 503, r.text
            assert "reset" in error_of(r).lower()
            assert (backend.connections, backend.requests) == (1, 0)
    finally:
        backend.close()


@pytest.mark.parametrize("reset", [False, True], ids=["read-then-closed", "reset-unread"])
def test_a_request_the_backend_may_have_read_is_not_sent_twice(reset: bool, tmp_path: Path) -> None:
    """A pooled connection that ends under a request: resent on a fresh connection only when
    the backend cannot have read it (a reset); one it read and then closed on is a 503, never
    run twice (``retries: 0``)."""
    backend = DroppingBackend(reset)
    config = backend.route_config()
    try:
        with start_gateway(config, log_dir=tmp_path) as gateway:
            with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
                assert http.post("/v2/models/m/infer", json=v2_body(ROWS)).status_code == 200
                second = http.post("/v2/models/m/infer", json=v2_body(ROWS))
            if reset:
                assert second.status_code == 200, second.text
                assert (backend.connections, backend.requests) == (2, 2)
            else:
                assert second.status_code == 503, second.text
                assert "failed" in error_of(second)
                assert (backend.connections, backend.requests) == (1, 2)
    finally:
        backend.close()


def test_an_idle_pooled_connection_is_closed_before_the_backend_closes_it(
    tmp_path: Path,
) -> None:
    """A backend that ends every keep-alive connection at its second request, as uvicorn does
    to one idle for 5 s: a connection idle longer than ``pool_idle_timeout_s`` is not reused,
    so the request goes on a fresh one instead of failing."""
    backend = DroppingBackend(reset=False)
    config = backend.route_config(pool_idle_timeout_s=0.2)
    try:
        with start_gateway(config, log_dir=tmp_path) as gateway:
            with httpx.Client(base_url=gateway.http_url, timeout=TIMEOUT) as http:
                for _ in range(2):
                    r = http.post("/v2/models/m/infer", json=v2_body(ROWS))
                    assert r.status_code == 200, r.text
                    time.sleep(0.4)
            assert (backend.connections, backend.requests) == (2, 2)
            # The first connection was closed by the gateway, not by the backend.
            wait_until(lambda: backend.closed_by_gateway == 1, 5, "the idle connection closed")
    finally:
        backend.close()


def test_max_concurrency_sheds_with_503(client: httpx.Client, gateway: Server) -> None:
    results: list[httpx.Response] = []

    def first() -> None:
        body = v2_body(ROWS, parameters={"sleep": 1.0})
        with httpx.Client(timeout=TIMEOUT) as own:
            results.append(own.post(f"{gateway.http_url}/v2/models/shed/infer", json=body))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        time.sleep(0.3)  # the first request is in flight at the backend
        second = client.post("/v2/models/shed/infer", json=v2_body(ROWS, parameters={"sleep": 0}))
        assert second.status_code == 503, second.text
        assert "max_concurrency" in error_of(second)
    finally:
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert [r.status_code for r in results] == [200], [r.text for r in results]
    # The slot is free again.
    again = client.post("/v2/models/shed/infer", json=v2_body(ROWS, parameters={"sleep": 0}))
    assert again.status_code == 200, again.text


# -- slow clients ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A gateway with a short client_timeout_s in front of an in-process model."""
    config = {
        "client_timeout_s": 0.5,
        "models": [{"name": "demo", "backend": {"python": "tensorgate.demo:sum"}}],
    }
    with start_gateway(config, log_dir=tmp_path_factory.mktemp("impatient")) as gateway:
        yield gateway


def raw_exchange(gateway: Server, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Sends `data` on a raw connection and reads until the gateway closes it (bounded)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.http_port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def test_unfinished_headers_close_the_connection_after_client_timeout(impatient: Server) -> None:
    received, took = raw_exchange(impatient, b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: a\r\n")
    assert took < 3.0, took
    assert b"200 OK" not in received


def test_a_body_that_never_arrives_is_400_after_client_timeout(impatient: Server) -> None:
    head = b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    received, took = raw_exchange(impatient, head + b'{"inputs"')
    assert took < 3.0, took
    assert received.startswith(b"HTTP/1.1 400"), received
    assert b"client_timeout" in received, received
