"""The live state: a complete, normalised snapshot of the proxy's users and teams.

The planner only ever sees this snapshot, never the client, which keeps planning
pure. A snapshot is all-or-nothing: a listing that does not add up is read once
more and then fails; no plan is made from a partial view.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, time, timezone
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

from .client import IncompleteRead, LiteLLMClient
from .desired import DURATION, ORGANIZATION_SETTINGS, TEAM_SETTINGS, USER_SETTINGS
from .lock import is_lock_row
from .sealing import Sealer

#: The one metadata key this tool owns on users and teams.
OWNER_KEY = "litellm_reconciler"
#: Under OWNER_KEY: the memberships this tool granted the user (``{"teams": [ids], "organizations": [ids]}``).
GRANTS_KEY = "granted"
#: The identity the master key acts as; LiteLLM adds it to teams and uses it for invitations.
PROXY_ADMIN_ID = "default_user_id"


R = TypeVar("R")


class _once(Generic[R]):
    """A value derived from a frozen object, computed on first read and kept in the instance.

    ``functools.cached_property`` without its lock (on Python 3.11 taking that lock cost more
    than computing a user's key) and without writing to the instance's ``__dict__``, which
    would give each of 100,000 users a dictionary of its own. Frozen snapshots need no lock:
    two threads racing compute the same value.
    """

    def __init__(self, compute: Callable[[Any], R]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _once[R]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> R: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> R | _once[R]:
        if instance is None:
            return self
        value = self.compute(instance)
        # Past the frozen dataclass's __setattr__. This descriptor has no __set__, so from now
        # on the instance's own attribute answers, at no cost.
        object.__setattr__(instance, self.name, value)
        return value


@dataclass(frozen=True)
class LiveInvitation:
    """An invitation as ``/invitation/info`` reports it (read only where the id can be opened)."""

    id: str
    is_accepted: bool
    accepted_at: str | None
    expires_at: str | None


@dataclass(frozen=True, slots=True)
class RecordedInvitation:
    """What this tool stored on a user about their latest invitation (``metadata``).

    ``sealed`` holds the id, readable only with the seal key (see ``sealing``);
    ``exposed_id`` is a plain id written by releases before ids were sealed: anyone
    who can read the user (a read-only key) could use that link.
    """

    sealed: str | None
    exposed_id: str | None
    created_at: str | None
    expires_at: str | None
    accepted_at: str | None
    #: Set before ``/invitation/new`` and dropped with the record that follows it: still set
    #: means an apply was interrupted in between, and a link may exist that nobody recorded.
    intent_at: str | None = None
    #: How the link was handed over: reported (onboarding report), emailed, email_failed.
    delivery: str | None = None

    @classmethod
    def from_metadata(cls, record: object) -> RecordedInvitation | None:
        if not isinstance(record, dict):
            return None
        # Frozen, so each field is written through its slot's own setter: the generated
        # __init__ calls object.__setattr__ per field, which cost more than reading the
        # record (a plan reads one per user).
        invitation = object.__new__(cls)
        for set_slot, key in _RECORD_SLOTS:
            value = record.get(key)
            # Text, or None when absent or empty (metadata can be edited by hand).
            set_slot(invitation, str(value) if value else None)
        return invitation


#: Each field's slot setter, with the metadata key the field is read from.
_RECORD_SLOTS = tuple(
    (getattr(RecordedInvitation, f.name).__set__, key)
    for f, key in zip(
        fields(RecordedInvitation),
        ("sealed", "id", "created_at", "expires_at", "accepted_at", "intent_at", "delivery"),
        strict=True,
    )
)


class _Owned:
    """A user, team or organization that this tool may own: its metadata says."""

    metadata: dict[str, Any]

    @property
    def owned(self) -> dict[str, Any]:
        """What this tool recorded on it (its metadata key), or {}."""
        value = self.metadata.get(OWNER_KEY)
        return value if isinstance(value, dict) else {}

    @property
    def managed(self) -> bool:
        """Owned by this tool: created by it, or adopted by the file."""
        owned = self.metadata.get(OWNER_KEY)
        return isinstance(owned, dict) and owned.get("managed") is True


@dataclass(frozen=True)
class LiveUser(_Owned):
    user_id: str
    email: str | None
    role: str | None
    alias: str | None
    teams: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    #: The user's virtual keys (``/user/list`` reports it): what deleting the user deletes.
    key_count: int | None = None
    #: Budget, models and limits, by LiteLLM field name (USER_SETTINGS).
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    #: When the account was made, and its identity at the SSO provider when SSO made or claimed it:
    #: what an adoption shows, so a reviewer can tell an old colleague's account from a fresh one.
    created_at: str | None = None
    sso_user_id: str | None = None

    def granted(self, kind: str, group_id: str) -> bool:
        """Whether this tool gave the user its membership of a team or organization (``kind``: ``teams``
        or ``organizations``). A user owned before grants were recorded (no record) counts as granted
        everything: earlier releases added only members the file listed."""
        record = self.owned.get(GRANTS_KEY)
        if not isinstance(record, dict):
            return self.managed
        return group_id in (record.get(kind) or ())

    @property
    def created_by_tool(self) -> bool:
        """This tool made the account (owned, not adopted): a privileged grant needs no pin."""
        return self.managed and not self.owned.get("adopted")

    @_once
    def key(self) -> str | None:
        """The identity: the lower-cased email. Kept once computed (a snapshot never changes):
        the indexes and the planner read it several times for every user."""
        return self.email.lower() if self.email else None

    @property
    def invitation(self) -> RecordedInvitation | None:
        """The invitation this tool recorded on the user, if any."""
        return RecordedInvitation.from_metadata(self.owned.get("invitation"))


@dataclass(frozen=True)
class LiveMember:
    user_id: str
    role: str
    email: str | None = None


class _Roster:
    """Who is in a team or an organization, and in which role."""

    members: tuple[LiveMember, ...]

    @cached_property
    def member_roles(self) -> dict[str, str]:
        """User id -> role; built only for rosters whose roles the file manages."""
        return {m.user_id: m.role for m in self.members}


@dataclass(frozen=True)
class LiveTeam(_Roster, _Owned):
    team_id: str
    alias: str | None
    settings: dict[str, Any] = field(hash=False)
    members: tuple[LiveMember, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    #: The team's keys, read only for teams a plan may delete (``/team/info``); None when not read.
    key_count: int | None = None
    #: Each member's own budget in the team (user id -> MEMBER_BUDGET fields; no entry: none), read
    #: (``/team/info``) only for teams whose memberships the file manages; None when not read.
    member_budgets: dict[str, dict[str, Any]] | None = field(default=None, hash=False)

    @cached_property
    def member_ids(self) -> frozenset[str]:
        """Built once: the planner asks it for every declared membership."""
        return frozenset(m.user_id for m in self.members)


@dataclass(frozen=True)
class LiveOrganization(_Roster, _Owned):
    organization_id: str
    alias: str | None
    #: Models, budget and limits, by the names the file uses (ORGANIZATION_SETTINGS).
    settings: dict[str, Any] = field(hash=False)
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    #: Its members (user id and organization role), sorted by user id.
    members: tuple[LiveMember, ...] = ()


@dataclass(frozen=True)
class LiveState:
    """Everything the planner may know about the proxy."""

    users: tuple[LiveUser, ...] = ()
    teams: tuple[LiveTeam, ...] = ()
    #: The user that owns the key this run reads with, when the proxy says (protected from removal).
    #: Not part of the fingerprint: a plan key and an apply key see the same proxy.
    caller_id: str | None = None
    #: The team member permissions the proxy accepts, read only when the file sets some; None: not known.
    team_permissions: frozenset[str] | None = None
    #: Read only when the file declares organizations or places a team in one.
    organizations: tuple[LiveOrganization, ...] = ()
    #: The fields ``/team/new`` takes, read only when the file sets a team's member limits; None: not known.
    team_fields: frozenset[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data of everything planning depends on. Built field by field: ``asdict`` deep-copies
        every metadata dict and dominated the cost of a 100,000-user plan."""
        return {
            "users": [
                [u.user_id, u.email, u.role, u.alias, u.teams, u.metadata, u.key_count, u.settings, u.sso_user_id]
                for u in self.users
            ],
            "teams": [
                [
                    t.team_id,
                    t.alias,
                    t.settings,
                    [[m.user_id, m.role, m.email] for m in t.members],
                    t.metadata,
                    t.key_count,
                    t.member_budgets,
                ]
                for t in self.teams
            ],
            "organizations": [
                [o.organization_id, o.alias, o.settings, o.metadata, [[m.user_id, m.role] for m in o.members]]
                for o in self.organizations
            ],
        }

    # Indexes, built once per snapshot: the planner looks objects up, it never scans for them.

    @cached_property
    def users_by_key(self) -> dict[str, list[LiveUser]]:
        return _group((user.key, user) for user in self.users)

    @cached_property
    def users_by_id(self) -> dict[str, LiveUser]:
        return {user.user_id: user for user in self.users}

    @cached_property
    def teams_by_id(self) -> dict[str, LiveTeam]:
        return {team.team_id: team for team in self.teams}

    @cached_property
    def teams_by_alias(self) -> dict[str, list[LiveTeam]]:
        return _group((team.alias, team) for team in self.teams)

    @cached_property
    def organizations_by_id(self) -> dict[str, LiveOrganization]:
        return {org.organization_id: org for org in self.organizations}

    @cached_property
    def organizations_by_alias(self) -> dict[str, list[LiveOrganization]]:
        return _group((org.alias, org) for org in self.organizations)

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything planning depends on; a saved plan is refused when it changes.
        Computed once per snapshot (a plan and the check of a saved plan both ask for it)."""
        # check_circular=False: a snapshot holds what the proxy sent as JSON, which cannot hold a cycle.
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True, default=str, check_circular=False).encode()
        ).hexdigest()


T = TypeVar("T")


def _group(pairs: Iterable[tuple[str | None, T]]) -> dict[str, list[T]]:
    """Items by a key that may repeat (duplicates are the planner's to report); no key, no entry."""
    found: dict[str, list[T]] = {}
    for key, item in pairs:
        if key:
            found.setdefault(key, []).append(item)
    return found


def user_from_api(raw: dict[str, Any]) -> LiveUser:
    return LiveUser(
        user_id=str(raw["user_id"]),
        email=raw.get("user_email") or None,
        role=raw.get("user_role"),
        alias=raw.get("user_alias"),
        teams=tuple(sorted(str(t) for t in raw.get("teams") or [])),
        metadata=dict(raw.get("metadata") or {}),
        key_count=raw["key_count"] if isinstance(raw.get("key_count"), int) else None,
        settings={name: raw.get(name) for name in USER_SETTINGS},
        created_at=str(raw["created_at"]) if raw.get("created_at") else None,
        sso_user_id=str(raw["sso_user_id"]) if raw.get("sso_user_id") else None,
    )


def team_from_api(raw: dict[str, Any]) -> LiveTeam:
    members = _roster(raw.get("members_with_roles"), "role", "user")
    metadata = dict(raw.get("metadata") or {}) if isinstance(raw.get("metadata"), dict) else {}
    return LiveTeam(
        team_id=str(raw["team_id"]),
        alias=raw.get("team_alias"),
        # A proxy that does not report ``blocked`` has no blocked teams; LiteLLM keeps the member key
        # duration (an Enterprise setting) in the team's metadata.
        settings={name: raw.get(name) for name in TEAM_SETTINGS}
        | {
            "blocked": raw.get("blocked") is True,
            "organization_id": raw.get("organization_id") or None,
            "team_member_key_duration": _duration_or_none(metadata.get("team_member_key_duration")),
        },
        members=members,
        metadata=metadata,
    )


def _roster(rows: object, role_key: str, default_role: str) -> tuple[LiveMember, ...]:
    """A team's ``members_with_roles`` or an organization's ``members``, by user id; rows without one are skipped."""
    found = (
        LiveMember(user_id=str(m["user_id"]), role=str(m.get(role_key) or default_role), email=m.get("user_email"))
        for m in (rows if isinstance(rows, list) else [])
        if isinstance(m, dict) and m.get("user_id")
    )
    return tuple(sorted(found, key=lambda m: m.user_id))


def _duration_or_none(value: object) -> str | None:
    """A LiteLLM duration kept in free-form metadata, or None for anything a users.yaml could not say."""
    return value if isinstance(value, str) and DURATION.match(value) else None


def with_member_limits(live: LiveState, budgets: list[dict[str, Any]]) -> LiveState:
    """The teams with the limits they give each member, from the budget row their metadata names
    (``team_member_budget_id``); a team without one gives none.

    The row's ``budget_duration`` is a member window only where ``/team/new`` takes
    ``team_member_budget_duration`` (``live.team_fields``; unknown: taken). 1.80.5 does not: it copies
    the team's own ``budget_duration`` into the row it creates and never updates it, so there the
    value is no setting a file could declare (and after the team's window changes, a stale one).
    """
    by_id = {str(b["budget_id"]): b for b in budgets}
    windows = live.team_fields is None or "team_member_budget_duration" in live.team_fields

    def with_limits(team: LiveTeam) -> LiveTeam:
        row = by_id.get(str(team.metadata.get("team_member_budget_id")), {})
        limits = {
            "team_member_budget": row.get("max_budget"),
            "team_member_budget_duration": row.get("budget_duration") if windows else None,
            "team_member_tpm_limit": row.get("tpm_limit"),
            "team_member_rpm_limit": row.get("rpm_limit"),
        }
        return replace(team, settings={**team.settings, **limits})

    return _with_teams(live, with_limits)


def _with_teams(live: LiveState, change: Callable[[LiveTeam], LiveTeam], only: set[str] | None = None) -> LiveState:
    """The snapshot with ``change`` applied to its teams (those with an id in ``only``, when given)."""
    teams = tuple(change(t) if only is None or t.team_id in only else t for t in live.teams)
    return replace(live, teams=teams)


#: A member's budget in a team, by ``/team/member_update``'s names (``max_budget_in_team`` is the row's
#: ``max_budget``): what an update must send again, as 1.80.5 rewrites the whole budget on every update.
MEMBER_BUDGET = {"max_budget_in_team": "max_budget", "tpm_limit": "tpm_limit", "rpm_limit": "rpm_limit"}


def with_member_budgets(client: LiteLLMClient, live: LiveState, team_ids: set[str]) -> LiveState:
    """The snapshot with the members' own budgets of the given teams (``/team/info``'s
    ``team_memberships``, one request per team): only for teams whose memberships the file
    manages, so a plan stays O(pages + those teams)."""
    wanted = [team.team_id for team in live.teams if team.team_id in team_ids]
    infos = dict(zip(wanted, client.concurrently(client.team_info_full, wanted), strict=True))
    return _with_teams(
        live, lambda team: replace(team, member_budgets=member_budgets_from_api(infos[team.team_id])), set(infos)
    )


def member_budgets_from_api(info: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """User id -> the member's budget limits, from a ``/team/info`` answer (no budget row: left out)."""
    team = (info or {}).get("team_info")
    metadata = team.get("metadata") if isinstance(team, dict) else None
    # Members of a team with member limits share the team's row: that is the team's budget, not theirs.
    shared = metadata.get("team_member_budget_id") if isinstance(metadata, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for membership in (info or {}).get("team_memberships") or []:
        row = membership.get("litellm_budget_table") if isinstance(membership, dict) else None
        if isinstance(row, dict) and membership.get("user_id") and (shared is None or row.get("budget_id") != shared):
            found[str(membership["user_id"])] = {name: row.get(column) for name, column in MEMBER_BUDGET.items()}
    return found


def organization_from_api(raw: dict[str, Any]) -> LiveOrganization:
    """The models are on the row; budget and limits on its budget row (``litellm_budget_table``)."""
    budget = raw.get("litellm_budget_table") if isinstance(raw.get("litellm_budget_table"), dict) else {}
    settings = {name: budget.get(name) for name in ORGANIZATION_SETTINGS if name != "models"}
    members = _roster(raw.get("members"), "user_role", "internal_user")
    return LiveOrganization(
        organization_id=str(raw["organization_id"]),
        alias=raw.get("organization_alias"),
        settings={"models": list(raw.get("models") or []), **settings},
        metadata=dict(raw.get("metadata") or {}) if isinstance(raw.get("metadata"), dict) else {},
        members=members,
    )


def invitation_from_api(raw: dict[str, Any]) -> LiveInvitation:
    return LiveInvitation(
        id=str(raw["id"]),
        is_accepted=bool(raw.get("is_accepted")),
        accepted_at=raw.get("accepted_at"),
        expires_at=raw.get("expires_at"),
    )


def read_live(client: LiteLLMClient, *, declared_teams: frozenset[str] = frozenset()) -> LiveState:
    """Read users and teams completely (one retry of an inconsistent listing): O(pages) requests.

    Invitations are not looked up: whatever a plan needs about them is recorded on the
    users, and their ids are sealed (``sealing``), so a read-only key cannot follow them.
    ``declared_teams`` (aliases and ids from the file) must be found or are looked up in full.
    """
    try:
        return _read_once(client, declared_teams)
    except IncompleteRead:
        return _read_once(client, declared_teams)


def _read_once(client: LiteLLMClient, declared_teams: frozenset[str]) -> LiveState:
    # The apply lock is a row of this tool's, not a person: never planned, never drift.
    # The teams are read beside the users' pages (the client still keeps to its parallelism).
    listed_users, listed_teams = client.concurrently(lambda read: read(), (client.list_users, client.list_teams))
    users = tuple(user_from_api(u) for u in listed_users if not is_lock_row(str(u.get("user_id"))))
    teams = tuple(team_from_api(t) for t in listed_teams)
    seen = {t.team_id for t in teams} | {t.alias for t in teams if t.alias}
    referenced = {team_id for user in users for team_id in user.teams}
    if not teams or referenced - seen or declared_teams - seen:
        # The paginated listing may be filtered to the caller's own teams (a read-only
        # key on 1.80). Before believing a team is missing, whether the file declares it
        # or a user names it, read the complete listing.
        teams = tuple(team_from_api(t) for t in client.list_teams_unpaginated())
    return LiveState(users=users, teams=teams)


def with_team_key_counts(client: LiteLLMClient, live: LiveState, team_ids: set[str]) -> LiveState:
    """The snapshot with the key count of the given teams (``/team/info``, one request each):
    only for the teams a plan may delete, so a plan stays O(pages + removals)."""

    def with_key_count(team: LiveTeam) -> LiveTeam:
        info = client.team_info_full(team.team_id)
        keys = info.get("keys") if isinstance(info, dict) else None
        return replace(team, key_count=len(keys) if isinstance(keys, list) else None)

    return _with_teams(live, with_key_count, team_ids)


def read_invitations(client: LiteLLMClient, users: list[LiveUser], sealer: Sealer) -> dict[str, LiveInvitation]:
    """``/invitation/info`` of each given user's sealed invitation, by user id (absent: gone
    from the proxy or not openable with this seal key). One request per user: for the
    status report of a few pending users, never for a plan."""
    found: dict[str, LiveInvitation] = {}
    for user in users:
        record = user.invitation
        invitation_id = sealer.open(record.sealed, user.user_id) if record else None
        if invitation_id:
            info = client.invitation_info(invitation_id)
            if info is not None:
                found[user.user_id] = invitation_from_api(info)
    return found


def parse_time(value: object) -> datetime | None:
    """A LiteLLM timestamp (``...Z`` or with an offset; naive = UTC), or None when it is not one
    (metadata can be edited by hand in the UI)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def utc_date(value: object) -> str:
    """The UTC calendar date of a LiteLLM timestamp, as YYYY-MM-DD ("" when absent or unreadable)."""
    moment = parse_time(value)
    return moment.astimezone(timezone.utc).date().isoformat() if moment else ""


#: How long LiteLLM keeps a new link valid (``/invitation/new``: created_at + 7 days).
INVITATION_DAYS = 7


def invitation_expired(expires_at: object, now: datetime) -> bool:
    """LiteLLM's own rule: expired when the expiry *date* is before today's date (UTC).
    An unreadable expiry counts as expired, so the invitation gets checked, not trusted."""
    return expired_before(expires_at, start_of_day(now))


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s UTC date: a moment before it has an earlier UTC date."""
    return datetime.combine(now.astimezone(timezone.utc).date(), time(), timezone.utc)


def expired_before(expires_at: object, midnight: datetime) -> bool:
    """``invitation_expired`` with ``start_of_day(now)`` worked out once by the caller (the
    planner asks for every user): comparing moments spares converting each expiry to a date."""
    moment = parse_time(expires_at)
    return moment is None or moment < midnight
