"""Rendering: text, Markdown and JSON from the same Plan; the JSON plan round-trips."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest

from reconciler.desired import load_desired, parse_desired
from reconciler.live import OWNER_KEY, LiveMember, LiveState, LiveTeam, LiveUser
from reconciler.plan import FORMAT_VERSION, Action, Change, Drift, Plan, make_plan
from reconciler.render import FORMATS, render
from reconciler.render.comment_format import (
    escape,
    fence,
    fingerprint_line,
    is_plan_comment,
)
from reconciler.render.markdown import HEADER, MARKER, parse_fingerprint

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from glue import run_glue  # noqa: E402

NOW = datetime(2031, 11, 27, 12, 0, tzinfo=timezone.utc)
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
  - {email: old@example.com, role: proxy_admin_viewer, id: u-old}
  - {email: done@example.com}
""",
        "people.yaml",
    )
    done = LiveUser(
        "u-done",
        "done@example.com",
        "internal_user",
        None,
        (),
        {OWNER_KEY: {"managed": True, "invitation": {"id": "inv-secret", "expires_at": "2031-11-30"}}},
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
    assert {
        "create_team",
        "update_team",
        "create_user",
        "update_user",
        "add_member",
        "create_invitation",
        "replace_invitation",
    } <= kinds
    assert plan.drift


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shows_every_action_and_drift_item(plan, fmt):
    out = rendered(plan, fmt)
    for action in plan.actions:
        shown = f"<code>{escape(action.address)}</code>" if fmt == "markdown" else action.address
        assert shown in out, (fmt, action.address)
    for item in plan.drift:
        shown = f"<code>{escape(item.address)}</code>" if fmt == "markdown" else item.address
        assert shown in out, (fmt, item.address)


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_human_formats_carry_the_summary_and_fingerprint(plan, fmt):
    out = rendered(plan, fmt)
    assert "Plan: 2 teams to create" not in out  # one team exists: one create, one update
    assert "1 team to create, 1 team to update, 1 user to create, 1 user to update, 2 memberships to add" in out
    assert "1 exposed invitation to replace" in out
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
    sentence = "No changes. The proxy matches people.yaml."
    assert (escape(sentence) if fmt == "markdown" else sentence) in rendered(empty_plan(), fmt)


def drift_only_plan() -> Plan:
    live = LiveState(
        users=(
            LiveUser("u-x", "x@example.com", "internal_user", None, ()),
            LiveUser("u-root", "root@example.com", "proxy_admin", None, ()),
        )
    )
    return make_plan(parse_desired("version: 1\n", "people.yaml"), live, NOW)


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_no_changes_above_drift_says_both_and_calls_out_privileges(fmt):
    out = rendered(drift_only_plan(), fmt)
    sentence = (
        "No changes. 2 object(s) on the proxy are not in people.yaml. "
        "1 user(s) hold a privileged role the file does not grant."
    )
    assert (escape(sentence) if fmt == "markdown" else sentence) in out
    if fmt == "text":
        assert "  ! user.root@example.com: has the role proxy_admin" in out and "  ? user.x@example.com" in out
    else:
        assert "| ⚠️ <code>" in out


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_duplicates_refusals_and_the_keys_powers_are_called_out(fmt):
    drift = (
        Drift("duplicate", "user.u-2", "another account with the email of user.a@example.com"),
        Drift("refused", "user.b@example.com", "2 accounts on the proxy have this email"),
    )
    warning = "on LiteLLM 1.80.5 the read-only key this plan used can still block and unblock any team"
    out = rendered(replace(empty_plan(), drift=drift, warnings=(warning,)), fmt)
    sentence = (
        "1 account(s) share a declared user's email with the account that is the user. "
        "1 part(s) of the file are refused (each drift line says why and what to do)."
    )
    assert (escape(sentence) if fmt == "markdown" else sentence) in out
    if fmt == "text":
        assert "  ! user.u-2:" in out and "  ! user.b@example.com:" in out
        assert f"Warning: {warning}" in out
    else:
        assert out.count("| ⚠️ <code>") == 2
        assert f"> [!WARNING]\n> {escape(warning)}" in out


def test_no_changes_json():
    data = json.loads(render(empty_plan(), "json"))
    assert data["has_changes"] is False and data["actions"] == [] and data["summary"] == {}


# --------------------------------------------------------------------------- markdown


def test_markdown_escapes_pipes_in_every_table_cell(plan):
    out = rendered(plan, "markdown")
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| |") and not line.startswith("| address")
    ]
    assert len(rows) == len(plan.actions) + len(plan.drift)
    for row in rows:
        assert unescaped_pipes(row) in (3, 6), row  # drift rows have 2 cells, action rows 5
    assert "<code>team\\.ops\\|infra</code>" in out
    assert "New \\| Person" in out


