"""The command line: click commands only; the work is done by the modules they call.

Exit codes follow Terraform: 0 success (and, with ``--detailed-exitcode``, no
changes), 1 error, 2 changes present (only with ``--detailed-exitcode``).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from . import __version__
from .apply import ActionResult, ApplyReport
from .client import DEFAULT_PARALLELISM, IncompleteRead, LiteLLMClient, ProxyError, check_proxy_url
from .codeowners import codeowners
from .delivery import Mailer, SmtpSettings, load_template
from .desired import DesiredState, InputError, load_desired
from .export import export_yaml
from .files import write_private
from .github import github
from .importer import import_csv
from .invitations import onboarding_status, render_json, render_table
from .live import utc_date
from .lock import ApplyLock, LockHeld, LockState, describe_runner
from .manager import (
    Applied,
    ApplyOutcome,
    Connection,
    ReportCourier,
    StalePlan,
    apply_desired,
    load_saved_plan,
    now,
    pending_invitations,
    plan_against,
    read_for,
    read_for_export,
    recorded_apply,
    validation_result,
)
from .onboarding import InvitationRecord, OnboardingReport
from .plan import Plan, PlanConflict
from .progress import Progress
from .render import FORMATS, render, summary_line
from .schema import SCHEMA_PATH, schema_text
from .sealing import Sealer
from .secrets import scrub, setup_logging

DEFAULT_FILE = "users.yaml"
_file_argument = click.argument("file", default=DEFAULT_FILE, type=click.Path(dir_okay=False))
_env_option = click.option(
    "--env",
    "environment",
    default=None,
    metavar="NAME",
    help="The environment of FILE to work on; required when FILE declares 'environments'.",
)


@dataclass(frozen=True)
class ProxyOptions:
    """The options of every command that talks to the proxy, as given."""

    proxy_url: str | None
    timeout: float
    deadline: float | None
    parallelism: int


def proxy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--proxy-url``, ``--timeout``, ``--deadline`` and ``--parallelism``; the command gets them as ``proxy``."""

    @click.option(
        "--proxy-url",
        envvar="LITELLM_PROXY_URL",
        default=None,
        help="Proxy base URL [env LITELLM_PROXY_URL; default http://localhost:4000]",
    )
    @click.option(
        "--timeout",
        default=30.0,
        show_default=True,
        type=click.FloatRange(min=0.1),
        help="Seconds per request, the whole answer included.",
    )
    @click.option(
        "--deadline",
        default=None,
        type=click.FloatRange(min=1),
        help="Seconds the whole run may take; no request is sent after it.",
    )
    @click.option(
        "--parallelism",
        default=DEFAULT_PARALLELISM,
        show_default=True,
        type=click.IntRange(1, 32),
        help="Requests in flight at once (1: one after the other). Roster writes are serialized whatever this says.",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any, proxy_url: str | None, timeout: float, deadline: float | None, parallelism: int, **kwargs: Any
    ) -> Any:
        return fn(*args, proxy=ProxyOptions(proxy_url, timeout, deadline, parallelism), **kwargs)

    return wrapper


class Failure(click.ClickException):
    """An expected error: printed as 'Error: ...' on stderr, exit code 1."""

    exit_code = 1


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the known failures into one clear message and exit 1, with secrets scrubbed."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            raise Failure(f"{len(exc.problems)} problem(s) in the input; nothing was sent to the proxy") from None
        except ProxyError as exc:
            raise Failure(scrub(str(exc) + _key_hint(exc))) from None
        except (PlanConflict, StalePlan, LockHeld, ValueError, OSError) as exc:
            raise Failure(scrub(str(exc))) from None

    return wrapper


def _key_hint(exc: ProxyError) -> str:
    """What to check when the proxy refuses the key itself: which variable it came from."""
    if exc.status != 401:
        return ""
    used = "LITELLM_API_KEY" if os.environ.get("LITELLM_API_KEY", "").strip() else "LITELLM_MASTER_KEY"
    return f" (the key is {used}'s: check that it is this proxy's key, and its value has no stray characters)"


