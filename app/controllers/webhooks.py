"""HTTP in/out for the webhooks' outbox on the admin API."""
from flask import g

from ..context import get_store
from ..services.webhooks import outbox


def listing():
    return outbox.listing(g.principal, get_store())


def resend(event_id):
    return outbox.resend(g.principal, get_store(), event_id)
