"""Invitations on the real proxy: invite once, notice acceptance and expiry, never leak a link."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx

from reconciler.onboarding import load_report

from ..test_delivery import Collector, serve  # noqa: F401 (serve is a fixture)
from .conftest import Api, proxy_version
from .test_lifecycle import apply_ok, json_plan, write

USERS = """\
version: 1
users:
  - email: alice@company.com
  - email: bob@company.com
"""
LINK = re.compile(r"invitation_id=[0-9a-f-]{36}")


def report(tmp_path: Path, name: str = "onboarding_results.jsonl") -> list[dict]:
    return load_report(tmp_path / name)


def age_invitation(sql, invitation_id: str, days: int) -> None:
    """Move an invitation's expiry into the past, as time would: on the proxy's row and on the
    copy the tool recorded in the user's metadata when it created the link (LiteLLM fixes the
    expiry at creation, so the two only differ if someone edits the database)."""
    sql(
        f"update \"LiteLLM_InvitationLink\" set expires_at = expires_at - interval '{days} days' "
        f"where id = '{invitation_id}'"
    )
    expires = sql(
        "select to_char(expires_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
        f"from \"LiteLLM_InvitationLink\" where id = '{invitation_id}'"
    )
    sql(
        'update "LiteLLM_UserTable" set metadata = jsonb_set(metadata::jsonb, '
        "'{litellm_reconciler,invitation,expires_at}', "
        f"to_jsonb('{expires}'::text)) "
        f"where user_id = (select user_id from \"LiteLLM_InvitationLink\" where id = '{invitation_id}')"
    )


def _jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (the test only reads what the UI would read)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def accept(url: str, record: dict) -> None:
    """Accept a link through the proxy's own onboarding endpoints, as the UI does. From ~1.90
    the claim needs the onboarding token that get_token returns; older proxies ignore it."""
    opened = httpx.get(f"{url}/onboarding/get_token", params={"invite_link": record["invitation_id"]}, timeout=30)
    opened.raise_for_status()
    session = _jwt_claims(opened.json()["token"])["key"]  # what the UI sends back as its bearer
    httpx.post(
        f"{url}/onboarding/claim_token",
        json={
            "invitation_link": record["invitation_id"],
            "user_id": record["user_id"],
            "password": "A-long-test-passw0rd!",
        },
        headers={"Authorization": f"Bearer {session}"},
        timeout=30,
    ).raise_for_status()


def links_in_db(sql) -> dict[str, int]:
    rows = sql('select user_id, count(*) from "LiteLLM_InvitationLink" group by user_id')
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines() if line}


def test_fresh_proxy_new_users_get_one_pending_invitation_each(api: Api, cli, tmp_path: Path, sql) -> None:
    # An empty database and no teams: nothing has created the master key's user row, so
    # /invitation/new would fail on its created_by foreign key unless the plan provides it.
    assert sql('select count(*) from "LiteLLM_UserTable"') == "0"
    write(tmp_path, USERS)

    plan = json_plan(cli)
    assert ("create_inviter", "user.default_user_id") in {(a["kind"], a["address"]) for a in plan["actions"]}
    result = cli("apply", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr

    records = report(tmp_path)  # in creation order: links are asked for concurrently
    assert sorted((r["email"], r["status"], r["error"]) for r in records) == [
        ("alice@company.com", "created", None),
        ("bob@company.com", "created", None),
    ]
    assert (tmp_path / "onboarding_results.jsonl").stat().st_mode & 0o777 == 0o600
    assert links_in_db(sql) == {r["user_id"]: 1 for r in records}
    for r in records:
        assert r["onboarding_link"].endswith(f"/ui/onboarding?invitation_id={r['invitation_id']}")
        info = api.get("/invitation/info", invitation_id=r["invitation_id"])
        assert info["is_accepted"] is False and info["user_id"] == r["user_id"]
    assert "Invited alice@company.com (valid until " in result.stdout
    assert not LINK.search(result.stdout + result.stderr), "links only go to the report"

    again = cli("apply", "--yes")
    assert again.returncode == 0 and "No changes." in again.stdout
    assert links_in_db(sql) == {r["user_id"]: 1 for r in records}, "a second apply creates no invitation"
    status = cli("invitations")
    assert status.returncode == 0
    assert re.search(r"alice@company.com\s+pending\s+pending until \d{4}-\d\d-\d\d", status.stdout)
    assert not LINK.search(status.stdout)


def by_email(records: list[dict], email: str) -> dict:
    """The record of one user (links are created concurrently: the report is in creation order)."""
    (record,) = [r for r in records if r["email"] == email]
    return record


def test_link_opens_the_onboarding_page_and_is_accepted_by_the_proxy(api: Api, cli, tmp_path: Path, proxy) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    record = by_email(report(tmp_path), "alice@company.com")

    page = httpx.get(record["onboarding_link"], follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    token = httpx.get(f"{proxy[0]}/onboarding/get_token", params={"invite_link": record["invitation_id"]}, timeout=30)
    assert token.status_code == 200, token.text
    assert token.json()["user_email"] == "alice@company.com"


def test_accepted_invitation_is_recorded_at_apply_and_never_renewed(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    alice = by_email(report(tmp_path), "alice@company.com")
    accept(proxy[0], alice)

    assert json_plan(cli)["actions"] == [], "an unexpired link needs nothing, accepted or not"
    assert re.search(r"alice@company.com\s+accepted", cli("invitations").stdout), "the master key opens the sealed id"

    age_invitation(sql, alice["invitation_id"], 30)
    plan = cli("plan", "--detailed-exitcode")
    assert plan.returncode == 2, "only apply can tell an accepted link from an expired one"
    assert "invitation.alice@company.com" in plan.stdout and "apply records it if it was accepted" in plan.stdout
    assert (
        "Plan: 0 to add, 1 to change, 0 to remove (1 expired invitation to renew or record as accepted)." in plan.stdout
    )
    assert "accepted on" in apply_ok(cli)
    assert json_plan(cli)["actions"] == [], "an accepted invitation is never renewed, even past its expiry"
    assert links_in_db(sql)[alice["user_id"]] == 1
    assert re.search(r"alice@company.com\s+accepted", cli("invitations").stdout)


def test_a_used_link_dies_at_the_next_apply(api: Api, cli, tmp_path: Path, proxy, sql) -> None:
    # On 1.80.5 an accepted link logs in and resets the password again until it expires: once the
    # user has onboarded, the next apply deletes it, whether or not it has anything else to do. From
    # 1.83 (1.110.2 here) the proxy refuses a used link itself, and apply does not look.
    write(tmp_path, USERS)
    apply_ok(cli)
    alice, bob = (by_email(report(tmp_path), f"{name}@company.com") for name in ("alice", "bob"))
    accept(proxy[0], alice)
    before = {"users": api.users(), "teams": api.teams()}

    assert json_plan(cli)["actions"] == [], "the plan is no different: only the apply side can open the link"
    closing = apply_ok(cli)

    reused = httpx.get(f"{proxy[0]}/onboarding/get_token", params={"invite_link": alice["invitation_id"]}, timeout=30)
    assert reused.status_code in (400, 401, 404), reused.text
    if not proxy_version(proxy[0]).startswith("1.80."):
        assert "No changes." in closing and api.users() == before["users"], "nothing to close: nothing written"
        return
    assert "invitation.alice@company.com: done (the used link was deleted; accepted on" in closing
    assert alice["user_id"] not in links_in_db(sql) and links_in_db(sql)[bob["user_id"]] == 1, "bob's still open"
    owned = {u["user_id"]: u["metadata"].get("litellm_reconciler") for u in api.users()}
    assert owned[alice["user_id"]]["invitation"]["accepted_at"]
    assert re.search(r"alice@company.com\s+accepted", cli("invitations").stdout)
    changed = [u["user_id"] for u in api.users() if u not in before["users"]]
    assert changed == [alice["user_id"]], "only alice's record was written"

    again = apply_ok(cli)
    assert "No changes." in again and "Apply complete" not in again, "bob's open link is looked at, not written"


def test_expired_invitation_is_renewed_once(api: Api, cli, tmp_path: Path, sql) -> None:
    write(tmp_path, USERS)
    apply_ok(cli)
    bob = by_email(report(tmp_path), "bob@company.com")
    age_invitation(sql, bob["invitation_id"], 9)
    expired_on = sql(
        f"select to_char(expires_at, 'YYYY-MM-DD') from \"LiteLLM_InvitationLink\" where id = '{bob['invitation_id']}'"
    )

    assert re.search(r"bob@company.com\s+expired", cli("invitations").stdout)
    plan = json_plan(cli)
    assert [(a["kind"], a["address"], a["reason"]) for a in plan["actions"]] == [
        (
            "renew_invitation",
            "invitation.bob@company.com",
            (
                f"the previous invitation expired on {expired_on}; apply records it if it was accepted, "
                "else creates a new link"
            ),
        )
    ]
    apply_ok(cli)
    renewed = report(tmp_path)[-1]
    assert renewed["email"] == "bob@company.com" and renewed["invitation_id"] != bob["invitation_id"]
    assert len(report(tmp_path)) == 3, "the report keeps the first run's links"
    assert links_in_db(sql)[bob["user_id"]] == 2
    assert json_plan(cli)["actions"] == [], "renewed once, then pending again"


def test_existing_users_are_invited_only_when_asked(api: Api, cli, tmp_path: Path) -> None:
    api.post("/team/new", {"team_alias": "bootstrap"})  # creates the inviter row, as a UI login would
    for email in ("old@company.com", "asked@company.com", "later@company.com"):
        api.post("/user/new", {"user_email": email, "user_role": "internal_user", "auto_create_key": False})
    write(
        tmp_path,
        """\
        version: 1
        users:
          - email: old@company.com
          - email: asked@company.com
            invite: true
          - email: later@company.com
        """,
    )
    assert [a["address"] for a in json_plan(cli)["actions"] if a["kind"] != "adopt_user"] == [
        "invitation.asked@company.com"
    ]

    write(
        tmp_path,
        (
            "version: 1\ndefaults:\n  invite: true\nusers:\n  - email: old@company.com\n  - email: later@company.com\n"
            "    invite: false\n"
        ),
    )
    invites = [a for a in json_plan(cli)["actions"] if a["kind"] != "adopt_user"]
    assert [a["address"] for a in invites] == ["invitation.old@company.com"]
    assert invites[0]["reason"] == "invitation will be created: invite: true and never invited by this tool"


def test_show_links_is_the_only_way_links_reach_the_terminal(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, USERS)
    assert not LINK.search(
        cli("plan").stdout + cli("plan", "--format", "markdown").stdout + cli("plan", "--format", "json").stdout
    )
    shown = cli("apply", "--yes", "--show-links", "--ui-url", "https://llm.example.com")
    assert shown.returncode == 0
    assert re.search(
        r"Invited alice@company.com \(valid until [0-9-]+\): https://llm.example.com/ui/onboarding\?invitation_id=",
        shown.stdout,
    )


def test_send_invites_smtp_delivers_each_new_link(
    api: Api,
    cli,
    tmp_path: Path,
    serve,  # noqa: F811 (the fixture imported above)
) -> None:
    mailbox = Collector(reject=("bob@company.com",))
    server = serve(mailbox)
    env = {
        "SMTP_HOST": server.host,
        "SMTP_PORT": str(server.port),
        "SMTP_FROM": "llm@company.com",
        "SMTP_SECURITY": "none",
    }
    write(tmp_path, USERS)

    refused = cli("apply", "--yes", "--send-invites", "smtp", env=env)
    assert refused.returncode == 1 and "--allow-insecure-smtp" in refused.stderr, "no clear-text SMTP unless asked"
    assert api.users() == [], "refused before any write"
    result = cli("apply", "--yes", "--send-invites", "smtp", "--allow-insecure-smtp", env=env)

    assert result.returncode == 1, "a failed send is an error the operator must see"
    assert "Invited alice@company.com (valid until " in result.stdout and ", emailed" in result.stdout
    assert "1 invitation email(s) could not be sent (bob@company.com)" in result.stderr
    records = {r["email"]: r for r in report(tmp_path)}
    assert records["alice@company.com"]["status"] == "sent"
    assert records["bob@company.com"]["status"] == "send_failed" and records["bob@company.com"]["onboarding_link"], (
        "the link is kept"
    )
    [(sender, recipients, message)] = mailbox.messages
    assert recipients == ["alice@company.com"] and sender == "llm@company.com"
    assert records["alice@company.com"]["onboarding_link"] in message.get_payload(decode=True).decode()
    assert not LINK.search(result.stdout + result.stderr)

    # The failed delivery is recorded on the proxy: the next apply, on any runner, sends the same link again.
    plan = json_plan(cli)
    assert [(a["kind"], a["address"]) for a in plan["actions"]] == [
        ("deliver_invitation", "invitation.bob@company.com")
    ]
    mailbox.reject = ()
    again = cli("apply", "--yes", "--send-invites", "smtp", "--allow-insecure-smtp", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r for _, r, _ in mailbox.messages] == [["alice@company.com"], ["bob@company.com"]]
    assert records["bob@company.com"]["onboarding_link"] in mailbox.messages[-1][2].get_payload(decode=True).decode()
    assert json_plan(cli)["actions"] == []


def test_bad_mail_settings_stop_before_any_write(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, USERS)
    result = cli("apply", "--yes", "--send-invites", "smtp", env={"SMTP_HOST": "", "SMTP_FROM": ""})
    assert result.returncode == 1 and "SMTP_HOST" in result.stderr
    assert api.users() == []
