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
