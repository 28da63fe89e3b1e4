#!/usr/bin/env python3
"""Benchmark: onboarding N new users in T existing teams, side by side in one run, on the real proxy.

* old script: what the hand-run onboarding script does, sequentially per user: ``POST /user/new``
  (team in the body, no ``auto_create_key``, so the proxy mints a key nobody keeps), then
  ``POST /invitation/new``. The baseline.
* raw concurrent client: the least any tool can do, race-free, at the same parallelism:
  ``/user/new`` without teams (concurrently), one ``/team/member_add`` list per team, then
  ``/invitation/new`` (concurrently). No report, no records, no checks.
* litellm-reconciler apply: the real CLI (``apply --yes``) in a subprocess: plan, lock,
  re-plan, the writes, the verifying plan; once per ``--parallelism`` given.
* second apply: must make no write.

Requests are counted from the proxy's own access log (``$LITELLM_HARNESS_HOME/run/proxy.log``),
so every client is counted the same way. The outcome column is read from the proxy's database:
users, stray keys, roster entries, users with exactly one link.

Usage: python bench/bench_onboarding.py [--users 300] [--teams 3] [--parallelism 4 ...]
Needs LITELLM_PROXY_URL and LITELLM_MASTER_KEY, and empties the proxy between runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from table import print_table  # noqa: E402  (bench/ is on sys.path when run as a script)

from reconciler.client import DEFAULT_PARALLELISM  # noqa: E402
from reconciler.live import OWNER_KEY  # noqa: E402
from reconciler.plan import new_team_id  # noqa: E402

HARNESS = Path(os.environ.get("LITELLM_HARNESS") or REPO.parent / "shared" / "litellm-proxy" / "start.sh")
PROXY_LOG = Path(os.environ.get("LITELLM_HARNESS_HOME", "/tmp/litellm-harness")) / "run" / "proxy.log"
DATABASE = (
    os.environ.get("DATABASE_URL")
    or f"postgresql://litellm:litellm@127.0.0.1:{os.environ.get('LITELLM_HARNESS_PGPORT', '54329')}/litellm"
)
REQUEST = re.compile(r'"(GET|POST) (/[^ ?"]*)')


def email(i: int) -> str:
    return f"user{i:05d}@bench.example"


def users_yaml(n_users: int, n_teams: int) -> str:
    lines = ["version: 1", "teams:"] + [f"  - alias: team-{t}" for t in range(n_teams)] + ["users:"]
    lines += [f"  - email: {email(i)}\n    teams: [team-{i % n_teams}]" for i in range(n_users)]
    return "\n".join(lines) + "\n"


class ProxyLog:
    """Requests the proxy logged since ``mark()`` (health checks aside): (GETs, POSTs)."""

    def mark(self) -> None:
        self._offset = PROXY_LOG.stat().st_size

    def count(self) -> tuple[int, int]:
        time.sleep(0.3)  # the access log is written after the answer
        with PROXY_LOG.open("rb") as log:
            log.seek(self._offset)
            found = [
                m.groups()
                for m in REQUEST.finditer(log.read().decode("utf-8", "replace"))
                if not m.group(2).startswith("/health")
            ]
        return sum(1 for method, _ in found if method == "GET"), sum(1 for method, _ in found if method == "POST")


def sql(query: str) -> str:
    psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), "psql")
    return subprocess.run(
        [str(psql), DATABASE, "-XAtqc", query], check=True, capture_output=True, text=True
    ).stdout.strip()


def outcome() -> str:
    """What the proxy's database holds, in the terms the issue judges."""
    users = sql("""select count(*) from "LiteLLM_UserTable" where user_email like '%@bench.example'""")
    keys = sql('select count(*) from "LiteLLM_VerificationToken"')
    roster = sql(
        """select count(*) from "LiteLLM_TeamTable", jsonb_array_elements(members_with_roles) m
           where team_alias like 'team-%' and m->>'user_id' <> 'default_user_id'"""
    )
    linked = sql(
        'select count(*) from (select user_id from "LiteLLM_InvitationLink" group by user_id having count(*) = 1) once'
    )
    return f"{users} users, {keys} stray keys, {roster} roster entries, {linked} with one link"


