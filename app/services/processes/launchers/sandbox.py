"""The OS sandbox around each ChimeraX: bubblewrap, or none.

A sandbox turns ChimeraX's command line into the one to spawn. `Bubblewrap`
builds the file system from nothing, so whatever is not listed here does not
exist for ChimeraX:

- read-only: /usr (and the merged-/usr links), a few files of /etc that the
  dynamic linker and Python read, the ChimeraX installation found from its
  executable through symlinks, SANDBOX_READONLY_PATHS, and the agent;
- read-write: the session's workspace, always at /session, nothing else;
- private: /tmp, also $HOME (a small tmpfs), /proc (its own pid namespace),
  /dev (null, zero, urandom...), no network at all (its own network
  namespace holds only a loopback), its own IPC and UTS namespaces.

When the service runs as root, bubblewrap sets up the namespaces as root and
`setpriv` then becomes SANDBOX_USER, clears every capability (bounding set
included) and sets no-new-privileges before ChimeraX starts, so ChimeraX has
neither root's nor the service account's rights. Run as another user, the
service has no uid to give away: bubblewrap runs unprivileged in a user
namespace and ChimeraX keeps the service account's uid (a warning at start).
"""
from collections.abc import Iterable, Mapping
import logging
import os
import pwd
import shutil
import subprocess
from typing import Any

log = logging.getLogger("cxs.sandbox")

WORKSPACE = "/session"
AGENT_DIR = "/opt/cxs-agent"
FETCH_CACHE = "/opt/cxs-fetch-cache"     # FETCH_CACHE_DIR, read-only
HOME = "/tmp"
SYSTEM_ROOTS = ("/usr",)
# Files of /etc that the dynamic linker, Python's platform and `distro`
# modules (PNG metadata) and time zones read; nothing with secrets.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/debian_version",
             "/etc/os-release", "/etc/lsb-release", "/etc/localtime", "/etc/fonts", "/etc/alternatives")
MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(RuntimeError):
    pass


class NoSandbox:
    """ChimeraX runs as the service account with the host's whole view."""
    name = "none"
    unix_channel = False        # no sandbox: a TCP port with a secret
    owner = None

    def __init__(self, agent_script: str) -> None:
        self.agent_script = agent_script

    def wrap(self, command: list[str], workspace: str) -> list[str]:
        return command

    def inside(self, workspace: str) -> str:
        return workspace

    def cache_path(self, path: str) -> str:
        return path

    def describe(self) -> str:
        return "none (ChimeraX runs as the service account, with the host's files and network)"


