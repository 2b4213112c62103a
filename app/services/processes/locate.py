"""Finding a ChimeraX executable: configured path, official installs, then our runtime."""
from dataclasses import dataclass
import glob
import os
import shutil

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TEST_RUNTIME = os.path.join(PROJECT_ROOT, ".chimerax", "bin", "chimerax")

OFFICIAL_CANDIDATES = (
    "/usr/bin/chimerax",
    "/usr/local/bin/chimerax",
    "/opt/UCSF/ChimeraX/bin/ChimeraX",
    "/opt/UCSF/ChimeraX*/bin/ChimeraX",
    "/usr/lib/ucsf-chimerax*/bin/ChimeraX",
    "/Applications/ChimeraX*.app/Contents/MacOS/ChimeraX",
)


@dataclass(frozen=True)
class Executable:
    path: str
    kind: str     # "configured", "official" or "test runtime"


def _runnable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def find_chimerax(configured: str = "") -> Executable | None:
    """The executable to launch, or None. An explicit setting is never second-guessed."""
    if configured:
        return Executable(configured, "configured") if _runnable(configured) else None
    on_path = shutil.which("ChimeraX") or shutil.which("chimerax")
    if on_path and os.path.realpath(on_path) != os.path.realpath(TEST_RUNTIME):
        return Executable(on_path, "official")
    for pattern in OFFICIAL_CANDIDATES:
        for path in sorted(glob.glob(pattern), reverse=True):
            if _runnable(path):
                return Executable(path, "official")
    if _runnable(TEST_RUNTIME):
        return Executable(TEST_RUNTIME, "test runtime")
    return None
