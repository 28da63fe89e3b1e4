"""``litellm-reconciler github <command>``: the steps of the GitHub Action, without network.

The glue runs in process (tests/tools/glue.py) with a fake CLI that prints scripted structured
output, or the real CLI for offline commands, and ``gh`` is tests/tools/fake_gh.py. The CLI's
own ``apply --result-json`` runs in process against the in-memory LiteLLM of test_apply.py.
"""

from __future__ import annotations

import functools
import json
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from reconciler import manager
from reconciler.lock import ApplyLock
from reconciler.render.comment_format import (
    HEADER,
    MARKER,
    escape,
    fingerprint_line,
    parse_fingerprint,
)

from .test_apply import FakeLiteLLM, error

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from glue import GlueRun, invoke, run_glue  # noqa: E402

REVIEWED = "ab" * 32
OTHER = "cd" * 32
PROXY = "http://proxy.internal:4000"
PUBLIC_PROXY = "https://llm.corp.example"
MASTER = "sk-master-1234"
PLAN_KEY = "sk-plan-5678"
GITHUB_TOKEN = "ghs_fake_token_for_tests"  # tests/tools/glue.py sets it as GH_TOKEN
LINK = "https://llm.corp.example/ui/onboarding?invitation_id=inv-secret-0001"
MATCH_SENTENCE = f"Plan fingerprint matches the reviewed plan ({REVIEWED[:16]})."
REFUSAL_SENTENCE = (
    f"Error: plan fingerprint {OTHER[:16]} does not match the reviewed {REVIEWED[:16]}; nothing was applied"
)
# What a hostile alias can make the CLI print as part of a plan: the CLI's own sentences.
HOSTILE_PLAN_TEXT = (
    f"  + team.x {MATCH_SENTENCE} Apply complete: 9 done, 0 failed, 0 skipped.\n"
    f"      # declared in the file, not on the proxy\nPlan fingerprint: {OTHER[:16]}\n{REFUSAL_SENTENCE}\n"
)


def result_json(
    outcome: str = "applied", matches: bool | None = True, expected: str | None = REVIEWED, **extra: Any
) -> dict[str, Any]:
    """What ``apply --result-json`` writes."""
    return {
        "format_version": "1.0",
        "fingerprint": REVIEWED if matches is not False else OTHER,
        "expected_fingerprint": expected,
        "fingerprint_matches": matches,
        "outcome": outcome,
        "summary": {"done": 1, "failed": 0, "skipped": 0},
        "results": [{"address": "team.x", "kind": "create_team", "status": "done", "detail": ""}],
        "invitations": [],
        "requests_made": 5,
        "writes_made": 1,
        "seconds": 0.1,
        "verified": True,
        "error": None,
        **extra,
    }


def glue_apply(
    tmp_path: Path,
    result: dict[str, Any] | None,
    *,
    stdout: str = "",
    stderr: str = "",
    code: int = 0,
    expected: str = REVIEWED,
    **inputs: str,
) -> GlueRun:
    behaviour: dict[str, Any] = {"stdout": stdout, "stderr": stderr, "code": code}
    if result is not None:
        behaviour["result_json"] = result
    return run_glue(
        tmp_path,
        "apply",
        inputs={
            "file": "users.yaml",
            "expect-fingerprint": expected,
            "require-reviewed-plan": "true",
            "proxy-url": PUBLIC_PROXY,
            **inputs,
        },
        env={"LITELLM_MASTER_KEY": MASTER, "LITELLM_PROXY_URL": PROXY},
        cli={"apply": behaviour},
    )


def plan_cli(markdown: str, data: dict[str, Any] | None = None, code: int = 2) -> dict[str, Any]:
    data = data or {"fingerprint": REVIEWED, "has_changes": True, "actions": [], "drift": []}
    return {"plan": {"stdout": markdown, "code": code, "plan_json": data}}


def frame(fingerprint: str = REVIEWED) -> str:
    return f"{MARKER}\n{fingerprint_line(fingerprint)}\n{HEADER}\n"


def assert_clean(text: str, *secrets: str) -> None:
    for secret in (
        PROXY,
        PUBLIC_PROXY,
        "proxy.internal",
        "llm.corp.example",
        "inv-secret-0001",
        "invitation_id=inv",
        *secrets,
    ):
        assert secret not in text, secret


# ---------------------------------------------------------------- the command group


def test_every_action_input_is_an_option_of_the_github_commands() -> None:
    """action.yml passes INPUT_* variables; each one is read by some github command (and none is missing)."""
    import yaml

    from reconciler.github import github

    action = yaml.safe_load((Path(__file__).resolve().parents[1] / "action.yml").read_text())
    passed = {name for step in action["runs"]["steps"] for name in (step.get("env") or {}) if name.startswith("INPUT_")}
    read = {p.envvar for command in github.commands.values() for p in command.params if isinstance(p.envvar, str)}
    assert passed - {"INPUT_COMMAND"} == read
    described = action["inputs"]["command"]["description"].replace(" ", "").split("|")
    assert sorted(described) == sorted(github.commands)


def test_unknown_command_exits_1(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "frobnicate")
    assert run.code == 1 and "No such command" in run.stderr and run.cli_calls == []


# ---------------------------------------------------------------- comments


def _comment(tmp_path: Path, body: str, state: dict[str, Any] | None = None, pr: int = 7) -> GlueRun:
    tmp_path.mkdir(parents=True, exist_ok=True)
    body_file = tmp_path / "body.md"
    body_file.write_text(body)
    return run_glue(
        tmp_path,
        "comment",
        inputs={"body-file": str(body_file)},
        env={"LITELLM_PROXY_URL": PROXY},
        event={"pull_request": {"number": pr}},
        gh_state=state,
    )


