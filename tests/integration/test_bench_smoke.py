"""The onboarding benchmark keeps working (a tiny run): it prints every side, judged from the
proxy's database and access log, and the tool's second apply writes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from ..conftest import REPO

ROW = re.compile(r"^\s*(?P<run>\S.*?)\s+(?P<seconds>[\d.]+)\s+(?P<posts>\d+)\s+(?P<gets>\d+)\s+(?P<outcome>.*)$")


def test_benchmark_runs_and_compares_with_the_baseline(empty_proxy) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bench_onboarding.py"),
            "--users",
            "6",
            "--teams",
            "2",
            "--parallelism",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {m["run"]: m for m in map(ROW.match, result.stdout.splitlines()[1:]) if m}
    old = rows["old script (sequential), 6 users"]
    raw = rows["raw concurrent client, parallelism 2"]
    tool = rows["litellm-reconciler apply, parallelism 2"]
    again = rows["second apply"]
    assert (old["posts"], old["outcome"]) == ("12", "6 users, 6 stray keys, 6 roster entries, 6 with one link")
    assert (raw["posts"], raw["outcome"].split("; ")[1]) == (
        "14",
        "6 users, 0 stray keys, 6 roster entries, 6 with one link",
    )
    ratio, state = tool["outcome"].split("; ")
    assert ratio.endswith("x old script") and state == "6 users, 0 stray keys, 6 roster entries, 6 with one link"
    # 6 users (their grants ride along), 6 links, one member_add per team, the links' records (group commit:
    # one write per group, 1 to 6 of them), and the lock: three writes per move (take, release), one more
    # for the lock row's first creation on an empty proxy.
    records = int(tool["posts"]) - (6 + 6 + 2) - (3 + 3 + 1)
    assert 1 <= records <= 6, tool.string
    assert (again["posts"], again["outcome"]) == ("0", "converged; 0 writes")
