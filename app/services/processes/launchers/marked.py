"""Finding this service's processes on this host by the markers in their
environment (spawn.child_env): what a restarted service, or a stop whose
recorded pid has ended, goes by."""
from collections.abc import Iterable, Iterator
import re

import psutil

from . import spawn


def ours(service_id: str) -> Iterator[tuple[psutil.Process, dict]]:
    """(process, its environment) of every live process marked as `service_id`'s."""
    for proc in psutil.process_iter(["pid", "ppid", "create_time"]):
        try:
            env = proc.environ()
            if env.get(spawn.SERVICE_VARIABLE) == service_id and proc.status() != psutil.STATUS_ZOMBIE:
                yield proc, env
        except (psutil.Error, OSError):
            continue


def carrying_token(service_id: str, token: str, since: float) -> list[psutil.Process]:
    """Outermost live processes of the service marked with `token`, started since `since`."""
    found = {proc.pid: proc for proc, env in ours(service_id)
             if env.get(spawn.TOKEN_VARIABLE) == token and proc.info["create_time"] >= since - 0.05}
    return [proc for proc in found.values() if proc.info["ppid"] not in found]


def orphans(service_id: str, known_states: Iterable[dict], host_id: str | None = None) -> list[dict]:
    """States of the outermost marked processes no known state accounts for
    (those `host_id` started, if given)."""
    known: set[int] = set()
    for state in known_states:
        known.update(p for p in (state.get("pid"), state.get("leader")) if p)
    marked, tokens, started_by = {}, {}, {}
    for proc, env in ours(service_id):
        if host_id is None or env.get(spawn.HOST_VARIABLE) == host_id:
            marked[proc.pid], tokens[proc.pid] = proc, env.get(spawn.TOKEN_VARIABLE)
            started_by[proc.pid] = env.get(spawn.OWNER_VARIABLE)
    found = []
    for pid, proc in marked.items():
        # Only the outermost marked process of each tree: stopping it ends the rest.
        if proc.info["ppid"] in marked or pid in known or _descends_from(proc, known):
            continue
        found.append({"pid": pid, "create_time": proc.info["create_time"], "leader": pid,
                      "leader_create_time": proc.info["create_time"], "sandbox": "unknown",
                      "token": safe_token(tokens[pid]), "owner": started_by[pid]})
    return found


def taken_by_another(state: dict) -> bool:
    """Whether the recorded pid runs another process now (then nothing of this
    state may be signalled), rather than having ended."""
    pid = state.get("leader", state.get("pid"))
    try:
        return bool(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def safe_token(token: str | None) -> str | None:
    # Read from a process's environment: only a plain hex token may name files (and cgroups) to remove.
    return token if token and re.fullmatch(r"[0-9a-f]{32}", token) else None


def _descends_from(proc, pids):
    try:
        return any(parent.pid in pids for parent in proc.parents())
    except psutil.Error:
        return False
