"""Who gave Alice access, answered from the proxy alone: every object the tool writes records its last change."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Api
from .test_lifecycle import write

USERS = "version: 1\nteams: [{alias: dev}]\nusers: [{email: alice@company.com, teams: [dev]}]\n"


def test_a_merged_pull_request_is_recorded_on_what_it_created(api: Api, cli, tmp_path: Path) -> None:
    write(tmp_path, USERS)
    event = {"pull_request": {"number": 12, "user": {"login": "alice-lead"}, "merged_by": {"login": "bob"}}}
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_REPOSITORY": "acme/access",
        "GITHUB_SHA": "0123456789abcdef0123",
    }
    applied = cli("apply", "--yes", "--result-json", "result.json", env=actions)
    assert applied.returncode == 0, applied.stderr
    expected = {"by": "alice-lead (author of #12), merged by bob", "ref": "acme/access#12@0123456789ab"}
    alice = next(u for u in api.users() if u.get("user_email") == "alice@company.com")
    dev = next(t for t in api.teams() if t["team_alias"] == "dev")
    for metadata in (alice["metadata"], dev["metadata"]):
        change = metadata["litellm_reconciler"]["last_change"]
        assert {k: change[k] for k in ("by", "ref")} == expected and change["at"]
    assert json.loads((tmp_path / "result.json").read_text())["changed_by"] == expected
