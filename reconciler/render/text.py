"""The terminal plan, in the spirit of ``terraform plan``: symbols, field changes, a summary line.

Colour is added with click styles; ``click.echo`` strips it when stdout is not a terminal.
Text from the users file or the proxy (addresses, reasons, drift details, the file name) is
shown with its control, zero-width and bidirectional characters escaped (:func:`.visible`): a
name cannot start a new line of the plan, send terminal escape sequences or pass for another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import alarm_note, alarming, summary_line, target, value, visible

if TYPE_CHECKING:
    from ..plan import Plan

_COLOURS = {"+": "green", "~": "yellow", "-": "red", "?": "cyan"}


def render(plan: Plan) -> str:
    lines: list[str] = []
    if plan.actions:
        lines.append(f"litellm-reconciler will perform the following actions ({visible(target(plan))}):")
        lines.append("")
        for action in plan.actions:
            symbol = click.style(action.symbol, fg=_COLOURS[action.symbol], bold=True)
            lines.append(f"  {symbol} {click.style(visible(action.address), bold=True)}")
            lines.append(f"      # {visible(action.reason)}")
            width = max((len(c.field) for c in action.changes), default=0)
            for change in action.changes:
                name = visible(change.field).ljust(width)
                if action.symbol == "+":
                    lines.append(f"      {name} = {value(change.new)}")
                else:
                    lines.append(f"      {name} = {value(change.old)} -> {value(change.new)}")
            lines.append("")
    if plan.drift:
        lines.append("Drift: on the proxy but not in the file (shown only, nothing is changed):")
        for item in plan.drift:
            mark = (
                click.style("!", fg="red", bold=True)
                if alarming(item.kind)
                else click.style("?", fg=_COLOURS["?"], bold=True)
            )
            lines.append(f"  {mark} {visible(item.address)}: {visible(item.detail)}")
        lines.append("")
    lines.append(click.style(visible(summary_line(plan)), bold=True))
    if plan.guard.tripped:
        lines.append(
            click.style(
                f"Mass removal: {plan.guard.message()}; apply refuses unless --allow-mass-removal.", fg="red", bold=True
            )
        )
    if plan.actions and alarm_note(plan):
        lines.append(click.style(alarm_note(plan).strip(), fg="red", bold=True))
    for warning in plan.warnings:
        lines.append(click.style(f"Warning: {visible(warning)}", fg="yellow", bold=True))
    lines.append(f"Plan fingerprint: {plan.fingerprint[:16]}")
    return "\n".join(lines) + "\n"
