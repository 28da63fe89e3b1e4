"""Actions, the Plan, and the planner: a pure function from desired + live to a Plan.

The planner does no I/O and takes the clock as an argument, so the same inputs
always give the same plan, byte for byte. Actions are ordered by phase
(inviter → teams → users → memberships → invitations) and then by address, so
reordering ``users.yaml`` does not reorder the plan. Each action names the actions
it depends on; the executor skips the dependants of a failure.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from deepdiff import DeepDiff

from .desired import DEFAULT_ROLE, DesiredState, TeamSpec, UserSpec
from .live import (
    OWNER_KEY,
    PROXY_ADMIN_ID,
    LiveState,
    LiveTeam,
    LiveUser,
    invitation_expired,
    utc_date,
)

FORMAT_VERSION = "1.1"  # 1.1: invitations renewed and replaced by apply, no record_invitation
# Ids of objects the tool creates are derived from their names, so a plan is
# reproducible and a create whose response was lost can be read back by id.
_ID_NAMESPACE = uuid.UUID("6f3b1c52-8d4e-4f0a-9a57-2c1d7e9b4a10")

PHASES = (
    "create_inviter",
    "create_team",
    "update_team",
    "create_user",
    "update_user",
    "add_member",
    "create_invitation",
    "renew_invitation",
    "replace_invitation",
    "deliver_invitation",
)
#: Kinds that may call ``/invitation/new`` (and so need the inviter user and the seal key).
INVITING = frozenset({"create_invitation", "renew_invitation", "replace_invitation", "deliver_invitation"})
#: Why an invitation recorded in plain text is replaced (the security migration).
EXPOSED_REASON = "link was readable by read-only keys"


@dataclass(frozen=True)
class Change:
    """One field of an update: ``old`` → ``new``."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Action:
    """One write the apply will make, with everything needed to make it."""

    kind: str
    address: str
    reason: str
    params: dict[str, Any] = field(hash=False)
    changes: tuple[Change, ...] = ()
    depends_on: tuple[str, ...] = ()

    @property
    def symbol(self) -> str:
        return "+" if self.kind.startswith(("create", "add")) else "~"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "address": self.address,
            "reason": self.reason,
            "params": self.params,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes],
            "depends_on": list(self.depends_on),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Action":
        if data["kind"] not in PHASES:
            raise ValueError(f"unknown action kind {data['kind']!r}")
        return cls(
            kind=data["kind"],
            address=data["address"],
            reason=data["reason"],
            params=dict(data["params"]),
            changes=tuple(Change(c["field"], c["old"], c["new"]) for c in data.get("changes", [])),
            depends_on=tuple(data.get("depends_on", [])),
        )


@dataclass(frozen=True)
class Drift:
    """Something on the proxy that the file does not describe; shown, never acted on."""

    kind: str
    address: str
    detail: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    drift: tuple[Drift, ...]
    live_fingerprint: str
    source: str = "users.yaml"

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def fingerprint(self) -> str:
        """A digest of what the plan does; reviewers and ``apply`` compare it."""
        payload = json.dumps([a.to_dict() for a in self.actions], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def summary(self) -> dict[str, int]:
        """Counts per action kind, in phase order, without zeros."""
        counts = {kind: 0 for kind in PHASES}
        for action in self.actions:
            counts[action.kind] += 1
        return {kind: n for kind, n in counts.items() if n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "live_fingerprint": self.live_fingerprint,
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "actions": [a.to_dict() for a in self.actions],
            "drift": [{"kind": d.kind, "address": d.address, "detail": d.detail} for d in self.drift],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Load a saved plan; refuse other format versions and tampered action lists."""
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"plan format_version {data.get('format_version')!r} is not {FORMAT_VERSION!r}")
        plan = cls(
            actions=tuple(Action.from_dict(a) for a in data["actions"]),
            drift=tuple(Drift(d["kind"], d["address"], d["detail"]) for d in data.get("drift", [])),
            live_fingerprint=data["live_fingerprint"],
            source=data.get("source", "users.yaml"),
        )
        if data.get("fingerprint") != plan.fingerprint:
            raise ValueError("the plan's actions do not match its fingerprint; the file was edited")
        return plan


class PlanConflict(Exception):
    """The live state is ambiguous for the file (duplicates on the proxy); nothing is guessed."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


def new_team_id(alias: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"team:{alias}"))


def new_user_id(email: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"user:{email.lower()}"))


