"""The executor: carries out exactly the actions of a Plan, in order, and reports each one.

Rules:

* The plan runs phase by phase (teams, users, memberships, invitations, removals). Within a
  phase, independent writes go out concurrently, at most ``client.parallelism`` at once.
  What LiteLLM cannot take concurrently stays serialized: roster writes (concurrent
  membership writes lose team members, and removals rewrite rosters too), so memberships
  of one team that are ready together go out as one ``/team/member_add``, one team after
  another, and removals run one at a time.
* An action whose dependency did not succeed is skipped; independent actions go on.
* A write whose outcome is unknown is never re-sent: the object is read back and
  the action counts as done only if the proxy shows it.
* A link is crash-safe: the intent is recorded on the user before ``/invitation/new``, the
  link is handed to the courier (report on disk, email) the moment it exists, then its id is
  recorded sealed with how it was delivered. A leftover intent tells the next run a link may
  exist that nobody recorded. Links go in batches of ``BULK_SIZE``: one ``/user/bulk_update``
  records the intents of a batch, and one its links.
* The run's deadline stops it: what is left is skipped. Failures are remembered across runs
  (on the lock row) to tell a write that will never pass from one that may.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from .attribution import LAST_CHANGE_KEY, Attribution
from .client import (
    BULK_SIZE,
    DeadlineExceeded,
    LiteLLMClient,
    OutcomeUnknown,
    ProxyError,
)
from .kinds import INVITING, SERIAL
from .live import (
    GRANTS_KEY,
    INVITATION_DAYS,
    MEMBER_BUDGET,
    OWNER_KEY,
    LiveUser,
    RecordedInvitation,
    expired_before,
    member_budgets_from_api,
    organization_from_api,
    parse_time,
    start_of_day,
    team_from_api,
    utc_date,
)
from .onboarding import InvitationRecord, onboarding_link
from .plan import Action, Plan
from .sealing import UNOPENABLE_HINT, Sealer

Status = Literal["done", "failed", "skipped"]


@dataclass(frozen=True)
class ActionResult:
    address: str
    kind: str
    status: Status
    detail: str = ""
    #: The HTTP status of the proxy's refusal, when it refused (judges whether a re-run can help).
    http_status: int | None = None


@dataclass
class ApplyReport:
    results: list[ActionResult] = field(default_factory=list)
    invitations: list[InvitationRecord] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0 and self.count("skipped") == 0

    def summary_line(self) -> str:
        return (
            f"Apply complete: {self.count('done')} done, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped."
        )


def _waves(actions: tuple[Action, ...]) -> list[list[Action]]:
    """The plan cut into waves: adjacent actions of one kind, none depending on another of
    the same wave. A wave finishes before the next starts, so every dependency is settled."""
    waves: list[list[Action]] = []
    addresses: set[str] = set()
    for action in actions:
        if waves and waves[-1][0].kind == action.kind and not addresses.intersection(action.depends_on):
            waves[-1].append(action)
        else:
            waves.append([action])
            addresses = set()
        addresses.add(action.address)
    return waves


def _team_batches(members: list[Action]) -> list[list[Action]]:
    """Memberships by team, in plan order: one ``/team/member_add`` per team (no lost members), or
    one per role and member budget in it (the call gives all its members the same budget)."""
    batches: dict[tuple[str, str, float | None], list[Action]] = {}
    for action in members:
        p = action.params
        batches.setdefault((p["team_id"], p.get("role", "user"), p.get("max_budget_in_team")), []).append(action)
    return list(batches.values())


#: What one action came to: outcome, detail, and the HTTP status of a refusal (judges whether a re-run can help).
Outcome = tuple[Status, str, int | None]
_PAST_DEADLINE: Outcome = ("skipped", "the run's deadline passed before this action", None)


@dataclass
class _NeedsLink:
    """An invitation action whose checks are done and which now needs a new link; ``note``
    says what the checks already did (e.g. deleted an exposed link)."""

    note: str = ""


@dataclass
class _Pending:
    """One new link of a batch, between its intent and its record."""

    action: Action
    note: str
    metadata: dict[str, Any]
    owned: dict[str, Any]
    invitation: dict[str, Any] | None = None
    record: InvitationRecord | None = None
    outcome: Outcome | None = None
    #: Set once a link queued for recording has its outcome (its record went out, or failed to).
    settled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class UsedLink:
    """A recorded link the user has accepted, still open on the proxy: on LiteLLM before 1.83 it
    logs in and resets the password again until it expires, so its job done, it is deleted."""

    user_id: str
    email: str
    invitation_id: str
    accepted_at: str | None


def used_links(
    client: LiteLLMClient, users: list[LiveUser], sealer: Sealer, midnight: datetime, skip: frozenset[str]
) -> list[UsedLink]:
    """The open links among ``users``' records (sealed, not expired, acceptance not recorded) that
    the proxy says were accepted; ``skip``: users whose invitation the plan handles. Reads one
    ``/invitation/info`` per open link (links live seven days: the users onboarding this week)."""
    open_links = []
    for user in users:
        record = user.invitation
        if user.user_id in skip or record is None or record.accepted_at or record.intent_at:
            continue
        if record.sealed is None or expired_before(record.expires_at, midnight):
            continue
        invitation_id = sealer.open(record.sealed, user.user_id)
        if invitation_id is not None:
            open_links.append((user, invitation_id))

    def accepted(pair: tuple[LiveUser, str]) -> UsedLink | None:
        user, invitation_id = pair
        info = client.invitation_info(invitation_id)
        if info is None or not info.get("is_accepted"):
            return None
        return UsedLink(user.user_id, user.email or user.user_id, invitation_id, info.get("accepted_at"))

    return [link for link in client.concurrently(accepted, open_links) if link is not None]


#: How far the proxy's clock may be behind this machine's when a link is matched to an intent.
_CLOCK_SKEW = timedelta(minutes=5)


class Courier(Protocol):
    def hand_over(self, record: InvitationRecord) -> str:
        """Deliver a link the moment it exists; say how: ``reported``, ``emailed`` or ``email_failed``."""

    def note(self, record: InvitationRecord) -> None:
        """Put a record without a link (an unrecorded one) where the links go."""

    def sync(self) -> None:
        """Make everything handed over so far survive a crash of the machine (called before
        links are recorded on the proxy: a recorded link is never one only memory held)."""

    def reported(self, user_id: str) -> list[str]:
        """The invitation ids handed over for this user earlier (by any run), newest first."""

    def requesting(self, email: str, user_id: str | None, run: str) -> None:
        """Put down, before ``/invitation/new`` is sent, that run ``run`` asks for this user's link (no
        user: that the run begins, before its first intent)."""

    def asked(self, user_id: str, run: str | None) -> bool | None:
        """Whether run ``run`` asked for this user's link; None when that is not known (then one may exist)."""


