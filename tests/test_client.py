"""LiteLLMClient against httpx.MockTransport: pagination, retries, error envelopes, secrets."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.client import (
    CHANGED_BY,
    PAGE_SIZE,
    DeadlineExceeded,
    IncompleteRead,
    LiteLLMClient,
    OutcomeUnknown,
    ProxyError,
    check_proxy_url,
)
from tests.conftest import SAMPLES

KEY = "Zq7-distinctive-test-key-91f3"  # no sk- prefix: LiteLLM would not mask it either
BASE = "http://proxy.test"

Outcome = httpx.Response | Callable[[httpx.Request], httpx.Response]

# --------------------------------------------------------------------------- builders


def sample(number: int) -> dict[str, Any]:
    """A captured request/response pair (``tests/samples/NN_*.json``)."""
    (path,) = SAMPLES.glob(f"{number:02d}_*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def sample_reply(number: int) -> httpx.Response:
    response = sample(number)["response"]
    return httpx.Response(response["status"], json=response["body"])


def reply(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={} if body is None else body, headers=headers)


def raising(exc_type: type[httpx.TransportError], message: str = "boom") -> Callable[[httpx.Request], httpx.Response]:
    def outcome(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return outcome


class FakeProxy:
    """Scripted answers per (method, path); the last answer repeats. Records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Outcome]] = {}
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def on(self, method: str, path: str, *outcomes: Outcome) -> FakeProxy:
        self.routes[(method, path)] = list(outcomes)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return reply(404, {"detail": "Not Found"})
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        return outcome(request) if callable(outcome) else outcome

    def client(self, **kwargs: Any) -> LiteLLMClient:
        return LiteLLMClient(BASE, KEY, transport=httpx.MockTransport(self), sleep=self.sleeps.append, **kwargs)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def paged(
    items: list[dict[str, Any]], key: str, *, total: int | None = None, size: int = PAGE_SIZE
) -> Callable[[httpx.Request], httpx.Response]:
    """A listing endpoint that pages ``items`` as LiteLLM does (page/page_size/total/total_pages)."""
    pages = [items[i : i + size] for i in range(0, len(items), size)] or [[]]

    def outcome(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return reply(
            200,
            {
                key: pages[page - 1] if page <= len(pages) else [],
                "total": len(items) if total is None else total,
                "page": page,
                "page_size": size,
                "total_pages": len(pages),
            },
        )

    return outcome


def users(n: int) -> list[dict[str, Any]]:
    return [{"user_id": f"u-{i:04d}", "user_email": f"user{i}@example.com"} for i in range(n)]


# --------------------------------------------------------------------------- pagination


def test_pagination_reads_every_page_with_a_stable_sort():
    proxy = FakeProxy().on("GET", "/user/list", paged(list(reversed(users(250))), "users"))
    result = proxy.client().list_users()
    assert [u["user_id"] for u in result] == [f"u-{i:04d}" for i in range(250)]
    calls = proxy.calls("GET", "/user/list")
    assert calls[0].url.params["page"] == "1", "the first page says how many there are"
    assert sorted(c.url.params["page"] for c in calls) == ["1", "2", "3"]
    for call in calls:
        assert call.url.params["page_size"] == "100"
        assert call.url.params["sort_by"] == "user_id"
        assert call.url.params["sort_order"] == "asc"


def test_pagination_deduplicates_rows_repeated_across_pages():
    a, b, c = users(3)
    proxy = FakeProxy().on(
        "GET",
        "/user/list",
        reply(200, {"users": [a, b], "total": 3, "page": 1, "page_size": 2, "total_pages": 2}),
        reply(200, {"users": [b, c], "total": 3, "page": 2, "page_size": 2, "total_pages": 2}),
    )
    assert [u["user_id"] for u in proxy.client().list_users()] == ["u-0000", "u-0001", "u-0002"]


def test_pagination_that_does_not_add_up_is_an_incomplete_read():
    a, b, _ = users(3)
    proxy = FakeProxy().on(
        "GET",
        "/user/list",
        reply(200, {"users": [a, b], "total": 3, "page": 1, "page_size": 2, "total_pages": 2}),
        reply(200, {"users": [b], "total": 3, "page": 2, "page_size": 2, "total_pages": 2}),
    )
    with pytest.raises(IncompleteRead) as caught:
        proxy.client().list_users()
    assert "2 distinct" in str(caught.value) and "3" in str(caught.value)


class InFlight:
    """Counts the requests being answered at once (each answer takes a little while)."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.01)
        try:
            return self.answer(request)
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.parametrize("parallelism", [1, 4])
def test_pages_after_the_first_are_read_at_most_parallelism_at_a_time(parallelism: int):
    counter = InFlight(paged(users(1000), "users"))
    proxy = FakeProxy().on("GET", "/user/list", counter)
    seen: list[tuple[str, int, int]] = []
    result = proxy.client(parallelism=parallelism, on_progress=lambda *step: seen.append(step)).list_users()
    assert len(result) == 1000 and len(proxy.requests) == 10, "one request per page, no more"
    assert counter.most == parallelism
    assert sorted(seen) == [("Reading users", done, 10) for done in range(1, 11)], "progress is told of every page"


def test_a_total_that_changes_between_pages_is_an_incomplete_read():
    listing = paged(users(300), "users")
    grown = paged(users(301), "users")
    proxy = FakeProxy().on("GET", "/user/list", lambda r: listing(r) if r.url.params["page"] == "1" else grown(r))
    with pytest.raises(IncompleteRead, match="reported 300 and then 301 users"):
        proxy.client().list_users()


def test_update_users_is_one_bulk_request_with_an_outcome_per_user():
    answer = {
        "results": [{"user_id": "a", "success": True}, {"user_id": "b", "success": False, "error": "db said no"}],
        "total_requested": 2,
    }
    proxy = FakeProxy().on("POST", "/user/bulk_update", reply(200, answer))
    bodies = [
        {"user_id": "a", "metadata": {"x": 1}},
        {"user_id": "b", "metadata": {}},
        {"user_id": "c", "metadata": {}},
    ]
    assert proxy.client().update_users(bodies) == {"a": None, "b": "db said no", "c": "not in the proxy's answer"}
    (call,) = proxy.requests
    assert body(call) == {"users": bodies}


def test_update_users_on_a_proxy_without_bulk_update_goes_one_by_one():
    proxy = FakeProxy().on("POST", "/user/bulk_update", reply(404, {"detail": "Not Found"}))
    proxy.on("POST", "/user/update", reply(200, {"user_id": "a"}), reply(400, {"detail": {"error": "bad"}}))
    assert proxy.client().update_users([{"user_id": "a"}, {"user_id": "b"}]) == {
        "a": None,
        "b": "POST /user/update: HTTP 400: bad",
    }


def test_update_users_without_per_user_results_is_an_unknown_outcome():
    proxy = FakeProxy().on("POST", "/user/bulk_update", reply(200, {"ok": True}))
    with pytest.raises(OutcomeUnknown):
        proxy.client().update_users([{"user_id": "a"}])
    assert len(proxy.requests) == 1, "never re-sent"


def test_past_deadline_lets_through_only_the_requests_of_its_own_thread():
    proxy = FakeProxy().on("GET", "/team/info", reply(200, {"team_info": {"team_id": "t"}}))
    client = proxy.client(deadline=time.monotonic() - 1)
    outcome: list[str] = []

    def elsewhere() -> None:
        try:
            client.team_info("t")
        except DeadlineExceeded:
            outcome.append("stopped")

    with client.past_deadline():
        assert client.team_info("t") == {"team_id": "t"}
        other = threading.Thread(target=elsewhere)
        other.start()
        other.join()
    assert outcome == ["stopped"], "another thread is still past the deadline"
    assert len(proxy.requests) == 1


def test_listing_with_an_unexpected_shape_is_an_incomplete_read():
    proxy = FakeProxy().on("GET", "/user/list", reply(200, [{"user_id": "x"}]))
    with pytest.raises(IncompleteRead):
        proxy.client().list_users()


def test_empty_listing():
    proxy = FakeProxy().on(
        "GET", "/v2/team/list", reply(200, {"teams": [], "total": 0, "page": 1, "page_size": 100, "total_pages": 0})
    )
    assert proxy.client().list_teams() == []
    assert len(proxy.requests) == 1


def test_team_list_falls_back_to_the_bare_array_of_old_proxies():
    old = sample(5)["response"]["body"]
    proxy = (
        FakeProxy()
        .on("GET", "/v2/team/list", reply(404, {"detail": "Not Found"}))
        .on("GET", "/team/list", reply(200, old))
    )
    teams = proxy.client().list_teams()
    assert sorted(t["team_id"] for t in old) == [t["team_id"] for t in teams]
    assert len(proxy.calls("GET", "/v2/team/list")) == 1  # a 404 is not retried


def test_team_list_does_not_fall_back_on_other_errors():
    proxy = FakeProxy().on("GET", "/v2/team/list", reply(403, {"detail": {"error": "forbidden"}}))
    with pytest.raises(ProxyError) as caught:
        proxy.client().list_teams()
    assert caught.value.status == 403
    assert not proxy.calls("GET", "/team/list")


# --------------------------------------------------------------------------- retries


def test_get_is_retried_on_503_then_succeeds():
    proxy = FakeProxy().on("GET", "/team/info", reply(503), reply(503), sample_reply(7))
    team = proxy.client().team_info("24ac7b6a-aa58-4e5f-89ea-af89186bf1af")
    assert team["team_alias"] == "probe-team-64c06e"
    assert len(proxy.requests) == 3
    assert len(proxy.sleeps) == 2


def test_get_is_retried_on_transport_errors():
    proxy = FakeProxy().on(
        "GET", "/team/info", raising(httpx.ConnectError), raising(httpx.ReadTimeout), sample_reply(7)
    )
    assert proxy.client().team_info("x") is not None
    assert len(proxy.requests) == 3


def test_get_gives_up_after_max_attempts():
    proxy = FakeProxy().on("GET", "/team/info", reply(502))
    with pytest.raises(ProxyError) as caught:
        proxy.client(max_attempts=3).team_info("x")
    assert caught.value.status == 502
    assert len(proxy.requests) == 3


def test_get_is_not_retried_on_a_client_error():
    proxy = FakeProxy().on("GET", "/user/list", sample_reply(21))
    with pytest.raises(ProxyError):
        proxy.client().list_users()
    assert len(proxy.requests) == 1 and proxy.sleeps == []


def test_a_500_to_a_write_is_an_unknown_outcome_never_resent():
    # LiteLLM's own 500 (a foreign key refused) looks like a proxy that made the link and then failed.
    proxy = FakeProxy().on("POST", "/invitation/new", sample_reply(32))
    with pytest.raises(OutcomeUnknown) as caught:
        proxy.client().new_invitation("no-such-user")
    assert caught.value.status == 500
    assert "Foreign key constraint" in caught.value.message
    assert len(proxy.requests) == 1


@pytest.mark.parametrize(
    "answer, unknown",
    [
        (reply(400, {"error": {"message": "bad", "type": "bad_request_error"}}), False),
        (reply(404, {"detail": "Not Found"}), False),
        (reply(422, {"detail": [{"loc": ["body", "x"], "msg": "bad"}]}), False),
        (reply(429, {"error": {"message": "slow down"}}), True),  # a gateway may send it after forwarding
        (reply(502, {"error": {"message": "bad gateway"}}), True),
        (httpx.Response(404, text="<html>not found</html>"), True),  # not LiteLLM's answer
        (httpx.Response(200, text='{"id": "inv-1", "user_'), True),  # truncated
        (httpx.Response(200, text="<html>ok</html>"), True),
    ],
)
def test_only_a_proven_refusal_of_a_write_is_a_refusal(answer: httpx.Response, unknown: bool) -> None:
    proxy = FakeProxy().on("POST", "/team/new", answer)
    with pytest.raises(ProxyError) as caught:
        proxy.client().create_team({})
    assert isinstance(caught.value, OutcomeUnknown) == unknown
    assert len(proxy.requests) == 1


def test_post_is_retried_on_503_with_retry_after():
    overloaded = reply(503, {"error": {"message": "overloaded", "type": "overloaded_error"}}, **{"Retry-After": "2"})
    proxy = FakeProxy().on("POST", "/team/new", overloaded, sample_reply(1))
    assert proxy.client().create_team({"team_alias": "probe-team-64c06e"})["team_alias"] == "probe-team-64c06e"
    assert len(proxy.requests) == 2
    assert proxy.sleeps == [2.0]


def test_post_is_not_retried_on_503_without_retry_after():
    proxy = FakeProxy().on("POST", "/team/new", reply(503, {"error": {"message": "no db", "type": "no_db_connection"}}))
    with pytest.raises(OutcomeUnknown):
        proxy.client().create_team({})
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_post_without_a_response_is_outcome_unknown_and_not_resent(exc_type):
    proxy = FakeProxy().on("POST", "/team/new", raising(exc_type))
    with pytest.raises(OutcomeUnknown) as caught:
        proxy.client().create_team({"team_alias": "x"})
    assert caught.value.status is None
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("status", [502, 504])
def test_post_answered_by_a_gateway_error_is_outcome_unknown(status):
    proxy = FakeProxy().on("POST", "/user/new", reply(status, {"detail": "bad gateway"}))
    with pytest.raises(OutcomeUnknown):
        proxy.client().create_user({"user_id": "u"})
    assert len(proxy.requests) == 1


def test_post_that_cannot_connect_is_a_plain_proxy_error():
    proxy = FakeProxy().on("POST", "/team/new", raising(httpx.ConnectError, "connection refused"))
    with pytest.raises(ProxyError) as caught:
        proxy.client().create_team({})
    assert not isinstance(caught.value, OutcomeUnknown)
    assert "cannot reach the proxy" in str(caught.value)
    assert len(proxy.requests) == 1


# --------------------------------------------------------------------------- error envelopes


@pytest.mark.parametrize(
    "number, method, path, call, message",
    [
        (
            9,
            "POST",
            "/user/new",
            lambda c: c.create_user({"user_email": "alice-64c06e@example.com"}),
            "User with email alice-64c06e@example.com already exists",
        ),
        (
            35,
            "GET",
            "/invitation/info",
            lambda c: c.get("/invitation/info", invitation_id="x"),
            "Invitation id does not exist in the database.",
        ),
        (
            15,
            "POST",
            "/user/new",
            lambda c: c.create_user({"user_role": "superuser"}),
            "body.user_role: Input should be",
        ),
        (
            21,
            "GET",
            "/user/list",
            lambda c: c.list_users(),
            "query.page_size: Input should be less than or equal to 100",
        ),
    ],
    ids=["openai-envelope", "detail-dict", "422-list-body", "422-list-query"],
)
def test_error_envelopes_become_messages(number, method, path, call, message):
    proxy = FakeProxy().on(method, path, sample_reply(number))
    with pytest.raises(ProxyError) as caught:
        call(proxy.client())
    assert message in caught.value.message
    assert caught.value.status == sample(number)["response"]["status"]
    assert str(caught.value).startswith(f"{method} {path}: HTTP {caught.value.status}: ")


def test_error_type_is_kept_as_kind():
    proxy = FakeProxy().on("POST", "/team/member_add", reply(400, {"error": {"message": "nope", "type": "some_type"}}))
    with pytest.raises(ProxyError) as caught:
        proxy.client().post("/team/member_add", {})
    assert caught.value.kind == "some_type"


def test_non_json_success_is_an_error():
    proxy = FakeProxy().on("GET", "/team/info", httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(ProxyError) as caught:
        proxy.client().team_info("x")
    assert "not JSON" in str(caught.value)


# --------------------------------------------------------------------------- the key


def test_key_echoed_in_a_401_never_appears_in_the_exception():
    echoed = {
        "error": {
            "message": (
                f"Authentication Error, LiteLLM Virtual Key expected. Received={KEY}, expected to start with 'sk-'."
            ),
            "type": "auth_error",
            "param": "None",
            "code": "401",
        }
    }
    proxy = FakeProxy().on("GET", "/user/list", reply(401, echoed))
    with pytest.raises(ProxyError) as caught:
        proxy.client().list_users()
    assert caught.value.status == 401
    assert KEY not in str(caught.value) and KEY not in repr(caught.value) and KEY not in caught.value.message
    assert "Authentication Error" in str(caught.value)


def test_key_in_a_transport_error_never_appears_in_the_exception():
    proxy = FakeProxy().on("POST", "/team/new", raising(httpx.ReadTimeout, f"timed out sending Bearer {KEY}"))
    with pytest.raises(OutcomeUnknown) as caught:
        proxy.client().create_team({})
    assert KEY not in str(caught.value)


def test_requests_authenticate_with_the_key():
    proxy = FakeProxy().on("GET", "/team/info", sample_reply(7))
    proxy.client().team_info("x")
    assert proxy.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_client_without_key_is_refused():
    with pytest.raises(ValueError):
        LiteLLMClient(BASE, "")


# --------------------------------------------------------------------------- writes


def test_create_user_never_creates_a_key():
    proxy = FakeProxy().on("POST", "/user/new", sample_reply(11))
    proxy.client().create_user({"user_id": "u", "user_email": "a@example.com", "auto_create_key": True})
    sent = body(proxy.requests[0])
    assert sent["auto_create_key"] is False
    assert sent["user_email"] == "a@example.com"


def test_every_write_carries_the_audit_header():
    proxy = (
        FakeProxy()
        .on("POST", "/team/new", sample_reply(1))
        .on("POST", "/team/update", reply(200, {}))
        .on("POST", "/user/new", sample_reply(11))
        .on("POST", "/user/update", reply(200, {}))
        .on("POST", "/team/member_add", sample_reply(36))
        .on("POST", "/invitation/new", sample_reply(30))
        .on("GET", "/team/info", sample_reply(7))
    )
    client = proxy.client()
    client.create_team({"team_alias": "t"})
    client.update_team({"team_id": "t"})
    client.create_user({"user_id": "u"})
    client.update_user({"user_id": "u"})
    client.add_members("t", ["u"])
    client.new_invitation("u")
    client.team_info("t")
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert len(posts) == 6
    assert all(r.headers.get("litellm-changed-by") == CHANGED_BY for r in posts)
    assert "litellm-changed-by" not in proxy.calls("GET", "/team/info")[0].headers


def test_add_members_sends_one_list():
    proxy = FakeProxy().on("POST", "/team/member_add", sample_reply(36))
    proxy.client().add_members("t-1", ["u-1", "u-2"])
    assert body(proxy.requests[0]) == {
        "team_id": "t-1",
        "member": [{"user_id": "u-1", "role": "user"}, {"user_id": "u-2", "role": "user"}],
    }


def test_add_members_treats_already_in_team_as_success():
    proxy = FakeProxy().on("POST", "/team/member_add", sample_reply(37))
    result = proxy.client().add_members(
        "24ac7b6a-aa58-4e5f-89ea-af89186bf1af", ["f0d9f38a-4827-4edf-b78d-64708e8ef1e7"]
    )
    assert result["already_members"] is True
    assert len(proxy.requests) == 1


def test_add_members_raises_other_refusals():
    proxy = FakeProxy().on("POST", "/team/member_add", sample_reply(40))
    with pytest.raises(ProxyError) as caught:
        proxy.client().add_members("no-such-team", ["u"])
    assert caught.value.status == 404 and "Team doesn't exist" in caught.value.message


# --------------------------------------------------------------------------- reads of single objects


def test_team_info_of_a_missing_team_is_none():
    proxy = FakeProxy().on(
        "GET", "/team/info", reply(404, {"error": {"message": "Team not found, passed team id: x.", "code": "404"}})
    )
    assert proxy.client().team_info("x") is None


def test_invitation_info_of_an_unknown_id_is_none():
    proxy = FakeProxy().on("GET", "/invitation/info", sample_reply(35))
    assert proxy.client().invitation_info("no-such-invite") is None
    proxy = FakeProxy().on("GET", "/invitation/info", sample_reply(34))
    assert proxy.client().invitation_info("a1b9daa9-4ab3-4171-9d23-b70e1299ceb4")["is_accepted"] is False


def test_find_user_matches_the_id_exactly():
    listing = {
        "users": [{"user_id": "carol-64c06e-2"}, {"user_id": "carol-64c06e"}],
        "total": 2,
        "page": 1,
        "page_size": 100,
        "total_pages": 1,
    }
    proxy = FakeProxy().on("GET", "/user/list", reply(200, listing))
    client = proxy.client()
    assert client.find_user("carol-64c06e") == {"user_id": "carol-64c06e"}
    assert client.find_user("carol") is None
    assert proxy.requests[0].url.params["user_ids"] == "carol-64c06e"


# --------------------------------------------------------------------------- the proxy URL


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://proxy.example.com/?token=abc", "a query or fragment is not allowed"),
        ("https://proxy.example.com/#frag", "a query or fragment is not allowed"),
        ("https://admin:s3cret-pass@proxy.example.com", "credentials in the URL are not allowed"),
        ("ftp://proxy.example.com", "expected http(s)://host"),
        ("proxy.example.com", "expected http(s)://host"),
    ],
)
def test_unusable_proxy_urls_are_refused_without_printing_credentials(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        check_proxy_url(url)
    assert "s3cret-pass" not in str(caught.value)


@pytest.mark.parametrize(
    "url, warned",
    [
        ("https://proxy.example.com", False),
        ("http://127.0.0.1:4000", False),
        ("http://localhost:4000/litellm", False),
        ("http://[::1]:4000", False),
        ("http://proxy.example.com:4000", True),
        ("http://10.0.0.8", True),
    ],
)
def test_plain_http_beyond_loopback_is_warned_about(url: str, warned: bool) -> None:
    warnings = check_proxy_url(url)
    assert bool(warnings) is warned
    assert all("unencrypted" in w for w in warnings)


# --------------------------------------------------------------------------- deadlines


class Trickle(httpx.SyncByteStream):
    """A body sent one byte at a time, ``delay`` seconds apart: each read is quick, the whole is not."""

    def __init__(self, body: bytes, delay: float):
        self.body, self.delay = body, delay

    def __iter__(self):
        for byte in self.body:
            time.sleep(self.delay)
            yield bytes([byte])


def test_a_trickling_answer_is_cut_off_after_the_timeout_per_attempt() -> None:
    attempts: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        attempts.append(time.monotonic())
        return httpx.Response(200, stream=Trickle(b'{"users": [], "total": 0, "total_pages": 0}' * 10, 0.05))

    client = LiteLLMClient(
        BASE, KEY, timeout=0.3, max_attempts=2, transport=httpx.MockTransport(handle), sleep=lambda s: None
    )
    started = time.monotonic()
    with pytest.raises(ProxyError, match="the answer took longer than 0.3 s"):
        client.list_users()
    assert len(attempts) == 2 and time.monotonic() - started < 1.5


def test_the_run_deadline_stops_requests_and_bounds_each_one() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, stream=Trickle(b'{"team_info": {}}', 0.05))

    client = LiteLLMClient(
        BASE,
        KEY,
        timeout=30,
        transport=httpx.MockTransport(handle),
        sleep=lambda s: None,
        deadline=time.monotonic() + 0.2,
    )
    with pytest.raises(ProxyError):
        client.team_info("t")
    with pytest.raises(DeadlineExceeded, match="deadline"):
        client.team_info("t")
    assert calls.count("/team/info") >= 1 and client.requests_made >= 2


def test_an_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.client.MAX_BODY_BYTES", 1000)
    proxy = httpx.MockTransport(lambda request: httpx.Response(200, content=b"[" + b"0," * 2000 + b"0]"))
    with pytest.raises(ProxyError, match="larger than"):
        LiteLLMClient(BASE, KEY, transport=proxy, max_attempts=1, sleep=lambda s: None).list_teams_unpaginated()


def test_a_refused_post_is_retried_with_the_same_body() -> None:
    bodies: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) == 1:
            return httpx.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json={"team_id": "t"})

    LiteLLMClient(BASE, KEY, transport=httpx.MockTransport(handle), sleep=lambda s: None).create_team(
        {"team_alias": "a"}
    )
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_the_proxys_team_fields_are_read_once_per_client():
    schema = {
        "components": {"schemas": {"NewTeamRequest": {"properties": {"team_alias": {}, "team_member_budget": {}}}}}
    }
    proxy = FakeProxy().on("GET", "/openapi.json", reply(200, schema))
    client = proxy.client()
    assert client.team_fields() == frozenset({"team_alias", "team_member_budget"})
    assert client.team_fields() == frozenset({"team_alias", "team_member_budget"})
    assert len(proxy.calls("GET", "/openapi.json")) == 1
    silent = FakeProxy().on("GET", "/openapi.json", reply(200, {"components": {}}))
    client = silent.client()
    assert client.team_fields() is None and client.team_fields() is None
    assert len(silent.calls("GET", "/openapi.json")) == 1


def test_organization_member_writes_use_litellms_methods_and_a_gone_organization_counts_as_deleted():
    proxy = (
        FakeProxy()
        .on("POST", "/organization/member_add", reply(200, {}))
        .on("PATCH", "/organization/member_update", reply(200, {}))
        .on("DELETE", "/organization/member_delete", reply(200, None))
        .on("DELETE", "/organization/delete", reply(404, {"detail": {"error": "Organization=o not found"}}))
    )
    client = proxy.client()
    client.add_organization_member("o", "u", "org_admin")
    client.update_organization_member("o", "u", "internal_user")
    client.remove_organization_member("o", "u")
    client.delete_organization("o")
    assert body(proxy.calls("POST", "/organization/member_add")[0]) == {
        "organization_id": "o",
        "member": [{"user_id": "u", "role": "org_admin"}],
    }
    assert body(proxy.calls("PATCH", "/organization/member_update")[0]) == {
        "organization_id": "o",
        "user_id": "u",
        "role": "internal_user",
    }
    assert body(proxy.calls("DELETE", "/organization/delete")[0]) == {"organization_ids": ["o"]}


def test_a_team_update_of_member_limits_carries_the_teams_metadata_which_1_80_5_would_replace():
    metadata = {"litellm_reconciler": {"managed": True}, "team_member_budget_id": "b"}
    proxy = (
        FakeProxy()
        .on("GET", "/team/info", reply(200, {"team_id": "t", "team_info": {"team_id": "t", "metadata": metadata}}))
        .on("POST", "/team/update", reply(200, {}))
    )
    client = proxy.client()
    client.update_team({"team_id": "t", "team_member_budget": 7})
    client.update_team({"team_id": "t", "max_budget": 5})
    assert [body(r) for r in proxy.calls("POST", "/team/update")] == [
        {"team_id": "t", "team_member_budget": 7, "metadata": metadata},
        {"team_id": "t", "max_budget": 5},
    ]


@pytest.mark.parametrize("url", ['https://user:pa/ss word"<@host/?key=x', "https://user:pa:ss@host:99999/"])
def test_an_unusable_proxy_url_is_refused_without_a_piece_of_its_password(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_proxy_url(url)
    message = str(refused.value)
    assert "invalid proxy URL" in message and not any(p in message for p in (":pa", "pa/", "ss@", "word", "key=x"))
