"""Dynamic batching in the gateway, end to end against real backends.

Every route serves KServe's row-sum models (``sum``, ``slow``, ``picky``; see
``tests/backends/kserve_server.py``), MLServer's ``sum`` or the in-process demo ``sum``, with a
``batching`` section. KServe's ``stats`` model reports the rows each ``predict`` call received, so
the tests see the batches the backend really got, and every client checks its own rows' sums.

kserve is never imported here (its protos clash with tritonclient.grpc).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import tensorgate.demo
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from clients import FRONTS, SUM_METADATA, TIMEOUT, Array, Clients, ask, assert_row_sums, matrix
from prometheus_client.parser import text_string_to_metric_families
from servers import Gateway, Server, metric, start_gateway
from tritonclient.utils import InferenceServerException

#: Holds a batch back until it is full (or a test gives up): long enough never to fire.
NEVER_MS = 60_000


def route(name: str, url: str, model: str, batching: dict[str, Any], **backend: Any) -> Any:
    return {
        "name": name,
        "backend": {"url": url, "model": model, **backend},
        "timeout_s": 10,
        "batching": batching,
    }


def gateway_config(kserve: Server, mlserver: Server) -> dict[str, Any]:
    rest, grpc_url = kserve.http_url, f"grpc://{kserve.grpc_target}"
    small = {"max_batch_size": 8, "max_queue_delay_ms": 20}
    full_pairs = {"max_batch_size": 2, "max_queue_delay_ms": NEVER_MS}
    return {
        "access_log": "off",
        "health_check_interval_s": 0,
        "models": [
            # Batches of exactly four rows: nothing is sent before four rows are queued.
            route("four", rest, "sum", {"max_batch_size": 4, "max_queue_delay_ms": NEVER_MS}),
            route(
                "four-picky", rest, "picky", {"max_batch_size": 4, "max_queue_delay_ms": NEVER_MS}
            ),
            # One backend protocol each.
            {**route("b-v1", rest, "sum", small, protocol="v1"), "metadata": SUM_METADATA},
            route("b-v2", rest, "sum", small, protocol="v2"),
            route("b-bin", rest, "sum", small, protocol="v2", binary=True),
            route("b-grpc", grpc_url, "sum", small),
            route("b-ml", mlserver.http_url, "sum", small, binary=False),
            {"name": "b-inproc", "backend": {"python": "tensorgate.demo:sum"}, "batching": small},
            route("b-auto", rest, "sum", {"max_batch_size": 8, "max_queue_delay_ms": "auto"}),
            route("shapes", rest, "sum", {"max_batch_size": 8, "max_queue_delay_ms": 300}),
            route("pairs", rest, "sum", {"max_batch_size": 2, "max_queue_delay_ms": 2000}),
            route("slow-pairs", rest, "slow", full_pairs),
            {
                "name": "cls",
                "backend": {"python": "tensorgate.demo:classifier"},
                "batching": {"max_batch_size": 3, "max_queue_delay_ms": NEVER_MS},
            },
            # One batch at a time, one row each: the `slow` model holds the only slot.
            route(
                "one-slot",
                rest,
                "slow",
                {"max_batch_size": 2, "max_queue_delay_ms": 0, "max_inflight_batches": 1},
            ),
            route(
                "tiny-queue",
                rest,
                "slow",
                {
                    "max_batch_size": 1,
                    "max_queue_delay_ms": 0,
                    "max_inflight_batches": 1,
                    "max_queue_size": 1,
                },
            ),
            route(
                "short-wait",
                rest,
                "slow",
                {
                    "max_batch_size": 1,
                    "max_queue_delay_ms": 0,
                    "max_inflight_batches": 1,
                    "queue_timeout_ms": 200,
                },
            ),
        ],
    }


@pytest.fixture(scope="module")
def gateway(
    kserve_backend: Server, mlserver_backend: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = gateway_config(kserve_backend, mlserver_backend)
    with start_gateway(config, log_dir=tmp_path_factory.mktemp("gateway-batching")) as server:
        yield server


@pytest.fixture
def calls(kserve_backend: Server) -> Callable[[str], list[int]]:
    """Rows per ``predict`` call of a KServe model since the test started."""
    http = httpx.Client(base_url=kserve_backend.http_url, timeout=TIMEOUT)
    stats = "/v1/models/stats:predict"
    http.post(stats, json={"instances": [], "reset": True}).raise_for_status()

    def rows(model: str) -> list[int]:
        r = http.post(stats, json={"instances": [model]})
        r.raise_for_status()
        found: list[int] = r.json()["predictions"][0]
        return found

    return rows


def run_all(work: Sequence[Callable[[], Any]]) -> list[Any]:
    """Runs every call at once on its own thread; returns results in order (re-raising)."""
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        futures = [pool.submit(call) for call in work]
        return [f.result(timeout=30) for f in futures]


def rows(n: int, k: int, seed: int) -> Array:
    x: Array = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32) * 10
    return x


# -- batches form, across protocols ---------------------------------------------------------------


def test_four_clients_of_four_protocols_share_one_batch(
    gateway: Gateway, calls: Callable[[str], list[int]]
) -> None:
    """V1, V2 JSON, V2 binary and gRPC clients ride in one batch; each gets its own rows back,
    its own id and its own wire form."""
    fronts = ("v1", "v2-json", "v2-binary", "grpc")
    data = {front: rows(1, 3, seed) for seed, front in enumerate(fronts)}

    def one(front: str) -> Callable[[], Any]:
        def call() -> Any:
            with Clients.open(gateway) as clients:
                return ask(clients, front, "four", data[front], f"mixed-{front}")

        return call

    answers = run_all([one(front) for front in fronts])
    for front, answer in zip(fronts, answers, strict=True):
        assert_row_sums(answer.values, data[front])
        if front != "v1":
            assert answer.id == f"mixed-{front}"
    assert calls("sum") == [4]


def test_members_of_one_batch_get_only_the_outputs_they_asked_for(gateway: Gateway) -> None:
    """Three clients of a two-output model share one batch: one asks for ``label`` in JSON, one
    for ``probabilities`` in binary (tritonclient), one (gRPC) for everything; each gets just
    that, with its own rows and id."""
    x = {name: rows(1, 4, seed) for seed, name in enumerate(("label", "probs", "all"))}
    want = {name: tensorgate.demo.classifier.predict({"x": v}) for name, v in x.items()}

    def label() -> dict[str, Any]:
        body = {
            "id": "c-label",
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                        "data": x["label"].ravel().tolist()}],
            "outputs": [{"name": "label"}],
        }  # fmt: skip
        r = httpx.post(f"{gateway.http_url}/v2/models/cls/infer", json=body, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    def probabilities() -> Any:
        client = httpclient.InferenceServerClient(gateway.http_url.split("//")[1])
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x["probs"], binary_data=True)
        wanted = httpclient.InferRequestedOutput("probabilities", binary_data=True)
        return client.infer("cls", [tensor], outputs=[wanted], request_id="c-probs")

    def everything() -> Any:
        client = grpcclient.InferenceServerClient(gateway.grpc_target)
        tensor = grpcclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(x["all"])
        return client.infer("cls", [tensor], request_id="c-all", client_timeout=TIMEOUT)

    json_answer, binary_answer, grpc_answer = run_all([label, probabilities, everything])
    # Row by row, a batched matrix product may round differently in the last bits.
    assert json_answer["id"] == "c-label"
    assert [o["name"] for o in json_answer["outputs"]] == ["label"]
    assert json_answer["outputs"][0]["data"] == want["label"]["label"].tolist()
    response = binary_answer.get_response()
    assert response["id"] == "c-probs"
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert "binary_data_size" in response["outputs"][0]["parameters"]
    np.testing.assert_allclose(
        binary_answer.as_numpy("probabilities"), want["probs"]["probabilities"], rtol=1e-5
    )
    assert grpc_answer.get_response().id == "c-all"
    assert {o.name for o in grpc_answer.get_response().outputs} == {"probabilities", "label"}
    np.testing.assert_allclose(
        grpc_answer.as_numpy("probabilities"), want["all"]["probabilities"], rtol=1e-5
    )
    assert grpc_answer.as_numpy("label").tolist() == want["all"]["label"].tolist()
    page = httpx.get(f"{gateway.http_url}/metrics", timeout=TIMEOUT).text
    assert metric(page, "tensorgate_batch_rows_count", {"model": "cls", "version": ""}) == 1


@pytest.mark.parametrize("route_name", ["b-v1", "b-v2", "b-bin", "b-grpc", "b-ml", "b-inproc"])
def test_concurrent_clients_each_get_exactly_their_rows(
    gateway: Gateway, calls: Callable[[str], list[int]], route_name: str
) -> None:
    """16 clients, every front protocol, 1-3 rows of their own each: all sums check out, and a
    KServe backend sees batches of more than one request, never above ``max_batch_size``."""
    work = []
    for client in range(16):
        front = FRONTS[client % len(FRONTS)]
        x = matrix("batch", route_name, str(client), shape=(1 + client % 3, 5))

        def call(front: str = front, x: Array = x, client: int = client) -> None:
            with Clients.open(gateway) as clients:
                for i in range(4):
                    answer = ask(clients, front, route_name, x + i, f"c{client}-{i}")
                    assert_row_sums(answer.values, x + i)

        work.append(call)
    run_all(work)
    if route_name.startswith("b-") and route_name not in ("b-ml", "b-inproc"):
        sizes = calls("sum")
        assert sum(sizes) == sum(4 * (1 + c % 3) for c in range(16))
        assert max(sizes) <= 8, sizes
        assert len(sizes) < 64, f"no batch formed: {sizes}"


def test_auto_delay_batches_correctly(gateway: Gateway, calls: Callable[[str], list[int]]) -> None:
    work = []
    for client in range(12):
        x = matrix("auto", str(client), shape=(1, 4))

        def call(x: Array = x, client: int = client) -> None:
            with Clients.open(gateway) as clients:
                for i in range(10):
                    assert_row_sums(
                        ask(clients, "grpc", "b-auto", x * i, f"a{client}").values, x * i
                    )

        work.append(call)
    run_all(work)
    sizes = calls("sum")
    assert sum(sizes) == 120, sizes
    assert max(sizes) <= 8, sizes


def test_incompatible_shapes_go_in_separate_batches(
    gateway: Gateway, calls: Callable[[str], list[int]]
) -> None:
    data = [rows(1, 3, 1), rows(1, 5, 2), rows(1, 3, 3), rows(1, 5, 4)]

    def one(x: Array) -> Callable[[], Any]:
        def call() -> Any:
            with Clients.open(gateway) as clients:
                return ask(clients, "httpx-v2", "shapes", x, "shapes")

        return call

    for x, answer in zip(data, run_all([one(x) for x in data]), strict=True):
        assert_row_sums(answer.values, x)
    assert sorted(calls("sum")) == [2, 2]


def test_a_full_batch_does_not_wait_behind_another_shape(
    gateway: Gateway, calls: Callable[[str], list[int]]
) -> None:
    """A lone `[1, 3]` request waits for its 2 s delay; a full pair of `[1, 5]` requests queued
    after it goes at once."""
    alone, pair = rows(1, 3, 21), [rows(1, 5, 22), rows(1, 5, 23)]

    def one(x: Array, pause: float) -> Callable[[], tuple[Any, float]]:
        def call() -> tuple[Any, float]:
            time.sleep(pause)
            with Clients.open(gateway) as clients:
                started = time.monotonic()
                answer = ask(clients, "httpx-v2", "pairs", x, "pairs")
                return answer, time.monotonic() - started

        return call

    work = [one(alone, 0.0), one(pair[0], 0.2), one(pair[1], 0.2)]
    (first, waited), *pairs = run_all(work)
    assert_row_sums(first.values, alone)
    assert waited > 1.5, waited
    for (answer, took), x in zip(pairs, pair, strict=True):
        assert_row_sums(answer.values, x)
        assert took < 1.0, f"the full pair waited {took:.2f} s behind the lone request"
    assert calls("sum") == [2, 1]


def test_a_request_above_max_batch_size_goes_alone(
    clients: Clients, calls: Callable[[str], list[int]]
) -> None:
    x = rows(6, 3, 7)
    assert_row_sums(ask(clients, "v2-binary", "four", x, "big").values, x)
    assert calls("sum") == [6]


# -- failures -------------------------------------------------------------------------------------


def test_a_backend_error_reaches_every_member_with_its_status(
    gateway: Gateway, calls: Callable[[str], list[int]]
) -> None:
    """One negative value makes KServe's ``picky`` model reject the whole batch with 400: every
    member gets that 400 and KServe's message."""
    data = [rows(1, 3, 11), rows(1, 3, 12), -np.abs(rows(1, 3, 13)), rows(1, 3, 14)]

    def one(x: Array) -> Callable[[], httpx.Response]:
        def call() -> httpx.Response:
            body = {
                "inputs": [
                    {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": x.ravel().tolist()}
                ]
            }
            return httpx.post(
                f"{gateway.http_url}/v2/models/four-picky/infer", json=body, timeout=TIMEOUT
            )

        return call

    for r in run_all([one(x) for x in data]):
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "negative values are not allowed"}
    assert calls("picky") == [4]


