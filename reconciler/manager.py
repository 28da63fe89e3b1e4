"""Orchestration shared by the CLI commands: connect, read, plan, check a saved plan, apply, verify.

Kept apart from ``cli.py`` so the commands stay thin and the same steps can be
driven from tests or other front ends.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .apply import (
    ActionResult,
    ApplyReport,
    Executor,
    UsedLink,
    remember_failures,
    stubborn_failures,
    used_links,
)
from .attribution import Attribution
from .client import (
    DEFAULT_PARALLELISM,
    DEFAULT_PROXY_URL,
    EnterpriseOnly,
    LiteLLMClient,
    ProgressHook,
    ProxyError,
    release,
)
from .delivery import Mailer
from .desired import (
    TEAM_MEMBER_DEFAULTS,
    DesiredState,
    InputError,
    load_desired,
    membership_settings,
    team_ref,
)
from .files import write_private
from .kinds import INVITING
from .live import (
    LiveInvitation,
    LiveOrganization,
    LiveState,
    organization_from_api,
    read_invitations,
    read_live,
    start_of_day,
    with_member_budgets,
    with_member_limits,
    with_team_key_counts,
)
from .lock import ApplyLock, LockHeld, describe_runner
from .onboarding import InvitationRecord, OnboardingReport, load_report, requests
from .plan import Plan, make_plan
from .sealing import Sealer
from .secrets import scrub

#: Where the key comes from: a read-only key for plans may be given separately.
KEY_VARIABLES = ("LITELLM_API_KEY", "LITELLM_MASTER_KEY")


class StalePlan(Exception):
    """A saved plan no longer describes the proxy; applying it could undo someone's change."""


@dataclass(frozen=True)
class Connection:
    proxy_url: str
    api_key: str
    timeout: float = 30.0
    #: Seconds the whole run may take (None: no limit); counted from ``client()``.
    deadline: float | None = None
    #: Requests in flight at once.
    parallelism: int = DEFAULT_PARALLELISM
    #: The key came from LITELLM_API_KEY: the plan job's key, which should be read-only (the plan says if not).
    plan_key: bool = False

    @classmethod
    def from_env(
        cls,
        proxy_url: str | None,
        timeout: float = 30.0,
        deadline: float | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
    ) -> Connection:
        """``proxy_url`` is the flag (click also fills it from LITELLM_PROXY_URL). Surrounding
        whitespace of a key is dropped: a secret pasted with its newline is still that key."""
        found = next(
            ((name, os.environ[name].strip()) for name in KEY_VARIABLES if os.environ.get(name, "").strip()), None
        )
        if found is None:
            raise ValueError("no API key: set LITELLM_MASTER_KEY (or LITELLM_API_KEY, e.g. a read-only key for plan)")
        name, key = found
        return cls(proxy_url or DEFAULT_PROXY_URL, key, timeout, deadline, parallelism, name == "LITELLM_API_KEY")

    def client(self, on_progress: ProgressHook | None = None) -> LiteLLMClient:
        until = time.monotonic() + self.deadline if self.deadline is not None else None
        return LiteLLMClient(
            self.proxy_url,
            self.api_key,
            timeout=self.timeout,
            deadline=until,
            parallelism=self.parallelism,
            on_progress=on_progress,
            changed_by=Attribution.from_env().header(),
        )


def now() -> datetime:
    return datetime.now(timezone.utc)


