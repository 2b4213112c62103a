"""The portal's own OIDC tokens: who a signed token from OIDC_ISSUER stands for.

PyJWT checks the signature, `iss` and `aud`; the time claims are checked here
against the injected clock, because PyJWT reads the wall clock itself. Only
RS256 and ES256 are accepted, and a token's `alg` must be its key's, so
neither `alg: none` nor an HMAC keyed with a public key can pass.

The issuer's keys (JWKS) are cached in-process, one dict from `kid` to key.
A token naming an unknown `kid` makes the keys be fetched again, but never
within REFETCH_INTERVAL of the last try (keys or discovery document): a flood
of made-up kids costs the issuer at most one request per 30 s per worker
process. Keys are refetched when older than MAX_KEY_AGE; while the issuer is
down, a key already cached goes on being used.
"""
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import json
import logging
import math
import threading
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
import requests

from .scopes import SCOPES

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
REFETCH_INTERVAL = 30.0
MAX_KEY_AGE = 3600.0
FETCH_TIMEOUT = 5.0
# Real JWKS and discovery documents are a few kB; a bound keeps a wrong URL from filling memory.
MAX_DOCUMENT_BYTES = 1 << 20
# gunicorn refuses longer header lines anyway; parsing nothing longer bounds the work of a junk token.
MAX_TOKEN_LENGTH = 16384
MAX_USER_LENGTH = 64
LOOPBACK = ("localhost", "127.0.0.1", "::1")
DISCOVERY_PATH = "/.well-known/openid-configuration"


class OidcError(Exception):
    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class OidcRejected(OidcError):
    """The token is not good: `code` is token_expired or unauthorized."""


class OidcUnavailable(OidcError):
    """The issuer could not be reached and the key needed is not cached: try again after `retry_after` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, "oidc_unavailable")
        self.retry_after = retry_after


@dataclass(frozen=True)
class OidcIdentity:
    user: str
    role: Literal["admin", "user"]
    # None: the token names none of the service's scopes, so its role's apply.
    scopes: frozenset[str] | None
    expires_at: float | None


def checked_url(url: str, setting: str) -> str:
    """`url` if it is https, or http on a loopback host (a test's issuer); else ValueError."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host in LOOPBACK:
        return url
    raise ValueError("%s must be an https URL (http only on a loopback host), not %r" % (setting, url))


def fetch_json(url: str) -> Any:
    """GET `url` as JSON: no redirects (one could lead off https), a bounded body and time."""
    deadline = time.monotonic() + FETCH_TIMEOUT
    with requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True,
                      headers={"Accept": "application/json"}) as response:
        if response.status_code != 200:
            raise ValueError("HTTP %d" % response.status_code)
        body = bytearray()
        for chunk in response.iter_content(65536):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError("larger than %d bytes" % MAX_DOCUMENT_BYTES)
            if time.monotonic() > deadline:
                raise ValueError("not read within %g s" % FETCH_TIMEOUT)
    return json.loads(body)


