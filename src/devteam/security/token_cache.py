"""Access tokens verified lately, so a caller's next requests skip the signature check.

A client sends the same access token with every request until it refreshes it;
checking its signature and claims again each time costs more than the rest of
authentication. `VerifiedTokens` keeps the claims of tokens it verified, keyed by
the whole token string (which only its signer can produce), for at most `ttl_s`
and never past the moment the token expires (with the codec's leeway): after
that the token is checked in full again, which refuses it as expired.

Only the signature and the claims are remembered, never whether the session is
alive: every request still asks the `SessionCache` (or the database), so a
revoked session is refused as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from devteam.security.tokens import TokenClaims, TokenCodec, TokenType

TTL_S = 60.0
"""How long a verified token is remembered (shorter when it expires sooner)."""
MAX_ENTRIES = 10_000
"""Beyond this many tokens the oldest entries are dropped first."""


class VerifiedTokens:
    """`TokenCodec.decode` of access tokens, remembering the ones that passed."""

    def __init__(
        self,
        codec: TokenCodec,
        *,
        ttl_s: float = TTL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.codec = codec
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, TokenClaims]] = {}

    def access_claims(self, token: str) -> TokenClaims:
        """The claims of a valid access token; `TokenExpired` or `Unauthorized` otherwise."""
        now = self._clock()
        entry = self._entries.get(token)
        if entry is not None:
            until, claims = entry
            if now < until:
                return claims
            del self._entries[token]
        claims = self.codec.decode(token, TokenType.ACCESS)
        # A token is valid while now < exp + leeway (PyJWT's rule): not a moment longer here.
        expires = claims.expires_at.timestamp() + self.codec.config.leeway_s
        if self.ttl_s > 0:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[token] = (min(now + self.ttl_s, expires), claims)
        return claims

    def clear(self) -> None:
        self._entries.clear()
