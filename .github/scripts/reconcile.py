#!/usr/bin/env python3
"""The GitOps steps of litellm-reconciler on GitHub Actions, behind the composite action (action.yml).

Standard library only, so it also runs before (or without) the package being installed: from
the package it imports only its standard-library modules (reconciler.secrets and
reconciler.render.comment_format), from the action's own checkout. Each command reads its
inputs from INPUT_* environment variables (set by action.yml from the action's inputs, never
by interpolating event text into a script) and talks to GitHub
only through files it is given (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH) and
the ``gh`` CLI.

    validate              check the file offline; annotate errors
    plan                  validate, plan against the proxy, write the Markdown comment body
    drift                 plan with --detailed-exitcode; fail when the proxy differs from the file
    apply                 apply with --yes (optionally bound to a reviewed fingerprint)
    comment               create or update THE plan comment of the pull request (gh api)
    reviewed-fingerprint  find the pull request of the pushed commit and the fingerprint in its plan comment

Whatever reaches a comment, a summary, an annotation or the log goes through the package's one
scrubbing function: the keys and SMTP credentials in the environment become ``***``, onboarding
links ``<link removed>`` and the proxy URL ``<url removed>``. Text from the users file or the
proxy is escaped before it is put into Markdown; the fingerprint reviewers saw is read only from
line 2 of the plan comment, a place such text cannot reach.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Optional

# The action's checkout (ACTION_PATH) holds the package: its standard-library modules are
# imported from there, so the glue and the package always agree (marker, fingerprint line, scrub).
ACTION_ROOT = Path(__file__).resolve().parents[2]
if str(ACTION_ROOT) not in sys.path:
    sys.path.insert(0, str(ACTION_ROOT))

from reconciler.onboarding import load_report  # noqa: E402
from reconciler.render.comment_format import (  # noqa: E402
    HEADER,
    MARKER,
    escape,
    fence,
    is_plan_comment,
    parse_fingerprint,
    split_frame,
)
from reconciler.render.comment_format import (
    code as md_code,
)
from reconciler.secrets import scrub  # noqa: E402

COMMENT_LIMIT = 65536  # GitHub's limit for a comment body, in characters
BOT = "github-actions[bot]"
CLI_ERROR = re.compile(r"^error: (?P<file>.+?):(?P<line>\d+): (?P<message>.*)$")
# The CLI's refusal of a plan other than the reviewed one: its last line on stderr, exit status 1.
FINGERPRINT_MISMATCH = re.compile(r"Error: plan fingerprint [0-9a-f]{16} does not match the reviewed (?P<reviewed>\S+); nothing was applied")
APPLY_COMPLETE = re.compile(r"Apply complete: \d+ done, \d+ failed, \d+ skipped\.")


# ---------------------------------------------------------------- GitHub plumbing


def inp(name: str, default: str = "") -> str:
    """An action input, as action.yml passes it: INPUT_<NAME> (dashes become underscores)."""
    return os.environ.get("INPUT_" + name.upper().replace("-", "_"), default).strip() or default


# The proxy URL is hidden like a secret in comments, summaries and the log; main() may replace
# LITELLM_PROXY_URL with the proxy-url input, so the value the step started with is kept too.
_STARTING_PROXY_URL = os.environ.get("LITELLM_PROXY_URL")


def clean(text: str, all_urls: bool = False) -> str:
    """``text`` fit for a comment, a summary or the log: scrubbed, with the proxy URL hidden too."""
    urls = [os.environ.get("LITELLM_PROXY_URL"), inp("proxy-url"), _STARTING_PROXY_URL]
    return scrub(text, hide_urls=urls, all_urls=all_urls)


def clean_body(body: str) -> str:
    """A comment body scrubbed below its fixed first lines (marker, fingerprint), which are kept as they are."""
    frame, rest = split_frame(body)
    return frame + clean(rest)


def set_output(name: str, value: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        if "\n" in value:
            delimiter = f"EOF_{uuid.uuid4().hex}"
            out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            out.write(f"{name}={value}\n")


def add_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(markdown.rstrip("\n") + "\n\n")


def annotate(level: str, message: str, title: str = "", file: str = "", line: str = "") -> None:
    """A workflow command (::error::, ::warning::, ::notice::), escaped as GitHub requires."""
    props = ",".join(f"{k}={_escape(clean(v), True)}" for k, v in (("title", title), ("file", file), ("line", line)) if v)
    print(f"::{level}{' ' + props if props else ''}::{_escape(clean(message))}", flush=True)


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def out_dir() -> Path:
    base = Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "litellm-reconciler"
    base.mkdir(parents=True, exist_ok=True)
    return base


def write_body(body: str) -> Path:
    """The comment body, scrubbed and capped below GitHub's limit; its path becomes the output body-file."""
    body = clean_body(body)
    if len(body) > COMMENT_LIMIT - 100:
        body = body[: COMMENT_LIMIT - 300].rsplit("\n", 1)[0] + "\n\n_…cut to fit a GitHub comment._\n"
    path = out_dir() / "plan-comment.md"
    path.write_text(body, encoding="utf-8")
    set_output("body-file", str(path))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = os.environ.get("RECONCILER_CLI", "litellm-reconciler")
    return subprocess.run([command, *args], capture_output=True, text=True)


