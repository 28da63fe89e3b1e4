"""Benchmark: onboarding N users with litellm-reconciler vs the hand-run script it replaces.

Runs against a real, *empty-able* proxy (the harness in ../shared/litellm-proxy) and
prints one table: wall time, requests and outcomes for

* baseline apply: the old script, sequentially per user ``POST /user/new`` (teams in the
  body, no ``auto_create_key``) then ``POST /invitation/new``;
* reconciler apply: ``litellm-reconciler apply`` of the same users;
* baseline read: one ``GET /user/info`` per user (what a naive diff does);
* reconciler read: the paginated snapshot a plan takes;
* reconciler second apply: must make zero writes.

Usage: python bench/bench_onboarding.py [--users 300] [--teams 3]
Needs LITELLM_PROXY_URL and LITELLM_MASTER_KEY, and empties the proxy between runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from table import print_table  # noqa: E402  (bench/ is on sys.path when run as a script)

from reconciler.apply import Executor  # noqa: E402
from reconciler.client import LiteLLMClient  # noqa: E402
from reconciler.desired import parse_desired  # noqa: E402
from reconciler.live import read_live  # noqa: E402
from reconciler.manager import now  # noqa: E402
from reconciler.plan import make_plan  # noqa: E402
from reconciler.sealing import Sealer

HARNESS = Path(os.environ.get("LITELLM_HARNESS") or REPO.parent / "shared" / "litellm-proxy" / "start.sh")


def reset() -> None:
    subprocess.run(["bash", str(HARNESS), "reset", "--keep-proxy"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def users_yaml(n_users: int, n_teams: int) -> str:
    lines = ["version: 1", "teams:"] + [f"  - alias: team-{t}" for t in range(n_teams)] + ["users:"]
    lines += [f"  - email: user{i:05d}@bench.example\n    teams: [team-{i % n_teams}]" for i in range(n_users)]
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def baseline_apply(http: httpx.Client, n_users: int, n_teams: int) -> dict[str, object]:
    team_ids = [http.post("/team/new", json={"team_alias": f"team-{t}"}).json()["team_id"] for t in range(n_teams)]
    requests = n_teams
    for i in range(n_users):
        user = http.post("/user/new", json={"user_email": f"user{i:05d}@bench.example", "user_role": "internal_user", "teams": [team_ids[i % n_teams]]}).json()
        http.post("/invitation/new", json={"user_id": user["user_id"]})
        requests += 2
    return {"requests": requests}


def count_state(http: httpx.Client) -> tuple[int, int, int]:
    """(users with an email, stray keys, roster entries of the bench teams) as the proxy reports them."""
    users = [u for u in http.get("/user/list", params={"page_size": 100}).json()["users"]]
    total_pages = http.get("/user/list", params={"page_size": 100}).json()["total_pages"]
    for page in range(2, total_pages + 1):
        users += http.get("/user/list", params={"page_size": 100, "page": page}).json()["users"]
    teams = http.get("/v2/team/list", params={"page_size": 100}).json()["teams"]
    members = sum(1 for t in teams for m in t["members_with_roles"] if m["user_id"] != "default_user_id")
    return sum(1 for u in users if u.get("user_email")), sum(u.get("key_count", 0) for u in users), members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--teams", type=int, default=3)
    args = parser.parse_args()
    url, key = os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    desired = parse_desired(users_yaml(args.users, args.teams), "bench.yaml")
    rows: list[tuple[str, float, int, str]] = []

    reset()
    http.post("/user/update", json={"user_id": "default_user_id", "user_role": "proxy_admin"})  # the script needs the inviter row
    seconds, result = timed(lambda: baseline_apply(http, args.users, args.teams))
    users, keys, members = count_state(http)
    rows.append(("baseline apply (old script)", seconds, result["requests"], f"{users} users, {keys} stray keys, {members} roster entries"))  # type: ignore[index]

    ids = [u["user_id"] for u in http.get("/user/list", params={"page_size": 100}).json()["users"]]
    seconds, _ = timed(lambda: [http.get("/user/info", params={"user_id": i}) for i in ids])
    rows.append((f"baseline read (/user/info x{len(ids)}, first page only)", seconds, len(ids), ""))

    reset()
    with LiteLLMClient(url, key) as client:
        def reconcile() -> object:
            live = read_live(client)
            plan = make_plan(desired, live, now())
            return Executor(client, url, metadata={u.user_id: u.metadata for u in live.users}, sealer=Sealer(key)).run(plan)

        seconds, report = timed(reconcile)
        users, keys, members = count_state(http)
        rows.append(("reconciler apply", seconds, client.requests_made, f"{users} users, {keys} stray keys, {members} roster entries; {report.summary_line()}"))  # type: ignore[attr-defined]

        before = client.requests_made
        seconds, live = timed(lambda: read_live(client))
        rows.append(("reconciler read (paginated snapshot)", seconds, client.requests_made - before, f"{len(live.users)} users, {len(live.teams)} teams"))  # type: ignore[attr-defined]

        before, writes = client.requests_made, client.writes_made
        seconds, report = timed(reconcile)
        rows.append(("reconciler second apply", seconds, client.requests_made - before, f"{client.writes_made - writes} writes"))

    print_table(("run", "seconds", "requests", "outcome"), ("8.2f", "8d", ""), rows)


if __name__ == "__main__":
    main()
