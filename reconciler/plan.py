"""Actions, the Plan, and the planner: a pure function from desired + live to a Plan.

The planner does no I/O and takes the clock as an argument, so the same inputs
always give the same plan, byte for byte. Actions are ordered by phase
(inviter → teams → users → memberships → invitations) and then by address, so
reordering ``users.yaml`` does not reorder the plan. Each action names the actions
it depends on; the executor skips the dependants of a failure.
"""

from __future__ import annotations

import gc
import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

from deepdiff import DeepDiff

from .desired import (
    DEFAULT_ROLE,
    TEAM_MEMBER_DEFAULTS,
    DesiredState,
    OrganizationSpec,
    Origins,
    TeamSpec,
    UserSpec,
    membership_settings,
    team_ref,
)
from .kinds import BOOKKEEPING, INVITING, KINDS, PHASES, REMOVING  # noqa: F401  (re-exported)
from .live import (
    GRANTS_KEY,
    OWNER_KEY,
    PROXY_ADMIN_ID,
    LiveMember,
    LiveOrganization,
    LiveState,
    LiveTeam,
    LiveUser,
    expired_before,
    start_of_day,
    utc_date,
)
from .sealing import outdated

# 1.1: invitations renewed, replaced and delivered by apply, no record_invitation; 1.2: adoption,
# removals (remove_member, delete_user, delete_team) and the removal_guard.
FORMAT_VERSION = "1.2"
# Ids of objects the tool creates are derived from their names, so a plan is
# reproducible and a create whose response was lost can be read back by id.
_ID_NAMESPACE = uuid.UUID("6f3b1c52-8d4e-4f0a-9a57-2c1d7e9b4a10")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes  # UUID.bytes is computed anew on every read

#: The guard does not judge proxies with fewer managed objects than this (every removal is a large share).
GUARD_MIN_MANAGED = 10
ADOPT_REASON = (
    "on the proxy before this tool managed it; the file adopts it (ownership is recorded, nothing else changes)"
)
#: Why an invitation recorded in plain text is replaced (the security migration).
EXPOSED_REASON = "link was readable by read-only keys"


# Change and Action are frozen, but their __init__ writes each field through its slot's own
# setter (_CHANGE_SLOTS, _ACTION_SLOTS): the generated one calls object.__setattr__ per field,
# and building them was a quarter of planning 100,000 new users (300,000 actions).


@dataclass(frozen=True, slots=True)
class Change:
    """One field of an update: ``old`` → ``new``."""

    field: str
    old: Any
    new: Any

    def __init__(self, field: str, old: Any, new: Any) -> None:
        set_field, set_old, set_new = _CHANGE_SLOTS
        set_field(self, field)
        set_old(self, old)
        set_new(self, new)


@dataclass(frozen=True, slots=True)
class Action:
    """One write the apply will make, with everything needed to make it."""

    kind: str
    address: str
    reason: str
    params: dict[str, Any] = field(hash=False)
    changes: tuple[Change, ...] = ()
    depends_on: tuple[str, ...] = ()

    def __init__(
        self,
        kind: str,
        address: str,
        reason: str,
        params: dict[str, Any],
        changes: tuple[Change, ...] = (),
        depends_on: tuple[str, ...] = (),
    ) -> None:
        set_kind, set_address, set_reason, set_params, set_changes, set_depends_on = _ACTION_SLOTS
        set_kind(self, kind)
        set_address(self, address)
        set_reason(self, reason)
        set_params(self, params)
        set_changes(self, changes)
        set_depends_on(self, depends_on)

    @property
    def bookkeeping(self) -> bool:
        """Only records ownership; changes nobody's access."""
        return self.kind in BOOKKEEPING

    @property
    def symbol(self) -> str:
        return KINDS[self.kind].symbol

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
    def from_dict(cls, data: dict[str, Any]) -> Action:
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


_CHANGE_SLOTS = tuple(getattr(Change, f.name).__set__ for f in fields(Change))
_ACTION_SLOTS = tuple(getattr(Action, f.name).__set__ for f in fields(Action))


@dataclass(frozen=True)
class Drift:
    """Something on the proxy that the file does not describe; shown, never acted on."""

    kind: str
    address: str
    detail: str


