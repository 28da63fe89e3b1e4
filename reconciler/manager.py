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
from typing import Callable, Optional

from .apply import ActionResult, ApplyReport, Executor, OnboardingReport
from .client import DEFAULT_PROXY_URL, LiteLLMClient
from .delivery import SmtpSettings, send_invitations
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
        """``proxy_url`` is the flag (click also fills it from LITELLM_PROXY_URL). Surrounding
        whitespace of a key is dropped: a secret pasted with its newline is still that key."""
        key = next((os.environ[name].strip() for name in KEY_VARIABLES if os.environ.get(name, "").strip()), "")
        if not key:
            raise ValueError("no API key: set LITELLM_MASTER_KEY (or LITELLM_API_KEY, e.g. a read-only key for plan)")
        return cls(proxy_url or DEFAULT_PROXY_URL, key, timeout)

    def client(self) -> LiteLLMClient:
        return LiteLLMClient(self.proxy_url, self.api_key, timeout=self.timeout)


def now() -> datetime:
    return datetime.now(timezone.utc)


def read_for(desired: DesiredState, client: LiteLLMClient, moment: datetime, check_pending: bool = False) -> LiveState:
    """The snapshot the file needs: its users' invitations, and certainty about its teams."""
    teams = frozenset(t.alias for t in desired.teams) | frozenset(t.id for t in desired.teams if t.id)
    emails = frozenset(user.key for user in desired.users)
    return read_live(client, now=moment, declared=emails, declared_teams=teams, check_pending=check_pending)


def plan_against(desired: DesiredState, client: LiteLLMClient) -> tuple[Plan, LiveState]:
    moment = now()
    live = read_for(desired, client, moment)
    return make_plan(desired, live, moment), live


def load_saved_plan(path: str | Path) -> Plan:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read plan {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a litellm-reconciler plan")
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a litellm-reconciler plan ({type(exc).__name__}: {exc})") from None


def check_saved_plan(saved: Plan, desired: DesiredState, client: LiteLLMClient) -> LiveState:
    """Refuse a saved plan when the proxy changed since it was made (Terraform's stale plan).

    The snapshot is read for the users the file declares, as the plan's was; a file whose
    users changed since therefore counts as a change too."""
    live = read_for(desired, client, now())
    if live.fingerprint != saved.live_fingerprint:
        raise StalePlan("the proxy (or the file's list of users) changed since this plan was made; run 'plan' again and review the new plan")
    return live


def check_fingerprint(plan: Plan, expected: str) -> None:
    """Refuse a plan other than the one reviewers saw (a prefix of 12+ hex digits is enough)."""
    wanted = expected.strip().lower()
    if len(wanted) < 12 or not plan.fingerprint.startswith(wanted):
        raise StalePlan(f"plan fingerprint {plan.fingerprint[:16]} does not match the reviewed {wanted[:16] or '(empty)'}; nothing was applied")


def execute(
    plan: Plan,
    client: LiteLLMClient,
    live: LiveState,
    ui_base: str,
    report: OnboardingReport,
    mail: Optional[tuple[SmtpSettings, str]],
    on_result: Callable[[ActionResult], None],
) -> ApplyReport:
    """Run the plan, then deliver the links. The report is saved as soon as the links exist
    and again after mailing, so a failure while sending never loses one."""
    metadata = {user.user_id: user.metadata for user in live.users}
    result = Executor(client, ui_base, on_result=on_result, metadata=metadata).run(plan)
    if result.invitations:
        report.save(result.invitations)
        if mail is not None:
            send_invitations(result.invitations, *mail)
            report.save(result.invitations)
    return result