def _methods(tmp_path: Path) -> list[str]:
    return [json.loads(line)["method"] for line in (tmp_path / "gh-state.json.calls").read_text().splitlines()]


def test_comment_is_created_once_then_updated_in_place(tmp_path: Path) -> None:
    first = _comment(tmp_path / "1", frame() + "\nfirst plan\n")
    assert first.code == 0, first.stderr
    [posted] = first.gh_state["comments"]["7"]
    assert parse_fingerprint(posted["body"]) == REVIEWED and "first plan" in posted["body"]
    assert _methods(tmp_path / "1") == ["GET", "POST"] and first.outputs["comment-id"] == str(posted["id"])

    second = _comment(tmp_path / "2", frame(OTHER) + "\nsecond plan\n", state=first.gh_state)
    assert second.code == 0, second.stderr
    [updated] = second.gh_state["comments"]["7"]  # still ONE comment
    assert (
        updated["id"] == posted["id"]
        and parse_fingerprint(updated["body"]) == OTHER
        and "first plan" not in updated["body"]
    )
    assert _methods(tmp_path / "2") == ["GET", "PATCH"]


def test_comment_leaves_look_alike_comments_of_other_users_alone(tmp_path: Path) -> None:
    forged = {"id": 5, "user": {"login": "mallory"}, "body": frame(OTHER) + "looks like ours"}
    run = _comment(tmp_path, frame() + "\nthe plan\n", state={"comments": {"7": [forged]}, "pulls": {}})
    assert run.code == 0, run.stderr
    forged_after, ours = run.gh_state["comments"]["7"]
    assert forged_after == forged and parse_fingerprint(ours["body"]) == REVIEWED


def test_comment_refuses_a_body_without_the_marker_on_line_1(tmp_path: Path) -> None:
    run = _comment(tmp_path, f"\n{MARKER}\n{fingerprint_line(REVIEWED)}\n")
    assert run.code == 1 and "not a plan comment" in run.stderr
    assert run.gh_state["comments"] == {}


def test_comment_outside_a_pull_request_posts_nothing(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "comment", inputs={"body-file": str(tmp_path / "missing.md")}, event={})
    assert run.code == 0 and "::warning title=No pull request::" in run.stdout and run.gh_state["comments"] == {}


def test_comment_body_is_scrubbed_below_its_frame(tmp_path: Path) -> None:
    run = _comment(tmp_path, frame() + f"\nfrom {PROXY}/user/list, link {LINK}, key {GITHUB_TOKEN}\n")
    [posted] = run.gh_state["comments"]["7"]
    assert (
        posted["body"].startswith(frame()) and "<url removed>" in posted["body"] and "<link removed>" in posted["body"]
    )
    assert_clean(posted["body"], GITHUB_TOKEN)


# ---------------------------------------------------------------- reviewed fingerprint

MERGE_SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _reviewed(tmp_path: Path, comments: list[dict[str, Any]]) -> GlueRun:
    state = {
        "comments": {"7": comments},
        "pulls": {MERGE_SHA: [{"number": 7, "merge_commit_sha": MERGE_SHA, "merged_at": "2025-11-27T00:00:00Z"}]},
    }
    return run_glue(tmp_path, "reviewed-fingerprint", gh_state=state)


def test_reviewed_fingerprint_is_line_2_of_the_latest_bot_comment(tmp_path: Path) -> None:
    bot = {"login": "github-actions[bot]"}
    run = _reviewed(
        tmp_path / "ok",
        [
            {"id": 1, "user": bot, "body": frame(OTHER)},
            {"id": 2, "user": {"login": "mallory"}, "body": frame(OTHER)},  # not the bot's
            {
                "id": 3,
                "user": bot,
                "body": frame(REVIEWED) + f"\n{fingerprint_line(OTHER)}\nPlan fingerprint: `{OTHER}`\n",
            },
        ],
    )
    assert run.code == 0 and run.outputs["fingerprint"] == REVIEWED and run.outputs["pull-request"] == "7"
    # a comment whose fingerprint is anywhere but line 2 has none
    elsewhere = _reviewed(
        tmp_path / "elsewhere", [{"id": 1, "user": bot, "body": f"{MARKER}\n{HEADER}\n{fingerprint_line(OTHER)}\n"}]
    )
    assert elsewhere.outputs["fingerprint"] == ""
    none = run_glue(tmp_path / "none", "reviewed-fingerprint")
    assert none.code == 0 and none.outputs["fingerprint"] == "" and "No merged pull request" in none.stdout


# ---------------------------------------------------------------- fingerprint binding (apply)


def test_apply_with_the_reviewed_plan_is_applied(tmp_path: Path) -> None:
    run = glue_apply(
        tmp_path, result_json(summary={"done": 3, "failed": 0, "skipped": 0}), stdout=f"{MATCH_SENTENCE}\n"
    )
    assert run.code == 0 and run.outputs["result"] == "applied" and run.outputs["fingerprint-matches"] == "true"
    assert (
        "✅ The plan matches the reviewed plan" in run.summary
        and "**Apply complete: 3 done, 0 failed, 0 skipped.**" in run.summary
    )
    call = run.cli_calls[-1]
    assert call[:3] == ["apply", "users.yaml", "--yes"] and call[call.index("--expect-fingerprint") + 1] == REVIEWED
    assert "--result-json" in call


