"""The onboarding report: where every link this tool creates is written the moment it exists.

A JSON Lines file, one record per line, appended and flushed to disk before the apply
moves on, so a killed apply loses no link it handed out: whatever it created is either
in the report or, when the kill came between ``/invitation/new`` and the line, reported
by the next apply as unrecorded. Appending (never rewriting) also lets two runs share a
report without one erasing the other's records. A later line about the same link (an
email sent or failed) supersedes the earlier one; ``load_report`` merges them.

The file holds credentials: mode 0600, never written through a symlink (``files``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .files import append_private, read_private, sync_private


@dataclass
class InvitationRecord:
    """One line of the report: the fields the old hand-run script wrote, plus a status: created,
    sent, send_failed, failed, skipped, unrecorded (a link an interrupted apply may have made) or
    redelivered (a recorded link handed over again)."""

    email: str
    user_id: str
    invitation_id: str | None
    expires_at: str | None
    onboarding_link: str | None
    status: str
    error: str | None = None


def onboarding_link(ui_base: str, invitation_id: str) -> str:
    """The link the LiteLLM UI's onboarding page understands (it reads ``invitation_id``)."""
    return f"{ui_base.rstrip('/')}/ui/onboarding?invitation_id={invitation_id}"


class OnboardingReport:
    """Opened before the first write, so an unusable path stops the run while nothing has changed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"cannot write the onboarding report in {folder}: no such directory")
        text = read_private(self.path)
        if text and not _looks_like_a_report(text):
            raise ValueError(f"{self.path} exists but is not an onboarding report (JSON Lines); move it away first")

    def append(self, record: InvitationRecord, durable: bool = True) -> None:
        """Add one record: written when this returns (it survives the process being killed), and
        flushed to disk too when ``durable`` (else by the next ``sync``)."""
        append_private(self.path, json.dumps(asdict(record), sort_keys=True) + "\n", durable)

    def log_request(self, email: str, user_id: str | None, run: str) -> None:
        """Say, before ``/invitation/new`` is sent, that run ``run`` asks for this user's link (written when
        this returns: it survives the process being killed)."""
        append_private(self.path, request_line(email, user_id, run), False)

    def sync(self) -> None:
        """Flush every record appended so far to disk (one fsync for a batch of links)."""
        sync_private(self.path)


#: A line written just before ``/invitation/new`` is sent: the next run tells "a link may exist" from "none
#: was asked for" (a run killed while it created users asked for none). Not a record of a link.
REQUESTED = "requested"


def request_line(email: str, user_id: str | None, run: str) -> str:
    """The report line saying run ``run`` is about to ask for a link for this user; with no user, that the
    run begins (before its first intent): from then on the report knows which links it asked for."""
    return json.dumps({"email": email, "user_id": user_id, "status": REQUESTED, "run": run}, sort_keys=True) + "\n"


def _lines(path: str | Path) -> list[dict[str, Any]]:
    """The report's lines that are JSON objects (a line cut short by a crash is skipped)."""
    found = []
    for line in (read_private(path) or "").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def requests(path: str | Path) -> dict[str, set[str]]:
    """The users each run logged a link request for, by run."""
    found: dict[str, set[str]] = {}
    for line in _lines(path):
        if line.get("status") == REQUESTED and line.get("run"):
            asked = found.setdefault(str(line["run"]), set())
            if line.get("user_id"):
                asked.add(str(line["user_id"]))
    return found


def load_report(path: str | Path) -> list[dict[str, Any]]:
    """The records of a report, one per link (or per user, for lines without a link), in the
    order they first appeared; a later line about the same link replaces the earlier one.
    Request lines are left out: they record no link."""
    merged: dict[str, dict[str, Any]] = {}
    for n, record in enumerate(_lines(path)):
        if record.get("status") != REQUESTED:
            key = record.get("invitation_id") or f"line {n}"
            merged[key] = {**merged.get(key, {}), **record}
    return list(merged.values())


def _looks_like_a_report(text: str) -> bool:
    try:
        first = json.loads(text.splitlines()[0])
    except (json.JSONDecodeError, IndexError):
        return False
    return isinstance(first, dict) and "email" in first and "status" in first
