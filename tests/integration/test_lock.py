"""The apply lock on the real proxy, judged from its database: two applies with a lock write stalled never
both write; a killed apply, an apply that failed on bad data and one whose proxy went away leave no lock that
holds the next one up; ``lock`` shows the holder and ``lock --break`` frees it; --lock-timeout waits for a
holder however busy it is."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconciler.lock import END_PREFIX, LOCK_USER_ID, Holder, LockState, Runner, is_lock_row

from .conftest import Api
from .faults import FaultProxy, Rule
from .test_crash import kill, settle, wait_for
from .test_lifecycle import BASE, json_plan, write


def people(count: int) -> str:
    return "version: 1\nteams:\n  - alias: dev\nusers:\n" + "".join(
        f"  - email: person{i:03d}@company.com\n    teams: [dev]\n" for i in range(count)
    )


def start(tmp_path: Path, url: str, *args: str, log: str) -> subprocess.Popen[str]:
    """An apply in the background; its output goes to a file (a full pipe would stall it)."""
    command = [sys.executable, "-m", "reconciler", "apply", "--yes", "--proxy-url", url, "--report", f"{log}.jsonl"]
    with open(tmp_path / f"{log}.log", "w", encoding="utf-8") as out:
        return subprocess.Popen([*command, *args], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True)


def output(tmp_path: Path, log: str) -> str:
    return (tmp_path / f"{log}.log").read_text(encoding="utf-8")


def lock_state(sql) -> LockState | None:
    """The lock row as the database has it."""
    found = sql(f"select metadata from \"LiteLLM_UserTable\" where user_id = '{LOCK_USER_ID}'")
    return LockState.from_row({"metadata": json.loads(found)}) if found else None


def end_rows(sql) -> int:
    return int(sql(f"select count(*) from \"LiteLLM_UserTable\" where user_id like '{END_PREFIX}%'"))


def each_once(sql) -> dict[str, int]:
    """Every user by email with how many rows it has."""
    rows = sql('select lower(user_email), count(*) from "LiteLLM_UserTable" where user_email is not null group by 1')
    return {email: int(n) for email, n in (line.split("|") for line in rows.splitlines())}


def plant(api: Api, holder: Holder | None) -> None:
    """A lock row as another apply left it (the row made as the tool makes it: ``/user/new``)."""
    state = LockState("planted", holder, {}, None)
    body = {"user_id": LOCK_USER_ID, "user_role": "internal_user_viewer", "auto_create_key": False}
    api.post("/user/new", {**body, "metadata": state.metadata()})


def elsewhere(who: str, until_in: float, token: str = "f" * 32) -> Holder:
    """An apply running on another machine, whose lock lasts ``until_in`` seconds more."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    since, until = now.isoformat(), (now + timedelta(seconds=until_in)).isoformat()
    return Holder(token, Runner(who, "ci-runner-7", "ci-runner-7|boot|pid:[1]", 4242), since, until)


def lock_writes(relay: FaultProxy) -> list[tuple[float, float, str, str, dict | None]]:
    return [
        r for r in relay.timeline if r[2] == "POST" and _user_ids(r[4]) and all(is_lock_row(u) for u in _user_ids(r[4]))
    ]


def other_writes(relay: FaultProxy) -> list[tuple[float, float, str, str, dict | None]]:
    return [r for r in relay.timeline if r[2] == "POST" and r not in lock_writes(relay)]


def _user_ids(body: dict | None) -> list[str]:
    body = body or {}
    return [str(u) for u in body.get("user_ids") or ([body["user_id"]] if "user_id" in body else [])]


# --------------------------------------------------------------------------- mutual exclusion

#: The write stalled: the claim on the free lock (``/user/new`` of its end row), or the lock row's write.
CLAIM = Rule("POST", "/user/new", "stall", when=lambda body: body.get("user_id", "").startswith(END_PREFIX))
WRITE = Rule("POST", "/user/update", "stall", when=lambda body: body.get("user_id") == LOCK_USER_ID)


