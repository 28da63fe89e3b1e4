"""The pure planner: hand-made live snapshots in, a Plan out. No proxy, no clock."""

from __future__ import annotations

import gc
import json
import textwrap
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from reconciler.desired import TEAM_SETTINGS, DesiredState, parse_desired
from reconciler.kinds import INVITING
from reconciler.live import (
    OWNER_KEY,
    PROXY_ADMIN_ID,
    LiveMember,
    LiveOrganization,
    LiveState,
    LiveTeam,
    LiveUser,
    invitation_expired,
    team_from_api,
)
from reconciler.plan import (
    EXPOSED_REASON,
    FAILING_DRIFT,
    PHASES,
    Action,
    Change,
    Plan,
    PlanConflict,
    make_plan,
    new_team_id,
    new_user_id,
)
from reconciler.render import render

NOW = datetime(2031, 11, 27, 12, 0, tzinfo=timezone.utc)
MANAGED = {OWNER_KEY: {"managed": True}}
#: A user that was on the proxy before the tool and that the file adopted earlier.
ADOPTED = {OWNER_KEY: {"managed": True, "adopted": True}}
#: A user this tool created, who has onboarded: may be given a privileged role without a pin.
ONBOARDED = {OWNER_KEY: {"managed": True, "invitation": {"sealed": "v2.x", "accepted_at": "2026-01-01T00:00:00Z"}}}

# --------------------------------------------------------------------------- builders


def desired(body: str) -> DesiredState:
    return parse_desired(textwrap.dedent(body).lstrip("\n"), "users.yaml")


#: LiteLLM's defaults of the settings a team and a user share: no budget, all models, no limits.
UNLIMITED = {"models": [], "max_budget": None, "budget_duration": None, "tpm_limit": None, "rpm_limit": None}


def live_team(
    team_id: str, alias: str | None, members: tuple[str, ...] = (), managed: bool = True, **settings: Any
) -> LiveTeam:
    """A team as the proxy shows it (owned by this tool unless ``managed=False``): unset settings are
    LiteLLM's defaults."""
    base = {**UNLIMITED, "blocked": False}
    return LiveTeam(
        team_id=team_id,
        alias=alias,
        settings={**base, **settings},
        members=tuple(LiveMember(user_id=m, role="user") for m in members),
        metadata=MANAGED if managed else {},
    )


def live_user(
    user_id: str,
    email: str | None,
    *,
    role: str = "internal_user",
    alias: str | None = None,
    teams: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
    **settings: Any,
) -> LiveUser:
    """A user as the proxy shows it; adopted by the file earlier unless ``metadata`` says otherwise."""
    return LiveUser(
        user_id=user_id,
        email=email,
        role=role,
        alias=alias,
        teams=tuple(sorted(teams)),
        metadata=ADOPTED if metadata is None else metadata,
        settings={**UNLIMITED, **settings},
    )


def invited_user(user_id: str, email: str, **record: Any) -> LiveUser:
    """A user this tool created and invited (the record it keeps in the user's metadata; the id sealed)."""
    return live_user(
        user_id, email, metadata={OWNER_KEY: {"managed": True, "invitation": {"sealed": "v2.opaque", **record}}}
    )


ADMIN = live_user(PROXY_ADMIN_ID, None, role="proxy_admin")


def state(*objects: Any, admin: bool = True) -> LiveState:
    """A snapshot from a mix of LiveUser/LiveTeam/LiveOrganization; the inviter row exists unless ``admin=False``."""
    users = tuple(o for o in objects if isinstance(o, LiveUser)) + ((ADMIN,) if admin else ())
    teams = tuple(o for o in objects if isinstance(o, LiveTeam))
    organizations = tuple(o for o in objects if isinstance(o, LiveOrganization))
    return LiveState(users=users, teams=teams, organizations=organizations)


def plan_for(spec: DesiredState, live: LiveState = LiveState(), now: datetime = NOW) -> Plan:
    return make_plan(spec, live, now)


def addresses(plan: Plan, kind: str | None = None) -> list[str]:
    return [a.address for a in plan.actions if kind is None or a.kind == kind]


def the_action(plan: Plan, address: str) -> Action:
    found = [a for a in plan.actions if a.address == address]
    assert len(found) == 1, f"{address}: {[(a.kind, a.address) for a in plan.actions]}"
    return found[0]


def converge(plan: Plan, live: LiveState) -> LiveState:
    """What the proxy would look like after a perfect apply of ``plan`` (an in-memory proxy)."""
    users = {u.user_id: u for u in live.users}
    teams = {t.team_id: t for t in live.teams}
    for action in plan.actions:
        p = action.params
        if action.kind in ("create_user", "create_inviter"):
            users[p["user_id"]] = live_user(
                p["user_id"],
                p.get("user_email"),
                role=p["user_role"],
                alias=p.get("user_alias"),
                metadata=p.get("metadata"),
            )
        elif action.kind == "update_user":
            old = users[p["user_id"]]
            users[p["user_id"]] = replace(old, role=p.get("user_role", old.role), alias=p.get("user_alias", old.alias))
        elif action.kind == "create_team":
            teams[p["team_id"]] = live_team(p["team_id"], p["team_alias"], **{k: p[k] for k in TEAM_SETTINGS if k in p})
        elif action.kind == "update_team":
            old = teams[p["team_id"]]
            settings = {**old.settings, **{k: p[k] for k in TEAM_SETTINGS if k in p}}
            teams[p["team_id"]] = replace(old, alias=p.get("team_alias", old.alias), settings=settings)
        elif action.kind == "add_member":
            team, user = teams[p["team_id"]], users[p["user_id"]]
            teams[team.team_id] = replace(team, members=team.members + (LiveMember(user.user_id, "user"),))
            users[user.user_id] = replace(user, teams=tuple(sorted(user.teams + (team.team_id,))))
        elif action.kind in ("create_invitation", "renew_invitation", "replace_invitation"):
            user = users[p["user_id"]]
            owned = {
                **user.owned,
                "invitation": {"sealed": f"v2.{user.user_id}", "expires_at": (NOW + timedelta(days=7)).isoformat()},
            }
            users[user.user_id] = replace(user, metadata={**user.metadata, OWNER_KEY: owned})
        else:  # pragma: no cover - a new kind needs a line here
            raise AssertionError(action.kind)
    return LiveState(users=tuple(users.values()), teams=tuple(teams.values()))


TWO_TEAMS = """
version: 1
teams:
  - alias: dev
    models: [gpt-4o-mini]
    max_budget: 100
  - alias: research
users:
  - email: Alice@Example.com
    teams: [dev]
    alias: Alice
  - email: bob@example.com
    teams: [research, dev]
    role: proxy_admin_viewer
"""

# --------------------------------------------------------------------------- an empty proxy


def test_empty_proxy_plans_everything_in_phase_order():
    plan = plan_for(desired(TWO_TEAMS), LiveState())
    assert [(a.kind, a.address) for a in plan.actions] == [
        ("create_inviter", f"user.{PROXY_ADMIN_ID}"),
        ("create_team", "team.dev"),
        ("create_team", "team.research"),
        ("create_user", "user.alice@example.com"),
        ("create_user", "user.bob@example.com"),
        ("add_member", "membership.dev.alice@example.com"),
        ("add_member", "membership.dev.bob@example.com"),
        ("add_member", "membership.research.bob@example.com"),
        ("create_invitation", "invitation.alice@example.com"),
        ("create_invitation", "invitation.bob@example.com"),
    ]
    assert plan.has_changes
    assert plan.summary() == {
        "create_inviter": 1,
        "create_team": 2,
        "create_user": 2,
        "add_member": 3,
        "create_invitation": 2,
    }
    assert plan.drift == ()


def test_created_objects_get_derived_ids_and_owner_metadata():
    plan = plan_for(desired(TWO_TEAMS), state())
    dev = the_action(plan, "team.dev")
    assert dev.params == {
        "team_id": new_team_id("dev"),
        "team_alias": "dev",
        "models": ["gpt-4o-mini"],
        "max_budget": 100.0,
        "metadata": MANAGED,
    }
    assert "budget_duration" not in dev.params  # not in the file: not managed
    alice = the_action(plan, "user.alice@example.com")
    assert alice.params == {
        "user_id": new_user_id("alice@example.com"),
        "user_email": "Alice@Example.com",
        "user_role": "internal_user",
        "user_alias": "Alice",
        # Its grants are tracked from the start, and carried from its creation: no write per membership.
        "metadata": {OWNER_KEY: {"managed": True, "granted": {"teams": [new_team_id("dev")]}}},
    }
    assert the_action(plan, "user.bob@example.com").params["user_role"] == "proxy_admin_viewer"
    assert new_user_id("ALICE@example.com") == new_user_id("alice@example.com")


