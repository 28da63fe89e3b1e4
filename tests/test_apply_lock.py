"""The apply lock's protocol against an in-memory proxy that keeps user rows as LiteLLM does (1.80.5: a
``/user/new`` of an existing id leaves the row alone and answers 200; 1.110.2: 409), where another apply
can act while one of our requests is in flight (a stalled write). The real proxies: tests/integration/test_lock.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from reconciler.client import LiteLLMClient, LockLost, ProxyError
from reconciler.lock import END_PREFIX, LOCK_USER_ID, ApplyLock, LockHeld, LockState, Runner, describe_runner
from reconciler.manager import apply_lock

T0 = datetime(2031, 12, 2, 10, tzinfo=timezone.utc)
HERE = describe_runner({})


@dataclass
class Interleave:
    """While a request matching ``method``, ``path`` and ``when`` is in flight, ``then`` runs first (once)."""

    method: str
    path: str
    when: Callable[[dict[str, Any]], bool]
    then: Callable[[], object]
    done: bool = False


class Rows:
    """The user rows of a LiteLLM proxy, for the calls the lock makes."""

    def __init__(self, version: str = "1.80.5") -> None:
        self.version = version
        self.rows: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.interleaved: list[Interleave] = []
        #: (method, path, status) answered instead of handling the request, once each (0: refused
        #: connection; -1: handled, then the connection lost before the answer).
        self.faults: list[tuple[str, str, int]] = []

    def client(self, log: list[tuple[str, str]] | None = None) -> LiteLLMClient:
        """A client of this proxy; ``log`` gets the (method, path) of each of its requests."""

        def handle(request: httpx.Request) -> httpx.Response:
            if log is not None:
                log.append((request.method, f"{request.url.path}?{request.url.query.decode()}"))
            return self(request)

        transport = httpx.MockTransport(handle)
        return LiteLLMClient("http://proxy.test", "sk-test", transport=transport, sleep=lambda s: None)

    def meanwhile(self, method: str, path: str, then: Callable[[], object], when=lambda body: True) -> None:
        self.interleaved.append(Interleave(method, path, when, then))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else dict(request.url.params)
        self.requests.append((request.method, path, body))
        for step in self.interleaved:
            if not step.done and (step.method, step.path) == (request.method, path) and step.when(body):
                step.done = True
                step.then()
        handle = getattr(self, f"{request.method.lower()}_{path.strip('/').replace('/', '_')}")
        for fault in self.faults:
            if fault[:2] == (request.method, path):
                self.faults.remove(fault)
                if fault[2] == 0:
                    raise httpx.ConnectError("refused", request=request)
                if fault[2] == -1:  # made, and the answer lost on its way back
                    handle(body)
                    raise httpx.ReadError("connection reset", request=request)
                return httpx.Response(fault[2], json={"error": {"message": "injected", "code": str(fault[2])}})
        return handle(body)

    def get_user_list(self, params: dict[str, Any]) -> httpx.Response:
        ids = params["user_ids"]
        if "," in ids:
            found = [row for user_id, row in self.rows.items() if user_id in ids.split(",")]
        else:
            found = [row for user_id, row in self.rows.items() if ids.lower() in user_id.lower()]
        return httpx.Response(200, json={"users": found, "total": len(found)})

    def post_user_new(self, body: dict[str, Any]) -> httpx.Response:
        if body["user_id"] in self.rows:
            if self.version == "1.80.5":
                return httpx.Response(200, json=body)
            return httpx.Response(409, json={"error": {"message": "User with id ... already exists", "code": "409"}})
        self.rows[body["user_id"]] = {"user_id": body["user_id"], "metadata": body["metadata"]}
        return httpx.Response(200, json=body)

    def post_user_update(self, body: dict[str, Any]) -> httpx.Response:
        self.rows[body["user_id"]] = {"user_id": body["user_id"], "metadata": body["metadata"]}  # an upsert
        return httpx.Response(200, json={"user_id": body["user_id"]})

    def post_user_delete(self, body: dict[str, Any]) -> httpx.Response:
        if any(user_id not in self.rows for user_id in body["user_ids"]):
            return httpx.Response(404, json={"detail": {"error": "User not found"}})
        for user_id in body["user_ids"]:
            del self.rows[user_id]
        return httpx.Response(200, json=len(body["user_ids"]))

    # -- for the tests

    def state(self) -> LockState:
        state = LockState.from_row(self.rows.get(LOCK_USER_ID))
        assert state is not None
        return state

    def ends(self) -> list[str]:
        return [user_id for user_id in self.rows if user_id.startswith(END_PREFIX)]

    def writes(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.requests if method == "POST"]

    def posts(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if (method, p) == ("POST", path)]

    def plant(self, holder: dict[str, Any] | None, failures: dict[str, Any] | None = None, **more: Any) -> None:
        """A lock row as another apply (or, without a ``version``, an older version of this tool) left it."""
        state = {"lock": holder, "failures": failures or {}, **more}
        self.rows[LOCK_USER_ID] = {"user_id": LOCK_USER_ID, "metadata": {"litellm_reconciler": state}}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds or 1)


def lock(rows: Rows, clock: Clock, who: str, runner: Runner | None = None) -> ApplyLock:
    return ApplyLock(rows.client(), replace(runner or HERE, who=who), ttl=60, clock=clock, sleep=clock.sleep)


def holding(who: str, *, until: datetime, runner: Runner | None = None, token: str = "0" * 32) -> dict[str, Any]:
    """A holder as the lock row records it."""
    runner = runner or Runner(who, "elsewhere", "elsewhere|boot|pid:[1]", 4242)
    record = {"token": token, **replace(runner, who=who).to_dict()}
    return {**record, "since": T0.isoformat(), "until": until.isoformat()}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


VERSIONS = pytest.mark.parametrize("version", ["1.80.5", "1.110.2"])


# --------------------------------------------------------------------------- taking, holding, releasing


@VERSIONS
def test_taken_held_released_and_taken_again_with_the_memory_of_failures(version: str) -> None:
    rows, clock = Rows(version), Clock()
    first = lock(rows, clock, "CI run 1")
    first.acquire()
    with pytest.raises(LockHeld, match="another apply holds the lock on this proxy: CI run 1, since") as held:
        lock(rows, clock, "CI run 2").acquire(wait=5)
    assert f"token {first.token}" in str(held.value) and f"lock --break {first.token}" in str(held.value)
    first.memory = {"create_team team.a": {"detail": "HTTP 500", "runs": 1, "since": "T"}}
    first.release()
    assert rows.state().holder is None and rows.state().last["event"] == "released"  # type: ignore[index]
    assert rows.ends() == [], "no row but the lock's is left"
    second = lock(rows, clock, "CI run 2")
    second.acquire()
    assert second.memory == first.memory, "the next run sees what failed before"


@VERSIONS
def test_a_write_stalled_until_the_rival_holds_the_lock_loses_and_says_who_holds_it(version: str) -> None:
    """Our claim (the end row of the free state) lands only after a rival took the lock: the database
    keeps the rival's, and we back off, however long the stall."""
    rows, clock = Rows(version), Clock()
    rows.plant(None, version="free1")
    ours, rival = lock(rows, clock, "ours"), lock(rows, clock, "rival")
    rows.meanwhile("POST", "/user/new", rival.acquire, when=lambda body: body["user_id"] == END_PREFIX + "free1")
    with pytest.raises(LockHeld, match="holds the lock on this proxy: rival"):
        ours.acquire()
    rival.confirm()
    assert rows.state().holder.who == "rival"  # type: ignore[union-attr]


