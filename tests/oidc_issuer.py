"""A real OIDC issuer on loopback for tests: its own RSA and EC key pairs, a
discovery document and a JWKS endpoint over HTTP (counting requests), key
rotation, and tokens minted with PyJWT, or forged by hand where PyJWT
refuses to (`alg: none`, HS256 keyed with the public key)."""
import base64
import hashlib
import hmac
from http.server import BaseHTTPRequestHandler, HTTPServer
import json
import threading
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
import jwt

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
# How long a held JWKS request waits at most, so that a failing test cannot hang; below the
# verifier's fetch timeout, so a held request ends in an answer (and `holding` cleared), never a timeout.
HOLD_TIMEOUT = 3


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value):
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class OidcIssuer:
    """Start with `with OidcIssuer() as issuer:` (or close()); `issuer.url` is its `iss`."""

    def __init__(self, audience="cxs"):
        self.audience = audience
        self.keys = {}  # kid -> (alg, private key), published
        self.retired = {}  # kid -> (alg, private key), no longer published but still able to sign
        self.requests = {"jwks": 0, "discovery": 0}
        self.failing = None  # an HTTP status every request gets instead, while set
        self.discovery_issuer = None  # what discovery claims as issuer, if not the real one
        self.discovered_jwks_uri = None  # what discovery says the keys' URL is, if not the real one
        # A slow issuer: while `release` is clear, JWKS requests wait for it; `holding` is set meanwhile.
        self.release = threading.Event()
        self.release.set()
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._server = HTTPServer(("127.0.0.1", 0), self._handler())
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]
        self.jwks_url = self.url + JWKS_PATH
        # shutdown() waits out one poll: a short one keeps a test's teardown short.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="oidc-issuer", daemon=True)
        self._thread.start()
        self.rsa_kid = self.add_key("RS256")
        self.ec_kid = self.add_key("ES256")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.release.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    # -- keys

    def add_key(self, alg="RS256", kid=None):
        kid = kid or "%s-%s" % (alg.lower(), uuid.uuid4().hex[:8])
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" \
            else ec.generate_private_key(ec.SECP256R1())
        with self._lock:
            self.keys[kid] = (alg, private)
        return kid

    def rotate(self, old_kid, alg="RS256"):
        """A new key published and `old_kid` dropped, as an issuer rotates."""
        kid = self.add_key(alg)
        with self._lock:
            self.retired[old_kid] = self.keys.pop(old_kid)
        return kid

    def jwks(self):
        with self._lock:
            keys = list(self.keys.items())
        published = []
        for kid, (alg, private) in keys:
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
            published.append(dict(jwk, kid=kid, alg=alg, use="sig"))
        return {"keys": published}

    def public_pem(self, kid):
        return self.keys[kid][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    # -- tokens

    def claims(self, now, **overrides):
        """Good claims at `now`: alice, this issuer and audience, five minutes to live."""
        claims = {"iss": self.url, "aud": self.audience, "sub": "u-1", "preferred_username": "alice",
                  "iat": int(now), "exp": int(now) + 300}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, claims, kid=None, headers=None):
        kid = kid or self.rsa_kid
        alg, private = self.keys.get(kid) or self.retired[kid]
        return jwt.encode(claims, private, algorithm=alg, headers=dict({"kid": kid}, **(headers or {})))

    @staticmethod
    def unsigned(claims, kid):
        """`alg: none`: no signature at all."""
        return "%s.%s." % (b64json({"alg": "none", "typ": "JWT", "kid": kid}), b64json(claims))

    def hs256_with_public_key(self, claims, kid):
        """HS256 keyed with the issuer's public key (PEM), the classic algorithm confusion."""
        signing_input = "%s.%s" % (b64json({"alg": "HS256", "typ": "JWT", "kid": kid}), b64json(claims))
        mac = hmac.new(self.public_pem(kid), signing_input.encode(), hashlib.sha256).digest()
        return "%s.%s" % (signing_input, b64url(mac))

    # -- HTTP

    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if issuer.failing:
                    return self._send(issuer.failing, {"error": "down"})
                if self.path == DISCOVERY_PATH:
                    with issuer._lock:
                        issuer.requests["discovery"] += 1
                    return self._send(200, {
                        "issuer": issuer.discovery_issuer or issuer.url,
                        "jwks_uri": issuer.discovered_jwks_uri or issuer.jwks_url,
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
                if self.path == JWKS_PATH:
                    with issuer._lock:
                        issuer.requests["jwks"] += 1
                    if not issuer.release.is_set():
                        issuer.holding.set()
                        issuer.release.wait(HOLD_TIMEOUT)
                        issuer.holding.clear()
                    return self._send(200, issuer.jwks())
                self._send(404, {"error": "not found"})

            def _send(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
