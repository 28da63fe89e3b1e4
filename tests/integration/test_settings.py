"""Users' budgets, models and limits, and blocked teams, round-tripped on the real proxy: declared →
planned → applied → nothing left → changed → exactly that change → applied → nothing left → exported back.
CI runs this file on each LiteLLM version it tests; what differs between versions is asserted where it shows."""

from __future__ import annotations

import json
import os

from .conftest import proxy_version
from .test_lifecycle import apply_ok, json_plan, write

DECLARED = """\
version: 1
teams:
  - alias: research
    blocked: true
users:
  - email: alice@company.com
    max_budget: 10
    budget_duration: 30d
    models: [gpt-4o, gpt-4o-mini]
    tpm_limit: 1000
    rpm_limit: 10
  - email: bob@company.com
    teams: [research]
    tpm_limit: 50
"""
CHANGED = (
    DECLARED.replace("blocked: true", "blocked: false")
    .replace("max_budget: 10", "max_budget: 25")
    .replace("models: [gpt-4o, gpt-4o-mini]", "models: [gpt-4o-mini]")
)


def on_1_80() -> bool:
    """Whether the proxy under test runs LiteLLM 1.80 (where several differences show)."""
    return proxy_version(os.environ["LITELLM_PROXY_URL"]).startswith("1.80.")


def exported_plans_empty(cli, tmp_path) -> str:
    """``export``'s text, after checking that a plan of it against the same proxy has no action at all."""
    exported = cli("export")
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "exported.yaml").write_text(exported.stdout)
    planned = cli("plan", "exported.yaml", "--format", "json", "--detailed-exitcode")
    assert planned.returncode == 0 and json.loads(planned.stdout)["actions"] == [], planned.stdout + planned.stderr
    return exported.stdout


def changes(plan: dict) -> dict[str, dict[str, list]]:
    """Each action's changes: address → {field: [old, new]}."""
    return {a["address"]: {c["field"]: [c["old"], c["new"]] for c in a["changes"]} for a in plan["actions"]}


def test_user_limits_and_a_blocked_team_round_trip(api, cli, tmp_path) -> None:
    write(tmp_path, DECLARED)
    planned = changes(json_plan(cli))
    assert planned["user.alice@company.com"] == {
        "user_id": planned["user.alice@company.com"]["user_id"],
        "user_role": [None, "internal_user"],
        "budget_duration": [None, "30d"],
        "max_budget": [None, 10.0],
        "models": [None, ["gpt-4o", "gpt-4o-mini"]],
        "rpm_limit": [None, 10],
        "tpm_limit": [None, 1000],
    }
    assert planned["team.research"]["blocked"] == [None, True]
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    alice = next(u for u in api.users() if u["user_email"] == "alice@company.com")
    assert (alice["max_budget"], alice["tpm_limit"], sorted(alice["models"])) == (10, 1000, ["gpt-4o", "gpt-4o-mini"])
    assert alice["budget_reset_at"]  # the window runs
    [team] = api.teams()
    assert team["blocked"] is True

    write(tmp_path, CHANGED)
    assert changes(json_plan(cli)) == {
        "team.research": {"blocked": [True, False]},
        "user.alice@company.com": {"max_budget": [10.0, 25.0], "models": [["gpt-4o", "gpt-4o-mini"], ["gpt-4o-mini"]]},
    }
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    [team] = api.teams()
    assert team["blocked"] is False

    exported = exported_plans_empty(cli, tmp_path)
    assert "max_budget: 25.0" in exported and "tpm_limit: 50" in exported


def test_clearing_what_litellm_will_not_clear_fails_and_says_so(api, cli, tmp_path) -> None:
    """``models: []`` is dropped by /user/update on every version; ``null`` limits by 1.80.5 only."""
    write(tmp_path, DECLARED)
    apply_ok(cli)
    write(
        tmp_path,
        DECLARED.replace("models: [gpt-4o, gpt-4o-mini]", "models: []").replace("max_budget: 10", "max_budget: null"),
    )
    result = cli("apply", "--yes")
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "user.alice@company.com: failed" in line]
    assert "this LiteLLM version ignores clearing" in line and 'models (["gpt-4o", "gpt-4o-mini"])' in line
    alice = next(u for u in api.users() if u["user_email"] == "alice@company.com")
    if on_1_80():  # drops null too
        assert "max_budget (10.0)" in line and alice["max_budget"] == 10
    else:
        assert "max_budget" not in line and alice["max_budget"] is None
    assert sorted(alice["models"]) == ["gpt-4o", "gpt-4o-mini"]