class OidcVerifier:
    """Tokens of one issuer for one audience, settings as in config.py (OIDC_*)."""

    def __init__(self, settings: Mapping[str, Any], clock: Callable[[], float] = time.time,
                 fetch: Callable[[str], Any] | None = None) -> None:
        self.issuer = checked_url(settings.get("OIDC_ISSUER") or "", "OIDC_ISSUER")
        self.audience = settings.get("OIDC_AUDIENCE") or ""
        if not self.audience:
            raise ValueError("OIDC_AUDIENCE is required with OIDC_ISSUER")
        jwks_url = settings.get("OIDC_JWKS_URL") or ""
        self.jwks_url = checked_url(jwks_url, "OIDC_JWKS_URL") if jwks_url else None
        self.user_claim = settings.get("OIDC_USER_CLAIM") or "preferred_username"
        self.roles_claim = settings.get("OIDC_ROLES_CLAIM") or ""
        self.admin_role = settings.get("OIDC_ADMIN_ROLE") or ""
        self.scopes_claim = settings.get("OIDC_SCOPES_CLAIM") or "scope"
        self.leeway = float(settings.get("OIDC_LEEWAY", 30.0))
        self.clock = clock
        self._fetch = fetch or fetch_json
        # (keys by kid, when fetched): one tuple, swapped whole, so readers need no lock.
        self._keys: tuple[dict[str, jwt.PyJWK], float] | None = None
        self._discovered: tuple[str, float] | None = None
        self._tried_at: float | None = None
        self._failure: OidcError | None = None
        self._lock = threading.Lock()

    def identify(self, token: str) -> OidcIdentity:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise OidcRejected("the token is empty or longer than %d characters" % MAX_TOKEN_LENGTH)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise OidcRejected("the token is not a JWT (header.payload.signature)") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise OidcRejected("the token's algorithm must be one of %s" % ", ".join(ALGORITHMS))
        if not isinstance(kid, str) or not kid:
            raise OidcRejected("the token's header names no key (kid)")
        key = self._key(kid)
        if key.algorithm_name != alg:
            raise OidcRejected("the token's algorithm is not its key's (%s)" % key.algorithm_name)
        claims = self._decode(token, key)
        self._check_times(claims)
        return OidcIdentity(self._user(claims), self._role(claims), self._scopes(claims),
                            float(claims["exp"]))

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        options: Any = {"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False,
                        "verify_iat": False}
        try:
            return jwt.decode(token, key, algorithms=[key.algorithm_name], audience=self.audience,
                              issuer=self.issuer, options=options)
        except jwt.InvalidSignatureError:
            raise OidcRejected("the token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise OidcRejected("the token's audience (aud) does not include %s" % self.audience) from None
        except jwt.InvalidIssuerError:
            raise OidcRejected("the token's issuer (iss) is not %s" % self.issuer) from None
        except jwt.MissingRequiredClaimError as err:
            raise OidcRejected("the token has no %s claim" % err.claim) from None
        except jwt.InvalidTokenError as err:
            # PyJWT's own messages name the fault, never the token.
            raise OidcRejected("the token is invalid: %s" % err) from None

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock()
        times = {}
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OidcRejected("the token's %s is not a number of seconds" % name)
            times[name] = float(value)
        if times["exp"] <= now - self.leeway:
            raise OidcRejected("the token expired %d s ago (exp, %g s leeway)" % (now - times["exp"], self.leeway),
                               "token_expired")
        if "nbf" in times and times["nbf"] > now + self.leeway:
            raise OidcRejected("the token is not valid for another %d s (nbf)" % (times["nbf"] - now))
        if "iat" in times and times["iat"] > now + self.leeway:
            raise OidcRejected("the token was issued %d s in the future (iat)" % (times["iat"] - now))

    def _user(self, claims: Mapping[str, Any]) -> str:
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user or len(user) > MAX_USER_LENGTH:
            raise OidcRejected("the token's %s claim must be a name of 1-%d characters"
                               % (self.user_claim, MAX_USER_LENGTH))
        if not user.isprintable():
            # The name goes into log lines and audit records: no line breaks or escapes.
            raise OidcRejected("the token's %s claim has unprintable characters" % self.user_claim)
        return user

    def _role(self, claims: Mapping[str, Any]) -> Literal["admin", "user"]:
        if not self.roles_claim or not self.admin_role:
            return "user"
        roles = _claim(claims, self.roles_claim)
        if isinstance(roles, str):
            roles = [roles]
        if isinstance(roles, list) and self.admin_role in roles:
            return "admin"
        return "user"

    def _scopes(self, claims: Mapping[str, Any]) -> frozenset[str] | None:
        value = _claim(claims, self.scopes_claim)
        if isinstance(value, str):
            names = value.split()
        elif isinstance(value, list):
            names = [name for name in value if isinstance(name, str)]
        else:
            return None
        return frozenset(name for name in names if name in SCOPES) or None

    def _key(self, kid: str) -> jwt.PyJWK:
        cached = self._keys
        key = cached[0].get(kid) if cached else None
        if key is not None and cached and self.clock() - cached[1] < MAX_KEY_AGE:
            return key
        # A stale key is still good while another thread refreshes: only a missing key waits.
        if key is None:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            return key
        try:
            return self._key_locked(kid)
        finally:
            self._lock.release()

    def _key_locked(self, kid: str) -> jwt.PyJWK:
        now = self.clock()
        cached = self._keys
        key = cached[0].get(kid) if cached else None
        if key is not None and cached and now - cached[1] < MAX_KEY_AGE:
            return key  # another thread fetched it meanwhile
        since = None if self._tried_at is None else now - self._tried_at
        if since is not None and since < REFETCH_INTERVAL:
            if key is not None:
                return key
            if self._failure is not None:
                raise self._again(self._failure, REFETCH_INTERVAL - since)
            raise OidcRejected("no key of the issuer has the token's kid (the keys were fetched %d s ago; "
                               "an unknown kid is looked up at most every %g s)" % (since, REFETCH_INTERVAL))
        self._tried_at = now
        try:
            keys = self._fetch_keys(now)
        except OidcError as err:
            self._failure = err
            log.warning("OIDC keys of %s not fetched: %s", self.issuer, err.message)
            if key is not None:
                return key
            raise
        self._failure = None
        self._keys = (keys, now)
        key = keys.get(kid)
        if key is None:
            raise OidcRejected("no key of the issuer has the token's kid")
        return key

    @staticmethod
    def _again(failure: OidcError, retry_after: float) -> OidcError:
        if isinstance(failure, OidcUnavailable):
            return OidcUnavailable(failure.message, max(1.0, retry_after))
        return OidcRejected(failure.message, failure.code)

    def _fetch_keys(self, now: float) -> dict[str, jwt.PyJWK]:
        url = self.jwks_url or self._discover(now)
        document = self._get(url, "keys (JWKS)")
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise OidcUnavailable("the issuer's JWKS at %s holds no list of keys" % url, REFETCH_INTERVAL)
        keys = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use") == "enc":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key of a kind this service does not take: tokens signed with it fail as unknown
            if key.algorithm_name in ALGORITHMS:
                keys[entry["kid"]] = key
        return keys

    def _discover(self, now: float) -> str:
        if self._discovered and now - self._discovered[1] < MAX_KEY_AGE:
            return self._discovered[0]
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            document = self._get(url, "discovery document")
        except OidcUnavailable:
            if self._discovered:
                return self._discovered[0]  # the last known place of the keys beats none
            raise
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            raise OidcRejected("the discovery document at %s is of another issuer than OIDC_ISSUER %s"
                               % (url, self.issuer))
        try:
            jwks_url = checked_url(document.get("jwks_uri") or "", "the discovered jwks_uri")
        except ValueError as err:
            raise OidcRejected(str(err)) from None
        self._discovered = (jwks_url, now)
        return jwks_url

    def _get(self, url: str, what: str) -> Any:
        try:
            return self._fetch(url)
        except Exception as err:  # any failure of the network or the document is the issuer's
            reason = ("%s: %s" % (type(err).__name__, err))[:300]
            raise OidcUnavailable("the issuer's %s could not be fetched from %s (%s)" % (what, url, reason),
                                  REFETCH_INTERVAL) from None


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (Keycloak's realm_access.roles);
    the whole name first, as Auth0's namespaced claims are URLs with dots."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