def read_for(desired: DesiredState, client: LiteLLMClient) -> LiveState:
    """The snapshot the file needs: certainty about the teams it declares and, when the file
    switches removals on, who the caller is (protected) and the key count of each owned team
    it no longer declares (what deleting it deletes). O(pages + teams to delete) requests."""
    teams = frozenset(t.alias for t in desired.teams) | frozenset(t.id for t in desired.teams if t.id)
    live = read_live(client, declared_teams=teams)
    scopes = desired.spec.removals
    removing = scopes.users or scopes.memberships or scopes.teams or scopes.organizations
    # Who the key belongs to (one /key/info): protected from removals; what it may see of organizations.
    caller = client.caller_user_id() if removing or desired.organizations else None
    if desired.organizations or scopes.organizations:
        declared = bool(desired.organizations)
        organizations = read_organizations(client, live, caller, required=declared, complete=declared)
        live = replace(live, organizations=organizations)
    if any(set(TEAM_MEMBER_DEFAULTS) & t.model_fields_set for t in desired.teams):
        live = replace(with_member_limits(live, member_budgets(client, live, teams)), team_fields=client.team_fields())
    if live.teams and any("team_member_permissions" in t.model_fields_set for t in desired.teams):
        available = client.team_permissions_available(live.teams[0].team_id)
        live = replace(live, team_permissions=None if available is None else frozenset(available))
    managed_memberships = {team_ref(e) for u in desired.users for e in u.teams if membership_settings(e)}
    if managed_memberships:
        refs = desired.team_refs
        names = {name for ref in managed_memberships for name in (refs[ref].alias, refs[ref].id) if name}
        live = with_member_budgets(
            client, live, {t.team_id for t in live.teams if t.team_id in names or t.alias in names}
        )
    if removing:
        live = replace(live, caller_id=caller)
    if scopes.teams:
        undeclared = {t.team_id for t in live.teams if t.managed and t.team_id not in teams and t.alias not in teams}
        live = with_team_key_counts(client, live, undeclared)
    return live


def read_organizations(
    client: LiteLLMClient, live: LiveState, caller: str | None, *, required: bool, complete: bool
) -> tuple[LiveOrganization, ...]:
    """Every organization with its members, as the key of user ``caller`` (None: the master key)
    may see them. ``required=False``: a proxy that serves organizations
    only under an Enterprise license has none (instead of an error). ``complete``: refuse a listing
    that may miss some (a plan from it would create what exists; an export would drop it).

    LiteLLM before 1.110 (1.80.5 measured) lists to a key that is not a proxy admin's only the
    organizations its user belongs to; 1.110.2 lists all of them to a proxy_admin_viewer too."""
    try:
        listed = tuple(organization_from_api(o) for o in client.list_organizations())
    except EnterpriseOnly:
        if required:
            raise
        return ()
    if complete and _filters_organizations(client, live, caller):
        raise ProxyError(
            "GET",
            "/organization/list",
            None,
            f"LiteLLM {client.litellm_version() or '(version unknown)'} shows a key that is not a proxy admin's only "
            "the organizations its user belongs to, so they cannot be read completely with this key; "
            "use a proxy_admin key (or LiteLLM 1.110 or later)",
        )
    return listed


def _filters_organizations(client: LiteLLMClient, live: LiveState, caller: str | None) -> bool:
    """Whether ``/organization/list`` may hide organizations from the key of user ``caller``."""
    user = live.users_by_id.get(caller) if caller else None
    if user is None or user.role == "proxy_admin":
        return False  # the master key, or an admin's key: everything
    version = client.litellm_version()
    return version is None or release(version) < (1, 110)


def key_warnings(client: LiteLLMClient, live: LiveState) -> tuple[str, ...]:
    """What the key this plan reads with could change, for the plan to say: the plan job's key is held
    by anyone who can push a branch. One ``/key/info`` (kept by the client); the master key says nothing."""
    caller = client.caller_user_id()
    user = live.users_by_id.get(caller) if caller else None
    if user is None:
        return ()
    if user.role == "proxy_admin":
        return (
            "this plan read the proxy with a proxy_admin key, which can change anything: give the plan job "
            "a proxy_admin_viewer key (docs/security.md)",
        )
    powers = client.viewer_writes() if user.role == "proxy_admin_viewer" else ()
    if not powers:
        return ()
    version = client.litellm_version() or "(version unknown)"
    return (
        f"on LiteLLM {version} the read-only key this plan used can still {'; and '.join(powers)}: "
        "whoever can push a branch holds it; upgrade to LiteLLM 1.110 or later (docs/security.md)",
    )


def member_budgets(client: LiteLLMClient, live: LiveState, declared: frozenset[str]) -> list[dict[str, Any]]:
    """The budget rows that hold teams' member limits: all of them in one ``/budget/list``, or, for
    a key that may not list budgets (a read-only key on 1.80.5), each declared team's own from its
    ``/team/info`` (one request per declared team that has such a row)."""
    try:
        return client.list_budgets()
    except ProxyError as exc:
        if exc.status not in (401, 403):
            raise
    with_row = [
        t.team_id
        for t in live.teams
        if t.metadata.get("team_member_budget_id") and (t.team_id in declared or t.alias in declared)
    ]
    infos = client.concurrently(client.team_info, with_row)
    return [row for info in infos if isinstance(row := (info or {}).get("team_member_budget_table"), dict)]


