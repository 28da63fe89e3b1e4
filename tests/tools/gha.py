"""A small local runner for GitHub Actions jobs, enough to execute this repository's workflows.

It runs the real ``run:`` scripts read from the workflow YAML (and from the composite
action ``uses: ./``) with bash, in a GitHub-like environment: GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_PATH, GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH, RUNNER_TEMP and the default GITHUB_*
variables. ``${{ }}`` expressions are evaluated with the contexts github, env, vars,
secrets, inputs, steps, needs, matrix, strategy, runner, job and the status functions.
Jobs may have a ``strategy.matrix`` (``Runner.run_matrix``) or call a local reusable workflow
(``uses: ./.github/workflows/NAME.yml``). Third-party actions are not run: checkout and
setup-python are no-ops (the workspace is prepared by the test) and upload/download-artifact
copy files through a local folder. Anything else is refused.

One ``Runner`` is one workflow run: artifacts uploaded through it are that run's artifacts.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# ---------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<num>0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\].,*])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse expression at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "num":
            out.append((kind, float(int(value, 16)) if value.lower().startswith("0x") else float(value)))
        else:
            out.append((kind, value[1:-1].replace("''", "'") if kind == "str" else value))
    return out


def truthy(value: Any) -> bool:
    if isinstance(value, float) and value != value:  # NaN is falsy, as on GitHub
        return False
    return value not in (None, False, 0, 0.0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (dict, list)):
        return float("nan")
    text = str(value).strip()
    try:
        return float(int(text, 16)) if text.lower().startswith("0x") else float(text or 0)
    except ValueError:
        return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or (isinstance(a, (dict, list)) or isinstance(b, (dict, list))):
        return a == b
    return _number(a) == _number(b)


def _plain(value: Any) -> Any:
    """JSON-ready: expression numbers are floats, but GitHub prints 1.0 as 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(_plain(value), indent=2)
    return str(value)


class _Filtered(list):
    """The result of an object filter (``labels.*.name``): a property read maps over its items."""


_MISSING = object()
_has_magic = re.compile(r"[*?\[]").search


def _lookup(value: Any, key: Any) -> Any:
    """``value[key]`` as GitHub reads it: object keys case-insensitively, arrays by number; else _MISSING."""
    if isinstance(value, dict):
        key = to_string(key)
        if key in value:
            return value[key]
        folded = key.lower()
        for k, v in value.items():
            if isinstance(k, str) and k.lower() == folded:
                return v
        return _MISSING
    if isinstance(value, list):
        index = _number(key)
        if index == index and index.is_integer() and 0 <= index < len(value):
            return value[int(index)]
    return _MISSING


def _index(value: Any, key: Any, wildcard: bool = False) -> Any:
    """One ``.name``, ``[expr]`` or ``.*`` step; a missing key is null."""
    if isinstance(value, _Filtered):
        out = _Filtered()
        for item in value:
            if wildcard:
                out.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else [])
            else:
                found = _lookup(item, key)
                if found is not _MISSING:
                    out.append(found)
        return out
    if wildcard:
        return _Filtered(value.values() if isinstance(value, dict) else value if isinstance(value, list) else [])
    found = _lookup(value, key)
    return None if found is _MISSING else found


def _format(template: str, args: list[Any]) -> str:
    """GitHub's format(): ``{N}`` is argument N, ``{{`` and ``}}`` are literal braces, anything else is an error."""
    out, i = [], 0
    while i < len(template):
        if template.startswith(("{{", "}}"), i):
            out.append(template[i])
            i += 2
            continue
        if template[i] == "{":
            m = re.match(r"\{(\d+)\}", template[i:])
            if not m or int(m[1]) >= len(args):
                raise ValueError(f"format(): invalid placeholder in {template!r}")
            out.append(to_string(args[int(m[1])]))
            i += m.end()
            continue
        if template[i] == "}":
            raise ValueError(f"format(): unbalanced '}}' in {template!r}")
        out.append(template[i])
        i += 1
    return "".join(out)