class _Nowhere:
    """No report, no email: for callers that only want the actions (tests, benchmarks)."""

    def hand_over(self, record: InvitationRecord) -> str:
        return "reported"

    def note(self, record: InvitationRecord) -> None:
        pass

    def sync(self) -> None:
        pass

    def reported(self, user_id: str) -> list[str]:
        return []

    def requesting(self, email: str, user_id: str | None, run: str) -> None:
        pass

    def asked(self, user_id: str, run: str | None) -> bool | None:
        return None


class Executor:
    def __init__(
        self,
        client: LiteLLMClient,
        ui_base: str,
        on_result: Callable[[ActionResult], None] = lambda r: None,
        metadata: dict[str, dict[str, Any]] | None = None,
        team_metadata: dict[str, dict[str, Any]] | None = None,
        sealer: Sealer | None = None,
        courier: Courier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        attribution: Attribution | None = None,
        before_writes: Callable[[], None] = lambda: None,
    ):
        """``metadata``: each user's metadata as read for the plan (user_id -> dict). The
        plan was made from that very snapshot (or a saved plan was checked against it), so
        merging into it is safe and saves one read per invitation. ``sealer``: needed by
        any plan that invites (see ``sealing``); the caller checks that up front.
        ``courier``: hands each new link over (report, email) before it is recorded. ``attribution``:
        who caused this run, recorded as ``last_change`` on every object it writes the metadata of.
        ``before_writes``: called before each write phase and each batch of link records (the apply
        lock's ``confirm``: raises ``LockLost`` once another apply holds the lock, and nothing more starts)."""
        self.client = client
        self.ui_base = ui_base
        self.on_result = on_result
        self._metadata = dict(metadata or {})
        self._team_metadata = dict(team_metadata or {})
        self._sealer = sealer
        self._courier = courier or _Nowhere()
        self._clock = clock
        self._attribution = attribution or Attribution.from_env()
        self._before_writes = before_writes
        self._inviting: frozenset[str] = frozenset()
        #: Marks this run's intents: an undo touches only a record that still carries it.
        self._run = uuid.uuid4().hex[:12]
        #: Users whose intent to invite this run has recorded (any other intent is an interrupted run's).
        self._intents: set[str] = set()
        #: The invitation record each intent replaced (None: there was none), to put back when
        #: no link was asked for after all, so the next run reports no phantom "unrecorded" link.
        self._before_intent: dict[str, dict[str, Any] | None] = {}
        #: One link handed over at a time: the report is one file, the mailer one connection.
        self._courier_lock = threading.Lock()
        #: Set when the run's deadline stopped an action: the waves after it are skipped.
        self._stopped = False

    def run(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        status: dict[str, Status] = {}

        def finish(action: Action, outcome: Status, detail: str = "", http_status: int | None = None) -> None:
            status[action.address] = outcome
            result = ActionResult(action.address, action.kind, outcome, detail, http_status)
            report.results.append(result)
            self.on_result(result)

        def blocked(action: Action) -> str | None:
            bad = [d for d in action.depends_on if status.get(d, "done") != "done"]
            return f"{', '.join(bad)} did not succeed" if bad else None

        self._inviting = frozenset(a.params["user_id"] for a in plan.actions if a.kind in INVITING)
        if self._inviting:  # before the first intent: the report knows from here which links this run asked for
            with self._courier_lock:
                self._courier.requesting("", None, self._run)
        waves = _waves(plan.actions)
        for n, wave in enumerate(waves):
            ready = []
            for action in wave:
                why = blocked(action)
                if why is None:
                    ready.append(action)
                    continue
                finish(action, "skipped", why)
                if action.kind in INVITING:
                    report.invitations.append(self._record(action, None, "skipped", why))
                    self._undo_intent(action.params["user_id"])
            if ready:
                self._before_writes()
            for action, (outcome, detail, http_status) in self._run_wave(ready, report):
                finish(action, outcome, detail, http_status)
            if self._stopped:
                for action in (a for later in waves[n + 1 :] for a in later):
                    finish(action, "skipped", "the run's deadline passed before this action")
                break
        report.invitations.sort(key=lambda record: record.email.lower())
        return report

    def _run_wave(self, wave: list[Action], report: ApplyReport) -> Iterator[tuple[Action, Outcome]]:
        """(action, outcome) pairs of one wave, in plan order, as they become known."""
        if not wave:
            return
        kind = wave[0].kind
        if kind == "add_member":
            for batch in _team_batches(wave):
                yield from zip(batch, self._granted("teams", batch, self._add_members(batch)))
        elif kind in INVITING:
            yield from self._invite_all(wave, report)
        elif kind in SERIAL:
            for action in wave:
                yield action, self._outcome(action, report)
        else:  # one at a time too when the parallelism is 1
            yield from zip(wave, self.client.concurrently(lambda a: self._outcome(a, report), wave))

    def _outcome(self, action: Action, report: ApplyReport) -> Outcome:
        """One action's outcome; a deadline fails it and skips everything not yet started."""
        if self._stopped:
            return _PAST_DEADLINE
        try:
            result = self._execute(action, report)
        except DeadlineExceeded as exc:
            self._stopped = True
            return "failed", str(exc), None
        assert not isinstance(result, _NeedsLink), "invitations run in batches"
        return result

    # ------------------------------------------------------------------ one action

    def _execute(self, action: Action, report: ApplyReport) -> Outcome | _NeedsLink:
        """(outcome, detail, HTTP status of a refusal), or an invitation's need of a new link;
        ``DeadlineExceeded`` stops the run."""
        handler = getattr(self, f"_do_{action.kind}")
        try:
            result = handler(action, report)
            return result if isinstance(result, _NeedsLink) else (*result, None)
        except DeadlineExceeded:
            raise
        except OutcomeUnknown as exc:
            try:
                confirmed = self._read_back(action)
            except DeadlineExceeded:
                raise
            except ProxyError as read_error:
                return (
                    "failed",
                    f"{exc}; reading back failed too ({read_error}); not re-sent, the next plan will tell",
                    None,
                )
            if confirmed:
                return "done", "confirmed by reading back after the response was lost", None
            return "failed", f"{exc}; not re-sent; re-run to converge", None
        except ProxyError as exc:
            return "failed", str(exc), exc.status

    def _read_back(self, action: Action) -> bool:
        p = action.params
        if action.kind in ("create_team", "update_team"):
            team = self.client.team_info(p["team_id"])
            if team is None:
                return False
            # Settings as the snapshot reads them (some live in the metadata), the rest as sent.
            have = {**team, **team_from_api(team).settings}
            return all(have.get(k) == v for k, v in p.items() if k not in ("metadata",))
        if action.kind in ("create_user", "update_user", "create_inviter"):
            user = self.client.find_user(p["user_id"])
            return user is not None and all(user.get(k) == v for k, v in p.items() if k not in ("metadata",))
        if action.kind == "delete_user":
            return self.client.find_user(p["user_id"]) is None
        if action.kind == "delete_team":
            return self.client.team_info(p["team_id"]) is None
        if action.kind == "remove_member":
            team = self.client.team_info(p["team_id"])
            return team is None or p["user_id"] not in team_from_api(team).member_ids
        if action.kind in ("add_org_member", "update_org_member", "remove_org_member"):
            info = self.client.organization_info(p["organization_id"])
            roles = organization_from_api(info).member_roles if info else {}
            return roles.get(p["user_id"]) == p.get("role")  # removed: None on both sides
        if action.kind == "delete_organization":
            return self.client.organization_info(p["organization_id"]) is None
        if action.kind == "update_member":
            info = self.client.team_info_full(p["team_id"])
            if info is None:
                return False
            roles = team_from_api(info.get("team_info") or {"team_id": p["team_id"]}).member_roles
            if p["user_id"] not in roles:
                return False
            budget = member_budgets_from_api(info).get(p["user_id"], {})
            return p.get("role", roles[p["user_id"]]) == roles[p["user_id"]] and all(
                budget.get(name) == p[name] for name in MEMBER_BUDGET if name in p
            )
        return False  # invitations cannot be listed; a lost /invitation/new is reported as failed

    def _do_create_inviter(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        try:
            self.client.create_user(action.params)
        except ProxyError as exc:
            if exc.status in (400, 409) and "already exists" in exc.message:
                return "done", "already existed"
            raise
        return "done", ""

    def _do_create_organization(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        metadata = self._stamped(action.params.get("metadata") or {})
        self.client.create_organization({**action.params, "metadata": metadata})
        return "done", f"organization_id {action.params['organization_id']}"

    def _do_update_organization(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.update_organization(action.params)
        return "done", ""

    def _do_adopt_organization(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        organization_id = action.params["organization_id"]
        found = self.client.organization_info(organization_id) or {}
        metadata = found.get("metadata") if isinstance(found.get("metadata"), dict) else {}
        adopted = self._stamped(_adopted(metadata))
        self.client.update_organization({"organization_id": organization_id, "metadata": adopted})
        return "done", "ownership recorded"

    def _do_create_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.create_team({**action.params, "metadata": self._stamped(action.params.get("metadata") or {})})
        return "done", f"team_id {action.params['team_id']}"

    def _do_update_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        settings = dict(action.params)
        permissions = settings.pop("team_member_permissions", None)
        if permissions is not None:  # only this endpoint changes them; /team/update ignores them
            self.client.update_team_permissions(settings["team_id"], permissions)
        if len(settings) == 1:  # the team_id alone: nothing else to update
            return "done", ""
        # LiteLLM may write into the team's metadata (member limits): adoption reads it again.
        self._team_metadata.pop(settings["team_id"], None)
        return _unless_ignored(settings, self.client.update_team(settings))

    def _do_create_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        params = {**action.params, "metadata": self._stamped(action.params.get("metadata") or {})}
        user_id = params["user_id"]
        if user_id in self._inviting:
            # The intent to invite rides along with the user row: no extra request.
            owned = {**params["metadata"][OWNER_KEY], "invitation": self._intent()}
            params = {**params, "metadata": {**params["metadata"], OWNER_KEY: owned}}
            self._intents.add(user_id)
            self._before_intent[user_id] = None
        self.client.create_user(params)
        self._metadata[user_id] = dict(params.get("metadata") or {})
        return "done", f"user_id {user_id}"

    def _do_update_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        return _unless_ignored(action.params, self.client.update_user(action.params))

    def _do_adopt_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        user_id = action.params["user_id"]
        metadata, _ = self._owned_metadata(user_id)
        # From here on its grants are tracked: the memberships it already has were given by others.
        self._write_metadata(user_id, _adopted(metadata, **{GRANTS_KEY: {}}))
        return "done", "ownership recorded"

    def _do_adopt_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        team_id = action.params["team_id"]
        if team_id not in self._team_metadata:  # not from the plan's snapshot: read it, never clobber it
            team = self.client.team_info(team_id)
            self._team_metadata[team_id] = dict((team or {}).get("metadata") or {})
        adopted = self._stamped(_adopted(self._team_metadata[team_id]))
        self.client.update_team({"team_id": team_id, "metadata": adopted})
        return "done", "ownership recorded"

    def _do_remove_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.remove_member(action.params["team_id"], action.params["user_id"])
        return "done", self._record_grant("teams", action.params["team_id"], [action.params["user_id"]], False)

    def _do_update_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.update_member({k: v for k, v in action.params.items() if k not in ("team_alias", "user_email")})
        return "done", ""

    def _do_add_org_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        p = action.params
        self.client.add_organization_member(p["organization_id"], p["user_id"], p["role"])
        return "done", self._record_grant("organizations", p["organization_id"], [p["user_id"]], True)

    def _do_update_org_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        p = action.params
        self.client.update_organization_member(p["organization_id"], p["user_id"], p["role"])
        return "done", ""

    def _do_remove_org_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        p = action.params
        self.client.remove_organization_member(p["organization_id"], p["user_id"])
        return "done", self._record_grant("organizations", p["organization_id"], [p["user_id"]], False)

    # ------------------------------------------------------------------ provenance of memberships

    def _granted(self, kind: str, batch: list[Action], outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes of one batch of new memberships, each one made recorded as this tool's grant."""
        made = [a.params["user_id"] for a, (status, _, _) in zip(batch, outcomes) if status == "done"]
        note = self._record_grant(kind, batch[0].params["team_id"], made, True) if made else ""
        return [
            (status, detail or note, code) if status == "done" else (status, detail, code)
            for status, detail, code in outcomes
        ]

    def _record_grant(self, kind: str, group_id: str, user_ids: list[str], granted: bool) -> str:
        """Record (or, ``granted=False``, take back) that this tool gave these users their membership of a
        team or organization (``kind``: ``teams`` or ``organizations``), in each user's metadata as the
        proxy has it now (one read per 100 users, one write per 500). Users whose grants are not tracked
        (owned before this tool recorded grants) are left alone: every membership of theirs counts as
        the tool's. A failure does not undo the membership: it is said ("" when all went well)."""
        try:
            current = self._fresh(user_ids)
            writes = {}
            for user_id, metadata in current.items():
                metadata, owned = _split(metadata)
                record = owned.get(GRANTS_KEY)
                if not isinstance(record, dict):
                    continue
                held = set(record.get(kind) or ())
                if (group_id in held) == granted:
                    continue  # recorded already (a user this run created carries its grants from the start)
                held = held | {group_id} if granted else held - {group_id}
                owned[GRANTS_KEY] = {**record, kind: sorted(held)}
                writes[user_id] = {**metadata, OWNER_KEY: owned}
            errors = self._write_many(writes) if writes else {}
        except ProxyError as exc:
            return f"not recorded as granted by this tool ({exc})"
        failed = [user_id for user_id, error in errors.items() if error]
        return f"not recorded as granted by this tool for {', '.join(failed)}" if failed else ""

    def _do_delete_organization(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.delete_organization(action.params["organization_id"])
        return "done", ""

    def _do_delete_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.delete_user(action.params["user_id"])
        return "done", "deleted with its keys and onboarding links"

    def _do_delete_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.delete_team(action.params["team_id"])
        return "done", "deleted with its keys"

    def _owned_metadata(self, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The user's metadata and this tool's part of it, to merge into (other keys are kept).

        Known from the snapshot or from this run's own writes; otherwise read now."""
        if user_id not in self._metadata:
            user = self.client.find_user(user_id)
            if user is None:
                raise ProxyError("GET", "/user/list", 200, f"user {user_id} is not on the proxy")
            self._metadata[user_id] = dict(user.get("metadata") or {})
        metadata = dict(self._metadata[user_id])
        owned = metadata.get(OWNER_KEY)
        return metadata, dict(owned) if isinstance(owned, dict) else {}

    def _do_create_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str] | _NeedsLink:
        """A new link, unless an earlier apply made one it did not record and the onboarding report
        holds it: that link is recorded instead (the user already has it; a second would be one more
        credential nobody tracks)."""
        user_id = action.params["user_id"]
        _, owned = self._owned_metadata(user_id)
        record = owned.get("invitation") or {}
        # An intent of this very run (a user it just created) left no link behind: nothing to look for.
        earlier = record.get("intent_run") != self._run
        intent_at = parse_time(record.get("intent_at")) if earlier else None
        found = self._reported_link(user_id, intent_at) if intent_at is not None else None
        if found is None:
            return _NeedsLink()
        metadata, owned = _split(self._fresh([user_id]).get(user_id) or {})
        owned["invitation"] = {
            "sealed": self._require_sealer().seal(str(found["id"]), user_id),
            "created_at": found.get("created_at"),
            "expires_at": found.get("expires_at"),
            "delivery": "reported",
        }
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        return "done", (
            f"recorded the link an earlier apply made and put in the onboarding report "
            f"(valid until {utc_date(found.get('expires_at'))}); no new link"
        )

    def _reported_link(self, user_id: str, intent_at: datetime) -> dict[str, Any] | None:
        """The invitation the report holds for this user that was made after ``intent_at`` (a few
        minutes of clock skew allowed) and still works, as the proxy describes it."""
        for invitation_id in self._courier.reported(user_id):
            info = self.client.invitation_info(invitation_id)
            made = parse_time((info or {}).get("created_at"))
            if info is None or info.get("user_id") != user_id or made is None:
                continue
            if made >= intent_at - _CLOCK_SKEW and not info.get("is_accepted"):
                if not expired_before(info.get("expires_at"), start_of_day(self._clock())):
                    return info
        return None

    def _do_renew_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str] | _NeedsLink:
        """An expired link: record its acceptance if the user accepted it, else invite again."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        record = RecordedInvitation.from_metadata(owned.get("invitation"))
        invitation_id = self._require_sealer().open(record.sealed, user_id) if record else None
        info = self.client.invitation_info(invitation_id) if invitation_id else None
        if info is not None and info.get("is_accepted"):
            return self._record_acceptance(user_id, metadata, owned, info.get("accepted_at"))
        return _NeedsLink()

    def _do_replace_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str] | _NeedsLink:
        """A link recorded in plain text (readable by read-only keys): delete it on the proxy,
        then record the acceptance, or invite again with a sealed id."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        record = RecordedInvitation.from_metadata(owned.get("invitation"))
        exposed = record.exposed_id if record else None
        info = self.client.invitation_info(exposed) if exposed else None
        if exposed and info is not None:
            self.client.delete_invitation(exposed)
        accepted_at = record.accepted_at if record else None
        if accepted_at is None and info is not None and info.get("is_accepted"):
            accepted_at = info.get("accepted_at") or "unknown"
        if accepted_at is not None:
            return self._record_acceptance(user_id, metadata, owned, accepted_at, "the exposed link was deleted")
        return _NeedsLink("the exposed link was deleted")

    def _do_reseal_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        """An id sealed the old way: sealed again under the current derivation. One that this key
        cannot open is dropped where its link is done (accepted or expired: nothing needs the id,
        and it would only help guess the key), else reported with what to do."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        record = dict(owned.get("invitation") or {})
        invitation_id = self._require_sealer().open(record.get("sealed"), user_id)
        if invitation_id is not None:
            record["sealed"] = self._require_sealer().seal(invitation_id, user_id)
            detail = "sealed again"
        elif record.get("accepted_at") or expired_before(record.get("expires_at"), start_of_day(self._clock())):
            del record["sealed"]
            detail = "sealed under another key and no longer needed (the link is done): dropped"
        else:
            return "failed", f"{UNOPENABLE_HINT}; nothing was changed"
        owned["invitation"] = record
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        return "done", detail

    def _do_deliver_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str] | _NeedsLink:
        """A recorded link whose delivery failed: hand it over again (a new one if it cannot be opened)."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        recorded = RecordedInvitation.from_metadata(owned.get("invitation"))
        invitation_id = self._require_sealer().open(recorded.sealed, user_id) if recorded else None
        if recorded is None or invitation_id is None:
            return _NeedsLink()
        record = self._record(action, {"id": invitation_id, "expires_at": recorded.expires_at}, "redelivered")
        report.invitations.append(record)
        delivery = self._hand_over(record)
        self._sync_courier()
        owned["invitation"] = {**owned["invitation"], "delivery": delivery}
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        return "done", f"delivered again ({delivery})"

    # ------------------------------------------------------------------ new links, in batches

    def _invite_all(self, wave: list[Action], report: ApplyReport) -> Iterator[tuple[Action, Outcome]]:
        """Invitation actions of one kind, in batches of ``BULK_SIZE``.

        For each batch: each action's checks run first (concurrently). Those that need a new
        link then have their intents recorded (one ``/user/bulk_update``; new users recorded
        theirs when created), then their links are asked for (concurrently), each handed over
        the moment it exists and queued for recording. Records go out by group commit: while
        one record write is in flight, the links made meanwhile gather and go together when it
        returns. A crash therefore leaves about ``parallelism`` links handed over but not
        recorded (which the next run reports and, with the report kept, records), not a batch.
        The next batch's links are asked for while earlier records are still going out (up to
        ``parallelism - 1`` batches behind)."""
        depth = max(self.client.parallelism - 1, 1)
        waiting: deque[tuple[list[Action], list[Outcome | _Pending]]] = deque()
        with _GroupCommit(self._record_links, self.client) as commit:
            for start in range(0, len(wave), BULK_SIZE):
                batch = wave[start : start + BULK_SIZE]
                if not self._stopped:
                    self._before_writes()
                checked: list[Outcome | _Pending] = (
                    [_PAST_DEADLINE] * len(batch) if self._stopped else self._ask_batch(batch, report, commit)
                )
                waiting.append((batch, checked))
                while len(waiting) > depth or (waiting and _recorded(waiting[0][1])):
                    yield from _batch_outcomes(*waiting.popleft())
            while waiting:
                yield from _batch_outcomes(*waiting.popleft())

    def _ask_batch(self, batch: list[Action], report: ApplyReport, commit: _GroupCommit) -> list[Outcome | _Pending]:
        """Checks, intents and new links of one batch (each link handed over and queued for recording)."""
        checked = list(self.client.concurrently(lambda a: self._check(a, report), batch))
        pending = [result for result in checked if isinstance(result, _Pending)]
        self._record_intents([p for p in pending if p.action.params["user_id"] not in self._intents], report)
        for _ in self.client.concurrently(
            lambda p: self._ask_for_link(p, report, commit), [p for p in pending if p.outcome is None]
        ):
            pass
        return checked

    def _check(self, action: Action, report: ApplyReport) -> Outcome | _Pending:
        """An invitation action's checks (acceptance, exposed link, redelivery): its outcome, or
        the user's metadata to record a new link in."""
        try:
            result = self._execute(action, report)
            if not isinstance(result, _NeedsLink):
                return result
            return _Pending(action, result.note, *self._owned_metadata(action.params["user_id"]))
        except DeadlineExceeded as exc:
            self._stopped = True
            return "failed", str(exc), None
        except ProxyError as exc:
            return "failed", str(exc), exc.status

    def _record_intents(self, pending: list[_Pending], report: ApplyReport) -> None:
        """Record, in one write, that these users are about to get a link, merged into each user's
        metadata as the proxy has it now; a user whose intent could not be recorded gets no link
        (its outcome is set)."""
        if not pending:
            return
        try:
            current = self._fresh([p.action.params["user_id"] for p in pending])
        except ProxyError as exc:
            for p in pending:
                p.outcome = (
                    "failed",
                    f"the user could not be read before inviting, so no link was created ({exc})",
                    None,
                )
            return
        writing = []
        for p in pending:
            user_id = p.action.params["user_id"]
            if user_id not in current:
                p.outcome = ("failed", f"user {user_id} is not on the proxy any more; no link was created", None)
                continue
            p.metadata, p.owned = _split(current[user_id])
            previous = dict(p.owned.get("invitation") or {})
            # An intent whose run put down no request for this user, in a report that knows that run, had no
            # link asked for (the run was killed before): nothing to report. Otherwise a link may exist.
            if previous.get("intent_at") and self._courier.asked(user_id, previous.get("intent_run")) is not False:
                unrecorded = self._unrecorded(p.action, str(previous["intent_at"]))
                report.invitations.append(unrecorded)
                with self._courier_lock:
                    self._courier.note(unrecorded)
            p.owned["invitation"] = {**previous, **self._intent()}
            self._before_intent[user_id] = previous or None
            writing.append(p)
        errors = self._write_many({p.action.params["user_id"]: {**p.metadata, OWNER_KEY: p.owned} for p in writing})
        for p in writing:
            user_id = p.action.params["user_id"]
            error = errors.get(user_id)
            if error is None:
                self._intents.add(user_id)
                continue
            self._before_intent.pop(user_id, None)
            p.outcome = (
                "failed",
                f"the intent to invite could not be recorded, so no link was created ({error})",
                None,
            )
            report.invitations.append(self._record(p.action, None, "failed", error))

    def _intent(self) -> dict[str, str]:
        """What an intent records: when (for how long a lost link stays valid) and which run (so an
        undo touches only this run's own)."""
        return {"intent_at": self._now(), "intent_run": self._run}

    def _ask_for_link(self, p: _Pending, report: ApplyReport, commit: _GroupCommit) -> None:
        """``/invitation/new`` for one user; the link handed over at once and queued for recording.
        Waits while ``parallelism`` links are asked for or made and not yet recorded: a crash leaves
        no more than that many links unrecorded."""
        with commit.room():
            self._make_link(p, report, commit)

    def _make_link(self, p: _Pending, report: ApplyReport, commit: _GroupCommit) -> None:
        user_id = p.action.params["user_id"]
        try:
            self._require_sealer()
            with self._courier_lock:
                self._courier.requesting(p.action.params["user_email"], user_id, self._run)
            p.invitation = self.client.new_invitation(user_id)
        except OutcomeUnknown as exc:
            # The link may exist: the intent stays, the report says so, and nothing is undone.
            possibly = self._unrecorded(
                p.action, str((p.owned.get("invitation") or {}).get("intent_at") or self._now())
            )
            report.invitations.append(possibly)
            with self._courier_lock:
                self._courier.note(possibly)
            p.outcome = ("failed", f"{exc}; a link may have been created: {possibly.error}", None)
            return
        except ProxyError as exc:  # a proven refusal, or not sent at all: no link exists
            if isinstance(exc, DeadlineExceeded):
                self._stopped = True
            report.invitations.append(self._record(p.action, None, "failed", str(exc)))
            self._undo_intent(user_id)
            p.outcome = ("failed", str(exc), exc.status)
            return
        p.record = self._record(p.action, p.invitation, "created")
        report.invitations.append(p.record)
        delivery = self._hand_over(p.record)
        p.owned["invitation"] = {
            "sealed": self._require_sealer().seal(str(p.invitation["id"]), user_id),
            "created_at": p.invitation.get("created_at"),
            "expires_at": p.invitation.get("expires_at"),
            "delivery": delivery,
        }
        commit.add(p)

    def _record_links(self, created: list[_Pending]) -> None:
        """Record these new links sealed, in one write, even past the run's deadline (the links
        exist); set each outcome. Each record goes into the metadata read when the intent was
        recorded, moments before the link was asked for (or, for a user this run created, the
        metadata it was created with): never the plan's snapshot. The lock was confirmed before the
        batch's links were asked for; the records of links that exist go out whatever happened since."""
        self._sync_courier()
        errors = self._write_many({p.action.params["user_id"]: {**p.metadata, OWNER_KEY: p.owned} for p in created})
        for p in created:
            user_id = p.action.params["user_id"]
            assert p.invitation is not None and p.record is not None
            error = errors.get(user_id)
            if error is not None:
                p.record.error = (
                    f"link created and handed over, but not recorded on the user ({error}); "
                    "the next apply reports it as unrecorded and records it from the report when it is kept"
                )
                p.outcome = ("failed", p.record.error, None)
                continue
            self._before_intent.pop(user_id, None)
            detail = f"valid until {utc_date(p.invitation.get('expires_at'))}"
            p.outcome = ("done", f"{p.note}; {detail}" if p.note else detail, None)

    def _fresh(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """These users' metadata as the proxy has it now (missing ones are absent); kept as the latest known."""
        found = {user_id: dict(row.get("metadata") or {}) for user_id, row in self.client.find_users(user_ids).items()}
        self._metadata.update(found)
        return found

    def _hand_over(self, record: InvitationRecord) -> str:
        with self._courier_lock:
            return self._courier.hand_over(record)

    def _sync_courier(self) -> None:
        with self._courier_lock:
            self._courier.sync()

    def _undo_intent(self, user_id: str) -> None:
        """Put back the record an intent replaced, when no link was asked for: only where the proxy
        still holds this run's own intent (a row this run never wrote, say a user hidden from the
        listing whose creation was refused, keeps its record). Best effort: if it fails, the next
        run reports a link that may exist, which is the safe side."""
        if user_id not in self._before_intent:
            return
        previous = self._before_intent.pop(user_id)
        self._intents.discard(user_id)
        try:
            with self.client.past_deadline():
                current = self._fresh([user_id]).get(user_id)
                if current is None:
                    return
                metadata, owned = _split(current)
                if (owned.get("invitation") or {}).get("intent_run") != self._run:
                    return
                if previous is None:
                    owned.pop("invitation", None)
                else:
                    owned["invitation"] = previous
                self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        except ProxyError:
            pass

    def _unrecorded(self, action: Action, intent_at: str) -> InvitationRecord:
        """The report line for a link an interrupted apply may have created and never recorded."""
        latest = parse_time(intent_at)
        until = utc_date((latest + timedelta(days=INVITATION_DAYS)).isoformat()) if latest else "unknown"
        why = (
            f"an apply at {intent_at} asked for a link and did not record one (it was interrupted, or the "
            f"proxy's answer was lost); that link, if it was created, cannot be found on the proxy and stays valid "
            f"until {until} at the latest"
        )
        return InvitationRecord(
            action.params["user_email"], action.params["user_id"], None, until, None, "unrecorded", why
        )

    def _now(self) -> str:
        return self._clock().isoformat(timespec="seconds")

    def close_used_links(self, links: list[UsedLink]) -> list[ActionResult]:
        """Delete each used link on the proxy, then record its acceptance (never checked again); a
        link whose deletion failed stays unrecorded, so the next apply tries again."""
        results = []
        for link in links:
            address = f"invitation.{link.email.lower()}"
            try:
                self.client.delete_invitation(link.invitation_id)
                metadata, owned = self._owned_metadata(link.user_id)
                _, detail = self._record_acceptance(
                    link.user_id, metadata, owned, link.accepted_at, "the used link was deleted"
                )
                result = ActionResult(address, "close_invitation", "done", detail)
            except ProxyError as exc:
                result = ActionResult(address, "close_invitation", "failed", str(exc), exc.status)
            results.append(result)
            self.on_result(result)
        return results

    def _record_acceptance(
        self, user_id: str, metadata: dict[str, Any], owned: dict[str, Any], accepted_at: str | None, note: str = ""
    ) -> tuple[Status, str]:
        """Keep the record, minus any plain id, with the acceptance: it is never checked again."""
        previous = owned.get("invitation")
        record = (
            {k: v for k, v in previous.items() if k not in ("id", "intent_at")} if isinstance(previous, dict) else {}
        )
        record["accepted_at"] = accepted_at or "unknown"
        owned["invitation"] = record
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        accepted = f"accepted on {utc_date(accepted_at) or 'an unknown date'}; recorded, no new link"
        return "done", f"{note}; {accepted}" if note else accepted

    def _require_sealer(self) -> Sealer:
        if self._sealer is None:
            raise ProxyError(
                "POST",
                "/invitation/new",
                None,
                "no seal key: set LITELLM_MASTER_KEY or LITELLM_RECONCILER_SEAL_KEY to invite",
            )
        return self._sealer

    def _write_metadata(self, user_id: str, metadata: dict[str, Any]) -> None:
        metadata = self._stamped(metadata)
        self._metadata.pop(user_id, None)  # unknown until the write is confirmed
        self.client.update_user({"user_id": user_id, "metadata": metadata})
        self._metadata[user_id] = metadata

    def _stamped(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """``metadata`` with this run recorded as the object's last change (under this tool's key)."""
        found = metadata.get(OWNER_KEY)
        owned = found if isinstance(found, dict) else {}
        return {**metadata, OWNER_KEY: {**owned, LAST_CHANGE_KEY: self._attribution.stamp(self._now())}}

    def _write_many(self, metadata: dict[str, dict[str, Any]]) -> dict[str, str | None]:
        """``_write_metadata`` for several users in one request: the error of each that failed.
        A whole request whose outcome is unknown counts as failed for all (never re-sent)."""
        metadata = {user_id: self._stamped(value) for user_id, value in metadata.items()}
        for user_id in metadata:
            self._metadata.pop(user_id, None)
        try:
            errors = self.client.update_users(
                [{"user_id": user_id, "metadata": value} for user_id, value in metadata.items()]
            )
        except ProxyError as exc:
            self._stopped = self._stopped or isinstance(exc, DeadlineExceeded)
            return {user_id: str(exc) for user_id in metadata}
        for user_id, value in metadata.items():
            if errors.get(user_id) is None:
                self._metadata[user_id] = value
        return {user_id: error for user_id, error in errors.items() if error is not None}

    def _record(
        self, action: Action, invitation: dict[str, Any] | None, status: str, error: str | None = None
    ) -> InvitationRecord:
        return InvitationRecord(
            email=action.params["user_email"],
            user_id=action.params["user_id"],
            invitation_id=invitation["id"] if invitation else None,
            expires_at=invitation.get("expires_at") if invitation else None,
            onboarding_link=onboarding_link(self.ui_base, invitation["id"]) if invitation else None,
            status=status,
            error=error,
        )

    # ------------------------------------------------------------------ memberships

    def _add_members(self, batch: list[Action]) -> list[Outcome]:
        """One ``/team/member_add`` for one team's new members; a lost answer is settled by
        reading the roster back."""
        team_id = batch[0].params["team_id"]
        try:
            try:
                self.client.add_members(
                    team_id,
                    [a.params["user_id"] for a in batch],
                    role=batch[0].params.get("role", "user"),
                    max_budget_in_team=batch[0].params.get("max_budget_in_team"),
                )
            except OutcomeUnknown as exc:
                try:
                    team = self.client.team_info(team_id)
                except DeadlineExceeded:
                    raise
                except ProxyError as read_error:
                    return [("failed", f"{exc}; reading back failed too ({read_error})", None)] * len(batch)
                present = team_from_api(team).member_ids if team else frozenset()
                return [
                    ("done", "confirmed by reading back", None)
                    if a.params["user_id"] in present
                    else ("failed", f"{exc}; not on the roster; re-run to converge", None)
                    for a in batch
                ]
        except DeadlineExceeded as exc:
            self._stopped = True
            return [("failed", str(exc), None)] * len(batch)
        except ProxyError as exc:
            return [("failed", str(exc), exc.status)] * len(batch)
        return [("done", "", None)] * len(batch)


def _split(metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A user's metadata and a copy of this tool's part of it."""
    owned = metadata.get(OWNER_KEY)
    return dict(metadata), dict(owned) if isinstance(owned, dict) else {}


def _recorded(checked: list[Outcome | _Pending]) -> bool:
    """Whether every new link of a batch has its outcome (its record went out, or it failed)."""
    return all(p.outcome is not None for p in checked if isinstance(p, _Pending))


def _batch_outcomes(batch: list[Action], checked: list[Outcome | _Pending]) -> Iterator[tuple[Action, Outcome]]:
    """A batch's outcomes in plan order, each waiting for its link's record to go out."""
    for action, result in zip(batch, checked):
        if isinstance(result, _Pending):
            if result.outcome is None:  # queued for recording
                result.settled.wait()
            yield action, result.outcome or ("failed", "no outcome", None)
        else:
            yield action, result


class _GroupCommit:
    """Records new links as they are made: one record write in flight at a time, and the links
    handed over while it is out go together in the next (at most 500 per write). At most
    ``client.parallelism`` links are between being asked for and being recorded (``room``)."""

    def __init__(self, write: Callable[[list[_Pending]], None], client: LiteLLMClient):
        self._write = write
        self._client = client
        self._queue: list[_Pending] = []
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="record-links", daemon=True)
        self._room = threading.Semaphore(client.parallelism)
        self._unsettled = threading.local()

    @contextmanager
    def room(self) -> Iterator[None]:
        """Held from before a link is asked for until its record went out (or no link was made)."""
        self._room.acquire()
        self._unsettled.queued = False
        try:
            yield
        finally:
            if not self._unsettled.queued:
                self._room.release()

    def __enter__(self) -> _GroupCommit:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def add(self, pending: _Pending) -> None:
        """Queue a link for recording; its room is freed once its record went out."""
        self._unsettled.queued = True
        with self._ready:
            self._queue.append(pending)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                group, self._queue = self._queue[:500], self._queue[500:]
            try:
                with self._client.past_deadline():  # the links exist: their records go out
                    self._write(group)
            except Exception as exc:  # noqa: BLE001  (an outcome for every link, whatever broke)
                for p in group:
                    p.outcome = p.outcome or ("failed", f"the link was not recorded ({exc})", None)
            finally:
                for p in group:
                    p.settled.set()
                    self._room.release()


def _adopted(metadata: dict[str, Any], **records: Any) -> dict[str, Any]:
    """``metadata`` with this tool's ownership recorded as an adoption (its other keys, and this
    tool's other records, kept); ``records``: what to start keeping where nothing is kept yet."""
    found = metadata.get(OWNER_KEY)
    owned = found if isinstance(found, dict) else {}
    return {**metadata, OWNER_KEY: {**records, **owned, "managed": True, "adopted": True}}


def _refused_for_good(status: int | None) -> bool:
    """A refusal about the request itself, not about the moment it was sent."""
    return status is not None and 400 <= status < 500 and status not in (408, 409, 425, 429)


def remember_failures(results: list[ActionResult], before: dict[str, Any], now: str) -> dict[str, Any]:
    """What this run leaves for the next (kept on the lock row): each failure, counted with the
    previous runs that failed the same action with the same message."""
    memory: dict[str, Any] = {}
    for result in results:
        if result.status != "failed":
            continue
        key = f"{result.kind} {result.address}"
        found = before.get(key)
        previous: dict[str, Any] = found if isinstance(found, dict) else {}
        same = previous.get("detail") == result.detail
        memory[key] = {
            "detail": result.detail,
            "runs": int(previous.get("runs") or 0) + 1 if same else 1,
            "since": previous.get("since") or now if same else now,
        }
    return memory


def stubborn_failures(results: list[ActionResult], memory: dict[str, Any]) -> list[tuple[ActionResult, str]]:
    """Failures a re-run will not fix, with why: the proxy refused the request itself (a proven
    refusal, 4xx) the same way on this run and the previous one. A 5xx, a lost answer or a refusal
    seen once may pass on the next run, so none of them is called stubborn. ``memory`` is this
    run's ``remember_failures``."""
    stubborn = []
    for result in results:
        if result.status != "failed" or not _refused_for_good(result.http_status):
            continue
        runs = int((memory.get(f"{result.kind} {result.address}") or {}).get("runs") or 1)
        if runs > 1:
            stubborn.append((result, f"refused by the proxy (HTTP {result.http_status}) the same way on {runs} runs"))
    return stubborn


def _unless_ignored(sent: dict[str, Any], answer: Any) -> tuple[Status, str]:
    """Done, unless the row the proxy answered with kept a value the update was to clear.

    LiteLLM's update endpoints drop empty values: ``models: []`` on every version, and ``null``
    limits on some (1.80.5). The update "succeeds" and changes nothing; said here, with what to
    do, instead of by a verification plan that never comes out empty."""
    row = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(row, dict):
        return "done", ""
    kept = [
        f"{name} ({json.dumps(row[name])})"
        for name, value in sent.items()
        if value in (None, []) and row.get(name) not in (None, [])
    ]
    if not kept:
        return "done", ""
    return (
        "failed",
        f"this LiteLLM version ignores clearing {', '.join(kept)}; give a value instead "
        "(models: list them), or drop the field from the file to stop managing it",
    )
