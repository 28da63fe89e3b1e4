"""Files that hold links or plans: private, atomic, and never written through a planted symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.files import append_private, read_private, sync_private, write_private
from reconciler.onboarding import OnboardingReport


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


def test_a_failed_write_leaves_neither_a_temporary_file_nor_a_changed_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    (tmp_path / "elsewhere.jsonl").write_text("[]")
    (tmp_path / "onboarding_results.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(ValueError, match="symbolic link"):
        OnboardingReport(tmp_path / "onboarding_results.jsonl")


def test_append_creates_a_private_file_and_refuses_a_file_that_is_not_regular(tmp_path: Path) -> None:
    append_private(tmp_path / "log", "one\n")
    append_private(tmp_path / "log", "two\n")
    assert (tmp_path / "log").read_text() == "one\ntwo\n" and mode(tmp_path / "log") == 0o600
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError):
        append_private(tmp_path / "fifo", "x")


def test_appends_of_a_batch_share_one_flush_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real(fd)))
    path = tmp_path / "report.jsonl"
    for n in range(5):
        append_private(path, f"{n}\n", durable=False)
    assert path.read_text() == "0\n1\n2\n3\n4\n" and flushed == [], (
        "written (a killed process loses nothing), not yet flushed"
    )
    sync_private(path)
    assert len(flushed) == 1
    append_private(path, "5\n")
    assert len(flushed) == 2, "durable by default"
    sync_private(tmp_path / "absent.jsonl")
