"""The executor: carries out exactly the actions of a Plan, in order, and reports each one.

Rules:

* Writes are sequential. LiteLLM loses team members under concurrent roster writes,
  and one proxy worker gains little from parallel requests anyway.
* Memberships of one team that are ready together go out as one ``/team/member_add``.
* An action whose dependency did not succeed is skipped; independent actions go on.
* A write whose outcome is unknown is never re-sent: the object is read back and
  the action counts as done only if the proxy shows it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from .client import LiteLLMClient, OutcomeUnknown, ProxyError
from .files import read_private, write_private
from .live import OWNER_KEY, RecordedInvitation, team_from_api, utc_date
from .plan import Action, Plan
from .sealing import Sealer

Status = Literal["done", "failed", "skipped"]


@dataclass(frozen=True)
class ActionResult:
    address: str
    kind: str
    status: Status
    detail: str = ""


@dataclass
class InvitationRecord:
    """One line of the onboarding report: the same fields the old hand-run script wrote."""

    email: str
    user_id: str
    invitation_id: Optional[str]
    expires_at: Optional[str]
    onboarding_link: Optional[str]
    status: str
    error: Optional[str] = None


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


def onboarding_link(ui_base: str, invitation_id: str) -> str:
    """The link the LiteLLM UI's onboarding page understands (it reads ``invitation_id``)."""
    return f"{ui_base.rstrip('/')}/ui/onboarding?invitation_id={invitation_id}"