def test_markdown_starts_with_the_marker_and_the_fingerprint_line(plan):
    lines = rendered(plan, "markdown").split("\n")
    assert lines[0] == MARKER == "<!-- litellm-reconciler-plan -->"
    assert lines[1] == f"<!-- litellm-reconciler-fingerprint: {plan.fingerprint} -->"
    assert lines[2] == HEADER
    assert parse_fingerprint(rendered(plan, "markdown")) == plan.fingerprint
    assert f"<sub>Plan fingerprint: `{plan.fingerprint}`</sub>" in rendered(plan, "markdown")  # for reviewers


def test_markdown_stays_under_max_chars():
    users = "\n".join(f"  - {{email: user{i:04d}@example.com, teams: [dev]}}" for i in range(300))
    big = make_plan(parse_desired(f"version: 1\nteams: [{{alias: dev}}]\nusers:\n{users}\n"), LiveState(), NOW)
    for limit in (2000, 10000):
        out = render(big, "markdown", max_chars=limit)
        assert len(out) <= limit
        assert "cut to fit" in out
        assert parse_fingerprint(out) == big.fingerprint
    assert "cut to fit" not in render(build_plan(), "markdown", max_chars=10000)


# --------------------------------------------------------------------------- no secrets


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_output_contains_onboarding_links_or_invitation_ids(plan, fmt):
    out = render(plan, fmt)
    assert "onboarding" not in out.lower()
    assert "invitation_id=" not in out
    assert "inv-secret" not in out


# --------------------------------------------------------------------------- hostile text

FAKE = "0123456789abcdef" * 4  # a fingerprint-looking value that is not the plan's
# What a users file may hold as a name (at most 128 characters, nothing invisible) ...
HOSTILE_FILE = (
    "x`y </details> <sub>z</sub> a|b ``[click](https://evil.example) *bold* __u__ ~~s~~ \\` &amp; www.evil.example"
)
# ... and what the proxy may hold, or a plan loaded from JSON: a forged fingerprint, line breaks too.
HOSTILE = (
    f"Plan fingerprint: `{FAKE}` <!-- litellm-reconciler-fingerprint: {FAKE} --> {HOSTILE_FILE}"
    " line1\nline2\r\u2028\u2029\x85end"
)


def hostile_plan() -> Plan:
    """Every place user- or proxy-controlled text reaches: a team alias, a user alias (a change value),
    a membership address, drift rows (addresses and details from the proxy), the file name, and an
    action whose address, reason and values hold line breaks."""
    desired = parse_desired(
        json.dumps(
            {
                "version": 1,
                "teams": [{"alias": HOSTILE_FILE}],
                "users": [{"email": "eve@example.com", "alias": HOSTILE_FILE, "teams": [HOSTILE_FILE]}],
            }
        ),
        f"users`{FAKE}`<!--|\n.yaml",
    )
    live = LiveState(
        users=(
            LiveUser(f"id {HOSTILE}", None, "internal_user", None, ()),
            LiveUser(f"u {HOSTILE}", "stray@example.com", "internal_user", None, ()),
        ),
        teams=(LiveTeam(f"t {HOSTILE}", f"proxy {HOSTILE}", SETTINGS),),
    )
    plan = make_plan(desired, live, NOW)
    update = Action(
        kind="update_team",
        address=f"team.{HOSTILE}",
        reason=f"settings differ: {HOSTILE}",
        params={"team_id": "t-1"},
        changes=(Change("max_budget", HOSTILE, 1.0),),
    )
    return replace(plan, actions=plan.actions + (update,))


def _unescaped(char: str, line: str) -> int:
    """How many times ``char`` occurs in ``line`` not escaped by a backslash (an odd run of them)."""
    count = 0
    for match in re.finditer(re.escape(char), line):
        backslashes = len(line[: match.start()]) - len(line[: match.start()].rstrip("\\"))
        count += backslashes % 2 == 0
    return count