def slow_body(seconds: float, k: int = 2) -> dict[str, Any]:
    """A ``slow`` request sleeping ``seconds`` (its first value) at the backend."""
    data = [seconds] + [1.0] * (k - 1)
    return {"inputs": [{"name": "x", "shape": [1, k], "datatype": "FP32", "data": data}]}


def post_later(gateway: Gateway, model: str, body: dict[str, Any]) -> threading.Thread:
    """POSTs ``body`` on a thread (started, not joined)."""

    def post() -> None:
        httpx.post(f"{gateway.http_url}/v2/models/{model}/infer", json=body, timeout=TIMEOUT)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def wait_for_metric(gateway: Gateway, sample: str, labels: dict[str, str], value: float) -> None:
    """Waits until ``sample`` with ``labels`` reads ``value`` on ``/metrics``."""
    deadline = time.monotonic() + TIMEOUT
    url = f"{gateway.http_url}/metrics"
    while metric(httpx.get(url, timeout=TIMEOUT).text, sample, labels) != value:
        assert time.monotonic() < deadline, f"{sample}{labels} never read {value}"
        time.sleep(0.02)


def wait_for_depth(gateway: Gateway, model: str, depth: int) -> None:
    """Waits until ``model``'s batch queue holds ``depth`` requests."""
    labels = {"model": model, "version": ""}
    wait_for_metric(gateway, "tensorgate_batch_queue_depth", labels, depth)


