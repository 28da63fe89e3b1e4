"""The desired state: the models of ``users.yaml`` and a loader that reports errors by line.

Everything here is offline. ``load_desired`` either returns a fully validated
``DesiredState`` or raises ``InputError`` carrying *every* problem found, each with
the file and line it came from, so that one run of ``validate`` shows all mistakes
before a single request reaches the proxy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: The roles ``/user/new`` and ``/user/update`` accept; anything else is a 422 on the proxy.
UserRole = Literal["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer"]
DEFAULT_ROLE: UserRole = "internal_user"

# Deliberately simple: one "@", a dot in the domain, no whitespace. LiteLLM does no
# validation of its own, so this only catches typos such as a missing "@" or a stray space.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# LiteLLM's budget windows: 30s, 30m, 30h, 30d, 1mo (and w in newer releases).
_DURATION_RE = re.compile(r"^[1-9][0-9]*(s|m|h|d|w|mo)$")
# Limits are PostgreSQL BigInt columns; a larger value is a 500 from the proxy.
_BIGINT_MAX = 2**63 - 1


class _Strict(BaseModel):
    # strict: YAML's `yes` or `1.0` must not quietly become a number or an id.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TeamSpec(_Strict):
    """A team as declared. Optional fields left out are not managed (never changed)."""

    alias: str = Field(min_length=1, description="team_alias; unique in the file")
    id: Optional[str] = Field(default=None, min_length=1, description="adopt this existing team_id")
    models: list[str] = Field(default=None, description="allowed models; [] = all models")  # type: ignore[assignment]
    max_budget: Optional[float] = Field(default=None, ge=0, allow_inf_nan=False, description="USD; null = no limit")
    budget_duration: Optional[str] = Field(default=None, description="budget window, e.g. 30d, 1mo")
    tpm_limit: Optional[int] = Field(default=None, ge=0, le=_BIGINT_MAX, description="tokens per minute")
    rpm_limit: Optional[int] = Field(default=None, ge=0, le=_BIGINT_MAX, description="requests per minute")

    @field_validator("budget_duration")
    @classmethod
    def _duration(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _DURATION_RE.match(value):
            raise ValueError(f"{value!r} is not a LiteLLM duration such as 30d, 12h or 1mo")
        return value

    @property
    def managed_settings(self) -> dict[str, Any]:
        """The team settings the file mentions (explicit ``null`` included), by LiteLLM field name."""
        return {name: getattr(self, name) for name in TEAM_SETTINGS if name in self.model_fields_set}


#: Team fields that map one-to-one onto ``/team/new`` and ``/team/update``.
TEAM_SETTINGS = ("models", "max_budget", "budget_duration", "tpm_limit", "rpm_limit")


class UserSpec(_Strict):
    """A user as declared; the email is the identity (matched case-insensitively)."""

    email: str = Field(description="identity; case-insensitive; unique in the file")
    teams: list[str] = Field(default_factory=list, description="team aliases (or declared ids)")
    role: Optional[UserRole] = Field(
        default=None, description="user_role; new users get internal_user when left out"
    )
    alias: Optional[str] = Field(default=None, description="user_alias")
    invite: Optional[bool] = Field(
        default=None,
        description="invite a user that existed before the tool managed it (defaults.invite)",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL_RE.match(value):
            raise ValueError(f"{value!r} is not a valid email address")
        return value

    @property
    def key(self) -> str:
        """The identity used everywhere: the lower-cased email."""
        return self.email.lower()


class Defaults(_Strict):
    """File-wide defaults."""

    invite: bool = Field(
        default=False,
        description="also invite users that existed before the tool managed them",
    )


class UsersFile(_Strict):
    """The whole ``users.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="litellm-reconciler users.yaml")

    version: Literal[1] = Field(description="file format version")
    defaults: Defaults = Field(default_factory=Defaults)
    teams: list[TeamSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """One input error, located in the file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class InputError(Exception):
    """Raised when the file is unusable; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class DesiredState:
    """A validated file plus the resolution of team references to declared teams."""

    source: str
    spec: UsersFile

    @property
    def teams(self) -> list[TeamSpec]:
        return list(self.spec.teams)

    @property
    def users(self) -> list[UserSpec]:
        return list(self.spec.users)

    def team_for_ref(self, ref: str) -> TeamSpec:
        """The declared team a user's ``teams`` entry names (by alias first, then by id)."""
        for team in self.spec.teams:
            if team.alias == ref:
                return team
        for team in self.spec.teams:
            if team.id == ref:
                return team
        raise KeyError(ref)


# --------------------------------------------------------------------------- YAML with lines

Path_ = tuple[Any, ...]


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[Problem], file: str) -> Any:
    """Turn a composed YAML node into plain data, recording the line of every path."""
    lines[path] = node.start_mark.line + 1
    if len(path) > 20:  # the format nests 4 deep; only a recursive alias (&a [*a]) gets here
        raise _Unsupported(node, "recursive alias")
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:
                problems.append(
                    Problem(file, key_node.start_mark.line + 1, f"duplicate key {key!r} (first on line {lines[path + (key,)]})")
                )
                continue
            result[key] = _construct(value_node, path + (key,), lines, problems, file)
            # The key's line, not the value's: "alias:" is where a reader looks.
            lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, problems, file) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    """Resolve a scalar node with PyYAML's safe rules (ints, floats, bools, null, strings)."""
    if not isinstance(node, yaml.ScalarNode):
        raise _Unsupported(node, "a mapping or list cannot be used as a key")
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise _Unsupported(node, getattr(exc, "problem", None) or str(exc)) from None


