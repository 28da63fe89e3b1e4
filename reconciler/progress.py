"""A progress bar on stderr for reads and applies that take more than a moment.

Only on a terminal: in CI (stderr not a terminal) nothing is written at all, so logs
hold the plan and the results, not bar redraws. A bar appears once its task has run for
``delay`` seconds, so quick runs never flash one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import click


class Progress:
    """Called as ``progress(what, done, total)`` (a ``client.ProgressHook``); thread-safe."""

    def __init__(self, stream: TextIO | None = None, delay: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self._stream: TextIO = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty()
        self._delay = delay
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._bar: Any | None = None  # click's ProgressBar of the task on screen
        self._bar_of: str | None = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled or total < 1:
            return
        with self._lock:
            started = self._started.setdefault(what, self._clock())
            if self._bar_of != what:
                if done >= total or self._clock() - started < self._delay:
                    return
                self._finish()
                self._bar = click.progressbar(
                    length=total, label=what, file=self._stream, show_pos=True, show_eta=True, update_min_steps=1
                )
                self._bar_of = what
            assert self._bar is not None
            self._bar.update(done - self._bar.pos)
            if done >= total:
                self._finish()

    def clear(self) -> None:
        """Erase the bar's line before other output is printed (it is redrawn on the next step)."""
        with self._lock:
            if self._bar is not None:
                self._stream.write("\r\x1b[K")
                self._stream.flush()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
        self._bar = self._bar_of = None