def wait_for_in_flight(gateway: Gateway, model: str, count: int) -> None:
    """Waits until ``count`` requests for ``model`` are in the gateway (queued or sent)."""
    wait_for_metric(gateway, "tensorgate_in_flight_requests", {"model": model}, count)


def test_a_full_queue_answers_503_with_retry_after(gateway: Gateway) -> None:
    busy = post_later(gateway, "tiny-queue", slow_body(1.0))  # at the backend
    time.sleep(0.2)
    queued = post_later(gateway, "tiny-queue", slow_body(0.0))  # the one queue place
    wait_for_depth(gateway, "tiny-queue", 1)
    r = httpx.post(
        f"{gateway.http_url}/v2/models/tiny-queue/infer", json=slow_body(0.0), timeout=TIMEOUT
    )
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert "batch queue of model 'tiny-queue' is full" in r.json()["error"]
    with grpcclient.InferenceServerClient(gateway.grpc_target) as client:
        x = grpcclient.InferInput("x", [1, 2], "FP32")
        x.set_data_from_numpy(np.zeros((1, 2), np.float32))
        with pytest.raises(grpcclient.InferenceServerException) as caught:
            client.infer("tiny-queue", [x], client_timeout=TIMEOUT)
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    busy.join(TIMEOUT)
    queued.join(TIMEOUT)


