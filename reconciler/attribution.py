"""Who caused a change: the name every write carries, and what each object records of its last change.

LiteLLM's audit trail keeps the ``litellm-changed-by`` header of every write; this tool also keeps,
on each user, team and organization it writes, ``metadata.litellm_reconciler.last_change`` as
``{by, ref, at}``, so "who gave Alice access" is answered from the proxy alone. In GitHub Actions the
cause is the pull request: its author, who merged it, its number and the commit; the GitHub glue
passes the pull request it found for the merge commit (``LITELLM_RECONCILER_PULL_REQUEST``,
``LITELLM_RECONCILER_PR_AUTHOR``), and the event says the rest. Elsewhere it is ``user@host``.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Set by the GitHub glue from the merged pull request of the commit being applied.
PULL_REQUEST_VARIABLE = "LITELLM_RECONCILER_PULL_REQUEST"
PR_AUTHOR_VARIABLE = "LITELLM_RECONCILER_PR_AUTHOR"
#: Where a change is recorded on each object this tool writes (under its metadata key).
LAST_CHANGE_KEY = "last_change"
#: A header value stays on one line of printable ASCII whatever a login or a repository name holds.
_HEADER_LIMIT = 200


@dataclass(frozen=True)
class Attribution:
    """``by``: who caused the change, in words; ``ref``: ``owner/repo#PR@sha`` in Actions, else ``local``."""

    by: str
    ref: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Attribution:
        if environ.get("GITHUB_ACTIONS") == "true":
            return _from_actions(environ)
        return cls(_local_user(), "local")

    def header(self) -> str:
        """The ``litellm-changed-by`` value: one printable ASCII line."""
        text = f"{self.by} ({self.ref}) via litellm-reconciler"
        return "".join(c if " " <= c <= "~" else "?" for c in text)[:_HEADER_LIMIT]

    def stamp(self, at: str) -> dict[str, str]:
        """What an object records of this change."""
        return {"by": self.by, "ref": self.ref, "at": at}

    def to_dict(self) -> dict[str, str]:
        return {"by": self.by, "ref": self.ref}


def _from_actions(environ: Mapping[str, str]) -> Attribution:
    """The pull request behind this run: from a ``pull_request`` event, or from what the glue found
    for a push; the merger is who merged it (a push: who pushed, ``GITHUB_ACTOR``)."""
    event = _event(environ.get("GITHUB_EVENT_PATH"))
    pull = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else {}
    number = str(pull.get("number") or environ.get(PULL_REQUEST_VARIABLE) or "").strip()
    author = _login(pull.get("user")) or environ.get(PR_AUTHOR_VARIABLE, "").strip()
    merger = _login(pull.get("merged_by")) or environ.get("GITHUB_ACTOR", "").strip() or "unknown"
    sha = str(pull.get("merge_commit_sha") or environ.get("GITHUB_SHA") or "")[:12]
    repository = environ.get("GITHUB_REPOSITORY", "?")
    if number:
        by = f"{author or 'unknown'} (author of #{number}), merged by {merger}"
        ref = f"{repository}#{number}@{sha}"
    else:
        by = f"{merger} (GitHub Actions run {environ.get('GITHUB_RUN_ID', '?')})"
        ref = f"{repository}@{sha}"
    return Attribution(by, ref)


def _event(path: str | None) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _login(user: object) -> str:
    return str(user.get("login") or "") if isinstance(user, dict) else ""


def _local_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
