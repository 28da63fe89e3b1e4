"""The plan-read benchmark keeps working (a tiny run), and a plan of a converged org reads nothing
but the pages: one ``/user/list`` per page of 100 user rows plus one ``/v2/team/list`` (3 teams fit
in one page), exactly what the raw baseline read sends."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

from ..conftest import REPO

ROW = re.compile(r"^(?P<figure>.+?)\s{2,}(?P<seconds>\d+\.\d\d)\s+(?P<requests>\d+)\s{2}(?P<note>.*)$")


def test_plan_of_a_converged_org_reads_only_the_pages(sql) -> None:
    # 20 users: one page; 120: two (the org adds default_user_id and the apply-lock row).
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_plan_read.py"), "--users", "20", "120", "--repeat", "1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["figure", "seconds", "requests", "note"]
    rows = {}
    for line in lines[1:]:
        match = ROW.match(line)
        assert match, line
        rows[match["figure"]] = match
    assert int(sql('SELECT count(*) FROM "LiteLLM_UserTable"')) == 122  # the last org loaded

    for users in (20, 120):
        pages = math.ceil((users + 2) / 100)
        baseline = rows[f"baseline: raw paged read, {users} users"]
        assert int(baseline["requests"]) == pages + 1
        assert baseline["note"].startswith(f"{users + 2} user rows")
        for figure in (f"plan (CLI subprocess), {users} users", f"plan in-process (same code path), {users} users"):
            row = rows[figure]
            assert int(row["requests"]) == pages + 1, row.string  # the pages and one team listing, nothing else
            assert re.match(r"\d+\.\d\dx baseline; ", row["note"]), row.string
            assert "MISMATCH" not in row["note"]
        assert int(rows[f"validate (CLI subprocess, offline), {users} users"]["requests"]) == 0
