"""The only module that speaks LiteLLM's HTTP API.

It owns authentication, timeouts, pagination, the retry policy and the mapping of
LiteLLM's three error envelopes onto two exceptions. Callers get plain dicts.

Retry policy, deliberately narrow:

* GET requests are retried on transport errors, 429, 502, 503 and 504.
* POST requests are retried only on 429/503 *with* a ``Retry-After`` header: that is
  LiteLLM's admission control refusing the request before running it.
* For a write, only an answer that proves the proxy refused is a refusal (``ProxyError``):
  a 4xx other than 429 whose body is one of LiteLLM's JSON envelopes. Anything else (a
  timeout, a dropped connection, any 5xx, a 429, a 4xx from something that is not LiteLLM,
  a 2xx that is not JSON) raises ``OutcomeUnknown``: the change may have been made, so the
  executor reads the object back instead of sending the request again, and never undoes
  what may exist.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from . import __version__
from .desired import TEAM_MEMBER_DEFAULTS
from .secrets import scrub, url_without_credentials

DEFAULT_PROXY_URL = "http://localhost:4000"
CHANGED_BY = "litellm-reconciler"
PAGE_SIZE = 100
#: Requests in flight at once (``--parallelism``). Measured on one proxy worker (2 cores):
#: 4 gives most of the gain; more only queues inside the proxy (see bench/README.md).
DEFAULT_PARALLELISM = 4
#: Users per ``/user/bulk_update`` (the proxy takes up to 500); also how many new links may
#: exist unrecorded if an apply is killed between a link and its batch's record.
BULK_SIZE = 50
_RETRYABLE_GET = {429, 502, 503, 504}


def _refusal(status: int, answer: Any) -> bool:
    """Whether an error answer to a write proves the proxy did not make the change: a 4xx but 429 (a
    gateway may send that after forwarding), in a LiteLLM envelope (``error`` or ``detail``)."""
    return (
        400 <= status < 500 and status != 429 and isinstance(answer, dict) and ("error" in answer or "detail" in answer)
    )


#: The largest answer read: a page of 100 users is ~100 KB; anything near this is not LiteLLM.
MAX_BODY_BYTES = 64 * 2**20

#: One line per request at INFO (``-v``): method, path (never the query: it may hold an
#: invitation id), status, milliseconds, attempt.
log = logging.getLogger("reconciler.http")

T = TypeVar("T")
R = TypeVar("R")
#: ``(what, done, total)``: how far a long read has got (pages of a listing).
ProgressHook = Callable[[str, int, int], None]


def check_proxy_url(base_url: str) -> list[str]:
    """Refuse a proxy URL the tool cannot use safely; return warnings about one it can.

    A query or fragment would be glued onto every path (and often carries a token);
    credentials in the URL would replace the key's ``Authorization`` header and end up
    in every onboarding link; plain ``http://`` to another host sends the master key
    across the network in clear. The URL is only ever quoted without its credentials.
    """
    shown = url_without_credentials(base_url)
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        # httpx's reason quotes the part it could not parse, which may be a piece of a password.
        raise ValueError(f"invalid proxy URL {shown!r}: not a URL that can be parsed") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"invalid proxy URL {shown!r}: expected http(s)://host[:port][/path]")
    if url.query or url.fragment or "?" in base_url or "#" in base_url:
        raise ValueError(f"invalid proxy URL {shown!r}: a query or fragment is not allowed; give the base URL only")
    if url.userinfo:
        raise ValueError(
            f"invalid proxy URL {shown!r}: credentials in the URL are not allowed; the key goes in LITELLM_MASTER_KEY"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        return [f"the proxy URL {shown} is plain http: the key travels unencrypted; use https"]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ProxyError(Exception):
    """The proxy refused a request, or could not be reached. The message never holds the key."""

    def __init__(self, method: str, path: str, status: int | None, message: str, kind: str | None = None):
        self.kind = kind
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        where = f"{method} {path}"
        super().__init__(f"{where}: HTTP {status}: {message}" if status else f"{where}: {message}")


class EnterpriseOnly(ProxyError):
    """The proxy serves this only with a LiteLLM Enterprise license."""


# What LiteLLM says (in several wordings) when a feature needs its Enterprise license.
_ENTERPRISE = "LiteLLM Enterprise"
ENTERPRISE_ONLY = "this proxy offers it only with a LiteLLM Enterprise license (LITELLM_LICENSE); it has none"


class DeadlineExceeded(ProxyError):
    """The run's total deadline passed; nothing more is sent."""


