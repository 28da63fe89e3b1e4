"""The desired state: the models of ``users.yaml`` and a loader that reports errors by line.

Everything here is offline. ``load_desired`` either returns a fully validated
``DesiredState`` or raises ``InputError`` carrying *every* problem found, each with
the file and line it came from, so that one run of ``validate`` shows all mistakes
before a single request reaches the proxy.

The file comes from pull requests, so it is treated as hostile: whatever could make
loading slow, huge or misleading (alias bombs, deep nesting, too many nodes, tags, device
files, control and bidi characters, oversized numbers and strings, look-alike names) is
refused with its line, most of it while parsing, before any of it is turned into data.
The limits are in ``limits.py``.
"""

from __future__ import annotations

import gc
import heapq
import os
import re
import stat
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NoReturn, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .limits import (
    BIDI_CONTROLS,
    MAX_DEPTH,
    MAX_EMAIL_CHARS,
    MAX_ENVIRONMENTS,
    MAX_FILE_BYTES,
    MAX_INCLUDE_PATTERNS,
    MAX_INCLUDED_FILES,
    MAX_ITEMS,
    MAX_KEYS,
    MAX_LIST_ITEMS,
    MAX_MODEL_CHARS,
    MAX_NAME_CHARS,
    MAX_NODES,
    MAX_OWNERS,
    MAX_PROBLEMS,
    MAX_ROUTES,
    MAX_SCALAR_CHARS,
    check_duration,
    look_alike_key,
    look_alike_problem,
    name_problem,
    nfc,
    shown,
)
from .limits import (
    DURATION as DURATION,  # re-exported: live.py reads the proxy's durations with it
)

#: The roles ``/user/new`` and ``/user/update`` accept; anything else is a 422 on the proxy.
UserRole = Literal["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer"]
USER_ROLES: tuple[str, ...] = get_args(UserRole)
DEFAULT_ROLE: UserRole = "internal_user"

# Limits are PostgreSQL BigInt columns; a larger value is a 500 from the proxy.
_BIGINT_MAX = 2**63 - 1

# A plain scalar that YAML reads as a number but is this long is an attack: Python refuses
# ints over 4300 digits, and a sexagesimal int ("1:2:3:...") costs quadratic time.
_MAX_NUMBER_CHARS = 100
# libyaml when PyYAML was built with it: the same events and marks, several times faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Scalars are resolved and constructed with PyYAML's own safe rules, by one stateless instance.
_SAFE = yaml.SafeLoader("")


def _typed_match(rules: list[tuple[str, re.Pattern[str]]]) -> Callable[[str], re.Match[str] | None]:
    """One expression for PyYAML's rules of a first character: it matches what they would not read as text."""
    return re.compile("|".join(f"(?{'x' if rule.flags & re.X else ''}:{rule.pattern})" for _, rule in rules)).match


#: First character -> a test for the plain scalars PyYAML would read as an int, float, bool, null,
#: date, merge or value. Most values ("alice@...", "team-dev") fail it in one step in C, and only
#: the rest go through PyYAML's rules (which, run for every value, took a quarter of the time of
#: reading 100,000 users).
_TYPED = {first: _typed_match(rules) for first, rules in _SAFE.yaml_implicit_resolvers.items()}


# --------------------------------------------------------------------------- emails

# Any character outside these fails; which one it is decides the message. The address's parts are
# then checked with string operations: no pattern with nested quantifiers, none that backtracks.
_EMAIL_CHARS_RE = re.compile(r"[^A-Za-z0-9.@_+'-]")
_DOMAIN_CHARS = "a domain has letters, digits, '-' and '.'"


def check_email(value: str) -> str:
    """``value`` if it is a bare address, else ``ValueError`` saying what is wrong.

    Stricter than RFC 5321 on purpose: the address is an identity, reviewers read it in
    pull requests and it ends up in email headers. So nothing that could hide or inject
    anything is accepted: no controls, whitespace or invisible characters, no display
    name or list. Before "@": ASCII letters, digits and ``. _ + - '`` (dots not at an
    end, not doubled; at most 64). After it: ASCII labels of letters, digits and inner
    hyphens (at most 63 each, 253 in all, at least two, the last not all digits); 254 in
    all, RFC 5321's limit. An internationalised domain is accepted only in its ``xn--``
    form, which a look-alike (homograph) domain cannot imitate.
    """
    reason = _email_problem(value)
    if reason:
        raise ValueError(f"{shown(value, 300)} is not a valid email address: {reason}")
    return value


def _email_problem(value: str) -> str | None:
    """Why ``value`` is not a bare address, or None; regular expressions keep 100k addresses fast."""
    if _EMAIL_CHARS_RE.search(value):
        return _character_problem(value)
    if value.count("@") != 1:
        return "it must contain exactly one '@'"
    local, domain = value.split("@")
    if not local:
        return "there is nothing before '@'"
    if len(local) > 64:
        return "the part before '@' is longer than 64 characters"
    if local[0] == "." or local[-1] == "." or ".." in local:
        return "the part before '@' starts or ends with '.' or contains '..'"
    if not domain:
        return "there is nothing after '@'"
    if len(domain) > 253:
        return "the domain is longer than 253 characters"
    if len(value) > MAX_EMAIL_CHARS:
        return f"the address is longer than {MAX_EMAIL_CHARS} characters"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"the domain {domain!r} has no dot, as in example.com"
    for label in labels:
        if not label:
            return "the domain has an empty label (a dot at an end, or two in a row)"
        if len(label) > 63:
            return f"the domain label {label[:20]!r}... is longer than 63 characters"
        wrong = [char for char in label if char in "_+'"]
        if wrong:
            return f"{wrong[0]!r} is not allowed after '@'; {_DOMAIN_CHARS}"
        if label[0] == "-" or label[-1] == "-":
            return f"the domain label {label!r} starts or ends with '-'"
    if labels[-1].isdigit():
        return "the top-level domain is all digits"
    return None


def _character_problem(value: str) -> str:
    """The most telling reason among the characters no address may contain."""
    categories = {unicodedata.category(char) for char in value}
    if "Cc" in categories:
        return "it contains a control character"
    if not BIDI_CONTROLS.isdisjoint(value):
        return "it contains a bidirectional text control"
    if "Cf" in categories:
        return "it contains an invisible formatting character"
    if any(char in value for char in '<>"'):
        return "give only the address, without a display name or angle brackets"
    if any(char in value for char in ",;"):
        return "it contains ',' or ';'; give one address per entry"
    if any(char.isspace() for char in value):
        return "it contains whitespace"
    local, at, domain = value.rpartition("@")
    wrong = _EMAIL_CHARS_RE.search(local if at else value)
    if wrong:
        return f"{wrong.group()!r} is not allowed before '@'; use letters, digits and . _ + - '"
    char = _EMAIL_CHARS_RE.search(domain).group()  # type: ignore[union-attr]
    if not char.isascii():
        try:
            return f"write the domain in ASCII, as {domain.encode('idna').decode('ascii')!r}"
        except UnicodeError:  # not a domain IDNA can express either
            pass
    return f"{char!r} is not allowed after '@'; {_DOMAIN_CHARS}"


class _Strict(BaseModel):
    # strict: YAML's `yes` or `1.0` must not quietly become a number or an id.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _checked_name(value: str) -> str:
    """An alias that shows what it is: nothing invisible or misleading (``limits.name_problem``)."""
    problem = name_problem(value)
    if problem:
        raise ValueError(f"{shown(value)} is refused: {problem}")
    return value


def _checked_alias(value: str) -> str:
    """A team's or organization's alias, which users name it by: also none that passes for another."""
    problem = look_alike_problem(value)
    if problem:
        raise ValueError(f"{shown(value)} could pass for another name: {problem}")
    return value


#: A user's alias (display name); in NFC, as ``_normalise_names`` made it.
Name = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_checked_name)]
#: A team's or organization's alias.
Alias = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_CHARS), AfterValidator(_checked_name), AfterValidator(_checked_alias)
]
#: A declared id, or a reference to an alias (a reference that names nothing is reported as unknown).
Reference = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
#: A model name or a route.
ModelName = Annotated[str, Field(max_length=MAX_MODEL_CHARS)]

#: A GitHub user (``@alice``) or team (``@org/team``), as CODEOWNERS names them: a user's or an
#: organization's name is letters, digits and single inner hyphens (39 at most), a team's slug letters,
#: digits, ``_`` and ``-``. Nothing else, so a handle cannot add a path or a comment to a CODEOWNERS line.
_ACCOUNT_RE = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
_SLUG_RE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
_ACCOUNT = re.compile(_ACCOUNT_RE)
_SLUG = re.compile(_SLUG_RE)


def _checked_owner(value: str) -> str:
    """Checked in parts: one pattern for the whole would nest a quantifier in another (see the
    hostile input tests), and the JSON Schema's pattern only helps editors."""
    account, slash, slug = value[1:].partition("/")
    if value[:1] != "@" or not _ACCOUNT.fullmatch(account) or (slash and not _SLUG.fullmatch(slug)):
        raise ValueError(f"{shown(value)} is not a GitHub user or team handle such as '@alice' or '@org/team'")
    return value


def _distinct_owners(value: list[str]) -> list[str]:
    """GitHub handles ignore case: the same owner twice is a slip, maybe for another one."""
    if len({owner.lower() for owner in value}) != len(value):
        raise ValueError("an owner is listed twice")
    return value


