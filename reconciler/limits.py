"""Input limits of ``users.yaml``: how much of it is read, and what its values may hold.

The file comes from pull requests, so every dimension an author controls is bounded, and each
bound is checked where it is cheapest: the size before reading, the YAML structure while parsing
(before a node past the limit exists in memory), each value's length before any expression or
normalisation touches it. Together they keep loading any file, valid or hostile, within a few
seconds and well under 1 GB, while 100,000 real users (about 10 nodes and 120 bytes each) stay
well inside them.

Names (team and organization aliases, a user's alias) are also bounded in what they may show:
nothing invisible, no text direction controls, no look-alike spelling of another name.

A main file may ``include`` others. Each file is held to the caps of one file, and the files
together to the same caps again (bytes, nodes, the items of ``teams`` and of ``users``, problems
listed): splitting a file in parts never lets more through than one file could hold.
"""

from __future__ import annotations

import re
import unicodedata

# --------------------------------------------------------------------------- the file and its YAML

#: Larger files are refused before they are read (100,000 realistic users take about 12 MB).
MAX_FILE_BYTES = 20 * 1024 * 1024
#: The format nests 4 deep (users > entry > teams > item); more is a mistake or an attack.
MAX_DEPTH = 32
#: Keys, values, lists and mappings, counted while parsing. A user takes 3 to 20 (about 10 with
#: an alias and a few teams), so 100,000 users take about 1,000,000. Reading costs about 2 µs a
#: node and checking as much again, so past this a file would no longer load within 5 s.
MAX_NODES = 1_500_000
#: Items of any one list: the users (half again the 100,000 the tool is built for), the teams, the
#: organizations, an organization's members. Smaller lists have smaller caps in the schema. The
#: costliest valid files at this size (150,000 users and an organization with all of them as
#: members) load in about 3 s.
MAX_ITEMS = 150_000
#: Keys of any one mapping: the largest entry (a team) has 17 fields, plus one override per environment.
MAX_KEYS = 100
#: Characters of any one value or key: the longest the schema allows is MAX_MODEL_CHARS.
MAX_SCALAR_CHARS = 1024
#: Problems listed by one run; a file with more is mostly one mistake repeated, and converting
#: a million validation errors alone took seconds and a GB.
MAX_PROBLEMS = 200

#: Files one ``include`` brings in (a file per team is the usual layout); each is read, checked and
#: listed in CODEOWNERS, and a glob that matches more is refused before any is read.
MAX_INCLUDED_FILES = 1000
#: Patterns in ``include``.
MAX_INCLUDE_PATTERNS = 100

# --------------------------------------------------------------------------- values

#: RFC 5321: a path is at most 256 octets, "<" and ">" included.
MAX_EMAIL_CHARS = 254
#: Aliases, organization and team references, declared ids (LiteLLM's own ids are 36-character UUIDs).
MAX_NAME_CHARS = 128
#: A model name or a route ("bedrock/arn:aws:bedrock:...:inference-profile/..." runs past 100).
MAX_MODEL_CHARS = 256
#: Models a user, team or organization may use; teams one user is in.
MAX_LIST_ITEMS = 1000
#: Routes in team_member_permissions (LiteLLM knows a few dozen).
MAX_ROUTES = 100
#: Handles in one ``owners`` list (GitHub users or teams); CODEOWNERS lines stay readable.
MAX_OWNERS = 50
#: Environments a file manages (staging, production, a few regions): checks and warnings run once per environment.
MAX_ENVIRONMENTS = 10
#: A budget window or key lifetime: LiteLLM accepts any count, then fails to compute a reset past
#: the year 9999 (99999999999d is a 500); five years is longer than any budget period in use.
MAX_DURATION_YEARS = 5

# --------------------------------------------------------------------------- durations

# LiteLLM's budget windows: 30s, 30m, 30h, 30d, 1mo (and w in newer releases).
DURATION = re.compile(r"^[1-9][0-9]*(s|m|h|d|w|mo)$")
#: Seconds per unit; a month is an average one, as in a year of 365.25 days.
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 2_629_800}
_MAX_DURATION_SECONDS = MAX_DURATION_YEARS * 12 * _UNIT_SECONDS["mo"]
#: Each unit's largest count, as the message shows them.
_LONGEST = " or ".join(f"{_MAX_DURATION_SECONDS // _UNIT_SECONDS[unit]}{unit}" for unit in ("d", "w", "mo"))


def check_duration(value: str) -> str:
    """``value`` if it is a LiteLLM duration of at most ``MAX_DURATION_YEARS``, else ``ValueError``."""
    found = DURATION.match(value)
    if not found:
        raise ValueError(f"{shown(value)} is not a LiteLLM duration such as 30d, 12h or 1mo")
    unit = found.group(1)
    digits = value[: -len(unit)]
    # The length first: int() of thousands of digits is refused (or slow) before any comparison.
    if len(digits) > 12 or int(digits) * _UNIT_SECONDS[unit] > _MAX_DURATION_SECONDS:
        raise ValueError(
            f"{shown(value)} is longer than {MAX_DURATION_YEARS} years, the most a file may set: {_LONGEST}"
        )
    return value