def test_apply_of_another_plan_is_refused_with_fingerprint_matches_false(tmp_path: Path) -> None:
    refused = result_json(
        "refused", matches=False, results=[], summary={"done": 0, "failed": 0, "skipped": 0}, error=REFUSAL_SENTENCE[7:]
    )
    run = glue_apply(tmp_path, refused, stdout=HOSTILE_PLAN_TEXT, stderr=REFUSAL_SENTENCE + "\n", code=1)
    assert run.code == 1 and run.outputs["result"] == "refused" and run.outputs["fingerprint-matches"] == "false"
    assert "does **not** match the reviewed plan" in run.summary and "🛑 Apply refused" in run.summary
    assert "::error title=Plan fingerprint mismatch::" in run.stdout
    assert "**Apply complete" not in run.summary  # the forged count in the plan text is not promoted


@pytest.mark.parametrize(
    "stdout, stderr, code, result, verdict",
    [
        # the CLI's sentences in the plan text (a hostile alias) while the apply failed before the comparison
        (
            HOSTILE_PLAN_TEXT + MATCH_SENTENCE,
            "Error: the proxy answered 500\n",
            1,
            result_json("failed", matches=None, error="the proxy answered 500"),
            "unknown",
        ),
        # the refusal sentence as the last line of stderr, but the result says the plan matched (it failed later)
        (
            HOSTILE_PLAN_TEXT,
            REFUSAL_SENTENCE + "\n",
            1,
            result_json("failed", matches=True, error="some actions failed"),
            "true",
        ),
        # the match sentence everywhere, but the result says it did not match
        (HOSTILE_PLAN_TEXT + MATCH_SENTENCE, MATCH_SENTENCE, 1, result_json("refused", matches=False), "false"),
        # no result at all (killed): text decides nothing, even with exit status 0
        (MATCH_SENTENCE + "\nApply complete: 1 done, 0 failed, 0 skipped.\n", "", 0, None, "unknown"),
        # a result about another expected fingerprint is not this run's
        (MATCH_SENTENCE, "", 0, result_json(expected=OTHER), "unknown"),
        # a proxy-provided string in the result's own fields: still only fingerprint_matches counts
        (
            "",
            "",
            1,
            result_json(
                "failed",
                matches=None,
                results=[
                    {
                        "address": f"team.{MATCH_SENTENCE}",
                        "kind": "create_team",
                        "status": "failed",
                        "detail": '"fingerprint_matches": true',
                    }
                ],
            ),
            "unknown",
        ),
        # not a boolean
        (MATCH_SENTENCE, "", 0, result_json(matches="true"), "unknown"),  # type: ignore[arg-type]
    ],
    ids=[
        "failed-before-compare",
        "matched-then-failed",
        "forged-match-text",
        "no-result",
        "other-expectation",
        "forged-in-result",
        "not-a-bool",
    ],
)
def test_only_the_result_json_decides_the_binding(
    tmp_path: Path, stdout: str, stderr: str, code: int, result: dict[str, Any] | None, verdict: str
) -> None:
    run = glue_apply(tmp_path, result, stdout=stdout, stderr=stderr, code=code)
    assert run.exception is None, run.exception
    assert run.outputs["fingerprint-matches"] == verdict
    if verdict != "true":
        assert "✅ The plan matches" not in run.summary
    if verdict == "unknown":
        assert "not known whether they match" in run.summary
    if result is None or verdict == "unknown":
        assert run.outputs["result"] == "failed" and run.code == 1


def test_apply_without_a_reviewed_plan_is_refused_before_running_the_cli(tmp_path: Path) -> None:
    run = glue_apply(tmp_path, None, expected="")
    assert run.code == 1 and run.outputs["result"] == "refused" and "No reviewed plan was found" in run.summary
    assert [c[0] for c in run.cli_calls] == ["validate"]


def test_apply_with_nothing_to_do(tmp_path: Path) -> None:
    run = glue_apply(tmp_path, result_json("no-changes", results=[], summary={"done": 0, "failed": 0, "skipped": 0}))
    assert run.code == 0 and run.outputs["result"] == "applied" and "✅ Nothing to apply" in run.summary


def test_apply_failures_are_listed_escaped_and_undelivered_links_flagged(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps({"email": "bob@x.com", "status": "send_failed", "onboarding_link": LINK}) + "\n")
    failed = result_json(
        "failed",
        summary={"done": 1, "failed": 1, "skipped": 1},
        results=[
            {"address": "team.ok", "kind": "create_team", "status": "done", "detail": ""},
            {
                "address": "team.x`</details>",
                "kind": "create_team",
                "status": "failed",
                "detail": f"500 from {PROXY}: {LINK}",
            },
            {
                "address": "membership.x.bob",
                "kind": "add_member",
                "status": "skipped",
                "detail": "team.x did not succeed",
            },
        ],
        invitations=[{"email": "bob@x.com", "user_id": "u1", "status": "send_failed", "expires_at": None}],
        verified=False,
        error=f"some actions failed; key {MASTER}",
    )
    run = glue_apply(tmp_path, failed, code=1, report=str(report))
    assert run.code == 1 and run.outputs["result"] == "failed"
    assert "**Apply complete: 1 done, 1 failed, 1 skipped.**" in run.summary
    assert (
        f"- <code>{escape('team.x`</details>')}</code>: failed: " in run.summary
        and escape("membership.x.bob") in run.summary
    )
    assert "not empty" in run.summary and "**Error:** some actions failed; key \\*\\*\\*" in run.summary
    assert run.outputs["report-file"] == str(report) and run.outputs["undelivered"] == "true"
    assert "1 onboarding email(s) could not be sent" in run.summary
    assert_clean(run.summary + run.stdout + run.stderr, MASTER)


