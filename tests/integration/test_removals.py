"""Taking access away, on the real proxy, each judged from the proxy's own state afterwards."""

from __future__ import annotations

import httpx

from .conftest import Api
from .test_invitations import report
from .test_lifecycle import apply_ok, json_plan, write

TEAMS = """\
version: 1
teams:
  - alias: a
  - alias: b
"""


def user_named(api: Api, email: str) -> dict | None:
    return next((u for u in api.users() if (u.get("user_email") or "").lower() == email), None)


def roster(api: Api, alias: str) -> set[str]:
    team = next(t for t in api.teams() if t["team_alias"] == alias)
    ids = {m["user_id"] for m in team["members_with_roles"]} - {"default_user_id"}
    emails = {u["user_id"]: u.get("user_email") for u in api.users()}
    return {emails.get(i) or i for i in ids}


def test_a_move_adds_then_removes_and_undeclared_teams_keep_their_members(api: Api, cli, tmp_path) -> None:
    api.post("/team/new", {"team_alias": "elsewhere"})
    api.post("/user/new", {"user_email": "stranger@company.com", "auto_create_key": False})
    write(
        tmp_path,
        TEAMS + "users:\n  - email: alice@company.com\n    teams: [a]\n  - email: bob@company.com\n    teams: [a]\n",
    )
    apply_ok(cli)
    stranger = user_named(api, "stranger@company.com")
    elsewhere = next(t for t in api.teams() if t["team_alias"] == "elsewhere")
    for team in ("a", "elsewhere"):
        team_id = next(t["team_id"] for t in api.teams() if t["team_alias"] == team)
        api.post("/team/member_add", {"team_id": team_id, "member": [{"user_id": stranger["user_id"], "role": "user"}]})

    write(
        tmp_path,
        TEAMS
        + (
            "removals:\n  memberships: true\nusers:\n  - email: alice@company.com\n    teams: [b]\n"
            "  - email: bob@company.com\n    teams: [a]\n"
        ),
    )
    plan = json_plan(cli)
    kinds = [(a["kind"], a["address"]) for a in plan["actions"]]
    assert kinds == [
        ("add_member", "membership.b.alice@company.com"),
        ("remove_member", "membership.a.alice@company.com"),
        ("remove_member", "membership.a.stranger@company.com"),
    ]
    assert plan["actions"][1]["depends_on"] == ["membership.b.alice@company.com"]
    apply_ok(cli)

    assert roster(api, "a") == {"bob@company.com"}
    assert roster(api, "b") == {"alice@company.com"}
    assert user_named(api, "stranger@company.com") is not None, "an unowned user leaves the team but stays"
    assert "stranger@company.com" in roster(api, "elsewhere"), "a team the file does not declare is never touched"
    assert elsewhere["team_id"] in {t["team_id"] for t in api.teams()}
    assert json_plan(cli)["actions"] == []


def test_a_removed_user_is_deleted_with_its_key_and_its_link(api: Api, cli, proxy, tmp_path) -> None:
    write(
        tmp_path,
        TEAMS + "users:\n  - email: alice@company.com\n    teams: [a]\n  - email: gone@company.com\n    teams: [a]\n",
    )
    apply_ok(cli)
    gone = user_named(api, "gone@company.com")
    api.post("/key/generate", {"user_id": gone["user_id"]})
    link = next(r for r in report(tmp_path) if r["email"] == "gone@company.com")

    write(tmp_path, TEAMS + "removals:\n  users: true\nusers:\n  - email: alice@company.com\n    teams: [a]\n")
    plan = json_plan(cli)
    (action,) = plan["actions"]
    assert (action["kind"], action["address"]) == ("delete_user", "user.gone@company.com")
    assert "LiteLLM deletes its 1 key(s) and onboarding links with it" in action["reason"]
    apply_ok(cli)

    assert user_named(api, "gone@company.com") is None
    keys = api.get("/key/list", user_id=gone["user_id"])
    assert keys["keys"] == [], keys  # type: ignore[index]
    info = httpx.get(
        f"{proxy[0]}/invitation/info",
        params={"invitation_id": link["invitation_id"]},
        headers={"Authorization": f"Bearer {proxy[1]}"},
    )
    assert info.status_code == 400 and "does not exist" in info.text, "the link no longer works"
    assert roster(api, "a") == {"alice@company.com"}
    assert json_plan(cli)["actions"] == []