@VERSIONS
def test_a_winner_whose_lock_write_is_stalled_keeps_the_rival_out_until_it_lands(version: str) -> None:
    rows, clock = Rows(version), Clock()
    rows.plant(None)
    ours, rival = lock(rows, clock, "ours"), lock(rows, clock, "rival")
    refused: list[str] = []

    def rival_tries() -> None:
        with pytest.raises(LockHeld) as held:
            rival.acquire()
        refused.append(str(held.value))

    rows.meanwhile("POST", "/user/update", rival_tries)
    ours.acquire()
    assert refused == [
        "another apply was taking or releasing the lock on this proxy at the same moment. Nothing was changed"
    ]
    ours.confirm()
    with pytest.raises(LockLost, match="does not hold the lock"):
        rival.confirm()


@VERSIONS
def test_the_first_lock_row_is_made_once_whoever_sends_it_first(version: str) -> None:
    rows, clock = Rows(version), Clock()
    ours, rival = lock(rows, clock, "ours"), lock(rows, clock, "rival")
    rows.meanwhile("POST", "/user/new", rival.acquire)
    with pytest.raises(LockHeld, match="holds the lock on this proxy: rival"):
        ours.acquire()
    assert rows.state().holder.token == rival.token  # type: ignore[union-attr]


def test_waiting_reads_only_the_lock_row_until_the_holder_releases() -> None:
    rows, clock = Rows(), Clock()
    holder = lock(rows, clock, "busy CI run")
    holder.acquire()
    seen: list[tuple[str, str]] = []
    waiter = ApplyLock(rows.client(seen), replace(HERE, who="waiter"), ttl=60, clock=clock, sleep=clock.sleep)
    rows.meanwhile("GET", "/user/list", holder.release, when=lambda params: clock.now >= T0 + timedelta(seconds=20))
    waiter.wait_until_free(wait=120)
    assert len(seen) == 11 and set(seen) == {("GET", f"/user/list?user_ids={LOCK_USER_ID}&page_size=100")}, (
        "one read of the lock row every 2 s, nothing else"
    )


