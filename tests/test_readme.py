"""The README's Python examples run as written, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from servers import start_gateway

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    assert python_blocks(), "README.md lost its Python example"


def test_readme_examples_run_and_print_what_they_claim(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The client examples talk to `tensorgate serve` with its demo models, as in the README.
    gateway = start_gateway(None, log_dir=tmp_path)
    monkeypatch.setenv("TENSORGATE_HTTP", gateway.http_url.removeprefix("http://"))
    monkeypatch.setenv("TENSORGATE_GRPC", gateway.grpc_target)
    try:
        run_blocks()
    finally:
        gateway.stop()


def run_blocks() -> None:
    for block in python_blocks():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), {})
        claimed = [
            m.group(1).strip()
            for line in block.splitlines()
            if "print(" in line and (m := re.search(r"#\s*(.+)$", line))
        ]
        printed = out.getvalue().splitlines()
        assert printed == claimed
