"""One apply at a time per proxy: a lock kept on the proxy itself.

Two CI runners (or CI and a person) share nothing but the proxy, so the lock lives there:
a user row with a fixed id, ``litellm-reconciler-lock``, that no one can log in as (no
email, no password, no key, the least privileged role). Its metadata says who holds the
lock (who, on which machine and process, in which GitHub Actions run), since when and until
when, and remembers from one apply to the next which actions failed and how: an action the
proxy refuses the same way on every run will not converge by re-running, and the next run
says so instead of "run apply again". Plans take no lock and never see this row.

LiteLLM offers no compare-and-swap, and a write may land seconds after it was sent. What its
database does arbitrate is a primary key: of several ``/user/new`` with one ``user_id``, one
row is made (1.80.5 answers 200 to the others and leaves the row as it is; 1.110.2 answers
409), and the token read back from the row tells whose. So every change of the lock row is
a move from one state to the next, each state named by a fresh ``version``:

1. whoever would move the lock from state ``v`` first creates the end row
   ``litellm-reconciler-lock-end-<v>``, naming the state it will write; one creator wins, the
   others back off (to wait, or to say who holds the lock);
2. the winner alone writes the lock row, once (never re-sent), reads it back until it shows
   the new state, then removes the end row.

No one else writes the lock row while the end row of its state exists, so a stalled write
can land only on the state it replaces, and timing decides nothing. Taking a free lock,
renewing it, releasing it and breaking it are all such moves; only the first lock row is
made by a plain ``/user/new``, and the same arbitration applies to it.

A holder renews its expiry as it works and confirms, with one read, that the lock is still
its own before each write phase (``confirm``); a lock is broken only when its holder is gone:
its process no longer exists on this machine, it is an earlier attempt of this GitHub
Actions run, it was not renewed before it expired, or an operator broke it by hand
(``litellm-reconciler lock --break TOKEN``). A broken holder stops at its next
confirmation: a write it already had in flight still lands.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .client import PAGE_SIZE, DeadlineExceeded, LiteLLMClient, LockLost, OutcomeUnknown, ProxyError

LOCK_USER_ID = "litellm-reconciler-lock"
#: The end rows of the lock's states (step 1 above) are named this plus the state's version.
END_PREFIX = f"{LOCK_USER_ID}-end-"
_KEY = "litellm_reconciler"
_ALIAS = "litellm-reconciler apply lock (not a person)"
#: Seconds between two reads of the lock row while waiting for it (a holder to finish, a write to show).
POLL_SECONDS = 2.0
#: Reads of the lock row after a write of ours whose answer was lost, before giving up on it.
_READ_BACKS = 5
#: Release attempts on a transient error (the proxy unreachable or failing) before it is left to a warning.
_RELEASE_ATTEMPTS = 3

log = logging.getLogger(__name__)


class LockHeld(Exception):
    """Another apply holds the lock; the message names it."""


class _Unconfirmed(ProxyError):
    """A write of the lock row whose answer was lost does not show: it may still land, so it is never re-sent."""


def is_lock_row(user_id: str) -> bool:
    """Whether a user row is the lock's (the lock row or an end row): never a person, never planned."""
    return user_id == LOCK_USER_ID or user_id.startswith(END_PREFIX)


