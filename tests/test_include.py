"""``include``: a main file and the team files it includes load, check and plan as one file would,
and every problem names the file and line it is in."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from reconciler import desired
from reconciler.desired import InputError, Problem, load_desired, parse_desired
from reconciler.live import OWNER_KEY, LiveMember, LiveState, LiveTeam, LiveUser
from reconciler.plan import Plan, make_plan
from reconciler.schema import schema_text
from tests.conftest import REPO

NOW = datetime(2031, 11, 27, 12, 0, tzinfo=timezone.utc)
LAYOUT = REPO / "tests" / "layouts" / "three_teams"
UNLIMITED = {"models": [], "max_budget": None, "budget_duration": None, "tpm_limit": None, "rpm_limit": None}


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path -> dedented YAML) under ``root``; the path of the first, the main file."""
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return root / next(iter(files))


def problems_of(main: Path) -> list[str]:
    """The problems of loading ``main`` from its directory (so messages name files from there)."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(InputError) as caught:
        patch.chdir(main.parent)
        load_desired(main.name)
    return [str(p) for p in caught.value.problems]


def one_file(main: Path) -> str:
    """The same content as ``main`` and the files it includes, in one file: their teams and users
    appended to the main file's, ``include`` dropped (a plain concatenation, not the loader's)."""
    data = yaml.safe_load(main.read_text(encoding="utf-8"))
    for pattern in data.pop("include"):
        for path in sorted(main.parent.glob(pattern)):
            part = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for section in ("teams", "users"):
                data.setdefault(section, []).extend(part.get(section, []))
    return yaml.safe_dump(data, sort_keys=False)


def live() -> LiveState:
    """A proxy where part of the layout exists: web with another budget and a member the file does not
    list, ml not yet owned by the tool (adopted by id), dan already a managed user."""
    return LiveState(
        users=(
            LiveUser("u-dan", "dan@acme.com", "internal_user", None, (), {OWNER_KEY: {"managed": True}}),
            LiveUser("u-stray", "stray@acme.com", "internal_user", None, ()),
            LiveUser("default_user_id", None, "proxy_admin", None, ()),
        ),
        teams=(
            LiveTeam(
                "t-web", "web", {**UNLIMITED, "max_budget": 10.0}, (LiveMember("u-stray", "user"),), {OWNER_KEY: {}}
            ),
            LiveTeam("team-ml", "ml", UNLIMITED),
        ),
    )


def plan_of(state: desired.DesiredState) -> Plan:
    return make_plan(state, live(), NOW)


# --------------------------------------------------------------------------- the same plan as one file


def test_an_included_layout_plans_exactly_like_the_same_content_in_one_file():
    layout = plan_of(load_desired(LAYOUT / "users.yaml"))
    single = plan_of(parse_desired(one_file(LAYOUT / "users.yaml"), str(LAYOUT / "users.yaml")))
    kinds = {a.kind for a in layout.actions}
    assert {"create_team", "update_team", "adopt_team", "create_user", "add_member", "remove_member"} <= kinds
    assert layout.fingerprint == single.fingerprint
    assert [a.to_dict() for a in layout.actions] == [a.to_dict() for a in single.actions]
    assert layout.drift == single.drift and layout.guard == single.guard
    assert json.loads(json.dumps(layout.to_dict(), default=str)) == json.loads(
        json.dumps(single.to_dict(), default=str)
    )
    assert layout.origins.files and not single.origins.files


def test_each_action_knows_the_file_that_declares_its_object():
    plan = plan_of(load_desired(LAYOUT / "users.yaml"))
    by_file: dict[str, set[str]] = {}
    for action in plan.actions:
        file = plan.origins.files.get(action.address, plan.source)
        by_file.setdefault(Path(file).relative_to(LAYOUT).as_posix(), set()).add(action.address)
    assert by_file == {
        "users.yaml": {
            "team.platform",
            "user.root@acme.com",
            "membership.platform.root@acme.com",
            "membership.data.root@acme.com",  # root's entry is in the main file; the team, in data.yaml
            "invitation.root@acme.com",
        },
        "teams/data.yaml": {
            "team.data",
            "user.dora@acme.com",
            "membership.data.dora@acme.com",
            "membership.web.dora@acme.com",  # dora's entry, in data.yaml, joins her to web
            "membership.data.dan@acme.com",
            "invitation.dora@acme.com",
            "invitation.dan@acme.com",
        },
        "teams/ml.yaml": {
            "team.ml",
            "user.mia@acme.com",
            "membership.ml.mia@acme.com",
            "membership.platform.mia@acme.com",
            "invitation.mia@acme.com",
        },
        "teams/web.yaml": {
            "team.web",
            "user.wes@acme.com",
            "membership.web.wes@acme.com",
            "membership.web.stray@acme.com",  # a removal from web's roster: web's leads review it
            "invitation.wes@acme.com",
        },
    }


def test_each_file_has_the_owners_of_its_teams_and_the_main_file_the_admins():
    state = load_desired(LAYOUT / "users.yaml")
    teams = str(LAYOUT / "teams")
    assert state.declarations.owners == {
        str(LAYOUT / "users.yaml"): ("@acme/admins",),
        f"{teams}/data.yaml": ("@acme/data-leads", "@carol"),
        f"{teams}/ml.yaml": ("@acme/ml-leads",),
        f"{teams}/web.yaml": ("@acme/web-leads",),
    }
    assert state.declarations.patterns == ("teams/*.yaml",)
    assert [t.alias for t in state.teams] == ["platform", "data", "ml", "web"]  # main first, then by path


def test_a_file_whose_teams_name_no_owners_is_the_admins(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\nowners: ['@acme/admins']\ninclude: [people/*.yaml]\n",
            "people/a.yaml": "users:\n  - email: a@acme.com\n",
            "people/empty.yaml": "",
        },
    )
    owners = load_desired(main).declarations.owners
    assert list(owners) == [str(main), str(tmp_path / "people" / "a.yaml"), str(tmp_path / "people" / "empty.yaml")]
    assert set(owners.values()) == {("@acme/admins",)}


def test_a_plan_for_an_environment_keeps_the_origins(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": """
                version: 1
                environments: [{name: staging}, {name: production}]
                include: [teams/*.yaml]
            """,
            "teams/a.yaml": """
                teams:
                  - alias: a
                    only_in: [staging]
                    overrides: {staging: {max_budget: 3}}
                users:
                  - email: a@acme.com
                    teams: [a]
            """,
        },
    )
    plan = make_plan(load_desired(main).for_environment("staging"), LiveState(), NOW)
    assert plan.origins.files["team.a"] == str(tmp_path / "teams" / "a.yaml")
    assert plan.origins.files["membership.a.a@acme.com"] == str(tmp_path / "teams" / "a.yaml")


# --------------------------------------------------------------------------- one layout, one set of rules


def test_a_user_may_be_declared_in_one_file_and_joined_to_teams_of_another(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\ninclude: [teams/*.yaml]\nusers:\n  - email: z@acme.com\n    teams: [b]\n",
            "teams/a.yaml": "users:\n  - email: a@acme.com\n    teams: [b, {team: id-b, role: admin}]\n",
            "teams/b.yaml": "teams:\n  - alias: b\n  - alias: c\n    id: id-b\n",
        },
    )
    state = load_desired(main)
    assert {u.email: [desired.team_ref(t) for t in u.teams] for u in state.users} == {
        "z@acme.com": ["b"],
        "a@acme.com": ["b", "id-b"],
    }
    plan = make_plan(state, LiveState(), NOW)
    assert plan.origins.files["membership.c.a@acme.com"] == str(tmp_path / "teams" / "a.yaml")


def test_a_user_or_team_declared_twice_names_both_places(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": """
                version: 1
                include: [teams/*.yaml]
                teams:
                  - alias: dev
                users:
                  - email: Ann@acme.com
            """,
            "teams/a.yaml": """
                teams:
                  - alias: ops
                users:
                  - email: bob@acme.com
                  - email: ann@acme.com
            """,
            "teams/b.yaml": """
                teams:
                  - alias: dev
                  - alias: ops
                users:
                  - email: bob@acme.com
            """,
        },
    )
    assert problems_of(main) == [
        "teams/a.yaml:5: duplicate email 'ann@acme.com' (first on users.yaml:6)",
        "teams/b.yaml:2: duplicate team alias 'dev' (first on users.yaml:4)",
        "teams/b.yaml:3: duplicate team alias 'ops' (first on teams/a.yaml:2)",
        "teams/b.yaml:5: duplicate email 'bob@acme.com' (first on teams/a.yaml:4)",
    ]


def test_errors_point_at_the_included_file_and_line_numbered_as_that_file(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": """
                version: 1
                include: [teams/*.yaml]
                teams:
                  - alias: main-team
                users:
                  - email: m@acme.com
            """,
            "teams/a.yaml": """
                teams:
                  - alias: a
                    max_budget: -1
                users:
                  - email: not-an-email
                  - email: u@acme.com
                    teams: [a, nowhere]
                    only_in: [prod]
                    role: boss
            """,
        },
    )
    assert problems_of(main) == [
        "teams/a.yaml:3: teams.0.max_budget: Input should be greater than or equal to 0",
        "teams/a.yaml:5: users.0.email: 'not-an-email' is not a valid email address: it must contain exactly one '@'",
        "teams/a.yaml:7: users.1.teams: unknown team 'nowhere'; declare it under 'teams'",
        "teams/a.yaml:8: users.1.only_in: users.yaml declares no environments; add an 'environments' list first",
        "teams/a.yaml:9: users.1.role: invalid role 'boss'; expected one of proxy_admin, proxy_admin_viewer, "
        "internal_user, internal_user_viewer",
    ]


def test_broken_yaml_in_an_included_file_is_reported_at_its_line_with_the_other_files_problems(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\ninclude: [teams/*.yaml]\n",
            "teams/a.yaml": "teams:\n  - alias: a\n    alias: b\n",
            "teams/b.yaml": "teams:\n  - alias: [unclosed\n",
            "teams/c.yaml": "teams:\n  - alias: c\n    owners: [@acme/c]\n",
        },
    )
    assert problems_of(main) == [
        "teams/a.yaml:3: duplicate key 'alias' (first on line 2)",
        "teams/b.yaml:3: malformed YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence that starts on line 2)",
        "teams/c.yaml:3: malformed YAML: a value cannot start with '@' unquoted; write an owner as '@org/team'",
    ]


def test_an_included_file_holds_only_teams_and_users_and_includes_nothing(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\ninclude: [teams/*.yaml]\n",
            "teams/a.yaml": """
                include: [more/*.yaml]
                version: 1
                removals: {users: true}
                owners: ['@acme/a']
                colour: blue
                teams: {alias: a}
            """,
            "teams/b.yaml": "- alias: b\n",
        },
    )
    assert problems_of(main) == [
        "teams/a.yaml:1: include: an included file may not include further files; list every pattern in the "
        "include of users.yaml",
        "teams/a.yaml:2: 'version' belongs in the main file (users.yaml); an included file holds only teams and users",
        "teams/a.yaml:3: 'removals' belongs in the main file (users.yaml); an included file holds only teams and users",
        "teams/a.yaml:4: 'owners' belongs in the main file (users.yaml); an included file holds only teams and users",
        "teams/a.yaml:5: unknown key 'colour'; an included file holds only teams and users",
        "teams/a.yaml:6: teams: Input should be a valid list",
        "teams/b.yaml:1: the top level must be a mapping with 'teams' and 'users'",
    ]


# --------------------------------------------------------------------------- patterns and paths


def test_patterns_are_relative_below_the_main_file_and_each_must_match(tmp_path):
    (tmp_path / "outside.yaml").write_text("teams: []\n")
    main = write(
        tmp_path / "repo",
        {
            "users.yaml": """
                version: 1
                include:
                  - ../*.yaml
                  - /etc/*.conf
                  - teams/./*.yaml
                  - 'teams/a b.yaml'
                  - teams/x**.yaml
                  - missing/*.yaml
                  - 3
            """,
        },
    )
    assert [p.split(": ", 1)[1] for p in problems_of(main)] == [
        "include.0: '../*.yaml': '.' and '..' are not allowed; patterns stay below the main file's directory",
        "include.1: '/etc/*.conf' is not a relative glob pattern such as teams/*.yaml: use letters, digits, "
        "'.', '_', '-', '/' and the wildcards * ? **",
        "include.2: 'teams/./*.yaml': '.' and '..' are not allowed; patterns stay below the main file's directory",
        "include.3: 'teams/a b.yaml' is not a relative glob pattern such as teams/*.yaml: use letters, digits, "
        "'.', '_', '-', '/' and the wildcards * ? **",
        "include.4: 'teams/x**.yaml': '**' must be a whole part of the path, as in teams/**/*.yaml",
        "include.5: 'missing/*.yaml' matches no file in the main file's directory",
        "include.6: expected a glob pattern such as teams/*.yaml",
    ]


