"""The one place that knows what a secret looks like and how to hide it.

Every text that leaves the process (terminal output, error messages, reports meant for
people, PR comments, emails' error reasons) goes through :func:`scrub`. The client, the
CLI, the GitHub glue and email delivery all call it, so they hide the same things:

* the values of the secret environment variables (keys, the seal key, SMTP and GitHub
  credentials), also with the whitespace a pasted secret often carries;
* onboarding links and bare invitation ids in link form (``invitation_id=...``): a link is
  a credential, whoever opens it sets the user's password;
* the user-info part and the query (with the fragment) of any URL
  (``https://user:pass@host/?token=...``), whatever characters they hold. A URL given on its
  own (the proxy URL) is parsed exactly; LITELLM_PROXY_URL's credentials and query are also
  hidden verbatim wherever they appear. In free text a URL is taken to end at whitespace or
  where the next URL starts, the best a text can tell;
* the value of a query parameter named like a credential (``?api_key=``, ``&token=``), even
  without the URL around it;
* any extra values the caller knows to be secret (invitation ids it just created), and,
  for text meant for a pull request, the proxy URL itself or every URL.

Scrubbing is linear in the text (an error may quote a 1 MB token from the file): every
pattern is anchored so that no start position rescans what an earlier one scanned (a
lookbehind refuses starts inside a run), and nothing follows an unbounded run that could
make it backtrack. Standard library only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import NamedTuple

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
#: The proxy URL: its credentials and query, if it has any, are hidden like the variables above.
PROXY_URL_VARIABLE = "LITELLM_PROXY_URL"
#: Shorter values are not scrubbed: replacing every "a" in a text hides nothing and breaks it.
MIN_SECRET_LENGTH = 4
MASK = "***"
LINK_MASK = "<link removed>"
URL_MASK = "<url removed>"

# An http(s) URL up to whitespace, a quote or an angle bracket; a link when its query names an
# invitation (/ui/onboarding?invitation_id=..., /ui?invitation_id=...). Matched whole and then
# looked into, so that a long URL without an invitation is scanned once, not once per start.
_HTTP_URL = re.compile(r"https?://[^\s\"'<>]*", re.IGNORECASE)
_LINK_PARAM = "invitation_id="
# The query parameter on its own, wherever it appears.
_INVITATION_PARAM = re.compile(r"(invit(?:ation_id|e_link)=)[^\s\"'<>&]+", re.IGNORECASE)
# Where a URL starts: its scheme (possibly empty) and "://". The lookbehind refuses a start
# inside a run of scheme characters, so each run is scanned once.
_URL_START = re.compile(r"(?<![a-z0-9+.-])[a-z0-9+.-]*://", re.IGNORECASE)
# A run of non-space characters holding a URL (starting only where the run starts).
_URL_RUN = re.compile(r"(?<!\S)\S*://\S*")
# What ends a URL in text: a quote, a bracket, Markdown code or a table cell. None of them
# occurs in a token; the query shown masked stops there, so text after a URL stays readable.
_URL_END = r"\"'<>)\]`|"
_QUERY_END = re.compile(f"[{_URL_END}]")
# Any query parameter; its value is hidden when the name says credential.
_QUERY_PARAM = re.compile(rf"([?&][\w.-]*=)([^\s&#{_URL_END}]*)")
_CREDENTIAL_NAME = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session", re.IGNORECASE)
# A URL for text meant for a pull request, replaced whole.
_ANY_URL = re.compile(_URL_START.pattern + rf"[^\s{_URL_END}]*", re.IGNORECASE)
_PORT = re.compile(r"[0-9]*")
_AUTHORITY_END = re.compile(r"[/?#]")
_QUERY_START = re.compile(r"[?#]")


class _Url(NamedTuple):
    """A URL cut into what may be shown (scheme, address: host, port, path) and what may not."""

    scheme: str  # with its "://"; "" when the URL has none
    userinfo: str | None
    address: str
    query: str | None  # from the first "?" or "#" on: the query and the fragment


def _parse(url: str) -> _Url:
    """``url`` cut exactly, even where its credentials hold "/", "?", "#", spaces or quotes.

    The RFC ends the authority at the first "/", "?" or "#"; an authority whose "port" is not
    a number is no host, so it must be a user and a password that holds one of those: the
    credentials then run to the last "@" (the whole URL is hidden when no "@" follows, or when
    a "?" or "#" before it means the "@" may sit in the query)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    if "@" in authority:
        at = authority.rindex("@")
    elif _not_a_host(authority):
        at = rest.rfind("@")
        if at < 0 or _QUERY_START.search(rest, 0, at):
            return _Url(scheme + separator, rest, "", None)
    else:
        at = -1
    address, query = _split_query(rest[at + 1 :])
    return _Url(scheme + separator, rest[:at] if at >= 0 else None, address, query)


