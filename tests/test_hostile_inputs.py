"""Hostile and broken users.yaml files, as ``plan`` meets them in a pull request.

Each one must be refused with exit code 1 and exactly one located message, in well
under a second, without a traceback and before a single request reaches the proxy:
the proxy here is a local server that counts every request it gets.

The files are in tests/hostile/; the ones that cannot sensibly be committed (invalid
bytes, special files, 20 MiB) are made by ``GENERATED`` in a scratch directory.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler import desired, limits
from reconciler.desired import InputError, load_desired

from .conftest import REPO

CORPUS = Path(__file__).resolve().parent / "hostile"
SUMMARY = "Error: 1 problem(s) in the input; nothing was sent to the proxy"
#: The whole ``plan`` run, interpreter start included (about 0.25 s on an idle machine).
CLI_SECONDS = 1.5
#: ``load_desired`` alone.
LOADER_SECONDS = 1.0
#: Address space for each ``plan`` (it needs about 50 MiB resident).
MEMORY_CAP = 1 << 30

LOOK_ALIKE = (
    "they differ only in case, compatibility forms or look-alike letters of another script; make them differ visibly"
)
LONG_EMAIL = "u" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 60 + ".com"
#: A list too long: "users: [a, a, a, ...]" of 2 MB took 10 to 28 s and 1.4 to 2 GB, one of 14 MB 11.8 GB.
TOO_MANY_ITEMS = "users: a list of more than 150,000 items is not allowed"

#: Case -> the exact error line ``plan`` prints (the only one before SUMMARY).
EXPECTED: dict[str, str] = {
    "01-alias-bomb.yaml": "error: 01-alias-bomb.yaml:3: YAML anchors and aliases are not allowed: '&a'",
    "02-anchor-without-alias.yaml": (
        "error: 02-anchor-without-alias.yaml:3: YAML anchors and aliases are not allowed: '&dev'"
    ),
    "03-recursive-alias.yaml": "error: 03-recursive-alias.yaml:2: YAML anchors and aliases are not allowed: '&users'",
    "04-merge-key-alias.yaml": "error: 04-merge-key-alias.yaml:5: YAML anchors and aliases are not allowed: '*base'",
    "05-deep-lists.yaml": "error: 05-deep-lists.yaml:2: nesting deeper than 32 levels is not allowed",
    "06-deep-mappings.yaml": "error: 06-deep-mappings.yaml:2: nesting deeper than 32 levels is not allowed",
    "07-deep-block-lists.yaml": "error: 07-deep-block-lists.yaml:34: nesting deeper than 32 levels is not allowed",
    "08-custom-tag.yaml": "error: 08-custom-tag.yaml:5: unknown YAML tag '!whatever'; this file uses no tags",
    "09-python-tag.yaml": (
        "error: 09-python-tag.yaml:5: unknown YAML tag '!!python/object/apply:os.system'; this file uses no tags"
    ),
    "10-standard-tag.yaml": (
        "error: 10-standard-tag.yaml:3: YAML tag '!!str' is not allowed: this file uses no tags, not even standard ones"
    ),
    "11-email-trailing-newline.yaml": (
        "error: 11-email-trailing-newline.yaml:5: users.0.email: 'alice@company.com\\n' is not a valid email address: "
        "it contains a control character"
    ),
    "12-email-nul.yaml": (
        "error: 12-email-nul.yaml:5: users.0.email: 'alice@company.com\\x00' is not a valid email address: "
        "it contains a control character"
    ),
    "13-email-rlo-bidi.yaml": (
        "error: 13-email-rlo-bidi.yaml:5: users.0.email: 'alice@\\u202emoc.ynapmoc' is not a valid email address: "
        "it contains a bidirectional text control"
    ),
    "14-email-display-name.yaml": (
        "error: 14-email-display-name.yaml:5: users.0.email: "
        "'\"Alice\" <alice@company.com>' is not a valid email address: "
        "give only the address, without a display name or angle brackets"
    ),
    "15-email-angle-brackets.yaml": (
        "error: 15-email-angle-brackets.yaml:5: users.0.email: 'alice<eve@evil.example>' is not a valid email address: "
        "give only the address, without a display name or angle brackets"
    ),
    "16-email-crlf-injection.yaml": (
        "error: 16-email-crlf-injection.yaml:5: users.0.email: 'alice@company.com\\r\\nBcc: all@company.com' "
        "is not a valid email address: it contains a control character"
    ),
    "17-email-space.yaml": (
        "error: 17-email-space.yaml:5: users.0.email: "
        "'alice smith@company.com' is not a valid email address: it contains whitespace"
    ),
    "18-email-two-at.yaml": (
        "error: 18-email-two-at.yaml:5: users.0.email: 'alice@evil.example@company.com' is not a valid email address: "
        "it must contain exactly one '@'"
    ),
    "19-email-no-dot-in-domain.yaml": (
        "error: 19-email-no-dot-in-domain.yaml:5: users.0.email: 'alice@localhost' is not a valid email address: "
        "the domain 'localhost' has no dot, as in example.com"
    ),
    "20-email-leading-hyphen-label.yaml": (
        "error: 20-email-leading-hyphen-label.yaml:5: users.0.email: "
        "'alice@-company.com' is not a valid email address: "
        "the domain label '-company' starts or ends with '-'"
    ),
    "21-email-zero-width-space.yaml": (
        "error: 21-email-zero-width-space.yaml:5: users.0.email: "
        "'alice\\u200b@company.com' is not a valid email address: "
        "it contains an invisible formatting character"
    ),
    "22-email-homograph-domain.yaml": (
        "error: 22-email-homograph-domain.yaml:5: users.0.email: "
        "'alice@c\u043empany.com' is not a valid email address: "
        "write the domain in ASCII, as 'xn--cmpany-wqf.com'"
    ),
    "23-invalid-role.yaml": (
        "error: 23-invalid-role.yaml:6: users.0.role: invalid role 'admin'; "
        "expected one of proxy_admin, proxy_admin_viewer, internal_user, internal_user_viewer"
    ),
    "24-unknown-key.yaml": "error: 24-unknown-key.yaml:6: users.0.tems: unknown key 'tems'",
    "25-typo-top-level-key.yaml": "error: 25-typo-top-level-key.yaml:4: user: unknown key 'user'",
    "26-duplicate-email.yaml": (
        "error: 26-duplicate-email.yaml:6: duplicate email 'alice@company.com' (first on line 5)"
    ),
    "27-duplicate-key.yaml": "error: 27-duplicate-key.yaml:7: duplicate key 'role' (first on line 6)",
    "28-unknown-team.yaml": (
        "error: 28-unknown-team.yaml:6: users.0.teams: unknown team 'ops'; declare it under 'teams'"
    ),
    "29-team-listed-twice.yaml": "error: 29-team-listed-twice.yaml:7: users.0.teams: team 'dev' is listed twice",
    "30-version-2.yaml": "error: 30-version-2.yaml:1: version: Input should be 1",
    "31-empty-file.yaml": "error: 31-empty-file.yaml:1: the file is empty; expected at least 'version: 1'",
    "32-top-level-list.yaml": (
        "error: 32-top-level-list.yaml:1: the top level must be a mapping with 'version', 'teams' and 'users'"
    ),
    "33-tab-indentation.yaml": (
        "error: 33-tab-indentation.yaml:3: malformed YAML: a tab cannot start a token; indent with spaces"
    ),
    "34-unclosed-quote.yaml": (
        "error: 34-unclosed-quote.yaml:7: malformed YAML: "
        "found unexpected end of stream (while scanning a quoted scalar that starts on line 5)"
    ),
    "35-budget-negative.yaml": (
        "error: 35-budget-negative.yaml:4: teams.0.max_budget: Input should be greater than or equal to 0"
    ),
    "36-budget-string.yaml": "error: 36-budget-string.yaml:4: teams.0.max_budget: Input should be a valid number",
    "37-tpm-beyond-bigint.yaml": (
        "error: 37-tpm-beyond-bigint.yaml:4: teams.0.tpm_limit: "
        "Input should be less than or equal to 9223372036854775807"
    ),
    "38-bad-duration.yaml": (
        "error: 38-bad-duration.yaml:4: teams.0.budget_duration: "
        "'30 days' is not a LiteLLM duration such as 30d, 12h or 1mo"
    ),
    "39-id-empty-string.yaml": "error: 39-id-empty-string.yaml:4: teams.0.id: String should have at least 1 character",
    "40-yes-as-alias.yaml": "error: 40-yes-as-alias.yaml:3: teams.0.alias: Input should be a valid string",
    "41-huge-integer.yaml": (
        "error: 41-huge-integer.yaml:4: a value of 5,000 characters is not allowed: "
        "none in this file needs more than 1024"
    ),
    "42-float-nan.yaml": "error: 42-float-nan.yaml:4: teams.0.max_budget: Input should be a finite number",
    "43-invalid-date.yaml": (
        "error: 43-invalid-date.yaml:3: '2024-13-45' looks like a YAML timestamp but is not a valid one; "
        "quote it if it is text"
    ),
    "44-two-documents.yaml": (
        "error: 44-two-documents.yaml:2: malformed YAML: expected a single document, but found another document"
    ),
    "45-list-as-key.yaml": "error: 45-list-as-key.yaml:2: unsupported YAML: a mapping or list cannot be used as a key",
    "46-duplicate-team-alias.yaml": (
        "error: 46-duplicate-team-alias.yaml:4: duplicate team alias 'dev' (first on line 3)"
    ),
    "47-float-infinity-budget.yaml": (
        "error: 47-float-infinity-budget.yaml:4: teams.0.max_budget: Input should be a finite number"
    ),
    "48-binary-tag.yaml": (
        "error: 48-binary-tag.yaml:3: YAML tag '!!binary' is not allowed: this file uses no tags, "
        "not even standard ones"
    ),
    "49-alias-zero-width-space.yaml": (
        "error: 49-alias-zero-width-space.yaml:3: teams.0.alias: 'dev\\u200b' is refused: "
        "it contains a zero-width character, U+200B ZERO WIDTH SPACE"
    ),
    "50-alias-bidi-override.yaml": (
        "error: 50-alias-bidi-override.yaml:3: teams.0.alias: 'admins\\u202e' is refused: "
        "it contains a bidirectional text control, U+202E RIGHT-TO-LEFT OVERRIDE"
    ),
    "51-alias-no-break-space.yaml": (
        "error: 51-alias-no-break-space.yaml:3: teams.0.alias: 'data\\xa0science' is refused: "
        "it contains a non-breaking or special space (use a plain space), U+00A0 NO-BREAK SPACE"
    ),
    "52-alias-nul-escape.yaml": (
        "error: 52-alias-nul-escape.yaml:3: teams.0.alias: 'dev\\x00' is refused: "
        "it contains a control character, U+0000"
    ),
    "53-alias-trailing-space.yaml": (
        "error: 53-alias-trailing-space.yaml:3: teams.0.alias: 'dev ' is refused: it starts or ends with whitespace"
    ),
    "54-alias-cyrillic-letter.yaml": (
        "error: 54-alias-cyrillic-letter.yaml:3: teams.0.alias: 'd\u0435v' could pass for another name: "
        "the word 'd\u0435v' mixes Cyrillic and Latin letters, which look alike; write each word in one script"
    ),
    "55-alias-fullwidth.yaml": (
        "error: 55-alias-fullwidth.yaml:3: teams.0.alias: '\uff44\uff45\uff56' could pass for another name: "
        "U+FF44 FULLWIDTH LATIN SMALL LETTER D is a variant of 'd'; write 'dev'"
    ),
    "56-look-alike-aliases.yaml": (
        "error: 56-look-alike-aliases.yaml:4: teams.1.alias: '\u041e\u0420\u0405' can be taken for team alias 'OPS' "
        f"(line 3): {LOOK_ALIKE}"
    ),
    "57-look-alike-by-case.yaml": (
        f"error: 57-look-alike-by-case.yaml:4: teams.1.alias: 'Admins' can be taken for team alias 'admins' (line 3): "
        f"{LOOK_ALIKE}"
    ),
    "58-user-alias-bidi.yaml": (
        "error: 58-user-alias-bidi.yaml:4: users.0.alias: 'Alice \\u2066Admin' is refused: "
        "it contains a bidirectional text control, U+2066 LEFT-TO-RIGHT ISOLATE"
    ),
    "59-duration-too-long.yaml": (
        "error: 59-duration-too-long.yaml:4: teams.0.budget_duration: '99999999999d' is longer than 5 years, "
        "the most a file may set: 1826d or 260w or 60mo"
    ),
    "60-email-too-long.yaml": (
        f"error: 60-email-too-long.yaml:3: users.0.email: {LONG_EMAIL!r} is not a valid email address: "
        "the address is longer than 254 characters"
    ),
    # Made by GENERATED:
    "g-non-utf8.yaml": "error: g-non-utf8.yaml:3:15: not UTF-8: byte 0xff",
    "g-utf16.yaml": "error: g-utf16.yaml:1:1: not UTF-8: byte 0xff",
    "g-nul-byte.yaml": "error: g-nul-byte.yaml:3:15: control character U+0000 is not allowed",
    "g-escape-sequence.yaml": "error: g-escape-sequence.yaml:3:12: control character U+001B is not allowed",
    "g-sexagesimal-bomb.yaml": (
        "error: g-sexagesimal-bomb.yaml:4: a value of 200,001 characters is not allowed: "
        "none in this file needs more than 1024"
    ),
    "g-over-20-mib.yaml": "error: g-over-20-mib.yaml: file too large: over 20971520 bytes (20 MiB)",
    "g-wide-2-mb.yaml": f"error: g-wide-2-mb.yaml:2: {TOO_MANY_ITEMS}",
    "g-wide-14-mb.yaml": f"error: g-wide-14-mb.yaml:2: {TOO_MANY_ITEMS}",
    "g-200000-models.yaml": (
        "error: g-200000-models.yaml:4: users.0.models: a list of more than 150,000 items is not allowed"
    ),
    "g-megabyte-alias.yaml": (
        "error: g-megabyte-alias.yaml:3: a value of 1,048,576 characters is not allowed: "
        "none in this file needs more than 1024"
    ),
    "g-symlink-to-dev-zero.yaml": "error: g-symlink-to-dev-zero.yaml: not a regular file (a device or socket)",
    "g-fifo.yaml": "error: g-fifo.yaml: not a regular file (a FIFO)",
    "g-missing.yaml": "error: g-missing.yaml: cannot read file: No such file or directory",
    # click checks the argument first; the loader's own answer is in LOADER_ONLY.
    "g-directory.yaml": "Error: Invalid value for '[FILE]': File 'g-directory.yaml' is a directory.",
}
#: What ``load_desired`` says where the command line refuses the argument before loading.
LOADER_ONLY = {"g-directory.yaml": "g-directory.yaml: not a regular file (a directory)"}


def _sparse(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(desired.MAX_FILE_BYTES + 1)  # no disk used; 20 MiB of zeros to whoever reads it


def _wide(size: int) -> Callable[[Path], object]:
    """``users: [a, a, a, ...]`` of ``size`` bytes."""
    return lambda path: path.write_text("version: 1\nusers: [" + "a, " * ((size - 20) // 3) + "a]\n")


GENERATED: dict[str, Callable[[Path], object]] = {
    "g-non-utf8.yaml": lambda p: p.write_bytes(b"version: 1\nusers:\n  - email: caf\xff@company.com\n"),
    "g-utf16.yaml": lambda p: p.write_bytes("version: 1\n".encode("utf-16")),
    "g-nul-byte.yaml": lambda p: p.write_bytes(b"version: 1\nteams:\n  - alias: dev\x00\n"),
    "g-escape-sequence.yaml": lambda p: p.write_bytes(b"version: 1\nteams:\n  - alias: \x1b[2Jdev\n"),
    "g-sexagesimal-bomb.yaml": lambda p: p.write_text(
        "version: 1\nteams:\n  - alias: dev\n    tpm_limit: 1" + ":1" * 100_000 + "\n"
    ),
    "g-over-20-mib.yaml": _sparse,
    "g-wide-2-mb.yaml": _wide(2 * 10**6),
    "g-wide-14-mb.yaml": _wide(14 * 10**6),
    "g-200000-models.yaml": lambda p: p.write_text(
        "version: 1\nusers:\n  - email: a@company.com\n    models: [" + ", ".join(["m"] * 200_000) + "]\n"
    ),
    "g-megabyte-alias.yaml": lambda p: p.write_text("version: 1\nteams:\n  - alias: " + "a" * 2**20 + "\n"),
    "g-symlink-to-dev-zero.yaml": lambda p: p.symlink_to("/dev/zero"),
    "g-fifo.yaml": lambda p: os.mkfifo(p),
    "g-missing.yaml": lambda p: None,
    "g-directory.yaml": lambda p: p.mkdir(),
}


class CountingProxy(ThreadingHTTPServer):
    """Answers every request with a 500 and remembers it."""

    requests: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: CountingProxy

    def _answer(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        body = b'{"error": "the hostile-input test proxy answers nothing"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the requests are counted, not logged."""