class _Group(click.Group):
    """Usage errors exit 1, not click's 2: with --detailed-exitcode, 2 means "changes"."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="litellm-reconciler")
@click.option("-v", "--verbose", is_flag=True, help="Same as --log-level info: one line per request on stderr.")
@click.option(
    "--log-level",
    type=click.Choice(["warning", "info", "debug"]),
    default="warning",
    show_default=True,
    help="What goes to stderr besides the output.",
)
def main(verbose: bool, log_level: str) -> None:
    """GitOps for the users and teams of a LiteLLM proxy: users.yaml -> plan -> apply.

    The proxy is LITELLM_PROXY_URL (or --proxy-url); the key is LITELLM_API_KEY when set (a read-only key,
    for plan), else LITELLM_MASTER_KEY (apply). NO_COLOR turns colours off."""
    setup_logging("info" if verbose and log_level == "warning" else log_level)
    if os.environ.get("NO_COLOR"):  # https://no-color.org
        click.get_current_context().color = False


main.add_command(github)
main.add_command(codeowners)


@main.command()
@_file_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: {valid, problems: [{file, line, column, message}]} on stdout.",
)
@guard
def validate(file: str, fmt: str) -> None:
    """Check FILE offline: schema, duplicates, references. Exit 1 on any problem."""
    if fmt == "json":
        result = validation_result(file)
        click.echo(json.dumps(result, indent=2))
        sys.exit(0 if result["valid"] else 1)
    desired = load_desired(file)
    _warn(desired)
    where = (
        f" in {len(desired.environments)} environment(s): {', '.join(desired.environments)}"
        if desired.environments
        else ""
    )
    click.echo(f"{file} is valid: {len(desired.teams)} team(s), {len(desired.users)} user(s){where}.")


@main.command()
@click.option("--check", is_flag=True, help=f"Exit 1 when {SCHEMA_PATH} is not up to date.")
@click.option("--write", is_flag=True, help=f"Write {SCHEMA_PATH}.")
@guard
def schema(check: bool, write: bool) -> None:
    """Print the JSON Schema of users.yaml (generated from the models)."""
    text = schema_text()
    if check:
        current = Path(SCHEMA_PATH).read_text(encoding="utf-8") if Path(SCHEMA_PATH).exists() else ""
        if current != text:
            raise Failure(f"{SCHEMA_PATH} is stale; run 'litellm-reconciler schema --write'")
        click.echo(f"{SCHEMA_PATH} is up to date.")
    elif write:
        Path(SCHEMA_PATH).parent.mkdir(parents=True, exist_ok=True)
        Path(SCHEMA_PATH).write_text(text, encoding="utf-8")
        click.echo(f"wrote {SCHEMA_PATH}")
    else:
        click.echo(text, nl=False)


@main.command()
@_file_argument
@_env_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Also save the plan as JSON, for 'apply --plan'.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there is nothing to do, 2 when there are changes.")
@click.option(
    "--max-chars",
    type=click.IntRange(1000),
    default=None,
    help="Markdown: fold and cut to stay under this size (GitHub comments: 65536).",
)
@proxy_options
@guard
def plan(
    file: str,
    environment: str | None,
    fmt: str,
    out: str | None,
    detailed_exitcode: bool,
    max_chars: int | None,
    proxy: ProxyOptions,
) -> None:
    """Read the proxy, compare it with FILE and show what apply would do. Never writes."""
    desired = _desired(file, environment)
    connection = _connect(proxy)
    with connection.client(Progress()) as client:
        the_plan, _ = plan_against(desired, client, plan_key=connection.plan_key)
    click.echo(render(the_plan, fmt, max_chars=max_chars), nl=False)
    if out:
        write_private(out, render(the_plan, "json"))
        click.echo(f"Saved the plan to {out}; apply it with: litellm-reconciler apply --plan {out}", err=True)
    if detailed_exitcode and the_plan.has_changes:
        sys.exit(2)


@main.command()
@_file_argument
@_env_option
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Apply this saved plan; refused unless a fresh plan is exactly the same.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (CI).")
@click.option(
    "--report",
    default="onboarding_results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Onboarding report (JSON Lines, mode 0600): each link, written the moment it exists.",
)
@click.option("--show-links", is_flag=True, help="Also print onboarding links (they are credentials).")
@click.option("--ui-url", default=None, help="Base URL of the UI for onboarding links [default: the proxy URL].")
@click.option(
    "--expect-fingerprint",
    default=None,
    help="Refuse unless the plan's fingerprint starts with this (the one reviewers saw).",
)
@click.option(
    "--send-invites",
    type=click.Choice(["smtp"]),
    default=None,
    help=(
        "Email each new link to its user "
        "(SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_SECURITY)."
    ),
)
@click.option(
    "--allow-insecure-smtp", is_flag=True, help="Allow SMTP_SECURITY=none: links cross the network in clear text."
)
@click.option(
    "--invite-template",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Plain-text email template ($email, $link, $expires_at, $proxy_url); first line 'Subject: ...'.",
)
@click.option(
    "--allow-mass-removal",
    is_flag=True,
    help="Apply even when the removals exceed removals.max_percent of the managed objects.",
)
@click.option(
    "--lock-timeout",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for another apply on the same proxy to finish (this one plans once it has).",
)
@click.option(
    "--lock-ttl",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=5),
    help=(
        "Seconds the apply lock lasts without renewal: the lock of an apply gone from another machine is "
        "broken after it (on this machine, or by a re-run of the same GitHub Actions run, at once)."
    ),
)
@click.option(
    "--result-json",
    type=click.Path(dir_okay=False),
    default=None,
    help=(
        "Write what the apply came to (outcome, fingerprint check, each action's result; no links) as JSON, "
        "mode 0600, whenever the proxy was reached, success or failure."
    ),
)
@proxy_options
@guard
def apply(
    file: str,
    environment: str | None,
    plan_file: str | None,
    yes: bool,
    report: str,
    show_links: bool,
    ui_url: str | None,
    expect_fingerprint: str | None,
    send_invites: str | None,
    allow_insecure_smtp: bool,
    invite_template: str | None,
    allow_mass_removal: bool,
    lock_timeout: float,
    lock_ttl: float,
    result_json: str | None,
    proxy: ProxyOptions,
) -> None:
    """Plan, show, confirm, then make exactly the planned changes; verify with a second plan.

    Changes are made under a lock on the proxy (one apply at a time); an apply with nothing
    to do writes nothing, not even the lock."""
    with recorded_apply(result_json, expect_fingerprint, refusals=(Failure,)) as outcome:
        desired = _desired(file, environment)
        connection = _connect(proxy)
        # Everything that can be checked offline is checked before the first write.
        mailer = (
            Mailer(SmtpSettings.from_env(allow_insecure=allow_insecure_smtp), load_template(invite_template))
            if send_invites == "smtp"
            else None
        )
        onboarding = OnboardingReport(report)
        sealer = Sealer.from_env()
        if ui_url:
            check_proxy_url(ui_url)
        saved = load_saved_plan(plan_file) if plan_file else None
        progress = Progress()
        with connection.client(progress) as client:
            applied = _when_free(
                client,
                outcome,
                lock_timeout,
                lock_ttl,
                lambda wait: apply_desired(
                    desired,
                    client,
                    _ApplyScreen(yes, show_links, onboarding.path, progress),
                    outcome,
                    saved=saved,
                    courier=ReportCourier(onboarding, mailer),
                    sealer=sealer,
                    ui_base=ui_url or connection.proxy_url,
                    allow_mass_removal=allow_mass_removal,
                    lock_timeout=wait,
                    lock_ttl=lock_ttl,
                ),
            )
        if applied is None:
            return
        verification = applied.verification
        if verification is None:
            click.echo("The run's deadline passed: the proxy was not read again to verify.", err=True)
        elif verification.has_changes:
            click.echo(f"The proxy does not match {file} yet: {summary_line(verification)}", err=True)
        if not applied.report.ok:
            if applied.stubborn:
                for failed, why in applied.stubborn:
                    click.echo(f"error: {failed.address}: {why}: {failed.detail}", err=True)
                raise Failure(
                    f"{len(applied.stubborn)} action(s) will not converge by re-running; "
                    f"fix the cause in {file} or on the proxy first"
                )
            raise Failure(
                "some actions failed or were skipped; run apply again (it converges), after fixing what "
                "a failure's reason asks for"
            )
        if applied.unsent:
            raise Failure(
                f"{len(applied.unsent)} invitation email(s) could not be sent ({', '.join(applied.unsent)}); "
                f"their links are in {onboarding.path}"
            )
        if verification is None or verification.has_changes:
            raise Failure(
                "apply finished but a new plan is not empty"
                if verification is not None
                else "apply finished, unverified: the run's deadline passed"
            )


def _when_free(
    client: LiteLLMClient,
    outcome: ApplyOutcome,
    lock_timeout: float,
    lock_ttl: float,
    run: Callable[[float], Applied | None],
) -> Applied | None:
    """``run`` (given the seconds of ``lock_timeout`` left) once no other apply holds the lock.

    While another apply holds it, the proxy changes under its writes and a plan read then may not
    add up ("it changed during the read"): so an apply that may wait reads only the lock row until
    the holder has finished, and plans after; if another apply took the lock while this one was
    reading (nothing written yet), it waits for that one too. Without ``--lock-timeout``, at once.
    The proxy was reached: ``--result-json`` says how the wait ended too."""
    outcome.connected(client)
    if lock_timeout <= 0:
        return run(0.0)
    lock = ApplyLock(client, describe_runner(), lock_ttl)
    give_up = time.monotonic() + lock_timeout
    while True:
        lock.wait_until_free(max(give_up - time.monotonic(), 0.0))
        try:
            return run(max(give_up - time.monotonic(), 0.0))
        except IncompleteRead:
            if outcome.executing or time.monotonic() >= give_up or lock.takeable(lock.state()) is not None:
                raise


@dataclass(frozen=True)
class _ApplyScreen:
    """``apply``'s side of :class:`ApplyView`: the plan, the prompt and the results on the terminal."""

    yes: bool
    show_links: bool
    #: Where the onboarding links went (named, never printed, unless --show-links).
    links_file: Path
    progress: Progress

    def show(self, plan: Plan) -> None:
        click.echo(render(plan, "text"), nl=False)

    def reviewed(self, plan: Plan) -> None:
        click.echo(f"Plan fingerprint matches the reviewed plan ({plan.fingerprint[:16]}).")

    def confirm(self, plan: Plan) -> None:
        if self.yes:
            return
        if not sys.stdin.isatty():
            raise Failure("refusing to apply without confirmation: stdin is not a terminal; pass --yes")
        if not click.confirm(f"Apply these {len(plan.actions)} action(s)?", default=False):
            raise Failure("apply cancelled; nothing was changed")

    def nothing_left(self) -> None:
        click.echo("No changes left: another apply made them while this one waited for the lock.")

    def result(self, result: ActionResult, done: int, total: int) -> None:
        self.progress.clear()
        _print_result(result)
        self.progress("Applying", done, total)

    def executed(self, report: ApplyReport) -> None:
        if report.invitations:
            _print_invitations(report.invitations, self.show_links)
            click.echo(f"Onboarding links are in {self.links_file} (mode 0600); they are credentials.")
        click.echo(click.style(report.summary_line(), bold=True))

    def counted(self, client: LiteLLMClient, seconds: float) -> None:
        click.echo(
            f"{client.requests_made} requests ({client.writes_made} writes, verification included) "
            f"in {seconds:.1f} s, {client.parallelism} at a time."
        )