@dataclass(frozen=True)
class RemovalGuard:
    """peribolos's --maximum-removal-delta, octoDNS's raise_if_unsafe: a property of the plan."""

    removals: int = 0
    managed: int = 0
    max_percent: int = 25

    @property
    def tripped(self) -> bool:
        """More than ``max_percent`` of the managed objects go, and there are enough to judge."""
        return self.managed >= GUARD_MIN_MANAGED and self.removals * 100 > self.max_percent * self.managed

    def message(self) -> str:
        share = f"{100 * self.removals / self.managed:.0f}%" if self.managed else "all"
        return (
            f"this plan removes {self.removals} of the {self.managed} objects under management ({share}), "
            f"more than removals.max_percent ({self.max_percent}%)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "removals": self.removals,
            "managed": self.managed,
            "max_percent": self.max_percent,
            "tripped": self.tripped,
        }


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    drift: tuple[Drift, ...]
    live_fingerprint: str
    source: str = "users.yaml"
    guard: RemovalGuard = RemovalGuard()
    #: The environment of the file this plan is for; None when the file declares none.
    environment: str | None = None
    #: What the reader should know about the run that made the plan (e.g. what its key could change);
    #: not part of what the plan does, nor of its fingerprint.
    warnings: tuple[str, ...] = ()
    #: Where each action's object is declared when the file includes others, and each file's owners (the
    #: PR comment groups by file); beside the actions, not in them: not in the fingerprint, nor compared.
    origins: Origins = field(default_factory=Origins, compare=False)

    @property
    def has_changes(self) -> bool:
        """True when an action changes someone's access (recording ownership alone does not)."""
        return any(not a.bookkeeping for a in self.actions)

    @property
    def fingerprint(self) -> str:
        """A digest of what the plan does, and where; reviewers and ``apply`` compare it.

        The environment is part of it, so a plan reviewed for staging can never pass for production's."""
        actions = [a.to_dict() for a in self.actions]
        content = actions if self.environment is None else {"environment": self.environment, "actions": actions}
        payload = json.dumps(content, sort_keys=True, default=str)
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
            "environment": self.environment,
            "fingerprint": self.fingerprint,
            "live_fingerprint": self.live_fingerprint,
            "has_changes": self.has_changes,
            "summary": self.summary(),
            "removal_guard": self.guard.to_dict(),
            "warnings": list(self.warnings),
            "actions": [a.to_dict() for a in self.actions],
            "drift": [{"kind": d.kind, "address": d.address, "detail": d.detail} for d in self.drift],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Load a saved plan; refuse other format versions and tampered action lists."""
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"plan format_version {data.get('format_version')!r} is not {FORMAT_VERSION!r}")
        plan = cls(
            actions=tuple(Action.from_dict(a) for a in data["actions"]),
            drift=tuple(Drift(d["kind"], d["address"], d["detail"]) for d in data.get("drift", [])),
            live_fingerprint=data["live_fingerprint"],
            source=data.get("source", "users.yaml"),
            environment=data.get("environment"),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
            guard=RemovalGuard(
                **{
                    k: int(v)
                    for k, v in (data.get("removal_guard") or {}).items()
                    if k in ("removals", "managed", "max_percent")
                }
            ),
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
    return _derived_id(f"team:{alias}")


def new_user_id(email: str) -> str:
    return _derived_id(f"user:{email.lower()}")


def _derived_id(name: str) -> str:
    """``str(uuid.uuid5(_ID_NAMESPACE, name))`` written out: the ``UUID`` object in between was
    most of the cost of an id, and a plan of 100,000 new users makes 100,000 of them."""
    h = hashlib.sha1(_ID_NAMESPACE_BYTES + name.encode()).hexdigest()
    # RFC 4122: the 13th hex digit becomes the version (5); the 17th carries the variant (10xx).
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


# --------------------------------------------------------------------------- the planner


@dataclass
class _Matched:
    """Where each declared object is on the proxy, or the id it will get."""

    team_ids: dict[str, str] = field(default_factory=dict)  # alias -> team_id
    live_teams: dict[str, LiveTeam] = field(default_factory=dict)  # alias -> live
    user_ids: dict[str, str] = field(default_factory=dict)  # email key -> user_id; every declared user once planned
    live_users: dict[str, LiveUser] = field(default_factory=dict)  # email key -> live
    claimed_teams: set[str] = field(default_factory=set)  # team ids already matched to a declared team
    organization_ids: dict[str, str] = field(default_factory=dict)  # alias -> organization_id
    claimed_organizations: set[str] = field(default_factory=set)
    #: Organizations this plan creates or changes: the teams placed in them wait for that.
    changed_organizations: set[str] = field(default_factory=set)
    #: Live team id -> the user ids the file lists in it: what removals and drift compare each roster with.
    listed: dict[str, set[str]] = field(default_factory=dict)
    live_organizations: dict[str, LiveOrganization] = field(default_factory=dict)  # alias -> live
    #: Declared users the plan does not act on (email key -> why): the proxy holds several accounts with
    #: their email and none is the tool's. Their accounts are protected from every removal.
    refused: dict[str, str] = field(default_factory=dict)
    #: The duplicates beside a chosen account, and the accounts of refused users (user id -> why).
    duplicates: dict[str, str] = field(default_factory=dict)
    #: The accounts of refused users: no action, removal or roster drift concerns them.
    untouchable: set[str] = field(default_factory=set)
    #: Declared users (email key) who may be given a privileged role: accounts this tool makes or made,
    #: and those the file pins with ``id:``.
    trusted: set[str] = field(default_factory=set)
    #: Privileged grants refused to accounts nobody vouched for (drift of kind ``refused``).
    refused_grants: list[Drift] = field(default_factory=list)


#: A member of a declared team's roster on the proxy: (alias, team, member).
_Member = tuple[str, LiveTeam, LiveMember]


@dataclass(frozen=True)
class _Target:
    """A team as users' ``teams`` entries name it, resolved once for all of its members."""

    alias: str
    team_id: str
    live: LiveTeam | None