@pytest.mark.parametrize(
    ("seconds", "stalled"),
    [(0, CLAIM), (2, WRITE), (5, CLAIM), (9, WRITE)],
    ids=["0s", "2s-write", "5s-claim", "9s-write"],
)
def test_two_applies_with_a_lock_write_stalled_never_both_write(
    api: Api, proxy, sql, tmp_path: Path, seconds: float, stalled: Rule
) -> None:
    write(tmp_path, people(3))
    plant(api, None)  # a free lock, as the last apply left it
    rule = Rule(stalled.method, stalled.path, "stall", when=stalled.when, seconds=seconds)
    with FaultProxy(proxy[0], [rule]) as slow, FaultProxy(proxy[0]) as fast:
        first = start(tmp_path, slow.url, "--lock-timeout", "60", log="slow")
        # Both at once; with a stall, the other one starts while the stalled write is on its way.
        assert not seconds or slow.stalling.wait(60), "the stalled apply never reached its lock write"
        second = start(tmp_path, fast.url, "--lock-timeout", "60", log="fast")
        for process in (first, second):
            process.wait(timeout=120)
    logs = {name: output(tmp_path, name) for name in ("slow", "fast")}
    wrote = [name for name, relay in (("slow", slow), ("fast", fast)) if other_writes(relay)]
    assert len(wrote) == 1, (wrote, logs)
    [loser] = {"slow", "fast"} - set(wrote)
    assert any(
        told in logs[loser]
        for told in (
            "No changes. The proxy matches users.yaml.",  # it planned after the other had finished
            "No changes left: another apply made them while this one waited for the lock.",
            "the proxy changed while this apply waited for the lock; nothing was applied",
        )
    ), logs[loser]
    assert "expired" not in logs[loser] and "stopped writing" not in logs[loser], "no false claim"
    assert each_once(sql) == {f"person{i:03d}@company.com": 1 for i in range(3)}
    state = lock_state(sql)
    assert state is not None and state.holder is None and end_rows(sql) == 0, "released, nothing left behind"


def test_lock_timeout_waits_for_a_holder_however_busy_it_is(api: Api, proxy, sql, tmp_path: Path) -> None:
    """The waiter reads only the lock row while the holder creates users, and plans once it is done: never
    "it changed during the read"."""
    write(tmp_path, people(150))  # two pages of users
    midway = Rule(
        "POST", "/user/new", "stall", when=lambda body: body.get("user_email") == "person060@company.com", seconds=3
    )
    with FaultProxy(proxy[0], [midway]) as busy, FaultProxy(proxy[0]) as waiting:
        holder = start(tmp_path, busy.url, log="holder")
        assert busy.stalling.wait(120), "the holder never got to its users"
        waiter = start(tmp_path, waiting.url, "--lock-timeout", "300", log="waiter")
        assert holder.wait(timeout=300) == 0, output(tmp_path, "holder")
        assert waiter.wait(timeout=300) == 0, output(tmp_path, "waiter")
    assert "No changes." in output(tmp_path, "waiter") and "changed during the read" not in output(tmp_path, "waiter")
    # The holder's last write of the lock row (its release): no reader can see the lock free before it was sent.
    released = max(
        received
        for received, _, method, path, body in busy.timeline
        if method == "POST" and path.startswith("/user/update") and (body or {}).get("user_id") == LOCK_USER_ID
    )
    before = [path for received, _, _, path, _ in waiting.timeline if received < released]
    assert before and set(before) == {f"/user/list?user_ids={LOCK_USER_ID}&page_size=100"}, (
        "while the holder worked, the waiter read the lock row and nothing else"
    )
    assert len(each_once(sql)) == 150


# --------------------------------------------------------------------------- locks that a crash does not strand


def test_kill_9_then_an_immediate_apply_on_the_same_machine_converges_without_waiting(
    api: Api, cli, proxy, sql, tmp_path: Path
) -> None:
    write(tmp_path, people(120))
    process = start(tmp_path, proxy[0], log="killed")  # the default --lock-ttl: 600 s
    wait_for(process, lambda: len(each_once(sql)) >= 30)
    pid = process.pid
    kill(process)
    settle(sql)
    state = lock_state(sql)
    assert state is not None and state.holder is not None and state.holder.runner.pid == pid, "killed holding it"
    started = time.monotonic()
    again = cli("apply", "--yes")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    assert time.monotonic() - started < 60, "it did not wait for the killed apply's lock to expire"
    [said] = [line for line in again.stderr.splitlines() if "lock" in line]
    assert "broke the apply lock of " in said and f"its process (pid {pid} on " in said and "is gone" in said
    assert each_once(sql) == {f"person{i:03d}@company.com": 1 for i in range(120)}
    assert json_plan(cli)["actions"] == []
    assert lock_state(sql).holder is None and end_rows(sql) == 0  # type: ignore[union-attr]