def test_a_request_waiting_past_queue_timeout_gets_504(gateway: Gateway) -> None:
    busy = post_later(gateway, "short-wait", slow_body(1.0))
    time.sleep(0.2)
    started = time.monotonic()
    r = httpx.post(
        f"{gateway.http_url}/v2/models/short-wait/infer", json=slow_body(0.0), timeout=TIMEOUT
    )
    waited = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert "queue_timeout_ms" in r.json()["error"]
    assert 0.15 < waited < 0.8, waited
    busy.join(TIMEOUT)


def answer_later(gateway: Gateway, model: str, body: dict[str, Any]) -> Future[httpx.Response]:
    """POSTs ``body`` on a thread; the response comes in the future."""
    pool = ThreadPoolExecutor(max_workers=1)
    url = f"{gateway.http_url}/v2/models/{model}/infer"
    answer = pool.submit(httpx.post, url, json=body, timeout=TIMEOUT)
    pool.shutdown(wait=False)
    return answer


@pytest.mark.parametrize("leaver", ["rest", "grpc"])
def test_a_client_that_leaves_before_its_batch_is_sent_is_left_out(
    gateway: Gateway, calls: Callable[[str], list[int]], leaver: str
) -> None:
    """While the only slot is busy, a client queues and hangs up (a REST client closing its
    connection, a gRPC client whose deadline passes); the next batch carries only the client
    that stayed, and the batch at the backend is not disturbed."""
    busy = answer_later(gateway, "one-slot", slow_body(1.0))
    wait_for_in_flight(gateway, "one-slot", 1)  # at the backend: the slot was free
    if leaver == "rest":
        url = f"{gateway.http_url}/v2/models/one-slot/infer"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=slow_body(0.0), timeout=0.2)
    else:
        client = grpcclient.InferenceServerClient(gateway.grpc_target)
        tensor = grpcclient.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[0.0, 1.0]], np.float32))
        with pytest.raises(InferenceServerException, match=r"(?i)deadline"):
            client.infer("one-slot", [tensor], client_timeout=0.2)
    r = httpx.post(
        f"{gateway.http_url}/v2/models/one-slot/infer", json=slow_body(0.0, k=2), timeout=TIMEOUT
    )
    assert r.status_code == 200, r.text
    assert busy.result(TIMEOUT).status_code == 200
    assert calls("slow") == [1, 1]