def make_plan(desired: DesiredState, live: LiveState, now: datetime) -> Plan:
    """Compare and decide. Raises ``PlanConflict`` instead of guessing between duplicates.

    Linear in the size of the file and of the proxy: every live object is found through the
    snapshot's indexes, never by scanning, and each declared user is looked at a fixed
    number of times."""
    with _cycle_collector_paused():
        return _make_plan(desired, live, now)


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """The planner makes many objects (300,000 actions for 100,000 new users) and no reference
    cycles. Each burst of them made CPython's cycle collector walk the whole heap again (the
    file, the snapshot, the plan so far): more time than the planning itself. Reference
    counting still frees everything; the collector is back on (if it was on) when planning ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _make_plan(desired: DesiredState, live: LiveState, now: datetime) -> Plan:
    conflicts: list[str] = []
    matched = _Matched()
    actions: list[Action] = []

    # Objects with a declared id claim their live object first, so an alias match never
    # hands the same live object to a second declared one.
    for organization in sorted(desired.organizations, key=lambda o: o.id is None):
        actions.extend(_plan_organization(organization, live, matched, conflicts))
    for team in sorted(desired.teams, key=lambda t: t.id is None):
        actions.extend(_plan_team(team, live, matched, conflicts))
    # Each identity is lower-cased once, here, and passed along.
    users = [(user, user.key) for user in desired.users]
    for user, key in users:
        actions.extend(_plan_user(user, key, live, matched, conflicts))
    if conflicts:
        raise PlanConflict(conflicts)
    users = [(user, key) for user, key in users if key not in matched.refused]
    targets = {ref: _target(team, matched) for ref, team in desired.team_refs.items()}
    _record_grants_at_creation(desired, users, actions, targets, matched)
    midnight = start_of_day(now)
    # Every invitation action may call /invitation/new (they are all INVITING), which records the
    # master key's user as creator: without that user row, each waits for the action creating it.
    inviter = () if PROXY_ADMIN_ID in live.users_by_id else (f"user.{PROXY_ADMIN_ID}",)
    added: list[Action] = []
    invitations: list[Action] = []
    for user, key in users:
        user_id, current = matched.user_ids[key], matched.live_users.get(key)
        added.extend(_plan_memberships(user, key, user_id, current, targets, matched))
        invitation = _plan_invitation(user, key, user_id, current, desired, midnight, inviter)
        if invitation is not None:
            invitations.append(invitation)
    actions.extend(added)
    actions.extend(_plan_organization_members(desired, matched))
    if invitations and inviter:
        actions.append(
            Action(
                kind="create_inviter",
                address=f"user.{PROXY_ADMIN_ID}",
                reason="/invitation/new records the master key's user as creator; that user row does not exist yet",
                params={"user_id": PROXY_ADMIN_ID, "user_role": "proxy_admin"},
            )
        )
    actions.extend(invitations)
    # The members of declared teams that the file does not list there: removals and drift look at these alone.
    unlisted = [
        (alias, team, member)
        for alias, team in sorted(matched.live_teams.items())
        for member in team.members
        if member.user_id not in matched.listed[team.team_id] and member.user_id not in matched.untouchable
    ]
    removals, protected = _plan_removals(desired, live, matched, actions, unlisted)
    actions.extend(removals)
    # A deleted user's memberships go with it: they count as removals too, and are no drift.
    deleted = {a.params["user_id"] for a in removals if a.kind == "delete_user"}
    drift = _drift(
        desired,
        live,
        matched,
        unlisted,
        {key: user.role for user, key in users},
        {a.address for a in removals},
        protected,
        deleted,
    )

    actions = _ordered(actions)
    drift.sort(key=lambda d: (d.kind, d.address, d.detail))
    rosters = [*matched.live_teams.values(), *(current for _, current in _member_managed(desired, matched))]
    implied = sum(1 for roster in rosters for m in roster.members if m.user_id in deleted) if deleted else 0
    guard = RemovalGuard(
        len(removals) + implied, _managed_count(desired, live, matched), desired.spec.removals.max_percent
    )
    return Plan(
        actions=tuple(actions),
        drift=tuple(drift),
        live_fingerprint=live.fingerprint,
        source=desired.source,
        guard=guard,
        environment=desired.environment,
        origins=desired.origins(actions),
    )


def _record_grants_at_creation(
    desired: DesiredState,
    users: list[tuple[UserSpec, str]],
    actions: list[Action],
    targets: dict[str, _Target],
    matched: _Matched,
) -> None:
    """A user this plan creates carries, from its creation, the teams and organizations the plan joins it
    to as this tool's grants: no write per membership afterwards. Should a join fail, the next plan joins
    it again (the file lists it), so the record never grants what the file does not."""
    created = {a.params["user_id"]: a for a in actions if a.kind == "create_user"}
    if not created:
        return
    organizations: dict[str, list[str]] = {}
    for organization in desired.organizations:
        for member in organization.members or ():
            organizations.setdefault(member.email.lower(), []).append(matched.organization_ids[organization.alias])
    for user, key in users:
        action = created.get(matched.user_ids.get(key, ""))
        if action is None:
            continue
        grants = {"teams": sorted({targets[team_ref(entry)].team_id for entry in user.teams})}
        if key in organizations:
            grants["organizations"] = sorted(set(organizations[key]))
        action.params["metadata"][OWNER_KEY][GRANTS_KEY] = grants


def _ordered(actions: list[Action]) -> list[Action]:
    """Phase, then name; memberships by (team, user) so one team's adds are adjacent and batch.
    Sorted phase by phase: most phases sort by their address alone, without a key built per action."""
    phases: dict[str, list[Action]] = {kind: [] for kind in PHASES}
    for action in actions:
        phases[action.kind].append(action)
    phases["add_member"].sort(key=_member_order)
    ordered: list[Action] = []
    for kind, group in phases.items():
        if kind != "add_member":
            group.sort(key=_ADDRESS)
        ordered.extend(group)
    return ordered


_ADDRESS = attrgetter("address")


def _member_order(action: Action) -> tuple[str, str]:
    return action.params["team_alias"], action.params["user_email"].lower()


def _plan_team(team: TeamSpec, live: LiveState, matched: _Matched, conflicts: list[str]) -> list[Action]:
    address = f"team.{team.alias}"
    unsupported = [
        name
        for name in TEAM_MEMBER_DEFAULTS
        if name in team.model_fields_set and name not in (live.team_fields or {name})
    ]
    if unsupported:
        conflicts.append(
            f"{address}: {', '.join(unsupported)}: this proxy's LiteLLM does not take it on /team/new "
            "(1.110.2 does; 1.80.5 has no team_member_budget_duration): upgrade LiteLLM or leave it out"
        )
        return []
    unknown = [
        p for p in team.team_member_permissions or () if live.team_permissions and p not in live.team_permissions
    ]
    if unknown:
        conflicts.append(
            f"{address}: team_member_permissions {', '.join(unknown)}: not accepted by this proxy, "
            f"which accepts {', '.join(sorted(live.team_permissions or ()))}"
        )
        return []
    found = _find(address, team.id, team.alias, live.teams_by_id, live.teams_by_alias, matched.claimed_teams, conflicts)
    if found is None:
        return []
    if not found:
        team_id = team.id or new_team_id(team.alias)
        if team_id in live.teams_by_id:
            conflicts.append(
                f"{address}: team id {team_id} is taken by a team with another alias; add 'id:' to adopt it"
            )
            return []
        matched.team_ids[team.alias] = team_id
        matched.claimed_teams.add(team_id)
        settings = {**team.managed_settings, **{k: v for k, v in _placement(team, matched).items() if v}}
        creation = _creation("create_team", address, {"team_id": team_id, "team_alias": team.alias}, settings)
        return _after_organization(team, [creation], matched)
    current = found[0]
    matched.team_ids[team.alias] = current.team_id
    matched.claimed_teams.add(current.team_id)
    matched.live_teams[team.alias] = current
    matched.listed[current.team_id] = set()
    wanted = {**team.managed_settings, **_placement(team, matched)}
    if team.id and current.alias != team.alias:
        wanted["team_alias"] = team.alias
    have = {**current.settings, "team_alias": current.alias}
    uncleared = [n for n in _UNCLEARABLE if n in wanted and wanted[n] is None and have.get(n) is not None]
    if uncleared:
        conflicts.append(
            f"{address}: {', '.join(uncleared)}: LiteLLM cannot take this away once set (its update ignores "
            "null, or fails on it); give a value, or leave the field out to stop managing it"
        )
        return []
    actions = _existing("team", address, {"team_id": current.team_id}, current.managed, have, wanted, "settings differ")
    return _after_organization(team, actions, matched)


#: Team settings that no LiteLLM update can set back to null.
_UNCLEARABLE = (*TEAM_MEMBER_DEFAULTS, "team_member_key_duration")


def _plan_organization(
    organization: OrganizationSpec, live: LiveState, matched: _Matched, conflicts: list[str]
) -> list[Action]:
    address = f"organization.{organization.alias}"
    found = _find(
        address,
        organization.id,
        organization.alias,
        live.organizations_by_id,
        live.organizations_by_alias,
        matched.claimed_organizations,
        conflicts,
    )
    if found is None:
        return []
    settings = organization.managed_settings
    if not found:
        organization_id = organization.id or _derived_id(f"organization:{organization.alias}")
        if organization_id in live.organizations_by_id:
            conflicts.append(
                f"{address}: organization id {organization_id} is taken by an organization with another alias; "
                "add 'id:' to adopt it"
            )
            return []
        matched.organization_ids[organization.alias] = organization_id
        matched.claimed_organizations.add(organization_id)
        matched.changed_organizations.add(organization.alias)
        names = {"organization_id": organization_id, "organization_alias": organization.alias}
        return [_creation("create_organization", address, names, settings)]
    current = found[0]
    matched.organization_ids[organization.alias] = current.organization_id
    matched.live_organizations[organization.alias] = current
    matched.claimed_organizations.add(current.organization_id)
    wanted = dict(settings)
    if organization.id and current.alias != organization.alias:
        wanted["organization_alias"] = organization.alias
    have = {**current.settings, "organization_alias": current.alias}
    ids = {"organization_id": current.organization_id}
    actions = _existing("organization", address, ids, current.managed, have, wanted, "settings differ")
    if any(a.kind == "update_organization" for a in actions):
        matched.changed_organizations.add(organization.alias)
    return actions


_Live = TypeVar("_Live", LiveTeam, LiveOrganization)


def _find(
    address: str,
    declared_id: str | None,
    alias: str,
    by_id: dict[str, _Live],
    by_alias: dict[str, list[_Live]],
    claimed: set[str],
    conflicts: list[str],
) -> list[_Live] | None:
    """The live team or organization a declared one is: by its declared id, else by its alias among
    those no other declared one took. None (and a conflict) when the alias is ambiguous."""
    if declared_id:
        return [by_id[declared_id]] if declared_id in by_id else []
    found = [o for o in by_alias.get(alias, []) if _live_id(o) not in claimed]
    if len(found) > 1:
        kind = address.split(".", 1)[0]
        ids = ", ".join(_live_id(o) for o in found)
        conflicts.append(
            f"{address}: {len(found)} {kind}s on the proxy have the alias {alias!r} ({ids}); "
            "add 'id:' to the file to pick one"
        )
        return None
    return found


def _live_id(found: LiveTeam | LiveOrganization) -> str:
    return found.team_id if isinstance(found, LiveTeam) else found.organization_id


def _creation(kind: str, address: str, names: dict[str, str], settings: dict[str, Any]) -> Action:
    """Creating a team or an organization: its id and alias (``names``), the settings the file gives,
    and this tool's ownership in its metadata."""
    return Action(
        kind=kind,
        address=address,
        reason="declared in the file, not on the proxy",
        params={**names, **settings, "metadata": {OWNER_KEY: {"managed": True}}},
        changes=tuple(Change(k, None, v) for k, v in names.items() if not k.endswith("_alias"))
        + tuple(Change(k, None, v) for k, v in sorted(settings.items())),
    )


