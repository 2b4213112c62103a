"""The store's base: one thread's connection, how statements run on it (faults,
retries, decisions), the service's own row, and helpers every query group shares."""
from contextlib import contextmanager
import os

import sqlalchemy as sa

from . import database, session_views
from .database import StoreUnavailable
from .models import LIVE_STATUSES
from .tables import service, sessions


def live(table: sa.Table = sessions) -> sa.ColumnElement[bool]:
    return table.c.status.in_(LIVE_STATUSES)


def filtered(query: sa.Select, table: sa.Table, **equal: object) -> sa.Select:
    """`query` narrowed to the columns given a value (None: any)."""
    return query.where(*(table.c[name] == value for name, value in equal.items() if value is not None))


class StoreBase:
    def __init__(self, target: str, busy_timeout: float = 5.0, view_seconds: float = 0.0) -> None:
        self.url = database.as_url(target)
        self.engine = database.engine_for(self.url, busy_timeout)
        # Session rows for views, told of changes (session_views; PostgreSQL only).
        self._views = session_views.for_engine(self.engine, view_seconds)
        self._announces = self.engine.dialect.name == "postgresql"     # SQLite keeps no rows to forget
        self.pid = os.getpid()      # a handle (and its pool) must not cross a fork
        self._connection = None
        self._keeps_connection = database.is_sqlite(self.url)

    # Connections

    def _conn(self):
        if self._connection is None:
            self._connection = self.engine.connect()
        return self._connection

    def release(self) -> None:
        """Give the connection back to the pool (end of a request, of a job)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                self._drop_connection()     # it died since its last use: not the caller's concern
            self._connection = None

    close = release

    def end_request(self) -> None:
        """Between two requests of a worker thread. A PostgreSQL connection is a
        server process shared through the pool: it goes back. A SQLite one
        (autocommit, no transaction open between statements) holds no lock and
        costs a file handle: the thread keeps it, which saves a pool checkout
        and return on every request."""
        if self._connection is None:
            return
        if not self._keeps_connection:
            self.release()
        elif self._connection.connection.dbapi_connection.in_transaction:
            self._drop_connection()     # never carry a transaction into the next request

    def _drop_connection(self):
        # Whatever state the fault left it in, the next call starts afresh.
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:       # already broken: dropping it is all that matters
                pass
            self._connection = None

    def _run(self, action, read=False):
        """Run `action(connection)`; operational faults become StoreUnavailable.

        No ping before each use (a round trip per request): a pooled
        connection the server dropped (a restart, an idle timeout) is found
        when used. Then the process's pool is replaced, and a read is tried
        once more on a fresh connection; a write is not (it may have been
        applied), its caller gets a 503 with Retry-After.
        """
        for attempt in (1, 2):
            try:
                result = action(self._conn())
            except Exception as err:
                lost = self._fault(err)
                if not read:
                    self._wrote()       # it may have been applied
                if not (lost and read and attempt == 1):
                    raise StoreUnavailable(str(getattr(err, "orig", None) or err)) from err
            else:
                if not read:
                    self._wrote()
                return result

    def _wrote(self):
        # After a commit (or a fault): this host's workers see a write to `sessions`
        # by their next read, whether or not this handle keeps rows itself.
        if self._announces:
            session_views.wrote(self._connection)

    def _fault(self, err):
        """Re-raise our bugs (a 500 with its traceback); after an outage drop the
        connection, and the whole pool if the server dropped it. True: it did."""
        if not database.operational(err):
            raise err
        lost = database.disconnected(self.engine, err, self._connection)
        self._drop_connection()
        if lost:
            self.engine.dispose(close=False)
        return lost

    def _execute(self, statement, params=None):
        return self._run(lambda connection: connection.execute(statement, params),
                         read=getattr(statement, "is_select", False))

    def _first(self, prepared, **params):
        return self._run(lambda connection: prepared.first(connection, **params), read=True)

    @contextmanager
    def _decision(self, domain):
        connection = self._run(lambda connection: connection)
        try:
            with database.decision(connection, domain):
                yield
        except Exception as err:
            self._fault(err)
            raise StoreUnavailable(str(getattr(err, "orig", None) or err)) from err
        finally:
            self._wrote()

    @contextmanager
    def _transaction(self):
        """A transaction (database.transaction) on this handle's connection, which
        it yields: statements run on it directly, never retried on another
        connection (as `_execute` retries a read), which would be outside it."""
        connection = self._run(lambda connection: connection)
        try:
            with database.transaction(connection):
                yield connection
        except Exception as err:
            self._fault(err)
            raise StoreUnavailable(str(getattr(err, "orig", None) or err)) from err
        finally:
            self._wrote()

    def _count(self, table, *conditions):
        return self._execute(sa.select(sa.func.count()).select_from(table).where(*conditions)).scalar()

    def init_schema(self) -> None:
        """Create the schema on an empty database (tests, first start); see `schema`."""
        from . import schema
        schema.prepare(self.url)

    def ping(self) -> None:
        self._execute(sa.select(1)).scalar()

    def service_id(self) -> str | None:
        return self._execute(sa.select(service.c.id)).scalar()

    def service_secret(self) -> str | None:
        return self._execute(sa.select(service.c.secret)).scalar()
