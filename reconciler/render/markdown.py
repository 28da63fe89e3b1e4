"""The plan as a pull-request comment: the summary first, then one table of actions, drift folded away.

A hidden marker on the first line lets CI find and update its own comment in place.
``max_chars`` keeps the comment under GitHub's 65,536-character limit: long tables
are folded into ``<details>`` and rows that do not fit are cut with a note.
"""

from __future__ import annotations

from typing import Optional

from ..plan import Action, Plan
from . import KIND_LABELS, summary_line, value

MARKER = "<!-- litellm-reconciler-plan -->"
HEADER = "### litellm-reconciler plan"
GITHUB_COMMENT_LIMIT = 65536
_ICONS = {"+": "➕", "~": "✏️"}
_FOLD_AFTER = 20  # rows; longer tables are collapsed


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(action: Action) -> str:
    changes = "<br>".join(
        f"`{c.field}`: {_cell(value(c.new))}" if action.symbol == "+" else f"`{c.field}`: {_cell(value(c.old))} → {_cell(value(c.new))}"
        for c in action.changes
    )
    return f"| {_ICONS[action.symbol]} | `{_cell(action.address)}` | {KIND_LABELS[action.kind]} | {_cell(action.reason)} | {changes} |"


def render(plan: Plan, max_chars: Optional[int] = None) -> str:
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
    head = [MARKER, HEADER, "", f"**{summary_line(plan)}** (`{plan.source}`)", ""]
    foot = [f"<sub>Plan fingerprint: `{plan.fingerprint}`</sub>", ""]
    tables = [
        (f"{len(plan.actions)} action(s)", ["| | address | action | reason | changes |", "|---|---|---|---|---|"], [_row(a) for a in plan.actions], len(plan.actions) > _FOLD_AFTER),
        (
            f"Drift: {len(plan.drift)} item(s) on the proxy not in the file (not acted on)",
            ["| address | detail |", "|---|---|"],
            [f"| `{_cell(d.address)}` | {_cell(d.detail)} |" for d in plan.drift],
            True,
        ),
    ]
    sections: list[str] = []
    for title, header, rows, fold in tables:
        if not rows:
            continue
        kept: list[str] = []
        for row in rows:
            if len(row) + 1 > budget:
                break
            kept.append(row)
            budget -= len(row) + 1
        body = header + kept
        if len(kept) < len(rows):
            body += ["", f"_…{len(rows) - len(kept)} more row(s) cut to fit a GitHub comment; run `litellm-reconciler plan` for the full plan._"]
        block = "\n".join(body)
        sections.append(f"<details><summary>{title}</summary>\n\n{block}\n\n</details>\n" if fold else block + "\n")
    return "\n".join(head + sections + foot)
