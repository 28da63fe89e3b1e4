"""The GitOps steps on GitHub Actions: ``litellm-reconciler github <command>``, run by action.yml.

    validate              check the file offline; annotate each problem at its file and line
    environments          the job matrix: the file's environments, with their secrets' names
    plan                  validate, plan against the proxy, write the Markdown comment body
    drift                 plan; fail when the proxy differs from the file
    apply                 apply with --yes (optionally bound to a reviewed fingerprint)
    comment               create or update THE plan comment of the pull request (gh api)
    reviewed-fingerprint  find the pull request of the pushed commit and the fingerprint in its plan comment

Inputs are options, filled from the INPUT_* variables action.yml sets (never by interpolating
event text into a script). Results go to GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, workflow commands
(annotations) on stdout, and pull-request comments through the ``gh`` CLI.

The CLI runs as a child process and every decision is taken from its structured output only:
``validate --format json`` (the problems, located), the JSON plan written by ``plan --out``
(fingerprint, has_changes, actions, drift) and ``apply --result-json`` (outcome, and whether
the plan matched the reviewed fingerprint). Its human text can quote the users file and the
proxy, so it is only ever shown (scrubbed, fenced), never read: a team alias that spells
"Plan fingerprint matches" decides nothing.

Whatever reaches a comment, a summary, an annotation or the log goes through the package's one
scrubbing function: keys and SMTP credentials become ``***``, onboarding links
``<link removed>`` and the proxy URL ``<url removed>``. Text from the users file or the proxy
is escaped before it is put into Markdown; the fingerprint reviewers saw is read only from line
2 of the plan comment, a place such text cannot reach.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .attribution import PR_AUTHOR_VARIABLE, PULL_REQUEST_VARIABLE
from .desired import ENVIRONMENT_NAME
from .onboarding import load_report
from .plan import FAILING_DRIFT
from .render.comment_format import (
    MARKER,
    code,
    escape,
    fence,
    header,
    is_plan_comment,
    parse_fingerprint,
    section_environment,
    split_frame,
)
from .render.markdown import GITHUB_COMMENT_LIMIT, cap, combine
from .secrets import scrub

BOT = "github-actions[bot]"
#: The major version of ``apply --result-json`` and ``validate --format json`` this glue reads.
RESULT_MAJOR = "1."
#: Link statuses whose link reached nobody: it is only in the onboarding report.
UNDELIVERED = ("send_failed", "unrecorded")
_FINGERPRINT_HEX = frozenset("0123456789abcdef")

#: Runs the CLI with these arguments and this environment; gives its exit status, stdout and stderr.
CliCall = Callable[[Sequence[str], dict[str, str]], subprocess.CompletedProcess[str]]
#: Runs ``gh`` with these arguments.
GhCall = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def run_cli(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI of this very installation (same interpreter, same package), as a child process."""
    return subprocess.run([sys.executable, "-m", "reconciler", *args], env=env, capture_output=True, text=True)


