"""The progress bar: on a terminal only, and only for what takes more than a moment."""

from __future__ import annotations

import io

from reconciler.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_appears_once_a_task_has_run_for_a_moment_and_is_cleared_on_request() -> None:
    screen, clock = Terminal(), Clock()
    progress = Progress(screen, delay=0.5, clock=clock)
    progress("Reading users", 1, 10)
    assert screen.getvalue() == "", "not yet: quick reads never flash a bar"
    clock.now = 1.0
    progress("Reading users", 4, 10)
    assert "Reading users" in screen.getvalue() and "4/10" in screen.getvalue()
    progress.clear()
    assert screen.getvalue().endswith("\r\x1b[K")
    progress("Reading users", 10, 10)
    assert "10/10" in screen.getvalue()


def test_a_task_done_before_the_delay_shows_nothing() -> None:
    screen, clock = Terminal(), Clock()
    progress = Progress(screen, delay=0.5, clock=clock)
    for done in range(1, 4):
        progress("Applying", done, 3)
    assert screen.getvalue() == ""


def test_nothing_is_written_when_stderr_is_not_a_terminal() -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(log, delay=0.0, clock=clock)
    clock.now = 5.0
    for done in range(1, 11):
        progress("Applying", done, 10)
    progress.clear()
    assert log.getvalue() == "" and not progress.enabled
