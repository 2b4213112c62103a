"""ChimeraX as Slurm jobs: one job per session (and per warm-pool process).

A job is named `cxs-<session id>` (pool: `cxs-pool-<entry>`) and carries
the comment `cxs:<service id>:<host id>`, so this service recognises its own
jobs (and one instance's start-up only those it submitted) among everything
the account runs. The batch script (session.sbatch, or SLURM_SCRIPT_TEMPLATE)
runs slurm_job.py on the node, which starts ChimeraX in the node's sandbox
and reports the address of its channel in the job's output file. WORKSPACE_ROOT
and CONTROL_DIR must be on a file system the service and the nodes share.

What the scheduler says is read from one batched `squeue` (slurm_cli.JobTable);
a controller that does not answer leaves every session as it is.
"""
from collections.abc import Callable, Mapping
import json
import logging
import math
import os
import secrets
import shlex
import shutil
import string
import sys
import time
from typing import Any
import uuid

from ...errors import StartupFailed
from ..chimerax_client import ping
from ..locate import PROJECT_ROOT, Executable
from .base import Launcher
from .cgroups import address_space_mb
from .local import channel_of
from .sandbox import FETCH_CACHE, WORKSPACE, sandbox_owner
from .slurm_cli import LIVE_STATES, JobTable, SchedulerUnavailable, Slurm, SlurmError
from .slurm_job import FAILED, READY

log = logging.getLogger("cxs.slurm")

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session.sbatch")
NAME_PREFIX = "cxs-"
# Settings the node needs to build the same local launcher there.
NODE_SETTINGS = ("SANDBOX", "SANDBOX_USER", "SANDBOX_READONLY_PATHS", "SANDBOX_TMP_MB", "SANDBOX_MAX_PROCESSES",
                 "SESSION_MEMORY_MB", "SESSION_MAX_PROCESSES", "SESSION_CPUS", "WORKSPACE_QUOTA_MB", "SESSION_MAX_OPEN_FILES", "CHIMERAX_OFFSCREEN",
                 "HOST_ID", "WORKSPACE_ROOT", "FETCH_CACHE_DIR")
# How often a starting session's wait reads the job's output file: while the
# job is queued, and once it runs (a read is an open, one read and a close of a
# file of a few lines; ~100 per cold start at 5 ms).
QUEUED_POLL = 0.025
REPORT_POLL = 0.005
NOT_STARTED = ("not started", None)
# How a job that ended on its own ends its session.
END_REASONS = {"TIMEOUT": "max_lifetime", "DEADLINE": "max_lifetime", "OUT_OF_MEMORY": "memory_limit"}


def job_name(marker: str) -> str:
    return NAME_PREFIX + marker.replace("pool:", "pool-")


def cluster_domain(config: Mapping[str, Any]) -> str:
    return "slurm:" + (config.get("SLURM_CLUSTER") or "default")