def _placement(team: TeamSpec, matched: _Matched) -> dict[str, str | None]:
    """The organization the file puts the team in, as LiteLLM's ``organization_id`` (None: in none);
    nothing when the file does not say."""
    if "organization" not in team.model_fields_set:
        return {}
    return {"organization_id": matched.organization_ids[team.organization] if team.organization else None}


def _after_organization(team: TeamSpec, actions: list[Action], matched: _Matched) -> list[Action]:
    """The team's creation or update waits for what this plan does to the organization it goes into."""
    if team.organization not in matched.changed_organizations:
        return actions
    depends = (f"organization.{team.organization}",)
    return [
        Action(a.kind, a.address, a.reason, a.params, a.changes, depends)
        if a.kind in ("create_team", "update_team")
        else a
        for a in actions
    ]


def _target(team: TeamSpec, matched: _Matched) -> _Target:
    return _Target(team.alias, matched.team_ids[team.alias], matched.live_teams.get(team.alias))


def _existing(
    kind: str,
    address: str,
    ids: dict[str, str],
    managed: bool,
    have: dict[str, Any],
    wanted: dict[str, Any],
    differs: str,
) -> list[Action]:
    """An object already on the proxy: adopted if the tool does not own it yet, updated where it differs."""
    actions = []
    if not managed:
        actions.append(Action(kind=f"adopt_{kind}", address=address, reason=ADOPT_REASON, params=ids))
    changes = _diff(have, wanted) if wanted else ()
    if changes:
        actions.append(
            Action(
                kind=f"update_{kind}",
                address=address,
                reason=f"{differs}: " + ", ".join(c.field for c in changes),
                params={**ids, **{c.field: c.new for c in changes}},
                changes=changes,
            )
        )
    return actions


def _diff(have: dict[str, Any], want: dict[str, Any]) -> tuple[Change, ...]:
    """Field-level differences of the fields in ``want``; model lists compare as sets, numbers
    by value (1 == 1.0).

    The common case (nothing differs) is settled by a cheap comparison; DeepDiff only
    looks at the fields that comparison could not call equal."""
    suspects = [name for name in want if not _same(have.get(name), want[name])]
    if not suspects:
        return ()
    changed = DeepDiff(
        {k: have.get(k) for k in suspects},
        {k: want[k] for k in suspects},
        ignore_order=True,
        ignore_numeric_type_changes=True,
    )
    return tuple(Change(name, have.get(name), want[name]) for name in sorted(changed.affected_root_keys))


def _same(a: Any, b: Any) -> bool:
    """Equal for certain (a False only means "ask DeepDiff")."""
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(str, a)) == sorted(map(str, b))
    return type(a) is type(b) and a == b


def _one_account(address: str, key: str, found: list[LiveUser], matched: _Matched) -> LiveUser | None:
    """The account a declared email means when several on the proxy have it: the one this tool owns.
    Anyone who may call ``/user/update`` can make a second account with the same email (a read-only key
    on 1.80.5 can), so a duplicate never stops the whole plan: the others are drift the check fails on,
    and where no account is the tool's, only this user's actions are refused (None)."""
    owned = [u for u in found if u.managed]
    ids = ", ".join(sorted(u.user_id for u in found))
    if len(owned) == 1:
        chosen = owned[0]
        for other in found:
            if other is not chosen:
                matched.duplicates[other.user_id] = (
                    f"another account with the email of {address} (user_id {chosen.user_id}, owned by this "
                    f"tool); this one (user_id {other.user_id}) is not managed: delete it on the proxy"
                )
        return chosen
    why = (
        f"{len(found)} accounts on the proxy have this email ({ids}) and "
        f"{'none is' if not owned else f'{len(owned)} are'} owned by this tool: nothing is done for this user; "
        "delete the accounts that are not theirs on the proxy"
    )
    matched.refused[key] = why
    for other in found:
        matched.duplicates[other.user_id] = f"one of the {len(found)} accounts of {address} ({ids})"
        matched.untouchable.add(other.user_id)
    return None