def test_a_link_the_main_file_itself_and_an_unnameable_path_are_refused(tmp_path):
    (tmp_path / "elsewhere.yaml").write_text("teams: []\n")
    main = write(
        tmp_path / "repo",
        {"users.yaml": "version: 1\ninclude: ['*.yaml', 'teams/*']\n", "teams/ok.yaml": "teams: []\n"},
    )
    (main.parent / "teams" / "link.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    (main.parent / "teams" / "café.yaml").write_text("teams: []\n")
    (main.parent / "teams" / "archive").mkdir()  # a directory a pattern matches is skipped
    problems = problems_of(main)
    assert problems == [
        "users.yaml:2: include.0: users.yaml: that is the main file itself",
        "users.yaml:2: include.1: teams/café.yaml: name it with letters, digits, '.', '_', '-' and '/' only, "
        "so that a CODEOWNERS line can name it",
        "users.yaml:2: include.1: teams/link.yaml: a symbolic link, or in a linked directory: CODEOWNERS "
        "protects a path, so an included file must be the file at its path",
    ]


def test_included_files_are_read_in_sorted_order_each_once(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\ninclude: ['teams/b*.yaml', 'teams/*.yaml', 'teams/**/*.yaml']\n",
            "teams/b.yaml": "teams: [{alias: b}]\n",
            "teams/a.yaml": "teams: [{alias: a}]\n",
            "teams/deep/c.yaml": "teams: [{alias: c}]\n",
        },
    )
    state = load_desired(main)
    assert [t.alias for t in state.teams] == ["a", "b", "c"]
    assert list(state.declarations.owners)[1:] == [
        str(tmp_path / "teams" / n) for n in ("a.yaml", "b.yaml", "deep/c.yaml")
    ]


