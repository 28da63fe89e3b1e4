"""Rendering: text, Markdown and JSON from the same Plan; the JSON plan round-trips."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import click
import pytest

from reconciler.desired import parse_desired
from reconciler.live import OWNER_KEY, LiveInvitation, LiveMember, LiveState, LiveTeam, LiveUser
from reconciler.plan import FORMAT_VERSION, Plan, make_plan
from reconciler.render import FORMATS, render

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SETTINGS = {"models": [], "max_budget": 5.0, "budget_duration": None, "tpm_limit": None, "rpm_limit": None}

# --------------------------------------------------------------------------- builders


def build_plan() -> Plan:
    """Creates, updates, memberships, invitations, bookkeeping and drift; values with '|' in them."""
    desired = parse_desired(
        """
version: 1
teams:
  - {alias: "ops|infra", models: ["gpt|4"], max_budget: 10}
  - {alias: dev, max_budget: 7}
users:
  - {email: new@example.com, teams: ["ops|infra", dev], alias: "New | Person"}
  - {email: old@example.com, role: proxy_admin_viewer}
  - {email: done@example.com}
""",
        "people.yaml",
    )
    done = LiveUser(
        "u-done", "done@example.com", "internal_user", None, (), {OWNER_KEY: {"managed": True, "invitation": {"id": "inv-secret"}}}
    )
    live = LiveState(
        users=(
            LiveUser("u-old", "old@example.com", "internal_user", None, ()),
            done,
            LiveUser("u-stray", "stray|one@example.com", "internal_user", None, ()),
            LiveUser("default_user_id", None, "proxy_admin", None, ()),
        ),
        teams=(
            LiveTeam("t-dev", "dev", SETTINGS, (LiveMember("u-stray", "user"),)),
            LiveTeam("t-extra", "extra|team", SETTINGS),
        ),
        invitations={"inv-secret": LiveInvitation("inv-secret", True, "2026-11-25T08:00:00Z", "2026-11-30T00:00:00Z")},
    )
    return make_plan(desired, live, NOW)


def empty_plan() -> Plan:
    return make_plan(parse_desired("version: 1\n", "people.yaml"), LiveState(), NOW)


def rendered(plan: Plan, fmt: str) -> str:
    return click.unstyle(render(plan, fmt))


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan()


# --------------------------------------------------------------------------- all formats


def test_the_fixture_plan_has_every_interesting_part(plan):
    kinds = {a.kind for a in plan.actions}
    assert {"create_team", "update_team", "create_user", "update_user", "add_member", "create_invitation", "record_invitation"} <= kinds
    assert plan.drift


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shows_every_action_and_drift_item(plan, fmt):
    out = rendered(plan, fmt)
    for action in plan.actions:
        shown = action.address.replace("|", "\\|") if fmt == "markdown" else action.address
        assert shown in out, (fmt, action.address)
    for item in plan.drift:
        shown = item.address.replace("|", "\\|") if fmt == "markdown" else item.address
        assert shown in out, (fmt, item.address)


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_human_formats_carry_the_summary_and_fingerprint(plan, fmt):
    out = rendered(plan, fmt)
    assert "Plan: 2 teams to create" not in out  # one team exists: one create, one update
    assert "1 team to create, 1 team to update, 1 user to create, 1 user to update, 2 memberships to add" in out
    assert "1 accepted invitation to record" in out
    assert plan.fingerprint[:16] in out


def test_text_shows_old_and_new_values_of_updates(plan):
    out = rendered(plan, "text")
    assert "~ team.dev" in out
    assert "max_budget = 5.0 -> 7.0" in out
    assert "+ team.ops|infra" in out
    assert 'models     = ["gpt|4"]' in out  # field names aligned within an action


def test_json_is_versioned_and_complete(plan):
    data = json.loads(render(plan, "json"))
    assert data["format_version"] == FORMAT_VERSION
    assert data["fingerprint"] == plan.fingerprint
    assert data["has_changes"] is True
    assert data["source"] == "people.yaml"
    assert data["summary"] == plan.summary()
    assert [a["address"] for a in data["actions"]] == [a.address for a in plan.actions]
    assert len(data["drift"]) == len(plan.drift)


def test_json_round_trips(plan):
    loaded = Plan.from_dict(json.loads(render(plan, "json")))
    assert loaded == plan
    assert loaded.fingerprint == plan.fingerprint
    assert render(loaded, "json") == render(plan, "json")


def tampered(plan: Plan, edit) -> dict:
    data = json.loads(render(plan, "json"))
    edit(data)
    return data


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["actions"][1]["params"].update(max_budget=1e9), id="changed-param"),
        pytest.param(lambda d: d["actions"].pop(), id="dropped-action"),
        pytest.param(lambda d: d["actions"].reverse(), id="reordered"),
        pytest.param(lambda d: d["actions"].append(dict(d["actions"][0], address="team.evil")), id="added-action"),
        pytest.param(lambda d: d["actions"][0].update(kind="delete_team"), id="unknown-kind"),
        pytest.param(lambda d: d.update(format_version="2.0"), id="other-version"),
        pytest.param(lambda d: d.pop("format_version"), id="no-version"),
    ],
)
def test_tampered_or_foreign_plans_are_refused(plan, edit):
    with pytest.raises(ValueError):
        Plan.from_dict(tampered(plan, edit))


# --------------------------------------------------------------------------- no changes


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_no_changes_sentence(fmt):
    assert "No changes. The proxy matches people.yaml." in rendered(empty_plan(), fmt)


def test_no_changes_json():
    data = json.loads(render(empty_plan(), "json"))
    assert data["has_changes"] is False and data["actions"] == [] and data["summary"] == {}


# --------------------------------------------------------------------------- markdown


def test_markdown_escapes_pipes_in_every_table_cell(plan):
    out = rendered(plan, "markdown")
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| |") and not line.startswith("| address")]
    assert len(rows) == len(plan.actions) + len(plan.drift)
    for row in rows:
        assert unescaped_pipes(row) in (3, 6), row  # drift rows have 2 cells, action rows 5
    assert "`team.ops\\|infra`" in out
    assert "New \\| Person" in out


def test_markdown_starts_with_the_comment_marker(plan):
    assert rendered(plan, "markdown").splitlines()[0].startswith("<!--")


def test_markdown_stays_under_max_chars():
    users = "\n".join(f"  - {{email: user{i:04d}@example.com, teams: [dev]}}" for i in range(300))
    big = make_plan(parse_desired(f"version: 1\nteams: [{{alias: dev}}]\nusers:\n{users}\n"), LiveState(), NOW)
    for limit in (2000, 10000):
        out = render(big, "markdown", max_chars=limit)
        assert len(out) <= limit
        assert "cut to fit" in out
        assert big.fingerprint in out
    assert "cut to fit" not in render(build_plan(), "markdown", max_chars=10000)


# --------------------------------------------------------------------------- no secrets


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_contains_onboarding_links_or_invitation_ids(plan, fmt):
    out = render(plan, fmt)
    assert "onboarding" not in out.lower()
    assert "invitation_id=" not in out
    assert "inv-secret" not in out
