"""--timeout bounds a whole request: a server that sends its headers, then one byte every
few seconds, is given up on within the timeout per attempt (httpx alone bounds each read)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path


class TricklingServer:
    """Answers every request with headers at once, then a JSON body one byte every 3 s."""

    def __init__(self) -> None:
        self.requests = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> TricklingServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        body = b'{"users": [], "total": 0, "page": 1, "total_pages": 0}'
        try:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            )
            for byte in body:
                if self._stop.wait(3):
                    return
                connection.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            connection.close()


def plan_against_a_trickle(cli, tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """``plan FLAGS`` against a trickling server: (result, seconds it took, requests the server saw)."""
    (tmp_path / "users.yaml").write_text("version: 1\n", encoding="utf-8")
    with TricklingServer() as server:
        started = time.monotonic()
        env = {"LITELLM_API_KEY": "Zq7-test-key", "LITELLM_MASTER_KEY": ""}
        result = cli("plan", *flags, "--proxy-url", server.url, env=env)
        return result, time.monotonic() - started, server.requests


def test_plan_gives_up_on_a_trickling_server_within_the_timeout_per_attempt(cli, tmp_path: Path) -> None:
    result, elapsed, attempts = plan_against_a_trickle(cli, tmp_path, "--timeout", "5")
    assert result.returncode == 1 and "the answer took longer than 5 s" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # Each attempt stops at 5 s (plus one 3 s trickle step at most); the retries wait 0.5 + 1 + 2 s in between.
    # Users and teams are read side by side: up to 4 attempts each, at the same time.
    assert 1 <= attempts <= 8 and elapsed < 4 * (5 + 3) + 4, (attempts, elapsed)


def test_the_run_deadline_stops_a_plan(cli, tmp_path: Path) -> None:
    result, elapsed, _ = plan_against_a_trickle(cli, tmp_path, "--timeout", "30", "--deadline", "2")
    assert result.returncode == 1 and elapsed < 8, (elapsed, result.stderr)
