"""export: a valid users.yaml from a snapshot, sorted, with nothing dropped silently."""

from __future__ import annotations

import pytest
import yaml

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
        "- email: alice@company.com\n  id: u1\n  role: proxy_admin\n  alias: Alice\n  teams:\n  - dev\n  - research\n"
        "- email: Bob@Company.com\n  role: internal_user_viewer\n  teams:\n  - dev\n"
        "- email: org@company.com\n"
    )
    for line in (
        "team 't3': no alias",
        "team 't4': 2 teams share the alias 'twin'",
        "user 'u3': no email",
        "user 'u4': 2 users share the email 'dup@company.com'",
        "user 'u6': email 'not-an-email' is not valid in users.yaml",
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
    assert "#   - organization 'o2': no alias (declare it with 'alias:' and 'id:')" in text
    assert not make_plan(parse_desired(text), live, NOW).has_changes


def test_a_member_budget_window_is_exported_only_where_it_is_not_the_teams_own() -> None:
    """LiteLLM copies the team's window into a member budget row created without one: that copy is no
    setting of the file's (and 1.80.5, which has no member window, refuses it)."""
    member = {**EMPTY, "budget_duration": "30d", "team_member_budget": 5.0}
    live = LiveState(
        teams=(
            LiveTeam("t1", "copied", {**member, "team_member_budget_duration": "30d"}),
            LiveTeam("t2", "own", {**member, "team_member_budget_duration": "7d"}),
        )
    )
    text = export_yaml(live)
    assert "- alias: copied\n  budget_duration: 30d\n  team_member_budget: 5.0\n- alias: own\n" in text
    assert text.count("team_member_budget_duration") == 1 and "team_member_budget_duration: 7d\n" in text


#: Proxy text that would add YAML if written as it is: line breaks, a comment sign, a key, zero-width and
#: bidirectional characters, a no-break space.
NEWLINE_ID = "u1\nremovals: {users: true, teams: true}\n# x"


def hostile_snapshot() -> LiveState:
    """Ids and names that a users.yaml refuses (listed, not exported), and models it takes (written escaped)."""
    models = {**EMPTY, "models": ["gpt\u200b-4o", "x\ny: z"]}
    return LiveState(
        users=(
            LiveUser(NEWLINE_ID, "eve@x.io", "internal_user", None, ()),
            LiveUser("u2\r\nremovals:\n  users: true", None, "internal_user", None, ()),
            LiveUser("u3", "bad@x.io\nremovals: {users: true}", "internal_user", None, ()),
            LiveUser("u4", "z\u200b@x.io", "internal_user", None, ()),
            LiveUser("u5", "ok@x.io", "internal_user", "Ok", (), settings=models),
            LiveUser("u6", "nbsp@x.io", "internal_user", "O\u00a0k", ()),
            LiveUser("u7", "bidi@x.io", "internal_user", "Eve\u202e: #x", ()),
        ),
        teams=(
            LiveTeam("t\u200b1", "ops\n#: removals: x", EMPTY, (LiveMember(NEWLINE_ID, "user"),)),
            LiveTeam("t2", "ops\u200binfra", EMPTY),
            LiveTeam("t3", "ops infra", models),
            LiveTeam("t4", "\u202eofni-spo", EMPTY),
            LiveTeam("t5", "a: b # c", EMPTY, (LiveMember(NEWLINE_ID, "user"), LiveMember("u5", "user"))),
        ),
    )


def test_proxy_text_is_escaped_everywhere_in_the_export_and_what_holds_hidden_characters_is_flagged() -> None:
    live = hostile_snapshot()
    text = export_yaml(live)
    header, body = text.split("\nversion: 1\n")
    assert all(line.startswith("#") for line in header.splitlines()), header
    assert yaml.safe_load(text) == {
        "version": 1,
        "teams": [{"alias": "a: b # c"}, {"alias": "ops infra", "models": ["gpt\u200b-4o", "x\ny: z"]}],
        "users": [
            {"email": "eve@x.io", "role": "internal_user", "teams": ["a: b # c"]},
            {"email": "ok@x.io", "role": "internal_user", "alias": "Ok", "models": ["gpt\u200b-4o", "x\ny: z"]}
            | {"teams": ["a: b # c"]},
        ],
    }
    # In the document too, every hidden character is written as an escape, inside double quotes.
    assert all(ch.isprintable() for line in text.splitlines() for ch in line)
    assert '  - "gpt\\u200B-4o"\n  - "x\\ny: z"\n' in body
    lines = header.splitlines()
    skipped = lines[lines.index("# Not exported (a users.yaml cannot express them as they are):") + 1 :]
    for line in (
        "team 't2': not valid in users.yaml: alias: 'ops\\u200binfra' is refused",
        "team 't4': not valid in users.yaml: alias: '\\u202eofni-spo' is refused",
        "team 't\\u200b1': not valid in users.yaml: alias: 'ops\\n#: removals: x' is refused",
        "user 'u2\\r\\nremovals:\\n  users: true': no email (users.yaml identifies users by email)",
        "user 'u3': email 'bad@x.io\\nremovals: {users: true}' is not valid in users.yaml",
        "user 'u4': email 'z\\u200b@x.io' is not valid in users.yaml",
        "user 'u6': not valid in users.yaml: alias: 'O\\xa0k' is refused",
        "user 'u7': not valid in users.yaml: alias: 'Eve\\u202e: #x' is refused",
    ):
        assert any(found.startswith(f"#   - {line}") for found in skipped), line
    flagged = lines[lines.index(next(line for line in lines if line.startswith("# Check these on the proxy"))) + 1 :]
    assert flagged == [
        "#   - team 't2': alias 'ops\\u200binfra'",
        "#   - team 't3': models ['gpt\\u200b-4o', 'x\\ny: z']",
        "#   - team 't4': alias '\\u202eofni-spo'",
        "#   - team 't\\u200b1': id 't\\u200b1', alias 'ops\\n#: removals: x'",
        "#   - user 'u1\\nremovals: {users: true, teams: true}\\n# x': id 'u1\\nremovals: {users: true, teams: true}"
        "\\n# x'",
        "#   - user 'u2\\r\\nremovals:\\n  users: true': id 'u2\\r\\nremovals:\\n  users: true'",
        "#   - user 'u3': email 'bad@x.io\\nremovals: {users: true}'",
        "#   - user 'u4': email 'z\\u200b@x.io'",
        "#   - user 'u5': models ['gpt\\u200b-4o', 'x\\ny: z']",
        "#   - user 'u6': alias 'O\\xa0k'",
        "#   - user 'u7': alias 'Eve\\u202e: #x'",
    ]
    desired = parse_desired(text, "users.yaml")
    assert desired.spec.removals.users is False and desired.spec.removals.teams is False
    assert not make_plan(desired, live, NOW).has_changes
    assert export_yaml(live) == text


def test_teams_whose_aliases_read_the_same_are_listed_not_exported() -> None:
    # The file refuses two aliases a reviewer could take for each other: export names both instead.
    live = LiveState(
        teams=(
            LiveTeam("t-1", "dev", {}, metadata={}),
            LiveTeam("t-2", "Dev", {}, metadata={}),
            LiveTeam("t-3", "ops", {}, metadata={}),
        )
    )
    text = export_yaml(live)
    assert [t["alias"] for t in yaml.safe_load(text)["teams"]] == ["ops"]
    assert "'t-1'" in text and "'t-2'" in text and "reads the same" in text