class _Unsupported(Exception):
    """YAML that parses but that this file format does not allow (custom tags, complex keys)."""

    def __init__(self, node: yaml.Node, reason: str):
        self.line = node.start_mark.line + 1
        super().__init__(reason)


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int:
    """The line of the deepest known prefix of a pydantic error location."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def load_desired(path: str | Path) -> DesiredState:
    """Read, parse and validate ``path``; raise ``InputError`` listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([Problem(file, 0, f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_desired(text, file)


def parse_desired(text: str, file: str = "users.yaml") -> DesiredState:
    """Validate YAML text; ``file`` is only used in messages."""
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise InputError([Problem(file, line, f"malformed YAML: {reason}")]) from None
    if node is None:
        raise InputError([Problem(file, 1, "the file is empty; expected at least 'version: 1'")])

    lines: dict[Path_, int] = {}
    try:
        data = _construct(node, (), lines, problems, file)
    except _Unsupported as exc:
        raise InputError(problems + [Problem(file, exc.line, f"unsupported YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise InputError(problems + [Problem(file, 1, "the top level must be a mapping with 'version', 'teams' and 'users'")])

    problems.extend(_cross_check(data, lines, file))
    try:
        spec = UsersFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            problems.append(Problem(file, _line_for(loc, lines), _describe(loc, error)))
        raise InputError(problems) from None
    if problems:
        raise InputError(problems)
    return DesiredState(source=file, spec=spec)


def _describe(loc: Path_, error: dict[str, Any]) -> str:
    """A one-line, human message for a pydantic error."""
    where = ".".join(str(p) for p in loc) or "file"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc[-1]!r}"
    if error["type"] == "literal_error" and loc and loc[-1] == "role":
        return f"{where}: invalid role {error.get('input')!r}; expected one of {', '.join(UserRole.__args__)}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{where}: {message}"


def _cross_check(data: dict[str, Any], lines: dict[Path_, int], file: str) -> list[Problem]:
    """Rules that span entries (uniqueness, references), checked on the raw data.

    They run even when some entries failed schema validation, so one run reports
    a typo'd key and a duplicate email together; malformed entries are skipped.
    """
    problems: list[Problem] = []
    teams = [t for t in _entries(data, "teams")]
    users = [u for u in _entries(data, "users")]

    def once(kind: str, values: list[tuple[str, Path_]]) -> None:
        first: dict[str, int] = {}
        for value, loc in values:
            line = _line_for(loc, lines)
            if value in first:
                problems.append(Problem(file, line, f"duplicate {kind} {value!r} (first on line {first[value]})"))
            else:
                first[value] = line

    once("team alias", [(t["alias"], ("teams", i, "alias")) for i, t in teams if isinstance(t.get("alias"), str)])
    once("team id", [(t["id"], ("teams", i, "id")) for i, t in teams if isinstance(t.get("id"), str)])
    once("email", [(u["email"].lower(), ("users", i, "email")) for i, u in users if isinstance(u.get("email"), str)])

    by_ref: dict[str, str] = {}
    for _, t in teams:
        if isinstance(t.get("alias"), str):
            by_ref.setdefault(t["alias"], t["alias"])
    ids_seen: set[str] = set()
    for i, t in teams:
        if isinstance(t.get("id"), str) and isinstance(t.get("alias"), str):
            if t["id"] in ids_seen:
                continue  # reported above as a duplicate team id
            ids_seen.add(t["id"])
            if t["id"] in by_ref and by_ref[t["id"]] != t["alias"]:
                problems.append(
                    Problem(file, _line_for(("teams", i, "id"), lines), f"teams.{i}.id: {t['id']!r} is another team's alias; references would be ambiguous")
                )
            by_ref.setdefault(t["id"], t["alias"])
    for i, user in users:
        refs = user.get("teams")
        if not isinstance(refs, list):
            continue
        named: dict[str, int] = {}
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                continue
            loc = _line_for(("users", i, "teams", j), lines)
            if ref not in by_ref:
                problems.append(Problem(file, loc, f"users.{i}.teams: unknown team {ref!r}; declare it under 'teams'"))
            elif by_ref[ref] in named:
                problems.append(Problem(file, loc, f"users.{i}.teams: team {by_ref[ref]!r} is listed twice"))
            else:
                named[by_ref[ref]] = loc
    return problems


def _entries(data: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    """The mapping entries of a top-level list, with their index; anything else is skipped."""
    items = data.get(section)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]
