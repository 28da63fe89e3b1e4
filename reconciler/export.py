"""``export``: a users.yaml written from the live proxy, so an existing proxy comes under
management in one pull request.

Pure: a function of the snapshot. Sorted and deterministic, so exporting twice gives the
same bytes. What a users.yaml cannot express is never dropped silently: a team without an
alias, a user without a usable email, or two users sharing an email are listed in the
header comment, with their ids. Planning the exported file against the same proxy makes no
changes (adopting the objects is bookkeeping).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from .desired import (
    ORGANIZATION_ROLES,
    ORGANIZATION_SETTINGS,
    TEAM_SETTINGS,
    USER_ROLES,
    USER_SETTINGS,
    check_email,
    parse_desired,
    raw_team_ref,
)
from .live import PROXY_ADMIN_ID, LiveMember, LiveOrganization, LiveState, LiveTeam, LiveUser


def export_yaml(live: LiveState, only_teams: set[str] | None = None) -> str:
    """The users.yaml text for ``live`` (restricted to the teams named in ``only_teams``, by
    alias, and their members, when given). Raises ``ValueError`` for a name not on the proxy."""
    skipped: list[str] = []
    aliases = Counter(t.alias for t in live.teams if t.alias)
    teams = []
    for team in sorted(live.teams, key=lambda t: (t.alias or "", t.team_id)):
        if not team.alias:
            skipped.append(f"team {team.team_id}: no alias (give it one, then declare it with 'alias:' and 'id:')")
        elif aliases[team.alias] > 1:
            skipped.append(
                f"team {team.team_id}: {aliases[team.alias]} teams share the alias {team.alias!r} "
                "(declare the one you mean with 'id:')"
            )
        elif only_teams is None or team.alias in only_teams:
            teams.append(team)
    if only_teams is not None and only_teams - {t.alias for t in teams}:
        raise ValueError(
            f"no team with the alias {', '.join(sorted(only_teams - {t.alias for t in teams}))} on the proxy"
        )

    members: dict[str, list[str | dict[str, Any]]] = {}
    for team in teams:
        for member in team.members:
            members.setdefault(member.user_id, []).append(_membership(team, member))
    emails = Counter(u.key for u in live.users if u.key)
    users = []
    for user in sorted(live.users, key=lambda u: (u.key or "", u.user_id)):
        if user.user_id == PROXY_ADMIN_ID or (only_teams is not None and user.user_id not in members):
            continue
        problem = _unexportable(user, emails)
        if problem:
            skipped.append(f"user {user.user_id}: {problem}")
        else:
            users.append(user)

    organization_aliases = Counter(o.alias for o in live.organizations if o.alias)
    organizations = []
    for organization in sorted(live.organizations, key=lambda o: (o.alias or "", o.organization_id)):
        if not organization.alias or organization_aliases[organization.alias] > 1:
            why = "no alias" if not organization.alias else f"its alias {organization.alias!r} is not unique"
            skipped.append(f"organization {organization.organization_id}: {why} (declare it with 'alias:' and 'id:')")
        else:
            organizations.append(organization)
    placed_in = {o.organization_id: o.alias for o in organizations}

    document: dict[str, Any] = {"version": 1}
    if organizations:
        emails_by_id = {u.user_id: u.email for u in users}
        document["organizations"] = [_organization(o, emails_by_id) for o in organizations]
    if teams:
        document["teams"] = [_team(t, placed_in) for t in teams]
    if users:
        document["users"] = [
            _user(u, sorted(members.get(u.user_id, []), key=lambda e: raw_team_ref(e) or "")) for u in users
        ]
    header = [
        "# users.yaml exported from the live proxy by `litellm-reconciler export`.",
        "# Review it, then commit it: the next plan adopts these objects (bookkeeping, no changes).",
    ]
    if skipped:
        header.append("# Not exported (a users.yaml cannot express them as they are):")
        header += [f"#   - {line}" for line in sorted(skipped)]
    text = (
        "\n".join(header)
        + "\n"
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    )
    parse_desired(text, "export")  # what we write must be a valid file; a failure here is a bug
    return text


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
        return f"email {user.email!r} is not valid in users.yaml ({exc})"
    if user.key and emails[user.key] > 1:
        return f"{emails[user.key]} users share the email {user.email!r} (remove the duplicates on the proxy first)"
    return None


def _team(team: LiveTeam, placed_in: dict[str, str | None]) -> dict[str, Any]:
    """The alias, every setting that is set (the rest stays unmanaged) and the organization it is in."""
    entry = {"alias": team.alias, **_set(team.settings, TEAM_SETTINGS)}
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
