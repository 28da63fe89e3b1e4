"""The apply lock's rules with an in-memory lock row (the real proxy is in tests/integration/test_concurrency.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconciler.client import LockLost
from reconciler.lock import LOCK_USER_ID, ApplyLock, LockHeld


class Row:
    """Just the calls the lock makes, on one user row; ``/user/new`` leaves an existing row alone (1.80)."""

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None
        self.writes = 0

    def find_user(self, user_id: str) -> dict[str, Any] | None:
        return self.row

    def create_user(self, body: dict[str, Any]) -> None:
        self.writes += 1
        if self.row is None:
            self.row = {"user_id": LOCK_USER_ID, "metadata": body["metadata"]}

    def update_user(self, body: dict[str, Any]) -> None:
        self.writes += 1
        self.row = {"user_id": LOCK_USER_ID, "metadata": body["metadata"]}

    @contextmanager
    def past_deadline(self) -> Iterator[None]:
        yield


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 10, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def lock(row: Row, clock: Clock, who: str) -> ApplyLock:
    return ApplyLock(row, who, ttl=60, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_taken_held_released_and_taken_again() -> None:
    row, clock = Row(), Clock()
    first = lock(row, clock, "CI run 1")
    first.acquire()
    with pytest.raises(LockHeld, match="another apply holds the lock on this proxy: CI run 1, since"):
        lock(row, clock, "CI run 2").acquire(wait=5)
    first.memory = {"create_team team.a": {"detail": "HTTP 500", "runs": 1, "since": "T"}}
    first.release()
    second = lock(row, clock, "CI run 2")
    second.acquire()
    assert second.memory == first.memory, "the next run sees what failed before"


def test_an_expired_lock_is_broken_and_the_stalled_holder_finds_out() -> None:
    row, clock = Row(), Clock()
    stalled = lock(row, clock, "a person at a prompt")
    stalled.acquire()
    clock.now += timedelta(seconds=61)
    rival = lock(row, clock, "CI")
    rival.acquire()
    clock.now += timedelta(seconds=30)
    with pytest.raises(LockLost, match="CI took it"):
        stalled.refresh()
    with pytest.raises(LockLost):
        stalled.release()
    assert row.row is not None and row.row["metadata"]["litellm_reconciler"]["lock"]["who"] == "CI", (
        "the rival keeps it"
    )


def test_refresh_writes_only_once_a_third_of_the_ttl_has_passed() -> None:
    row, clock = Row(), Clock()
    held = lock(row, clock, "CI")
    held.acquire()
    writes = row.writes
    clock.now += timedelta(seconds=10)
    held.refresh()
    assert row.writes == writes
    clock.now += timedelta(seconds=15)
    held.refresh()
    assert row.writes == writes + 1
    expires = datetime.fromisoformat(
        row.row["metadata"]["litellm_reconciler"]["lock"]["expires_at"]  # type: ignore[index]
    )
    assert expires == clock.now + timedelta(seconds=60)
