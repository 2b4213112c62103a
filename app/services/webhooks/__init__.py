"""Lifecycle events sent to WEBHOOK_URLS: one sender across every host (a
leader lock of its own) posts the outbox's events, signed (`signing`), in
order per session, retried with backoff and dead-lettered (`delivery`); what
admins see of them and re-send (`outbox`). The events themselves are written
by the store, in the transaction of the change each tells of
(`store/outbox_queries.py`)."""