class Expression:
    def __init__(self, text: str, contexts: dict[str, Any]):
        self.tokens, self.i, self.ctx = _tokens(text), 0, contexts

    def evaluate(self) -> Any:
        value = self._or()
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.i][1]!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) and self.tokens[self.i][0] == "op" else None

    def _take(self, op: str) -> None:
        if self._peek() != op:
            raise ValueError(f"expected {op!r}")
        self.i += 1

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self.i += 1
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._cmp()
        while self._peek() == "&&":
            self.i += 1
            right = self._cmp()
            value = right if truthy(value) else value
        return value

    def _cmp(self) -> Any:
        left = self._unary()
        op = self._peek()
        if op in ("==", "!=", "<", "<=", ">", ">="):
            self.i += 1
            right = self._unary()
            if op == "==":
                return _equal(left, right)
            if op == "!=":
                return not _equal(left, right)
            if isinstance(left, str) and isinstance(right, str):
                a, b = left.lower(), right.lower()
            else:
                a, b = _number(left), _number(right)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self.i += 1
            return not truthy(self._unary())
        return self._postfix(self._primary())

    def _primary(self) -> Any:
        if self.i >= len(self.tokens):
            raise ValueError("unexpected end of expression")
        kind, value = self.tokens[self.i]
        self.i += 1
        if kind in ("num", "str"):
            return value
        if kind == "op" and value == "(":
            inner = self._or()
            self._take(")")
            return inner
        if kind == "name":
            if value in ("true", "false"):
                return value == "true"
            if value == "null":
                return None
            if self._peek() == "(":
                self.i += 1
                args = []
                while self._peek() != ")":
                    args.append(self._or())
                    if self._peek() == ",":
                        self.i += 1
                self._take(")")
                return self._call(value, args)
            found = _lookup({k: v for k, v in self.ctx.items() if not k.startswith("__")}, value)
            if found is _MISSING:
                raise ValueError(f"unknown context {value!r}")
            return found
        raise ValueError(f"unexpected {value!r}")

    def _postfix(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._peek() == ".":
                self.i += 1
                if self._peek() == "*":
                    self.i += 1
                    value = _index(value, None, wildcard=True)
                    continue
                kind, name = self.tokens[self.i]
                if kind != "name":
                    raise ValueError(f"expected a property name after '.', got {name!r}")
                self.i += 1
                value = _index(value, name)
            else:
                self.i += 1
                if self._peek() == "*":
                    self.i += 1
                    self._take("]")
                    value = _index(value, None, wildcard=True)
                    continue
                key = self._or()
                self._take("]")
                value = _index(value, key)
        return value

    def _call(self, name: str, args: list[Any]) -> Any:
        status = self.ctx.get("__status", "success")
        lname = name.lower()
        if lname == "success":
            return status == "success"
        if lname == "failure":
            return status == "failure"
        if lname == "always":
            return True
        if lname == "cancelled":
            return False
        if lname == "contains":
            hay, needle = args
            return (
                any(_equal(x, needle) for x in hay)
                if isinstance(hay, list)
                else to_string(needle).lower() in to_string(hay).lower()
            )
        if lname == "startswith":
            return to_string(args[0]).lower().startswith(to_string(args[1]).lower())
        if lname == "endswith":
            return to_string(args[0]).lower().endswith(to_string(args[1]).lower())
        if lname == "format":
            return _format(to_string(args[0]), args[1:])
        if lname == "join":
            separator = to_string(args[1]) if len(args) > 1 else ","
            return separator.join(map(to_string, args[0])) if isinstance(args[0], list) else to_string(args[0])
        if lname == "tojson":
            return json.dumps(_plain(args[0]), indent=2)
        if lname == "fromjson":
            return json.loads(to_string(args[0]))
        raise ValueError(f"function {name}() is not supported by this runner")


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def evaluate(text: str, contexts: dict[str, Any]) -> Any:
    return Expression(text, contexts).evaluate()


def interpolate(value: Any, contexts: dict[str, Any]) -> str:
    text = to_string(value)
    return _TEMPLATE.sub(lambda m: to_string(evaluate(m.group(1), contexts)), text)


def evaluate_value(value: Any, contexts: dict[str, Any]) -> Any:
    """A YAML value with its typed result: a lone ``${{ }}`` keeps its type (a list, a boolean), mappings and
    lists are evaluated item by item, text with embedded expressions becomes a string, YAML scalars stay."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole and "${{" not in whole.group(1):
            return evaluate(whole.group(1), contexts)
        return interpolate(value, contexts) if "${{" in value else value
    if isinstance(value, dict):
        return {k: evaluate_value(v, contexts) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, contexts) for v in value]
    return value


def condition(value: Any, contexts: dict[str, Any]) -> bool:
    """An ``if:``: an expression with or without ``${{ }}``; status functions default to success()."""
    if value is None:
        return contexts.get("__status", "success") == "success"
    text = str(value).strip() if not isinstance(value, bool) else ("true" if value else "false")
    whole = _TEMPLATE.fullmatch(text)
    text = whole.group(1) if whole else text
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text, re.IGNORECASE):
        text = f"success() && ({text})"
    return truthy(evaluate(text, contexts))


# ---------------------------------------------------------------- files GitHub hands to a step


def parse_key_values(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: name=value lines and name<<DELIMITER blocks."""
    result: dict[str, str] = {}
    if not path.exists():
        return result
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            i += 1
            while lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            result[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            result[name] = value
        i += 1
    return result


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:  # YAML 1.1 reads the key `on` as True
        data["on"] = data.pop(True)
    return data


# ---------------------------------------------------------------- the runner


@dataclass
class JobResult:
    result: str  # success | failure | skipped | cancelled
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    log: str = ""
    executed: list[str] = field(default_factory=list)  # the run: scripts, as executed
    environment: str = ""  # the evaluated `environment:` (its name)
    concurrency: str = ""  # the evaluated job-level concurrency group
    matrix: dict[str, Any] = field(default_factory=dict)  # this run's matrix combination
    name: str = ""  # the evaluated job `name:`, else the job id
    jobs: dict[str, JobResult] = field(default_factory=dict)  # a reusable-workflow call: its inner jobs
    # GitHub's failure() in a job `if:` looks at every ancestor job, not only the direct needs.
    upstream_failed: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def of_matrix(cls, results: Sequence[JobResult]) -> JobResult:
        """What ``needs.<job>`` shows for a matrix job: one result over all its combinations."""
        states = [r.result for r in results]
        if any(s in ("failure", "cancelled") for s in states):
            result = "failure"
        elif all(s == "skipped" for s in states):
            result = "skipped"
        else:
            result = "success"
        outputs: dict[str, str] = {}
        for r in results:
            for k, v in r.outputs.items():
                if v != "" or k not in outputs:  # a later combination's empty value does not erase
                    outputs[k] = v
        names = {r.name for r in results}
        return cls(
            result,
            outputs=outputs,
            summary="".join(r.summary for r in results),
            log="".join(r.log for r in results),
            executed=[s for r in results for s in r.executed],
            name=names.pop() if len(names) == 1 else "",
            jobs={k: v for r in results for k, v in r.jobs.items()},
            upstream_failed=any(r.upstream_failed for r in results),
        )


@dataclass
class _Scope:
    """What a workflow run hands its jobs: the run's inputs and secrets, or those of a workflow_call."""

    inputs: dict[str, Any]
    secrets: dict[str, Any]


@dataclass
class _Job:
    """The state of one job run, so that a nested run (a called workflow's job) cannot touch its caller's."""

    workflow: dict[str, Any]
    job_id: str
    needs: dict[str, JobResult]
    matrix: dict[str, Any]
    strategy: dict[str, Any]
    scope: _Scope
    result: JobResult
    env: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)

    @property
    def job(self) -> dict[str, Any]:
        return self.workflow["jobs"][self.job_id]


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """``on:`` as a mapping, whether written as a name, a list of names or a mapping."""
    on = workflow.get("on") or {}
    return {name: None for name in _as_list(on)} if not isinstance(on, dict) else on


def _needs_status(job: dict[str, Any], needs: dict[str, JobResult]) -> str:
    """The status that success()/failure() see in a job's ``if:``: over its declared needs (else all given)."""
    declared = [str(n) for n in _as_list(job.get("needs"))]
    relevant = [needs[n] for n in declared if n in needs] if declared else list(needs.values())
    if any(r.result in ("failure", "cancelled") or r.upstream_failed for r in relevant):
        return "failure"
    return "success" if all(r.result == "success" for r in relevant) else "skipped"


def _topological(jobs: dict[str, Any]) -> list[str]:
    """Job ids in an order that runs every job after its needs (file order among ready jobs)."""
    order: list[str] = []
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(str(n) in order for n in _as_list(jobs[j].get("needs")))]
        if not ready:
            raise ValueError(f"jobs with unknown or circular needs: {pending}")
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def _call_inputs(declared: dict[str, Any], given: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``inputs`` of a called workflow: declared names only, defaults applied, typed as declared."""
    unknown = set(given) - set(declared)
    assert not unknown, f"inputs not declared by {where} on.workflow_call: {sorted(unknown)}"
    inputs: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        kind = spec.get("type", "string")
        if name in given:
            value = given[name]
        else:
            assert not spec.get("required"), f"{where}: required input {name!r} was not given"
            value = spec.get("default", {"boolean": False, "number": 0}.get(kind, ""))
        if kind == "boolean":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            assert isinstance(value, bool), f"{where}: input {name!r} is a boolean, got {value!r}"
        elif kind == "number":
            number = _number(value)
            assert number == number, f"{where}: input {name!r} is a number, got {value!r}"
            value = int(number) if number.is_integer() else number
        else:
            value = to_string(value)
        inputs[name] = value
    return inputs


class Runner:
    def __init__(
        self,
        workspace: Path,
        runner_temp: Path,
        event_name: str,
        event: dict[str, Any],
        secrets: dict[str, str] | None = None,
        variables: dict[str, str] | None = None,
        inputs: dict[str, Any] | None = None,
        base_env: dict[str, str] | None = None,
        repository: str = "acme/llm-access",
        sha: str = "0" * 40,
    ):
        self.workspace, self.temp = workspace, runner_temp
        self.artifacts = runner_temp / "_artifacts"
        self.uploaded: dict[str, int] = {}  # this run's artifacts: name -> id, in upload order
        self._artifact_ids = 0
        self.event_file = runner_temp / "_event.json"
        runner_temp.mkdir(parents=True, exist_ok=True)
        self.event_file.write_text(json.dumps(event), encoding="utf-8")
        self.secrets = {"GITHUB_TOKEN": "ghs_fake_token_for_tests", **(secrets or {})}
        self.vars, self.inputs = variables or {}, inputs or {}
        self.base_env = dict(base_env if base_env is not None else os.environ)
        # The env and PATH additions of the last job run (each run builds its own; kept for inspection).
        self.job_env: dict[str, str] = {}
        self.path_prefix: list[str] = []
        ref = f"refs/pull/{event['pull_request']['number']}/merge" if "pull_request" in event else "refs/heads/main"
        self.github = {
            "event_name": event_name,
            "event": event,
            "repository": repository,
            "repository_owner": repository.split("/")[0],
            "sha": sha,
            "ref": ref,
            "ref_name": ref.rsplit("/", 1)[-1],
            "workspace": str(workspace),
            "token": self.secrets["GITHUB_TOKEN"],
            "run_id": "1",
            "action_path": "",
        }
        self.default_env = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(self.event_file),
            "GITHUB_REPOSITORY": repository,
            "GITHUB_SHA": sha,
            "GITHUB_REF": ref,
            "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(runner_temp),
            "RUNNER_OS": "Linux",
        }

    # -- public entry points

    def run_job(
        self,
        workflow: dict[str, Any],
        job_id: str,
        needs: dict[str, JobResult] | None = None,
        matrix: dict[str, Any] | None = None,
    ) -> JobResult:
        """Run one job (one matrix combination if ``matrix`` is given), or a reusable-workflow call."""
        return self._job(workflow, job_id, needs or {}, matrix or {}, self._scope())

    def matrix(
        self, workflow: dict[str, Any], job_id: str, needs: dict[str, JobResult] | None = None
    ) -> list[dict[str, Any]]:
        """The combinations of ``strategy.matrix`` in GitHub's order; ``[{}]`` for a job without one."""
        probe = self._state(workflow, job_id, needs or {}, {}, self._scope())
        return self._combinations(probe.job, self._contexts(probe))

    def run_matrix(
        self, workflow: dict[str, Any], job_id: str, needs: dict[str, JobResult] | None = None
    ) -> list[JobResult]:
        """Every combination, in order; with fail-fast a failure cancels the combinations not yet run."""
        return self._matrix_job(workflow, job_id, needs or {}, self._scope())

    def run_workflow(self, workflow: dict[str, Any]) -> dict[str, JobResult]:
        """All jobs of a workflow in dependency order (matrix jobs as ``JobResult.of_matrix``)."""
        return self._workflow(workflow, self._scope())

    # -- jobs

    def _scope(self) -> _Scope:
        return _Scope(self.inputs, self.secrets)  # read now: tests set runner.inputs after construction

    def _state(
        self,
        workflow: dict[str, Any],
        job_id: str,
        needs: dict[str, JobResult],
        matrix: dict[str, Any],
        scope: _Scope,
        strategy: dict[str, Any] | None = None,
    ) -> _Job:
        result = JobResult("success", matrix=dict(matrix), name=job_id)
        return _Job(workflow, job_id, needs, dict(matrix), strategy or {}, scope, result)

    def _contexts(self, state: _Job, **extra: Any) -> dict[str, Any]:
        return {
            "github": self.github,
            "env": {**state.env},
            "vars": self.vars,
            "secrets": state.scope.secrets,
            "inputs": state.scope.inputs,
            "steps": state.result.steps,
            "needs": {k: {"result": v.result, "outputs": v.outputs} for k, v in state.needs.items()},
            "matrix": state.matrix,
            "strategy": state.strategy,
            "runner": {"temp": str(self.temp), "os": "Linux", "arch": "X64", "name": "local"},
            "job": {"status": state.result.result},
            "__status": state.result.result,
            **extra,
        }

    def _describe(self, state: _Job, ctx: dict[str, Any], lenient: bool) -> None:
        """The job's evaluated name, environment and concurrency group (best effort for a skipped job)."""
        job, result = state.job, state.result
        try:
            if job.get("name") is not None:
                result.name = interpolate(job["name"], ctx)
            environment = job.get("environment")
            environment = environment.get("name") if isinstance(environment, dict) else environment
            if environment is not None:
                result.environment = interpolate(environment, ctx)
            concurrency = job.get("concurrency")
            concurrency = concurrency.get("group") if isinstance(concurrency, dict) else concurrency
            if concurrency is not None:
                result.concurrency = interpolate(concurrency, ctx)
        except (ValueError, TypeError, LookupError):
            if not lenient:
                raise

    def _job(
        self,
        workflow: dict[str, Any],
        job_id: str,
        needs: dict[str, JobResult],
        matrix: dict[str, Any],
        scope: _Scope,
        strategy: dict[str, Any] | None = None,
    ) -> JobResult:
        """One run of a job: its ``if`` (default success() over its needs), then its steps or its called workflow."""
        state = self._state(workflow, job_id, needs, matrix, scope, strategy)
        job, result = state.job, state.result
        status = _needs_status(job, needs)
        result.upstream_failed = status == "failure"
        ctx = self._contexts(state)
        runs = condition(job.get("if"), {**ctx, "__status": status})
        self._describe(state, ctx, lenient=not runs)
        if not runs:
            result.result = "skipped"
            return result
        if "uses" in job:
            return self._call_workflow(state)
        for scope_env in (workflow.get("env") or {}, job.get("env") or {}):
            for k, v in scope_env.items():
                state.env[k] = interpolate(v, self._contexts(state))
        for index, step in enumerate(job["steps"]):
            ctx = self._contexts(state)
            step_id = step.get("id") or f"__step{index}"
            if not condition(step.get("if"), ctx):
                result.steps[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            ok, outputs = self._step(state, step, ctx, self.github)
            outcome = "success" if ok else "failure"
            conclusion = "success" if ok or truthy(evaluate_value(step.get("continue-on-error"), ctx)) else "failure"
            result.steps[step_id] = {"outputs": outputs, "outcome": outcome, "conclusion": conclusion}
            if conclusion == "failure":
                result.result = "failure"
        ctx = self._contexts(state)
        result.outputs = {k: interpolate(v, ctx) for k, v in (job.get("outputs") or {}).items()}
        self.job_env, self.path_prefix = state.env, state.path
        return result

    def _combinations(self, job: dict[str, Any], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        """GitHub's matrix: the cross product of the vectors, minus exclude, then include (matched against the
        original combinations only; an entry that extends none becomes a combination of its own)."""
        spec = (job.get("strategy") or {}).get("matrix")
        if spec is None:
            return [{}]
        spec = evaluate_value(spec, ctx)
        if not isinstance(spec, dict):
            raise ValueError(f"strategy.matrix must be a mapping, got {spec!r}")
        include, exclude = spec.get("include") or [], spec.get("exclude") or []
        if not isinstance(include, list) or not isinstance(exclude, list):
            raise ValueError("strategy.matrix include and exclude must be lists")
        keys = [k for k in spec if k not in ("include", "exclude")]
        for key in keys:
            if not isinstance(spec[key], list) or not spec[key]:
                raise ValueError(f"Matrix vector {key!r} does not contain any values: {spec[key]!r}")
        base = [dict(zip(keys, values)) for values in itertools.product(*(spec[k] for k in keys))] if keys else []
        base = [c for c in base if not any(all(k in c and c[k] == v for k, v in ex.items()) for ex in exclude)]
        combos, extra = [dict(c) for c in base], []
        for entry in include:
            if not isinstance(entry, dict):
                raise ValueError(f"a matrix include entry must be a mapping, got {entry!r}")
            matched = False
            for combo, original in zip(combos, base):
                if all(original[k] == v for k, v in entry.items() if k in original):
                    combo.update({k: v for k, v in entry.items() if k not in original})
                    matched = True
            if not matched:
                extra.append(dict(entry))
        combos += extra
        if not combos:
            raise ValueError("Matrix must define at least one vector")
        return combos

    def _matrix_job(
        self, workflow: dict[str, Any], job_id: str, needs: dict[str, JobResult], scope: _Scope
    ) -> list[JobResult]:
        job = workflow["jobs"][job_id]
        strategy = job.get("strategy") or {}
        if strategy.get("matrix") is None:
            return [self._job(workflow, job_id, needs, {}, scope)]
        probe = self._state(workflow, job_id, needs, {}, scope)
        ctx = self._contexts(probe)
        if not condition(job.get("if"), {**ctx, "__status": _needs_status(job, needs)}):
            return [self._job(workflow, job_id, needs, {}, scope)]  # skipped before its matrix is evaluated
        combos = self._combinations(job, ctx)
        fail_fast = truthy(evaluate_value(strategy.get("fail-fast", True), ctx))
        parallel = strategy.get("max-parallel", len(combos))
        shared = {"fail-fast": fail_fast, "job-total": len(combos), "max-parallel": parallel}
        results: list[JobResult] = []
        cancelling = False
        for index, combo in enumerate(combos):
            strategy_ctx = {**shared, "job-index": index}
            if cancelling:
                state = self._state(workflow, job_id, needs, combo, scope, strategy_ctx)
                self._describe(state, self._contexts(state), lenient=True)
                state.result.result = "cancelled"
                results.append(state.result)
                continue
            result = self._job(workflow, job_id, needs, combo, scope, strategy_ctx)
            results.append(result)
            if result.result == "failure" and fail_fast:
                allowed = evaluate_value(job.get("continue-on-error", False), {**ctx, "matrix": combo})
                cancelling = not truthy(allowed)
        return results

    def _workflow(self, workflow: dict[str, Any], scope: _Scope) -> dict[str, JobResult]:
        """Every job in dependency order, each seeing the results of its needs (a matrix job as one result)."""
        jobs = workflow["jobs"]
        results: dict[str, JobResult] = {}
        for job_id in _topological(jobs):
            needs = {str(n): results[str(n)] for n in _as_list(jobs[job_id].get("needs"))}
            runs = self._matrix_job(workflow, job_id, needs, scope)
            has_matrix = (jobs[job_id].get("strategy") or {}).get("matrix") is not None
            results[job_id] = JobResult.of_matrix(runs) if has_matrix else runs[0]
        return results

    def _call_workflow(self, state: _Job) -> JobResult:
        """A job with ``uses: ./.github/workflows/NAME.yml``: its jobs run with the call's inputs and secrets."""
        job, result = state.job, state.result
        uses = job["uses"]
        if not uses.startswith("./"):
            raise NotImplementedError(f"this runner calls local reusable workflows only, not {uses}")
        called = load_yaml(self.workspace / uses)
        triggers = _triggers(called)
        assert "workflow_call" in triggers, f"{uses} does not declare on.workflow_call"
        spec = triggers["workflow_call"] or {}
        ctx = self._contexts(state)
        given = {k: evaluate_value(v, ctx) for k, v in (job.get("with") or {}).items()}
        inputs = _call_inputs(spec.get("inputs") or {}, given, uses)
        passed = job.get("secrets")
        if passed == "inherit":
            secrets = dict(state.scope.secrets)
        else:
            declared = spec.get("secrets") or {}
            mapped = {k: interpolate(v, ctx) for k, v in (passed or {}).items()}
            unknown = set(mapped) - set(declared)
            assert not unknown, f"secrets not declared by {uses} on.workflow_call: {sorted(unknown)}"
            missing = [k for k, v in declared.items() if (v or {}).get("required") and k not in mapped]
            assert not missing, f"{uses}: required secrets not passed: {missing}"
            secrets = {"GITHUB_TOKEN": state.scope.secrets.get("GITHUB_TOKEN", ""), **mapped}
        inner = self._workflow(called, _Scope(inputs, secrets))
        states = [r.result for r in inner.values()]
        if any(s in ("failure", "cancelled") for s in states):
            result.result = "failure"
        elif states and all(s == "skipped" for s in states):
            result.result = "skipped"
        jobs_ctx = {k: {"result": v.result, "outputs": v.outputs} for k, v in inner.items()}
        out_ctx = {"github": self.github, "vars": self.vars, "inputs": inputs, "jobs": jobs_ctx}
        declared_outputs = spec.get("outputs") or {}
        result.outputs = {k: interpolate((v or {}).get("value", ""), out_ctx) for k, v in declared_outputs.items()}
        result.jobs = inner
        result.log = "".join(r.log for r in inner.values())
        result.summary = "".join(r.summary for r in inner.values())
        result.executed = [s for r in inner.values() for s in r.executed]
        return result

    # -- steps

    def _step(
        self,
        state: _Job,
        step: dict[str, Any],
        ctx: dict[str, Any],
        github: dict[str, Any],
        local_env: dict[str, str] | None = None,
    ) -> tuple[bool, dict[str, str]]:
        env = {**(local_env or {})}
        for k, v in (step.get("env") or {}).items():
            env[k] = interpolate(v, {**ctx, "env": {**ctx["env"], **env}})
        step_ctx = {**ctx, "env": {**ctx["env"], **env}}
        if "run" in step:
            script = interpolate(step["run"], step_ctx)
            defaults = [(state.workflow.get("defaults") or {}), (state.job.get("defaults") or {})]
            workdir = step.get("working-directory")
            for scope in defaults if workdir is None else []:
                workdir = (scope.get("run") or {}).get("working-directory", workdir)
            workdir = interpolate(workdir, step_ctx) if workdir is not None else None
            return self._run(state, script, env, workdir)
        uses = step["uses"]
        with_ = {k: interpolate(v, step_ctx) for k, v in (step.get("with") or {}).items()}
        if uses.startswith("./"):
            return self._composite(state, self.workspace / uses, with_, env)
        name = uses.split("@", 1)[0]
        if name in ("actions/checkout", "actions/setup-python"):
            return True, {}
        if name == "actions/upload-artifact":
            return self._upload(state, with_)
        if name == "actions/download-artifact":
            return self._download(state, with_)
        raise NotImplementedError(f"this runner does not run {uses}")

    def _composite(
        self, state: _Job, path: Path, with_: dict[str, str], env: dict[str, str]
    ) -> tuple[bool, dict[str, str]]:
        action = load_yaml(path / "action.yml")
        assert action["runs"]["using"] == "composite", "only composite actions run here"
        inputs = {
            name: with_.get(name, to_string(spec.get("default", "")))
            for name, spec in (action.get("inputs") or {}).items()
        }
        unknown = set(with_) - set(inputs)
        assert not unknown, f"inputs not declared by {path}/action.yml: {unknown}"
        github = {**self.github, "action_path": str(path)}
        steps: dict[str, dict[str, Any]] = {}
        ok = True

        def contexts() -> dict[str, Any]:
            status = "success" if ok else "failure"
            base = self._contexts(state)
            return {**base, "github": github, "inputs": inputs, "steps": steps, "needs": {}, "__status": status}

        for index, step in enumerate(action["runs"]["steps"]):
            ctx = contexts()
            step_id = step.get("id") or f"__step{index}"
            if not condition(step.get("if"), ctx):
                steps[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            step_ok, outputs = self._step(state, step, ctx, github, local_env=env)
            steps[step_id] = {
                "outputs": outputs,
                "outcome": "success" if step_ok else "failure",
                "conclusion": "success" if step_ok else "failure",
            }
            ok = ok and step_ok
        ctx = contexts()
        outputs = {k: interpolate(v["value"], ctx) for k, v in (action.get("outputs") or {}).items()}
        return ok, outputs

    def _run(self, state: _Job, script: str, env: dict[str, str], workdir: str | None) -> tuple[bool, dict[str, str]]:
        files = {
            name: self.temp / f"_{name.lower()}_{uuid.uuid4().hex}"
            for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
        }
        for f in files.values():
            f.touch()
        script_file = self.temp / f"_step_{uuid.uuid4().hex}.sh"
        script_file.write_text(script, encoding="utf-8")
        full_env = {**self.base_env, **self.default_env, **state.env, **env, **{k: str(v) for k, v in files.items()}}
        full_env["PATH"] = os.pathsep.join([*reversed(state.path), full_env.get("PATH", "")])
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
            cwd=self.workspace / (workdir or ""),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        result = state.result
        result.executed.append(script)
        result.log += proc.stdout + proc.stderr
        result.summary += files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
        state.env.update(parse_key_values(files["GITHUB_ENV"]))
        state.path += [p for p in files["GITHUB_PATH"].read_text(encoding="utf-8").splitlines() if p]
        return proc.returncode == 0, parse_key_values(files["GITHUB_OUTPUT"])

    # -- artifacts (v4: one run's artifacts, names unique within the run)

    def _resolve(self, path: str) -> Path:
        resolved = Path(os.path.expanduser(path))
        return resolved if resolved.is_absolute() else self.workspace / resolved

    def _upload(self, state: _Job, with_: dict[str, str]) -> tuple[bool, dict[str, str]]:
        """upload-artifact v4: files or directories (newline-separated, globs, ``!`` excludes), stored relative
        to the search paths' common ancestor; hidden files left out unless include-hidden-files."""
        name = with_.get("name") or "artifact"
        if name in self.uploaded and with_.get("overwrite", "false").lower() != "true":
            state.result.log += f"::error::an artifact named {name!r} already exists in this run (overwrite: false)\n"
            return False, {}
        lines = [line.strip() for line in with_.get("path", "").splitlines() if line.strip()]
        excludes = [str(self._resolve(line[1:].strip())) for line in lines if line.startswith("!")]
        roots: list[Path] = []
        found: list[Path] = []
        for line in (line for line in lines if not line.startswith("!")):
            pattern = self._resolve(line)
            if _has_magic(str(pattern)):
                parts = pattern.parts
                stop = next(i for i, part in enumerate(parts) if _has_magic(part))
                roots.append(Path(*parts[:stop]))
                found += [Path(p) for p in sorted(glob.glob(str(pattern), recursive=True))]
            else:
                roots.append(pattern if pattern.is_dir() else pattern.parent)
                found += [pattern] if pattern.exists() else []
        root = Path(os.path.commonpath([str(r) for r in roots])) if roots else self.workspace
        hidden = with_.get("include-hidden-files", "false").lower() == "true"
        files: dict[Path, Path] = {}
        for item in found:
            for f in sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]:
                relative = f.relative_to(root)
                if any(fnmatch.fnmatchcase(str(f), ex) or str(f).startswith(ex + os.sep) for ex in excludes):
                    continue
                if not hidden and any(part.startswith(".") for part in relative.parts):
                    continue
                files[f] = relative
        if not files:
            policy = with_.get("if-no-files-found", "warn")
            state.result.log += f"::{'error' if policy == 'error' else 'warning'}::no files were found at {lines}\n"
            return policy != "error", {}
        target = self.artifacts / name
        shutil.rmtree(target, ignore_errors=True)  # an earlier run's artifact, or overwrite: true
        for source, relative in files.items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
        self.uploaded.pop(name, None)  # an overwritten artifact is a new one, listed last
        self.uploaded[name] = self._artifact_ids = self._artifact_ids + 1
        return True, {"artifact-id": str(self._artifact_ids)}

    def _download(self, state: _Job, with_: dict[str, str]) -> tuple[bool, dict[str, str]]:
        """download-artifact v4: ``name`` into ``path``; else every artifact of this run matching ``pattern``
        (all without one), each into ``path/<name>/`` unless merge-multiple puts them all into ``path``."""
        target = self._resolve(with_.get("path") or ".")
        name, pattern = with_.get("name"), with_.get("pattern")
        if name:
            source = self.artifacts / name
            if not source.is_dir():
                state.result.log += f"::error::Artifact not found for name: {name}\n"
                return False, {}
            shutil.copytree(source, target, dirs_exist_ok=True)
            return True, {"download-path": str(target)}
        merge = with_.get("merge-multiple", "false").lower() == "true"
        for artifact in self.uploaded:
            if pattern and not fnmatch.fnmatchcase(artifact, pattern):
                continue
            shutil.copytree(self.artifacts / artifact, target if merge else target / artifact, dirs_exist_ok=True)
        target.mkdir(parents=True, exist_ok=True)
        return True, {"download-path": str(target)}
