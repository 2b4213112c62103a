"""API tokens: random secrets shown once, stored only as SHA-256 hashes, each
with its scopes (a subset of its role's), an optional expiry, and, with
act-as, a pattern of the users it may act for (docs/identity.md).

Tokens carry 256 bits of randomness, so a fast unsalted hash is enough:
nothing useful can be brute-forced from a leaked hash. The lookup is by hash;
the final comparison is constant-time so timing tells nothing either.

Every request presents one, so what a worker read of a token is trusted for
TOKEN_CACHE_SECONDS: a revocation (or a token made meanwhile) is seen by
every worker of every host within that bound, and the hot path reads the
store once per token and bound, not once per request. The last use is
written at most once a minute per worker.
"""
from collections.abc import Iterable
import fnmatch
import hashlib
import hmac
import secrets
import time

from ...store import Principal, Store, TokenRecord
from ...store.models import ROLES
from ..errors import Forbidden, InvalidTokenRequest, TokenExpired
from ..recent import MISSING, Recent
from .scopes import ROLE_SCOPES, SCOPES

LAST_USED_EVERY = 60.0      # s between writes of a token's last use, per worker

_rows: Recent[TokenRecord | None] = Recent()       # (store, digest) -> the token's row, or None: unknown
_written: dict[int, float] = {}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def scopes_of(record: TokenRecord) -> frozenset[str]:
    granted = ROLE_SCOPES.get(record.role, frozenset())
    return granted & frozenset(record.scopes.split()) if record.scopes is not None else granted


def may_act_for(record_pattern: str | None, user: str) -> bool:
    return bool(record_pattern) and fnmatch.fnmatchcase(user, record_pattern or "")


