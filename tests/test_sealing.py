"""Sealed invitation ids: opened only with the apply side's key, only for their own user."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.sealing import Sealer, outdated


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


def legacy_seal(secret: str, invitation_id: str, user_id: str) -> str:
    """A seal as releases before scrypt made it: AES-GCM under HMAC-SHA256(secret, context)."""
    key = hmac.new(secret.encode(), b"litellm-reconciler/invitation-seal/v1", hashlib.sha256).digest()
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, invitation_id.encode(), user_id.encode())
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def test_new_seals_are_v2_and_old_ones_still_open() -> None:
    sealer = Sealer("apply-secret")
    assert sealer.seal("inv-1", "u1").startswith("v2.") and not outdated(sealer.seal("inv-1", "u1"))
    old = legacy_seal("apply-secret", "inv-1", "u1")
    assert outdated(old) and sealer.open(old, "u1") == "inv-1"
    assert Sealer("another").open(old, "u1") is None and sealer.open(old, "u2") is None


def test_the_v2_key_is_scrypt_of_the_secret_at_128_mib() -> None:
    # A guess of the master key against a sealed id (which a read-only key reads) costs one such derivation.
    expected = hashlib.scrypt(
        b"apply-secret", salt=b"litellm-reconciler/invitation-seal/v2", n=2**17, r=8, p=1, maxmem=2**28, dklen=32
    )
    sealed = Sealer("apply-secret").seal("inv-1", "u1")
    raw = base64.urlsafe_b64decode(sealed[3:])
    assert AESGCM(expected).decrypt(raw[:12], raw[12:], b"u1") == b"inv-1"
