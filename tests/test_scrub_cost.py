"""scrub() is linear in its input: an error quoting a 1 MB token from the file is reported at once.

Each hostile text is a long run that a pattern scanning from every start position would rescan
(URL-ish characters with no ``invitation_id=``, a token after ``://`` with no ``@``, thousands of
URLs glued together). A quadratic pattern takes minutes on 1 MB; a linear scrub of all of them
takes about a second. So the 1 MB run goes to a child process with a timeout far above the
linear time and far below the quadratic one: no wall-clock assertion that a loaded machine
could break, yet a quadratic pattern cannot pass. The same cases, small, check the output.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.secrets import LINK_MASK, MASK, scrub

REPO = Path(__file__).resolve().parents[1]
SIZE = 1_000_000
#: Linear: about a second for every case together, even on a loaded 2-core machine well under
#: a minute; quadratic: each 1 MB case alone needs several minutes.
TIMEOUT = 90
ENVIRON = {"LITELLM_MASTER_KEY": "sk-master-0123456789"}


def _times(unit: str, size: int) -> str:
    return unit * (size // len(unit))


#: name -> size -> (text, what scrub must make of it).
CASES: dict[str, Callable[[int], tuple[str, str]]] = {
    "URL-ish run without invitation_id": lambda n: ("https://h/" + "a" * n,) * 2,
    "link start repeated": lambda n: (
        _times("http://h/ui?invitation_id/", n),
        _times("http://h/ui?invitation_id/", n).replace("invitation_id/", MASK),
    ),
    "http:// repeated": lambda n: (_times("http://", n),) * 2,
    "scheme-like run": lambda n: ("a" * n,) * 2,
    "scheme-like run, then a URL": lambda n: ("a" * n + "://u:p@h/x", "a" * n + f"://{MASK}@h/x"),
    "long token after ://": lambda n: ("x://" + "t" * n + "@h", f"x://{MASK}@h"),
    "long token after :// without @": lambda n: ("x://" + "t" * n,) * 2,
    "user:password-like, no @": lambda n: (_times("a://b:c ", n), _times("a://b:c ", n).replace("b:c", MASK)),
    "URLs glued together": lambda n: (_times("a://b", n),) * 2,
    "URLs glued by quotes": lambda n: (_times('a://x"', n),) * 2,
    "credentials repeated": lambda n: (_times("http://u:p@", n), _times("http://u:p@", n).replace("u:p@", MASK)),
    ":// repeated": lambda n: (_times("://", n),) * 2,
    "@ repeated": lambda n: ("@" * n,) * 2,
    "long query": lambda n: ("ftp://x/?" + "k" * n, f"ftp://x/?{MASK}"),
    "long link": lambda n: ("https://h/ui?invitation_id=" + "i" * n + "&x=1", LINK_MASK + "&x=1"),
    "invitation_id= repeated": lambda n: (_times("invitation_id=", n), "invitation_id=" + MASK),
    "query names without =": lambda n: (_times("&token", n),) * 2,
    "long query name": lambda n: ("?" + "a" * n,) * 2,
    "near-miss of a secret": lambda n: (_times("sk-master-012345678 ", n),) * 2,
    "spaces and slashes": lambda n: (_times(" http:/", n),) * 2,
}


def check_all(size: int) -> None:
    """Scrub every case at ``size`` and compare (run by the child process)."""
    for name, case in CASES.items():
        text, expected = case(size)
        assert scrub(text, environ=ENVIRON) == expected, name


@pytest.mark.parametrize("name", CASES)
def test_hostile_text_is_scrubbed_right(name: str) -> None:
    text, expected = CASES[name](1000)
    assert scrub(text, environ=ENVIRON) == expected


def test_a_megabyte_of_each_takes_linear_time() -> None:
    code = f"from tests.test_scrub_cost import check_all; check_all({SIZE})"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scrubbing {len(CASES)} texts of 1 MB took over {TIMEOUT} s: some pattern is not linear")
    assert done.returncode == 0, done.stderr[-2000:]
