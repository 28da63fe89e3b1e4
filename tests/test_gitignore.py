"""`git add -A` after an apply never stages a live link: .gitignore covers what runs write by default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import apply

REPO = Path(__file__).resolve().parents[1]


def _default(option: str) -> str:
    (param,) = [p for p in apply.params if option in getattr(p, "opts", ())]
    return str(param.default)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_default_report_and_its_temporary_name_are_ignored(tmp_path: Path) -> None:
    report = _default("--report")
    assert report == "onboarding_results.jsonl", "the default changed: check .gitignore"
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    # files.py writes through ".<name>.<random>.tmp" in the same directory.
    paths = [report, f".{report}.k3j_x9a1.tmp", "plan.json", f"sub/{report}"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert ignored.stdout.split() == paths, ignored.stderr
    kept = subprocess.run(["git", "check-ignore", "users.yaml"], cwd=tmp_path, capture_output=True, check=False)
    assert kept.returncode == 1, "users.yaml must stay tracked"
