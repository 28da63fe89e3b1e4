"""Who caused a change: from GitHub Actions' pull request, or user@host; on every write and every object."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import manager
from reconciler.attribution import Attribution
from reconciler.cli import main
from reconciler.live import OWNER_KEY

from .test_apply import FakeLiteLLM
from .test_github import fake_proxy  # noqa: F401 (a fixture)

MERGED = {
    "action": "closed",
    "pull_request": {
        "number": 12,
        "user": {"login": "alice"},
        "merged_by": {"login": "bob"},
        "merge_commit_sha": "0123456789abcdef0123",
    },
}


def actions_env(tmp_path: Path, event: dict, **more: str) -> dict[str, str]:
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_REPOSITORY": "acme/access",
        "GITHUB_SHA": "fedcba9876543210fedc",
        "GITHUB_ACTOR": "carol",
        "GITHUB_RUN_ID": "99",
        **more,
    }


def test_a_merged_pull_request_names_its_author_merger_number_and_commit(tmp_path: Path) -> None:
    who = Attribution.from_env(actions_env(tmp_path, MERGED))
    assert who == Attribution("alice (author of #12), merged by bob", "acme/access#12@0123456789ab")


def test_a_push_takes_the_pull_request_the_glue_found_and_the_pusher(tmp_path: Path) -> None:
    env = actions_env(
        tmp_path,
        {"pusher": {"name": "carol"}},
        LITELLM_RECONCILER_PULL_REQUEST="7",
        LITELLM_RECONCILER_PR_AUTHOR="dave",
    )
    assert Attribution.from_env(env) == Attribution(
        "dave (author of #7), merged by carol", "acme/access#7@fedcba987654"
    )
    alone = Attribution.from_env(actions_env(tmp_path, {}))
    assert alone == Attribution("carol (GitHub Actions run 99)", "acme/access@fedcba987654")


def test_elsewhere_it_is_user_at_host() -> None:
    who = Attribution.from_env({})
    assert who.by.endswith(f"@{socket.gethostname()}") and who.ref == "local"


def test_the_header_is_one_line_of_printable_ascii_whatever_a_login_holds() -> None:
    header = Attribution("mallory\r\nX-Injected: 1 ünicode", "x#1@y").header()
    assert header.isascii() and "\n" not in header and "\r" not in header
    assert header.startswith("mallory??X-Injected: 1 ?nicode (x#1@y) via litellm-reconciler")


def test_every_write_says_who_and_every_object_records_its_last_change(
    fake_proxy: FakeLiteLLM,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in actions_env(tmp_path, MERGED).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        manager.Connection,
        "client",
        lambda self, on_progress=None: fake_proxy.client(changed_by=manager.Attribution.from_env().header()),
    )
    env = {"LITELLM_MASTER_KEY": "Zq7-attribution-key", "LITELLM_API_KEY": None, "LITELLM_PROXY_URL": "https://p.test"}
    run = CliRunner().invoke(main, ["apply", "users.yaml", "--yes", "--report", "r.jsonl"], env=env)
    assert run.exit_code == 0, run.output
    expected = "alice (author of #12), merged by bob (acme/access#12@0123456789ab) via litellm-reconciler"
    assert fake_proxy.changed_by == {expected}, "LiteLLM's audit trail gets the same on every write"
    alice = next(u for u in fake_proxy.users.values() if u["user_email"] == "alice@example.com")
    dev = next(t for t in fake_proxy.teams.values() if t["team_alias"] == "dev")
    for metadata in (alice["metadata"], dev["metadata"]):
        change = metadata[OWNER_KEY]["last_change"]
        assert (change["by"], change["ref"]) == ("alice (author of #12), merged by bob", "acme/access#12@0123456789ab")
        assert change["at"]
