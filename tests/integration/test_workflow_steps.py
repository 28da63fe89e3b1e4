"""The plan, apply and drift workflows, executed step by step against the real proxy.

The jobs are read from .github/workflows/*.yml and run by tests/tools/gha.py: every ``run:``
script (the workflow's and the composite action's) runs with bash in a GitHub-like
environment (GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH, GITHUB_STEP_SUMMARY, an event payload
file, RUNNER_TEMP). ``gh`` is tests/tools/fake_gh.py, so the comment that would be posted
is visible here. The plan key is a real read-only key: a proxy_admin_viewer user's.

Set LITELLM_RECONCILER_EXAMPLE_DIR to keep the rendered comment and summary (README, GitOps setup).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tests" / "tools"
sys.path.insert(0, str(TOOLS))
from gha import JobResult, Runner, load_yaml  # noqa: E402

from reconciler.onboarding import load_report  # noqa: E402
from reconciler.render.markdown import HEADER, MARKER, escape, parse_fingerprint  # noqa: E402

WORKFLOWS = REPO / ".github" / "workflows"
REPOSITORY = "acme/llm-access"
MERGE_SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# A link, also as Markdown-escaped text (https\://...), or an invitation id in link form.
LINK = re.compile(r"https?\\?:|invitation(?:\\?_)id|/ui/\?", re.IGNORECASE)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkout-like workspace (the repository's files) and a RUNNER_TEMP shared by the jobs of this module,
    so the action's install step (a venv + pip install of the workspace) pays for the dependencies once."""
    root = tmp_path_factory.mktemp("gha")
    workspace = root / "workspace"
    shutil.copytree(
        REPO,
        workspace,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".cache",
            "tests",
            "bench",
            "build",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            "onboarding_results.jsonl",
            "plan.json",
        ),
    )
    bin_dir = root / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\nexec {sys.executable} {TOOLS / "fake_gh.py"} "$@"\n')
    gh.chmod(0o755)
    return {"root": root, "workspace": workspace, "bin": bin_dir, "temp": root / "runner-temp"}


@pytest.fixture
def gh_state(tmp_path: Path) -> Path:
    state = tmp_path / "gh-state.json"
    state.write_text(json.dumps({"comments": {}, "pulls": {}}))
    return state


@pytest.fixture
def viewer_key(api) -> str:
    """A read-only key: the key of a proxy_admin_viewer user (what the README tells admins to create)."""
    created = api.post("/user/new", {"user_email": "ci-viewer@example.com", "user_role": "proxy_admin_viewer"})
    return created["key"]


def make_runner(
    installed: dict[str, Path], gh_state: Path, event_name: str, event: dict, secrets: dict, **kw
) -> Runner:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "GITHUB_", "SMTP_"))}
    env["PATH"] = f"{installed['bin']}{os.pathsep}{env['PATH']}"
    env["FAKE_GH_STATE"] = str(gh_state)
    return Runner(
        installed["workspace"],
        installed["temp"],
        event_name,
        event,
        secrets=secrets,
        base_env=env,
        repository=REPOSITORY,
        **kw,
    )


def pr_event(number: int, head_repo: str = REPOSITORY) -> dict:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "title": "Add dave `$(touch /tmp/pwned)`",
            "head": {"repo": {"full_name": head_repo}, "ref": "add-dave"},
        },
        "repository": {"full_name": REPOSITORY, "private": True, "default_branch": "main"},
    }


def push_event() -> dict:
    return {
        "after": MERGE_SHA,
        "ref": "refs/heads/main",
        "head_commit": {"message": "Merge pull request #7"},
        "repository": {"full_name": REPOSITORY, "private": True, "default_branch": "main"},
    }


def run_plan_jobs(installed, gh_state, event, secrets) -> tuple[list[JobResult], JobResult]:
    """The plan workflow as GitHub runs it: the environments job, one plan job per environment, the comment."""
    workflow = load_yaml(WORKFLOWS / "plan.yml")
    runner = make_runner(installed, gh_state, "pull_request", event, secrets)
    environments = runner.run_job(workflow, "environments")
    assert environments.result == "success", environments.log
    plans = runner.run_matrix(workflow, "plan", needs={"environments": environments})
    needs = {"environments": environments, "plan": JobResult.of_matrix(plans)}
    return plans, runner.run_job(workflow, "comment", needs=needs)