def _pinned_account(
    user: UserSpec, key: str, address: str, live: LiveState, matched: _Matched
) -> list[LiveUser] | None:
    """The accounts a user pinned with ``id:`` may be: the pinned one, or none when it is not on the proxy
    and no account has the email (it is created with that id). None: refused (the pin and the proxy disagree)."""
    found = live.users_by_key.get(key, [])
    pinned = live.users_by_id.get(user.id or "")
    if pinned is not None and pinned.key == key:
        for other in found:
            if other is not pinned:
                matched.duplicates[other.user_id] = (
                    f"another account with the email of {address} (user_id {pinned.user_id}, pinned by the file); "
                    f"this one (user_id {other.user_id}) is not managed: delete it on the proxy"
                )
        return [pinned]
    if pinned is not None:
        why = f"'id: {user.id}' is the account of {pinned.email or 'no email'} on the proxy, not of this user"
    elif found:
        ids = ", ".join(sorted(u.user_id for u in found))
        why = f"'id: {user.id}' is not on the proxy, but {len(found)} account(s) have this email ({ids})"
    else:
        return []
    matched.refused[key] = f"{why}: nothing is done for this user; fix the pin"
    for other in found:
        matched.untouchable.add(other.user_id)
        matched.duplicates.setdefault(other.user_id, f"an account with the email of {address}, whose pin disagrees")
    return None


def _plan_user(user: UserSpec, key: str, live: LiveState, matched: _Matched, conflicts: list[str]) -> list[Action]:
    address = f"user.{key}"
    found = live.users_by_key.get(key, ()) if user.id is None else _pinned_account(user, key, address, live, matched)
    if found is None:
        return []
    if len(found) > 1:
        chosen = _one_account(address, key, found, matched)
        if chosen is None:
            return []
        found = [chosen]
    if not found:
        user_id = user.id or _derived_id(f"user:{key}")  # new_user_id(user.email)
        clash = live.users_by_id.get(user_id)
        if clash is not None:
            conflicts.append(
                f"{address}: user id {user_id} already exists with email {clash.email!r}; "
                "the email was changed on the proxy"
            )
            return []
        matched.user_ids[key] = user_id
        matched.trusted.add(key)
        role = user.role or DEFAULT_ROLE
        params = {
            "user_id": user_id,
            "user_email": user.email,
            "user_role": role,
            "metadata": {OWNER_KEY: {"managed": True, GRANTS_KEY: {}}},
        }
        changes: tuple[Change, ...] = (Change("user_id", None, user_id), Change("user_role", None, role))
        if user.alias is not None:
            params["user_alias"] = user.alias
            changes += (Change("user_alias", None, user.alias),)
        settings = user.managed_settings
        params.update(settings)
        changes += tuple(Change(k, None, v) for k, v in sorted(settings.items()))
        return [
            Action(
                kind="create_user",
                address=address,
                reason="declared in the file, not on the proxy",
                params=params,
                changes=changes,
            )
        ]
    current = found[0]
    matched.user_ids[key] = current.user_id
    matched.live_users[key] = current
    if current.created_by_tool or user.id == current.user_id:
        matched.trusted.add(key)
    managed = current.managed
    settings = user.managed_settings
    if managed and user.role is None and user.alias is None and not settings:
        return []  # owned, and the file manages none of its fields: nothing to adopt or compare
    wanted: dict[str, Any] = dict(settings)
    if user.role is not None and _grantable(address, key, current, user.role, current.role, matched):
        wanted["user_role"] = user.role
    if user.alias is not None:
        wanted["user_alias"] = user.alias
    have = {**current.settings, "user_role": current.role, "user_alias": current.alias}
    actions = _existing("user", address, {"user_id": current.user_id}, managed, have, wanted, "differs")
    return [_adoption_of(current, a) if a.kind == "adopt_user" else a for a in actions]


def _adoption_of(account: LiveUser, action: Action) -> Action:
    """The adoption of an account this tool did not make, saying which: a reviewer must see whose
    account the file takes over (anyone who could call /user/update may have made it)."""
    sso = f"SSO identity {account.sso_user_id}" if account.sso_user_id else "no SSO identity"
    made = f"created {utc_date(account.created_at) or 'at an unknown date'}"
    reason = f"adopt existing account (user_id {account.user_id}, {made}, {sso}): {ADOPT_REASON}"
    return Action(kind=action.kind, address=action.address, reason=reason, params=action.params)


def _grantable(address: str, key: str, account: LiveUser, role: str, held: str | None, matched: _Matched) -> bool:
    """Whether the plan may give ``account`` the ``role`` it asks for (it holds ``held``): a privileged
    role goes only to an account this tool made or one the file pins with ``id:``. Otherwise the
    grant is refused, saying how to pin it, and the rest of the plan goes on."""
    if role == held or role not in _PRIVILEGED_GRANTS or key in matched.trusted:
        return True
    matched.refused_grants.append(
        Drift(
            "refused",
            address,
            f"the file grants {role} to an account this tool did not create (user_id {account.user_id}, "
            f"created {utc_date(account.created_at) or 'at an unknown date'}); not granted. If it is theirs, "
            f"pin it: 'id: {account.user_id}' on this user",
        )
    )
    return False


def _plan_memberships(
    user: UserSpec, key: str, user_id: str, live_user: LiveUser | None, targets: dict[str, _Target], matched: _Matched
) -> list[Action]:
    """The user's missing memberships, and the settings of existing ones that differ; records
    the user on each live team's list as it goes. ``live_user``: the user on the proxy, None
    when this plan creates it."""
    actions = []
    for entry in user.teams:
        target, settings = targets[team_ref(entry)], membership_settings(entry)
        role = settings.get("role")
        if role is not None and live_user is not None:
            held = target.live.member_roles.get(user_id) if target.live is not None else None
            if not _grantable(f"membership.{target.alias}.{key}", key, live_user, role, held, matched):
                settings = {name: value for name, value in settings.items() if name != "role"}
        reason = "listed in the file"
        if target.live is not None:
            matched.listed[target.team_id].add(user_id)
            if user_id in target.live.member_ids:
                if settings:
                    actions.extend(_membership_update(user, key, user_id, target, settings))
                continue
            if live_user is not None and target.team_id in live_user.teams:
                reason = "the user lists the team, but the team's roster lacks the user (a lost concurrent write)"
        # Whatever this apply creates first: the team, then the user.
        depends: tuple[str, ...] = () if target.live is not None else (f"team.{target.alias}",)
        if live_user is None:
            depends += (f"user.{key}",)
        params = {"team_id": target.team_id, "user_id": user_id, "team_alias": target.alias, "user_email": user.email}
        changes: tuple[Change, ...] = ()
        if settings:
            # Only what differs from a plain new member (role user, no budget of its own) is sent.
            extra = {k: v for k, v in sorted(settings.items()) if v is not None and v != "user"}
            params.update(extra)
            changes = tuple(Change(k, None, v) for k, v in extra.items())
        actions.append(
            Action(
                kind="add_member",
                address=f"membership.{target.alias}.{key}",
                reason=reason,
                params=params,
                changes=changes,
                depends_on=depends,
            )
        )
    return actions


