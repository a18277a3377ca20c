"""Signed, expiring download links, as an object store presigns them (SPEC §1.3, §8).

The query string is the credential: `expires` (unix seconds) and `sign`, an HMAC-SHA256 over the
path and the expiry. Each answer signs fresh links, so an archive that waited too long must query
again rather than retry the old link.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from .config import SimulatorConfig

# Before the server has bound a port, links point here: rendering never needs a server, and a
# link from a pure render is recognisably not one to fetch.
UNBOUND_BASE = "http://127.0.0.1:0"

BAD_SIGN = "bad_sign"
EXPIRED = "expired"


class LinkSigner:
    """Signs links to `base` and checks the ones that come back."""

    __slots__ = ("_secret", "base", "ttl")

    def __init__(self, secret: bytes, ttl: float, base: str = UNBOUND_BASE) -> None:
        self._secret = secret
        self.ttl = ttl
        self.base = base  # set once the server knows the address it bound

    @classmethod
    def for_config(cls, config: SimulatorConfig) -> LinkSigner:
        """Derived from the seed and the API key, not drawn: the same config signs the same
        links, so a run with an injected clock replays byte for byte."""
        secret = hashlib.sha256(f"media-links\0{config.seed}\0{config.secret_key}".encode())
        return cls(secret.digest(), config.media_ttl)

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, path: str, now: float) -> str:
        """A fresh link to `path` (e.g. "/media/<folder>/<name>"), valid for `ttl` from `now`."""
        expires = int(now + self.ttl)
        return f"{self.base}{path}?expires={expires}&sign={self.sign(path, expires)}"

    def refusal(self, path: str, query: Mapping[str, str], now: float) -> str | None:
        """Why a request for `path` with this query is refused (BAD_SIGN or EXPIRED), or None.

        The signature is checked first, as an object store does: an altered expiry is a bad
        signature, not a longer validity."""
        expires_text, sign = query.get("expires", ""), query.get("sign", "")
        well_formed = expires_text.isascii() and expires_text.isdigit() and len(expires_text) < 20
        if not well_formed or not hmac.compare_digest(
            sign.encode(), self.sign(path, int(expires_text)).encode()
        ):
            return BAD_SIGN
        if now > int(expires_text):
            return EXPIRED
        return None

    def __repr__(self) -> str:
        return f"<LinkSigner base={self.base} ttl={self.ttl:g}>"
