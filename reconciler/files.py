"""Files that hold credentials: onboarding reports (links) and saved plans.

They are written the way a shared runner or a shared home directory demands: a fresh
temporary name in the target's own directory (``mkstemp``: ``O_CREAT|O_EXCL|O_NOFOLLOW``,
mode 0600), flushed to disk, then renamed over the target. A rename replaces a symlink
planted at the target instead of writing through it, and no other user ever sees a
half-written file or a moment with wider permissions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path


def write_private(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` atomically, mode 0600, without following symlinks."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(folder)
    return target


def append_private(path: str | Path, text: str, durable: bool = True) -> None:
    """Append ``text`` to ``path`` and, when ``durable``, flush it to disk (``sync_private``
    does that later for several appends: written, the text already survives the process being
    killed; only a crash of the machine needs the flush). The file is created private if absent.

    Creation goes through a fresh ``mkstemp`` name linked into place (a link fails if the
    path exists, so a rival's file is never replaced); the open refuses a symlink at the
    path, and a file that is not ours or not regular is refused too."""
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        folder = target.parent if str(target.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # created meanwhile by another run: append to theirs
        finally:
            os.unlink(tmp)
    try:
        # O_NONBLOCK: a FIFO planted at the path fails at once instead of hanging the run.
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; refusing to write through it (move it away first)") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ValueError(f"{path} is not a regular file of this user; refusing to write links into it")
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def sync_private(path: str | Path) -> None:
    """Flush to disk what was appended to ``path`` without ``durable`` (no-op when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private(path: str | Path) -> str | None:
    """The text of ``path``, or None when it does not exist; a symlink there is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(
                f"{path} is a symbolic link; refusing to read or replace it (move it away first)"
            ) from None
        raise
    with os.fdopen(fd, "r", encoding="utf-8") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file; refusing to use it")
        return handle.read()


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (a crash right after must not bring the old file back)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