@pytest.fixture(scope="module")
def proxy() -> Iterator[CountingProxy]:
    server = CountingProxy(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def plan(folder: Path, name: str, server: CountingProxy) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m reconciler plan NAME`` in ``folder`` against ``server``, and its wall time."""
    env = {
        **os.environ,
        "LITELLM_PROXY_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "LITELLM_MASTER_KEY": "sk-hostile-input-test",
        "LITELLM_API_KEY": "",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        ),  # this checkout, whatever is installed
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", name],
        check=False,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_cap_memory,
    )
    return result, time.perf_counter() - started


def _cap_memory() -> None:
    """Should a refusal regress, reading /dev/zero ends in a MemoryError, not in a machine
    out of memory. (Runs between fork and exec: only a system call, no locks or imports.)"""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def case_folder(name: str, tmp_path: Path) -> Path:
    """Where ``name`` is: the corpus, or a scratch directory it was just made in."""
    if name not in GENERATED:
        return CORPUS
    GENERATED[name](tmp_path / name)
    return tmp_path


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(set(EXPECTED) - set(GENERATED))
    assert len(EXPECTED) >= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_refuses_hostile_input_before_any_request(
    name: str, proxy: CountingProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = case_folder(name, tmp_path)
    before = len(proxy.requests)

    result, seconds = plan(folder, name, proxy)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    expected = EXPECTED[name]
    if name in LOADER_ONLY:
        assert expected in result.stderr.splitlines(), result.stderr
    else:
        assert result.stderr.splitlines() == [expected, SUMMARY]
    assert result.stdout == ""
    assert proxy.requests[before:] == []
    assert seconds < CLI_SECONDS, f"{seconds:.2f}s"

    # The loader alone, in this process: the same single problem, well under a second.
    monkeypatch.chdir(folder)
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        load_desired(name)
    assert time.perf_counter() - started < LOADER_SECONDS
    assert [str(p) for p in caught.value.problems] == [LOADER_ONLY.get(name, expected.removeprefix("error: "))]


def test_the_counting_proxy_sees_a_valid_file(proxy: CountingProxy, tmp_path: Path) -> None:
    """The control case: a valid file (with a BOM and CRLF line ends) does reach the proxy,
    so the zero counts above mean the hostile files were stopped, not the requests lost."""
    (tmp_path / "users.yaml").write_bytes(
        b"\xef\xbb\xbfversion: 1\r\nteams:\r\n  - alias: dev\r\nusers:\r\n  - email: alice@company.com\r\n"
        b"    teams: [dev]\r\n"
    )
    before = len(proxy.requests)

    result, _ = plan(tmp_path, "users.yaml", proxy)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "problem(s) in the input" not in result.stderr
    assert len(proxy.requests) > before


# --------------------------------------------------------------------------- wide files, in memory

#: Loads ``sys.argv[1]`` and prints the one problem and the process's peak resident memory in MB.
_MEASURE = """
import resource, sys
from reconciler.desired import InputError, load_desired
try:
    load_desired(sys.argv[1])
except InputError as exc:
    print(*exc.problems, sep="\\n")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _nested_wide(path: Path) -> None:
    """14 MB of lists of 100,000 one-letter values: no list past MAX_ITEMS, 4.7 million nodes."""
    row = "[" + ", ".join(["a"] * 100_000) + "]"
    path.write_text("version: 1\nusers:\n" + "".join(f"  - {row}\n" for _ in range(47)))


@pytest.mark.parametrize(
    "make, expected",
    [
        (_wide(2 * 10**6), f"wide.yaml:2: {TOO_MANY_ITEMS}"),
        (_wide(14 * 10**6), f"wide.yaml:2: {TOO_MANY_ITEMS}"),
        (
            _nested_wide,
            "wide.yaml:17: more than 1,500,000 YAML nodes (keys, values, lists and mappings) are not allowed; "
            "a user takes about 10, 100,000 users about 1,000,000",
        ),
    ],
    ids=["flat-2-mb", "flat-14-mb", "nested-14-mb"],
)
def test_wide_files_are_refused_within_bounded_memory(make: Callable[[Path], object], expected: str, tmp_path: Path):
    """Refused while parsing, at the item or node past the limit, in well under 1 GB (the address
    space is capped at that, too). Before the limits, the flat 2 MB file took 1.4 GB and 10 s."""
    make(tmp_path / "wide.yaml")
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, "wide.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_cap_memory,
    )
    assert result.returncode == 0, result.stderr
    *problems, peak_mb = result.stdout.splitlines()
    assert problems == [expected]
    assert int(peak_mb) < 600, f"{peak_mb} MB"  # 57, 82 and 327 MB here