def test_a_team_member_with_a_personal_budget_gets_a_warning_not_an_error(cli, tmp_path) -> None:
    write(tmp_path, DECLARED.replace("    tpm_limit: 50\n", "    tpm_limit: 50\n    max_budget: 3\n"))
    result = cli("validate")
    assert result.returncode == 0
    assert "warning: users.yaml:15: users.1.max_budget: LiteLLM applies a user's own max_budget only" in result.stderr


PERMISSIONS = "version: 1\nteams:\n  - alias: builders\n    team_member_permissions: [/key/generate]\n"


def test_team_member_permissions_round_trip_and_unknown_ones_are_refused(api, cli, tmp_path) -> None:
    write(tmp_path, PERMISSIONS)
    assert changes(json_plan(cli))["team.builders"]["team_member_permissions"] == [None, ["/key/generate"]]
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    [team] = api.teams()
    assert team["team_member_permissions"] == ["/key/generate"]

    write(tmp_path, PERMISSIONS.replace("[/key/generate]", "[/key/generate, /key/update]"))
    assert changes(json_plan(cli)) == {
        "team.builders": {"team_member_permissions": [["/key/generate"], ["/key/generate", "/key/update"]]}
    }
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert "team_member_permissions:\n  - /key/generate\n  - /key/update\n" in cli("export").stdout

    write(tmp_path, PERMISSIONS.replace("[/key/generate]", "[/key/generate, /key/launch]"))
    refused = cli("plan")
    assert refused.returncode == 1
    assert "team.builders: team_member_permissions /key/launch: not accepted by this proxy, which accepts " in (
        refused.stderr
    )


ORGANIZATIONS = """\
version: 1
organizations:
  - alias: acme
    max_budget: 1000
    models: [gpt-4o, gpt-4o-mini]
teams:
  - alias: research
    organization: acme
    models: [gpt-4o]
  - alias: loose
"""


def test_organizations_round_trip_or_are_refused_in_one_line_without_a_license(api, cli, tmp_path) -> None:
    """1.80.5 serves organizations to everyone; 1.110.2 only with an Enterprise license."""
    write(tmp_path, ORGANIZATIONS)
    if not on_1_80():
        refused = cli("plan")
        assert refused.returncode == 1 and api.teams() == []
        assert refused.stderr.strip().splitlines()[-1] == (
            "Error: GET /organization/list: HTTP 403: this proxy offers it only with a LiteLLM Enterprise license "
            "(LITELLM_LICENSE); it has none"
        )
        return
    planned = changes(json_plan(cli))
    assert planned["organization.acme"]["max_budget"] == [None, 1000.0]
    assert planned["team.research"]["organization_id"] == [None, planned["organization.acme"]["organization_id"][1]]
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    [organization] = api.get("/organization/list")
    teams = {t["team_alias"]: t for t in api.teams()}
    assert teams["research"]["organization_id"] == organization["organization_id"] and not teams["loose"].get(
        "organization_id"
    )
    exported = exported_plans_empty(cli, tmp_path)
    assert "organizations:\n- alias: acme\n" in exported and "  organization: acme\n" in exported

    write(
        tmp_path,
        ORGANIZATIONS.replace("max_budget: 1000", "max_budget: 2000").replace(
            "organization: acme", "organization: null"
        ),
    )
    assert changes(json_plan(cli)) == {
        "organization.acme": {"max_budget": [1000.0, 2000.0]},
        "team.research": {"organization_id": [organization["organization_id"], None]},
    }
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert not {t["team_alias"]: t for t in api.teams()}["research"].get("organization_id")


MEMBER_LIMITS = """\
version: 1
teams:
  - alias: research
    team_member_budget: 10
    team_member_tpm_limit: 1000
    team_member_rpm_limit: 20
"""


def test_member_limits_round_trip_and_what_a_version_lacks_is_refused(api, cli, tmp_path) -> None:
    write(tmp_path, MEMBER_LIMITS)
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    write(tmp_path, MEMBER_LIMITS.replace("team_member_budget: 10", "team_member_budget: 15"))
    assert changes(json_plan(cli)) == {"team.research": {"team_member_budget": [10.0, 15.0]}}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert "team_member_budget: 15.0\n" in cli("export").stdout
    # a read-only key (on 1.80.5 it may not list budgets: each team's /team/info says its own) plans the same
    viewer = api.post("/user/new", {"user_email": "viewer@example.com", "user_role": "proxy_admin_viewer"})["key"]
    read_only = cli("plan", "--detailed-exitcode", env={"LITELLM_API_KEY": viewer})
    assert read_only.returncode == 0, read_only.stdout + read_only.stderr

    raised = MEMBER_LIMITS.replace("team_member_budget: 10", "team_member_budget: 15")
    write(tmp_path, raised + "    team_member_budget_duration: 30d\n")
    if on_1_80():
        refused = cli("plan")
        assert refused.returncode == 1
        assert "team.research: team_member_budget_duration: this proxy's LiteLLM does not take it" in refused.stderr
        return
    assert changes(json_plan(cli)) == {"team.research": {"team_member_budget_duration": [None, "30d"]}}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []


