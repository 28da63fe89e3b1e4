"""requirements/action.lock, the hash-locked dependencies of the action's job (it holds the master key), is fresh.

Offline: the lock is compared with pyproject.toml and with what is installed here. Every
declared dependency (and the build backend) is pinned to a version its specifier allows; every
pin has hashes; nothing is unpinned; and the locked packages are exactly the transitive closure
of the declared dependencies, as installed in this environment (markers evaluated for this
Python). Adding a dependency to pyproject.toml without re-locking fails here, saying how to re-lock.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project requires 3.10+, CI runs 3.11/3.12
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "action.lock"
PYPROJECT = REPO / "pyproject.toml"
ACTION = REPO / "action.yml"
REGENERATE = (
    "pip install pip-tools && pip-compile --generate-hashes --allow-unsafe --build-deps-for=wheel "
    "--strip-extras --output-file requirements/action.lock pyproject.toml"
)
HOW = (
    f"re-lock from the repository root with:\n    {REGENERATE}\n"
    "(then `.venv/bin/pip install -e '.[test]'` so this environment matches)"
)
_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)(?P<marker>\s*;.*)?")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def _entries(text: str) -> list[str]:
    """The lock's requirement entries, each with its continuation lines joined; comments dropped."""
    entries, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line and not current:
            continue
        current += " " + line.strip().rstrip("\\").strip()
        if not line.endswith("\\"):
            entries.append(current.strip())
            current = ""
    if current.strip():
        entries.append(current.strip())
    return [e for e in entries if e]


def _lock() -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, hashes)}; fails on any entry that is not `name==version --hash=...`."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    for entry in _entries(LOCK.read_text(encoding="utf-8")):
        requirement, *options = entry.split()
        match = _PIN.fullmatch(requirement)
        assert match, f"{LOCK.name}: {entry[:80]!r} is not pinned with '=='; {HOW}"
        hashes = [o for o in options if _HASH.fullmatch(o)]
        assert hashes and len(hashes) == len(options), (
            f"{LOCK.name}: {requirement} needs --hash=sha256:... options only; {HOW}"
        )
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{LOCK.name}: {name} is pinned twice"
        pins[name] = (Version(match["version"]), hashes)
    return pins


def _declared() -> tuple[list[Requirement], list[Requirement]]:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    runtime = [Requirement(r) for r in data["project"].get("dependencies", [])]
    build = [Requirement(r) for r in data.get("build-system", {}).get("requires", [])]
    return runtime, build


def _applies(requirement: Requirement, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def _closure(roots: list[Requirement], installed_only: bool = False) -> set[str]:
    """Canonical names of ``roots`` and everything they require, as installed here (markers for this Python).

    ``installed_only``: a package that is not installed counts without its requirements (the build
    backend: pip installs it in an isolated build environment, so a venv may well lack it).
    """
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r.name, frozenset(r.extras)) for r in roots if _applies(r)]
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            if installed_only:
                continue
            pytest.fail(
                (
                    f"{name} (required) is not installed in this environment: "
                    f"run `.venv/bin/pip install -e '.[test]'`; if it is new, {HOW}"
                ),
                pytrace=False,
            )
        for text in requires:
            sub = Requirement(text)
            if any(_applies(sub, extra) for extra in ("", *extras)):
                todo.append((sub.name, frozenset(sub.extras)))
    return {name for name, _ in seen}


def test_the_lock_documents_how_to_regenerate_it() -> None:
    head = LOCK.read_text(encoding="utf-8").split("\n", 12)[:12]
    assert any(REGENERATE in line for line in head), f"the top of {LOCK.name} must say how it is made: {REGENERATE}"


def test_every_entry_is_pinned_with_hashes() -> None:
    pins = _lock()
    assert pins, f"{LOCK} is empty"
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no --hash"


def test_every_declared_dependency_is_pinned_within_its_specifier() -> None:
    pins = _lock()
    runtime, build = _declared()
    for requirement in runtime + build:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared in pyproject.toml but not in {LOCK.name}; {HOW}"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, which {requirement} does not allow; {HOW}"
        )


def test_the_lock_holds_exactly_the_transitive_closure_of_the_declared_dependencies() -> None:
    runtime, build = _declared()
    expected = _closure(runtime) | _closure(build, installed_only=True)
    locked = set(_lock())
    missing, extra = sorted(expected - locked), sorted(locked - expected)
    assert not missing and not extra, (
        f"{LOCK.name} is stale: missing {missing or 'nothing'}, not needed {extra or 'nothing'} "
        f"(compared with the dependencies installed here); {HOW}"
    )


def test_the_action_installs_only_from_the_lock() -> None:
    """The job that holds the master key downloads nothing that is not hash-checked."""
    text = ACTION.read_text(encoding="utf-8")
    assert '--require-hashes --no-deps -r "$ACTION_PATH/requirements/action.lock"' in text
    assert '--no-deps --no-build-isolation "$ACTION_PATH"' in text
    installs = [line.strip() for line in text.splitlines() if 'pip" install' in line or "pip install" in line]
    assert len(installs) == 2 and all("--no-deps" in line for line in installs), installs


def test_the_parser_rejects_what_a_lock_must_not_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above would catch an unpinned, unhashed or wrongly pinned entry."""
    good = "click==8.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    for bad in (
        "click>=8.1 \\\n    --hash=sha256:" + "a" * 64 + "\n",
        "click==8.1.0\n",
        "click==8.1.0 --hash=md5:abc\n",
        "-e .\n",
        "https://example.invalid/x.whl\n",
    ):
        lock = tmp_path / "action.lock"
        lock.write_text(good + bad)
        monkeypatch.setattr(sys.modules[__name__], "LOCK", lock)
        with pytest.raises(AssertionError):
            _lock()
    lock.write_text(good)
    assert _lock() == {"click": (Version("8.1.0"), ["--hash=sha256:" + "a" * 64])}


def test_a_dependency_added_without_relocking_fails_with_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a developer sees after adding a dependency to pyproject.toml and forgetting the lock."""
    added = tmp_path / "pyproject.toml"
    added.write_text(
        PYPROJECT.read_text(encoding="utf-8").replace(
            "dependencies = [\n", 'dependencies = [\n    "packaging>=20",\n', 1
        )
    )
    monkeypatch.setattr(sys.modules[__name__], "PYPROJECT", added)
    assert any(r.name == "packaging" for r in _declared()[0])
    for check in (
        test_every_declared_dependency_is_pinned_within_its_specifier,
        test_the_lock_holds_exactly_the_transitive_closure_of_the_declared_dependencies,
    ):
        with pytest.raises(AssertionError) as failed:
            check()
        assert "packaging" in str(failed.value) and REGENERATE in str(failed.value)