# --------------------------------------------------------------------------- the planner


@dataclass
class _Matched:
    """Where each declared object is on the proxy, or the id it will get."""

    team_ids: dict[str, str] = field(default_factory=dict)  # alias -> team_id
    live_teams: dict[str, LiveTeam] = field(default_factory=dict)  # alias -> live
    user_ids: dict[str, str] = field(default_factory=dict)  # email key -> user_id
    live_users: dict[str, LiveUser] = field(default_factory=dict)  # email key -> live


def make_plan(desired: DesiredState, live: LiveState, now: datetime) -> Plan:
    """Compare and decide. Raises ``PlanConflict`` instead of guessing between duplicates."""
    conflicts: list[str] = []
    matched = _Matched()
    actions: list[Action] = []
    drift: list[Drift] = []

    # Teams with a declared id claim their live team first, so an alias match never
    # hands the same live team to a second declared team.
    for team in sorted(desired.teams, key=lambda t: t.id is None):
        actions.extend(_plan_team(team, live, matched, conflicts))
    for user in desired.users:
        actions.extend(_plan_user(user, live, matched, conflicts))
    if conflicts:
        raise PlanConflict(conflicts)
    for user in desired.users:
        actions.extend(_plan_memberships(user, desired, matched))
    invitations = [a for user in desired.users for a in _plan_invitation(user, desired, matched, now)]
    if any(a.kind in INVITING for a in invitations) and PROXY_ADMIN_ID not in {u.user_id for u in live.users}:
        actions.append(
            Action(
                kind="create_inviter",
                address=f"user.{PROXY_ADMIN_ID}",
                reason="/invitation/new records the master key's user as creator; that user row does not exist yet",
                params={"user_id": PROXY_ADMIN_ID, "user_role": "proxy_admin"},
            )
        )
        inviter = (f"user.{PROXY_ADMIN_ID}",)
        invitations = [replace(a, depends_on=a.depends_on + inviter) for a in invitations]
    actions.extend(invitations)
    drift.extend(_drift(desired, live, matched))

    actions.sort(key=_order)
    drift.sort(key=lambda d: (d.kind, d.address, d.detail))
    return Plan(actions=tuple(actions), drift=tuple(drift), live_fingerprint=live.fingerprint, source=desired.source)


_PHASE = {kind: i for i, kind in enumerate(PHASES)}


def _order(action: Action) -> tuple[Any, ...]:
    """Phase, then name; memberships by (team, user) so one team's adds are adjacent and batch."""
    if action.kind == "add_member":
        return (_PHASE[action.kind], action.params["team_alias"], action.params["user_email"].lower())
    return (_PHASE[action.kind], action.address, "")


def _plan_team(team: TeamSpec, live: LiveState, matched: _Matched, conflicts: list[str]) -> list[Action]:
    address = f"team.{team.alias}"
    claimed = set(matched.team_ids.values())
    if team.id:
        found = [t for t in live.teams if t.team_id == team.id]
    else:
        found = [t for t in live.teams if t.alias == team.alias and t.team_id not in claimed]
        if len(found) > 1:
            ids = ", ".join(t.team_id for t in found)
            conflicts.append(f"{address}: {len(found)} teams on the proxy have the alias {team.alias!r} ({ids}); add 'id:' to the file to pick one")
            return []
    if not found:
        team_id = team.id or new_team_id(team.alias)
        if any(t.team_id == team_id for t in live.teams):
            conflicts.append(f"{address}: team id {team_id} is taken by a team with another alias; add 'id:' to adopt it")
            return []
        matched.team_ids[team.alias] = team_id
        settings = team.managed_settings
        return [
            Action(
                kind="create_team",
                address=address,
                reason="declared in the file, not on the proxy",
                params={"team_id": team_id, "team_alias": team.alias, **settings, "metadata": {OWNER_KEY: {"managed": True}}},
                changes=(Change("team_id", None, team_id),) + tuple(Change(k, None, v) for k, v in sorted(settings.items())),
            )
        ]
    current = found[0]
    matched.team_ids[team.alias] = current.team_id
    matched.live_teams[team.alias] = current
    wanted = dict(team.managed_settings)
    if team.id and current.alias != team.alias:
        wanted["team_alias"] = team.alias
    have = {**current.settings, "team_alias": current.alias}
    changes = _diff({k: have.get(k) for k in wanted}, wanted)
    if not changes:
        return []
    return [
        Action(
            kind="update_team",
            address=address,
            reason="settings differ: " + ", ".join(c.field for c in changes),
            params={"team_id": current.team_id, **{c.field: c.new for c in changes}},
            changes=changes,
        )
    ]


