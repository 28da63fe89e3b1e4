"""The executor against an in-memory LiteLLM (httpx.MockTransport) that can lose requests and responses."""

from __future__ import annotations

import itertools
import json
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from reconciler.apply import (
    ActionResult,
    ApplyReport,
    Executor,
    UsedLink,
    remember_failures,
    stubborn_failures,
    used_links,
)
from reconciler.attribution import Attribution
from reconciler.client import LiteLLMClient
from reconciler.desired import TEAM_SETTINGS, USER_SETTINGS, parse_desired
from reconciler.live import OWNER_KEY, PROXY_ADMIN_ID, read_live, start_of_day
from reconciler.manager import read_for
from reconciler.onboarding import InvitationRecord
from reconciler.plan import EXPOSED_REASON, Plan, make_plan, new_team_id, new_user_id
from reconciler.sealing import Sealer

from .test_sealing import legacy_seal

NOW = datetime(2031, 11, 27, 12, 0, tzinfo=timezone.utc)
SEALER = Sealer("apply-side-secret")
ALICE = "version: 1\nusers: [{email: alice@example.com}]\n"
UI = "https://ui.example.test/"

#: Writes that rewrite team rosters: LiteLLM loses members when two of them overlap.
ROSTER_WRITES = ("/team/member_add", "/team/member_delete", "/user/delete", "/team/delete")
#: A fault that lets the proxy make the change, then loses the response.
LOST_RESPONSE = "lost-response"
#: A fault that loses the request before the proxy sees it.
LOST_REQUEST = "lost-request"
Fault = str | httpx.Response

# --------------------------------------------------------------------------- an in-memory LiteLLM


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def error(status: int, message: str, kind: str = "internal_server_error") -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": kind, "param": "None", "code": str(status)}}
    )