# --------------------------------------------------------------------------- breaking


@VERSIONS
def test_two_breakers_of_an_expired_lock_one_wins_and_the_stalled_holder_finds_out(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows, clock = Rows(version), Clock()
    stalled = lock(rows, clock, "a person at a prompt")
    stalled.acquire()
    clock.now += timedelta(seconds=61)
    first, second = lock(rows, clock, "CI run 1"), lock(rows, clock, "CI run 2")
    rows.meanwhile("POST", "/user/new", first.acquire)  # first breaks it while second's claim is in flight
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"), pytest.raises(LockHeld, match="CI run 1"):
        second.acquire()
    assert [r.getMessage() for r in caplog.records] == [
        f"broke the apply lock of a person at a prompt: it expired at {(T0 + timedelta(seconds=60)).isoformat()} "
        f"without being renewed (token {stalled.token})"
    ], "one message, from the breaker that won"
    first.confirm()
    with pytest.raises(LockLost, match="lock on the proxy was broken at .* by CI run 1: it expired at"):
        stalled.confirm()
    with pytest.raises(LockLost, match="by CI run 1: it expired at"):
        stalled.confirm()  # however often it is asked, the same story
    stalled.release()  # already told: nothing more to say, nothing written
    assert rows.state().holder.who == "CI run 1" and rows.state().last["token"] == stalled.token  # type: ignore[union-attr,index]


def test_a_holder_that_never_confirmed_learns_at_release_that_its_lock_was_broken() -> None:
    rows, clock = Rows(), Clock()
    stalled = lock(rows, clock, "stalled")
    stalled.acquire()
    clock.now += timedelta(seconds=61)
    lock(rows, clock, "CI").acquire()
    with pytest.raises(LockLost, match="was broken at .* by CI: it expired"):
        stalled.release()
    assert rows.state().holder.who == "CI", "the rival keeps it"  # type: ignore[union-attr]


def test_the_lock_of_a_process_gone_from_this_machine_is_broken_at_once(caplog: pytest.LogCaptureFixture) -> None:
    rows, clock = Rows(), Clock()
    pid = dead_pid()
    rows.plant(holding("alice@laptop (pid 1)", until=T0 + timedelta(days=1), runner=replace(HERE, pid=pid)))
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"):
        lock(rows, clock, "alice again").acquire()
    assert [r.getMessage() for r in caplog.records] == [
        f"broke the apply lock of alice@laptop (pid 1): its process (pid {pid} on {HERE.host}) is gone "
        f"(token {'0' * 32})"
    ]
    assert rows.state().last["why"] == f"its process (pid {pid} on {HERE.host}) is gone"  # type: ignore[index]


@pytest.mark.parametrize(
    "runner",
    [
        pytest.param(replace(HERE, pid=1), id="alive-on-this-machine"),
        pytest.param(Runner("x", HERE.host, "another-container", 999_999), id="same-hostname-other-machine"),
    ],
)
def test_a_holder_that_may_still_run_is_not_broken(runner: Runner) -> None:
    rows, clock = Rows(), Clock()
    rows.plant(holding("bob", until=T0 + timedelta(days=1), runner=runner))
    with pytest.raises(LockHeld, match="bob"):
        lock(rows, clock, "alice").acquire()


def test_a_re_run_of_the_same_github_run_takes_over_its_own_lock(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"GITHUB_RUN_ID": "42", "GITHUB_REPOSITORY": "acme/access", "GITHUB_WORKFLOW": "apply"}
    first = replace(describe_runner({**environ, "GITHUB_RUN_ATTEMPT": "1"}), machine="runner-a", pid=7)
    second = describe_runner({**environ, "GITHUB_RUN_ATTEMPT": "2"})
    other_run = describe_runner({**environ, "GITHUB_RUN_ID": "43"})
    rows, clock = Rows(), Clock()
    rows.plant(holding(first.who, until=T0 + timedelta(days=1), runner=first))
    with pytest.raises(LockHeld, match="GitHub Actions run 42 of acme/access \\(apply, attempt 1\\)"):
        ApplyLock(rows.client(), other_run, clock=clock, sleep=clock.sleep).acquire()
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"):
        ApplyLock(rows.client(), second, clock=clock, sleep=clock.sleep).acquire()
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(
            "took over the apply lock of GitHub Actions run 42 of acme/access (apply, attempt 1): "
            "an earlier attempt of the same GitHub Actions run held it"
        )
    )
    assert rows.state().holder.runner.run == ("acme/access", "42", 2)  # type: ignore[union-attr]


