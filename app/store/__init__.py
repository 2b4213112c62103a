"""Data layer: records (models), the schema and its migrations, and the store.
Nothing above this package writes SQL or imports a database driver."""
from .database import StoreUnavailable, database_url
from .leader import leader_lock
from .models import (
                     ACTIVE,
                     FAILED,
                     LIVE_STATUSES,
                     STARTING,
                     STATUSES,
                     SUSPENDED,
                     TERMINATED,
                     TERMINATING,
                     Principal,
                     SessionRecord,
                     TokenRecord,
)
from .schema import SchemaMismatch
from .store import LimitReached, Store

__all__ = ["ACTIVE", "FAILED", "LIVE_STATUSES", "STARTING", "STATUSES", "SUSPENDED", "TERMINATED",
           "TERMINATING", "Principal", "SessionRecord", "TokenRecord", "LimitReached",
           "SchemaMismatch", "Store", "StoreUnavailable", "database_url", "leader_lock"]
