"""users.yaml loading and validation: every problem, located by file and line, all in one run."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from reconciler.desired import InputError, Problem, load_desired, parse_desired
from reconciler.schema import SCHEMA_PATH, schema_text
from tests.conftest import REPO

FILE = "people.yaml"


def yaml_text(body: str) -> str:
    """Dedented YAML; line 1 is the first line of ``body``."""
    return textwrap.dedent(body).lstrip("\n")


def problems_of(body: str) -> list[Problem]:
    """The problems ``parse_desired`` reports for ``body`` (it must refuse the file)."""
    with pytest.raises(InputError) as caught:
        parse_desired(yaml_text(body), FILE)
    assert caught.value.problems, "InputError without problems"
    return caught.value.problems


def only_problem(body: str) -> Problem:
    problems = problems_of(body)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def assert_problem(problem: Problem, line: int, *fragments: str) -> None:
    assert problem.file == FILE
    assert problem.line == line, str(problem)
    for fragment in fragments:
        assert fragment in problem.message, str(problem)
    assert str(problem).startswith(f"{FILE}:{line}: ")


# --------------------------------------------------------------------------- valid input


def test_valid_file_parses_with_all_fields():
    desired = parse_desired(
        yaml_text(
            """
            version: 1
            defaults:
              invite: true
            teams:
              - alias: dev
                models: [gpt-4o-mini]
                max_budget: 100
                budget_duration: 1mo
                tpm_limit: 1000
                rpm_limit: 10
              - alias: adopted
                id: team-1234
            users:
              - email: Alice@Example.com
                teams: [dev, team-1234]
                role: proxy_admin_viewer
                alias: Alice
                invite: false
              - email: bob@example.com
            """
        ),
        FILE,
    )
    assert desired.source == FILE
    assert [t.alias for t in desired.teams] == ["dev", "adopted"]
    assert desired.spec.defaults.invite is True
    alice, bob = desired.users
    assert alice.key == "alice@example.com"
    assert alice.role == "proxy_admin_viewer"
    assert bob.teams == [] and bob.role is None and bob.invite is None
    assert desired.team_for_ref("team-1234").alias == "adopted"
    assert desired.team_for_ref("dev").max_budget == 100.0


def test_managed_settings_are_only_the_fields_in_the_file():
    desired = parse_desired(
        yaml_text(
            """
            version: 1
            teams:
              - alias: a
                max_budget: null
                models: []
            """
        ),
        FILE,
    )
    assert desired.teams[0].managed_settings == {"models": [], "max_budget": None}


def test_repository_users_yaml_is_valid():
    desired = load_desired(REPO / "users.yaml")
    assert desired.teams and desired.users


def test_committed_schema_is_not_stale():
    assert (REPO / SCHEMA_PATH).read_text(encoding="utf-8") == schema_text()


def test_unreadable_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as caught:
        load_desired(tmp_path / "missing.yaml")
    assert "cannot read file" in str(caught.value)


# --------------------------------------------------------------------------- one error kind each


def test_malformed_yaml_reports_the_line():
    problem = only_problem(
        """
        version: 1
        users:
          - email: a@example.com
           teams: [x]
        """
    )
    assert_problem(problem, 4, "malformed YAML")


def test_empty_file_is_refused():
    assert_problem(only_problem(""), 1, "empty")


def test_top_level_must_be_a_mapping():
    assert_problem(only_problem("- just\n- a list\n"), 1, "mapping")


def test_duplicate_yaml_key_names_both_lines():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: a
            max_budget: 1
            max_budget: 2
        """
    )
    assert_problem(problem, 5, "duplicate key 'max_budget'", "first on line 4")


@pytest.mark.parametrize(
    "body, line, where",
    [
        ("version: 1\nuser:\n  - email: a@example.com\n", 2, "user"),
        ("version: 1\nteams:\n  - alias: a\n    max_budjet: 3\n", 4, "teams.0.max_budjet"),
        ("version: 1\nusers:\n  - email: a@example.com\n    tems: []\n", 4, "users.0.tems"),
        ("version: 1\ndefaults:\n  invites: true\n", 3, "defaults.invites"),
    ],
)
def test_unknown_key_is_reported_where_it_is(body, line, where):
    assert_problem(only_problem(body), line, f"{where}: unknown key")


def test_duplicate_email_is_case_insensitive():
    problem = only_problem(
        """
        version: 1
        users:
          - email: alice@example.com
          - email: bob@example.com
          - email: ALICE@Example.COM
        """
    )
    assert_problem(problem, 5, "duplicate email 'alice@example.com'", "first on line 3")


def test_duplicate_team_alias():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: dev
          - alias: ops
          - alias: dev
        """
    )
    assert_problem(problem, 5, "duplicate team alias 'dev'", "first on line 3")


def test_duplicate_team_id_is_reported():
    problems = problems_of(
        """
        version: 1
        teams:
          - alias: a
            id: team-1
          - alias: b
            id: team-1
        """
    )
    assert any(p.line == 6 and "duplicate team id 'team-1'" in p.message and "first on line 4" in p.message for p in problems), [
        str(p) for p in problems
    ]


def test_duplicate_team_id_is_reported_once_and_truthfully():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: a
            id: team-1
          - alias: b
            id: team-1
        """
    )
    assert "alias" not in problem.message


