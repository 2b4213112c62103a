"""Figure 8: what an idle session costs the host in memory (issue 38).

A server at the defaults (the sandbox, cgroups, gthread) with POOL_SIZE=0, so
that the server's only ChimeraX processes are the sessions measured (a pooled
process is the same process before it is claimed). `count` sessions are
created, then taken through four states in turn: empty; alanin.pdb (66 atoms)
uploaded and opened; the same after one snapshot (800x600, the API's default
supersample 3: what the offscreen renderer holds once used); alanin closed and
a generated large structure opened instead (LARGE_ATOMS atoms, LARGE_CHAINS
chains of poly-Ala helix; in sessions that have rendered once). In each state,
once every session is idle -- active, no command running, and its process
tree's CPU time and RSS steady over one second (polled, no fixed sleep) --
every process of each session's tree is read: the sandbox's outer bwrap, its
pid 1 and ChimeraX with anything it started, found from the pid the admin view
reports (as tests/conftest.py `sandbox_tree` does).

8a-8d. RSS, PSS and USS of the tree per session (psutil memory_full_info),
       medians over the sessions; beside them the physical pages all the
       sessions map, each counted once, per session (PSS without the sharing
       with processes outside them), and the session's cgroup usage (what
       SESSION_MEMORY_MB limits).
8e.    Sessions per GiB by PSS (each session's cost while `count` run), and by
       USS (what one more session adds: its private pages).
8f.    An empty session at the default (CHIMERAX_OFFSCREEN=lazy: rendering
       starts at the first draw) vs one with CHIMERAX_OFFSCREEN=true (a
       second server, after the first stopped): what rendering from the start
       loaded into every session.
8g.    Not the service's path: ChimeraX alone (the runtime, no sandbox, no
       agent, no offscreen rendering) started `count` times vs started once
       and forked `count` times (gc.freeze first), each child having opened and
       closed alanin.pdb: what a zygote would share.

The breakdown sums /proc/<pid>/smaps over each tree by mapping kind; the
libraries filed under offscreen rendering are those the sessions rendering
from their start map and no default empty session does. For the empty
state it also reads the anonymous pages of each ChimeraX (/proc/<pid>/pagemap,
/proc/<pid>/mem) and counts those whose content is the same in every session:
what KSM could merge. Reported, never asserted.
"""
import array
import collections
import hashlib
import os
import re
import statistics
import subprocess
import time

import psutil

from bench.fetch_figures import PDB
from cxs_client import Client
from tests.conftest import sandbox_tree

MiB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")
RUNTIME = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".chimerax", "bin", "chimerax")
LARGE_CHAINS, LARGE_COPIES = 40, 25      # 40 chains of 250 Ala residues, 6 atoms each: 60,000 atoms
LARGE_ATOMS = LARGE_CHAINS * LARGE_COPIES * 60
FIELDS = ("Rss", "Pss", "Anonymous", "Private_Clean", "Private_Dirty")
RENDERING = "system libraries loaded for offscreen rendering (Mesa, LLVM and their dependencies)"
KINDS = (
    "anonymous: [heap] (malloc's main arena)",
    "anonymous: other mappings (Python's arenas, malloc's other arenas, numpy, thread stacks)",
    "[stack] (the main thread's)",
    "Python runtime: interpreter, libpython, lib-dynload",
    "ChimeraX package: shared libraries (.so)",
    "other Python packages: shared libraries (numpy, ...)",
    RENDERING,
    "other system libraries (libc, libstdc++, libcrypto, ...)",
    "ChimeraX package: data files mapped",
    "other data files mapped (locale, gconv)",
    "other ([vdso], [vvar], devices, shared memory)",
    "the sandbox: its two bwrap processes, all mappings",
)


