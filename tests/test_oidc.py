"""The portal's OIDC tokens (issue 35), verified against a real issuer on
loopback (tests/oidc_issuer.py): its discovery document and JWKS served over
HTTP, its keys rotated, its requests counted. Time is an injected clock."""
import base64
import json
import threading
import uuid

import pytest

from app.services.identity.oidc import (
    MAX_KEY_AGE,
    REFETCH_INTERVAL,
    OidcIdentity,
    OidcRejected,
    OidcUnavailable,
    OidcVerifier,
)

from .oidc_issuer import OidcIssuer, b64json

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def issuer():
    with OidcIssuer() as issuer:
        yield issuer


@pytest.fixture
def clock():
    return Clock()


def settings(issuer_url, **overrides):
    values = {"OIDC_ISSUER": issuer_url, "OIDC_AUDIENCE": "cxs", "OIDC_JWKS_URL": "",
              "OIDC_USER_CLAIM": "preferred_username", "OIDC_ROLES_CLAIM": "", "OIDC_ADMIN_ROLE": "",
              "OIDC_SCOPES_CLAIM": "scope", "OIDC_LEEWAY": 30.0}
    values.update(overrides)
    return values


@pytest.fixture
def make_verifier(issuer, clock):
    def make(**overrides):
        return OidcVerifier(settings(issuer.url, **overrides), clock=clock)
    return make


@pytest.fixture
def verifier(make_verifier):
    return make_verifier()


def refused(verifier, token, code="unauthorized", says=""):
    with pytest.raises(OidcRejected) as caught:
        verifier.identify(token)
    err = caught.value
    assert err.code == code, err.message
    assert says in err.message
    # Neither the token nor any of its parts is echoed back.
    assert all(part not in err.message for part in token.split(".") if len(part) > 8)
    return err.message


# -- accepted


def test_a_valid_rs256_token_is_its_user_with_the_user_role(issuer, clock, verifier):
    token = issuer.token(issuer.claims(clock()))
    assert verifier.identify(token) == OidcIdentity("alice", "user", None, T0 + 300)
    assert issuer.requests == {"discovery": 1, "jwks": 1}
    verifier.identify(token)
    assert issuer.requests == {"discovery": 1, "jwks": 1}, "keys are cached"


def test_a_valid_es256_token_is_accepted(issuer, clock, verifier):
    token = issuer.token(issuer.claims(clock(), preferred_username="bob"), kid=issuer.ec_kid)
    assert verifier.identify(token).user == "bob"


def test_the_user_claim_is_configurable(issuer, clock, make_verifier):
    token = issuer.token(issuer.claims(clock(), email="carol@example.org"))
    assert make_verifier(OIDC_USER_CLAIM="email").identify(token).user == "carol@example.org"


@pytest.mark.parametrize("claim, claims", [
    ("roles", {"roles": ["staff", "cxs-admin"]}),
    ("roles", {"roles": "cxs-admin"}),
    ("realm_access.roles", {"realm_access": {"roles": ["offline_access", "cxs-admin"]}}),  # Keycloak
    ("https://portal.example.org/roles", {"https://portal.example.org/roles": ["cxs-admin"]}),  # Auth0
])
def test_the_admin_role_comes_from_the_roles_claim_nested_or_not(issuer, clock, make_verifier, claim, claims):
    verifier = make_verifier(OIDC_ROLES_CLAIM=claim, OIDC_ADMIN_ROLE="cxs-admin")
    assert verifier.identify(issuer.token(issuer.claims(clock(), **claims))).role == "admin"
    other = {name: value for name, value in claims.items()}
    other = json.loads(json.dumps(other).replace("cxs-admin", "cxs-user"))
    assert verifier.identify(issuer.token(issuer.claims(clock(), **other))).role == "user"
    assert verifier.identify(issuer.token(issuer.claims(clock()))).role == "user"


def test_without_a_roles_claim_setting_everyone_is_a_user(issuer, clock, make_verifier):
    token = issuer.token(issuer.claims(clock(), roles=["cxs-admin"]))
    assert make_verifier(OIDC_ADMIN_ROLE="cxs-admin").identify(token).role == "user"


@pytest.mark.parametrize("claim, value, scopes", [
    ("scope", "openid profile sessions:read files:read email", {"sessions:read", "files:read"}),
    ("scope", "openid profile", None),
    ("scope", "", None),
    ("scp", ["sessions:command", "offline_access", "act-as", 7], {"sessions:command", "act-as"}),
    ("permissions", ["admin:read", "SESSIONS:READ"], {"admin:read"}),
])
def test_scopes_are_those_of_the_service_in_the_claim(issuer, clock, make_verifier, claim, value, scopes):
    verifier = make_verifier(OIDC_SCOPES_CLAIM=claim)
    identity = verifier.identify(issuer.token(issuer.claims(clock(), **{claim: value})))
    assert identity.scopes == (frozenset(scopes) if scopes else None)


