#!/usr/bin/env python3
"""A stand-in for the ``gh`` CLI in tests: ``gh api`` against a JSON state file, every call logged.

State (FAKE_GH_STATE, a JSON file): {"comments": {"<pr>": [comment, ...]}, "pulls": {"<sha>": [pr, ...]}, "next_id": N}.
Calls are appended to FAKE_GH_STATE + ".calls" (one JSON line each: argv, and the body sent).
Only what the workflows use is implemented: list comments (--paginate --slurp), POST a comment,
PATCH a comment (--input FILE), list the pull requests of a commit.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state_file = Path(os.environ["FAKE_GH_STATE"])
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    state.setdefault("comments", {})
    state.setdefault("pulls", {})
    if not os.environ.get("GH_TOKEN"):
        print(
            "gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.",
            file=sys.stderr,
        )
        return 4
    if argv[:1] != ["api"]:
        print(f"fake gh: unsupported {argv}", file=sys.stderr)
        return 1
    args, method, body, flags = argv[1:], "GET", None, set()
    path = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--paginate", "--slurp"):
            flags.add(a)
        elif a in ("--method", "-X"):
            method = args[i + 1]
            i += 1
        elif a == "--input":
            body = json.loads(Path(args[i + 1]).read_text())
            i += 1
        elif a.startswith("-"):
            print(f"fake gh: unsupported flag {a}", file=sys.stderr)
            return 1
        else:
            path = a
        i += 1
    with open(str(state_file) + ".calls", "a") as log:
        log.write(json.dumps({"argv": argv, "method": method, "path": path, "body": body}) + "\n")
    repo = os.environ["GITHUB_REPOSITORY"]
    if m := re.fullmatch(rf"repos/{re.escape(repo)}/issues/(\d+)/comments", path or ""):
        comments = state["comments"].setdefault(m[1], [])
        if method == "GET":
            out = [comments] if "--slurp" in flags else comments
        elif method == "POST":
            state["next_id"] = state.get("next_id", 1000) + 1
            out = {"id": state["next_id"], "user": {"login": "github-actions[bot]"}, "body": body["body"]}
            comments.append(out)
        else:
            return 1
    elif m := re.fullmatch(rf"repos/{re.escape(repo)}/issues/comments/(\d+)", path or ""):
        found = [c for cs in state["comments"].values() for c in cs if c["id"] == int(m[1])]
        if method != "PATCH" or not found:
            print("gh: Not Found (HTTP 404)", file=sys.stderr)
            return 1
        found[0]["body"] = body["body"]
        out = found[0]
    elif m := re.fullmatch(rf"repos/{re.escape(repo)}/commits/([0-9a-f]+)/pulls", path or ""):
        out = state["pulls"].get(m[1], [])
    else:
        print(f"gh: Not Found (HTTP 404) {path}", file=sys.stderr)
        return 1
    state_file.write_text(json.dumps(state))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