class LockLost(ProxyError):
    """Another apply took the proxy's apply lock (ours had expired); this run must stop writing."""


class OutcomeUnknown(ProxyError):
    """A write may or may not have happened; read back before deciding anything."""


class IncompleteRead(ProxyError):
    """A paginated listing did not add up; planning from it would be planning from a guess."""


#: What a ``proxy_admin_viewer`` key (the plan job's) can still change on LiteLLM before 1.110, measured on
#: 1.80.5; 1.110.2 refuses all of it, as it refuses every other write tried (tests/integration/test_security.py).
VIEWER_WRITES_BEFORE_1_110 = (
    "block and unblock any team (/team/block, /team/unblock)",
    "create accounts with an email and a password of its choosing (/user/update without a user_id: "
    "answered 400, made anyway)",
)


def release(version: str) -> tuple[int, ...]:
    """``1.80.5`` -> (1, 80, 5); anything unreadable sorts first (treated as old)."""
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


#: Team settings LiteLLM keeps in (or beside, by id) the team's metadata.
_IN_METADATA = frozenset({*TEAM_MEMBER_DEFAULTS, "team_member_key_duration"})


def error_message(body: Any, fallback: str) -> str:
    """Diagnostic text from any of LiteLLM's envelopes: ``error.message``, ``detail`` or 422 lists."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        detail = body.get("detail")
        if isinstance(detail, dict):
            return str(detail.get("error") or detail.get("message") or detail)
        if isinstance(detail, list):
            return "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
                if isinstance(item, dict)
                else str(item)
                for item in detail
            )
        if detail:
            return str(detail)
    return fallback


def error_type(body: Any) -> str | None:
    """LiteLLM's ``error.type`` (e.g. ``team_member_already_in_team``), when present."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("type")
    return None


