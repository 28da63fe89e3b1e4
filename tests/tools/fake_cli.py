#!/usr/bin/env python3
"""A stand-in for ``litellm-reconciler`` in unit tests of the GitHub glue (RECONCILER_CLI points here).

FAKE_CLI_SCRIPT is a JSON file: {"<command>": {"stdout": "...", "stderr": "...", "code": 0,
"plan_json": {...}}}. The glue's command line is appended to FAKE_CLI_SCRIPT + ".calls" (one JSON
line each). ``plan_json`` is written to the path after ``--out``, as the real CLI does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    script = Path(os.environ["FAKE_CLI_SCRIPT"])
    with open(str(script) + ".calls", "a", encoding="utf-8") as calls:
        calls.write(json.dumps(argv) + "\n")
    behaviour = json.loads(script.read_text(encoding="utf-8")).get(argv[0] if argv else "", {})
    if "plan_json" in behaviour and "--out" in argv:
        Path(argv[argv.index("--out") + 1]).write_text(json.dumps(behaviour["plan_json"]), encoding="utf-8")
    sys.stdout.write(behaviour.get("stdout", ""))
    sys.stderr.write(behaviour.get("stderr", ""))
    return int(behaviour.get("code", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