def read_for_export(client: LiteLLMClient) -> LiveState:
    """Everything ``export`` writes: users, teams (with their members' own budgets: one ``/team/info``
    per team) and, where the proxy serves them, organizations."""
    live = read_live(client)
    if any(t.metadata.get("team_member_budget_id") for t in live.teams):
        # Which member limits this LiteLLM takes (1.80.5 has no member window): from its OpenAPI document.
        live = replace(live, team_fields=client.team_fields())
    live = with_member_budgets(client, live, {t.team_id for t in live.teams})
    try:
        live = with_member_limits(live, client.list_budgets())
    except ProxyError as exc:
        if exc.status not in (401, 403):
            raise  # a key that may not read budgets exports the teams without their member limits
    # A proxy that serves organizations only under a license it lacks has none to export.
    organizations = read_organizations(client, live, client.caller_user_id(), required=False, complete=True)
    return replace(live, organizations=organizations)


def plan_against(desired: DesiredState, client: LiteLLMClient, *, plan_key: bool = False) -> tuple[Plan, LiveState]:
    """The plan of ``desired`` against the proxy; with ``plan_key`` (the plan job's key) it also says what
    that key could change (one ``/key/info`` more; an apply's master key needs no such word)."""
    live = read_for(desired, client)
    plan = make_plan(desired, live, now())
    return (replace(plan, warnings=key_warnings(client, live)) if plan_key else plan), live


def pending_invitations(
    desired: DesiredState, live: LiveState, client: LiteLLMClient, sealer: Sealer | None
) -> tuple[dict[str, LiveInvitation] | None, frozenset[str]]:
    """For the status report: ``/invitation/info`` of the declared users' unaccepted links, by
    user id (None without a seal key: a read-only key cannot follow a sealed id), and the users
    whose sealed id this key does not open (sealed under another key)."""
    if sealer is None:
        return None, frozenset()
    declared = {user.key for user in desired.users}
    open_records = [u for u in live.users if u.key in declared and u.invitation and not u.invitation.accepted_at]
    unreadable = frozenset(
        u.user_id
        for u in open_records
        if u.invitation and u.invitation.sealed and sealer.open(u.invitation.sealed, u.user_id) is None
    )
    return read_invitations(client, open_records, sealer), unreadable


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


def check_saved_plan(saved: Plan, desired: DesiredState, client: LiteLLMClient) -> tuple[Plan, LiveState]:
    """The plan to apply for a saved one: a fresh plan of the file against the proxy, refused
    unless it is exactly the saved plan (Terraform's stale plan).

    The saved file is never trusted on its own: its actions are compared with what the
    file and the proxy call for now, so an edited ``plan.json`` (fingerprint recomputed or
    not) is refused as surely as a proxy that changed since the review.
    """
    if saved.environment != desired.environment:
        raise StalePlan(
            f"the saved plan is for environment {saved.environment or '(none)'}, not "
            f"{desired.environment or '(none)'}; nothing was applied"
        )
    fresh, live = plan_against(desired, client)
    if live.fingerprint != saved.live_fingerprint:
        raise StalePlan("the proxy changed since this plan was made; run 'plan' again and review the new plan")
    saved_actions = {a.address + "/" + a.kind: a.to_dict() for a in saved.actions}
    fresh_actions = {a.address + "/" + a.kind: a.to_dict() for a in fresh.actions}
    if [a.to_dict() for a in saved.actions] != [a.to_dict() for a in fresh.actions]:
        differing = sorted(
            k for k in saved_actions.keys() | fresh_actions.keys() if saved_actions.get(k) != fresh_actions.get(k)
        )
        shown = ", ".join(differing[:5]) + (f" and {len(differing) - 5} more" if len(differing) > 5 else "")
        raise StalePlan(
            f"the saved plan is not what {desired.source} and the proxy call for now "
            f"({shown or 'the order of the actions'} differ); "
            "it was edited or made from another file. Nothing was applied; run 'plan' again and review the new plan"
        )
    return fresh, live


