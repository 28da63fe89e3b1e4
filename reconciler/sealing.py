"""Invitation ids, sealed so that only the apply side can read them.

An onboarding link is ``<proxy>/ui/onboarding?invitation_id=<id>``: the id alone is
the credential (``/onboarding/get_token`` needs no key). The tool must remember each
id (there is no endpoint that lists invitations) and keeps it in the user's
``metadata``, which a read-only ``proxy_admin_viewer`` key can read, and that key is the
one the plan job of every pull request holds. So the id is stored sealed: AES-GCM
under a key that only the apply side has, bound to the user it belongs to (a sealed id
copied onto another user does not open).

The seal key is ``LITELLM_RECONCILER_SEAL_KEY`` when set, otherwise derived from
``LITELLM_MASTER_KEY``. Plans never need it: whatever a plan must know about an
invitation (that it exists, when it expires, whether acceptance was recorded) is stored
beside the sealed id in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEAL_KEY_VARIABLE = "LITELLM_RECONCILER_SEAL_KEY"
MASTER_KEY_VARIABLE = "LITELLM_MASTER_KEY"
#: Separates this derivation from any other use of the master key.
_CONTEXT = b"litellm-reconciler/invitation-seal/v1"
_PREFIX = "v1."
_NONCE_BYTES = 12


class Sealer:
    """Seals and opens invitation ids with one secret."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("the seal key is empty")
        self._aead = AESGCM(hmac.new(secret.encode("utf-8"), _CONTEXT, hashlib.sha256).digest())

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
        sealed = self._aead.encrypt(nonce, invitation_id.encode("utf-8"), user_id.encode("utf-8"))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: object, user_id: str) -> str | None:
        """The id, or None when ``sealed`` is malformed, was sealed with another key, or for another user."""
        if not isinstance(sealed, str) or not sealed.startswith(_PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :].encode("ascii"))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], user_id.encode("utf-8"))
        except (ValueError, InvalidTag):
            return None
        return plain.decode("utf-8", "replace")