@pytest.mark.parametrize("allow", ["true", "false"])
def test_apply_passes_allow_insecure_smtp_only_when_asked(tmp_path: Path, allow: str) -> None:
    run = run_glue(
        tmp_path,
        "apply",
        inputs={"file": "users.yaml", "send-invites": "smtp", "allow-insecure-smtp": allow},
        env={"LITELLM_MASTER_KEY": MASTER},
        cli={"apply": {"result_json": result_json(expected=None, matches=None)}},
    )
    assert run.code == 0, run.stderr
    assert ("--allow-insecure-smtp" in run.cli_calls[-1]) == (allow == "true")
    assert "--send-invites" in run.cli_calls[-1] and "fingerprint-matches" not in run.outputs
    assert "No reviewed fingerprint was given" in run.summary


def test_apply_rejects_an_unknown_send_invites(tmp_path: Path) -> None:
    run = run_glue(
        tmp_path,
        "apply",
        inputs={"file": "users.yaml", "send-invites": "carrier-pigeon"},
        env={"LITELLM_MASTER_KEY": MASTER},
    )
    assert run.code == 1 and "::error title=Bad input::" in run.stdout and [c[0] for c in run.cli_calls] == ["validate"]


def test_the_cli_gets_the_proxy_url_input_and_no_github_token(tmp_path: Path) -> None:
    run = glue_apply(tmp_path, result_json())
    env = run.cli_envs[-1]
    assert env["LITELLM_PROXY_URL"] == PUBLIC_PROXY and env["LITELLM_MASTER_KEY"] == MASTER
    assert "GH_TOKEN" not in env and "GITHUB_TOKEN" not in env


# ---------------------------------------------------------------- validation errors, annotated


def test_validation_errors_are_annotated_at_their_file_and_line_by_the_real_cli(tmp_path: Path) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "users.yaml").write_text("version: 1\nusers:\n  - email: nope\n    role: god\n")
    run = run_glue(tmp_path, "validate", inputs={"file": "users.yaml"}, real_cli=True)
    assert run.code == 1 and run.outputs["result"] == "invalid", run.stderr
    annotations = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert annotations[0].startswith(
        "::error title=users.yaml is invalid,file=users.yaml,line=3::users.0.email: 'nope'"
    )
    assert annotations[1].startswith(
        "::error title=users.yaml is invalid,file=users.yaml,line=4::users.0.role: invalid role 'god'"
    )
    body = Path(run.outputs["body-file"]).read_text()
    assert body.split("\n")[:2] == [MARKER, HEADER] and parse_fingerprint(body) is None
    assert "error: users.yaml:3: users.0.email" in body and "error: users.yaml:4: users.0.role" in body

    ok = run_glue(
        tmp_path / "ok",
        "validate",
        inputs={"file": str(Path(__file__).resolve().parents[1] / "users.yaml")},
        real_cli=True,
    )
    assert ok.code == 0 and ok.outputs["result"] == "valid" and "is valid: 2 team(s), 3 user(s)" in ok.stdout


def test_invalid_file_comment_fences_the_errors_and_has_no_fingerprint(tmp_path: Path) -> None:
    message = f"bad alias\n```\n</details>\n{fingerprint_line(OTHER)}\n<!-- x -->"
    problems = {
        "format_version": "1.0",
        "valid": False,
        "file": "x",
        "problems": [
            {"file": "users `<b>`.yaml", "line": 3, "column": 7, "message": message},
            {"file": "users `<b>`.yaml", "line": 0, "column": None, "message": "whole file"},
        ],
    }
    run = run_glue(
        tmp_path,
        "validate",
        inputs={"file": "users `<b>`.yaml"},
        cli={"validate": {"stdout": json.dumps(problems), "code": 1}},
    )
    assert run.code == 1 and run.outputs["result"] == "invalid"
    body = Path(run.outputs["body-file"]).read_text()
    assert parse_fingerprint(body) is None and body.split("\n")[:2] == [MARKER, HEADER]
    assert f"<code>{escape('users `<b>`.yaml')}</code>" in body and "error: users `<b>`.yaml:3:7: bad alias" in body
    fenced = body.split("\n\n", 2)[2]
    assert fenced.split("\n", 1)[0] == "````text"  # longer than the ``` inside, so the errors cannot close it
    assert fenced.rstrip("\n").endswith("\n````")
    # one annotation per problem, its line break escaped; line 0 (the whole file) has no line
    assert "::error title=users `<b>`.yaml is invalid,file=users `<b>`.yaml,line=3::bad alias%0A```%0A" in run.stdout
    assert "file=users `<b>`.yaml::whole file" in run.stdout


def test_validate_output_that_is_not_json_is_shown_not_read(tmp_path: Path) -> None:
    run = run_glue(
        tmp_path,
        "validate",
        env={"LITELLM_PROXY_URL": PROXY},
        cli={"validate": {"stdout": "users.yaml is valid\n", "stderr": f"Error: boom at {PROXY}\n", "code": 1}},
    )
    assert run.code == 1 and run.outputs["result"] == "invalid"
    assert "::error title=users.yaml is invalid::Error: boom at <url removed>" in run.stdout


# ---------------------------------------------------------------- plan and drift