@dataclass(frozen=True)
class Runner:
    """Who holds (or wants) the lock, and what tells whether that apply still runs."""

    who: str
    host: str
    #: The host, its boot and its PID namespace: a pid names the same process only where this is equal.
    machine: str
    pid: int
    #: GitHub Actions: (repository, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT); None elsewhere.
    run: tuple[str, str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        run = None if self.run is None else dict(zip(("repository", "id", "attempt"), self.run, strict=True))
        return {"who": self.who, "host": self.host, "machine": self.machine, "pid": self.pid, "github_run": run}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Runner:
        """A runner as recorded (by this version or an older one, which recorded only ``who``)."""
        run, pid = data.get("github_run"), data.get("pid")
        attempt = run.get("attempt") if isinstance(run, dict) else None
        return cls(
            str(data.get("who") or "unknown"),
            str(data.get("host") or "?"),
            str(data.get("machine") or ""),
            pid if isinstance(pid, int) else 0,
            (str(run.get("repository")), str(run.get("id")), attempt if isinstance(attempt, int) else 1)
            if isinstance(run, dict)
            else None,
        )

    def is_gone(self, here: Runner) -> bool:
        """Whether this runner's process has ended, as seen from ``here``: knowable on the same machine only."""
        if not self.machine or self.machine != here.machine or self.pid <= 0 or self.pid == here.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # EPERM: it exists, as another user's
            return False
        return False

    def rerun_by(self, here: Runner) -> bool:
        """Whether ``here`` is a later attempt of this runner's GitHub Actions run (which has therefore ended)."""
        return (
            self.run is not None and here.run is not None and self.run[:2] == here.run[:2] and here.run[2] > self.run[2]
        )


def describe_runner(environ: Mapping[str, str] | None = None) -> Runner:
    """This process as a lock holder: who, in words an operator recognises (the CI run, or user@host),
    on which machine, in which process and GitHub Actions run."""
    environ = os.environ if environ is None else environ
    host = socket.gethostname()
    run: tuple[str, str, int] | None = None
    if environ.get("GITHUB_RUN_ID"):
        attempt_text = environ.get("GITHUB_RUN_ATTEMPT", "1")
        attempt = int(attempt_text) if attempt_text.isdigit() else 1
        run = (environ.get("GITHUB_REPOSITORY", "?"), environ["GITHUB_RUN_ID"], attempt)
        who = (
            f"GitHub Actions run {run[1]} of {run[0]} ({environ.get('GITHUB_WORKFLOW', 'workflow')}, attempt {attempt})"
        )
    else:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        who = f"{user}@{host} (pid {os.getpid()})"
    return Runner(who, host, _machine(host), os.getpid(), run)


def _machine(host: str) -> str:
    """The host, its boot id and this process's PID namespace (Linux; elsewhere the host alone): two
    containers, or two boots, may share a hostname and reuse each other's pids."""
    parts = [host]
    readers: tuple[tuple[str, Callable[[str], str]], ...] = (
        ("/proc/sys/kernel/random/boot_id", lambda path: Path(path).read_text(encoding="ascii")),
        ("/proc/self/ns/pid", os.readlink),
    )
    for path, read in readers:
        try:
            parts.append(read(path).strip())
        except OSError:
            pass
    return "|".join(parts)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock (``token`` names this hold), since when and until when unless renewed."""

    token: str
    runner: Runner
    since: str
    until: str

    @property
    def who(self) -> str:
        return self.runner.who

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, **self.runner.to_dict(), "since": self.since, "until": self.until}

    @classmethod
    def from_dict(cls, data: Any) -> Holder | None:
        """The holder recorded, or None (free); an older version wrote ``acquired_at`` and ``expires_at``."""
        if not isinstance(data, dict) or not data.get("token"):
            return None
        since = data.get("since") or data.get("acquired_at") or "?"
        return cls(
            str(data["token"]),
            Runner.from_dict(data),
            str(since),
            str(data.get("until") or data.get("expires_at") or ""),
        )

    def expired(self, now: datetime) -> bool:
        try:
            return datetime.fromisoformat(self.until) <= now
        except ValueError:
            return True  # an unreadable expiry cannot keep everyone out forever


@dataclass(frozen=True)
class LockState:
    """What the lock row says: its ``version`` (new on every write), the holder (None: free), the
    failures remembered across runs, and how the last hold ended (``last``: who released or broke it, when, why)."""

    version: str
    holder: Holder | None
    failures: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] | None = None

    @property
    def end_id(self) -> str:
        """The end row whose creator alone may replace this state."""
        return END_PREFIX + self.version

    def metadata(self) -> dict[str, Any]:
        holder = None if self.holder is None else self.holder.to_dict()
        return {_KEY: {"version": self.version, "lock": holder, "last": self.last, "failures": self.failures}}

    @classmethod
    def from_row(cls, row: dict[str, Any] | None) -> LockState | None:
        """The state of the lock row, or None when there is no row. A row an older version wrote has no
        ``version``: its content names it, the same for everyone who reads it."""
        if row is None:
            return None
        metadata = row.get("metadata")
        state = metadata.get(_KEY) if isinstance(metadata, dict) else None
        state = state if isinstance(state, dict) else {}
        version = state.get("version")
        if not isinstance(version, str) or not version.isalnum():
            version = (
                "legacy" + hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:24]
            )
        failures = state.get("failures")
        last = state.get("last")
        return cls(
            version,
            Holder.from_dict(state.get("lock")),
            dict(failures) if isinstance(failures, dict) else {},
            dict(last) if isinstance(last, dict) else None,
        )


@dataclass(frozen=True)
class End:
    """An end row: the move out of state ``of`` into state ``by``, claimed by ``runner`` at ``at`` because ``why``."""

    of: str
    by: str
    runner: Runner
    at: str
    why: str

    def metadata(self) -> dict[str, Any]:
        end = {"of": self.of, "by": self.by, **self.runner.to_dict(), "at": self.at, "why": self.why}
        return {_KEY: {"end": end}}

    @classmethod
    def from_row(cls, row: dict[str, Any] | None) -> End | None:
        metadata = row.get("metadata") if row else None
        end = (metadata.get(_KEY) or {}).get("end") if isinstance(metadata, dict) else None
        if not isinstance(end, dict):
            return None
        return cls(
            str(end.get("of")), str(end.get("by")), Runner.from_dict(end), str(end.get("at")), str(end.get("why"))
        )

    def abandoned(self, here: Runner, now: datetime, ttl: float) -> bool:
        """Whether its creator will never finish the move: its process is gone, or a whole TTL has passed
        (its write of the lock row was lost). Only then may someone else remove it."""
        try:
            old = datetime.fromisoformat(self.at) + timedelta(seconds=ttl) <= now
        except ValueError:
            old = True
        return old or self.runner.is_gone(here)


@dataclass(frozen=True)
class _Taking:
    """Why the lock may be taken now, and what to tell the user about its holder (None: it was free)."""

    why: str
    notice: str | None = None


def _held_message(holder: Holder) -> str:
    """``LockHeld``'s message: who holds the lock, until when, and what to do."""
    return (
        f"another apply holds the lock on this proxy: {holder.who}, since {holder.since}, until {holder.until} "
        f"(renewed while it runs; token {holder.token}). Nothing was changed. Wait for it, or pass "
        f"--lock-timeout SECONDS to wait; if that apply is gone, 'litellm-reconciler lock --break {holder.token}' "
        "breaks its lock"
    )


def _storable(value: Any) -> Any:
    """``value`` as PostgreSQL's jsonb takes it: no NUL and no lone surrogate in any text. A failure's
    detail may echo the bad data that made it fail; the release that records it must not fail too."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _transient(exc: ProxyError) -> bool:
    """Worth another try: the proxy unreachable, failing or overloaded (not a refusal, not the run's deadline,
    not a lock write that may still land)."""
    if isinstance(exc, (_Unconfirmed, DeadlineExceeded)):
        return False
    return isinstance(exc, OutcomeUnknown) or exc.status is None or exc.status >= 500 or exc.status == 429


def _version() -> str:
    return uuid.uuid4().hex


class ApplyLock:
    """The proxy-wide apply lock: ``acquire``, then ``confirm`` before each write phase and ``refresh``
    between actions, then ``release``. Its methods may be called from several threads."""

    def __init__(
        self,
        client: LiteLLMClient,
        runner: Runner,
        ttl: float = 600.0,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sleep: Callable[[float], None] = time.sleep,
        settle: float = POLL_SECONDS,
    ):
        """``settle``: seconds between two reads of the lock row while waiting for it to settle (its holder
        to finish, a write of ours to show) and between two release attempts."""
        self.client = client
        self.runner = runner
        self.ttl = ttl
        self._clock = clock
        self._sleep = sleep
        self._settle = settle
        self.token = uuid.uuid4().hex
        #: The state this apply last wrote while it holds the lock; None when it does not (any more).
        self._held: LockState | None = None
        #: How the lock was lost, once it was: every later confirmation says the same.
        self._lost_error: LockLost | None = None
        self._renewed: datetime | None = None
        self._mutex = threading.RLock()
        #: Failures remembered across runs ("kind address" -> detail, runs, since): read when the
        #: lock is taken, replaced by the run (``apply.remember_failures``), written on release.
        self.memory: dict[str, Any] = {}

    # ------------------------------------------------------------------ reading

    def state(self) -> LockState | None:
        """The lock row as it is now (one read); None when no apply ever took the lock."""
        return LockState.from_row(self._rows(LOCK_USER_ID).get(LOCK_USER_ID))

    def takeable(self, state: LockState | None) -> str | None:
        """Why this apply could take the lock in ``state`` now (it is free, or its holder is gone); None
        while another apply holds it."""
        if state is None:
            return "no apply ever took it"
        taking = self._may_take(state, self._clock())
        return None if taking is None else taking.why

    def wait_until_free(self, wait: float) -> None:
        """Return once no other apply holds the lock, reading only the lock row, for up to ``wait``
        seconds; else ``LockHeld``. An apply plans after this: never while another one writes."""
        give_up = self._clock() + timedelta(seconds=wait)
        while self.takeable(state := self.state()) is None:
            assert state is not None and state.holder is not None
            if self._clock() >= give_up:
                raise LockHeld(_held_message(state.holder))
            self._sleep(self._settle)

    # ------------------------------------------------------------------ holding

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for its holder to finish; else ``LockHeld``.
        Breaking the lock of a holder that is gone says so (a warning line)."""
        give_up = self._clock() + timedelta(seconds=wait)
        with self._mutex:
            while (refusal := self._take()) is not None:
                if self._clock() >= give_up:
                    raise LockHeld(refusal)
                self._sleep(self._settle)

    def confirm(self) -> None:
        """``LockLost`` unless the lock is still this apply's: one read (a renewal when one is due). The
        executor calls it before each write phase and each record batch, so a broken holder stops there."""
        with self._mutex:
            if self._renewal_due():
                self._renew()
                return
            held = self._ours()
            rows = self._rows(LOCK_USER_ID, held.end_id)
            self._check(LockState.from_row(rows.get(LOCK_USER_ID)), End.from_row(rows.get(held.end_id)))

    def refresh(self) -> None:
        """Push the expiry forward once a third of the TTL has passed (call it between actions).

        ``LockLost`` when the lock is no longer this apply's (it was broken); the run must stop
        writing. A renewal that fails for another reason is tried again at the next call."""
        with self._mutex:
            if not self._renewal_due():
                return
            try:
                self._renew()
            except LockLost:
                raise
            except ProxyError as exc:
                log.info("the apply lock was not renewed this time: %s", exc)

    def release(self) -> None:
        """Free the lock, leaving ``memory`` on it for the next run. Goes out even past the run's deadline.

        ``LockLost`` when the lock was broken before it could be released (not reported again when
        ``confirm`` or ``refresh`` already did). Any other failure, after a few attempts on transient
        errors, is a warning line: the run's own outcome stays the one reported, and the next apply on
        this machine (or a re-run of this GitHub Actions run) takes the lock over at once."""
        with self._mutex:
            if self._held is None:
                return
            until = self._until
            with self.client.past_deadline():
                problem = self._release()
            self._held = None
        if isinstance(problem, LockLost):
            raise problem
        if problem is not None:
            log.warning(
                "could not release the apply lock (%s); the next apply on this machine takes it over at once, "
                "elsewhere it is broken after %s, or now with 'litellm-reconciler lock --break %s'",
                problem,
                until,
                self.token,
            )

    def break_lock(self, token: str) -> Holder:
        """Free the lock held by ``token`` whoever holds it (``litellm-reconciler lock --break``), noting on
        the lock row who broke it and when; the holder it had. ``ValueError`` (nothing changed) when the
        lock is not held by ``token``."""
        with self._mutex:
            state = self.state()
            holder = state.holder if state else None
            if state is None or holder is None or holder.token != token:
                now_held = f"held by {holder.who} (token {holder.token})" if holder else "free"
                raise ValueError(f"the apply lock is not held by {token} (it is {now_held}); nothing was changed")
            why = f"broken by hand with 'litellm-reconciler lock --break' by {self.runner.who}"
            free = LockState(_version(), None, state.failures, self._note("broken", holder, why))
            if self._transition(state, free, why) is not None:
                raise ValueError("the apply lock changed while it was being broken; nothing was changed: look again")
            return holder

    # ------------------------------------------------------------------ the protocol

    def _take(self) -> str | None:
        """One try: None when the lock is now this apply's, else why not (``LockHeld``'s message)."""
        rows = self._rows(LOCK_USER_ID)
        state = LockState.from_row(rows.get(LOCK_USER_ID))
        now = self._clock()
        if state is None:
            return self._create(now)
        taking = self._may_take(state, now)
        if taking is None:
            assert state.holder is not None
            return _held_message(state.holder)
        last = state.last if taking.notice is None else self._note("broken", state.holder, taking.why)
        mine = self._mine(now, now, state.failures, last)
        if self._transition(state, mine, taking.why) is not None:
            return self._beaten()
        self._took(mine, now)
        self.memory = dict(state.failures)
        if taking.notice:
            log.warning(taking.notice)
        self._collect(rows)
        return None

    def _create(self, now: datetime) -> str | None:
        """The very first lock row: made by one ``/user/new`` of the fixed id; the version read back says whose."""
        mine = self._mine(now, now, {}, None)
        self._create_row(LOCK_USER_ID, mine.metadata())
        created = self.state()
        if created is None:
            raise ProxyError("POST", "/user/new", None, "the lock row was not created; try again")
        if created.version != mine.version:
            return self._beaten()
        self._took(mine, now)
        self.memory = {}
        return None

    def _beaten(self) -> str:
        """Another apply took the lock at the same moment: who (read again)."""
        state = self.state()
        if state is not None and state.holder is not None:
            return _held_message(state.holder)
        return "another apply was taking or releasing the lock on this proxy at the same moment. Nothing was changed"

    def _may_take(self, state: LockState, now: datetime) -> _Taking | None:
        """Why this apply may take the lock in ``state`` (it is free, or its holder is gone); None: held."""
        holder = state.holder
        if holder is None:
            return _Taking("free")
        if holder.runner.rerun_by(self.runner):
            why = "an earlier attempt of the same GitHub Actions run held it"
            return _Taking(why, f"took over the apply lock of {holder.who}: {why} (token {holder.token})")
        if holder.runner.is_gone(self.runner):
            why = f"its process (pid {holder.runner.pid} on {holder.runner.host}) is gone"
            return _Taking(why, f"broke the apply lock of {holder.who}: {why} (token {holder.token})")
        if holder.expired(now):
            why = f"it expired at {holder.until} without being renewed"
            return _Taking(why, f"broke the apply lock of {holder.who}: {why} (token {holder.token})")
        return None

    def _renew(self) -> None:
        """Write the lock again with a later expiry (a move like any other); ``LockLost`` if it was broken."""
        held = self._ours()
        rows = self._rows(LOCK_USER_ID, held.end_id)
        current = LockState.from_row(rows.get(LOCK_USER_ID))
        self._check(current, End.from_row(rows.get(held.end_id)))
        assert current is not None and held.holder is not None
        now = self._clock()
        since = datetime.fromisoformat(held.holder.since)
        renewed = self._mine(now, since, _storable(self.memory), current.last)
        rival = self._transition(current, renewed, "renewed by its holder")
        if rival is not None:
            raise self._lost(rival, None)
        self._took(renewed, now)

    def _release(self) -> LockLost | ProxyError | None:
        """Move the lock to free, retrying transient errors; what went wrong, or None."""
        held = self._ours()
        free = LockState(_version(), None, _storable(self.memory), self._note("released", held.holder, "released"))
        error: ProxyError | None = None
        for attempt in range(_RELEASE_ATTEMPTS):
            if attempt:
                self._sleep(self._settle)
            try:
                rows = self._rows(LOCK_USER_ID, held.end_id)
                current = LockState.from_row(rows.get(LOCK_USER_ID))
                if current is not None and current.version == free.version:
                    return None  # an earlier attempt's write landed
                end = End.from_row(rows.get(held.end_id))
                if current is None or current.version != held.version or (end is not None and end.by != free.version):
                    return self._lost(end, current)
                rival = self._transition(current, free, "released")
                return None if rival is None else self._lost(rival, None)
            except ProxyError as exc:
                error = exc
                if not _transient(exc):
                    break
        return error

    def _transition(self, current: LockState, new: LockState, why: str) -> End | None:
        """Replace ``current`` by ``new`` on the lock row: None once done; else the end row that stands in
        the way (whoever created it moves the lock instead). See the module's docstring."""
        now = self._clock()
        mine = End(current.version, new.version, self.runner, now.isoformat(timespec="seconds"), why)
        self._create_row(current.end_id, mine.metadata())
        rows = self._rows(LOCK_USER_ID, current.end_id)
        state, end = LockState.from_row(rows.get(LOCK_USER_ID)), End.from_row(rows.get(current.end_id))
        if end is None:
            raise ProxyError("POST", "/user/new", None, "the lock's end row was not created; try again")
        if end.by != new.version:
            if state is not None and state.version == current.version and end.abandoned(self.runner, now, self.ttl):
                self._delete_row(current.end_id)  # its creator will never finish: the next try competes afresh
            return end
        if state is None or state.version != current.version:
            self._delete_row(current.end_id)  # made anew after that state had gone: ours means nothing
            return End(current.version, "", self.runner, mine.at, "the lock changed meanwhile")
        self._write(current, new)
        self._delete_row(current.end_id)
        return None

    def _write(self, current: LockState, new: LockState) -> None:
        """Write the lock row once and read it back until it shows ``new``. A write refused outright (or
        never sent) frees the end row; one that went out is never sent again, as it may still land: when
        it does not show, ``_Unconfirmed``."""
        body = {"user_id": LOCK_USER_ID, "metadata": new.metadata()}
        try:
            self.client.post("/user/update", body, retry_refused=False)
        except OutcomeUnknown:
            pass
        except ProxyError:
            self._delete_row(current.end_id)
            raise
        try:
            for attempt in range(_READ_BACKS):
                if attempt:
                    self._sleep(self._settle)
                shown = self.state()
                if shown is not None and shown.version == new.version:
                    return
        except ProxyError as exc:
            raise _Unconfirmed("POST", "/user/update", None, f"the lock row was not read back: {exc}") from None
        raise _Unconfirmed("POST", "/user/update", None, "the lock row does not show the write whose answer was lost")

    def _check(self, current: LockState | None, end: End | None) -> None:
        """``LockLost`` unless ``current`` is the state this apply wrote and no one is moving it."""
        held = self._ours()
        if current is not None and current.version == held.version and end is None:
            return
        raise self._lost(end, current)

    def _lost(self, end: End | None, current: LockState | None) -> LockLost:
        """The lock is no longer this apply's: who broke it, when and why, from their end row or their note."""
        if end is not None and end.by:
            told = f"was broken at {end.at} by {end.runner.who}: {end.why}"
        elif current is not None and current.last and current.last.get("token") == self.token:
            told = f"was broken at {current.last.get('at')} by {current.last.get('who')}: {current.last.get('why')}"
        else:
            holder = current.holder if current else None
            told = f"is no longer this apply's (it is {'held by ' + holder.who if holder else 'free'})"
        self._held = None
        self._lost_error = LockLost(
            "GET", "/user/list", None, f"this apply's lock on the proxy {told}; this apply stopped writing"
        )
        return self._lost_error

    # ------------------------------------------------------------------ bookkeeping

    def _ours(self) -> LockState:
        """The state this apply holds; else how it lost the lock (or that it never held it)."""
        if self._held is None:
            raise self._lost_error or LockLost("GET", "/user/list", None, "this apply does not hold the lock")
        return self._held

    @property
    def _until(self) -> str:
        holder = self._held.holder if self._held else None
        return holder.until if holder else "?"

    def _mine(self, now: datetime, since: datetime, failures: dict[str, Any], last: dict[str, Any] | None) -> LockState:
        until = now + timedelta(seconds=self.ttl)
        holder = Holder(
            self.token, self.runner, since.isoformat(timespec="seconds"), until.isoformat(timespec="seconds")
        )
        return LockState(_version(), holder, failures, last)

    def _took(self, state: LockState, now: datetime) -> None:
        self._held = state
        self._renewed = now

    def _renewal_due(self) -> bool:
        return self._renewed is not None and (self._clock() - self._renewed).total_seconds() >= self.ttl / 3

    def _note(self, event: str, holder: Holder | None, why: str) -> dict[str, Any]:
        """How a hold ended, for the lock row: what, whose (``holder``, ``token``), by whom, when, why."""
        return {
            "event": event,
            "holder": holder.who if holder else None,
            "token": holder.token if holder else None,
            "who": self.runner.who,
            "at": self._clock().isoformat(timespec="seconds"),
            "why": why,
        }

    def _collect(self, rows: dict[str, dict[str, Any]]) -> None:
        """Remove end rows left by moves that were interrupted (all of them belong to states that are gone)."""
        for user_id in rows:
            if user_id.startswith(END_PREFIX):
                self._delete_row(user_id)

    # ------------------------------------------------------------------ rows

    def _rows(self, *ids: str) -> dict[str, dict[str, Any]]:
        """The rows with these ids, by id: several ids are matched exactly; one id is a search on the
        LiteLLM versions measured (1.80.5, 1.110.2), so the lock row comes with its end rows."""
        body = self.client.get("/user/list", user_ids=",".join(ids), page_size=PAGE_SIZE)
        users = body.get("users") if isinstance(body, dict) else None
        return {
            str(u["user_id"]): u
            for u in users or []
            if isinstance(u, dict) and isinstance(u.get("user_id"), str) and is_lock_row(u["user_id"])
        }

    def _create_row(self, user_id: str, metadata: dict[str, Any]) -> None:
        """``/user/new`` of a lock row: an existing id is refused (≥1.81) or left as it is (≤1.80), and an
        answer lost is as good as any: whoever reads the row back learns whose it is."""
        try:
            self.client.create_user(
                {"user_id": user_id, "user_alias": _ALIAS, "user_role": "internal_user_viewer", "metadata": metadata}
            )
        except OutcomeUnknown:
            pass
        except ProxyError as exc:
            if exc.status not in (400, 409):
                raise

    def _delete_row(self, user_id: str) -> None:
        """Remove an end row; one that is gone already, or a removal that fails, leaves it to the next taker."""
        try:
            self.client.delete_user(user_id)
        except ProxyError as exc:
            log.info("the lock's end row %s stays: %s", user_id, exc)