def _print_invitations(records: list[InvitationRecord], show_links: bool) -> None:
    """Who was invited and until when; the link itself only with --show-links."""
    for record in records:
        if record.status == "unrecorded":
            click.echo(f"Unrecorded link for {record.email}: {record.error}")
            continue
        if not record.invitation_id:
            click.echo(f"Not invited {record.email}: {record.error}")
            continue
        verb = "Delivered again the link of" if record.status == "redelivered" else "Invited"
        line = f"{verb} {record.email} (valid until {utc_date(record.expires_at)})"
        if record.status == "sent":
            line += ", emailed"
        elif record.status == "send_failed":
            line += f", email NOT sent: {record.error}"
        click.echo(line + (f": {record.onboarding_link}" if show_links else ""))


@main.command("lock")
@click.option(
    "--break",
    "token",
    metavar="TOKEN",
    default=None,
    help="Break the lock held by TOKEN (as shown without --break); only when its apply is gone.",
)
@click.option("--yes", is_flag=True, help="Break it without asking (required without a terminal).")
@proxy_options
@guard
def lock_command(token: str | None, yes: bool, proxy: ProxyOptions) -> None:
    """Show who holds the proxy's apply lock (who, since, until, token); --break TOKEN frees it."""
    with _connect(proxy).client() as client:
        lock = ApplyLock(client, describe_runner())
        state = lock.state()
        if token is None:
            click.echo("\n".join(_lock_lines(state, lock.takeable(state))))
            return
        _confirm_break(state, token, yes)
        broken = lock.break_lock(token)
    click.echo(f"Broke the apply lock of {broken.who} (token {broken.token}); the lock row says who broke it and when.")