def has_key() -> bool:
    return bool(os.environ.get("LITELLM_API_KEY") or os.environ.get("LITELLM_MASTER_KEY"))


def event() -> dict[str, Any]:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).exists():
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- commands


def validate(file: str) -> bool:
    proc = cli("validate", file)
    if proc.returncode == 0:
        print(proc.stdout.strip())
        return True
    errors = clean(proc.stderr).strip()
    print(errors, file=sys.stderr)
    for line in errors.splitlines():
        match = CLI_ERROR.match(line)
        if match:
            annotate("error", match["message"], title="users.yaml is invalid", file=match["file"], line=match["line"])
    if not any(CLI_ERROR.match(line) for line in errors.splitlines()):
        annotate("error", errors.splitlines()[-1] if errors else "validation failed", title=f"{file} is invalid")
    body = f"{MARKER}\n{HEADER}\n\n**❌ {md_code(file)} is invalid; nothing was planned.**\n\n{fence(errors)}\n"
    write_body(body)
    add_summary(body)
    set_output("result", "invalid")
    return False


def cmd_validate() -> int:
    ok = validate(inp("file", "users.yaml"))
    set_output("result", "valid" if ok else "invalid")
    return 0 if ok else 1


def _plan(file: str) -> tuple[int, str, Optional[dict[str, Any]], str]:
    """(exit code, Markdown, JSON plan, stderr) of one plan; the same proxy read gives both forms."""
    plan_json = out_dir() / "plan.json"
    plan_json.unlink(missing_ok=True)
    proc = cli("plan", file, "--format", "markdown", "--max-chars", inp("max-chars", "60000"), "--out", str(plan_json), "--detailed-exitcode")
    data = json.loads(plan_json.read_text(encoding="utf-8")) if proc.returncode in (0, 2) and plan_json.exists() else None
    return proc.returncode, clean_body(proc.stdout), data, clean(proc.stderr)


def cmd_plan(drift: bool = False) -> int:
    file = inp("file", "users.yaml")
    if not validate(file):
        return 1
    if not has_key():
        message = (
            "No LiteLLM key is available to this job: a pull request from a fork gets no secrets, "
            "or the plan key secret is not configured. The file is valid; the plan against the proxy was skipped."
        )
        annotate("error" if drift else "warning", message, title="Plan skipped: no key")
        body = f"{MARKER}\n{HEADER}\n\n**⚠️ Plan skipped.** {md_code(file)} is valid, but {message[0].lower()}{message[1:]}\n"
        write_body(body)
        add_summary(body)
        set_output("result", "no-key")
        return 1 if drift else 0
    status, markdown, data, errors = _plan(file)
    if data is None:
        message = errors.strip() or f"plan exited with {status}"
        print(message, file=sys.stderr)
        annotate("error", message.splitlines()[-1], title="Plan failed")
        body = f"{MARKER}\n{HEADER}\n\n**❌ The plan failed.**\n\n{fence(message)}\n"
        write_body(body)
        add_summary(body)
        set_output("result", "error")
        return 1
    print(markdown)
    set_output("fingerprint", data["fingerprint"])
    set_output("has-changes", "true" if data["has_changes"] else "false")
    set_output("drift-count", str(len(data.get("drift", []))))
    write_body(markdown)
    if not drift:
        add_summary(markdown)
        set_output("result", "changes" if data["has_changes"] else "no-changes")
        return 0
    return _report_drift(file, markdown, data)


