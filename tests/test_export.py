"""export: a valid users.yaml from a snapshot, sorted, with nothing dropped silently."""

from __future__ import annotations

import pytest

from reconciler.desired import parse_desired
from reconciler.export import export_yaml
from reconciler.live import PROXY_ADMIN_ID, LiveMember, LiveState, LiveTeam, LiveUser
from reconciler.plan import make_plan

from .test_plan import NOW

SETTINGS = {"models": ["gpt-4o"], "max_budget": 10.0, "budget_duration": "30d", "tpm_limit": None, "rpm_limit": 60}
EMPTY = {"models": [], "max_budget": None, "budget_duration": None, "tpm_limit": None, "rpm_limit": None}


def snapshot() -> LiveState:
    return LiveState(
        users=(
            LiveUser("u2", "Bob@Company.com", "internal_user_viewer", None, ("t1",)),
            LiveUser("u1", "alice@company.com", "proxy_admin", "Alice", ("t1", "t2")),
            LiveUser("u3", None, "internal_user", None, ()),
            LiveUser("u4", "dup@company.com", "internal_user", None, ()),
            LiveUser("u5", "DUP@company.com", "internal_user", None, ()),
            LiveUser("u6", "not-an-email", "internal_user", None, ()),
            LiveUser("u7", "org@company.com", "org_admin", None, ()),
            LiveUser(PROXY_ADMIN_ID, None, "proxy_admin", None, ()),
        ),
        teams=(
            LiveTeam("t2", "research", EMPTY, (LiveMember("u1", "user"),)),
            LiveTeam(
                "t1",
                "dev",
                SETTINGS,
                (LiveMember(PROXY_ADMIN_ID, "admin"), LiveMember("u1", "user"), LiveMember("u2", "user")),
            ),
            LiveTeam("t3", None, EMPTY),
            LiveTeam("t4", "twin", EMPTY),
            LiveTeam("t5", "twin", EMPTY),
        ),
    )


def test_export_is_valid_sorted_and_names_what_it_could_not_export() -> None:
    text = export_yaml(snapshot())
    assert text == export_yaml(snapshot()), "deterministic"
    body = text.split("\nversion: 1\n", 1)[1]
    assert body == (
        "teams:\n"
        "- alias: dev\n  models:\n  - gpt-4o\n  max_budget: 10.0\n  budget_duration: 30d\n  rpm_limit: 60\n"
        "- alias: research\n"
        "users:\n"
        "- email: alice@company.com\n  role: proxy_admin\n  alias: Alice\n  teams:\n  - dev\n  - research\n"
        "- email: Bob@Company.com\n  role: internal_user_viewer\n  teams:\n  - dev\n"
        "- email: org@company.com\n"
    )
    for line in (
        "team t3: no alias",
        "team t4: 2 teams share the alias 'twin'",
        "user u3: no email",
        "user u4: 2 users share the email 'dup@company.com'",
        "user u6: email 'not-an-email' is not valid in users.yaml",
    ):
        assert f"#   - {line}" in text


def test_planning_the_export_against_the_same_snapshot_changes_nothing() -> None:
    live = snapshot()
    plan = make_plan(parse_desired(export_yaml(live), "users.yaml"), live, NOW)
    assert not plan.has_changes and all(a.kind in ("adopt_team", "adopt_user") for a in plan.actions)


def test_export_of_chosen_teams_keeps_only_their_members() -> None:
    text = export_yaml(snapshot(), {"research"})
    desired = parse_desired(text, "users.yaml")
    assert [t.alias for t in desired.teams] == ["research"] and [u.email for u in desired.users] == [
        "alice@company.com"
    ]
    with pytest.raises(ValueError, match="no team with the alias nope"):
        export_yaml(snapshot(), {"nope"})


def test_user_limits_and_a_blocked_team_are_exported_and_defaults_left_out() -> None:
    limits = {**EMPTY, "max_budget": 0.0, "models": ["gpt-4o"], "rpm_limit": 0}
    live = LiveState(
        users=(
            LiveUser("u1", "a@x.io", "internal_user", None, (), settings=limits),
            LiveUser("u2", "b@x.io", "internal_user", None, (), settings=EMPTY),
        ),
        teams=(
            LiveTeam("t1", "paused", {**EMPTY, "blocked": True}),
            LiveTeam("t2", "open", {**EMPTY, "blocked": False}),
        ),
    )
    text = export_yaml(live)
    assert "- email: a@x.io\n  role: internal_user\n  models:\n  - gpt-4o\n  max_budget: 0.0\n  rpm_limit: 0\n" in text
    assert "- email: b@x.io\n  role: internal_user\n" in text and "blocked: false" not in text
    assert "- alias: paused\n  blocked: true\n" in text
    assert not make_plan(parse_desired(text), live, NOW).has_changes


def test_organizations_are_exported_with_their_teams_placed_in_them() -> None:
    from reconciler.live import LiveOrganization

    live = LiveState(
        teams=(
            LiveTeam("t1", "research", {**EMPTY, "organization_id": "o1"}),
            LiveTeam("t2", "loose", {**EMPTY, "organization_id": None}),
            LiveTeam("t3", "stray", {**EMPTY, "organization_id": "o2"}),
        ),
        organizations=(
            LiveOrganization("o1", "acme", {**EMPTY, "max_budget": 100.0}),
            LiveOrganization("o2", None, EMPTY),
        ),
    )
    text = export_yaml(live)
    assert "organizations:\n- alias: acme\n  max_budget: 100.0\n" in text
    assert "- alias: research\n  organization: acme\n" in text and "- alias: stray\n" in text
    assert "#   - organization o2: no alias (declare it with 'alias:' and 'id:')" in text
    assert not make_plan(parse_desired(text), live, NOW).has_changes
