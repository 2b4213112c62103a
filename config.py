"""Configuration: one declaration per setting (`SETTINGS`: name, type, default,
bounds or choices, what it does), from which the values are read from the
environment, a value that cannot be used is refused naming its variable,
app/settings.py checks the whole, and the docs' configuration table is made
(`python -m config`; a test checks the docs hold exactly that).

`create_app()` takes one of the classes below (chosen by APP_ENV, default
production) and then a mapping of overrides; tests pass a mapping.
"""
from dataclasses import dataclass
import os
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
            "0": False, "false": False, "no": False, "off": False}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    name: str
    kind: object            # str, int, float, bool, list (comma-separated), dict (name=value pairs)
    default: object         # in the environment's text for list and dict
    doc: str
    shown: str = ""         # how the docs show a default computed here (a path, the host name)
    positive: bool = False
    not_negative: bool = False
    choices: tuple = ()
    server: bool = False    # read by gunicorn.conf.py, not the app

    def read(self, environ=os.environ):
        raw = environ.get(self.name)
        if self.kind in (list, dict):
            return _pairs(self.name, raw or self.default) if self.kind is dict else _list(raw or self.default)
        if raw is None or raw == "":
            return self.default
        if self.kind is bool:
            value = BOOLEANS.get(raw.strip().lower())
            if value is None:
                raise ConfigError("%s=%r is not a boolean (use one of: %s)" % (self.name, raw, ", ".join(BOOLEANS)))
            return value
        try:
            return self.kind(raw.strip())
        except ValueError:
            raise ConfigError("%s=%r is not %s" % (self.name, raw, "an integer" if self.kind is int
                                                     else "a number")) from None

    def default_text(self):
        if self.shown:
            return self.shown
        if self.default in ("", None):
            return "*(none)*"
        if self.kind is bool:
            return "`%s`" % str(self.default).lower()
        if self.kind is float and float(self.default).is_integer():
            return "`%d`" % self.default
        return "`%s`" % self.default

    def rule_text(self):
        if self.choices:
            return " (one of %s)" % ", ".join("`%s`" % c for c in self.choices)
        if self.positive:
            return " (> 0)"
        if self.not_negative:
            return " (≥ 0)"
        return ""


def _pairs(name, raw):
    pairs = {}
    for part in _list(raw):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError("%s: %r is not of the form name=value" % (name, part))
        pairs[key.strip()] = value.strip()
    return pairs


def _list(raw):
    return [part.strip() for part in raw.split(",") if part.strip()]


