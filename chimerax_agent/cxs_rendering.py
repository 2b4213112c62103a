"""Offscreen rendering started at a session's first draw instead of at its
start (`CXS_RENDERING=lazy`: the service's default, CHIMERAX_OFFSCREEN=lazy).

`--offscreen` makes ChimeraX create an OSMesa context as it starts: PyOpenGL,
libOSMesa and through it libLLVM (llvmpipe's compiler), 25 of an idle
session's 63 MiB (BENCHMARKS.md, figure 8), paid by every session and every
warm process whether it ever draws or not; sessions driven through the API
often never do.

Whatever in ChimeraX draws either asks the main view for its renderer first
(the `View.render` property: an image `save` and so the service's snapshot
and scene, labels, `graphics`, textures) or makes its context current
(`View._use_opengl`, before every draw and image). Either, on the main thread
with no renderer yet, starts offscreen rendering here, once, as `--offscreen`
would have at start (the UI's `initialize_offscreen_rendering`, hooks.py).
Without OSMesa that start fails as it would have at start: ChimeraX logs why,
and whatever needs a renderer says it has none (and the next draw tries again).

Two callers ask for the renderer only to learn whether there is one, and
would start it for nothing: the view itself (at every change of the scene,
to flag shadows for an update) and file history (at every `open`, to draw
thumbnails for the desktop's file browser, never shown headless). For them
the answer stays what it is.
"""
import sys
import threading


def install(session):
    """Make the main view start offscreen rendering when something first draws."""
    from chimerax.core import filehistory
    from chimerax.graphics import view as view_module

    view_class = view_module.View
    probes = {view_module.__name__, filehistory.__name__}

    def start(view):
        # Until it succeeds: a start that failed (no OSMesa: ChimeraX says so;
        # the address space's limit) is tried again at the next draw.
        if (view._render is None and view is session.main_view
                and threading.current_thread() is threading.main_thread()):
            session.ui.initialize_offscreen_rendering()

    plain_render, plain_use_opengl = view_class.render, view_class._use_opengl

    def render(view):
        if sys._getframe(1).f_globals.get("__name__") not in probes:
            start(view)
        return plain_render.fget(view)

    def use_opengl(view):
        start(view)
        return plain_use_opengl(view)

    view_class.render = property(render, doc=plain_render.__doc__)
    view_class._use_opengl = use_opengl
