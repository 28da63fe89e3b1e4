"""Run .github/scripts/reconcile.py (the action's glue) once, the way action.yml runs it, for unit tests.

The LiteLLM CLI is tests/tools/fake_cli.py (RECONCILER_CLI) and ``gh`` is tests/tools/fake_gh.py,
so what the glue decides, posts and writes to the job summary is visible without a proxy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
GLUE = REPO / ".github" / "scripts" / "reconcile.py"
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from gha import parse_key_values  # noqa: E402


@dataclass
class GlueRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    cli_calls: list[list[str]]
    gh_state: dict[str, Any]


def run_glue(
    tmp_path: Path,
    command: str,
    *,
    inputs: Optional[dict[str, str]] = None,
    env: Optional[dict[str, str]] = None,
    cli: Optional[dict[str, Any]] = None,
    gh_state: Optional[dict[str, Any]] = None,
    event: Optional[dict[str, Any]] = None,
    isolated: bool = False,
) -> GlueRun:
    """One step. ``isolated``: run with ``python -I -S`` (no site-packages), as on a runner
    where the package's dependencies are not installed (the comment and reviewed-fingerprint steps)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {name: tmp_path / f"{name.lower()}.txt" for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for f in files.values():
        f.write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(f"#!/bin/sh\nexec {sys.executable} {TOOLS / 'fake_gh.py'} \"$@\"\n")
    gh.chmod(0o755)
    fake_cli = bin_dir / "litellm-reconciler"
    fake_cli.write_text(f"#!/bin/sh\nexec {sys.executable} {TOOLS / 'fake_cli.py'} \"$@\"\n")
    fake_cli.chmod(0o755)
    cli_script = tmp_path / "fake-cli.json"
    cli_script.write_text(json.dumps(cli or {}))
    state = tmp_path / "gh-state.json"
    state.write_text(json.dumps(gh_state or {"comments": {}, "pulls": {}}))
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event or {}))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "GITHUB_", "SMTP_", "INPUT_", "GH_"))}
    full_env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "RUNNER_TEMP": str(tmp_path / "runner-temp"),
            "GITHUB_REPOSITORY": "acme/llm-access",
            "GITHUB_SHA": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "GITHUB_EVENT_PATH": str(event_file),
            "GH_TOKEN": "ghs_fake_token_for_tests",
            "RECONCILER_CLI": str(fake_cli),
            "FAKE_CLI_SCRIPT": str(cli_script),
            "FAKE_GH_STATE": str(state),
            **{k: str(v) for k, v in files.items()},
            **{"INPUT_" + k.upper().replace("-", "_"): v for k, v in (inputs or {}).items()},
            **(env or {}),
        }
    )
    python = [sys.executable, "-I", "-S"] if isolated else [sys.executable]
    proc = subprocess.run([*python, str(GLUE), command], env=full_env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    calls_file = Path(str(cli_script) + ".calls")
    calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
    return GlueRun(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        parse_key_values(files["GITHUB_OUTPUT"]),
        files["GITHUB_STEP_SUMMARY"].read_text(),
        calls,
        json.loads(state.read_text()),
    )
