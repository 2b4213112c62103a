"""API tokens: random secrets shown once, stored only as SHA-256 hashes.

Tokens carry 256 bits of randomness, so a fast unsalted hash is enough:
nothing useful can be brute-forced from a leaked hash. The lookup is by hash;
the final comparison is constant-time so timing tells nothing either.
"""
import hashlib
import hmac
import secrets

from ...store import Principal, Store, TokenRecord
from ...store.models import ROLES


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, user: str, role: str = "user") -> tuple[int, str]:
        if role not in ROLES:
            raise ValueError("role must be one of %s" % ", ".join(ROLES))
        if not user or len(user) > 64:
            raise ValueError("user must be 1-64 characters")
        token = "cxs_" + secrets.token_urlsafe(32)
        token_id = self.store.add_token(hash_token(token), user, role)
        return token_id, token

    def authenticate(self, token: str) -> Principal | None:
        if not token or len(token) > 256:
            return None
        digest = hash_token(token)
        record = self.store.find_token(digest)
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        return Principal(record.user, record.role)

    def list(self) -> list[TokenRecord]:
        return self.store.list_tokens()

    def revoke(self, token_id: int) -> bool:
        return self.store.revoke_token(token_id)
