"""The signature of a webhook: `X-CXS-Signature: sha256=<hex>`, the
HMAC-SHA256 of `<X-CXS-Timestamp>.<body>` keyed with WEBHOOK_SECRET. The
timestamp is signed with the body, so a receiver that refuses old timestamps
refuses a replayed request too (docs/webhooks.md)."""
import hashlib
import hmac

# How far a receiver should trust a timestamp from its own clock (docs/webhooks.md).
TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def headers(event_type: str, event_id: str, body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The headers of one send of an event."""
    return {"Content-Type": "application/json", "X-CXS-Event": event_type, "X-CXS-Event-Id": event_id,
            "X-CXS-Timestamp": str(timestamp), "X-CXS-Signature": signature(secret, timestamp, body)}


def verify(secret: str, timestamp: str, body: bytes, signed: str, now: float, tolerance: float = TOLERANCE) -> bool:
    """What a receiver checks (the reference for docs/webhooks.md's five lines):
    the signature over this timestamp and body, and a timestamp near `now`."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    return abs(now - sent) <= tolerance and hmac.compare_digest(signature(secret, sent, body), signed or "")
