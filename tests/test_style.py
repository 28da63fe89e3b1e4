"""Style: ``ruff check .`` and ``ruff format --check .`` pass (configuration in pyproject.toml).

ruff comes with the ``test`` extra (``pip install -e '.[test]'``). Without it the check is skipped,
except under CI (CI=true) where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    """The command that runs ruff: this interpreter's ruff module, else the binary beside it."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    beside = Path(sys.executable).with_name("ruff.exe" if os.name == "nt" else "ruff")
    if beside.is_file():
        return [str(beside)]
    reason = f"ruff is not installed for {sys.executable}: run `.venv/bin/pip install -e '.[test]'`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"ruff is required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(args: list[str]) -> None:
    result = subprocess.run(
        [*_ruff(), *args, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"ruff {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
