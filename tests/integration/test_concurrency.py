"""One apply at a time per proxy, on the real proxy: the lock, its holder, its expiry,
and the memory of failures that re-running will not fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from reconciler.lock import LOCK_USER_ID, Holder, LockState, Runner

from .conftest import Api
from .faults import FaultProxy, Rule
from .test_invitations import links_in_db, report
from .test_lifecycle import BASE, apply_ok, json_plan, write


def hold_lock(api: Api, who: str, expires_in: float) -> None:
    """Plant a lock as an apply running on another machine holds it."""
    now = datetime.now(timezone.utc)
    runner = Runner(who, "ci-runner-7", "ci-runner-7|boot|pid:[1]", 4242)
    until = (now + timedelta(seconds=expires_in)).isoformat(timespec="seconds")
    holder = Holder("rival", runner, now.isoformat(timespec="seconds"), until)
    api.post("/user/update", {"user_id": LOCK_USER_ID, "metadata": LockState("planted", holder).metadata()})


def lock_row(api: Api) -> dict:
    return next(
        u
        for u in api.get("/user/list", user_ids=LOCK_USER_ID)["users"]  # type: ignore[index]
        if u["user_id"] == LOCK_USER_ID
    )


def test_a_held_lock_refuses_apply_naming_the_holder_and_writes_nothing(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    hold_lock(api, "GitHub Actions run 42 of acme/llm-access (apply)", expires_in=300)
    started = time.monotonic()
    result = cli("apply", "--yes", "--lock-timeout", "3", "--result-json", "result.json")
    assert result.returncode == 1
    assert (
        "another apply holds the lock on this proxy: GitHub Actions run 42 of acme/llm-access (apply), since"
        in result.stderr
    )
    assert "token rival). Nothing was changed." in result.stderr and "lock --break rival" in result.stderr
    assert time.monotonic() - started >= 3, "--lock-timeout waits before giving up"
    assert json.loads((tmp_path / "result.json").read_text())["outcome"] == "refused"
    assert api.users() == [] and api.teams() == []
    assert json_plan(cli)["drift"] == [], "plans take no lock and never show it"


def test_a_stale_lock_of_a_killed_apply_is_broken_after_it_expires(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    hold_lock(api, "a killed apply", expires_in=-1)
    apply_ok(cli)
    assert (lock_row(api)["metadata"]["litellm_reconciler"]["lock"]) is None, "released at the end"
    assert json_plan(cli)["actions"] == []


def test_an_apply_with_nothing_to_do_takes_no_lock(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    apply_ok(cli)
    hold_lock(api, "someone else", expires_in=300)
    assert "No changes." in apply_ok(cli)


def test_two_applies_at_once_one_waits_no_link_twice_no_member_lost(api: Api, tmp_path: Path, sql) -> None:
    users = "".join(f"  - email: user{i:03d}@company.com\n    teams: [dev-test, research]\n" for i in range(40))
    write(tmp_path, "version: 1\nteams:\n  - alias: dev-test\n  - alias: research\nusers:\n" + users)
    command = [sys.executable, "-m", "reconciler", "apply", "--yes", "--lock-timeout", "120"]
    first = subprocess.Popen(
        [*command, "--report", "one.jsonl"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    second = subprocess.Popen(
        [*command, "--report", "two.jsonl"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    # The other one planned after the first had finished, or while it waited for the lock (before it wrote).
    assert sum("Apply complete" in out for out, _ in outputs) == 1, outputs
    assert sum("No changes" in out for out, _ in outputs) == 1, outputs
    links = links_in_db(sql)
    assert len(links) == 40 and set(links.values()) == {1}, "nobody got two links"
    for team in api.teams():
        assert len([m for m in team["members_with_roles"] if m["user_id"] != "default_user_id"]) == 40
    created = [r for name in ("one.jsonl", "two.jsonl") if (tmp_path / name).exists() for r in report(tmp_path, name)]
    assert len(created) == 40


def test_a_write_the_proxy_refuses_on_every_run_is_called_out(api: Api, cli, tmp_path: Path, proxy) -> None:
    write(tmp_path, BASE)
    refusal = {"error": {"message": "team alias refused (injected)", "type": "bad_request_error", "code": "400"}}
    research = lambda body: body.get("team_alias") == "research"  # noqa: E731
    always = Rule("POST", "/team/new", "fail", when=research, times=None, status=400, reply=refusal)
    with FaultProxy(proxy[0], [always]) as faulty:
        first = cli("apply", "--yes", "--proxy-url", faulty.url)
        second = cli("apply", "--yes", "--proxy-url", faulty.url)
    assert first.returncode == 1 and "run apply again (it converges)" in first.stderr, first.stderr
    assert second.returncode == 1
    assert (
        "team.research: refused by the proxy (HTTP 400) the same way on 2 runs: POST /team/new: HTTP 400"
        in second.stderr
    ), second.stderr
    assert "1 action(s) will not converge by re-running" in second.stderr
    apply_ok(cli)  # the cause is gone: it converges, and the memory is cleared
    assert lock_row(api)["metadata"]["litellm_reconciler"]["failures"] == {}
