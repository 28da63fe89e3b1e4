"""Shared test helpers: running the CLI as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real request/response pairs captured from LiteLLM 1.80.5 (copied from the harness's litellm-api/samples,
#: so the unit tests need nothing outside the repository).
SAMPLES = REPO / "tests" / "samples"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m reconciler ARGS`` with the given environment; never raises on exit codes."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def cli(tmp_path: Path):
    """Run the CLI in a scratch directory."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=tmp_path, env=env, input=input)

    return run