def test_dependencies_of_planned_objects():
    plan = plan_for(desired(TWO_TEAMS), LiveState())
    member = the_action(plan, "membership.research.bob@example.com")
    assert set(member.depends_on) == {"team.research", "user.bob@example.com"}
    assert member.params["team_id"] == new_team_id("research")
    assert member.params["user_id"] == new_user_id("bob@example.com")
    invite = the_action(plan, "invitation.bob@example.com")
    assert set(invite.depends_on) == {"user.bob@example.com", f"user.{PROXY_ADMIN_ID}"}
    assert invite.reason.startswith("invitation will be created")
    assert the_action(plan, f"user.{PROXY_ADMIN_ID}").params == {"user_id": PROXY_ADMIN_ID, "user_role": "proxy_admin"}


def test_applying_the_plan_converges_and_nothing_is_created_twice():
    spec = desired(TWO_TEAMS)
    first = plan_for(spec, LiveState())
    after = converge(first, LiveState())
    second = plan_for(spec, after)
    assert second.actions == ()
    assert not second.has_changes
    assert second.drift == ()


# --------------------------------------------------------------------------- adoption


def test_user_adopted_by_case_insensitive_email():
    spec = desired(
        """
        version: 1
        teams: [{alias: dev}]
        users: [{email: alice@example.com, teams: [dev]}]
        """
    )
    live = state(live_user("u-legacy", "ALICE@Example.COM"), live_team("t-dev", "dev"))
    plan = plan_for(spec, live)
    assert addresses(plan) == ["membership.dev.alice@example.com"]
    member = plan.actions[0]
    assert member.params["user_id"] == "u-legacy" and member.params["team_id"] == "t-dev"
    assert member.depends_on == ()
    assert member.reason == "listed in the file"


def test_team_adopted_by_alias_without_changes():
    spec = desired("version: 1\nteams: [{alias: dev, max_budget: 5}]\n")
    assert plan_for(spec, state(live_team("t-dev", "dev", max_budget=5.0))).actions == ()


def test_team_adopted_by_declared_id_plans_the_alias_rename():
    spec = desired("version: 1\nteams: [{alias: platform, id: t-1, max_budget: 5}]\n")
    plan = plan_for(spec, state(live_team("t-1", "old-name", max_budget=5)))
    (action,) = plan.actions
    assert (action.kind, action.address) == ("update_team", "team.platform")
    assert action.params == {"team_id": "t-1", "team_alias": "platform"}
    assert [(c.field, c.old, c.new) for c in action.changes] == [("team_alias", "old-name", "platform")]
    assert plan.drift == ()


def test_declared_id_missing_on_the_proxy_is_created_with_that_id():
    spec = desired("version: 1\nteams: [{alias: platform, id: t-1}]\n")
    (action,) = plan_for(spec, state()).actions
    assert action.kind == "create_team" and action.params["team_id"] == "t-1"


def test_declared_id_disambiguates_duplicate_aliases():
    spec = desired("version: 1\nteams: [{alias: dev, id: t-2}]\n")
    plan = plan_for(spec, state(live_team("t-1", "dev"), live_team("t-2", "dev")))
    assert plan.actions == ()
    assert [(d.kind, d.detail) for d in plan.drift] == [
        ("team", "on the proxy (team_id t-1), not in the file; owned by this tool")
    ]


def test_a_live_team_is_adopted_at_most_once():
    spec = desired(
        """
        version: 1
        teams:
          - {alias: new-name, id: t-1, max_budget: 10}
          - {alias: old-name, max_budget: 20}
        """
    )
    try:
        plan = plan_for(spec, state(live_team("t-1", "old-name", max_budget=5.0)))
    except PlanConflict:
        return  # refusing to guess is acceptable too
    targeted = [a.params["team_id"] for a in plan.actions if a.kind in ("create_team", "update_team")]
    assert len(targeted) == len(set(targeted)), [(a.kind, a.address, a.params) for a in plan.actions]


# --------------------------------------------------------------------------- field-level updates


def test_team_update_lists_only_changed_fields_that_the_file_mentions():
    spec = desired(
        """
        version: 1
        teams:
          - alias: dev
            models: [b, a]
            max_budget: 100
            tpm_limit: 10
        """
    )
    unchanged = live_team(
        "t", "dev", models=["a", "b"], max_budget=100.0, tpm_limit=10, rpm_limit=99, budget_duration="1mo"
    )
    assert plan_for(spec, state(unchanged)).actions == ()

    changed = live_team("t", "dev", models=["a"], max_budget=100, tpm_limit=None, rpm_limit=99)
    (action,) = plan_for(spec, state(changed)).actions
    assert action.kind == "update_team"
    assert action.params == {"team_id": "t", "models": ["b", "a"], "tpm_limit": 10}
    assert [(c.field, c.old, c.new) for c in action.changes] == [("models", ["a"], ["b", "a"]), ("tpm_limit", None, 10)]
    assert action.reason == "settings differ: models, tpm_limit"
    assert action.symbol == "~"


def test_explicit_null_clears_a_limit():
    spec = desired("version: 1\nteams: [{alias: dev, max_budget: null}]\n")
    (action,) = plan_for(spec, state(live_team("t", "dev", max_budget=50.0))).actions
    assert action.params == {"team_id": "t", "max_budget": None}


def test_user_role_and_alias_updated_only_when_the_file_sets_them():
    live = state(live_user("u1", "a@example.com", role="proxy_admin", alias="Legacy"))
    assert plan_for(desired("version: 1\nusers: [{email: a@example.com}]\n"), live).actions == ()

    (action,) = plan_for(desired("version: 1\nusers: [{email: a@example.com, role: internal_user}]\n"), live).actions
    assert (action.kind, action.address) == ("update_user", "user.a@example.com")
    assert action.params == {"user_id": "u1", "user_role": "internal_user"}

    (action,) = plan_for(
        desired("version: 1\nusers: [{email: a@example.com, alias: New, role: proxy_admin}]\n"), live
    ).actions
    assert action.params == {"user_id": "u1", "user_alias": "New"}
    assert [(c.field, c.old, c.new) for c in action.changes] == [("user_alias", "Legacy", "New")]


# --------------------------------------------------------------------------- memberships

ONE_MEMBERSHIP = "version: 1\nteams: [{alias: dev}]\nusers: [{email: a@example.com, teams: [dev]}]\n"


def test_existing_membership_plans_nothing():
    live = state(live_user("u1", "a@example.com", teams=("t",)), live_team("t", "dev", members=("u1",)))
    plan = plan_for(desired(ONE_MEMBERSHIP), live)
    assert plan.actions == () and plan.drift == ()


def test_roster_missing_a_user_that_lists_the_team_is_a_lost_write():
    live = state(live_user("u1", "a@example.com", teams=("t",)), live_team("t", "dev"))
    (action,) = plan_for(desired(ONE_MEMBERSHIP), live).actions
    assert action.kind == "add_member"
    assert "lost concurrent write" in action.reason
    assert action.params == {"team_id": "t", "user_id": "u1", "team_alias": "dev", "user_email": "a@example.com"}


def test_user_referencing_a_team_by_declared_id():
    spec = desired("version: 1\nteams: [{alias: dev, id: t-9}]\nusers: [{email: a@example.com, teams: [t-9]}]\n")
    plan = plan_for(spec, state(live_user("u1", "a@example.com"), live_team("t-9", "dev")))
    assert addresses(plan) == ["membership.dev.a@example.com"]


# --------------------------------------------------------------------------- conflicts


DUPLICATED = """
version: 1
teams: [{alias: dev}]
organizations: [{alias: org, members: [{email: a@example.com, role: internal_user}]}]
removals: {memberships: true, users: true}
users:
  - {email: a@example.com, teams: [dev], alias: Alice}
  - {email: b@example.com, teams: [dev]}
"""


def test_duplicate_live_emails_of_unowned_accounts_refuse_that_user_alone():
    # Neither account is the tool's: nothing is done for a@, in one line naming both ids; b@ goes on.
    live = state(
        live_user("u-1", "a@example.com", teams=("t-dev",), metadata={}),
        live_user("u-2", "A@EXAMPLE.com", metadata={}),
        live_user("u-b", "b@example.com"),
        live_team("t-dev", "dev", members=("u-1",)),
        replace(live_organization("o-1", "org"), members=(LiveMember("u-2", "internal_user"),)),
    )
    plan = plan_for(desired(DUPLICATED), live)
    assert addresses(plan) == ["membership.dev.b@example.com"], "no adoption, add, removal or deletion for a@"
    [refused] = [d for d in plan.drift if d.kind == "refused"]
    assert refused.address == "user.a@example.com" and "u-1, u-2" in refused.detail
    assert {d.address for d in plan.drift if d.kind == "duplicate"} == {"user.u-1", "user.u-2"}
    assert not [d for d in plan.drift if d.kind in ("membership", "org_membership")], "their rosters are theirs"