# --------------------------------------------------------------------------- patterns

try:
    from re import _parser as _sre  # Python 3.11 and later
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

_REPEATS = {op for op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)) if op}


def _patterns() -> dict[str, re.Pattern[str]]:
    """Every compiled pattern of the modules that read users.yaml, by name."""
    found = {}
    for module in (desired, limits):
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and value not in found.values():
                found[f"{module.__name__}.{name}"] = value
    return found


def _nests_a_repeat(items: Any, inside: bool = False) -> bool:
    """Whether a parsed pattern has a quantifier inside a quantifier: the shape that backtracks."""
    for op, av in items:
        if op in _REPEATS:
            if inside or _nests_a_repeat(av[2], True):
                return True
        elif op is _sre.SUBPATTERN and _nests_a_repeat(av[-1], inside):
            return True
        elif op is _sre.BRANCH and any(_nests_a_repeat(branch, inside) for branch in av[1]):
            return True
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT) and _nests_a_repeat(av[1], inside):
            return True
    return False


def test_no_pattern_nests_quantifiers():
    patterns = _patterns()
    assert len(patterns) >= 6, sorted(patterns)
    nested = [name for name, p in patterns.items() if _nests_a_repeat(_sre.parse(p.pattern, p.flags))]
    assert nested == []
    assert _nests_a_repeat(_sre.parse(r"(?:a+)*b"))  # the check itself sees one


