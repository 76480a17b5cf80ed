"""The gateway's request metrics as a prometheus-client collector.

The Rust core counts requests, bytes and latencies; this collector turns its snapshot into
metric families at scrape time, so they share one registry (and one ``/metrics`` page) with
everything else the process registers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: Upper bounds of the latency buckets, in seconds (the core's ``metrics::BUCKETS``).
BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip

#: Upper bounds of the batch size buckets, in rows (the core's ``metrics::ROW_BUCKETS``).
ROW_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0)

#: gRPC status code names by number.
_GRPC_CODE_NAMES = (
    "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
    "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
    "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED"
)
_GRPC_NAMES = dict(enumerate(_GRPC_CODE_NAMES.split()))


def _code_label(protocol: str, code: int) -> str:
    """HTTP status for REST, the gRPC status name (``OK``, ``NOT_FOUND``) for gRPC."""
    return _GRPC_NAMES.get(code, str(code)) if protocol == "grpc" else str(code)


def _buckets(
    histogram: dict[str, Any], bounds: tuple[float, ...] = BUCKETS
) -> list[tuple[str, float]]:
    counts = histogram.get("buckets") or [0] * len(bounds)
    pairs = [(repr(bound), float(n)) for bound, n in zip(bounds, counts, strict=True)]
    return [*pairs, ("+Inf", float(histogram.get("count", 0)))]


class _PerModel:
    """Latency histograms summed per model (KServe's metric names have no protocol label)."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[list[int], float]] = {}

    def add(self, model: str, histogram: dict[str, Any], weight: int = 1) -> None:
        """Adds (or with ``weight=-1`` takes out) a histogram of :data:`BUCKETS`."""
        counts, total = self._sums.get(model, ([0] * (len(BUCKETS) + 1), 0.0))
        row = [*(histogram.get("buckets") or [0] * len(BUCKETS)), histogram["count"]]
        self._sums[model] = (
            [a + weight * b for a, b in zip(counts, row, strict=True)],
            total + weight * histogram["sum"],
        )

    def add_to(self, family: HistogramMetricFamily) -> None:
        for model, (counts, total) in self._sums.items():
            merged = {"buckets": counts[:-1], "count": counts[-1]}
            family.add_metric([model], _buckets(merged), max(total, 0.0))


class GatewayCollector(Collector):
    """Reads ``snapshot()`` (the core's ``Gateway.metrics_json``) on every scrape."""

    def __init__(self, snapshot: Callable[[], str]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        data = json.loads(self._snapshot())
        requests = CounterMetricFamily(
            "tensorgate_requests", "Inference requests by model, protocol and answer code",
            labels=["model", "protocol", "code"],
        )  # fmt: skip
        bytes_in = CounterMetricFamily(
            "tensorgate_request_bytes", "Request body bytes", labels=["model", "protocol"]
        )
        bytes_out = CounterMetricFamily(
            "tensorgate_response_bytes", "Response body bytes", labels=["model", "protocol"]
        )
        duration = HistogramMetricFamily(
            "tensorgate_request_duration_seconds", "Time from request to answer",
            labels=["model", "protocol"],
        )  # fmt: skip
        upstream = HistogramMetricFamily(
            "tensorgate_upstream_duration_seconds",
            "Time waiting on the backend or in-process model",
            labels=["model", "protocol"],
        )
        predict = HistogramMetricFamily(
            "request_predict_seconds", "KServe's name: time in the model (backend) per model",
            labels=["model_name"],
        )  # fmt: skip
        explain = HistogramMetricFamily(
            "request_explain_seconds", "KServe's name: time in the explainer (backend) per model",
            labels=["model_name"],
        )  # fmt: skip
        predict_time, explain_time = _PerModel(), _PerModel()
        for series in data["series"]:
            model, protocol = series["model"], series["protocol"]
            for code, count in series["codes"].items():
                requests.add_metric([model, protocol, _code_label(protocol, int(code))], count)
            bytes_in.add_metric([model, protocol], series["bytes_in"])
            bytes_out.add_metric([model, protocol], series["bytes_out"])
            total_time, backend_time = series["duration"], series["upstream"]
            duration.add_metric([model, protocol], _buckets(total_time), total_time["sum"])
            upstream.add_metric([model, protocol], _buckets(backend_time), backend_time["sum"])
            # KServe's names: the time in the model, summed over protocols; explain calls
            # (V1 `:explain`, also in the backend time) apart from predictions.
            predict_time.add(model, backend_time)
            if series["explain"]["count"]:
                predict_time.add(model, series["explain"], weight=-1)
                explain_time.add(model, series["explain"])
        predict_time.add_to(predict)
        explain_time.add_to(explain)
        in_flight = GaugeMetricFamily(
            "tensorgate_in_flight_requests", "Requests in flight per route", labels=["model"]
        )
        for model, count in data["in_flight"]:
            in_flight.add_metric([model], count)
        yield from (requests, bytes_in, bytes_out, duration, upstream, predict, explain, in_flight)
        yield from _batch_metrics(data.get("batchers", []))


#: Each model version batches on its own; ``version`` is empty for requests that named none.
BATCH_LABELS = ["model", "version"]


def _batch_metrics(batchers: list[dict[str, Any]]) -> Iterator[Metric]:
    """The families of the models served with batching."""
    rows = HistogramMetricFamily(
        "tensorgate_batch_rows", "Rows per batch sent to the backend", labels=BATCH_LABELS
    )
    delay = HistogramMetricFamily(
        "tensorgate_batch_queue_delay_seconds",
        "Time a request waited in the batch queue before its batch was sent",
        labels=BATCH_LABELS,
    )
    depth = GaugeMetricFamily(
        "tensorgate_batch_queue_depth", "Requests waiting in the batch queue", labels=BATCH_LABELS
    )
    rejected = CounterMetricFamily(
        "tensorgate_batch_rejected", "Requests refused by a full batch queue", labels=BATCH_LABELS
    )
    timed_out = CounterMetricFamily(
        "tensorgate_batch_timed_out",
        "Requests that waited past queue_timeout_ms",
        labels=BATCH_LABELS,
    )
    for batcher in batchers:
        labels = [batcher["model"], batcher["version"] or ""]
        batch_rows, queue_delay = batcher["batch_rows"], batcher["queue_delay"]
        rows.add_metric(labels, _buckets(batch_rows, ROW_BUCKETS), batch_rows["sum"])
        delay.add_metric(labels, _buckets(queue_delay), queue_delay["sum"])
        depth.add_metric(labels, batcher["queue_depth"])
        rejected.add_metric(labels, batcher["rejected"])
        timed_out.add_metric(labels, batcher["timed_out"])
    yield from (rows, delay, depth, rejected, timed_out)
