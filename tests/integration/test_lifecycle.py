"""End to end on the real proxy: empty → plan → apply → empty plan, changes, adoption."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

from reconciler.plan import Plan
from reconciler.render import render

from .conftest import Api
from .faults import FaultProxy, Rule

BASE = """\
version: 1
teams:
  - alias: dev-test
    models: [gpt-4o-mini]
    max_budget: 100
    budget_duration: 30d
    tpm_limit: 100000
    rpm_limit: 60
  - alias: research
    models: [gpt-4o]
users:
  - email: alice@company.com
    teams: [dev-test]
    alias: Alice Example
  - email: Bob@Company.com
    teams: [dev-test, research]
  - email: carol@company.com
    teams: [research]
    role: internal_user_viewer
"""


def write(tmp_path: Path, text: str) -> None:
    (tmp_path / "users.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


def json_plan(cli) -> dict:
    result = cli("plan", "--format", "json", "--detailed-exitcode")
    assert result.returncode in (0, 2), result.stderr
    return json.loads(result.stdout)


def addresses(plan: dict) -> set[tuple[str, str]]:
    return {(a["kind"], a["address"]) for a in plan["actions"]}


def apply_ok(cli) -> str:
    result = cli("apply", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def by_email(api: Api) -> dict[str, list[dict]]:
    users: dict[str, list[dict]] = {}
    for user in api.users():
        if user.get("user_email"):
            users.setdefault(user["user_email"].lower(), []).append(user)
    return users


def rosters(api: Api) -> dict[str, set[str]]:
    return {t["team_alias"]: {m["user_id"] for m in t["members_with_roles"]} for t in api.teams()}


def test_empty_proxy_plan_apply_converges(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)

    planned = cli("plan", "--detailed-exitcode")
    assert planned.returncode == 2, planned.stderr
    assert (
        "Plan: 13 to add, 0 to change, 0 to remove (1 inviter user to create, 2 teams to create, 3 users to create, "
        "4 memberships to add, 3 invitations to create)." in planned.stdout
    )
    assert api.users() == [] and api.teams() == [], "plan must not write"

    apply_ok(cli)

    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout

    users = by_email(api)
    assert sorted(users) == ["alice@company.com", "bob@company.com", "carol@company.com"]
    assert all(len(copies) == 1 for copies in users.values()), "every user exists exactly once"
    assert {e: u[0]["user_role"] for e, u in users.items()} == {
        "alice@company.com": "internal_user",
        "bob@company.com": "internal_user",
        "carol@company.com": "internal_user_viewer",
    }
    assert users["alice@company.com"][0]["user_alias"] == "Alice Example"
    assert all(u[0]["key_count"] == 0 for u in users.values()), "no user owns a key (auto_create_key: false)"
    ids = {e: u[0]["user_id"] for e, u in users.items()}
    teams = rosters(api)
    assert teams["dev-test"] >= {ids["alice@company.com"], ids["bob@company.com"]}
    assert ids["carol@company.com"] not in teams["dev-test"]
    assert teams["research"] >= {ids["bob@company.com"], ids["carol@company.com"]}
    assert set(users["bob@company.com"][0]["teams"]) == {t["team_id"] for t in api.teams()}, (
        "both views of membership agree"
    )
    dev = next(t for t in api.teams() if t["team_alias"] == "dev-test")
    assert (dev["max_budget"], dev["budget_duration"], dev["tpm_limit"], dev["rpm_limit"], dev["models"]) == (
        100.0,
        "30d",
        100000,
        60,
        ["gpt-4o-mini"],
    )


def test_second_apply_makes_zero_writes(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    apply_ok(cli)
    before = {"users": api.users(), "teams": api.teams()}

    second = apply_ok(cli)

    assert "No changes." in second
    assert "Apply complete" not in second, "nothing was executed"
    assert {"users": api.users(), "teams": api.teams()} == before, "no row changed, not even updated_at"


def test_changed_file_plans_exactly_the_change(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    apply_ok(cli)

    changed = BASE.replace("max_budget: 100\n", "max_budget: 250\n").replace(
        "role: internal_user_viewer", "role: internal_user"
    )
    changed = changed.replace("  - alias: research\n", "  - alias: ops\n    rpm_limit: 10\n  - alias: research\n")
    changed += "  - email: dave@company.com\n    teams: [ops, research]\n"
    write(tmp_path, changed)

    plan = json_plan(cli)
    assert addresses(plan) == {
        ("create_team", "team.ops"),
        ("update_team", "team.dev-test"),
        ("update_user", "user.carol@company.com"),
        ("create_user", "user.dave@company.com"),
        ("add_member", "membership.ops.dave@company.com"),
        ("add_member", "membership.research.dave@company.com"),
        ("create_invitation", "invitation.dave@company.com"),
    }
    update = next(a for a in plan["actions"] if a["kind"] == "update_team")
    assert update["changes"] == [{"field": "max_budget", "old": 100.0, "new": 250}]
    role = next(a for a in plan["actions"] if a["kind"] == "update_user")
    assert role["changes"] == [{"field": "user_role", "old": "internal_user_viewer", "new": "internal_user"}]

    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert next(t for t in api.teams() if t["team_alias"] == "dev-test")["max_budget"] == 250.0
    assert by_email(api)["carol@company.com"][0]["user_role"] == "internal_user"


def test_adopts_existing_users_and_teams(api: Api, cli, tmp_path: Path) -> None:
    team = api.post("/team/new", {"team_alias": "dev-test", "models": ["gpt-4o-mini"], "max_budget": 100})
    other = api.post("/team/new", {"team_alias": "renamed-on-proxy"})
    alice = api.post(
        "/user/new", {"user_email": "ALICE@company.com", "user_role": "internal_user", "auto_create_key": False}
    )
    api.post("/team/member_add", {"team_id": team["team_id"], "member": {"user_id": alice["user_id"], "role": "user"}})
    write(
        tmp_path,
        f"""\
        version: 1
        teams:
          - alias: dev-test
            models: [gpt-4o-mini]
            max_budget: 100
          - alias: research
            id: {other["team_id"]}
        users:
          - email: alice@company.com
            teams: [dev-test, research]
        """,
    )

    plan = json_plan(cli)
    assert addresses(plan) == {
        ("adopt_team", "team.dev-test"),
        ("adopt_team", "team.research"),
        ("adopt_user", "user.alice@company.com"),
        ("update_team", "team.research"),
        ("add_member", "membership.research.alice@company.com"),
    }, "adopted by alias, by id and by case-insensitive email (ownership recorded); nothing created"
    rename = next(a for a in plan["actions"] if a["kind"] == "update_team")
    assert rename["changes"] == [{"field": "team_alias", "old": "renamed-on-proxy", "new": "research"}]

    apply_ok(cli)
    assert json_plan(cli)["actions"] == []
    assert len(api.teams()) == 2 and len(by_email(api)["alice@company.com"]) == 1
    owned = [u["metadata"]["litellm_reconciler"] for u in by_email(api)["alice@company.com"]] + [
        t["metadata"]["litellm_reconciler"] for t in api.teams()
    ]
    kept = [{k: v for k, v in o.items() if k not in ("last_change", "granted")} for o in owned]
    assert kept == [{"managed": True, "adopted": True}] * 3
    assert "granted" in owned[0], "the adopted user's grants are tracked from now on"
    assert all(o["last_change"]["by"] and o["last_change"]["ref"] == "local" for o in owned)
    assert rosters(api)["research"] >= {alice["user_id"]}


def test_live_duplicates_are_an_error_not_a_guess(api: Api, cli, tmp_path: Path) -> None:
    first = api.post("/team/new", {"team_alias": "dev-test"})
    second = api.post("/team/new", {"team_alias": "dev-test"})  # LiteLLM accepts duplicate aliases
    write(tmp_path, "version: 1\nteams:\n  - alias: dev-test\nusers: []\n")

    result = cli("plan")

    assert result.returncode == 1
    assert first["team_id"] in result.stderr and second["team_id"] in result.stderr
    assert "add 'id:'" in result.stderr


def test_saved_plan_is_applied_or_refused_when_stale(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    assert cli("plan", "--out", "plan.json").returncode == 0

    api.post("/team/new", {"team_alias": "someone-else"})
    stale = cli("apply", "--yes", "--plan", "plan.json")
    assert stale.returncode == 1
    assert "changed since this plan was made" in stale.stderr
    assert [t["team_alias"] for t in api.teams()] == ["someone-else"], "a stale plan writes nothing"

    assert cli("plan", "--out", "plan.json").returncode == 0
    fresh = cli("apply", "--yes", "--plan", "plan.json")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert json_plan(cli)["actions"] == []


def test_an_edited_saved_plan_is_refused_even_with_a_recomputed_fingerprint(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    assert cli("plan", "--out", "plan.json").returncode == 0
    saved = Plan.from_dict(json.loads((tmp_path / "plan.json").read_text(encoding="utf-8")))
    # Raise Carol to proxy_admin in the saved plan only, and make the file self-consistent again.
    forged = tuple(
        replace(a, params={**a.params, "user_role": "proxy_admin"}) if a.address == "user.carol@company.com" else a
        for a in saved.actions
    )
    (tmp_path / "plan.json").write_text(render(replace(saved, actions=forged), "json"), encoding="utf-8")

    result = cli("apply", "--yes", "--plan", "plan.json")
    assert result.returncode == 1
    assert (
        "the saved plan is not what users.yaml and the proxy call for now (user.carol@company.com/create_user differ)"
        in result.stderr
    )
    assert api.users() == [] and api.teams() == [], "nothing was written"


def test_partial_failure_reports_and_converges(api: Api, cli, tmp_path: Path, proxy) -> None:
    write(tmp_path, BASE)
    research = Rule("POST", "/team/new", "fail", when=lambda body: body.get("team_alias") == "research")
    with FaultProxy(proxy[0], [research]) as faulty:
        result = cli("apply", "--yes", "--proxy-url", faulty.url)

    assert result.returncode == 1
    assert (  # a 500 proves nothing: read back, found missing, not re-sent
        "team.research: failed (POST /team/new: HTTP 500: Internal Server Error (injected by the test); "
        "the change may or may not have been made; not re-sent; re-run to converge)" in result.stdout
    )
    assert "membership.research.bob@company.com: skipped (team.research did not succeed)" in result.stdout
    assert "membership.research.carol@company.com: skipped (team.research did not succeed)" in result.stdout
    assert "membership.dev-test.alice@company.com: done" in result.stdout
    assert "invitation.carol@company.com: done" in result.stdout, "independent actions go on"
    assert "Apply complete: 10 done, 1 failed, 2 skipped." in result.stdout
    assert faulty.posts("/team/new") == 2, "a failed POST is not retried"

    plan = json_plan(cli)
    assert addresses(plan) == {
        ("create_team", "team.research"),
        ("add_member", "membership.research.bob@company.com"),
        ("add_member", "membership.research.carol@company.com"),
    }, "the re-run does only what is left"
    apply_ok(cli)
    assert json_plan(cli)["actions"] == []


def test_lost_response_is_read_back_not_resent(api: Api, cli, tmp_path: Path, proxy) -> None:
    write(tmp_path, BASE)
    rules = [
        Rule("POST", "/team/new", "drop", when=lambda body: body.get("team_alias") == "dev-test"),
        Rule("POST", "/user/new", "drop", when=lambda body: body.get("user_email") == "alice@company.com"),
        Rule("POST", "/team/member_add", "drop", when=lambda body: any(m["user_id"] for m in body.get("member", []))),
    ]
    with FaultProxy(proxy[0], rules) as faulty:
        result = cli("apply", "--yes", "--proxy-url", faulty.url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "team.dev-test: done (confirmed by reading back after the response was lost)" in result.stdout
    assert "user.alice@company.com: done (confirmed by reading back after the response was lost)" in result.stdout
    assert (
        "confirmed by reading back" in result.stdout.split("membership.dev-test.alice@company.com:")[1].splitlines()[0]
    )
    created = [b["user_id"] for m, p, b in faulty.seen if (m, p) == ("POST", "/user/new") and b.get("user_email")]
    assert faulty.posts("/team/new") == 2 and len(created) == len(set(created)) == 3, "nothing was sent twice"
    assert len(api.teams()) == 2 and len(by_email(api)) == 3
    assert json_plan(cli)["actions"] == []


def test_apply_refuses_without_yes_when_not_a_terminal(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    result = cli("apply")
    assert result.returncode == 1
    assert "pass --yes" in result.stderr
    assert api.users() == []


def test_apply_checks_the_reviewed_fingerprint(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    reviewed = json_plan(cli)["fingerprint"]

    wrong = cli("apply", "--yes", "--expect-fingerprint", "0" * 64)
    assert wrong.returncode == 1 and "does not match the reviewed" in wrong.stderr
    assert api.users() == []

    right = cli("apply", "--yes", "--expect-fingerprint", reviewed[:16])
    assert right.returncode == 0, right.stdout + right.stderr
    assert f"Plan fingerprint matches the reviewed plan ({reviewed[:16]})." in right.stdout


def test_apply_on_a_terminal_asks_and_a_no_changes_nothing(api: Api, tmp_path: Path) -> None:
    write(tmp_path, BASE)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")  # typed ahead; the prompt reads it from the terminal
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", "apply"],
            cwd=tmp_path,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert "Apply these 13 action(s)? [y/N]" in result.stdout
    assert result.returncode == 1 and "apply cancelled; nothing was changed" in result.stderr
    assert api.users() == [] and api.teams() == []
