"""The offline commands as a user runs them: validate, schema, import-csv."""

from __future__ import annotations

from pathlib import Path

import click

from .conftest import REPO
from .test_github import fake_proxy  # noqa: F401 (a fixture)

USERS = """\
# yaml-language-server: $schema=schemas/users.schema.json
version: 1
teams:
  - alias: dev-test   # the team the old script used
    id: f6dbea80-21b4-4f7b-a669-3d6adcc6e8d1
users:
  - email: alice@company.com
    teams: [dev-test]
"""


def test_validate_reports_every_problem_with_lines_and_exit_1(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\nusers:\n  - email: nope\n    role: god\n", encoding="utf-8")
    result = cli("validate")
    assert result.returncode == 1
    assert "users.yaml:3: users.0.email: 'nope' is not a valid email address" in result.stderr
    assert "users.yaml:4: users.0.role: invalid role 'god'" in result.stderr
    assert "2 problem(s) in the input" in result.stderr


def test_validate_json_locates_every_problem(cli, tmp_path: Path) -> None:
    """``validate --format json``: what the GitHub glue annotates from, without reading any text."""
    import json

    (tmp_path / "users.yaml").write_text("version: 1\nusers:\n  - email: nope\n    role: god\n", encoding="utf-8")
    result = cli("validate", "--format", "json")
    assert result.returncode == 1 and result.stderr == ""
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["format_version"].startswith("1.")
    assert [(p["file"], p["line"]) for p in data["problems"]] == [("users.yaml", 3), ("users.yaml", 4)]
    assert data["problems"][1]["message"].startswith("users.0.role: invalid role 'god'")
    valid = cli("validate", str(REPO / "users.yaml"), "--format", "json")
    assert valid.returncode == 0 and json.loads(valid.stdout) | {"file": "x"} == {
        "format_version": "1.0", "valid": True, "file": "x", "teams": 2, "users": 3, "environments": [],
        "problems": [], "warnings": [],
    }  # fmt: skip
    missing = cli("validate", "absent.yaml", "--format", "json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["problems"][0]["line"] == 0


def test_the_example_file_is_valid(cli) -> None:
    result = cli("validate", str(REPO / "users.yaml"))
    assert result.returncode == 0, result.stderr


def test_schema_check_detects_staleness(cli, tmp_path: Path) -> None:
    assert cli("schema", "--write").returncode == 0
    assert cli("schema", "--check").returncode == 0
    schema = tmp_path / "schemas" / "users.schema.json"
    schema.write_text(schema.read_text(encoding="utf-8").replace('"version"', '"versionx"', 1), encoding="utf-8")
    stale = cli("schema", "--check")
    assert stale.returncode == 1 and "is stale" in stale.stderr


def test_import_csv_merges_and_keeps_comments(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(USERS, encoding="utf-8")
    (tmp_path / "users.csv").write_text(
        (
            "user_email,team_id\nALICE@company.com,f6dbea80-21b4-4f7b-a669-3d6adcc6e8d1\n"
            "bob@company.com,f6dbea80-21b4-4f7b-a669-3d6adcc6e8d1\n"
        ),
        encoding="utf-8",
    )
    result = cli("import-csv", "users.csv")
    assert result.returncode == 0, result.stderr
    assert "+ bob@company.com" in result.stdout and "= ALICE@company.com" in result.stdout.replace("alice", "ALICE")
    text = (tmp_path / "users.yaml").read_text(encoding="utf-8")
    assert text.startswith(USERS), "comments and order are kept"
    assert "bob@company.com" in text and cli("validate").returncode == 0


def test_import_csv_refuses_unknown_team_ids(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(USERS, encoding="utf-8")
    (tmp_path / "users.csv").write_text("user_email,team_id\nbob@company.com,no-such-team\n", encoding="utf-8")
    result = cli("import-csv", "users.csv")
    assert result.returncode == 1
    assert "users.csv:2:" in result.stderr and "no-such-team" in result.stderr
    assert (tmp_path / "users.yaml").read_text(encoding="utf-8") == USERS


OFFLINE = {
    "LITELLM_API_KEY": "sk-offline-test-key",
    "LITELLM_MASTER_KEY": "",
    "LITELLM_PROXY_URL": "http://127.0.0.1:9",
}


def assert_clean_failure(result, message: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_1_not_2_which_means_changes(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    assert_clean_failure(cli("plan", "--format", "xml", env=OFFLINE), "'xml' is not one of")
    assert_clean_failure(cli("apply", "--plan", "missing.json", env=OFFLINE), "does not exist")


def test_bad_inputs_are_messages_not_tracebacks(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    (tmp_path / "edited.json").write_text(
        '{"format_version": "1.2", "actions": [{"kind": "create_team"}]}', encoding="utf-8"
    )
    (tmp_path / "loop.yaml").write_text("version: 1\nusers: &a [*a]\n", encoding="utf-8")
    assert_clean_failure(cli("apply", "--yes", "--plan", "list.json", env=OFFLINE), "is not a litellm-reconciler plan")
    assert_clean_failure(
        cli("apply", "--yes", "--plan", "edited.json", env=OFFLINE), "is not a litellm-reconciler plan"
    )
    assert_clean_failure(cli("plan", "--proxy-url", "http://[::1", env=OFFLINE), "invalid proxy URL")
    assert_clean_failure(cli("validate", "loop.yaml"), "YAML anchors and aliases are not allowed")
    assert_clean_failure(cli("plan", env={**OFFLINE, "LITELLM_API_KEY": ""}), "no API key")


def test_a_key_with_control_characters_is_refused_without_being_echoed(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    key = "sk-distinctive\x01secret"
    result = cli("plan", env={**OFFLINE, "LITELLM_API_KEY": key})
    assert_clean_failure(result, "the API key contains spaces, control or non-ASCII characters")
    assert "distinctive" not in result.stdout + result.stderr


def test_an_unwritable_report_stops_apply_before_the_proxy_is_read(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    result = cli("apply", "--yes", "--report", "no/such/dir/report.json", env=OFFLINE)
    assert_clean_failure(result, "cannot write the onboarding report")
    assert "cannot reach the proxy" not in result.stderr


def test_proxy_url_problems_are_refused_or_warned_about_without_printing_secrets(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    creds = cli("plan", "--proxy-url", "https://admin:s3cret-pass@proxy.invalid", env=OFFLINE)
    assert_clean_failure(creds, "credentials in the URL are not allowed")
    assert "s3cret-pass" not in creds.stdout + creds.stderr
    assert_clean_failure(
        cli("plan", "--proxy-url", "https://proxy.invalid/?key=1", env=OFFLINE), "a query or fragment is not allowed"
    )
    plain = cli("plan", "--proxy-url", "http://proxy.invalid:4000", env=OFFLINE)
    assert "warning: the proxy URL http://proxy.invalid:4000 is plain http" in plain.stderr
    assert_clean_failure(plain, "cannot reach the proxy")


def test_error_messages_are_scrubbed_of_every_secret_in_the_environment(cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    seal = "distinctive-seal-key-5a1"
    result = cli(
        "plan", "--proxy-url", f"http://127.0.0.1:9/{seal}", env={**OFFLINE, "LITELLM_RECONCILER_SEAL_KEY": seal}
    )
    assert_clean_failure(result, "cannot reach the proxy at http://127.0.0.1:9/***")
    assert seal not in result.stdout + result.stderr


def test_no_color_turns_colours_off_and_help_names_the_key_variables(fake_proxy) -> None:  # noqa: F811
    from click.testing import CliRunner

    from reconciler.cli import main

    shown = CliRunner().invoke(main, ["--help"])
    assert "LITELLM_API_KEY" in shown.output and "LITELLM_MASTER_KEY" in shown.output
    env = {"LITELLM_MASTER_KEY": "Zq7-colour-key", "LITELLM_API_KEY": None, "LITELLM_PROXY_URL": "https://p.test"}
    coloured = CliRunner().invoke(main, ["plan", "users.yaml"], color=True, env=env)
    plain = CliRunner().invoke(main, ["plan", "users.yaml"], color=True, env={**env, "NO_COLOR": "1"})
    assert "\x1b[" in coloured.output and "\x1b[" not in plain.output
    assert click.unstyle(coloured.output) == plain.output
