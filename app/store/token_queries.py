"""API token queries: add, find (on every request), list, revoke."""
import time

import sqlalchemy as sa

from . import database
from .base import StoreBase
from .models import TokenRecord
from .tables import tokens

# On every request's path: compiled once (see database.Prepared).
FIND_TOKEN = database.Prepared(tokens.select().where(
    tokens.c.token_hash == sa.bindparam("token_hash"), tokens.c.revoked_at.is_(None)))


class TokenQueries(StoreBase):
    def add_token(self, token_hash: str, user: str, role: str) -> int:
        return self._execute(tokens.insert().values(
            token_hash=token_hash, user=user, role=role, created_at=time.time())
            .returning(tokens.c.id)).scalar()

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._first(FIND_TOKEN, token_hash=token_hash)
        return TokenRecord.from_row(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._execute(tokens.select().order_by(tokens.c.id)).mappings()
        return [TokenRecord.from_row(r) for r in rows]

    def revoke_token(self, token_id: int) -> bool:
        result = self._execute(tokens.update().where(
            tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return result.rowcount == 1
