"""Whether per-session cgroups hold on this host at the default CGROUPS=auto
(tests whose expectations differ with and without them ask)."""
import functools

from app.services.processes.launchers import cgroups


@functools.cache
def cgroups_here() -> bool:
    return cgroups.choose("auto", "", "probe", cgroups.SessionLimits()) is not None