class FakeLiteLLM:
    """Just enough of LiteLLM 1.80's admin API, with scripted faults per request."""

    def __init__(self, clock: Callable[[], datetime] = lambda: NOW) -> None:
        #: The proxy's clock: an invitation is made at clock() and valid for seven days, as LiteLLM does.
        self.clock = clock
        self.users: dict[str, dict[str, Any]] = {}
        self.teams: dict[str, dict[str, Any]] = {}
        self.invitations: dict[str, dict[str, Any]] = {}
        #: (team id, user id) -> the member's own budget limits, as 1.80.5 keeps them (replaced on every update).
        self.member_budgets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self._faults: list[tuple[str, Callable[[Any], bool], Fault]] = []
        self._ids = itertools.count(1)
        #: The executor sends requests concurrently; this fake changes its state one request at a time.
        self._lock = threading.Lock()
        #: Seconds each request spends in flight before it is handled (lets concurrency show).
        self.latency = 0.0
        self._count = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        self.most_roster_writes = 0
        self.most_in_flight_at_all = 0
        #: The litellm-changed-by header of every write (LiteLLM's audit trail keeps it).
        self.changed_by: set[str] = set()
        #: Links whose sealed record reached a user, and the most links that ever existed unrecorded.
        self.recorded_links = 0
        self.most_unrecorded = 0

    # -- set-up

    def add_user(self, user_id: str, email: str | None, **fields: Any) -> None:
        self.users[user_id] = {
            "user_id": user_id,
            "user_email": email,
            "user_role": "internal_user",
            "user_alias": None,
            "teams": [],
            "metadata": {},
            "models": [],
            "max_budget": None,
            "budget_duration": None,
            "tpm_limit": None,
            "rpm_limit": None,
            **fields,
        }

    def fail(self, path: str, fault: Fault, when: Callable[[Any], bool] = lambda body: True) -> None:
        """The next POST to ``path`` whose body satisfies ``when`` meets ``fault`` (once)."""
        self._faults.append((path, when, fault))

    def posts(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    def user_updates(self) -> list[Any]:
        """Every user update asked for, alone or in a ``/user/bulk_update``."""
        return self.posts("/user/update") + [u for body in self.posts("/user/bulk_update") for u in body["users"]]

    def client(self, parallelism: int = 4, changed_by: str = "litellm-reconciler") -> LiteLLMClient:
        return LiteLLMClient(
            "http://proxy.test",
            "sk-test",
            transport=httpx.MockTransport(self),
            sleep=lambda s: None,
            parallelism=parallelism,
            changed_by=changed_by,
        )

    # -- transport

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        with self._count:
            self.in_flight[path] = self.in_flight.get(path, 0) + 1
            self.most_in_flight[path] = max(self.most_in_flight.get(path, 0), self.in_flight[path])
            rosters = sum(self.in_flight.get(p, 0) for p in ROSTER_WRITES)
            self.most_roster_writes = max(self.most_roster_writes, rosters)
            self.most_in_flight_at_all = max(self.most_in_flight_at_all, sum(self.in_flight.values()))
        try:
            if self.latency:
                time.sleep(self.latency)
            with self._lock:
                return self._handle(request)
        finally:
            with self._count:
                self.in_flight[path] -= 1

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, path, body))
        if request.method != "GET":
            self.changed_by.add(request.headers.get("litellm-changed-by", ""))
        if request.method == "GET":
            return getattr(self, "get_" + path.strip("/").replace("/", "_").replace(".", "_"))(request.url.params)
        fault = self._take_fault(path, body)
        if fault == LOST_REQUEST:
            raise httpx.ReadTimeout("timed out", request=request)
        if isinstance(fault, httpx.Response):
            return fault
        response = getattr(self, "post_" + path.strip("/").replace("/", "_"))(body)
        if fault == LOST_RESPONSE:
            raise httpx.ReadTimeout("timed out", request=request)
        return response

    def _take_fault(self, path: str, body: Any) -> Fault | None:
        for i, (where, when, fault) in enumerate(self._faults):
            if where == path and when(body):
                del self._faults[i]
                return fault
        return None

    # -- writes

    def post_team_new(self, body: dict[str, Any]) -> httpx.Response:
        team_id = body.get("team_id") or f"team-{next(self._ids)}"
        if team_id in self.teams:
            return error(400, f"{{'error': 'Team id = {team_id} already exists. Please use a different team id.'}}")
        team = {
            "team_id": team_id,
            "team_alias": body.get("team_alias"),
            "models": [],
            "max_budget": None,
            "budget_duration": None,
            "tpm_limit": None,
            "rpm_limit": None,
        }
        team.update({k: v for k, v in body.items() if k in TEAM_SETTINGS})
        team["metadata"] = body.get("metadata") or {}
        team["members_with_roles"] = [{"user_id": PROXY_ADMIN_ID, "user_email": None, "role": "admin"}]
        self.teams[team_id] = team
        return httpx.Response(200, json=team)

    def post_team_update(self, body: dict[str, Any]) -> httpx.Response:
        team = self.teams.get(body["team_id"])
        if team is None:
            return error(404, "Team not found")
        # Like LiteLLM: /team/update does not change the member permissions.
        team.update({k: v for k, v in body.items() if k not in ("team_id", "team_member_permissions")})
        return httpx.Response(200, json={"team_id": team["team_id"], "data": team})

    def post_team_permissions_update(self, body: dict[str, Any]) -> httpx.Response:
        team = self.teams.get(body["team_id"])
        if team is None:
            return error(404, "Team not found")
        team["team_member_permissions"] = body["team_member_permissions"]
        return httpx.Response(200, json=team)

    def post_user_new(self, body: dict[str, Any]) -> httpx.Response:
        email = body.get("user_email")
        if email and any((u["user_email"] or "").lower() == email.lower() for u in self.users.values()):
            return error(400, f"{{'error': 'User with email {email} already exists'}}")
        user_id = body.get("user_id") or f"user-{next(self._ids)}"
        kept = ("user_role", "user_alias", "metadata", *USER_SETTINGS)
        self.add_user(user_id, email, **{k: body[k] for k in kept if k in body})
        return httpx.Response(200, json={**self.users[user_id], "key": ""})

    def post_user_update(self, body: dict[str, Any]) -> httpx.Response:
        if body["user_id"] not in self.users:  # LiteLLM upserts
            self.add_user(body["user_id"], None)
        # Like every LiteLLM: empty lists and objects are dropped (models cannot be cleared to []).
        self.users[body["user_id"]].update({k: v for k, v in body.items() if k != "user_id" and v not in ([], {})})
        return httpx.Response(200, json={"user_id": body["user_id"], "data": self.users[body["user_id"]]})

    def post_user_bulk_update(self, body: dict[str, Any]) -> httpx.Response:
        """Like LiteLLM 1.80: each user updated on its own, a result row each."""
        results = []
        for update in body["users"]:
            fault = self._take_fault("/user/update", update)
            if isinstance(fault, httpx.Response):
                results.append(
                    {
                        "user_id": update["user_id"],
                        "success": False,
                        "error": json.loads(fault.content)["error"]["message"],
                    }
                )
                continue
            self.post_user_update(update)
            self.recorded_links += "sealed" in json.dumps(update.get("metadata"))
            results.append(
                {"user_id": update["user_id"], "success": True, "updated_user": self.users[update["user_id"]]}
            )
        failed = sum(1 for r in results if not r["success"])
        return httpx.Response(
            200,
            json={
                "results": results,
                "total_requested": len(results),
                "successful_updates": len(results) - failed,
                "failed_updates": failed,
            },
        )

    def post_team_member_add(self, body: dict[str, Any]) -> httpx.Response:
        team = self.teams.get(body["team_id"])
        if team is None:
            return httpx.Response(404, json={"detail": {"error": f"Team doesn't exist in db. Team={body['team_id']}."}})
        members = body["member"] if isinstance(body["member"], list) else [body["member"]]
        roster = {m["user_id"] for m in team["members_with_roles"]}
        new = [m for m in members if m["user_id"] not in roster]
        if not new:
            return error(400, "All users are already in team.", kind="team_member_already_in_team")
        for member in new:
            if member["user_id"] not in self.users:
                self.add_user(member["user_id"], None)
            team["members_with_roles"].append(
                {"user_id": member["user_id"], "user_email": None, "role": member["role"]}
            )
            self.users[member["user_id"]]["teams"].append(team["team_id"])
            if body.get("max_budget_in_team") is not None:
                budget = {"max_budget": body["max_budget_in_team"], "tpm_limit": None, "rpm_limit": None}
                self.member_budgets[(team["team_id"], member["user_id"])] = budget
        return httpx.Response(200, json=team)

    def post_team_member_update(self, body: dict[str, Any]) -> httpx.Response:
        team = self.teams[body["team_id"]]
        [member] = [m for m in team["members_with_roles"] if m["user_id"] == body["user_id"]]
        if body.get("role"):
            member["role"] = body["role"]
        budget = {"max_budget": body.get("max_budget_in_team"), "tpm_limit": body.get("tpm_limit"), "rpm_limit": None}
        if all(v is None for v in budget.values()):
            self.member_budgets.pop((team["team_id"], member["user_id"]), None)
        else:
            self.member_budgets[(team["team_id"], member["user_id"])] = budget
        return httpx.Response(200, json={"team_id": team["team_id"], "user_id": member["user_id"]})

    def post_invitation_new(self, body: dict[str, Any]) -> httpx.Response:
        if body["user_id"] not in self.users or PROXY_ADMIN_ID not in self.users:
            return error(400, "User id does not exist in 'LiteLLM_UserTable'. Fix this by creating user via /user/new")
        invitation_id = f"inv-{next(self._ids)}"
        self.most_unrecorded = max(self.most_unrecorded, len(self.invitations) + 1 - self.recorded_links)
        made = self.clock()
        self.invitations[invitation_id] = {
            "id": invitation_id,
            "user_id": body["user_id"],
            "is_accepted": False,
            "accepted_at": None,
            "expires_at": _iso(made + timedelta(days=7)),
            "created_at": _iso(made),
        }
        return httpx.Response(200, json=self.invitations[invitation_id])

    # -- reads

    @staticmethod
    def _page(key: str, rows: list[dict[str, Any]], params: httpx.QueryParams) -> httpx.Response:
        size, page = int(params.get("page_size", 25)), int(params.get("page", 1))
        rows = sorted(rows, key=lambda r: r[params.get("sort_by") or "user_id"]) if params.get("sort_by") else rows
        return httpx.Response(
            200,
            json={
                key: rows[(page - 1) * size : page * size],
                "total": len(rows),
                "page": page,
                "page_size": size,
                "total_pages": -(-len(rows) // size),
            },
        )

    def get_user_list(self, params: httpx.QueryParams) -> httpx.Response:
        rows = list(self.users.values())
        if "," in params.get("user_ids", ""):  # a list: each id exactly (SQL IN)
            rows = [u for u in rows if u["user_id"] in params["user_ids"].split(",")]
        elif "user_ids" in params:  # one id: a case-insensitive "contains" match, as 1.110 does
            rows = [u for u in rows if params["user_ids"].lower() in u["user_id"].lower()]
        return self._page("users", rows, params)

    def get_v2_team_list(self, params: httpx.QueryParams) -> httpx.Response:
        return self._page("teams", list(self.teams.values()), params)

    def get_team_list(self, params: httpx.QueryParams) -> httpx.Response:
        return httpx.Response(200, json=sorted(self.teams.values(), key=lambda t: t["team_alias"] or ""))

    def get_team_info(self, params: httpx.QueryParams) -> httpx.Response:
        team = self.teams.get(params["team_id"])
        if team is None:
            return error(404, f"Team not found, passed team id: {params['team_id']}.")
        memberships = [
            {"user_id": user_id, "team_id": team_id, "litellm_budget_table": {"budget_id": f"b-{user_id}", **budget}}
            for (team_id, user_id), budget in self.member_budgets.items()
            if team_id == team["team_id"]
        ]
        return httpx.Response(
            200, json={"team_id": team["team_id"], "team_info": team, "keys": [], "team_memberships": memberships}
        )

    def post_user_delete(self, body: dict[str, Any]) -> httpx.Response:
        if any(i not in self.users for i in body["user_ids"]):
            return httpx.Response(404, json={"detail": {"error": "User not found"}})
        for user_id in body["user_ids"]:
            del self.users[user_id]
            for team in self.teams.values():
                team["members_with_roles"] = [m for m in team["members_with_roles"] if m["user_id"] != user_id]
        return httpx.Response(200, json=len(body["user_ids"]))

    def post_team_delete(self, body: dict[str, Any]) -> httpx.Response:
        if any(i not in self.teams for i in body["team_ids"]):
            return httpx.Response(404, json={"detail": {"error": "Team not found"}})
        for team_id in body["team_ids"]:
            del self.teams[team_id]
        return httpx.Response(200, json={"deleted_teams": body["team_ids"]})

    def post_team_member_delete(self, body: dict[str, Any]) -> httpx.Response:
        team = self.teams[body["team_id"]]
        if body["user_id"] not in {m["user_id"] for m in team["members_with_roles"]}:
            return httpx.Response(400, json={"detail": {"error": "User not found in team"}})
        team["members_with_roles"] = [m for m in team["members_with_roles"] if m["user_id"] != body["user_id"]]
        self.users[body["user_id"]]["teams"].remove(body["team_id"])
        return httpx.Response(200, json=team)

    def post_invitation_delete(self, body: dict[str, Any]) -> httpx.Response:
        found = self.invitations.pop(body["invitation_id"], None)
        if found is None:
            return httpx.Response(400, json={"detail": {"error": "Invitation id does not exist in the database."}})
        return httpx.Response(200, json=found)

    def get_openapi_json(self, params: httpx.QueryParams) -> httpx.Response:
        """The version it stands for (the schemas of its bodies are not described)."""
        return httpx.Response(200, json={"info": {"version": "1.80.5"}, "components": {"schemas": {}}})

    def get_key_info(self, params: httpx.QueryParams) -> httpx.Response:
        """The master key's own: it is no stored key (LiteLLM answers 404)."""
        return error(404, "Key not found in database", "not_found_error")

    def get_invitation_info(self, params: httpx.QueryParams) -> httpx.Response:
        found = self.invitations.get(params["invitation_id"])
        if found is None:
            return httpx.Response(400, json={"detail": {"error": "Invitation id does not exist in the database."}})
        return httpx.Response(200, json=found)


# --------------------------------------------------------------------------- helpers


def desired(body: str):
    return parse_desired(textwrap.dedent(body).lstrip("\n"), "users.yaml")


def plan_against(proxy: FakeLiteLLM, body: str) -> Plan:
    return make_plan(desired(body), read_live(proxy.client()), NOW)


#: Who these runs are made by, as a pull request merged in GitHub Actions would say.
BY = Attribution("alice (author of #7), merged by bob", "acme/access#7@0123456789ab")
CHANGE = BY.stamp(NOW.isoformat(timespec="seconds"))


def apply(proxy: FakeLiteLLM, plan: Plan) -> ApplyReport:
    return Executor(proxy.client(), UI, sealer=SEALER, clock=lambda: NOW, attribution=BY).run(plan)


def statuses(report: ApplyReport) -> dict[str, str]:
    return {r.address: r.status for r in report.results}


def is_team(alias: str) -> Callable[[Any], bool]:
    return lambda body: body.get("team_alias") == alias


TEAMS_AND_USERS = """
version: 1
teams:
  - {alias: dev, max_budget: 10}
  - {alias: research}
users:
  - {email: alice@example.com, teams: [dev]}
  - {email: bob@example.com, teams: [dev, research]}
  - {email: carol@example.com, teams: [dev]}
"""


# --------------------------------------------------------------------------- the happy path


def test_apply_from_scratch_converges():
    proxy = FakeLiteLLM()
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    assert report.ok, report.results
    assert report.summary_line() == f"Apply complete: {len(report.results)} done, 0 failed, 0 skipped."
    again = plan_against(proxy, TEAMS_AND_USERS)
    assert not again.has_changes, [(a.kind, a.address) for a in again.actions]
    assert len(report.invitations) == 3
    assert all(r.status == "created" and r.onboarding_link for r in report.invitations)


def test_memberships_of_one_team_go_out_in_one_call():
    proxy = FakeLiteLLM()
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    assert report.ok
    calls = proxy.posts("/team/member_add")
    assert len(calls) == 2
    by_team = {call["team_id"]: sorted(m["user_id"] for m in call["member"]) for call in calls}
    assert by_team == {
        new_team_id("dev"): sorted(
            new_user_id(e) for e in ("alice@example.com", "bob@example.com", "carol@example.com")
        ),
        new_team_id("research"): [new_user_id("bob@example.com")],
    }


def test_memberships_of_one_team_go_out_in_one_call_whatever_the_aliases():
    proxy = FakeLiteLLM()
    body = """
    version: 1
    teams: [{alias: ml}, {alias: ml.ops}]
    users:
      - {email: alice@example.com, teams: [ml]}
      - {email: bob@example.com, teams: [ml.ops]}
      - {email: zed@example.com, teams: [ml]}
    """
    assert apply(proxy, plan_against(proxy, body)).ok
    team_ids = [call["team_id"] for call in proxy.posts("/team/member_add")]
    assert sorted(team_ids) == sorted(set(team_ids))


# --------------------------------------------------------------------------- failures


def test_dependants_of_a_failed_team_are_skipped_and_the_rest_continues():
    proxy = FakeLiteLLM()
    proxy.fail("/team/new", error(400, "refused"), when=is_team("dev"))
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    got = statuses(report)
    assert got["team.dev"] == "failed"
    for email in ("alice", "bob", "carol"):
        assert got[f"membership.dev.{email}@example.com"] == "skipped"
        assert got[f"user.{email}@example.com"] == "done"
        assert got[f"invitation.{email}@example.com"] == "done"
    assert got["team.research"] == "done"
    assert got["membership.research.bob@example.com"] == "done"
    skipped = next(r for r in report.results if r.address == "membership.dev.bob@example.com")
    assert "team.dev" in skipped.detail
    assert not report.ok
    assert all(call["team_id"] != new_team_id("dev") for call in proxy.posts("/team/member_add"))


def test_a_failed_user_skips_its_memberships_and_invitation():
    proxy = FakeLiteLLM()
    proxy.fail("/user/new", error(400, "refused"), when=lambda body: body.get("user_email") == "bob@example.com")
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    got = statuses(report)
    assert got["user.bob@example.com"] == "failed"
    assert got["membership.dev.bob@example.com"] == got["membership.research.bob@example.com"] == "skipped"
    assert got["membership.dev.alice@example.com"] == "done"
    assert got["invitation.bob@example.com"] == "skipped"
    bob = next(r for r in report.invitations if r.email == "bob@example.com")
    assert bob.status == "skipped" and bob.onboarding_link is None


def test_a_failed_inviter_skips_every_invitation():
    proxy = FakeLiteLLM()
    proxy.fail("/user/new", error(400, "refused"), when=lambda body: body.get("user_id") == PROXY_ADMIN_ID)
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    assert [r.status for r in report.results if r.kind == "create_invitation"] == ["skipped"] * 3
    assert proxy.posts("/invitation/new") == []


@pytest.mark.parametrize("fault, outcome", [(LOST_RESPONSE, "done"), (LOST_REQUEST, "failed")])
def test_a_create_team_without_response_is_read_back_and_never_resent(fault, outcome):
    proxy = FakeLiteLLM()
    proxy.fail("/team/new", fault, when=is_team("dev"))
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    result = next(r for r in report.results if r.address == "team.dev")
    assert result.status == outcome, result.detail
    assert len([b for b in proxy.posts("/team/new") if b["team_alias"] == "dev"]) == 1
    assert [p for m, p, b in proxy.requests if m == "GET" and p == "/team/info" and b is None]
    member_status = statuses(report)["membership.dev.alice@example.com"]
    assert member_status == ("done" if outcome == "done" else "skipped")
    if outcome == "failed":
        assert "not re-sent" in result.detail


def test_a_lost_invitation_fails_and_is_not_resent():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    proxy.add_user("u-1", "alice@example.com", metadata={OWNER_KEY: {"managed": True}})
    proxy.fail("/invitation/new", LOST_RESPONSE)
    report = apply(proxy, plan_against(proxy, "version: 1\nusers: [{email: alice@example.com}]\n"))
    (result,) = report.results
    assert (result.address, result.status) == ("invitation.alice@example.com", "failed")
    assert len(proxy.posts("/invitation/new")) == 1
    (record,) = report.invitations
    assert record.status == "unrecorded" and record.invitation_id is None and record.onboarding_link is None
    assert "a link may have been created" in result.detail, "possibly created: reported, never undone"
    # Only the intent was recorded (before /invitation/new): the next run knows a link may exist.
    assert set(proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]) == {"intent_at", "intent_run"}
    assert len(proxy.user_updates()) == 1

    plan = plan_against(proxy, ALICE)
    (action,) = plan.actions
    assert action.kind == "create_invitation" and "asked for a link and did not record it" in action.reason
    again = apply(proxy, plan)
    assert again.ok
    unrecorded, created = again.invitations
    assert (
        unrecorded.status == "unrecorded"
        and unrecorded.invitation_id is None
        and "cannot be found on the proxy" in (unrecorded.error or "")
    )
    assert unrecorded.expires_at == "2031-12-04", "a link asked for on 11-27 is valid until 12-04 at the latest"
    assert created.status == "created" and created.invitation_id
    assert "intent_at" not in proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert plan_against(proxy, ALICE).actions == ()


