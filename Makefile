# Two commands matter on a fresh machine: `make run` and `make test`.
# Each installs what it needs first (virtualenv, pip packages, Debian's
# libosmesa6, the ChimeraX test runtime); re-running skips what is done.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt setup.cfg | sha256sum | cut -c1-12)

.PHONY: install chimerax sandbox test test-deps test-fast lint run bench soak which-chimerax web clean
SANDBOX_USER ?= cxs-sandbox

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.cfg
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

# The headless ChimeraX built from UCSF's PyPI library, in its own virtualenv.
chimerax:
	@bash chimerax_runtime/install.sh .chimerax

# The web console's front-end packages (three.js), pinned by app/web/package-lock.json
# and served by the app itself.
web: app/web/node_modules/.package-lock.json

app/web/node_modules/.package-lock.json: app/web/package.json app/web/package-lock.json
	cd app/web && npm ci --no-audit --no-fund --loglevel=error

which-chimerax: install
	@$(PY) -m app.services.processes.versions

# The OS sandbox around each ChimeraX: Debian's bubblewrap, and an unprivileged
# uid of ChimeraX's own (used when the service runs as root). Without root,
# says what to run; the service then warns (SANDBOX=auto) or refuses (bwrap).
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || echo "bubblewrap unavailable: sudo apt-get install bubblewrap"
	@id -u $(SANDBOX_USER) >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $(SANDBOX_USER) && echo "created the sandbox user $(SANDBOX_USER)"; } || echo "no sandbox user: sudo useradd --system --shell /usr/sbin/nologin $(SANDBOX_USER)"

# Debian packages the tests use beyond the runtime's: nginx (deploy/nginx.conf is
# run for real), PostgreSQL's server binaries (tests start throwaway servers
# of their own; no cluster of the machine is created or started), and Slurm
# with munge (tests/slurm.py starts a private single-node cluster).
test-deps:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } || echo "nginx unavailable: its test will be skipped (sudo apt-get install nginx-light)"
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common >/dev/null && sed -i 's/^#* *create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || echo "PostgreSQL unavailable: its tests will be skipped (sudo apt-get install postgresql)"
	@command -v slurmctld >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } || echo "Slurm unavailable: its tests will be skipped (sudo apt-get install slurm-wlm munge)"
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || echo "chromium unavailable: the browser tests will be skipped (sudo apt-get install chromium chromium-driver)"

test: install chimerax sandbox web test-deps
	$(PY) -m pytest

# ruff (pyflakes, isort, bugbear, pyupgrade: ruff.toml) and mypy (setup.cfg).
lint: install
	$(VENV)/bin/ruff check app cxs_client chimerax_agent
	$(VENV)/bin/mypy app cxs_client chimerax_agent

test-fast: install sandbox
	$(PY) -m pytest -m "not slow"

run: install chimerax sandbox web which-chimerax
	$(VENV)/bin/flask --app wsgi db upgrade
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# Performance figures with their targets and same-run baselines (BENCHMARKS.md).
bench: install chimerax sandbox test-deps
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || echo "wrk unavailable: using the Python load client"
	$(PY) bench/run.py

# Long mixed traffic, then the invariants and memory per worker (RELIABILITY.md); not part of `make test`.
SOAK_MINUTES ?= 10
soak: install chimerax sandbox
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) bench/soak.py

clean:
	rm -rf $(VENV) .chimerax instance .pytest_cache