def run_plan(installed, gh_state, event, secrets) -> tuple[JobResult, JobResult]:
    """The plan workflow for a file without environments: its one plan job, and the comment job."""
    [plan], comment = run_plan_jobs(installed, gh_state, event, secrets)
    return plan, comment


def comments(gh_state: Path, pr: int) -> list[dict]:
    return json.loads(gh_state.read_text())["comments"].get(str(pr), [])


def assert_clean(text: str, *secrets: str) -> None:
    """No secret, no proxy address and no link (an onboarding link is a credential) in what GitHub would show,
    neither as such nor Markdown-escaped."""
    address = urlsplit(os.environ["LITELLM_PROXY_URL"]).netloc
    for secret in (*secrets, address):
        assert secret and secret not in text and escape(secret) not in text
    assert not LINK.search(text), LINK.search(text)


def apply_result(installed) -> dict:
    """The CLI's ``apply --result-json`` of the last apply step (the glue keeps it under RUNNER_TEMP)."""
    path = installed["temp"] / "litellm-reconciler" / "apply-result.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())


def write_users(installed, text: str) -> None:
    (installed["workspace"] / "users.yaml").write_text(text)


USERS = (REPO / "users.yaml").read_text()
USERS_PLUS_DAVE = USERS + "  - email: dave@company.com\n    teams: [research]\n"


