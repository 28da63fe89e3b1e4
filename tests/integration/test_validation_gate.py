"""Bad input stops before the first request: one message per problem, with file and line, exit 1."""

from __future__ import annotations

from pathlib import Path

from .faults import FaultProxy


def test_invalid_file_sends_no_request(proxy, cli, tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(
        (
            "version: 1\nteams:\n  - alias: dev\nusers:\n  - email: a@x.com\n    teams: [dev, nope]\n"
            "  - email: A@X.com\n    rol: internal_user\n"
        ),
        encoding="utf-8",
    )
    with FaultProxy(proxy[0]) as spy:
        for command in ("plan", "apply"):
            result = (
                cli(command, "--yes", "--proxy-url", spy.url)
                if command == "apply"
                else cli(command, "--proxy-url", spy.url)
            )
            assert result.returncode == 1
            assert "users.yaml:6: users.0.teams: unknown team 'nope'" in result.stderr
            assert "users.yaml:7: duplicate email 'a@x.com' (first on line 5)" in result.stderr
            assert "users.yaml:8: users.1.rol: unknown key 'rol'" in result.stderr
            assert "nothing was sent to the proxy" in result.stderr
    assert spy.seen == []