def test_the_guard_refuses_a_mass_removal_until_allowed(api: Api, cli, tmp_path) -> None:
    people = [f"p{i}@company.com" for i in range(12)]
    write(tmp_path, "version: 1\nusers:\n" + "".join(f"  - email: {p}\n" for p in people))
    apply_ok(cli)
    write(tmp_path, "version: 1\nremovals:\n  users: true\nusers:\n" + "".join(f"  - email: {p}\n" for p in people[:6]))

    plan = json_plan(cli)
    assert plan["removal_guard"] == {"removals": 6, "managed": 12, "max_percent": 25, "tripped": True}
    markdown = cli("plan", "--format", "markdown").stdout
    assert "🛑 Mass removal" in markdown
    refused = cli("apply", "--yes")
    assert refused.returncode == 1 and "this plan removes 6 of the 12 objects under management (50%)" in refused.stderr
    assert "--allow-mass-removal" in refused.stderr
    assert len(api.users()) == 12 + 1, "nothing was deleted (the users and default_user_id)"

    allowed = cli("apply", "--yes", "--allow-mass-removal")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert sorted((u.get("user_email") or "") for u in api.users() if u["user_id"] != "default_user_id") == people[:6]


def test_protected_principals_survive_a_file_that_omits_them(api: Api, cli, tmp_path) -> None:
    write(
        tmp_path,
        TEAMS
        + (
            "users:\n  - email: root@company.com\n    role: proxy_admin\n    teams: [a]\n  - email: ci@company.com\n"
            "    role: proxy_admin\n    teams: [a]\n"
        ),
    )
    apply_ok(cli)
    ci = user_named(api, "ci@company.com")
    key = api.post("/key/generate", {"user_id": ci["user_id"]})["key"]  # type: ignore[index]

    # Run with CI's own key: the file keeps root and drops CI, whose key the tool runs with.
    write(
        tmp_path,
        TEAMS
        + (
            "removals:\n  users: true\n  memberships: true\nusers:\n  - email: root@company.com\n"
            "    role: proxy_admin\n    teams: [a]\n"
        ),
    )
    result = cli("apply", "--yes", "--allow-mass-removal", env={"LITELLM_API_KEY": key})
    assert result.returncode == 0, result.stdout + result.stderr
    assert user_named(api, "ci@company.com") is not None, "the user that owns the key the tool runs with"
    assert roster(api, "a") == {"ci@company.com", "root@company.com"}

    # With the master key, a file that omits everyone: one proxy_admin stays (the first by email,
    # so the choice is reproducible), and so does default_user_id.
    write(tmp_path, TEAMS + "removals:\n  users: true\n  memberships: true\n")
    plan = cli("plan")
    assert "protected from removal: the last proxy_admin" in plan.stdout
    result = cli("apply", "--yes", "--allow-mass-removal")
    assert result.returncode == 0, result.stdout + result.stderr
    assert user_named(api, "ci@company.com") is not None and user_named(api, "root@company.com") is None
    assert roster(api, "a") == {"ci@company.com"}
    assert any(
        u["user_id"] == "default_user_id"
        for u in api.get("/user/list", page_size=100)["users"]  # type: ignore[index]
    )


def test_a_team_declared_by_id_is_renamed_not_recreated(api: Api, cli, tmp_path) -> None:
    write(
        tmp_path,
        "version: 1\nteams:\n  - alias: old-name\nusers:\n  - email: alice@company.com\n    teams: [old-name]\n",
    )
    apply_ok(cli)
    (team,) = api.teams()
    write(
        tmp_path,
        (
            f"version: 1\nremovals:\n  teams: true\nteams:\n  - alias: new-name\n    id: {team['team_id']}\nusers:\n"
            "  - email: alice@company.com\n    teams: [new-name]\n"
        ),
    )
    plan = json_plan(cli)
    assert [(a["kind"], a["address"]) for a in plan["actions"]] == [("update_team", "team.new-name")]
    apply_ok(cli)
    assert [(t["team_id"], t["team_alias"]) for t in api.teams()] == [(team["team_id"], "new-name")]
    assert roster(api, "new-name") == {"alice@company.com"}


