"""The ``tensorgate`` console script, run as a separate process from the venv's bin directory."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import tensorgate

SCRIPT = Path(sys.executable).parent / "tensorgate"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
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


def test_in_process_models_import_from_the_working_directory(tmp_path: Path) -> None:
    """``python: "module:attr"`` finds a module next to the config, as uvicorn would."""
    (tmp_path / "my_models.py").write_text(
        "def double(inputs):\n    return {'y': inputs['x'] * 2}\n"
    )
    (tmp_path / "c.yaml").write_text("models: [{name: d, backend: {python: 'my_models:double'}}]\n")
    result = run("check-config", "c.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "d: python my_models:double" in result.stdout


def test_demo_models_only_when_no_models_key_is_given(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("access_log: off\n")
    (tmp_path / "empty.yaml").write_text("models: []\n")
    none = run("check-config", "none.yaml", cwd=tmp_path)
    assert none.returncode == 0, none.stderr
    assert "ok, 3 models (none configured: the built-in demo models)" in none.stdout
    empty = run("check-config", "empty.yaml", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "ok, 0 models\n" in empty.stdout