def test_duplicate_live_emails_with_one_owned_account_plan_that_one():
    # The tool's account is the user; the other is drift the check fails on, and stays untouched.
    live = state(
        live_user("u-1", "a@example.com", teams=("t-dev",)),
        live_user("u-2", "A@EXAMPLE.com", role="proxy_admin", metadata={}),
        live_user("u-b", "b@example.com"),
        live_team("t-dev", "dev", members=("u-1",)),
        replace(live_organization("o-1", "org"), members=(LiveMember("u-1", "internal_user"),)),
    )
    plan = plan_for(desired(DUPLICATED), live)
    assert addresses(plan) == ["user.a@example.com", "membership.dev.b@example.com"]
    assert the_action(plan, "user.a@example.com").params["user_id"] == "u-1"
    [duplicate] = [d for d in plan.drift if d.kind == "duplicate"]
    assert duplicate.address == "user.u-2" and "u-1" in duplicate.detail and "proxy_admin" in duplicate.detail
    assert FAILING_DRIFT >= {d.kind for d in plan.drift}


def test_duplicate_live_emails_of_two_owned_accounts_are_refused_and_never_deleted():
    live = state(
        live_user("u-1", "a@example.com"), live_user("u-2", "A@example.com"), live_user("u-b", "b@example.com")
    )
    plan = plan_for(desired("version: 1\nremovals: {users: true}\nusers: [{email: b@example.com}]\n"), live)
    assert [a for a in plan.actions if a.kind == "delete_user"] != [], "undeclared duplicates are plain removals"
    plan = plan_for(desired("version: 1\nremovals: {users: true}\nusers: [{email: a@example.com}]\n"), live)
    assert not [a for a in plan.actions if a.kind == "delete_user" and a.params["user_id"] in ("u-1", "u-2")]
    assert "2 are owned by this tool" in [d for d in plan.drift if d.kind == "refused"][0].detail


def test_duplicate_live_team_aliases_are_a_conflict_naming_both_ids():
    with pytest.raises(PlanConflict) as caught:
        plan_for(
            desired("version: 1\nteams: [{alias: dev}]\n"), state(live_team("t-1", "dev"), live_team("t-2", "dev"))
        )
    assert "t-1" in str(caught.value) and "t-2" in str(caught.value)
    assert "id:" in str(caught.value)  # tells the user how to pick one


def test_derived_user_id_taken_by_another_email_is_a_conflict():
    taken = live_user(new_user_id("a@example.com"), "renamed@example.com")
    with pytest.raises(PlanConflict) as caught:
        plan_for(desired("version: 1\nusers: [{email: a@example.com}]\n"), state(taken))
    assert new_user_id("a@example.com") in str(caught.value)
    assert "renamed@example.com" in str(caught.value)


def test_derived_team_id_taken_by_another_alias_is_a_conflict():
    with pytest.raises(PlanConflict) as caught:
        plan_for(desired("version: 1\nteams: [{alias: dev}]\n"), state(live_team(new_team_id("dev"), "renamed")))
    assert new_team_id("dev") in str(caught.value)


def test_all_conflicts_are_reported_together():
    live = state(
        live_user(new_user_id("a@example.com"), "renamed@example.com"),
        live_team("t-1", "dev"),
        live_team("t-2", "dev"),
    )
    with pytest.raises(PlanConflict) as caught:
        plan_for(desired("version: 1\nteams: [{alias: dev}]\nusers: [{email: a@example.com}]\n"), live)
    assert len(caught.value.messages) == 2


# --------------------------------------------------------------------------- drift


def test_drift_lists_extra_users_teams_and_memberships_and_ignores_the_admin():
    live = state(
        live_user("u1", "a@example.com", teams=("t",)),
        live_user("u-extra", "Extra@Example.com", teams=("t",)),
        live_user("u-anon", None),
        live_team("t", "dev", members=(PROXY_ADMIN_ID, "u1", "u-extra")),
        live_team("t-other", "other", members=("u1",)),
        live_team("t-noname", None),
    )
    plan = plan_for(desired(ONE_MEMBERSHIP), live)
    assert plan.actions == ()
    assert [(d.kind, d.address) for d in plan.drift] == [
        ("membership", "membership.dev.extra@example.com"),
        ("team", "team.other"),
        ("team", "team.t-noname"),
        ("user", "user.extra@example.com"),
        ("user", "user.u-anon"),
    ]
    assert all(PROXY_ADMIN_ID not in d.address for d in plan.drift)


def test_declared_user_in_an_undeclared_membership_is_drift():
    live = state(
        live_user("u1", "a@example.com"), live_user("u2", "b@example.com"), live_team("t", "dev", members=("u1", "u2"))
    )
    spec = desired(
        "version: 1\nteams: [{alias: dev}]\nusers: [{email: a@example.com, teams: [dev]}, {email: b@example.com}]\n"
    )
    plan = plan_for(spec, live)
    assert [d.address for d in plan.drift] == ["membership.dev.b@example.com"]


# --------------------------------------------------------------------------- determinism


def test_plan_is_independent_of_file_order():
    shuffled = """
    version: 1
    users:
      - email: bob@example.com
        role: proxy_admin_viewer
        teams: [dev, research]
      - email: Alice@Example.com
        alias: Alice
        teams: [dev]
    teams:
      - alias: research
      - alias: dev
        max_budget: 100
        models: [gpt-4o-mini]
    """
    live = state(live_user("u-x", "x@example.com"), live_team("t-x", "x", members=("u-x",)))
    a = plan_for(desired(TWO_TEAMS), live)
    b = plan_for(desired(shuffled), live)
    assert a.actions == b.actions
    assert a.drift == b.drift
    assert a.fingerprint == b.fingerprint
    assert plan_for(desired(TWO_TEAMS), live).fingerprint == a.fingerprint


def test_fingerprint_changes_with_the_plan():
    a = plan_for(desired("version: 1\nteams: [{alias: dev, max_budget: 1}]\n"))
    b = plan_for(desired("version: 1\nteams: [{alias: dev, max_budget: 2}]\n"))
    assert a.fingerprint != b.fingerprint


# --------------------------------------------------------------------------- invitations

ALICE = "version: 1\nusers: [{email: a@example.com}]\n"
PENDING = "2031-12-01T10:00:00Z"  # after NOW
EXPIRED = "2031-11-20T09:00:00Z"  # a week before NOW


def invitation_plan(user: LiveUser, body: str = ALICE, now: datetime = NOW) -> Plan:
    return plan_for(desired(body), state(user), now)


def test_new_user_is_invited_after_its_creation():
    plan = plan_for(desired(ALICE), state())
    invite = the_action(plan, "invitation.a@example.com")
    assert invite.params == {"user_id": new_user_id("a@example.com"), "user_email": "a@example.com"}
    assert invite.depends_on == ("user.a@example.com",)
    assert addresses(plan).index("user.a@example.com") < addresses(plan).index("invitation.a@example.com")


def test_pending_unexpired_invitation_plans_nothing():
    assert invitation_plan(invited_user("u1", "a@example.com", expires_at=PENDING)).actions == ()


@pytest.mark.parametrize(
    "expires_at, now, expired",
    [
        ("2031-11-27T00:00:01Z", NOW, False),  # expires today (earlier hour): still valid all day
        ("2031-11-26T23:59:59Z", NOW, True),  # yesterday
        ("2031-11-26T23:59:59.123000+00:00", datetime(2031, 11, 27, 0, 0, tzinfo=timezone.utc), True),
        # 23:30 at -02:00 is 01:30 UTC on the 27th: not expired on the 27th (UTC)
        ("2031-11-26T23:30:00-02:00", NOW, False),
        # now is 01:00 on the 28th at +02:00, i.e. 23:00 UTC on the 27th
        ("2031-11-27T10:00:00Z", datetime(2031, 11, 28, 1, 0, tzinfo=timezone(timedelta(hours=2))), False),
        (None, NOW, True),
    ],
)
def test_invitation_expiry_is_date_granular_in_utc(expires_at, now, expired):
    assert invitation_expired(expires_at, now) is expired


def test_expired_invitation_is_renewed_with_the_expiry_date_and_checked_at_apply():
    (action,) = invitation_plan(invited_user("u1", "a@example.com", expires_at=EXPIRED)).actions
    assert (action.kind, action.address) == ("renew_invitation", "invitation.a@example.com")
    assert "expired on 2031-11-20" in action.reason and "if it was accepted" in action.reason
    assert action.params == {"user_id": "u1", "user_email": "a@example.com"} and action.depends_on == ()
    assert "v2.opaque" not in str(action.to_dict())


@pytest.mark.parametrize("recorded_expiry", [None, "not a date"])
def test_an_unreadable_expiry_counts_as_expired(recorded_expiry):
    record = {"expires_at": recorded_expiry} if recorded_expiry else {}
    (action,) = invitation_plan(invited_user("u1", "a@example.com", **record)).actions
    assert action.kind == "renew_invitation"


def test_invitation_expiring_today_is_not_renewed():
    assert invitation_plan(invited_user("u1", "a@example.com", expires_at="2031-11-27T01:00:00Z")).actions == ()


def test_recorded_acceptance_plans_nothing():
    user = invited_user("u1", "a@example.com", expires_at=EXPIRED, accepted_at="2031-11-25T08:00:00Z")
    assert invitation_plan(user).actions == ()


