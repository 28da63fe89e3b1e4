"""Orchestration shared by the CLI commands: connect, read, plan, check a saved plan, verify.

Kept apart from ``cli.py`` so the commands stay thin and the same steps can be
driven from tests or other front ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from .client import DEFAULT_PROXY_URL, LiteLLMClient
from .desired import DesiredState
from .live import LiveState, read_live
from .plan import Plan, make_plan

#: Where the key comes from: a read-only key for plans may be given separately.
KEY_VARIABLES = ("LITELLM_API_KEY", "LITELLM_MASTER_KEY")


class StalePlan(Exception):
    """A saved plan no longer describes the proxy; applying it could undo someone's change."""


@dataclass(frozen=True)
class Connection:
    proxy_url: str
    api_key: str
    timeout: float = 30.0

    @classmethod
    def from_env(cls, proxy_url: Optional[str], timeout: float = 30.0) -> "Connection":
        url = proxy_url or os.environ.get("LITELLM_PROXY_URL") or DEFAULT_PROXY_URL
        key = next((os.environ[name] for name in KEY_VARIABLES if os.environ.get(name)), "")
        if not key:
            raise ValueError("no API key: set LITELLM_MASTER_KEY (or LITELLM_API_KEY, e.g. a read-only key for plan)")
        return cls(url, key, timeout)

    def client(self) -> LiteLLMClient:
        return LiteLLMClient(self.proxy_url, self.api_key, timeout=self.timeout)


def now() -> datetime:
    return datetime.now(timezone.utc)


def plan_against(desired: DesiredState, client: LiteLLMClient) -> tuple[Plan, LiveState]:
    moment = now()
    live = read_live(client, now=moment)
    return make_plan(desired, live, moment), live


def load_saved_plan(path: str | Path) -> Plan:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read plan {path}: {exc}") from None
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a litellm-reconciler plan (missing {exc})") from None


def check_saved_plan(saved: Plan, client: LiteLLMClient) -> LiveState:
    """Refuse a saved plan when the proxy changed since it was made (Terraform's stale plan)."""
    live = read_live(client, now=now())
    if live.fingerprint != saved.live_fingerprint:
        raise StalePlan("the proxy changed since this plan was made; run 'plan' again and review the new plan")
    return live


def check_fingerprint(plan: Plan, expected: str) -> None:
    """Refuse a plan other than the one reviewers saw (a prefix of 12+ hex digits is enough)."""
    wanted = expected.strip().lower()
    if len(wanted) < 12 or not plan.fingerprint.startswith(wanted):
        raise StalePlan(f"plan fingerprint {plan.fingerprint[:16]} does not match the reviewed {wanted[:16] or '(empty)'}; nothing was applied")