def test_no_scopes_claim_means_the_roles_scopes(issuer, clock, verifier):
    assert verifier.identify(issuer.token(issuer.claims(clock()))).scopes is None


# -- time


def test_an_expired_token_is_token_expired_and_within_the_leeway_still_good(issuer, clock, verifier):
    token = issuer.token(issuer.claims(clock()))
    clock.advance(300 + 29)
    assert verifier.identify(token).user == "alice"
    clock.advance(1)
    assert "expired" in refused(verifier, token, code="token_expired")


def test_a_token_not_yet_valid_is_refused_until_nbf_less_the_leeway(issuer, clock, verifier):
    token = issuer.token(issuer.claims(clock(), nbf=int(clock()) + 100, exp=int(clock()) + 600))
    assert "nbf" in refused(verifier, token)
    clock.advance(100 - 30)
    assert verifier.identify(token).user == "alice"


def test_a_token_issued_in_the_future_is_refused(issuer, clock, verifier):
    refused(verifier, issuer.token(issuer.claims(clock(), iat=int(clock()) + 120)), says="iat")
    assert verifier.identify(issuer.token(issuer.claims(clock(), iat=int(clock()) + 20))).user == "alice"


@pytest.mark.parametrize("claims, says", [
    ({"exp": None}, "exp"),
    ({"exp": "tomorrow"}, "exp"),
    ({"nbf": True}, "nbf"),
])
def test_a_token_without_a_numeric_expiry_is_refused(issuer, clock, verifier, claims, says):
    refused(verifier, issuer.token(issuer.claims(clock(), **claims)), says=says)


# -- issuer and audience


def test_a_token_for_another_audience_is_refused(issuer, clock, verifier):
    refused(verifier, issuer.token(issuer.claims(clock(), aud="other-app")), says="audience")
    refused(verifier, issuer.token(issuer.claims(clock(), aud=None)), says="aud")
    assert verifier.identify(issuer.token(issuer.claims(clock(), aud=["account", "cxs"]))).user == "alice"


def test_a_token_of_another_issuer_is_refused(issuer, clock, verifier):
    with OidcIssuer() as other:
        # Signed by this issuer's own key, but naming another issuer.
        refused(verifier, issuer.token(issuer.claims(clock(), iss=other.url)), says="issuer")
        # Another issuer's token: its kid is none of ours.
        refused(verifier, other.token(other.claims(clock())), says="kid")
        assert other.requests == {"discovery": 0, "jwks": 0}


# -- keys


def test_an_unknown_kid_is_refused_and_after_rotation_the_new_key_is_fetched_once(issuer, clock, verifier):
    assert verifier.identify(issuer.token(issuer.claims(clock()))).user == "alice"
    assert issuer.requests["jwks"] == 1
    stranger = OidcIssuer()
    try:
        stranger.add_key("RS256", kid="made-up")
        refused(verifier, stranger.token(stranger.claims(clock(), iss=issuer.url), kid="made-up"), says="kid")
    finally:
        stranger.close()
    assert issuer.requests["jwks"] == 1, "within the window an unknown kid is refused without a fetch"

    old = issuer.rsa_kid
    new = issuer.rotate(old)
    refused(verifier, issuer.token(issuer.claims(clock()), kid=new), says="kid")
    assert issuer.requests["jwks"] == 1, "not even a new kid is looked up within the window"
    clock.advance(REFETCH_INTERVAL)
    for _ in range(5):
        assert verifier.identify(issuer.token(issuer.claims(clock()), kid=new)).user == "alice"
    assert issuer.requests == {"discovery": 1, "jwks": 2}, "the new kid is fetched once"
    # The dropped key went from the cache with that fetch.
    refused(verifier, issuer.token(issuer.claims(clock()), kid=old), says="kid")
    assert issuer.requests == {"discovery": 1, "jwks": 2}


