"""Codec benchmarks: tensorgate against the Python baselines users have today, same run.

    taskset -c 0 python benches/bench_codec.py [--quick]

Each case reports the best of several timed rounds (the minimum is the least noisy estimate on
a shared machine) and the ratio baseline / tensorgate (> 1 means tensorgate is faster).
Baselines: orjson + numpy for JSON, tritonclient's own Python encode/decode for the binary
extension and gRPC raw contents.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import tensorgate
import tritonclient.grpc as grpcclient
import tritonclient.grpc.service_pb2 as pb
import tritonclient.http as httpclient
from tensorgate import codec
from tritonclient.grpc._utils import _get_inference_request as grpc_request
from tritonclient.http._utils import _get_inference_request as http_request

ROWS, COLS = 64, 1024


def best(fn: Callable[[], Any], rounds: int, min_seconds: float) -> float:
    """Best per-call time over `rounds` rounds, each repeating `fn` for at least `min_seconds`."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_seconds:
            break
        calls *= 2
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


class Report:
    def __init__(self, rounds: int, min_seconds: float) -> None:
        self.rounds, self.min_seconds = rounds, min_seconds
        print("| case | tensorgate | baseline | ratio | tensorgate MB/s |\n|---|---|---|---|---|")

    def case(
        self, name: str, ours: Callable[[], Any], theirs: Callable[[], Any], nbytes: int
    ) -> float:
        t_ours = best(ours, self.rounds, self.min_seconds)
        t_theirs = best(theirs, self.rounds, self.min_seconds)
        ratio = t_theirs / t_ours
        mbps = nbytes / t_ours / 1e6
        times = f"{t_ours * 1e6:,.1f} µs | {t_theirs * 1e6:,.1f} µs"
        print(f"| {name} | {times} | {ratio:.2f}x | {mbps:,.0f} |")
        sys.stdout.flush()
        return ratio