class Bubblewrap:
    name = "bwrap"
    unix_channel = True         # no network inside: the channel is a socket passed in

    def __init__(self, executable: str, agent_script: str, user: str = "cxs-sandbox",
                 readonly_paths: Iterable[str] = (), tmp_mb: int = 64, bwrap: str | None = None,
                 fetch_cache: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "/usr/bin/bwrap"
        self.setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        self.agent_script = os.path.join(AGENT_DIR, os.path.basename(agent_script))
        self.privileged = os.geteuid() == 0
        self.owner = None
        if self.privileged:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise SandboxUnavailable("SANDBOX_USER %r does not exist (the Makefile creates it: "
                                         "useradd --system %s)" % (user, user)) from None
            if entry.pw_uid == 0:
                raise SandboxUnavailable("SANDBOX_USER must not be root")
            self.owner = (entry.pw_uid, entry.pw_gid)
        self.user = user
        self.fetch_cache = os.path.realpath(fetch_cache) if fetch_cache else None
        readonly = installation_paths(executable) + [os.path.realpath(p) for p in readonly_paths]
        self._fixed = self._fixed_arguments(readonly, os.path.dirname(os.path.abspath(agent_script)),
                                            tmp_mb, executable)

    def _fixed_arguments(self, readonly, agent_dir, tmp_mb, executable):
        args = [self.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--new-session"]
        if self.privileged:
            # setpriv needs these three to change uid and clear the bounding
            # set (DAC_READ_SEARCH: bwrap's chdir into the sandbox user's
            # 0700 workspace); the change of uid then clears them all.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP", "--cap-add", "CAP_DAC_READ_SEARCH"]
        else:
            args += ["--unshare-user", "--disable-userns"]
        # The private mounts first: binds below may lie under one of them (an
        # installation in /tmp/...) and must be mounted on top, not hidden.
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(tmp_mb * 2**20), "--tmpfs", "/tmp"]
        for root in SYSTEM_ROOTS:
            args += ["--ro-bind", root, root]
        for link in MERGED_USR:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += ["--ro-bind", link, link]
        made = {"/tmp", "/proc", "/dev"}      # mounted above: never re-created or re-permissioned
        cache = [FETCH_CACHE] if self.fetch_cache else []
        for path in [p for p in ETC_FILES if os.path.exists(p)] + readonly + [AGENT_DIR] + cache:
            args += _parents(path, made)
        for path in ETC_FILES:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        for path in readonly:
            args += ["--ro-bind", path, path]
        if not any(_under(executable, root) for root in readonly + list(SYSTEM_ROOTS)):
            args += ["--ro-bind", executable, executable]
        args += ["--ro-bind", agent_dir, AGENT_DIR]
        if self.fetch_cache:
            args += ["--ro-bind", self.fetch_cache, FETCH_CACHE]
        args += ["--setenv", "HOME", HOME, "--setenv", "TMPDIR", "/tmp"]
        return args

    def wrap(self, command: Iterable[str], workspace: str) -> list[str]:
        args = list(self._fixed) + ["--bind", workspace, WORKSPACE, "--chdir", WORKSPACE, "--"]
        if self.owner:
            uid, gid = self.owner
            args += [self.setpriv, "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        return args + list(command)

    def inside(self, workspace: str) -> str:
        return WORKSPACE

    def cache_path(self, path: str) -> str:
        """A file of the fetch cache as ChimeraX sees it (bound read-only)."""
        if not self.fetch_cache:
            return path
        return os.path.join(FETCH_CACHE, os.path.relpath(os.path.realpath(path), self.fetch_cache))

    def describe(self) -> str:
        who = ("as %s (uid %d)" % (self.user, self.owner[0]) if self.owner
               else "as the service account's uid (not root: no uid to give away)")
        return "bwrap %s, no network, workspace only writable path" % who

    def probe(self) -> None:
        """Raise SandboxUnavailable unless this host can build the sandbox (once per process)."""
        key = tuple(self._fixed)
        if key in _WORKING:
            return
        if not os.path.exists(self.bwrap):
            raise SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")
        scratch = _scratch_dir()
        try:
            if self.owner:
                os.chown(scratch, *self.owner)
            done = subprocess.run(self.wrap(["/usr/bin/true"], scratch), capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as err:
            raise SandboxUnavailable("bubblewrap could not be run: %s" % err) from err
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if done.returncode != 0:
            raise SandboxUnavailable("bubblewrap does not work here: %s"
                                     % done.stderr.decode(errors="replace").strip()[:300])
        _WORKING.add(key)


_WORKING: set[tuple] = set()


def _scratch_dir():
    import tempfile
    return tempfile.mkdtemp(prefix="cxs-sandbox-probe-")


def _under(path, root):
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _parents(path, made):
    # Mount points bwrap creates itself are 0700: give them the host's 0755
    # so the unprivileged sandbox user can walk down to what is bound there.
    args = []
    parent = os.path.dirname(path)
    chain = []
    while parent not in ("/", "") and parent not in made:
        chain.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(chain):
        made.add(directory)
        if directory in MERGED_USR or any(_under(directory, r) for r in SYSTEM_ROOTS):
            continue
        args += ["--perms", "0755", "--dir", directory]
    return args


def installation_paths(executable: str, depth: int = 3) -> list[str]:
    """The ChimeraX installation (folder above bin/) and what its symlinks lead to
    outside it (a virtualenv's Python, a package's shared files): each as a folder."""
    real = os.path.realpath(executable)
    root = _prefix(real)
    found = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath[len(root):].count(os.sep) >= depth:
            dirnames[:] = []
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            target = os.path.realpath(path)
            if not os.path.exists(target) or any(_under(target, r) for r in found + list(SYSTEM_ROOTS)):
                continue
            found.append(_prefix(target))
    return _outermost(found)


def _prefix(path):
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.basename(directory) in ("bin", "MacOS"):
        directory = os.path.dirname(directory)
    return directory


def _outermost(paths):
    kept = []
    for path in sorted(set(paths), key=len):
        if not any(_under(path, k) for k in kept) and not any(_under(path, r) for r in SYSTEM_ROOTS):
            kept.append(path)
    return kept


def choose_sandbox(setting: str | None, executable: str | None, agent_script: str, user: str,
                   readonly_paths: Iterable[str], tmp_mb: int, fetch_cache: str | None = None) -> NoSandbox | Bubblewrap:
    """SANDBOX=auto|bwrap|none: the sandbox to use. `bwrap` that cannot work is an
    error; `auto` falls back to none with a warning."""
    setting = (setting or "auto").lower()
    if setting not in ("auto", "bwrap", "none"):
        raise SandboxUnavailable("SANDBOX must be auto, bwrap or none, not %r" % setting)
    if setting == "none" or executable is None:
        if setting == "none":
            log.warning("SANDBOX=none: ChimeraX runs without an OS sandbox, as the service account; "
                        "the command policy is the only protection")
        return NoSandbox(agent_script)
    try:
        sandbox = Bubblewrap(executable, agent_script, user, readonly_paths, tmp_mb, fetch_cache=fetch_cache)
        sandbox.probe()
        return sandbox
    except SandboxUnavailable as err:
        if setting == "bwrap":
            raise
        log.warning("no OS sandbox (%s): ChimeraX runs as the service account; set SANDBOX=none "
                    "to acknowledge, or install bubblewrap", err)
        return NoSandbox(agent_script)


def sandbox_owner(config: Mapping[str, Any]) -> tuple[int, int] | None:
    """The uid/gid ChimeraX runs as on the nodes (SANDBOX_USER when jobs run as root)."""
    if os.geteuid() != 0 or config["SANDBOX"] == "none":
        return None
    try:
        entry = pwd.getpwnam(config["SANDBOX_USER"])
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid
