"""The one scrubbing function: keys, links, URL credentials and proxy URLs never get out."""

from __future__ import annotations

import pytest

from reconciler.secrets import (
    LINK_MASK,
    MASK,
    URL_MASK,
    scrub,
    secret_values,
    url_without_credentials,
)

ENV = {
    "LITELLM_MASTER_KEY": "sk-master-0123456789",
    "LITELLM_API_KEY": "plainkey-without-prefix\n",  # pasted with its newline
    "LITELLM_RECONCILER_SEAL_KEY": "seal-secret-value",
    "SMTP_PASSWORD": "hunter22",
    "GH_TOKEN": "ghs_abcdef",
    "SMTP_USERNAME": "abc",  # too short to scrub without wrecking the text
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("key sk-master-0123456789 refused", f"key {MASK} refused"),
        ("Received=plainkey-without-prefix, expected", f"Received={MASK}, expected"),
        ("seal-secret-value and hunter22 and ghs_abcdef", f"{MASK} and {MASK} and {MASK}"),
        ("open https://llm.example.com/ui/onboarding?invitation_id=1234-abcd now", f"open {LINK_MASK} now"),
        ("old form http://h:4000/ui?invitation_id=1234-abcd&x=1", f"old form {LINK_MASK}&x=1"),
        ("GET /invitation/info?invitation_id=1234-abcd failed", f"GET /invitation/info?invitation_id={MASK} failed"),
        ("get_token?invite_link=1234-abcd", f"get_token?invite_link={MASK}"),
        ("cannot reach https://admin:pa55@proxy.example.com/x", f"cannot reach https://{MASK}@proxy.example.com/x"),
        ("the abc team", "the abc team"),
    ],
)
def test_scrub_hides_every_kind_of_secret(text: str, expected: str) -> None:
    assert scrub(text, environ=ENV) == expected


def test_extra_values_and_urls_for_pull_requests() -> None:
    text = "inv-7a9f at https://proxy.corp.example:4000/team/list and https://other.example/x"
    assert scrub(text, extra=["inv-7a9f"], hide_urls=["https://proxy.corp.example:4000/"], environ={}) == (
        f"{MASK} at {URL_MASK}/team/list and https://other.example/x"
    )
    assert scrub(text, all_urls=True, environ={}) == f"inv-7a9f at {URL_MASK} and {URL_MASK}"


def test_a_secret_containing_another_is_hidden_whole() -> None:
    assert secret_values({"LITELLM_MASTER_KEY": "sk-abcd", "LITELLM_API_KEY": "sk-abcd-longer"}) == [
        "sk-abcd-longer",
        "sk-abcd",
    ]
    assert (
        scrub("x sk-abcd-longer y", environ={"LITELLM_MASTER_KEY": "sk-abcd", "LITELLM_API_KEY": "sk-abcd-longer"})
        == "x *** y"
    )


def test_url_without_credentials() -> None:
    assert url_without_credentials("https://u:p@h.example/p") == f"https://{MASK}@h.example/p"
    assert url_without_credentials("https://h.example/p") == "https://h.example/p"


@pytest.mark.parametrize(
    "url, shown",
    [
        ('https://user:pa/ss word"<@host/?key=x', f"https://{MASK}@host/?{MASK}"),
        ("https://proxy.example.com/?token=abc", f"https://proxy.example.com/?{MASK}"),
        ("https://proxy.example.com/base?api_key=k#frag", f"https://proxy.example.com/base?{MASK}"),
        ("https://proxy.example.com#access_token=t", f"https://proxy.example.com#{MASK}"),
        ("https://user:p@ss@host:4000/", f"https://{MASK}@host:4000/"),  # an unencoded "@" in the password
        ("https://user:pa?ss@host/", f"https://{MASK}"),  # "?" before the "@": where it ends is unknowable
        ("https://user:pa/ss", f"https://{MASK}"),  # "pa" is no port: a password, and no host follows
        ("https://h.example/p?email=a@b.example", f"https://h.example/p?{MASK}"),
        ("http://[::1]:4000/x", "http://[::1]:4000/x"),
        ("http://[fe80::abcd]/x", "http://[fe80::abcd]/x"),
        ("proxy.example.com?token=abc", f"proxy.example.com?{MASK}"),
    ],
)
def test_url_without_credentials_whatever_they_hold(url: str, shown: str) -> None:
    assert url_without_credentials(url) == shown


@pytest.mark.parametrize(
    "text, expected",
    [
        ("GET https://h.example/x?token=abc failed", f"GET https://h.example/x?{MASK} failed"),
        ("URL('https://h.example/x?api_key=abc')", f"URL('https://h.example/x?{MASK}')"),
        (
            "[docs](https://h.example/p?sig=1) and 'http://localhost:4000'",
            f"[docs](https://h.example/p?{MASK}) and 'http://localhost:4000'",
        ),
        (
            '"https://a.example/?x=1","https://u:p@b.example/"',
            f'"https://a.example/?{MASK}","https://{MASK}@b.example/"',
        ),
        ('<a href="https://u:p"q@h.example/">', f'<a href="https://{MASK}@h.example/">'),
        ("cannot reach https://user:pa/ss@host/x", f"cannot reach https://{MASK}@host/x"),
        ("GET /key/info?api_key=sk-123&page=2", f"GET /key/info?api_key={MASK}&page=2"),
        ("redirect to /login&access_token=xyz#top", f"redirect to /login&access_token={MASK}#top"),
        ("at https://h.example:4000/team/list?page=2", f"at https://h.example:4000/team/list?{MASK}"),
    ],
)
def test_scrub_hides_credentials_and_queries_of_urls_in_text(text: str, expected: str) -> None:
    assert scrub(text, environ={}) == expected


def test_the_configured_proxy_url_is_hidden_exactly_even_where_text_would_cut_it() -> None:
    url = 'https://user:pa/ss word"<@host/?key=tok-1234'
    text = f"cannot reach {url} (ConnectError); retrying {url}"
    scrubbed = scrub(text, environ={"LITELLM_PROXY_URL": url})
    assert "pa/ss" not in scrubbed and 'word"<' not in scrubbed and "tok-1234" not in scrubbed, scrubbed
    assert scrubbed == f"cannot reach https://{MASK}@host/?{MASK} (ConnectError); retrying https://{MASK}@host/?{MASK}"
    # The same for a URL passed to hide in text for a pull request.
    assert "word" not in scrub(text, hide_urls=[url], environ={})