def shown(value: str, limit: int = 60) -> str:
    """``repr(value)``, shortened: a message must not repeat a kilobyte of someone's input."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


# --------------------------------------------------------------------------- names

#: Marks, embeddings, overrides and isolates: they make text display in another order than it is stored.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_ASCII_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
#: Combining marks in a row: Vietnamese stacks two, Indic scripts a few. Normalising a long run takes
#: quadratic time (4 MB of 256-mark names: 1.4 s), so longer runs are refused before it.
MAX_MARKS_IN_A_ROW = 8
#: The scripts whose letters pass for each other, as homograph attacks use them.
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})
#: Letters of any script, without digits and "_": the words whose scripts are compared.
_WORD_RE = re.compile(r"[^\W\d_]+")
#: Cyrillic and Greek letters that look like Latin ones, in both cases (a subset of Unicode's
#: confusables.txt: the letters of the same shape in common fonts), each above its Latin twin.
_LOOK_ALIKE = str.maketrans(
    "АВЕКМНОРСТУХЅІЈԚԜҮаеорсухѕіјԁһӏԛԝүкΑΒΕΖΗΙΚΜΝΟΡΤΥΧαορικνυχ",
    "ABEKMHOPCTYXSIJQWYaeopcyxsijdhlqwykABEZHIKMNOPTYXaopikvux",
)


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name, or None: what a reader cannot see or would misread.

    NUL and other controls, zero-width and other invisible characters, text direction controls,
    non-breaking and other special spaces, line separators, and spaces at either end all make
    two names that look the same differ (or one name look like another). Long runs of combining
    marks are refused too (see MAX_MARKS_IN_A_ROW). The value is at most MAX_NAME_CHARS long.
    """
    if value.isascii():
        control = _ASCII_CONTROL_RE.search(value)
        if control:
            return _contains(control.group(), "a control character")
    else:
        problem = _unicode_problem(value)
        if problem:
            return problem
    if value != value.strip():
        return "it starts or ends with whitespace"
    return None


def _unicode_problem(value: str) -> str | None:
    """The first character no name may hold, or a too long run of combining marks."""
    run = 0
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp") or (category == "Zs" and char != " "):
            return _contains(char, _kind(char, category))
        run = run + 1 if unicodedata.combining(char) else 0
        if run > MAX_MARKS_IN_A_ROW:
            return f"it stacks more than {MAX_MARKS_IN_A_ROW} combining marks on one letter"
    return None


def _kind(char: str, category: str) -> str:
    """What a refused character is, in a reader's words."""
    if char in BIDI_CONTROLS:
        return "a bidirectional text control"
    if char in _ZERO_WIDTH:
        return "a zero-width character"
    if category == "Zs":
        return "a non-breaking or special space (use a plain space)"
    return {"Cc": "a control character", "Cs": "a lone surrogate", "Cf": "an invisible formatting character"}.get(
        category, "a line or paragraph separator"
    )


def _contains(char: str, kind: str) -> str:
    return f"it contains {kind}, {_described(char)}"


def _described(char: str) -> str:
    """A character by code point and name: "U+200B ZERO WIDTH SPACE" (it may be invisible)."""
    return f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()


def nfc(value: str) -> str:
    """``value`` in Unicode NFC, so that one name has one spelling ("é" as one character, not as
    "e" and a combining accent). Left as it is when normalising could be slow (too long, or a long
    run of combining marks out of order: quadratic); the schema then refuses it."""
    if len(value) > MAX_NAME_CHARS or unicodedata.is_normalized("NFC", value) or _unicode_problem(value):
        return value
    return unicodedata.normalize("NFC", value)


def look_alike_problem(value: str) -> str | None:
    """Why an alias could pass for another one, or None.

    Compatibility characters (fullwidth or styled letters, ligatures) have a plain twin; a word
    of Latin letters with a Cyrillic or Greek one inside ("dеv" with a Cyrillic е) reads as the
    Latin word. Words in one script each, as in "Отдел IT", are fine. ``value`` has passed
    ``name_problem`` (so normalising it is quick).
    """
    if value.isascii():
        return None  # one script, and no compatibility characters
    value = unicodedata.normalize("NFC", value)
    compatible = unicodedata.normalize("NFKC", value)
    if compatible != value:
        char = next(c for c in value if unicodedata.normalize("NFKC", c) != c)
        plain = unicodedata.normalize("NFKC", char)
        return f"{_described(char)} is a variant of {plain!r}; write {shown(compatible)}"
    for word in _WORD_RE.findall(value):
        scripts = {_script(char) for char in word} & _CONFUSABLE_SCRIPTS
        if len(scripts) > 1:
            return (
                f"the word {word!r} mixes {' and '.join(s.title() for s in sorted(scripts))} letters, "
                "which look alike; write each word in one script"
            )
    return None


def _script(char: str) -> str:
    """The script a letter's Unicode name starts with ("LATIN SMALL LETTER A"): the standard
    library has no Script property, and for the scripts compared here the name says it."""
    return unicodedata.name(char, "").partition(" ")[0]


def look_alike_key(value: str) -> str:
    """What ``value`` reads as: compatibility forms, Cyrillic and Greek look-alikes of Latin
    letters, and case folded away. Two aliases with the same key can be taken for each other."""
    return unicodedata.normalize("NFKC", value).translate(_LOOK_ALIKE).casefold()
