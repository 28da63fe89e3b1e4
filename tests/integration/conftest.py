"""The real LiteLLM proxy from ../shared/litellm-proxy, one per session, emptied per test;
and a second one for the tests of two environments (``second_api``).

``.ci/run`` starts the proxy and exports LITELLM_PROXY_URL / LITELLM_MASTER_KEY. A
developer may instead let this fixture start it. Under CI (CI=true) a missing proxy
fails the run: integration tests are required, never skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.lock import is_lock_row

HARNESS = Path(
    os.environ.get("LITELLM_HARNESS") or Path(__file__).resolve().parents[3] / "shared" / "litellm-proxy" / "start.sh"
)


#: Empties a proxy's database (``reset``), and runs the proxies of the GitHub tests workflow.
CI_PROXY = Path(__file__).resolve().parents[2] / ".github" / "scripts" / "ci-proxy.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "second_proxy" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.two_proxies)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"integration tests are required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def proxy() -> tuple[str, str]:
    """(base URL, master key) of a running proxy."""
    url, key = os.environ.get("LITELLM_PROXY_URL"), os.environ.get("LITELLM_MASTER_KEY")
    if not (url and key):
        if not HARNESS.exists():
            _unavailable("LITELLM_PROXY_URL / LITELLM_MASTER_KEY are not set and the harness is absent")
        # `start` returns at once when the harness runs; `env` only prints its exports.
        subprocess.run(["bash", str(HARNESS), "start"], check=True, stdout=subprocess.DEVNULL)
        exports = subprocess.run(["bash", str(HARNESS), "env"], check=True, capture_output=True, text=True).stdout
        words = [w for line in exports.splitlines() if line.startswith("export ") for w in shlex.split(line)[1:]]
        values = dict(w.split("=", 1) for w in words if "=" in w)
        url, key = values["LITELLM_PROXY_URL"], values["LITELLM_MASTER_KEY"]
        os.environ["LITELLM_PROXY_URL"], os.environ["LITELLM_MASTER_KEY"] = url, key
    try:
        httpx.get(f"{url}/health/liveliness", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        _unavailable(f"the proxy at {url} does not answer: {exc}")
    return url, key


@contextlib.contextmanager
def exclusive(url: str) -> Iterator[None]:
    """This process's tests alone on the proxy at ``url`` while the block runs: CI runs the suites of
    two LiteLLM versions side by side, and the tests of two environments also use the other's proxy."""
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"litellm-reconciler-proxy-{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _one_test_per_proxy() -> Iterator[None]:
    """Every integration test holds its proxy (see ``exclusive``), before the proxy is emptied for it."""
    with exclusive(os.environ.get("LITELLM_PROXY_URL") or "harness"):
        yield


@pytest.fixture
def empty_proxy(proxy: tuple[str, str]) -> tuple[str, str]:
    """An empty proxy (tables truncated; the process keeps running: ~0.2 s)."""
    if not HARNESS.exists():
        _unavailable("the harness is needed to empty the proxy between tests")
    subprocess.run(
        ["bash", str(HARNESS), "reset", "--keep-proxy"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proxy


def proxy_version(url: str) -> str:
    """The LiteLLM version a proxy runs (its OpenAPI document says it on every version we test)."""
    return str(httpx.get(f"{url}/openapi.json", timeout=30).json()["info"]["version"])


class Api:
    """Direct calls to the proxy for arranging and checking, independent of the code under test."""

    def __init__(self, url: str, key: str):
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def get(self, path: str, **params: object) -> object:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> object:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def users(self) -> list[dict]:
        """Every user but the apply lock's row (a row of the tool's, not a person)."""
        rows = self.get("/user/list", page_size=100, sort_by="user_id")["users"]  # type: ignore[index]
        return [u for u in rows if not is_lock_row(u["user_id"])]

    def teams(self) -> list[dict]:
        return self.get("/v2/team/list", page_size=100, sort_by="team_id")["teams"]  # type: ignore[index]


@pytest.fixture
def api(empty_proxy: tuple[str, str]) -> Api:
    return Api(*empty_proxy)


def _psql() -> str:
    found = shutil.which("psql") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))), None)
    if not found:
        _unavailable("psql is needed to age invitations in the proxy's database")
    return str(found)


@pytest.fixture
def sql(empty_proxy: tuple[str, str]):
    """Run SQL on the proxy's own PostgreSQL, e.g. to expire an invitation: ``DATABASE_URL`` (the
    variable the LiteLLM image reads too), else the harness's database."""
    url = (
        os.environ.get("DATABASE_URL")
        or f"postgresql://litellm:litellm@127.0.0.1:{os.environ.get('LITELLM_HARNESS_PGPORT', '54329')}/litellm"
    )
    psql = _psql()

    def run(query: str) -> str:
        return subprocess.run([psql, url, "-XAtqc", query], check=True, capture_output=True, text=True).stdout.strip()

    return run


#: The second proxy when LITELLM_SECOND_* are not set: the harness's newest LiteLLM, where .ci/run puts it too.
SECOND_HARNESS = {
    "LITELLM_VERSION": "1.110.2",
    "LITELLM_HARNESS_HOME": "/tmp/litellm-harness-1.110.2",
    "LITELLM_HARNESS_PORT": "4031",
    "LITELLM_HARNESS_PGPORT": "54349",
}


@pytest.fixture(scope="session")
def second_proxy() -> tuple[str, str, str]:
    """(base URL, master key, database URL) of another proxy, for a second environment: from
    LITELLM_SECOND_PROXY_URL, LITELLM_SECOND_MASTER_KEY and LITELLM_SECOND_DATABASE_URL, else the
    harness started with SECOND_HARNESS (2-3 minutes the first time)."""
    names = ("LITELLM_SECOND_PROXY_URL", "LITELLM_SECOND_MASTER_KEY", "LITELLM_SECOND_DATABASE_URL")
    url, key, database = (os.environ.get(name) for name in names)
    if not (url and key and database):
        if not HARNESS.exists():
            _unavailable(f"{', '.join(names)} are not set and the harness is absent")
        env = {**os.environ, **SECOND_HARNESS}
        subprocess.run(["bash", str(HARNESS), "start"], check=True, stdout=subprocess.DEVNULL, env=env)
        exports = subprocess.run(["bash", str(HARNESS), "env"], check=True, capture_output=True, text=True, env=env)
        words = [w for line in exports.stdout.splitlines() if line.startswith("export ") for w in shlex.split(line)[1:]]
        values = dict(w.split("=", 1) for w in words if "=" in w)
        url, key = values["LITELLM_PROXY_URL"], values["LITELLM_MASTER_KEY"]
        database = f"postgresql://litellm:litellm@127.0.0.1:{SECOND_HARNESS['LITELLM_HARNESS_PGPORT']}/litellm"
    try:
        httpx.get(f"{url}/health/liveliness", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        _unavailable(f"the second proxy at {url} does not answer: {exc}")
    return url, key, database


@pytest.fixture
def second_api(second_proxy: tuple[str, str, str]) -> Iterator[Api]:
    """The second proxy, held for this test (``exclusive``) and emptied through its database (the
    process keeps running) by the script that empties the proxy of the GitHub tests workflow."""
    url, key, database = second_proxy
    _psql()  # the script needs it
    with exclusive(url):
        env = {**os.environ, "DATABASE_URL": database, "LITELLM_PROXY_URL": url}
        subprocess.run(["bash", str(CI_PROXY), "reset"], check=True, capture_output=True, text=True, env=env)
        yield Api(url, key)
