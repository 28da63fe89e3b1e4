"""Files that hold links or plans: private, atomic, and never written through a planted symlink."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reconciler.apply import InvitationRecord, OnboardingReport
from reconciler.files import read_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_written_private_and_whole(tmp_path: Path) -> None:
    target = write_private(tmp_path / "plan.json", "{}\n")
    assert target.read_text() == "{}\n" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"], "no temporary file is left behind"


def test_an_existing_world_readable_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "plan.json").symlink_to(victim)
    write_private(tmp_path / "plan.json", "plan")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "plan.json").is_symlink() and (tmp_path / "plan.json").read_text() == "plan"


def test_a_symlink_planted_at_a_predictable_temporary_name_is_ignored(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in (".plan.json.tmp", ".plan.json.swp"):
        (tmp_path / name).symlink_to(victim)
    write_private(tmp_path / "plan.json", "plan")
    assert victim.read_text() == "precious"


def test_a_failed_write_leaves_neither_a_temporary_file_nor_a_changed_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    target.write_text("before")

    def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_private(target, "after")
    assert target.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_reading_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("[]")
    (tmp_path / "report.json").symlink_to(tmp_path / "victim")
    with pytest.raises(ValueError, match="is a symbolic link"):
        read_private(tmp_path / "report.json")
    assert read_private(tmp_path / "absent.json") is None


def test_the_onboarding_report_refuses_a_planted_symlink_before_any_write(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.json").write_text("[]")
    (tmp_path / "onboarding_results.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ValueError, match="symbolic link"):
        OnboardingReport(tmp_path / "onboarding_results.json")


def test_the_onboarding_report_is_written_through_the_private_writer(tmp_path: Path) -> None:
    report = OnboardingReport(tmp_path / "r.json")
    report.save([InvitationRecord("a@x.com", "u1", "inv-1", None, "https://h/ui/onboarding?invitation_id=inv-1", "created")])
    assert mode(tmp_path / "r.json") == 0o600 and json.loads((tmp_path / "r.json").read_text())[0]["invitation_id"] == "inv-1"
