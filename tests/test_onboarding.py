"""The onboarding report: JSON Lines, appended and on disk the moment a link exists, private."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from reconciler.onboarding import (
    InvitationRecord,
    OnboardingReport,
    load_report,
    onboarding_link,
    requests,
)

UI = "https://ui.example.test/"


def record(email: str, status: str = "created") -> InvitationRecord:
    return InvitationRecord(
        email, f"id-{email}", f"inv-{email}", "2031-12-04", f"{UI}ui/onboarding?invitation_id=inv-{email}", status
    )


def test_onboarding_link() -> None:
    assert (
        onboarding_link("https://ui.example.test/", "abc") == "https://ui.example.test/ui/onboarding?invitation_id=abc"
    )
    assert onboarding_link("http://h:4000", "abc") == "http://h:4000/ui/onboarding?invitation_id=abc"


def test_records_are_appended_private_and_kept_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "onboarding_results.jsonl"
    OnboardingReport(path).append(record("a@example.com"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    OnboardingReport(path).append(record("b@example.com"))
    assert [r["email"] for r in load_report(path)] == ["a@example.com", "b@example.com"]
    assert len(path.read_text().splitlines()) == 2 and not list(tmp_path.glob(".*"))


def test_a_later_line_about_the_same_link_supersedes_the_earlier_one(tmp_path: Path) -> None:
    report = OnboardingReport(tmp_path / "r.jsonl")
    first = record("a@example.com")
    report.append(first)
    first.status = "sent"
    report.append(first)
    report.append(InvitationRecord("b@example.com", "u-b", None, "2031-12-09", None, "unrecorded", "interrupted"))
    assert [(r["email"], r["status"]) for r in load_report(tmp_path / "r.jsonl")] == [
        ("a@example.com", "sent"),
        ("b@example.com", "unrecorded"),
    ]


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    OnboardingReport(path).append(record("a@example.com"))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"email": "b@exa')
    assert [r["email"] for r in load_report(path)] == ["a@example.com"]


def test_an_existing_world_readable_report_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    OnboardingReport(path).append(record("a@example.com"))
    path.chmod(0o644)
    OnboardingReport(path).append(record("b@example.com"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _append_many(path: str, who: str) -> None:
    report = OnboardingReport(path)
    for i in range(50):
        report.append(record(f"{who}{i}@example.com"))


def test_two_runs_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.jsonl")
    workers = [multiprocessing.Process(target=_append_many, args=(path, who)) for who in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(load_report(path)) == 100


@pytest.mark.parametrize("content", ["{not json", '{"a": 1}\n', "[]\n"])
def test_a_file_that_is_not_a_report_is_refused_not_appended_to(tmp_path: Path, content: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match="move it away first"):
        OnboardingReport(path)
    assert path.read_text() == content


def test_a_missing_directory_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot write the onboarding report"):
        OnboardingReport(tmp_path / "missing" / "r.jsonl")


def test_a_symlink_at_the_report_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("")
    (tmp_path / "r.jsonl").symlink_to(tmp_path / "victim")
    with pytest.raises(ValueError, match="symbolic link"):
        OnboardingReport(tmp_path / "r.jsonl")
    assert (tmp_path / "victim").read_text() == ""


def test_request_lines_say_which_links_a_run_asked_for_and_are_no_records(tmp_path: Path) -> None:
    report = OnboardingReport(tmp_path / "r.jsonl")
    report.log_request("", None, "run-1")  # the run begins
    report.log_request("a@example.com", "u-a", "run-1")
    report.append(record("a@example.com"))
    assert requests(tmp_path / "r.jsonl") == {"run-1": {"u-a"}}
    assert [r["status"] for r in load_report(tmp_path / "r.jsonl")] == ["created"], "no link in a request line"