MEMBERSHIPS = """\
version: 1
teams:
  - alias: ops
    team_member_budget: 2
users:
  - email: alice@company.com
    teams: [{team: ops, max_budget_in_team: 5}]
  - email: bob@company.com
    teams: [{team: ops, max_budget_in_team: 3}]
  - email: carol@company.com
    teams: [ops]
"""


def member_budgets(api, team_id: str) -> dict[str, float | None]:
    info = api.get("/team/info", team_id=team_id)
    return {
        m["user_id"]: (m.get("litellm_budget_table") or {}).get("max_budget")
        for m in info["team_memberships"]
        if m["user_id"] != "default_user_id"
    }


def roles(api, team_id: str) -> dict[str, str]:
    info = api.get("/team/info", team_id=team_id)
    return {m["user_id"]: m["role"] for m in info["team_info"]["members_with_roles"]}


def test_membership_roles_and_budgets_round_trip(api, cli, tmp_path) -> None:
    """Bob is a team admin already (``/team/new`` sets admins without a license; the member
    endpoints do not): the file gives him a budget, then demotes him, and his budget stays, which
    on 1.80.5 holds only because the update sends it again."""
    bob = api.post("/user/new", {"user_email": "bob@company.com", "auto_create_key": False})["user_id"]
    api.post(
        "/team/new",
        {"team_id": "t-ops", "team_alias": "ops", "members_with_roles": [{"user_id": bob, "role": "admin"}]},
    )
    write(tmp_path, MEMBERSHIPS)
    planned = changes(json_plan(cli))
    assert planned["membership.ops.alice@company.com"] == {"max_budget_in_team": [None, 5.0]}
    assert planned["membership.ops.bob@company.com"] == {"max_budget_in_team": [None, 3.0]}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    alice = next(u["user_id"] for u in api.users() if u["user_email"] == "alice@company.com")
    carol = next(u["user_id"] for u in api.users() if u["user_email"] == "carol@company.com")
    # Carol has no budget of her own: she shares the team's member budget.
    assert member_budgets(api, "t-ops") == {alice: 5.0, bob: 3.0, carol: 2.0}
    assert roles(api, "t-ops")[bob] == "admin"

    write(
        tmp_path,
        MEMBERSHIPS.replace("max_budget_in_team: 5", "max_budget_in_team: 8").replace(
            "max_budget_in_team: 3}", "max_budget_in_team: 3, role: user}"
        ),
    )
    assert changes(json_plan(cli)) == {
        "membership.ops.alice@company.com": {"max_budget_in_team": [5.0, 8.0]},
        "membership.ops.bob@company.com": {"role": ["admin", "user"]},
    }
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert member_budgets(api, "t-ops") == {alice: 8.0, bob: 3.0, carol: 2.0}
    assert roles(api, "t-ops")[bob] == "user"

    write(tmp_path, MEMBERSHIPS.replace("max_budget_in_team: 5", "max_budget_in_team: null"))
    assert changes(json_plan(cli)) == {"membership.ops.alice@company.com": {"max_budget_in_team": [8.0, None]}}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert member_budgets(api, "t-ops").get(alice) is None

    exported = exported_plans_empty(cli, tmp_path)
    assert "- team: ops\n    max_budget_in_team: 3.0\n" in exported, exported
    assert "- email: carol@company.com\n  role: internal_user\n  teams:\n  - ops\n" in exported


def test_making_a_team_admin_without_a_license_fails_in_one_line(api, cli, tmp_path) -> None:
    write(tmp_path, MEMBERSHIPS.replace("max_budget_in_team: 5", "role: admin"))
    result = cli("apply", "--yes")
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "membership.ops.alice@company.com: failed" in line]
    assert "only with a LiteLLM Enterprise license" in line
    assert "membership.ops.bob@company.com" not in [x for x in result.stdout.splitlines() if "failed" in x]


ORG_MEMBERS = """\
version: 1
removals: {memberships: true, organizations: true}
organizations:
  - alias: acme
    members:
      - {email: alice@company.com, role: org_admin}
      - {email: bob@company.com}
teams:
  - alias: research
    organization: acme
users:
  - email: alice@company.com
  - email: bob@company.com
"""


ORG_HEAD = "version: 1\nremovals: {memberships: true, organizations: true}\n"


