"""The ``tensorgate`` console script, run as a separate process from the venv's bin directory."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import tensorgate

SCRIPT = Path(sys.executable).parent / "tensorgate"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    # The installed distribution's version, which is also the extension's.
    assert result.stdout.strip() == f"tensorgate {version('tensorgate')}"
    assert version("tensorgate") == tensorgate.__version__


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tensorgate")


def test_unknown_option_fails() -> None:
    result = run("--no-such-option")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr
