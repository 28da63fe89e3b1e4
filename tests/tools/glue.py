"""Run ``litellm-reconciler github <command>`` (the action's glue) once, the way action.yml runs it, for unit tests.

In process, through click's CliRunner, with a GitHub-like environment in ``tmp_path``
(GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH, RUNNER_TEMP, INPUT_* variables). The
LiteLLM CLI is a :class:`FakeCli` (scripted structured output, every call recorded) unless
``real_cli`` asks for the real one, and ``gh`` is tests/tools/fake_gh.py on PATH, so what the
glue decides, posts and writes to the job summary is visible without a proxy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from reconciler.cli import main
from reconciler.github import Tools, run_cli

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from gha import parse_key_values  # noqa: E402

#: What ``validate --format json`` prints for a valid file.
VALID = {
    "stdout": json.dumps(
        {"format_version": "1.0", "valid": True, "file": "users.yaml", "teams": 1, "users": 2, "problems": []}
    )
}


@dataclass
class FakeCli:
    """A stand-in for the CLI: ``script`` maps a command to {"stdout", "stderr", "code",
    "plan_json" (written to the path after --out), "result_json" (written to the path after
    --result-json)}. ``validate`` answers valid unless scripted."""

    script: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        args = list(args)
        self.calls.append(args)
        self.envs.append(dict(env))
        behaviour = self.script.get(args[0], VALID if args[0] == "validate" else {})
        for flag, key in (("--out", "plan_json"), ("--result-json", "result_json")):
            if key in behaviour and flag in args:
                Path(args[args.index(flag) + 1]).write_text(json.dumps(behaviour[key]), encoding="utf-8")
        return subprocess.CompletedProcess(
            args, int(behaviour.get("code", 0)), behaviour.get("stdout", ""), behaviour.get("stderr", "")
        )


@dataclass
class GlueRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    cli_calls: list[list[str]]
    gh_state: dict[str, Any]
    exception: BaseException | None = None
    cli_envs: list[dict[str, str]] = field(default_factory=list)


@contextlib.contextmanager
def own_logging() -> Any:
    """The CLI points the package's logger at its stderr; CliRunner's stderr closes after the run."""
    logger = logging.getLogger("reconciler")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def invoke(args: Sequence[str], env: dict[str, str | None] | None = None, obj: Any = None) -> Any:
    """``litellm-reconciler ARGS`` in process (click's CliRunner); the result has stdout, stderr, exit_code."""
    with own_logging():
        return CliRunner().invoke(main, list(args), env=env, obj=obj)


def fake_gh_on_path(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(f'#!/bin/sh\nexec {sys.executable} {TOOLS / "fake_gh.py"} "$@"\n')
    gh.chmod(0o755)
    return bin_dir


def run_glue(
    tmp_path: Path,
    command: str,
    *,
    inputs: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    cli: dict[str, Any] | None = None,
    gh_state: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    real_cli: bool = False,
) -> GlueRun:
    """One step. ``cli``: the FakeCli's script; ``real_cli``: run the real CLI instead (offline commands)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {name: tmp_path / f"{name.lower()}.txt" for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for f in files.values():
        f.write_text("")
    bin_dir = fake_gh_on_path(tmp_path / "bin")
    state = tmp_path / "gh-state.json"
    state.write_text(json.dumps(gh_state or {"comments": {}, "pulls": {}}))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event or {}))
    # None removes a variable of the test process's own environment for the run.
    full_env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("LITELLM_", "GITHUB_", "SMTP_", "INPUT_", "GH_"))
    }
    full_env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "RUNNER_TEMP": str(tmp_path / "runner-temp"),
            "GITHUB_REPOSITORY": "acme/llm-access",
            "GITHUB_SHA": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "GITHUB_EVENT_PATH": str(event_file),
            "GH_TOKEN": "ghs_fake_token_for_tests",
            "FAKE_GH_STATE": str(state),
            **{k: str(v) for k, v in files.items()},
            **{"INPUT_" + k.upper().replace("-", "_"): v for k, v in (inputs or {}).items()},
            **(env or {}),
        }
    )
    fake = FakeCli(cli or {})
    tools = Tools(cli=run_cli if real_cli else fake)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = invoke(["github", command], env=full_env, obj=tools)
    finally:
        os.chdir(cwd)
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return GlueRun(
        result.exit_code,
        result.stdout,
        result.stderr,
        parse_key_values(files["GITHUB_OUTPUT"]),
        files["GITHUB_STEP_SUMMARY"].read_text(),
        fake.calls,
        json.loads(state.read_text()),
        exception,
        fake.envs,
    )
