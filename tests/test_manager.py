"""The apply's checks in reconciler/manager.py that need no proxy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.desired import parse_desired
from reconciler.live import LiveState
from reconciler.manager import StalePlan, _release, check_saved_plan
from reconciler.plan import make_plan

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
    assert _release(version) == release
    assert (_release(version) < (1, 110)) == (version != "1.110.2")
