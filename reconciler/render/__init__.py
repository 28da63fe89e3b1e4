"""Outputs of a Plan: each format is one small module rendering the same Plan object.

``Plan`` is imported for type checking only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from ..plan import Plan

#: How each action kind reads in a summary: (singular, plural, verb).
_KIND_WORDS = {
    "create_inviter": ("inviter user", "inviter users", "to create"),
    "create_team": ("team", "teams", "to create"),
    "update_team": ("team", "teams", "to update"),
    "create_user": ("user", "users", "to create"),
    "update_user": ("user", "users", "to update"),
    "add_member": ("membership", "memberships", "to add"),
    "create_invitation": ("invitation", "invitations", "to create"),
    "renew_invitation": ("expired invitation", "expired invitations", "to renew or record as accepted"),
    "replace_invitation": ("exposed invitation", "exposed invitations", "to replace"),
    "deliver_invitation": ("undelivered invitation", "undelivered invitations", "to deliver again"),
    "adopt_team": ("team", "teams", "to adopt"),
    "adopt_user": ("user", "users", "to adopt"),
    "remove_member": ("membership", "memberships", "to remove"),
    "delete_user": ("user", "users", "to delete"),
    "delete_team": ("team", "teams", "to delete"),
}

#: A short label for an action kind, as shown in tables.
KIND_LABELS = {
    "create_inviter": "create inviter user",
    "create_team": "create team",
    "update_team": "update team",
    "create_user": "create user",
    "update_user": "update user",
    "add_member": "add to team",
    "create_invitation": "invite",
    "renew_invitation": "renew invitation",
    "replace_invitation": "replace exposed link",
    "deliver_invitation": "deliver link again",
    "adopt_team": "adopt team",
    "adopt_user": "adopt user",
    "remove_member": "remove from team",
    "delete_user": "delete user",
    "delete_team": "delete team",
}


def summary_line(plan: Plan) -> str:
    """``Plan: 1 team to create, 2 users to create.`` or the no-changes sentence."""
    counts = plan.summary()
    parts = []
    for kind, n in counts.items():
        one, many, verb = _KIND_WORDS[kind]
        parts.append(f"{n} {one if n == 1 else many} {verb}")
    if not plan.has_changes:
        sentence = f"No changes. The proxy matches {plan.source}." if not plan.drift else f"No changes. {len(plan.drift)} object(s) on the proxy are not in {plan.source}."
        bookkeeping = f" Bookkeeping only: {', '.join(parts)}." if parts else ""
        return sentence + bookkeeping + (privilege_note(plan) if plan.drift else "")
    symbols = [a.symbol for a in plan.actions if not a.bookkeeping]
    totals = f"{symbols.count('+')} to add, {symbols.count('~')} to change, {symbols.count('-')} to remove"
    return f"Plan: {totals} ({', '.join(parts)})."


def privilege_note(plan: Plan) -> str:
    """A sentence about privileged roles the file does not grant ("" when there are none)."""
    n = sum(1 for d in plan.drift if d.kind == "privilege")
    return f" {n} user(s) hold a privileged role the file does not grant." if n else ""


def value(v: Any) -> str:
    """A field value as it appears in every format (JSON literals: null, [..], "text")."""
    return json.dumps(v, sort_keys=True)


def render(plan: Plan, fmt: str, max_chars: Optional[int] = None) -> str:
    """Render in one of FORMATS; ``max_chars`` only applies to Markdown (PR comments)."""
    from . import json_format, markdown, text

    if fmt == "markdown":
        return markdown.render(plan, max_chars=max_chars)
    renderers: dict[str, Callable[[Plan], str]] = {"text": text.render, "json": json_format.render}
    return renderers[fmt](plan)


FORMATS = ("text", "markdown", "json")
