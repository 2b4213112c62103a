"""Text user interface standing in for chimerax.core.nogui, which the wheel lacks.

Same contract as the application's text UI (a `UI` singleton per process and
a `NoGuiLog`), with one deliberate difference: it never reads stdin. A served
process takes its commands from the REST server only, so it neither blocks on
nor exits at the end of its standard input.
"""
import os
import queue
import sys
import threading

from chimerax.core.logger import PlainTextLog

_LEVEL_NAMES = {
    PlainTextLog.LEVEL_INFO: "INFO",
    PlainTextLog.LEVEL_WARNING: "WARNING",
    PlainTextLog.LEVEL_ERROR: "ERROR",
    PlainTextLog.LEVEL_BUG: "BUG",
}


class NoGuiLog(PlainTextLog):
    """Plain log lines on stdout, flushed, so a log file shows them at once."""

    def log(self, level, msg):
        print("%s:\n%s" % (_LEVEL_NAMES.get(level, "INFO"), msg), end="", flush=True)
        return True

    def status(self, msg, color, secondary):
        if msg and not secondary:
            print("STATUS:\n%s" % msg, flush=True)
        return True


class UI:
    _instance = None

    def __new__(cls, session):
        if cls._instance is None:
            ui = super().__new__(cls)
            ui.is_gui = False
            ui.has_graphics = False
            ui.stereo = False
            ui.autostart_tools = False
            ui._session = session
            ui._queue = None
            ui._main_thread = threading.main_thread()
            cls._instance = ui
        return cls._instance

    @classmethod
    def instance(cls):
        return cls._instance

    def initialize_color_output(self, color_output):
        pass  # the log goes to files and REST replies: no terminal colours

    def initialize_offscreen_rendering(self):
        session = self._session
        from chimerax import graphics
        try:
            context = graphics.OffScreenRenderingContext()
        except Exception as err:
            # Same wording as the application so clients can recognise it.
            session.logger.info("Offscreen rendering is not available.")
            session.logger.info(str(err))
            self.has_graphics = False
            return
        # Camera-mode changes ask the context whether it renders in stereo;
        # this library's offscreen context lacks the attribute. It never is.
        if not hasattr(context, "stereo"):
            context.stereo = False
        session.main_view.initialize_rendering(context)
        self.has_graphics = True

    def splash_info(self, message, splash_step=None, num_splash_steps=None):
        print(message, file=sys.stderr, flush=True)

    def build(self):
        pass

    def open_pending_files(self, ignore_files=()):
        pass

    def thread_safe(self, func, *args, **kw):
        # Commands must run on the main thread: the REST server calls this
        # from its own thread and waits for the queued call's reply.
        if self._queue is None or threading.current_thread() is self._main_thread:
            func(*args, **kw)
        else:
            self._queue.put((func, args, kw))

    def event_loop(self):
        self._queue = queue.Queue()
        while True:
            func, args, kw = self._queue.get()
            try:
                func(*args, **kw)
            except SystemExit:
                raise
            except Exception:
                self._session.logger.report_exception()

    def quit(self):
        # The REST server thread is not a daemon; exiting the interpreter
        # normally would wait for it forever. Flush and leave at once.
        try:
            self._session.logger.clear()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(os.EX_OK)