def v2_json(report: Report, x: np.ndarray) -> None:
    request = tensorgate.InferRequest([tensorgate.Tensor.from_numpy("x", x)])
    body, _ = codec.encode_v2_request(request)

    def ours_decode() -> np.ndarray:
        return codec.decode_v2_request(body).inputs[0].numpy()

    def orjson_decode() -> np.ndarray:
        tensor = orjson.loads(body)["inputs"][0]
        return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])

    assert np.array_equal(ours_decode(), orjson_decode())
    report.case(
        "V2 JSON decode FP32 [64,1024] (vs orjson+numpy)", ours_decode, orjson_decode, len(body)
    )

    # What Python clients send (tritonclient's and KServe's JSON inputs use `tolist()`): each
    # FP32 value printed as an f64, up to 17 significant digits.
    wide_body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
    )
    limits = tensorgate.Limits(max_body_bytes=len(wide_body) + 1)

    def ours_decode_wide() -> np.ndarray:
        return codec.decode_v2_request(wide_body, limits=limits).inputs[0].numpy()

    def orjson_decode_wide() -> np.ndarray:
        tensor = orjson.loads(wide_body)["inputs"][0]
        return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])

    assert np.array_equal(ours_decode_wide(), x)
    report.case(
        "V2 JSON decode FP32 [64,1024], f64 text (vs orjson+numpy)",
        ours_decode_wide,
        orjson_decode_wide,
        len(wide_body),
    )

    response = tensorgate.InferResponse("m", [tensorgate.Tensor.from_numpy("y", x)], id="1")

    def ours_encode() -> bytes:
        return codec.encode_v2_response(response)[0]

    def orjson_encode() -> bytes:
        return orjson.dumps(
            {
                "model_name": "m",
                "id": "1",
                "outputs": [
                    {"name": "y", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1)}
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    assert np.array_equal(
        np.asarray(orjson.loads(ours_encode())["outputs"][0]["data"], dtype=np.float32),
        np.asarray(orjson.loads(orjson_encode())["outputs"][0]["data"], dtype=np.float32),
    )
    report.case(
        "V2 JSON encode FP32 [64,1024] (vs orjson numpy)", ours_encode, orjson_encode, len(body)
    )


def binary(report: Report, x: np.ndarray, label: str) -> None:
    inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=True)

    def triton_encode() -> Any:
        return http_request(inputs, "", None, 0, False, False, 0, None, None)

    request = tensorgate.InferRequest([tensorgate.Tensor.from_numpy("x", x)])

    def ours_encode() -> Any:
        return codec.encode_v2_request(request, binary=True)

    report.case(
        f"binary request encode {label} (vs tritonclient.http)",
        ours_encode,
        triton_encode,
        x.nbytes,
    )

    response = tensorgate.InferResponse("m", [tensorgate.Tensor.from_numpy("y", x)])
    body, header_length = codec.encode_v2_response(response, True)
    limits = tensorgate.Limits(max_body_bytes=len(body) + 1)

    def ours_decode() -> np.ndarray:
        return codec.decode_v2_response(body, header_length, limits=limits).outputs[0].numpy()

    def triton_decode() -> Any:
        return httpclient.InferResult.from_response_body(body, False, header_length).as_numpy("y")

    assert np.array_equal(ours_decode(), triton_decode())
    report.case(
        f"binary response decode {label} (vs tritonclient.http)",
        ours_decode,
        triton_decode,
        x.nbytes,
    )


def grpc_raw(report: Report, x: np.ndarray, label: str) -> None:
    inputs = [grpcclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)

    def triton_encode() -> Any:
        return grpc_request(
            "m", inputs, "", "", None, 0, False, False, 0, None, None
        ).SerializeToString()

    request = tensorgate.InferRequest([tensorgate.Tensor.from_numpy("x", x)])

    def ours_encode() -> bytes:
        return codec.encode_grpc_request(request, "m")

    report.case(
        f"gRPC raw request encode {label} (vs tritonclient.grpc)",
        ours_encode,
        triton_encode,
        x.nbytes,
    )

    response = tensorgate.InferResponse("m", [tensorgate.Tensor.from_numpy("y", x)])
    data = codec.encode_grpc_response(response)
    limits = tensorgate.Limits(max_body_bytes=len(data) + 1)

    def ours_decode() -> np.ndarray:
        return codec.decode_grpc_response(data, limits=limits).outputs[0].numpy()

    def triton_decode() -> Any:
        return grpcclient.InferResult(pb.ModelInferResponse.FromString(data)).as_numpy("y")

    assert np.array_equal(ours_decode(), triton_decode())
    report.case(
        f"gRPC raw response decode {label} (vs tritonclient.grpc)",
        ours_decode,
        triton_decode,
        x.nbytes,
    )


def v1(report: Report, x: np.ndarray) -> None:
    body = orjson.dumps({"instances": x.tolist()})

    def ours() -> np.ndarray:
        return codec.decode_v1_request(body).inputs[0].numpy()

    def baseline() -> np.ndarray:
        return np.asarray(orjson.loads(body)["instances"])

    assert np.array_equal(ours(), baseline())
    report.case("V1 instances decode [64,1024] (vs orjson+numpy)", ours, baseline, len(body))


def size_independence(report: Report) -> None:
    print("\n| zero-copy decode | 64 KiB | 64 MiB | ratio (target ≤ 2x) |\n|---|---|---|---|")
    for name, decode in (("binary", _binary_decoder), ("gRPC raw", _grpc_decoder)):
        small, large = (decode(np.ones(n // 4, dtype=np.float32)) for n in (64 << 10, 64 << 20))
        t_small = best(small, report.rounds, report.min_seconds)
        t_large = best(large, report.rounds, report.min_seconds)
        times = f"{t_small * 1e6:.1f} µs | {t_large * 1e6:.1f} µs"
        print(f"| {name} | {times} | {t_large / t_small:.2f}x |")


def _binary_decoder(x: np.ndarray) -> Callable[[], Any]:
    request = tensorgate.InferRequest([tensorgate.Tensor.from_numpy("x", x)])
    body, header_length = codec.encode_v2_request(request, binary=True)
    limits = tensorgate.Limits(max_body_bytes=len(body) + 1)
    return lambda: codec.decode_v2_request(body, header_length, limits=limits).inputs[0].numpy()


def _grpc_decoder(x: np.ndarray) -> Callable[[], Any]:
    data = codec.encode_grpc_request(
        tensorgate.InferRequest([tensorgate.Tensor.from_numpy("x", x)]), "m"
    )
    limits = tensorgate.Limits(max_body_bytes=len(data) + 1)
    return lambda: codec.decode_grpc_request(data, limits=limits).inputs[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    report = Report(rounds=3 if args.quick else 7, min_seconds=0.05 if args.quick else 0.2)
    x = np.random.default_rng(0).standard_normal((ROWS, COLS), dtype=np.float32)
    v2_json(report, x)
    binary(report, x, "[64,1024]")
    grpc_raw(report, x, "[64,1024]")
    v1(report, x)
    size_independence(report)


if __name__ == "__main__":
    main()