def _report_drift(file: str, markdown: str, data: dict[str, Any]) -> int:
    fail_on_unmanaged = inp("fail-on-unmanaged", "true").lower() == "true"
    actions = [a for a in data["actions"]] if data["has_changes"] else []
    unmanaged = data.get("drift", [])
    # A privileged role the file does not grant fails the check whatever fail-on-unmanaged says.
    privileged = [d for d in unmanaged if d.get("kind") == "privilege"]
    failing = bool(actions) or bool(privileged) or (bool(unmanaged) and fail_on_unmanaged)
    lines = [f"## {'❌ The proxy drifted from' if failing else '✅ The proxy matches'} {md_code(file)}", ""]
    if actions:
        lines.append(f"**apply would make {len(actions)} change(s):**")
        lines += [f"- {md_code(a['address'])}: {escape(a['reason'])}" for a in actions]
        lines.append("")
    if unmanaged:
        lines.append(f"**{len(unmanaged)} item(s) on the proxy are not in the file:**")
        lines += [f"- {md_code(d['address'])}: {escape(d['detail'])}" for d in unmanaged]
        lines.append("")
    for a in actions:
        annotate("error", f"{a['address']}: {a['reason']}", title="Drift: apply would change this")
    for d in unmanaged:
        if d.get("kind") == "privilege":
            annotate("error", f"{d['address']}: {d['detail']}", title="Drift: a privileged role the file does not grant")
        else:
            annotate("error" if fail_on_unmanaged else "warning", f"{d['address']}: {d['detail']}", title="Drift: on the proxy, not in the file")
    if failing:
        print(
            "To resolve: run apply for the changes; for objects on the proxy that the file does not list, either adopt them "
            f"in {file} (`litellm-reconciler export` writes them out, with their roles) or turn on the matching removal scope "
            "(removals: memberships / users / teams) so apply takes them away; a privileged role must be declared or revoked.",
            file=sys.stderr,
        )
    add_summary(clean("\n".join(lines)) + "\n" + markdown)
    set_output("result", "drift" if failing else "no-drift")
    return 1 if failing else 0


def cmd_apply() -> int:
    file = inp("file", "users.yaml")
    if not validate(file):
        return 1
    if not has_key():
        annotate("error", "No LiteLLM key: set LITELLM_MASTER_KEY from the protected environment's secret.", title="Apply impossible")
        set_output("result", "error")
        return 1
    expected = inp("expect-fingerprint")
    if not expected and inp("require-reviewed-plan", "false").lower() == "true":
        message = (
            "No reviewed plan was found for this commit (a direct push, a pull request from a fork, "
            "or a plan comment that was never posted). Nothing was applied. Review the plan and run "
            "this workflow by hand (workflow_dispatch) to apply it."
        )
        annotate("error", message, title="Apply refused: no reviewed plan")
        add_summary(f"## ❌ Apply refused\n\n{message}\n")
        set_output("result", "refused")
        return 1
    report = Path(inp("report", str(out_dir() / "onboarding_results.jsonl")))
    args = ["apply", file, "--yes", "--report", str(report)]
    if expected:
        args += ["--expect-fingerprint", expected]
    if inp("send-invites"):
        if inp("send-invites") != "smtp":
            annotate("error", f"send-invites must be 'smtp' or empty, not {inp('send-invites')!r}", title="Bad input")
            return 1
        args += ["--send-invites", "smtp"]
        if inp("allow-insecure-smtp", "false").lower() == "true":
            args.append("--allow-insecure-smtp")
    proc = cli(*args)
    log = clean(proc.stdout + proc.stderr, all_urls=True).strip()
    print(log)
    if expected:
        matched = fingerprint_verdict(proc, expected)
        set_output("fingerprint-matches", {True: "true", False: "false", None: "unknown"}[matched])
        shown = escape(expected[:16])
        if matched is True:
            binding = f"✅ The plan matches the reviewed plan (fingerprint <code>{shown}</code>)."
        elif matched is False:
            binding = f"❌ The plan does **not** match the reviewed plan (fingerprint <code>{shown}</code>): the proxy or the file changed since the review. Nothing was applied; review a new plan."
            annotate("error", "The plan differs from the reviewed plan; nothing was applied.", title="Plan fingerprint mismatch")
        else:
            binding = (
                f"⚠️ Apply failed, and its exit status does not tell whether the plan matched the reviewed plan "
                f"(fingerprint <code>{shown}</code>). The CLI compares the fingerprint before its first write; see the apply log."
            )
    else:
        binding = "ℹ️ No reviewed fingerprint was given: the current plan (shown below) was applied."
    done = next((line for line in log.splitlines() if APPLY_COMPLETE.fullmatch(line)), "")
    status = "✅ Applied" if proc.returncode == 0 else "❌ Apply failed"
    summary = [f"## {status}: {md_code(file)}", "", binding, ""]
    if done:
        summary += [f"**{done}**", ""]
    if report.exists():
        summary += ["Onboarding links were written to the onboarding report (mode 0600); they are never shown here.", ""]
        set_output("report-file", str(report))
        # Links whose email failed exist only in the report: the workflow must hand it over.
        undelivered = [r for r in load_report(report) if r.get("status") in ("send_failed", "unrecorded")]
        set_output("undelivered", "true" if undelivered else "false")
        if undelivered:
            summary += [f"⚠️ {len(undelivered)} onboarding email(s) could not be sent; their links are only in the onboarding report.", ""]
    summary += ["<details><summary>apply log</summary>", "", fence(log), "", "</details>"]
    add_summary("\n".join(summary))
    set_output("result", "applied" if proc.returncode == 0 else "failed")
    return proc.returncode