class Executor:
    def __init__(
        self,
        client: LiteLLMClient,
        ui_base: str,
        on_result: Callable[[ActionResult], None] = lambda r: None,
        metadata: Optional[dict[str, dict[str, Any]]] = None,
        sealer: Optional[Sealer] = None,
    ):
        """``metadata``: each user's metadata as read for the plan (user_id -> dict). The
        plan was made from that very snapshot (or a saved plan was checked against it), so
        merging into it is safe and saves one read per invitation. ``sealer``: needed by
        any plan that invites (see ``sealing``); the caller checks that up front."""
        self.client = client
        self.ui_base = ui_base
        self.on_result = on_result
        self._metadata = dict(metadata or {})
        self._sealer = sealer

    def run(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        status: dict[str, Status] = {}

        def finish(action: Action, outcome: Status, detail: str = "") -> None:
            status[action.address] = outcome
            result = ActionResult(action.address, action.kind, outcome, detail)
            report.results.append(result)
            self.on_result(result)

        def blocked(action: Action) -> Optional[str]:
            bad = [d for d in action.depends_on if status.get(d, "done") != "done"]
            return f"{', '.join(bad)} did not succeed" if bad else None

        actions = list(plan.actions)
        i = 0
        while i < len(actions):
            action = actions[i]
            if action.kind == "add_member":
                batch = [action]
                while i + 1 < len(actions) and actions[i + 1].kind == "add_member" and actions[i + 1].params["team_id"] == action.params["team_id"]:
                    i += 1
                    batch.append(actions[i])
                ready = []
                for member in batch:
                    why = blocked(member)
                    if why:
                        finish(member, "skipped", why)
                    else:
                        ready.append(member)
                if ready:
                    for member, outcome, detail in self._add_members(ready):
                        finish(member, outcome, detail)
                i += 1
                continue
            why = blocked(action)
            if why:
                finish(action, "skipped", why)
                if action.kind == "create_invitation":
                    report.invitations.append(self._record(action, None, "skipped", why))
            else:
                outcome, detail = self._execute(action, report)
                finish(action, outcome, detail)
            i += 1
        return report

    # ------------------------------------------------------------------ one action

    def _execute(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        handler = getattr(self, f"_do_{action.kind}")
        try:
            return handler(action, report)
        except OutcomeUnknown as exc:
            try:
                confirmed = self._read_back(action)
            except ProxyError as read_error:
                return "failed", f"{exc}; reading back failed too ({read_error}); not re-sent, the next plan will tell"
            if confirmed:
                return "done", "confirmed by reading back after the response was lost"
            return "failed", f"{exc}; not re-sent; re-run to converge"
        except ProxyError as exc:
            return "failed", str(exc)

    def _read_back(self, action: Action) -> bool:
        p = action.params
        if action.kind in ("create_team", "update_team"):
            team = self.client.team_info(p["team_id"])
            return team is not None and all(team.get(k) == v for k, v in p.items() if k not in ("metadata",))
        if action.kind in ("create_user", "update_user", "create_inviter"):
            user = self.client.find_user(p["user_id"])
            return user is not None and all(user.get(k) == v for k, v in p.items() if k not in ("metadata",))
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
        self.client.create_user(action.params)
        self._metadata[action.params["user_id"]] = dict(action.params.get("metadata") or {})
        return "done", f"user_id {action.params['user_id']}"

    def _do_update_user(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        self.client.update_user(action.params)
        return "done", ""

    def _owned_metadata(self, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The user's metadata and this tool's part of it, to merge into (other keys are kept).

        Known from the snapshot or from this run's own writes; otherwise read now."""
        if user_id not in self._metadata:
            user = self.client.find_user(user_id)
            if user is None:
                raise ProxyError("GET", "/user/list", 200, f"user {user_id} is not on the proxy")
            self._metadata[user_id] = dict(user.get("metadata") or {})
        metadata = dict(self._metadata[user_id])
        owned = metadata.get(OWNER_KEY) if isinstance(metadata.get(OWNER_KEY), dict) else {}
        return metadata, dict(owned)

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

    def _invite(self, action: Action, report: ApplyReport) -> tuple[Status, str]:
        """A new link; its id is stored on the user sealed, never in the clear."""
        user_id = action.params["user_id"]
        sealer = self._require_sealer()
        try:
            metadata, owned = self._owned_metadata(user_id)
            invitation = self.client.new_invitation(user_id)
        except OutcomeUnknown:
            report.invitations.append(self._record(action, None, "failed", "no response from /invitation/new; re-run to create a new link"))
            raise
        except ProxyError as exc:
            report.invitations.append(self._record(action, None, "failed", str(exc)))
            raise
        owned["invitation"] = {
            "sealed": sealer.seal(str(invitation["id"]), user_id),
            "created_at": invitation.get("created_at"),
            "expires_at": invitation.get("expires_at"),
        }
        try:
            self._write_metadata(user_id, {**metadata, OWNER_KEY: owned})
        except ProxyError as exc:
            error = f"link created but not recorded on the user ({exc}); the next apply will create another"
            report.invitations.append(self._record(action, invitation, "created", error))
            return "failed", error
        report.invitations.append(self._record(action, invitation, "created"))
        return "done", f"valid until {utc_date(invitation.get('expires_at'))}"

    def _record_acceptance(
        self, user_id: str, metadata: dict[str, Any], owned: dict[str, Any], accepted_at: Optional[str], note: str = ""
    ) -> tuple[Status, str]:
        """Keep the record, minus any plain id, with the acceptance: it is never checked again."""
        previous = owned.get("invitation")
        record = {k: v for k, v in previous.items() if k != "id"} if isinstance(previous, dict) else {}
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

    def _add_members(self, batch: list[Action]) -> list[tuple[Action, Status, str]]:
        team_id = batch[0].params["team_id"]
        try:
            self.client.add_members(team_id, [a.params["user_id"] for a in batch])
        except OutcomeUnknown as exc:
            try:
                team = self.client.team_info(team_id)
            except ProxyError as read_error:
                return [(a, "failed", f"{exc}; reading back failed too ({read_error})") for a in batch]
            present = team_from_api(team).member_ids if team else frozenset()
            return [
                (a, "done", "confirmed by reading back") if a.params["user_id"] in present else (a, "failed", f"{exc}; not on the roster; re-run to converge")
                for a in batch
            ]
        except ProxyError as exc:
            return [(a, "failed", str(exc)) for a in batch]
        return [(a, "done", "") for a in batch]


class OnboardingReport:
    """The onboarding report: a JSON list of records, mode 0600 (the links are credentials).

    Opened before the first write, so an unwritable path or an unreadable earlier report
    stops the run while nothing has changed yet. Earlier records are kept: a second run
    must never lose the links of the first. Written with ``files.write_private``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._earlier: list[dict[str, Any]] = []
        try:
            text = read_private(self.path)
            loaded = json.loads(text) if text is not None else []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path} exists but is not a readable report ({exc}); move it away first") from None
        if not isinstance(loaded, list):
            raise ValueError(f"{self.path} exists but is not an onboarding report (not a list); move it away first")
        self._earlier = loaded
        folder = self.path.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ValueError(f"cannot write the onboarding report in {folder}")

    def save(self, records: list[InvitationRecord]) -> Path:
        """Write the earlier records plus ``records`` atomically (safe to call again with more)."""
        return write_private(self.path, json.dumps(self._earlier + [asdict(r) for r in records], indent=2) + "\n")