def test_a_client_that_leaves_after_its_batch_is_sent_does_not_abort_it(
    gateway: Gateway, calls: Callable[[str], list[int]]
) -> None:
    """Two clients share a batch at the backend; one hangs up meanwhile: the batch goes on and
    the other gets its answer."""
    stays = answer_later(gateway, "slow-pairs", slow_body(1.0))
    wait_for_depth(gateway, "slow-pairs", 1)
    url = f"{gateway.http_url}/v2/models/slow-pairs/infer"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=slow_body(1.0), timeout=0.4)
    answer = stays.result(TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [2.0]
    assert calls("slow") == [2]


def test_a_malformed_request_is_rejected_alone(gateway: Gateway) -> None:
    bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}
    r = httpx.post(f"{gateway.http_url}/v2/models/b-v2/infer", json=bad, timeout=TIMEOUT)
    assert r.status_code == 400, r.text
    assert "error" in r.json()


ONE_ROW = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def test_metrics_show_batches(gateway: Gateway, clients: Clients) -> None:
    x = rows(4, 3, 21)
    run_all([functools.partial(ask, clients, "v1", "four", x[i : i + 1], "m") for i in range(4)])
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=TIMEOUT).text
    four = {"model": "four", "version": ""}
    assert metric(text, "tensorgate_batch_rows_bucket", {**four, "le": "4.0"}) >= 1
    assert metric(text, "tensorgate_batch_queue_delay_seconds_count", four) >= 4
    for name in ("tensorgate_batch_rejected_total", "tensorgate_batch_timed_out_total"):
        assert f"{name}{{" in text
    # One series per model and version: each version batches on its own.
    for version in ("1", "2"):
        r = httpx.post(
            f"{gateway.http_url}/v2/models/b-inproc/versions/{version}/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            },
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
    text = httpx.get(f"{gateway.http_url}/metrics", timeout=TIMEOUT).text
    depths = [
        tuple(sample.labels.values())
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tensorgate_batch_queue_depth"
    ]
    assert len(depths) == len(set(depths)), depths
    for version in ("1", "2"):
        labels = {"model": "b-inproc", "version": version}
        assert metric(text, "tensorgate_batch_rows_count", labels) == 1


def test_v1_explain_is_forwarded_unbatched(gateway: Gateway, kserve_backend: Server) -> None:
    """``:explain`` on a batching V1 route goes to the backend as is, whatever it answers."""
    body = {"instances": [[1.0, 2.0]]}
    direct = httpx.post(f"{kserve_backend.http_url}/v1/models/sum:explain", json=body)
    r = httpx.post(f"{gateway.http_url}/v1/models/b-v1:explain", json=body, timeout=TIMEOUT)
    assert (r.status_code, r.json()) == (direct.status_code, direct.json())