class SlurmLauncher(Launcher):
    def __init__(self, slurm: Slurm, config: Mapping[str, Any], executable: Executable | None, service_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.slurm = slurm
        self.config = config
        self.found = executable
        self.service_id = service_id
        self.host_id = config["HOST_ID"]
        self.domain = cluster_domain(config)
        self.control_dir = config["CONTROL_DIR"] or os.path.join(config["WORKSPACE_ROOT"], ".control")
        self.pending_timeout = config["SLURM_PENDING_TIMEOUT"]
        self.clock = clock
        self.comment = "cxs:%s:%s" % (service_id, self.host_id)
        self.jobs = JobTable(slurm, NAME_PREFIX, "cxs:%s:" % service_id, max_age=config["SLURM_POLL_INTERVAL"])
        with open(config["SLURM_SCRIPT_TEMPLATE"] or TEMPLATE) as text:
            self.template = string.Template(text.read())
        self.owner = sandbox_owner(config)

    @property
    def available(self) -> bool:
        return self.found is not None and self.version_refusal() is None

    def describe(self) -> str:
        chimerax = "%s (%s)" % (self.found.path, self.found.kind) if self.found else "no ChimeraX found"
        refusal = self.version_refusal()
        chimerax += ": " + refusal if refusal else ""
        return "slurm (%s, partition %s): %s, sandbox on the nodes: %s" % (
            self.domain, self.config["SLURM_PARTITION"] or "default", chimerax, self.config["SANDBOX"])

    def _process_id(self, state):
        return "job %s" % state["job"] if state.get("job") else None

    def refresh(self) -> None:
        try:
            self.jobs.snapshot(max_age=0)
        except SchedulerUnavailable:
            pass        # logged once by the table; sessions stay as they are

    def startup_allowance(self) -> float:
        return self.pending_timeout

    def make_workspace(self, path: str) -> None:
        os.makedirs(path, mode=0o700)
        if self.owner:
            os.chown(path, *self.owner)

    def paths(self, token: str) -> dict[str, str]:
        base = os.path.join(self.control_dir, token)
        return {"spec": base + ".json", "output": base + ".out", "node": base + ".d"}

    def sbatch_args(self, name: str, output: str, workspace: str) -> list[str]:
        config = self.config
        minutes = math.ceil(config["SESSION_MAX_LIFETIME"] / 60) + 1    # the sweeper ends it first
        args = ["--job-name", name, "--comment", self.comment, "--output", output, "--chdir", workspace,
                "--mem", "%dM" % config["SESSION_MEMORY_MB"], "--time", str(minutes),
                "--cpus-per-task", str(max(1, math.ceil(config["SESSION_CPUS"]))),
                "--ntasks", "1", "--no-requeue", "--export", "ALL"]     # ALL of slurm_cli.job_environment
        if config["SLURM_PARTITION"]:
            args += ["--partition", config["SLURM_PARTITION"]]
        if config["SLURM_ACCOUNT"]:
            args += ["--account", config["SLURM_ACCOUNT"]]
        return args + shlex.split(config["SLURM_EXTRA_ARGS"])

    def batch_script(self, spec_path: str) -> str:
        return self.template.substitute(python=shlex.quote(sys.executable), project=shlex.quote(PROJECT_ROOT),
                                        spec=shlex.quote(spec_path))

    def write_spec(self, marker: str, workspace: str, secret: str, paths: Mapping[str, str]) -> None:
        assert self.found is not None, "no ChimeraX found"     # a start needs one (`available`)
        node_config = {name: self.config[name] for name in NODE_SETTINGS}
        # Slurm's own cgroup (the job's --mem, --cpus-per-task) is the session's
        # share there: the node makes none of its own.
        node_config.update(CHIMERAX_PATH=self.found.path, CONTROL_DIR=paths["node"], CHIMERAX_PORT_RANGE="0",
                           CGROUPS="off", CGROUP_ROOT="",
                           SESSION_ADDRESS_SPACE_MB=address_space_mb(self.config, False))
        spec = {"marker": marker, "workspace": workspace, "secret": secret, "service_id": self.service_id,
                "config": node_config, "bind": self.config["SLURM_BIND_ADDRESS"],
                "startup_timeout": self.config["STARTUP_TIMEOUT"],
                "stop_grace": self.config["STOP_GRACE_PERIOD"]}
        descriptor = os.open(paths["spec"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(spec, out)

    def _start(self, marker, workspace, port):
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        token = uuid.uuid4().hex
        paths = self.paths(token)
        secret = secrets.token_urlsafe(32)
        self.write_spec(marker, workspace, secret, paths)
        name = job_name(marker)
        submitted = self.clock()
        try:
            job = self.slurm.submit(self.batch_script(paths["spec"]),
                                    self.sbatch_args(name, paths["output"], workspace))
        except (SchedulerUnavailable, SlurmError) as err:
            self._remove_files(token)
            raise StartupFailed("Slurm did not accept the job: %s" % err) from err
        log.info("%s submitted as job %s (sbatch %.0f ms)", name, job, (self.clock() - submitted) * 1e3)
        return {"job": job, "name": name, "token": token, "marker": marker, "secret": secret,
                "submitted": submitted, "channel": None, "port": None, "pending_reason": None}

    def _report(self, state):
        """The job's own report from its output file: ("ready"|"failed", data), None
        if it has not reported yet, or NOT_STARTED while there is no output file
        (slurmstepd makes it when the job starts on its node)."""
        try:
            with open(self.paths(state["token"])["output"], errors="replace") as out:
                text = out.read(256 * 1024)
        except FileNotFoundError:
            return NOT_STARTED
        except OSError:
            return None
        for line in text.splitlines():
            for kind, prefix in (("ready", READY), ("failed", FAILED)):
                if line.startswith(prefix):
                    try:
                        return kind, json.loads(line[len(prefix):])
                    except ValueError:
                        return "failed", {"message": "unreadable report: %r" % line[:200]}
        return None

    def _wait_ready(self, state, timeout, progress=None):
        """Ready when the job reports its channel. While the job is pending its
        scheduler's reason is reported through `progress`; pending longer than
        SLURM_PENDING_TIMEOUT, or running without a report for `timeout` s, fails.

        The output file is read (opened anew: what another host wrote is seen
        at open on NFS) every REPORT_POLL s once the job has started, which is
        the second or so it takes the job to start ChimeraX, and every
        QUEUED_POLL s before that, however long the job is queued."""
        state = dict(state)
        running_since, next_check = None, 0.0
        while True:
            report = self._report(state)
            if report and report[0] == "ready":
                data = report[1]
                state.update(channel={"host": data["host"], "port": data["port"],
                                      "fingerprint": data["fingerprint"]}, port=data["port"],
                             node=data.get("node"), sandbox=data.get("sandbox"), pending_reason=None,
                             chimerax_version=data.get("chimerax_version"))
                _log_times(state, data.get("times"), self.clock())
                return state
            if report and report is not NOT_STARTED:
                raise StartupFailed("ChimeraX could not start in job %s: %s"
                                    % (state["job"], report[1].get("message")))
            now = self.clock()
            if report is not NOT_STARTED and running_since is None:
                running_since = now
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + max(0.2, self.jobs.max_age / 2)
                job = self._job(state)
                if job is not None and not job.live:
                    raise StartupFailed("job %s ended (%s) before ChimeraX was ready" % (state["job"], job.state))
                if job is not None and job.pending:
                    if job.reason != state.get("pending_reason"):
                        state["pending_reason"] = job.reason
                        if progress:
                            progress(dict(state))
                elif job is not None and running_since is None:
                    running_since = now
            if running_since is None and now - state["submitted"] > self.pending_timeout:
                raise StartupFailed("job %s still pending after %g s (%s)"
                                    % (state["job"], self.pending_timeout, state.get("pending_reason") or "?"))
            if running_since is not None and now - running_since > timeout:
                raise StartupFailed("ChimeraX in job %s was not ready within %g s" % (state["job"], timeout))
            time.sleep(QUEUED_POLL if running_since is None else REPORT_POLL)

    def _job(self, state):
        """The job as squeue last listed it; None if unknown (controller down);
        a GONE job if the controller no longer lists it."""
        try:
            job = self.jobs.job(state["job"], since=state.get("submitted"))
        except SchedulerUnavailable:
            return None
        return job if job is not None else GONE

    def _poll(self, state):
        if not state.get("job"):
            return "no job was submitted"
        job = self._job(state)
        if job is None or job.live:
            return None     # running, or unknown: never "gone" for want of an answer
        return "job %s %s" % (state["job"], job.state.lower())

    def _limits_in_force(self, state):
        config = self.config
        return {"memory_mb": config["SESSION_MEMORY_MB"], "address_space_mb": address_space_mb(config, False),
                "cpus": max(1, math.ceil(config["SESSION_CPUS"])), "processes": None, "enforced_by": "slurm"}

    def _exit_reason(self, state):
        if not self._poll(state):
            return None
        return END_REASONS.get(self._job(state).state, "crashed")

    def _stop(self, state, grace):
        job = state.get("job")
        if job:
            self._cancel(job, grace)
        if state.get("token"):
            self._remove_files(state["token"])

    def _cancel(self, job, grace):
        """scancel, then wait until the controller no longer shows the job running:
        its processes (the job's own SIGTERM handling: `grace`) are gone by then."""
        deadline = time.monotonic() + grace + 30
        try:
            self.slurm.cancel(job)
        except SlurmError:
            pass            # already ended
        except SchedulerUnavailable as err:
            log.warning("job %s not cancelled (the controller did not answer: %s); "
                        "the sweeper cancels it as an orphan later", job, err)
            return
        while time.monotonic() < deadline:
            try:
                if self.slurm.job_state(job) not in LIVE_STATES:
                    return
            except (SchedulerUnavailable, SlurmError):
                return
            time.sleep(0.1)
        log.warning("job %s still listed as running %g s after scancel", job, grace + 30)

    def _remove_files(self, token):
        paths = self.paths(token)
        for name in ("spec", "output"):
            try:
                os.unlink(paths[name])
            except FileNotFoundError:
                pass
        shutil.rmtree(paths["node"], ignore_errors=True)

    def _channel(self, state):
        return channel_of(state)

    def _chimerax_path(self, state, workspace):
        return WORKSPACE if state.get("sandbox") == "bwrap" else workspace

    def _fetch_cache_path(self, state, path):
        # The node's sandbox binds the same FETCH_CACHE_DIR (a shared file system) read-only.
        if state.get("sandbox") != "bwrap":
            return path
        return os.path.join(FETCH_CACHE, os.path.relpath(path, self.config["FETCH_CACHE_DIR"]))

    def _adoptable(self, state, marker):
        # A pool process keeps the job (and name) it was started with after a
        # claim: the job id, its name and the secret identify it, not `marker`.
        if not state.get("job") or not state.get("channel"):
            return False
        job = self._job(state)     # None: the controller is down; the channel alone decides
        if job is not None and (not job.live or job.name != state.get("name")):
            return False
        return ping(self._channel(state), self.config["HEALTH_CHECK_TIMEOUT"])

    def _orphans(self, known_states, host_id=None):
        known = {str(s.get("job")) for s in known_states if s.get("job")}
        try:
            jobs = self.jobs.snapshot()      # a sweep has just refreshed it
        except SchedulerUnavailable:
            return []
        suffix = ":%s" % host_id if host_id else ""
        return [{"job": job.id, "name": job.name, "create_time": job.submitted}
                for job in jobs.values()
                if job.live and job.id not in known and job.comment.endswith(suffix)]


def _log_times(state, times, seen):
    """Where a cold start's time went: the job's own timestamps (the node's clock)
    against the service's (its sbatch, and when it read the report)."""
    if not isinstance(times, dict) or not log.isEnabledFor(logging.INFO):
        return
    start = state["submitted"]
    steps = ", ".join("%s +%.0f" % (name, (value - start) * 1e3) for name, value in times.items()
                      if isinstance(value, (int, float)))
    log.info("job %s ready: report read %.0f ms after sbatch (the job's steps, ms after sbatch: %s)",
             state["job"], (seen - start) * 1e3, steps)


class _Gone:
    live, pending, state, reason = False, False, "GONE", None


GONE = _Gone()