def test_breaking_by_hand_needs_the_holders_token_and_is_noted() -> None:
    rows, clock = Rows(), Clock()
    holder = lock(rows, clock, "stuck CI run")
    holder.acquire()
    operator = lock(rows, clock, "ops@bastion")
    before = rows.state()
    with pytest.raises(ValueError, match="not held by nope .*held by stuck CI run.*nothing was changed"):
        operator.break_lock("nope")
    assert rows.state() == before
    assert operator.break_lock(holder.token).who == "stuck CI run"
    after = rows.state()
    assert after.holder is None and after.last is not None
    assert after.last["who"] == "ops@bastion" and after.last["at"] == T0.isoformat() and after.last["event"] == "broken"
    with pytest.raises(LockLost, match="broken at .* by ops@bastion: broken by hand"):
        holder.confirm()


def test_an_end_row_whose_creator_is_gone_is_cleared_by_the_next_taker() -> None:
    """A taker killed between its claim and its write of the lock row leaves its end row behind."""
    rows, clock = Rows(), Clock()
    rows.plant(None)
    ghost = lock(rows, clock, "killed", replace(HERE, pid=dead_pid()))
    rows.faults.append(("POST", "/user/update", 502))  # its write is lost: it cannot know, and never re-sends it
    with pytest.raises(ProxyError, match="does not show the write whose answer was lost"):
        ghost.acquire()
    assert len(rows.ends()) == 1 and len(rows.posts("/user/update")) == 1, "sent once, never again"
    taker = lock(rows, clock, "next")
    with pytest.raises(LockHeld):
        taker.acquire()  # first try: the stale claim is found and removed
    taker.acquire()
    assert rows.state().holder.who == "next" and rows.ends() == []  # type: ignore[union-attr]


def test_a_lock_write_whose_answer_was_lost_is_read_back_not_sent_again() -> None:
    rows, clock = Rows(), Clock()
    rows.plant(None)
    rows.faults.append(("POST", "/user/update", -1))
    taker = lock(rows, clock, "CI")
    taker.acquire()
    taker.confirm()
    assert len(rows.posts("/user/update")) == 1 and rows.ends() == []


