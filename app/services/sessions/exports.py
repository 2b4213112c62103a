"""What a session shows, as files ChimeraX writes: PNG snapshots and glTF
scenes, bounded before they are drawn (render.py)."""
from collections.abc import Callable, Mapping
import logging
import os
from typing import Any, NoReturn

from ...store import (
    ACTIVE,
    Principal,
)
from ..errors import (
    NotActive,
    RenderingUnavailable,
    SceneTooLarge,
    SnapshotFailed,
)
from ..processes.chimerax_client import CommandResult
from . import render
from .running import SessionRunning
from .sharing import VIEW

audit = logging.getLogger("cxs.audit")


class SessionExports(SessionRunning):
    def snapshot(self, principal: Principal, session_id: str, width: int, height: int, supersample: int) -> bytes:
        """A PNG of the current view; its size is within the API's bounds (schemas/bounds.py)."""
        def rendered(result: CommandResult, path: str) -> None:
            if not result.ok:
                assert result.error is not None     # a failed result says why
                if render.rendering_unavailable(result.error):
                    raise RenderingUnavailable("offscreen rendering is not available for this "
                                               "ChimeraX (install OSMesa: libosmesa6)", retry_after=None)
                self._out_of_memory(result, "drawing %d x %d" % (width, height))
                raise SnapshotFailed("ChimeraX could not render: %s" % result.error["message"])
        return self._export(principal, session_id, "snapshot", ".png", " width %d height %d supersample %d"
                            % (width, height, supersample), rendered,
                            needs=render.BYTES_PER_PIXEL * width * height)

    def scene(self, principal: Principal, session_id: str, options: Mapping[str, Any]) -> bytes:
        """The current scene as binary glTF, written by ChimeraX's own glTF writer,
        once a frame has brought it up to date and drawn it (render.py)."""
        limit = self.settings["SCENE_MAX_BYTES"]

        def failed(result: CommandResult) -> NoReturn:
            assert result.error is not None     # only for a failed result, which says why
            self._out_of_memory(result, "building the scene")
            raise SnapshotFailed("ChimeraX could not export the scene: %s" % result.error["message"])

        def prepare(send: Callable[[str], CommandResult], frame: str) -> None:
            drawn = send("%s ; %s" % (render.drawn_frame(frame), render.TRIANGLES))
            if not drawn.ok:
                assert drawn.error is not None      # a failed result says why
                if render.rendering_unavailable(drawn.error):
                    drawn = send("%s ; %s" % (render.FRAME, render.TRIANGLES))     # no OpenGL: nothing drawn
            if not drawn.ok:
                failed(drawn)
            triangles = render.shown_triangles(drawn)
            if (not options.get("instancing") and triangles is not None
                    and triangles * render.GLTF_BYTES_PER_TRIANGLE > limit):
                raise SceneTooLarge("the scene shows %d triangles, at least %d bytes as glTF, over SCENE_MAX_BYTES "
                                    "(%d): hide or close models, or lower their detail"
                                    % (triangles, triangles * render.GLTF_BYTES_PER_TRIANGLE, limit))

        def exported(result: CommandResult, path: str) -> None:
            if not result.ok:
                failed(result)
            size = os.path.getsize(path)
            if size > limit:
                raise SceneTooLarge("the scene is %d bytes, over SCENE_MAX_BYTES (%d): hide or close models, "
                                    "or lower their detail" % (size, limit))
        if options.get("preserve_transparency") is False:
            # ChimeraX's writer (1.7) cuts the alpha off vertex colors, then takes a
            # drawing's one colour as RGBA and fails; kept per vertex, it has none to take.
            options = dict(options, prune_vertex_colors=False)
        keywords = "".join(" %s %s" % (_camel(key), str(value).lower() if isinstance(value, bool) else value)
                           for key, value in sorted(options.items()) if value is not None)
        return self._export(principal, session_id, "scene", ".glb", keywords, exported, prepare)

    def _out_of_memory(self, result, doing):
        if render.out_of_memory(result.error):
            raise SceneTooLarge("ChimeraX ran out of memory %s (a process may use %s MB, SESSION_ADDRESS_SPACE_MB): "
                                "ask for less, or hide or close models"
                                % (doing, self.launcher.limits_in_force(None).get("address_space_mb") or "?"))

    def _fits_in_memory(self, record, needs, doing):
        """Refuse what would take the session over a memory limit: its process's
        address space (SESSION_ADDRESS_SPACE_MB: the kernel would fail the
        allocation inside the renderer, which ends ChimeraX instead of raising
        an error it can report), or its cgroup's memory (SESSION_MEMORY_MB: the
        kernel would end the session)."""
        limits = self.launcher.limits_in_force(record.process)
        usage = self.launcher.usage(record.process) or {}
        first_draw = self.launcher.draws(record.process) is False
        for setting, limit_mb, used in (
                ("SESSION_ADDRESS_SPACE_MB", limits.get("address_space_mb"),
                 self.launcher.address_space_bytes(record.process) if record.process else None),
                ("SESSION_MEMORY_MB", limits.get("memory_mb"), usage.get("memory_bytes"))):
            limit = (limit_mb or 0) * 2**20
            more = needs + (render.FIRST_DRAW_BYTES[setting] if first_draw else 0)
            if limit and used is not None and used + more > limit:
                raise SceneTooLarge("%s needs about %d MB more%s; the session uses %d of its %d MB (%s): "
                                    "ask for fewer pixels, or hide or close models"
                                    % (doing, more // 2**20 + 1, " (its first draw starts the renderer)"
                                       if first_draw else "", used // 2**20, limit // 2**20, setting))

    def _export(self, principal, session_id, kind, suffix, keywords, check, prepare=None, needs=0):
        """The bytes of a file ChimeraX saves of the scene (`save FILE` + `keywords`),
        after a frame's updates (render.py): in the same command line, or, with
        `prepare(send, png_path)`, by it first, which may also refuse; `check(result,
        path)` raises when what was saved is not to be served."""
        record = self.get_for(principal, session_id, VIEW)
        if record.status != ACTIVE:
            raise NotActive("session %s is %s, not active" % (session_id, record.status))
        self._require_reach(record)
        if needs:
            self._fits_in_memory(record, needs, "drawing this %s" % kind)
        audit.info("user=%s session=%s verdict=allow commands=%s", principal.who, session_id, kind)
        with self.scratch_file(record, record.process, kind, suffix) as (scratch, inside):
            save = 'save "%s"%s' % (inside, keywords)
            if prepare is None:
                result = self._send(record, "%s ; %s" % (render.FRAME, save))
            else:
                with self.scratch_file(record, record.process, kind + "-frame", ".png") as (_, frame):
                    prepare(lambda command: self._send(record, command), frame)
                result = self._send(record, save)
            check(result, scratch)
            with open(scratch, "rb") as saved:
                return saved.read()


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)