def test_an_apply_failing_on_bad_data_leaves_no_lock_and_shows_its_own_error(
    api: Api, cli, proxy, sql, tmp_path: Path
) -> None:
    """The proxy's refusal echoes the bad data (a NUL); remembering it must not fail the release."""
    write(tmp_path, BASE)
    echoed = {"error": {"message": "invalid alias 'rese\u0000arch'", "type": "bad_request_error", "code": "500"}}
    refused = Rule("POST", "/team/new", "fail", when=lambda body: body.get("team_alias") == "research", reply=echoed)
    with FaultProxy(proxy[0], [refused]) as faulty:
        result = cli("apply", "--yes", "--proxy-url", faulty.url)
    assert result.returncode == 1
    assert "Error: some actions failed or were skipped; run apply again" in result.stderr, result.stderr
    assert [line for line in result.stderr.splitlines() if "lock" in line] == [], "no lock message at all"
    state = lock_state(sql)
    assert state is not None and state.holder is None and end_rows(sql) == 0
    [memory] = state.failures.values()
    assert "rese\ufffdarch" in memory["detail"], "remembered, without the NUL"


def test_a_proxy_gone_mid_apply_keeps_the_error_and_the_next_apply_takes_over_at_once(
    api: Api, cli, proxy, sql, tmp_path: Path
) -> None:
    write(tmp_path, people(12))
    with FaultProxy(proxy[0], [Rule("POST", "/invitation/new", "cut")]) as stopping:
        result = cli("apply", "--yes", "--proxy-url", stopping.url)
    assert result.returncode == 1
    said = [line for line in result.stderr.splitlines() if "lock" in line]
    assert len(said) == 1 and said[0].startswith("WARNING reconciler.lock: could not release the apply lock"), said
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: "), "the run's own error comes last"
    assert "lock" not in result.stderr.rstrip().splitlines()[-1]
    started = time.monotonic()
    again = cli("apply", "--yes")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr
    assert time.monotonic() - started < 60
    assert [line for line in again.stderr.splitlines() if "lock" in line][0].endswith(
        "is gone (token " + lock_token(result) + ")"
    )
    assert each_once(sql) == {f"person{i:03d}@company.com": 1 for i in range(12)}


def lock_token(result: subprocess.CompletedProcess[str]) -> str:
    """The token a release warning names (``lock --break TOKEN``)."""
    return result.stderr.split("lock --break ", 1)[1].split("'", 1)[0]


# --------------------------------------------------------------------------- inspecting and breaking


def test_lock_shows_the_holder_and_breaks_it_only_with_its_token_and_a_yes(api: Api, cli, sql, tmp_path: Path) -> None:
    holder = elsewhere("GitHub Actions run 42 of acme/access (apply, attempt 1)", until_in=3600)
    plant(api, holder)

    shown = cli("lock")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "The apply lock is held by GitHub Actions run 42 of acme/access (apply, attempt 1)",
        f"  since: {holder.since}",
        f"  until: {holder.until} (renewed while it runs)",
        "  where: ci-runner-7, pid 4242",
        f"  token: {holder.token}",
        f"If that apply is gone: litellm-reconciler lock --break {holder.token}",
    ]
    wrong = cli("lock", "--break", "0" * 32, "--yes")
    assert wrong.returncode == 1 and "the apply lock is not held by 0000" in wrong.stderr
    unasked = cli("lock", "--break", holder.token, input="")
    assert unasked.returncode == 1 and "stdin is not a terminal; pass --yes" in unasked.stderr
    assert lock_state(sql).holder == holder, "nothing changed"  # type: ignore[union-attr]

    broken = cli("lock", "--break", holder.token, "--yes")
    assert broken.returncode == 0, broken.stderr
    assert f"Broke the apply lock of {holder.who} (token {holder.token})" in broken.stdout
    state = lock_state(sql)
    assert state is not None and state.holder is None and state.last is not None
    assert state.last["event"] == "broken" and state.last["token"] == holder.token and state.last["at"]
    assert state.last["who"] and state.last["who"] != holder.who, "who broke it"
    assert cli("lock").stdout.startswith("The apply lock is free.\nLast broken by ")

    write(tmp_path, BASE)
    assert cli("apply", "--yes").returncode == 0


def test_an_expired_holder_elsewhere_is_shown_as_such_and_broken_by_the_next_apply(
    api: Api, cli, sql, tmp_path: Path
) -> None:
    holder = elsewhere("a killed CI run", until_in=-1)
    plant(api, holder)
    assert "The next apply takes it over: it expired at " in cli("lock").stdout
    write(tmp_path, BASE)
    applied = cli("apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    assert [line for line in applied.stderr.splitlines() if "lock" in line] == [
        f"WARNING reconciler.lock: broke the apply lock of a killed CI run: it expired at {holder.until} "
        f"without being renewed (token {holder.token})"
    ]
    assert lock_state(sql).holder is None  # type: ignore[union-attr]