def test_plan_comment_keeps_its_frame_and_hides_the_proxy_url_keys_and_links(tmp_path: Path) -> None:
    markdown = frame() + f"\n| `user.x` | from {PROXY}/user/list and {PUBLIC_PROXY}/ with {PLAN_KEY} and {LINK} |\n"
    run = run_glue(
        tmp_path,
        "plan",
        inputs={"file": "users.yaml", "proxy-url": PUBLIC_PROXY},
        # a secret that occurs in the fixed lines must not break them; SMTP credentials are secrets too
        env={"LITELLM_API_KEY": "reconciler", "LITELLM_PROXY_URL": PROXY, "SMTP_PASSWORD": PLAN_KEY},
        cli=plan_cli(markdown),
    )
    assert run.code == 0 and run.outputs["result"] == "changes", run.stderr
    assert run.outputs["fingerprint"] == REVIEWED and run.outputs["has-changes"] == "true"
    body = Path(run.outputs["body-file"]).read_text()
    assert parse_fingerprint(body) == REVIEWED and body.startswith(f"{MARKER}\n{fingerprint_line(REVIEWED)}\n")
    for text in (body, run.summary, run.stdout):
        assert "<url removed>" in text and "<link removed>" in text
        assert_clean(text, PLAN_KEY)
    assert "### litellm-***" in body  # scrubbed below the frame
    assert run.cli_calls[-1][:2] == ["plan", "users.yaml"] and "--out" in run.cli_calls[-1]


def test_plan_body_is_cut_below_githubs_limit(tmp_path: Path) -> None:
    markdown = frame() + "".join(f"| row {i} |\n" for i in range(20000))
    run = run_glue(tmp_path, "plan", env={"LITELLM_API_KEY": PLAN_KEY}, cli=plan_cli(markdown))
    body = Path(run.outputs["body-file"]).read_text()
    assert (
        len(body) < 65536 and body.endswith("_…cut to fit a GitHub comment._\n") and parse_fingerprint(body) == REVIEWED
    )


def test_plan_whose_json_and_comment_disagree_is_a_failed_plan(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "plan", env={"LITELLM_API_KEY": PLAN_KEY}, cli=plan_cli(frame(OTHER)))
    assert run.code == 1 and run.outputs["result"] == "error" and "fingerprint" not in run.outputs


def test_plan_without_a_key_posts_why_and_no_fingerprint(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "plan", inputs={"file": "users.yaml"})
    assert run.code == 0 and run.outputs["result"] == "no-key", run.stderr
    body = Path(run.outputs["body-file"]).read_text()
    assert body.split("\n")[:2] == [MARKER, HEADER] and parse_fingerprint(body) is None
    assert "Plan skipped" in body and "<code>users\\.yaml</code>" in body and body in run.summary + "\n"
    assert [call[0] for call in run.cli_calls] == ["validate"]
    drift = run_glue(tmp_path / "drift", "drift", inputs={"file": "users.yaml"})
    assert (
        drift.code == 1
        and drift.outputs["result"] == "no-key"
        and "::error title=Plan skipped%3A no key::" in drift.stdout
    )


def test_failed_plan_posts_the_error_fenced(tmp_path: Path) -> None:
    run = run_glue(
        tmp_path,
        "plan",
        inputs={"file": "users.yaml"},
        env={"LITELLM_API_KEY": PLAN_KEY, "LITELLM_PROXY_URL": PROXY},
        cli={"plan": {"stderr": f"Error: {PROXY} refused {PLAN_KEY}\n```\n<!-- x -->\n", "code": 1}},
    )
    assert run.code == 1 and run.outputs["result"] == "error"
    body = Path(run.outputs["body-file"]).read_text()
    assert (
        parse_fingerprint(body) is None and "````text\nError: <url removed> refused ***\n```\n<!-- x -->\n````" in body
    )
    assert_clean(body + run.stdout + run.stderr + run.summary, PLAN_KEY)


def test_drift_summary_and_annotations_escape_and_scrub_what_the_proxy_holds(tmp_path: Path) -> None:
    hostile = "team.x`</details><!-- y -->|\nz"
    data = {
        "fingerprint": REVIEWED,
        "has_changes": True,
        "actions": [{"address": hostile, "reason": "settings differ: *max_budget*"}],
        "drift": [
            {
                "kind": "team",
                "address": hostile,
                "detail": f"on the proxy (team_id [a](https://evil.example)) at {PROXY}, {LINK}, {PLAN_KEY}",
            }
        ],
    }
    run = run_glue(
        tmp_path,
        "drift",
        inputs={"file": "users.yaml"},
        env={"LITELLM_API_KEY": PLAN_KEY, "LITELLM_PROXY_URL": PROXY},
        cli=plan_cli(frame(), data),
    )
    assert run.code == 1 and run.outputs["result"] == "drift"
    assert f"- <code>{escape(hostile)}</code>: {escape('settings differ: *max_budget*')}" in run.summary
    assert "</details><!--" not in run.summary and "[a](" not in run.summary
    assert (
        "::error title=Drift%3A apply would change this::team.x`</details><!-- y -->|%0Az: settings differ"
        in run.stdout
    )
    annotations = "\n".join(line for line in run.stdout.splitlines() if line.startswith("::"))
    assert "<url removed>" in annotations and "<link removed>" in annotations
    assert_clean(run.summary + annotations, PLAN_KEY)


@pytest.mark.parametrize(
    "kind, fails, title",
    [
        ("privilege", True, "a privileged role the file does not grant"),
        ("duplicate", True, "a second account with a declared user's email"),
        ("refused", True, "a declared user the plan cannot act on"),
        ("user", False, ""),
    ],
)
def test_privilege_and_duplicate_drift_fail_the_drift_check_even_when_unmanaged_objects_may_pass(
    tmp_path: Path, kind: str, fails: bool, title: str
) -> None:
    data = {
        "fingerprint": REVIEWED,
        "has_changes": False,
        "actions": [],
        "drift": [{"kind": kind, "address": "user.eve@x.com", "detail": "has the role proxy_admin"}],
    }
    run = run_glue(
        tmp_path,
        "drift",
        inputs={"file": "users.yaml", "fail-on-unmanaged": "false"},
        env={"LITELLM_API_KEY": PLAN_KEY},
        cli=plan_cli(frame(), data, code=0),
    )
    assert (run.code, run.outputs["result"]) == ((1, "drift") if fails else (0, "no-drift"))
    if fails:
        assert f"::error title=Drift%3A {title}::user.eve@x.com" in run.stdout
        assert "adopt them in users.yaml" in run.stderr and "turn on the matching removal scope" in run.stderr