@pytest.mark.parametrize(
    "record, detail",
    [
        ({"expires_at": PENDING}, "a new one created"),
        ({"expires_at": EXPIRED}, "a new one created"),
        ({"expires_at": PENDING, "accepted_at": "2031-11-25T08:00:00Z"}, "accepted on 2031-11-25"),
    ],
)
def test_a_plain_invitation_id_is_replaced_whatever_its_state(record, detail):
    user = live_user(
        "u1", "a@example.com", metadata={OWNER_KEY: {"managed": True, "invitation": {"id": "inv-1", **record}}}
    )
    plan = invitation_plan(user)
    (action,) = plan.actions
    assert action.kind == "replace_invitation" and action.reason.startswith(EXPOSED_REASON) and detail in action.reason
    assert "inv-1" not in str(plan.to_dict()) and plan.has_changes


@pytest.mark.parametrize(
    "body, invited",
    [
        (ALICE, False),
        ("version: 1\nusers: [{email: a@example.com, invite: true}]\n", True),
        ("version: 1\ndefaults: {invite: true}\nusers: [{email: a@example.com}]\n", True),
        ("version: 1\ndefaults: {invite: true}\nusers: [{email: a@example.com, invite: false}]\n", False),
    ],
)
def test_pre_existing_user_is_invited_only_when_asked(body, invited):
    plan = invitation_plan(live_user("u1", "a@example.com"), body=body)
    assert addresses(plan, "create_invitation") == (["invitation.a@example.com"] if invited else [])


def test_user_created_by_the_tool_but_never_invited_is_invited():
    user = live_user("u1", "a@example.com", metadata={OWNER_KEY: {"managed": True}, "other": 1})
    (action,) = invitation_plan(user).actions
    assert action.kind == "create_invitation"
    assert "never invited" in action.reason


def test_inviter_is_created_only_when_invitations_are_planned_and_it_is_missing():
    spec = desired(ALICE)
    with_inviter = plan_for(spec, state(admin=False))
    assert addresses(with_inviter, "create_inviter") == [f"user.{PROXY_ADMIN_ID}"]
    assert f"user.{PROXY_ADMIN_ID}" in the_action(with_inviter, "invitation.a@example.com").depends_on

    assert addresses(plan_for(spec, state(admin=True)), "create_inviter") == []

    nobody_to_invite = state(live_user("u1", "a@example.com"), admin=False)
    assert plan_for(spec, nobody_to_invite).actions == ()

    renewal = state(invited_user("u1", "a@example.com", expires_at=EXPIRED), admin=False)
    assert addresses(plan_for(spec, renewal)) == [f"user.{PROXY_ADMIN_ID}", "invitation.a@example.com"]


def test_phases_cover_every_kind_the_planner_emits():
    plan = plan_for(desired(TWO_TEAMS), LiveState())
    assert {a.kind for a in plan.actions} <= set(PHASES)
    order = [PHASES.index(a.kind) for a in plan.actions]
    assert order == sorted(order)


# --------------------------------------------------------------------------- privileged drift


@pytest.mark.parametrize(
    "body, live_role, detail",
    [
        (
            "version: 1\nusers: [{email: a@example.com}]\n",
            "proxy_admin",
            "the file declares no role (internal_user for new users)",
        ),
        (
            "version: 1\nusers: [{email: a@example.com, role: proxy_admin_viewer}]\n",
            "proxy_admin",
            "the file declares proxy_admin_viewer",
        ),
        (
            "version: 1\nusers: [{email: a@example.com, role: internal_user}]\n",
            "proxy_admin_viewer",
            "the file declares internal_user",
        ),
        ("version: 1\n", "proxy_admin", "the file does not declare this user"),
    ],
)
def test_a_privileged_role_the_file_does_not_grant_is_always_drift(body: str, live_role: str, detail: str) -> None:
    user = live_user("u1", "a@example.com", role=live_role, metadata=MANAGED)
    plan = plan_for(desired(body), state(user))
    (item,) = [d for d in plan.drift if d.kind == "privilege"]
    assert item.address == "user.a@example.com"
    assert item.detail == f"has the role {live_role} on the proxy (user_id u1); {detail}"


def test_privileges_the_file_grants_and_the_master_keys_own_user_are_not_drift() -> None:
    admin = live_user("u1", "a@example.com", role="proxy_admin", metadata=MANAGED)
    plan = plan_for(desired("version: 1\nusers: [{email: a@example.com, role: proxy_admin}]\n"), state(admin))
    assert [d for d in plan.drift if d.kind == "privilege"] == []
    assert plan_for(desired("version: 1\n"), state()).drift == (), "default_user_id is the master key's own user"


def test_a_privileged_user_without_an_email_is_privilege_drift() -> None:
    plan = plan_for(desired("version: 1\n"), state(live_user("bot", None, role="proxy_admin_viewer")))
    assert [(d.kind, d.address) for d in plan.drift] == [("privilege", "user.bot")]


# --------------------------------------------------------------------------- ownership and removals


def removals(body: str, scopes: str) -> DesiredState:
    return desired(textwrap.dedent(body).lstrip("\n") + f"removals: {scopes}\n")


def kinds(plan: Plan) -> list[tuple[str, str]]:
    return [(a.kind, a.address) for a in plan.actions]


def test_pre_existing_objects_are_adopted_as_bookkeeping_not_as_changes():
    live = state(
        live_user("u1", "a@example.com", metadata={}, teams=("t",)),
        live_team("t", "dev", members=("u1",), managed=False),
    )
    plan = plan_for(desired(ONE_MEMBERSHIP), live)
    assert kinds(plan) == [("adopt_team", "team.dev"), ("adopt_user", "user.a@example.com")]
    assert not plan.has_changes and plan.summary() == {"adopt_team": 1, "adopt_user": 1}
    assert (
        plan_for(
            desired(ONE_MEMBERSHIP),
            state(live_user("u1", "a@example.com", teams=("t",)), live_team("t", "dev", members=("u1",))),
        ).actions
        == ()
    )


def test_an_adopted_user_is_not_invited_unless_asked():
    adopted = live_user("u1", "a@example.com", metadata=ADOPTED)
    assert plan_for(desired(ALICE), state(adopted)).actions == ()


@pytest.mark.parametrize(
    "scopes, expected",
    [
        ("{}", []),
        ("{users: true}", [("delete_user", "user.gone@example.com")]),
        (
            "{memberships: true}",
            [
                ("remove_member", "membership.dev.gone@example.com"),
                ("remove_member", "membership.dev.stranger@example.com"),
            ],
        ),
        ("{teams: true}", [("delete_team", "team.old")]),
        (
            "{users: true, memberships: true, teams: true}",
            [
                ("remove_member", "membership.dev.stranger@example.com"),
                ("delete_user", "user.gone@example.com"),
                ("delete_team", "team.old"),
            ],
        ),
    ],
)
def test_each_scope_removes_only_what_it_names(scopes: str, expected: list[tuple[str, str]]):
    live = state(
        live_user("u1", "a@example.com", teams=("t",), metadata=ADOPTED),
        live_user("u-gone", "gone@example.com", teams=("t",), metadata=ADOPTED),
        live_user("u-stranger", "stranger@example.com", teams=("t",), metadata={}),
        live_team("t", "dev", members=(PROXY_ADMIN_ID, "u1", "u-gone", "u-stranger")),
        live_team("t-old", "old", members=("u1",)),
        live_team("t-foreign", "foreign", members=("u1",), managed=False),
    )
    plan = plan_for(removals(ONE_MEMBERSHIP, scopes), live)
    assert kinds(plan) == expected
    assert all(a.symbol == "-" for a in plan.actions)
    assert "user.stranger@example.com" in {d.address for d in plan.drift}, "an unowned user is never deleted"
    assert "team.foreign" in {d.address for d in plan.drift}, "an unowned team is never deleted"


def test_a_move_adds_before_it_removes_and_the_removal_waits_for_the_add():
    live = state(
        live_user("u1", "a@example.com", teams=("t-a",)), live_team("t-a", "a", members=("u1",)), live_team("t-b", "b")
    )
    spec = removals(
        "version: 1\nteams: [{alias: a}, {alias: b}]\nusers: [{email: a@example.com, teams: [b]}]\n",
        "{memberships: true}",
    )
    plan = plan_for(spec, live)
    assert kinds(plan) == [
        ("add_member", "membership.b.a@example.com"),
        ("remove_member", "membership.a.a@example.com"),
    ]
    assert plan.actions[1].depends_on == ("membership.b.a@example.com",)
    assert plan.summary() == {"add_member": 1, "remove_member": 1}


def test_deleting_a_user_says_how_many_keys_go_with_it():
    gone = LiveUser("u-gone", "gone@example.com", "internal_user", None, (), ADOPTED, key_count=3)
    (action,) = plan_for(removals("version: 1\n", "{users: true}"), state(gone)).actions
    assert "LiteLLM deletes its 3 key(s) and onboarding links with it" in action.reason
    assert action.params == {"user_id": "u-gone", "user_email": "gone@example.com"}


def test_deleting_a_team_says_how_many_keys_go_with_it():
    old = replace(live_team("t-old", "old"), key_count=2)
    (action,) = plan_for(removals("version: 1\n", "{teams: true}"), state(old)).actions
    assert "LiteLLM deletes its 2 key(s) with it" in action.reason