#: A GitHub handle, as CODEOWNERS takes it (written in quotes: YAML reads a plain ``@`` as an error).
Owner = Annotated[
    str,
    Field(max_length=MAX_NAME_CHARS, json_schema_extra={"pattern": f"^@{_ACCOUNT_RE}(?:/{_SLUG_RE})?$"}),
    AfterValidator(_checked_owner),
]
Owners = Annotated[list[Owner], Field(min_length=1, max_length=MAX_OWNERS), AfterValidator(_distinct_owners)]

#: What a part of an ``include`` glob may hold: plain path characters and the wildcards ``*``, ``?``
#: and ``**`` (which CODEOWNERS reads the same way).
_GLOB_CHARS = "A-Za-z0-9._*?-"
_NOT_GLOB_CHAR = re.compile(f"[^/{_GLOB_CHARS}]")


def _include_problem(value: object) -> str | None:
    """Why ``value`` cannot be an ``include`` pattern, or None. An included file is reviewed by the
    owners CODEOWNERS gives its path, so a pattern stays below the main file's directory and in
    the syntax both Python's glob and CODEOWNERS read alike."""
    if not isinstance(value, str):
        return "expected a glob pattern such as teams/*.yaml"
    parts = value.split("/")
    if _NOT_GLOB_CHAR.search(value) or "" in parts:
        return (
            f"{shown(value)} is not a relative glob pattern such as teams/*.yaml: use letters, digits, "
            "'.', '_', '-', '/' and the wildcards * ? **"
        )
    if ".." in parts or "." in parts:
        return f"{shown(value)}: '.' and '..' are not allowed; patterns stay below the main file's directory"
    if any("**" in part and part != "**" for part in parts):
        return f"{shown(value)}: '**' must be a whole part of the path, as in teams/**/*.yaml"
    return None


def _checked_include(value: str) -> str:
    problem = _include_problem(value)
    if problem:
        raise ValueError(problem)
    return value


IncludePattern = Annotated[
    str,
    Field(max_length=MAX_MODEL_CHARS, json_schema_extra={"pattern": f"^[{_GLOB_CHARS}]+(?:/[{_GLOB_CHARS}]+)*$"}),
    AfterValidator(_checked_include),
]

#: An environment's name: it also names GitHub environments and secrets, hence the narrow alphabet.
_ENVIRONMENT_RE = r"^[a-z][a-z0-9_]{0,39}$"
ENVIRONMENT_NAME = re.compile(_ENVIRONMENT_RE)
EnvironmentName = Annotated[str, Field(pattern=_ENVIRONMENT_RE)]


#: The limits a team gives each of its members (LiteLLM keeps them on a budget row of the team's).
TEAM_MEMBER_DEFAULTS = (
    "team_member_budget",
    "team_member_budget_duration",
    "team_member_tpm_limit",
    "team_member_rpm_limit",
)


class _Limits(_Strict):
    """Budget, models and rate limits: what LiteLLM lets a team and a user each have.
    A field left out is not managed; an explicit ``null`` is (it means "no limit")."""

    #: The fields that map one-to-one onto the proxy's create and update endpoints.
    SETTINGS: ClassVar[tuple[str, ...]] = ("models", "max_budget", "budget_duration", "tpm_limit", "rpm_limit")

    models: list[ModelName] = Field(  # type: ignore[assignment]
        default=None, max_length=MAX_LIST_ITEMS, description="allowed models; [] = all models"
    )
    max_budget: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="USD; null = no limit")
    budget_duration: str | None = Field(default=None, description="budget window, e.g. 30d, 1mo")
    tpm_limit: int | None = Field(default=None, ge=0, le=_BIGINT_MAX, description="tokens per minute")
    rpm_limit: int | None = Field(default=None, ge=0, le=_BIGINT_MAX, description="requests per minute")

    @field_validator("budget_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return value if value is None else check_duration(value)

    @property
    def managed_settings(self) -> dict[str, Any]:
        """The settings the file mentions (explicit ``null`` included), by LiteLLM field name."""
        return {name: getattr(self, name) for name in self.SETTINGS if name in self.model_fields_set}


class TeamSettings(_Limits):
    """What a team declares besides its alias; also the shape of a per-environment override."""

    SETTINGS: ClassVar[tuple[str, ...]] = (
        *_Limits.SETTINGS,
        "blocked",
        "team_member_permissions",
        *TEAM_MEMBER_DEFAULTS,
        "team_member_key_duration",
    )

    id: Reference | None = Field(default=None, description="adopt this existing team_id")
    organization: Reference | None = Field(
        default=None,
        description="alias of the organization (under 'organizations') the team is in; null = none",
    )
    blocked: bool = Field(  # type: ignore[assignment]
        default=None, description="true: every key of the team is refused until unblocked (the team stays)"
    )
    team_member_permissions: list[ModelName] = Field(  # type: ignore[assignment]
        default=None,
        max_length=MAX_ROUTES,
        description=(
            "routes the team's non-admin members may call, e.g. /key/generate; [] = none beyond reading their keys"
        ),
    )

    team_member_budget: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="USD each member may spend in the team"
    )
    team_member_budget_duration: str | None = Field(
        default=None, description="window of team_member_budget, e.g. 30d (LiteLLM after 1.80.5; 1.110.2 has it)"
    )
    team_member_tpm_limit: int | None = Field(
        default=None, ge=0, le=_BIGINT_MAX, description="tokens per minute, each member"
    )
    team_member_rpm_limit: int | None = Field(
        default=None, ge=0, le=_BIGINT_MAX, description="requests per minute, each member"
    )

    team_member_key_duration: str | None = Field(
        default=None,
        description=(
            "how long keys the team's members create stay valid, e.g. 30d; LiteLLM takes it only with an "
            "Enterprise license (1.80.5 and 1.110.2)"
        ),
    )

    @field_validator("team_member_budget_duration", "team_member_key_duration")
    @classmethod
    def _member_duration(cls, value: str | None) -> str | None:
        return cls._duration(value)

    @field_validator("team_member_permissions")
    @classmethod
    def _routes(cls, value: list[str] | None) -> list[str] | None:
        for route in value or []:
            if not route.startswith("/"):
                raise ValueError(f"{route!r} is not a route such as /key/generate")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a permission is listed twice")
        return value


class TeamSpec(TeamSettings):
    """A team as declared. Optional fields left out are not managed (never changed)."""

    alias: Alias = Field(description="team_alias; unique in the file, and unlike any other")
    owners: Owners | None = Field(
        default=None,
        description=(
            "GitHub users or teams ('@alice', '@org/team') who review this team's file: "
            "'litellm-reconciler codeowners' lists them for the included file that declares the team"
        ),
    )
    only_in: list[EnvironmentName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ENVIRONMENTS,
        description="the environments that have this team [default: all]",
    )
    overrides: dict[EnvironmentName, TeamSettings] = Field(
        default_factory=dict, description="per environment: settings that differ there (id, models, budget, limits)"
    )


#: Team fields that map one-to-one onto ``/team/new`` and ``/team/update`` (``team_member_permissions``:
#: ``/team/permissions_update``, which is the only endpoint that changes them).
TEAM_SETTINGS = TeamSettings.SETTINGS
#: User fields that map one-to-one onto ``/user/new`` and ``/user/update``.
USER_SETTINGS = _Limits.SETTINGS
#: Organization fields that map one-to-one onto ``/organization/new`` and ``/organization/update``.
ORGANIZATION_SETTINGS = _Limits.SETTINGS


class UserSettings(_Limits):
    """A user's role, alias, budget, models and limits: what may also differ between environments.

    LiteLLM applies a user's own ``max_budget`` and ``models`` only to the user's personal keys,
    not to keys that belong to a team (``validate`` warns); ``tpm_limit`` and ``rpm_limit`` apply to all.
    """

    id: Reference | None = Field(
        default=None,
        description=(
            "the user_id of the account that is this user (pins it): needed to grant a privileged role to an "
            "account this tool did not create, or to pick one of several accounts with this email"
        ),
    )
    role: UserRole | None = Field(default=None, description="user_role; new users get internal_user when left out")
    alias: Name | None = Field(default=None, description="user_alias")
    invite: bool | None = Field(
        default=None,
        description="invite a user that existed before the tool managed it (defaults.invite)",
    )


#: A member's role in a team (``members_with_roles``); ``admin`` may manage the team's members and keys.
TeamRole = Literal["user", "admin"]


class Membership(_Strict):
    """A team entry with settings of the user's own in that team (the long form of ``teams: [a]``).
    A field left out is not managed, like everywhere else."""

    team: Reference = Field(description="team alias (or declared id)")
    role: TeamRole = Field(  # type: ignore[assignment]
        default=None,
        description="the user's role in the team; admin needs LiteLLM Enterprise on 1.80.5 and 1.110.2",
    )
    max_budget_in_team: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="USD this user may spend in this team; null = no budget of the member's own",
    )

    @property
    def managed_settings(self) -> dict[str, Any]:
        """The settings the entry mentions (explicit ``null`` included)."""
        return {name: getattr(self, name) for name in MEMBERSHIP_SETTINGS if name in self.model_fields_set}


#: What a membership entry may manage, by LiteLLM's ``/team/member_update`` field names.
MEMBERSHIP_SETTINGS = ("role", "max_budget_in_team")


