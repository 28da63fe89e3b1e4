"""kill -9 in the middle of an apply, on the real proxy, judged from the proxy's own database:
the next apply converges, nobody is created twice, no key appears, and every link that was
created is either in a report or reported as unrecorded, with at most one recorded per user."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.client import DEFAULT_PARALLELISM
from reconciler.onboarding import load_report
from reconciler.sealing import Sealer

from .conftest import Api
from .faults import FaultProxy, Rule
from .test_lifecycle import json_plan, write

USERS = 120  # three batches of links (BULK_SIZE 50): kills land before, between and after records
FILE = "version: 1\nteams:\n  - alias: dev\n  - alias: research\nusers:\n" + "".join(
    f"  - email: person{i:03d}@company.com\n    teams: [{'dev' if i % 2 else 'research'}]\n" for i in range(USERS)
)
REPORT = "onboarding_results.jsonl"


def start_apply(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    """An apply whose lock expires 5 s after it stops renewing it (i.e. after the kill)."""
    command = [sys.executable, "-m", "reconciler", "apply", "--yes", "--lock-ttl", "5", "--proxy-url", url]
    with open(tmp_path / "killed.log", "w", encoding="utf-8") as log:  # a file: a full pipe would stall the apply
        return subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for(process: subprocess.Popen[str], predicate: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "the apply ended before it got there"
        assert time.monotonic() < deadline, "timed out waiting for the apply to get there"
        time.sleep(0.02)


def settle(sql) -> None:
    """Wait until the proxy has finished what the killed apply had in flight (it goes on with a
    request whose client died): users unchanged for 2 s."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < 2:
        now = sql('select count(*), max(updated_at) from "LiteLLM_UserTable"')
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.2)


def links(sql) -> dict[str, str]:
    """Every link on the proxy: invitation id -> user id."""
    rows = sql('select id, user_id from "LiteLLM_InvitationLink"').splitlines()
    return dict(line.split("|") for line in rows if line)