def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once_per_window(issuer, clock, verifier):
    claims = issuer.claims(clock())
    forged = ["%s.%s.%s" % (b64json({"alg": "RS256", "kid": uuid.uuid4().hex}), b64json(claims), "c2ln")
              for _ in range(100)]
    errors = []

    def flood(tokens):
        for token in tokens:
            try:
                verifier.identify(token)
            except OidcRejected as err:
                errors.append(err)

    threads = [threading.Thread(target=flood, args=(forged[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 100
    assert issuer.requests == {"discovery": 1, "jwks": 1}
    clock.advance(REFETCH_INTERVAL - 1)
    flood(forged)
    assert issuer.requests["jwks"] == 1
    clock.advance(1)
    flood(forged)
    assert issuer.requests["jwks"] == 2, "one fetch per window, however many kids"
    assert verifier.identify(issuer.token(issuer.claims(clock()))).user == "alice"
    assert issuer.requests["jwks"] == 2


def test_threads_needing_a_new_key_wait_for_the_one_fetch(issuer, clock, verifier):
    token = issuer.token(issuer.claims(clock()))
    issuer.release.clear()
    arrived, results = [], []
    condition = threading.Condition()

    def present():
        with condition:
            arrived.append(True)
            condition.notify_all()
        try:
            results.append(verifier.identify(token).user)
        except (OidcRejected, OidcUnavailable) as err:
            results.append(err.message)

    threads = [threading.Thread(target=present) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert issuer.holding.wait(10), "the first fetch reached the issuer"
    with condition:
        assert condition.wait_for(lambda: len(arrived) == 8, 10)
    issuer.release.set()
    for thread in threads:
        thread.join()
    assert results == ["alice"] * 8
    assert issuer.requests == {"discovery": 1, "jwks": 1}


def test_a_stale_key_serves_while_another_thread_refreshes(issuer, clock, verifier):
    verifier.identify(issuer.token(issuer.claims(clock())))
    clock.advance(MAX_KEY_AGE)
    issuer.release.clear()
    refresher = threading.Thread(target=verifier.identify, args=(issuer.token(issuer.claims(clock())),))
    refresher.start()
    try:
        assert issuer.holding.wait(10)
        assert verifier.identify(issuer.token(issuer.claims(clock()), kid=issuer.ec_kid)).user == "alice"
        assert issuer.holding.is_set(), "answered while the refresh was still waiting on the issuer"
    finally:
        issuer.release.set()
        refresher.join()
    assert issuer.requests == {"discovery": 2, "jwks": 2}


def test_keys_older_than_an_hour_are_refetched(issuer, clock, verifier):
    verifier.identify(issuer.token(issuer.claims(clock())))
    clock.advance(MAX_KEY_AGE - 1)
    verifier.identify(issuer.token(issuer.claims(clock())))
    assert issuer.requests == {"discovery": 1, "jwks": 1}
    clock.advance(1)
    verifier.identify(issuer.token(issuer.claims(clock())))
    assert issuer.requests == {"discovery": 2, "jwks": 2}


def test_a_configured_jwks_url_needs_no_discovery(issuer, clock, make_verifier):
    verifier = make_verifier(OIDC_JWKS_URL=issuer.jwks_url)
    assert verifier.identify(issuer.token(issuer.claims(clock()))).user == "alice"
    assert issuer.requests == {"discovery": 0, "jwks": 1}


def test_a_token_whose_alg_is_not_its_keys_is_refused(issuer, clock, verifier):
    # Signed with the RSA key but naming the EC key's kid.
    token = issuer.token(issuer.claims(clock()), headers={"kid": issuer.ec_kid})
    refused(verifier, token, says="algorithm")


# -- forgeries


def test_alg_none_is_refused_without_a_fetch(issuer, clock, verifier):
    refused(verifier, issuer.unsigned(issuer.claims(clock()), issuer.rsa_kid), says="algorithm")
    assert issuer.requests == {"discovery": 0, "jwks": 0}


def test_hs256_keyed_with_the_public_key_is_refused(issuer, clock, verifier):
    verifier.identify(issuer.token(issuer.claims(clock())))  # the public key is cached
    for kid in (issuer.rsa_kid, issuer.ec_kid):
        refused(verifier, issuer.hs256_with_public_key(issuer.claims(clock()), kid), says="algorithm")


def test_a_tampered_payload_is_refused(issuer, clock, verifier):
    header, _, signature = issuer.token(issuer.claims(clock())).split(".")
    payload = b64json(issuer.claims(clock(), preferred_username="admin"))
    refused(verifier, "%s.%s.%s" % (header, payload, signature), says="signature")
    ec_header, _, ec_signature = issuer.token(issuer.claims(clock()), kid=issuer.ec_kid).split(".")
    refused(verifier, "%s.%s.%s" % (ec_header, payload, ec_signature), says="signature")


@pytest.mark.parametrize("token", [
    "", "not-a-jwt", "a.b.c", "x" * 20000,
    "%s.%s.c2ln" % (b64json({"alg": "RS256", "kid": ["a"]}), b64json({})),
    "%s.%s.c2ln" % (b64json({"alg": "RS256"}), b64json({})),
    base64.urlsafe_b64encode(b"[1,2]").decode() + ".e30.c2ln",
])
def test_malformed_tokens_are_refused(verifier, token):
    with pytest.raises(OidcRejected) as caught:
        verifier.identify(token)
    assert caught.value.code == "unauthorized"


@pytest.mark.parametrize("user", [None, "", "x" * 65, 42, ["alice"], "alice\nuser=root"])
def test_a_missing_or_bad_user_claim_is_refused(issuer, clock, verifier, user):
    refused(verifier, issuer.token(issuer.claims(clock(), preferred_username=user)), says="preferred_username")


def test_a_64_character_user_is_accepted(issuer, clock, verifier):
    assert verifier.identify(issuer.token(issuer.claims(clock(), preferred_username="u" * 64))).user == "u" * 64


# -- the issuer's documents


def test_a_discovery_document_of_another_issuer_is_refused(issuer, clock, verifier):
    issuer.discovery_issuer = "http://127.0.0.1:1/elsewhere"
    refused(verifier, issuer.token(issuer.claims(clock())), says="discovery document")
    assert issuer.requests == {"discovery": 1, "jwks": 0}
    refused(verifier, issuer.token(issuer.claims(clock())), says="discovery document")
    assert issuer.requests == {"discovery": 1, "jwks": 0}, "refetched only after the window"


def test_a_discovered_plain_http_jwks_uri_off_loopback_is_refused(issuer, clock, verifier):
    issuer.discovered_jwks_uri = "http://keys.example.org/jwks"
    refused(verifier, issuer.token(issuer.claims(clock())), says="https")
    assert issuer.requests["jwks"] == 0


@pytest.mark.parametrize("url, ok", [
    ("http://issuer.example.org/realms/lab", False),
    ("ftp://127.0.0.1/", False),
    ("https://", False),
    ("", False),
    ("https://issuer.example.org/realms/lab", True),
    ("http://127.0.0.1:8080", True),
    ("http://[::1]:8080", True),
    ("http://localhost:8080/", True),
    ("http://127.0.0.2:8080", False),
    ("http://localhost.example.org", False),
])
def test_the_issuer_must_be_https_or_http_on_loopback(url, ok):
    for setting in ("OIDC_ISSUER", "OIDC_JWKS_URL"):
        values = settings("https://issuer.example.org", **{setting: url})
        if ok or (setting == "OIDC_JWKS_URL" and not url):
            OidcVerifier(values)
        else:
            with pytest.raises(ValueError, match=setting):
                OidcVerifier(values)


def test_an_audience_is_required():
    with pytest.raises(ValueError, match="OIDC_AUDIENCE"):
        OidcVerifier(settings("https://issuer.example.org", OIDC_AUDIENCE=""))


# -- the issuer unreachable


def test_an_issuer_down_with_nothing_cached_is_unavailable(clock):
    issuer = OidcIssuer()
    token = issuer.token(issuer.claims(clock()))
    issuer.close()
    verifier = OidcVerifier(settings(issuer.url), clock=clock)
    with pytest.raises(OidcUnavailable) as caught:
        verifier.identify(token)
    assert caught.value.retry_after == REFETCH_INTERVAL
    assert issuer.url in caught.value.message
    clock.advance(10)
    with pytest.raises(OidcUnavailable) as caught:
        verifier.identify(token)
    assert caught.value.retry_after == REFETCH_INTERVAL - 10


@pytest.mark.parametrize("status", [500, 404])
def test_an_issuer_answering_errors_is_unavailable_then_recovers(issuer, clock, verifier, status):
    issuer.failing = status
    token = issuer.token(issuer.claims(clock()))
    with pytest.raises(OidcUnavailable):
        verifier.identify(token)
    issuer.failing = None
    with pytest.raises(OidcUnavailable):
        verifier.identify(token)  # not asked again within the window
    clock.advance(REFETCH_INTERVAL)
    assert verifier.identify(token).user == "alice"


def test_cached_keys_serve_while_the_issuer_is_down(issuer, clock, verifier):
    verifier.identify(issuer.token(issuer.claims(clock())))
    issuer.failing = 503
    clock.advance(2 * MAX_KEY_AGE)
    assert verifier.identify(issuer.token(issuer.claims(clock()))).user == "alice"
    assert verifier.identify(issuer.token(issuer.claims(clock()), kid=issuer.ec_kid)).user == "alice"
    # A kid not cached needs the issuer.
    with pytest.raises(OidcUnavailable):
        verifier.identify(issuer.token(issuer.claims(clock()), kid=issuer.add_key("ES256")))


def test_the_issuer_is_closed_cleanly():
    issuer = OidcIssuer()
    issuer.close()
    assert not issuer._thread.is_alive()
    assert issuer._server.socket.fileno() == -1
