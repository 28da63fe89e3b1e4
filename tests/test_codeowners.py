"""``codeowners``: the CODEOWNERS block for a main file and the files it includes, and ``--check``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.codeowners import BEGIN, END, codeowners
from tests.conftest import REPO

LAYOUT = REPO / "tests" / "layouts" / "three_teams"
#: The block for the layout, copied into config/ of a repository.
EXPECTED = [
    BEGIN,
    "/config/users.yaml @acme/admins",
    "/config/teams/*.yaml @acme/admins",
    "/config/teams/data.yaml @acme/data-leads @carol",
    "/config/teams/ml.yaml @acme/ml-leads",
    "/config/teams/web.yaml @acme/web-leads",
    "/.github/CODEOWNERS @acme/admins",
    END,
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree (the current directory) with the layout in config/."""
    (tmp_path / ".git").mkdir()
    shutil.copytree(LAYOUT, tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(codeowners, list(args))


def write_codeowners(repo: Path, lines: list[str], where: str = ".github/CODEOWNERS") -> Path:
    path = repo / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_it_prints_each_file_for_its_owners_and_the_rest_for_the_admins(repo):
    result = run("config/users.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == EXPECTED


def test_paths_start_at_the_root_given(repo):
    result = run("config/users.yaml", "--root", "config")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [line.replace("/config/", "/") for line in EXPECTED]


def test_check_passes_when_codeowners_ends_with_the_block(repo):
    write_codeowners(repo, ["* @acme/everyone", "", *EXPECTED, "# trailing comments are fine", ""])
    result = run("config/users.yaml", "--check")
    assert result.exit_code == 0, result.output
    assert result.stdout == ".github/CODEOWNERS is up to date.\n"


def test_check_fails_on_a_stale_codeowners_naming_each_differing_line(repo):
    stale = [line.replace("@carol", "@mallory") for line in EXPECTED if "ml.yaml" not in line]
    write_codeowners(repo, [*stale, "/config/users.yaml @mallory"])
    result = run("config/users.yaml", "--check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        ".github/CODEOWNERS: missing: /config/teams/data.yaml @acme/data-leads @carol",
        ".github/CODEOWNERS: missing: /config/teams/ml.yaml @acme/ml-leads",
        ".github/CODEOWNERS:4: not expected: /config/teams/data.yaml @acme/data-leads @mallory",
        ".github/CODEOWNERS:8: after the block: GitHub lets the last matching line win, so move it above: "
        "/config/users.yaml @mallory",
        "Error: .github/CODEOWNERS is stale; replace its block with the output of 'litellm-reconciler codeowners'",
    ]


def test_check_fails_when_a_team_file_gets_new_owners(repo):
    write_codeowners(repo, EXPECTED)
    web = repo / "config" / "teams" / "web.yaml"
    web.write_text(web.read_text().replace('["@acme/web-leads"]', '["@acme/web-leads", "@wendy"]'))
    result = run("config/users.yaml", "--check")
    assert result.exit_code == 1
    assert ".github/CODEOWNERS: missing: /config/teams/web.yaml @acme/web-leads @wendy" in result.stderr


def test_check_reads_the_codeowners_github_reads_or_the_one_given(repo):
    write_codeowners(repo, EXPECTED, "docs/CODEOWNERS")
    assert run("config/users.yaml", "--check").exit_code == 1  # its block names .github/CODEOWNERS
    expected = [line.replace("/.github/CODEOWNERS", "/docs/CODEOWNERS") for line in EXPECTED]
    write_codeowners(repo, expected, "docs/CODEOWNERS")
    assert run("config/users.yaml", "--check").stdout == "docs/CODEOWNERS is up to date.\n"
    result = run("config/users.yaml", "--check", "docs/CODEOWNERS")
    assert result.exit_code == 0, result.output
    write_codeowners(repo, EXPECTED, "CODEOWNERS")  # GitHub reads the root's before docs/
    assert run("config/users.yaml", "--check").exit_code == 1


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "Error: there is no .github/CODEOWNERS; write the output of 'litellm-reconciler codeowners' into it"),
        ("* @acme/everyone", ".github/CODEOWNERS has no litellm-reconciler block"),
        ("\n".join(EXPECTED[:-1]), ".github/CODEOWNERS:1: the block has no end line"),
        ("\n".join([EXPECTED[0], *reversed(EXPECTED[1:-1]), EXPECTED[-1]]), "the lines are in another order"),
    ],
    ids=["missing", "no-block", "no-end", "order"],
)
def test_check_fails_without_a_complete_block_in_order(repo, text, message):
    if text is not None:
        write_codeowners(repo, [text])
    result = run("config/users.yaml", "--check")
    assert result.exit_code == 1
    assert message in result.stderr


def test_the_main_file_must_name_its_owners(repo):
    main = repo / "config" / "users.yaml"
    main.write_text(main.read_text().replace('owners: ["@acme/admins"]\n', ""))
    result = run("config/users.yaml")
    assert result.exit_code == 1
    assert "config/users.yaml names no owners: add the admins who review it, e.g. owners: ['@org/admins']" in (
        result.stderr
    )


def test_an_invalid_layout_lists_its_problems(repo):
    (repo / "config" / "teams" / "web.yaml").write_text("teams:\n  - alias: web\n    owners: ['@acme/web leads']\n")
    result = run("config/users.yaml")
    assert result.exit_code == 1
    assert "error: config/teams/web.yaml:3: teams.0.owners.0: '@acme/web leads' is not a GitHub" in result.stderr


def test_outside_a_git_work_tree_the_root_must_be_given(tmp_path, monkeypatch):
    shutil.copytree(LAYOUT, tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    result = run("config/users.yaml")
    assert result.exit_code == 1
    assert "config/users.yaml is not in a git work tree; give the repository root with --root" in result.stderr
    assert run("config/users.yaml", "--root", ".").stdout.splitlines() == EXPECTED