class TokenService:
    def __init__(self, store: Store, cache_seconds: float = 5.0, max_lifetime: float = 0,
                 clock=time.time) -> None:
        self.store = store
        self.cache_seconds, self.max_lifetime, self.clock = cache_seconds, max_lifetime, clock

    def create(self, user: str, role: str = "user", scopes: Iterable[str] | None = None,
               expires_at: float | None = None, act_as: str | None = None, note: str | None = None,
               created_by: str | None = None) -> tuple[int, str]:
        """Make a token; (its id, the secret), which is shown this once."""
        if role not in ROLES:
            raise InvalidTokenRequest("role must be one of %s" % ", ".join(ROLES))
        if not user or len(user) > 64:
            raise InvalidTokenRequest("user must be 1-64 characters")
        wanted = None if scopes is None else frozenset(scopes)
        if wanted is not None:
            unknown = sorted(wanted - frozenset(SCOPES))
            if unknown:
                raise InvalidTokenRequest("unknown scope(s) %s: the scopes are %s" % (", ".join(unknown), ", ".join(SCOPES)))
            beyond = sorted(wanted - ROLE_SCOPES[role])
            if beyond:
                raise InvalidTokenRequest("a %s's token cannot have %s" % (role, ", ".join(beyond)))
        effective = ROLE_SCOPES[role] if wanted is None else wanted
        if act_as is not None and (not act_as or len(act_as) > 64):
            raise InvalidTokenRequest("act_as must be a user-name pattern of 1-64 characters")
        if act_as and "act-as" not in effective:
            raise InvalidTokenRequest("act_as needs the act-as scope")
        if note is not None and len(note) > 200:
            raise InvalidTokenRequest("note must be at most 200 characters")
        token = "cxs_" + secrets.token_urlsafe(32)
        token_id = self.store.add_token(hash_token(token), user, role,
                                        scopes=None if wanted is None else " ".join(sorted(wanted)),
                                        expires_at=expires_at, act_as=act_as or None, note=note,
                                        created_by=created_by)
        return token_id, token

    def issue(self, principal: Principal, scopes: Iterable[str] | None, expires_in: float | None,
              note: str | None = None, user: str | None = None, act_as: str | None = None,
              role: str | None = None) -> tuple[int, str, TokenRecord]:
        """A token `principal` asks for over the API: for itself (an admin also for
        `user`), never with more than its own scopes, nor living past its own token."""
        now = self.clock()
        for_user = user or principal.user
        if for_user != principal.user and not (principal.role == "admin" and principal.may("admin:write")):
            raise Forbidden("only admins (admin:write) make tokens for other users")
        if role is not None and role != "user" and not (principal.role == "admin" and principal.may("admin:write")):
            raise Forbidden("only admins (admin:write) make admin tokens")
        role = role or (principal.role if for_user == principal.user else "user")
        mine = principal.scopes if principal.scopes is not None else ROLE_SCOPES[principal.role]
        wanted = frozenset(scopes) if scopes is not None else (mine & ROLE_SCOPES[role])
        beyond = sorted(wanted - mine)
        if beyond and for_user == principal.user:
            raise Forbidden("a token cannot have scopes its maker lacks: %s" % ", ".join(beyond))
        if expires_in is not None and expires_in <= 0:
            raise InvalidTokenRequest("expires_in must be a positive number of seconds")
        if self.max_lifetime and (expires_in is None or expires_in > self.max_lifetime):
            raise InvalidTokenRequest("expires_in must be at most %d s (TOKEN_MAX_LIFETIME)" % self.max_lifetime)
        expires_at = now + expires_in if expires_in else None
        parent = self.store.get_token(principal.token_id) if principal.token_id else None
        if parent is not None and parent.expires_at is not None and for_user == principal.user:
            if expires_at is None or expires_at > parent.expires_at:
                raise InvalidTokenRequest("a token cannot outlive the token that makes it (expires_in at most %d s)"
                                   % max(0, parent.expires_at - now))
        token_id, secret = self.create(for_user, role, wanted, expires_at, act_as, note,
                                       created_by=principal.via or principal.user)
        record = self.store.get_token(token_id)
        assert record is not None
        return token_id, secret, record

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token stands for; None if unknown or revoked; raises
        TokenExpired for an expired one."""
        if not token or len(token) > 256:
            return None
        digest = hash_token(token)
        now = self.clock()
        record = self._read(digest)
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        if record.expires_at is not None and now >= record.expires_at:
            raise TokenExpired("the token expired at %s" % time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime(record.expires_at)))
        self._note_use(record, now)
        return Principal(record.user, record.role, scopes=scopes_of(record), token_id=record.id)

    def act_as(self, principal: Principal, user: str) -> Principal:
        """The principal of `user`, as a token with act-as asks (X-Act-As); raises
        PermissionError naming why not."""
        if not principal.may("act-as"):
            raise PermissionError("X-Act-As needs a token with the act-as scope")
        record = self.store.get_token(principal.token_id) if principal.token_id else None
        if record is None or not may_act_for(record.act_as, user):
            raise PermissionError("this token may not act for %r (its act_as pattern: %r)"
                                  % (user, record.act_as if record else None))
        if not user or len(user) > 64:
            raise PermissionError("X-Act-As must name a user of 1-64 characters")
        scopes = (principal.scopes or frozenset()) & ROLE_SCOPES["user"]
        return Principal(user, "user", scopes=scopes, via=principal.user, token_id=principal.token_id)

    def _read(self, digest):
        key = (self.store.url, digest)
        record = _rows.get(key, self.cache_seconds)
        if record is MISSING:
            reading = _rows.reading()
            record = _rows.put(key, self.store.find_token(digest), reading)
        return record

    def _note_use(self, record, now):
        if now - _written.get(record.id, 0) < LAST_USED_EVERY:
            return
        _written[record.id] = now
        try:
            self.store.token_used(record.id, now)
        except Exception:       # a record of use, never a condition of it
            pass

    def list(self, user: str | None = None) -> list[TokenRecord]:
        return self.store.list_tokens(user)

    def revoke(self, token_id: int) -> bool:
        revoked = self.store.revoke_token(token_id)
        # At once in this process; elsewhere within TOKEN_CACHE_SECONDS.
        _rows.forget(lambda _key, record: record is not None and record.id == token_id)
        return revoked

    def get(self, token_id: int) -> TokenRecord | None:
        return self.store.get_token(token_id)


def forget_cached() -> None:
    """Drop what this process read of tokens (tests; a CLI that just revoked one)."""
    _rows.forget()