def _lock_lines(state: LockState | None, takeable: str | None) -> list[str]:
    """What ``lock`` shows: the holder (or that the lock is free) and how its last hold ended."""
    if state is None:
        return ["No apply has taken the lock on this proxy yet."]
    holder = state.holder
    last = state.last or {}
    ended = f"Last {last.get('event')} by {last.get('who')} at {last.get('at')}" if last.get("event") else ""
    if last.get("event") == "broken":
        ended += f" ({last.get('why')}; it was held by {last.get('holder')})"
    if holder is None:
        return ["The apply lock is free.", *([ended + "."] if ended else [])]
    lines = [
        f"The apply lock is held by {holder.who}",
        f"  since: {holder.since}",
        f"  until: {holder.until} (renewed while it runs)",
        f"  where: {holder.runner.host}, pid {holder.runner.pid or '?'}",
        f"  token: {holder.token}",
    ]
    if takeable is not None:
        return [*lines, f"The next apply takes it over: {takeable}."]
    return [*lines, f"If that apply is gone: litellm-reconciler lock --break {holder.token}"]


def _confirm_break(state: LockState | None, token: str, yes: bool) -> None:
    """Refuse to break a lock other than ``token``'s, or without a yes (a prompt, or --yes)."""
    holder = state.holder if state else None
    if holder is None or holder.token != token:
        held = f"held by {holder.who}, token {holder.token}" if holder else "free"
        raise Failure(f"the apply lock is not held by {token} (it is {held}); nothing was changed")
    if yes:
        return
    if not sys.stdin.isatty():
        raise Failure("refusing to break the apply lock without confirmation: stdin is not a terminal; pass --yes")
    if not click.confirm(
        f"Break the apply lock of {holder.who} (since {holder.since})? If that apply still runs, "
        "two applies will write at once",
        default=False,
    ):
        raise Failure("the apply lock was not broken; nothing was changed")