def _membership_update(
    user: UserSpec, key: str, user_id: str, target: _Target, settings: dict[str, Any]
) -> list[Action]:
    """``/team/member_update`` where the member's role or own budget differ from the file's.

    The member's current budget limits go along unchanged: 1.80.5 replaces the member's whole
    budget with what an update sends (nothing sent: the budget is dropped); 1.110.2 takes the
    same values as no change."""
    team = target.live
    assert team is not None
    budget = (team.member_budgets or {}).get(user_id, {})
    have = {"role": team.member_roles.get(user_id), "max_budget_in_team": budget.get("max_budget_in_team")}
    changes = _diff(have, settings)
    if not changes:
        return []
    kept = {name: value for name, value in budget.items() if value is not None}
    return [
        Action(
            kind="update_member",
            address=f"membership.{target.alias}.{key}",
            reason="settings in the team differ: " + ", ".join(c.field for c in changes),
            params={
                "team_id": target.team_id,
                "user_id": user_id,
                "team_alias": target.alias,
                "user_email": user.email,
                **kept,
                **{c.field: c.new for c in changes},
            },
            changes=changes,
        )
    ]


def _plan_organization_members(desired: DesiredState, matched: _Matched) -> list[Action]:
    """The members the file lists in each organization that declares ``members``: added (after
    whatever this plan creates of the organization and the user), or given their role."""
    actions = []
    for organization in desired.organizations:
        if organization.members is None:
            continue
        organization_id = matched.organization_ids[organization.alias]
        current = matched.live_organizations.get(organization.alias)
        roles = current.member_roles if current is not None else {}
        for member in organization.members:
            key = member.email.lower()
            if key in matched.refused:
                continue
            user_id = matched.user_ids[key]
            address = f"org_membership.{organization.alias}.{key}"
            names = {
                "organization_id": organization_id,
                "user_id": user_id,
                "organization_alias": organization.alias,
                "user_email": member.email,
            }
            account = matched.live_users.get(key)
            wanted = member.role
            if wanted is not None and account is not None:
                wanted = wanted if _grantable(address, key, account, wanted, roles.get(user_id), matched) else None
            if user_id in roles:
                if wanted is not None and roles[user_id] != wanted:
                    change = Change("role", roles[user_id], wanted)
                    actions.append(
                        Action("update_org_member", address, "role differs", {**names, "role": wanted}, (change,))
                    )
                continue
            role = wanted or "internal_user"
            depends = () if current is not None else (f"organization.{organization.alias}",)
            if key not in matched.live_users:
                depends += (f"user.{key}",)
            actions.append(
                Action(
                    "add_org_member",
                    address,
                    "listed in the file",
                    {**names, "role": role},
                    (Change("role", None, role),),
                    depends,
                )
            )
    return actions


def _plan_invitation(
    user: UserSpec,
    key: str,
    user_id: str,
    current: LiveUser | None,
    desired: DesiredState,
    midnight: datetime,
    inviter: tuple[str, ...],
) -> Action | None:
    """Decided from what the tool recorded on the user alone: no invitation is looked up.

    A pending link needs nothing. A link past its expiry is renewed; whether it was
    accepted meanwhile can only be read with the sealed id, so apply checks that first
    and records the acceptance instead of inviting again. ``inviter``: the action creating
    the inviter user, when it is planned (each invitation then depends on it).
    """
    if current is None:
        return _invitation("create_invitation", key, user, user_id, "new user", (f"user.{key}",) + inviter)
    record = current.invitation
    if current.sso_user_id and (record is None or not record.exposed_id):
        return None  # they sign in through SSO: an onboarding link would only be one more credential
    if record is None:
        wants = user.invite if user.invite is not None else desired.spec.defaults.invite
        if current.managed and not current.owned.get("adopted"):
            return _invitation(
                "create_invitation", key, user, user_id, "created by this tool but never invited", inviter
            )
        if wants:
            return _invitation(
                "create_invitation", key, user, user_id, "invite: true and never invited by this tool", inviter
            )
        return None
    if record.exposed_id:
        if record.accepted_at:
            why = (
                f"{EXPOSED_REASON}; accepted on {utc_date(record.accepted_at) or 'an unknown date'}, "
                "the old link is deleted"
            )
        else:
            why = f"{EXPOSED_REASON}; the old link is deleted and a new one created"
        return _invitation("replace_invitation", key, user, user_id, why, inviter)
    if record.intent_at:
        why = (
            f"an apply on {utc_date(record.intent_at) or 'an unknown date'} asked for a link and did not record "
            "it (interrupted, or the answer was lost); apply records that link from the onboarding report where "
            "the report holds it, else reports it as unrecorded and creates a new one"
        )
        return _invitation("create_invitation", key, user, user_id, why, inviter)
    expired = expired_before(record.expires_at, midnight)
    if not record.accepted_at and not expired and record.delivery == "email_failed":
        return _invitation(
            "deliver_invitation",
            key,
            user,
            user_id,
            "the email with the link could not be sent; apply hands it over again",
            inviter,
        )
    if outdated(record.sealed) and (record.accepted_at or not expired):
        why = "its id was sealed by an earlier release, with a key cheap to guess from; apply seals it again"
        return _invitation("reseal_invitation", key, user, user_id, why, ())
    if record.accepted_at or not expired:
        return None
    expired_on = utc_date(record.expires_at) or "an unreadable date"
    why = (
        f"the previous invitation expired on {expired_on}; apply records it if it was accepted, else creates a new link"
    )
    return _invitation("renew_invitation", key, user, user_id, why, inviter)


def _invitation(kind: str, key: str, user: UserSpec, user_id: str, why: str, depends: tuple[str, ...]) -> Action:
    # No metadata and no ids in params: the executor merges into the user's metadata as
    # read at apply time, and a plan file never carries an invitation id.
    return Action(
        kind=kind,
        address=f"invitation.{key}",
        reason=why if kind != "create_invitation" else f"invitation will be created: {why}",
        params={"user_id": user_id, "user_email": user.email},
        depends_on=depends,
    )


#: Roles that administer the proxy: whoever holds one unreviewed is drift that must never go unseen.
PRIVILEGED_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})
#: Roles granted only to accounts this tool made or the file pins: the proxy's, a team's, an organization's.
_PRIVILEGED_GRANTS = PRIVILEGED_ROLES | {"admin", "org_admin"}
#: Drift the drift check fails on whatever else it is told: a privileged role nobody reviewed, a second
#: account with a declared user's email, a declared user the plan cannot act on.
FAILING_DRIFT = frozenset({"privilege", "duplicate", "refused"})