class LiteLLMClient:
    """A small client for the management endpoints the reconciler needs.

    Thread-safe: the executor and the page reads send up to ``parallelism`` requests at
    once through one connection pool (``concurrently``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        verify: bool = True,
        max_attempts: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        deadline: float | None = None,
        parallelism: int = DEFAULT_PARALLELISM,
        on_progress: ProgressHook | None = None,
        changed_by: str = CHANGED_BY,
    ):
        """``timeout``: seconds for one request as a whole; ``deadline``: a ``time.monotonic()``
        moment after which no request is sent (the run's total budget); ``parallelism``: requests
        in flight at once (1: strictly one after the other); ``on_progress``: told of each page read;
        ``changed_by``: the ``litellm-changed-by`` header of every write (LiteLLM's audit trail keeps it)."""
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        if not api_key:
            raise ValueError("no API key: set LITELLM_MASTER_KEY (or LITELLM_API_KEY for a read-only key)")
        if any(not 33 <= ord(c) <= 126 for c in api_key):
            # httpx would quote the header, key included, in its error message.
            raise ValueError(
                "the API key contains spaces, control or non-ASCII characters; check how the secret was stored"
            )
        check_proxy_url(base_url)
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._changed_by = changed_by
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._deadline = deadline
        #: Per thread: the extended deadline of a ``past_deadline`` block running in that thread.
        self._grace = threading.local()
        self.parallelism = parallelism
        #: At most ``parallelism`` requests in flight, whichever threads send them.
        self._slots = threading.BoundedSemaphore(parallelism)
        self.on_progress = on_progress
        self._count_lock = threading.Lock()
        self.requests_made = 0
        self.writes_made = 0
        #: What the proxy's OpenAPI document says (``_described``), once read: a run asks several times.
        self._description: tuple[str | None, frozenset[str] | None] | None = None
        self._caller: tuple[str | None] | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": f"litellm-reconciler/{__version__}"},
            timeout=timeout,
            verify=verify,
            transport=transport,
            limits=httpx.Limits(max_connections=max(parallelism, 10), max_keepalive_connections=max(parallelism, 10)),
        )

    def concurrently(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """``fn`` over ``items``, at most ``parallelism`` at a time, yielding the results in the
        order of ``items`` as they become known. An exception is raised in that order too;
        calls not started by then are cancelled."""
        if self.parallelism == 1 or len(items) < 2:
            yield from map(fn, items)
            return
        with ThreadPoolExecutor(max_workers=min(self.parallelism, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for future in futures:
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LiteLLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def redact(self, text: str) -> str:
        """Remove the key, links and URL credentials from any text (LiteLLM echoes keys that
        do not start with ``sk-`` verbatim in 401 bodies)."""
        return scrub(text, extra=[self._key])

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        retry_refused: bool = True,
    ) -> Any:
        headers = {"litellm-changed-by": self._changed_by} if method != "GET" else None
        attempt = 0
        while True:
            attempt += 1
            with self._count_lock:
                self.requests_made += 1
                if method != "GET":
                    self.writes_made += 1
            try:
                with self._slots:
                    started = time.monotonic()
                    response, content = self._send(method, path, params, body, headers)
            except httpx.TransportError as exc:
                reason = self.redact(f"{type(exc).__name__}: {exc}") or type(exc).__name__
                log.info(
                    "%s %s %s %d ms (attempt %d)",
                    method,
                    path,
                    type(exc).__name__,
                    (time.monotonic() - started) * 1000,
                    attempt,
                )
                if method == "GET" and attempt < self._max_attempts:
                    self._sleep(self._backoff(attempt, None))
                    continue
                if method != "GET" and not isinstance(exc, httpx.ConnectError):
                    raise OutcomeUnknown(
                        method, path, None, f"no response ({reason}); the change may or may not have been made"
                    ) from None
                raise ProxyError(
                    method, path, None, f"cannot reach the proxy at {url_without_credentials(self.base_url)} ({reason})"
                ) from None

            status = response.status_code
            log.info("%s %s %d %d ms (attempt %d)", method, path, status, (time.monotonic() - started) * 1000, attempt)
            answer = self._json_or_text(content)
            if status < 400:
                if isinstance(answer, str) and method != "GET":
                    raise OutcomeUnknown(
                        method, path, status, "the answer is not JSON; the change may or may not have been made"
                    )
                if isinstance(answer, str):
                    raise ProxyError(method, path, status, "the response is not JSON; is this a LiteLLM proxy?")
                return answer
            retry_after = response.headers.get("retry-after")
            if attempt < self._max_attempts and (
                (method == "GET" and status in _RETRYABLE_GET)
                or (method != "GET" and retry_refused and status in (429, 503) and retry_after is not None)
            ):
                self._sleep(self._backoff(attempt, retry_after))
                continue
            message = self.redact(error_message(answer, response.reason_phrase))
            if method != "GET" and not _refusal(status, answer):
                raise OutcomeUnknown(
                    method,
                    path,
                    status,
                    f"{message}; the change may or may not have been made",
                    kind=error_type(answer),
                )
            if status in (400, 401, 403) and _ENTERPRISE in message:
                raise EnterpriseOnly(method, path, status, ENTERPRISE_ONLY) from None
            raise ProxyError(method, path, status, message, kind=error_type(answer)) from None

    @property
    def deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _current_deadline(self) -> float | None:
        """The run's deadline, as extended by a ``past_deadline`` block of this thread."""
        extended: float | None = getattr(self._grace, "until", None)
        if self._deadline is None or extended is None:
            return self._deadline
        return max(self._deadline, extended)

    @contextmanager
    def past_deadline(self, grace: float = 30.0) -> Iterator[None]:
        """Requests that must go out even when the run's deadline has passed (releasing the
        lock, recording a link that already exists), each still bounded by ``timeout``, for at
        most ``grace`` seconds more. Only this thread's requests are let through."""
        saved = getattr(self._grace, "until", None)
        self._grace.until = time.monotonic() + grace
        try:
            yield
        finally:
            self._grace.until = saved

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any, headers: dict[str, str] | None
    ) -> tuple[httpx.Response, bytes]:
        """One attempt, bounded as a whole: httpx's timeout bounds each read, so a server that
        trickles its answer a byte at a time is cut off here once ``timeout`` has passed since
        the request started (and never after the run's deadline). The body is capped too."""
        limit = self._timeout
        deadline = self._current_deadline()
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(
                    method, path, None, "the run's deadline (--deadline) has passed; stopped before this request"
                )
            limit = min(limit, remaining)
        stop = time.monotonic() + limit
        with self._http.stream(method, path, params=params, json=body, headers=headers, timeout=limit) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > stop:
                    raise httpx.ReadTimeout(f"the answer took longer than {limit:g} s", request=response.request)
                if size > MAX_BODY_BYTES:
                    raise httpx.ReadError(
                        f"the answer is larger than {MAX_BODY_BYTES // 2**20} MB", request=response.request
                    )
        return response, b"".join(chunks)

    @staticmethod
    def _backoff(attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), 30.0)
            except ValueError:
                pass
        return min(0.5 * 2 ** (attempt - 1), 8.0)

    @staticmethod
    def _json_or_text(content: bytes) -> Any:
        """The JSON body, or its text (at most 500 characters) when it is not JSON."""
        try:
            return json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return content[:500].decode("utf-8", "replace")

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _get_unless(self, statuses: tuple[int, ...], path: str, **params: Any) -> Any:
        """GET, or None when the proxy answers one of ``statuses`` (not there, or not for this key)."""
        try:
            return self.get(path, **params)
        except ProxyError as exc:
            if exc.status in statuses:
                return None
            raise

    def _listing(self, path: str, id_key: str) -> list[dict[str, Any]]:
        """A listing the proxy sends whole (not paginated): its rows that carry an id."""
        answer = self.get(path)
        if not isinstance(answer, list):
            raise ProxyError("GET", path, 200, "unexpected shape (not a list)")
        return [row for row in answer if isinstance(row, dict) and row.get(id_key)]

    def post(self, path: str, body: Any, *, retry_refused: bool = True) -> Any:
        """POST; ``retry_refused=False`` for writes that must never happen twice, even after a
        429/503 that a gateway in front of the proxy might send after the write was made."""
        return self._request("POST", path, body=body, retry_refused=retry_refused)

    # ------------------------------------------------------------------ reads

    def _paginate(self, path: str, items_key: str, id_key: str) -> list[dict[str, Any]]:
        """Every item of a paginated listing, sorted by id, or ``IncompleteRead``.

        Sorting by the unique id gives offset pagination a stable order (the default
        ``created_at`` order repeats and skips rows, LiteLLM issue #15762). The first page
        tells how many pages there are; the others are read ``parallelism`` at a time. The
        distinct ids read must equal the ``total`` the proxy reported on every page.
        """

        def read(page: int) -> tuple[int, int, list[Any]]:
            body = self.get(path, page=page, page_size=PAGE_SIZE, sort_by=id_key, sort_order="asc")
            if not isinstance(body, dict) or not isinstance(body.get(items_key), list):
                raise IncompleteRead("GET", path, 200, f"unexpected listing shape (no '{items_key}' list)")
            return int(body.get("total") or 0), int(body.get("total_pages") or 0), body[items_key]

        label = f"Reading {items_key}"
        total, total_pages, first = read(1)
        pages = [first]
        done = 1
        self._progress(label, done, total_pages)

        def rest(page: int) -> tuple[int, int, list[Any]]:
            nonlocal done
            answer = read(page)
            with self._count_lock:
                done += 1
                self._progress(label, done, total_pages)
            return answer

        for page_total, _, listed in self.concurrently(rest, range(2, total_pages + 1)):
            if page_total != total:
                raise IncompleteRead(
                    "GET",
                    path,
                    200,
                    f"the proxy reported {total} and then {page_total} {items_key}; it changed during the read",
                )
            pages.append(listed)
        items: dict[str, dict[str, Any]] = {}
        for listed in pages:
            for item in listed:
                if not isinstance(item, dict) or not item.get(id_key):
                    raise IncompleteRead("GET", path, 200, f"a listed item has no '{id_key}'")
                items[str(item[id_key])] = item
        if len(items) != total:
            raise IncompleteRead(
                "GET",
                path,
                200,
                f"read {len(items)} distinct {items_key} but the proxy reports {total}; it changed during the read",
            )
        return [items[k] for k in sorted(items)]

    def _progress(self, what: str, done: int, total: int) -> None:
        if self.on_progress is not None and total > 1:
            self.on_progress(what, done, total)

    def list_users(self) -> list[dict[str, Any]]:
        return self._paginate("/user/list", "users", "user_id")

    def list_teams(self) -> list[dict[str, Any]]:
        """All teams: ``/v2/team/list`` (paginated, ≥1.74); ``/team/list`` on older proxies."""
        try:
            return self._paginate("/v2/team/list", "teams", "team_id")
        except ProxyError as exc:
            if exc.status != 404:
                raise
        return self.list_teams_unpaginated()

    def list_teams_unpaginated(self) -> list[dict[str, Any]]:
        """All teams in one (heavy) call. Unlike ``/v2/team/list`` on 1.80, it shows every
        team to a read-only ``proxy_admin_viewer`` key, not only the key's own teams."""
        body = self.get("/team/list")
        if not isinstance(body, list) or not all(isinstance(t, dict) and t.get("team_id") for t in body):
            raise IncompleteRead(
                "GET", "/team/list", 200, "unexpected shape (expected an array of teams with 'team_id')"
            )
        return sorted(body, key=lambda t: str(t["team_id"]))

    def team_info(self, team_id: str) -> dict[str, Any] | None:
        """The team, or None when it does not exist."""
        full = self.team_info_full(team_id)
        return full.get("team_info") if full else None

    def team_info_full(self, team_id: str) -> dict[str, Any] | None:
        """``/team/info`` as a whole (``team_info`` plus ``keys``), or None when the team does not exist."""
        body = self._get_unless((404,), "/team/info", team_id=team_id)
        return body if isinstance(body, dict) else None

    def caller_user_id(self) -> str | None:
        """The user that owns the key in use (``/key/info`` of the caller), or None when the
        proxy does not say (the master key belongs to no stored key). Asked once per client."""
        if self._caller is None:
            try:
                body = self.get("/key/info")
            except ProxyError:
                body = None
            info = body.get("info") if isinstance(body, dict) else None
            user_id = info.get("user_id") if isinstance(info, dict) else None
            self._caller = (str(user_id) if user_id else None,)
        return self._caller[0]

    def accepted_links_stay_usable(self) -> bool:
        """Whether a link keeps logging in after it was accepted: LiteLLM before 1.83 (1.80.5 measured)
        until it expires; from 1.83 ``/onboarding/get_token`` refuses a used link (1.110.2 measured)."""
        version = self.litellm_version()
        return version is None or release(version) < (1, 83)

    def viewer_writes(self) -> tuple[str, ...]:
        """What a ``proxy_admin_viewer`` key can still change on this proxy (empty: nothing known)."""
        version = self.litellm_version()
        return VIEWER_WRITES_BEFORE_1_110 if version is None or release(version) < (1, 110) else ()

    def find_user(self, user_id: str) -> dict[str, Any] | None:
        """The user with exactly this id, or None (``/user/info`` answers 200 for unknown ids ≤1.80)."""
        body = self.get("/user/list", user_ids=user_id, page_size=PAGE_SIZE)
        for user in body.get("users", []) if isinstance(body, dict) else []:
            if user.get("user_id") == user_id:
                return user
        return None

    def find_users(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The users with exactly these ids, by id (absent ones are missing): one listing per
        ``PAGE_SIZE`` ids (``user_ids`` takes a comma-separated list and matches each exactly)."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(user_ids))
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            if len(chunk) == 1:  # one id alone is a "contains" match on 1.110: find_user filters it
                user = self.find_user(chunk[0])
                found.update({chunk[0]: user} if user is not None else {})
                continue
            body = self.get("/user/list", user_ids=",".join(chunk), page_size=PAGE_SIZE)
            rows = body.get("users", []) if isinstance(body, dict) else []
            found.update({row["user_id"]: row for row in rows if isinstance(row, dict) and row.get("user_id") in chunk})
        return found

    def invitation_info(self, invitation_id: str) -> dict[str, Any] | None:
        """The invitation, or None when the proxy no longer has it (400 for unknown ids).

        The id (a credential: it is the link) goes in the query string, so the proxy's access log
        records it. No LiteLLM version read offers another way, measured on 1.80.5 and 1.110.2:
        ``/invitation/info`` takes it only as a query parameter (in a JSON body or a header: 422;
        POST: 405), no endpoint lists invitations or includes them in a user, and the others that
        take an id change the link (``/invitation/update`` stamps ``accepted_at``, ``/invitation/delete``
        ends it; ``/onboarding/get_token`` takes it in the query too, and accepts it before 1.83).
        The tool's own log (``-v``) has the path only; it is asked only for links still open."""
        try:
            body = self.get("/invitation/info", invitation_id=invitation_id)
        except ProxyError as exc:
            if exc.status in (400, 404) and "does not exist" in exc.message:
                return None
            raise
        if not isinstance(body, dict) or not body.get("id"):
            raise ProxyError("GET", "/invitation/info", 200, "unexpected shape (no invitation 'id')")
        return body

    # ------------------------------------------------------------------ writes

    def create_team(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("/team/new", body)

    def update_team(self, body: dict[str, Any]) -> dict[str, Any]:
        if "organization_id" in body and body["organization_id"] is None:
            body = {**body, "organization_id": ""}  # LiteLLM takes a team out of its organization with ""
        if "metadata" not in body and _IN_METADATA.intersection(body):
            # 1.80.5 writes these into the team's metadata, replacing all of it (this tool's ownership
            # included) unless the update carries the metadata too: it carries it as it is now.
            body = {**body, "metadata": dict((self.team_info(body["team_id"]) or {}).get("metadata") or {})}
        return self.post("/team/update", body)

    def list_budgets(self) -> list[dict[str, Any]]:
        """Every budget row (where LiteLLM keeps each team's limits for its members), in one answer."""
        return self._listing("/budget/list", "budget_id")

    def team_fields(self) -> frozenset[str] | None:
        """The fields ``/team/new`` takes on this proxy, or None when it does not say."""
        return self._described()[1]

    def litellm_version(self) -> str | None:
        """The LiteLLM version the proxy runs, or None when it does not say."""
        return self._described()[0]

    def _described(self) -> tuple[str | None, frozenset[str] | None]:
        """(version, ``/team/new``'s fields) from the proxy's OpenAPI document: about 1 MB, read
        once per client and reduced to these two."""
        if self._description is None:
            answer = self.get("/openapi.json")
            answer = answer if isinstance(answer, dict) else {}
            schema = ((answer.get("components") or {}).get("schemas") or {}).get("NewTeamRequest")
            properties = schema.get("properties") if isinstance(schema, dict) else None
            version = (answer.get("info") or {}).get("version")
            self._description = (
                str(version) if version else None,
                frozenset(properties) if isinstance(properties, dict) else None,
            )
        return self._description

    def list_organizations(self) -> list[dict[str, Any]]:
        """Every organization, in one answer."""
        return self._listing("/organization/list", "organization_id")

    def organization_info(self, organization_id: str) -> dict[str, Any] | None:
        """The organization's row, or None when there is none."""
        answer = self._get_unless((400, 404), "/organization/info", organization_id=organization_id)
        return answer if isinstance(answer, dict) else None

    def create_organization(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("/organization/new", body)

    def update_organization(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("PATCH", "/organization/update", body=body)

    def update_team_permissions(self, team_id: str, permissions: list[str]) -> dict[str, Any]:
        """The routes the team's members may call (``/team/update`` ignores them)."""
        return self.post("/team/permissions_update", {"team_id": team_id, "team_member_permissions": permissions})

    def team_permissions_available(self, team_id: str) -> list[str] | None:
        """Every member permission the proxy accepts (it lists them for a given team), or None
        when this key may not ask (a read-only key on some versions)."""
        answer = self._get_unless((401, 403), "/team/permissions_list", team_id=team_id)
        found = answer.get("all_available_permissions") if isinstance(answer, dict) else None
        return [str(p) for p in found] if isinstance(found, list) else None

    def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("/user/new", {**body, "auto_create_key": False})

    def update_user(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("/user/update", body)

    def update_users(self, bodies: list[dict[str, Any]]) -> dict[str, str | None]:
        """Several ``/user/update`` bodies (each with a ``user_id``) in one ``/user/bulk_update``;
        the error of each user whose update failed, or None, by user id.

        The proxy updates the users one by one, each on its own (one failing does not undo the
        others); a proxy without the endpoint (404) gets one ``/user/update`` per user."""
        if len(bodies) > 500:
            raise ValueError("at most 500 users per /user/bulk_update")
        try:
            answer = self.post("/user/bulk_update", {"users": bodies})
        except ProxyError as exc:
            if exc.status not in (404, 405):
                raise
            return self._update_one_by_one(bodies)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise OutcomeUnknown(
                "POST",
                "/user/bulk_update",
                200,
                "the answer has no per-user results; the updates may or may not have been made",
            )
        outcome: dict[str, str | None] = {str(b["user_id"]): "not in the proxy's answer" for b in bodies}
        for row in results:
            if isinstance(row, dict) and str(row.get("user_id")) in outcome:
                outcome[str(row["user_id"])] = (
                    None if row.get("success") else self.redact(str(row.get("error") or "refused"))
                )
        return outcome

    def _update_one_by_one(self, bodies: list[dict[str, Any]]) -> dict[str, str | None]:
        outcome: dict[str, str | None] = {}
        for body in bodies:
            try:
                self.update_user(body)
                outcome[str(body["user_id"])] = None
            except DeadlineExceeded:
                raise
            except ProxyError as exc:
                outcome[str(body["user_id"])] = str(exc)
        return outcome

    def add_members(
        self, team_id: str, user_ids: Iterable[str], *, role: str = "user", max_budget_in_team: float | None = None
    ) -> dict[str, Any]:
        """Add users (by id) in one call: one roster write per team, no lost members. ``role``
        ``admin`` needs LiteLLM Enterprise (``EnterpriseOnly``)."""
        body: dict[str, Any] = {"team_id": team_id, "member": [{"user_id": u, "role": role} for u in user_ids]}
        if max_budget_in_team is not None:
            body["max_budget_in_team"] = max_budget_in_team
        try:
            return self.post("/team/member_add", body)
        except ProxyError as exc:
            if exc.kind == "team_member_already_in_team" or (exc.status == 400 and "already in team" in exc.message):
                return {"team_id": team_id, "already_members": True}
            raise

    def update_member(self, body: dict[str, Any]) -> dict[str, Any]:
        """``/team/member_update``: a member's role and own budget (``team_id``, ``user_id`` and
        the fields to set; making someone ``admin`` needs LiteLLM Enterprise)."""
        return self.post("/team/member_update", body)

    def add_organization_member(self, organization_id: str, user_id: str, role: str) -> dict[str, Any]:
        """Add a user (by id) to an organization with an organization role."""
        body = {"organization_id": organization_id, "member": [{"user_id": user_id, "role": role}]}
        return self.post("/organization/member_add", body)

    def update_organization_member(self, organization_id: str, user_id: str, role: str) -> dict[str, Any]:
        body = {"organization_id": organization_id, "user_id": user_id, "role": role}
        return self._request("PATCH", "/organization/member_update", body=body)

    def remove_organization_member(self, organization_id: str, user_id: str) -> None:
        """Take a user out of an organization (LiteLLM answers 200 when it is not a member)."""
        self._request(
            "DELETE", "/organization/member_delete", body={"organization_id": organization_id, "user_id": user_id}
        )

    def delete_organization(self, organization_id: str) -> None:
        """Delete an organization (LiteLLM deletes its teams and their keys with it); gone counts as deleted."""
        try:
            self._request("DELETE", "/organization/delete", body={"organization_ids": [organization_id]})
        except ProxyError as exc:
            if exc.status != 404:
                raise

    def delete_invitation(self, invitation_id: str) -> None:
        """Delete a link; one that no longer exists (400 "does not exist") counts as deleted."""
        self._post_unless_gone("/invitation/delete", {"invitation_id": invitation_id}, 400, "does not exist")

    def remove_member(self, team_id: str, user_id: str) -> None:
        """Take a user off a team; one already absent counts as removed."""
        self._post_unless_gone(
            "/team/member_delete", {"team_id": team_id, "user_id": user_id}, 400, "not found in team"
        )

    def delete_user(self, user_id: str) -> None:
        """Delete a user (LiteLLM deletes its keys and invitation links with it); gone counts as deleted."""
        self._post_unless_gone("/user/delete", {"user_ids": [user_id]}, 404)

    def delete_team(self, team_id: str) -> None:
        """Delete a team (LiteLLM deletes its keys with it); gone counts as deleted."""
        self._post_unless_gone("/team/delete", {"team_ids": [team_id]}, 404)

    def _post_unless_gone(self, path: str, body: dict[str, Any], status: int, says: str = "") -> None:
        """A removal: the proxy answering that the object is already gone means it is done."""
        try:
            self.post(path, body)
        except ProxyError as exc:
            if exc.status != status or says not in exc.message.lower():
                raise

    def new_invitation(self, user_id: str) -> dict[str, Any]:
        """A new link; never retried (LiteLLM makes a new valid link on every call). Not started
        unless a whole ``timeout`` of the run's deadline is left: cut short, it would leave a link
        that may exist and cannot be found."""
        deadline = self._current_deadline()
        if deadline is not None and deadline - time.monotonic() < self._timeout:
            raise DeadlineExceeded(
                "POST",
                "/invitation/new",
                None,
                "too little of the run's deadline (--deadline) is left to create a link safely",
            )
        body = self.post("/invitation/new", {"user_id": user_id}, retry_refused=False)
        if not isinstance(body, dict) or not body.get("id"):
            raise OutcomeUnknown(
                "POST",
                "/invitation/new",
                200,
                "the answer has no invitation id; a link may exist that was not recorded",
            )
        return body