def test_team_id_equal_to_another_teams_alias_is_ambiguous():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: a
          - alias: b
            id: a
        """
    )
    assert_problem(problem, 5, "'a' is another team's alias")


def test_reference_to_undeclared_team():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: dev
        users:
          - email: a@example.com
            teams:
              - dev
              - ghost
        """
    )
    assert_problem(problem, 8, "unknown team 'ghost'")


def test_same_team_listed_twice_by_alias_and_id():
    problem = only_problem(
        """
        version: 1
        teams:
          - alias: dev
            id: team-1
        users:
          - email: a@example.com
            teams: [dev, team-1]
        """
    )
    assert_problem(problem, 7, "team 'dev' is listed twice")


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@example.com", " a@example.com", "a@@example.com"])
def test_invalid_email(email):
    problem = only_problem(f"version: 1\nusers:\n  - email: '{email}'\n")
    assert_problem(problem, 3, "users.0.email", "not a valid email address")


def test_invalid_role_lists_the_valid_ones():
    problem = only_problem(
        """
        version: 1
        users:
          - email: a@example.com
            role: admin
        """
    )
    assert_problem(problem, 4, "users.0.role: invalid role 'admin'", "internal_user_viewer", "proxy_admin")


@pytest.mark.parametrize(
    "field, raw, line",
    [
        ("max_budget", "lots", 3),
        ("tpm_limit", "1.5", 3),
        ("rpm_limit", "'ten'", 3),
        ("models", "gpt-4o", 3),
        ("max_budget", "-1", 3),
    ],
)
def test_wrong_type_or_range_of_team_field(field, raw, line):
    problem = only_problem(f"version: 1\nteams:\n  - {{alias: a, {field}: {raw}}}\n")
    assert_problem(problem, line, f"teams.0.{field}")


@pytest.mark.parametrize("field", ["tpm_limit", "max_budget"])
def test_boolean_is_not_a_number(field):
    problem = only_problem(f"version: 1\nteams:\n  - alias: a\n    {field}: true\n")
    assert_problem(problem, 4, f"teams.0.{field}")


@pytest.mark.parametrize(
    "body, line, where",
    [
        ("version: 2\n", 1, "version"),
        ("teams: []\n", 1, "version"),
        ("version: 1\nteams:\n  - alias: 7\n", 3, "teams.0.alias"),
        ("version: 1\nusers:\n  - email: a@example.com\n    teams: dev\n", 4, "users.0.teams"),
        ("version: 1\nusers:\n  - a@example.com\n", 3, "users.0"),
    ],
)
def test_wrong_type_elsewhere(body, line, where):
    assert_problem(only_problem(body), line, where)


@pytest.mark.parametrize("duration", ["30 days", "0d", "1y", "d", "30D"])
def test_bad_budget_duration(duration):
    problem = only_problem(f"version: 1\nteams:\n  - alias: a\n    budget_duration: '{duration}'\n")
    assert_problem(problem, 4, "teams.0.budget_duration", "LiteLLM duration")


@pytest.mark.parametrize("duration", ["30s", "30m", "12h", "30d", "2w", "1mo"])
def test_good_budget_duration(duration):
    desired = parse_desired(f"version: 1\nteams:\n  - alias: a\n    budget_duration: {duration}\n", FILE)
    assert desired.teams[0].budget_duration == duration


@pytest.mark.parametrize(
    "body",
    [
        "version: 1\nteams:\n  - alias: !custom x\n",
        "version: 1\nteams:\n  - &base {alias: a, max_budget: 1}\n  - <<: *base\n    alias: b\n",
    ],
)
def test_yaml_tags_are_input_errors_not_crashes(body):
    problems_of(body)


# --------------------------------------------------------------------------- all at once


def test_all_problems_are_reported_in_one_run_sorted_by_line():
    problems = problems_of(
        """
        version: 1
        teams:
          - alias: dev
            budget_duration: 3 days
          - alias: dev
        users:
          - email: a@example.com
            rol: internal_user
          - email: A@example.com
            role: boss
            teams: [ghost]
          - email: nope
            alias: x
            alias: y
        """
    )
    got = [(p.line, p.message.split(":")[0]) for p in problems]
    lines = [p.line for p in problems]
    assert lines == sorted(lines)
    expected = {
        4: "budget_duration",
        5: "duplicate team alias",
        8: "unknown key",
        9: "duplicate email",
        10: "invalid role",
        11: "unknown team",
        12: "not a valid email",
        14: "duplicate key",
    }
    assert sorted({p.line for p in problems}) == sorted(expected), got
    for problem in problems:
        assert expected[problem.line] in problem.message, str(problem)
    text = str(InputError(problems))
    assert text.count(f"{FILE}:") == len(problems)