class Collect:
    """A courier that keeps what it is handed, answering with a scripted delivery state."""

    def __init__(self, state: str = "reported"):
        self.state, self.records = state, []
        self.ids: dict[str, str] = {}
        self.requests: set[tuple[str | None, str]] = set()

    def hand_over(self, record: InvitationRecord) -> str:
        self.records.append((record.email, record.status, record.invitation_id))
        self.ids[record.email] = record.user_id
        return self.state

    def note(self, record: InvitationRecord) -> None:
        self.records.append((record.email, record.status, record.invitation_id))

    def sync(self) -> None:
        self.records.append(("", "synced", None))

    def reported(self, user_id: str) -> list[str]:
        return [i for email, status, i in self.records if i and status == "created" and self.ids.get(email) == user_id]

    def requesting(self, email: str, user_id: str | None, run: str) -> None:
        self.requests.add((user_id, run))

    def asked(self, user_id: str, run: str | None) -> bool | None:
        return (user_id, run) in self.requests if (None, run) in self.requests else None


def test_each_link_is_handed_over_before_it_is_recorded_and_its_delivery_kept():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    courier = Collect("email_failed")
    # The record write fails: the link was handed over all the same.
    proxy.fail("/user/update", error(500, "db down"), when=lambda body: "sealed" in json.dumps(body))
    report = Executor(proxy.client(), UI, sealer=SEALER, courier=courier, clock=lambda: NOW).run(
        plan_against(proxy, ALICE)
    )
    (invitation_id,) = proxy.invitations
    assert courier.records == [("alice@example.com", "created", invitation_id), ("", "synced", None)], (
        "on disk before the record is sent"
    )
    assert not report.ok and "handed over, but not recorded" in report.results[-1].detail

    # Next run: the intent is still there, so the link is reported as unrecorded and replaced.
    courier = Collect("email_failed")
    Executor(proxy.client(), UI, sealer=SEALER, courier=courier, clock=lambda: NOW).run(plan_against(proxy, ALICE))
    assert [status for _, status, _ in courier.records] == ["unrecorded", "created", "synced"]
    user = next(u for u in proxy.users.values() if u["user_email"] == "alice@example.com")
    recorded = user["metadata"][OWNER_KEY]["invitation"]
    assert recorded["delivery"] == "email_failed" and "intent_at" not in recorded

    # The email failed: the following plan hands the same link over again, and nothing more.
    plan = plan_against(proxy, ALICE)
    assert [a.kind for a in plan.actions] == ["deliver_invitation"]
    courier = Collect("emailed")
    assert Executor(proxy.client(), UI, sealer=SEALER, courier=courier).run(plan).ok
    (second_id,) = [i for i in proxy.invitations if i != invitation_id]
    assert courier.records == [("alice@example.com", "redelivered", second_id), ("", "synced", None)]
    assert user["metadata"][OWNER_KEY]["invitation"]["delivery"] == "emailed"
    assert plan_against(proxy, ALICE).actions == ()


