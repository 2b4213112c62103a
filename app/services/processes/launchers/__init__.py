"""Where and how ChimeraX processes run: the launcher contract, its
implementations, and the one place that picks one (`LAUNCHER`). Nothing
outside this package knows where a process runs."""
from collections.abc import Mapping
import os
from typing import Any

from chimerax_agent import AGENT_SCRIPT

from ..locate import find_chimerax
from . import cgroups
from .base import Launcher
from .local import LocalLauncher, machine_domain
from .ports import parse_port_range
from .sandbox import Bubblewrap, NoSandbox, SandboxUnavailable, choose_sandbox
from .slurm import SlurmLauncher, cluster_domain
from .slurm_cli import Slurm
from .spawn import Limits


def local_launcher(config: Mapping[str, Any], service_id: str) -> LocalLauncher:
    executable = find_chimerax(config["CHIMERAX_PATH"])
    path = executable.path if executable else None
    sandbox = choose_sandbox(config["SANDBOX"], path, AGENT_SCRIPT, config["SANDBOX_USER"],
                             config["SANDBOX_READONLY_PATHS"], config["SANDBOX_TMP_MB"],
                             fetch_cache=config.get("FETCH_CACHE_DIR") or None)
    shares = cgroups.choose(config["CGROUPS"], config["CGROUP_ROOT"], service_id,
                            cgroups.SessionLimits(memory_mb=config["SESSION_MEMORY_MB"],
                                                  processes=config["SESSION_MAX_PROCESSES"],
                                                  cpus=config["SESSION_CPUS"]))
    # RLIMIT_NPROC counts every process of a uid, all sessions together: only
    # where no cgroup counts each session's, and for a uid of ChimeraX's own.
    limits = Limits(memory_mb=cgroups.address_space_mb(config, shares is not None), file_mb=config["WORKSPACE_QUOTA_MB"],
                    open_files=config["SESSION_MAX_OPEN_FILES"],
                    processes=config["SANDBOX_MAX_PROCESSES"] if sandbox.owner and shares is None else None)
    control = config["CONTROL_DIR"] or os.path.join(config["WORKSPACE_ROOT"], ".control")
    return LocalLauncher(executable, sandbox, control, offscreen=config["CHIMERAX_OFFSCREEN"],
                         service_id=service_id, limits=limits, host_id=config["HOST_ID"],
                         port_range=parse_port_range(config["CHIMERAX_PORT_RANGE"]), cgroups=shares)



def slurm_launcher(config: Mapping[str, Any], service_id: str) -> SlurmLauncher:
    slurm = Slurm(conf=config["SLURM_CONF"])
    return SlurmLauncher(slurm, config, find_chimerax(config["CHIMERAX_PATH"]), service_id)


# LAUNCHER's values: (config, service id) -> Launcher, and (config) -> the
# domain its processes would have (known before the launcher is built: the
# store needs it to upgrade rows of older releases).
LAUNCHERS = {"local": (local_launcher, lambda config: machine_domain()),
             "slurm": (slurm_launcher, cluster_domain)}


def build_launcher(config: Mapping[str, Any], service_id: str) -> Launcher:
    launcher = LAUNCHERS[config["LAUNCHER"]][0](config, service_id)
    launcher.supported_chimerax = config["SUPPORTED_CHIMERAX"]
    launcher.allow_untested = config["CHIMERAX_ALLOW_UNTESTED"]
    return launcher


def launcher_domain(config: Mapping[str, Any]) -> str:
    return LAUNCHERS[config["LAUNCHER"]][1](config)


__all__ = ["Launcher", "LocalLauncher", "SlurmLauncher", "Bubblewrap", "NoSandbox", "SandboxUnavailable", "choose_sandbox",
           "LAUNCHERS", "build_launcher", "launcher_domain", "AGENT_SCRIPT"]
