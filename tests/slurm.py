"""A throwaway single-node Slurm for the tests and the benchmark: Debian's
slurm-wlm and munge with a private configuration, private ports, a private
munge socket and key, never the machine's own daemons or /etc/slurm.

The node's address is 127.0.0.2 (CLUSTER_NOTES.md: NodeAddr may differ from
the node name), so a launcher that assumes 127.0.0.1 fails its tests. The
daemons run in the foreground as children of the test process, so they,
and every job slurmd starts, belong to the test run's process tree.
"""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NODE_ADDRESS = "127.0.0.2"
LIMITED_PARTITION = "limited"       # MaxTime=1 minute: longer jobs stay pending (PartitionTimeLimit)


def available():
    return all(shutil.which(name) for name in ("slurmctld", "slurmd", "sbatch", "munged"))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_resources():
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    cpus = int(re.search(r"CPUs=(\d+)", out).group(1))
    memory = int(re.search(r"RealMemory=(\d+)", out).group(1))
    return cpus, memory


class SlurmCluster:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="slurm-")
        self.conf = os.path.join(self.base, "slurm.conf")
        self.node = socket.gethostname().split(".")[0]     # NodeName must be `hostname -s`
        self.daemons = {}
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def _munge(self):
        munge = pwd.getpwnam("munge")
        directory = os.path.join(self.base, "munge")
        os.mkdir(directory)
        os.chmod(directory, 0o711)     # munged: clients must reach its socket
        key = os.path.join(directory, "munge.key")
        with open(key, "wb") as out:
            out.write(os.urandom(128))
        os.chmod(key, 0o400)
        for path in (directory, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        # munged walks up from its socket: every folder above must be
        # searchable by it and writable by none but root (or sticky).
        for path in (self.base, tempfile.gettempdir()):
            os.chmod(path, os.stat(path).st_mode | 0o011)
        self.munge_socket = os.path.join(directory, "munge.socket")
        self._spawn("munged", ["runuser", "-u", "munge", "--", "munged", "--foreground",
                               "--socket=" + self.munge_socket, "--key-file=" + key,
                               "--pid-file=" + os.path.join(directory, "munged.pid"),
                               "--log-file=" + os.path.join(directory, "munged.log"),
                               "--seed-file=" + os.path.join(directory, "munged.seed")])
        _wait(lambda: os.path.exists(self.munge_socket), 10, "munged's socket")

    def write_config(self):
        cpus, memory = _node_resources()
        self.ports = (_free_port(), _free_port())
        for name in ("state", "spool"):
            os.makedirs(os.path.join(self.base, name), exist_ok=True)
        lines = [
            "ClusterName=cxstest",
            "SlurmctldHost=%s(%s)" % (self.node, NODE_ADDRESS),
            "SlurmctldPort=%d" % self.ports[0], "SlurmdPort=%d" % self.ports[1],
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", "AuthInfo=socket=%s" % self.munge_socket,
            # No cgroups (no systemd here): CLUSTER_NOTES.md.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none", "JobAcctGatherType=jobacct_gather/none",
            "SwitchType=switch/none", "MpiDefault=none", "ReturnToService=2", "MailProg=/bin/true",
            "KillWait=5", "MessageTimeout=5",
            # Sessions are interactive: schedule a batch job when it arrives, not up to 3 s later.
            "SchedulerParameters=batch_sched_delay=0",
            "StateSaveLocation=%s/state" % self.base, "SlurmdSpoolDir=%s/spool" % self.base,
            "SlurmctldPidFile=%s/slurmctld.pid" % self.base, "SlurmdPidFile=%s/slurmd.pid" % self.base,
            "SlurmctldLogFile=%s/slurmctld.log" % self.base, "SlurmdLogFile=%s/slurmd.log" % self.base,
            "NodeName=%s NodeAddr=%s CPUs=%d RealMemory=%d State=UNKNOWN"
            % (self.node, NODE_ADDRESS, cpus, memory - 1024),
            "PartitionName=debug Nodes=ALL Default=YES OverSubscribe=FORCE:20 MaxTime=INFINITE State=UP",
            "PartitionName=%s Nodes=ALL OverSubscribe=FORCE:20 MaxTime=1 State=UP" % LIMITED_PARTITION,
        ]
        with open(self.conf, "w") as out:
            out.write("\n".join(lines) + "\n")

    def _spawn(self, name, command):
        log = open(os.path.join(self.base, name + ".out"), "ab")
        try:
            self.daemons[name] = subprocess.Popen(command, env=self.env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def start(self):
        self._munge()
        self.write_config()
        self.start_controller(fresh=True)
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])
        _wait(self._node_idle, 30, "the Slurm node to be idle")
        return self

    def start_controller(self, fresh=False):
        self._spawn("slurmctld", ["slurmctld", "-D"] + (["-i"] if fresh else []))
        _wait(self._controller_answers, 30, "slurmctld to answer")

    def stop_controller(self):
        self._stop("slurmctld")

    def _controller_answers(self):
        self._check_alive("slurmctld")
        return self.run("sinfo", "-h", check=False).returncode == 0

    def _node_idle(self):
        self._check_alive("slurmd")
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        return bool(out) and all(state in ("idle", "mixed", "allocated") for state in out)

    def _check_alive(self, name):
        proc = self.daemons[name]
        if proc.poll() is not None:
            raise RuntimeError("%s exited (%s): %s" % (name, proc.returncode, self.log(name)))

    def log(self, name):
        parts = []
        for path in (os.path.join(self.base, name + ".out"), os.path.join(self.base, name + ".log")):
            if os.path.exists(path):
                with open(path, errors="replace") as text:
                    parts.append(text.read()[-3000:])
        return "\n".join(parts)

    def run(self, *args, check=True):
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check,
                              timeout=60)

    def jobs(self):
        """{job id: (name, state)} of every job the controller still lists."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T").stdout
        return {line.split("|")[0]: tuple(line.split("|")[1:]) for line in out.splitlines() if line}

    def live_jobs(self):
        return {job: info for job, info in self.jobs().items()
                if info[1] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")}

    def _stop(self, name):
        proc = self.daemons.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self):
        try:
            if "slurmctld" in self.daemons:
                live = self.live_jobs()
                if live:
                    self.run("scancel", *live, check=False)
                    _wait(lambda: not self.live_jobs(), 60, "the test cluster's jobs to end")
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                self._stop(name)
            shutil.rmtree(self.base, ignore_errors=True)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.1)