SETTINGS = (
    # Store and files (docs: Operating)
    Setting("DATABASE_URL", str, "",
            'the store as a SQLAlchemy URL: `sqlite:////abs/path.sqlite3` or '
            '`postgresql+psycopg://user:password@host/db` (several hosts)', shown='*(empty)*'),
    Setting("DATABASE_PATH", str, os.path.join(HERE, "instance", "sessions.sqlite3"),
            'shorthand for a SQLite file (WAL), used when `DATABASE_URL` is empty', shown='`instance/sessions.sqlite3`'),
    Setting("HOST_ID", str, socket.gethostname(),
            'this instance among those sharing the store; recorded with each session it starts', shown='the host name'),
    Setting("WORKSPACE_ROOT", str, os.path.join(HERE, "instance", "workspaces"),
            'one working directory per session, removed when it ends', shown='`instance/workspaces`'),

    # ChimeraX processes
    Setting("LAUNCHER", str, "local",
            'where ChimeraX processes run: `local` (this machine, in its sandbox: '
            '[threat-model.md](threat-model.md)) or `slurm` (one job per session: [scaling.md](scaling.md))', choices=("local", "slurm")),
    Setting("CHIMERAX_PATH", str, "",
            'executable; unset: `ChimeraX`/`chimerax` on `PATH`, `/usr/bin/chimerax`, '
            '`/opt/UCSF/ChimeraX*/bin/ChimeraX`, …, then `.chimerax/bin/chimerax`', shown='*(search)*'),
    Setting("CHIMERAX_PORT_RANGE", str, "6100-6199",
            'agent TCP ports handed out when unsandboxed (reserved in the store, taken ports '
            'skipped); `0`: the agent picks and announces its port. Sandboxed sessions use a Unix '
            'socket'),
    Setting("CHIMERAX_OFFSCREEN", str, "lazy",
            'offscreen (OSMesa) rendering: `lazy` starts it in a session at its first render (an image, '
            'the snapshot, the 3D scene), so sessions that never draw do not load it (25 MiB each: '
            'BENCHMARKS.md figure 8); `true` at every start (`--offscreen`); `false` never (images answer 503)',
            choices=("lazy", "true", "false")),
    Setting("SUPPORTED_CHIMERAX", str, "1.6-1.11",
            'ChimeraX releases sessions may run: those whose internals the agent was read against '
            '(docs/runtime.md); a start on another is refused'),
    Setting("CHIMERAX_ALLOW_UNTESTED", bool, False,
            'start a ChimeraX outside `SUPPORTED_CHIMERAX` anyway, with a warning (its hooks are still '
            'proven at every start)', shown='`false`'),
    Setting("STARTUP_TIMEOUT", float, 60.0,
            's until ChimeraX must be ready, else `startup_failed`', shown='`60`', positive=True),
    Setting("COMMAND_TIMEOUT", float, 30.0,
            "s the API waits for a command's reply, else 504 (the command may go on: the session "
            'answers `session_busy` meanwhile)', shown='`30`', positive=True),
    Setting("COMMAND_MAX_RUNTIME", float, 600.0,
            's a command may run at all; past it the sweeper interrupts it (`INTERRUPT_GRACE`)', shown='`600`',
            positive=True),
    Setting("INTERRUPT_GRACE", float, 5.0,
            's an interrupted command has to stop; past it the process is ended (`unresponsive`)', shown='`5`',
            positive=True),
    Setting("EVENT_STREAMS_PER_USER", int, 4,
            'event streams (`GET /events`) a user may hold open at once, across workers and hosts (429 beyond)',
            positive=True),
    Setting("EVENT_STREAMS_PER_WORKER", int, 32,
            'event streams each worker serves, on threads of their own beside `THREADS` (503 beyond)',
            not_negative=True),
    Setting("STOP_GRACE_PERIOD", float, 5.0,
            's between SIGTERM and SIGKILL to the process group', shown='`5`', not_negative=True),

    # The OS sandbox around each ChimeraX (README "Threat model")
    Setting("SANDBOX", str, "auto",
            '`bwrap` (required: start fails if it cannot work), `auto` (bwrap where it works, else '
            'none with a warning), `none` (warning)', choices=("auto", "bwrap", "none")),
    Setting("SANDBOX_USER", str, "cxs-sandbox",
            'uid ChimeraX runs as when the service is root (created by the Makefile)'),
    Setting("SANDBOX_READONLY_PATHS", list, "",
            'comma-separated extra folders shown read-only (installations spread over several '
            'directories)', shown='*(none)*'),
    Setting("SANDBOX_TMP_MB", int, 64,
            'size of the private `/tmp` (also `$HOME`) inside'),
    Setting("SANDBOX_MAX_PROCESSES", int, 4096,
            'processes and threads of `SANDBOX_USER`, all sessions together (RLIMIT_NPROC); '
            'only where no cgroup holds `SESSION_MAX_PROCESSES`'),

    # Each session's share of the host (docs/limits.md): a cgroup per session.
    Setting("CGROUPS", str, "auto",
            'per-session cgroups: `auto` (v2 where a delegated subtree is writable, else v1, else '
            'none with a warning), `v2`, `v1` (start fails if they cannot work), `off`',
            choices=("auto", "v2", "v1", "off")),
    Setting("CGROUP_ROOT", str, "",
            'the cgroup session cgroups are made in, as /proc/self/cgroup names it (v2: a delegated one, '
            'e.g. `/system.slice/cxs.service`); default: for each controller, the cgroup the service '
            'runs in', shown='*(the service\'s own)*'),
    Setting("SESSION_MEMORY_MB", int, 4096,
            'memory of each session: its cgroup\'s limit on resident memory and the page cache it '
            'owns (without a cgroup: the address-space limit)', not_negative=True),
    Setting("SESSION_ADDRESS_SPACE_MB", int, 0,
            'address space of each ChimeraX process (RLIMIT_AS), a backstop that makes one huge '
            'allocation fail softly as a command error; 0: twice `SESSION_MEMORY_MB` with a cgroup, '
            '`SESSION_MEMORY_MB` without', not_negative=True),
    Setting("SESSION_MAX_PROCESSES", int, 256,
            'processes and threads of each session (its cgroup\'s pids limit)', not_negative=True),
    Setting("SESSION_CPUS", float, 1.0,
            'CPU of each session in cores (its cgroup\'s quota; its weight is in proportion, so busy '
            'sessions share fairly); 0: no quota', not_negative=True),
    Setting("SESSION_MAX_OPEN_FILES", int, 1024,
            'open files of each ChimeraX process'),
    Setting("CONTROL_DIR", str, "",
            'logs and channel sockets of the processes (0700)', shown='`<WORKSPACE_ROOT>/.control`'),

    # LAUNCHER=slurm (docs/scaling.md): one job per session; WORKSPACE_ROOT
    # and CONTROL_DIR on a file system the nodes share.
    Setting("SLURM_PARTITION", str, "",
            'the partition session jobs are submitted to', shown='*(cluster default)*'),
    Setting("SLURM_ACCOUNT", str, "",
            'the account session jobs are charged to', shown='*(cluster default)*'),
    Setting("SLURM_EXTRA_ARGS", str, "",
            'more `sbatch` options, shell-quoted (e.g. `--qos=interactive`)', shown='*(none)*'),
    Setting("SLURM_PENDING_TIMEOUT", float, 300.0,
            "s a session's job may wait in the queue (its `pending_reason` shown meanwhile), then "
            '`startup_failed` and cancelled', shown='`300`'),
    Setting("SLURM_POLL_INTERVAL", float, 5.0,
            's between the batched `squeue` calls of one service process (sweeps always ask once, for'
            ' all jobs)', shown='`5`'),
    Setting("SLURM_SCRIPT_TEMPLATE", str, "",
            'the batch script (`$python`, `$project`, `$spec` filled in)', shown='`app/services/processes/launchers/session.sbatch`'),
    Setting("SLURM_CONF", str, "",
            "the cluster's `slurm.conf`", shown="*(Slurm's)*"),
    Setting("SLURM_CLUSTER", str, "default",
            "the name the cluster's sessions carry in the store"),
    Setting("SLURM_BIND_ADDRESS", str, "",
            "address a job's channel listens on", shown="*(each node's `NodeAddr`)*"),

    # Sessions and limits
    Setting("MAX_SESSIONS", int, 10,
            'live sessions (and pooled processes) on this machine, whichever instances started them '
            '(503 beyond)', positive=True),
    Setting("MAX_SESSIONS_PER_USER", int, 3,
            'live sessions per user (429 beyond)', positive=True),
    Setting("SESSION_RETENTION_DAYS", int, 90,
            'days an ended session\'s row and command history are kept (the sweeper deletes older ones in '
            'batches, their usage rolled up per user and day first; the audit log is a log stream, kept by '
            'its rotation); 0: kept for ever', not_negative=True),
    Setting("SESSION_IDLE_TIMEOUT", int, 1800,
            's without commands or heartbeats before the sweeper suspends or ends a session '
            '(`IDLE_ACTION`); never while a command runs', positive=True),
    Setting("SESSION_IDLE_TIMEOUT_MIN", int, 1,
            "lower bound of a client's `idle_timeout`"),
    Setting("SESSION_IDLE_TIMEOUT_MAX", int, 86400,
            "upper bound of a client's `idle_timeout`"),
    Setting("SESSION_MAX_LIFETIME", int, 86400,
            's after creation when a session ends whatever its activity', positive=True),
    Setting("ACTIVITY_WRITE_INTERVAL", float, 5.0,
            's: command activity is written at most this often', shown='`5`'),
    Setting("MAX_CONTENT_LENGTH", int, 1024 * 1024,
            'bytes per request body (413 beyond)', shown='`1048576`'),
    Setting("MAX_COMMAND_LENGTH", int, 10000,
            'characters per command line'),
    Setting("MAX_UPLOAD_BYTES", int, 50 * 1024 * 1024,
            'bytes per uploaded file (413 beyond)', shown='`52428800`'),
    Setting("WORKSPACE_QUOTA_MB", int, 200,
            'everything in a workspace, uploads and what ChimeraX writes (413 beyond); also the '
            'largest file ChimeraX may write', not_negative=True),
    Setting("SNAPSHOT_MAX_PIXELS", int, 4096,
            "largest snapshot `width` and `height`, and of a viewer's image `save` (400 beyond)", positive=True),
    Setting("SNAPSHOT_MAX_SUPERSAMPLE", int, 4,
            'largest snapshot `supersample` (400 beyond)', positive=True),
    # What one render draws, width x height x supersample² pixels, for the snapshot
    # route and every image `save`: ChimeraX draws the width x height image
    # supersample² times (its time), in about 28 bytes of address space a pixel
    # of width x height (measured; README "Configuration").
    Setting("RENDER_MAX_PIXELS", int, 4096 * 4096,
            'pixels one snapshot draws, width × height × supersample² (ChimeraX draws the image '
            'supersample² times; 400 beyond, naming it). Measured on the test runtime in the sandbox '
            'at `SESSION_MEMORY_MB=4096`: a render takes 25–32 bytes of address space a pixel of '
            'width × height, whatever the supersampling (4096 × 4096: +0.4–0.5 GB), and at the bound '
            '0.7 s of an empty scene, 1.7 s of a structure in sticks and cartoon, 11 s of one '
            'surfaced, lit (`lighting full`) and with a map shown as an image', shown='`16777216`', positive=True),
    Setting("SCENE_MAX_BYTES", int, 50 * 1024 * 1024,
            'largest `scene.glb` served; a scene showing more than `SCENE_MAX_BYTES` / 12 triangles '
            'without `instancing` is refused before it is built (413 `scene_too_large` either way)', shown='`52428800`', positive=True),
    Setting("HISTORY_MAX", int, 1000,
            "commands kept in each session's history (the oldest go first)", positive=True),

    # Warm pool: ready processes waiting for sessions (0 disables)
    Setting("POOL_SIZE", int, 2,
            'warm pool of ready ChimeraX processes per host (0 disables); they count against '
            '`MAX_SESSIONS`', not_negative=True),
    Setting("POOL_MAX_AGE", int, 3600,
            's before an idle pooled process is recycled'),
    Setting("POOL_CHECK_INTERVAL", float, 1.0,
            's between pool refills by the sweeper leader', shown='`1`'),

    # Suspend and resume: a suspended session keeps its workspace and a saved
    # ChimeraX session file, and no process.
    Setting("IDLE_ACTION", str, "suspend",
            'at the idle timeout: `suspend` or `terminate`', choices=("suspend", "terminate")),
    Setting("AUTO_RESUME", bool, True,
            'a command or heartbeat to a suspended session resumes it (409 `session_resuming` '
            'meanwhile)', shown='`true`'),
    Setting("MAX_SUSPENDED_PER_USER", int, 10,
            'suspended sessions per user (429 beyond)', not_negative=True),
    Setting("SUSPENDED_RETENTION", int, 7 * 86400,
            's a suspended session is kept, then deleted (`suspended_expired`)', shown='`604800`', not_negative=True),
    Setting("SUSPEND_DIR", str, "",
            "where suspended sessions' files are kept (0700, outside every workspace)", shown='`<WORKSPACE_ROOT>/.suspended`'),

    # Reliability
    Setting("FAILED_RETENTION", int, 3600,
            "s a crashed/unhealthy/over-memory session's files stay downloadable", not_negative=True),
    Setting("MAX_RSS_MB", int, 0,
            'resident memory limit per ChimeraX; above it the sweeper ends it (`memory_limit`)', shown='`0` (off)', not_negative=True),
    Setting("ADOPT_ON_START", bool, True,
            'on start, adopt sessions whose ChimeraX survived; `false`: end them all', shown='`true`'),
    Setting("SHUTDOWN_TERMINATES_SESSIONS", bool, False,
            'on SIGTERM, end every session (`server_shutdown`) instead of leaving them for adoption', shown='`false`'),
    Setting("STORE_BUSY_TIMEOUT", float, 5.0,
            's to wait for a locked database before answering 503', shown='`5`', positive=True),
    Setting("SESSION_VIEW_CACHE_SECONDS", float, 2.0,
            "PostgreSQL: s a session's view (GET) may show a row read before, which this host's writes "
            "and the database's notices of other hosts' (~0.3 ms after their commit) make it forget; "
            "the bound holds if notices stop; one more connection per worker; 0: read on every GET",
            shown='`2`',
            not_negative=True),

    # Sweeper
    Setting("SWEEPER_ENABLED", bool, True,
            "run the sweeper and the warm pool's upkeep in this instance's workers (one of them "
            'leads); `false`: another instance must', shown='`true`'),
    Setting("SWEEP_INTERVAL", float, 30.0,
            's between sweeps (≤ 0 disables)', shown='`30`'),
    Setting("HEALTH_CHECK_TIMEOUT", float, 5.0,
            "s for the sweeper's ping of each active session", shown='`5`', positive=True),
    Setting("HEALTH_CHECK_FAILURES", int, 3,
            'failed pings in a row before the process is killed (`unhealthy`)', positive=True),

    # Auth
    Setting("TRUSTED_PROXIES", list, "",
            'comma-separated peer addresses allowed to set `X-Remote-User`', shown='*(none)*'),
    Setting("ADMIN_USERS", list, "",
            'comma-separated proxy users with the admin role', shown='*(none)*'),
    Setting("USAGE_VIEW_SECONDS", float, 1.0,
            "s a session's view may show the same reading of its usage (per worker): reading the "
            "launcher's figures (four cgroup files) on every GET cost the hot read a fifth of its speed; "
            "0: read on every GET", shown='`1`', not_negative=True),
    Setting("TOKEN_CACHE_SECONDS", float, 5.0,
            's a worker trusts what it read of a token (a revocation or expiry is seen everywhere within '
            'this); 0: read on every request', shown='`5`', not_negative=True),
    Setting("TOKEN_MAX_LIFETIME", int, 0,
            's a token made over the API may live at most (`expires_in`); 0: no bound', not_negative=True),

    # Sharing and lifecycle webhooks (docs/sharing.md)
    Setting("SHARE_LINKS_PER_SESSION", int, 10, 'live share links a session may have at once (409 beyond)',
            positive=True),
    Setting("WEBHOOK_URLS", list, "",
            'comma-separated URLs that receive each lifecycle event as a signed POST', shown='*(none)*'),
    Setting("WEBHOOK_SECRET", str, "",
            'the HMAC-SHA256 key of `X-CXS-Signature` (required with WEBHOOK_URLS)', shown='*(none)*'),
    Setting("WEBHOOK_MAX_ATTEMPTS", int, 10,
            'sends of one event before it is dead-lettered (the admin page shows and re-sends those)',
            positive=True),
    Setting("WEBHOOK_TIMEOUT", float, 5.0, 's a receiver has to answer one send', shown='`5`', positive=True),

    # The portal's own OIDC tokens (docs/identity.md): accepted as bearer tokens when OIDC_ISSUER is set.
    Setting("OIDC_ISSUER", str, "",
            'the issuer (`iss`) whose signed tokens are accepted (https; http only on loopback)',
            shown='*(none: off)*'),
    Setting("OIDC_AUDIENCE", str, "",
            'the audience (`aud`) the tokens must name (required with OIDC_ISSUER)', shown='*(none)*'),
    Setting("OIDC_JWKS_URL", str, "",
            "where the issuer's keys are; default: `jwks_uri` of its `/.well-known/openid-configuration`",
            shown='*(discovered)*'),
    Setting("OIDC_USER_CLAIM", str, "preferred_username", 'the claim that names the user'),
    Setting("OIDC_ROLES_CLAIM", str, "",
            "a claim listing the user's roles (dotted for nested claims, e.g. `realm_access.roles`)",
            shown='*(none)*'),
    Setting("OIDC_ADMIN_ROLE", str, "",
            'the role in OIDC_ROLES_CLAIM that makes the user an admin', shown='*(none)*'),
    Setting("OIDC_SCOPES_CLAIM", str, "scope",
            "the claim holding the token's scopes (space-separated, or a list): those of the service "
            "(`sessions:read` …) are kept; none of them: the role's"),
    Setting("OIDC_LEEWAY", float, 30.0, 's of clock skew allowed on `exp`, `nbf` and `iat`', shown='`30`',
            not_negative=True),

    # Command policy (see README "Command policy"): role -> profile; the
    # viewer profile's allowlist can be widened or narrowed by name.
    Setting("ROLE_PROFILES", dict, "user=viewer,admin=trusted",
            'command policy profile per role'),
    Setting("VIEWER_ALLOW_EXTRA", list, "",
            'command families added to the viewer allowlist (comma-separated)', shown='*(none)*'),
    Setting("VIEWER_DENY", list, "",
            'command families removed from the viewer allowlist (comma-separated)', shown='*(none)*'),
    Setting("ALLOW_FETCH", bool, True,
            'viewers may `open` database entries (`1abc`, `pdb:…`, `alphafold:…`, `emdb:…`): ChimeraX\'s '
            'own fetchers, downloaded by the service into a shared cache (docs/fetching.md)', shown='`true`'),
    Setting("FETCH_ALLOWED", list, ",".join((
        "http://files.rcsb.org/download/", "https://files.rcsb.org/download/", "https://files.rcsb.org/pub/emdb/",
        "http://www.ebi.ac.uk/pdbe/", "https://www.ebi.ac.uk/pdbe/", "https://pdbj.org/rest/",
        "https://pdb-redo.eu/db/", "https://alphafold.ebi.ac.uk/files/",
        "https://www.rbvi.ucsf.edu/chimerax/data/status/", "https://files.wwpdb.org/pub/",
        "ftp://ftp.wwpdb.org/pub/emdb/", "ftp://ftp.ebi.ac.uk/pub/databases/emdb/",
        "https://ftp.ebi.ac.uk/pub/databases/emdb/", "ftp://ftp.pdbj.org/pub/emdb/", "https://ftp.pdbj.org/pub/emdb/",
        "https://rest.uniprot.org/", "https://www.uniprot.org/uniprot/", "https://pubchem.ncbi.nlm.nih.gov/rest/pug/",
        "https://pdb-dev.wwpdb.org/cif/", "https://www.crystallography.net/cif/", "https://mmtf.rcsb.org/v1.0/full/",
        "https://api.esmatlas.com/fetchPredictedStructure/")),
            'URL prefixes the service fetches from (the databases ChimeraX fetches from); anything else is '
            'refused', shown='the databases ChimeraX 1.6–1.11 fetches from (RCSB, PDBe, PDBj, PDB-REDO, '
            'AlphaFold DB, wwPDB files incl. chemical components, EMDB mirrors, UniProt, PubChem, COD, ESM Atlas)'),
    Setting("FETCH_ALLOW_URLS", bool, False,
            'trusted profiles may `open` URLs under `FETCH_ALLOWED`, through the same broker (viewers never)',
            shown='`false`'),
    Setting("FETCH_MIRRORS", list, "",
            '`prefix=replacement` rules applied after the allowlist check (a local mirror)', shown='*(none)*'),
    Setting("FETCH_TIMEOUT", float, 60.0, 's a download may take', positive=True),
    Setting("FETCH_MAX_MB", int, 500, 'largest file fetched (enforced while streaming, uncompressed too)',
            positive=True),
    Setting("FETCH_CACHE_DIR", str, "",
            'the shared fetch cache (read-only in every sandbox; on a file system every host and node shares)',
            shown='`<WORKSPACE_ROOT>/.fetch-cache`'),
    Setting("FETCH_CACHE_MB", int, 2048,
            'cache size kept: least recently used entries that no live session uses go first', positive=True),
    Setting("FETCH_PER_USER_PER_MIN", int, 30, 'fetches a user may make a minute', positive=True),

    Setting("METRICS_TOKEN", str, "",
            'bearer token accepted for `/metrics` only (admin tokens work too)', shown='*(none)*'),

    Setting("LOG_LEVEL", str, "INFO",
            '`DEBUG`, `INFO`, `WARNING` or `ERROR`'),
    Setting("LOG_FORMAT", str, "text",
            '`json`: one JSON object per line, with the request id', choices=("text", "json")),

    # gunicorn.conf.py's (the server's, not the app's)
    Setting("BIND", str, "127.0.0.1:8000", "address and port gunicorn listens on", server=True),
    Setting("WORKERS", int, 4, "gunicorn worker processes", server=True, positive=True),
    Setting("WORKER_CLASS", str, "app.gunicorn_worker.Worker",
            "gunicorn worker class (gthread, answering what gunicorn cannot read in the one error shape)",
            server=True),
    Setting("THREADS", int, 16, "threads of each gthread worker", server=True, positive=True),
    Setting("WORKER_CONNECTIONS", int, 0, "connections a worker holds at once", shown="= `THREADS`",
            server=True, not_negative=True),
    Setting("GUNICORN_TIMEOUT", int, 120, "s a worker may be silent before gunicorn restarts it", server=True,
            positive=True),
    Setting("CLIENT_READ_TIMEOUT", float, 10.0, "s a client may stall while sending a request before it is dropped",
            server=True, positive=True),
    Setting("MAX_REQUESTS", int, 20000, "requests after which a worker is recycled (± 10 %); 0: never", server=True,
            not_negative=True),
)