def _not_a_host(authority: str) -> bool:
    """``user:password`` rather than ``host:port``: the "port" is no number. In text, a closing
    quote or bracket ends the port (``'http://localhost:4000'``); an IPv6 host is in brackets."""
    if authority.startswith("["):
        return False
    _, colon, port = _QUERY_END.split(authority, maxsplit=1)[0].rpartition(":")
    return bool(colon) and _PORT.fullmatch(port) is None


def _split_query(text: str) -> tuple[str, str | None]:
    """(address, query and fragment from the first "?" or "#"; None without one)."""
    found = _QUERY_START.search(text)
    return (text, None) if found is None else (text[: found.start()], text[found.start() :])


def _shown(url: _Url) -> str:
    """The URL with its user info and query (each as a whole) replaced by the mask."""
    userinfo = "" if url.userinfo is None else f"{MASK}@" if url.address else MASK
    query = "" if url.query is None else url.query[0] + MASK
    return url.scheme + userinfo + url.address + query


def url_without_credentials(url: str) -> str:
    """A URL fit to print: its user-info part and its query masked, whatever they hold."""
    return _shown(_parse(url))


def _url_secrets(url: str | None) -> list[str]:
    """The parts of ``url`` never to print (user info, password, query), to hide verbatim
    wherever the URL is quoted, even with the spaces or quotes free text would cut it at."""
    if not url:
        return []
    parsed = _parse(url)
    found = [parsed.userinfo, parsed.userinfo.partition(":")[2]] if parsed.userinfo else []
    return found + ([parsed.query[1:]] if parsed.query else [])


def secret_values(environ: Mapping[str, str] = os.environ, extra: Iterable[str | None] = ()) -> list[str]:
    """The values to hide, longest first (so a secret containing another is hidden whole)."""
    found: set[str] = set()
    variables = (environ.get(name, "") for name in SECRET_VARIABLES)
    for value in [*variables, *_url_secrets(environ.get(PROXY_URL_VARIABLE)), *extra]:
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
    """``text`` with every secret, link, URL credential and URL query replaced, in time linear
    in its length.

    ``extra``: further secret values (e.g. invitation ids). ``hide_urls``: base URLs to
    replace wherever they appear (the proxy URL, in text for a pull request). ``all_urls``:
    replace every URL (logs of an apply that may quote anything).
    """
    urls = [u for u in hide_urls if u]
    text = _HTTP_URL.sub(_without_link, text)
    text = _INVITATION_PARAM.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_PARAM.sub(_without_credential_value, text)
    for secret in secret_values(environ, [*extra, *(s for u in urls for s in _url_secrets(u))]):
        text = text.replace(secret, MASK)
    for url in sorted({u.rstrip("/") for u in urls if u.strip("/")}, key=len, reverse=True):
        text = text.replace(url, URL_MASK)
    text = _URL_RUN.sub(_without_url_credentials, text)
    return _ANY_URL.sub(URL_MASK, text) if all_urls else text


def _without_link(match: re.Match[str]) -> str:
    """An http(s) URL, with the link it is replaced up to the end of its (last) invitation id."""
    url = match.group()
    found = url.lower().rfind(_LINK_PARAM)
    if found < 0:
        return url
    end = url.find("&", found + len(_LINK_PARAM))
    return LINK_MASK + (url[end:] if end >= 0 else "")


def _without_credential_value(match: re.Match[str]) -> str:
    """A query parameter, its value masked when its name says credential (``api_key``, ``token``)."""
    name, value = match.groups()
    return name + MASK if value and _CREDENTIAL_NAME.search(name) else match.group()


def _without_url_credentials(match: re.Match[str]) -> str:
    """A run of non-space text holding URLs, each URL (up to the next one) without credentials
    or query."""
    run = match.group()
    starts = [m.start() for m in _URL_START.finditer(run)]
    ends = [*starts[1:], len(run)]
    return run[: starts[0]] + "".join(_url_in_text(run[a:b]) for a, b in zip(starts, ends))


def _url_in_text(url: str) -> str:
    """``url_without_credentials``, keeping what follows the query's end in text (a closing
    quote or bracket): the credentials, which may hold quotes, run to the last "@" anyway."""
    parsed = _parse(url)
    end = _QUERY_END.search(parsed.query) if parsed.query else None
    return _shown(parsed) + (end.string[end.start() :] if end else "")


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
