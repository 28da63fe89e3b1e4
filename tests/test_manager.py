"""reconciler/manager.py: the apply's checks that need no proxy, and the apply's steps against the in-memory proxy."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reconciler import manager
from reconciler.apply import ActionResult, ApplyReport
from reconciler.client import LiteLLMClient, ProxyError
from reconciler.client import release as client_release
from reconciler.desired import parse_desired
from reconciler.live import LiveState
from reconciler.lock import ApplyLock
from reconciler.manager import (
    Applied,
    ApplyOutcome,
    ReportCourier,
    StalePlan,
    apply_desired,
    check_saved_plan,
)
from reconciler.onboarding import OnboardingReport
from reconciler.plan import Plan, make_plan

from .test_apply import SEALER, UI, FakeLiteLLM
from .test_plan import NOW

FILE = "version: 1\nenvironments: [{name: staging}, {name: production}]\nteams: [{alias: a}]\n"


def test_a_plan_saved_for_one_environment_is_refused_for_another_before_any_request():
    file = parse_desired(FILE)
    saved = make_plan(file.for_environment("staging"), LiveState(), NOW)
    with pytest.raises(StalePlan, match="the saved plan is for environment staging, not production"):
        check_saved_plan(saved, file.for_environment("production"), client=None)  # type: ignore[arg-type]
    with pytest.raises(StalePlan, match="for environment \\(none\\), not staging"):
        check_saved_plan(replace(saved, environment=None), file.for_environment("staging"), client=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "version, release",
    [("1.80.5", (1, 80, 5)), ("1.110.2", (1, 110, 2)), ("1.81.0-stable", (1, 81, 0)), ("nightly", ())],
)
def test_litellm_versions_compare_as_numbers(version: str, release: tuple[int, ...]) -> None:
    assert client_release(version) == release
    assert (client_release(version) < (1, 110)) == (version != "1.110.2")


class RecordingView:
    """An :class:`ApplyView` that notes what it was shown, in order."""

    def __init__(self, refuse: bool = False) -> None:
        self.seen: list[str] = []
        self.refuse = refuse

    def show(self, plan: Plan) -> None:
        self.seen.append(f"show {len(plan.actions)}")

    def reviewed(self, plan: Plan) -> None:
        self.seen.append("reviewed")

    def confirm(self, plan: Plan) -> None:
        self.seen.append("confirm")
        if self.refuse:
            raise RuntimeError("no")

    def nothing_left(self) -> None:
        self.seen.append("nothing left")

    def result(self, result: ActionResult, done: int, total: int) -> None:
        self.seen.append(f"result {done}/{total} {result.status}")

    def executed(self, report: ApplyReport) -> None:
        self.seen.append("executed")

    def counted(self, client: LiteLLMClient, seconds: float) -> None:
        self.seen.append("counted")


def on_the_real_clock() -> FakeLiteLLM:
    """apply_desired plans on the real clock (``manager.now``): the fake proxy's links are dated by the same one."""
    return FakeLiteLLM(clock=lambda: datetime.now(timezone.utc))


APPLIED = "version: 1\nteams: [{alias: dev}]\nusers: [{email: a@example.com, teams: [dev]}]\n"


def run_apply(proxy: FakeLiteLLM, view: RecordingView, tmp_path: Path) -> Applied | None:
    return apply_desired(
        parse_desired(APPLIED),
        proxy.client(),
        view,
        ApplyOutcome(),
        saved=None,
        courier=ReportCourier(OnboardingReport(tmp_path / "links.jsonl"), None),
        sealer=SEALER,
        ui_base=UI,
        allow_mass_removal=False,
        lock_timeout=5,
        lock_ttl=60,
    )


def test_apply_desired_shows_confirms_then_applies_under_the_lock_and_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager, "ApplyLock", functools.partial(ApplyLock, settle=0))
    proxy, view = on_the_real_clock(), RecordingView()
    applied = run_apply(proxy, view, tmp_path)
    assert applied is not None and applied.report.ok and applied.stubborn == []
    assert applied.verification is not None and not applied.verification.has_changes
    results = [s for s in view.seen if s.startswith("result")]
    assert view.seen == ["show 5", "confirm", *results, "executed", "counted"] and len(results) == 5
    assert results[-1] == "result 5/5 done"

    again = RecordingView()
    assert run_apply(proxy, again, tmp_path) is None and again.seen == ["show 0"]


def test_apply_desired_writes_nothing_when_the_view_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager, "ApplyLock", functools.partial(ApplyLock, settle=0))
    proxy, view = on_the_real_clock(), RecordingView(refuse=True)
    with pytest.raises(RuntimeError):
        run_apply(proxy, view, tmp_path)
    assert view.seen == ["show 5", "confirm"]
    assert [r for r in proxy.requests if r[0] != "GET"] == []


def test_apply_with_a_key_that_may_only_read_says_so_before_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    class ReadOnly:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def acquire(self, wait: float) -> None:
            raise ProxyError(
                "POST", "/user/new", 403, "user not allowed to access this route, role= proxy_admin_viewer"
            )

    monkeypatch.setattr(manager, "ApplyLock", ReadOnly)
    with pytest.raises(ValueError, match="apply needs a key that can write") as refused:
        with manager.apply_lock(None, 0, 60):  # type: ignore[arg-type]
            pytest.fail("never reached")
    assert "LITELLM_API_KEY" in str(refused.value) and "Nothing was changed" in str(refused.value)
