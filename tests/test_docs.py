"""The documentation stays true: the README is a first screen, every YAML example in README.md and docs/
is valid (a users.yaml through the real loader), compose.yaml starts a pinned, health-checked proxy, and
every relative link (and its #anchor) leads somewhere. Offline: no proxy, no docker."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from reconciler.desired import load_desired, parse_desired

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
#: Every Markdown page whose YAML examples and links are checked.
PAGES = [README, *DOCS, REPO / "bench" / "README.md", REPO / "CHANGELOG.md"]
#: The top-level keys of a users.yaml (a block with only these, and no version, is a fragment of one).
USERS_KEYS = {"version", "defaults", "environments", "organizations", "removals", "teams", "users"}

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str  # the info string: language first
    text: str

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page (a fence closes on the same character, at least as long)."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence):
                if not closing["info"].strip():
                    break
            body.append(lines[i][len(opening["indent"]) :] if lines[i].startswith(opening["indent"]) else lines[i])
            i += 1
        else:
            raise AssertionError(f"{page.relative_to(REPO)}:{start + 1}: a code block is never closed")
        found.append(Block(page, start + 1, opening["info"].strip(), "\n".join(body) + "\n"))
        i += 1
    return found


def yaml_blocks() -> list[Block]:
    return [b for page in PAGES if page.exists() for b in blocks(page) if b.language in ("yaml", "yml")]


def is_users_yaml(block: Block) -> bool:
    """A users.yaml (or a fragment of one): marked ``users.yaml`` after the language, or a mapping whose
    top-level keys are all users.yaml's, ``version`` or ``teams``/``users`` among them."""
    if "users.yaml" in block.info.split()[1:]:
        return True
    data = yaml.safe_load(block.text)
    return isinstance(data, dict) and bool(data) and set(data) <= USERS_KEYS


def _id(block: Block) -> str:
    return str(block)


# ------------------------------------------------------------------------------------------------ README


def test_readme_is_a_first_screen() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_keeps_the_commands_ci_runs() -> None:
    """.ci/run and tests.yml install and test 'as the README says' and name these sections."""
    text = README.read_text(encoding="utf-8")
    assert re.search(r"^## Install and run$", text, re.M) and re.search(r"^## Run the tests$", text, re.M)
    assert "python3 -m venv .venv && .venv/bin/pip install --quiet -e '.[test]'" in text
    assert ".venv/bin/python -m pytest" in text
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv\n.venv/bin/pip install --quiet -e '.[test]'" in ci
    assert "../shared/litellm-proxy/start.sh" in text and "docker compose up --wait" in text


def test_readme_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [p.name for p in DOCS if f"(docs/{p.name}" not in text]
    assert not missing, f"README.md's table of contents misses {missing}"


# ------------------------------------------------------------------------------------------------ YAML


def test_there_are_users_yaml_examples() -> None:
    """The detection below finds the examples (a change of fences would otherwise pass every test)."""
    found = [b for b in yaml_blocks() if is_users_yaml(b)]
    assert len(found) >= 5 and any(b.page == README for b in found)


@pytest.mark.parametrize("block", yaml_blocks(), ids=_id)
def test_yaml_example_is_valid(block: Block, tmp_path: Path) -> None:
    """users.yaml examples load with the real loader (a fragment after ``version: 1``); workflow,
    compose and pre-commit examples are YAML."""
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        pytest.fail(f"{block}: not YAML: {exc}")
    if not is_users_yaml(block):
        return
    text = block.text if isinstance(data, dict) and "version" in data else "version: 1\n" + block.text
    if isinstance(data, dict) and "include" in data:
        _load_layout(block, text, tmp_path)
        return
    parse_desired(text, str(block))  # raises InputError with file:line on any problem


#: The first line of a block that is one file of a layout: ``# teams/data.yaml: what it is``.
LAYOUT_FILE = re.compile(r"^# (?P<path>[\w./-]+\.ya?ml):")