def test_hostile_text_cannot_forge_the_fingerprint_or_break_the_comment(tmp_path):
    plan = hostile_plan()
    assert {a.kind for a in plan.actions} >= {"create_team", "create_user", "add_member"} and len(plan.drift) >= 3
    out = render(plan, "markdown")
    lines = out.split("\n")

    # The fixed place holds the real fingerprint, and nothing else in the body looks like it.
    assert lines[0] == MARKER and lines[1] == fingerprint_line(plan.fingerprint)
    assert parse_fingerprint(out) == plan.fingerprint
    assert re.findall(r"Plan fingerprint: `([0-9a-f]{64})`", out) == [plan.fingerprint]
    assert re.findall(r"litellm-reconciler-fingerprint: ([0-9a-f]{64})", out) == [plan.fingerprint]

    # No HTML from the hostile text: exactly our own comments, folds and <sub>.
    assert out.count("<!--") == out.count("-->") == 2
    assert out.count("<details>") == out.count("</details>") == 1  # the drift fold
    assert out.count("<sub>") == out.count("</sub>") == 1
    assert escape(f"<!-- litellm-reconciler-fingerprint: {FAKE} -->") in out
    assert "&lt;/details&gt;" in out and "&lt;sub&gt;z&lt;/sub&gt;" in out and "&amp;amp;" in out

    # No line breaks: every hostile fragment stays on its row; no row starts with its text.
    assert not any(line.lstrip().startswith(("line2", "\u2028", "end")) for line in lines)
    for separator in ("\r", "\u2028", "\u2029", "\x85"):
        assert separator not in out
    rows = [line for line in lines if line.startswith("| ") and not line.startswith(("| |", "| address"))]
    assert len(rows) == len(plan.actions) + len(plan.drift)
    for row in rows:
        assert _unescaped("|", row) in (3, 6), row  # drift rows have 2 cells, action rows 5

    # No code span, emphasis, link or strikethrough from the hostile text: every backtick,
    # '*', '_', '[', '~' and ':' of it is escaped (ours are only in the <sub> line and the cut note).
    own = f"<sub>Plan fingerprint: `{plan.fingerprint}`</sub>"
    for line in lines[2:]:
        line = line.replace(own, "")
        summary = re.fullmatch(r"\*\*(.*)\*\* \((.*)\)", line)  # our bold summary line and the file name
        line = f"{summary[1]} {summary[2]}" if summary else line
        for char in "`*_[]~":
            assert _unescaped(char, line) == 0, (char, line)
        assert "https://" not in line and "www.evil" not in line  # no autolinks
    # The hostile text is there, escaped, where reviewers expect it.
    assert f"<code>{escape('team.' + HOSTILE_FILE)}</code>" in out
    assert (
        f"| <code>{escape('team.' + HOSTILE)}</code> | update team | {escape('settings differ: ' + HOSTILE)} |" in out
    )
    assert (
        f"<code>{escape('team.proxy ' + HOSTILE)}</code> | "
        f"{escape(f'on the proxy (team_id t {HOSTILE}), not in the file; not owned by this tool, never deleted')} |"
    ) in out
    assert f"<code>{escape(plan.source)}</code>" in out

    # The glue (litellm-reconciler github) takes the real fingerprint from the posted comment.
    sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    state = {
        "comments": {"7": [{"id": 1, "user": {"login": "github-actions[bot]"}, "body": out}]},
        "pulls": {sha: [{"number": 7, "merge_commit_sha": sha, "merged_at": "2026-01-01T00:00:00Z"}]},
    }
    found = run_glue(tmp_path / "glue", "reviewed-fingerprint", gh_state=state)
    assert found.code == 0, found.stderr
    assert found.outputs["fingerprint"] == plan.fingerprint and found.outputs["pull-request"] == "7"


def test_a_comment_without_the_fingerprint_line_has_no_fingerprint(tmp_path):
    """Text that imitates the fingerprint anywhere but line 2 is never taken for it."""
    forged = (
        f"{MARKER}\n{HEADER}\n\n<!-- litellm-reconciler-fingerprint: {FAKE} -->\n"
        f"<sub>Plan fingerprint: `{FAKE}`</sub>\n"
    )
    assert parse_fingerprint(forged) is None
    assert parse_fingerprint(f"{HEADER}\n{fingerprint_line(FAKE)}\n") is None  # line 1 must be the marker
    assert parse_fingerprint(f"{MARKER}\n{fingerprint_line(FAKE)} \n") is None  # exactly the line
    assert parse_fingerprint(f"{MARKER}\n{fingerprint_line(FAKE).upper()}\n") is None
    assert parse_fingerprint(f"{MARKER}\r\n{fingerprint_line(FAKE)}\r\nrest") == FAKE  # GitHub may store CRLF
    assert is_plan_comment(forged) and not is_plan_comment(" " + forged)
    with pytest.raises(ValueError):
        fingerprint_line(FAKE[:-1])
    sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    state = {
        "comments": {"7": [{"id": 1, "user": {"login": "github-actions[bot]"}, "body": forged}]},
        "pulls": {sha: [{"number": 7, "merge_commit_sha": sha, "merged_at": "2026-01-01T00:00:00Z"}]},
    }
    found = run_glue(tmp_path, "reviewed-fingerprint", gh_state=state)
    assert found.code == 0, found.stderr
    assert found.outputs["fingerprint"] == "" and "no plan comment with a fingerprint" in found.stdout