#: Runs every pattern (and PyYAML's rules for plain scalars, as desired.py combines them, and the
#: checks that loop over a value) over hostile megabytes, each a long run of what some pattern
#: repeats and a tail that makes it fail at the very end: the shape that makes backtracking explode.
_MEGABYTE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.test_hostile_inputs import _patterns
from reconciler import desired, limits
n = 2**20
strings = [
    "a" * n + "!", "a." * (n // 2) + ".", "a-" * (n // 2) + "-", "a@" * (n // 2), "a" + "_" * n + "!",
    "1" * n + "d!", "9" * n + "mo", "1:" * (n // 2) + "x", "1" + ":1" * (n // 2) + ".", "1_" * (n // 2) + ".e",
    "." + "0" * n + "e", "2024-01-01" + " " * n + "x", " " * n + "\\t", "\\u202e" * n, "\\u0301" * n,
    "\\u0430a" * (n // 2),
]
matchers = [m for p in _patterns().values() for m in (p.match, p.search, p.fullmatch)]
started = time.process_time()
for text in strings:
    for matcher in [*matchers, desired._TYPED.get(text[:1], str)]:
        matcher(text)
    limits.name_problem(text), limits.nfc(text), desired._email_problem(text)
    try:
        limits.check_duration(text)
    except ValueError:
        pass
print(len(strings), len(matchers), f"{time.process_time() - started:.1f}")
"""


def test_every_pattern_is_linear_on_hostile_megabytes():
    """Not a timing assertion: a pattern that backtracks would run for hours on these, and the
    timeout (generous, for a loaded machine; it takes a few seconds) turns that into a failure."""
    result = subprocess.run(
        [sys.executable, "-c", _MEGABYTE, str(REPO)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    strings, matchers, _ = result.stdout.split()
    assert int(strings) == 16 and int(matchers) >= 18
