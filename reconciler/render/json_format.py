"""The machine-readable plan: versioned (``format_version``), stable key order, loadable by ``apply --plan``."""

from __future__ import annotations

import json

from ..plan import Plan


def render(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=False, default=str) + "\n"