@contextmanager
def apply_lock(client: LiteLLMClient, wait: float, ttl: float) -> Iterator[ApplyLock]:
    """Hold the proxy's apply lock for the block; released however the block ends. A release that
    fails is a warning line (``ApplyLock.release``); when the block failed, its error is the one
    raised, even if the lock turns out to have been broken meanwhile."""
    lock = ApplyLock(client, describe_runner(), ttl)
    try:
        lock.acquire(wait)
    except ProxyError as exc:
        if exc.status not in (401, 403):
            raise
        # The lock is the apply's first write: a key that may only read fails here, not mid-apply.
        raise ValueError(
            f"apply needs a key that can write, and the proxy refused this one ({exc}). The key comes from "
            "LITELLM_API_KEY when it is set (a read-only key for plan), else LITELLM_MASTER_KEY: unset "
            "LITELLM_API_KEY for apply, or give it a proxy_admin key. Nothing was changed"
        ) from None
    try:
        yield lock
    except BaseException:
        with suppress(ProxyError):
            lock.release()
        raise
    lock.release()


def check_removals(plan: Plan, allow_mass_removal: bool) -> None:
    """Refuse, before any write, a plan whose removals trip the guard (unless explicitly allowed)."""
    if plan.guard.tripped and not allow_mass_removal:
        raise ValueError(f"{plan.guard.message()}. Nothing was written; pass --allow-mass-removal if this is intended")


def require_sealer(plan: Plan, sealer: Sealer | None) -> None:
    """Refuse, before any write, a plan that invites when invitation ids cannot be sealed."""
    if sealer is None and any(a.kind in INVITING or a.kind == "reseal_invitation" for a in plan.actions):
        raise ValueError(
            "this plan creates or seals onboarding links, whose ids are stored sealed: set LITELLM_MASTER_KEY "
            "or LITELLM_RECONCILER_SEAL_KEY (the same one on every apply). Nothing was applied"
        )


def check_fingerprint(plan: Plan, expected: str) -> None:
    """Refuse a plan other than the one reviewers saw (a prefix of 12+ hex digits is enough)."""
    wanted = expected.strip().lower()
    if len(wanted) < 12 or not plan.fingerprint.startswith(wanted):
        raise StalePlan(
            f"plan fingerprint {plan.fingerprint[:16]} does not match the reviewed {wanted[:16] or '(empty)'}; "
            "nothing was applied"
        )


class ReportCourier:
    """Hands each link over the moment it exists: into the report (on disk before anything
    else happens), then by email when configured, with the outcome appended to the report."""

    def __init__(self, report: OnboardingReport, mailer: Mailer | None):
        self.report = report
        self.mailer = mailer
        self._reported: dict[str, list[str]] | None = None
        self._requests: dict[str, set[str]] | None = None
        self._reading = threading.Lock()

    def hand_over(self, record: InvitationRecord) -> str:
        self.report.append(record, durable=False)
        if self.mailer is None:
            return "reported"
        self.mailer.send(record)
        self.report.append(record, durable=False)
        return "emailed" if record.status == "sent" else "email_failed"

    def note(self, record: InvitationRecord) -> None:
        self.report.append(record, durable=False)

    def sync(self) -> None:
        self.report.sync()

    def requesting(self, email: str, user_id: str | None, run: str) -> None:
        self.report.log_request(email, user_id, run)

    def asked(self, user_id: str, run: str | None) -> bool | None:
        """Whether run ``run`` asked for this user's link, as the report says; None when the report knows
        nothing of that run (lost, or another runner's): then a link may exist."""
        with self._reading:
            if self._requests is None:
                self._requests = requests(self.report.path)
        found = self._requests.get(run or "")
        return None if found is None else user_id in found

    def reported(self, user_id: str) -> list[str]:
        """The ids the report held for this user when first asked (a re-run finds what a killed run
        handed over but never recorded), newest first. Asked by concurrent checks: read once."""
        with self._reading:
            if self._reported is None:
                found: dict[str, list[str]] = {}
                for record in load_report(self.report.path):
                    if record.get("invitation_id") and record.get("user_id"):
                        found.setdefault(str(record["user_id"]), []).insert(0, str(record["invitation_id"]))
                self._reported = found
        return self._reported.get(user_id, [])

    def close(self) -> None:
        """Close the mail connection, if any: every link has been handed over."""
        if self.mailer is not None:
            self.mailer.close()