def test_an_owned_team_no_longer_declared_is_deleted_with_its_keys(api: Api, cli, tmp_path) -> None:
    write(tmp_path, TEAMS)
    apply_ok(cli)
    b = next(t for t in api.teams() if t["team_alias"] == "b")
    api.post("/key/generate", {"team_id": b["team_id"]})
    write(tmp_path, "version: 1\nremovals:\n  teams: true\nteams:\n  - alias: a\n")
    (action,) = json_plan(cli)["actions"]
    assert (action["kind"], action["address"]) == ("delete_team", "team.b")
    assert "LiteLLM deletes its 1 key(s) with it" in action["reason"]
    apply_ok(cli)
    assert [t["team_alias"] for t in api.teams()] == ["a"]


def test_export_then_plan_is_no_changes_on_a_proxy_made_only_through_the_api(api: Api, cli, tmp_path) -> None:
    dev = api.post(
        "/team/new",
        {"team_alias": "dev", "models": ["gpt-4o-mini"], "max_budget": 50, "budget_duration": "30d", "rpm_limit": 60},
    )
    nameless = api.post("/team/new", {})
    alice = api.post("/user/new", {"user_email": "alice@company.com", "user_alias": "Alice", "auto_create_key": False})
    api.post(
        "/user/new", {"user_email": "viewer@company.com", "user_role": "proxy_admin_viewer", "auto_create_key": False}
    )
    anonymous = api.post("/user/new", {"user_id": "svc-batch", "auto_create_key": False})
    for user_id in (alice["user_id"], anonymous["user_id"]):  # type: ignore[index]
        for team in (dev, nameless):
            api.post(
                "/team/member_add",
                {
                    "team_id": team["team_id"],  # type: ignore[index]
                    "member": [{"user_id": user_id, "role": "user"}],
                },
            )

    exported = cli("export", "--out", "users.yaml")
    assert exported.returncode == 0, exported.stderr
    text = (tmp_path / "users.yaml").read_text(encoding="utf-8")
    assert f"team '{nameless['team_id']}': no alias" in text and "user 'svc-batch': no email" in text  # type: ignore[index]
    assert cli("validate").returncode == 0

    plan = cli("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout and "Bookkeeping only:" in plan.stdout
    apply_ok(cli)  # records ownership
    assert json_plan(cli)["actions"] == []
    assert cli("export").stdout == text, "export is deterministic, and adoption changed nothing it shows"


def test_owned_removes_what_the_tool_granted_and_leaves_what_others_did(api: Api, cli, tmp_path) -> None:
    # SSO's team sync, SCIM, the UI and scripts add members too: with `owned`, the file takes away only
    # what it gave, and shows the rest as drift instead of fighting them at every apply.
    users = "users:\n  - email: alice@company.com\n    teams: [a]\n  - email: bob@company.com\n    teams: [a]\n"
    write(tmp_path, TEAMS + users)
    apply_ok(cli)
    api.post("/user/new", {"user_email": "sso@company.com", "auto_create_key": False})
    sso, bob = user_named(api, "sso@company.com"), user_named(api, "bob@company.com")
    team_a = next(t["team_id"] for t in api.teams() if t["team_alias"] == "a")
    # Outside the tool: an account it does not own, and one it owns (bob) added to team b by hand.
    api.post("/team/member_add", {"team_id": team_a, "member": [{"user_id": sso["user_id"], "role": "user"}]})
    team_b = next(t["team_id"] for t in api.teams() if t["team_alias"] == "b")
    api.post("/team/member_add", {"team_id": team_b, "member": [{"user_id": bob["user_id"], "role": "user"}]})

    dropped = users.replace("  - email: bob@company.com\n    teams: [a]\n", "  - email: bob@company.com\n")
    write(tmp_path, TEAMS + "removals:\n  memberships: owned\n" + dropped)
    plan = json_plan(cli)
    assert [(a["kind"], a["address"]) for a in plan["actions"]] == [("remove_member", "membership.a.bob@company.com")]
    outside = sorted(d["address"] for d in plan["drift"] if d["kind"] == "granted_outside")
    assert outside == ["membership.a.sso@company.com", "membership.b.bob@company.com"]
    apply_ok(cli)
    apply_ok(cli)
    assert roster(api, "a") == {"alice@company.com", "sso@company.com"}, "the outside member survives every apply"
    assert roster(api, "b") == {"bob@company.com"}
    assert json_plan(cli)["actions"] == []

    write(tmp_path, TEAMS + "removals:\n  memberships: true\n" + dropped)
    assert sorted(a["address"] for a in json_plan(cli)["actions"]) == [
        "membership.a.sso@company.com",
        "membership.b.bob@company.com",
    ], "true: the exact roster, as before"
