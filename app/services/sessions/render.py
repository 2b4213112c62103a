"""What the service asks ChimeraX to do around a snapshot or a scene export.

A headless ChimeraX draws no frames of its own: nothing runs its update loop
between commands. What a frame brings up to date stays stale until something
draws: a volume's new style or level is computed on the frame's "graphics
update"; structures' pending changes, image blending and ongoing motions on
"new frame"; and a drawing's OpenGL buffers, from which the glTF writer reads
a mesh's lines, exist only once it is drawn. So before a save the service runs
one frame (`wait 1`: its triggers and updates, as a displayed ChimeraX runs
many times a second) and, before a scene, draws it once into a 1 x 1 image.
These commands are the service's own, sent without the caller's command
policy; only the save's bounded options come from the request.
"""
from collections.abc import Mapping
import re

from ..processes.chimerax_client import CommandResult

FRAME = "wait 1"
TRIANGLES = "graphics triangles"        # logs "<n> total triangles in ..." (what is shown, all instances)
_TOTAL = re.compile(r"(\d+) total triangles")

# The least a triangle can take in a glTF file without instancing: its three
# uint32 indices (a mesh: two per edge, about 1.5 edges a triangle), before
# any vertex. A scene showing more triangles than SCENE_MAX_BYTES / this is
# refused before ChimeraX builds it, which takes several times its size in memory.
GLTF_BYTES_PER_TRIANGLE = 12

# Address space a render takes per pixel of width x height (OSMesa's colour
# and depth buffers, the image read back and its PNG): 25-32 bytes measured
# (a 4096 x 4096 render adds 0.4-0.5 GB); supersampling draws the same
# buffer several times, it does not enlarge it.
BYTES_PER_PIXEL = 32

# What a session's first draw takes before any pixel when it started without
# rendering (CHIMERAX_OFFSCREEN=lazy, chimerax_agent/cxs_rendering.py): PyOpenGL,
# OSMesa and LLVM loaded, llvmpipe's threads with their stacks and malloc
# arenas. Measured on the runtime: +587 MB of address space, +91 MB resident.
FIRST_DRAW_BYTES = {"SESSION_ADDRESS_SPACE_MB": 640 * 2**20, "SESSION_MEMORY_MB": 96 * 2**20}


def drawn_frame(png_path: str) -> str:
    """A frame's updates, then every shown drawing drawn once (into a 1 x 1
    image at `png_path`, a scratch file), as ChimeraX's writers expect."""
    return '%s ; save "%s" width 1 height 1 supersample 1' % (FRAME, png_path)


def shown_triangles(result: CommandResult) -> int | None:
    """The triangle count `graphics triangles` logged in `result`, or None."""
    for message in result.log.get("note", []):
        found = _TOTAL.search(message)
        if found:
            return int(found.group(1))
    return None


def rendering_unavailable(error: Mapping[str, str]) -> bool:
    """Whether ChimeraX's error says it cannot render at all (no OpenGL / OSMesa)."""
    text = error["message"].lower()
    # "Offscreen rendering is not available", "OpenGL ... not available": not a
    # GL error of a working renderer (out of GL memory), which is the request's.
    return "not available" in text and ("render" in text or "opengl" in text)


def out_of_memory(error: Mapping[str, str]) -> bool:
    """Whether ChimeraX's error is an allocation that failed: the session's
    address-space limit (SESSION_ADDRESS_SPACE_MB) reached, ChimeraX still running."""
    return "MemoryError" in error["type"] or error["message"].startswith("Unable to allocate")
