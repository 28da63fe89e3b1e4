"""The workflow emulator of tests/tools/gha.py: expressions, matrices, reusable workflows and artifacts.

The integration tests trust it to run the workflows as GitHub would, so its semantics are pinned here
with tiny workflows whose ``run:`` steps are plain shell (no network, no proxy).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parent / "tools"
sys.path.insert(0, str(TOOLS))
from gha import JobResult, Runner, evaluate, interpolate, load_yaml  # noqa: E402


def make_runner(tmp_path: Path, **kw: Any) -> Runner:
    """A runner with a fresh workspace and only PATH from the environment (no GITHUB_* of an outer CI)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    return Runner(
        workspace,
        tmp_path / "runner-temp",
        "push",
        {"ref": "refs/heads/main", "commits": [{"id": "c1"}, {"id": "c2"}]},
        base_env={"PATH": os.environ["PATH"]},
        **kw,
    )


def write_workflow(runner: Runner, name: str, text: str) -> dict[str, Any]:
    path = runner.workspace / ".github" / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_yaml(path)


# ---------------------------------------------------------------- expressions


def test_computed_keys_are_looked_up_case_insensitively() -> None:
    ctx = {
        "secrets": {"PLAN_KEY_PROD": "prod-key", "plan_key_staging": "staging-key"},
        "matrix": {"plan-key": "plan_key_prod", "environment": "STAGING"},
        "github": {"event": {"commits": [{"id": "c1"}, {"id": "c2"}, {"other": 1}]}},
    }
    assert evaluate("secrets[matrix.plan-key]", ctx) == "prod-key"
    assert evaluate("secrets[format('PLAN_KEY_{0}', matrix.environment)]", ctx) == "staging-key"
    assert evaluate("secrets.plan_key_PROD", ctx) == "prod-key"
    assert evaluate("Secrets.PLAN_KEY_STAGING", ctx) == "staging-key"  # context names too
    assert evaluate("matrix.plan-key", ctx) == "plan_key_prod"
    assert evaluate("secrets.missing", ctx) is None
    assert evaluate("secrets['missing'].deeper", ctx) is None
    assert interpolate("[${{ secrets[matrix.nothing] }}]", ctx) == "[]"
    assert evaluate("github.event.commits[1].id", ctx) == "c2"
    assert evaluate("github.event.commits[7]", ctx) is None
    assert evaluate("github.event.commits.*.id", ctx) == ["c1", "c2"]
    assert evaluate("contains(github.event.commits.*.id, 'C2')", ctx) is True
    with pytest.raises(ValueError, match="unknown context"):
        evaluate("nosuch.value", ctx)


def test_format_fromjson_tojson_join_and_string_functions() -> None:
    assert evaluate("format('{{ {0} }} {1}{0}', 'a', 1)", {}) == "{ a } 1a"
    assert evaluate("format('{0}-{0}', true)", {}) == "true-true"
    for bad in ("format('{0', 'x')", "format('{1}', 'x')", "format('a}b')"):
        with pytest.raises(ValueError):
            evaluate(bad, {})
    assert evaluate("fromJSON('{\"a\": [1, true, null]}')", {}) == {"a": [1, True, None]}
    assert evaluate('fromJSON(\'["x", "y"]\')[1]', {}) == "y"
    assert evaluate("fromJSON('3') == 3", {}) is True
    assert evaluate("toJSON(fromJSON('{\"a\":1}'))", {}) == '{\n  "a": 1\n}'
    assert evaluate("toJSON(3)", {}) == "3"
    assert evaluate("toJSON('x')", {}) == '"x"'
    assert evaluate("join(fromJSON('[\"a\", \"b\", 2]'), '+')", {}) == "a+b+2"
    assert evaluate('join(fromJSON(\'["a", "b"]\'))', {}) == "a,b"
    assert evaluate("join('alone', '+')", {}) == "alone"
    assert evaluate("contains(fromJSON('[\"Prod\"]'), 'prod')", {}) is True
    assert evaluate("contains('Hello', 'LL') && startsWith('Hello', 'he') && endsWith('Hello', 'LO')", {}) is True
    assert evaluate("startsWith('Hello', 'lo')", {}) is False