def test_plan_posts_one_comment_and_updates_it_in_place(installed, gh_state, api, viewer_key) -> None:
    master = os.environ["LITELLM_MASTER_KEY"]
    secrets = {"LITELLM_PLAN_KEY": viewer_key, "LITELLM_PROXY_URL": os.environ["LITELLM_PROXY_URL"]}
    write_users(installed, USERS)
    plan, comment = run_plan(installed, gh_state, pr_event(7), secrets)
    assert plan.result == "success", plan.log
    assert comment.result == "success", comment.log
    [posted] = comments(gh_state, 7)
    body = posted["body"]
    assert (
        body.startswith(MARKER + "\n") and escape("team.dev-test") in body and escape("user.alice@company.com") in body
    )
    fingerprint = parse_fingerprint(body)  # line 2, the only place CI reads it from
    assert body.split("\n")[1] == f"<!-- litellm-reconciler-fingerprint: {fingerprint} -->"
    assert plan.outputs["fingerprint"] == fingerprint and plan.outputs["result"] == "changes"
    assert f"Plan fingerprint: `{fingerprint}`" in body  # and shown to reviewers
    assert body.strip() in plan.summary  # the job summary shows the same plan
    assert escape("user.ci-viewer@example.com") in body  # drift is shown (folded), not acted on
    assert api.teams() == []  # plan never writes

    write_users(installed, USERS_PLUS_DAVE)  # a second push to the same pull request
    plan2, comment2 = run_plan(installed, gh_state, pr_event(7), secrets)
    assert plan2.result == comment2.result == "success"
    [updated] = comments(gh_state, 7)  # still ONE comment, edited in place
    assert updated["id"] == posted["id"] and escape("user.dave@company.com") in updated["body"]
    assert plan2.outputs["fingerprint"] != fingerprint
    methods = [json.loads(line)["method"] for line in Path(str(gh_state) + ".calls").read_text().splitlines()]
    assert methods == ["GET", "POST", "GET", "PATCH"]
    for text in (updated["body"], plan.summary, plan2.summary, plan.log, plan2.log, comment.log, comment2.log):
        assert_clean(text, master, viewer_key)
    assert "/tmp/pwned" not in plan.log + comment.log and not Path("/tmp/pwned").exists()

    keep = os.environ.get("LITELLM_RECONCILER_EXAMPLE_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "plan-comment.md").write_text(updated["body"])
        (Path(keep) / "plan-summary.md").write_text(plan2.summary)


def test_invalid_file_fails_the_check_and_says_why(installed, gh_state, empty_proxy) -> None:
    write_users(
        installed,
        (
            "version: 1\nteams:\n  - alias: dev-test\n    max_budget: lots\nusers:\n  - email: not-an-email\n"
            "    teams: [nope]\n"
        ),
    )
    plan, comment = run_plan(
        installed, gh_state, pr_event(9), {"LITELLM_PLAN_KEY": empty_proxy[1], "LITELLM_PROXY_URL": empty_proxy[0]}
    )
    assert plan.result == "failure" and plan.outputs["result"] == "invalid"
    assert comment.result == "success"  # the reason is still posted, in the same one comment
    [posted] = comments(gh_state, 9)
    assert posted["body"].startswith(MARKER) and "is invalid" in posted["body"] and "users.yaml:4:" in posted["body"]
    assert re.search(r"::error .*file=users.yaml,line=4::", plan.log)
    assert_clean(posted["body"] + plan.summary + plan.log, empty_proxy[1])


def test_fork_pull_request_gets_no_secrets_and_says_so(installed, gh_state, empty_proxy) -> None:
    write_users(installed, USERS)
    plan, comment = run_plan(installed, gh_state, pr_event(11, head_repo="stranger/llm-access"), secrets={})
    assert plan.result == "success" and plan.outputs["result"] == "no-key", plan.log[-3000:]
    assert "Pull request from a fork" in plan.log and "no secrets" in plan.summary
    assert "plan against the proxy was skipped" in plan.summary
    assert comment.result == "skipped" and comments(gh_state, 11) == []


def _apply(installed, gh_state, secrets, event=None) -> JobResult:
    """apply.yml's one job, a call of apply-environment.yml: its inner apply job's result."""
    workflow = load_yaml(WORKFLOWS / "apply.yml")
    runner = make_runner(installed, gh_state, "push", event or push_event(), secrets, sha=MERGE_SHA)
    call = runner.run_job(workflow, "apply")
    inner = call.jobs["apply"]
    assert call.result == inner.result and inner.environment == "litellm-production"
    assert inner.concurrency == "litellm-apply-default"
    return inner


def _merged(gh_state: Path, pr: int) -> None:
    state = json.loads(gh_state.read_text())
    state["pulls"][MERGE_SHA] = [{"number": pr, "merge_commit_sha": MERGE_SHA, "merged_at": "2025-11-27T00:00:00Z"}]
    gh_state.write_text(json.dumps(state))


def test_apply_on_merge_applies_the_reviewed_plan(installed, gh_state, api, viewer_key) -> None:
    master, url = os.environ["LITELLM_MASTER_KEY"], os.environ["LITELLM_PROXY_URL"]
    write_users(installed, USERS)
    plan, _ = run_plan(installed, gh_state, pr_event(7), {"LITELLM_PLAN_KEY": viewer_key, "LITELLM_PROXY_URL": url})
    _merged(gh_state, 7)

    job = _apply(installed, gh_state, {"LITELLM_MASTER_KEY": master, "LITELLM_PROXY_URL": url})
    assert job.result == "success", job.log
    assert f"Plan fingerprint matches the reviewed plan ({plan.outputs['fingerprint'][:16]})" in job.log
    assert job.steps["apply"]["outputs"]["fingerprint-matches"] == "true"
    assert "matches the reviewed plan" in job.summary and "Apply complete: 13 done, 0 failed, 0 skipped." in job.summary
    assert {t["team_alias"] for t in api.teams()} == {"dev-test", "research"}
    # the onboarding report went to a short-lived artifact, mode 0600, and left the runner
    report = installed["temp"] / "_artifacts" / "onboarding-report" / "onboarding_results.jsonl"
    assert report.exists() and stat.S_IMODE(report.stat().st_mode) == 0o600
    assert "alice@company.com" in report.read_text()
    assert not Path(job.steps["apply"]["outputs"]["report-file"]).exists()
    assert_clean(job.summary + job.log, master, viewer_key)
    # what the step decided from: the real CLI's result, with no link and no invitation id in it
    result = apply_result(installed)
    assert (result["outcome"], result["fingerprint_matches"], result["verified"]) == ("applied", True, True)
    assert result["fingerprint"] == plan.outputs["fingerprint"] and result["summary"] == {
        "done": 13,
        "failed": 0,
        "skipped": 0,
    }
    ids = [r["invitation_id"] for r in load_report(report) if r.get("invitation_id")]
    assert ids and not any(i in json.dumps(result) for i in ids) and not LINK.search(json.dumps(result))

    keep = os.environ.get("LITELLM_RECONCILER_EXAMPLE_DIR")
    if keep:
        (Path(keep) / "apply-summary.md").write_text(job.summary)


def test_apply_refuses_what_reviewers_did_not_see(installed, gh_state, api, viewer_key) -> None:
    master, url = os.environ["LITELLM_MASTER_KEY"], os.environ["LITELLM_PROXY_URL"]
    write_users(installed, USERS)
    run_plan(installed, gh_state, pr_event(7), {"LITELLM_PLAN_KEY": viewer_key, "LITELLM_PROXY_URL": url})
    _merged(gh_state, 7)
    api.post("/team/new", {"team_alias": "research", "max_budget": 1})  # the proxy changes after the review

    job = _apply(installed, gh_state, {"LITELLM_MASTER_KEY": master, "LITELLM_PROXY_URL": url})
    assert job.result == "failure"
    assert "does not match the reviewed" in job.log and "does **not** match the reviewed plan" in job.summary
    assert job.steps["apply"]["outputs"]["fingerprint-matches"] == "false"  # the CLI's refusal, exit 1
    assert job.steps["apply"]["outputs"]["result"] == "refused"
    result = apply_result(installed)
    assert (result["outcome"], result["fingerprint_matches"], result["writes_made"]) == ("refused", False, 0)
    assert [t["team_alias"] for t in api.teams()] == ["research"]  # nothing applied
    assert {u["user_email"] for u in api.users()} - {None} == {"ci-viewer@example.com"}

    # a push without a reviewed plan (no pull request) is refused too
    state = json.loads(gh_state.read_text())
    state["pulls"] = {}
    gh_state.write_text(json.dumps(state))
    direct = _apply(installed, gh_state, {"LITELLM_MASTER_KEY": master, "LITELLM_PROXY_URL": url})
    assert direct.result == "failure" and "No reviewed plan was found" in direct.summary
    assert [t["team_alias"] for t in api.teams()] == ["research"]
    assert_clean(job.summary + job.log + direct.summary + direct.log, master, viewer_key)


@pytest.mark.parametrize("refused", [(), ("bob@company.com",)], ids=["all-sent", "one-refused"])
def test_apply_with_smtp_configured_mails_the_links(installed, gh_state, empty_proxy, refused) -> None:
    """With SMTP secrets the workflow runs apply --send-invites smtp; the report is uploaded only
    when a mail failed, because then it is the only place that link exists."""
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.messages: list[tuple[list[str], str]] = []

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
            if address in refused:
                return "550 5.1.1 No such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        url, master = empty_proxy
        write_users(installed, USERS)
        shutil.rmtree(installed["temp"] / "_artifacts", ignore_errors=True)
        secrets = {
            "LITELLM_MASTER_KEY": master,
            "LITELLM_PROXY_URL": url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_FROM": "LLM proxy <llm@company.com>",
            "SMTP_SECURITY": "none",
            "SMTP_ALLOW_INSECURE": "true",  # a relay without TLS, as on the runner's own network
        }
        runner = make_runner(installed, gh_state, "workflow_dispatch", push_event(), secrets, sha=MERGE_SHA)
        runner.inputs = {"expect-fingerprint": ""}
        job = runner.run_job(load_yaml(WORKFLOWS / "apply.yml"), "apply").jobs["apply"]
    finally:
        smtp.stop()
    assert job.steps["reviewed"]["outcome"] == "skipped"  # workflow_dispatch: the environment's approval is the review
    assert "No reviewed fingerprint was given" in job.summary
    delivered = sorted(r for rcpts, _ in inbox.messages for r in rcpts)
    assert delivered == sorted({"alice@company.com", "bob@company.com", "carol@company.com"} - set(refused))
    assert all(LINK.search(body) for _, body in inbox.messages)  # the links went by mail ...
    uploaded = installed["temp"] / "_artifacts" / "onboarding-report" / "onboarding_results.jsonl"
    if refused:
        assert job.result == "failure", "a link that did not reach its user is a failure"
        assert "1 onboarding email(s) could not be sent" in job.summary
        records = {r["email"]: r for r in load_report(uploaded)}
        assert records["bob@company.com"]["status"] == "send_failed" and LINK.search(
            records["bob@company.com"]["onboarding_link"]
        )
    else:
        assert job.result == "success", job.log
        assert not uploaded.exists()  # ... not into an artifact
    assert_clean(job.summary + job.log, master)


def run_drift(installed, gh_state, secrets) -> list[JobResult]:
    """The drift workflow: the environments job, then one drift job per environment."""
    workflow = load_yaml(WORKFLOWS / "drift.yml")
    runner = make_runner(installed, gh_state, "schedule", {"schedule": "17 6 * * *"}, secrets)
    environments = runner.run_job(workflow, "environments")
    return runner.run_matrix(workflow, "drift", needs={"environments": environments})


def test_drift_check_fails_and_says_what_drifted(installed, gh_state, api, viewer_key, cli) -> None:
    master, url = os.environ["LITELLM_MASTER_KEY"], os.environ["LITELLM_PROXY_URL"]
    users = USERS + "  - email: ci-viewer@example.com\n    role: proxy_admin_viewer\n"
    write_users(installed, users)
    applied = cli(
        "apply",
        str(installed["workspace"] / "users.yaml"),
        "--yes",
        "--report",
        "report.json",
        env={"LITELLM_API_KEY": ""},
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # The master key stands in for the plan key here: with litellm 1.80.5 a proxy_admin_viewer key
    # lists no teams through /v2/team/list (see test_read_only_key_plans_like_the_master_key).
    secrets = {"LITELLM_PLAN_KEY": master, "LITELLM_PROXY_URL": url}

    [clean] = run_drift(installed, gh_state, secrets)
    assert clean.result == "success", clean.log + clean.summary + applied.stdout
    assert "✅ The proxy matches" in clean.summary

    team = next(t for t in api.teams() if t["team_alias"] == "dev-test")
    api.post("/team/update", {"team_id": team["team_id"], "max_budget": 5})  # changed by hand in the UI
    api.post("/user/new", {"user_email": "mallory@company.com"})  # added by hand
    [drifted] = run_drift(installed, gh_state, secrets)
    assert drifted.result == "failure"
    assert "❌ The proxy drifted from" in drifted.summary
    assert escape("team.dev-test") in drifted.summary and escape("user.mallory@company.com") in drifted.summary
    assert "::error title=Drift" in drifted.log
    assert_clean(drifted.summary + drifted.log, master, viewer_key)


def test_read_only_key_plans_like_the_master_key(api, viewer_key, cli) -> None:
    """The read-only plan key must see what the master key sees, or reviewers approve a wrong plan."""
    assert (
        cli(
            "apply", str(REPO / "users.yaml"), "--yes", "--report", "report.json", env={"LITELLM_API_KEY": ""}
        ).returncode
        == 0
    )
    with_master = cli("plan", str(REPO / "users.yaml"), "--format", "json", env={"LITELLM_API_KEY": ""})
    with_viewer = cli("plan", str(REPO / "users.yaml"), "--format", "json", env={"LITELLM_API_KEY": viewer_key})
    assert with_master.returncode == with_viewer.returncode == 0, with_viewer.stderr
    assert json.loads(with_viewer.stdout)["fingerprint"] == json.loads(with_master.stdout)["fingerprint"]


def test_ci_proxy_script_empties_the_proxy_and_prints_env(api) -> None:
    """.github/scripts/ci-proxy.sh stands in for the harness on GitHub (LITELLM_HARNESS): reset and env work."""
    import subprocess

    if not shutil.which("psql"):
        pytest.fail("psql is needed by ci-proxy.sh reset", pytrace=False)
    script = REPO / ".github" / "scripts" / "ci-proxy.sh"
    database = (
        os.environ.get("DATABASE_URL")
        or f"postgresql://litellm:litellm@127.0.0.1:{os.environ.get('LITELLM_HARNESS_PGPORT', '54329')}/litellm"
    )
    env = {**os.environ, "DATABASE_URL": database}
    api.post("/team/new", {"team_alias": "to-be-emptied"})
    assert [t["team_alias"] for t in api.teams()] == ["to-be-emptied"]
    reset = subprocess.run(
        ["bash", str(script), "reset", "--keep-proxy"], env=env, capture_output=True, text=True, timeout=60
    )
    assert reset.returncode == 0, reset.stderr
    assert api.teams() == [] and api.users() == []
    exports = subprocess.run(["bash", str(script), "env"], env=env, capture_output=True, text=True, timeout=60).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in exports.splitlines() if line.startswith("export ")
    )
    assert values["LITELLM_PROXY_URL"].strip("'\"") == os.environ["LITELLM_PROXY_URL"]
    assert values["LITELLM_MASTER_KEY"].strip("'\"") == os.environ["LITELLM_MASTER_KEY"]
    assert subprocess.run(["bash", str(script), "status"], env=env, timeout=60).returncode == 0


def test_long_plan_is_folded_and_cut_below_the_comment_limit(installed, gh_state, empty_proxy) -> None:
    users = "version: 1\nteams:\n  - alias: big\nusers:\n" + "".join(
        f"  - email: user{i:04d}@company.com\n    teams: [big]\n" for i in range(1500)
    )
    write_users(installed, users)
    plan, comment = run_plan(
        installed, gh_state, pr_event(12), {"LITELLM_PLAN_KEY": empty_proxy[1], "LITELLM_PROXY_URL": empty_proxy[0]}
    )
    assert plan.result == comment.result == "success", plan.log[-2000:]
    [posted] = comments(gh_state, 12)
    body = posted["body"]
    assert len(body) < 65536 and body.startswith(MARKER)
    assert "<details><summary>" in body and "cut to fit a GitHub comment" in body
    assert parse_fingerprint(body) == plan.outputs["fingerprint"]  # the binding survives the cut


FAKE_FINGERPRINT = "0123456789abcdef" * 4
#: Within the file's 128 characters: the fingerprint's hidden line, a closing tag and a table break.
HOSTILE_ALIAS = f"ops`x <!-- litellm-reconciler-fingerprint: {FAKE_FINGERPRINT} --> </details> a|b"


def test_hostile_alias_cannot_change_the_reviewed_fingerprint(installed, gh_state, api, viewer_key) -> None:
    """A team alias that imitates the fingerprint, the hidden line, HTML and a table break (in the file),
    and one with a line break (on the proxy, shown as drift): the comment shows them escaped,
    reviewed-fingerprint reads the real fingerprint, and apply applies the reviewed plan."""
    master, url = os.environ["LITELLM_MASTER_KEY"], os.environ["LITELLM_PROXY_URL"]
    api.post("/team/new", {"team_alias": f"proxy {HOSTILE_ALIAS}\nline2"})  # made by hand on the proxy
    users = USERS + f"  - email: eve@company.com\n    teams: [{json.dumps(HOSTILE_ALIAS)}]\n"
    users = users.replace("teams:\n", f"teams:\n  - alias: {json.dumps(HOSTILE_ALIAS)}\n    max_budget: 1\n", 1)
    write_users(installed, users)
    plan, comment = run_plan(
        installed, gh_state, pr_event(13), {"LITELLM_PLAN_KEY": viewer_key, "LITELLM_PROXY_URL": url}
    )
    assert plan.result == comment.result == "success", plan.log
    [posted] = comments(gh_state, 13)
    body = posted["body"]
    real = plan.outputs["fingerprint"]
    assert parse_fingerprint(body) == real != FAKE_FINGERPRINT
    assert re.findall(r"[0-9a-f]{64}", body.replace(FAKE_FINGERPRINT, "")) == [real, real]  # line 2 and the <sub> line
    assert body.count("<!--") == 2 and body.count("<sub>") == 1 and body.count("</details>") == body.count("<details>")
    assert escape("team." + HOSTILE_ALIAS) in body
    # drift, on its row: the line break shown escaped (\n), never a real one
    assert escape(f"team.proxy {HOSTILE_ALIAS}\nline2") in body and "\nline2" not in body
    _merged(gh_state, 13)

    job = _apply(installed, gh_state, {"LITELLM_MASTER_KEY": master, "LITELLM_PROXY_URL": url})
    assert job.result == "success", job.log[-3000:]
    assert job.steps["reviewed"]["outputs"]["fingerprint"] == real
    assert job.steps["apply"]["outputs"]["fingerprint-matches"] == "true"
    assert HOSTILE_ALIAS in {t["team_alias"] for t in api.teams()}
    assert "\nline2" not in job.log  # the text plan shows the proxy's line break as \n
    shown = (body + plan.summary + job.summary).replace(
        escape("https://evil.example"), ""
    )  # the alias's own link, escaped
    assert_clean(shown, master, viewer_key)


# ---------------------------------------------------------------- two environments, two real proxies

TWO_ENVIRONMENTS = """\
version: 1
environments:
  - name: staging
  - name: production
teams:
  - alias: research
    models: [gpt-4o-mini]
    max_budget: 500
    overrides:
      staging: {max_budget: 50}
  - alias: sandbox
    only_in: [staging]
users:
  - email: alice@company.com
    teams: [research, sandbox]
  - email: bob@company.com
    teams: [research]
    only_in: [production]
"""
PROMOTION = WORKFLOWS / "examples" / "apply-staging-production.yml"


def _environment_secrets(staging: tuple[str, str], production: tuple[str, str]) -> dict[str, str]:
    """The plan workflow's repository secrets: each environment's proxy URL and read-only key."""
    return {
        "LITELLM_PROXY_URL_STAGING": staging[0],
        "LITELLM_PLAN_KEY_STAGING": staging[1],
        "LITELLM_PROXY_URL_PRODUCTION": production[0],
        "LITELLM_PLAN_KEY_PRODUCTION": production[1],
    }


def _promote(installed, gh_state, staging: tuple[str, str], production: tuple[str, str]) -> dict[str, JobResult]:
    """The promotion workflow: staging, then production with `needs: staging`. Each job runs in its own
    GitHub environment, whose secrets are its proxy's URL and master key (a runner per environment)."""
    workflow = load_yaml(PROMOTION)
    results: dict[str, JobResult] = {}
    for name, (url, key) in (("staging", staging), ("production", production)):
        secrets = {"LITELLM_PROXY_URL": url, "LITELLM_MASTER_KEY": key}
        runner = make_runner(installed, gh_state, "push", push_event(), secrets, sha=MERGE_SHA)
        results[name] = runner.run_job(workflow, name, needs={k: v for k, v in results.items()})
    return results


def test_two_environments_one_comment_then_staging_before_production(
    installed, gh_state, api, viewer_key, second_api, cli
) -> None:
    """staging (the second proxy) and production (the first), planned in one comment with a section and a
    fingerprint each, then applied by the promotion workflow: staging first, production after it."""
    staging_viewer = second_api.post(
        "/user/new", {"user_email": "ci-viewer@example.com", "user_role": "proxy_admin_viewer"}
    )["key"]
    staging_url, staging_master = second_api.http.base_url, second_api.http.headers["Authorization"][7:]
    staging_url = str(staging_url).rstrip("/")
    production_url, production_master = os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"]
    write_users(installed, TWO_ENVIRONMENTS)

    plans, comment = run_plan_jobs(
        installed,
        gh_state,
        pr_event(21),
        _environment_secrets((staging_url, staging_viewer), (production_url, viewer_key)),
    )
    assert [(p.name, p.result, p.outputs["result"]) for p in plans] == [
        ("plan (staging)", "success", "changes"),
        ("plan (production)", "success", "changes"),
    ], [p.log[-2000:] for p in plans]
    assert comment.result == "success", comment.log
    [posted] = comments(gh_state, 21)
    body = posted["body"]
    staging_fp, production_fp = (p.outputs["fingerprint"] for p in plans)
    assert staging_fp != production_fp
    assert body.split("\n")[1] == (
        f"<!-- litellm-reconciler-fingerprints: staging={staging_fp} production={production_fp} -->"
    )
    staging_part, production_part = body.split(f"{HEADER}: production")
    assert f"{HEADER}: staging" in staging_part and escape("team.sandbox") in staging_part
    assert escape("user.bob@company.com") not in staging_part and escape("team.sandbox") not in production_part
    assert escape("user.bob@company.com") in production_part
    assert second_api.teams() == [] and api.teams() == []  # plan never writes
    netloc = urlsplit(staging_url).netloc
    assert_clean(body + comment.log, production_master, staging_master, staging_viewer, viewer_key, netloc)
    _merged(gh_state, 21)

    applied = _promote(installed, gh_state, (staging_url, staging_master), (production_url, production_master))
    for name, fingerprint in (("staging", staging_fp), ("production", production_fp)):
        call = applied[name]
        job = call.jobs["apply"]
        assert call.result == job.result == "success", job.log[-3000:]
        assert (job.environment, job.concurrency) == (f"litellm-{name}", f"litellm-apply-{name}")
        assert job.steps["reviewed"]["outputs"]["fingerprint"] == fingerprint
        assert job.steps["apply"]["outputs"]["fingerprint-matches"] == "true"
        assert f"environment <code>{name}</code>" in job.summary
    staging_teams = {t["team_alias"]: t for t in second_api.teams()}
    production_teams = {t["team_alias"]: t for t in api.teams()}
    assert set(staging_teams) == {"research", "sandbox"} and set(production_teams) == {"research"}
    assert (staging_teams["research"]["max_budget"], production_teams["research"]["max_budget"]) == (50, 500)
    assert {u["user_email"] for u in second_api.users()} - {"ci-viewer@example.com", None} == {"alice@company.com"}
    assert {u["user_email"] for u in api.users()} - {"ci-viewer@example.com", None} == {
        "alice@company.com",
        "bob@company.com",
    }
    # converged: a new plan of each environment is empty
    users_file = str(installed["workspace"] / "users.yaml")
    for name, url, key in (("staging", staging_url, staging_master), ("production", production_url, production_master)):
        again = cli(
            "plan",
            users_file,
            "--env",
            name,
            "--detailed-exitcode",
            env={"LITELLM_PROXY_URL": url, "LITELLM_MASTER_KEY": key},
        )
        assert again.returncode == 0, again.stdout + again.stderr


def test_a_failing_environment_is_reported_without_hiding_the_other(
    installed, gh_state, api, viewer_key, second_api
) -> None:
    """staging's proxy is unreachable: its section says the plan failed, production's plan is still there
    with its fingerprint; the promotion applies neither staging (no reviewed plan for it) nor, because
    staging did not converge, production, and says so."""
    production_url, production_master = os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"]
    dead = "http://127.0.0.1:9"  # nothing listens there
    write_users(installed, TWO_ENVIRONMENTS)
    plans, comment = run_plan_jobs(
        installed,
        gh_state,
        pr_event(22),
        _environment_secrets((dead, "sk-staging-unused"), (production_url, viewer_key)),
    )
    assert [(p.result, p.outputs["result"]) for p in plans] == [("failure", "error"), ("success", "changes")]
    assert comment.result == "success", comment.log
    [posted] = comments(gh_state, 22)
    body = posted["body"]
    production_fp = plans[1].outputs["fingerprint"]
    assert body.split("\n")[1] == f"<!-- litellm-reconciler-fingerprints: staging=none production={production_fp} -->"
    staging_part, production_part = body.split(f"{HEADER}: production")
    assert "The plan failed" in staging_part and escape("user.bob@company.com") in production_part
    assert_clean(body, production_master, viewer_key)
    _merged(gh_state, 22)

    applied = _promote(installed, gh_state, (dead, "sk-staging-unused"), (production_url, production_master))
    staging = applied["staging"].jobs["apply"]
    assert staging.result == "failure" and "No reviewed plan was found" in staging.summary
    assert applied["production"].result == "skipped"  # promotion: production waits for a converged staging
    assert api.teams() == []
    # production on its own (no promotion rule): its reviewed plan applies, whatever happened to staging
    workflow = load_yaml(PROMOTION)
    del workflow["jobs"]["production"]["needs"]
    secrets = {"LITELLM_PROXY_URL": production_url, "LITELLM_MASTER_KEY": production_master}
    runner = make_runner(installed, gh_state, "push", push_event(), secrets, sha=MERGE_SHA)
    alone = runner.run_job(workflow, "production").jobs["apply"]
    assert alone.result == "success", alone.log[-3000:]
    assert {t["team_alias"] for t in api.teams()} == {"research"}