def execute(
    plan: Plan,
    client: LiteLLMClient,
    live: LiveState,
    ui_base: str,
    courier: ReportCourier,
    on_result: Callable[[ActionResult], None],
    sealer: Sealer | None,
    used: Sequence[UsedLink] = (),
    before_writes: Callable[[], None] = lambda: None,
) -> ApplyReport:
    """Run the plan, then close the ``used`` links; each new link is handed over by ``courier``
    as soon as it exists."""
    metadata = {user.user_id: user.metadata for user in live.users}
    team_metadata = {team.team_id: team.metadata for team in live.teams}
    executor = Executor(
        client,
        ui_base,
        on_result=on_result,
        metadata=metadata,
        team_metadata=team_metadata,
        sealer=sealer,
        courier=courier,
        before_writes=before_writes,
    )
    report = executor.run(plan)
    report.results.extend(executor.close_used_links(list(used)))
    return report


class ApplyView(Protocol):
    """What :func:`apply_desired` shows and asks as it goes, each at its moment (the plan before
    the lock is taken, each result as it comes); the front end decides how it looks."""

    def show(self, plan: Plan) -> None:
        """The plan about to be applied, before it is held to the reviewed fingerprint."""

    def reviewed(self, plan: Plan) -> None:
        """The plan has the fingerprint the reviewers saw."""

    def confirm(self, plan: Plan) -> None:
        """Last chance to stop, before the lock is taken: raise to refuse (nothing was changed)."""

    def nothing_left(self) -> None:
        """The plan made under the lock is empty: another apply made the changes meanwhile."""

    def result(self, result: ActionResult, done: int, total: int) -> None:
        """One action's result, the moment it is known: the ``done``-th of ``total``."""

    def executed(self, report: ApplyReport) -> None:
        """Every action has run; the verification plan comes next."""

    def counted(self, client: LiteLLMClient, seconds: float) -> None:
        """The run's requests so far (verification included, lock release not yet) and its duration."""


@dataclass(frozen=True)
class Applied:
    """What an apply that ran its plan came to: for the front end to report and to judge its exit."""

    report: ApplyReport
    #: The plan made after the apply (with changes: the proxy does not match yet); None when
    #: the run's deadline passed before it could be made.
    verification: Plan | None
    #: The failures a re-run will not fix, with why (``apply.stubborn_failures``).
    stubborn: list[tuple[ActionResult, str]]

    @property
    def unsent(self) -> list[str]:
        """The emails whose invitation could not be sent (their links are in the onboarding report)."""
        return [r.email for r in self.report.invitations if r.status == "send_failed"]


