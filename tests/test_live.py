"""The live snapshot: complete or nothing, and every team even when a listing is filtered."""

from __future__ import annotations

import httpx
import pytest

from reconciler.client import IncompleteRead, LiteLLMClient
from reconciler.live import (
    LiveState,
    member_budgets_from_api,
    read_invitations,
    read_live,
    team_from_api,
    with_member_limits,
)
from reconciler.sealing import Sealer


def user(user_id: str, teams: list[str]) -> dict:
    return {
        "user_id": user_id,
        "user_email": f"{user_id}@x.com",
        "user_role": "internal_user",
        "teams": teams,
        "metadata": {},
    }


def team(team_id: str) -> dict:
    return {"team_id": team_id, "team_alias": team_id, "members_with_roles": [], "models": []}


def page(key: str, rows: list[dict], total: int | None = None) -> dict:
    return {key: rows, "total": len(rows) if total is None else total, "page": 1, "page_size": 100, "total_pages": 1}


def client(routes: dict[str, list[object]], calls: list[str]) -> LiteLLMClient:
    """Each path answers its bodies in turn (the last one repeats)."""

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        bodies = routes[request.url.path]
        return httpx.Response(200, json=bodies.pop(0) if len(bodies) > 1 else bodies[0])

    return LiteLLMClient(
        "http://proxy.test", "sk-test-key", transport=httpx.MockTransport(handle), sleep=lambda s: None
    )


def test_a_filtered_team_listing_is_completed_from_team_list() -> None:
    # litellm 1.80 shows a proxy_admin_viewer key only its own teams on /v2/team/list.
    calls: list[str] = []
    routes = {
        "/user/list": [page("users", [user("u1", ["t1", "t2"])])],
        "/v2/team/list": [page("teams", [team("t1")])],
        "/team/list": [[team("t2"), team("t1")]],
    }
    live = read_live(client(routes, calls))
    assert [t.team_id for t in live.teams] == ["t1", "t2"]
    assert calls.count("/team/list") == 1


def test_a_consistent_paginated_listing_is_used_alone() -> None:
    calls: list[str] = []
    routes = {
        "/user/list": [page("users", [user("u1", ["t1"])])],
        "/v2/team/list": [page("teams", [team("t1")])],
        "/team/list": [[]],
    }
    live = read_live(client(routes, calls))
    assert [t.team_id for t in live.teams] == ["t1"]
    assert "/team/list" not in calls
    assert len(calls) == 2, "a plan reads O(pages), nothing per user"


def test_an_inconsistent_listing_is_read_once_more_then_fails() -> None:
    calls: list[str] = []
    short = page("users", [user("u1", [])], total=2)
    routes = {
        "/user/list": [short, page("users", [user("u1", []), user("u2", [])])],
        "/v2/team/list": [page("teams", [team("t1")])],
        "/team/list": [[team("t1")]],
    }
    assert [u.user_id for u in read_live(client(routes, calls)).users] == ["u1", "u2"]

    routes = {"/user/list": [short], "/v2/team/list": [page("teams", [])], "/team/list": [[]]}
    with pytest.raises(IncompleteRead, match="read 1 distinct users but the proxy reports 2"):
        read_live(client(routes, []))


def test_a_plan_never_looks_an_invitation_up() -> None:
    # Whatever users recorded, expired or not: a plan costs the pages, nothing per user.
    calls: list[str] = []
    expired = {"litellm_reconciler": {"invitation": {"sealed": "v1.x", "expires_at": "2026-01-01T00:00:00Z"}}}
    rows = [{**user(f"u{i}", []), "metadata": expired} for i in range(3)]
    routes = {"/user/list": [page("users", rows)], "/v2/team/list": [page("teams", [team("t1")])]}
    live = read_live(client(routes, calls))
    assert sorted(calls) == ["/user/list", "/v2/team/list"], "read side by side: one listing each"
    assert all(u.invitation is not None and u.invitation.sealed == "v1.x" for u in live.users)