def values(environ=os.environ):
    """{name: value} of the app's settings, read from `environ`."""
    return {s.name: s.read(environ) for s in SETTINGS if not s.server}


def server_setting(name, environ=os.environ):
    """A gunicorn.conf.py setting's value (its own, or one it shares with the app)."""
    return next(s for s in SETTINGS if s.name == name).read(environ)


def markdown():
    """The docs' configuration table (generated: never edit the copy by hand)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += ["| `%s` | %s | %s%s%s |" % (s.name, s.default_text(), s.doc, s.rule_text(),
                                         " (read by `gunicorn.conf.py`)" if s.server else "") for s in SETTINGS]
    return "\n".join(lines)


class Config:
    TESTING = False


for _setting in SETTINGS:
    if not _setting.server:
        setattr(Config, _setting.name, _setting.read())


def _default(name, default):
    """A setting's value where an environment has another default for it."""
    from dataclasses import replace
    return replace(next(s for s in SETTINGS if s.name == name), default=default).read()


class DevelopmentConfig(Config):
    LOG_LEVEL = _default("LOG_LEVEL", "DEBUG")


class TestingConfig(Config):
    """The defaults (warm pool, IDLE_ACTION=suspend, sandbox): a test that needs
    another value sets it itself and says why."""
    TESTING = True
    # The tests' `flask` CLI calls and in-process apps run no background sweeper
    # (tests drive sweeps); a test server turns it on (tests/conftest.py Gunicorn).
    SWEEPER_ENABLED = _default("SWEEPER_ENABLED", False)
    STOP_GRACE_PERIOD = _default("STOP_GRACE_PERIOD", 2.0)   # tests stop many sessions: less waiting


class ProductionConfig(Config):
    pass


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_class(name=None):
    return CONFIGS[(name or os.environ.get("APP_ENV") or "production").lower()]


if __name__ == "__main__":
    print(markdown())