def test_a_new_users_intent_rides_with_its_creation():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    report = apply(proxy, plan_against(proxy, ALICE))
    assert report.ok
    (created,) = proxy.posts("/user/new")
    assert "intent_at" in created["metadata"][OWNER_KEY]["invitation"]
    assert len(proxy.user_updates()) == 1, "one write per invitation: the sealed record"
    assert proxy.posts("/user/update") == [], "recorded in a batch"


def test_failure_memory_tells_a_stubborn_failure_from_a_passing_one():
    refused = ActionResult("team.a", "create_team", "failed", "POST /team/new: HTTP 400: bad", 400)
    flaky = ActionResult("team.b", "create_team", "failed", "POST /team/new: HTTP 500: db", 500)
    first = remember_failures([refused, flaky], {}, "T1")
    assert stubborn_failures([refused, flaky], first) == [], "once is no proof: the next run may pass"
    second = remember_failures([refused, flaky], first, "T2")
    assert second["create_team team.b"] == {"detail": flaky.detail, "runs": 2, "since": "T1"}
    assert [why for _, why in stubborn_failures([refused, flaky], second)] == [
        "refused by the proxy (HTTP 400) the same way on 2 runs"
    ], "a 500 twice may still pass (a proxy that is down): only a refusal is stubborn"
    other = ActionResult("team.b", "create_team", "failed", "POST /team/new: HTTP 500: other", 500)
    assert remember_failures([other], second, "T3")["create_team team.b"]["runs"] == 1
    assert remember_failures([], second, "T3") == {}


def test_lost_member_add_is_confirmed_from_the_roster():
    proxy = FakeLiteLLM()
    proxy.fail("/team/member_add", LOST_RESPONSE)
    report = apply(proxy, plan_against(proxy, TEAMS_AND_USERS))
    assert report.ok, report.results
    assert len(proxy.posts("/team/member_add")) == 2


# --------------------------------------------------------------------------- invitations