def fingerprint_verdict(proc: subprocess.CompletedProcess[str], expected: str) -> Optional[bool]:
    """Did the CLI find the reviewed plan? Decided from its exit status, never from the plan text it printed.

    True: it exited 0 (with --expect-fingerprint it exits 1 before any write when the plan differs).
    False: it exited non-zero and its LAST line on stderr is its refusal, naming the expected fingerprint.
    None: it failed for another reason, before or after the comparison.
    """
    if proc.returncode == 0:
        return True
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    refused = FINGERPRINT_MISMATCH.fullmatch(lines[-1].strip()) if lines else None
    if refused and refused["reviewed"] == (expected.strip().lower()[:16] or "(empty)"):
        return False
    return None


# ---------------------------------------------------------------- pull-request comments (gh CLI)


def gh(*args: str) -> Any:
    proc = subprocess.run(["gh", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gh {' '.join(args[:2])} failed: {clean(proc.stderr).strip()}")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def comments(repo: str, pr: int) -> list[dict[str, Any]]:
    pages = gh("api", "--paginate", "--slurp", f"repos/{repo}/issues/{pr}/comments") or []
    return [c for page in pages for c in (page if isinstance(page, list) else [page])]


def plan_comments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our plan comments, oldest first: posted by the Actions bot, with the marker as line 1."""
    return [c for c in items if (c.get("user") or {}).get("login") == BOT and is_plan_comment(str(c.get("body") or ""))]


def cmd_comment() -> int:
    repo = os.environ["GITHUB_REPOSITORY"]
    pr = (event().get("pull_request") or {}).get("number")
    body_file = inp("body-file") or str(out_dir() / "plan-comment.md")
    if not pr:
        annotate("warning", "not a pull_request event: no comment posted", title="No pull request")
        return 0
    body = clean_body(Path(body_file).read_text(encoding="utf-8"))
    if not is_plan_comment(body):
        raise SystemExit(f"{body_file} is not a plan comment (no marker on its first line)")
    payload = out_dir() / "comment-payload.json"
    payload.write_text(json.dumps({"body": body}), encoding="utf-8")
    ours = plan_comments(comments(repo, int(pr)))
    if ours:
        posted = gh("api", "--method", "PATCH", f"repos/{repo}/issues/comments/{ours[-1]['id']}", "--input", str(payload))
        print(f"Updated the plan comment on pull request #{pr} (comment {posted.get('id')}).")
    else:
        posted = gh("api", "--method", "POST", f"repos/{repo}/issues/{pr}/comments", "--input", str(payload))
        print(f"Posted the plan comment on pull request #{pr} (comment {posted.get('id')}).")
    set_output("comment-id", str(posted.get("id", "")))
    return 0


def cmd_reviewed_fingerprint() -> int:
    repo, sha = os.environ["GITHUB_REPOSITORY"], os.environ["GITHUB_SHA"]
    pulls = gh("api", f"repos/{repo}/commits/{sha}/pulls") or []
    merged = [p for p in pulls if p.get("merge_commit_sha") == sha] or [p for p in pulls if p.get("merged_at")]
    if not merged:
        print(f"No merged pull request found for {sha}.")
        set_output("fingerprint", "")
        return 0
    pr = int(merged[0]["number"])
    ours = plan_comments(comments(repo, pr))
    # Only line 2 of the latest plan comment counts: text from the file or the proxy cannot get there.
    found = parse_fingerprint(str(ours[-1].get("body") or "")) if ours else None
    set_output("pull-request", str(pr))
    if not found:
        print(f"Pull request #{pr} has no plan comment with a fingerprint.")
        set_output("fingerprint", "")
        return 0
    print(f"Reviewed plan: pull request #{pr}, fingerprint {found}.")
    add_summary(f"Reviewed plan: pull request #{pr}, fingerprint `{found[:16]}`.")
    set_output("fingerprint", found)
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "drift": lambda: cmd_plan(drift=True),
    "apply": cmd_apply,
    "comment": cmd_comment,
    "reviewed-fingerprint": cmd_reviewed_fingerprint,
}


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else inp("command")
    if command not in COMMANDS:
        print(f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if inp("proxy-url"):
        os.environ["LITELLM_PROXY_URL"] = inp("proxy-url")
    return COMMANDS[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
