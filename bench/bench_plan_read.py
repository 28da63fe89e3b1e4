"""Benchmark: ``litellm-reconciler plan`` of a converged org vs the raw paged read it cannot avoid.

For each N, an org "already on the proxy" is loaded straight into the proxy's PostgreSQL (one
``psql`` COPY, seconds instead of thousands of API calls): N users in 3 teams, every user managed by
the tool with an accepted invitation, every team managed and listing its users, plus the two rows a
real org has (``default_user_id``, which LiteLLM adds as admin of each team the master key creates,
and the tool's apply-lock row). The plan of the matching users.yaml has nothing to do; the bench
checks that first. Then, same proxy, same run, medians of ``--repeat`` runs in rotating order (none always first) of:

* baseline: plain httpx, sequential ``GET /user/list?page=P&page_size=100&sort_by=user_id&sort_order=asc``
  for every page, then ``GET /v2/team/list?page=1&page_size=100``: the minimum any complete read needs;
* plan (CLI subprocess): ``python -m reconciler plan FILE``, interpreter start and imports included;
  its requests counted in the proxy's access log (the harness's ``run/proxy.log``) when that log
  belongs to the proxy under test, otherwise as the in-process run below counts them;
* plan in-process: the CLI's own steps (``load_desired``, ``plan_against``, ``render``) in this
  process, each request recorded at the transport;
* validate (CLI subprocess): offline, no request: the floor of interpreter start, imports and loading
  the file, to read the CLI's ratio against.

Usage: python bench/bench_plan_read.py [--users 1000 5000] [--repeat 3] [--show-requests]
Needs LITELLM_PROXY_URL and LITELLM_MASTER_KEY (the proxy is emptied), the harness
(LITELLM_HARNESS, default ../shared/litellm-proxy/start.sh) and the proxy's database: DATABASE_URL,
else the harness's on LITELLM_HARNESS_PGPORT (default 54329).
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from table import print_table  # bench/ is on sys.path when run as a script

from reconciler.client import LiteLLMClient
from reconciler.desired import load_desired
from reconciler.live import OWNER_KEY, PROXY_ADMIN_ID
from reconciler.lock import LOCK_USER_ID
from reconciler.manager import plan_against
from reconciler.plan import new_team_id, new_user_id
from reconciler.render import render

HARNESS = Path(os.environ.get("LITELLM_HARNESS") or REPO.parent / "shared" / "litellm-proxy" / "start.sh")
#: The proxy's database: DATABASE_URL (what the LiteLLM image reads too), else the harness's.
DATABASE = (
    os.environ.get("DATABASE_URL")
    or f"postgresql://litellm:litellm@127.0.0.1:{os.environ.get('LITELLM_HARNESS_PGPORT', '54329')}/litellm"
)
TEAMS = ("team-0", "team-1", "team-2")
PAGE_SIZE = 100
_REQUEST_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) /')
T = TypeVar("T")


def email(i: int) -> str:
    return f"user{i:05d}@bench.example"


def users_yaml(n: int) -> str:
    lines = ["version: 1", "teams:"] + [f"  - alias: {t}" for t in TEAMS] + ["users:"]
    lines += [f"  - email: {email(i)}\n    teams: [{TEAMS[i % len(TEAMS)]}]" for i in range(n)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the org, straight into PostgreSQL


def psql() -> str:
    found = shutil.which("psql") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None)
    if not found:
        sys.exit("psql not found (PATH or /usr/lib/postgresql/*/bin)")
    return found


def run_sql(script: str) -> str:
    return subprocess.run(
        [psql(), DATABASE, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=script,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _copy(table: str, columns: tuple[str, ...], rows: Sequence[Sequence[str]]) -> str:
    """A ``COPY ... FROM STDIN`` block with its CSV data inline (psql reads it from the script)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    cols = ", ".join(columns)
    return f'COPY "{table}" ({cols}) FROM STDIN WITH (FORMAT csv);\n{out.getvalue()}\\.\n'


def _array(values: list[str]) -> str:
    return "{" + ",".join(values) + "}"