def test_invitation_is_recorded_on_the_user_sealed_merging_metadata():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    proxy.add_user(
        "u-1", "Alice@Example.com", metadata={"cost_center": "42", OWNER_KEY: {"managed": True, "note": "kept"}}
    )
    report = apply(proxy, plan_against(proxy, "version: 1\nusers: [{email: alice@example.com}]\n"))
    assert report.ok
    (invitation_id,) = proxy.invitations
    metadata = proxy.users["u-1"]["metadata"]
    assert metadata["cost_center"] == "42"
    assert metadata[OWNER_KEY]["managed"] is True and metadata[OWNER_KEY]["note"] == "kept"
    recorded = metadata[OWNER_KEY]["invitation"]
    assert {k: v for k, v in recorded.items() if k != "sealed"} == {
        "created_at": "2031-11-27T12:00:00Z",
        "expires_at": "2031-12-04T12:00:00Z",
        "delivery": "reported",
    }
    assert invitation_id not in json.dumps(metadata), "a read-only key can read metadata: the id is sealed"
    assert SEALER.open(recorded["sealed"], "u-1") == invitation_id
    assert Sealer("another-secret").open(recorded["sealed"], "u-1") is None
    (record,) = report.invitations
    assert record == InvitationRecord(
        email="alice@example.com",
        user_id="u-1",
        invitation_id=invitation_id,
        expires_at="2031-12-04T12:00:00Z",
        onboarding_link=f"https://ui.example.test/ui/onboarding?invitation_id={invitation_id}",
        status="created",
    )
    assert all("onboarding" not in r.detail for r in report.results), "action results never carry the link"


def _invited(
    proxy: FakeLiteLLM, invitation_id: str, *, accepted_at: str | None, expires_at: str, sealed: bool = True
) -> None:
    """A user u-1 whose invitation ``invitation_id`` is recorded (sealed, or plain as releases before 0.2 did)."""
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    record = {"sealed": SEALER.seal(invitation_id, "u-1")} if sealed else {"id": invitation_id}
    record["expires_at"] = expires_at
    proxy.add_user("u-1", "alice@example.com", metadata={"x": 1, OWNER_KEY: {"managed": True, "invitation": record}})
    proxy.invitations[invitation_id] = {
        "id": invitation_id,
        "user_id": "u-1",
        "is_accepted": accepted_at is not None,
        "accepted_at": accepted_at,
        "expires_at": expires_at,
    }


def test_an_expired_invitation_that_was_accepted_is_recorded_at_apply_without_a_new_link():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at="2031-11-14T09:00:00Z", expires_at="2031-11-20T00:00:00Z")
    plan = plan_against(proxy, ALICE)
    assert [(a.kind, a.address) for a in plan.actions] == [("renew_invitation", "invitation.alice@example.com")]
    assert not [r for r in proxy.requests if r[1] == "/invitation/info"], "the plan never looks an invitation up"
    report = apply(proxy, plan)
    assert report.ok and report.invitations == [] and proxy.posts("/invitation/new") == []
    assert "accepted on 2031-11-14" in report.results[0].detail
    owned = proxy.users["u-1"]["metadata"][OWNER_KEY]
    assert owned["invitation"]["accepted_at"] == "2031-11-14T09:00:00Z" and proxy.users["u-1"]["metadata"]["x"] == 1
    assert plan_against(proxy, ALICE).actions == ()


def test_an_expired_invitation_not_accepted_is_renewed():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at="2031-11-20T00:00:00Z")
    report = apply(proxy, plan_against(proxy, ALICE))
    assert report.ok and len(proxy.posts("/invitation/new")) == 1
    (record,) = report.invitations
    assert record.status == "created" and record.invitation_id != "inv-7"
    assert SEALER.open(proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]["sealed"], "u-1") == record.invitation_id
    assert plan_against(proxy, ALICE).actions == ()


def test_a_sealed_id_that_does_not_open_is_renewed_once_expired():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at="2031-11-20T00:00:00Z")
    report = Executor(proxy.client(), UI, sealer=Sealer("rotated")).run(plan_against(proxy, ALICE))
    assert report.ok and len(report.invitations) == 1
    assert not [r for r in proxy.requests if r[1] == "/invitation/info"]


def test_a_pending_sealed_invitation_needs_nothing():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at="2031-12-01T00:00:00Z")
    assert plan_against(proxy, ALICE).actions == ()


@pytest.mark.parametrize("expires_at", ["2031-12-01T00:00:00Z", "2031-11-20T00:00:00Z"])
def test_a_plain_invitation_id_is_deleted_on_the_proxy_and_replaced(expires_at):
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at=expires_at, sealed=False)
    plan = plan_against(proxy, ALICE)
    (action,) = plan.actions
    assert action.kind == "replace_invitation" and EXPOSED_REASON in action.reason
    assert "inv-7" not in json.dumps(plan.to_dict()), "the plan never carries an id"
    report = apply(proxy, plan)
    assert report.ok
    assert proxy.posts("/invitation/delete") == [{"invitation_id": "inv-7"}] and "inv-7" not in proxy.invitations
    (record,) = report.invitations
    recorded = proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert "id" not in recorded and SEALER.open(recorded["sealed"], "u-1") == record.invitation_id
    assert plan_against(proxy, ALICE).actions == ()


def test_a_plain_invitation_id_that_was_accepted_is_deleted_and_not_replaced():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at="2031-11-25T08:00:00Z", expires_at="2031-12-01T00:00:00Z", sealed=False)
    report = apply(proxy, plan_against(proxy, ALICE))
    assert report.ok and report.invitations == [] and proxy.posts("/invitation/new") == []
    assert "inv-7" not in proxy.invitations, "on 1.80 an opened link stays usable until it expires"
    recorded = proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert recorded == {"expires_at": "2031-12-01T00:00:00Z", "accepted_at": "2031-11-25T08:00:00Z"}
    assert plan_against(proxy, ALICE).actions == ()


def test_a_plain_id_no_longer_on_the_proxy_is_replaced_without_a_delete():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at="2031-12-01T00:00:00Z", sealed=False)
    del proxy.invitations["inv-7"]
    report = apply(proxy, plan_against(proxy, ALICE))
    assert report.ok and proxy.posts("/invitation/delete") == [] and len(report.invitations) == 1


def test_an_invitation_without_a_seal_key_fails_before_calling_the_proxy():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    proxy.add_user("u-1", "alice@example.com", metadata={OWNER_KEY: {"managed": True}})
    report = Executor(proxy.client(), UI).run(plan_against(proxy, ALICE))
    assert report.results[0].status == "failed" and "seal key" in report.results[0].detail
    assert proxy.posts("/invitation/new") == []


# --------------------------------------------------------------------------- removals and adoption


def test_removals_whose_answers_are_lost_are_confirmed_by_reading_back():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    body = (
        "version: 1\nteams: [{alias: a}, {alias: b}]\n"
        "users: [{email: alice@example.com, teams: [a]}, {email: bob@example.com, teams: [a]}]\n"
    )
    assert apply(proxy, plan_against(proxy, body)).ok
    moved = (
        "version: 1\nremovals: {users: true, memberships: true, teams: true, max_percent: 100}\n"
        "teams: [{alias: b}]\nusers: [{email: alice@example.com, teams: [b]}]\n"
    )
    for path in ("/user/delete", "/team/delete", "/team/member_delete"):
        proxy.fail(path, LOST_RESPONSE)
    plan = plan_against(proxy, moved)
    assert [a.kind for a in plan.actions] == ["add_member", "delete_user", "delete_team"], (
        "team a goes: its memberships go with it"
    )
    report = apply(proxy, plan)
    assert report.ok, report.results
    assert all("confirmed by reading back" in r.detail for r in report.results if r.kind.startswith("delete"))
    assert plan_against(proxy, moved).actions == ()


