"""Migrate from the old hand-run CSV script: add its users to ``users.yaml``.

The file is reviewed by people and carries their comments, so it is edited as text:
new entries are inserted at the end of the ``users:`` block (located with
``yaml.compose`` marks) in the style of the entries already there, and every other
byte is kept. Existing entries are never rewritten; what the CSV would change about
them is only reported. The result is validated with the same loader as ``validate``
before it is written, atomically, so a failed import leaves the file untouched.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .desired import (
    DesiredState,
    InputError,
    Problem,
    UserSpec,
    check_email,
    parse_desired,
    read_input,
    team_ref,
)

#: Where new entries go when the file has no list to copy the style from: "  - email: x".
DEFAULT_INDENT = (2, 4)
_PLAIN_HEADERS = ("email", "user_email")


@dataclass(frozen=True)
class ImportResult:
    """What an import did. ``text`` is the new file content (unchanged when nothing was added)."""

    added: list[str]
    already_present: list[str]
    #: (email, team alias): memberships the CSV asks for on users already in the file; not applied.
    skipped: list[tuple[str, str]]
    text: str


@dataclass
class _CsvUser:
    """A user as the CSV describes it, after merging its rows."""

    email: str
    teams: list[str] = field(default_factory=list)


def import_csv(csv_path: str | Path, yaml_path: str | Path, team: str | None = None) -> ImportResult:
    """Add the CSV's users to ``yaml_path``, or write nothing and raise.

    Without ``team`` the CSV has ``user_email,team_id`` columns; with it, the CSV is a
    plain list of emails that all join ``team``. Team ids resolve to declared teams by
    ``id:`` or ``alias:``; entries always name the team by its alias.

    Both files are read as ``validate`` reads the yaml file (regular files of limited
    size, UTF-8, kept byte for byte). Raises ``InputError`` (an unreadable file, every
    bad CSV row, or the yaml file's own problems), ``ValueError`` (unknown ``team``; a
    ``users:`` layout it cannot edit) or ``OSError`` (writing).
    """
    text = read_input(yaml_path)
    desired = parse_desired(text, str(yaml_path))
    refs = _team_refs(desired)
    if team is not None and team not in refs:
        raise ValueError(
            f"unknown team {team!r}; declare it under 'teams' in {Path(yaml_path).name} "
            "(it may be named by alias or id)"
        )
    # The BOM is what spreadsheet programs write first; it is not part of the header.
    source = read_input(csv_path).removeprefix("\ufeff")
    rows = _plain_rows(source, team) if team is not None else _csv_rows(source, str(csv_path))
    users = _merge(rows, refs, str(csv_path), Path(yaml_path).name)
    known = {user.key for user in desired.users}
    new = [user for key, user in users.items() if key not in known]
    present = [user for key, user in users.items() if key in known]
    skipped = _missing_memberships(present, desired)
    if new:
        text = _insert_users(text, new)
        _verify(text, str(yaml_path), desired, new)
        _write_atomically(Path(yaml_path), text)
    return ImportResult([u.email for u in new], [u.email for u in present], skipped, text)


# --------------------------------------------------------------------------- reading the CSV

#: One CSV row: (line number, email, team reference).
Row = tuple[int, str, str]


def _csv_rows(text: str, csv_file: str) -> list[Row]:
    """Rows of a ``user_email,team_id`` CSV (the old script's format), blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    columns: dict[str, int] | None = None
    rows: list[Row] = []
    try:
        for cells in reader:
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if columns is None:
                columns = {name.lower(): i for i, name in enumerate(cells)}
                if "user_email" not in columns or "team_id" not in columns:
                    raise InputError(
                        [
                            Problem(
                                csv_file,
                                reader.line_num,
                                (
                                    "expected a header row with the columns user_email and team_id "
                                    "(or give a team for a plain list of emails)"
                                ),
                            )
                        ]
                    )
                continue
            rows.append((reader.line_num, _cell(cells, columns["user_email"]), _cell(cells, columns["team_id"])))
    except csv.Error as exc:  # a NUL byte, a field over the csv module's size limit
        raise InputError([Problem(csv_file, reader.line_num, f"malformed CSV: {exc}")]) from None
    return rows


def _cell(cells: list[str], index: int) -> str:
    """A short row simply lacks the value (reported as missing), it is not a crash."""
    return cells[index] if index < len(cells) else ""


def _plain_rows(text: str, team: str) -> list[Row]:
    """One email per line, all for ``team``; an ``email``/``user_email`` first line is a header."""
    rows: list[Row] = []
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        email = line.strip()
        if email and (rows or email.lower() not in _PLAIN_HEADERS):
            rows.append((number, email, team))
    return rows


def _team_refs(desired: DesiredState) -> dict[str, str]:
    """Every way the CSV may name a declared team (its id or its alias), mapped to the alias."""
    refs = {team.alias: team.alias for team in desired.teams}
    refs.update({team.id: team.alias for team in desired.teams if team.id})
    return refs


def _merge(rows: list[Row], refs: dict[str, str], csv_file: str, yaml_name: str) -> dict[str, _CsvUser]:
    """One user per email (case-insensitive, first spelling kept), teams in CSV order.

    Every bad row is collected first, so one run lists all of them.
    """
    problems: list[Problem] = []
    users: dict[str, _CsvUser] = {}
    for line, email, ref in rows:
        email_problem = _email_problem(email)
        if email_problem:
            problems.append(Problem(csv_file, line, email_problem))
        if not ref:
            problems.append(Problem(csv_file, line, "missing team_id"))
        elif ref not in refs:
            problems.append(
                Problem(csv_file, line, f"unknown team id {ref!r}; declare it under 'teams' in {yaml_name} with 'id:'")
            )
        if problems:
            continue  # the import fails; only the remaining rows' problems matter now
        user = users.setdefault(email.lower(), _CsvUser(email))
        if refs[ref] not in user.teams:
            user.teams.append(refs[ref])
    if problems:
        raise InputError(problems)
    return users


def _missing_memberships(present: list[_CsvUser], desired: DesiredState) -> list[tuple[str, str]]:
    """(email, team alias) the CSV gives a user already in the file who is not in that team there."""
    declared = {user.key: {desired.team_for_ref(team_ref(e)).alias for e in user.teams} for user in desired.users}
    return [
        (user.email, alias) for user in present for alias in user.teams if alias not in declared[user.email.lower()]
    ]


def _email_problem(email: str) -> str | None:
    """Why ``email`` cannot be imported, or None: the rule ``users.yaml`` uses.

    A comma gets its own message: here it always means a CSV row read as a plain list.
    """
    if "," in email:
        return (
            f"{email!r} has several columns; with a team give one email per line, "
            "without one use user_email,team_id columns"
        )
    try:
        check_email(email)
    except ValueError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- editing the YAML text


def _insert_users(text: str, users: list[_CsvUser]) -> str:
    """``text`` with entries for ``users`` added at the end of the ``users:`` list."""
    newline = "\r\n" if "\r\n" in text else "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    entries = "".join(_entry(user, _indent(root), newline) for user in users)
    node = _value(root, "users")
    if node is None:
        return _append_section(text, entries, newline)
    if node.flow_style and node.value:
        raise ValueError(
            f"'users' on line {node.start_mark.line + 1} is a non-empty flow list ([...]); "
            "write it as a block list to import into it"
        )
    if node.flow_style:
        # "users: []" becomes "users:" followed by the new block list.
        head = text[: node.start_mark.index].rstrip(" \t")
        return _insert_after_line(head + text[node.end_mark.index :], len(head), entries, newline)
    return _insert_after_line(text, _content_end(node), entries, newline)


def _value(root: yaml.Node, key: str) -> yaml.Node | None:
    for key_node, value_node in root.value:
        if key_node.value == key:
            return value_node
    return None


def _indent(root: yaml.Node) -> tuple[int, int]:
    """(column of "-", column of the entry's keys) of the existing users, else teams, else the default."""
    for key in ("users", "teams"):
        node = _value(root, key)
        if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
            return node.start_mark.column, node.value[0].start_mark.column
    return DEFAULT_INDENT


def _entry(user: _CsvUser, indent: tuple[int, int], newline: str) -> str:
    """One entry as block YAML text; ``safe_dump`` quotes whatever needs quoting (e.g. a team named 'yes')."""
    dash, keys = indent
    dumped = yaml.safe_dump(
        {"email": user.email, "teams": user.teams},
        default_flow_style=None,  # block mapping, flow list: "teams: [a, b]"
        sort_keys=False,
        allow_unicode=True,
        width=float("inf"),
    )
    first, *rest = dumped.splitlines()
    lines = [" " * dash + "-" + " " * max(keys - dash - 1, 1) + first] + [" " * keys + line for line in rest]
    return "".join(line + newline for line in lines)


def _content_end(node: yaml.Node) -> int:
    """Where the last value of a block collection ends.

    The node's own end mark lies past trailing comments and blank lines, which belong
    to whatever follows; inserting there would move them above the new entries.
    """
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node.end_mark.index


def _insert_after_line(text: str, index: int, block: str, newline: str) -> str:
    """Insert ``block`` at the start of the line after the one containing ``index``."""
    if index > 0 and text[index - 1] == "\n":
        return text[:index] + block + text[index:]
    end = text.find("\n", index)
    if end == -1:
        return text + newline + block
    return text[: end + 1] + block + text[end + 1 :]


def _append_section(text: str, entries: str, newline: str) -> str:
    """A new ``users:`` section at the end of the file, after a blank line."""
    if text and not text.endswith("\n"):
        text += newline
    separator = newline if text.strip() and not text.endswith(newline * 2) else ""
    return text + separator + "users:" + newline + entries


def _verify(text: str, file: str, before: DesiredState, new: list[_CsvUser]) -> None:
    """The edited text must load, and differ from the old file by exactly the new users."""
    after = parse_desired(text, file)
    expected = before.spec.model_dump()
    expected["users"] += [UserSpec(email=u.email, teams=u.teams).model_dump() for u in new]
    if after.spec.model_dump() != expected:
        raise ValueError(
            f"could not insert the new users into {file} without changing other entries; nothing was written"
        )


# --------------------------------------------------------------------------- files


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step, keeping its permissions; readers never see half a file."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
