"""Invitation ids, sealed so that only the apply side can read them.

An onboarding link is ``<proxy>/ui/onboarding?invitation_id=<id>``: the id alone is
the credential (``/onboarding/get_token`` needs no key). The tool must remember each
id (there is no endpoint that lists invitations) and keeps it in the user's
``metadata``, which a read-only ``proxy_admin_viewer`` key can read, and that key is the
one the plan job of every pull request holds. So the id is stored sealed: AES-GCM
under a key that only the apply side has, bound to the user it belongs to (a sealed id
copied onto another user does not open).

The seal key is derived from ``LITELLM_RECONCILER_SEAL_KEY`` when set, otherwise from
``LITELLM_MASTER_KEY``. Whoever holds the read-only key can read every sealed id, and so
test guesses of the secret offline against them: the derivation is scrypt (128 MiB and
about a third of a second per guess, once per run), so that a guess costs what a
password guess costs. Seals of earlier releases (``v1.``, a fast HMAC derivation) are
still opened; apply seals their ids again as ``v2.`` (``reseal_invitation``).

Plans never need the key: whatever a plan must know about an invitation (that it exists,
when it expires, whether acceptance was recorded, which derivation sealed it) is stored
beside the sealed id in the clear.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SEAL_KEY_VARIABLE = "LITELLM_RECONCILER_SEAL_KEY"
MASTER_KEY_VARIABLE = "LITELLM_MASTER_KEY"
#: Separates these derivations from any other use of the secret (scrypt's salt, v1's HMAC message).
_CONTEXT_V1 = b"litellm-reconciler/invitation-seal/v1"
_CONTEXT_V2 = b"litellm-reconciler/invitation-seal/v2"
#: scrypt's cost: N = 2**17, r = 8 (128 MiB), p = 1, as OWASP advises for password storage.
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
V1, V2 = "v1.", "v2."
_NONCE_BYTES = 12
#: What to do about a seal that the key at hand does not open.
UNOPENABLE_HINT = (
    "sealed under another key: run with the LITELLM_RECONCILER_SEAL_KEY (or master key) that sealed it, "
    "or let it expire (apply then invites again)"
)


@functools.lru_cache(maxsize=8)
def _v2_key(secret: str) -> bytes:
    """The v2 key of ``secret``: the one expensive step, kept for the process (one derivation per run)."""
    return Scrypt(salt=_CONTEXT_V2, length=32, **_SCRYPT).derive(secret.encode("utf-8"))


class Sealer:
    """Seals ids with one secret (v2); opens what it or an earlier release sealed with it."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("the seal key is empty")
        self._v1 = AESGCM(hmac.new(secret.encode("utf-8"), _CONTEXT_V1, hashlib.sha256).digest())
        self._v2 = AESGCM(_v2_key(secret))

    def __repr__(self) -> str:
        return "Sealer(<secret>)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Sealer | None:
        """The apply side's sealer, or None where no secret is available (a plan job's read-only key)."""
        for name in (SEAL_KEY_VARIABLE, MASTER_KEY_VARIABLE):
            value = (environ.get(name) or "").strip()
            if value:
                return cls(value)
        return None

    def seal(self, invitation_id: str, user_id: str) -> str:
        """An opaque text that holds ``invitation_id`` for ``user_id``; a fresh nonce every time."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._v2.encrypt(nonce, invitation_id.encode("utf-8"), user_id.encode("utf-8"))
        return V2 + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: object, user_id: str) -> str | None:
        """The id, or None when ``sealed`` is malformed, was sealed with another key, or for another user."""
        if not isinstance(sealed, str):
            return None
        aead = self._v2 if sealed.startswith(V2) else self._v1 if sealed.startswith(V1) else None
        if aead is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(V2) :].encode("ascii"))
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], user_id.encode("utf-8"))
        except (ValueError, InvalidTag):
            return None
        return plain.decode("utf-8", "replace")


def outdated(sealed: str | None) -> bool:
    """Sealed by an earlier release (a cheap derivation): apply seals it again. Readable without the key."""
    return sealed is not None and sealed.startswith(V1)
