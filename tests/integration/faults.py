"""A pass-through HTTP proxy in front of the real LiteLLM proxy that injects faults on demand.

The real proxy cannot fail a chosen request, or lose a response after committing a
write. This forwards every request unchanged and applies, to the requests a rule
matches, one of these faults:

* ``"fail"``: answer with a recorded LiteLLM 500 envelope *without* forwarding;
* ``"drop"``: forward (the write happens on the real proxy), then close the
  connection without a response, the way a timeout or a dying load balancer does;
* ``"hold"``: never forward, never answer (until the proxy shuts down), so the test can
  kill the client at exactly that request; ``held`` is set when it happens;
* ``"stall"``: forward ``seconds`` late (a write that lands long after it was sent);
  ``stalling`` is set when the stall begins;
* ``"cut"``: from this request on, close every connection without forwarding (the proxy stopped);
* ``"rewrite"``: forward (the write happens), then answer what ``rewrite(status, body)`` makes of the
  proxy's answer: a truncated 200, a 500 after the fact, a listing that hides some rows.

With a ``reply`` (and a ``status``), ``"fail"`` answers them instead of the recorded 500. ``timeline`` keeps when each
request was received and answered, to judge who wrote when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# The body of a real 500 from LiteLLM 1.80.5 (samples/32_invitation_new_nonexistent_user.json shape).
RECORDED_500 = {
    "error": {
        "message": "Internal Server Error (injected by the test)",
        "type": "internal_server_error",
        "param": "None",
        "code": "500",
    }
}


@dataclass
class Rule:
    method: str
    path: str
    fault: str  # "fail" | "drop" | "hold" | "stall" | "cut"
    when: Callable[[dict], bool] = lambda body: True
    times: int | None = 1  # None: every matching request
    hits: int = 0
    seconds: float = 0.0  # "stall": how long
    reply: dict | None = None  # "fail": the body answered (the recorded 500's otherwise)
    status: int = 500  # "fail": the status answered
    rewrite: Callable[[int, bytes], tuple[int, bytes]] | None = None  # "rewrite": the answer sent instead


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, dict | None]] = field(default_factory=list)
    #: (received, answered, method, path with its query, body) of each request, on ``time.monotonic()``.
    timeline: list[tuple[float, float, str, str, dict | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.held = threading.Event()
        self.stalling = threading.Event()
        self.down = threading.Event()
        self._release = threading.Event()
        self._client = httpx.Client(base_url=self.upstream, timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def posts(self, path: str) -> int:
        return sum(1 for method, p, _ in self.seen if method == "POST" and p == path)

    def _match(self, method: str, path: str, body: dict | None) -> Rule | None:
        for rule in self.rules:
            if (
                rule.method == method
                and rule.path == path
                and (rule.times is None or rule.hits < rule.times)
                and rule.when(body or {})
            ):
                rule.hits += 1
                return rule
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?", 1)[0]
                received = time.monotonic()
                outer.seen.append((self.command, path, body))
                rule = outer._match(self.command, path, body)
                if rule is not None and rule.fault == "cut":
                    outer.down.set()
                if outer.down.is_set():
                    self.close_connection = True
                    self.connection.close()
                    return
                if rule is not None and rule.fault == "fail":
                    self._reply(rule.status, json.dumps(rule.reply or RECORDED_500).encode())
                    return
                if rule is not None and rule.fault == "stall":
                    outer.stalling.set()
                    time.sleep(rule.seconds)
                if rule is not None and rule.fault == "hold":
                    outer.held.set()
                    outer._release.wait(120)
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = outer._client.request(self.command, self.path, content=raw, headers=headers)
                if rule is not None and rule.fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                answer = (upstream.status_code, upstream.content)
                if rule is not None and rule.fault == "rewrite" and rule.rewrite is not None:
                    answer = rule.rewrite(*answer)
                self._reply(*answer)
                outer.timeline.append((received, time.monotonic(), self.command, self.path, body))

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        return Handler
