"""``export`` on the real proxy: a proxy set up through apply with every field users.yaml has (where
this LiteLLM takes it) exports to a file that plans no action at all, and exporting again after
applying that file gives the same bytes; text from the proxy cannot add YAML to the file.
CI runs this file on each LiteLLM version it tests."""

from __future__ import annotations

import json

import yaml

from .test_lifecycle import apply_ok, json_plan, write
from .test_settings import exported_plans_empty, on_1_80

#: Every organization field; 1.110.2 serves organizations only with an Enterprise license.
ORGANIZATION = """\
organizations:
  - alias: acme
    models: [gpt-4o, gpt-4o-mini]
    max_budget: 1000
    budget_duration: 30d
    tpm_limit: 100000
    rpm_limit: 1000
    members:
      - {email: alice@company.com, role: org_admin}
      - {email: bob@company.com, role: internal_user_viewer}
"""

#: Every team and user field, and both forms of a membership. Left out, as both versions take them only
#: with an Enterprise license: team_member_key_duration, and making a member a team admin (bob is made
#: one by ``/team/new`` beforehand, which needs none, and the file adopts that). ``support`` gives its members
#: limits without a window of their own: LiteLLM copies the team's window into their budget row.
EVERY_FIELD = """\
teams:
  - alias: ops
    budget_duration: 30d
    team_member_budget: 5
  - alias: research
    models: [gpt-4o]
    max_budget: 100
    budget_duration: 30d
    tpm_limit: 10000
    rpm_limit: 100
    blocked: true
    team_member_permissions: [/key/generate]
    team_member_budget: 10
    team_member_tpm_limit: 1000
    team_member_rpm_limit: 10
  - alias: support
    budget_duration: 30d
    team_member_rpm_limit: 5
users:
  - email: alice@company.com
    role: proxy_admin_viewer
    alias: Alice Example
    models: [gpt-4o-mini]
    max_budget: 50
    budget_duration: 1mo
    tpm_limit: 5000
    rpm_limit: 50
    teams: [{team: ops, max_budget_in_team: 3}, research]
  - email: bob@company.com
    teams: [{team: ops, role: admin}]
"""


def every_field() -> str:
    """The file with every field this proxy's LiteLLM takes: organizations on 1.80.5, a member budget
    window (``team_member_budget_duration``) on 1.110.2."""
    if on_1_80():
        teams = EVERY_FIELD.replace("  - alias: research\n", "  - alias: research\n    organization: acme\n")
        return "version: 1\n" + ORGANIZATION + teams
    return "version: 1\n" + EVERY_FIELD.replace(
        "    team_member_budget: 10\n", "    team_member_budget: 10\n    team_member_budget_duration: 7d\n"
    )


def member_windows(api) -> dict[str, str | None]:
    """Team alias -> the window of the budget row that holds its members' limits (as LiteLLM keeps it)."""
    rows = {row["budget_id"]: row for row in api.get("/budget/list")}
    return {
        team["team_alias"]: rows[team["metadata"]["team_member_budget_id"]]["budget_duration"]
        for team in api.teams()
        if (team.get("metadata") or {}).get("team_member_budget_id")
    }


