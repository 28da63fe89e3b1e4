"""Outputs of a Plan: each format is one small module rendering the same Plan object.

``Plan`` is imported for type checking only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..kinds import KINDS
from ..plan import FAILING_DRIFT

if TYPE_CHECKING:
    from ..plan import Plan

#: A short label for an action kind, as shown in tables.
KIND_LABELS = {name: kind.label for name, kind in KINDS.items()}


def target(plan: Plan) -> str:
    """What the plan compares the proxy with: the file, and its environment when it has one."""
    return plan.source if plan.environment is None else f"{plan.source}, environment {plan.environment}"


def summary_line(plan: Plan) -> str:
    """``Plan: 1 team to create, 2 users to create.`` or the no-changes sentence."""
    counts = plan.summary()
    parts = []
    for kind, n in counts.items():
        words = KINDS[kind]
        parts.append(f"{n} {words.one if n == 1 else words.many} {words.verb}")
    if not plan.has_changes:
        sentence = (
            f"No changes. The proxy matches {target(plan)}."
            if not plan.drift
            else f"No changes. {len(plan.drift)} object(s) on the proxy are not in {target(plan)}."
        )
        bookkeeping = f" Bookkeeping only: {', '.join(parts)}." if parts else ""
        return sentence + bookkeeping + (alarm_note(plan) if plan.drift else "")
    symbols = [a.symbol for a in plan.actions if not a.bookkeeping]
    totals = f"{symbols.count('+')} to add, {symbols.count('~')} to change, {symbols.count('-')} to remove"
    return f"Plan: {totals} ({', '.join(parts)})."


#: What each kind of drift the drift check fails on amounts to, in the plan's summary.
_ALARMS = {
    "privilege": "user(s) hold a privileged role the file does not grant",
    "duplicate": "account(s) share a declared user's email with the account that is the user",
    "refused": "part(s) of the file are refused (each drift line says why and what to do)",
}


def alarm_note(plan: Plan) -> str:
    """Sentences about the drift the drift check fails on ("" when there is none)."""
    counts = {kind: sum(1 for d in plan.drift if d.kind == kind) for kind in _ALARMS}
    return "".join(f" {n} {_ALARMS[kind]}." for kind, n in counts.items() if n)


def alarming(kind: str) -> bool:
    """Whether drift of this kind fails the drift check (shown in red, flagged in the PR comment)."""
    return kind in FAILING_DRIFT


def value(v: Any) -> str:
    """A field value as it appears in every format (JSON literals: null, [..], "text")."""
    return json.dumps(v, sort_keys=True)


#: Letters and marks that print as nothing: a name holding one looks like the name without it.
_BLANK = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def hidden(ch: str) -> bool:
    """Whether a reader cannot see ``ch``, or it changes how the text around it shows: controls
    (line breaks, escape sequences), zero-width and bidirectional format characters, spaces other
    than U+0020, and letters that print blank. Two names that differ only by one look alike."""
    # Not printable: controls, format characters, separators but " ", private use, unassigned code points.
    return not ch.isprintable() or ch in _BLANK


def visible(text: object) -> str:
    """``text`` with each ``hidden`` character written as its escape (``\\n``, ``\\x1b``, ``\\u200b``):
    on one line, and an alias that differs from another by an invisible character shows it."""
    text = str(text)
    if text.isprintable() and _BLANK.isdisjoint(text):
        return text  # nearly every name: no character to look at one by one
    return "".join(ch.encode("unicode_escape").decode("ascii") if hidden(ch) else ch for ch in text)


def render(plan: Plan, fmt: str, max_chars: int | None = None) -> str:
    """Render in one of FORMATS; ``max_chars`` only applies to Markdown (PR comments)."""
    from . import json_format, markdown, text

    if fmt == "markdown":
        return markdown.render(plan, max_chars=max_chars)
    renderers: dict[str, Callable[[Plan], str]] = {"text": text.render, "json": json_format.render}
    return renderers[fmt](plan)


FORMATS = ("text", "markdown", "json")
