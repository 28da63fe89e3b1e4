#!/usr/bin/env python3
"""The planner and the loader at scale, offline: figures and their ratio to a baseline measured in
the same run.

* planner: ``make_plan`` of N users already converged, and of N users all new, in CPU seconds and
  peak traced memory; baseline: building the same snapshot from the proxy's JSON rows (the work any
  plan must do anyway).
* loader: ``load_desired`` of an N-user file; baseline: libyaml parsing the same file into plain data.

    python bench/bench_planner.py --users 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from table import print_table  # noqa: E402  (bench/ is on sys.path when run as a script)

from reconciler.desired import load_desired, parse_desired  # noqa: E402
from reconciler.live import OWNER_KEY, LiveState, team_from_api, user_from_api  # noqa: E402
from reconciler.manager import now  # noqa: E402
from reconciler.plan import make_plan, new_user_id  # noqa: E402

TEAMS = ("dev", "research", "ops")


def users_yaml(n: int) -> str:
    teams = "".join(f"  - alias: {t}\n    max_budget: 10\n" for t in TEAMS)
    users = "".join(f"  - email: user{i:06d}@company.com\n    teams: [{TEAMS[i % 3]}]\n" for i in range(n))
    return f"version: 1\nremovals:\n  memberships: true\nteams:\n{teams}users:\n{users}"


def rows(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What /user/list and /v2/team/list return for a proxy where the file is already applied."""
    owned = {
        OWNER_KEY: {
            "managed": True,
            "invitation": {"sealed": "v2.x", "expires_at": "2099-01-01T00:00:00Z", "delivery": "reported"},
        }
    }
    users = [
        {
            "user_id": new_user_id(f"user{i:06d}@company.com"),
            "user_email": f"user{i:06d}@company.com",
            "user_role": "internal_user",
            "teams": [f"t-{TEAMS[i % 3]}"],
            "metadata": owned,
            "key_count": 0,
        }
        for i in range(n)
    ]
    teams = [
        {
            "team_id": f"t-{t}",
            "team_alias": t,
            "max_budget": 10,
            "models": [],
            "metadata": {OWNER_KEY: {"managed": True}},
            "members_with_roles": [
                {"user_id": u["user_id"], "role": "user"} for k, u in enumerate(users) if k % 3 == j
            ],
        }
        for j, t in enumerate(TEAMS)
    ]
    return users, teams


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds, peak traced MB, result): timed on its own, then run again under tracemalloc
    (which slows Python several times over) for the memory figure."""
    started = time.process_time()
    result = fn()
    cpu = time.process_time() - started
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return cpu, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    n = parser.parse_args().users
    text = users_yaml(n)
    desired = parse_desired(text, "bench.yaml")
    user_rows, team_rows = rows(n)
    moment = now()
    results: list[tuple[str, float, float, str]] = []

    def snapshot() -> LiveState:
        return LiveState(users=tuple(map(user_from_api, user_rows)), teams=tuple(map(team_from_api, team_rows)))

    cpu, peak, live = measure(snapshot)
    baseline = cpu
    results.append((f"baseline: snapshot of {n} users from JSON rows", cpu, peak, ""))
    # A snapshot keeps what planning derives from it (fingerprint, indexes, keys, rosters), so
    # each of the two runs plans from a snapshot of its own, built beforehand.
    fresh = iter((live, snapshot()))
    cpu, peak, plan = measure(lambda: make_plan(desired, next(fresh), moment))
    results.append(
        (f"plan, {n} users converged", cpu, peak, f"{len(plan.actions)} actions, {cpu / baseline:.2f}x baseline")
    )
    cpu, peak, plan = measure(lambda: make_plan(desired, LiveState(), moment))
    results.append(
        (f"plan, {n} users all new", cpu, peak, f"{len(plan.actions)} actions, {cpu / baseline:.2f}x baseline")
    )

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users.yaml"
        path.write_text(text, encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        cpu, peak, _ = measure(lambda: yaml.load(path.read_text(encoding="utf-8"), Loader=loader))
        parsed = cpu
        results.append((f"baseline: libyaml parse of the {len(text) / 2**20:.1f} MB file", cpu, peak, ""))
        cpu, peak, _ = measure(lambda: load_desired(path))
        results.append((f"validate {n} users (load_desired)", cpu, peak, f"{cpu / parsed:.2f}x baseline"))

    print_table(("figure", "CPU s", "peak MB", "note"), ("7.2f", "8.1f", ""), results)


if __name__ == "__main__":
    main()
