"""One apply at a time per proxy: a lock kept on the proxy itself.

Two CI runners (or CI and a person) share nothing but the proxy, so the lock lives
there: a user row with a fixed id, ``litellm-reconciler-lock``, that no one can log in
as (no email, no password, no key, the least privileged role). Its metadata says who
holds the lock, since when and until when. Plans take no lock and never see this row.

LiteLLM offers no compare-and-swap, so taking the lock is: create the row when it does
not exist (``/user/new`` with an id that exists leaves the row unchanged on ≤1.80 and is
refused from 1.81, so the first creator's token stays), or, when it exists and is free or
expired, write our token and read it back after a short settling delay (the last writer
wins). Either way the token read back decides, and every other taker backs off. A holder
refreshes its expiry while it works, so only the lock of a killed apply expires, and only an
expired lock is ever broken.

The same row remembers, from one apply to the next, which actions failed and how: an
action the proxy refuses the same way on every run will not converge by re-running, and
the next run says so instead of "run apply again".
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .client import LiteLLMClient, LockLost, ProxyError

LOCK_USER_ID = "litellm-reconciler-lock"
_KEY = "litellm_reconciler"
#: Seconds between our write and the read that confirms it; a rival's write lands within it.
SETTLE_SECONDS = 1.0
_POLL_SECONDS = 2.0


class LockHeld(Exception):
    """Another apply holds the lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    token: str
    who: str
    acquired_at: str
    expires_at: str

    @classmethod
    def from_metadata(cls, metadata: Any) -> Holder | None:
        lock = ((metadata or {}).get(_KEY) or {}).get("lock") if isinstance(metadata, dict) else None
        if not isinstance(lock, dict) or not lock.get("token"):
            return None
        return cls(
            str(lock["token"]),
            str(lock.get("who") or "unknown"),
            str(lock.get("acquired_at") or "?"),
            str(lock.get("expires_at") or ""),
        )

    def expired(self, now: datetime) -> bool:
        try:
            return datetime.fromisoformat(self.expires_at) <= now
        except ValueError:
            return True  # an unreadable expiry cannot keep everyone out forever


def describe_runner(environ: Mapping[str, str] | None = None) -> str:
    """Who is applying, in words an operator recognises (the CI run, or user@host)."""
    environ = os.environ if environ is None else environ
    if environ.get("GITHUB_RUN_ID"):
        return (
            f"GitHub Actions run {environ['GITHUB_RUN_ID']} of {environ.get('GITHUB_REPOSITORY', '?')} "
            f"({environ.get('GITHUB_WORKFLOW', 'workflow')})"
        )
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pid {os.getpid()})"


class ApplyLock:
    """The proxy-wide apply lock; use ``acquire`` / ``refresh`` / ``release``."""

    def __init__(
        self,
        client: LiteLLMClient,
        who: str,
        ttl: float = 600.0,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sleep: Callable[[float], None] = time.sleep,
        settle: float = SETTLE_SECONDS,
    ):
        self.client = client
        self.who = who
        self.ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._settle = settle
        self._token = uuid.uuid4().hex
        self._acquired_at: datetime | None = None
        self._refreshed: datetime | None = None
        #: Failures remembered across runs ("kind address" -> detail, runs, since): read when the
        #: lock is taken, replaced by the run (``apply.remember_failures``), written on release.
        self.memory: dict[str, Any] = {}

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for a holder to finish; else ``LockHeld``."""
        give_up = self._clock() + timedelta(seconds=wait)
        while True:
            holder = self._try()
            if holder is None:
                return
            if self._clock() >= give_up:
                raise LockHeld(
                    f"another apply holds the lock on this proxy: {holder.who}, since {holder.acquired_at}, "
                    f"until {holder.expires_at} (renewed while it runs). "
                    "Nothing was changed. Wait for it, or pass --lock-timeout SECONDS to wait"
                )
            self._sleep(_POLL_SECONDS)

    def refresh(self) -> None:
        """Push the expiry forward once a third of the TTL has passed (call it between actions).

        Raises ``LockLost`` when another apply holds the lock now (ours expired: this run
        stalled past the TTL); the run must stop writing. A refresh that fails for another
        reason is not fatal: the lock keeps its expiry and the run goes on."""
        now = self._clock()
        if self._refreshed is None or (now - self._refreshed).total_seconds() < self.ttl / 3:
            return
        try:
            self._check_still_ours()
            self._write(self._ours(now))
        except LockLost:
            raise
        except ProxyError:
            pass

    def release(self) -> None:
        """Free the lock, leaving ``memory`` for the next run to compare; ``LockLost`` when it was
        no longer ours (then it is left to its holder). Goes out even past the run's deadline."""
        with self.client.past_deadline():
            self._check_still_ours()
            self._write({"lock": None, "failures": self.memory})

    def _check_still_ours(self) -> None:
        row = self.client.find_user(LOCK_USER_ID)
        current = Holder.from_metadata(row.get("metadata")) if row else None
        if current is not None and current.token != self._token:
            raise LockLost(
                "GET",
                "/user/list",
                None,
                f"the apply lock expired while this apply ran and {current.who} took it; this apply stopped writing",
            )

    # ------------------------------------------------------------------ internals

    def _ours(self, now: datetime) -> dict[str, Any]:
        self._refreshed = now
        lock = {
            "token": self._token,
            "who": self.who,
            "acquired_at": (self._acquired_at or now).isoformat(timespec="seconds"),
            "expires_at": (now + timedelta(seconds=self.ttl)).isoformat(timespec="seconds"),
        }
        return {"lock": lock, "failures": self.memory}

    def _try(self) -> Holder | None:
        """None when the lock is now ours; else who holds it."""
        now = self._clock()
        self._acquired_at = now
        row = self.client.find_user(LOCK_USER_ID)
        if row is None:
            try:
                self.client.create_user(
                    {
                        "user_id": LOCK_USER_ID,
                        "user_alias": "litellm-reconciler apply lock (not a person)",
                        "user_role": "internal_user_viewer",
                        "metadata": {_KEY: self._ours(now)},
                    }
                )
            except ProxyError as exc:
                if exc.status not in (400, 409):
                    raise
            with self.client.past_deadline():  # a lock written and never confirmed would block others
                return self._confirm(now)
        metadata = row.get("metadata") or {}
        failures = (metadata.get(_KEY) or {}).get("failures") if isinstance(metadata, dict) else None
        self.memory = dict(failures) if isinstance(failures, dict) else {}
        holder = Holder.from_metadata(metadata)
        if holder is not None and holder.token != self._token and not holder.expired(now):
            return holder
        self._write(self._ours(now))
        self._sleep(self._settle)
        with self.client.past_deadline():  # a lock written and never confirmed would block others
            return self._confirm(now)

    def _confirm(self, now: datetime) -> Holder | None:
        """Read the row back: ours, or the rival's whose write won."""
        row = self.client.find_user(LOCK_USER_ID)
        confirmed = Holder.from_metadata(row.get("metadata")) if row else None
        if confirmed is not None and confirmed.token == self._token:
            return None
        return confirmed or Holder(
            "?", "an apply that took it at the same moment", now.isoformat(timespec="seconds"), ""
        )

    def _write(self, state: dict[str, Any]) -> None:
        self.client.update_user({"user_id": LOCK_USER_ID, "metadata": {_KEY: state}})
