"""The plan as a pull-request comment: the summary first, then one table of actions, drift folded away.

The first two lines are a fixed frame (see :mod:`.comment_format`): the marker that lets CI
find and update its own comment in place, and the plan's fingerprint, the one place the
apply workflow reads it from. Everything that comes from the users file or the proxy
(addresses, reasons, drift details, values, the file name) goes through :func:`escape`, so it
cannot close a code span, inject HTML, break a table row or imitate the tool's own text, and an
alias that differs from another by an invisible character shows it as an escape (``\\u200b``).
``max_chars`` keeps the comment under GitHub's 65,536-character limit: long tables are
folded into ``<details>`` and rows that do not fit are cut with a note.

When the file includes others, the actions are grouped by the file that declares their object,
each group headed by the file and its owners (the reviewers CODEOWNERS asks for), so each team's
leads find their part. Owners are shown as code: GitHub does not notify a handle written there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from . import KIND_LABELS, alarm_note, alarming, summary_line, target, value
from .comment_format import (
    HEADER,
    MARKER,
    code,
    escape,
    fingerprint_line,
    fingerprints_line,
    header,
    parse_fingerprint,
    split_frame,
)

if TYPE_CHECKING:
    from ..plan import Action, Plan

__all__ = ["GITHUB_COMMENT_LIMIT", "HEADER", "MARKER", "escape", "fingerprint_line", "parse_fingerprint", "render"]

GITHUB_COMMENT_LIMIT = 65536
_ICONS = {"+": "➕", "~": "✏️", "-": "➖"}
_FOLD_AFTER = 20  # rows; longer tables are collapsed
_ACTION_COLUMNS = ["| | address | action | reason | changes |", "|---|---|---|---|---|"]

#: How a table is shown: as it is, or in ``<details>`` open or closed (its title is the summary).
_Fold = Literal["plain", "open", "closed"]
#: A table: its title, its header lines, its rows, and how it is shown.
_Table = tuple[str, list[str], list[str], _Fold]


def _row(action: Action) -> str:
    changes = "<br>".join(
        f"{code(c.field)}: {code(value(c.new))}"
        if action.symbol == "+"
        else f"{code(c.field)}: {code(value(c.old))} → {code(value(c.new))}"
        for c in action.changes
    )
    # Taking over an account someone else made is shown like a privilege: the reviewer must look at whose.
    icon = "⚠️" if action.kind == "adopt_user" else _ICONS[action.symbol]
    return f"| {icon} | {code(action.address)} | {KIND_LABELS[action.kind]} | {escape(action.reason)} | {changes} |"


def cap(body: str, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """``body`` cut at a line end to stay under ``limit``, with a note.

    A last resort: plans fold and cut their own tables to fit."""
    if len(body) <= limit - 100:
        return body
    return body[: limit - 300].rsplit("\n", 1)[0] + "\n\n_…cut to fit a GitHub comment._\n"


#: Under the heading of an environment whose plan job left no comment body.
NO_SECTION = "**❌ No plan for this environment: its job did not finish (see the workflow run).**"


#: Under the heading of an environment whose section was too long for its share of the comment.
CUT_SECTION = "**✂️ This environment's plan is too long for its share of the comment; it is not shown here.**"


def combine(sections: dict[str, str | None], limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """One comment for several environments: line 2 holds each one's fingerprint (read from line 2
    of its own body), then each body below its fixed lines, in the given (promotion) order.

    ``None``: the environment's job left no body; its section says so. Each section gets an equal
    share of ``limit``; one that does not fit is replaced by a note. Either way its fingerprint is
    ``none``: a plan is approved only where reviewers could see all of it."""
    share = (limit - 200 - 80 * len(sections)) // max(1, len(sections))
    fingerprints: dict[str, str | None] = {}
    parts: list[str] = []
    for environment, body in sections.items():
        rest = split_frame(body)[1].rstrip("\n") + "\n" if body is not None else ""
        if body is None or len(rest) > share:
            fingerprints[environment] = None
            parts.append(f"{header(environment)}\n\n{NO_SECTION if body is None else CUT_SECTION}\n")
            continue
        fingerprints[environment] = parse_fingerprint(body)
        parts.append(rest)
    return "\n".join([MARKER, fingerprints_line(fingerprints), "\n---\n\n".join(parts)])


def render(plan: Plan, max_chars: int | None = None) -> str:
    """The comment; rows are cut until it fits ``max_chars`` (default: GitHub's limit)."""
    limit = max_chars or GITHUB_COMMENT_LIMIT
    budget = limit
    while True:
        text = _render(plan, budget)
        if len(text) <= limit or budget <= 0:
            return text
        budget -= len(text) - limit + 200  # what the headers, wrappers and notes took, and a margin


def _render(plan: Plan, budget: int) -> str:
    """The comment with at most ``budget`` characters of table rows."""
    head = [
        MARKER,
        fingerprint_line(plan.fingerprint),
        header(plan.environment),
        "",
        f"**{escape(summary_line(plan))}** ({code(target(plan))})",
        "",
    ]
    if plan.guard.tripped:
        head += [
            (
                f"**🛑 Mass removal: {escape(plan.guard.message())}. "
                "Apply refuses unless run with `--allow-mass-removal`.**"
            ),
            "",
        ]
    if plan.actions and alarm_note(plan):
        head += [f"**⚠️ {escape(alarm_note(plan).strip())}**", ""]
    head += [f"> [!WARNING]\n> {escape(warning)}\n" for warning in plan.warnings]
    foot = [f"<sub>Plan fingerprint: `{plan.fingerprint}`</sub>", ""]  # for reviewers; CI reads line 2
    tables: list[_Table] = [
        *_action_tables(plan),
        (
            f"Drift: {len(plan.drift)} item(s) on the proxy not in the file (not acted on)",
            ["| address | detail |", "|---|---|"],
            [f"| {'⚠️ ' if alarming(d.kind) else ''}{code(d.address)} | {escape(d.detail)} |" for d in plan.drift],
            "closed",
        ),
    ]
    sections: list[str] = []
    for title, columns, rows, fold in tables:
        if not rows:
            continue
        kept: list[str] = []
        for row in rows:
            if len(row) + 1 > budget:
                break
            kept.append(row)
            budget -= len(row) + 1
        body = columns + kept
        if len(kept) < len(rows):
            body += [
                "",
                (
                    f"_…{len(rows) - len(kept)} more row(s) cut to fit a GitHub comment; "
                    "run `litellm-reconciler plan` for the full plan._"
                ),
            ]
        block = "\n".join(body)
        if fold == "plain":
            sections.append(block + "\n")
        else:
            opened = " open" if fold == "open" else ""
            sections.append(f"<details{opened}><summary>{title}</summary>\n\n{block}\n\n</details>\n")
    return "\n".join(head + sections + foot)


def _action_tables(plan: Plan) -> list[_Table]:
    """One table of every action; with included files, one per file that declares any of them
    (the main file first, then the others by name), titled with the file and its owners."""
    if not plan.origins.files:
        fold: _Fold = "closed" if len(plan.actions) > _FOLD_AFTER else "plain"
        return [(f"{len(plan.actions)} action(s)", _ACTION_COLUMNS, [_row(a) for a in plan.actions], fold)]
    groups: dict[str, list[Action]] = {
        file: [] for file in [plan.source, *plan.origins.owners, *sorted(set(plan.origins.files.values()))]
    }
    for action in plan.actions:
        groups[plan.origins.files.get(action.address, plan.source)].append(action)
    return [
        (
            f"📄 {code(file)}: {len(actions)} action(s), {_owners(plan.origins.owners.get(file, ()))}",
            _ACTION_COLUMNS,
            [_row(a) for a in actions],
            "closed" if len(actions) > _FOLD_AFTER else "open",
        )
        for file, actions in groups.items()
        if actions
    ]


def _owners(handles: tuple[str, ...]) -> str:
    """Who reviews a file, as code: a handle in running text would notify them on every comment."""
    return "reviewed by " + " ".join(code(h) for h in handles) if handles else "no owners named"
