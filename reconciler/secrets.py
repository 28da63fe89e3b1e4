"""The one place that knows what a secret looks like and how to hide it.

Every text that leaves the process (terminal output, error messages, reports meant for
people, PR comments, emails' error reasons) goes through :func:`scrub`. The client, the
CLI, the GitHub glue and email delivery all call it, so they hide the same things:

* the values of the secret environment variables (keys, the seal key, SMTP and GitHub
  credentials), also with the whitespace a pasted secret often carries;
* onboarding links and bare invitation ids in link form (``invitation_id=...``): a link is
  a credential, whoever opens it sets the user's password;
* the user-info part of any URL (``https://user:pass@host``);
* any extra values the caller knows to be secret (invitation ids it just created), and,
  for text meant for a pull request, the proxy URL itself or every URL.

Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping

#: Environment variables whose values are never printed.
SECRET_VARIABLES = (
    "LITELLM_API_KEY",
    "LITELLM_MASTER_KEY",
    "LITELLM_RECONCILER_SEAL_KEY",
    "SMTP_PASSWORD",
    "SMTP_USERNAME",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)
#: Shorter values are not scrubbed: replacing every "a" in a text hides nothing and breaks it.
MIN_SECRET_LENGTH = 4
MASK = "***"
LINK_MASK = "<link removed>"
URL_MASK = "<url removed>"

# An onboarding link in any form the UI understands (/ui/onboarding?invitation_id=..., /ui?invitation_id=...),
# and the query parameter on its own, wherever it appears.
_LINK = re.compile(r"https?://[^\s\"'<>]*invitation_id=[^\s\"'<>&]*", re.IGNORECASE)
_INVITATION_PARAM = re.compile(r"(invit(?:ation_id|e_link)=)[^\s\"'<>&]+", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@", re.IGNORECASE)
_ANY_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>)\]`|]+", re.IGNORECASE)


def secret_values(environ: Mapping[str, str] = os.environ, extra: Iterable[str | None] = ()) -> list[str]:
    """The values to hide, longest first (so a secret containing another is hidden whole)."""
    found: set[str] = set()
    for value in [*(environ.get(name, "") for name in SECRET_VARIABLES), *extra]:
        if not value:
            continue
        for variant in (value, value.strip()):
            if len(variant) >= MIN_SECRET_LENGTH:
                found.add(variant)
    return sorted(found, key=len, reverse=True)


def scrub(
    text: str,
    *,
    extra: Iterable[str | None] = (),
    hide_urls: Iterable[str | None] = (),
    all_urls: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """``text`` with every secret, link and URL credential replaced.

    ``extra``: further secret values (e.g. invitation ids). ``hide_urls``: base URLs to
    replace wherever they appear (the proxy URL, in text for a pull request). ``all_urls``:
    replace every URL (logs of an apply that may quote anything).
    """
    text = _LINK.sub(LINK_MASK, text)
    text = _INVITATION_PARAM.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
    for secret in secret_values(environ, extra):
        text = text.replace(secret, MASK)
    for url in sorted({u.rstrip("/") for u in hide_urls if u and u.strip("/")}, key=len, reverse=True):
        text = text.replace(url, URL_MASK)
    if all_urls:
        text = _ANY_URL.sub(URL_MASK, text)
    return text


def url_without_credentials(url: str) -> str:
    """A URL fit to print: its user-info part masked."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", url)


class _ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup_logging(level: str) -> None:
    """The package's log lines (``-v``: one per request) to stderr, each one scrubbed;
    ``warning`` (the default) keeps runs quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("reconciler")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
