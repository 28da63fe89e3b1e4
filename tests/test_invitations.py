"""The onboarding status table: from the recorded state, and the proxy's answer where it could be asked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from reconciler.client import LiteLLMClient
from reconciler.desired import parse_desired
from reconciler.invitations import onboarding_status, render_table
from reconciler.live import OWNER_KEY, LiveInvitation, LiveState, LiveUser
from reconciler.secrets import setup_logging
from tests.conftest import SAMPLES

NOW = datetime(2031, 11, 27, 12, tzinfo=timezone.utc)
FILE = parse_desired("version: 1\nusers: [{email: a@example.com}, {email: b@example.com}]\n", "users.yaml")


def user(record: dict[str, Any] | None) -> LiveUser:
    metadata = {OWNER_KEY: {"managed": True, **({"invitation": record} if record is not None else {})}}
    return LiveUser("u-a", "a@example.com", "internal_user", None, (), metadata)


@pytest.mark.parametrize(
    "record, checked, state, detail",
    [
        (None, None, "never invited", "set 'invite: true' to invite"),
        ({"id": "plain"}, None, "exposed", "the link was readable by read-only keys; apply replaces it"),
        ({"intent_at": "2031-11-26T10:00:00+00:00"}, None, "interrupted", "an apply was interrupted while inviting"),
        ({"sealed": "v1.x", "accepted_at": "2031-11-25T08:00:00Z"}, None, "accepted", "onboarded"),
        (
            {"sealed": "v1.x", "expires_at": "2031-12-01T00:00:00Z", "delivery": "emailed"},
            None,
            "pending",
            "pending until 2031-12-01 (emailed; not verified: needs the seal key)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2031-12-01T00:00:00Z", "delivery": "email_failed"},
            {},
            "missing",
            "the link is no longer on the proxy",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2031-12-01T00:00:00Z", "delivery": "email_failed"},
            {"u-a": LiveInvitation("i", False, None, "2031-12-01T00:00:00Z")},
            "pending",
            "pending until 2031-12-01 (the email failed; apply sends it again)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2031-12-01T00:00:00Z"},
            {"u-a": LiveInvitation("i", True, "2031-11-26T00:00:00Z", "2031-12-01T00:00:00Z")},
            "accepted",
            "onboarded (apply records it once the link expires)",
        ),
        (
            {"sealed": "v1.x", "expires_at": "2031-11-20T00:00:00Z"},
            None,
            "expired",
            "expired on 2031-11-20; apply re-invites unless it was accepted",
        ),
    ],
)
def test_each_state(record, checked, state: str, detail: str) -> None:
    row, missing = onboarding_status(FILE, LiveState(users=(user(record),)), NOW, checked)
    assert (row.state, missing.state) == (state, "not on the proxy")
    assert row.detail.startswith(detail), row.detail
    table = render_table([row, missing])
    assert "1 not on the proxy" in table and "v1.x" not in table


@pytest.fixture
def tool_logging() -> Iterator[None]:
    """Undoes what ``setup_logging`` does to the package's logger."""
    logger = logging.getLogger("reconciler")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[2]
    logger.setLevel(saved[1])


def test_looking_up_a_link_never_logs_its_id(tool_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Every LiteLLM version takes the id only in the query (client.invitation_info): the proxy's
    access log has it, the tool's own log, even at debug, has the path only."""
    answer = json.loads((SAMPLES / "34_invitation_info.json").read_text(encoding="utf-8"))["response"]["body"]
    sent: list[httpx.Request] = []

    def proxy(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=answer)

    setup_logging("debug")  # as --log-level debug does, to the stderr captured now
    with LiteLLMClient("http://proxy.test", "Zq7-test-key", transport=httpx.MockTransport(proxy)) as client:
        assert client.invitation_info(answer["id"]) == answer
    logged = capsys.readouterr().err
    assert "GET /invitation/info 200" in logged and answer["id"] not in logged, logged
    assert sent[0].url.params["invitation_id"] == answer["id"] and not sent[0].content


def test_a_link_sealed_under_another_key_is_unreadable_not_missing() -> None:
    record = {"sealed": "v2.x", "expires_at": "2031-12-01T00:00:00Z"}
    [row, _] = onboarding_status(FILE, LiveState(users=(user(record),)), NOW, {}, frozenset({"u-a"}))
    assert row.state == "unreadable" and "LITELLM_RECONCILER_SEAL_KEY" in row.detail and "let it expire" in row.detail