def test_a_legacy_lock_row_is_taken_over_with_its_memory() -> None:
    rows, clock = Rows(), Clock()
    failures = {"create_team team.a": {"detail": "HTTP 500", "runs": 2, "since": "T"}}
    legacy = {"token": "old", "who": "v1", "acquired_at": T0.isoformat(), "expires_at": T0.isoformat()}
    rows.plant(legacy, failures)
    taker = lock(rows, clock, "new")
    taker.acquire()
    assert taker.memory == failures and rows.state().last["holder"] == "v1"  # type: ignore[index]


# --------------------------------------------------------------------------- renewing, confirming


def test_refresh_renews_only_once_a_third_of_the_ttl_has_passed() -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    writes = len(rows.writes())
    clock.now += timedelta(seconds=10)
    held.refresh()
    assert len(rows.writes()) == writes
    clock.now += timedelta(seconds=15)
    held.refresh()
    state = rows.state()
    assert state.holder is not None and datetime.fromisoformat(state.holder.until) == clock.now + timedelta(seconds=60)
    assert state.holder.since == T0.isoformat() and rows.ends() == []


def test_confirm_is_one_read_while_the_lock_is_fresh() -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    before = len(rows.requests)
    held.confirm()
    assert [(m, p) for m, p, _ in rows.requests[before:]] == [("GET", "/user/list")]


def test_confirm_renews_a_lock_past_a_third_of_its_ttl() -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    clock.now += timedelta(seconds=59)
    held.confirm()
    assert rows.state().holder.until == (clock.now + timedelta(seconds=60)).isoformat()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- releasing in every failure path


def test_a_release_is_retried_on_a_transient_error() -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    rows.faults += [("GET", "/user/list", 500), ("POST", "/user/new", 500)]
    held.release()
    assert rows.state().holder is None


def test_a_release_that_cannot_reach_the_proxy_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    rows.faults += [("GET", "/user/list", 0)] * 20
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"):
        held.release()
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("could not release the apply lock (GET /user/list: cannot reach the proxy")
    assert f"lock --break {held.token}" in warning


def test_failures_that_echo_a_nul_are_stored() -> None:
    rows, clock = Rows(), Clock()
    held = lock(rows, clock, "CI")
    held.acquire()
    held.memory = {"create_team team.a\x00": {"detail": "bad alias 'a\x00b' \ud800", "runs": 1, "since": "T"}}
    held.release()
    assert "\x00" not in json.dumps(rows.state().failures, ensure_ascii=False)
    assert rows.state().failures == {
        "create_team team.a\ufffd": {"detail": "bad alias 'a\ufffdb' ?", "runs": 1, "since": "T"}
    }


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """``manager.apply_lock`` takes its lock on this clock."""
    clock = Clock()
    monkeypatch.setattr(
        "reconciler.manager.ApplyLock",
        lambda client, runner, ttl: ApplyLock(client, runner, ttl, clock=clock, sleep=clock.sleep),
    )
    return clock


def test_the_blocks_own_error_is_the_one_raised_and_the_lock_is_released(fake_clock: Clock) -> None:
    rows = Rows()
    with pytest.raises(RuntimeError, match="bad data"), apply_lock(rows.client(), 0, 60):
        raise RuntimeError("bad data")
    assert rows.state().holder is None


def test_a_failed_release_is_a_warning_that_does_not_replace_the_blocks_error(
    fake_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    rows = Rows()
    with (
        caplog.at_level(logging.WARNING, logger="reconciler.lock"),
        pytest.raises(RuntimeError, match="the proxy went away"),
        apply_lock(rows.client(), 0, 60),
    ):
        rows.faults += [("GET", "/user/list", 0)] * 20
        raise RuntimeError("the proxy went away")
    assert [r.getMessage()[:33] for r in caplog.records] == ["could not release the apply lock "]


def test_a_block_that_ends_well_under_a_broken_lock_ends_with_who_broke_it(fake_clock: Clock) -> None:
    rows = Rows()
    with pytest.raises(LockLost, match="was broken at .* by ops: broken by hand"), apply_lock(rows.client(), 0, 60):
        lock(rows, fake_clock, "ops").break_lock(rows.state().holder.token)  # type: ignore[union-attr]
    assert rows.state().holder is None and rows.state().last["who"] == "ops"  # type: ignore[index]