def _member_address(alias: str, user_id: str, live: LiveState, kind: str = "membership") -> str:
    user = live.users_by_id.get(user_id)
    return f"{kind}.{alias}.{(user.key if user and user.key else user_id)}"


def _plan_removals(
    desired: DesiredState, live: LiveState, matched: _Matched, planned: list[Action], unlisted: list[_Member]
) -> tuple[list[Action], dict[str, str]]:
    """The removals the file's scopes ask for, and the principals protected from any removal
    (user id -> why). Only owned users and teams are deleted; memberships only of declared teams.
    ``added`` are the planned ``add_member`` actions (a move adds before it removes)."""
    scopes = desired.spec.removals
    protected = {PROXY_ADMIN_ID: "the master key's own user"}
    protected.update({user_id: matched.duplicates[user_id] for user_id in matched.untouchable})
    if live.caller_id:
        protected[live.caller_id] = "it owns the key this tool runs with"
    actions: list[Action] = []
    declared = matched.user_ids  # keyed by every declared user's email key

    deleting: list[LiveUser] = []
    if scopes.users:
        deleting = sorted(
            (u for u in live.users if u.managed and u.key not in declared and u.user_id not in protected),
            key=lambda u: u.key or u.user_id,
        )
        admins = [u for u in live.users if u.role == "proxy_admin" and u.user_id != PROXY_ADMIN_ID]
        doomed_admins = [u for u in deleting if u.role == "proxy_admin"]
        if admins and len(doomed_admins) == len(admins):
            last = doomed_admins[0]
            protected[last.user_id] = "the last proxy_admin"
            deleting.remove(last)
        for user in deleting:
            why = (
                "owned by this tool and no longer in the file; LiteLLM deletes its {keys} and onboarding links with it"
            )
            actions.append(
                _deletion(
                    "delete_user",
                    f"user.{user.key or user.user_id}",
                    why,
                    {"user_id": user.user_id, "user_email": user.email},
                    user.key_count,
                )
            )

    if scopes.memberships:
        gone = {u.user_id for u in deleting}
        leaving = [
            (alias, team, member)
            for alias, team, member in unlisted
            if member.user_id not in protected
            and member.user_id not in gone
            and _removable(live, scopes.memberships, "teams", team.team_id, member.user_id)
        ]
        adds: dict[str, list[str]] = {}
        if leaving:
            for add in planned:
                if add.kind == "add_member":
                    adds.setdefault(add.params["user_id"], []).append(add.address)
        for alias, team, member in leaving:
            member_user = live.users_by_id.get(member.user_id)
            stays = (
                ""
                if member_user is not None and member_user.key in declared
                else "; the user is not in the file and stays on the proxy"
            )
            address = _member_address(alias, member.user_id, live)
            actions.append(
                Action(
                    kind="remove_member",
                    address=address,
                    reason=f"not listed in the file for this team{stays}",
                    params={
                        "team_id": team.team_id,
                        "user_id": member.user_id,
                        "team_alias": alias,
                        "user_email": member_user.email if member_user else None,
                    },
                    # A move adds first: the user is never without a team in between.
                    depends_on=tuple(sorted(a for a in adds.get(member.user_id, ()) if a != address)),
                )
            )

        for alias, organization, member in _unlisted_org_members(desired, matched):
            if member.user_id in protected or member.user_id in gone:
                continue
            if not _removable(live, scopes.memberships, "organizations", organization.organization_id, member.user_id):
                continue
            member_user = live.users_by_id.get(member.user_id)
            actions.append(
                Action(
                    kind="remove_org_member",
                    address=_member_address(alias, member.user_id, live, "org_membership"),
                    reason="not listed in the organization's members in the file",
                    params={
                        "organization_id": organization.organization_id,
                        "user_id": member.user_id,
                        "organization_alias": alias,
                        "user_email": member_user.email if member_user else None,
                    },
                )
            )

    if scopes.teams:
        for team in sorted(live.teams, key=lambda t: t.alias or t.team_id):
            if team.managed and team.team_id not in matched.claimed_teams:
                why = "owned by this tool and no longer declared; LiteLLM deletes its {keys} with it"
                actions.append(
                    _deletion(
                        "delete_team",
                        f"team.{team.alias or team.team_id}",
                        why,
                        {"team_id": team.team_id, "team_alias": team.alias},
                        team.key_count,
                    )
                )
    if scopes.organizations:
        actions.extend(_organization_deletions(live, matched, planned + actions))
    return actions, protected


def _organization_deletions(live: LiveState, matched: _Matched, planned: list[Action]) -> list[Action]:
    """Owned organizations the file no longer declares. LiteLLM deletes an organization's teams
    and their keys with it, so one that still holds a team this plan neither deletes nor moves
    out is a conflict, never a deletion. ``planned``: every action so far (a team's update that
    changes its ``organization_id`` moves it out of the one it is in)."""
    leaving = {
        a.params["team_id"]: a.address
        for a in planned
        if a.kind == "delete_team" or (a.kind == "update_team" and "organization_id" in a.params)
    }
    conflicts: list[str] = []
    actions = []
    for organization in sorted(live.organizations, key=lambda o: o.alias or o.organization_id):
        if not organization.managed or organization.organization_id in matched.claimed_organizations:
            continue
        address = f"organization.{organization.alias or organization.organization_id}"
        held = [t for t in live.teams if t.settings.get("organization_id") == organization.organization_id]
        staying = [t.alias or t.team_id for t in held if t.team_id not in leaving]
        if staying:
            conflicts.append(
                f"{address}: owned by this tool and no longer declared, but it still holds the team(s) "
                f"{', '.join(sorted(staying))}; LiteLLM deletes an organization's teams and their keys with it: "
                "move them out (organization: null) or delete them (removals.teams) first"
            )
            continue
        depends = tuple(sorted(leaving[t.team_id] for t in held))
        actions.append(
            Action(
                kind="delete_organization",
                address=address,
                reason="owned by this tool and no longer declared; LiteLLM deletes its keys with it",
                params={"organization_id": organization.organization_id, "organization_alias": organization.alias},
                depends_on=depends,
            )
        )
    if conflicts:
        raise PlanConflict(conflicts)
    return actions


def _member_managed(desired: DesiredState, matched: _Matched) -> list[tuple[OrganizationSpec, LiveOrganization]]:
    """The declared organizations on the proxy whose members the file manages (it lists ``members``), by alias."""
    return [
        (o, matched.live_organizations[o.alias])
        for o in sorted(desired.organizations, key=lambda o: o.alias)
        if o.members is not None and o.alias in matched.live_organizations
    ]


