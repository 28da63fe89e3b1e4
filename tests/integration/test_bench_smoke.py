"""The benchmark keeps working (a tiny run): it prints both sides and the tool's second apply writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import REPO


def test_benchmark_runs_and_compares_with_the_baseline(empty_proxy) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_onboarding.py"), "--users", "6", "--teams", "2"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()[1:]}
    assert "6 users, 6 stray keys" in rows["baseline apply (old script)"]
    assert "6 users, 0 stray keys, 6 roster entries" in rows["reconciler apply"]
    assert rows["reconciler second apply"].endswith("0 writes")