def apply_desired(
    desired: DesiredState,
    client: LiteLLMClient,
    view: ApplyView,
    outcome: ApplyOutcome,
    *,
    saved: Plan | None,
    courier: ReportCourier,
    sealer: Sealer | None,
    ui_base: str,
    allow_mass_removal: bool,
    lock_timeout: float,
    lock_ttl: float,
) -> Applied | None:
    """Plan ``desired`` (or check ``saved`` against it), show it, confirm, then make exactly that
    plan's changes under the proxy's apply lock and verify them with a second plan.

    ``outcome`` is filled in as the apply goes, so ``--result-json`` tells however it ends;
    ``courier`` is closed once the plan has run. Returns None when there was nothing to apply
    (then nothing was written, not even the lock, unless another apply made the changes while
    this one waited for it). A failed action is in the returned report, not raised: the front
    end reports every result before it judges the run."""
    outcome.connected(client)
    shown, shown_live = _plan_for(desired, client, saved)
    view.show(shown)
    outcome.bind(shown)
    if outcome.fingerprint_matches:
        view.reviewed(shown)
    # Used onboarding links are closed by every apply that can open them, changes or not; looking
    # costs reads only, so an apply with nothing to do still writes nothing, not even the lock.
    if not shown.actions and not _used_links(client, shown, shown_live, sealer):
        return None
    if shown.actions:
        check_removals(shown, allow_mass_removal)
        require_sealer(shown, sealer)
        # Asked before the lock is taken: a person thinking it over must not hold up CI.
        view.confirm(shown)
    with apply_lock(client, lock_timeout, lock_ttl) as lock:
        # Read again under the lock: another apply may have finished in between. Only the plan
        # that was shown (and confirmed, and bound to the reviewed fingerprint) is applied.
        the_plan, live = _plan_for(desired, client, saved)
        used = _used_links(client, the_plan, live, sealer)
        if not the_plan.actions and not used:
            view.nothing_left()  # another apply made the changes while this one waited
            return None
        if the_plan.fingerprint != shown.fingerprint:
            raise StalePlan(
                "the proxy changed while this apply waited for the lock; nothing was applied. "
                "Run apply again to see the new plan"
            )
        done = itertools.count(1)

        def on_result(result: ActionResult) -> None:
            outcome.results.append(result)
            view.result(result, next(done), len(the_plan.actions) + len(used))
            lock.refresh()

        outcome.executing = True
        try:
            report = execute(
                the_plan,
                client,
                live,
                ui_base,
                courier,
                on_result=on_result,
                sealer=sealer,
                used=used,
                before_writes=lock.confirm,
            )
        finally:
            courier.close()
        outcome.invitations = report.invitations
        lock.memory = remember_failures(report.results, lock.memory, now().isoformat(timespec="seconds"))
        view.executed(report)
        verification = None if client.deadline_passed else plan_against(desired, client)[0]
        outcome.verified = None if verification is None else not verification.has_changes
        view.counted(client, outcome.seconds())
    return Applied(report, verification, stubborn_failures(report.results, lock.memory))


def _used_links(client: LiteLLMClient, plan: Plan, live: LiveState, sealer: Sealer | None) -> list[UsedLink]:
    """The accepted links still open on the proxy, but those of users the plan invites (see ``apply.used_links``);
    none without the seal key (a plan-only key cannot open them), nor where LiteLLM refuses a used link itself."""
    if sealer is None or not client.accepted_links_stay_usable():
        return []
    inviting = frozenset(a.params["user_id"] for a in plan.actions if a.kind in INVITING)
    return used_links(client, list(live.users), sealer, start_of_day(now()), inviting)


def _plan_for(desired: DesiredState, client: LiteLLMClient, saved: Plan | None) -> tuple[Plan, LiveState]:
    """A fresh plan of ``desired``: held to ``saved`` when there is one (see :func:`check_saved_plan`)."""
    return check_saved_plan(saved, desired, client) if saved is not None else plan_against(desired, client)


# --------------------------------------------------------------------------- machine-readable results

#: ``validate --format json`` and ``apply --result-json``: a new major version breaks readers.
RESULT_FORMAT_VERSION = "1.0"


def validation_result(path: str | Path) -> dict[str, Any]:
    """``validate --format json``: ``valid``, the counts, and every problem located (``file``,
    ``line``, ``column`` or null, ``message``), so a front end annotates without reading text."""
    try:
        desired = load_desired(path)
    except InputError as exc:
        problems = [{"file": p.file, "line": p.line, "column": p.column, "message": p.message} for p in exc.problems]
        return {"format_version": RESULT_FORMAT_VERSION, "valid": False, "file": str(path), "problems": problems}
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "valid": True,
        "file": str(path),
        "teams": len(desired.teams),
        "users": len(desired.users),
        "environments": desired.environments,
        "problems": [],
        "warnings": [
            {"file": w.file, "line": w.line, "column": w.column, "message": w.message} for w in desired.warnings
        ],
    }


#: Stopped by the apply's own checks before its first change: nothing was applied.
REFUSALS: tuple[type[BaseException], ...] = (StalePlan, LockHeld, ValueError)