def run_gh(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gh", *args], capture_output=True, text=True)


@dataclass(frozen=True)
class Tools:
    """How the steps reach the CLI and GitHub; tests pass fakes as the click context's ``obj``."""

    cli: CliCall = run_cli
    gh: GhCall = run_gh


class GlueError(click.ClickException):
    """A step that cannot go on: 'Error: ...' on stderr, exit 1."""

    exit_code = 1


# ---------------------------------------------------------------- the step: GitHub's files and the CLI


class Step:
    """One run of the action's step: what it writes to GitHub, and the CLI it runs."""

    def __init__(self, tools: Tools, proxy_url: str | None = None, environment: str = ""):
        self.tools = tools
        self.proxy_url = proxy_url or os.environ.get("LITELLM_PROXY_URL") or None
        #: The file's environment this step works on; "" for a file that declares none.
        self.environment = environment
        # Hidden like a secret in comments, summaries and the log: the input and the variable.
        self._urls = [proxy_url, os.environ.get("LITELLM_PROXY_URL")]

    def clean(self, text: str, all_urls: bool = False) -> str:
        """``text`` fit for a comment, a summary or the log: scrubbed, with the proxy URL hidden too."""
        return scrub(text, hide_urls=self._urls, all_urls=all_urls)

    def clean_body(self, body: str) -> str:
        """A comment body scrubbed below its fixed first lines (marker, fingerprint), which are kept as they are."""
        frame, rest = split_frame(body)
        return frame + self.clean(rest)

    def output(self, name: str, value: str) -> None:
        path = os.environ.get("GITHUB_OUTPUT")
        if not path:
            return
        with open(path, "a", encoding="utf-8") as out:
            if "\n" in value:
                delimiter = f"EOF_{uuid.uuid4().hex}"
                out.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                out.write(f"{name}={value}\n")

    def summary(self, markdown: str) -> None:
        path = os.environ.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(markdown.rstrip("\n") + "\n\n")

    def annotate(self, level: str, message: str, title: str = "", file: str = "", line: str = "") -> None:
        """A workflow command (::error::, ::warning::, ::notice::), scrubbed and escaped as GitHub requires."""
        props = ",".join(
            f"{k}={_command_escape(self.clean(v), True)}"
            for k, v in (("title", title), ("file", file), ("line", line))
            if v
        )
        click.echo(f"::{level}{' ' + props if props else ''}::{_command_escape(self.clean(message))}")

    def log(self, text: str, err: bool = False) -> None:
        click.echo(self.clean(text), err=err)

    def out_dir(self) -> Path:
        base = Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir()) / "litellm-reconciler"
        base.mkdir(parents=True, exist_ok=True)
        return base

    @property
    def header(self) -> str:
        """The heading of what this step writes into a comment: the environment's, when it has one."""
        return header(self.environment or None)

    @property
    def env_args(self) -> list[str]:
        """``--env NAME`` for the CLI, when the step works on an environment."""
        return ["--env", self.environment] if self.environment else []

    def target(self, file: str) -> str:
        """The file, and the environment when there is one, as headings show them."""
        return f"{code(file)}, environment {code(self.environment)}" if self.environment else code(file)

    def write_body(self, body: str) -> Path:
        """The comment body, scrubbed and capped below GitHub's limit; its path becomes the output body-file."""
        body = cap(self.clean_body(body))
        path = self.out_dir() / "plan-comment.md"
        path.write_text(body, encoding="utf-8")
        self.output("body-file", str(path))
        return path

    def cli(self, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI with the step's environment (and ``extra``), the proxy URL input applied and the
        GitHub token left out."""
        env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")} | (extra or {})
        if self.proxy_url:
            env["LITELLM_PROXY_URL"] = self.proxy_url
        return self.tools.cli(list(args), env)

    def gh(self, *args: str) -> Any:
        proc = self.tools.gh(list(args))
        if proc.returncode != 0:
            raise GlueError(f"gh {' '.join(args[:2])} failed: {self.clean(proc.stderr).strip()}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None


def _command_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def has_key() -> bool:
    return bool(os.environ.get("LITELLM_API_KEY", "").strip() or os.environ.get("LITELLM_MASTER_KEY", "").strip())


def event() -> dict[str, Any]:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path or not Path(path).exists():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object of this glue's major version, else None (absent, cut short, or not ours)."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not str(data.get("format_version", "1.")).startswith(RESULT_MAJOR):
        return None
    return data


def _is_fingerprint(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _FINGERPRINT_HEX


# ---------------------------------------------------------------- validate


def validate(step: Step, file: str) -> bool:
    """``validate --format json``; each problem annotated at its file and line, and the comment body says why."""
    proc = step.cli("validate", file, "--format", "json")
    data = _json_object(proc.stdout)
    if proc.returncode == 0 and data is not None and data.get("valid") is True:
        step.log(f"{file} is valid: {data.get('teams', 0)} team(s), {data.get('users', 0)} user(s).")
        for w in [w for w in data.get("warnings") or [] if isinstance(w, dict)]:
            line = w.get("line") if isinstance(w.get("line"), int) else 0
            step.annotate(
                "warning",
                str(w.get("message", "")),
                title=f"{file}: valid, but not enforced as written",
                file=str(w.get("file") or file),
                line=str(line) if line > 0 else "",
            )
        return True
    problems = [p for p in (data or {}).get("problems") or [] if isinstance(p, dict)]
    if problems:
        lines = []
        for p in problems:
            where, found = str(p.get("file") or file), p.get("line")
            line = found if isinstance(found, int) else 0
            column = f":{p['column']}" if isinstance(p.get("column"), int) else ""
            lines.append(f"error: {where}:{line}{column}: {p.get('message', '')}")
            step.annotate(
                "error",
                str(p.get("message", "")),
                title=f"{file} is invalid",
                file=where,
                line=str(line) if line > 0 else "",
            )
        errors = step.clean("\n".join(lines))
    else:  # the CLI did not get as far as its JSON: its own words, shown, not read
        errors = step.clean(proc.stderr).strip() or f"validate exited with {proc.returncode}"
        step.annotate("error", errors.splitlines()[-1], title=f"{file} is invalid")
    step.log(errors, err=True)
    body = f"{MARKER}\n{step.header}\n\n**❌ {code(file)} is invalid; nothing was planned.**\n\n{fence(errors)}\n"
    step.write_body(body)
    step.summary(body)
    step.output("result", "invalid")
    return False


# ---------------------------------------------------------------- environments


def matrix_entry(name: str, index: int, max_chars: int) -> dict[str, Any]:
    """One environment's entry in the workflows' job matrix. The secrets are named after it
    (``LITELLM_PLAN_KEY_STAGING``), so the plan job of each environment reads only its own proxy."""
    suffix = f"_{name.upper()}" if name else ""
    return {
        "name": name,
        "label": name or "default",
        "artifact": f"plan-comment-{index:02d}" + (f"-{name}" if name else ""),
        "plan-key-secret": f"LITELLM_PLAN_KEY{suffix}",
        "proxy-url-secret": f"LITELLM_PROXY_URL{suffix}",
        "max-chars": max_chars,
    }


def environments(step: Step, file: str, max_chars: int) -> int:
    """The job matrix of the plan and drift workflows: one entry per environment of the file, in
    its order, each with its share of the comment's size. A file without environments, or one
    that does not validate, gets one unnamed entry: its plan job validates and says why."""
    data = _json_object(step.cli("validate", file, "--format", "json").stdout) or {}
    names = [n for n in data.get("environments") or [] if isinstance(n, str)] if data.get("valid") is True else []
    share = max(1000, (max_chars - 500) // max(1, len(names)))
    entries = [matrix_entry(name, index, share) for index, name in enumerate(names or [""], 1)]
    step.output("matrix", json.dumps({"include": entries}))
    step.output("names", json.dumps(names))
    click.echo(f"Environments of {file}: {', '.join(names)}." if names else f"{file} declares no environments.")
    return 0


# ---------------------------------------------------------------- plan and drift

NO_KEY = (
    "No LiteLLM key is available to this job: a pull request from a fork gets no secrets, "
    "or the plan key secret is not configured. The file is valid; the plan against the proxy was skipped."
)


def plan(step: Step, file: str, max_chars: int, drift: bool = False, fail_on_unmanaged: bool = True) -> int:
    if not validate(step, file):
        return 1
    if not has_key():
        step.annotate("error" if drift else "warning", NO_KEY, title="Plan skipped: no key")
        body = (
            f"{MARKER}\n{step.header}\n\n**⚠️ Plan skipped.** {step.target(file)} is valid, "
            f"but {NO_KEY[0].lower()}{NO_KEY[1:]}\n"
        )
        step.write_body(body)
        step.summary(body)
        step.output("result", "no-key")
        return 1 if drift else 0
    plan_json = step.out_dir() / "plan.json"
    plan_json.unlink(missing_ok=True)
    proc = step.cli(
        "plan",
        file,
        *step.env_args,
        "--format",
        "markdown",
        "--max-chars",
        str(max_chars),
        "--out",
        str(plan_json),
        "--detailed-exitcode",
    )
    data = (
        _json_object(plan_json.read_text(encoding="utf-8"))
        if proc.returncode in (0, 2) and plan_json.exists()
        else None
    )
    markdown = proc.stdout
    if (
        data is None
        or not _is_fingerprint(data.get("fingerprint"))
        or parse_fingerprint(markdown) != data.get("fingerprint")
    ):
        # Warnings are the file's (annotated by validate); the error is what the comment must show.
        said = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("warning: "))
        message = step.clean(said).strip() or f"plan exited with {proc.returncode} without a plan"
        if len(message) > max_chars // 2:  # the end holds the error
            message = "…" + message[-(max_chars // 2) :]
        click.echo(message, err=True)
        step.annotate("error", message.splitlines()[-1], title="Plan failed")
        body = f"{MARKER}\n{step.header}\n\n**❌ The plan failed.**\n\n{fence(message)}\n"
        step.write_body(body)
        step.summary(body)
        step.output("result", "error")
        return 1
    body = step.write_body(markdown).read_text(encoding="utf-8")
    click.echo(body)
    step.output("fingerprint", data["fingerprint"])
    step.output("has-changes", "true" if data.get("has_changes") else "false")
    step.output("drift-count", str(len(data.get("drift") or [])))
    if not drift:
        step.summary(body)
        step.output("result", "changes" if data.get("has_changes") else "no-changes")
        return 0
    return _report_drift(step, file, body, data, fail_on_unmanaged)


_FAILING_TITLES = {
    "privilege": "Drift: a privileged role the file does not grant",
    "duplicate": "Drift: a second account with a declared user's email",
    "refused": "Drift: a declared user the plan cannot act on",
}


def _report_drift(step: Step, file: str, markdown: str, data: dict[str, Any], fail_on_unmanaged: bool) -> int:
    actions = [a for a in data.get("actions") or [] if isinstance(a, dict)] if data.get("has_changes") else []
    unmanaged = [d for d in data.get("drift") or [] if isinstance(d, dict)]
    # A privileged role the file does not grant, or a duplicate account, fails the check whatever
    # fail-on-unmanaged says.
    privileged = [d for d in unmanaged if d.get("kind") in FAILING_DRIFT]
    failing = bool(actions) or bool(privileged) or (bool(unmanaged) and fail_on_unmanaged)
    lines = [f"## {'❌ The proxy drifted from' if failing else '✅ The proxy matches'} {step.target(file)}", ""]
    if actions:
        lines.append(f"**apply would make {len(actions)} change(s):**")
        lines += [f"- {code(a.get('address'))}: {escape(a.get('reason', ''))}" for a in actions]
        lines.append("")
    if unmanaged:
        lines.append(f"**{len(unmanaged)} item(s) on the proxy are not in the file:**")
        lines += [f"- {code(d.get('address'))}: {escape(d.get('detail', ''))}" for d in unmanaged]
        lines.append("")
    for a in actions:
        step.annotate("error", f"{a.get('address')}: {a.get('reason', '')}", title="Drift: apply would change this")
    for d in unmanaged:
        if d.get("kind") in FAILING_DRIFT:
            step.annotate(
                "error",
                f"{d.get('address')}: {d.get('detail', '')}",
                title=_FAILING_TITLES[d["kind"]],
            )
        else:
            step.annotate(
                "error" if fail_on_unmanaged else "warning",
                f"{d.get('address')}: {d.get('detail', '')}",
                title="Drift: on the proxy, not in the file",
            )
    if failing:
        step.log(
            (
                "To resolve: run apply for the changes; for objects on the proxy that the file does not list, "
                f"either adopt them in {file} (`litellm-reconciler export` writes them out, with their roles) "
                "or turn on the matching removal scope (removals: memberships / users / teams) so apply takes "
                "them away; a privileged role must be declared or revoked."
            ),
            err=True,
        )
    step.summary(step.clean("\n".join(lines)) + "\n" + markdown)
    step.output("result", "drift" if failing else "no-drift")
    return 1 if failing else 0


# ---------------------------------------------------------------- apply

NO_REVIEWED_PLAN = (
    "No reviewed plan was found for this commit (a direct push, a pull request from a fork, "
    "or a plan comment that was never posted). Nothing was applied. Review the plan and run "
    "this workflow by hand (workflow_dispatch) to apply it."
)


@dataclass(frozen=True)
class ApplyInputs:
    file: str
    expect_fingerprint: str = ""
    require_reviewed_plan: bool = False
    send_invites: str = ""
    allow_insecure_smtp: bool = False
    report: str = ""


def read_apply_result(path: Path, expected: str) -> dict[str, Any] | None:
    """The CLI's ``--result-json`` for THIS apply: None when absent, unreadable, or about
    another fingerprint than the one this step asked for."""
    data = _json_object(path.read_text(encoding="utf-8")) if path.exists() else None
    if data is None or data.get("outcome") not in ("applied", "failed", "refused", "no-changes"):
        return None
    if (data.get("expected_fingerprint") or "") != expected.lower():
        return None
    return data


def apply(step: Step, given: ApplyInputs) -> int:
    file = given.file
    if not validate(step, file):
        return 1
    if not has_key():
        step.annotate(
            "error",
            "No LiteLLM key: set LITELLM_MASTER_KEY from the protected environment's secret.",
            title="Apply impossible",
        )
        step.output("result", "error")
        return 1
    expected = given.expect_fingerprint.strip()
    if not expected and given.require_reviewed_plan:
        step.annotate("error", NO_REVIEWED_PLAN, title="Apply refused: no reviewed plan")
        step.summary(f"## ❌ Apply refused\n\n{NO_REVIEWED_PLAN}\n")
        step.output("result", "refused")
        return 1
    if given.send_invites not in ("", "smtp"):
        step.annotate("error", f"send-invites must be 'smtp' or empty, not {given.send_invites!r}", title="Bad input")
        step.output("result", "error")
        return 1
    report = Path(given.report or step.out_dir() / "onboarding_results.jsonl")
    result_file = step.out_dir() / "apply-result.json"
    result_file.unlink(missing_ok=True)
    args = ["apply", file, *step.env_args, "--yes", "--report", str(report), "--result-json", str(result_file)]
    if expected:
        args += ["--expect-fingerprint", expected]
    if given.send_invites:
        args += ["--send-invites", "smtp"]
        if given.allow_insecure_smtp:
            args.append("--allow-insecure-smtp")
    proc = step.cli(*args, extra=_merged_pull_request(step))
    log = step.clean(proc.stdout + proc.stderr, all_urls=True).strip()
    click.echo(log)
    result = read_apply_result(result_file, expected)
    outcome = result["outcome"] if result else None
    found = result.get("fingerprint_matches") if result else None
    matched = found if isinstance(found, bool) else None
    # Success needs all three: exit 0, an outcome that applied, and (when bound) the CLI's word that the plan matched.
    ok = proc.returncode == 0 and outcome in ("applied", "no-changes") and (not expected or matched is True)

    summary = [f"## {_apply_heading(ok, outcome)}: {step.target(file)}", ""]
    if expected:
        step.output("fingerprint-matches", "unknown" if matched is None else "true" if matched else "false")
        summary += [_binding(expected, matched), ""]
        if matched is False:
            step.annotate(
                "error",
                "The plan differs from the reviewed plan; nothing was applied.",
                title="Plan fingerprint mismatch",
            )
    else:
        summary += ["ℹ️ No reviewed fingerprint was given: the current plan (shown below) was applied.", ""]
    if result is not None:
        summary += _result_lines(step, result)
    else:
        summary += ["⚠️ The apply left no result (see the log): whether anything was applied is not known here.", ""]
    if report.exists():
        summary += [
            "Onboarding links were written to the onboarding report (mode 0600); they are never shown here.",
            "",
        ]
        step.output("report-file", str(report))
        # Links whose email failed exist only in the report: the workflow must hand it over.
        records = result["invitations"] if result else load_report(report)
        undelivered = [r for r in records if isinstance(r, dict) and r.get("status") in UNDELIVERED]
        step.output("undelivered", "true" if undelivered else "false")
        if undelivered:
            summary += [
                (
                    f"⚠️ {len(undelivered)} onboarding email(s) could not be sent; "
                    "their links are only in the onboarding report."
                ),
                "",
            ]
    summary += ["<details><summary>apply log</summary>", "", fence(log), "", "</details>"]
    step.summary("\n".join(summary))
    step.output("result", "applied" if ok else "refused" if outcome == "refused" else "failed")
    return 0 if ok else (proc.returncode or 1)


def _apply_heading(ok: bool, outcome: str | None) -> str:
    if ok:
        return "✅ Nothing to apply" if outcome == "no-changes" else "✅ Applied"
    return "🛑 Apply refused" if outcome == "refused" else "❌ Apply failed"


def _binding(expected: str, matched: bool | None) -> str:
    shown = escape(expected[:16])
    if matched is True:
        return f"✅ The plan matches the reviewed plan (fingerprint <code>{shown}</code>)."
    if matched is False:
        return (
            f"❌ The plan does **not** match the reviewed plan (fingerprint <code>{shown}</code>): "
            "the proxy or the file changed since the review. Nothing was applied; review a new plan."
        )
    return (
        f"⚠️ Apply stopped before comparing the plan with the reviewed plan (fingerprint <code>{shown}</code>), "
        "so it is not known whether they match. Nothing is applied before that comparison; see the apply log."
    )


def _result_lines(step: Step, result: dict[str, Any]) -> list[str]:
    """The apply's counts, what did not succeed and its error, from its result JSON, escaped."""
    lines: list[str] = []
    counts = result.get("summary") or {}
    if result["outcome"] in ("applied", "failed") and result.get("results"):
        lines += [
            (
                f"**Apply complete: {int(counts.get('done', 0))} done, {int(counts.get('failed', 0))} failed, "
                f"{int(counts.get('skipped', 0))} skipped.**"
            ),
            "",
        ]
        troubled = [r for r in result["results"] if isinstance(r, dict) and r.get("status") != "done"]
        for r in troubled[:50]:
            lines.append(
                f"- {code(step.clean(str(r.get('address'))))}: {escape(r.get('status'))}: "
                f"{escape(step.clean(str(r.get('detail') or ''), all_urls=True))}"
            )
        if len(troubled) > 50:
            lines.append(f"- …and {len(troubled) - 50} more (see the apply log)")
        if troubled:
            lines.append("")
    elif result["outcome"] == "no-changes":
        lines += ["The proxy already matches the file: nothing was written.", ""]
    if result.get("verified") is False:
        lines += ["⚠️ A new plan after the apply is not empty: the proxy does not match the file yet.", ""]
    if result.get("error"):
        lines += [f"**Error:** {escape(step.clean(str(result['error']), all_urls=True))}", ""]
    return lines


# ---------------------------------------------------------------- pull-request comments (gh CLI)


def _comments(step: Step, repo: str, pr: int) -> list[dict[str, Any]]:
    pages = step.gh("api", "--paginate", "--slurp", f"repos/{repo}/issues/{pr}/comments") or []
    return [c for page in pages for c in (page if isinstance(page, list) else [page]) if isinstance(c, dict)]


def plan_comments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our plan comments, oldest first: posted by the Actions bot, with the marker as line 1."""
    return [c for c in items if (c.get("user") or {}).get("login") == BOT and is_plan_comment(str(c.get("body") or ""))]


def comment_body(path: Path, environments: Sequence[str]) -> str:
    """The comment to post: the one body at ``path``, or, for a file with environments, one
    section per environment from the bodies under the directory ``path`` (each plan job's
    artifact), in the file's order; an environment whose job left no body is said to have none."""
    if not path.is_dir():
        return path.read_text(encoding="utf-8")
    found: dict[str | None, str] = {}
    for candidate in sorted(path.rglob("plan-comment.md")):
        body = candidate.read_text(encoding="utf-8")
        found.setdefault(section_environment(body), body)
    if not any(environments):  # a file without environments: its one body
        if None not in found:
            raise GlueError(f"no plan comment body under {path}")
        return found[None]
    return combine({name: found.get(name) for name in environments})


def comment(step: Step, body_file: str, environments: Sequence[str] = ()) -> int:
    repo = os.environ["GITHUB_REPOSITORY"]
    pr = (event().get("pull_request") or {}).get("number")
    if not pr:
        step.annotate("warning", "not a pull_request event: no comment posted", title="No pull request")
        return 0
    path = Path(body_file or step.out_dir() / "plan-comment.md")
    body = step.clean_body(comment_body(path, environments))
    if not is_plan_comment(body):
        raise GlueError(f"{path} is not a plan comment (no marker on its first line)")
    payload = step.out_dir() / "comment-payload.json"
    payload.write_text(json.dumps({"body": body}), encoding="utf-8")
    ours = plan_comments(_comments(step, repo, int(pr)))
    if ours:
        posted = step.gh(
            "api", "--method", "PATCH", f"repos/{repo}/issues/comments/{ours[-1]['id']}", "--input", str(payload)
        )
        click.echo(f"Updated the plan comment on pull request #{pr} (comment {posted.get('id')}).")
    else:
        posted = step.gh("api", "--method", "POST", f"repos/{repo}/issues/{pr}/comments", "--input", str(payload))
        click.echo(f"Posted the plan comment on pull request #{pr} (comment {posted.get('id')}).")
    step.output("comment-id", str(posted.get("id", "")))
    return 0


def _merged_pull_request(step: Step) -> dict[str, str]:
    """For the apply's attribution (``attribution``): the pull request merged as the pushed commit, and
    its author, as the variables the CLI reads; nothing when there is none or it cannot be asked."""
    repo, sha = os.environ.get("GITHUB_REPOSITORY"), os.environ.get("GITHUB_SHA")
    if os.environ.get("GITHUB_EVENT_NAME") != "push" or not repo or not sha:
        return {}
    try:
        pulls = [p for p in step.gh("api", f"repos/{repo}/commits/{sha}/pulls") or [] if isinstance(p, dict)]
    except GlueError:
        return {}
    merged = [p for p in pulls if p.get("merge_commit_sha") == sha]
    if not merged:
        return {}
    author = merged[0].get("user") if isinstance(merged[0].get("user"), dict) else {}
    return {
        PULL_REQUEST_VARIABLE: str(merged[0].get("number") or ""),
        PR_AUTHOR_VARIABLE: str(author.get("login") or ""),
    }


def reviewed_fingerprint(step: Step) -> int:
    repo, sha = os.environ["GITHUB_REPOSITORY"], os.environ["GITHUB_SHA"]
    pulls = [p for p in step.gh("api", f"repos/{repo}/commits/{sha}/pulls") or [] if isinstance(p, dict)]
    merged = [p for p in pulls if p.get("merge_commit_sha") == sha] or [p for p in pulls if p.get("merged_at")]
    if not merged:
        click.echo(f"No merged pull request found for {sha}.")
        step.output("fingerprint", "")
        return 0
    pr = int(merged[0]["number"])
    ours = plan_comments(_comments(step, repo, pr))
    # Only line 2 of the latest plan comment counts: text from the file or the proxy cannot get there.
    found = parse_fingerprint(str(ours[-1].get("body") or ""), step.environment or None) if ours else None
    step.output("pull-request", str(pr))
    if not found:
        where = f" for environment {step.environment}" if step.environment else ""
        click.echo(f"Pull request #{pr} has no plan comment with a fingerprint{where}.")
        step.output("fingerprint", "")
        return 0
    click.echo(f"Reviewed plan: pull request #{pr}, fingerprint {found}.")
    step.summary(f"Reviewed plan: pull request #{pr}, fingerprint `{found[:16]}`.")
    step.output("fingerprint", found)
    return 0


# ---------------------------------------------------------------- the click group

_file = click.option(
    "--file", envvar="INPUT_FILE", default="users.yaml", show_default=True, help="The users file [env INPUT_FILE]."
)
_proxy_url = click.option(
    "--proxy-url",
    envvar="INPUT_PROXY_URL",
    default=None,
    help="Proxy base URL [env INPUT_PROXY_URL, else LITELLM_PROXY_URL].",
)
_max_chars = click.option(
    "--max-chars",
    envvar="INPUT_MAX_CHARS",
    type=click.IntRange(1000, GITHUB_COMMENT_LIMIT),
    default=60000,
    show_default=True,
    help="Cap of the Markdown comment [env INPUT_MAX_CHARS].",
)


_environment = click.option(
    "--environment",
    envvar="INPUT_ENVIRONMENT",
    default="",
    help="The file's environment to work on; empty for a file without environments [env INPUT_ENVIRONMENT].",
)


def _step(proxy_url: str | None = None, environment: str = "") -> Step:
    tools = click.get_current_context().find_object(Tools)
    environment = environment.strip()
    if environment and not ENVIRONMENT_NAME.fullmatch(environment):
        raise GlueError(f"{environment!r} is not an environment name (lower-case letters, digits and _)")
    return Step(tools or Tools(), proxy_url, environment)


def _names(value: str) -> list[str]:
    """The JSON list of environment names the environments step wrote (empty: none)."""
    try:
        names = json.loads(value or "[]")
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GlueError(f"--environments must be a JSON list of names, not {value!r}")
    return names


@click.group("github")
def github() -> None:
    """The steps of the GitHub Action (action.yml): inputs from INPUT_* variables, results to
    GITHUB_OUTPUT, the job summary, annotations and the pull request's plan comment."""


@github.command("validate")
@_file
def validate_command(file: str) -> None:
    """Check the file offline; annotate each problem at its line."""
    step = _step()
    ok = validate(step, file)  # an invalid file sets result=invalid itself
    if ok:
        step.output("result", "valid")
    sys.exit(0 if ok else 1)


@github.command("environments")
@_file
@_max_chars
def environments_command(file: str, max_chars: int) -> None:
    """The plan and drift job matrix: the file's environments (outputs matrix and names)."""
    sys.exit(environments(_step(), file, max_chars))


@github.command("plan")
@_file
@_proxy_url
@_max_chars
@_environment
def plan_command(file: str, proxy_url: str | None, max_chars: int, environment: str) -> None:
    """Validate, plan against the proxy (read-only key), write the comment body and the summary."""
    sys.exit(plan(_step(proxy_url, environment), file, max_chars))


@github.command("drift")
@_file
@_proxy_url
@_max_chars
@click.option(
    "--fail-on-unmanaged",
    envvar="INPUT_FAIL_ON_UNMANAGED",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="Also fail on users/teams the file does not list.",
)
@_environment
def drift_command(file: str, proxy_url: str | None, max_chars: int, fail_on_unmanaged: bool, environment: str) -> None:
    """Plan; fail when apply would change something or the proxy holds what the file does not list."""
    step = _step(proxy_url, environment)
    sys.exit(plan(step, file, max_chars, drift=True, fail_on_unmanaged=fail_on_unmanaged))


@github.command("apply")
@_file
@_proxy_url
@click.option(
    "--expect-fingerprint",
    envvar="INPUT_EXPECT_FINGERPRINT",
    default="",
    help="Refuse unless the plan has this (reviewed) fingerprint.",
)
@click.option(
    "--require-reviewed-plan",
    envvar="INPUT_REQUIRE_REVIEWED_PLAN",
    type=click.BOOL,
    default=False,
    help="Refuse when no fingerprint is expected.",
)
@click.option(
    "--send-invites", envvar="INPUT_SEND_INVITES", default="", help="'smtp' to mail the onboarding links, else empty."
)
@click.option(
    "--allow-insecure-smtp",
    envvar="INPUT_ALLOW_INSECURE_SMTP",
    type=click.BOOL,
    default=False,
    help="Allow SMTP_SECURITY=none.",
)
@click.option("--report", envvar="INPUT_REPORT", default="", help="The onboarding report [default: under RUNNER_TEMP].")
@_environment
def apply_command(
    file: str,
    proxy_url: str | None,
    expect_fingerprint: str,
    require_reviewed_plan: bool,
    send_invites: str,
    allow_insecure_smtp: bool,
    report: str,
    environment: str,
) -> None:
    """Apply with --yes, bound to the reviewed fingerprint when one is given; the summary never shows a link."""
    given = ApplyInputs(
        file, expect_fingerprint, require_reviewed_plan, send_invites.strip(), allow_insecure_smtp, report
    )
    sys.exit(apply(_step(proxy_url, environment), given))


@github.command("comment")
@click.option(
    "--body-file", envvar="INPUT_BODY_FILE", default="", help="The Markdown to post [default: the one plan wrote]."
)
@click.option(
    "--environments",
    envvar="INPUT_ENVIRONMENTS",
    default="[]",
    help="JSON list of the file's environments (from the environments step): one section each.",
)
def comment_command(body_file: str, environments: str) -> None:
    """Create or update THE plan comment of the pull request (one section per environment)."""
    sys.exit(comment(_step(), body_file, _names(environments)))


@github.command("reviewed-fingerprint")
@_environment
def reviewed_fingerprint_command(environment: str) -> None:
    """The fingerprint (of an environment) in the plan comment of the merged pull request of GITHUB_SHA."""
    sys.exit(reviewed_fingerprint(_step(environment=environment)))