def load_org(n: int) -> int:
    """Empty the proxy and load the converged org; returns the rows ``/user/list`` will count.

    The rows are what the API itself writes for the same org (checked against an apply of a small
    org with 1.80.5): LiteLLM_TeamMembership stays empty (LiteLLM adds rows there only for members
    with a per-team budget), ``members``/``admins`` stay empty, roster entries carry ``user_email: null``.
    """
    subprocess.run(
        ["bash", str(HARNESS), "reset", "--keep-proxy"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    team_ids = [new_team_id(alias) for alias in TEAMS]
    members: list[list[dict[str, object]]] = [
        [{"role": "admin", "user_id": PROXY_ADMIN_ID, "user_email": None}] for _ in TEAMS
    ]
    accepted = json.dumps({OWNER_KEY: {"managed": True, "invitation": {"accepted_at": "2026-01-01T00:00:00+00:00"}}})
    users: list[tuple[str, ...]] = [
        (PROXY_ADMIN_ID, "", "proxy_admin", _array(team_ids), "{}", "{}"),
        (LOCK_USER_ID, "", "internal_user_viewer", "{}", json.dumps({OWNER_KEY: {"lock": None, "failures": {}}}), "{}"),
    ]
    for i in range(n):
        user_id, t = new_user_id(email(i)), i % len(TEAMS)
        users.append((user_id, email(i), "internal_user", _array([team_ids[t]]), accepted, "{}"))
        members[t].append({"role": "user", "user_id": user_id, "user_email": None})
    teams = [
        (team_id, alias, "{}", "{}", json.dumps(roster), json.dumps({OWNER_KEY: {"managed": True}}), "{}", "{}")
        for team_id, alias, roster in zip(team_ids, TEAMS, members)
    ]
    script = "BEGIN;\n"
    script += _copy(
        "LiteLLM_TeamTable",
        (
            "team_id",
            "team_alias",
            "admins",
            "members",
            "members_with_roles",
            "metadata",
            "models",
            "team_member_permissions",
        ),
        teams,
    )
    # An empty CSV field is NULL: user_email of the two rows without one.
    script += _copy("LiteLLM_UserTable", ("user_id", "user_email", "user_role", "teams", "metadata", "models"), users)
    script += "COMMIT;\n"
    script += 'SELECT count(*) FROM "LiteLLM_UserTable";\n'
    return int(run_sql(script).strip())


# ---------------------------------------------------------------- the measured runs


def baseline_read(url: str, key: str) -> int:
    """The raw sequential paged read; returns the requests made."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        page, pages, requests = 1, 1, 0
        while page <= pages:
            response = http.get(
                "/user/list", params={"page": page, "page_size": PAGE_SIZE, "sort_by": "user_id", "sort_order": "asc"}
            )
            response.raise_for_status()
            pages = int(response.json()["total_pages"])
            page, requests = page + 1, requests + 1
        http.get("/v2/team/list", params={"page": 1, "page_size": PAGE_SIZE}).raise_for_status()
        return requests + 1


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, ``python -m reconciler ...``, of this checkout's code (PYTHONPATH
    first: the venv's console script would import whatever checkout is installed in editable mode)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )


class AccessLog:
    """The harness proxy's access log, when it is the log of the proxy under test. Uvicorn writes a
    request's line (flushed: the proxy runs unbuffered) before the answer's headers, so every request
    a call made is in the log when the call returns; no wait is needed."""

    def __init__(self, url: str):
        run = Path(os.environ.get("LITELLM_HARNESS_HOME") or "/tmp/litellm-harness") / "run"
        port_file, self.path = run / "proxy.port", run / "proxy.log"
        port = str(httpx.URL(url).port or "")
        self.usable = port_file.exists() and port_file.read_text().strip() == port and self.path.exists()

    def mark(self) -> int | None:
        return self.path.stat().st_size if self.usable else None

    def requests_since(self, mark: int | None) -> int | None:
        """Request lines written since ``mark``; None without a usable log (or after a restart)."""
        if mark is None or self.path.stat().st_size < mark:
            return None
        with self.path.open("rb") as log:
            log.seek(mark)
            return sum(1 for line in log.read().decode(errors="replace").splitlines() if _REQUEST_LINE.search(line))


class Recorder(httpx.BaseTransport):
    """Every request the client sends, as ``METHOD path?query``."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.raw_path.decode()}")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def plan_in_process(url: str, key: str, path: str) -> tuple[int, list[str], str]:
    """What ``plan FILE`` does after its imports; (requests counted by the client, requests seen
    at the transport, rendered plan, "" when it has no changes)."""
    recorder = Recorder()
    with LiteLLMClient(url, key, transport=recorder) as client:
        the_plan, _ = plan_against(load_desired(path), client)
        text = render(the_plan, "text")
        return client.requests_made, recorder.sent, text if the_plan.has_changes else ""


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def converged_or_exit(result: subprocess.CompletedProcess[str], n: int) -> None:
    if result.returncode != 0 or not result.stdout.startswith("No changes"):
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit(
            f"the plan of the loaded {n}-user org is not empty (exit {result.returncode}); "
            "the benchmark needs a converged org"
        )


def bench(
    n: int, url: str, key: str, repeat: int, workdir: Path, show_requests: bool
) -> list[tuple[str, float, int, str]]:
    path = workdir / f"users-{n}.yaml"
    path.write_text(users_yaml(n), encoding="utf-8")
    rows = load_org(n)
    converged_or_exit(cli("plan", str(path), "--detailed-exitcode"), n)  # also warms the proxy and the OS caches
    log = AccessLog(url)

    times: dict[str, list[float]] = {"baseline": [], "cli": [], "inproc": [], "validate": []}
    counts: dict[str, set[int]] = {"baseline": set(), "cli": set(), "inproc": set()}
    sent: list[str] = []

    def baseline() -> None:
        seconds, requests = timed(lambda: baseline_read(url, key))
        times["baseline"].append(seconds)
        counts["baseline"].add(requests)

    def plan_cli() -> None:
        mark = log.mark()
        seconds, run = timed(lambda: cli("plan", str(path)))
        seen = log.requests_since(mark)
        converged_or_exit(run, n)
        times["cli"].append(seconds)
        if seen is not None:
            counts["cli"].add(seen)

    def plan_inproc() -> None:
        seconds, (made, sent_now, text) = timed(lambda: plan_in_process(url, key, str(path)))
        if text:
            sys.exit(f"the in-process plan of the {n}-user org is not empty:\n{text}")
        if made != len(sent_now):
            sys.exit(f"the client counted {made} requests but {len(sent_now)} went out")
        times["inproc"].append(seconds)
        counts["inproc"].add(made)
        sent[:] = sent_now

    steps = [baseline, plan_cli, plan_inproc]
    for i in range(repeat):
        for step in steps[i % 3 :] + steps[: i % 3]:  # rotated: no figure always runs first
            step()
        seconds, check = timed(lambda: cli("validate", str(path)))
        if check.returncode != 0:
            sys.exit(check.stderr)
        times["validate"].append(seconds)

    if show_requests:
        print(f"# plan of {n} users ({rows} rows in LiteLLM_UserTable): {len(sent)} requests", file=sys.stderr)
        for line in sent:
            print(f"#   {line}", file=sys.stderr)

    def one(name: str) -> int:
        values = counts[name]
        if len(values) != 1:
            sys.exit(f"{name}: the request count changed between runs: {sorted(values)}")
        return next(iter(values))

    base = statistics.median(times["baseline"])
    runs_note = f"median of {repeat}" if repeat > 1 else "1 run"
    # Without a usable access log, the CLI's requests are those of the same code path in-process.
    cli_requests = one("cli") if counts["cli"] else one("inproc")
    cli_source = "requests from the proxy's access log" if counts["cli"] else "requests counted in-process"
    mismatch = "" if cli_requests == one("inproc") else f"; MISMATCH: {one('inproc')} in-process"

    def ratio(name: str) -> str:
        return f"{statistics.median(times[name]) / base:.2f}x baseline"

    return [
        (f"baseline: raw paged read, {n} users", base, one("baseline"), f"{rows} user rows; {runs_note}"),
        (
            f"plan (CLI subprocess), {n} users",
            statistics.median(times["cli"]),
            cli_requests,
            f"{ratio('cli')}; {cli_source}{mismatch}",
        ),
        (
            f"plan in-process (same code path), {n} users",
            statistics.median(times["inproc"]),
            one("inproc"),
            f"{ratio('inproc')}; no interpreter start",
        ),
        (
            f"validate (CLI subprocess, offline), {n} users",
            statistics.median(times["validate"]),
            0,
            f"{ratio('validate')}; start + imports + file load",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per figure; the median is shown")
    parser.add_argument("--show-requests", action="store_true", help="list the plan's requests on stderr")
    args = parser.parse_args()
    url, key = os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"]
    rows: list[tuple[str, float, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-read-") as workdir:
        for n in args.users:
            rows += bench(n, url, key, max(1, args.repeat), Path(workdir), args.show_requests)
    print_table(("figure", "seconds", "requests", "note"), ("8.2f", "8d", ""), rows)


if __name__ == "__main__":
    main()
