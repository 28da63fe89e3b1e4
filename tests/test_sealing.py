"""Sealed invitation ids: opened only with the apply side's key, only for their own user."""

from __future__ import annotations

import pytest

from reconciler.sealing import Sealer


def test_round_trip_and_fresh_nonce() -> None:
    sealer = Sealer("apply-secret")
    one, two = sealer.seal("inv-123", "u1"), sealer.seal("inv-123", "u1")
    assert one != two and "inv-123" not in one
    assert sealer.open(one, "u1") == sealer.open(two, "u1") == "inv-123"


@pytest.mark.parametrize(
    "other, user",
    [(Sealer("another-secret"), "u1"), (Sealer("apply-secret"), "u2")],
    ids=["another key", "another user"],
)
def test_does_not_open_with_another_key_or_for_another_user(other: Sealer, user: str) -> None:
    assert other.open(Sealer("apply-secret").seal("inv-123", "u1"), user) is None


@pytest.mark.parametrize("garbage", [None, 42, "", "v1.", "v1.!!!", "v1.AAAA", "v2.abc", "inv-123"])
def test_malformed_text_does_not_open(garbage: object) -> None:
    assert Sealer("apply-secret").open(garbage, "u1") is None


def test_the_key_comes_from_the_seal_variable_then_the_master_key() -> None:
    sealed = Sealer("seal").seal("inv", "u")
    sealer = Sealer.from_env({"LITELLM_RECONCILER_SEAL_KEY": "seal", "LITELLM_MASTER_KEY": "sk-m"})
    assert sealer.open(sealed, "u") == "inv"  # type: ignore[union-attr]
    sealer = Sealer.from_env({"LITELLM_MASTER_KEY": " sk-m\n"})
    assert sealer.open(Sealer("sk-m").seal("inv", "u"), "u") == "inv"  # type: ignore[union-attr]
    assert Sealer.from_env({"LITELLM_API_KEY": "read-only"}) is None
    assert "seal" not in repr(Sealer("seal"))