def team_ref(entry: str | Membership) -> str:
    """The team a user's ``teams`` entry names, in either form."""
    return entry if isinstance(entry, str) else entry.team


def membership_settings(entry: str | Membership) -> dict[str, Any]:
    """What a ``teams`` entry manages about the membership ({} for the short form)."""
    return {} if isinstance(entry, str) else entry.managed_settings


#: The two forms of a ``teams`` entry; the tag keeps pydantic from reporting a mistake in one
#: form as a failure of the other too (the tags are taken out of error locations again).
_TEAM_ENTRY_TAGS = ("team-name", "team-entry")
TeamEntry = Annotated[
    Annotated[str, Field(max_length=MAX_NAME_CHARS), Tag("team-name")] | Annotated[Membership, Tag("team-entry")],
    Discriminator(lambda value: "team-entry" if isinstance(value, (dict, Membership)) else "team-name"),
]


class UserSpec(UserSettings):
    """A user as declared; the email is the identity (matched case-insensitively)."""

    email: str = Field(description="identity; case-insensitive; unique in the file")
    teams: list[TeamEntry] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description=(
            "team aliases (or declared ids), or {team, role, max_budget_in_team} to manage the membership too; "
            "a team with only_in counts only in its environments"
        ),
    )
    only_in: list[EnvironmentName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ENVIRONMENTS,
        description="the environments that have this user [default: all]",
    )
    overrides: dict[EnvironmentName, UserSettings] = Field(
        default_factory=dict, description="per environment: role, alias or invite where they differ"
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return check_email(value)

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


class Removals(_Strict):
    """What the file may take away. Every scope is off unless switched on (add-only by default),
    and only objects this tool owns are ever deleted."""

    memberships: bool | Literal["owned"] = Field(
        default=False,
        description=(
            "true: each declared team's members (and each organization's, where it lists members) are exactly "
            "the users the file lists there; owned: only the memberships this tool granted are removed when the "
            "file drops them (members added by SSO, SCIM, the UI or the API stay, shown as drift)"
        ),
    )
    users: bool = Field(default=False, description="users this tool owns that the file no longer lists are deleted")
    teams: bool = Field(default=False, description="teams this tool owns that the file no longer declares are deleted")
    organizations: bool = Field(
        default=False,
        description=(
            "organizations this tool owns that the file no longer declares are deleted "
            "(refused while they still hold teams: LiteLLM would delete those and their keys with them)"
        ),
    )
    max_percent: int = Field(
        default=25,
        ge=0,
        le=100,
        description=(
            "apply refuses (unless --allow-mass-removal) to remove more than this percentage of the managed objects"
        ),
    )


#: A user's role in an organization (LiteLLM's organization membership roles).
OrganizationRole = Literal["org_admin", "internal_user", "internal_user_viewer"]
ORGANIZATION_ROLES: tuple[str, ...] = get_args(OrganizationRole)


class OrganizationMember(_Strict):
    """A declared user in an organization; ``org_admin`` administers its teams and members."""

    email: str = Field(description="a user declared under 'users' (case-insensitive)")
    role: OrganizationRole = Field(  # type: ignore[assignment]
        default=None, description="org_admin, internal_user or internal_user_viewer; new members get internal_user"
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return check_email(value)


class OrganizationSpec(_Limits):
    """An organization above teams. Its budget, models and limits bound the teams placed in it."""

    alias: Alias = Field(description="organization_alias; unique in the file, and unlike any other")
    id: Reference | None = Field(default=None, description="adopt this existing organization_id")
    members: list[OrganizationMember] = Field(  # type: ignore[assignment]
        default=None,
        description=(
            "the organization's members and their roles [default: unmanaged]; with removals.memberships, exactly these"
        ),
    )


class Environment(_Strict):
    """One proxy this file manages. Its URL and keys are not here: they come from where the job
    runs (a GitHub environment's secrets), so a pull request cannot send a key elsewhere."""

    name: EnvironmentName = Field(description="lower-case letters, digits and _; used with --env")


class UsersFile(_Strict):
    """The whole ``users.yaml`` (with the teams and users of the files it includes)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, title="litellm-reconciler users.yaml")

    version: Literal[1] = Field(description="file format version")
    include: list[IncludePattern] = Field(
        default_factory=list,
        max_length=MAX_INCLUDE_PATTERNS,
        description=(
            "glob patterns of files relative to this one (e.g. teams/*.yaml) that hold more teams and users; "
            "read in sorted order, each matching at least one file"
        ),
    )
    owners: Owners | None = Field(
        default=None,
        description=(
            "the admins: GitHub users or teams ('@org/admins') who review this file, the CODEOWNERS file, "
            "and every included file whose teams name no owners"
        ),
    )
    environments: list[Environment] = Field(
        default_factory=list,
        max_length=MAX_ENVIRONMENTS,
        description="the proxies this file manages, in promotion order; none = one proxy, no --env",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    removals: Removals = Field(default_factory=Removals)
    organizations: list[OrganizationSpec] = Field(default_factory=list)
    teams: list[TeamSpec] = Field(default_factory=list)
    users: list[UserSpec] = Field(default_factory=list)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The schema of ``users.yaml`` or of a file it includes: one schema file for every file of a
        layout, so each names the same ``$schema``. Exactly one of the two shapes matches a file
        (the main file has ``version``; an included file may not)."""
        schema = TypeAdapter(UsersFile | IncludedFile).json_schema(*args, **kwargs)
        shapes = schema.pop("anyOf")
        title = "litellm-reconciler users.yaml, or a file it includes"
        return {**schema, "title": title, "oneOf": shapes}


class IncludedFile(_Strict):
    """A file the main file includes: more teams and users, nothing that concerns the whole
    layout (version, environments, defaults, removals, organizations, owners, include)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, title="litellm-reconciler file included by users.yaml"
    )

    teams: list[TeamSpec] = Field(
        default_factory=list, description="teams, whose owners review this file (see 'owners' of a team)"
    )
    users: list[UserSpec] = Field(
        default_factory=list, description="users; they may be in teams declared in any file of the layout"
    )


@dataclass(frozen=True)
class Problem:
    """One input error, located in the file (line 0: the file as a whole).

    ``column`` only for problems with a single character, which may be invisible.
    """

    file: str
    line: int
    message: str
    column: int | None = None

    def __str__(self) -> str:
        if not self.line:  # the file as a whole: no line to point at
            return f"{self.file}: {self.message}"
        column = f":{self.column}" if self.column is not None else ""
        return f"{self.file}:{self.line}{column}: {self.message}"


class InputError(Exception):
    """Raised when the file is unusable; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column or 0, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Origins:
    """Where the objects of a plan's actions are declared, and who reviews each file: kept beside
    the actions, never in them, so that moving a team to another file changes no action and no
    fingerprint. Empty for a layout of one file."""

    #: Action address -> the included file that declares its object; an action not here is the
    #: main file's (or declared nowhere: a removal, which the main file's ``removals`` asks for).
    files: dict[str, str] = field(default_factory=dict)
    #: Every file, the main file first -> its owners (see ``Declarations.owners``).
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Declarations:
    """Which file of a layout declares what, and who owns each file."""

    #: Every file, the main file first, then the included ones in sorted order -> its owners: the main
    #: file's are its top-level ``owners`` (the admins); an included file's, the owners its teams name,
    #: or the admins' when they name none (someone must review every file).
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The main file's ``include`` patterns.
    patterns: tuple[str, ...] = ()
    #: With ``include``: each team alias -> the included file that declares it, None for the main file.
    teams: dict[str, str | None] = field(default_factory=dict)
    #: With ``include``: each user key -> the included file that declares it (and the user's memberships
    #: and invitation), None for the main file.
    users: dict[str, str | None] = field(default_factory=dict)

    def file_of(self, address: str, params: dict[str, Any]) -> str | None:
        """The included file that declares the object of the action at ``address`` (as the planner
        writes them: ``team.<alias>``, ``user.<key>``, ``invitation.<key>``, ``membership.<alias>.<key>``),
        None for the main file. A membership is the user's entry's; one the plan removes, of a user no
        file declares any more, is its team's file (whose owners review that team's roster)."""
        kind, _, name = address.partition(".")
        if kind == "team":
            return self.teams.get(name)
        if kind in ("user", "invitation"):
            return self.users.get(name)
        if kind == "membership":
            key = (params.get("user_email") or "").lower()
            return self.users[key] if key in self.users else self.teams.get(params["team_alias"])
        return None


@dataclass(frozen=True)
class DesiredState:
    """A validated file plus the resolution of team references to declared teams."""

    source: str
    spec: UsersFile
    #: The environment this state was selected for (``for_environment``); None for a file without environments.
    environment: str | None = None
    #: What is valid but will not do what it seems to (located like problems); shown, never fatal.
    warnings: tuple[Problem, ...] = ()
    #: Each environment's own warnings (``for_environment`` picks them).
    environment_warnings: dict[str | None, tuple[Problem, ...]] = field(default_factory=dict, compare=False)
    #: Where each team and user is declared, when the file includes others.
    declarations: Declarations = field(default_factory=Declarations, compare=False)

    def origins(self, actions: Iterable[Any]) -> Origins:
        """Where the object of each of a plan's ``actions`` is declared (for ``Plan.origins``)."""
        if not self.declarations.teams and not self.declarations.users:
            return Origins(owners=self.declarations.owners)  # one file: every action is the main file's
        files = {}
        for action in actions:
            file = self.declarations.file_of(action.address, action.params)
            if file is not None:
                files[action.address] = file
        return Origins(files, self.declarations.owners)

    @property
    def environments(self) -> list[str]:
        """The environments the file declares, in its (promotion) order."""
        return [env.name for env in self.spec.environments]

    def for_environment(self, name: str | None) -> DesiredState:
        """What the file wants on the proxy of environment ``name``: the teams and users that are
        in it, with that environment's overrides applied and memberships of teams it lacks left
        out. A file without environments is its own only state (``name`` must be None); a file
        with environments must be given one. ``InputError`` otherwise, before any request.

        Users that nothing changes for are shared, not copied (measured: about 1.5 s for 100,000
        users when every one of them needs a copy, e.g. all name teams by id).
        """
        names = self.environments
        if not names:
            if name is None:
                return self
            raise InputError([Problem(self.source, 0, f"--env {name}: this file declares no environments")])
        if name is None:
            raise InputError(
                [Problem(self.source, 0, f"this file declares environments {', '.join(names)}; choose one with --env")]
            )
        if name not in names:
            raise InputError(
                [Problem(self.source, 0, f"unknown environment {name!r}; this file declares {', '.join(names)}")]
            )
        teams = [
            _with_override(team, team.overrides.get(name))
            for team in self.spec.teams
            if team.only_in is None or name in team.only_in
        ]
        present = {team.alias for team in teams}
        alias_of = {ref: team.alias for ref, team in self.team_refs.items()}
        users = []
        for user in self.spec.users:
            if user.only_in is not None and name not in user.only_in:
                continue
            memberships = [_aliased(entry, alias_of) for entry in user.teams if alias_of[team_ref(entry)] in present]
            if memberships != user.teams:
                user = user.model_copy(update={"teams": memberships})
            users.append(_with_override(user, user.overrides.get(name)))
        keys = {user.key for user in users}
        organizations = [
            org
            if org.members is None or all(m.email.lower() in keys for m in org.members)
            else org.model_copy(update={"members": [m for m in org.members if m.email.lower() in keys]})
            for org in self.spec.organizations
        ]
        update = {"environments": [], "teams": teams, "users": users, "organizations": organizations}
        spec = self.spec.model_copy(update=update)
        warnings = self.environment_warnings.get(name, ())
        return DesiredState(self.source, spec, environment=name, warnings=warnings, declarations=self.declarations)

    @property
    def organizations(self) -> list[OrganizationSpec]:
        return list(self.spec.organizations)

    @property
    def teams(self) -> list[TeamSpec]:
        return list(self.spec.teams)

    @property
    def users(self) -> list[UserSpec]:
        return list(self.spec.users)

    def team_for_ref(self, ref: str) -> TeamSpec:
        """The declared team a user's ``teams`` entry names (by alias first, then by id)."""
        return self.team_refs[ref]

    @cached_property
    def team_refs(self) -> dict[str, TeamSpec]:
        """Every name a user's ``teams`` entry may use (alias or id) -> the team, built once
        (a lookup per membership must not scan the teams)."""
        refs = {team.id: team for team in self.spec.teams if team.id}
        refs.update({team.alias: team for team in self.spec.teams})
        return refs


_Spec = TypeVar("_Spec", TeamSpec, UserSpec)


def _aliased(entry: str | Membership, alias_of: dict[str, str]) -> str | Membership:
    """A ``teams`` entry naming its team by alias (a declared id is resolved)."""
    if isinstance(entry, str):
        return alias_of[entry]
    alias = alias_of[entry.team]
    return entry if alias == entry.team else entry.model_copy(update={"team": alias})


def _with_override(spec: _Spec, override: TeamSettings | UserSettings | None) -> _Spec:
    """``spec`` with the fields the override names (explicit nulls included) replaced."""
    if override is None:
        return spec
    return spec.model_copy(update={name: getattr(override, name) for name in override.model_fields_set})


# --------------------------------------------------------------------------- reading the file


def read_input(path: str | Path, limit: int | None = None, name: str | None = None) -> str:
    """The text of ``path`` exactly as stored (BOM and line ends kept), or ``InputError``.

    Only a regular file of at most ``limit`` bytes (``MAX_FILE_BYTES``; less for an included
    file, by what the files before it took) is read, and never more than that: a FIFO would
    block, and /dev/zero (or a file that grows) would fill memory. ``name``: the file's name in
    messages (``path`` itself by default).
    """
    file = name or str(path)
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        info = os.stat(path)
        _check_regular(info.st_mode, file)
        if info.st_size > limit:
            raise InputError([_too_large(file, limit)])
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it must not wait for a writer.
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | getattr(os, "O_NONBLOCK", 0))) as handle:
            _check_regular(os.fstat(handle.fileno()).st_mode, file)
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError([Problem(file, 0, f"cannot read file: {exc.strerror or exc}")]) from None
    if len(data) > limit:
        raise InputError([_too_large(file, limit)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8")) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError([Problem(file, line, f"not UTF-8: byte 0x{data[exc.start]:02x}", column)]) from None


def _check_regular(mode: int, file: str) -> None:
    """Anything but a regular file may block (FIFO) or never end (a device)."""
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise InputError([Problem(file, 0, f"not a regular file ({kind})")])


def _too_large(file: str, limit: int) -> Problem:
    """One message whether the size came from the stat or from reading."""
    cap = f"over {MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES // 2**20} MiB)"
    if limit < MAX_FILE_BYTES:
        return Problem(file, 0, f"file too large: with the files read before it, the files are {cap}")
    return Problem(file, 0, f"file too large: {cap}")


def load_desired(path: str | Path) -> DesiredState:
    """Read, parse and validate ``path``; raise ``InputError`` listing every problem."""
    return parse_desired(read_input(path), str(path))


# --------------------------------------------------------------------------- YAML with lines

Path_ = tuple[Any, ...]

# What YAML refuses anyway (C0 and C1 controls but tab and line breaks, DEL, U+FFFE/FFFF);
# looked for first, so that the message can say where the invisible character is.
_NOT_PRINTABLE_RE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check_characters(text: str, file: str) -> None:
    """The first character YAML would refuse, by line and column (it may be invisible)."""
    found = _NOT_PRINTABLE_RE.search(text)
    if found:
        char, index = found.group(), found.start()
        line = text.count("\n", 0, index) + 1
        column = index - text.rfind("\n", 0, index)
        kind = "control character" if unicodedata.category(char) == "Cc" else "character"
        raise InputError([Problem(file, line, f"{kind} U+{ord(char):04X} is not allowed", column)])


class _Refused(Exception):
    """YAML this file format does not allow; loading stops at the first one."""

    def __init__(self, mark: Any, reason: str):
        self.line = mark.line + 1
        super().__init__(reason)


_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels is not allowed"
_NO_KEY = object()  # a mapping waiting for its next key
_SKIP = object()  # the value of a duplicate key: read, then dropped
_NOTHING = object()  # an empty stream


class _Frame:
    """An open mapping or list; ``path`` is None inside a dropped value. ``size`` counts the
    items or keys read so far, dropped ones included."""

    __slots__ = ("key", "path", "size", "value")

    def __init__(self, value: Any, path: Path_ | None):
        self.value = value
        self.path = path
        self.key: Any = _NO_KEY
        self.size = 0


def _too_many(frame: _Frame, mark: Any) -> NoReturn:
    """The list or mapping being read has one item or key past its limit."""
    where = ".".join(map(str, frame.path)) + ": " if frame.path else ""
    if type(frame.value) is list:
        raise _Refused(mark, f"{where}a list of more than {MAX_ITEMS:,} items is not allowed")
    raise _Refused(mark, f"{where}a mapping of more than {MAX_KEYS} keys is not allowed")


def _too_long(event: yaml.ScalarEvent) -> NoReturn:
    """A key or value longer than any in this format: refused before it is validated or shown."""
    raise _Refused(
        event.start_mark,
        f"a value of {len(event.value):,} characters is not allowed: none in this file needs more than "
        f"{MAX_SCALAR_CHARS}",
    )


def _read_yaml(text: str, file: str, budget: int | None = None) -> tuple[Any, dict[Path_, int], list[Problem], int]:
    """Plain data from the parser's events, the line of every path, duplicate keys, and the number
    of nodes read (at most ``budget``: ``MAX_NODES``, less by what the files read before took).

    Built from events rather than a composed tree so that anything hostile is refused
    the moment it appears (an alias bomb at its first anchor, nesting at level
    MAX_DEPTH + 1, the node past MAX_NODES, the item past MAX_ITEMS, a key or value of
    over MAX_SCALAR_CHARS) and the work stays in libyaml: memory and time stay bounded
    by the limits, whatever the file holds. Raises ``InputError`` for malformed or
    disallowed YAML.
    """
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    stack: list[_Frame] = []
    root: Any = _NOTHING
    nodes = 0
    budget = MAX_NODES if budget is None else budget
    loader = _Loader(text)
    try:
        while True:
            event = loader.get_event()
            kind = type(event)  # dispatch by exact type: this loop runs once per event of a 100k-user file
            if kind is yaml.ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    _refuse_node(event)
                value = event.value
                if len(value) > MAX_SCALAR_CHARS:
                    _too_long(event)
                if event.implicit[0]:
                    typed = _TYPED.get(value[:1])
                    if typed is not None and typed(value):
                        value = _scalar(event)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    _refuse_node(event)
                value = {} if kind is yaml.MappingStartEvent else []
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                stack.pop()
                continue
            elif kind is yaml.AliasEvent:
                _refuse_node(event)
            elif kind is yaml.DocumentStartEvent and root is not _NOTHING:
                raise _Refused(
                    event.start_mark, "malformed YAML: expected a single document, but found another document"
                )
            elif kind is yaml.StreamEndEvent:
                break
            else:
                continue
            nodes += 1
            if nodes > budget:
                raise _Refused(event.start_mark, _too_many_nodes(budget))
            path: Path_ | None
            if not stack:
                root, path = value, ()
                lines[path] = event.start_mark.line + 1
            else:
                frame = stack[-1]
                key = frame.key
                if key is not _NO_KEY:  # a mapping's value: its line is its key's, known already
                    frame.key = _NO_KEY
                    if key is _SKIP or frame.path is None:
                        path = None
                    else:
                        frame.value[key] = value
                        if kind is yaml.ScalarEvent:
                            continue  # most values: no path needed
                        path = frame.path + (key,)
                elif type(frame.value) is list:
                    frame.size += 1
                    if frame.size > MAX_ITEMS:
                        _too_many(frame, event.start_mark)
                    path = None if frame.path is None else frame.path + (len(frame.value),)
                    if path is not None:
                        frame.value.append(value)
                        lines[path] = event.start_mark.line + 1
                else:  # a mapping's key
                    if kind is not yaml.ScalarEvent:
                        raise _Refused(event.start_mark, "unsupported YAML: a mapping or list cannot be used as a key")
                    frame.size += 1
                    if frame.size > MAX_KEYS:
                        _too_many(frame, event.start_mark)
                    line = event.start_mark.line + 1
                    if frame.path is not None and value in frame.value:
                        if len(problems) <= MAX_PROBLEMS:  # enough for _at_most to say there are more
                            first = lines[frame.path + (value,)]
                            problems.append(Problem(file, line, f"duplicate key {value!r} (first on line {first})"))
                        value = _SKIP
                    elif frame.path is not None:
                        # The key's line, not the value's: "alias:" is where a reader looks.
                        lines[frame.path + (value,)] = line
                    frame.key = value
                    continue
            if kind is not yaml.ScalarEvent:
                if len(stack) == MAX_DEPTH:
                    raise _Refused(event.start_mark, _TOO_DEEP)
                stack.append(_Frame(value, path))
    except _Refused as exc:
        raise InputError(_at_most(problems, file) + [Problem(file, exc.line, str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise InputError(_at_most(problems, file) + [Problem(file, line, _yaml_problem(exc, text))]) from None
    finally:
        loader.dispose()
    return root, lines, problems, nodes


def _too_many_nodes(budget: int) -> str:
    together = "" if budget == MAX_NODES else " in all files together"
    return (
        f"more than {MAX_NODES:,} YAML nodes (keys, values, lists and mappings){together} are not allowed; "
        "a user takes about 10, 100,000 users about 1,000,000"
    )


def _refuse_node(event: yaml.NodeEvent) -> NoReturn:
    """Anchors, aliases and tags are refused: an alias bomb and an object tag each need one."""
    if event.anchor is not None:
        sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
        raise _Refused(event.start_mark, f"YAML anchors and aliases are not allowed: {sign + event.anchor!r}")
    tag: str = event.tag  # type: ignore[attr-defined]
    shown = "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag
    if tag in _SAFE.yaml_constructors:
        raise _Refused(
            event.start_mark, f"YAML tag {shown!r} is not allowed: this file uses no tags, not even standard ones"
        )
    raise _Refused(event.start_mark, f"unknown YAML tag {shown!r}; this file uses no tags")


def _scalar(event: yaml.ScalarEvent) -> Any:
    """A plain scalar's value by PyYAML's safe rules: a number, bool, null, date or text."""
    value = event.value
    if value.isdigit() and value.isascii() and value[0] != "0" and len(value) <= _MAX_NUMBER_CHARS:
        return int(value)  # the usual number, read as PyYAML's rules would, without their Python-level steps
    tag = _SAFE.resolve(yaml.ScalarNode, value, (True, False))
    construct = _SAFE.yaml_constructors.get(tag)
    # "<<" (merge) and "=" (value) have no constructor: they stay text.
    if tag == "tag:yaml.org,2002:str" or construct is None:
        return event.value
    name = tag.rsplit(":", 1)[1]
    if len(event.value) > _MAX_NUMBER_CHARS:
        raise _Refused(
            event.start_mark, f"a YAML {name} of {len(event.value)} characters is too long; quote it if it is text"
        )
    try:
        return construct(_SAFE, yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark))
    except (ValueError, ArithmeticError, yaml.YAMLError):
        raise _Refused(
            event.start_mark, f"{event.value!r} looks like a YAML {name} but is not a valid one; quote it if it is text"
        ) from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """The parser's reason, with where the construct began (an unclosed quote is found at the end).

    A tab, the usual cause, is spelled out, and libyaml's own depth limit (it scans
    "[[[[..." ahead up to 1000 levels) gets the same message as ours.
    """
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    if problem == "exceeded maximum nesting depth":
        return _TOO_DEEP
    mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if mark is not None:
        line = (text.splitlines()[mark.line : mark.line + 1] or [""])[0]
        if line[mark.column : mark.column + 1] == "\t":
            return "malformed YAML: a tab cannot start a token; indent with spaces"
        if line[mark.column : mark.column + 1] == "@":
            return "malformed YAML: a value cannot start with '@' unquoted; write an owner as '@org/team'"
    if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
        return f"malformed YAML: {problem} ({context} that starts on line {context_mark.line + 1})"
    return f"malformed YAML: {problem or exc}"


def _line_for(loc: Path_, lines: dict[Path_, int]) -> int:
    """The line of the deepest known prefix of a pydantic error location."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


class _Places:
    """Where each path of the data was written: its file, its line, and the path as that file
    numbers it. With ``include``, the entries of ``teams`` and of ``users`` come from several
    files, one run of indices each, so every check can run on one merged list and still say
    ``teams/a.yaml:3: users.0.email`` for the first user of an included file. Each file keeps
    its own lines, looked up by the path as it numbers it: nothing is renumbered."""

    def __init__(self, main: str, lines: dict[Path_, int]) -> None:
        self.main = main
        self._lines = lines
        #: section -> (the first index of each run, in order; the file of each run and its lines).
        self._runs: dict[str, tuple[list[int], list[tuple[str, dict[Path_, int]]]]] = {}

    def add_run(self, section: str, start: int, file: str, lines: dict[Path_, int]) -> None:
        """Entries ``start`` and on of ``section`` (until the next run) come from ``file``."""
        starts, sources = self._runs.setdefault(section, ([0], [(self.main, self._lines)]))
        starts.append(start)
        sources.append((file, lines))

    def _local(self, loc: Path_) -> tuple[str, Path_, dict[Path_, int]]:
        """The file of ``loc``, ``loc`` as that file numbers it, and the file's lines."""
        runs = self._runs.get(loc[0]) if len(loc) > 1 and type(loc[1]) is int else None
        if runs is None:
            return self.main, loc, self._lines
        starts, sources = runs
        run = bisect_right(starts, loc[1]) - 1
        file, lines = sources[run]
        return file, (loc[0], loc[1] - starts[run], *loc[2:]), lines

    def file(self, loc: Path_) -> str:
        return self._local(loc)[0]

    def line(self, loc: Path_) -> int:
        _, local, lines = self._local(loc)
        return _line_for(local, lines)

    def path(self, loc: Path_) -> str:
        """``loc`` as its file numbers it: ``users.0.email``; ``file`` for the file as a whole."""
        return ".".join(str(p) for p in self._local(loc)[1]) or "file"

    def place(self, loc: Path_, here: Path_) -> str:
        """Where ``loc`` is, said from ``here``: ``line 3`` in the same file, else ``teams/a.yaml:3``."""
        file = self.file(loc)
        return f"line {self.line(loc)}" if file == self.file(here) else f"{file}:{self.line(loc)}"

    def problem(self, loc: Path_, message: str) -> Problem:
        return Problem(self.file(loc), self.line(loc), message)


def parse_desired(text: str, file: str = "users.yaml") -> DesiredState:
    """Validate YAML text (the checks after reading: characters, YAML, schema); ``file`` names it in
    messages and, when the text has ``include``, is where the patterns start from."""
    with _without_cycle_collection():
        return _parse(text, file)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Loading makes millions of small objects and no reference cycle: the cyclic garbage collector
    would walk them all, again and again, to free nothing (40% of the time of 100,000 users).
    Reference counting frees them as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(text: str, file: str) -> DesiredState:
    """``parse_desired``'s work: every check, every problem (up to MAX_PROBLEMS) in one ``InputError``."""
    _check_characters(text, file)
    data, lines, problems, nodes = _read_yaml(text, file)
    if data is _NOTHING:
        empty = Problem(file, 1, "the file is empty; expected at least 'version: 1'")
        raise InputError(_at_most(problems, file) + [empty])
    if not isinstance(data, dict):
        raise InputError(
            _at_most(problems, file)
            + [Problem(file, 1, "the top level must be a mapping with 'version', 'teams' and 'users'")]
        )
    places = _Places(file, lines)
    plain = _plain(text)
    included: tuple[str, ...] = ()
    if "include" in data:
        budget = _Budget(MAX_FILE_BYTES - len(text.encode("utf-8")), MAX_NODES - nodes, plain)
        included = _include(data, places, problems, budget)
        plain = budget.plain
    if not plain:
        _normalise_names(data)
    problems.extend(_cross_check(data, places))
    spec = _validate(data, places, problems)
    if spec is None or problems:
        raise InputError(_at_most(problems, file))
    warnings = _file_warnings(spec, places)
    return DesiredState(
        source=file,
        spec=spec,
        warnings=warnings[None],
        environment_warnings=warnings,
        declarations=_declarations(spec, places, included),
    )


def _plain(text: str) -> bool:
    """ASCII without escapes ("\\u00e9"): no name in it needs normalising."""
    return text.isascii() and "\\" not in text


# --------------------------------------------------------------------------- included files


@dataclass
class _Budget:
    """What the files read so far left of the caps all files share, and whether all were plain
    (ASCII without escapes: nothing to normalise)."""

    bytes: int
    nodes: int
    plain: bool = True


#: Top-level keys that concern the whole layout: only the main file may have them.
_MAIN_ONLY = ("version", "environments", "defaults", "removals", "organizations", "owners")
#: What an included file holds: entries appended to the main file's lists of the same name.
_INCLUDED_SECTIONS = ("teams", "users")


def _include(data: dict[str, Any], places: _Places, problems: list[Problem], budget: _Budget) -> tuple[str, ...]:
    """Read the files ``include`` names and append their teams and users to ``data`` (main file's first,
    then each file's in sorted path order), their lines to ``places``; the files, as messages name them.

    A pattern or a file that cannot be used is fatal (``InputError`` listing each with the other
    problems so far): without the teams it declares, every reference to them would be reported too.
    A file's content is checked like the main file's, its problems at its own lines."""
    fatal: list[Problem] = []
    paths = _included_paths(data.get("include"), places, fatal)
    read: list[tuple[str, dict[str, list[Any]], dict[Path_, int]]] = []
    for path, name in paths:
        try:
            content, lines = _read_included(path, name, budget, problems)
        except InputError as exc:
            fatal += exc.problems
            continue
        read.append((name, _included_sections(content, lines, name, places.main, problems), lines))
    if fatal:
        raise InputError(_at_most(problems + fatal, places.main))
    for name, sections, lines in read:
        _merge(data, sections, lines, name, places)
    return tuple(name for _, name in paths)


def _included_paths(patterns: object, places: _Places, problems: list[Problem]) -> list[tuple[Path, str]]:
    """The files the patterns match, each once, sorted by path: (the path to read, the name for messages).

    Patterns are relative to the main file's directory and cannot leave it (``_include_problem``); a
    match must be a file there, not a link to one: CODEOWNERS protects a path, so the file read must
    be the file at that path. A pattern that matches nothing is a problem: a mistyped pattern would
    otherwise drop its teams, and with ``removals`` delete them."""
    if not isinstance(patterns, list) or len(patterns) > MAX_INCLUDE_PATTERNS:
        problems.append(
            places.problem(("include",), f"include: expected a list of at most {MAX_INCLUDE_PATTERNS} glob patterns")
        )
        return []
    base = Path(places.main).parent
    found: dict[str, Path] = {}
    for i, pattern in enumerate(patterns):
        loc = ("include", i)
        reason = _include_problem(pattern)
        if reason:
            problems.append(places.problem(loc, f"include.{i}: {reason}"))
            continue
        # Directories are skipped: "**" matches them, and teams/* the subdirectory of an archive.
        matches = [match for match in islice(base.glob(pattern), MAX_INCLUDED_FILES + 1) if not match.is_dir()]
        if not matches:
            problems.append(places.problem(loc, f"include.{i}: {shown(pattern)} matches no file in {_directory(base)}"))
        for match in matches:
            relative = match.relative_to(base).as_posix()
            refused = _included_file_problem(match, relative, base, places.main)
            if refused:
                problems.append(places.problem(loc, f"include.{i}: {relative}: {refused}"))
            else:
                found[relative] = match
        if len(found) > MAX_INCLUDED_FILES:
            problems.append(
                places.problem(loc, f"include.{i}: the patterns match more than {MAX_INCLUDED_FILES} files")
            )
            return []
    return [(found[relative], str(base / relative)) for relative in sorted(found)]


def _directory(base: Path) -> str:
    return "the main file's directory" if base == Path() else str(base)


#: The paths an included file may have: a CODEOWNERS line must be able to name it (no space, no
#: wildcard, no '#', no '!'), and a reviewer to read it.
PLAIN_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def _included_file_problem(match: Path, relative: str, base: Path, main: str) -> str | None:
    """Why a file a pattern matches cannot be included, or None."""
    if match.resolve() == Path(main).resolve():
        return "that is the main file itself"
    if match.resolve() != base.resolve() / relative:
        return (
            "a symbolic link, or in a linked directory: CODEOWNERS protects a path, so an included file "
            "must be the file at its path"
        )
    if not PLAIN_PATH.fullmatch(relative):
        return "name it with letters, digits, '.', '_', '-' and '/' only, so that a CODEOWNERS line can name it"
    return None


def _read_included(path: Path, name: str, budget: _Budget, problems: list[Problem]) -> tuple[Any, dict[Path_, int]]:
    """One included file's data and lines, read with the same checks as the main file and within
    what the files before it left of the shared caps; its duplicate keys go to ``problems``."""
    text = read_input(path, budget.bytes, name)
    budget.bytes -= len(text.encode("utf-8"))
    budget.plain = budget.plain and _plain(text)
    _check_characters(text, name)
    content, lines, found, nodes = _read_yaml(text, name, budget.nodes)
    budget.nodes -= nodes
    problems.extend(found)
    return content, lines


def _included_sections(
    content: Any, lines: dict[Path_, int], name: str, main: str, problems: list[Problem]
) -> dict[str, list[Any]]:
    """The ``teams`` and ``users`` lists of an included file; anything else in it is a problem."""
    if content is _NOTHING:
        return {}  # an empty file declares nothing, as a file whose last team moved out
    if not isinstance(content, dict):
        problems.append(Problem(name, 1, "the top level must be a mapping with 'teams' and 'users'"))
        return {}
    sections = {}
    for key, value in content.items():
        line = lines.get((key,), 1)
        if key in _INCLUDED_SECTIONS and isinstance(value, list):
            sections[key] = value
        elif key in _INCLUDED_SECTIONS:
            problems.append(Problem(name, line, f"{key}: Input should be a valid list"))
        elif key == "include":
            message = "include: an included file may not include further files; list every pattern in "
            problems.append(Problem(name, line, message + f"the include of {main}"))
        elif key in _MAIN_ONLY:
            message = f"{key!r} belongs in the main file ({main}); an included file holds only teams and users"
            problems.append(Problem(name, line, message))
        else:
            problems.append(Problem(name, line, f"unknown key {key!r}; an included file holds only teams and users"))
    return sections


def _merge(
    data: dict[str, Any], sections: dict[str, list[Any]], lines: dict[Path_, int], name: str, places: _Places
) -> None:
    """Append an included file's entries to the main file's lists (its first team is the team after
    those of the files before it), and where they come from to ``places``."""
    for section, entries in sections.items():
        merged = data.setdefault(section, [])
        if not isinstance(merged, list):
            continue  # the main file's own mistake, which the schema reports
        if len(merged) + len(entries) > MAX_ITEMS:
            line = lines[(section, MAX_ITEMS - len(merged))]
            message = f"{section}: more than {MAX_ITEMS:,} items in all files together are not allowed"
            raise InputError([Problem(name, line, message)])
        places.add_run(section, len(merged), name, lines)
        merged.extend(entries)


def _declarations(spec: UsersFile, places: _Places, included: tuple[str, ...]) -> Declarations:
    """Which included file declares each team and user, and each file's owners."""
    admins = tuple(spec.owners or ())
    if not included:
        return Declarations(owners={places.main: admins})
    teams = {team.alias: _included_file(("teams", i), places) for i, team in enumerate(spec.teams)}
    users = {user.key: _included_file(("users", i), places) for i, user in enumerate(spec.users)}
    owners = {places.main: admins}
    for file in included:
        handles = {o for team in spec.teams if teams[team.alias] == file for o in team.owners or ()}
        owners[file] = tuple(sorted(handles, key=str.lower)) or admins
    return Declarations(owners=owners, patterns=tuple(spec.include), teams=teams, users=users)


def _included_file(loc: Path_, places: _Places) -> str | None:
    file = places.file(loc)
    return None if file == places.main else file


_MORE_PROBLEMS = f"more than {MAX_PROBLEMS} problems: only the first {MAX_PROBLEMS} are listed; fix them and run again"


def _at_most(problems: list[Problem], file: str) -> list[Problem]:
    """The first MAX_PROBLEMS problems by file and line, and a note that there are more: a file with
    thousands is mostly one mistake repeated, and listing them all costs seconds."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    first = heapq.nsmallest(MAX_PROBLEMS, problems, key=lambda p: (p.file, p.line, p.column or 0, p.message))
    return first + [Problem(file, 0, _MORE_PROBLEMS)]


#: The long lists, validated entry by entry, so that a run stops after MAX_PROBLEMS problems
#: instead of converting an error for each of a million wrong entries (3.7 s and a GB for 700,000).
_ENTRY_MODELS: dict[str, type[BaseModel]] = {"organizations": OrganizationSpec, "teams": TeamSpec, "users": UserSpec}


def _validate(data: dict[str, Any], places: _Places, problems: list[Problem]) -> UsersFile | None:
    """The file as models, or None with what is wrong added to ``problems``."""
    checked = dict(data)
    for section, model in _ENTRY_MODELS.items():
        entries = data.get(section)
        if isinstance(entries, list):
            checked[section] = _valid_entries(entries, section, model, places, problems)
    try:
        return UsersFile.model_validate(checked)  # the entries are models already: not validated again
    except ValidationError as exc:
        problems += _schema_problems(exc, (), places, max(0, MAX_PROBLEMS + 1 - len(problems)))
        return None


def _valid_entries(
    entries: list[Any], section: str, model: type[BaseModel], places: _Places, problems: list[Problem]
) -> list[Any]:
    """The entries of ``section`` that are valid; the others' problems go to ``problems``, and
    validation stops once there are more than MAX_PROBLEMS."""
    valid = []
    for i, entry in enumerate(entries):
        room = MAX_PROBLEMS + 1 - len(problems)
        if room <= 0:
            break
        try:
            valid.append(model.model_validate(entry))
        except ValidationError as exc:
            problems += _schema_problems(exc, (section, i), places, room)
    return valid


def _schema_problems(exc: ValidationError, prefix: Path_, places: _Places, limit: int) -> list[Problem]:
    """The first ``limit`` of pydantic's errors (for what is at ``prefix``), located."""
    found = []
    for error in islice(exc.errors(include_url=False), limit):
        loc = prefix + tuple(p for p in error["loc"] if p not in _TEAM_ENTRY_TAGS)
        found.append(places.problem(loc, _describe(places.path(loc), loc, error)))
    return found


def _normalise_names(data: dict[str, Any]) -> None:
    """Aliases and the references to them in NFC, in place, before anything compares them: "é"
    typed as one character or as "e" and an accent is one name, so a duplicate or a reference is
    recognised whichever way each was typed (and the proxy gets one spelling)."""
    for _, organization in _entries(data, "organizations"):
        _nfc_at(organization, "alias")
    for _, team in _entries(data, "teams"):
        _nfc_at(team, "alias")
        for scope in (team, *_overrides(team)):
            _nfc_at(scope, "organization")
    for _, user in _entries(data, "users"):
        for scope in (user, *_overrides(user)):
            _nfc_at(scope, "alias")
        entries = user.get("teams")
        for entry_index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, str):
                entries[entry_index] = nfc(entry)
            elif isinstance(entry, dict):
                _nfc_at(entry, "team")


def _nfc_at(mapping: dict[str, Any], key: str) -> None:
    value = mapping.get(key)
    if isinstance(value, str):
        mapping[key] = nfc(value)


def _overrides(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-environment overrides of a team or user entry that are mappings."""
    overrides = entry.get("overrides")
    return [o for o in overrides.values() if isinstance(o, dict)] if isinstance(overrides, dict) else []


#: What LiteLLM applies only to a user's personal keys, and where it must go to bind a team's keys.
_PERSONAL_ONLY = {
    # The team's own max_budget caps the whole team; what caps this user in it is the membership's.
    "max_budget": "max_budget_in_team on the membership ({team: …, max_budget_in_team: …})",
    "models": "the team's models",
}
#: Warnings shown one by one; more are counted in one last line (a 100,000-user file must not print 200,000).
MAX_WARNINGS = 20


def _file_warnings(spec: UsersFile, places: _Places) -> dict[str | None, tuple[Problem, ...]]:
    """The warnings of each environment (key None: the file as a whole, every environment's at once)."""
    candidates = _personal_limit_users(spec)
    names = [env.name for env in spec.environments]
    unheeded = _unheeded_owners(spec, places)
    if not names:
        return {None: unheeded + _warnings(candidates, spec, places, None)}
    found: dict[str | None, tuple[Problem, ...]] = {
        name: unheeded + _warnings(candidates, spec, places, name) for name in names
    }
    merged = {w for warnings in found.values() for w in warnings}
    found[None] = tuple(sorted(merged, key=lambda w: (w.file, w.line, w.message)))
    return found


def _unheeded_owners(spec: UsersFile, places: _Places) -> tuple[Problem, ...]:
    """``owners`` of a team in the main file: valid (the main file may hold what an included file
    would, and plans the same), but CODEOWNERS gives the main file to its own owners, the admins."""
    return tuple(
        places.problem(
            ("teams", i, "owners"),
            f"{places.path(('teams', i, 'owners'))}: a team in the main file is reviewed by the main file's "
            "owners, not its own: CODEOWNERS names files; move the team to an included file for these to review it",
        )
        for i, team in enumerate(spec.teams)
        if team.owners and places.file(("teams", i)) == places.main
    )


#: A user a warning may be about: its index, the user, its teams' aliases, and the location of
#: each of its own settings that LiteLLM applies to personal keys only (before any override).
_Candidate = tuple[int, UserSpec, list[str], dict[str, Path_]]


def _personal_limit_users(spec: UsersFile) -> list[_Candidate]:
    """The users in teams with a max_budget or models of their own (or overrides, which may set
    them), worked out once for all environments: a file may have 100,000 users and 10 environments."""
    alias_of = {team.id: team.alias for team in spec.teams if team.id} | {team.alias: team.alias for team in spec.teams}
    found = []
    for i, user in enumerate(spec.users):
        if not user.teams or (not user.overrides and _PERSONAL_ONLY.keys().isdisjoint(user.model_fields_set)):
            continue  # most users: nothing to warn about
        own = {
            name: ("users", i, name)
            for name in _PERSONAL_ONLY
            if name in user.model_fields_set and getattr(user, name) not in (None, [])
        }
        found.append((i, user, [alias_of[team_ref(entry)] for entry in user.teams], own))
    return found


def _warnings(
    candidates: list[_Candidate], spec: UsersFile, places: _Places, environment: str | None
) -> tuple[Problem, ...]:
    """Settings that are valid but would not be enforced as they read: a user's own budget or
    models, for a user in teams (LiteLLM checks them only on keys without a team), as they are in
    ``environment`` (its users, its teams, its overrides)."""
    present = None
    if environment is not None and any(team.only_in is not None for team in spec.teams):
        present = {team.alias for team in spec.teams if team.only_in is None or environment in team.only_in}
    found: list[Problem] = []
    count = 0
    for i, user, aliases, own in candidates:
        if environment is not None and user.only_in is not None and environment not in user.only_in:
            continue
        teams = aliases if present is None else [alias for alias in aliases if alias in present]
        if not teams:
            continue
        override = user.overrides.get(environment) if environment is not None else None
        settings = own if override is None else _overridden(own, override, ("users", i, "overrides", environment))
        for name, loc in settings.items():
            count += 1
            if count <= MAX_WARNINGS:
                found.append(
                    places.problem(
                        loc,
                        f"{places.path(loc)}: LiteLLM applies a user's own {name} only to the user's personal keys, "
                        f"not to the keys of a team ({', '.join(teams)}); to bind those, set {_PERSONAL_ONLY[name]}",
                    )
                )
    if count > MAX_WARNINGS:
        more = f"...and {count - MAX_WARNINGS} more users in teams with their own max_budget or models"
        found.append(Problem(found[-1].file, found[-1].line, more))
    return tuple(found)


def _overridden(own: dict[str, Path_], override: UserSettings, prefix: Path_) -> dict[str, Path_]:
    """``own`` as an environment's override leaves it: a setting the override names is its own
    (at ``prefix`` + name), or gone if the override sets it to null or []."""
    settings = {}
    for name in _PERSONAL_ONLY:
        if name in override.model_fields_set:
            if getattr(override, name) not in (None, []):
                settings[name] = (*prefix, name)
        elif name in own:
            settings[name] = own[name]
    return settings


def _describe(where: str, loc: Path_, error: dict[str, Any]) -> str:
    """A one-line, human message for a pydantic error at ``loc`` (``where``: as its file numbers it)."""
    if error["type"] == "string_pattern_mismatch":  # only environment names have a pattern
        return (
            f"{where}: {error.get('input')!r} is not an environment name: use lower-case letters, digits and _, "
            "starting with a letter (it also names GitHub environments and secrets)"
        )
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc[-1]!r}"
    if error["type"] == "string_type" and len(loc) == 4 and loc[2] == "teams":
        return f"{where}: expected a team alias, or a mapping such as {{team: a, role: admin, max_budget_in_team: 10}}"
    if error["type"] == "literal_error" and loc and loc[-1] == "role":
        if loc[0] == "organizations":
            return f"{where}: invalid role {error.get('input')!r} in an organization; expected one of " + ", ".join(
                ORGANIZATION_ROLES
            )
        if len(loc) > 4 and loc[2] == "teams":
            return f"{where}: invalid role {error.get('input')!r} in a team; expected user or admin"
        return f"{where}: invalid role {error.get('input')!r}; expected one of {', '.join(USER_ROLES)}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{where}: {message}"


def _cross_check(data: dict[str, Any], places: _Places) -> list[Problem]:
    """Rules that span entries (uniqueness, references), checked on the raw data.

    They run even when some entries failed schema validation, so one run reports
    a typo'd key and a duplicate email together; malformed entries are skipped.
    With ``include``, the entries of every file are checked together: a duplicate names both
    places, and a user may name a team of any file.
    """
    problems: list[Problem] = []
    teams = [t for t in _entries(data, "teams")]
    users = [u for u in _entries(data, "users")]

    def once(kind: str, values: list[tuple[str, Path_]]) -> None:
        first: dict[str, Path_] = {}
        for value, loc in values:
            if value in first:
                problems.append(
                    places.problem(loc, f"duplicate {kind} {value!r} (first on {places.place(first[value], loc)})")
                )
            else:
                first[value] = loc

    def unlike(kind: str, values: list[tuple[str, Path_]]) -> None:
        """Aliases that read the same (``look_alike_key``) but differ: a reviewer takes one for the other."""
        first: dict[str, tuple[str, Path_]] = {}
        for value, loc in values:
            if len(value) > MAX_NAME_CHARS or name_problem(value) or look_alike_problem(value):
                continue  # refused by the schema, with the reason
            seen, seen_loc = first.setdefault(look_alike_key(value), (value, loc))
            if seen != value:  # the same value is a duplicate, reported by once()
                message = (
                    f"{places.path(loc)}: {shown(value)} can be taken for {kind} {shown(seen)} "
                    f"({places.place(seen_loc, loc)}): they differ only in case, compatibility forms or look-alike "
                    "letters of another script; make them differ visibly"
                )
                problems.append(places.problem(loc, message))

    organizations = _entries(data, "organizations")
    organization_aliases = [
        (o["alias"], ("organizations", i, "alias")) for i, o in organizations if isinstance(o.get("alias"), str)
    ]
    once("organization alias", organization_aliases)
    unlike("organization alias", organization_aliases)
    once(
        "organization id",
        [(o["id"], ("organizations", i, "id")) for i, o in organizations if isinstance(o.get("id"), str)],
    )
    declared_orgs = {o["alias"] for _, o in organizations if isinstance(o.get("alias"), str)}
    emails = {u["email"].lower() for _, u in users if isinstance(u.get("email"), str)}
    for i, o in organizations:
        members = o.get("members")
        seen_members: dict[str, Path_] = {}
        for j, member in enumerate(members if isinstance(members, list) else []):
            email = member.get("email") if isinstance(member, dict) else None
            if not isinstance(email, str) or (email.lower() not in emails and _email_problem(email)):
                continue  # the schema reports what is wrong with it
            loc = ("organizations", i, "members", j, "email")
            where = places.path(loc)
            if email.lower() not in emails:
                problems.append(places.problem(loc, f"{where}: unknown user {email!r}; declare it under 'users'"))
            elif email.lower() in seen_members:
                first = places.place(seen_members[email.lower()], loc)
                problems.append(places.problem(loc, f"{where}: {email!r} is listed twice (first on {first})"))
            else:
                seen_members[email.lower()] = loc
    for i, t in teams:
        placements = [(("teams", i, "organization"), t.get("organization"))]
        overrides = t.get("overrides")
        if isinstance(overrides, dict):
            placements += [
                (("teams", i, "overrides", env, "organization"), o.get("organization"))
                for env, o in overrides.items()
                if isinstance(o, dict)
            ]
        for loc, org in placements:
            if isinstance(org, str) and org not in declared_orgs:
                message = f"{places.path(loc)}: unknown organization {org!r}; declare it under 'organizations'"
                problems.append(places.problem(loc, message))
    team_aliases = [(t["alias"], ("teams", i, "alias")) for i, t in teams if isinstance(t.get("alias"), str)]
    once("team alias", team_aliases)
    unlike("team alias", team_aliases)
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
                loc = ("teams", i, "id")
                message = f"{places.path(loc)}: {t['id']!r} is another team's alias; references would be ambiguous"
                problems.append(places.problem(loc, message))
            by_ref.setdefault(t["id"], t["alias"])
    for i, user in users:
        refs = user.get("teams")
        if not isinstance(refs, list) or len(refs) > MAX_LIST_ITEMS:
            continue  # the schema reports what is wrong with the list
        named: set[str] = set()
        for j, entry in enumerate(refs):
            ref = raw_team_ref(entry)
            if ref is None:
                continue
            if ref in by_ref and by_ref[ref] not in named:
                named.add(by_ref[ref])
                continue
            loc = ("users", i, "teams", j, "team") if isinstance(entry, dict) else ("users", i, "teams", j)
            where = places.path(("users", i, "teams"))
            if ref not in by_ref:
                problems.append(places.problem(loc, f"{where}: unknown team {ref!r}; declare it under 'teams'"))
            else:
                problems.append(places.problem(loc, f"{where}: team {by_ref[ref]!r} is listed twice"))
    problems += _check_environments(data, places, by_ref)
    return problems


def _check_environments(data: dict[str, Any], places: _Places, by_ref: dict[str, str]) -> list[Problem]:
    """``environments``, ``only_in`` and ``overrides``: every name declared, nothing that exists in no
    environment, and each environment's team ids unique (an override may give a team another id).
    Only the main file declares environments; the entries of the files it includes use them."""
    problems: list[Problem] = []

    def problem(loc: Path_, message: str) -> None:
        problems.append(places.problem(loc, f"{places.path(loc)}: {message}"))

    declared: list[str] = []
    for i, env in _entries(data, "environments"):
        name = env.get("name")
        if isinstance(name, str) and re.fullmatch(_ENVIRONMENT_RE, name):
            if name in declared:
                problem(("environments", i, "name"), f"duplicate environment {name!r}")
            else:
                declared.append(name)
    known = ", ".join(declared)
    scoped: dict[str, dict[int, set[str]]] = {"teams": {}, "users": {}}
    for section in ("teams", "users"):
        for i, entry in _entries(data, section):
            only_in, overrides = entry.get("only_in"), entry.get("overrides")
            if not declared and (only_in is not None or overrides is not None):
                key = "only_in" if only_in is not None else "overrides"
                declaring = "this file" if places.file((section, i)) == places.main else places.main
                problem((section, i, key), f"{declaring} declares no environments; add an 'environments' list first")
                continue
            envs = set(declared)
            if isinstance(only_in, list):
                seen: set[str] = set()
                for j, name in enumerate(only_in):
                    if not isinstance(name, str):
                        continue
                    if name in seen:
                        problem((section, i, "only_in", j), f"environment {name!r} is listed twice")
                    elif name not in declared:
                        problem((section, i, "only_in", j), f"unknown environment {name!r}; declared: {known}")
                    seen.add(name)
                # An empty list is a schema error already; the checks below then take it as "everywhere".
                envs = seen & set(declared) if only_in else set(declared)
            scoped[section][i] = envs
            if isinstance(overrides, dict):
                for name in overrides:
                    if name not in declared:
                        problem((section, i, "overrides", name), f"unknown environment {name!r}; declared: {known}")
                    elif name not in envs:
                        problem((section, i, "overrides", name), f"not in environment {name!r} (see only_in)")
    if not declared:
        return problems
    teams = _entries(data, "teams")
    aliases = {t["alias"] for _, t in teams if isinstance(t.get("alias"), str)}
    envs_of_team = {
        t["alias"]: scoped["teams"].get(i, set(declared)) for i, t in teams if isinstance(t.get("alias"), str)
    }
    for i, user in _entries(data, "users"):
        refs = user.get("teams")
        for j, entry in enumerate(refs if isinstance(refs, list) and len(refs) <= MAX_LIST_ITEMS else []):
            ref = raw_team_ref(entry)
            alias = by_ref.get(ref) if ref is not None else None
            if alias in envs_of_team and not envs_of_team[alias] & scoped["users"].get(i, set()):
                problem(
                    ("users", i, "teams", j),
                    f"team {alias!r} is only in {', '.join(sorted(envs_of_team[alias]))}, where this user is not",
                )
    for name in declared:
        in_env = [(i, t) for i, t in teams if name in scoped["teams"].get(i, set()) and isinstance(t.get("alias"), str)]
        overridden = {
            i: o["id"]
            for i, t in in_env
            if isinstance(o := (t.get("overrides") or {}).get(name), dict) and isinstance(o.get("id"), str)
        }
        # Top-level ids were checked once for the whole file; an override's id is checked here.
        ids = {t["id"]: t["alias"] for i, t in in_env if i not in overridden and isinstance(t.get("id"), str)}
        for i, team in in_env:
            if i not in overridden:
                continue
            team_id, loc = overridden[i], ("teams", i, "overrides", name, "id")
            if team_id in ids:
                problem(loc, f"team id {team_id!r} is already team {ids[team_id]!r} in environment {name!r}")
            elif team_id in aliases and team_id != team["alias"]:
                problem(loc, f"{team_id!r} is another team's alias; references would be ambiguous")
            ids[team_id] = team["alias"]
    return problems


def raw_team_ref(entry: object) -> str | None:
    """The team a ``teams`` entry as read from YAML names (``a`` or ``{team: a, ...}``); None when malformed."""
    ref = entry.get("team") if isinstance(entry, dict) else entry
    return ref if isinstance(ref, str) else None


def _entries(data: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    """The mapping entries of a top-level list, with their index; anything else is skipped."""
    items = data.get(section)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]