@pytest.mark.parametrize(
    "raw, forbidden",
    [
        ("`code`", "`code`"),
        ("<!-- c -->", "<!--"),
        ("</details>", "</details>"),
        ("<sub>x</sub>", "<sub>"),
        ("a & b", "a & b"),
        ("a|b", "a|b"),
        ("a\nb", "\n"),
        ("a\r\nb", "\r"),
        ("a\u2028b\u2029c\x85d\x1be", "\u2028"),
        ("[t](http://x)", "[t]("),
        ("*e* _e_ ~~s~~", "*e*"),
        ("https://evil.example", "https://"),
        ("$x^2$", "$x^"),
        ("\u202eevil", "\u202e"),
    ],
)
def test_escape_neutralises(raw, forbidden):
    escaped = escape(raw)
    assert forbidden not in escaped
    assert "\n" not in escaped and "<" not in escaped and ">" not in escaped
    assert all(_unescaped(c, escaped) == 0 for c in "`|*_[]~$")


def test_escape_keeps_ordinary_text_readable():
    assert escape("alice@company.com") == "alice@company\\.com"
    assert escape("Ünïcode ✓ 42") == "Ünïcode ✓ 42"


def test_fence_cannot_be_closed_by_its_content():
    text = "before\n```\n<!-- x -->\n````\nafter"
    fenced = fence(text)
    opening = fenced.split("\n", 1)[0]
    assert opening == "`````text" and fenced.endswith("\n`````")
    assert all(len(line.strip("`")) or len(line) < 5 for line in text.split("\n"))


def test_text_format_keeps_hostile_text_on_its_line():
    plan = hostile_plan()
    raw = render(plan, "text")
    out = click.unstyle(raw)
    assert not any(line.lstrip().startswith("line2") for line in out.splitlines())
    assert "line1\\nline2\\r\\u2028\\u2029\\x85end" in out
    assert "\r" not in raw and "\u2028" not in raw
    live = LiveState(teams=(LiveTeam("t-1", "t\x1b]8;;https://evil\x07x\x1b[2J", SETTINGS),))
    evil = make_plan(parse_desired("version: 1\n", "people.yaml"), live, NOW)
    shown = render(evil, "text")
    assert "\x1b]8" not in shown and "\x1b[2J" not in shown and "\x07" not in shown
    assert "t\\x1b]8;;https://evil\\x07x\\x1b[2J" in shown


def test_a_plan_for_an_environment_says_which_in_every_format():
    plan = replace(build_plan(), environment="staging")
    assert "(people.yaml, environment staging):" in rendered(plan, "text")
    markdown = rendered(plan, "markdown")
    assert markdown.split("\n")[2] == f"{HEADER}: staging" and parse_fingerprint(markdown) == plan.fingerprint
    assert json.loads(rendered(plan, "json"))["environment"] == "staging"
    quiet = replace(empty_plan(), environment="production")
    assert "No changes. The proxy matches people.yaml, environment production." in rendered(quiet, "text")


def test_a_section_too_long_for_its_share_is_not_shown_and_its_fingerprint_is_none():
    from reconciler.render.comment_format import fingerprint_line
    from reconciler.render.markdown import CUT_SECTION, combine

    def body(environment: str, fingerprint: str, rows: int) -> str:
        table = "".join(f"| row {i} |\n" for i in range(rows))
        return f"{MARKER}\n{fingerprint_line(fingerprint)}\n{HEADER}: {environment}\n\n{table}"

    combined = combine({"staging": body("staging", "a" * 64, 5000), "production": body("production", "b" * 64, 10)})
    assert len(combined) <= 65536 and CUT_SECTION in combined.split(f"{HEADER}: production")[0]
    assert parse_fingerprint(combined, "staging") is None and parse_fingerprint(combined, "production") == "b" * 64
    assert "| row 9 |" in combined.split(f"{HEADER}: production")[1]