# ---------------------------------------------------------------- scrubbing of the apply step


def test_apply_summary_and_log_hide_keys_links_and_the_proxy_url_and_fence_hostile_text(tmp_path: Path) -> None:
    stdout = (
        f"Connecting to {PROXY}/team/new and {PUBLIC_PROXY}/v2/team/list with {MASTER}\n  + team.x ```\n"
        f"</details><!-- x -->\n{LINK}\n"
    )
    run = glue_apply(tmp_path, result_json(), stdout=stdout)
    for text in (run.summary, run.stdout, run.stderr):
        assert_clean(text, MASTER)
    assert "<url removed>" in run.summary and "<link removed>" in run.summary
    log = run.summary.split("<details><summary>apply log</summary>", 1)[1]
    assert log.strip().split("\n", 1)[0] == "````text"  # longer than the ``` in the log
    assert log.count("</details>") == 2  # the hostile one stays inside the fenced log, ours closes it


# ---------------------------------------------------------------- apply --result-json (the real CLI, in process)

USERS = (
    "version: 1\nteams:\n  - alias: dev\nusers:\n  - email: alice@example.com\n    teams: [dev]\n"
    "  - email: bob@example.com\n    teams: [dev]\n"
)
RESULT_KEYS = {
    "format_version", "fingerprint", "expected_fingerprint", "fingerprint_matches", "outcome", "summary", "results",
    "invitations", "requests_made", "writes_made", "seconds", "verified", "error", "changed_by",
}  # fmt: skip


@pytest.fixture
def fake_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLiteLLM:
    """The CLI's connection goes to an in-memory LiteLLM on the real clock (the CLI's own); the lock does not
    wait its settling second."""
    proxy = FakeLiteLLM(clock=lambda: datetime.now(timezone.utc))
    monkeypatch.setattr(manager.Connection, "client", lambda self, on_progress=None: proxy.client())
    monkeypatch.setattr(manager, "ApplyLock", functools.partial(ApplyLock, settle=0))
    (tmp_path / "users.yaml").write_text(USERS)
    monkeypatch.chdir(tmp_path)
    return proxy


def cli_apply(*args: str) -> Any:
    env = {
        "LITELLM_MASTER_KEY": MASTER,
        "LITELLM_API_KEY": None,
        "LITELLM_RECONCILER_SEAL_KEY": None,
        "LITELLM_PROXY_URL": "https://proxy.test",
    }
    return invoke(
        ["apply", "users.yaml", "--yes", "--report", "report.jsonl", "--result-json", "result.json", *args], env=env
    )


def read_result(path: str = "result.json") -> dict[str, Any]:
    text = Path(path).read_text()
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    return json.loads(text)


def _fingerprint(proxy: FakeLiteLLM) -> str:
    planned = invoke(
        ["plan", "users.yaml", "--format", "json"],
        env={"LITELLM_MASTER_KEY": MASTER, "LITELLM_API_KEY": None, "LITELLM_PROXY_URL": "https://proxy.test"},
    )
    return json.loads(planned.stdout)["fingerprint"]


def test_result_json_of_an_applied_plan_has_its_shape_and_no_link(fake_proxy: FakeLiteLLM) -> None:
    fingerprint = _fingerprint(fake_proxy)
    run = cli_apply("--expect-fingerprint", fingerprint[:20].upper())
    assert run.exit_code == 0, run.stdout + run.stderr
    result = read_result()
    assert set(result) == RESULT_KEYS and result["format_version"].startswith("1.")
    assert result["outcome"] == "applied" and result["verified"] is True and result["error"] is None
    assert (
        result["fingerprint"] == fingerprint
        and result["expected_fingerprint"] == fingerprint[:20]
        and result["fingerprint_matches"] is True
    )
    assert result["summary"] == {"done": 8, "failed": 0, "skipped": 0} and len(result["results"]) == 8
    assert all(set(r) == {"address", "kind", "status", "detail"} for r in result["results"])
    assert sorted(i["email"] for i in result["invitations"]) == ["alice@example.com", "bob@example.com"]
    assert all(
        set(i) == {"email", "user_id", "status", "expires_at"} and i["status"] == "created"
        for i in result["invitations"]
    )
    assert result["requests_made"] > 0 and result["writes_made"] > 0 and result["seconds"] >= 0
    text = Path("result.json").read_text()
    assert fake_proxy.invitations and all(invitation_id not in text for invitation_id in fake_proxy.invitations)
    assert "invitation_id" not in text and "/ui/" not in text and "link" not in text and MASTER not in text

    again = cli_apply()
    assert again.exit_code == 0 and read_result()["outcome"] == "no-changes" and read_result()["writes_made"] == 0
    assert read_result()["fingerprint_matches"] is None and read_result()["verified"] is True


def test_result_json_of_a_fingerprint_mismatch_is_refused(fake_proxy: FakeLiteLLM) -> None:
    run = cli_apply("--expect-fingerprint", OTHER)
    assert run.exit_code == 1 and "does not match the reviewed" in run.stderr
    result = read_result()
    assert (
        result["outcome"] == "refused"
        and result["fingerprint_matches"] is False
        and result["expected_fingerprint"] == OTHER
    )
    assert result["results"] == [] and result["writes_made"] == 0 and "does not match" in result["error"]
    assert not [r for r in fake_proxy.requests if r[0] == "POST"]


