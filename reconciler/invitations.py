"""Onboarding state of the declared users, for ``litellm-reconciler invitations``.

A pure function of the file and the live snapshot (which already holds
``/invitation/info`` for every invitation still pending), so an admin sees who is
stuck without a single extra request. Never shows links or invitation ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Optional

from .desired import DesiredState
from .live import LiveState, invitation_expired, utc_date

STATES = ("accepted", "pending", "expired", "missing", "never invited", "not on the proxy")


@dataclass(frozen=True)
class OnboardingStatus:
    email: str
    user_id: Optional[str]
    state: str
    since: Optional[str]  # accepted_at, or the expiry date of a pending/expired link
    detail: str


def onboarding_status(desired: DesiredState, live: LiveState, now: datetime) -> list[OnboardingStatus]:
    users = {u.key: u for u in live.users if u.key}
    out = []
    for spec in sorted(desired.users, key=lambda u: u.key):
        user = users.get(spec.key)
        if user is None:
            out.append(OnboardingStatus(spec.email, None, "not on the proxy", None, "apply will create and invite"))
            continue
        record = user.owned.get("invitation")
        if not isinstance(record, dict):
            out.append(OnboardingStatus(spec.email, user.user_id, "never invited", None, "set 'invite: true' to invite"))
            continue
        if record.get("accepted_at"):
            out.append(OnboardingStatus(spec.email, user.user_id, "accepted", record["accepted_at"], "onboarded"))
            continue
        info = live.invitations.get(str(record.get("id")))
        if info is None:
            out.append(OnboardingStatus(spec.email, user.user_id, "missing", None, "the link was deleted on the proxy; apply re-invites"))
        elif info.is_accepted:
            out.append(OnboardingStatus(spec.email, user.user_id, "accepted", info.accepted_at, "onboarded"))
        elif invitation_expired(info.expires_at, now):
            out.append(OnboardingStatus(spec.email, user.user_id, "expired", info.expires_at, f"expired on {utc_date(info.expires_at)}; apply re-invites"))
        else:
            out.append(OnboardingStatus(spec.email, user.user_id, "pending", info.expires_at, f"pending until {utc_date(info.expires_at)}"))
    return out


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