def test_a_member_already_gone_counts_as_removed_and_adoption_merges_metadata():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    proxy.add_user("u-1", "alice@example.com", metadata={"cost_center": "42"})
    proxy.post_team_new({"team_id": "t-1", "team_alias": "a", "metadata": {"owner": "finance"}})
    proxy.post_team_member_add({"team_id": "t-1", "member": [{"user_id": "u-1", "role": "user"}]})
    proxy.add_user("u-2", "bob@example.com")
    proxy.post_team_member_add({"team_id": "t-1", "member": [{"user_id": "u-2", "role": "user"}]})
    body = (
        "version: 1\nremovals: {memberships: true, max_percent: 100}\nteams: [{alias: a}]\n"
        "users: [{email: alice@example.com, teams: [a]}]\n"
    )
    plan = plan_against(proxy, body)
    assert [a.kind for a in plan.actions] == ["adopt_team", "adopt_user", "remove_member"]
    proxy.post_team_member_delete({"team_id": "t-1", "user_id": "u-2"})  # someone was quicker
    assert apply(proxy, plan).ok
    adopted = {"managed": True, "adopted": True, "granted": {}, "last_change": CHANGE}  # grants tracked from now on
    assert proxy.users["u-1"]["metadata"] == {"cost_center": "42", OWNER_KEY: adopted}
    team = {"managed": True, "adopted": True, "last_change": CHANGE}
    assert proxy.teams["t-1"]["metadata"] == {"owner": "finance", OWNER_KEY: team}
    assert "u-2" in proxy.users, "leaving a team never deletes the user"


def test_no_phantom_unrecorded_link_when_no_link_was_asked_for():
    proxy = FakeLiteLLM()
    proxy.fail("/user/new", error(500, "db down"), when=lambda body: body.get("user_id") == PROXY_ADMIN_ID)
    report = apply(proxy, plan_against(proxy, ALICE))
    assert [r.status for r in report.results] == ["failed", "done", "skipped"], "the inviter failed, so no invitation"
    (user,) = [u for u in proxy.users.values() if u["user_email"] == "alice@example.com"]
    assert "invitation" not in user["metadata"][OWNER_KEY], "the intent written with the user is taken back"
    plan = plan_against(proxy, ALICE)
    assert [a.reason for a in plan.actions if a.kind == "create_invitation"] == [
        "invitation will be created: created by this tool but never invited"
    ]


