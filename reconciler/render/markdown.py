"""The plan as a pull-request comment: the summary first, then one table of actions, drift folded away."""

from __future__ import annotations

from ..plan import Plan
from . import KIND_LABELS, summary_line, value

HEADER = "### litellm-reconciler plan"
_ICONS = {"+": "➕", "~": "✏️"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(plan: Plan) -> str:
    out = [HEADER, "", f"**{summary_line(plan)}** (`{plan.source}`)", ""]
    if plan.actions:
        out += ["| | address | action | reason | changes |", "|---|---|---|---|---|"]
        for action in plan.actions:
            changes = "<br>".join(
                f"`{c.field}`: {_cell(value(c.new))}" if action.symbol == "+" else f"`{c.field}`: {_cell(value(c.old))} → {_cell(value(c.new))}"
                for c in action.changes
            )
            out.append(
                f"| {_ICONS[action.symbol]} | `{_cell(action.address)}` | {KIND_LABELS[action.kind]} | {_cell(action.reason)} | {changes} |"
            )
        out.append("")
    if plan.drift:
        out += [f"<details><summary>Drift: {len(plan.drift)} item(s) on the proxy not in the file (not acted on)</summary>", ""]
        out += ["| address | detail |", "|---|---|"]
        out += [f"| `{_cell(d.address)}` | {_cell(d.detail)} |" for d in plan.drift]
        out += ["", "</details>", ""]
    out.append(f"<sub>Plan fingerprint: `{plan.fingerprint}`</sub>")
    return "\n".join(out) + "\n"
