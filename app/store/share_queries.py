"""Shares of a session with other users, and its secret share links."""
import time

import sqlalchemy as sa

from .base import StoreBase
from .outbox_queries import outbox_insert
from .tables import share_links, shares


def _active(table, now):
    return sa.and_(table.c.revoked_at.is_(None), sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now))


class ShareQueries(StoreBase):
    def add_share(self, share_id: str, session_id: str, user: str, access: str, created_by: str,
                  expires_at: float | None) -> dict:
        """A share, replacing the user's live one on the session (one per user);
        its `share.created` event in the same transaction (outbox_queries)."""
        now = time.time()
        with self._transaction() as connection:
            replaced = connection.execute(sa.select(shares.c.id).where(
                shares.c.session_id == session_id, shares.c.user == user, _active(shares, now))).scalars().all()
            for old in replaced:
                connection.execute(shares.update().where(shares.c.id == old).values(revoked_at=now))
                outbox_insert(connection, "share.revoked", session_id, data={"share": old, "grantee": user}, now=now)
            connection.execute(shares.insert().values(id=share_id, session_id=session_id, user=user, access=access,
                                                      created_by=created_by, created_at=now, expires_at=expires_at))
            outbox_insert(connection, "share.created", session_id, data={
                "share": share_id, "grantee": user, "access": access, "expires_at": expires_at}, now=now)
        return self.get_share(session_id, share_id) or {}

    def get_share(self, session_id: str, share_id: str) -> dict | None:
        row = self._execute(shares.select().where(shares.c.session_id == session_id, shares.c.id == share_id)) \
            .mappings().first()
        return dict(row) if row else None

    def list_shares(self, session_id: str, now: float) -> list[dict]:
        query = shares.select().where(shares.c.session_id == session_id, _active(shares, now)) \
            .order_by(shares.c.created_at)
        return [dict(row) for row in self._execute(query).mappings()]

    def revoke_share(self, session_id: str, share_id: str, now: float) -> bool:
        with self._transaction() as connection:
            grantee = connection.execute(sa.select(shares.c.user).where(
                shares.c.session_id == session_id, shares.c.id == share_id, shares.c.revoked_at.is_(None))).scalar()
            if grantee is None:
                return False
            connection.execute(shares.update().where(shares.c.id == share_id).values(revoked_at=now))
            outbox_insert(connection, "share.revoked", session_id, data={"share": share_id, "grantee": grantee},
                          now=now)
        return True

    def share_access(self, session_id: str, user: str, now: float) -> str | None:
        """`view`, `control`, or None: what `user` has of the session now."""
        return self._execute(sa.select(shares.c.access).where(
            shares.c.session_id == session_id, shares.c.user == user, _active(shares, now))
            .order_by(shares.c.created_at.desc()).limit(1)).scalar()

    def shared_with(self, user: str, now: float) -> dict[str, str]:
        """{session id: access} of the sessions shared with `user` now."""
        rows = self._execute(sa.select(shares.c.session_id, shares.c.access).where(
            shares.c.user == user, _active(shares, now)))
        return {session_id: access for session_id, access in rows}

    # Share links

    def add_link(self, link_id: str, session_id: str, secret_hash: str, created_by: str,
                 expires_at: float | None, limit: int) -> dict | None:
        """A link, unless the session has `limit` live ones (then None)."""
        now = time.time()
        count = self._execute(sa.select(sa.func.count()).select_from(share_links).where(
            share_links.c.session_id == session_id, _active(share_links, now))).scalar()
        if count >= limit:
            return None
        self._execute(share_links.insert().values(id=link_id, session_id=session_id, secret_hash=secret_hash,
                                                  created_by=created_by, created_at=now, expires_at=expires_at))
        row = self._execute(share_links.select().where(share_links.c.id == link_id)).mappings().first()
        return dict(row) if row else None

    def list_links(self, session_id: str, now: float) -> list[dict]:
        query = share_links.select().where(share_links.c.session_id == session_id, _active(share_links, now)) \
            .order_by(share_links.c.created_at)
        return [dict(row) for row in self._execute(query).mappings()]

    def revoke_link(self, session_id: str, link_id: str, now: float) -> bool:
        return self._execute(share_links.update().where(
            share_links.c.session_id == session_id, share_links.c.id == link_id,
            share_links.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount == 1

    def link_by_secret(self, secret_hash: str, now: float) -> dict | None:
        row = self._execute(share_links.select().where(share_links.c.secret_hash == secret_hash,
                                                       _active(share_links, now))).mappings().first()
        return dict(row) if row else None
