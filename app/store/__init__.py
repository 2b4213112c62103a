"""Data layer: records (models) and the SQLite store. Nothing above imports sqlite3."""
from .models import (ACTIVE, FAILED, LIVE_STATUSES, STARTING, STATUSES, TERMINATED,
                     TERMINATING, Principal, SessionRecord, TokenRecord)
from .store import LimitReached, Store, StoreUnavailable

__all__ = ["ACTIVE", "FAILED", "LIVE_STATUSES", "STARTING", "STATUSES", "TERMINATED",
           "TERMINATING", "Principal", "SessionRecord", "TokenRecord", "LimitReached",
           "Store", "StoreUnavailable"]
