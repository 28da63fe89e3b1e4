"""The onboarding status table: from the recorded state, and the proxy's answer where it could be asked."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from reconciler.desired import parse_desired
from reconciler.invitations import onboarding_status, render_table
from reconciler.live import OWNER_KEY, LiveInvitation, LiveState, LiveUser

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
FILE = parse_desired("version: 1\nusers: [{email: a@example.com}, {email: b@example.com}]\n", "users.yaml")


def user(record: dict[str, Any] | None) -> LiveUser:
    metadata = {OWNER_KEY: {"managed": True, **({"invitation": record} if record is not None else {})}}
    return LiveUser("u-a", "a@example.com", "internal_user", None, (), metadata)


@pytest.mark.parametrize(
    "record, checked, state, detail",
    [
        (None, None, "never invited", "set 'invite: true' to invite"),
        ({"id": "plain"}, None, "exposed", "the link was readable by read-only keys; apply replaces it"),
        ({"intent_at": "2026-11-26T10:00:00+00:00"}, None, "interrupted", "an apply was interrupted while inviting"),
        ({"sealed": "v1.x", "accepted_at": "2026-11-25T08:00:00Z"}, None, "accepted", "onboarded"),
        (
            {"sealed": "v1.x", "expires_at": "2026-12-01T00:00:00Z", "delivery": "emailed"},
            None,
            "pending",
            "pending until 2026-12-01 (emailed; not verified: needs the seal key)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2026-12-01T00:00:00Z", "delivery": "email_failed"},
            {},
            "missing",
            "the link is no longer on the proxy",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2026-12-01T00:00:00Z", "delivery": "email_failed"},
            {"u-a": LiveInvitation("i", False, None, "2026-12-01T00:00:00Z")},
            "pending",
            "pending until 2026-12-01 (the email failed; apply sends it again)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2026-12-01T00:00:00Z"},
            {"u-a": LiveInvitation("i", True, "2026-11-26T00:00:00Z", "2026-12-01T00:00:00Z")},
            "accepted",
            "onboarded (apply records it once the link expires)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2026-11-20T00:00:00Z"},
            None,
            "expired",
            "expired on 2026-11-20; apply re-invites unless it was accepted",
        ),
    ],
)
def test_each_state(record, checked, state: str, detail: str) -> None:
    row, missing = onboarding_status(FILE, LiveState(users=(user(record),)), NOW, checked)
    assert (row.state, missing.state) == (state, "not on the proxy")
    assert row.detail.startswith(detail), row.detail
    table = render_table([row, missing])
    assert "1 not on the proxy" in table and "v1.x" not in table