def memory_figures(server_class, workdir, workers, count=10):
    """(rows, breakdown: markdown text)."""
    os.makedirs(workdir, exist_ok=True)
    large = write_large_structure(os.path.join(workdir, "large.pdb"))
    states = {}
    server = server_class(os.path.join(workdir, "default"), workers, POOL_SIZE=0).start()
    try:
        owner, admin = client_of(server, "bench"), client_of(server, "root", "admin")
        sids = []
        try:
            for _ in range(count):
                sids.append(owner.create()["id"])
            states["empty"] = measure(owner, admin, sids, identical=True)
            for sid in sids:
                owner.upload(sid, PDB, "alanin.pdb")
                owner.upload(sid, large, "large.pdb")
                owner.run(sid, "open alanin.pdb")
            states["alanin"] = measure(owner, admin, sids)
            for sid in sids:
                owner.snapshot(sid)
            states["snapshot"] = measure(owner, admin, sids)
            for sid in sids:
                owner.run(sid, "close")
                owner.run(sid, "open large.pdb")
            states["large"] = measure(owner, admin, sids)
        finally:
            for sid in sids:
                owner.delete(sid)
    finally:
        server.stop()
    server = server_class(os.path.join(workdir, "offscreen"), workers, POOL_SIZE=0,
                          CHIMERAX_OFFSCREEN="true").start()
    try:
        owner, admin = client_of(server, "bench"), client_of(server, "root", "admin")
        sids = []
        try:
            for _ in range(count):
                sids.append(owner.create()["id"])
            states["offscreen at start"] = measure(owner, admin, sids)
        finally:
            for sid in sids:
                owner.delete(sid)
    finally:
        server.stop()
    rendering = {path for path in mapped(states["offscreen at start"]) - mapped(states["empty"]) if is_library(path)}
    forked = zygote(workdir, count)
    return rows(workers, count, states, forked), breakdown(workers, count, states, rendering)


ZYGOTE = """
import gc, os, sys
from chimerax.core.commands import run

def work():         # what each session does before it idles: its objects touched, some freed
    run(session, "open %s" % sys.argv[3], log=False)
    run(session, "close", log=False)

sys.stdout.flush()
if sys.argv[1] == "fork":
    gc.freeze()         # the preloaded objects out of the collector's sight: it would write to them
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    for _ in range(int(sys.argv[2])):
        if os.fork() == 0:
            os.close(hold_w)
            work()
            os.write(ready_w, b"x")
            os.read(hold_r, 1)      # until the parent ends
            os._exit(0)
    for _ in range(int(sys.argv[2])):
        os.read(ready_r, 1)
else:
    work()
os.write(1, b"\\nready %d\\n" % os.getpid())
sys.stdin.read()
"""


