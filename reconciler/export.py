"""``export``: a users.yaml written from the live proxy, so an existing proxy comes under
management in one pull request.

Pure: a function of the snapshot. Sorted and deterministic, so exporting twice gives the
same bytes. What a users.yaml cannot express is never dropped silently: a team without an
alias, a user without a usable email, or two users sharing an email are listed in the
header comment, with their ids. Planning the exported file against the same proxy makes no
changes (adopting the objects is bookkeeping).

Every text in the file comes from the proxy, where a team admin may choose a user id with a
line break in it: in the header it is quoted and escaped, in the document a string with a
character a reader cannot see is double-quoted and escaped, and the header lists the objects
whose text holds one, so nothing the proxy holds can add a key (``removals:``) or pass for
another name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .desired import (
    ORGANIZATION_ROLES,
    ORGANIZATION_SETTINGS,
    TEAM_SETTINGS,
    USER_ROLES,
    USER_SETTINGS,
    OrganizationSpec,
    TeamSpec,
    UserSpec,
    check_email,
    parse_desired,
    raw_team_ref,
)
from .limits import look_alike_key
from .live import PROXY_ADMIN_ID, LiveMember, LiveOrganization, LiveState, LiveTeam, LiveUser
from .plan import PRIVILEGED_ROLES
from .render import visible

_Live = LiveUser | LiveTeam | LiveOrganization
#: An object a users.yaml cannot express as it is, and why.
_Skipped = list[tuple[_Live, str]]


def export_yaml(live: LiveState, only_teams: set[str] | None = None) -> str:
    """The users.yaml text for ``live`` (restricted to the teams named in ``only_teams``, by
    alias, and their members, when given). Raises ``ValueError`` for a name not on the proxy."""
    missing = (only_teams or set()) - {t.alias for t in live.teams}
    if missing:
        raise ValueError(f"no team with the alias {', '.join(sorted(missing))} on the proxy")
    skipped: _Skipped = []
    organizations = _organizations(live, skipped)
    teams = _teams(live, only_teams, {o.organization_id: o.alias for o in organizations}, skipped)
    members: dict[str, list[str | dict[str, Any]]] = {}
    for team, _ in teams:
        for member in team.members:
            members.setdefault(member.user_id, []).append(_membership(team, member))
    users = _users(live, members, only_teams is not None, skipped)

    document: dict[str, Any] = {"version": 1}
    if organizations:
        emails_by_id = {user.user_id: user.email for user, _ in users}
        document["organizations"] = [_organization(o, emails_by_id) for o in organizations]
    if teams:
        document["teams"] = [entry for _, entry in teams]
    if users:
        document["users"] = [entry for _, entry in users]
    shown = [*organizations, *(team for team, _ in teams), *(user for user, _ in users), *(i for i, _ in skipped)]
    body = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    text = "\n".join(_header(skipped, shown)) + "\n" + body
    parse_desired(text, "export")  # what we write must be a valid file; a failure here is a bug
    return text


def _organizations(live: LiveState, skipped: _Skipped) -> list[LiveOrganization]:
    """The organizations a users.yaml can declare, by alias; the others join ``skipped``."""
    aliases = Counter(look_alike_key(o.alias) for o in live.organizations if o.alias)
    organizations = []
    for organization in sorted(live.organizations, key=lambda o: (o.alias or "", o.organization_id)):
        if not organization.alias or aliases[look_alike_key(organization.alias)] > 1:
            why = (
                "no alias"
                if not organization.alias
                else f"its alias {_quoted(organization.alias)} is not unique, or reads the same as another"
            )
            skipped.append((organization, f"{why} (declare it with 'alias:' and 'id:')"))
        elif why := _refusal(OrganizationSpec, _organization(organization, {})):
            skipped.append((organization, why))
        else:
            organizations.append(organization)
    return organizations


def _teams(
    live: LiveState, only_teams: set[str] | None, placed_in: dict[str, str | None], skipped: _Skipped
) -> list[tuple[LiveTeam, dict[str, Any]]]:
    """The teams to export with their entries, by alias; those a users.yaml cannot declare join ``skipped``."""
    aliases = Counter(look_alike_key(t.alias) for t in live.teams if t.alias)
    teams = []
    for team in sorted(live.teams, key=lambda t: (t.alias or "", t.team_id)):
        if not team.alias:
            skipped.append((team, "no alias (give it one, then declare it with 'alias:' and 'id:')"))
        elif (same := aliases[look_alike_key(team.alias)]) > 1:
            shared = f"{same} teams share the alias {_quoted(team.alias)}, or one that reads the same"
            skipped.append((team, f"{shared} (declare the one you mean with 'id:')"))
        elif only_teams is None or team.alias in only_teams:
            entry = _team(team, placed_in)
            if why := _refusal(TeamSpec, entry):
                skipped.append((team, why))
            else:
                teams.append((team, entry))
    return teams


def _users(
    live: LiveState, memberships: dict[str, list[str | dict[str, Any]]], members_only: bool, skipped: _Skipped
) -> list[tuple[LiveUser, dict[str, Any]]]:
    """The users to export with their entries (only the exported teams' members, when ``members_only``),
    by email; those a users.yaml cannot declare join ``skipped``."""
    emails = Counter(u.key for u in live.users if u.key)
    org_admins = {m.user_id for o in live.organizations for m in o.members if m.role == "org_admin"}
    users = []
    for user in sorted(live.users, key=lambda u: (u.key or "", u.user_id)):
        if user.user_id == PROXY_ADMIN_ID or (members_only and user.user_id not in memberships):
            continue
        teams = sorted(memberships.get(user.user_id, []), key=lambda e: raw_team_ref(e) or "")
        entry = _user(user, teams)
        privileged = (
            user.role in PRIVILEGED_ROLES
            or user.user_id in org_admins
            or any(isinstance(t, dict) and t.get("role") == "admin" for t in teams)
        )
        if privileged and not user.created_by_tool:
            # Pinned: a privileged role goes only to an account this tool made or the file pins.
            entry = {"email": entry.pop("email"), "id": user.user_id, **entry}
        why = _unexportable(user, emails) or _refusal(UserSpec, entry)
        if why:
            skipped.append((user, why))
        else:
            users.append((user, entry))
    return users


def _refusal(model: type[BaseModel], entry: dict[str, Any]) -> str | None:
    """Why a users.yaml would refuse ``entry`` (its first problem), or None: what the proxy holds may be
    more than a file takes (an invisible character or a look-alike letter in an alias, a name too long)."""
    try:
        model.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"not valid in users.yaml: {where}: {first['msg'].removeprefix('Value error, ')}"
    return None


def _header(skipped: _Skipped, shown: list[_Live]) -> list[str]:
    """The comment above the document. Every text from the proxy in it is quoted and escaped, and each
    line goes through ``visible`` again: nothing from the proxy can end the comment and add YAML."""
    header = [
        "# users.yaml exported from the live proxy by `litellm-reconciler export`.",
        "# Review it, then commit it: the next plan adopts these objects (bookkeeping, no changes).",
    ]
    if skipped:
        header.append("# Not exported (a users.yaml cannot express them as they are):")
        header += sorted(f"#   - {visible(f'{_label(item)}: {why}')}" for item, why in skipped)
    unseen = sorted(f"#   - {visible(f'{_label(item)}: {found}')}" for item in shown if (found := _unseen(item)))
    if unseen:
        header.append(
            "# Check these on the proxy: their text holds characters a reader cannot see, or that would start a "
            "new line (shown escaped, here and in the file):"
        )
        header += unseen
    return header


#: What the header calls each kind of object, and the attribute that holds its id.
_KINDS: dict[type, tuple[str, str]] = {
    LiveUser: ("user", "user_id"),
    LiveTeam: ("team", "team_id"),
    LiveOrganization: ("organization", "organization_id"),
}


def _label(item: _Live) -> str:
    kind, id_attribute = _KINDS[type(item)]
    return f"{kind} {_quoted(getattr(item, id_attribute))}"


def _unseen(item: _Live) -> str:
    """Which of the object's id, names and settings hold a character ``visible`` escapes, with their
    values quoted ("" when none does): the id a team admin chose may hold a line break."""
    _, id_attribute = _KINDS[type(item)]
    texts = {"id": getattr(item, id_attribute), "alias": item.alias, "email": getattr(item, "email", None)}
    return ", ".join(
        f"{name} {_quoted(value)}"
        for name, value in {**texts, **item.settings}.items()
        if any(_hides(text) for text in _strings(value))
    )


def _strings(value: object) -> Iterator[str]:
    """Every string in a setting (models and permissions are lists of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _hides(text: str) -> bool:
    """Whether ``text`` holds a character a reader cannot see, or that would start a new line."""
    return visible(text) != text


def _quoted(value: object) -> str:
    """``value`` as Python writes it (quotes, backslashes doubled, unprintable characters escaped),
    with the characters that print blank escaped too: a proxy's text as the header shows it."""
    return visible(repr(value))


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, except that a string holding a character ``visible`` escapes is written
    double-quoted with every character outside ASCII escaped (``"ops\\u200Binfra"``): with
    ``allow_unicode`` PyYAML writes zero-width and bidirectional characters as they are, even in quotes,
    and it writes a line break in a single-quoted string as a blank line."""

    def ignore_aliases(self, data: Any) -> bool:
        """Always: a list two objects share (one models list) would be written as an anchor and an
        alias, which a users.yaml may not hold."""
        return True

    def analyze_scalar(self, scalar: str) -> Any:
        analysis = super().analyze_scalar(scalar)
        if _hides(scalar):
            analysis.allow_flow_plain = analysis.allow_block_plain = False
            analysis.allow_single_quoted = analysis.allow_block = False
        return analysis

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        allow_unicode = self.allow_unicode
        self.allow_unicode = allow_unicode and not _hides(text)
        try:
            super().write_double_quoted(text, split)
        finally:
            self.allow_unicode = allow_unicode


def _organization(organization: LiveOrganization, emails: dict[str, str | None]) -> dict[str, Any]:
    """The alias, the settings that are set, and the members among the exported users, with their roles."""
    entry = {"alias": organization.alias, **_set(organization.settings, ORGANIZATION_SETTINGS)}
    members = [
        {"email": emails[m.user_id], **({"role": m.role} if m.role in ORGANIZATION_ROLES else {})}
        for m in organization.members
        if m.user_id in emails
    ]
    if members:
        entry["members"] = sorted(members, key=lambda m: str(m["email"]).lower())
    return entry


def _unexportable(user: LiveUser, emails: Counter[str]) -> str | None:
    if not user.email:
        return "no email (users.yaml identifies users by email)"
    try:
        check_email(user.email)
    except ValueError as exc:
        return f"email {_quoted(user.email)} is not valid in users.yaml ({exc})"
    if user.key and emails[user.key] > 1:
        return (
            f"{emails[user.key]} users share the email {_quoted(user.email)} (remove the duplicates on the proxy first)"
        )
    return None


def _team(team: LiveTeam, placed_in: dict[str, str | None]) -> dict[str, Any]:
    """The alias, every setting that is set (the rest stays unmanaged) and the organization it is in.

    A member budget window that is the team's own window is left out: LiteLLM copies the team's
    ``budget_duration`` into the member budget row it creates when no member window is given (1.80.5
    always: it has no ``team_member_budget_duration``), so writing it would add a setting the file never
    had, one that 1.80.5 refuses."""
    settings = team.settings
    if settings.get("team_member_budget_duration") == settings.get("budget_duration"):
        settings = {**settings, "team_member_budget_duration": None}
    entry = {"alias": team.alias, **_set(settings, TEAM_SETTINGS)}
    organization = placed_in.get(team.settings.get("organization_id") or "")
    if organization:
        entry["organization"] = organization
    return entry


def _set(settings: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The settings that differ from LiteLLM's defaults (no limit, all models, not blocked)."""
    return {name: v for name in names if (v := settings.get(name)) is not None and v != [] and v is not False}


def _membership(team: LiveTeam, member: LiveMember) -> str | dict[str, Any]:
    """The team's alias, or the long form when the member is an admin or has a budget of its own there."""
    settings: dict[str, Any] = {"role": "admin"} if member.role == "admin" else {}
    budget = (team.member_budgets or {}).get(member.user_id, {}).get("max_budget_in_team")
    if budget is not None:
        settings["max_budget_in_team"] = budget
    return {"team": team.alias, **settings} if settings else str(team.alias)


def _user(user: LiveUser, teams: list[str | dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"email": user.email}
    if user.role in USER_ROLES:  # any other role (org_admin, ...) stays unmanaged
        entry["role"] = user.role
    if user.alias:
        entry["alias"] = user.alias
    entry.update(_set(user.settings, USER_SETTINGS))
    if teams:
        entry["teams"] = teams
    return entry