@main.command()
@_file_argument
@_env_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@proxy_options
@guard
def invitations(file: str, environment: str | None, fmt: str, proxy: ProxyOptions) -> None:
    """Show who has onboarded: accepted, pending until ..., expired, never invited. Read-only; no links."""
    desired = _desired(file, environment)
    with _connect(proxy).client(Progress()) as client:
        live = read_for(desired, client)
        rows = onboarding_status(desired, live, now(), *pending_invitations(desired, live, client, Sealer.from_env()))
    click.echo(render_json(rows) if fmt == "json" else render_table(rows), nl=False)


@main.command()
@click.option("--team", "teams", multiple=True, help="Export only this team (by alias) and its members; repeatable.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of stdout.")
@proxy_options
@guard
def export(teams: tuple[str, ...], out: str | None, proxy: ProxyOptions) -> None:
    """Write a users.yaml from the live proxy (sorted, deterministic); nothing is written if the read is incomplete."""
    with _connect(proxy).client(Progress()) as client:
        text = export_yaml(read_for_export(client), set(teams) if teams else None)
    if out:
        write_private(out, text)
        click.echo(f"Wrote {out}; review it, then 'litellm-reconciler plan {out}' should show no changes.", err=True)
    else:
        click.echo(text, nl=False)


@main.command("import-csv")
@click.argument("csv_file", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--file",
    "yaml_file",
    default=DEFAULT_FILE,
    show_default=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The users.yaml to merge into.",
)
@click.option(
    "--team", default=None, help="CSV_FILE is a plain list of emails; put them all in this team (alias or id)."
)
@guard
def import_csv_command(csv_file: str, yaml_file: str, team: str | None) -> None:
    """Merge the old script's CSV (user_email,team_id) into users.yaml, keeping its comments and order."""
    result = import_csv(csv_file, yaml_file, team)
    for email in result.added:
        click.echo(f"+ {email}")
    for email in result.already_present:
        click.echo(f"= {email} (already in {yaml_file})")
    for email, alias in result.skipped:
        click.echo(f"! {email}: already declared without team {alias!r}; edit that entry by hand")
    click.echo(
        f"{len(result.added)} user(s) added to {yaml_file}."
        if result.added
        else f"Nothing to add; {yaml_file} is unchanged."
    )


def _desired(file: str, environment: str | None) -> DesiredState:
    """FILE validated and narrowed to ``environment``; its warnings go to stderr."""
    desired = load_desired(file).for_environment(environment)
    _warn(desired)
    return desired


def _warn(desired: DesiredState) -> None:
    for warning in desired.warnings:
        click.echo(f"warning: {warning}", err=True)


def _connect(proxy: ProxyOptions) -> Connection:
    """The connection from flags and environment; warnings about the URL go to stderr."""
    connection = Connection.from_env(proxy.proxy_url, proxy.timeout, proxy.deadline, proxy.parallelism)
    for warning in check_proxy_url(connection.proxy_url):
        click.echo(f"warning: {warning}", err=True)
    return connection


def _print_result(result: ActionResult) -> None:
    colour = {"done": "green", "failed": "red", "skipped": "yellow"}[result.status]
    detail = f" ({result.detail})" if result.detail else ""
    click.echo(f"  {result.address}: {click.style(result.status, fg=colour)}{detail}")
