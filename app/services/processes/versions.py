"""Which ChimeraX releases the service supports (SUPPORTED_CHIMERAX, e.g.
`1.6-1.11`: the releases whose internals chimerax_agent/hooks.py lists were
read, docs/runtime.md) and which release an executable is, read without
starting it."""
import glob
import os
import re

VERSION = re.compile(r"^\s*version\s*=\s*['\"]([0-9][0-9A-Za-z.+-]*)['\"]", re.M)
# Where an installation keeps chimerax/core/buildinfo.py, from its executable's folder:
# Linux packages and the tarball (lib/python3.*/site-packages), macOS (Contents/lib),
# this project's runtime (venv/lib/...), and a Python-style lib/ without the version.
BUILDINFO = ("../lib/python3*/site-packages/chimerax/core/buildinfo.py",
             "../venv/lib/python3*/site-packages/chimerax/core/buildinfo.py",
             "../Library/Frameworks/Python.framework/Versions/3*/lib/python3*/site-packages/"
             "chimerax/core/buildinfo.py",
             "../lib/site-packages/chimerax/core/buildinfo.py")


def parse_range(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """`1.6-1.11` -> ((1, 6), (1, 11)): the first and last supported release."""
    low, sep, high = text.strip().partition("-")
    first, last = release(low), release(high if sep else low)
    if first is None or last is None or first > last:
        raise ValueError("use FIRST-LAST releases such as 1.6-1.11")
    return first, last


def release(version: str | None) -> tuple[int, int] | None:
    """The (major, minor) release of a version string: `1.10.1` -> (1, 10)."""
    match = re.match(r"^\s*(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def supported(version: str | None, supported_range: str) -> bool:
    found = release(version)
    first, last = parse_range(supported_range)
    return found is not None and first <= found <= last


def releases(supported_range: str) -> list[str]:
    """Every release in the range by minor number (`1.6`, `1.7`, ... `1.11`)."""
    (major, first), (last_major, last) = parse_range(supported_range)
    if major != last_major:
        raise ValueError("a range across major releases cannot be listed")
    return ["%d.%d" % (major, minor) for minor in range(first, last + 1)]


def installed_version(executable: str | None) -> str | None:
    """The version an installation declares (chimerax.core.buildinfo), or None."""
    if not executable:
        return None
    folder = os.path.dirname(os.path.realpath(executable))
    for pattern in BUILDINFO:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            try:
                with open(path) as text:
                    match = VERSION.search(text.read())
            except OSError:
                continue
            if match:
                return match.group(1)
    return None


def describe(configured: str, supported_range: str, allow_untested: bool = False) -> str:
    """The line `make run` prints: which ChimeraX the service would start, its
    release, and whether that is supported."""
    from .locate import find_chimerax
    found = find_chimerax(configured)
    if found is None:
        return "ChimeraX used: none found (set CHIMERAX_PATH, or `make chimerax` for the test runtime)"
    version = installed_version(found.path)
    if version is None:
        verdict = "release unknown: each start reports it, and one outside %s is refused" % supported_range
    elif supported(version, supported_range):
        verdict = "supported (SUPPORTED_CHIMERAX=%s)" % supported_range
    else:
        verdict = "NOT supported (SUPPORTED_CHIMERAX=%s): %s" % (
            supported_range, "started anyway, CHIMERAX_ALLOW_UNTESTED is set" if allow_untested
            else "sessions will not start")
    return "ChimeraX used: %s (%s), version %s, %s" % (found.path, found.kind, version or "unknown", verdict)


if __name__ == "__main__":
    import config
    settings = config.values()
    print(describe(settings["CHIMERAX_PATH"], settings["SUPPORTED_CHIMERAX"], settings["CHIMERAX_ALLOW_UNTESTED"]))
    # ... and which per-session limits hold (docs/limits.md)
    from .launchers.cgroups import SessionLimits, choose
    chosen = choose(settings["CGROUPS"], settings["CGROUP_ROOT"], "probe", SessionLimits())
    print("per-session limits: %s" % (chosen.describe() if chosen else
                                      "none (CGROUPS=%s): per-process limits only" % settings["CGROUPS"]))