def _unlisted_org_members(desired: DesiredState, matched: _Matched) -> list[tuple[str, LiveOrganization, LiveMember]]:
    """The members of each organization whose members the file manages, who the file does not list there."""
    found = []
    for organization, current in _member_managed(desired, matched):
        listed = {matched.user_ids.get(m.email.lower()) for m in organization.members} | matched.untouchable
        found += [(organization.alias, current, m) for m in current.members if m.user_id not in listed]
    return found


def _removable(live: LiveState, scope: bool | str, kind: str, group_id: str, user_id: str) -> bool:
    """Whether ``removals.memberships`` takes this membership away: every unlisted one (``true``), or only
    one this tool granted (``owned``): members that SSO, SCIM, the UI or the API added stay."""
    if scope != "owned":
        return bool(scope)
    account = live.users_by_id.get(user_id)
    return account is not None and account.granted(kind, group_id)


def _deletion(kind: str, address: str, why: str, params: dict[str, Any], key_count: int | None) -> Action:
    """A deletion, saying how many keys go with it (``why`` has a ``{keys}`` slot)."""
    keys = f"{key_count} key(s)" if key_count is not None else "keys"
    return Action(
        kind=kind,
        address=address,
        reason=why.format(keys=keys),
        params=params,
        changes=(Change("keys", key_count, 0),) if key_count else (),
    )


def _managed_count(desired: DesiredState, live: LiveState, matched: _Matched) -> int:
    """What the removal guard measures against: owned users, teams and organizations, and the
    memberships of the declared teams and of the declared organizations that manage their members."""
    users = sum(1 for u in live.users if u.managed and u.user_id != PROXY_ADMIN_ID)
    teams = sum(1 for t in live.teams if t.managed)
    organizations = sum(1 for o in live.organizations if o.managed)
    members = sum(1 for t in matched.live_teams.values() for m in t.members if m.user_id != PROXY_ADMIN_ID)
    org_members = sum(
        1 for _, current in _member_managed(desired, matched) for m in current.members if m.user_id != PROXY_ADMIN_ID
    )
    return users + teams + organizations + members + org_members


def _drift(
    desired: DesiredState,
    live: LiveState,
    matched: _Matched,
    unlisted: list[_Member],
    declared_roles: dict[str, str | None],
    removed: set[str],
    protected: dict[str, str],
    deleted: set[str],
) -> list[Drift]:
    """What the proxy has and the file does not say (and no removal takes away): extra users,
    teams, organizations and memberships, and any privileged role the file does not grant (kind
    ``privilege``), whether or not the file manages that user's role. Each says how to resolve it.
    ``declared_roles``: the role the file gives each declared user (email key -> role or None);
    ``deleted``: the users this plan deletes (their memberships go with them)."""
    items: list[Drift] = [Drift("refused", f"user.{key}", why) for key, why in matched.refused.items()]
    items += matched.refused_grants
    scopes = desired.spec.removals
    for user in live.users:
        if user.user_id == PROXY_ADMIN_ID:
            continue
        if user.user_id in matched.duplicates:
            role = f"; it has the role {user.role}" if user.role in PRIVILEGED_ROLES else ""
            items.append(Drift("duplicate", f"user.{user.user_id}", matched.duplicates[user.user_id] + role))
            continue
        privileged = user.role in PRIVILEGED_ROLES and declared_roles.get(user.key or "") != user.role
        if not privileged and user.key in declared_roles:
            continue  # declared, and no role the file does not grant: nothing to say
        address = f"user.{user.key or user.user_id}"
        if privileged:
            if user.key in declared_roles:
                granted = f"the file declares {declared_roles[user.key] or 'no role (internal_user for new users)'}"
            else:
                granted = "the file does not declare this user"
            kept = f"; protected from removal: {protected[user.user_id]}" if user.user_id in protected else ""
            items.append(
                Drift(
                    "privilege",
                    address,
                    f"has the role {user.role} on the proxy (user_id {user.user_id}); {granted}{kept}",
                )
            )
        elif address in removed:
            continue
        elif user.user_id in protected:
            items.append(
                Drift("user", address, f"not in the file, and protected from removal: {protected[user.user_id]}")
            )
        elif user.key is None:
            items.append(Drift("user", address, "on the proxy without an email; not managed (never deleted)"))
        elif user.managed:
            hint = "" if scopes.users else "; removals.users would delete it"
            items.append(Drift("user", address, f"owned by this tool (user_id {user.user_id}), not in the file{hint}"))
        else:
            items.append(
                Drift(
                    "user",
                    address,
                    f"on the proxy (user_id {user.user_id}), not in the file; not owned by this tool, never deleted",
                )
            )
    for team in live.teams:
        address = f"team.{team.alias or team.team_id}"
        if team.team_id not in matched.claimed_teams and address not in removed:
            owner = "owned by this tool" if team.managed else "not owned by this tool, never deleted"
            items.append(Drift("team", address, f"on the proxy (team_id {team.team_id}), not in the file; {owner}"))
    for organization in live.organizations:
        address = f"organization.{organization.alias or organization.organization_id}"
        if organization.organization_id not in matched.claimed_organizations and address not in removed:
            owner = "owned by this tool" if organization.managed else "not owned by this tool, never deleted"
            hint = (
                "" if scopes.organizations or not organization.managed else "; removals.organizations would delete it"
            )
            items.append(
                Drift(
                    "organization",
                    address,
                    f"on the proxy (organization_id {organization.organization_id}), not in the file; {owner}{hint}",
                )
            )
    memberships = [("membership", "teams", alias, group, member) for alias, group, member in unlisted] + [
        ("org_membership", "organizations", alias, group, member)
        for alias, group, member in _unlisted_org_members(desired, matched)
    ]
    for kind, group_kind, alias, group, member in memberships:
        if member.user_id == PROXY_ADMIN_ID or member.user_id in deleted:
            continue
        address = _member_address(alias, member.user_id, live, kind)
        if address in removed:
            continue
        group_id = group.team_id if isinstance(group, LiveTeam) else group.organization_id
        if scopes.memberships == "owned" and not _removable(live, "owned", group_kind, group_id, member.user_id):
            items.append(
                Drift(
                    "granted_outside",
                    address,
                    f"member ({member.role}) granted outside this tool (SSO, SCIM, the UI or the API), not listed "
                    "in the file; removals.memberships: owned leaves it (true would remove it)",
                )
            )
            continue
        if member.user_id in protected:
            detail = (
                f"member ({member.role}) on the proxy, not listed in the file; protected: {protected[member.user_id]}"
            )
        else:
            detail = f"member ({member.role}) on the proxy, not listed in the file" + (
                "" if scopes.memberships else "; removals.memberships would remove it"
            )
        items.append(Drift(kind, address, detail))
    return items
