"""bench/bench_planner.py stays runnable (at a tiny size; the figures come from a real run)."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO


def test_the_planner_benchmark_runs_and_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_planner.py"), "--users", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for figure in (
        "plan, 30 users converged",
        "plan, 30 users all new",
        "validate 30 users (load_desired)",
        "x baseline",
    ):
        assert figure in result.stdout
    # The converged org must plan nothing: a benchmark of a plan that does work measures something else.
    assert re.search(r"plan, 30 users converged .* 0 actions,", result.stdout), result.stdout
    assert re.search(r"plan, 30 users all new .* 94 actions,", result.stdout), result.stdout