def zygote(workdir, count):
    """ChimeraX (the runtime, no sandbox, no agent, no offscreen rendering: a
    forked child has none of the renderer's threads) started `count` times, vs
    started once and forked `count` times after start-up; each opens and closes
    alanin.pdb, then idles. {"started"|"forked": [(pss, uss, rss)], "parent": (pss, uss, rss)}."""
    script = os.path.join(workdir, "zygote.py")
    with open(script, "w") as out:
        out.write(ZYGOTE)

    def start(mode):
        return subprocess.Popen([RUNTIME, "--nogui", "--exit", "--script", '"%s" %s %d %s' % (script, mode, count, PDB)],
                                cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def ready(proc):
        for line in proc.stdout:
            if line.startswith(b"ready "):
                return int(line.split()[1])
        raise RuntimeError("ChimeraX ended before it was ready (exit %s)" % proc.wait())

    def sizes(pids):
        return [(i.pss, i.uss, i.rss) for i in (psutil.Process(pid).memory_full_info() for pid in pids)]
    out, procs, children = {}, [], []
    try:
        procs = [start("solo") for _ in range(count)]
        out["started"] = sizes([ready(proc) for proc in procs])
        stop(procs)
        procs = [start("fork")]
        parent = ready(procs[0])
        children = psutil.Process(parent).children()
        out["forked"] = sizes(child.pid for child in children)
        out["parent"] = sizes([parent])[0]
    finally:
        stop(procs)
        for child in psutil.wait_procs(children, timeout=30)[1]:
            child.kill()
    return out


def stop(procs):
    for proc in procs:
        proc.stdin.close()      # each ends at its stdin's end; forked children at their parent's
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def mapped(state):
    """The files mapped by the ChimeraX process of any of the state's sessions."""
    return {key[1:] for files in state["files"] for key in files if key.startswith("\0")}


def client_of(server, user, role="user"):
    return Client(server.url, server.token(user, role)["Authorization"].split(" ", 1)[1], timeout=300)


def measure(owner, admin, sids, identical=False):
    """Each session's tree once all are idle: psutil totals, smaps by file, and
    the physical pages it maps (for the pages all sessions hold together)."""
    pids = {sid: admin.get(sid)["pid"] for sid in sids}
    settled = wait_idle(owner, sids, pids)
    out = {"settled": settled, "rss": [], "pss": [], "uss": [], "cgroup": [], "files": [], "processes": [],
           "frames": []}
    for sid in sids:
        tree = sandbox_tree(pids[sid])
        totals, files = collections.Counter(), collections.defaultdict(collections.Counter)
        frames = set()
        for proc in tree:
            try:
                info = proc.memory_full_info()
                sandbox = proc.name() == "bwrap"
                for path, values in smaps(proc.pid):
                    files[("bwrap" if sandbox else "") + "\0" + path].update(values)
                frames.update(present_frames(proc.pid))
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue        # ended meanwhile: not part of the tree any more
            totals.update(rss=info.rss, pss=info.pss, uss=info.uss)
        for key in ("rss", "pss", "uss"):
            out[key].append(totals[key])
        out["files"].append(files)
        out["frames"].append(frames)
        out["processes"].append(len(tree))
        out["cgroup"].append((admin.get(sid).get("usage") or {}).get("memory_bytes") or 0)
    trees = {p.pid for sid in sids for p in sandbox_tree(pids[sid])}
    out["others"] = others_mapping(trees)
    if identical:
        out["identical"] = identical_pages([pids[sid] for sid in sids])
    return out


def present_frames(pid):
    """The physical page frames of every present page of `pid` (root only:
    without CAP_SYS_ADMIN the kernel reports them as 0)."""
    frames = set()
    with open("/proc/%d/pagemap" % pid, "rb") as pagemap:
        for start, end, _anonymous in ranges(pid):
            for entry in pagemap_entries(pagemap, start, end):
                if entry >> 63 & 1 and entry & (1 << 55) - 1:
                    frames.add(entry & (1 << 55) - 1)
    return frames


def others_mapping(trees):
    """Processes outside the measured sessions that run the same ChimeraX
    (another user's tests, a pool): their sharing lowers every PSS here."""
    return sum(1 for proc in psutil.process_iter(["pid", "cmdline"])
               if proc.info["pid"] not in trees and "cxs_runtime" in (proc.info["cmdline"] or []))


def wait_idle(owner, sids, pids, timeout=120):
    """Seconds until every session is active with no command running and its
    tree's CPU time (< 10 ms) and RSS (< 256 KiB) steady over one second."""
    started = time.monotonic()
    deadline = started + timeout
    for sid in sids:
        while time.monotonic() < deadline:
            running = [c for c in owner.commands(sid)["commands"] if c.get("status") == "running"]
            if owner.get(sid)["status"] == "active" and not running:
                break
            time.sleep(0.1)
    history = []
    while time.monotonic() < deadline:
        now = time.monotonic()
        history.append((now, {sid: tree_sample(pids[sid]) for sid in sids}))
        before = [sample for at, sample in history if now - at >= 1.0]
        if before and all(abs(history[-1][1][sid][0] - before[-1][sid][0]) < 0.010
                          and abs(history[-1][1][sid][1] - before[-1][sid][1]) < 256 * 1024 for sid in sids):
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def tree_sample(pid):
    cpu = rss = 0.0
    for proc in sandbox_tree(pid):
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return cpu, rss


def smaps(pid):
    """(path, Counter of FIELDS in bytes) per mapping of /proc/<pid>/smaps;
    path "" for anonymous memory."""
    path, values = None, None
    with open("/proc/%d/smaps" % pid) as lines:
        for line in lines:
            head, _, rest = line.partition(":")
            if " " in head:         # a mapping's header: address perms offset dev inode [path]
                if path is not None:
                    yield path, values
                parts = line.split(None, 5)
                path, values = (parts[5].strip() if len(parts) == 6 else ""), collections.Counter()
            elif head in FIELDS:
                values[head] += int(rest.split()[0]) * 1024
    if path is not None:
        yield path, values


def is_library(path):
    return bool(re.search(r"\.so(\.[0-9.]+)?$", path.replace(" (deleted)", "")))


def kind_of(key, rendering):
    process, path = key.split("\0", 1)
    if process == "bwrap":
        return KINDS[11]
    if path == "[heap]":
        return KINDS[0]
    if path == "":
        return KINDS[1]
    if path == "[stack]":
        return KINDS[2]
    if path.startswith("[") or path.startswith("/dev/") or path.startswith("/memfd:") or "(deleted)" in path:
        return KINDS[10]
    if path in rendering:
        return KINDS[6]
    name = os.path.basename(path)
    if ("/site-packages/" not in path and "/lib/python3" in path) or name.startswith("libpython") \
            or re.match(r"python3(\.\d+)?$", name):
        return KINDS[3]
    if "/site-packages/chimerax/" in path:
        return KINDS[4] if is_library(path) else KINDS[8]
    if not is_library(path):
        return KINDS[9]
    return KINDS[5] if "/site-packages/" in path else KINDS[7]


def identical_pages(pids):
    """Per ChimeraX: (MiB of its present anonymous pages, MiB of them whose
    content is in every other session's too, MiB of them all zeros)."""
    hashed = []
    for pid in pids:
        pages = collections.Counter()
        try:
            with open("/proc/%d/pagemap" % pid, "rb") as pagemap, open("/proc/%d/mem" % pid, "rb") as mem:
                for start, end, anonymous in ranges(pid):
                    if not anonymous:
                        continue
                    for i, entry in enumerate(pagemap_entries(pagemap, start, end)):
                        # present (bit 63), not a file page or shared anonymous (bit 61)
                        if entry >> 63 & 1 and not entry >> 61 & 1:
                            page = os.pread(mem.fileno(), PAGE, start + i * PAGE)
                            pages[hashlib.blake2b(page, digest_size=16).digest()] += 1
        except OSError:
            return None
        hashed.append(pages)
    zero = hashlib.blake2b(bytes(PAGE), digest_size=16).digest()
    out = []
    for i, pages in enumerate(hashed):
        others = [p for j, p in enumerate(hashed) if j != i]
        common = sum(n for h, n in pages.items() if all(h in o for o in others))
        out.append((sum(pages.values()) * PAGE / MiB, common * PAGE / MiB, pages.get(zero, 0) * PAGE / MiB))
    return out


def ranges(pid):
    """(start, end, has anonymous pages) of each mapping of `pid`."""
    current = None
    with open("/proc/%d/smaps" % pid) as lines:
        for line in lines:
            head, _, rest = line.partition(":")
            if " " in head:
                if current:
                    yield current
                low, high = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
                # [vsyscall] lies above the user address space that pagemap covers
                current = (low, high, False) if high <= 1 << 47 else None
            elif head == "Anonymous" and current:
                current = current[:2] + (int(rest.split()[0]) > 0,)
    if current:
        yield current


def pagemap_entries(pagemap, start, end):
    entries = array.array("Q")
    entries.frombytes(os.pread(pagemap.fileno(), (end - start) // PAGE * 8, start // PAGE * 8))
    return entries


def write_large_structure(path):
    """LARGE_CHAINS chains of a continuous poly-Ala helix: alanin.pdb's ten Ala
    residues, each copy placed after the last by the helix's own step (the
    junction's C-N is 1.33 A), chains side by side 30 A apart."""
    import numpy as np
    residues = collections.OrderedDict()
    for line in open(PDB):
        if line.startswith("ATOM") and line[17:20] == "ALA":
            xyz = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
            residues.setdefault(int(line[22:26]), []).append((line[12:16], xyz))

    def frame(atoms):
        at = {name.strip(): xyz for name, xyz in atoms}
        e1 = at["C"] - at["CA"]
        e1 /= np.linalg.norm(e1)
        e2 = at["N"] - at["CA"]
        e2 -= e1 * (e2 @ e1)
        e2 /= np.linalg.norm(e2)
        return np.column_stack([e1, e2, np.cross(e1, e2)]), at["CA"]

    def then(a, b):     # a after b
        return a[0] @ b[0], a[0] @ b[1] + a[1]

    def inverse(a):
        return a[0].T, -a[0].T @ a[1]
    order = list(residues.values())
    step = then(frame(order[-1]), inverse(frame(order[-2])))        # one residue along the helix
    copy = then(step, then(frame(order[-1]), inverse(frame(order[0]))))
    chains = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    serial, out = 0, []
    for c in range(LARGE_CHAINS):
        place = (np.eye(3), np.zeros(3))
        shift = np.array([30.0 * (c % 8), 30.0 * (c // 8), 0.0])
        number = 0
        for _ in range(LARGE_COPIES):
            for atoms in order:
                number += 1
                for name, xyz in atoms:
                    serial += 1
                    x, y, z = place[0] @ xyz + place[1] + shift
                    out.append("ATOM  %5d %-4s ALA %s%4d    %8.3f%8.3f%8.3f  1.00  0.00          %2s\n"
                               % (serial, name, chains[c], number, x, y, z, name.strip()[0]))
            place = then(place, copy)
        out.append("TER\n")
    with open(path, "w") as pdb:
        pdb.writelines(out + ["END\n"])
    return path


def med(values):
    return statistics.median(values) / MiB


def together(state):
    """MiB per session of the physical pages all the state's sessions map (each
    page once), as text; "n/a" where the kernel hid the frames (not root)."""
    pages = len(set().union(*state["frames"]))
    return "%.1f" % (pages * PAGE / len(state["frames"]) / MiB) if pages else "n/a"


STATES = (("empty", "empty", "empty"), ("alanin", "alanin.pdb open (66 atoms)", "alanin"),
          ("snapshot", "alanin.pdb open, after one snapshot", "after snapshot"),
          ("large", "large structure open instead (%d atoms, %d chains)" % (LARGE_ATOMS, LARGE_CHAINS), "large"))


def rows(workers, count, states, zygote):
    out, empty = [], states["empty"]
    for letter, (key, label, _short) in zip("abcd", STATES, strict=True):
        state = states[key]
        out.append((workers, "8%s. idle session, %s: RSS / PSS / USS of its tree (median of %d)" % (
            letter, label, count), "%.1f / %.1f / %.1f MiB" % (med(state["rss"]), med(state["pss"]),
                                                           med(state["uss"])),
            "held together %s; cgroup %.1f MiB%s" % (together(state), med(state["cgroup"]), "" if key == "empty"
                                                       else "; PSS %+.1f vs empty" % (med(state["pss"]) -
                                                                                     med(empty["pss"]))),
            "informational", True))
    out.append((workers, "8e. sessions per GiB by PSS: " + " / ".join(short for _, _, short in STATES),
                " / ".join("%.1f" % (1024 / med(states[key]["pss"])) for key, _, _ in STATES),
                "one more, by USS: " + " / ".join("%.1f" % (1024 / med(states[key]["uss"])) for key, _, _ in STATES),
                "informational", True))
    eager = states["offscreen at start"]
    out.append((workers, "8f. empty session, rendering started at its first draw (default) vs at its start: "
                "PSS / USS (median of %d)" % count,
                "%.1f / %.1f MiB vs %.1f / %.1f MiB" % (med(empty["pss"]), med(empty["uss"]), med(eager["pss"]),
                                                        med(eager["uss"])),
                "PSS ratio %.2f" % (med(empty["pss"]) / med(eager["pss"])), "informational", True))
    started, forked = ([statistics.median(x) / MiB for x in zip(*zygote[k], strict=True)] for k in ("started", "forked"))
    out.append((workers, "8g. ChimeraX alone (no sandbox, agent, offscreen) forked from one started, vs each "
                "started: PSS / USS (median of %d)" % count, "%.1f / %.1f MiB vs %.1f / %.1f MiB" % (
                    forked[0], forked[1], started[0], started[1]),
                "USS ratio %.2f; the parent %.1f MiB PSS" % (forked[1] / started[1], zygote["parent"][0] / MiB),
                "informational", True))
    return out


def by_kind(state, rendering):
    """Per session: {kind: Counter of FIELDS}."""
    sessions = []
    for files in state["files"]:
        kinds = collections.defaultdict(collections.Counter)
        for key, values in files.items():
            kinds[kind_of(key, rendering)].update(values)
        sessions.append(kinds)
    return sessions


def median_of(sessions, kind, field):
    return statistics.median(s[kind][field] if kind in s else 0 for s in sessions) / MiB


def breakdown(workers, count, states, rendering):
    kinds = {key: by_kind(states[key], rendering) for key in states}
    lines = ["Figure 8 breakdown (-w %d): each session's tree summed by mapping kind, medians of %d sessions, "
             "MiB. \"private\" is its anonymous memory (heap, and copy-on-write pages of file mappings such as "
             "relocated library data): never shared; the rest of PSS is file pages, shared through the page "
             "cache and divided among the processes mapping them." % (workers, count), "",
             "| mapping kind | empty RSS | empty PSS | empty private | alanin PSS | after snapshot PSS | large PSS "
             "| offscreen at start PSS |", "|---|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        lines.append("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
            kind, median_of(kinds["empty"], kind, "Rss"), median_of(kinds["empty"], kind, "Pss"),
            median_of(kinds["empty"], kind, "Anonymous"), median_of(kinds["alanin"], kind, "Pss"),
            median_of(kinds["snapshot"], kind, "Pss"), median_of(kinds["large"], kind, "Pss"),
            median_of(kinds["offscreen at start"], kind, "Pss")))
    lines.append("| **total (median of totals)** | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
        med(states["empty"]["rss"]), med(states["empty"]["pss"]),
        statistics.median(sum(s[k]["Anonymous"] for k in s) for s in kinds["empty"]) / MiB,
        med(states["alanin"]["pss"]), med(states["snapshot"]["pss"]), med(states["large"]["pss"]),
        med(states["offscreen at start"]["pss"])))

    files = collections.defaultdict(list)
    for session in states["empty"]["files"]:
        for key, values in session.items():
            if key.startswith("\0") and key[1:] not in ("", "[heap]", "[stack]"):
                files[key[1:]].append(values)
    top = sorted(files, key=lambda p: -statistics.median(v["Rss"] for v in files[p]))[:12]
    lines += ["", "Largest file mappings of an empty session's ChimeraX (medians, MiB):", "",
              "| file | RSS | PSS | private |", "|---|---|---|---|"]
    for path in top:
        lines.append("| %s%s | %.1f | %.1f | %.1f |" % (
            re.sub(r"^.*/site-packages/", "site-packages/", path.replace(os.path.expanduser("~"), "~")),
            " (rendering)" if path in rendering else "",
            *(statistics.median(v[f] for v in files[path]) / MiB for f in ("Rss", "Pss", "Anonymous"))))
    lines += ["", "Loaded only for offscreen rendering (mapped by sessions with CHIMERAX_OFFSCREEN=true, by no "
              "default session before its first draw): %s." % ", ".join(sorted(os.path.basename(p) for p in rendering))]

    identical = states["empty"].get("identical")
    if identical:
        anon, common, zero = (statistics.median(x[i] for x in identical) for i in range(3))
        lines += ["", "Anonymous pages of an empty session's ChimeraX: %.1f MiB present, of which %.1f MiB "
                  "byte-identical in all %d sessions (%.1f MiB of them all zeros)." % (anon, common, count, zero)]
    lines += ["", "Per state (%s): idle reached after %s s; pages the %d sessions map, each counted once, per "
              "session: %s MiB (PSS: %s); ChimeraX processes on the host outside the measured sessions: %s. "
              "Processes per session tree: %d." % (
                  ", ".join(states), ", ".join("%.1f" % s["settled"] if s["settled"] is not None else "NOT settled"
                                               for s in states.values()), count,
                  ", ".join(together(s) for s in states.values()),
                  ", ".join("%.1f" % med(s["pss"]) for s in states.values()),
                  ", ".join(str(s["others"]) for s in states.values()),
                  statistics.median(states["empty"]["processes"]))]
    return "\n".join(lines)
