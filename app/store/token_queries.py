"""API token queries: add, find (on every request, cached by the caller),
list, revoke, and a coalesced last-use."""
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
    def add_token(self, token_hash: str, user: str, role: str, scopes: str | None = None,
                  expires_at: float | None = None, act_as: str | None = None, note: str | None = None,
                  created_by: str | None = None) -> int:
        return self._execute(tokens.insert().values(
            token_hash=token_hash, user=user, role=role, created_at=time.time(), scopes=scopes,
            expires_at=expires_at, act_as=act_as, note=note, created_by=created_by)
            .returning(tokens.c.id)).scalar()

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self._first(FIND_TOKEN, token_hash=token_hash)
        return TokenRecord.from_row(row) if row else None

    def get_token(self, token_id: int) -> TokenRecord | None:
        row = self._execute(tokens.select().where(tokens.c.id == token_id)).mappings().first()
        return TokenRecord.from_row(row) if row else None

    def list_tokens(self, user: str | None = None, include_revoked: bool = True) -> list[TokenRecord]:
        query = tokens.select().order_by(tokens.c.id)
        if user is not None:
            query = query.where(tokens.c.user == user)
        if not include_revoked:
            query = query.where(tokens.c.revoked_at.is_(None))
        return [TokenRecord.from_row(r) for r in self._execute(query).mappings()]

    def revoke_token(self, token_id: int) -> bool:
        result = self._execute(tokens.update().where(
            tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return result.rowcount == 1

    def token_used(self, token_id: int, at: float) -> None:
        self._execute(tokens.update().where(tokens.c.id == token_id).values(last_used=at))
