"""Working together on one session: shares with other users (`view`: look at
it, its files, history and live events; `control`: also run commands,
interrupt, upload) and secret share links (a read-only live view for anyone
holding the link). Only the owner or an admin shares, ends, suspends or
resumes; sharing never raises anyone's rights: a grantee's commands are
checked with the grantee's own policy profile, and recorded as theirs.
"""
import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any
import uuid

from ...store import Principal
from ..errors import NotFound, TooManyLinks

if TYPE_CHECKING:
    from .base import SessionBase

OWNER, VIEW, CONTROL = "owner", "view", "control"
ACCESS = (VIEW, CONTROL)


def allows(granted: str, need: str) -> bool:
    """Whether a share of `granted` access lets its grantee do what `need`s."""
    return need == VIEW or (need == CONTROL and granted == CONTROL)


def link_secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def link_principal(store: Any, secret: str, now: float | None = None) -> Principal | None:
    """Who a share link's bearer is: that session's viewer, nothing more."""
    if not secret or len(secret) > 128:
        return None
    link = store.link_by_secret(link_secret_hash(secret), now or time.time())
    if link is None:
        return None
    return Principal("link:%s" % link["id"], "user", scopes=frozenset(("sessions:read",)),
                     link_session=link["session_id"])


class Sharing:
    def __init__(self, service: "SessionBase") -> None:
        self.service = service
        self.store = service.store

    def share(self, principal: Principal, session_id: str, user: str, access: str,
              expires_in: float | None) -> dict[str, Any]:
        record = self.service.get_for(principal, session_id, OWNER)
        if user == record.user:
            raise NotFound("session %s is %s's own: there is nothing to share with them" % (session_id, user))
        expires_at = time.time() + expires_in if expires_in else None
        return self.service._store_call(self.store.add_share, str(uuid.uuid4()), session_id, user, access,
                                        principal.who, expires_at)

    def shares(self, principal: Principal, session_id: str) -> list[dict[str, Any]]:
        self.service.get_for(principal, session_id, OWNER)
        return self.service._store_call(self.store.list_shares, session_id, time.time())

    def unshare(self, principal: Principal, session_id: str, share_id: str) -> None:
        self.service.get_for(principal, session_id, OWNER)
        if not self.service._store_call(self.store.revoke_share, session_id, share_id, time.time()):
            raise NotFound("session %s has no live share %s" % (session_id, share_id))

    def link(self, principal: Principal, session_id: str, expires_in: float | None, base_url: str) -> dict[str, Any]:
        """A new share link: {id, url, expires_at}; its secret is in the URL's
        fragment (never sent to a server, never in a log) and shown this once."""
        self.service.get_for(principal, session_id, OWNER)
        secret = secrets.token_urlsafe(24)
        limit = self.service.settings["SHARE_LINKS_PER_SESSION"]
        made = self.service._store_call(self.store.add_link, str(uuid.uuid4()), session_id, link_secret_hash(secret),
                                        principal.who, time.time() + expires_in if expires_in else None, limit)
        if made is None:
            raise TooManyLinks("session %s has %d live share links (SHARE_LINKS_PER_SESSION): revoke one"
                               % (session_id, limit))
        return dict(link_view(made), url="%s/shared/%s#%s" % (base_url.rstrip("/"), session_id, secret))

    def links(self, principal: Principal, session_id: str) -> list[dict[str, Any]]:
        self.service.get_for(principal, session_id, OWNER)
        return [link_view(link) for link in self.service._store_call(self.store.list_links, session_id, time.time())]

    def unlink(self, principal: Principal, session_id: str, link_id: str) -> None:
        self.service.get_for(principal, session_id, OWNER)
        if not self.service._store_call(self.store.revoke_link, session_id, link_id, time.time()):
            raise NotFound("session %s has no live share link %s" % (session_id, link_id))


def link_view(link: dict[str, Any]) -> dict[str, Any]:
    return {key: link[key] for key in ("id", "session_id", "created_by", "created_at", "expires_at")}


def access_of(principal: Principal, owner: str, shared: dict[str, str], session_id: str) -> str:
    """What `principal` has of a session it can see: owner (its own, or an admin), view or control."""
    if owner == principal.user or principal.is_admin:
        return OWNER
    return shared.get(session_id, VIEW)