def rerun_and_check(api: Api, cli, tmp_path: Path, proxy, sql) -> str:
    """The second apply (it waits out the killed one's lock) and everything the issue asks of the end state."""
    settle(sql)
    again = cli("apply", "--yes", "--lock-timeout", "60")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "\r" not in again.stderr + again.stdout and "Applying" not in again.stderr, (
        "no progress bar outside a terminal"
    )

    emails = sql(
        'select lower(user_email), count(*) from "LiteLLM_UserTable" where user_email is not null group by 1'
    ).splitlines()
    assert len(emails) == USERS and all(line.endswith("|1") for line in emails), "every user exactly once"
    assert sql('select count(*) from "LiteLLM_VerificationToken"') == "0", "no keys"
    rosters = {
        t["team_alias"]: {m["user_id"] for m in t["members_with_roles"]} - {"default_user_id"} for t in api.teams()
    }
    assert sorted(len(r) for r in rosters.values()) == [USERS // 2, USERS // 2], "nobody missing from a team"

    records = load_report(tmp_path / REPORT)
    reported = {r["invitation_id"] for r in records if r.get("invitation_id")}
    unrecorded = {r["user_id"] for r in records if r["status"] == "unrecorded"}
    lost = {i: u for i, u in links(sql).items() if i not in reported and u not in unrecorded}
    assert lost == {}, "every link is in a report or reported as unrecorded"

    sealer = Sealer(proxy[1])
    on_proxy = links(sql)
    for user in api.users():
        if user["user_id"] == "default_user_id":
            continue
        record = user["metadata"]["litellm_reconciler"]["invitation"]
        invitation_id = sealer.open(record.get("sealed"), user["user_id"])
        assert invitation_id in on_proxy and "intent_at" not in record, (user["user_email"], record)
    assert json_plan(cli)["actions"] == []
    return again.stdout


@pytest.mark.parametrize("links_before_kill", [1, 60, 105])
def test_kill_during_the_invitation_phase_then_apply_again(
    api: Api, cli, tmp_path: Path, proxy, sql, links_before_kill: int
) -> None:
    write(tmp_path, FILE)
    process = start_apply(tmp_path, proxy[0])
    wait_for(process, lambda: len(links(sql)) >= links_before_kill)
    kill(process)
    settle(sql)
    created = len(links(sql))
    assert created < USERS, "killed before the end"
    reported_before = {r["invitation_id"] for r in load_report(tmp_path / REPORT) if r.get("invitation_id")}
    assert len(reported_before) >= created - DEFAULT_PARALLELISM, (
        "links are on disk the moment they exist (those in flight excepted)"
    )
    rerun_and_check(api, cli, tmp_path, proxy, sql)


@pytest.mark.parametrize("report_kept", [True, False], ids=["report kept", "report lost"])
def test_kill_between_links_and_their_record(api: Api, cli, tmp_path: Path, proxy, sql, report_kept: bool) -> None:
    write(tmp_path, FILE)

    def records_links(body: dict) -> bool:
        return "sealed" in str(body.get("users"))

    # The first links exist and are handed over; the write that records them never arrives.
    with FaultProxy(proxy[0], [Rule("POST", "/user/bulk_update", "hold", when=records_links)]) as faulty:
        process = start_apply(tmp_path, faulty.url)
        assert faulty.held.wait(120), "the apply never reached the first record"
        kill(process)
    batch = load_report(tmp_path / REPORT)
    assert batch and all(r["status"] == "created" and r["onboarding_link"] for r in batch), (
        "links are handed over before their record"
    )
    assert len(batch) <= DEFAULT_PARALLELISM, "group commit: no more links than --parallelism wait for a record"
    if not report_kept:
        (tmp_path / REPORT).unlink()
    out = rerun_and_check(api, cli, tmp_path, proxy, sql)
    for held in batch:
        theirs = [i for i, u in links(sql).items() if u == held["user_id"]]
        if report_kept:
            assert f"invitation.{held['email']}: done (recorded the link an earlier apply made" in out
            assert theirs == [held["invitation_id"]], "the reported link is recorded, not made twice"
        else:
            assert f"Unrecorded link for {held['email']}: an apply at" in out
            assert len(theirs) == 2, "the old link cannot be found; a new one is recorded"


def _person_ids(indexes: range) -> set[str]:
    from reconciler.plan import new_user_id

    return {new_user_id(f"person{i:03d}@company.com") for i in indexes}


def _truncated(status: int, body: bytes) -> tuple[int, bytes]:
    return 200, body[: len(body) // 2]


def _failed_after_the_fact(status: int, body: bytes) -> tuple[int, bytes]:
    return 500, json.dumps({"error": {"message": "upstream timed out", "type": "internal_server_error"}}).encode()


def test_a_garbled_or_failed_answer_to_invitation_new_loses_no_link(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    # The proxy made the link; the answer that came back was cut short, or a 500 sent after the fact.
    write(tmp_path, FILE)
    garbled, failed = _person_ids(range(0, 8)), _person_ids(range(8, 16))
    rules = [
        Rule(
            "POST", "/invitation/new", "rewrite", when=lambda b: b["user_id"] in garbled, times=None, rewrite=_truncated
        ),
        Rule(
            "POST",
            "/invitation/new",
            "rewrite",
            when=lambda b: b["user_id"] in failed,
            times=None,
            rewrite=_failed_after_the_fact,
        ),
    ]
    with FaultProxy(proxy[0], rules) as faulty:
        first = cli("apply", "--yes", "--proxy-url", faulty.url)
    assert first.returncode == 1
    assert "will not converge" not in first.stderr, "an unknown outcome is not a refusal"
    records = load_report(tmp_path / REPORT)
    reported = {r["invitation_id"] for r in records if r.get("invitation_id")}
    possibly = {r["user_id"] for r in records if r["status"] == "unrecorded"}
    assert possibly == garbled | failed, "each link that may exist is named as possibly created"
    assert not {i: u for i, u in links(sql).items() if i not in reported and u not in possibly}, "none lost"
    rerun_and_check(api, cli, tmp_path, proxy, sql)


def _hiding(ids: set[str], hidden_in_total: int) -> Callable[[int, bytes], tuple[int, bytes]]:
    """A /user/list that never shows these users, its counts lowered to match (consistently short)."""

    def rewrite(status: int, body: bytes) -> tuple[int, bytes]:
        data = json.loads(body)
        shown = [u for u in data.get("users", []) if u.get("user_id") not in ids]
        removed = len(data.get("users", [])) - len(shown)
        data["users"] = shown
        data["total"] = data["total"] - (hidden_in_total if data["total"] > 100 else removed)
        return status, json.dumps(data).encode()

    return rewrite


def test_a_listing_consistently_short_erases_no_recorded_link(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    write(tmp_path, FILE)
    assert cli("apply", "--yes").returncode == 0
    before = links(sql)
    hidden = _person_ids(range(0, 50))
    rule = Rule("GET", "/user/list", "rewrite", times=None, rewrite=_hiding(hidden, len(hidden)))
    with FaultProxy(proxy[0], [rule]) as faulty:
        cli("apply", "--yes", "--proxy-url", faulty.url)  # tries to create what it cannot see; refused
    sealer = Sealer(proxy[1])
    for user in api.users():
        if user["user_id"] in hidden:
            record = user["metadata"]["litellm_reconciler"]["invitation"]
            assert sealer.open(record.get("sealed"), user["user_id"]) in before, "its recorded link is kept"
    assert links(sql) == before, "no link was made for a user it could not see"
    rerun_and_check(api, cli, tmp_path, proxy, sql)
    assert links(sql) == before, "and the next apply makes none either"