# ---------------------------------------------------------------- matrices

MATRIX_FROM_NEEDS = """\
on: push
jobs:
  environments:
    runs-on: ubuntu-latest
    outputs:
      matrix: ${{ steps.list.outputs.matrix }}
    steps:
      - id: list
        run: |
          prod='{"environment":"prod","plan-key":"PLAN_KEY_PROD"}'
          staging='{"environment":"staging","plan-key":"plan_key_staging"}'
          echo 'matrix={"include":['"$prod,$staging"']}' >> "$GITHUB_OUTPUT"
  plan:
    needs: environments
    if: needs.environments.outputs.matrix != ''
    name: plan (${{ matrix.environment }})
    environment: ${{ matrix.environment }}
    concurrency:
      group: plan-${{ matrix.environment }}
      cancel-in-progress: false
    strategy:
      fail-fast: false
      matrix: ${{ fromJSON(needs.environments.outputs.matrix) }}
    runs-on: ubuntu-latest
    outputs:
      key: ${{ steps.show.outputs.key }}
    steps:
      - id: show
        env:
          KEY: ${{ secrets[matrix.plan-key] }}
        run: |
          echo "key=$KEY" >> "$GITHUB_OUTPUT"
          echo "planned ${{ matrix.environment }} (${{ strategy.job-index }}/${{ strategy.job-total }})" \
            >> "$GITHUB_STEP_SUMMARY"
"""


def test_matrix_from_needs_outputs_with_environment_and_concurrency(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, secrets={"PLAN_KEY_PROD": "p-key", "PLAN_KEY_STAGING": "s-key"})
    wf = write_workflow(runner, "plan.yml", MATRIX_FROM_NEEDS)
    environments = runner.run_job(wf, "environments")
    assert environments.result == "success", environments.log

    needs = {"environments": environments}
    assert runner.matrix(wf, "plan", needs) == [
        {"environment": "prod", "plan-key": "PLAN_KEY_PROD"},
        {"environment": "staging", "plan-key": "plan_key_staging"},
    ]
    runs = runner.run_matrix(wf, "plan", needs)
    assert [r.result for r in runs] == ["success", "success"], [r.log for r in runs]
    assert [r.name for r in runs] == ["plan (prod)", "plan (staging)"]
    assert [r.environment for r in runs] == ["prod", "staging"]
    assert [r.concurrency for r in runs] == ["plan-prod", "plan-staging"]
    assert [r.outputs["key"] for r in runs] == ["p-key", "s-key"]
    assert [r.matrix["environment"] for r in runs] == ["prod", "staging"]
    assert runs[1].summary == "planned staging (1/2)\n"
    assert environments.name == "environments"  # no name: the job id

    # one combination run directly, and the job skipped (matrix not evaluated) when there is no list
    single = runner.run_job(wf, "plan", needs, matrix={"environment": "prod", "plan-key": "plan_key_prod"})
    assert (single.result, single.outputs["key"], single.concurrency) == ("success", "p-key", "plan-prod")
    skipped = runner.run_matrix(wf, "plan", {"environments": JobResult("success")})
    assert [r.result for r in skipped] == ["skipped"]