def test_organization_members_roles_and_removal_round_trip(api, cli, tmp_path) -> None:
    """Organizations need an Enterprise license on 1.110.2; there, a file that only removes them plans as usual."""
    if not on_1_80():
        write(tmp_path, "version: 1\nremovals: {organizations: true}\nusers: [{email: alice@company.com}]\n")
        assert json_plan(cli)["summary"] == {"create_inviter": 1, "create_user": 1, "create_invitation": 1}
        return
    write(tmp_path, ORG_MEMBERS)
    planned = changes(json_plan(cli))
    assert planned["org_membership.acme.alice@company.com"] == {"role": [None, "org_admin"]}
    assert planned["org_membership.acme.bob@company.com"] == {"role": [None, "internal_user"]}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    [organization] = api.get("/organization/list")
    ids = {u["user_email"]: u["user_id"] for u in api.users()}

    def roles() -> dict[str, str]:
        info = api.get("/organization/info", organization_id=organization["organization_id"])
        return {m["user_id"]: m["user_role"] for m in info["members"]}

    assert roles() == {ids["alice@company.com"]: "org_admin", ids["bob@company.com"]: "internal_user"}
    exported = exported_plans_empty(cli, tmp_path)
    assert "  members:\n  - email: alice@company.com\n    role: org_admin\n" in exported, exported

    write(
        tmp_path,
        ORG_MEMBERS.replace("      - {email: alice@company.com, role: org_admin}\n", "").replace(
            "{email: bob@company.com}", "{email: bob@company.com, role: internal_user_viewer}"
        ),
    )
    assert changes(json_plan(cli)) == {
        "org_membership.acme.alice@company.com": {},
        "org_membership.acme.bob@company.com": {"role": ["internal_user", "internal_user_viewer"]},
    }
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert roles() == {ids["bob@company.com"]: "internal_user_viewer"}

    # The organization leaves the file while its team stays in it: LiteLLM would delete the team too.
    write(tmp_path, ORG_HEAD + "teams:\n  - alias: research\nusers: []\n")
    refused = cli("plan")
    assert refused.returncode == 1
    assert "organization.acme: owned by this tool and no longer declared, but it still holds the team(s) research" in (
        refused.stderr
    )
    write(tmp_path, ORG_HEAD + "teams:\n  - alias: research\n    organization: null\n")
    assert json_plan(cli)["summary"] == {"update_team": 1, "delete_organization": 1}
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert api.get("/organization/list") == [] and [t["team_alias"] for t in api.teams()] == ["research"]


def test_a_key_that_cannot_see_every_organization_does_not_plan_them(api, cli, tmp_path) -> None:
    """1.80.5 lists to a proxy_admin_viewer key only the organizations its user belongs to; 1.110.2
    serves organizations to no key without an Enterprise license."""
    viewer = api.post("/user/new", {"user_email": "viewer@example.com", "user_role": "proxy_admin_viewer"})["key"]
    write(tmp_path, ORG_MEMBERS)
    if not on_1_80():
        refused = cli("plan", env={"LITELLM_MASTER_KEY": viewer})
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            "Error: GET /organization/list: HTTP 403: this proxy offers it only with a LiteLLM Enterprise license "
            "(LITELLM_LICENSE); it has none"
        )
        return
    apply_ok(cli)
    expected = (
        "Error: GET /organization/list: LiteLLM 1.80.5 shows a key that is not a proxy admin's only the "
        "organizations its user belongs to, so they cannot be read completely with this key; use a proxy_admin "
        "key (or LiteLLM 1.110 or later)"
    )
    for command in ("plan", "export"):
        refused = cli(command, env={"LITELLM_MASTER_KEY": viewer})
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == expected, refused.stderr
    # A file that only removes organizations needs no complete list: a hidden one is one not deleted.
    write(tmp_path, ORG_HEAD + "users: [{email: alice@company.com}, {email: bob@company.com}]\n")
    assert cli("plan", env={"LITELLM_MASTER_KEY": viewer}).returncode == 0


def test_a_member_key_duration_without_a_license_fails_in_one_line(api, cli, tmp_path) -> None:
    """Both versions take ``team_member_key_duration`` only with an Enterprise license (403)."""
    write(tmp_path, "version: 1\nteams:\n  - alias: research\n    team_member_key_duration: 30d\n")
    assert changes(json_plan(cli))["team.research"]["team_member_key_duration"] == [None, "30d"]
    result = cli("apply", "--yes")
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "team.research: failed" in line]
    assert line == (
        "  team.research: failed (POST /team/new: HTTP 403: this proxy offers it only with a LiteLLM Enterprise "
        "license (LITELLM_LICENSE); it has none)"
    )
    assert api.teams() == []
