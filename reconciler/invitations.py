"""Onboarding state of the declared users, for ``litellm-reconciler invitations``.

A pure function of the file, the live snapshot and, where a seal key was available,
``/invitation/info`` of the links still open (``manager.pending_invitations``). With a
read-only key the ids cannot be opened, so a pending link is shown as recorded
("not verified"). Never shows links or invitation ids; the proxy's access log does get the
id of each link looked up, since LiteLLM takes it only in the query string
(``client.invitation_info``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from .desired import DesiredState
from .live import (
    LiveInvitation,
    LiveState,
    RecordedInvitation,
    invitation_expired,
    utc_date,
)
from .sealing import UNOPENABLE_HINT

STATES = ("accepted", "pending", "expired", "missing", "exposed", "interrupted", "never invited", "not on the proxy")
#: How each recorded delivery reads after "pending until ...".
_DELIVERY = {
    "emailed": "emailed",
    "email_failed": "the email failed; apply sends it again",
    "reported": "in an onboarding report",
}


@dataclass(frozen=True)
class OnboardingStatus:
    email: str
    user_id: str | None
    state: str
    since: str | None  # accepted_at, or the expiry date of a pending/expired link
    detail: str


def onboarding_status(
    desired: DesiredState,
    live: LiveState,
    now: datetime,
    checked: dict[str, LiveInvitation] | None = None,
    unreadable: frozenset[str] = frozenset(),
) -> list[OnboardingStatus]:
    """One row per declared user. ``checked``: the proxy's view of open links by user id,
    or None when they could not be looked up (no seal key); ``unreadable``: the users whose
    sealed id the key at hand does not open (sealed under another key)."""
    users = {u.key: u for u in live.users if u.key}
    out = []
    for spec in sorted(desired.users, key=lambda u: u.key):
        user = users.get(spec.key)
        if user is None:
            out.append(OnboardingStatus(spec.email, None, "not on the proxy", None, "apply will create and invite"))
            continue
        if user.user_id in unreadable and user.invitation and not user.invitation.accepted_at:
            out.append(
                OnboardingStatus(spec.email, user.user_id, "unreadable", user.invitation.expires_at, _UNREADABLE)
            )
            continue
        row = _status(
            user.invitation, checked.get(user.user_id) if checked is not None else None, checked is not None, now
        )
        out.append(OnboardingStatus(spec.email, user.user_id, *row))
    return out


_UNREADABLE = f"the link's id is {UNOPENABLE_HINT}"


def _status(
    record: RecordedInvitation | None, info: LiveInvitation | None, verified: bool, now: datetime
) -> tuple[str, str | None, str]:
    if record is None:
        return "never invited", None, "set 'invite: true' to invite"
    if record.exposed_id:
        return "exposed", record.expires_at, "the link was readable by read-only keys; apply replaces it"
    if record.intent_at:
        return (
            "interrupted",
            record.intent_at,
            "an apply was interrupted while inviting; the next apply reports the lost link and invites again",
        )
    if record.accepted_at:
        return "accepted", record.accepted_at, "onboarded"
    if verified and info is None:
        return "missing", None, "the link is no longer on the proxy; apply re-invites once it expires"
    if info is not None and info.is_accepted:
        return "accepted", info.accepted_at, "onboarded (apply records it once the link expires)"
    expires_at = info.expires_at if info is not None else record.expires_at
    if invitation_expired(expires_at, now):
        return "expired", expires_at, f"expired on {utc_date(expires_at)}; apply re-invites unless it was accepted"
    notes = [_DELIVERY[record.delivery]] if record.delivery in _DELIVERY else []
    if not verified:
        notes.append("not verified: needs the seal key")
    return "pending", expires_at, f"pending until {utc_date(expires_at)}" + (f" ({'; '.join(notes)})" if notes else "")


def render_table(rows: list[OnboardingStatus]) -> str:
    if not rows:
        return "No users are declared.\n"
    width = max(len(r.email) for r in rows)
    lines = [f"{'EMAIL'.ljust(width)}  {'STATE'.ljust(16)}  DETAIL"]
    lines += [f"{r.email.ljust(width)}  {r.state.ljust(16)}  {r.detail}" for r in rows]
    counts = {state: sum(1 for r in rows if r.state == state) for state in STATES}
    lines.append("")
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items() if n) + ".")
    return "\n".join(lines) + "\n"


def render_json(rows: list[OnboardingStatus]) -> str:
    return json.dumps({"format_version": "1.0", "users": [asdict(r) for r in rows]}, indent=2) + "\n"
