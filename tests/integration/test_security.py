"""What a read-only key can reach, on the real proxy: no usable onboarding link, ever.

The plan job of every same-repository pull request holds a ``proxy_admin_viewer`` key,
so anyone who can push a branch can read what that key reads. These tests read all of
it and look for the pending invitation ids taken from the proxy's own database.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from .conftest import Api, proxy_version
from .test_invitations import accept, age_invitation, links_in_db, report
from .test_lifecycle import apply_ok, json_plan, write

USERS = """\
version: 1
teams:
  - alias: dev
users:
  - email: alice@company.com
    teams: [dev]
  - email: bob@company.com
    teams: [dev]
  - email: root@company.com
    role: proxy_admin
"""


def viewer_key(api: Api) -> str:
    """A key of a ``proxy_admin_viewer`` user: what the plan job of a pull request holds."""
    api.post("/user/new", {"user_id": "plan-bot", "user_role": "proxy_admin_viewer", "auto_create_key": False})
    return str(api.post("/key/generate", {"user_id": "plan-bot"})["key"])  # type: ignore[index]


def everything_readable(url: str, key: str) -> str:
    """Every answer the read-only key gets from the endpoints that show users and teams."""
    seen: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:

        def get(path: str, must: bool = True, **params: object) -> object:
            response = http.get(path, params=params)
            seen.append(response.text)
            assert response.status_code == 200 or (not must and response.status_code == 403), (
                path,
                response.status_code,
                response.text[:300],
            )
            return response.json()

        page, users = 1, []
        while True:
            body = get("/user/list", page=page, page_size=2)
            users += body["users"]  # type: ignore[index]
            if page >= body["total_pages"]:  # type: ignore[index]
                break
            page += 1
        for user in users:  # 1.80 answers 403 for other users' info; whatever it answers is read
            get("/user/info", must=False, user_id=user["user_id"])
        teams = get("/team/list")
        get("/v2/team/list", page_size=100)
        for team in teams:  # type: ignore[union-attr]
            get("/team/info", must=False, team_id=team["team_id"])
    assert len(users) >= 4
    return "\n".join(seen)


def pending_ids(sql) -> list[str]:
    return [i for i in sql('select id from "LiteLLM_InvitationLink" where is_accepted = false').splitlines() if i]


def test_a_read_only_key_reads_no_pending_link_and_still_plans(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    key = viewer_key(api)
    ids = pending_ids(sql)
    assert len(ids) == 3, "alice, bob and the pending proxy_admin"

    readable = everything_readable(proxy[0], key)
    leaked = [i for i in ids if i in readable or i.replace("-", "") in readable]
    assert leaked == [], "a read-only key must not reach a usable onboarding link"

    viewer = {"LITELLM_API_KEY": key, "LITELLM_MASTER_KEY": "", "LITELLM_RECONCILER_SEAL_KEY": ""}
    assert cli("plan", "--detailed-exitcode", env=viewer).returncode == 0, "converged, and the viewer sees it"

    # Alice accepts, then both links pass their expiry date. The viewer's plan shows both
    # expired (it cannot open a sealed id to look further); apply, which can, records
    # Alice's acceptance and renews only Bob's link.
    records = {r["email"]: r for r in report(tmp_path)}
    accept(proxy[0], records["alice@company.com"])
    for email in ("alice@company.com", "bob@company.com"):
        age_invitation(sql, records[email]["invitation_id"], 9)
    plan = json.loads(cli("plan", "--format", "json", env=viewer).stdout)
    assert [(a["kind"], a["address"]) for a in plan["actions"]] == [
        ("renew_invitation", "invitation.alice@company.com"),
        ("renew_invitation", "invitation.bob@company.com"),
    ]
    assert all("expired on" in a["reason"] and "if it was accepted" in a["reason"] for a in plan["actions"])
    status = cli("invitations", env=viewer).stdout
    assert re.search(r"bob@company.com\s+expired", status)

    applied = apply_ok(cli)
    assert re.search(
        r"invitation.alice@company.com: done \(accepted on \d{4}-\d\d-\d\d; recorded, no new link\)", applied
    ), applied
    assert links_in_db(sql)[records["alice@company.com"]["user_id"]] == 1
    assert links_in_db(sql)[records["bob@company.com"]["user_id"]] == 2
    assert cli("plan", "--detailed-exitcode", env=viewer).returncode == 0
    status = cli("invitations", env=viewer).stdout
    assert re.search(r"alice@company.com\s+accepted", status)
    assert re.search(
        (
            r"bob@company.com\s+pending\s+pending until [0-9-]+ \(in an onboarding report; not verified: "
            r"needs the seal key\)"
        ),
        status,
    )
    assert not [i for i in pending_ids(sql) if i in everything_readable(proxy[0], key)]


def test_plain_ids_of_the_previous_release_are_deleted_and_replaced(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    records = {r["email"]: r for r in report(tmp_path)}
    # Rewrite the records as the previous release kept them: the id in plain text. Alice had
    # opened hers (on 1.80 an opened link stays usable until it expires).
    accept(proxy[0], records["alice@company.com"])
    for email, record in records.items():
        legacy = {"id": record["invitation_id"], "expires_at": record["expires_at"]}
        if email == "alice@company.com":
            legacy["accepted_at"] = "2021-11-30T10:00:00Z"
        api.post(
            "/user/update",
            {"user_id": record["user_id"], "metadata": {"litellm_reconciler": {"managed": True, "invitation": legacy}}},
        )

    plan = json.loads(cli("plan", "--format", "json").stdout)
    assert {a["address"]: a["kind"] for a in plan["actions"]} == {
        f"invitation.{e}": "replace_invitation" for e in records
    }
    assert all(a["reason"].startswith("link was readable by read-only keys") for a in plan["actions"])
    assert not [r["invitation_id"] for r in records.values() if r["invitation_id"] in json.dumps(plan)]

    apply_ok(cli)
    remaining = set(sql('select id from "LiteLLM_InvitationLink"').splitlines())
    assert not remaining & {r["invitation_id"] for r in records.values()}, "every exposed link is deleted on the proxy"
    for record in records.values():
        rejected = httpx.get(
            f"{proxy[0]}/onboarding/get_token", params={"invite_link": record["invitation_id"]}, timeout=30
        )
        assert rejected.status_code in (400, 401), rejected.text
    renewed = {r["email"] for r in report(tmp_path)[len(records) :]}
    assert renewed == {"bob@company.com", "root@company.com"}, "the accepted user gets no new link"
    assert len(pending_ids(sql)) == 2
    for user in api.users():
        recorded = (user.get("metadata") or {}).get("litellm_reconciler", {}).get("invitation")
        if recorded:
            assert "id" not in recorded
    assert json_plan(cli)["actions"] == []


def test_a_silent_privilege_escalation_is_always_drift(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    alice = next(u for u in api.users() if u["user_email"] == "alice@company.com")
    api.post("/user/update", {"user_id": alice["user_id"], "user_role": "proxy_admin"})  # not through the file
    viewer_key(api)

    plan = json.loads(cli("plan", "--format", "json").stdout)
    assert plan["actions"] == [], "alice's role is not managed by the file"
    privileged = {d["address"]: d["detail"] for d in plan["drift"] if d["kind"] == "privilege"}
    assert privileged == {
        "user.alice@company.com": (
            f"has the role proxy_admin on the proxy (user_id {alice['user_id']}); "
            "the file declares no role (internal_user for new users)"
        ),
        "user.plan-bot": (
            "has the role proxy_admin_viewer on the proxy (user_id plan-bot); the file does not declare this user"
        ),
    }


def test_a_duplicate_email_made_by_a_read_only_key_stops_nothing(api: Api, cli, tmp_path: Path, proxy) -> None:
    # On 1.80.5 a proxy_admin_viewer key creates an account with /user/update and no user_id (it answers
    # 400, "Authentication Error", and makes it anyway). A second "alice" beside the tool's must not stop
    # every plan, apply and drift check.
    write(tmp_path, USERS)
    apply_ok(cli)
    owned = {u["user_email"]: u["user_id"] for u in api.users() if u.get("user_email")}["alice@company.com"]
    key = viewer_key(api)
    httpx.post(
        f"{proxy[0]}/user/update",
        headers={"Authorization": f"Bearer {key}"},
        json={"user_email": "ALICE@company.com", "password": "chosen-by-the-attacker"},
        timeout=30,
    )
    if proxy_version(proxy[0]).startswith("1.80."):
        made = [u["user_id"] for u in api.users() if u.get("user_email") == "ALICE@company.com"]
        assert len(made) == 1, "the read-only key made an account on 1.80.5"
    else:  # later releases refuse the viewer: the master key makes the same duplicate
        api.post("/user/update", {"user_id": "intruder", "user_email": "ALICE@company.com"})
    [intruder] = [u["user_id"] for u in api.users() if u.get("user_email") == "ALICE@company.com"]
    # Two accounts nobody gave to the tool, for a user the file now declares.
    for user_id in ("carol-1", "carol-2"):
        api.post("/user/update", {"user_id": user_id, "user_email": f"{user_id[:5]}@company.com".upper()})
    write(tmp_path, USERS + "  - email: dave@company.com\n    teams: [dev]\n  - email: carol@company.com\n")

    plan = json_plan(cli)
    drift = {(d["kind"], d["address"]): d["detail"] for d in plan["drift"]}
    assert owned in drift[("duplicate", f"user.{intruder}")]
    assert "carol-1, carol-2" in drift[("refused", "user.carol@company.com")]
    assert not [a for a in plan["actions"] if "carol" in a["address"] or a["params"].get("user_id") == intruder]
    assert "user.dave@company.com" in {a["address"] for a in plan["actions"]}

    apply_ok(cli)
    emails = {u["user_id"]: u.get("user_email") for u in api.users()}
    assert emails[intruder] == "ALICE@company.com" and "dave@company.com" in emails.values()
    assert json_plan(cli)["has_changes"] is False, "the rest converged"


def test_the_plan_says_what_its_key_could_change(api: Api, cli, tmp_path: Path, proxy) -> None:
    # The plan job's key is held by whoever can push a branch: the plan says when it is not read-only.
    write(tmp_path, USERS)
    as_viewer = cli("plan", "--format", "json", env={"LITELLM_MASTER_KEY": "", "LITELLM_API_KEY": viewer_key(api)})
    warnings = json.loads(as_viewer.stdout)["warnings"]
    if proxy_version(proxy[0]).startswith("1.80."):
        [warning] = warnings
        assert warning.startswith("on LiteLLM 1.80.5 the read-only key this plan used can still block and unblock")
        assert "/user/update without a user_id" in warning
    else:
        assert warnings == [], "1.110 refuses the viewer every write"
    admin = api.post("/user/new", {"user_id": "admin-bot", "user_role": "proxy_admin"})["key"]  # type: ignore[index]
    as_admin = cli("plan", "--format", "json", env={"LITELLM_MASTER_KEY": "", "LITELLM_API_KEY": admin})
    assert json.loads(as_admin.stdout)["warnings"][0].startswith("this plan read the proxy with a proxy_admin key")
    assert json.loads(cli("plan", "--format", "json").stdout)["warnings"] == [], "the master key is the apply's"


def test_what_a_read_only_key_can_change_is_what_the_tool_says(api: Api, proxy) -> None:
    # client.VIEWER_WRITES_BEFORE_1_110, and docs/security.md, against the proxy itself.
    team = api.post("/team/new", {"team_alias": "dev"})["team_id"]  # type: ignore[index]
    key = viewer_key(api)
    with httpx.Client(base_url=proxy[0], headers={"Authorization": f"Bearer {key}"}, timeout=30) as viewer:
        blocked = viewer.post("/team/block", json={"team_id": team}).status_code
        viewer.post("/user/update", json={"user_email": "made@company.com", "password": "chosen-by-the-viewer"})
        refused = [viewer.post(p, json=b).status_code for p, b in (("/user/new", {}), ("/team/update", {}))]
    made = any(u.get("user_email") == "made@company.com" for u in api.users())
    old = proxy_version(proxy[0]).startswith("1.80.")
    assert (blocked == 200, made) == (old, old)
    assert refused == [403, 403]


def test_a_privileged_role_is_never_handed_to_an_account_someone_else_made(
    api: Api, cli, tmp_path: Path, proxy
) -> None:
    # The attack: a read-only key (1.80.5) or anyone else makes an account with a password of their choosing
    # for an email the file will declare as proxy_admin. Adopting it must not hand them the proxy.
    if proxy_version(proxy[0]).startswith("1.80."):
        made = httpx.post(
            f"{proxy[0]}/user/update",
            headers={"Authorization": f"Bearer {viewer_key(api)}"},
            json={"user_email": "boss@company.com", "password": "chosen-by-the-attacker"},
            timeout=30,
        )
        assert made.status_code == 400, "1.80.5 answers 'Authentication Error' and makes the account anyway"
    else:  # the viewer may not on 1.110: anyone who can write makes the same account
        api.post("/user/new", {"user_email": "boss@company.com", "auto_create_key": False})
    [account] = [u for u in api.users() if u.get("user_email") == "boss@company.com"]
    write(tmp_path, "version: 1\nusers:\n  - email: boss@company.com\n    role: proxy_admin\n")

    plan = json_plan(cli)
    assert [a["kind"] for a in plan["actions"]] == ["adopt_user"], "adopted visibly, the role not granted"
    assert plan["actions"][0]["reason"].startswith(f"adopt existing account (user_id {account['user_id']}, created")
    [refused] = [d for d in plan["drift"] if d["kind"] == "refused"]
    assert f"pin it: 'id: {account['user_id']}'" in refused["detail"]
    apply_ok(cli)
    roles = {u["user_id"]: u["user_role"] for u in api.users()}
    assert roles[account["user_id"]] != "proxy_admin", "apply did not grant it"

    write(
        tmp_path,
        f"version: 1\nusers:\n  - email: boss@company.com\n    id: {account['user_id']}\n    role: proxy_admin\n",
    )
    apply_ok(cli)
    assert {u["user_id"]: u["user_role"] for u in api.users()}[account["user_id"]] == "proxy_admin", "pinned: granted"
    assert json_plan(cli)["actions"] == []
