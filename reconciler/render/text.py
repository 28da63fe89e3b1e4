"""The terminal plan, in the spirit of ``terraform plan``: symbols, field changes, a summary line.

Colour is added with click styles; ``click.echo`` strips it when stdout is not a terminal.
"""

from __future__ import annotations

import click

from ..plan import Plan
from . import summary_line, value

_COLOURS = {"+": "green", "~": "yellow", "?": "cyan"}


def render(plan: Plan) -> str:
    lines: list[str] = []
    if plan.actions:
        lines.append(f"litellm-reconciler will perform the following actions ({plan.source}):")
        lines.append("")
        for action in plan.actions:
            symbol = click.style(action.symbol, fg=_COLOURS[action.symbol], bold=True)
            lines.append(f"  {symbol} {click.style(action.address, bold=True)}")
            lines.append(f"      # {action.reason}")
            width = max((len(c.field) for c in action.changes), default=0)
            for change in action.changes:
                if action.symbol == "+":
                    lines.append(f"      {change.field.ljust(width)} = {value(change.new)}")
                else:
                    lines.append(f"      {change.field.ljust(width)} = {value(change.old)} -> {value(change.new)}")
            lines.append("")
    if plan.drift:
        lines.append("Drift: on the proxy but not in the file (shown only, nothing is changed):")
        for item in plan.drift:
            lines.append(f"  {click.style('?', fg=_COLOURS['?'], bold=True)} {item.address}: {item.detail}")
        lines.append("")
    lines.append(click.style(summary_line(plan), bold=True))
    lines.append(f"Plan fingerprint: {plan.fingerprint[:16]}")
    return "\n".join(lines) + "\n"