def test_a_refused_invitation_puts_the_previous_record_back():
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=None, expires_at="2031-11-20T00:00:00Z")
    before = dict(proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"])
    proxy.fail("/invitation/new", error(400, "refused"))
    report = apply(proxy, plan_against(proxy, ALICE))
    assert not report.ok
    assert proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"] == before


# --------------------------------------------------------------------------- concurrency and batching


def many(n: int, teams: int = 3) -> str:
    aliases = [f"team-{t}" for t in range(teams)]
    users = "".join(f"  - {{email: user{i:03d}@example.com, teams: [{aliases[i % teams]}]}}\n" for i in range(n))
    return "version: 1\nteams:\n" + "".join(f"  - alias: {a}\n" for a in aliases) + "users:\n" + users


def test_onboarding_n_users_costs_2n_plus_the_record_groups_plus_teams_writes():
    proxy = FakeLiteLLM()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    file = many(300)
    for alias in ("team-0", "team-1", "team-2"):  # the teams exist, as for the hand-written script
        proxy.post_team_new(
            {"team_id": new_team_id(alias), "team_alias": alias, "metadata": {OWNER_KEY: {"managed": True}}}
        )
    before = len(proxy.requests)
    report = apply(proxy, plan_against(proxy, file))
    assert report.ok
    writes = [path for method, path, _ in proxy.requests[before:] if method == "POST"]
    # Intents and grants ride in /user/new; the bulk updates are the links' records (group commit).
    groups = proxy.posts("/user/bulk_update")
    assert all("sealed" in json.dumps(b) for b in groups), "no write per membership: the grants came with the user"
    assert len(writes) == 2 * 300 + len(groups) + 3
    assert sorted(set(writes)) == ["/invitation/new", "/team/member_add", "/user/bulk_update", "/user/new"]
    assert sum(len(body["users"]) for body in groups) == 300, "each link recorded once"
    assert not plan_against(proxy, file).has_changes


@pytest.mark.parametrize("parallelism", [1, 4, 8])
def test_at_most_about_parallelism_links_exist_unrecorded(parallelism: int) -> None:
    # Group commit: while one record write is out, the links made meanwhile wait for the next.
    proxy = FakeLiteLLM()
    proxy.latency = 0.003
    report = Executor(proxy.client(parallelism=parallelism), UI, sealer=SEALER, clock=lambda: NOW).run(
        plan_against(proxy, many(200))
    )
    assert report.ok and proxy.recorded_links == 200
    assert proxy.most_unrecorded <= parallelism + 1, proxy.most_unrecorded


def test_independent_writes_overlap_and_roster_writes_never_do():
    proxy = FakeLiteLLM()
    proxy.latency = 0.005
    file = many(240, teams=4)
    Executor(proxy.client(parallelism=4), UI, sealer=SEALER, clock=lambda: NOW).run(plan_against(proxy, file))
    assert proxy.most_in_flight["/user/new"] == 4
    # Links overlap, never more than --parallelism, and fewer while their records are out (group commit's room).
    assert 1 < proxy.most_in_flight["/invitation/new"] <= 4
    assert proxy.most_in_flight["/team/new"] > 1
    assert proxy.most_roster_writes == 1
    assert proxy.most_in_flight_at_all == 4, "links and their records together: never more than --parallelism"
    assert len(proxy.posts("/team/member_add")) == 4, "one roster write per team"

    # Removals rewrite rosters too: one at a time, whatever the parallelism.
    removing = (
        "version: 1\nremovals: {memberships: true, users: true, max_percent: 100}\nteams:\n"
        + "".join(f"  - alias: team-{t}\n" for t in range(4))
        + "users: []\n"
    )
    report = Executor(proxy.client(parallelism=8), UI, sealer=SEALER, clock=lambda: NOW).run(
        plan_against(proxy, removing)
    )
    assert report.ok and proxy.posts("/user/delete")
    assert proxy.most_roster_writes == 1


def test_faults_while_requests_are_concurrent_keep_every_guarantee():
    """Lost answers are read back (never re-sent), a refusal skips only its dependants, a link
    whose record fails is still handed over, and the next run converges."""
    proxy = FakeLiteLLM()
    proxy.latency = 0.002
    file = many(60)
    user = {i: new_user_id(f"user{i:03d}@example.com") for i in range(60)}
    proxy.fail("/user/new", LOST_RESPONSE, when=lambda b: b.get("user_id") == user[5])
    proxy.fail("/user/new", LOST_REQUEST, when=lambda b: b.get("user_id") == user[7])
    proxy.fail("/user/new", error(500, "db down"), when=lambda b: b.get("user_id") == user[9])
    proxy.fail("/invitation/new", LOST_RESPONSE, when=lambda b: b["user_id"] == user[11])
    proxy.fail("/invitation/new", error(400, "refused"), when=lambda b: b["user_id"] == user[12])
    proxy.fail(
        "/user/update", error(500, "record lost"), when=lambda b: b["user_id"] == user[13] and "sealed" in str(b)
    )
    courier = Collect()
    report = Executor(proxy.client(parallelism=4), UI, sealer=SEALER, courier=courier, clock=lambda: NOW).run(
        plan_against(proxy, file)
    )
    status = {r.address: (r.status, r.detail) for r in report.results}

    assert status["user.user005@example.com"] == ("done", "confirmed by reading back after the response was lost")
    assert [b["user_id"] for b in proxy.posts("/user/new")].count(user[5]) == 1, "never re-sent"
    for i in (7, 9):
        assert status[f"user.user{i:03d}@example.com"][0] == "failed"
        assert status[f"invitation.user{i:03d}@example.com"][0] == "skipped"
        assert status[f"membership.team-{i % 3}.user{i:03d}@example.com"][0] == "skipped"
    assert status["invitation.user011@example.com"][0] == "failed"
    assert status["invitation.user012@example.com"][0] == "failed"
    assert (
        status["invitation.user013@example.com"][0] == "failed"
        and "not recorded" in status["invitation.user013@example.com"][1]
    )
    assert ("user013@example.com", "created") in [(e, st) for e, st, _ in courier.records], (
        "handed over before its record failed"
    )
    assert sum(1 for r in report.results if r.status == "done") == len(report.results) - 9
    assert [b["user_id"] for b in proxy.posts("/invitation/new")].count(user[11]) == 1, (
        "a lost /invitation/new is never re-sent"
    )

    second = Executor(proxy.client(parallelism=4), UI, sealer=SEALER, courier=courier, clock=lambda: NOW).run(
        plan_against(proxy, file)
    )
    assert second.ok
    unrecorded = sorted(r.email for r in second.invitations if r.status == "unrecorded")
    assert unrecorded == ["user011@example.com"], "a link that may exist unrecorded is reported"
    recorded = {r.address: r.detail for r in second.results if r.kind == "create_invitation"}
    assert "recorded the link an earlier apply made" in recorded["invitation.user013@example.com"], (
        "the link the report holds is recorded, not made twice"
    )
    assert [b["user_id"] for b in proxy.posts("/invitation/new")].count(user[13]) == 1
    assert not plan_against(proxy, file).has_changes


def test_parallelism_one_sends_one_request_at_a_time():
    proxy = FakeLiteLLM()
    proxy.latency = 0.002
    assert (
        Executor(proxy.client(parallelism=1), UI, sealer=SEALER, clock=lambda: NOW)
        .run(plan_against(proxy, many(12)))
        .ok
    )
    assert max(proxy.most_in_flight.values()) == 1


def test_an_update_the_proxy_ignores_fails_and_says_what_to_do_instead():
    """LiteLLM drops ``models: []`` on /user/update: the apply says so, rather than a verification plan
    that never comes out empty; what it could change, it changed."""
    proxy = FakeLiteLLM()
    proxy.add_user("u-1", "a@x.io", models=["gpt-4o"], tpm_limit=5, metadata={OWNER_KEY: {"managed": True}})
    report = apply(proxy, plan_against(proxy, "version: 1\nusers:\n  - {email: a@x.io, models: [], tpm_limit: 9}\n"))
    [result] = [r for r in report.results if r.address == "user.a@x.io"]  # besides the inviter's row
    assert result.status == "failed"
    assert result.detail == (
        'this LiteLLM version ignores clearing models (["gpt-4o"]); give a value instead (models: list them), '
        "or drop the field from the file to stop managing it"
    )
    assert proxy.users["u-1"]["tpm_limit"] == 9 and proxy.users["u-1"]["models"] == ["gpt-4o"]


def test_member_permissions_go_through_their_own_endpoint_and_the_rest_through_team_update():
    proxy = FakeLiteLLM()
    text = "version: 1\nteams:\n  - {alias: builders, max_budget: 5, team_member_permissions: [/key/generate]}\n"
    apply(proxy, plan_against(proxy, text))
    changed = text.replace("max_budget: 5", "max_budget: 7").replace("[/key/generate]", "[/key/generate, /key/update]")
    report = apply(proxy, plan_against(proxy, changed))
    assert report.ok, report.results
    [team] = proxy.teams.values()
    assert (team["max_budget"], team["team_member_permissions"]) == (7, ["/key/generate", "/key/update"])
    assert proxy.posts("/team/permissions_update") == [
        {"team_id": team["team_id"], "team_member_permissions": ["/key/generate", "/key/update"]}
    ]
    assert not plan_against(proxy, changed).has_changes


def test_a_team_leaves_its_organization_by_the_empty_id_litellm_expects():
    proxy = FakeLiteLLM()
    proxy.post_team_new({"team_id": "t-1", "team_alias": "a"})
    proxy.client().update_team({"team_id": "t-1", "organization_id": None, "max_budget": 1})
    assert proxy.posts("/team/update") == [{"team_id": "t-1", "organization_id": "", "max_budget": 1}]


def test_new_members_join_in_one_call_per_role_and_budget():
    proxy = FakeLiteLLM()
    text = (
        "version: 1\nteams: [{alias: ops}]\nusers:\n"
        "  - {email: a@example.com, teams: [{team: ops, max_budget_in_team: 5}]}\n"
        "  - {email: b@example.com, teams: [ops]}\n"
        "  - {email: c@example.com, teams: [{team: ops, max_budget_in_team: 5}]}\n"
    )
    report = apply(proxy, plan_against(proxy, text))
    assert report.ok, report.results
    calls = proxy.posts("/team/member_add")
    assert [(len(c["member"]), c.get("max_budget_in_team")) for c in calls] == [(2, 5), (1, None)]


@pytest.mark.parametrize("fault, outcome", [(LOST_RESPONSE, "done"), (LOST_REQUEST, "failed")])
def test_a_membership_update_without_response_is_read_back_and_never_resent(fault, outcome):
    proxy = FakeLiteLLM()
    text = (
        "version: 1\nteams: [{alias: ops}]\n"
        "users: [{email: a@example.com, teams: [{team: ops, max_budget_in_team: 5}]}]\n"
    )

    def planned(body: str) -> Plan:  # with the members' budgets, which only read_for reads
        return make_plan(desired(body), read_for(desired(body), proxy.client()), NOW)

    assert apply(proxy, planned(text)).ok
    changed = text.replace("max_budget_in_team: 5", "max_budget_in_team: 8")
    assert [a.kind for a in planned(changed).actions] == ["update_member"]
    proxy.fail("/team/member_update", fault)
    report = apply(proxy, planned(changed))
    [result] = [r for r in report.results if r.address == "membership.ops.a@example.com"]
    assert result.status == outcome
    assert ("confirmed by reading back" if outcome == "done" else "not re-sent") in result.detail
    assert len(proxy.posts("/team/member_update")) == 1
    assert planned(changed).has_changes is (outcome == "failed")


# --------------------------------------------------------------------------- used links


def _open_links(proxy: FakeLiteLLM, skip: frozenset[str] = frozenset()) -> list[UsedLink]:
    return used_links(proxy.client(), list(read_live(proxy.client()).users), SEALER, start_of_day(NOW), skip)


@pytest.mark.parametrize(
    "accepted_at, expires_at, found",
    [
        ("2031-11-27T09:00:00Z", "2031-12-01T00:00:00Z", True),  # used and still open: closed
        (None, "2031-12-01T00:00:00Z", False),  # not used yet
        ("2031-11-14T09:00:00Z", "2031-11-20T00:00:00Z", False),  # expired: renew_invitation's to record
    ],
)
def test_used_links_are_the_open_accepted_ones(accepted_at: str | None, expires_at: str, found: bool) -> None:
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at=accepted_at, expires_at=expires_at)
    links = _open_links(proxy)
    assert links == ([UsedLink("u-1", "alice@example.com", "inv-7", accepted_at)] if found else [])
    assert _open_links(proxy, skip=frozenset({"u-1"})) == [], "a user the plan invites is the plan's"