@dataclass
class ApplyOutcome:
    """What one apply came to, for ``apply --result-json``: filled in as the apply goes and
    written however it ends (see :func:`recorded_apply`). Holds no link and no invitation id.

    ``outcome``: ``applied``; ``no-changes``; ``refused`` (stopped by a check before any change:
    a fingerprint other than the reviewed one, a stale saved plan, the mass-removal guard, no
    seal key, the lock held by another apply); ``failed`` (anything else, e.g. a failed action,
    an unsent email, a proxy that does not match the file afterwards).
    """

    expected_fingerprint: str | None = None
    fingerprint: str | None = None
    #: True/False once the plan was compared with ``expected_fingerprint``; None before, or without one.
    fingerprint_matches: bool | None = None
    results: list[ActionResult] = field(default_factory=list)
    invitations: list[InvitationRecord] = field(default_factory=list)
    #: Was a new plan empty after the apply? None: not checked.
    verified: bool | None = None
    outcome: str | None = None
    error: str | None = None
    client: LiteLLMClient | None = None
    executing: bool = False
    started: float = field(default_factory=time.monotonic)

    def connected(self, client: LiteLLMClient) -> None:
        """The apply reached the proxy: from now on its result is written."""
        self.client = client

    def bind(self, plan: Plan) -> None:
        """The plan about to be applied, held to the reviewed fingerprint (``StalePlan`` if it differs)."""
        self.fingerprint = plan.fingerprint
        if self.expected_fingerprint is None:
            return
        try:
            check_fingerprint(plan, self.expected_fingerprint)
        except StalePlan:
            self.fingerprint_matches = False
            raise
        self.fingerprint_matches = True

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def finish(self, exc: BaseException | None, refusals: tuple[type[BaseException], ...] = ()) -> None:
        """Settle ``outcome`` (and ``error``) from how the apply ended: ``exc`` None for a normal end."""
        if exc is None:
            self.outcome = "applied" if self.executing else "no-changes"
            if not self.executing and self.client is not None:
                self.verified = True  # the plan just made had nothing to do
            return
        refused = self.fingerprint_matches is False or (not self.executing and isinstance(exc, REFUSALS + refusals))
        self.outcome = "refused" if refused else "failed"
        self.error = self._scrub(str(exc) or type(exc).__name__)

    def _scrub(self, text: str) -> str:
        return scrub(text, extra=[r.invitation_id for r in self.invitations])

    def to_dict(self) -> dict[str, Any]:
        counts = {
            status: sum(1 for r in self.results if r.status == status) for status in ("done", "failed", "skipped")
        }
        return {
            "format_version": RESULT_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "expected_fingerprint": self.expected_fingerprint,
            "fingerprint_matches": self.fingerprint_matches,
            "outcome": self.outcome,
            "summary": counts,
            "results": [
                {"address": r.address, "kind": r.kind, "status": r.status, "detail": self._scrub(r.detail)}
                for r in self.results
            ],
            # Who was invited and the fate of each link; never the link or its id (credentials).
            "invitations": [
                {"email": r.email, "user_id": r.user_id, "status": r.status, "expires_at": r.expires_at}
                for r in self.invitations
            ],
            "requests_made": self.client.requests_made if self.client else 0,
            "writes_made": self.client.writes_made if self.client else 0,
            "seconds": round(self.seconds(), 3),
            "verified": self.verified,
            "error": self.error,
            # Who caused it, as every write said and every written object records (attribution).
            "changed_by": Attribution.from_env().to_dict(),
        }


@contextmanager
def recorded_apply(
    path: str | None, expected_fingerprint: str | None, refusals: tuple[type[BaseException], ...] = ()
) -> Iterator[ApplyOutcome]:
    """Run an apply in the block and, when ``path`` is given and the apply reached the proxy,
    write its :class:`ApplyOutcome` there (mode 0600, atomically) however the block ends.
    A result left by an earlier run is removed first, so the file never describes another run.
    ``refusals``: the caller's own exception types that mean "refused before any change"."""
    outcome = ApplyOutcome(expected_fingerprint.strip().lower() if expected_fingerprint is not None else None)
    if path:
        folder = Path(path).parent
        if not folder.is_dir():
            raise ValueError(f"cannot write the apply result in {folder}: no such directory")
        Path(path).unlink(missing_ok=True)
    try:
        yield outcome
    except BaseException as exc:
        outcome.finish(exc, refusals)
        raise
    else:
        outcome.finish(None)
    finally:
        if path and outcome.client is not None:
            write_private(path, json.dumps(outcome.to_dict(), indent=2) + "\n")