def test_an_export_of_every_field_plans_nothing_and_exports_the_same_again(api, cli, tmp_path) -> None:
    bob = api.post("/user/new", {"user_email": "bob@company.com", "auto_create_key": False})["user_id"]
    api.post("/team/new", {"team_alias": "ops", "members_with_roles": [{"user_id": bob, "role": "admin"}]})
    write(tmp_path, every_field())
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    # Both copy the team's window into a member budget row created without one: the window the team has
    # then (ops had none before this apply gave it one and its member budget in one update).
    assert member_windows(api) == {"ops": None, "support": "30d", "research": "30d" if on_1_80() else "7d"}

    exported = exported_plans_empty(cli, tmp_path)
    expected = yaml.safe_load(every_field())
    # Bob's account was made outside the tool and is a team admin: export pins it, so the grant survives.
    [entry] = [u for u in expected["users"] if u["email"] == "bob@company.com"]
    entry["id"] = bob
    assert yaml.safe_load(exported) == expected, exported  # no field more, none less
    applied = cli("apply", "exported.yaml", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = cli("export")
    assert again.returncode == 0 and again.stdout == exported, again.stdout + again.stderr


MEMBER_BUDGET = "version: 1\nteams:\n  - alias: research\n    budget_duration: 30d\n    team_member_budget: 10\n"


def test_a_member_budget_window_left_behind_by_the_team_plans_nothing_once_exported(api, cli, tmp_path) -> None:
    """Neither version moves the member budget row's window when the team's own changes. On 1.110.2 the
    row's window is then the members' own (exported as team_member_budget_duration); on 1.80.5 it is no
    setting at all (that version has none), so the export must not write it."""
    write(tmp_path, MEMBER_BUDGET)
    apply_ok(cli)
    write(tmp_path, MEMBER_BUDGET.replace("30d", "7d"))
    apply_ok(cli)
    assert member_windows(api) == {"research": "30d"}
    exported = exported_plans_empty(cli, tmp_path)
    team = yaml.safe_load(exported)["teams"][0]
    assert team.get("team_member_budget_duration") == (None if on_1_80() else "30d"), exported


#: A user id a team admin may give a member: a line break, then YAML that would widen the file's removals.
HOSTILE_ID = "mallory\nremovals: {users: true, teams: true}\n#"


def test_ids_with_line_breaks_and_invisible_characters_are_shown_escaped_and_add_nothing(api, cli, tmp_path) -> None:
    api.post("/user/new", {"user_id": HOSTILE_ID, "auto_create_key": False})  # no email: listed, not exported
    eve = {"user_id": "eve\r\nremovals:", "user_email": "eve@company.com", "user_role": "internal_user"}
    api.post("/user/new", {**eve, "auto_create_key": False})
    api.post("/team/new", {"team_id": "t\u200bops", "team_alias": "ops\u200b"})  # a file refuses the alias
    api.post("/team/new", {"team_id": "t-research", "team_alias": "research", "models": ["gpt\u200b-4o"]})
    assert {u["user_id"] for u in api.users()} >= {HOSTILE_ID, "eve\r\nremovals:"}  # the proxy took them as they are

    exported = cli("export")
    assert exported.returncode == 0, exported.stderr
    header, body = exported.stdout.split("\nversion: 1\n")
    assert all(line.startswith("#") for line in header.splitlines()), header
    assert yaml.safe_load(exported.stdout) == {
        "version": 1,
        "teams": [{"alias": "research", "models": ["gpt\u200b-4o"]}],
        "users": [{"email": "eve@company.com", "role": "internal_user"}],
    }
    assert '  - "gpt\\u200B-4o"\n' in body
    lines = header.splitlines()
    mallory = "user 'mallory\\nremovals: {users: true, teams: true}\\n#'"
    assert f"#   - {mallory}: no email (users.yaml identifies users by email)" in lines
    assert f"#   - {mallory}: id 'mallory\\nremovals: {{users: true, teams: true}}\\n#'" in lines
    assert any(
        line.startswith("#   - team 't\\u200bops': not valid in users.yaml: alias: 'ops\\u200b'") for line in lines
    )
    assert "#   - team 't\\u200bops': id 't\\u200bops', alias 'ops\\u200b'" in lines
    assert "#   - team 't-research': models ['gpt\\u200b-4o']" in lines
    assert "#   - user 'eve\\r\\nremovals:': id 'eve\\r\\nremovals:'" in lines

    (tmp_path / "exported.yaml").write_text(exported.stdout)
    planned = cli("plan", "exported.yaml", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    assert {a["kind"] for a in json.loads(planned.stdout)["actions"]} == {"adopt_team", "adopt_user"}
