"""Importing the old script's CSV into users.yaml as a text edit that keeps every other byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.desired import InputError, check_email, load_desired, parse_desired
from reconciler.importer import import_csv

REPO_FILE = Path(__file__).resolve().parents[1] / "users.yaml"

TEAMS = """\
version: 1
# Teams first.
teams:
  - alias: dev-test
    id: 11111111-aaaa
  - alias: research   # the CSV names it by id
    id: 22222222-bbbb
  - alias: "yes"
"""

FILE = (
    TEAMS
    + """
users:   # people
  # Alice runs the test team.
  - email: alice@company.com
    teams: [dev-test]   # trailing comment
  - email: bob@company.com
    teams: [dev-test, research]

# Added by hand; keep below the users.
defaults:
  invite: false
"""
)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    return write(tmp_path / "users.yaml", FILE)


def csv(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "users.csv", text)


def test_new_users_are_inserted_at_the_end_of_the_users_block(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(
        tmp_path, "user_email, team_id ,name\ncarol@company.com , 22222222-bbbb, Carol\n\n dave@company.com,dev-test\n"
    )

    result = import_csv(source, yaml_file)

    assert result.added == ["carol@company.com", "dave@company.com"]
    assert result.already_present == [] and result.skipped == []
    inserted = (
        "  - email: carol@company.com\n    teams: [research]\n  - email: dave@company.com\n    teams: [dev-test]\n"
    )
    anchor = "    teams: [dev-test, research]\n"
    expected = FILE.replace(anchor, anchor + inserted)
    assert yaml_file.read_bytes() == expected.encode()
    assert result.text == expected
    assert [u.email for u in load_desired(yaml_file).users][-2:] == ["carol@company.com", "dave@company.com"]


def test_repeated_emails_merge_into_one_user_with_several_teams(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(
        tmp_path,
        (
            "user_email,team_id\ncarol@company.com,11111111-aaaa\nCarol@Company.com,22222222-bbbb\n"
            "carol@company.com,dev-test\n"
        ),
    )

    result = import_csv(source, yaml_file)

    assert result.added == ["carol@company.com"]
    (carol,) = [u for u in load_desired(yaml_file).users if u.key == "carol@company.com"]
    assert (carol.email, carol.teams) == ("carol@company.com", ["dev-test", "research"])


def test_existing_users_are_not_duplicated_or_changed(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(
        tmp_path,
        "user_email,team_id\nALICE@company.com,dev-test\nalice@company.com,22222222-bbbb\nBob@Company.com,research\n",
    )
    before = yaml_file.stat().st_mtime_ns

    result = import_csv(source, yaml_file)

    assert result.added == []
    assert result.already_present == ["ALICE@company.com", "Bob@Company.com"]
    assert result.skipped == [("ALICE@company.com", "research")]
    assert yaml_file.read_bytes() == FILE.encode()
    assert yaml_file.stat().st_mtime_ns == before
    assert result.text == FILE


def test_all_bad_rows_are_reported_with_csv_lines_and_nothing_is_written(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(
        tmp_path,
        (
            "user_email,team_id\ncarol@company.com,33333333-cccc\n\nnot-an-email,dev-test\ndave@company.com,\n"
            "erin@company.com,99\nfrank@company.com,dev-test\n"
        ),
    )

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file)

    problems = [(p.file, p.line, p.message) for p in caught.value.problems]
    assert problems == [
        (str(source), 2, "unknown team id '33333333-cccc'; declare it under 'teams' in users.yaml with 'id:'"),
        (str(source), 4, "'not-an-email' is not a valid email address: it must contain exactly one '@'"),
        (str(source), 5, "missing team_id"),
        (str(source), 6, "unknown team id '99'; declare it under 'teams' in users.yaml with 'id:'"),
    ]
    assert yaml_file.read_bytes() == FILE.encode()


def test_missing_header_is_reported(tmp_path: Path, yaml_file: Path) -> None:
    with pytest.raises(InputError, match=r"users.csv:2: expected a header row with the columns user_email and team_id"):
        import_csv(csv(tmp_path, "\ncarol@company.com,dev-test\n"), yaml_file)


def test_team_argument_with_a_plain_list(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(tmp_path, "\ufeffEmail\ncarol@company.com\n\n  dave@company.com  \nalice@company.com\n")

    result = import_csv(source, yaml_file, team="22222222-bbbb")

    assert result.added == ["carol@company.com", "dave@company.com"]
    assert result.skipped == [("alice@company.com", "research")]
    users = {u.email: u.teams for u in load_desired(yaml_file).users}
    assert users["carol@company.com"] == users["dave@company.com"] == ["research"]


def test_plain_list_reports_bad_emails_by_line(tmp_path: Path, yaml_file: Path) -> None:
    source = csv(tmp_path, "carol@company.com\ncarol@company.com,dev-test\ncarol\n")

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file, team="dev-test")

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (
            2,
            (
                "'carol@company.com,dev-test' has several columns; with a team give one email per line, "
                "without one use user_email,team_id columns"
            ),
        ),
        (3, "'carol' is not a valid email address: it must contain exactly one '@'"),
    ]


def test_unknown_team_argument_is_refused(tmp_path: Path, yaml_file: Path) -> None:
    with pytest.raises(ValueError, match="unknown team 'ops'"):
        import_csv(csv(tmp_path, "carol@company.com\n"), yaml_file, team="ops")
    assert yaml_file.read_bytes() == FILE.encode()


def test_empty_flow_users_list_becomes_a_block(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "users.yaml", TEAMS + "users: []  # none yet\n")

    import_csv(csv(tmp_path, "user_email,team_id\ncarol@company.com,yes\n"), yaml_file)

    assert yaml_file.read_text() == TEAMS + "users:  # none yet\n  - email: carol@company.com\n    teams: ['yes']\n"
    assert load_desired(yaml_file).users[0].teams == ["yes"]


def test_missing_users_key_adds_a_section(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "users.yaml", TEAMS + "# the end")

    import_csv(csv(tmp_path, "user_email,team_id\ncarol@company.com,dev-test\n"), yaml_file)

    assert yaml_file.read_text() == TEAMS + "# the end\n\nusers:\n  - email: carol@company.com\n    teams: [dev-test]\n"


def test_indentation_of_existing_entries_is_followed(tmp_path: Path) -> None:
    text = "version: 1\nteams:\n- alias: a\nusers:\n- email: x@company.com\n  teams: [a]\n"
    yaml_file = write(tmp_path / "users.yaml", text)

    import_csv(csv(tmp_path, "user_email,team_id\ny@company.com,a\n"), yaml_file)

    assert yaml_file.read_text() == text + "- email: y@company.com\n  teams: [a]\n"


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = "version: 1\r\nteams:\r\n  - alias: a\r\nusers:\r\n  - email: x@company.com\r\n    teams: [a]\r\n"
    yaml_file = write(tmp_path / "users.yaml", text)

    import_csv(csv(tmp_path, "user_email,team_id\r\ny@company.com,a\r\n"), yaml_file)

    assert yaml_file.read_bytes() == (text + "  - email: y@company.com\r\n    teams: [a]\r\n").encode()


def test_the_repository_file_still_validates_and_keeps_its_comments(tmp_path: Path) -> None:
    original = REPO_FILE.read_text(encoding="utf-8")
    yaml_file = write(tmp_path / "users.yaml", original)
    os.chmod(yaml_file, 0o640)

    result = import_csv(
        csv(tmp_path, "user_email,team_id\nnew@company.com,research\nnew@company.com,dev-test\n"), yaml_file
    )

    text = yaml_file.read_text(encoding="utf-8")
    assert text == original.rstrip("\n") + "\n  - email: new@company.com\n    teams: [research, dev-test]\n"
    assert parse_desired(text).users[-1].teams == ["research", "dev-test"]
    assert result.added == ["new@company.com"]
    assert oct(yaml_file.stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_invalid_yaml_file_is_refused_before_reading_the_csv(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "users.yaml", "version: 1\nusers:\n  - email: broken\n")

    with pytest.raises(InputError, match="not a valid email"):
        import_csv(csv(tmp_path, "user_email,team_id\ncarol@company.com,a\n"), yaml_file)


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "email",
    [
        "alice<eve@evil.example>",
        "alice@company.com\u202e",
        "alice\u200b@company.com",
        "alice@c\u043empany.com",
        "alice@localhost",
        "a..b@company.com",
    ],
)
def test_emails_are_checked_by_the_users_yaml_rule(tmp_path: Path, yaml_file: Path, email: str) -> None:
    source = write(tmp_path / "users.csv", f"user_email,team_id\n{email},dev-test\n")

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file)

    with pytest.raises(ValueError) as rule:
        check_email(email)
    assert [(p.line, p.message) for p in caught.value.problems] == [(2, str(rule.value))]
    assert yaml_file.read_bytes() == FILE.encode()


def test_a_control_character_in_a_plain_list_is_refused(tmp_path: Path, yaml_file: Path) -> None:
    source = write(tmp_path / "users.csv", "carol@company.com\ndave@company.com\x00\n")

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file, team="dev-test")

    assert [(p.line, p.message) for p in caught.value.problems] == [
        (2, "'dave@company.com\\x00' is not a valid email address: it contains a control character")
    ]


def test_csv_that_the_csv_module_refuses_is_an_input_error(tmp_path: Path, yaml_file: Path) -> None:
    source = write(
        tmp_path / "users.csv", "user_email,team_id\ncarol@company.com,dev-test\n" + "x" * 200_000 + ",dev-test\n"
    )

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file)

    assert [str(p) for p in caught.value.problems] == [
        f"{source}:3: malformed CSV: field larger than field limit (131072)"
    ]


def test_a_non_utf8_csv_is_located(tmp_path: Path, yaml_file: Path) -> None:
    source = tmp_path / "users.csv"
    source.write_bytes(b"user_email,team_id\ncaf\xe9@company.com,dev-test\n")

    with pytest.raises(InputError) as caught:
        import_csv(source, yaml_file)

    assert [str(p) for p in caught.value.problems] == [f"{source}:2:4: not UTF-8: byte 0xe9"]


@pytest.mark.parametrize("which", ["csv", "yaml"])
def test_special_files_are_refused_without_reading_them(tmp_path: Path, yaml_file: Path, which: str) -> None:
    source = csv(tmp_path, "user_email,team_id\ncarol@company.com,dev-test\n")
    device = tmp_path / "device"
    device.symlink_to("/dev/null")  # not /dev/zero: a regression must fail, not fill memory

    with pytest.raises(InputError) as caught:
        import_csv(device, yaml_file) if which == "csv" else import_csv(source, device)

    assert [str(p) for p in caught.value.problems] == [f"{device}: not a regular file (a device or socket)"]
    assert yaml_file.read_bytes() == FILE.encode()


def test_a_hostile_yaml_file_is_refused_before_the_csv_is_read(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "users.yaml", 'version: 1\na: &a ["lol"]\nb: [*a, *a]\n')

    with pytest.raises(InputError, match="YAML anchors and aliases are not allowed: '&a'"):
        import_csv(tmp_path / "missing.csv", yaml_file)


def test_a_file_with_long_form_memberships_imports_and_keeps_them(tmp_path: Path) -> None:
    text = FILE.replace("teams: [dev-test, research]", "teams: [{team: dev-test, role: admin}, research]")
    yaml_file = write(tmp_path / "users.yaml", text)
    source = csv(tmp_path, "user_email,team_id\nbob@company.com,dev-test\ncarol@company.com,22222222-bbbb\n")
    result = import_csv(source, yaml_file)
    assert result.already_present == ["bob@company.com"] and result.skipped == []
    assert "{team: dev-test, role: admin}" in result.text and "carol@company.com" in result.text