def test_protected_principals_are_never_removed():
    me = live_user("u-ci", "ci@example.com", metadata=ADOPTED, teams=("t",))
    admin = live_user("u-root", "root@example.com", role="proxy_admin", metadata=ADOPTED, teams=("t",))
    live = replace(
        state(me, admin, live_team("t", "dev", members=(PROXY_ADMIN_ID, "u-ci", "u-root"))), caller_id="u-ci"
    )
    plan = plan_for(removals("version: 1\nteams: [{alias: dev}]\n", "{users: true, memberships: true}"), live)
    assert kinds(plan) == [], "the caller's user, the last proxy_admin and default_user_id all stay"
    details = {d.address: d.detail for d in plan.drift}
    assert details["user.ci@example.com"].endswith("protected from removal: it owns the key this tool runs with")
    assert details["membership.dev.root@example.com"].endswith("protected: the last proxy_admin")


def test_a_proxy_admin_may_go_while_another_stays():
    one = live_user("u-1", "one@example.com", role="proxy_admin", metadata=ADOPTED)
    two = live_user("u-2", "two@example.com", role="proxy_admin", metadata=ADOPTED)
    plan = plan_for(
        removals("version: 1\nusers: [{email: two@example.com, role: proxy_admin}]\n", "{users: true}"), state(one, two)
    )
    assert kinds(plan) == [("delete_user", "user.one@example.com")]


def _guard(managed_users: int, doomed: int, max_percent: int = 25) -> Plan:
    keep = [live_user(f"u{i}", f"u{i}@example.com", metadata=ADOPTED) for i in range(managed_users - doomed)]
    gone = [live_user(f"g{i}", f"g{i}@example.com", metadata=ADOPTED) for i in range(doomed)]
    body = "version: 1\nusers:\n" + "".join(f"  - email: {u.email}\n" for u in keep) if keep else "version: 1\n"
    return plan_for(removals(body, f"{{users: true, max_percent: {max_percent}}}"), state(*keep, *gone))


@pytest.mark.parametrize(
    "managed, doomed, tripped",
    [
        (9, 9, False),  # fewer than 10 under management: not judged
        (10, 3, True),  # 30 % > 25 %
        (12, 3, False),  # exactly 25 %: allowed
        (16, 4, False),  # exactly 25 %
        (16, 5, True),  # 31 %
    ],
)
def test_the_guard_arithmetic_at_its_edges(managed: int, doomed: int, tripped: bool):
    plan = _guard(managed, doomed)
    assert (plan.guard.removals, plan.guard.managed) == (doomed, managed)
    assert plan.guard.tripped is tripped
    assert plan.to_dict()["removal_guard"]["tripped"] is tripped


def test_the_guard_counts_memberships_of_declared_teams_and_owned_teams():
    live = state(
        live_user("u1", "a@example.com", teams=("t",), metadata=ADOPTED),
        live_team("t", "dev", members=tuple(["u1"] + [f"x{i}" for i in range(9)])),
        *[live_user(f"x{i}", f"x{i}@example.com", metadata={}) for i in range(9)],
    )
    plan = plan_for(removals(ONE_MEMBERSHIP, "{memberships: true}"), live)
    assert (plan.guard.removals, plan.guard.managed, plan.guard.tripped) == (9, 1 + 1 + 10, True)
    assert "removes 9 of the 12 objects under management (75%)" in plan.guard.message()


def test_the_memberships_of_deleted_users_count_as_removals():
    keep = [live_user(f"k{i}", f"k{i}@example.com", teams=("t",), metadata=ADOPTED) for i in range(12)]
    gone = [live_user(f"g{i}", f"g{i}@example.com", teams=("t",), metadata=ADOPTED) for i in range(8)]
    team = live_team("t", "dev", members=tuple(u.user_id for u in keep + gone))
    body = "version: 1\nteams: [{alias: dev}]\nusers:\n" + "".join(
        f"  - {{email: {u.email}, teams: [dev]}}\n" for u in keep
    )
    plan = plan_for(removals(body, "{users: true, memberships: true}"), state(*keep, *gone, team))
    assert (plan.guard.removals, plan.guard.managed, plan.guard.tripped) == (16, 41, True)


def test_a_removal_waits_for_the_adds_in_a_stable_order_whatever_the_file_order():
    live = state(
        live_user("u1", "a@example.com", teams=("t-c",)),
        live_team("t-a", "a"),
        live_team("t-b", "b"),
        live_team("t-c", "c", members=("u1",)),
    )
    plans = [
        plan_for(
            removals(
                (
                    "version: 1\nteams: [{alias: a}, {alias: b}, {alias: c}]\n"
                    f"users: [{{email: a@example.com, teams: [{order}]}}]\n"
                ),
                "{memberships: true}",
            ),
            live,
        )
        for order in ("a, b", "b, a")
    ]
    assert plans[0].fingerprint == plans[1].fingerprint
    assert the_action(plans[0], "membership.c.a@example.com").depends_on == (
        "membership.a.a@example.com",
        "membership.b.a@example.com",
    )


# --------------------------------------------------------------------------- scale


class Touches:
    """How many times the planner read an attribute of a live user or team member."""

    count = 0


class CountedUser(LiveUser):
    def __getattribute__(self, name: str) -> Any:
        Touches.count += 1
        return super().__getattribute__(name)


class CountedMember(LiveMember):
    def __getattribute__(self, name: str) -> Any:
        Touches.count += 1
        return super().__getattribute__(name)