def test_matrix_include_and_exclude_follow_github(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    wf = write_workflow(
        runner,
        "m.yml",
        """\
        on: push
        jobs:
          vectors:
            strategy:
              matrix:
                os: [linux, mac]
                version: ${{ fromJSON('[1, 2]') }}
                exclude:
                  - os: mac
                    version: 2
                include:
                  - color: green
                  - color: pink
                    version: 1
                  - os: windows
                  - os: windows
                    version: 1
            steps: [{run: "true"}]
          only-include:
            strategy:
              matrix:
                include: [{a: 1}, {a: 2, b: x}]
            steps: [{run: "true"}]
          plain:
            steps: [{run: "true"}]
        """,
    )
    assert runner.matrix(wf, "vectors") == [
        {"os": "linux", "version": 1, "color": "pink"},
        {"os": "linux", "version": 2, "color": "green"},
        {"os": "mac", "version": 1, "color": "pink"},
        {"os": "windows"},
        {"os": "windows", "version": 1},  # include entries match original combinations only
    ]
    assert runner.matrix(wf, "only-include") == [{"a": 1}, {"a": 2, "b": "x"}]
    assert runner.matrix(wf, "plain") == [{}]
    assert [r.matrix for r in runner.run_matrix(wf, "plain")] == [{}]


FAIL_FAST = """\
on: push
jobs:
  test:
    strategy:
      {strategy}
      matrix:
        n: [1, 2, 3]
    runs-on: ubuntu-latest
    {job_extra}
    steps:
      - run: echo "ran ${{{{ matrix.n }}}}"; test "${{{{ matrix.n }}}}" != 1
"""


@pytest.mark.parametrize(
    ("strategy", "job_extra", "expected"),
    [
        ("fail-fast: false", "", ["failure", "success", "success"]),
        ("fail-fast: true", "", ["failure", "cancelled", "cancelled"]),
        ("max-parallel: 1", "", ["failure", "cancelled", "cancelled"]),  # GitHub's default is fail-fast
        ("fail-fast: true", "continue-on-error: ${{ matrix.n == 1 }}", ["failure", "success", "success"]),
    ],
    ids=["fail-fast-false", "fail-fast-true", "fail-fast-default", "continue-on-error"],
)
def test_fail_fast_cancels_the_rest(tmp_path: Path, strategy: str, job_extra: str, expected: list[str]) -> None:
    runner = make_runner(tmp_path)
    wf = write_workflow(runner, "ff.yml", FAIL_FAST.format(strategy=strategy, job_extra=job_extra))
    runs = runner.run_matrix(wf, "test")
    assert [r.result for r in runs] == expected
    assert [r.matrix for r in runs] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert "ran 1" in runs[0].log and all(("ran" in r.log) == (r.result != "cancelled") for r in runs)
    assert JobResult.of_matrix(runs).result == "failure"


def test_of_matrix_is_what_needs_sees() -> None:
    first = JobResult("success", outputs={"a": "1", "b": "x", "c": ""}, summary="s1", log="l1")
    second = JobResult("success", outputs={"a": "", "b": "y", "c": ""}, summary="s2", log="l2")
    merged = JobResult.of_matrix([first, second])
    assert merged.result == "success"
    assert merged.outputs == {"a": "1", "b": "y", "c": ""}  # later non-empty values win
    assert (merged.summary, merged.log) == ("s1s2", "l1l2")
    assert JobResult.of_matrix([first, JobResult("skipped")]).result == "success"
    assert JobResult.of_matrix([JobResult("skipped"), JobResult("skipped")]).result == "skipped"
    assert JobResult.of_matrix([first, JobResult("cancelled")]).result == "failure"
    assert JobResult.of_matrix([JobResult("failure"), second]).result == "failure"
    plain = JobResult("success")  # positional construction still works; the new fields have defaults
    assert (plain.environment, plain.concurrency, plain.matrix, plain.name, plain.jobs) == ("", "", {}, "", {})


# ---------------------------------------------------------------- reusable workflows

REUSABLE = """\
on:
  workflow_call:
    inputs:
      environment: {type: string, required: true}
      dry-run: {type: boolean, default: false}
      retries: {type: number, default: 2}
      label: {type: string, default: none}
    secrets:
      MASTER_KEY: {required: false}
    outputs:
      fingerprint:
        value: ${{ jobs.apply.outputs.fingerprint }}
      prepared:
        value: ${{ jobs.prepare.result }}
env:
  SHARED: from-called
jobs:
  prepare:
    runs-on: ubuntu-latest
    outputs:
      token: ${{ steps.p.outputs.token }}
    steps:
      - id: p
        run: |
          echo "token=${{ inputs.environment }}-${{ inputs.retries }}" >> "$GITHUB_OUTPUT"
          echo "LEAK=1" >> "$GITHUB_ENV"
          echo "prepared ${{ inputs.environment }}" >> "$GITHUB_STEP_SUMMARY"
  apply:
    needs: prepare
    environment: ${{ inputs.environment }}
    runs-on: ubuntu-latest
    outputs:
      fingerprint: ${{ steps.a.outputs.fingerprint }}
    steps:
      - run: |
          test -z "${LEAK:-}"  # GITHUB_ENV of another job does not leak
          test -z "${CALLER:-}"  # nor does the caller's workflow env
          echo "dry=${{ inputs.dry-run }} typed=${{ inputs.dry-run == false }} shared=$SHARED"
          echo '${{ toJSON(inputs) }}' > "$RUNNER_TEMP/inputs-${{ inputs.environment }}.json"
      - id: a
        if: ${{ !inputs.dry-run }}
        env:
          KEY: ${{ secrets.master_key }}
          TOKEN: ${{ needs.prepare.outputs.token }}
        run: echo "fingerprint=$TOKEN-$KEY-${{ inputs.label }}" >> "$GITHUB_OUTPUT"
"""

CALLER = """\
on: push
env:
  CALLER: "yes"
jobs:
  deploy:
    uses: ./.github/workflows/reusable.yml
    concurrency: deploy-${{ github.ref_name }}
    with:
      environment: prod
      dry-run: ${{ inputs.dry == 'yes' }}
    secrets: inherit
  mapped:
    uses: ./.github/workflows/reusable.yml
    with:
      environment: staging
      retries: "5"
      label: ${{ format('{0}-label', 'staging') }}
    secrets:
      MASTER_KEY: ${{ secrets.STAGING_KEY }}
  none:
    uses: ./.github/workflows/reusable.yml
    with:
      environment: dev
  report:
    needs: deploy
    runs-on: ubuntu-latest
    steps:
      - run: echo "got ${{ needs.deploy.outputs.fingerprint }}"
"""


def test_reusable_workflow_inputs_secrets_and_outputs(tmp_path: Path) -> None:
    runner = make_runner(
        tmp_path, secrets={"MASTER_KEY": "master", "STAGING_KEY": "staging"}, inputs={"environment": "top"}
    )
    write_workflow(runner, "reusable.yml", REUSABLE)
    wf = write_workflow(runner, "caller.yml", CALLER)

    deploy = runner.run_job(wf, "deploy")
    assert deploy.result == "success", deploy.log
    assert list(deploy.jobs) == ["prepare", "apply"]
    assert deploy.outputs == {"fingerprint": "prod-2-master-none", "prepared": "success"}
    assert deploy.jobs["apply"].environment == "prod" and deploy.jobs["prepare"].environment == ""
    assert deploy.concurrency == "deploy-main" and deploy.name == "deploy"
    assert "dry=false typed=true shared=from-called" in deploy.log
    assert "prepared prod" in deploy.summary and deploy.summary == "".join(j.summary for j in deploy.jobs.values())

    report = runner.run_job(wf, "report", needs={"deploy": deploy})
    assert report.result == "success" and "got prod-2-master-none" in report.log

    # a boolean input from an expression; the top-level inputs context is the runner's inputs
    runner.inputs = {"dry": "yes"}
    dry = runner.run_job(wf, "deploy")
    assert dry.result == "success", dry.log
    assert dry.jobs["apply"].steps["a"]["outcome"] == "skipped" and dry.outputs["fingerprint"] == ""
    assert "dry=true typed=false" in dry.log

    mapped = runner.run_job(wf, "mapped")  # mapped secrets, a number given as text, a computed string
    assert mapped.outputs["fingerprint"] == "staging-5-staging-staging-label", mapped.log
    typed = json.loads((runner.temp / "inputs-staging.json").read_text())
    assert typed == {"environment": "staging", "dry-run": False, "retries": 5, "label": "staging-label"}
    assert json.loads((runner.temp / "inputs-prod.json").read_text())["retries"] == 2
    none = runner.run_job(wf, "none")  # no secrets passed: the called workflow sees none
    assert none.outputs["fingerprint"] == "dev-2--none", none.log


def test_reusable_workflow_call_is_checked(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    write_workflow(runner, "reusable.yml", REUSABLE)
    write_workflow(runner, "not-callable.yml", "on: push\njobs:\n  a:\n    steps: [{run: 'true'}]\n")
    wf = write_workflow(
        runner,
        "bad.yml",
        """\
        on: push
        jobs:
          undeclared:
            uses: ./.github/workflows/reusable.yml
            with: {environment: prod, colour: blue}
          missing:
            uses: ./.github/workflows/reusable.yml
          wrong-type:
            uses: ./.github/workflows/reusable.yml
            with: {environment: prod, dry-run: maybe}
          undeclared-secret:
            uses: ./.github/workflows/reusable.yml
            with: {environment: prod}
            secrets: {OTHER: x}
          not-callable:
            uses: ./.github/workflows/not-callable.yml
        """,
    )
    for job, message in [
        ("undeclared", "colour"),
        ("missing", "required input 'environment'"),
        ("wrong-type", "is a boolean"),
        ("undeclared-secret", "OTHER"),
        ("not-callable", "workflow_call"),
    ]:
        with pytest.raises(AssertionError, match=message):
            runner.run_job(wf, job)


def test_a_job_needing_a_failed_reusable_workflow_is_skipped(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    write_workflow(
        runner,
        "failing.yml",
        """\
        on:
          workflow_call:
            outputs:
              after: {value: "${{ jobs.after.result }}"}
        jobs:
          boom:
            strategy:
              fail-fast: false
              matrix:
                part: [a, b]
            steps:
              - run: echo "part ${{ matrix.part }}"; test "${{ matrix.part }}" = a
          after:
            needs: boom
            steps: [{run: echo after}]
        """,
    )
    wf = write_workflow(
        runner,
        "caller.yml",
        """\
        on: push
        jobs:
          call:
            uses: ./.github/workflows/failing.yml
          next:
            needs: call
            steps: [{run: echo next}]
          cleanup:
            needs: next
            if: failure()
            steps: [{run: echo cleanup}]
          tidy:
            needs: call
            if: always()
            steps: [{run: "echo call was ${{ needs.call.result }}"}]
        """,
    )
    call = runner.run_job(wf, "call")
    assert call.result == "failure"
    assert {k: v.result for k, v in call.jobs.items()} == {"boom": "failure", "after": "skipped"}
    assert call.outputs == {"after": "skipped"}
    assert "part a" in call.log and "part b" in call.log
    assert runner.run_job(wf, "next", needs={"call": call}).result == "skipped"

    results = runner.run_workflow(wf)
    assert {k: v.result for k, v in results.items()} == {
        "call": "failure",
        "next": "skipped",
        "cleanup": "success",  # failure() sees the failed ancestor through the skipped job
        "tidy": "success",
    }
    assert "call was failure" in results["tidy"].log


# ---------------------------------------------------------------- artifacts

ARTIFACTS = """\
on: push
jobs:
  build:
    strategy:
      fail-fast: false
      matrix:
        part: [one, two]
    steps:
      - run: |
          rm -rf dist && mkdir -p dist/sub
          echo "${{ matrix.part }}" > "dist/${{ matrix.part }}.txt"
          echo log > "dist/sub/${{ matrix.part }}.log"
          echo hidden > dist/.hidden
      - uses: actions/upload-artifact@v4
        with:
          name: part-${{ matrix.part }}
          path: dist
  other:
    steps:
      - run: echo other > notes.md
      - uses: actions/upload-artifact@v4
        with: {name: other, path: notes.md}
  gather:
    steps:
      - uses: actions/download-artifact@v4
        id: merged
        with: {pattern: part-*, merge-multiple: true, path: merged}
      - uses: actions/download-artifact@v4
        id: separate
        with:
          pattern: part-*
          path: ${{ runner.temp }}/separate
      - uses: actions/download-artifact@v4
        with: {path: all}
      - uses: actions/download-artifact@v4
        id: named
        with: {name: other}
"""


def test_upload_and_download_with_pattern_and_merge_multiple(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    wf = write_workflow(runner, "artifacts.yml", ARTIFACTS)
    assert [r.result for r in runner.run_matrix(wf, "build")] == ["success", "success"]
    assert runner.run_job(wf, "other").result == "success"
    gather = runner.run_job(wf, "gather")
    assert gather.result == "success", gather.log

    def tree(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    ws = runner.workspace
    assert tree(ws / "merged") == ["one.txt", "sub/one.log", "sub/two.log", "two.txt"]  # no hidden file
    assert gather.steps["merged"]["outputs"]["download-path"] == str(ws / "merged")
    separate = runner.temp / "separate"
    assert tree(separate) == ["part-one/one.txt", "part-one/sub/one.log", "part-two/sub/two.log", "part-two/two.txt"]
    assert gather.steps["separate"]["outputs"]["download-path"] == str(separate)
    assert sorted(p.name for p in (ws / "all").iterdir()) == ["other", "part-one", "part-two"]
    assert (ws / "all" / "other" / "notes.md").read_text() == "other\n"
    assert gather.steps["named"]["outputs"]["download-path"] == str(ws)  # path defaults to the workspace
    assert (ws / "merged" / "two.txt").read_text() == "two\n"


def test_upload_names_are_unique_in_a_run_unless_overwrite(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    wf = write_workflow(
        runner,
        "dup.yml",
        """\
        on: push
        jobs:
          twice:
            steps:
              - run: echo first > a.txt
              - uses: actions/upload-artifact@v4
                with: {name: same, path: a.txt}
              - run: echo second > a.txt
              - uses: actions/upload-artifact@v4
                id: again
                with: {name: same, path: a.txt}
          overwrite:
            steps:
              - run: echo third > b.txt
              - uses: actions/upload-artifact@v4
                with: {name: same, path: b.txt, overwrite: true}
          nothing:
            steps:
              - uses: actions/upload-artifact@v4
                with: {name: empty, path: missing/, if-no-files-found: error}
          warn:
            steps:
              - uses: actions/upload-artifact@v4
                with: {name: empty, path: missing/}
        """,
    )
    twice = runner.run_job(wf, "twice")
    assert twice.result == "failure" and twice.steps["again"]["outcome"] == "failure"
    assert "already exists" in twice.log
    assert (runner.artifacts / "same" / "a.txt").read_text() == "first\n"
    assert runner.run_job(wf, "overwrite").result == "success"
    assert [p.name for p in (runner.artifacts / "same").iterdir()] == ["b.txt"]
    assert runner.run_job(wf, "nothing").result == "failure"
    assert runner.run_job(wf, "warn").result == "success" and "empty" not in runner.uploaded

    # a new run (a new Runner) may use the name again: names are unique per run
    again = make_runner(tmp_path).run_job(wf, "twice")
    assert "already exists" in again.log and again.steps["again"]["outcome"] == "failure"
    assert (runner.artifacts / "same" / "a.txt").read_text() == "first\n"
    assert list(runner.uploaded) == ["same"]


# ---------------------------------------------------------------- composite actions and per-job state


def test_composite_action_and_job_state(tmp_path: Path) -> None:
    runner = make_runner(tmp_path)
    (runner.workspace / "action.yml").write_text(
        textwrap.dedent(
            """\
            name: local
            inputs:
              who: {default: world}
            outputs:
              greeting: {value: "${{ steps.say.outputs.greeting }}"}
            runs:
              using: composite
              steps:
                - id: say
                  shell: bash
                  run: |
                    echo "greeting=hello ${{ inputs.who }} $STEP_VAR" >> "$GITHUB_OUTPUT"
                    echo "FROM_ACTION=set" >> "$GITHUB_ENV"
                    mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\\necho tool-ran\\n' > "$RUNNER_TEMP/bin/mytool"
                    chmod +x "$RUNNER_TEMP/bin/mytool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
            """
        )
    )
    wf = write_workflow(
        runner,
        "c.yml",
        """\
        on: push
        jobs:
          use:
            steps:
              - id: act
                uses: ./
                with: {who: there}
                env: {STEP_VAR: "!"}
              - run: echo "$FROM_ACTION ${{ env.FROM_ACTION }} ${{ steps.act.outputs.greeting }}" && mytool
          fresh:
            steps:
              - run: test -z "${FROM_ACTION:-}" && ! command -v mytool
        """,
    )
    use = runner.run_job(wf, "use")
    assert use.result == "success", use.log
    assert use.steps["act"]["outputs"] == {"greeting": "hello there !"}
    assert "set set hello there !" in use.log and "tool-ran" in use.log
    assert runner.job_env == {"FROM_ACTION": "set"}
    fresh = runner.run_job(wf, "fresh")  # every job starts with its own env and PATH
    assert fresh.result == "success", fresh.log
