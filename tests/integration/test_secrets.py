"""The master key never appears in output, saved plans, reports or error messages."""

from __future__ import annotations

from pathlib import Path

from .conftest import Api
from .test_lifecycle import BASE, write


def _files_text(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file())


def test_no_command_prints_or_stores_the_key(api: Api, cli, tmp_path: Path, proxy) -> None:
    key = proxy[1]
    assert len(key) >= 12, "the test needs a distinctive key"
    write(tmp_path, BASE)
    runs = [
        cli("validate"),
        cli("schema"),
        cli("plan"),
        cli("plan", "--format", "markdown"),
        cli("plan", "--format", "json", "--out", "plan.json"),
        cli("apply", "--yes", "--plan", "plan.json", "--show-links"),
        cli("apply", "--yes"),
        cli("apply", "--yes", "--report", "again.json"),
        # error paths: a refused key, an unreachable proxy, a stale plan, bad input
        cli("plan", env={"LITELLM_API_KEY": key + "-wrong"}),
        cli("plan", "--proxy-url", "http://127.0.0.1:9"),
        cli("apply", "--yes", "--plan", "plan.json"),
    ]
    (tmp_path / "bad.yaml").write_text("version: 1\nusers:\n  - email: nope\n", encoding="utf-8")
    runs.append(cli("plan", "bad.yaml"))

    assert runs[-4].returncode == 1 and "401" in runs[-4].stderr, runs[-4].stderr
    assert runs[-3].returncode == 1 and "cannot reach the proxy" in runs[-3].stderr
    for result in runs:
        assert key not in result.stdout and key not in result.stderr, result.args
        assert "Traceback" not in result.stderr, result.stderr
    assert key not in _files_text(tmp_path)
    assert (tmp_path / "onboarding_results.json").exists()