def _diff(have: dict[str, Any], want: dict[str, Any]) -> tuple[Change, ...]:
    """Field-level differences; model lists compare as sets, numbers by value (1 == 1.0)."""
    changed = DeepDiff(have, want, ignore_order=True, ignore_numeric_type_changes=True)
    return tuple(Change(name, have.get(name), want[name]) for name in sorted(changed.affected_root_keys))


def _plan_user(user: UserSpec, live: LiveState, matched: _Matched, conflicts: list[str]) -> list[Action]:
    address = f"user.{user.key}"
    found = [u for u in live.users if u.key == user.key]
    if len(found) > 1:
        ids = ", ".join(u.user_id for u in found)
        conflicts.append(f"{address}: {len(found)} users on the proxy have this email ({ids}); remove the duplicates first")
        return []
    if not found:
        user_id = new_user_id(user.email)
        clash = [u for u in live.users if u.user_id == user_id]
        if clash:
            conflicts.append(f"{address}: user id {user_id} already exists with email {clash[0].email!r}; the email was changed on the proxy")
            return []
        matched.user_ids[user.key] = user_id
        params = {"user_id": user_id, "user_email": user.email, "user_role": user.role or DEFAULT_ROLE, "metadata": {OWNER_KEY: {"managed": True}}}
        if user.alias is not None:
            params["user_alias"] = user.alias
        shown = {"user_id": user_id, "user_role": params["user_role"], **({"user_alias": user.alias} if user.alias is not None else {})}
        return [
            Action(
                kind="create_user",
                address=address,
                reason="declared in the file, not on the proxy",
                params=params,
                changes=tuple(Change(k, None, v) for k, v in shown.items()),
            )
        ]
    current = found[0]
    matched.user_ids[user.key] = current.user_id
    matched.live_users[user.key] = current
    wanted: dict[str, Any] = {}
    if user.role is not None:
        wanted["user_role"] = user.role
    if user.alias is not None:
        wanted["user_alias"] = user.alias
    have = {"user_role": current.role, "user_alias": current.alias}
    changes = _diff({k: have[k] for k in wanted}, wanted)
    if not changes:
        return []
    return [
        Action(
            kind="update_user",
            address=address,
            reason="differs: " + ", ".join(c.field for c in changes),
            params={"user_id": current.user_id, **{c.field: c.new for c in changes}},
            changes=changes,
        )
    ]


def _plan_memberships(user: UserSpec, desired: DesiredState, matched: _Matched) -> list[Action]:
    actions = []
    user_id = matched.user_ids[user.key]
    live_user = matched.live_users.get(user.key)
    for ref in user.teams:
        team = desired.team_for_ref(ref)
        team_id = matched.team_ids[team.alias]
        live_team = matched.live_teams.get(team.alias)
        if live_team is not None and user_id in live_team.member_ids:
            continue
        if live_team is not None and live_user is not None and team_id in live_user.teams:
            reason = "the user lists the team, but the team's roster lacks the user (a lost concurrent write)"
        else:
            reason = "listed in the file"
        depends = tuple(
            address
            for address, planned in ((f"team.{team.alias}", live_team is None), (f"user.{user.key}", live_user is None))
            if planned
        )
        actions.append(
            Action(
                kind="add_member",
                address=f"membership.{team.alias}.{user.key}",
                reason=reason,
                params={"team_id": team_id, "user_id": user_id, "team_alias": team.alias, "user_email": user.email},
                depends_on=depends,
            )
        )
    return actions