def at_scale(n: int) -> tuple[DesiredState, LiveState]:
    """``n`` declared users against a proxy with every kind of work: a quarter of them new, a
    fifth with a role to change, invitations pending, expired or never sent, memberships
    missing or extra, and a quarter as many owned users the file no longer lists."""
    body = (
        "version: 1\nremovals: {users: true, memberships: true}\nteams: [{alias: dev}, {alias: ops}]\nusers:\n"
        + "".join(
            (
                f"  - {{email: user{i}@example.com, teams: "
                f"[{'dev, ops' if i % 2 else 'dev'}]{', role: internal_user_viewer' if i % 5 == 0 else ''}}}\n"
            )
            for i in range(n)
        )
    )
    records = (
        {"sealed": "v2.x", "expires_at": "2099-01-01T00:00:00Z"},
        {"sealed": "v2.x", "expires_at": "2020-01-01T00:00:00Z"},
        None,
    )
    users = [
        CountedUser(
            user_id=f"u{i}",
            email=f"User{i}@Example.com",
            role="internal_user",
            alias=None,
            teams=("t-dev",),
            metadata={OWNER_KEY: {"managed": True, **({"invitation": records[i % 3]} if records[i % 3] else {})}},
        )
        for i in range(n)
        if i % 4 != 3
    ]
    extra = [
        CountedUser(f"x{i}", f"extra{i}@example.com", "internal_user", None, ("t-ops",), MANAGED) for i in range(n // 4)
    ]
    admin = CountedUser(PROXY_ADMIN_ID, None, "proxy_admin", None, ())
    dev = LiveTeam(
        "t-dev",
        "dev",
        live_team("t-dev", "dev").settings,
        tuple(CountedMember(u.user_id, "user") for u in users[::2]),
        MANAGED,
    )
    strays = [u for u in users[::2] if int(u.user_id[1:]) % 2 == 0]  # in ops, but the file lists them in dev only
    ops = LiveTeam(
        "t-ops",
        "ops",
        live_team("t-ops", "ops").settings,
        tuple(CountedMember(u.user_id, "user") for u in extra + strays),
        MANAGED,
    )
    return desired(body), LiveState(users=(*users, *extra, admin), teams=(dev, ops))


def touches(n: int) -> tuple[int, Plan]:
    spec, live = at_scale(n)
    Touches.count = 0
    plan = make_plan(spec, live, NOW)
    return Touches.count, plan


def test_the_planner_reads_each_live_user_a_bounded_number_of_times():
    """Linear without a timer: a planner that scanned the proxy's users (or a roster) once per
    declared user would read N^2 attributes, and doubling N would quadruple the count."""
    small, plan = touches(200)
    large, _ = touches(400)
    assert {
        "create_user",
        "update_user",
        "add_member",
        "create_invitation",
        "renew_invitation",
        "remove_member",
        "delete_user",
    } <= set(plan.summary())
    assert small <= 60 * 200
    assert large <= 2.1 * small


def test_derived_ids_are_the_uuid5_of_the_name():
    namespace = uuid.UUID("6f3b1c52-8d4e-4f0a-9a57-2c1d7e9b4a10")
    for name in ("dev", "Ünïcode team ✓", "", "x" * 300, *(f"t{i}" for i in range(500))):
        assert new_team_id(name) == str(uuid.uuid5(namespace, f"team:{name}"))
    assert new_user_id("Alice@Example.com") == str(uuid.uuid5(namespace, "user:alice@example.com"))


def test_planning_leaves_the_cycle_collector_as_it_found_it():
    plan_for(desired(TWO_TEAMS))
    assert gc.isenabled()
    with pytest.raises(PlanConflict):
        plan_for(desired(TWO_TEAMS), state(live_team("t-1", "dev"), live_team("t-2", "dev")))
    assert gc.isenabled()
    gc.disable()
    try:
        plan_for(desired(TWO_TEAMS))
        assert not gc.isenabled()
    finally:
        gc.enable()


# --------------------------------------------------------------------------- environments


def test_each_environment_is_planned_from_its_own_state_and_fingerprinted_apart():
    file = desired(
        """
        version: 1
        environments: [{name: staging}, {name: production}]
        teams:
          - alias: research
            max_budget: 5
            overrides: {staging: {max_budget: 1}}
        users:
          - email: a@x.io
            teams: [research]
            only_in: [staging]
        """
    )
    live = state(live_team("t-1", "research", max_budget=5.0))
    staging, production = (plan_for(file.for_environment(env), live) for env in ("staging", "production"))
    assert (staging.environment, production.environment) == ("staging", "production")
    assert [(a.address, a.kind) for a in staging.actions if not a.bookkeeping] == [
        ("team.research", "update_team"),
        ("user.a@x.io", "create_user"),
        ("membership.research.a@x.io", "add_member"),
        ("invitation.a@x.io", "create_invitation"),
    ]
    assert production.actions == ()
    # The same actions on another environment never share a fingerprint; a file without environments
    # keeps the fingerprint it always had.
    assert replace(staging, environment="production").fingerprint != staging.fingerprint
    plain = replace(staging, environment=None)
    assert plain.fingerprint != staging.fingerprint
    assert Plan.from_dict(staging.to_dict()) == staging and staging.to_dict()["environment"] == "staging"


# --------------------------------------------------------------------------- user limits, blocked teams


def test_a_users_budget_models_and_limits_are_created_and_then_updated_field_by_field():
    spec = desired(
        """
        version: 1
        users:
          - email: a@x.io
            max_budget: 10
            budget_duration: 30d
            models: [gpt-4o, gpt-4o-mini]
            tpm_limit: 1000
          - email: b@x.io
            rpm_limit: null
        """
    )
    created = plan_for(spec)
    [new] = [a for a in created.actions if a.address == "user.a@x.io"]
    assert new.kind == "create_user" and {k: new.params[k] for k in ("max_budget", "models", "tpm_limit")} == {
        "max_budget": 10.0,
        "models": ["gpt-4o", "gpt-4o-mini"],
        "tpm_limit": 1000,
    }
    assert "rpm_limit" not in new.params and new.params["budget_duration"] == "30d"
    live = state(
        live_user(
            "u-a", "a@x.io", max_budget=10.0, budget_duration="30d", models=["gpt-4o-mini", "gpt-4o"], tpm_limit=5
        ),
        live_user("u-b", "b@x.io", rpm_limit=60, tpm_limit=7),
    )
    updated = plan_for(spec, live)
    assert [(a.address, a.params) for a in updated.actions] == [
        ("user.a@x.io", {"user_id": "u-a", "tpm_limit": 1000}),  # the models, in another order, are the same
        ("user.b@x.io", {"user_id": "u-b", "rpm_limit": None}),  # explicit null: managed; tpm_limit left alone
    ]
    converged = state(
        live_user(
            "u-a", "a@x.io", max_budget=10, budget_duration="30d", models=["gpt-4o", "gpt-4o-mini"], tpm_limit=1000
        ),
        live_user("u-b", "b@x.io", tpm_limit=7),
    )
    assert plan_for(spec, converged).actions == ()


def test_blocking_a_team_is_a_managed_setting():
    spec = desired(
        """
        version: 1
        teams:
          - alias: paused
            blocked: true
          - alias: open
            blocked: false
          - alias: untouched
        """
    )
    created = {a.address: a.params for a in plan_for(spec).actions if a.kind == "create_team"}
    assert (created["team.paused"]["blocked"], created["team.open"]["blocked"]) == (True, False)
    assert "blocked" not in created["team.untouched"]
    live = state(
        live_team("t-1", "paused"), live_team("t-2", "open", blocked=True), live_team("t-3", "untouched", blocked=True)
    )
    assert [(a.address, a.params) for a in plan_for(spec, live).actions] == [
        ("team.open", {"team_id": "t-2", "blocked": False}),
        ("team.paused", {"team_id": "t-1", "blocked": True}),
    ]


def test_team_member_permissions_are_planned_and_checked_against_what_the_proxy_accepts():
    spec = desired(
        """
        version: 1
        teams:
          - alias: builders
            team_member_permissions: [/key/generate, /key/update]
          - alias: readers
        """
    )
    live = state(live_team("t-1", "builders", team_member_permissions=None), live_team("t-2", "readers"))
    [update] = plan_for(spec, live).actions
    assert update.params == {"team_id": "t-1", "team_member_permissions": ["/key/generate", "/key/update"]}
    accepted = replace(live, team_permissions=frozenset({"/key/generate", "/key/info"}))
    with pytest.raises(PlanConflict) as refused:
        plan_for(spec, accepted)
    assert str(refused.value) == (
        "team.builders: team_member_permissions /key/update: not accepted by this proxy, "
        "which accepts /key/generate, /key/info"
    )
    converged = state(live_team("t-1", "builders", team_member_permissions=["/key/update", "/key/generate"]))
    assert plan_for(spec, replace(converged, teams=converged.teams + live.teams[1:])).actions == ()


# --------------------------------------------------------------------------- organizations


def live_organization(organization_id: str, alias: str, managed: bool = True, **settings: Any) -> LiveOrganization:
    return LiveOrganization(organization_id, alias, {**UNLIMITED, **settings}, MANAGED if managed else {})


ORGANIZATIONS = """
    version: 1
    organizations:
      - alias: acme
        models: [gpt-4o]
        max_budget: 1000
    teams:
      - alias: research
        organization: acme
      - alias: loose
        organization: null
      - alias: unmanaged
"""


def test_an_organization_is_created_before_the_teams_placed_in_it():
    spec = desired(ORGANIZATIONS)
    plan = plan_for(spec)
    [organization] = [a for a in plan.actions if a.kind == "create_organization"]
    assert plan.actions[0] is organization and organization.params == {
        "organization_id": organization.params["organization_id"],
        "organization_alias": "acme",
        "models": ["gpt-4o"],
        "max_budget": 1000.0,
        "metadata": {OWNER_KEY: {"managed": True}},
    }
    teams = {a.address: a for a in plan.actions if a.kind == "create_team"}
    assert teams["team.research"].params["organization_id"] == organization.params["organization_id"]
    assert teams["team.research"].depends_on == ("organization.acme",)
    assert "organization_id" not in teams["team.loose"].params and teams["team.loose"].depends_on == ()
    assert plan_for(spec).fingerprint == plan.fingerprint  # the derived id is stable


def test_teams_move_into_and_out_of_organizations_and_organizations_are_updated_or_adopted():
    spec = desired(ORGANIZATIONS)
    live = state(
        live_organization("o-1", "acme", managed=False, models=["gpt-4o"], max_budget=500.0),
        live_team("t-1", "research"),
        live_team("t-2", "loose", organization_id="o-1"),
        live_team("t-3", "unmanaged", organization_id="o-1"),
    )
    plan = plan_for(spec, live)
    assert [(a.kind, a.address, a.params, a.depends_on) for a in plan.actions] == [
        ("update_organization", "organization.acme", {"organization_id": "o-1", "max_budget": 1000.0}, ()),
        ("update_team", "team.loose", {"team_id": "t-2", "organization_id": None}, ()),  # the client sends ""
        ("update_team", "team.research", {"team_id": "t-1", "organization_id": "o-1"}, ("organization.acme",)),
        ("adopt_organization", "organization.acme", {"organization_id": "o-1"}, ()),
    ]
    [out] = [a for a in plan.actions if a.address == "team.loose"]
    assert out.changes == (Change("organization_id", "o-1", None),)
    settled = state(
        live_organization("o-1", "acme", models=["gpt-4o"], max_budget=1000.0),
        live_team("t-1", "research", organization_id="o-1"),
        live_team("t-2", "loose"),
        live_team("t-3", "unmanaged", organization_id="o-1"),
    )
    assert plan_for(spec, settled).actions == ()


def test_two_organizations_with_the_declared_alias_are_a_conflict():
    live = state(live_organization("o-1", "acme"), live_organization("o-2", "acme"))
    with pytest.raises(PlanConflict) as refused:
        plan_for(desired("version: 1\norganizations: [{alias: acme}]\n"), live)
    assert "organization.acme: 2 organizations on the proxy have the alias 'acme' (o-1, o-2)" in str(refused.value)


def test_member_limits_of_a_team_are_planned_refused_where_unsupported_and_never_cleared():
    spec = desired("version: 1\nteams:\n  - {alias: t, team_member_budget: 5, team_member_tpm_limit: 100}\n")
    live = state(live_team("t-1", "t", team_member_budget=2.0, team_member_tpm_limit=100))
    [update] = plan_for(spec, live).actions
    assert update.params == {"team_id": "t-1", "team_member_budget": 5.0}
    older = replace(live, team_fields=frozenset({"team_alias", "team_member_budget", "team_member_tpm_limit"}))
    assert plan_for(spec, older).actions == (update,)
    with_duration = desired("version: 1\nteams:\n  - {alias: t, team_member_budget_duration: 30d}\n")
    with pytest.raises(PlanConflict) as unsupported:
        plan_for(with_duration, older)
    assert str(unsupported.value).startswith(
        "team.t: team_member_budget_duration: this proxy's LiteLLM does not take it on /team/new"
    )
    with pytest.raises(PlanConflict) as uncleared:
        plan_for(desired("version: 1\nteams:\n  - {alias: t, team_member_budget: null}\n"), live)
    assert "team.t: team_member_budget: LiteLLM cannot take this away once set" in str(uncleared.value)


# --------------------------------------------------------------------------- membership settings

MEMBERSHIPS = """
version: 1
teams: [{alias: dev}, {alias: ops}]
users:
  - email: a@example.com
    teams: [dev, {team: ops, role: admin, max_budget_in_team: 5}]
"""


def test_a_new_membership_carries_its_role_and_budget_in_the_add():
    plan = plan_for(desired(MEMBERSHIPS), state(live_team("t-dev", "dev"), live_team("t-ops", "ops")))
    add = the_action(plan, "membership.ops.a@example.com")
    assert add.kind == "add_member"
    assert (add.params["role"], add.params["max_budget_in_team"]) == ("admin", 5)
    assert add.changes == (Change("max_budget_in_team", None, 5), Change("role", None, "admin"))
    plain = the_action(plan, "membership.dev.a@example.com")
    assert "role" not in plain.params and "max_budget_in_team" not in plain.params and plain.changes == ()


def member_with(role: str = "user", budget: dict[str, Any] | None = None, read: bool = True) -> LiveState:
    ops = replace(
        live_team("t-ops", "ops"),
        members=(LiveMember("u-a", role),),
        member_budgets=({"u-a": budget} if budget else {}) if read else None,
    )
    a = live_user("u-a", "a@example.com", teams=("t-dev", "t-ops"), metadata=ONBOARDED)
    return state(a, live_team("t-dev", "dev", ("u-a",)), ops)


def test_an_existing_membership_is_updated_where_the_file_differs_and_only_there():
    plan = plan_for(desired(MEMBERSHIPS), member_with("user", None))
    [update] = [a for a in plan.actions if a.kind == "update_member"]
    assert update.address == "membership.ops.a@example.com"
    assert update.changes == (Change("max_budget_in_team", None, 5), Change("role", "user", "admin"))
    assert update.reason == "settings in the team differ: max_budget_in_team, role"
    budget = {"max_budget_in_team": 5.0, "tpm_limit": None, "rpm_limit": None}
    assert not plan_for(desired(MEMBERSHIPS), member_with("admin", budget)).has_changes


def test_a_role_change_sends_the_members_budget_again_which_1_80_5_would_drop():
    body = MEMBERSHIPS.replace("role: admin, max_budget_in_team: 5", "role: user")
    budget = {"max_budget_in_team": 7.0, "tpm_limit": 100, "rpm_limit": None}
    [update] = [a for a in plan_for(desired(body), member_with("admin", budget)).actions if a.kind == "update_member"]
    assert update.changes == (Change("role", "admin", "user"),)
    assert update.params == {
        "team_id": "t-ops",
        "user_id": "u-a",
        "team_alias": "ops",
        "user_email": "a@example.com",
        "max_budget_in_team": 7.0,
        "tpm_limit": 100,
        "role": "user",
    }


def test_a_null_member_budget_takes_the_members_own_budget_away():
    body = MEMBERSHIPS.replace("role: admin, max_budget_in_team: 5", "max_budget_in_team: null")
    budget = {"max_budget_in_team": 7.0, "tpm_limit": None, "rpm_limit": None}
    [update] = [a for a in plan_for(desired(body), member_with("user", budget)).actions if a.kind == "update_member"]
    assert update.changes == (Change("max_budget_in_team", 7.0, None),)
    assert update.params["max_budget_in_team"] is None
    assert not plan_for(desired(body), member_with("user", None)).has_changes


def test_the_short_form_manages_neither_role_nor_budget():
    body = MEMBERSHIPS.replace("{team: ops, role: admin, max_budget_in_team: 5}", "ops")
    assert not plan_for(desired(body), member_with("admin", {"max_budget_in_team": 9.0})).has_changes


# --------------------------------------------------------------------------- organization members and removal

ORG_MEMBERS = """
version: 1
removals: {memberships: true}
organizations:
  - alias: acme
    members:
      - {email: boss@example.com, role: org_admin}
      - {email: new@example.com}
users:
  - email: boss@example.com
  - email: new@example.com
"""


def acme(*members: tuple[str, str], managed: bool = True) -> LiveOrganization:
    return replace(
        live_organization("o-acme", "acme", managed=managed),
        members=tuple(LiveMember(user_id, role) for user_id, role in members),
    )


def test_organization_members_are_added_with_their_roles_after_what_the_plan_creates():
    plan = plan_for(desired(ORG_MEMBERS), state(live_user("u-boss", "boss@example.com", metadata=ONBOARDED)))
    boss = the_action(plan, "org_membership.acme.boss@example.com")
    new = the_action(plan, "org_membership.acme.new@example.com")
    assert (boss.kind, boss.params["role"], boss.depends_on) == ("add_org_member", "org_admin", ("organization.acme",))
    assert new.params["role"] == "internal_user"
    assert new.depends_on == ("organization.acme", "user.new@example.com")


def test_an_organization_role_is_changed_and_unlisted_members_removed_only_where_members_are_managed():
    live = state(
        live_user("u-boss", "boss@example.com", metadata=ONBOARDED),
        live_user("u-new", "new@example.com"),
        live_user("u-old", "old@example.com", metadata={}),
        acme(("u-boss", "internal_user"), ("u-new", "internal_viewer"), ("u-old", "internal_user")),
    )
    plan = plan_for(desired(ORG_MEMBERS), live)
    assert kinds(plan) == [
        ("update_org_member", "org_membership.acme.boss@example.com"),
        ("remove_org_member", "org_membership.acme.old@example.com"),
    ]
    assert the_action(plan, "org_membership.acme.boss@example.com").changes == (
        Change("role", "internal_user", "org_admin"),
    )
    unmanaged = desired(
        "version: 1\nremovals: {memberships: true}\norganizations: [{alias: acme}]\n"
        "users: [{email: boss@example.com}, {email: new@example.com}]\n"
    )
    assert not [a for a in plan_for(unmanaged, live).actions if "org_member" in a.kind]
    kept = plan_for(desired(ORG_MEMBERS.replace("memberships: true", "memberships: false")), live)
    assert ("org_membership", "org_membership.acme.old@example.com") in [(d.kind, d.address) for d in kept.drift]


REMOVE_ORG = "version: 1\nremovals: {organizations: true, teams: true}\n"


def test_an_owned_organization_no_longer_declared_is_deleted_after_its_teams():
    team = live_team("t-r", "research", organization_id="o-acme")
    plan = plan_for(desired(REMOVE_ORG), state(acme(), team, live_organization("o-other", "other", managed=False)))
    assert kinds(plan) == [("delete_team", "team.research"), ("delete_organization", "organization.acme")]
    assert the_action(plan, "organization.acme").depends_on == ("team.research",)
    assert [(d.kind, d.address) for d in plan.drift] == [("organization", "organization.other")]


def test_an_organization_that_would_take_a_team_with_it_is_a_conflict():
    team = live_team("t-r", "research", organization_id="o-acme", managed=False)
    with pytest.raises(PlanConflict) as caught:
        plan_for(desired(REMOVE_ORG), state(acme(), team))
    assert (
        "organization.acme: owned by this tool and no longer declared, but it still holds the team(s) research"
        in str(caught.value)
    )
    moved = desired(REMOVE_ORG + "teams: [{alias: research, organization: null}]\n")
    plan = plan_for(moved, state(acme(), team))
    assert the_action(plan, "organization.acme").depends_on == ("team.research",)


def test_the_member_key_duration_is_read_from_the_teams_metadata_and_never_cleared():
    team = team_from_api({"team_id": "t", "team_alias": "t", "metadata": {"team_member_key_duration": "30d"}})
    assert team.settings["team_member_key_duration"] == "30d"
    live = state(replace(team, metadata={**team.metadata, **MANAGED}))
    assert not plan_for(desired("version: 1\nteams: [{alias: t, team_member_key_duration: 30d}]\n"), live).has_changes
    update = the_action(
        plan_for(desired("version: 1\nteams: [{alias: t, team_member_key_duration: 7d}]\n"), live), "team.t"
    )
    assert update.changes == (Change("team_member_key_duration", "30d", "7d"),)
    with pytest.raises(PlanConflict) as uncleared:
        plan_for(desired("version: 1\nteams: [{alias: t, team_member_key_duration: null}]\n"), live)
    assert "team.t: team_member_key_duration: LiteLLM cannot take this away once set" in str(uncleared.value)


def test_the_memberships_of_a_user_being_deleted_are_not_drift():
    gone = live_user("g", "g@example.com", teams=("t",), metadata=ADOPTED)
    plan = plan_for(
        removals("version: 1\nteams: [{alias: dev}]\n", "{users: true}"), state(gone, live_team("t", "dev", ("g",)))
    )
    assert kinds(plan) == [("delete_user", "user.g@example.com")]
    assert [d for d in plan.drift if d.kind == "membership"] == []


def test_the_guard_counts_only_organizations_whose_members_the_file_manages():
    owned = [live_user(f"u{i}", f"u{i}@example.com", metadata=ADOPTED) for i in range(20)]
    crowd = replace(acme(), members=tuple(LiveMember(f"x{i}", "internal_user") for i in range(60)))
    kept = "".join(f"  - {{email: u{i}@example.com}}\n" for i in range(10))
    body = "version: 1\norganizations: [{alias: acme}]\nusers:\n" + kept
    plan = plan_for(removals(body, "{users: true}"), state(*owned, crowd))
    assert (plan.guard.removals, plan.guard.managed, plan.guard.tripped) == (10, 21, True)


def test_organization_member_drift_skips_users_being_deleted_and_names_the_protected():
    live = state(
        live_user("u-boss", "boss@example.com"),
        live_user("u-new", "new@example.com"),
        live_user("u-gone", "gone@example.com", metadata=ADOPTED),
        acme(
            ("u-boss", "org_admin"), ("u-new", "internal_user"), ("u-gone", "internal_user"), ("u-caller", "org_admin")
        ),
    )
    live = replace(live, caller_id="u-caller")
    plan = plan_for(desired(ORG_MEMBERS.replace("memberships: true", "users: true")), live)
    assert [(d.address, d.detail) for d in plan.drift if d.kind == "org_membership"] == [
        (
            "org_membership.acme.u-caller",
            "member (org_admin) on the proxy, not listed in the file; protected: it owns the key this tool runs with",
        ),
    ]


# --------------------------------------------------------------------------- accounts this tool did not make

#: An account someone else made (a UI click, SSO, a script, or a read-only key on 1.80.5).
STRANGER = replace(live_user("u-x", "x@example.com", metadata={}), created_at="2031-11-20T08:00:00Z")


def test_an_account_this_tool_did_not_make_is_adopted_visibly():
    sso = replace(STRANGER, sso_user_id="okta|123")
    [adopt] = plan_for(desired("version: 1\nusers: [{email: x@example.com}]\n"), state(sso)).actions
    assert adopt.kind == "adopt_user" and adopt.reason.startswith(
        "adopt existing account (user_id u-x, created 2031-11-20, SSO identity okta|123)"
    )
    assert "| ⚠️ | <code>user\\.x@example\\.com</code> | adopt existing account |" in render(
        plan_for(desired("version: 1\nusers: [{email: x@example.com}]\n"), state(sso)), "markdown"
    )


@pytest.mark.parametrize(
    "body, pinned_body",
    [
        ("{email: x@example.com, role: proxy_admin}", "{email: x@example.com, role: proxy_admin, id: u-x}"),
        (
            "{email: x@example.com, teams: [{team: dev, role: admin}]}",
            "{email: x@example.com, id: u-x, teams: [{team: dev, role: admin}]}",
        ),
    ],
    ids=["proxy_admin", "team admin"],
)
@pytest.mark.parametrize("metadata", [{}, ADOPTED], ids=["unowned", "adopted earlier"])
def test_a_privileged_role_goes_to_an_account_this_tool_did_not_make_only_when_pinned(
    body: str, pinned_body: str, metadata: dict[str, Any]
):
    live = state(replace(STRANGER, metadata=metadata), live_team("t-dev", "dev", ("u-x",)))
    spec = f"version: 1\nteams: [{{alias: dev}}]\nusers: [{body}]\n"
    plan = plan_for(desired(spec), live)
    assert not [a for a in plan.actions if "admin" in json.dumps(a.params)], "never granted"
    [refused] = [d for d in plan.drift if d.kind == "refused"]
    assert "an account this tool did not create (user_id u-x, created 2031-11-20)" in refused.detail
    assert "pin it: 'id: u-x' on this user" in refused.detail
    granted = plan_for(desired(f"version: 1\nteams: [{{alias: dev}}]\nusers: [{pinned_body}]\n"), live)
    assert [a for a in granted.actions if "admin" in json.dumps(a.params)], "granted once pinned"
    assert not [d for d in granted.drift if d.kind == "refused"]


def test_an_organization_admin_goes_to_an_account_this_tool_did_not_make_only_when_pinned():
    acme = replace(live_organization("o-1", "acme"), members=(LiveMember("u-x", "internal_user"),))
    spec = "version: 1\norganizations: [{alias: acme, members: [{email: x@example.com, role: org_admin}]}]\n"
    users = "users: [{email: x@example.com%s}]\n"
    plan = plan_for(desired(spec + users % ""), state(STRANGER, acme))
    assert not [a for a in plan.actions if a.kind == "update_org_member"]
    assert [d.address for d in plan.drift if d.kind == "refused"] == ["org_membership.acme.x@example.com"]
    pinned = plan_for(desired(spec + users % ", id: u-x"), state(STRANGER, acme))
    assert [a.params["role"] for a in pinned.actions if a.kind == "update_org_member"] == ["org_admin"]


def test_an_account_sso_made_is_never_sent_a_link():
    sso = replace(STRANGER, sso_user_id="okta|123", metadata=ADOPTED)
    plan = plan_for(desired("version: 1\ndefaults: {invite: true}\nusers: [{email: x@example.com}]\n"), state(sso))
    assert not [a for a in plan.actions if a.kind in INVITING]
    plain = plan_for(
        desired("version: 1\ndefaults: {invite: true}\nusers: [{email: x@example.com}]\n"), state(STRANGER)
    )
    assert [a.kind for a in plain.actions if a.kind in INVITING] == ["create_invitation"]


def test_a_pin_picks_its_account_or_refuses_that_user_alone():
    twin = live_user("u-y", "X@example.com", metadata={})
    spec = "version: 1\nusers: [{email: x@example.com, id: %s}, {email: z@example.com}]\n"
    picked = plan_for(desired(spec % "u-x"), state(STRANGER, twin))
    assert {a.params.get("user_id") for a in picked.actions if a.address == "user.x@example.com"} == {"u-x"}
    assert [d.address for d in picked.drift if d.kind == "duplicate"] == ["user.u-y"]
    other = plan_for(desired(spec % "u-z"), state(STRANGER, live_user("u-z", "z@example.com")))
    assert [d.address for d in other.drift if d.kind == "refused"] == ["user.x@example.com"]
    assert "is the account of z@example.com on the proxy" in other.drift[-1].detail or any(
        "is the account of z@example.com" in d.detail for d in other.drift
    )
    absent = plan_for(desired(spec % "u-new"), state(STRANGER))
    assert [d for d in absent.drift if d.kind == "refused" and "is not on the proxy" in d.detail]
    fresh = plan_for(desired(spec % "u-new"), state())
    assert the_action(fresh, "user.x@example.com").params["user_id"] == "u-new", "created with the pinned id"


# --------------------------------------------------------------------------- provenance: removals.memberships owned


def test_owned_removes_only_the_memberships_this_tool_granted():
    granted = {OWNER_KEY: {"managed": True, "granted": {"teams": ["t-dev"]}}}
    outside = {OWNER_KEY: {"managed": True, "granted": {"teams": []}}}  # tracked: SSO added it to dev
    live = state(
        live_user("u-granted", "granted@example.com", metadata=granted),
        live_user("u-outside", "outside@example.com", metadata=outside),
        live_user("u-legacy", "legacy@example.com"),  # owned before grants were recorded: counts as granted
        live_user("u-sso", "sso@example.com", metadata={}),  # never the tool's
        live_team("t-dev", "dev", ("u-granted", "u-outside", "u-legacy", "u-sso")),
    )
    users = "".join(f"  - {{email: {n}@example.com}}\n" for n in ("granted", "outside", "legacy"))
    owned = desired(f"version: 1\nremovals: {{memberships: owned}}\nteams: [{{alias: dev}}]\nusers:\n{users}")
    plan = plan_for(owned, live)
    assert addresses(plan, "remove_member") == [
        "membership.dev.granted@example.com",
        "membership.dev.legacy@example.com",
    ]
    outside_drift = {d.address: d.detail for d in plan.drift if d.kind == "granted_outside"}
    assert set(outside_drift) == {"membership.dev.outside@example.com", "membership.dev.sso@example.com"}
    assert "granted outside this tool (SSO, SCIM, the UI or the API)" in outside_drift["membership.dev.sso@example.com"]
    exact = plan_for(
        desired(f"version: 1\nremovals: {{memberships: true}}\nteams: [{{alias: dev}}]\nusers:\n{users}"), live
    )
    assert len(addresses(exact, "remove_member")) == 4, "true: the exact roster, as before"