def _load_layout(block: Block, text: str, tmp_path: Path) -> None:
    """A main file with ``include:``, loaded with the files the page shows after it (each a block whose
    first line names its path), as they would sit in a repository."""
    (tmp_path / "users.yaml").write_text(text, encoding="utf-8")
    for other in blocks(block.page):
        named = LAYOUT_FILE.match(other.text)
        if other.line > block.line and named and named["path"] != "users.yaml":
            target = tmp_path / named["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(other.text, encoding="utf-8")
    load_desired(tmp_path / "users.yaml")


def test_example_users_yaml_is_valid() -> None:
    parse_desired((REPO / "users.yaml").read_text(encoding="utf-8"), "users.yaml")


# ------------------------------------------------------------------------------------------------ compose


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest", "main-latest", "main-stable")


def test_compose_starts_a_pinned_healthy_proxy() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) >= {"litellm", "db"}
    for name, service in services.items():
        assert _pinned(service["image"]), f"{name}: image {service['image']!r} is not pinned to a release tag"
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name}: no health check"
    litellm, db = services["litellm"], services["db"]
    # The version this project's tests run against (tests.yml, .ci/run's default harness).
    assert litellm["image"] == "ghcr.io/berriai/litellm:main-v1.80.5-stable"
    assert re.fullmatch(r"postgres:16(\.\d+)*(-[a-z0-9.]+)?", db["image"])
    assert "/health/readiness" in " ".join(map(str, litellm["healthcheck"]["test"]))
    assert "pg_isready" in " ".join(map(str, db["healthcheck"]["test"]))
    assert litellm["depends_on"]["db"]["condition"] == "service_healthy"
    env = litellm["environment"]
    key = re.fullmatch(r"\$\{LITELLM_MASTER_KEY:-(?P<default>[^}]+)\}", env["LITELLM_MASTER_KEY"])
    assert key and key["default"].startswith("sk-") and "local" in key["default"]
    assert "@db:5432/" in env["DATABASE_URL"]
    assert any(str(p).endswith(":4000") for p in litellm["ports"])


# ------------------------------------------------------------------------------------------------ links

LINK = re.compile(r"(?<!!)\[(?:[^\]`]|`[^`]*`)*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


def _prose(page: Path, blank_code: bool = True) -> list[tuple[int, str]]:
    """The page's lines outside code blocks (inline code blanked unless asked), with their numbers."""
    fenced: set[int] = set()
    for block in blocks(page):
        fenced.update(range(block.line, block.line + block.text.count("\n") + 2))
    lines = page.read_text(encoding="utf-8").splitlines()
    return [
        (n, re.sub(r"`[^`]*`", "``", line) if blank_code else line)
        for n, line in enumerate(lines, 1)
        if n not in fenced
    ]


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", title)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(c for c in text.lower() if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2... as on GitHub."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    for _, line in _prose(page, blank_code=False):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading["title"])
            found.add(f"{base}-{repeats[base]}" if base in repeats else base)
            repeats[base] = repeats.get(base, 0) + 1
    return found


def relative_links() -> list[tuple[Path, int, str]]:
    found = []
    for page in PAGES:
        if not page.exists():
            continue
        for n, line in _prose(page):
            for match in LINK.finditer(line):
                target = match["target"].strip("<>")
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    found.append((page, n, target))
    return found


def test_pages_have_links() -> None:
    assert len(relative_links()) > 30


@pytest.mark.parametrize("page,line,target", relative_links(), ids=lambda v: str(v))
def test_relative_link_leads_somewhere(page: Path, line: int, target: str) -> None:
    where = f"{page.relative_to(REPO)}:{line}: {target}"
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{where}: no such file"
    assert REPO in resolved.parents or resolved == REPO, f"{where}: outside the repository"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{where}: no heading #{anchor} in {resolved.relative_to(REPO)}"


def test_anchors_are_githubs(tmp_path: Path) -> None:
    assert slug("Taking access away: ownership, removals, export") == "taking-access-away-ownership-removals-export"
    assert slug("`users.yaml` reference") == "usersyaml-reference"
    assert slug("2. Create the keys and secrets") == "2-create-the-keys-and-secrets"
    assert "no-such-heading" not in anchors(REPO / "docs" / "github.md")
    page = tmp_path / "page.md"
    page.write_text("# Plan\n\n```markdown\n# Not a heading\n```\n\n## Plan\n", encoding="utf-8")
    assert anchors(page) == {"plan", "plan-1"}
