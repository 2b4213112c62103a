"""The store: every SQL statement of the service lives in this package.

Statements are SQLAlchemy Core built on `tables`; they run on SQLite or
PostgreSQL alike. A Store is one thread's handle: it checks a connection out
of its process's pool when first used and gives it back on `release()`.
Decisions that must not race between workers or hosts (capacity, port
choice, the pool claim) run in `database.decision()`; status changes are
single compare-and-set statements.

This module assembles Store from its query groups: the connection plumbing
(`base`), tokens, sessions with the warm pool and capacity, the history logs,
the fetch cache's index, usage accounting and retention, shares.
"""
from .fetch_queries import FetchQueries
from .history_queries import HistoryQueries
from .pool_queries import LimitReached
from .session_queries import SessionQueries
from .share_queries import ShareQueries
from .token_queries import TokenQueries
from .usage_queries import UsageQueries

__all__ = ["LimitReached", "Store"]


class Store(SessionQueries, TokenQueries, HistoryQueries, FetchQueries, UsageQueries, ShareQueries):
    """One thread's handle on the database, with every query group."""
