"""The executor: carries out exactly the actions of a Plan, in order, and reports each one.

Rules:

* Writes are sequential. LiteLLM loses team members under concurrent roster writes,
  and one proxy worker gains little from parallel requests anyway.
* Memberships of one team that are ready together go out as one ``/team/member_add``.
* An action whose dependency did not succeed is skipped; independent actions go on.
* A write whose outcome is unknown is never re-sent: the object is read back and
  the action counts as done only if the proxy shows it.
* A link is crash-safe: the intent is recorded on the user before ``/invitation/new``, the
  link is handed to the courier (report on disk, email) the moment it exists, then its id is
  recorded sealed with how it was delivered. A leftover intent tells the next run a link may
  exist that nobody recorded.
* The run's deadline stops it: what is left is skipped. Failures are remembered across runs
  (on the lock row) to tell a write that will never pass from one that may.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal, Optional, Protocol

from .client import DeadlineExceeded, LiteLLMClient, OutcomeUnknown, ProxyError
from .live import (
    INVITATION_DAYS,
    OWNER_KEY,
    RecordedInvitation,
    parse_time,
    team_from_api,
    utc_date,
)
from .onboarding import InvitationRecord, onboarding_link
from .plan import INVITING, Action, Plan
from .sealing import Sealer

Status = Literal["done", "failed", "skipped"]


@dataclass(frozen=True)
class ActionResult:
    address: str
    kind: str
    status: Status
    detail: str = ""
    #: The HTTP status of the proxy's refusal, when it refused (judges whether a re-run can help).
    http_status: Optional[int] = None


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
        return f"Apply complete: {self.count('done')} done, {self.count('failed')} failed, {self.count('skipped')} skipped."


def _steps(actions: tuple[Action, ...]) -> list[list[Action]]:
    """The plan cut into what goes out in one request: one action, or every adjacent
    membership of one team (one ``/team/member_add`` per team: no lost members)."""
    steps: list[list[Action]] = []
    for action in actions:
        previous = steps[-1][-1] if steps else None
        if action.kind == "add_member" and previous is not None and previous.kind == "add_member" and previous.params["team_id"] == action.params["team_id"]:
            steps[-1].append(action)
        else:
            steps.append([action])
    return steps


class Courier(Protocol):
    def hand_over(self, record: InvitationRecord) -> str:
        """Deliver a link the moment it exists; say how: ``reported``, ``emailed`` or ``email_failed``."""

    def note(self, record: InvitationRecord) -> None:
        """Put a record without a link (an unrecorded one) where the links go."""


class _Nowhere:
    """No report, no email: for callers that only want the actions (tests, benchmarks)."""

    def hand_over(self, record: InvitationRecord) -> str:
        return "reported"

    def note(self, record: InvitationRecord) -> None:
        pass


class Executor:
    def __init__(
        self,
        client: LiteLLMClient,
        ui_base: str,
        on_result: Callable[[ActionResult], None] = lambda r: None,
        metadata: Optional[dict[str, dict[str, Any]]] = None,
        team_metadata: Optional[dict[str, dict[str, Any]]] = None,
        sealer: Optional[Sealer] = None,
        courier: Optional[Courier] = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        """``metadata``: each user's metadata as read for the plan (user_id -> dict). The
        plan was made from that very snapshot (or a saved plan was checked against it), so
        merging into it is safe and saves one read per invitation. ``sealer``: needed by
        any plan that invites (see ``sealing``); the caller checks that up front.
        ``courier``: hands each new link over (report, email) before it is recorded."""
        self.client = client
        self.ui_base = ui_base
        self.on_result = on_result
        self._metadata = dict(metadata or {})
        self._team_metadata = dict(team_metadata or {})
        self._sealer = sealer
        self._courier = courier or _Nowhere()
        self._clock = clock
        self._inviting: frozenset[str] = frozenset()
        #: Users whose intent to invite this run has recorded (any other intent is an interrupted run's).
        self._intents: set[str] = set()
        #: The invitation record each intent replaced (None: there was none), to put back when
        #: no link was asked for after all, so the next run reports no phantom "unrecorded" link.
        self._before_intent: dict[str, Optional[dict[str, Any]]] = {}

    def run(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        status: dict[str, Status] = {}

        def finish(action: Action, outcome: Status, detail: str = "", http_status: Optional[int] = None) -> None:
            status[action.address] = outcome
            result = ActionResult(action.address, action.kind, outcome, detail, http_status)
            report.results.append(result)
            self.on_result(result)

        def blocked(action: Action) -> Optional[str]:
            bad = [d for d in action.depends_on if status.get(d, "done") != "done"]
            return f"{', '.join(bad)} did not succeed" if bad else None

        self._inviting = frozenset(a.params["user_id"] for a in plan.actions if a.kind in INVITING)
        steps = _steps(plan.actions)
        for n, step in enumerate(steps):
            ready = []
            for action in step:
                why = blocked(action)
                if why is None:
                    ready.append(action)
                    continue
                finish(action, "skipped", why)
                if action.kind in INVITING:
                    report.invitations.append(self._record(action, None, "skipped", why))
                    self._undo_intent(action.params["user_id"])
            try:
                if ready and ready[0].kind == "add_member":
                    for member, outcome, detail, http_status in self._add_members(ready):
                        finish(member, outcome, detail, http_status)
                elif ready:
                    finish(ready[0], *self._execute(ready[0], report))
            except DeadlineExceeded as exc:
                for action in ready:
                    finish(action, "failed", str(exc))
                for action in (a for later in steps[n + 1 :] for a in later):
                    finish(action, "skipped", "the run's deadline passed before this action")
                break
        return report

    # ------------------------------------------------------------------ one action

    def _execute(self, action: Action, report: ApplyReport) -> tuple[Status, str, Optional[int]]:
        """(outcome, detail, HTTP status of a refusal); ``DeadlineExceeded`` stops the run."""
        handler = getattr(self, f"_do_{action.kind}")
        try:
            outcome, detail = handler(action, report)
            return outcome, detail, None
        except DeadlineExceeded:
            raise
        except OutcomeUnknown as exc:
            try:
                confirmed = self._read_back(action)
            except DeadlineExceeded:
                raise
            except ProxyError as read_error:
                return "failed", f"{exc}; reading back failed too ({read_error}); not re-sent, the next plan will tell", None
            if confirmed:
                return "done", "confirmed by reading back after the response was lost", None
            return "failed", f"{exc}; not re-sent; re-run to converge", None
        except ProxyError as exc:
            return "failed", str(exc), exc.status

    def _read_back(self, action: Action) -> bool:
        p = action.params
        if action.kind in ("create_team", "update_team"):
            team = self.client.team_info(p["team_id"])
            return team is not None and all(team.get(k) == v for k, v in p.items() if k not in ("metadata",))
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
        return False  # invitations cannot be listed; a lost /invitation/new is reported as failed

    def _do_create_inviter(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        try:
            self.client.create_user(action.params)
        except ProxyError as exc:
            if exc.status in (400, 409) and "already exists" in exc.message:
                return "done", "already existed"
            raise
        return "done", ""

    def _do_create_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.create_team(action.params)
        return "done", f"team_id {action.params['team_id']}"

    def _do_update_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.update_team(action.params)
        return "done", ""

    def _do_create_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        params = action.params
        user_id = params["user_id"]
        if user_id in self._inviting:
            # The intent to invite rides along with the user row: no extra request.
            owned = {**params.get("metadata", {}).get(OWNER_KEY, {}), "invitation": {"intent_at": self._now()}}
            params = {**params, "metadata": {**params.get("metadata", {}), OWNER_KEY: owned}}
            self._intents.add(user_id)
            self._before_intent[user_id] = None
        self.client.create_user(params)
        self._metadata[user_id] = dict(params.get("metadata") or {})
        return "done", f"user_id {user_id}"

    def _do_update_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.update_user(action.params)
        return "done", ""

    def _do_adopt_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        self._write_metadata(user_id, {**metadata, OWNER_KEY: {**owned, "managed": True, "adopted": True}})
        return "done", "ownership recorded"

    def _do_adopt_team(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        team_id = action.params["team_id"]
        if team_id not in self._team_metadata:  # not from the plan's snapshot: read it, never clobber it
            team = self.client.team_info(team_id)
            self._team_metadata[team_id] = dict((team or {}).get("metadata") or {})
        metadata = dict(self._team_metadata[team_id])
        found = metadata.get(OWNER_KEY)
        owned = found if isinstance(found, dict) else {}
        self.client.update_team({"team_id": team_id, "metadata": {**metadata, OWNER_KEY: {**owned, "managed": True, "adopted": True}}})
        return "done", "ownership recorded"

    def _do_remove_member(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.remove_member(action.params["team_id"], action.params["user_id"])
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

    def _do_create_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        return self._invite(action, report)

    def _do_renew_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        """An expired link: record its acceptance if the user accepted it, else invite again."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        record = RecordedInvitation.from_metadata(owned.get("invitation"))
        invitation_id = self._require_sealer().open(record.sealed, user_id) if record else None
        info = self.client.invitation_info(invitation_id) if invitation_id else None
        if info is not None and info.get("is_accepted"):
            return self._record_acceptance(user_id, metadata, owned, info.get("accepted_at"))
        return self._invite(action, report)

    def _do_replace_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
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
        status, detail = self._invite(action, report)
        return status, f"the exposed link was deleted; {detail}" if status == "done" else detail

    def _do_deliver_invitation(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        """A recorded link whose delivery failed: hand it over again (a new one if it cannot be opened)."""
        user_id = action.params["user_id"]
        metadata, owned = self._owned_metadata(user_id)
        recorded = RecordedInvitation.from_metadata(owned.get("invitation"))
        invitation_id = self._require_sealer().open(recorded.sealed, user_id) if recorded else None
        if recorded is None or invitation_id is None:
            return self._invite(action, report)
        record = self._record(action, {"id": invitation_id, "expires_at": recorded.expires_at}, "redelivered")
        report.invitations.append(record)
        delivery = self._courier.hand_over(record)
        owned["invitation"] = {**owned["invitation"], "delivery": delivery}
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        return "done", f"delivered again ({delivery})"

    def _invite(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        """A new link, crash-safe: the intent is recorded before ``/invitation/new``, the link is
        handed over (report, email) the moment it exists, then recorded sealed with its delivery."""
        user_id = action.params["user_id"]
        sealer = self._require_sealer()
        try:
            metadata, owned = self._owned_metadata(user_id)
            if user_id not in self._intents:
                previous = dict(owned.get("invitation") or {})
                if previous.get("intent_at"):
                    unrecorded = self._unrecorded(action, str(previous["intent_at"]))
                    report.invitations.append(unrecorded)
                    self._courier.note(unrecorded)
                owned["invitation"] = {**previous, "intent_at": self._now()}
                self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
                self._intents.add(user_id)
                self._before_intent[user_id] = previous or None
            invitation = self.client.new_invitation(user_id)
        except OutcomeUnknown:
            report.invitations.append(self._record(action, None, "failed", "no response from /invitation/new; the next apply reports the link as unrecorded and creates another"))
            raise
        except ProxyError as exc:  # a definite refusal (or not sent at all): no link exists
            report.invitations.append(self._record(action, None, "failed", str(exc)))
            self._undo_intent(user_id)
            raise
        record = self._record(action, invitation, "created")
        report.invitations.append(record)
        delivery = self._courier.hand_over(record)
        owned["invitation"] = {
            "sealed": sealer.seal(str(invitation["id"]), user_id),
            "created_at": invitation.get("created_at"),
            "expires_at": invitation.get("expires_at"),
            "delivery": delivery,
        }
        try:
            with self.client.past_deadline():  # the link exists: record it even past the run's deadline
                self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
            self._before_intent.pop(user_id, None)
        except ProxyError as exc:
            error = f"link created and handed over, but not recorded on the user ({exc}); the next apply reports it as unrecorded and creates another"
            record.error = error
            return "failed", error
        return "done", f"valid until {utc_date(invitation.get('expires_at'))}"

    def _undo_intent(self, user_id: str) -> None:
        """Put back the record an intent replaced, when no link was asked for (best effort: if it
        fails, the next run reports a link that may exist, which is the safe side)."""
        if user_id not in self._before_intent:
            return
        previous = self._before_intent.pop(user_id)
        self._intents.discard(user_id)
        try:
            with self.client.past_deadline():
                metadata, owned = self._owned_metadata(user_id)
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
            f"an apply at {intent_at} was interrupted after asking for a link and before recording it; "
            f"that link, if it was created, cannot be found on the proxy and stays valid until {until} at the latest"
        )
        return InvitationRecord(action.params["user_email"], action.params["user_id"], None, until, None, "unrecorded", why)

    def _now(self) -> str:
        return self._clock().isoformat(timespec="seconds")

    def _record_acceptance(
        self, user_id: str, metadata: dict[str, Any], owned: dict[str, Any], accepted_at: Optional[str], note: str = ""
    ) -> tuple[Status, str]:
        """Keep the record, minus any plain id, with the acceptance: it is never checked again."""
        previous = owned.get("invitation")
        record = {k: v for k, v in previous.items() if k not in ("id", "intent_at")} if isinstance(previous, dict) else {}
        record["accepted_at"] = accepted_at or "unknown"
        owned["invitation"] = record
        self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        accepted = f"accepted on {utc_date(accepted_at) or 'an unknown date'}; recorded, no new link"
        return "done", f"{note}; {accepted}" if note else accepted

    def _require_sealer(self) -> Sealer:
        if self._sealer is None:
            raise ProxyError("POST", "/invitation/new", None, "no seal key: set LITELLM_MASTER_KEY or LITELLM_RECONCILER_SEAL_KEY to invite")
        return self._sealer

    def _write_metadata(self, user_id: str, metadata: dict[str, Any]) -> None:
        self._metadata.pop(user_id, None)  # unknown until the write is confirmed
        self.client.update_user({"user_id": user_id, "metadata": metadata})
        self._metadata[user_id] = metadata

    def _record(self, action: Action, invitation: Optional[dict[str, Any]], status: str, error: Optional[str] = None) -> InvitationRecord:
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

    def _add_members(self, batch: list[Action]) -> list[tuple[Action, Status, str, Optional[int]]]:
        team_id = batch[0].params["team_id"]
        try:
            self.client.add_members(team_id, [a.params["user_id"] for a in batch])
        except DeadlineExceeded:
            raise
        except OutcomeUnknown as exc:
            try:
                team = self.client.team_info(team_id)
            except DeadlineExceeded:
                raise
            except ProxyError as read_error:
                return [(a, "failed", f"{exc}; reading back failed too ({read_error})", None) for a in batch]
            present = team_from_api(team).member_ids if team else frozenset()
            return [
                (a, "done", "confirmed by reading back", None)
                if a.params["user_id"] in present
                else (a, "failed", f"{exc}; not on the roster; re-run to converge", None)
                for a in batch
            ]
        except ProxyError as exc:
            return [(a, "failed", str(exc), exc.status) for a in batch]
        return [(a, "done", "", None) for a in batch]


def _refused_for_good(status: Optional[int]) -> bool:
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
    """Failures a re-run will not fix, with why: the proxy refused the request itself (4xx),
    or the same action failed the same way on the previous run too (e.g. a 500 from data
    PostgreSQL rejects). ``memory`` is this run's ``remember_failures``."""
    stubborn = []
    for result in results:
        if result.status != "failed":
            continue
        runs = int((memory.get(f"{result.kind} {result.address}") or {}).get("runs") or 1)
        if _refused_for_good(result.http_status):
            stubborn.append((result, f"refused by the proxy (HTTP {result.http_status})"))
        elif runs > 1:
            stubborn.append((result, f"failed the same way on {runs} runs in a row"))
    return stubborn
