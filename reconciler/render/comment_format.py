"""The fixed, machine-readable frame of a plan comment, and Markdown escaping for untrusted text.

The Markdown renderer writes this frame and the GitHub glue (:mod:`reconciler.github`) finds
and reads it with the same functions, so the two cannot drift apart.

Every comment the tool writes starts with two fixed lines::

    <!-- litellm-reconciler-plan -->
    <!-- litellm-reconciler-fingerprint: <64 lowercase hex digits> -->

Line 1 (:data:`MARKER`) lets CI find its own comment; line 2 carries the fingerprint of the
plan that reviewers saw. A comment for a file with environments has one section per environment
and line 2 carries each one's fingerprint (``none`` for an environment without a plan)::

    <!-- litellm-reconciler-fingerprints: staging=<64 hex digits> production=none -->
 Comments without a plan (invalid file, no key, failed plan) have
something else on line 2 and so no fingerprint. :func:`parse_fingerprint` reads only these
two lines. Text from the users file or from the proxy can never be there: it is rendered
further down and always through :func:`escape`, which cannot produce a line break, ``<`` or
``>`` (so no HTML comment either).
"""

from __future__ import annotations

import re

from . import visible

MARKER = "<!-- litellm-reconciler-plan -->"
HEADER = "### litellm-reconciler plan"
FINGERPRINT_PREFIX = "<!-- litellm-reconciler-fingerprint: "
FINGERPRINT_SUFFIX = " -->"
_FINGERPRINT_LINE = re.compile(re.escape(FINGERPRINT_PREFIX) + r"([0-9a-f]{64})" + re.escape(FINGERPRINT_SUFFIX))
FINGERPRINTS_PREFIX = "<!-- litellm-reconciler-fingerprints:"
_ENTRY = r"[a-z][a-z0-9_]{0,39}=(?:[0-9a-f]{64}|none)"
_FINGERPRINTS_LINE = re.compile(re.escape(FINGERPRINTS_PREFIX) + f"((?: {_ENTRY})+)" + re.escape(FINGERPRINT_SUFFIX))
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9_]{0,39}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# ASCII punctuation that means something to CommonMark / GitHub Flavored Markdown: emphasis,
# code spans, links and images, strikethrough, tables, headings and lists, and the ':' and '.'
# that extended autolinks (https://..., www....) need. Every ASCII punctuation character may be
# backslash-escaped in CommonMark, so escaping one more than needed changes nothing visible.
_BACKSLASHED = frozenset("\\`*_{}[]()#+-.!|~:=\"'$^")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def header(environment: str | None = None) -> str:
    """The heading under the fixed lines: one per environment in a comment that has several.
    Environment names are ``[a-z][a-z0-9_]*`` (validated), so they need no escaping."""
    return HEADER if environment is None else f"{HEADER}: {environment}"


def fingerprint_line(fingerprint: str) -> str:
    """Line 2 of a plan comment; refuses anything but a full SHA-256 in lowercase hex."""
    if not _HEX64.fullmatch(fingerprint):
        raise ValueError(f"a plan fingerprint is 64 lowercase hex digits, not {fingerprint!r}")
    return f"{FINGERPRINT_PREFIX}{fingerprint}{FINGERPRINT_SUFFIX}"


def fingerprints_line(fingerprints: dict[str, str | None]) -> str:
    """Line 2 of a comment with one section per environment: each environment's fingerprint, or none."""
    entries = []
    for environment, fingerprint in fingerprints.items():
        if not _ENVIRONMENT.fullmatch(environment):
            raise ValueError(f"not an environment name: {environment!r}")
        if fingerprint is not None and not _HEX64.fullmatch(fingerprint):
            raise ValueError(f"a plan fingerprint is 64 lowercase hex digits, not {fingerprint!r}")
        entries.append(f"{environment}={fingerprint or 'none'}")
    return f"{FINGERPRINTS_PREFIX} {' '.join(entries)}{FINGERPRINT_SUFFIX}"


def _fixed_lines(body: str) -> list[str]:
    lines = body.split("\n", 2)[:2]
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def is_plan_comment(body: str) -> bool:
    """True when line 1 is exactly the marker."""
    lines = _fixed_lines(body)
    return bool(lines) and lines[0] == MARKER


def parse_fingerprint(body: str, environment: str | None = None) -> str | None:
    """The fingerprint on line 2 of a comment whose line 1 is the marker (for ``environment``, in
    a comment with one section per environment), else None.

    Nothing else in the body is looked at: a fingerprint-like text further down (a team alias,
    a reason, a drift detail) is never taken for the real one.
    """
    lines = _fixed_lines(body)
    if len(lines) < 2 or lines[0] != MARKER:
        return None
    if environment is None:
        found = _FINGERPRINT_LINE.fullmatch(lines[1])
        return found[1] if found else None
    many = _FINGERPRINTS_LINE.fullmatch(lines[1])
    if not many:
        return None
    entries = dict(entry.split("=") for entry in many[1].split())
    value = entries.get(environment)
    return None if value in (None, "none") else value


def section_environment(body: str) -> str | None:
    """The environment a one-plan comment body is for: the heading after its fixed lines says it."""
    frame, rest = split_frame(body)
    heading = rest.split("\n", 1)[0]
    prefix = HEADER + ": "
    if not frame or not heading.startswith(prefix) or not _ENVIRONMENT.fullmatch(heading[len(prefix) :]):
        return None
    return heading[len(prefix) :]


def split_frame(body: str) -> tuple[str, str]:
    """(the fixed lines at the top, exactly as the tool writes them; the rest of the body)."""
    lines = _fixed_lines(body)
    if not lines or lines[0] != MARKER:
        return "", body
    fixed = len(lines) > 1 and (_FINGERPRINT_LINE.fullmatch(lines[1]) or _FINGERPRINTS_LINE.fullmatch(lines[1]))
    keep = 2 if fixed else 1
    parts = body.split("\n", keep)
    return "\n".join(parts[:keep]) + "\n", parts[keep] if len(parts) > keep else ""


def escape(text: object) -> str:
    """``text`` as literal Markdown text: one line, no HTML, no formatting, no links.

    Characters a reader cannot see or that change how the rest shows (line breaks, other
    controls, zero-width and bidirectional characters: :func:`.visible`) are written as their
    escapes (``\\n``, ``\\u200b``), so an alias that differs from another by one shows it.
    ``&``, ``<`` and ``>`` become entities; Markdown punctuation gets a backslash (so a backtick
    cannot open or close a code span, ``|`` cannot end a table cell, ``*``/``_``/``[``/``!``
    cannot make emphasis, links or images; the backslash of an escape shows as one).

    The result is meant for running text, table cells and ``<code>`` elements, never for a
    code span or a fenced block (backslashes are literal there).
    """
    return "".join(_ENTITIES.get(ch) or ("\\" + ch if ch in _BACKSLASHED else ch) for ch in visible(text))


def code(text: object) -> str:
    """``text`` escaped and shown in monospace (a ``<code>`` element, not a code span)."""
    return f"<code>{escape(text)}</code>"


def fence(text: str, info: str = "text") -> str:
    """``text`` verbatim in a fenced code block whose fence no backtick run in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{info}\n{text}\n{marks}"
