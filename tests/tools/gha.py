"""A small local runner for GitHub Actions jobs, enough to execute this repository's workflows.

It runs the real ``run:`` scripts read from the workflow YAML (and from the composite
action ``uses: ./``) with bash, in a GitHub-like environment: GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_PATH, GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH, RUNNER_TEMP and the default GITHUB_*
variables. ``${{ }}`` expressions are evaluated with the contexts github, env, vars,
secrets, inputs, steps, needs, runner and the status functions. Third-party actions are
not run: checkout and setup-python are no-ops (the workspace is prepared by the test) and
upload/download-artifact copy files through a local folder. Anything else is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# ---------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')"
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
        out.append(
            (kind, float(value) if kind == "num" else value[1:-1].replace("''", "'") if kind == "str" else value)
        )
    return out


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip() or 0)
    except ValueError:
        return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or (isinstance(a, (dict, list)) or isinstance(b, (dict, list))):
        return a == b
    return _number(a) == _number(b)


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


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
            a, b = _number(left), _number(right)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self.i += 1
            return not truthy(self._unary())
        return self._postfix(self._primary())

    def _primary(self) -> Any:
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
            if value not in self.ctx:
                raise ValueError(f"unknown context {value!r}")
            return self.ctx[value]
        raise ValueError(f"unexpected {value!r}")

    def _postfix(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._peek() == ".":
                self.i += 1
                name = self.tokens[self.i][1]
                self.i += 1
                value = value.get(name) if isinstance(value, dict) else None
            else:
                self.i += 1
                key = self._or()
                self._take("]")
                value = (
                    value.get(key)
                    if isinstance(value, dict)
                    else (value[int(key)] if isinstance(value, list) else None)
                )
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
            return re.sub(r"\{(\d+)\}", lambda m: to_string(args[1 + int(m[1])]), to_string(args[0]))
        if lname == "tojson":
            return json.dumps(args[0], indent=2)
        if lname == "fromjson":
            return json.loads(args[0])
        raise ValueError(f"function {name}() is not supported by this runner")


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def evaluate(text: str, contexts: dict[str, Any]) -> Any:
    return Expression(text, contexts).evaluate()


def interpolate(value: Any, contexts: dict[str, Any]) -> str:
    text = to_string(value)
    return _TEMPLATE.sub(lambda m: to_string(evaluate(m.group(1), contexts)), text)


def condition(value: Any, contexts: dict[str, Any]) -> bool:
    """An ``if:``: an expression with or without ``${{ }}``; status functions default to success()."""
    if value is None:
        return contexts.get("__status", "success") == "success"
    text = str(value).strip() if not isinstance(value, bool) else ("true" if value else "false")
    whole = _TEMPLATE.fullmatch(text)
    text = whole.group(1) if whole else text
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text):
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
    result: str  # success | failure | skipped
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    log: str = ""
    executed: list[str] = field(default_factory=list)  # the run: scripts, as executed


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
        self.event_file = runner_temp / "_event.json"
        runner_temp.mkdir(parents=True, exist_ok=True)
        self.event_file.write_text(json.dumps(event), encoding="utf-8")
        self.secrets = {"GITHUB_TOKEN": "ghs_fake_token_for_tests", **(secrets or {})}
        self.vars, self.inputs = variables or {}, inputs or {}
        self.base_env = dict(base_env if base_env is not None else os.environ)
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

    # -- jobs

    def run_job(self, workflow: dict[str, Any], job_id: str, needs: dict[str, JobResult] | None = None) -> JobResult:
        job = workflow["jobs"][job_id]
        self.job_env: dict[str, str] = {}
        self.path_prefix: list[str] = []
        result = JobResult("success")
        needs_ctx = {k: {"result": v.result, "outputs": v.outputs} for k, v in (needs or {}).items()}
        ctx = self._contexts(result, needs_ctx)
        if "if" in job and not condition(
            job["if"],
            {**ctx, "__status": "success" if all(v.result == "success" for v in (needs or {}).values()) else "failure"},
        ):
            result.result = "skipped"
            return result
        for scope in (workflow.get("env") or {}, job.get("env") or {}):
            for k, v in scope.items():
                self.job_env[k] = interpolate(v, self._contexts(result, needs_ctx))
        for index, step in enumerate(job["steps"]):
            ctx = self._contexts(result, needs_ctx)
            step_id = step.get("id") or f"__step{index}"
            if not condition(step.get("if"), ctx):
                result.steps[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            ok, outputs = self._step(step, ctx, result, self.github)
            outcome = "success" if ok else "failure"
            conclusion = "success" if ok or step.get("continue-on-error") else "failure"
            result.steps[step_id] = {"outputs": outputs, "outcome": outcome, "conclusion": conclusion}
            if conclusion == "failure":
                result.result = "failure"
        ctx = self._contexts(result, needs_ctx)
        result.outputs = {k: interpolate(v, ctx) for k, v in (job.get("outputs") or {}).items()}
        return result

    def _contexts(self, result: JobResult, needs: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "github": self.github,
            "env": {**self.job_env},
            "vars": self.vars,
            "secrets": self.secrets,
            "inputs": self.inputs,
            "steps": result.steps,
            "needs": needs,
            "runner": {"temp": str(self.temp), "os": "Linux"},
            "job": {"status": result.result},
            "__status": result.result,
            **extra,
        }

    # -- steps

    def _step(
        self,
        step: dict[str, Any],
        ctx: dict[str, Any],
        result: JobResult,
        github: dict[str, Any],
        local_env: dict[str, str] | None = None,
    ) -> tuple[bool, dict[str, str]]:
        env = {**(local_env or {})}
        for k, v in (step.get("env") or {}).items():
            env[k] = interpolate(v, {**ctx, "env": {**ctx["env"], **env}})
        if "run" in step:
            script = interpolate(step["run"], {**ctx, "env": {**ctx["env"], **env}})
            return self._run(script, env, step.get("working-directory"), result)
        uses = step["uses"]
        with_ = {k: interpolate(v, {**ctx, "env": {**ctx["env"], **env}}) for k, v in (step.get("with") or {}).items()}
        if uses.startswith("./"):
            return self._composite(self.workspace / uses, with_, env, result)
        name = uses.split("@", 1)[0]
        if name in ("actions/checkout", "actions/setup-python"):
            return True, {}
        if name == "actions/upload-artifact":
            source = Path(with_["path"])
            target = self.artifacts / with_["name"]
            target.mkdir(parents=True, exist_ok=True)
            if not source.exists():
                return with_.get("if-no-files-found", "warn") != "error", {}
            shutil.copy2(source, target / source.name)
            return True, {"artifact-id": "1"}
        if name == "actions/download-artifact":
            source, target = self.artifacts / with_["name"], Path(with_["path"])
            if not source.exists():
                return False, {}
            shutil.copytree(source, target, dirs_exist_ok=True)
            return True, {"download-path": str(target)}
        raise NotImplementedError(f"this runner does not run {uses}")

    def _composite(
        self, path: Path, with_: dict[str, str], env: dict[str, str], result: JobResult
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
        inner = JobResult("success")
        ok = True
        for index, step in enumerate(action["runs"]["steps"]):
            ctx = {
                **self._contexts(inner, {}),
                "github": github,
                "inputs": inputs,
                "__status": "success" if ok else "failure",
            }
            step_id = step.get("id") or f"__step{index}"
            if not condition(step.get("if"), ctx):
                inner.steps[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            step_ok, outputs = self._step(step, ctx, result, github, local_env=env)
            inner.steps[step_id] = {
                "outputs": outputs,
                "outcome": "success" if step_ok else "failure",
                "conclusion": "success" if step_ok else "failure",
            }
            ok = ok and step_ok
        ctx = {**self._contexts(inner, {}), "github": github, "inputs": inputs}
        outputs = {k: interpolate(v["value"], ctx) for k, v in (action.get("outputs") or {}).items()}
        return ok, outputs

    def _run(
        self, script: str, env: dict[str, str], workdir: str | None, result: JobResult
    ) -> tuple[bool, dict[str, str]]:
        files = {
            name: self.temp / f"_{name.lower()}_{uuid.uuid4().hex}"
            for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
        }
        for f in files.values():
            f.touch()
        script_file = self.temp / f"_step_{uuid.uuid4().hex}.sh"
        script_file.write_text(script, encoding="utf-8")
        full_env = {**self.base_env, **self.default_env, **self.job_env, **env, **{k: str(v) for k, v in files.items()}}
        full_env["PATH"] = os.pathsep.join([*reversed(self.path_prefix), full_env.get("PATH", "")])
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
            cwd=self.workspace / (workdir or ""),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        result.executed.append(script)
        result.log += proc.stdout + proc.stderr
        result.summary += files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
        self.job_env.update(parse_key_values(files["GITHUB_ENV"]))
        self.path_prefix += [p for p in files["GITHUB_PATH"].read_text(encoding="utf-8").splitlines() if p]
        return proc.returncode == 0, parse_key_values(files["GITHUB_OUTPUT"])
