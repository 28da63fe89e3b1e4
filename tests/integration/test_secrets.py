"""The master key never appears in output, saved plans, reports or error messages."""

from __future__ import annotations

from pathlib import Path

from reconciler.onboarding import load_report

from .conftest import Api
from .test_lifecycle import BASE, write


def _files_text(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file())


def test_no_command_prints_or_stores_the_key(api: Api, cli, tmp_path: Path, proxy, monkeypatch) -> None:
    key = proxy[1]
    assert len(key) >= 12, "the test needs a distinctive key"
    # LiteLLM masks keys that start with sk- itself, but echoes any other key verbatim in its
    # 401 answer: only such a key shows that the tool's own scrubbing works.
    echoed = "Zq7-distinctive-wrong-key-5d1e"
    seal = "distinctive-seal-key-77c2"
    monkeypatch.setenv("LITELLM_RECONCILER_SEAL_KEY", seal)
    write(tmp_path, BASE)
    (tmp_path / "victim").write_text("precious", encoding="utf-8")
    (tmp_path / "plan.json").symlink_to(tmp_path / "victim")
    runs = [
        cli("validate"),
        cli("schema"),
        cli("plan"),
        cli("plan", "--format", "markdown"),
        cli("plan", "--format", "json", "--out", "plan.json"),
        cli("-v", "apply", "--yes", "--plan", "plan.json", "--show-links"),
        cli("apply", "--yes"),
        cli("apply", "--yes", "--report", "again.json"),
        # error paths: a refused key, an unreachable proxy, a stale plan, bad input
        cli("--log-level", "debug", "plan", env={"LITELLM_API_KEY": echoed}),
        cli("plan", "--proxy-url", "http://127.0.0.1:9"),
        cli("apply", "--yes", "--plan", "plan.json"),
    ]
    (tmp_path / "bad.yaml").write_text("version: 1\nusers:\n  - email: nope\n", encoding="utf-8")
    runs.append(cli("plan", "bad.yaml"))

    # 1.80 echoes the key verbatim (the tool's scrub must hide it); 1.110 masks it itself.
    assert runs[-4].returncode == 1 and "401" in runs[-4].stderr and "Received=" in runs[-4].stderr, runs[-4].stderr
    assert runs[-3].returncode == 1 and "cannot reach the proxy" in runs[-3].stderr
    logged = runs[5].stderr
    assert "INFO reconciler.http: POST /invitation/new 200" in logged and "(attempt 1)" in logged, logged
    assert "invitation_id" not in logged and "/ui/onboarding" not in logged, "-v logs paths, never a link"
    assert "requests (" in runs[5].stdout and "writes, verification included) in" in runs[5].stdout, (
        "the apply summary counts the requests"
    )
    assert "INFO reconciler.http: GET /user/list 401" in runs[-4].stderr
    for result in runs:
        for secret in (key, echoed, seal):
            assert secret not in result.stdout and secret not in result.stderr, result.args
        assert "Traceback" not in result.stderr, result.stderr
    assert key not in _files_text(tmp_path) and seal not in _files_text(tmp_path)
    assert (tmp_path / "victim").read_text(encoding="utf-8") == "precious", "plan --out replaced the planted symlink"
    for private in ("plan.json", "onboarding_results.jsonl"):
        assert not (tmp_path / private).is_symlink() and (tmp_path / private).stat().st_mode & 0o777 == 0o600


def test_other_secrets_and_a_pasted_newline_never_leak(api: Api, cli, tmp_path: Path, proxy) -> None:
    key = proxy[1]
    password = "smtp-Pa55word-distinctive"
    write(tmp_path, BASE)
    # A secret pasted with its trailing newline still works, and is still never printed.
    padded = cli("plan", env={"LITELLM_API_KEY": key + "\n", "LITELLM_MASTER_KEY": ""})
    assert padded.returncode == 0, padded.stderr
    # An SMTP server that refuses the connection: each send fails, the password stays hidden.
    mail = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "9",
        "SMTP_FROM": "llm@company.com",
        "SMTP_SECURITY": "none",
        "SMTP_USERNAME": "mailer",
        "SMTP_PASSWORD": password,
    }
    sent = cli(
        "apply", "--yes", "--send-invites", "smtp", "--allow-insecure-smtp", env={"LITELLM_API_KEY": key, **mail}
    )
    assert sent.returncode == 1 and "could not be sent" in sent.stderr
    for result in (padded, sent):
        for secret in (key, password):
            assert secret not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert password not in _files_text(tmp_path) and key not in _files_text(tmp_path)
    assert all(
        r["status"] == "send_failed" and r["onboarding_link"]
        for r in load_report(tmp_path / "onboarding_results.jsonl")
    )
