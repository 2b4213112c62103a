"""Text user interface standing in for chimerax.core.nogui, which the wheel lacks.

Behaves as the application's text UI (src/bundles/core/src/nogui.py, v1.6 to
v1.11): a `UI` singleton per process and a `NoGuiLog`; `thread_safe` calls in
place until the event loop starts, then queues onto the main thread; the
event loop starts a reader that runs every line of stdin as a command (a
plain Command, outside any policy: why the launcher gives ChimeraX a stdin
nobody can open or write) and ends at its EOF.
"""
import os
import queue
import sys
import threading
import time

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
        # Test variant (tests/test_runtime_fidelity.py): a late loop start, to
        # show that nothing is served before it.
        time.sleep(float(os.environ.get("CXS_RUNTIME_LOOP_DELAY") or 0))
        self._queue = queue.Queue()
        reader = StdinReader(self._session)
        reader.start()
        while not reader.finished:
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


class StdinReader(threading.Thread):
    """Reads stdin a line at a time, prompting `cmd> `, and runs each line as a
    command on the main thread, the next line read only once it has run; at
    EOF it wakes the loop, which then ends (and ChimeraX with it)."""

    def __init__(self, session):
        super().__init__(name="stdin", daemon=True)
        from chimerax.core.commands import Command
        self._session, self._command = session, Command(session)
        self._turn = threading.Semaphore()
        self.finished = False

    def run(self):
        ui = self._session.ui
        while True:
            self._turn.acquire()
            try:
                text = input("cmd> ")
            except EOFError:
                self.finished = True
                ui.thread_safe(print, "EOF")
                return
            ui.thread_safe(self._run_line, text)

    def _run_line(self, text):
        from chimerax.core.errors import NotABug
        try:
            if text.strip():
                self._command.run(text.strip())
        except NotABug as err:
            self._session.logger.error(str(err))
        except Exception:
            self._session.logger.report_exception()
        finally:
            self._turn.release()
