"""A throwaway PostgreSQL server for the tests: Debian's binaries, its own data
directory, a Unix socket only (no TCP port to collide with), never the
machine's own cluster. One server per test run, one database per test."""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))


def available():
    return bool(BINARIES)


class PostgresServer:
    def __init__(self):
        self.bin = BINARIES[-1]
        self.base = tempfile.mkdtemp(prefix="pg-")
        self.data = os.path.join(self.base, "data")
        self.user = None
        if os.geteuid() == 0:
            # The server refuses to run as root: Debian's postgres account runs it.
            self.user = "postgres" if _exists("postgres") else "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
            # It must reach its folder inside the run's private TMPDIR: search, not list.
            for path in (tempfile.gettempdir(),):
                os.chmod(path, os.stat(path).st_mode | 0o011)

    def _run(self, *args, **kw):
        command = [os.path.join(self.bin, args[0])] + list(args[1:])
        if self.user:
            command = ["runuser", "-u", self.user, "--"] + command
        return subprocess.run(command, check=True, capture_output=True, text=True, **kw)

    def start(self):
        self._run("initdb", "-D", self.data, "-U", "cxs", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self.start_again()

    def start_again(self):
        options = ("-k %s -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=400" % self.base)
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.base, "log"), "-o", options,
                  "-w", "-t", "60", "start", timeout=90)
        return self

    def url(self, database="postgres"):
        return "postgresql+psycopg://cxs@/%s?host=%s" % (database, self.base)

    def _admin(self, sql):
        import psycopg
        with psycopg.connect(host=self.base, user="cxs", dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self):
        name = "t_" + uuid.uuid4().hex[:12]
        self._admin('CREATE DATABASE "%s"' % name)
        return name

    def drop_database(self, name):
        # FORCE: a server under test may still hold connections (or be killed holding them).
        self._admin('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False