def test_parse_desired_finds_included_files_from_the_file_it_is_named(tmp_path):
    write(tmp_path, {"teams/a.yaml": "teams: [{alias: a}]\n"})
    state = parse_desired("version: 1\ninclude: [teams/*.yaml]\n", str(tmp_path / "users.yaml"))
    assert [t.alias for t in state.teams] == ["a"]


# --------------------------------------------------------------------------- caps per file and in total


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "users.yaml": "version: 1\ninclude: [teams/*.yaml]\n",
            "teams/a.yaml": "users:\n  - email: a@acme.com\n  - email: b@acme.com\n",
            "teams/b.yaml": "users:\n  - email: c@acme.com\n  - email: d@acme.com\n",
        },
    )


def test_the_node_cap_counts_every_file(monkeypatch, two_files):
    monkeypatch.setattr(desired, "MAX_NODES", 20)  # the main file takes 6, a.yaml 9, b.yaml 9
    assert problems_of(two_files) == [
        "teams/b.yaml:2: more than 20 YAML nodes (keys, values, lists and mappings) in all files together are "
        "not allowed; a user takes about 10, 100,000 users about 1,000,000"
    ]


def test_the_size_cap_counts_every_file(monkeypatch, two_files):
    monkeypatch.setattr(desired, "MAX_FILE_BYTES", 100)  # 39 + 48 + 48 bytes
    assert problems_of(two_files) == [
        "teams/b.yaml: file too large: with the files read before it, the files are over 100 bytes (0 MiB)"
    ]


