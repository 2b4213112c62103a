"""Data layer: records (models), the schema and its migrations, and the store.
Nothing above this package writes SQL or imports a database driver.

The records are imported at once; the store, its schema and database
plumbing on first use: the node side of a Slurm job imports the records
(launchers/base.py) and must not pay ~0.2 s for SQLAlchemy and Alembic on
every session start."""
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from .database import StoreUnavailable, database_url
    from .leader import leader_lock
    from .schema import SchemaMismatch
    from .store import LimitReached, Store

_LAZY = {"StoreUnavailable": "database", "database_url": "database", "leader_lock": "leader",
         "SchemaMismatch": "schema", "LimitReached": "store", "Store": "store"}

__all__ = ["ACTIVE", "FAILED", "LIVE_STATUSES", "STARTING", "STATUSES", "SUSPENDED", "TERMINATED",
           "TERMINATING", "Principal", "SessionRecord", "TokenRecord", "LimitReached",
           "SchemaMismatch", "Store", "StoreUnavailable", "database_url", "leader_lock"]
assert set(__all__) >= set(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module("." + _LAZY[name], __name__), name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
