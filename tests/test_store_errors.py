"""Which database errors are whose fault, seen through the API: the database
being down is a 503 with Retry-After, and the service recovers by itself when
it is back; any other SQL error is our bug: a 500 with the request id, and the
traceback in the log."""
import pytest
import sqlalchemy as sa

from app.store import Store

from .conftest import token_header
from .postgres import PostgresServer, available


def _sql(url, statement):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_an_sql_error_that_is_not_an_outage_is_a_500_with_its_traceback(database_url, app_factory, capfd):
    app = app_factory(DATABASE_URL=database_url)
    client, alice = app.test_client(), token_header(app, "alice")
    assert client.get("/api/sessions", headers=alice).status_code == 200
    _sql(database_url, "ALTER TABLE sessions RENAME TO sessions_elsewhere")   # what a bug would meet
    try:
        reply = client.get("/api/sessions", headers={**alice, "X-Request-ID": "bug-1"})
    finally:
        _sql(database_url, "ALTER TABLE sessions_elsewhere RENAME TO sessions")
    assert reply.status_code == 500
    assert reply.json["error"] == {"code": "internal_error", "message": "internal server error",
                                   "request_id": "bug-1"}
    log = capfd.readouterr().err
    assert "request bug-1 failed" in log and "Traceback" in log and "sessions" in log
    assert "Retry-After" not in reply.headers


@pytest.fixture
def own_postgres():
    """A server of its own: the test stops and starts it."""
    if not available():
        pytest.skip("PostgreSQL is not installed")
    server = PostgresServer().start()
    yield server
    server.stop()


def test_postgresql_down_is_a_503_and_back_is_served_again(own_postgres, app_factory):
    url = own_postgres.url(own_postgres.create_database())
    app = app_factory(DATABASE_URL=url)
    client, alice = app.test_client(), token_header(app, "alice")
    assert client.get("/api/sessions", headers=alice).status_code == 200
    own_postgres._run("pg_ctl", "-D", own_postgres.data, "-m", "fast", "-w", "stop")
    down = client.get("/api/sessions", headers=alice)
    assert down.status_code == 503 and down.json["error"]["code"] == "store_unavailable"
    assert down.headers["Retry-After"]
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json["checks"]["store"] == "unavailable"
    own_postgres.start_again()
    assert client.get("/api/sessions", headers=alice).status_code == 200      # no restart needed
    store = Store(url)
    assert store.list_tokens()[0].user == "alice"
    store.close()