def test_the_item_cap_counts_the_entries_of_every_file(monkeypatch, two_files):
    monkeypatch.setattr(desired, "MAX_ITEMS", 3)
    assert problems_of(two_files) == ["teams/b.yaml:3: users: more than 3 items in all files together are not allowed"]


def test_the_number_of_files_is_capped(monkeypatch, two_files):
    monkeypatch.setattr(desired, "MAX_INCLUDED_FILES", 1)
    assert problems_of(two_files) == ["users.yaml:2: include.0: the patterns match more than 1 files"]


# --------------------------------------------------------------------------- owners


def test_owners_are_github_handles_each_once(tmp_path):
    main = write(
        tmp_path,
        {
            "users.yaml": "version: 1\nowners: []\ninclude: [t.yaml]\n",
            "t.yaml": """
                teams:
                  - alias: a
                    owners: ['@acme/a-team', '@Acme/A-Team']
                  - alias: b
                    owners: ['@-acme', 'acme', '@acme/', '@acme/a/b', '@acme--x', '@acme/a team']
            """,
        },
    )
    handle = "is not a GitHub user or team handle such as '@alice' or '@org/team'"
    wrong = ["@-acme", "acme", "@acme/", "@acme/a/b", "@acme--x", "@acme/a team"]
    assert problems_of(main) == [
        "t.yaml:3: teams.0.owners: an owner is listed twice",
        *(f"t.yaml:5: teams.1.owners.{i}: {value!r} {handle}" for i, value in enumerate(wrong)),
        "users.yaml:2: owners: List should have at least 1 item after validation, not 0",
    ]


def test_owners_of_a_team_in_the_main_file_are_valid_but_a_warning_says_they_do_not_review_it():
    state = parse_desired("version: 1\nteams:\n  - alias: a\n    owners: ['@acme/a']\n", "users.yaml")
    assert state.warnings == (
        Problem(
            "users.yaml",
            4,
            "teams.0.owners: a team in the main file is reviewed by the main file's owners, not its own: "
            "CODEOWNERS names files; move the team to an included file for these to review it",
        ),
    )


# --------------------------------------------------------------------------- the JSON Schema


def test_the_json_schema_covers_the_main_file_and_the_files_it_includes():
    schema = json.loads(schema_text())
    assert schema["oneOf"] == [{"$ref": "#/$defs/UsersFile"}, {"$ref": "#/$defs/IncludedFile"}]
    main, included = schema["$defs"]["UsersFile"], schema["$defs"]["IncludedFile"]
    assert {"include", "owners", "version"} <= set(main["properties"]) and main["required"] == ["version"]
    assert set(included["properties"]) == {"teams", "users"} and included["additionalProperties"] is False
    assert "owners" in schema["$defs"]["TeamSpec"]["properties"]
    assert "owners" not in schema["$defs"]["TeamSettings"]["properties"]  # not per environment