def prepare(http: httpx.Client, n_teams: int) -> list[str]:
    """An empty proxy with the inviter row and the teams (as a previous apply left them)."""
    subprocess.run(
        ["bash", str(HARNESS), "reset", "--keep-proxy"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    http.post("/user/update", json={"user_id": "default_user_id", "user_role": "proxy_admin"}).raise_for_status()
    team_ids = []
    for t in range(n_teams):
        body = {
            "team_id": new_team_id(f"team-{t}"),
            "team_alias": f"team-{t}",
            "metadata": {OWNER_KEY: {"managed": True}},
        }
        team_ids.append(http.post("/team/new", json=body).raise_for_status().json()["team_id"])
    return team_ids


def old_script(http: httpx.Client, n_users: int, team_ids: list[str]) -> None:
    for i in range(n_users):
        user = http.post(
            "/user/new",
            json={"user_email": email(i), "user_role": "internal_user", "teams": [team_ids[i % len(team_ids)]]},
        ).json()
        http.post("/invitation/new", json={"user_id": user["user_id"]})


def raw_concurrent(http: httpx.Client, n_users: int, team_ids: list[str], parallelism: int) -> None:
    def create(i: int) -> str:
        body = {"user_email": email(i), "user_role": "internal_user", "auto_create_key": False}
        return str(http.post("/user/new", json=body).raise_for_status().json()["user_id"])

    with ThreadPoolExecutor(parallelism) as pool:
        user_ids = list(pool.map(create, range(n_users)))
        for t, team_id in enumerate(team_ids):
            members = [{"user_id": u, "role": "user"} for i, u in enumerate(user_ids) if i % len(team_ids) == t]
            http.post("/team/member_add", json={"team_id": team_id, "member": members}).raise_for_status()
        list(pool.map(lambda u: http.post("/invitation/new", json={"user_id": u}).raise_for_status(), user_ids))


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=folder, capture_output=True, text=True, env=os.environ.copy()
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument(
        "--parallelism",
        type=int,
        nargs="+",
        default=[DEFAULT_PARALLELISM],
        help="one reconciler run per value (e.g. 1 2 4 8)",
    )
    args = parser.parse_args()
    url, key = os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"]
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    log = ProxyLog()
    rows: list[tuple[str, float, int, int, str]] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-onboarding-"))
    (folder / "users.yaml").write_text(users_yaml(args.users, args.teams), encoding="utf-8")

    def run(name: str, fn: Callable[[], object], baseline: float = 0.0) -> float:
        log.mark()
        seconds = timed(fn)
        gets, posts = log.count()
        ratio = f"{seconds / baseline:.2f}x old script; " if baseline else ""
        rows.append((name, seconds, posts, gets, ratio + outcome()))
        return seconds

    team_ids = prepare(http, args.teams)
    baseline = run(f"old script (sequential), {args.users} users", lambda: old_script(http, args.users, team_ids))
    for parallelism in args.parallelism:
        team_ids = prepare(http, args.teams)
        run(
            f"raw concurrent client, parallelism {parallelism}",
            lambda: raw_concurrent(http, args.users, team_ids, parallelism),
            baseline,
        )
        prepare(http, args.teams)

        def apply() -> None:
            result = cli(
                folder, "apply", "--yes", "--parallelism", str(parallelism), "--report", str(folder / "report.jsonl")
            )
            if result.returncode != 0:
                raise SystemExit(f"apply failed:\n{result.stdout[-2000:]}\n{result.stderr}")

        run(f"litellm-reconciler apply, parallelism {parallelism}", apply, baseline)
        converged = cli(folder, "plan", "--detailed-exitcode").returncode == 0
        run("  second apply", apply, baseline)
        rows[-1] = (*rows[-1][:4], f"{'converged' if converged else 'NOT converged'}; {rows[-1][2]} writes")

    print_table(("run", "seconds", "POSTs", "GETs", "outcome"), ("8.2f", "6d", "6d", ""), rows)


if __name__ == "__main__":
    main()