def test_read_invitations_opens_only_ids_sealed_for_that_user() -> None:
    sealer = Sealer("apply-secret")
    mine = {
        **user("u1", []),
        "metadata": {"litellm_reconciler": {"invitation": {"sealed": sealer.seal("inv-1", "u1")}}},
    }
    # u2 carries u1's sealed id: it does not open for u2 (bound to the user), so nothing is looked up for it.
    copied = {
        **user("u2", []),
        "metadata": {"litellm_reconciler": {"invitation": {"sealed": sealer.seal("inv-1", "u1")}}},
    }
    calls: list[str] = []
    info = {
        "id": "inv-1",
        "is_accepted": True,
        "accepted_at": "2026-01-02T00:00:00Z",
        "expires_at": "2026-01-08T00:00:00Z",
    }
    routes = {
        "/user/list": [page("users", [mine, copied])],
        "/v2/team/list": [page("teams", [team("t1")])],
        "/invitation/info": [info],
    }
    c = client(routes, calls)
    found = read_invitations(c, list(read_live(c).users), sealer)
    assert list(found) == ["u1"] and found["u1"].is_accepted
    assert calls.count("/invitation/info") == 1


def test_a_declared_team_missing_from_the_listing_is_checked_in_the_complete_one() -> None:
    # A viewer key that belongs to team t1 sees only t1 on /v2/team/list; the file also declares "ops".
    calls: list[str] = []
    ops = {**team("t-ops"), "team_alias": "ops"}
    routes = {
        "/user/list": [page("users", [user("u1", ["t1"])])],
        "/v2/team/list": [page("teams", [team("t1")])],
        "/team/list": [[team("t1"), ops]],
    }
    live = read_live(client(routes, calls), declared_teams=frozenset({"t1", "ops"}))
    assert sorted(t.alias for t in live.teams) == ["ops", "t1"]
    assert calls.count("/team/list") == 1


def test_a_members_own_budget_is_not_the_teams_shared_member_budget() -> None:
    info = {
        "team_info": {"metadata": {"team_member_budget_id": "shared"}},
        "team_memberships": [
            {"user_id": "a", "litellm_budget_table": {"budget_id": "own", "max_budget": 5.0, "tpm_limit": 10}},
            {"user_id": "b", "litellm_budget_table": {"budget_id": "shared", "max_budget": 2.0}},
            {"user_id": "c", "litellm_budget_table": None},
        ],
    }
    assert member_budgets_from_api(info) == {"a": {"max_budget_in_team": 5.0, "tpm_limit": 10, "rpm_limit": None}}


def test_a_member_key_duration_a_users_yaml_could_not_say_is_left_unmanaged() -> None:
    for odd in (30, "forever", ["30d"]):
        team = team_from_api({"team_id": "t", "metadata": {"team_member_key_duration": odd}})
        assert team.settings["team_member_key_duration"] is None


@pytest.mark.parametrize(
    "team_fields, window",
    [
        (None, "30d"),  # not known: taken, like the planner does
        (frozenset({"team_member_budget", "team_member_budget_duration"}), "30d"),  # 1.110.2
        (frozenset({"team_member_budget"}), None),  # 1.80.5: the row's window is the team's, copied
    ],
)
def test_a_member_budget_window_is_a_setting_only_where_litellm_takes_one(team_fields, window) -> None:
    raw = {**team("t1"), "budget_duration": "7d", "metadata": {"team_member_budget_id": "b1"}}
    rows = [{"budget_id": "b1", "max_budget": 5.0, "budget_duration": "30d", "tpm_limit": None, "rpm_limit": 10}]
    live = with_member_limits(LiveState(teams=(team_from_api(raw),), team_fields=team_fields), rows)
    [limits] = [{k: v for k, v in t.settings.items() if k.startswith("team_member_")} for t in live.teams]
    assert limits == {
        "team_member_permissions": None,
        "team_member_budget": 5.0,
        "team_member_budget_duration": window,
        "team_member_tpm_limit": None,
        "team_member_rpm_limit": 10,
        "team_member_key_duration": None,
    }