def _plan_invitation(user: UserSpec, desired: DesiredState, matched: _Matched, now: datetime) -> list[Action]:
    """Decided from what the tool recorded on the user alone: no invitation is looked up.

    A pending link needs nothing. A link past its expiry is renewed; whether it was
    accepted meanwhile can only be read with the sealed id, so apply checks that first
    and records the acceptance instead of inviting again.
    """
    address = f"invitation.{user.key}"
    user_id = matched.user_ids[user.key]
    current = matched.live_users.get(user.key)
    if current is None:
        return [_invitation("create_invitation", address, user, user_id, "new user", (f"user.{user.key}",))]
    record = current.invitation
    if record is None:
        wants = user.invite if user.invite is not None else desired.spec.defaults.invite
        if current.owned.get("managed"):
            return [_invitation("create_invitation", address, user, user_id, "created by this tool but never invited", ())]
        if wants:
            return [_invitation("create_invitation", address, user, user_id, "invite: true and never invited by this tool", ())]
        return []
    if record.exposed_id:
        if record.accepted_at:
            why = f"{EXPOSED_REASON}; accepted on {utc_date(record.accepted_at) or 'an unknown date'}, the old link is deleted"
        else:
            why = f"{EXPOSED_REASON}; the old link is deleted and a new one created"
        return [_invitation("replace_invitation", address, user, user_id, why, ())]
    if record.intent_at:
        why = (
            f"an apply on {utc_date(record.intent_at) or 'an unknown date'} was interrupted after asking for a link and before "
            "recording it; that link cannot be found on the proxy (apply reports it) and a new one is created"
        )
        return [_invitation("create_invitation", address, user, user_id, why, ())]
    if record.accepted_at:
        return []
    if not invitation_expired(record.expires_at, now):
        if record.delivery == "email_failed":
            return [_invitation("deliver_invitation", address, user, user_id, "the email with the link could not be sent; apply hands it over again", ())]
        return []
    expired = utc_date(record.expires_at) or "an unreadable date"
    why = f"the previous invitation expired on {expired}; apply records it if it was accepted, else creates a new link"
    return [_invitation("renew_invitation", address, user, user_id, why, ())]


def _invitation(kind: str, address: str, user: UserSpec, user_id: str, why: str, depends: tuple[str, ...]) -> Action:
    # No metadata and no ids in params: the executor merges into the user's metadata as
    # read at apply time, and a plan file never carries an invitation id.
    return Action(
        kind=kind,
        address=address,
        reason=why if kind != "create_invitation" else f"invitation will be created: {why}",
        params={"user_id": user_id, "user_email": user.email},
        depends_on=depends,
    )


#: Roles that administer the proxy: whoever holds one unreviewed is drift that must never go unseen.
PRIVILEGED_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})


def _drift(desired: DesiredState, live: LiveState, matched: _Matched) -> list[Drift]:
    """What the proxy has and the file does not say: extra users, extra teams, extra memberships,
    and any privileged role the file does not grant (kind ``privilege``), whether or not the
    file manages that user's role."""
    items: list[Drift] = []
    declared_roles = {u.key: u.role for u in desired.users}
    declared_team_ids = set(matched.team_ids.values())
    ids_to_email = {u.user_id: (u.email or u.user_id) for u in live.users}
    for user in live.users:
        if user.user_id == PROXY_ADMIN_ID:
            continue
        address = f"user.{user.key or user.user_id}"
        if user.role in PRIVILEGED_ROLES and declared_roles.get(user.key or "") != user.role:
            if user.key in declared_roles:
                granted = f"the file declares {declared_roles[user.key] or 'no role (internal_user for new users)'}"
            else:
                granted = "the file does not declare this user"
            items.append(Drift("privilege", address, f"has the role {user.role} on the proxy (user_id {user.user_id}); {granted}"))
        elif user.key is None:
            items.append(Drift("user", address, "on the proxy without an email; not managed"))
        elif user.key not in declared_roles:
            items.append(Drift("user", address, f"on the proxy (user_id {user.user_id}), not in the file"))
    for team in live.teams:
        if team.team_id not in declared_team_ids:
            items.append(Drift("team", f"team.{team.alias or team.team_id}", f"on the proxy (team_id {team.team_id}), not in the file"))
    wanted = {
        (matched.team_ids[desired.team_for_ref(ref).alias], matched.user_ids[u.key]) for u in desired.users for ref in u.teams
    }
    for alias, team in sorted(matched.live_teams.items()):
        for member in team.members:
            if member.user_id == PROXY_ADMIN_ID or (team.team_id, member.user_id) in wanted:
                continue
            who = ids_to_email.get(member.user_id, member.user_id)
            items.append(Drift("membership", f"membership.{alias}.{str(who).lower()}", f"member ({member.role}) on the proxy, not listed in the file"))
    return items
