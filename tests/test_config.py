"""``tensorgate.config``: defaults, each YAML section, precedence, validation and the core snapshot.

Pure Python: no servers. Files are written to a temporary directory that is the working directory,
so error messages name them exactly as given (``config.yaml: ...``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tensorgate.config import (
    BUILTIN_FORWARD_HEADERS,
    BackendConfig,
    BatchingConfig,
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    ModelConfig,
    ModelMetadata,
    load_config,
)
from tensorgate.models import TensorSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

DEFAULT_LIMITS = {
    "max_body_bytes": 67108864,
    "max_tensor_elements": 268435456,
    "max_rank": 32,
    "max_tensors": 256,
    "max_bytes_element_len": 16777216,
    "max_json_depth": 64,
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(text: str, name: str = "config.yaml") -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def load(
    text: str | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, object] | None = None,
    demo: bool = False,
) -> GatewayConfig:
    path = None if text is None else write(text)
    return load_config(path, env=env or {}, flags=flags, demo=demo)


def load_error(
    text: str | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, object] | None = None,
) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, env, flags)
    return str(info.value)


def model(name: str, backend: str) -> str:
    """A one-model YAML document; ``backend`` is the indented body of the backend mapping."""
    return f"models:\n  - name: {name}\n    backend:\n" + textwrap.indent(backend, "      ")


# --------------------------------------------------------------------------- defaults


def test_defaults_without_any_source() -> None:
    cfg = load()
    assert cfg == GatewayConfig()
    assert cfg.models == ()
    assert cfg.python_models() == []
    assert cfg.to_core() == {
        "host": "0.0.0.0",
        "http_port": 8080,
        "grpc_port": 8081,
        "grpc_max_message_bytes": 67108864,
        "drain_timeout_ms": 30000,
        "access_log": "text",
        "readiness": "all",
        "forward_headers": list(BUILTIN_FORWARD_HEADERS),
        "health_check_interval_ms": 2000,
        "metadata_ttl_ms": 30000,
        "python_workers": 2,
        "python_queue_size": 4096,
        "connect_timeout_ms": 5000,
        "pool_idle_timeout_ms": 4000,
        "client_timeout_ms": 30000,
        "models": [],
    }


def test_builtin_forward_headers() -> None:
    assert BUILTIN_FORWARD_HEADERS == (
        "x-request-id",
        "traceparent",
        "tracestate",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "authorization",
    )


def test_empty_file_is_all_defaults() -> None:
    assert load("") == GatewayConfig()
    assert load("# only a comment\n") == GatewayConfig()


def test_env_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORGATE_HTTP_PORT", "9123")
    assert load_config().http_port == 9123


def test_model_defaults() -> None:
    cfg = load(model("m", "url: http://127.0.0.1:9000\n"))
    assert cfg.models == (
        ModelConfig(name="m", backend=BackendConfig(kind="http", urls=("http://127.0.0.1:9000",))),
    )
    m = cfg.models[0]
    assert (m.timeout_s, m.retries, m.retry_backoff_s, m.max_concurrency) == (600, 0, 0.1, 1024)
    assert (m.eject_after_failures, m.eject_s, m.metadata) == (5, 10, None)
    assert m.limits == LimitsConfig()


# --------------------------------------------------------------------------- sections


def test_top_level_section() -> None:
    cfg = load(
        """
        host: 127.0.0.1
        http_port: 9000
        grpc_port: 0
        grpc_max_message_bytes: 1024
        drain_timeout_s: 1.5
        access_log: off
        forward_headers: [X-Tenant, x-request-id, x-tenant, x-user]
        health_check_interval_s: 0
        metadata_ttl_s: 0.25
        python_workers: 8
        python_queue_size: 16
        connect_timeout_s: 0.5
        pool_idle_timeout_s: 1.25
        """
    )
    assert cfg.host == "127.0.0.1"
    assert (cfg.http_port, cfg.grpc_port, cfg.grpc_max_message_bytes) == (9000, 0, 1024)
    assert cfg.drain_timeout_s == 1.5
    assert cfg.access_log == "off"  # YAML 1.2 booleans: `off` is a string
    assert cfg.forward_headers == (*BUILTIN_FORWARD_HEADERS, "x-tenant", "x-user")
    assert (cfg.health_check_interval_s, cfg.metadata_ttl_s, cfg.python_workers) == (0, 0.25, 8)
    core = cfg.to_core()
    assert core["drain_timeout_ms"] == 1500
    assert core["health_check_interval_ms"] == 0
    assert core["metadata_ttl_ms"] == 250
    assert (core["python_queue_size"], core["connect_timeout_ms"]) == (16, 500)
    assert core["pool_idle_timeout_ms"] == 1250


@pytest.mark.parametrize("value", ["text", "json", "off"])
def test_access_log_values(value: str) -> None:
    assert load(f"access_log: {value}\n").access_log == value


@pytest.mark.parametrize("value", ["all", "any", "live"])
def test_readiness_values(value: str) -> None:
    cfg = load(f"readiness: {value}\n")
    assert (cfg.readiness, cfg.to_core()["readiness"]) == (value, value)


def test_global_limits_and_per_model_overrides() -> None:
    cfg = load(
        """
        limits: {max_body_bytes: 1000, max_rank: 4}
        models:
          - name: a
            backend: {url: "http://127.0.0.1:9000"}
          - name: b
            backend: {url: "http://127.0.0.1:9000"}
            limits: {max_rank: 2, max_json_depth: 8}
        """
    )
    assert cfg.limits == LimitsConfig(max_body_bytes=1000, max_rank=4)
    assert cfg.models[0].limits == cfg.limits
    assert cfg.models[1].limits == LimitsConfig(max_body_bytes=1000, max_rank=2, max_json_depth=8)
    assert cfg.to_core()["models"][1]["limits"] == {
        **DEFAULT_LIMITS,
        "max_body_bytes": 1000,
        "max_rank": 2,
        "max_json_depth": 8,
    }


def test_model_settings() -> None:
    cfg = load(
        """
        models:
          - name: m
            backend: {url: "http://127.0.0.1:9000"}
            timeout_s: 2.5
            retries: 10
            retry_backoff_s: 0
            max_concurrency: 1
            eject_after_failures: 1
            eject_s: 0.5
        """
    )
    core = cfg.to_core()["models"][0]
    assert core["timeout_ms"] == 2500
    assert core["retries"] == 10
    assert core["retry_backoff_ms"] == 0
    assert core["max_concurrency"] == 1
    assert core["eject_after_failures"] == 1
    assert core["eject_ms"] == 500


def test_http_backend_variants() -> None:
    cfg = load(
        """
        models:
          - name: v1
            backend: {url: "http://127.0.0.1:9000/", protocol: v1, model: other}
          - name: bin
            backend:
              urls: ["http://10.0.0.1:9000", "http://backend.local:9001", "http://[::1]:9002"]
              binary: true
          - name: plain
            backend: {url: "HTTP://Host.Example:80", protocol: v2, binary: false}
        """
    )
    v1, binary, plain = (m.backend for m in cfg.models)
    assert v1 == BackendConfig(
        kind="http", urls=("http://127.0.0.1:9000",), protocol="v1", model="other"
    )
    assert binary.urls == ("http://10.0.0.1:9000", "http://backend.local:9001", "http://[::1]:9002")
    assert binary.binary
    assert plain.urls == ("http://Host.Example:80",)
    assert plain.to_core() == {
        "kind": "http",
        "urls": ["http://Host.Example:80"],
        "protocol": "v2",
        "binary": False,
        "model": None,
    }


def test_grpc_backend_is_rewritten_to_http_for_the_core() -> None:
    cfg = load(
        """
        models:
          - name: g
            backend: {urls: ["grpc://127.0.0.1:9001", "grpc://127.0.0.1:9002/"], model: gm}
          - name: h
            backend: {url: "grpc://127.0.0.1:9003", protocol: v2}
        """
    )
    assert cfg.models[0].backend.kind == "grpc"
    assert cfg.models[0].backend.urls == ("grpc://127.0.0.1:9001", "grpc://127.0.0.1:9002")
    assert cfg.models[0].backend.to_core() == {
        "kind": "grpc",
        "urls": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"],
        "model": "gm",
    }
    assert cfg.models[1].backend.to_core()["urls"] == ["http://127.0.0.1:9003"]


def test_python_backend_and_python_models() -> None:
    cfg = load(
        """
        models:
          - name: sum
            backend: {python: "tensorgate.demo:sum"}
          - name: remote
            backend: {url: "http://127.0.0.1:9000"}
          - name: cls
            backend: {python: "pkg.sub.mod:Model.factory"}
        """
    )
    assert cfg.python_models() == [
        ("sum", "tensorgate.demo:sum"),
        ("cls", "pkg.sub.mod:Model.factory"),
    ]
    assert cfg.models[0].backend.to_core() == {"kind": "python", "target": "tensorgate.demo:sum"}


def test_metadata() -> None:
    cfg = load(
        """
        models:
          - name: m
            backend: {url: "http://127.0.0.1:9000"}
            metadata:
              platform: onnx
              inputs:
                - {name: x, datatype: FP32, shape: [-1, 4]}
                - {name: s, datatype: BYTES, shape: []}
              outputs: [{name: y, datatype: BF16, shape: [0]}]
          - name: n
            backend: {url: "http://127.0.0.1:9000"}
            metadata: {}
        """
    )
    assert cfg.models[0].metadata == ModelMetadata(
        platform="onnx",
        inputs=(TensorSpec("x", "FP32", (-1, 4)), TensorSpec("s", "BYTES", ())),
        outputs=(TensorSpec("y", "BF16", (0,)),),
    )
    assert cfg.models[1].metadata == ModelMetadata()
    assert cfg.to_core()["models"][1]["metadata"] == {"platform": "", "inputs": [], "outputs": []}


def test_null_values_mean_not_set() -> None:
    cfg = load(
        """
        http_port:
        forward_headers:
        models:
          - name: m
            backend: {url: "http://127.0.0.1:9000", model: null}
            metadata: null
        """
    )
    assert cfg.http_port == 8080
    assert cfg.models[0].metadata is None


def test_yaml_anchors_and_merge_keys() -> None:
    cfg = load(
        """
        models:
          - &base
            name: a
            backend: {url: "http://127.0.0.1:9000"}
            retries: 3
          - <<: *base
            name: b
            retries: 1
        """
    )
    assert [(m.name, m.retries) for m in cfg.models] == [("a", 3), ("b", 1)]


# --------------------------------------------------------------------------- precedence


def test_precedence_flags_over_env_over_file() -> None:
    text = "host: 10.0.0.1\nhttp_port: 1000\ngrpc_port: 1001\npython_workers: 3\naccess_log: json\n"
    env = {"TENSORGATE_HTTP_PORT": "2000", "TENSORGATE_GRPC_PORT": "2001"}
    cfg = load(text, env, {"http_port": 3000, "host": None})
    assert cfg.host == "10.0.0.1"  # file (flag None is ignored)
    assert cfg.http_port == 3000  # flag
    assert cfg.grpc_port == 2001  # env
    assert cfg.python_workers == 3  # file
    assert cfg.access_log == "json"  # file


def test_every_env_variable() -> None:
    env = {
        "TENSORGATE_HOST": "127.0.0.1",
        "TENSORGATE_HTTP_PORT": "9000",
        "TENSORGATE_GRPC_PORT": " 9001 ",
        "TENSORGATE_GRPC_MAX_MESSAGE_BYTES": "2048",
        "TENSORGATE_DRAIN_TIMEOUT_S": "0.5",
        "TENSORGATE_ACCESS_LOG": "json",
        "TENSORGATE_READINESS": "any",
        "TENSORGATE_FORWARD_HEADERS": "X-Tenant, ,x-user,",
        "TENSORGATE_HEALTH_CHECK_INTERVAL_S": "0",
        "TENSORGATE_METADATA_TTL_S": "7.5",
        "TENSORGATE_PYTHON_WORKERS": "4",
        "TENSORGATE_PYTHON_QUEUE_SIZE": "16",
        "TENSORGATE_CONNECT_TIMEOUT_S": "1.5",
        "TENSORGATE_POOL_IDLE_TIMEOUT_S": "0.25",
        "TENSORGATE_CLIENT_TIMEOUT_S": "2.5",
        "TENSORGATE_MAX_BODY_BYTES": "4096",
        "TENSORGATE_TIMEOUT_S": "5",
        "TENSORGATE_UNRELATED": "ignored",
        "TENSORGATE_PORT": "tcp://10.0.0.1:80",  # a Kubernetes service link: not ours
    }
    cfg = load(model("m", "url: http://127.0.0.1:1\n"), env)
    assert (cfg.host, cfg.http_port, cfg.grpc_port) == ("127.0.0.1", 9000, 9001)
    assert cfg.grpc_max_message_bytes == 2048
    assert cfg.drain_timeout_s == 0.5
    assert cfg.access_log == "json"
    assert cfg.readiness == "any"
    assert cfg.forward_headers == (*BUILTIN_FORWARD_HEADERS, "x-tenant", "x-user")
    assert cfg.health_check_interval_s == 0
    assert cfg.metadata_ttl_s == 7.5
    assert (cfg.python_workers, cfg.python_queue_size) == (4, 16)
    assert (cfg.connect_timeout_s, cfg.client_timeout_s) == (1.5, 2.5)
    assert cfg.pool_idle_timeout_s == 0.25
    assert cfg.limits.max_body_bytes == 4096
    assert cfg.models[0].limits.max_body_bytes == 4096
    assert cfg.models[0].timeout_s == 5


def test_empty_env_values_are_unset() -> None:
    assert load("http_port: 1234\n", {"TENSORGATE_HTTP_PORT": "", "TENSORGATE_CONFIG": ""}) == (
        GatewayConfig(http_port=1234)
    )


def test_env_overrides_file_forward_headers_and_limits() -> None:
    text = "forward_headers: [x-a]\nlimits: {max_body_bytes: 10, max_rank: 3}\n"
    cfg = load(text, {"TENSORGATE_FORWARD_HEADERS": "x-b", "TENSORGATE_MAX_BODY_BYTES": "20"})
    assert cfg.forward_headers == (*BUILTIN_FORWARD_HEADERS, "x-b")
    assert cfg.limits == LimitsConfig(max_body_bytes=20, max_rank=3)


def test_model_settings_beat_env_defaults() -> None:
    text = """
        models:
          - name: a
            backend: {url: "http://127.0.0.1:9000"}
            timeout_s: 7
            limits: {max_body_bytes: 5}
          - name: b
            backend: {url: "http://127.0.0.1:9000"}
        """
    env = {"TENSORGATE_TIMEOUT_S": "3", "TENSORGATE_MAX_BODY_BYTES": "50"}
    a, b = load(text, env).models
    assert (a.timeout_s, a.limits.max_body_bytes) == (7, 5)
    assert (b.timeout_s, b.limits.max_body_bytes) == (3, 50)


def test_every_flag() -> None:
    flags: dict[str, object] = {
        "host": "::",
        "http_port": 0,
        "grpc_port": "0",
        "access_log": "off",
        "drain_timeout_s": 2,
        "python_workers": "16",
        "backend": "http://127.0.0.1:8085",
        "protocol": "v1",
    }
    cfg = load(None, {}, flags)
    assert (cfg.host, cfg.http_port, cfg.grpc_port, cfg.access_log) == ("::", 0, 0, "off")
    assert (cfg.drain_timeout_s, cfg.python_workers) == (2, 16)
    assert cfg.models[0].name == "*"
    assert cfg.models[0].backend.protocol == "v1"


def test_config_path_from_env() -> None:
    write("http_port: 4321\n", "from-env.yaml")
    assert load_config(env={"TENSORGATE_CONFIG": "from-env.yaml"}).http_port == 4321
    # An explicit path wins over TENSORGATE_CONFIG.
    write("http_port: 1111\n", "explicit.yaml")
    assert load_config("explicit.yaml", env={"TENSORGATE_CONFIG": "x.yaml"}).http_port == 1111
    assert load_config(Path("explicit.yaml"), env={}).http_port == 1111


# --------------------------------------------------------------------------- sidecar shortcut


def test_sidecar_env_adds_wildcard_route() -> None:
    cfg = load(None, {"TENSORGATE_BACKEND": "http://127.0.0.1:8085/"})
    assert cfg.models == (
        ModelConfig(name="*", backend=BackendConfig(kind="http", urls=("http://127.0.0.1:8085",))),
    )


def test_sidecar_env_protocol_and_grpc() -> None:
    v1 = load(None, {"TENSORGATE_BACKEND": "http://h:1", "TENSORGATE_BACKEND_PROTOCOL": "v1"})
    assert v1.models[0].backend.protocol == "v1"
    both = load(None, {"TENSORGATE_BACKEND": "http://h:1", "TENSORGATE_BACKEND_PROTOCOL": "both"})
    assert both.models[0].backend.to_core()["protocol"] == "both"
    grpc = load(None, {"TENSORGATE_BACKEND": "grpc://h:1", "TENSORGATE_BACKEND_PROTOCOL": "v2"})
    assert grpc.models[0].backend.to_core() == {
        "kind": "grpc",
        "urls": ["http://h:1"],
        "model": None,
    }


def test_sidecar_is_appended_after_file_models() -> None:
    cfg = load(model("named", "python: a:b\n"), {"TENSORGATE_BACKEND": "http://h:1"})
    assert [m.name for m in cfg.models] == ["named", "*"]


def test_sidecar_replaces_the_wildcard_backend_keeping_its_settings() -> None:
    text = """
        models:
          - name: "*"
            backend: {url: "http://old:1", binary: true}
            retries: 2
          - name: other
            backend: {url: "http://127.0.0.1:9000"}
        """
    cfg = load(text, {"TENSORGATE_BACKEND": "http://new:2"})
    assert [m.name for m in cfg.models] == ["*", "other"]
    assert cfg.models[0].backend == BackendConfig(kind="http", urls=("http://new:2",))
    assert cfg.models[0].retries == 2


def test_backend_flag_beats_env() -> None:
    env = {"TENSORGATE_BACKEND": "http://env:1", "TENSORGATE_BACKEND_PROTOCOL": "v1"}
    cfg = load(None, env, {"backend": "grpc://flag:2", "protocol": "v2"})
    assert cfg.models[0].backend == BackendConfig(kind="grpc", urls=("grpc://flag:2",))
    # The flag's protocol combines with the environment's URL.
    cfg = load(None, {"TENSORGATE_BACKEND": "http://env:1"}, {"protocol": "v1"})
    assert cfg.models[0].backend.protocol == "v1"


# --------------------------------------------------------------------------- to_core


def test_to_core_full_snapshot() -> None:
    text = """
        http_port: 9000
        forward_headers: [x-tenant]
        limits: {max_tensors: 8}
        models:
          - name: sum
            backend: {url: "http://127.0.0.1:9000", binary: true, model: summer}
            timeout_s: 1
            retries: 2
            retry_backoff_s: 0.25
            limits: {max_body_bytes: 1048576}
            metadata:
              inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]
              outputs: [{name: y, datatype: FP32, shape: [-1]}]
            batching: {max_batch_size: 16, max_queue_delay_ms: auto}
          - name: g
            backend: {url: "grpc://127.0.0.1:9001"}
          - name: py
            backend: {python: "tensorgate.demo:sum"}
        """
    common = {
        "retries": 0,
        "retry_backoff_ms": 100,
        "max_concurrency": 1024,
        "eject_after_failures": 5,
        "eject_ms": 10000,
        "timeout_ms": 600000,
        "limits": {**DEFAULT_LIMITS, "max_tensors": 8},
        "metadata": None,
        "batching": None,
    }
    expected: dict[str, Any] = {
        "host": "0.0.0.0",
        "http_port": 9000,
        "grpc_port": 8081,
        "grpc_max_message_bytes": 67108864,
        "drain_timeout_ms": 30000,
        "access_log": "text",
        "readiness": "all",
        "forward_headers": [*BUILTIN_FORWARD_HEADERS, "x-tenant"],
        "health_check_interval_ms": 2000,
        "metadata_ttl_ms": 30000,
        "python_workers": 2,
        "python_queue_size": 4096,
        "connect_timeout_ms": 5000,
        "pool_idle_timeout_ms": 4000,
        "client_timeout_ms": 30000,
        "models": [
            {
                "name": "sum",
                "backend": {
                    "kind": "http",
                    "urls": ["http://127.0.0.1:9000"],
                    "protocol": "v2",
                    "binary": True,
                    "model": "summer",
                },
                "timeout_ms": 1000,
                "retries": 2,
                "retry_backoff_ms": 250,
                "max_concurrency": 1024,
                "eject_after_failures": 5,
                "eject_ms": 10000,
                "limits": {**DEFAULT_LIMITS, "max_tensors": 8, "max_body_bytes": 1048576},
                "metadata": {
                    "platform": "",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
                },
                "batching": {
                    "max_batch_size": 16,
                    "delay": {"kind": "auto", "target_latency_ms": 100},
                    "preferred_batch_sizes": [],
                    "max_queue_size": 1024,
                    "queue_timeout_ms": 1000,
                    "max_inflight_batches": 2,
                },
            },
            {
                "name": "g",
                "backend": {"kind": "grpc", "urls": ["http://127.0.0.1:9001"], "model": None},
                **common,
            },
            {
                "name": "py",
                "backend": {"kind": "python", "target": "tensorgate.demo:sum"},
                **common,
            },
        ],
    }
    core = load(text).to_core()
    assert core == expected
    assert json.loads(json.dumps(core)) == expected  # JSON-able, lists not tuples
    assert list(core) == list(expected)


def test_to_core_milliseconds_are_integers() -> None:
    core = load("drain_timeout_s: 0.001\nmetadata_ttl_s: 2.0005\n").to_core()
    assert core["drain_timeout_ms"] == 1
    assert isinstance(core["drain_timeout_ms"], int)
    assert isinstance(core["metadata_ttl_ms"], int)


def test_config_is_frozen() -> None:
    cfg = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.http_port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["sidecar.yaml", "gateway.yaml"])
def test_examples_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name, env={})
    assert cfg.models
    json.dumps(cfg.to_core())


def test_example_sidecar() -> None:
    cfg = load_config(EXAMPLES / "sidecar.yaml", env={})
    (route,) = cfg.models
    assert route.name == "*"
    assert route.backend == BackendConfig(
        kind="http", urls=("http://127.0.0.1:8085",), protocol="both"
    )


def test_example_gateway() -> None:
    cfg = load_config(EXAMPLES / "gateway.yaml", env={})
    kinds = [
        (m.backend.kind, m.backend.protocol, m.backend.binary, len(m.backend.urls))
        for m in cfg.models
    ]
    assert ("http", "v1", None, 1) in kinds
    assert ("http", "v2", True, 2) in kinds
    assert any(kind == "grpc" for kind, *_ in kinds)
    assert ("sum", "tensorgate.demo:sum") in cfg.python_models()
    batching = [m.batching for m in cfg.models if m.batching is not None]
    assert batching == [
        BatchingConfig(
            max_batch_size=32,
            max_queue_delay_ms=2,
            preferred_batch_sizes=(8, 16),
            max_queue_size=1024,
            queue_timeout_ms=5000,
            max_inflight_batches=2,
        )
    ]


def test_batching_defaults_and_core_form() -> None:
    cfg = load(model("m", URL) + "    timeout_s: 3\n    batching: {}\n")
    [m] = cfg.models
    assert m.batching == BatchingConfig()
    assert m.to_core()["batching"] == {
        "max_batch_size": 32,
        "delay": {"kind": "fixed", "micros": 2000},
        "preferred_batch_sizes": [],
        "max_queue_size": 1024,
        "queue_timeout_ms": 3000,
        "max_inflight_batches": 2,
    }
    assert load(model("m", URL)).models[0].to_core()["batching"] is None


def test_batching_auto_delay_and_fractional_ms() -> None:
    text = model("m", URL) + (
        "    batching: {max_queue_delay_ms: auto, target_latency_ms: 40, "
        "preferred_batch_sizes: [16, 4, 16]}\n"
    )
    core = load(text).models[0].to_core()["batching"]
    assert core["delay"] == {"kind": "auto", "target_latency_ms": 40}
    assert core["preferred_batch_sizes"] == [4, 16]
    fixed = load(model("m", URL) + "    batching: {max_queue_delay_ms: 0.25}\n")
    assert fixed.models[0].to_core()["batching"]["delay"] == {"kind": "fixed", "micros": 250}


# --------------------------------------------------------------------------- validation errors

URL = "url: http://127.0.0.1:9000\n"

BATCHING = model("m", URL) + "    batching: "

# (YAML document, the exact "config.yaml: field: " prefix, a fragment of the problem text)
FILE_ERRORS: list[tuple[str, str, str]] = [
    (BATCHING + "8\n", "config.yaml: models[0].batching: ", "must be a mapping"),
    (BATCHING + "{max_batch: 8}\n", "config.yaml: models[0].batching: ", "did you mean"),
    (BATCHING + "{max_batch_size: 0}\n", "config.yaml: models[0].batching.max_batch_size: ", ""),
    (
        BATCHING + "{max_queue_delay_ms: soon}\n",
        "config.yaml: models[0].batching.max_queue_delay_ms: ",
        "milliseconds or 'auto'",
    ),
    (
        BATCHING + "{max_queue_delay_ms: -1}\n",
        "config.yaml: models[0].batching.max_queue_delay_ms: ",
        "",
    ),
    (
        BATCHING + "{target_latency_ms: 10}\n",
        "config.yaml: models[0].batching.target_latency_ms: ",
        "only applies with max_queue_delay_ms: auto",
    ),
    (
        BATCHING + "{max_batch_size: 8, preferred_batch_sizes: [4, 16]}\n",
        "config.yaml: models[0].batching.preferred_batch_sizes[1]: ",
        "must not exceed max_batch_size (8)",
    ),
    (BATCHING + "{max_queue_size: 0}\n", "config.yaml: models[0].batching.max_queue_size: ", ""),
    (
        BATCHING + "{queue_timeout_ms: 0}\n",
        "config.yaml: models[0].batching.queue_timeout_ms: ",
        "",
    ),
    (
        BATCHING + "{max_inflight_batches: 0}\n",
        "config.yaml: models[0].batching.max_inflight_batches: ",
        "",
    ),
    ("- 1\n", "config.yaml: ", "must be a mapping, got a list"),
    ("htp_port: 1\n", "config.yaml: ", "unknown key 'htp_port' (did you mean 'http_port'?)"),
    ("http_port: 1\nbogus: 2\n", "config.yaml: ", "allowed keys: access_log, client_timeout_s"),
    ("python_queue_size: 0\n", "config.yaml: python_queue_size: ", "between 1 and"),
    ("connect_timeout_s: 0\n", "config.yaml: connect_timeout_s: ", ""),
    ("pool_idle_timeout_s: -1\n", "config.yaml: pool_idle_timeout_s: ", ""),
    ("host: ''\n", "config.yaml: host: ", "must be a host name"),
    ("host: 12\n", "config.yaml: host: ", "must be a string, got an integer 12"),
    ("http_port: 65536\n", "config.yaml: http_port: ", "must be between 0 and 65535, got 65536"),
    ("http_port: -1\n", "config.yaml: http_port: ", "between 0 and 65535"),
    ("http_port: '80'\n", "config.yaml: http_port: ", "must be an integer, got a string '80'"),
    ("http_port: true\n", "config.yaml: http_port: ", "must be an integer, got a boolean"),
    ("http_port: 80.0\n", "config.yaml: http_port: ", "must be an integer, got a number"),
    ("grpc_port: 8080\n", "config.yaml: grpc_port: ", "must differ from http_port (8080)"),
    ("http_port: 8081\n", "config.yaml: http_port: ", "must differ from grpc_port (8081)"),
    ("grpc_max_message_bytes: 1023\n", "config.yaml: grpc_max_message_bytes: ", "between 1024"),
    ("grpc_max_message_bytes: 4294967296\n", "config.yaml: grpc_max_message_bytes: ", "2147483647"),
    ("drain_timeout_s: 0\n", "config.yaml: drain_timeout_s: ", "must be between 0.001 (1 ms) and"),
    ("drain_timeout_s: -1\n", "config.yaml: drain_timeout_s: ", "must be between 0.001 (1 ms) and"),
    (
        "drain_timeout_s: .nan\n",
        "config.yaml: drain_timeout_s: ",
        "must be between 0.001 (1 ms) and",
    ),
    (
        "drain_timeout_s: .inf\n",
        "config.yaml: drain_timeout_s: ",
        "must be between 0.001 (1 ms) and",
    ),
    ("drain_timeout_s: 0.0001\n", "config.yaml: drain_timeout_s: ", "at least 0.001 (1 ms)"),
    ("drain_timeout_s: 30s\n", "config.yaml: drain_timeout_s: ", "must be a number of seconds"),
    ("health_check_interval_s: 0.0004\n", "config.yaml: health_check_interval_s: ", "or 0"),
    ("metadata_ttl_s: -0.5\n", "config.yaml: metadata_ttl_s: ", "between 0 and"),
    ("access_log: yes\n", "config.yaml: access_log: ", "must be one of text, json, off, got 'yes'"),
    ("access_log: false\n", "config.yaml: access_log: ", "must be a string, got a boolean"),
    ("readiness: some\n", "config.yaml: readiness: ", "must be one of all, any, live, got 'some'"),
    ("forward_headers: x-a\n", "config.yaml: forward_headers: ", "must be a list"),
    ("forward_headers: [x-a, 'bad name']\n", "config.yaml: forward_headers[1]: ", "not a valid"),
    (
        "forward_headers: [Content-Length]\n",
        "config.yaml: forward_headers[0]: ",
        "set by the gateway",
    ),
    ("forward_headers: [host]\n", "config.yaml: forward_headers[0]: ", "set by the gateway"),
    ("forward_headers: [1]\n", "config.yaml: forward_headers[0]: ", "must be a string"),
    ("python_workers: 0\n", "config.yaml: python_workers: ", "between 1 and 1024"),
    ("limits: 5\n", "config.yaml: limits: ", "must be a mapping"),
    ("limits: {max_body: 1}\n", "config.yaml: limits: ", "unknown key 'max_body'"),
    ("limits: {max_rank: 0}\n", "config.yaml: limits.max_rank: ", "must be >= 1, got 0"),
    ("limits: {max_rank: 2e3}\n", "config.yaml: limits.max_rank: ", "must be an integer"),
    ("models: {a: 1}\n", "config.yaml: models: ", "must be a list, got a mapping"),
    ("models: [sum]\n", "config.yaml: models[0]: ", "must be a mapping, got a string 'sum'"),
    ("models: [{backend: {python: 'a:b'}}]\n", "config.yaml: models[0].name: ", "is required"),
    ("models: [{name: a}]\n", "config.yaml: models[0].backend: ", "is required"),
    ("models: [{name: a, backend: }]\n", "config.yaml: models[0].backend: ", "is required"),
    (model("''", URL), "config.yaml: models[0].name: ", "must be a non-empty name"),
    (model("a/b", URL), "config.yaml: models[0].name: ", "without '/'"),
    (model("7", URL), "config.yaml: models[0].name: ", "must be a string, got an integer"),
    (
        model("a", URL) + "  - name: b\n    backend: {url: x}\n",
        "config.yaml: models[1].backend.url: ",
        "must start with http:// or grpc://, got 'x'",
    ),
    (
        model("a", URL) + "  - name: a\n    backend: {python: 'a:b'}\n",
        "config.yaml: models[1].name: ",
        "duplicate model name 'a' (also models[0])",
    ),
    (
        model("'*'", URL) + "  - name: '*'\n    backend: {python: 'a:b'}\n",
        "config.yaml: models[1].name: ",
        "only one wildcard route '*' is allowed (also models[0])",
    ),
    (model("a", URL) + "    timeout: 5\n", "config.yaml: models[0]: ", "did you mean 'timeout_s'?"),
    (
        model("a", URL) + "    timeout_s: 0\n",
        "config.yaml: models[0].timeout_s: ",
        "must be between 0.001 (1 ms) and",
    ),
    (model("a", URL) + "    retries: 11\n", "config.yaml: models[0].retries: ", "between 0 and 10"),
    (model("a", URL) + "    retries: -1\n", "config.yaml: models[0].retries: ", "between 0 and 10"),
    (
        model("a", URL) + "    retry_backoff_s: -1\n",
        "config.yaml: models[0].retry_backoff_s: ",
        "0",
    ),
    (
        model("a", URL) + "    max_concurrency: 0\n",
        "config.yaml: models[0].max_concurrency: ",
        ">= 1",
    ),
    (
        model("a", URL) + "    eject_after_failures: 0\n",
        "config.yaml: models[0].eject_after_failures: ",
        ">= 1",
    ),
    (
        model("a", URL) + "    eject_s: 0\n",
        "config.yaml: models[0].eject_s: ",
        "must be between 0.001 (1 ms) and",
    ),
    (
        model("a", URL) + "    limits: {max_tensors: -3}\n",
        "config.yaml: models[0].limits.max_tensors: ",
        ">= 1",
    ),
    ("models: [{name: a, backend: http://h:1}]\n", "config.yaml: models[0].backend: ", "mapping"),
    (
        model("a", "{}\n"),
        "config.yaml: models[0].backend: ",
        "exactly one of url, urls, python (got none)",
    ),
    (
        model("a", URL + "python: a:b\n"),
        "config.yaml: models[0].backend: ",
        "exactly one of url, urls, python (got url and python)",
    ),
    (model("a", URL + "proto: v1\n"), "config.yaml: models[0].backend: ", "unknown key 'proto'"),
    (model("a", "url: ftp://h:1\n"), "config.yaml: models[0].backend.url: ", "must start with"),
    (model("a", "url: https://h:1\n"), "config.yaml: models[0].backend.url: ", "must start with"),
    (model("a", "url: 127.0.0.1:9000\n"), "config.yaml: models[0].backend.url: ", "must start"),
    (model("a", "url: http://h\n"), "config.yaml: models[0].backend.url: ", "a host and a port"),
    (model("a", "url: http://:80\n"), "config.yaml: models[0].backend.url: ", "a host and a port"),
    (model("a", "url: http://h:x\n"), "config.yaml: models[0].backend.url: ", "host and a port"),
    (model("a", "url: http://h:0\n"), "config.yaml: models[0].backend.url: ", "port must be"),
    (model("a", "url: http://h:70000\n"), "config.yaml: models[0].backend.url: ", "port must be"),
    (model("a", "url: http://h:1/v2\n"), "config.yaml: models[0].backend.url: ", "without a path"),
    (model("a", "url: http://h:1?x=1\n"), "config.yaml: models[0].backend.url: ", "without a path"),
    (model("a", "url: http://u:p@h:1\n"), "config.yaml: models[0].backend.url: ", "credentials"),
    (model("a", "url: [http://h:1]\n"), "config.yaml: models[0].backend.url: ", "must be a string"),
    (model("a", "urls: []\n"), "config.yaml: models[0].backend.urls: ", "at least one URL"),
    (model("a", "urls: http://h:1\n"), "config.yaml: models[0].backend.urls: ", "must be a list"),
    (
        model("a", "urls: [http://h:1, grpc://h:2]\n"),
        "config.yaml: models[0].backend.urls[1]: ",
        "all replicas must use http://",
    ),
    (
        model("a", "urls: [http://h:1, http://h:1/]\n"),
        "config.yaml: models[0].backend.urls[1]: ",
        "duplicate URL 'http://h:1'",
    ),
    (
        model("a", "urls: [http://h:1, h:2]\n"),
        "config.yaml: models[0].backend.urls[1]: ",
        "must start with",
    ),
    (
        model("a", URL + "protocol: v3\n"),
        "config.yaml: models[0].backend.protocol: ",
        "v1, v2, both",
    ),
    (
        model("a", "url: grpc://h:1\nprotocol: v1\n"),
        "config.yaml: models[0].backend.protocol: ",
        "v1 is not available over grpc://",
    ),
    (
        model("a", "url: grpc://h:1\nprotocol: both\n"),
        "config.yaml: models[0].backend.protocol: ",
        "both is not available over grpc:// (gRPC is V2)",
    ),
    (
        model("a", "url: grpc://h:1\nbinary: true\n"),
        "config.yaml: models[0].backend.binary: ",
        "only applies to http:// backends with protocol v2",
    ),
    (
        model("a", URL + "protocol: v1\nbinary: true\n"),
        "config.yaml: models[0].backend.binary: ",
        "only applies to http:// backends with protocol v2",
    ),
    (model("a", URL + "binary: yes\n"), "config.yaml: models[0].backend.binary: ", "true or false"),
    (model("a", URL + "model: ''\n"), "config.yaml: models[0].backend.model: ", "non-empty"),
    (
        model("a", "python: mod\n"),
        "config.yaml: models[0].backend.python: ",
        "must be 'module:attr'",
    ),
    (model("a", "python: 'a-b:c'\n"), "config.yaml: models[0].backend.python: ", "'module:attr'"),
    (model("a", "python: 'a:'\n"), "config.yaml: models[0].backend.python: ", "'module:attr'"),
    (
        model("a", "python: a:b\nprotocol: v2\n"),
        "config.yaml: models[0].backend.protocol: ",
        "only applies to url/urls backends",
    ),
    (
        model("a", "python: a:b\nmodel: x\n"),
        "config.yaml: models[0].backend.model: ",
        "only applies to url/urls backends",
    ),
    (model("a", URL) + "    metadata: []\n", "config.yaml: models[0].metadata: ", "mapping"),
    (
        model("a", URL) + "    metadata: {platfrom: x}\n",
        "config.yaml: models[0].metadata: ",
        "unknown key 'platfrom'",
    ),
    (
        model("a", URL) + "    metadata: {platform: 1}\n",
        "config.yaml: models[0].metadata.platform: ",
        "must be a string",
    ),
    (
        model("a", URL) + "    metadata: {inputs: [{name: x, datatype: FLOAT32, shape: [1]}]}\n",
        "config.yaml: models[0].metadata.inputs[0].datatype: ",
        "must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, "
        "FP32, FP64, BF16, BYTES, got 'FLOAT32'",
    ),
    (
        model("a", URL) + "    metadata: {inputs: [{name: x, datatype: fp32, shape: [1]}]}\n",
        "config.yaml: models[0].metadata.inputs[0].datatype: ",
        "got 'fp32'",
    ),
    (
        model("a", URL) + "    metadata: {outputs: [{name: y, datatype: FP32, shape: [1, -2]}]}\n",
        "config.yaml: models[0].metadata.outputs[0].shape[1]: ",
        "must be >= -1, got -2",
    ),
    (
        model("a", URL) + "    metadata: {outputs: [{name: y, datatype: FP32, shape: [1.5]}]}\n",
        "config.yaml: models[0].metadata.outputs[0].shape[0]: ",
        "must be an integer",
    ),
    (
        model("a", URL) + "    metadata: {outputs: [{name: y, datatype: FP32, shape: 3}]}\n",
        "config.yaml: models[0].metadata.outputs[0].shape: ",
        "must be a list",
    ),
    (
        model("a", URL) + "    metadata: {outputs: [{name: y, datatype: FP32}]}\n",
        "config.yaml: models[0].metadata.outputs[0].shape: ",
        "is required",
    ),
    (
        model("a", URL)
        + "    metadata: {inputs: [{name: y, datatype: FP32, shape: [], dims: []}]}\n",
        "config.yaml: models[0].metadata.inputs[0]: ",
        "unknown key 'dims'",
    ),
    (
        model("a", URL) + "    metadata:\n      inputs:\n"
        "        - {name: x, datatype: FP32, shape: [1]}\n"
        "        - {name: x, datatype: FP32, shape: [1]}\n",
        "config.yaml: models[0].metadata.inputs[1].name: ",
        "duplicate tensor name 'x'",
    ),
]


@pytest.mark.parametrize(("text", "prefix", "fragment"), FILE_ERRORS)
def test_file_validation_error(text: str, prefix: str, fragment: str) -> None:
    message = load_error(text)
    assert message.startswith(prefix), message
    assert fragment in message, message


def test_error_attributes_and_type() -> None:
    with pytest.raises(ValueError, match=r"^config\.yaml: models\[0\]\.retries: ") as info:
        load(model("a", URL) + "    retries: 99\n")
    assert isinstance(info.value, ConfigError)
    assert info.value.source == "config.yaml"
    assert info.value.field == "models[0].retries"


def test_unknown_key_lists_allowed_keys() -> None:
    message = load_error(model("a", URL) + "    batcher: {max_batch_size: 8}\n")
    assert message == (
        "config.yaml: models[0]: unknown key 'batcher' (did you mean 'batching'?); allowed keys: "
        "backend, batching, eject_after_failures, eject_s, limits, max_concurrency, metadata, "
        "name, retries, retry_backoff_s, timeout_s"
    )


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "gw.yaml").write_text("http_port: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^conf/gw\.yaml: http_port: must be an integer"):
        load_config(os.path.join("conf", "gw.yaml"), env={})


# --------------------------------------------------------------------------- file and YAML errors


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"^nope\.yaml: cannot read config file: No such file"):
        load_config("nope.yaml", env={})


def test_missing_file_from_env() -> None:
    with pytest.raises(ConfigError, match=r"^gone\.yaml: cannot read config file"):
        load_config(env={"TENSORGATE_CONFIG": "gone.yaml"})


def test_directory_is_not_a_file() -> None:
    Path("d").mkdir()
    with pytest.raises(ConfigError, match=r"^d: cannot read config file"):
        load_config("d", env={})


def test_not_utf8() -> None:
    Path("bin.yaml").write_bytes(b"host: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^bin\.yaml: cannot read config file"):
        load_config("bin.yaml", env={})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("http_port: 1\nmodels: [\n", "line 3, column 1"),
        ("host: a\n  bad: indent\n", "line 2, column 6"),
        ("a: 'unterminated\n", "line 2"),
        ("models:\n\t- name: x\n", "line 2, column 1"),
    ],
)
def test_yaml_syntax_error_names_file_and_line(text: str, where: str) -> None:
    message = load_error(text)
    assert message.startswith(f"config.yaml: {where}"), message
    assert "invalid YAML" in message


def test_duplicate_yaml_key_is_an_error() -> None:
    message = load_error("http_port: 1\nhttp_port: 2\n")
    assert message.startswith("config.yaml: line 2, column 1: invalid YAML"), message
    assert "duplicate key 'http_port'" in message


def test_yaml_cannot_build_python_objects() -> None:
    message = load_error("host: !!python/object/apply:os.getcwd []\n")
    assert message.startswith("config.yaml: line 1"), message


# --------------------------------------------------------------------------- env and flag errors

ENV_ERRORS: list[tuple[dict[str, str], str]] = [
    ({"TENSORGATE_HTTP_PORT": "eighty"}, "TENSORGATE_HTTP_PORT: must be an integer, got 'eighty'"),
    ({"TENSORGATE_HTTP_PORT": "8080.0"}, "TENSORGATE_HTTP_PORT: must be an integer"),
    ({"TENSORGATE_HTTP_PORT": "70000"}, "TENSORGATE_HTTP_PORT: must be between 0 and 65535"),
    ({"TENSORGATE_GRPC_PORT": "8080"}, "TENSORGATE_GRPC_PORT: must differ from http_port (8080)"),
    ({"TENSORGATE_GRPC_MAX_MESSAGE_BYTES": "10"}, "TENSORGATE_GRPC_MAX_MESSAGE_BYTES: must be"),
    ({"TENSORGATE_DRAIN_TIMEOUT_S": "soon"}, "TENSORGATE_DRAIN_TIMEOUT_S: must be a number"),
    (
        {"TENSORGATE_DRAIN_TIMEOUT_S": "0"},
        "TENSORGATE_DRAIN_TIMEOUT_S: must be between 0.001 (1 ms) and",
    ),
    ({"TENSORGATE_DRAIN_TIMEOUT_S": "nan"}, "TENSORGATE_DRAIN_TIMEOUT_S: must be between"),
    ({"TENSORGATE_ACCESS_LOG": "xml"}, "TENSORGATE_ACCESS_LOG: must be one of text, json, off"),
    ({"TENSORGATE_FORWARD_HEADERS": "x-a,b c"}, "TENSORGATE_FORWARD_HEADERS: 'b c' is not a valid"),
    ({"TENSORGATE_FORWARD_HEADERS": "connection"}, "TENSORGATE_FORWARD_HEADERS: 'connection'"),
    ({"TENSORGATE_HEALTH_CHECK_INTERVAL_S": "-1"}, "TENSORGATE_HEALTH_CHECK_INTERVAL_S: must be"),
    ({"TENSORGATE_PYTHON_WORKERS": "0"}, "TENSORGATE_PYTHON_WORKERS: must be between 1 and 1024"),
    ({"TENSORGATE_MAX_BODY_BYTES": "0"}, "TENSORGATE_MAX_BODY_BYTES: must be >= 1, got 0"),
    ({"TENSORGATE_MAX_BODY_BYTES": "1MB"}, "TENSORGATE_MAX_BODY_BYTES: must be an integer"),
    ({"TENSORGATE_TIMEOUT_S": "0"}, "TENSORGATE_TIMEOUT_S: must be between 0.001 (1 ms) and"),
    ({"TENSORGATE_BACKEND": "localhost:8085"}, "TENSORGATE_BACKEND: must start with http://"),
    (
        {"TENSORGATE_BACKEND": "http://h:1/v2/models"},
        "TENSORGATE_BACKEND: must be http://host:port",
    ),
    ({"TENSORGATE_BACKEND_PROTOCOL": "v1"}, "TENSORGATE_BACKEND_PROTOCOL: requires a backend URL"),
    (
        {"TENSORGATE_BACKEND": "http://h:1", "TENSORGATE_BACKEND_PROTOCOL": "v3"},
        "TENSORGATE_BACKEND_PROTOCOL: must be one of v1, v2, both, got 'v3'",
    ),
    (
        {"TENSORGATE_BACKEND": "grpc://h:1", "TENSORGATE_BACKEND_PROTOCOL": "v1"},
        "TENSORGATE_BACKEND_PROTOCOL: v1 is not available over grpc://",
    ),
]


@pytest.mark.parametrize(("env", "prefix"), ENV_ERRORS)
def test_env_validation_error(env: dict[str, str], prefix: str) -> None:
    message = load_error(None, env)
    assert message.startswith(prefix), message


def test_env_service_link_hint() -> None:
    message = load_error(None, {"TENSORGATE_HTTP_PORT": "tcp://10.0.0.7:8080"})
    assert message.startswith("TENSORGATE_HTTP_PORT: must be an integer"), message
    assert "Kubernetes service link" in message


def test_env_config_file_errors_name_the_file() -> None:
    write("http_port: 'x'\n", "env.yaml")
    with pytest.raises(ConfigError, match=r"^env\.yaml: http_port: "):
        load_config(env={"TENSORGATE_CONFIG": "env.yaml"})


FLAG_ERRORS: list[tuple[dict[str, object], str]] = [
    ({"http_port": "x"}, "--http-port: must be an integer, got 'x'"),
    ({"http_port": True}, "--http-port: must be an integer, got a boolean"),
    ({"grpc_port": 99999}, "--grpc-port: must be between 0 and 65535"),
    ({"grpc_port": 8080}, "--grpc-port: must differ from http_port (8080)"),
    ({"http_port": 8081}, "--http-port: must differ from grpc_port (8081)"),
    ({"host": ""}, "--host: must be a host name"),
    ({"access_log": "loud"}, "--access-log: must be one of text, json, off"),
    ({"drain_timeout_s": 0}, "--drain-timeout-s: must be between 0.001 (1 ms) and"),
    ({"python_workers": "two"}, "--python-workers: must be an integer"),
    ({"backend": "http://h"}, "--backend: must be http://host:port"),
    ({"protocol": "v1"}, "--protocol: requires a backend URL"),
    ({"backend": "http://h:1", "protocol": "v9"}, "--protocol: must be one of v1, v2"),
    ({"config": "x.yaml"}, "unknown flag 'config'; allowed: host, http_port"),
]


@pytest.mark.parametrize(("flags", "prefix"), FLAG_ERRORS)
def test_flag_validation_error(flags: dict[str, object], prefix: str) -> None:
    message = load_error(None, {}, flags)
    assert message.startswith(prefix), message


def test_flags_do_not_get_the_service_link_hint() -> None:
    assert "Kubernetes" not in load_error(None, {}, {"http_port": "tcp://h:1"})


def test_demo_models_take_the_global_limits_and_timeout() -> None:
    """Demo models (no ``models`` key anywhere) are routes like any other: the global limits
    and default timeout apply to them; an explicit empty list serves nothing."""
    env = {"TENSORGATE_MAX_BODY_BYTES": "1000", "TENSORGATE_TIMEOUT_S": "2.5"}
    cfg = load_config(None, env=env, demo=True)
    assert [m.name for m in cfg.models] == ["sum", "echo", "classifier"]
    assert {(m.limits.max_body_bytes, m.timeout_s) for m in cfg.models} == {(1000, 2.5)}
    assert load_config(None, env=env).models == ()
    assert load("models: []\n", demo=True).models == ()
    sidecar = load_config(None, env={"TENSORGATE_BACKEND": "http://127.0.0.1:9000"}, demo=True)
    assert [m.name for m in sidecar.models] == ["*"]