def test_a_used_link_is_deleted_before_its_acceptance_is_recorded() -> None:
    proxy = FakeLiteLLM()
    _invited(proxy, "inv-7", accepted_at="2031-11-27T09:00:00Z", expires_at="2031-12-01T00:00:00Z")
    [link] = _open_links(proxy)
    proxy.fail("/invitation/delete", error(500, "database is down"))
    [failed] = Executor(proxy.client(), UI, sealer=SEALER, clock=lambda: NOW).close_used_links([link])
    assert failed.status == "failed" and "accepted_at" not in proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert _open_links(proxy) == [link], "still open, so the next apply tries again"

    [closed] = Executor(proxy.client(), UI, sealer=SEALER, clock=lambda: NOW).close_used_links([link])
    assert (closed.status, closed.kind) == ("done", "close_invitation") and "inv-7" not in proxy.invitations
    record = proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert record["accepted_at"] == "2031-11-27T09:00:00Z" and proxy.users["u-1"]["metadata"]["x"] == 1
    assert _open_links(proxy) == []


# --------------------------------------------------------------------------- ids sealed the old way


def _sealed_the_old_way(proxy: FakeLiteLLM, secret: str, **record: Any) -> None:
    _invited(proxy, "inv-7", accepted_at=record.get("accepted_at"), expires_at=record["expires_at"])
    owned = proxy.users["u-1"]["metadata"][OWNER_KEY]
    owned["invitation"] = {"sealed": legacy_seal(secret, "inv-7", "u-1"), **record}


@pytest.mark.parametrize(
    "record, planned",
    [
        ({"expires_at": "2031-12-01T00:00:00Z"}, "reseal_invitation"),  # open link
        ({"expires_at": "2031-11-20T00:00:00Z", "accepted_at": "2031-11-14T09:00:00Z"}, "reseal_invitation"),
        ({"expires_at": "2031-11-20T00:00:00Z"}, "renew_invitation"),  # its new link is sealed the new way
    ],
)
def test_an_id_sealed_the_old_way_is_sealed_again(record: dict[str, str], planned: str) -> None:
    proxy = FakeLiteLLM()
    _sealed_the_old_way(proxy, "apply-side-secret", **record)
    plan = plan_against(proxy, ALICE)
    assert [(a.kind, a.address) for a in plan.actions] == [(planned, "invitation.alice@example.com")]
    assert not plan.has_changes or planned == "renew_invitation", "sealing again changes nobody's access"
    report = apply(proxy, plan)
    assert report.ok, report.results
    sealed = proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]["sealed"]
    assert sealed.startswith("v2.") and SEALER.open(sealed, "u-1") in ("inv-7", *proxy.invitations)
    assert plan_against(proxy, ALICE).actions == ()


@pytest.mark.parametrize(
    "record, status",
    [
        ({"expires_at": "2031-11-20T00:00:00Z", "accepted_at": "2031-11-14T09:00:00Z"}, "done"),
        ({"expires_at": "2031-12-01T00:00:00Z"}, "failed"),
    ],
    ids=["link done: dropped", "link open: reported"],
)
def test_an_old_seal_no_key_opens_is_dropped_when_done_and_reported_when_open(
    record: dict[str, str], status: str
) -> None:
    proxy = FakeLiteLLM()
    _sealed_the_old_way(proxy, "the-key-before-rotation", **record)
    [result] = apply(proxy, plan_against(proxy, ALICE)).results
    kept = proxy.users["u-1"]["metadata"][OWNER_KEY]["invitation"]
    assert result.status == status
    if status == "done":
        assert "sealed" not in kept and kept["accepted_at"] and "dropped" in result.detail
    else:
        assert kept["sealed"].startswith("v1.") and "LITELLM_RECONCILER_SEAL_KEY" in result.detail


def test_the_memberships_it_grants_are_recorded_beside_the_link() -> None:
    # Provenance and the link's record live side by side in the user's metadata; neither erases the other.
    proxy = FakeLiteLLM()
    file = "version: 1\nteams: [{alias: dev}, {alias: ops}]\nusers: [{email: alice@example.com, teams: [dev, ops]}]\n"
    assert apply(proxy, plan_against(proxy, file)).ok
    owned = next(u for u in proxy.users.values() if u["user_email"] == "alice@example.com")["metadata"][OWNER_KEY]
    assert owned["granted"] == {"teams": sorted([new_team_id("dev"), new_team_id("ops")])}
    assert owned["invitation"]["sealed"].startswith("v2.")
    leaving = file.replace("teams: [dev, ops]}", "teams: [dev]}").replace(
        "version: 1\n", "version: 1\nremovals: {memberships: owned}\n"
    )
    assert apply(proxy, plan_against(proxy, leaving)).ok
    owned = next(u for u in proxy.users.values() if u["user_email"] == "alice@example.com")["metadata"][OWNER_KEY]
    assert owned["granted"] == {"teams": [new_team_id("dev")]} and owned["invitation"]["sealed"]


class Killed(BaseException):
    """The process dies (kill -9) at a chosen moment."""


def _killed_before_any_link(proxy: FakeLiteLLM, courier: Collect) -> None:
    """An apply that dies once its users exist (their intents recorded with them), before any link."""
    phases = iter(range(100))

    def confirm() -> None:
        if next(phases) == 1:  # 0: the users; 1: the first batch of links
            raise Killed

    executor = Executor(proxy.client(), UI, sealer=SEALER, courier=courier, clock=lambda: NOW, before_writes=confirm)
    with pytest.raises(Killed):
        executor.run(plan_against(proxy, ALICE))
    alice = next(u for u in proxy.users.values() if u["user_email"] == "alice@example.com")
    assert "intent_at" in alice["metadata"][OWNER_KEY]["invitation"] and not proxy.invitations


@pytest.mark.parametrize("report_kept", [True, False])
def test_a_run_killed_before_asking_for_links_reports_none_when_its_report_says_so(report_kept: bool) -> None:
    proxy, courier = FakeLiteLLM(), Collect()
    proxy.add_user(PROXY_ADMIN_ID, None, user_role="proxy_admin")
    _killed_before_any_link(proxy, courier)
    again = courier if report_kept else Collect()
    report = Executor(proxy.client(), UI, sealer=SEALER, courier=again, clock=lambda: NOW).run(
        plan_against(proxy, ALICE)
    )
    unrecorded = [r for r in report.invitations if r.status == "unrecorded"]
    assert report.ok and len(proxy.invitations) == 1
    assert unrecorded == [] if report_kept else len(unrecorded) == 1, "a lost report cannot prove no link was asked"