# --------------------------------------------------------------------------- what a reader cannot see


def look_alike_plan() -> Plan:
    """The file declares ``ops``; the proxy holds teams whose aliases differ from it by an invisible or a
    reordering character, one whose alias is Markdown and HTML, and a user whose id adds a table row."""
    desired = parse_desired("version: 1\nteams:\n  - alias: ops\n", "people.yaml")
    live = LiveState(
        users=(LiveUser("u\n| injected | row |", "mallory\u200b@x.io", "internal_user", None, ()),),
        teams=(
            LiveTeam("t-1", "ops\u200b", SETTINGS),
            LiveTeam("t-2", "\u202espo", SETTINGS),
            LiveTeam("t\n3", "![img](https://evil.example/x.png) <details> `x` a|b", SETTINGS),
        ),
    )
    return make_plan(desired, live, NOW)


def test_markdown_shows_look_alike_and_hostile_proxy_text_escaped():
    plan = look_alike_plan()
    assert {a.address for a in plan.actions} == {"team.ops"} and len(plan.drift) == 4
    out = render(plan, "markdown")
    assert all(ch.isprintable() for line in out.split("\n") for ch in line)
    assert "<code>team\\.ops\\\\u200b</code>" in out and "<code>team\\.\\\\u202espo</code>" in out
    assert "<code>team\\.ops</code>" in out  # the declared one, told apart
    assert "user\\_id u\\\\n\\| injected \\| row \\|" in out
    assert "<code>team\\.\\!\\[img\\]\\(https\\://evil\\.example/x\\.png\\) &lt;details&gt; \\`x\\` a\\|b</code>" in out
    assert out.count("<details>") == 1  # the drift fold
    rows = [line for line in out.split("\n") if line.startswith("| <code>")]
    assert len(rows) == 4 and all(_unescaped("|", row) == 3 for row in rows), rows


def test_text_shows_look_alike_proxy_text_escaped():
    out = rendered(look_alike_plan(), "text")
    assert "  ? team.ops\\u200b: on the proxy (team_id t-1)" in out and "  ? team.\\u202espo:" in out
    assert "(user_id u\\n| injected | row |)" in out
    assert all(ch.isprintable() for line in out.split("\n") for ch in line)


@pytest.mark.parametrize(
    "hidden", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u00a0", "\u3000", "\u3164", "\u2066"]
)
def test_escape_shows_a_character_a_reader_cannot_see(hidden):
    # The escape's own backslash is escaped too, so Markdown shows it: ops\u200b
    assert escape(f"ops{hidden}") == "ops\\" + hidden.encode("unicode_escape").decode("ascii")


# --------------------------------------------------------------------------- a layout of several files

LAYOUT = Path(__file__).resolve().parent / "layouts" / "three_teams"


def test_markdown_groups_the_actions_by_the_file_that_declares_them_with_its_owners(monkeypatch):
    monkeypatch.chdir(LAYOUT)
    plan = make_plan(load_desired("users.yaml"), LiveState(), NOW)
    text = render(plan, "markdown")
    sections = re.findall(r"<details open><summary>([^\n]*)</summary>\n\n(.*?)\n\n</details>", text, re.S)
    assert [title for title, _ in sections] == [
        "📄 <code>users\\.yaml</code>: 6 action(s), reviewed by <code>@acme/admins</code>",
        "📄 <code>teams/data\\.yaml</code>: 8 action(s), reviewed by "
        "<code>@acme/data\\-leads</code> <code>@carol</code>",
        "📄 <code>teams/ml\\.yaml</code>: 5 action(s), reviewed by <code>@acme/ml\\-leads</code>",
        "📄 <code>teams/web\\.yaml</code>: 4 action(s), reviewed by <code>@acme/web\\-leads</code>",
    ]
    rows = {title.split("</code>")[0].removeprefix("📄 <code>"): table for title, table in sections}
    assert "<code>membership\\.web\\.dora@acme\\.com</code>" in rows["teams/data\\.yaml"]
    assert "<code>membership\\.data\\.root@acme\\.com</code>" in rows["users\\.yaml"]
    assert sum(table.count("\n| ") for table in rows.values()) == len(plan.actions)  # every row, once
    # A handle shows only in code, where GitHub notifies nobody of each new comment.
    assert re.findall(r"(?<!<code>)@acme/", text) == []


def test_markdown_of_one_file_has_one_table():
    text = render(build_plan(), "markdown")
    assert "📄" not in text and text.count("| | address | action | reason | changes |") == 1