def test_result_json_is_written_when_actions_fail(fake_proxy: FakeLiteLLM) -> None:
    fake_proxy.fail("/team/new", error(500, f"database said no to {MASTER}"))
    run = cli_apply()
    assert run.exit_code == 1
    result = read_result()
    assert result["outcome"] == "failed" and result["summary"]["failed"] == 1 and result["summary"]["skipped"] >= 2
    assert "run apply again" in result["error"] and MASTER not in Path("result.json").read_text()
    failed = next(r for r in result["results"] if r["status"] == "failed")
    assert failed["address"] == "team.dev" and "***" in failed["detail"]


def test_result_json_is_written_when_the_apply_is_interrupted_midway(
    fake_proxy: FakeLiteLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reconciler.cli as cli

    printed = []

    def interrupted(result: Any) -> None:
        printed.append(result)
        if len(printed) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_print_result", interrupted)
    run = cli_apply()
    assert run.exit_code != 0
    result = read_result()
    assert result["outcome"] == "failed" and result["error"] == "KeyboardInterrupt"
    assert [r["address"] for r in result["results"]] == [r.address for r in printed] and len(printed) == 2


def test_result_json_is_not_written_before_the_proxy_is_reached_and_a_stale_one_is_removed(
    fake_proxy: FakeLiteLLM,
) -> None:
    Path("result.json").write_text(json.dumps(result_json()))
    Path("users.yaml").write_text("version: 1\nusers:\n  - email: nope\n")
    run = cli_apply()
    assert run.exit_code == 1 and not Path("result.json").exists() and fake_proxy.requests == []


def test_result_json_of_a_guarded_refusal(fake_proxy: FakeLiteLLM) -> None:
    """Other checks before any change refuse too (here: no seal key for a plan that invites)."""
    run = invoke(
        ["apply", "users.yaml", "--yes", "--result-json", "result.json", "--report", "report.jsonl"],
        env={
            "LITELLM_MASTER_KEY": None,
            "LITELLM_API_KEY": PLAN_KEY,
            "LITELLM_RECONCILER_SEAL_KEY": None,
            "LITELLM_PROXY_URL": "https://proxy.test",
        },
    )
    assert run.exit_code == 1
    result = read_result()
    assert result["outcome"] == "refused" and result["fingerprint_matches"] is None and "seal" in result["error"]


# ---------------------------------------------------------------- environments

STAGING, PRODUCTION = "12" * 32, "34" * 32
ENV_FILE = "version: 1\nenvironments: [{name: staging}, {name: production}]\nteams: [{alias: a}]\n"


def _users_file(where: Path, text: str) -> Path:
    where.mkdir(parents=True)
    (where / "users.yaml").write_text(text)
    return where


def test_environments_gives_one_matrix_entry_per_environment_with_its_secrets(tmp_path: Path) -> None:
    _users_file(tmp_path / "run", ENV_FILE)
    run = run_glue(tmp_path / "run", "environments", inputs={"file": "users.yaml"}, real_cli=True)
    assert run.code == 0, run.stderr
    assert json.loads(run.outputs["names"]) == ["staging", "production"]
    assert json.loads(run.outputs["matrix"]) == {
        "include": [
            {
                "name": name,
                "label": name,
                "artifact": f"plan-comment-0{i}-{name}",
                "plan-key-secret": f"LITELLM_PLAN_KEY_{name.upper()}",
                "proxy-url-secret": f"LITELLM_PROXY_URL_{name.upper()}",
                "max-chars": 29750,  # the comment's 60000, shared
            }
            for i, name in enumerate(["staging", "production"], 1)
        ]
    }
    for text, why in (("version: 1\n", "no environments"), ("version: 2\nenvironments: [{name: x}]\n", "invalid")):
        single = run_glue(
            _users_file(tmp_path / why, text), "environments", inputs={"file": "users.yaml"}, real_cli=True
        )
        assert json.loads(single.outputs["names"]) == [], why
        assert json.loads(single.outputs["matrix"])["include"] == [
            {
                "name": "",
                "label": "default",
                "artifact": "plan-comment-01",
                "plan-key-secret": "LITELLM_PLAN_KEY",
                "proxy-url-secret": "LITELLM_PROXY_URL",
                "max-chars": 59500,
            }
        ], why


def section(environment: str, fingerprint: str | None, text: str) -> str:
    line2 = [fingerprint_line(fingerprint)] if fingerprint else []
    return "\n".join([MARKER, *line2, f"{HEADER}: {environment}", "", text, ""])


def test_one_comment_has_a_section_and_a_fingerprint_per_environment(tmp_path: Path) -> None:
    bodies = tmp_path / "bodies"
    # artifacts as download-artifact lays them out, in an order other than the file's
    for artifact, body in (
        ("plan-comment-02-production", section("production", PRODUCTION, f"production plan from {PROXY}")),
        ("plan-comment-01-staging", section("staging", STAGING, "staging plan")),
        ("plan-comment-03-qa", section("qa", None, "**❌ The plan failed.**")),
    ):
        (bodies / artifact).mkdir(parents=True)
        (bodies / artifact / "plan-comment.md").write_text(body)
    run = run_glue(
        tmp_path,
        "comment",
        inputs={"body-file": str(bodies), "environments": '["staging", "production", "qa", "eu"]'},
        env={"LITELLM_PROXY_URL": PROXY},
        event={"pull_request": {"number": 7}},
    )
    assert run.code == 0, run.stderr
    [posted] = run.gh_state["comments"]["7"]
    body = posted["body"]
    lines = body.split("\n")
    assert lines[:3] == [
        MARKER,
        f"<!-- litellm-reconciler-fingerprints: staging={STAGING} production={PRODUCTION} qa=none eu=none -->",
        f"{HEADER}: staging",
    ]
    headings = [line for line in lines if line.startswith(HEADER)]
    assert headings == [f"{HEADER}: {name}" for name in ("staging", "production", "qa", "eu")]
    assert "The plan failed" in body and "No plan for this environment: its job did not finish" in body
    assert parse_fingerprint(body, "staging") == STAGING and parse_fingerprint(body, "production") == PRODUCTION
    assert parse_fingerprint(body, "qa") is None and parse_fingerprint(body, "eu") is None
    assert parse_fingerprint(body) is None  # no single fingerprint: apply must name its environment
    assert_clean(body)
    # a file without environments: its one body, exactly as before
    single = tmp_path / "single"
    (single / "plan-comment-01").mkdir(parents=True)
    (single / "plan-comment-01" / "plan-comment.md").write_text(frame() + "\nthe plan\n")
    again = run_glue(
        tmp_path / "again",
        "comment",
        inputs={"body-file": str(single), "environments": "[]"},
        event={"pull_request": {"number": 8}},
    )
    assert again.gh_state["comments"]["8"][0]["body"] == frame() + "\nthe plan\n"


def test_reviewed_fingerprint_of_an_environment(tmp_path: Path) -> None:
    body = f"{MARKER}\n<!-- litellm-reconciler-fingerprints: staging={STAGING} production=none -->\n{HEADER}: staging\n"
    state = {
        "comments": {"7": [{"id": 1, "user": {"login": "github-actions[bot]"}, "body": body}]},
        "pulls": {MERGE_SHA: [{"number": 7, "merge_commit_sha": MERGE_SHA, "merged_at": "2025-11-27T00:00:00Z"}]},
    }
    staging = run_glue(tmp_path / "s", "reviewed-fingerprint", inputs={"environment": "staging"}, gh_state=state)
    assert staging.outputs["fingerprint"] == STAGING
    production = run_glue(tmp_path / "p", "reviewed-fingerprint", inputs={"environment": "production"}, gh_state=state)
    assert production.outputs["fingerprint"] == ""
    assert "no plan comment with a fingerprint for environment production" in production.stdout
    unnamed = run_glue(tmp_path / "u", "reviewed-fingerprint", gh_state=state)
    assert unnamed.outputs["fingerprint"] == ""  # a per-environment comment has no fingerprint for "no environment"


def test_plan_and_apply_of_an_environment_pass_it_to_the_cli_and_say_it(tmp_path: Path) -> None:
    skipped = run_glue(tmp_path / "nokey", "plan", inputs={"file": "users.yaml", "environment": "staging"})
    body = Path(skipped.outputs["body-file"]).read_text()
    assert body.split("\n")[:2] == [MARKER, f"{HEADER}: staging"] and "environment <code>staging</code>" in body
    planned = run_glue(
        tmp_path / "plan",
        "plan",
        inputs={"file": "users.yaml", "environment": "staging"},
        env={"LITELLM_API_KEY": PLAN_KEY},
        cli=plan_cli(section("staging", REVIEWED, "the plan")),
    )
    assert planned.code == 0 and planned.cli_calls[-1][:4] == ["plan", "users.yaml", "--env", "staging"]
    applied = glue_apply(tmp_path / "apply", result_json(), environment="production")
    assert applied.code == 0 and applied.cli_calls[-1][:4] == ["apply", "users.yaml", "--env", "production"]
    assert "Applied: <code>users\\.yaml</code>, environment <code>production</code>" in applied.summary


def test_a_valid_file_with_warnings_is_annotated_and_passes(tmp_path: Path) -> None:
    where = _users_file(
        tmp_path / "run",
        "version: 1\nteams: [{alias: t}]\nusers:\n  - email: a@x.io\n    teams: [t]\n    max_budget: 5\n",
    )
    run = run_glue(where, "validate", inputs={"file": "users.yaml"}, real_cli=True)
    assert run.code == 0 and run.outputs["result"] == "valid", run.stderr
    [warning] = [line for line in run.stdout.splitlines() if line.startswith("::warning ")]
    assert warning.startswith(
        "::warning title=users.yaml%3A valid%2C but not enforced as written,file=users.yaml,line=6::"
        "users.0.max_budget: LiteLLM applies a user's own max_budget only to the user's personal keys"
    )


def test_an_environment_input_that_is_not_a_name_is_refused(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "plan", inputs={"file": "users.yaml", "environment": "prod\n::error::x"})
    assert run.code == 1 and "is not an environment name" in run.stderr and run.cli_calls == []


def test_apply_of_a_push_tells_the_cli_which_pull_request_and_author_it_applies(tmp_path: Path) -> None:
    merged = {"number": 7, "merge_commit_sha": MERGE_SHA, "user": {"login": "alice"}, "merged_at": "2025-11-27"}
    run = run_glue(
        tmp_path,
        "apply",
        inputs={"file": "users.yaml", "expect-fingerprint": REVIEWED, "proxy-url": PUBLIC_PROXY},
        env={"LITELLM_MASTER_KEY": MASTER, "LITELLM_PROXY_URL": PROXY, "GITHUB_EVENT_NAME": "push"},
        cli={"apply": {"stdout": "", "stderr": "", "code": 0, "result_json": result_json()}},
        gh_state={"comments": {}, "pulls": {MERGE_SHA: [merged]}},
    )
    env = run.cli_envs[-1]
    assert (env["LITELLM_RECONCILER_PULL_REQUEST"], env["LITELLM_RECONCILER_PR_AUTHOR"]) == ("7", "alice")
