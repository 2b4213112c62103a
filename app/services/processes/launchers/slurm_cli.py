"""Slurm through its own command-line tools: sbatch, squeue, scancel.

The CLI, not pyslurm: pyslurm is built against one Slurm release and Debian's
22.05 is not it (CLUSTER_NOTES.md); the CLI is what batchspawner and
dask-jobqueue use, and it is stable across releases.

Job states come from one `squeue` for all of this service's jobs at a time
(`JobTable`), shared by every session of a process and refreshed at most
every `max_age` seconds: a sweep of a thousand sessions asks the controller
once. A controller that does not answer makes the table *unknown*, never
empty: nobody may conclude from silence that a job is gone.
"""
from collections.abc import Callable, Iterable
import logging
import os
import pwd
import subprocess
import threading
import time

log = logging.getLogger("cxs.slurm")

# Output of a controller that is down or overloaded (not of a job's fate).
UNREACHABLE = ("unable to contact slurm controller", "socket timed out", "connection refused",
               "connect failure", "slurm_receive_msg", "communication connection failure",
               "resource temporarily unavailable", "transient", "zero bytes were transmitted")
# squeue's states of a job that still holds (or waits for) a node.
LIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
               "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}
FIELDS = "%i|%j|%T|%r|%B|%k|%V"


class SchedulerUnavailable(RuntimeError):
    """The controller did not answer: job states are unknown for now."""


class SlurmError(RuntimeError):
    """Slurm refused a request (bad partition, account, limits...)."""


def job_environment(env: dict[str, str]) -> dict[str, str]:
    """What sbatch gets as its environment, and (--export ALL) the job as its own:
    the commands' search path, the account's home and name, and Slurm's own
    variables (SLURM_CONF, SBATCH_* defaults a deployment sets), never the rest of
    the service's environment (its secrets).

    Not `--export NONE`: with it slurmd loads the account's login environment
    first (`su - user -c env`, "get env for user" in its log), 0.1 s per start,
    and 1.1 s whenever its wait for `su` to exit loses the race and sleeps a
    second (BENCHMARKS.md, figure 7); the batch script sets what the job needs."""
    account = pwd.getpwuid(os.geteuid())
    chosen = {"PATH": env.get("PATH", "/usr/bin:/bin"), "HOME": account.pw_dir, "USER": account.pw_name,
              "LOGNAME": account.pw_name}
    chosen.update((name, value) for name, value in env.items() if name.startswith(("SLURM_", "SBATCH_")))
    return chosen


class Slurm:
    def __init__(self, conf: str = "", timeout: float = 30) -> None:
        self.env = dict(os.environ)
        if conf:
            self.env["SLURM_CONF"] = conf
        self.submit_env = job_environment(self.env)
        self.timeout = timeout

    def run(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        try:
            done = subprocess.run(list(args), input=stdin, env=env or self.env, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise SchedulerUnavailable("%s did not answer within %g s" % (args[0], self.timeout)) from None
        except FileNotFoundError:
            raise SlurmError("%s is not installed (apt-get install slurm-client)" % args[0]) from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            if any(text in message.lower() for text in UNREACHABLE):
                raise SchedulerUnavailable(message)
            raise SlurmError("%s: %s" % (args[0], message))
        return done.stdout

    def submit(self, script: str, args: Iterable[str]) -> str:
        """sbatch --parsable: the job id. The job's environment is `submit_env` (job_environment)."""
        out = self.run("sbatch", "--parsable", *args, stdin=script, env=self.submit_env).strip()
        return out.split(";")[0]        # "id" or "id;cluster"

    def cancel(self, job_id: str | int) -> None:
        self.run("scancel", str(job_id))

    def jobs(self, name_prefix: str, comment: str) -> dict[str, "Job"]:
        """{job id: Job} of the jobs named `name_prefix`... whose comment starts with `comment`
        that the controller still lists (ended ones
        for MinJobAge seconds too)."""
        out = self.run("squeue", "-h", "--me", "-t", "all", "-o", FIELDS)
        found = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) != 7:
                continue
            job = Job(*parts)
            if job.name.startswith(name_prefix) and job.comment.startswith(comment):
                found[job.id] = job
        return found

    def job_state(self, job_id: str | int) -> str | None:
        """One job's state, or None once the controller no longer lists it."""
        out = self.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T").strip()
        return out or None


class Job:
    def __init__(self, job_id: str, name: str, state: str, reason: str, node: str, comment: str,
                 submitted: str) -> None:
        self.id, self.name, self.state = job_id, name, state
        self.reason = None if reason in ("None", "") else reason
        self.node, self.comment = node, comment
        self.submitted = _epoch(submitted)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"


def _epoch(text):
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


class JobTable:
    """The last `squeue` answer, shared by every thread of a process."""
    _jobs: dict[str, Job] | None
    _at: float | None
    _error: SchedulerUnavailable | None

    def __init__(self, slurm: Slurm, name_prefix: str, comment: str, max_age: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slurm, self.name_prefix, self.comment = slurm, name_prefix, comment
        self.max_age, self.clock = max_age, clock
        self._lock = threading.Lock()
        self._jobs, self._at, self._error = None, None, None
        self._asked_at = 0.0       # wall clock when the last squeue began
        self.queries = 0

    def snapshot(self, max_age: float | None = None, since: float | None = None) -> dict[str, Job]:
        """{id: Job}, or raise SchedulerUnavailable while the controller does not answer.
        `since` (wall clock): an answer from before then cannot know the job; ask again."""
        max_age = self.max_age if max_age is None else max_age
        with self._lock:
            stale = self._at is None or self.clock() - self._at >= max_age
            if stale or (since is not None and self._asked_at < since):
                self._asked_at = time.time()
                self.queries += 1
                try:
                    self._jobs, self._error = self.slurm.jobs(self.name_prefix, self.comment), None
                except SchedulerUnavailable as err:
                    if self._error is None:
                        log.warning("Slurm controller unreachable; job states unknown until it answers: %s",
                                    err)
                    self._jobs, self._error = None, err
                self._at = self.clock()
            if self._error is not None:
                raise SchedulerUnavailable(str(self._error))
            assert self._jobs is not None       # the last squeue answered (no error): its jobs
            return self._jobs

    def job(self, job_id: str | int, max_age: float | None = None, since: float | None = None) -> Job | None:
        """The Job, or None if the controller does not list it (ended long ago)."""
        return self.snapshot(max_age, since).get(str(job_id))
