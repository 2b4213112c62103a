"""Every ChimeraX internal the agent and its policy rely on, declared once.

Each entry names the point, the file of RBVI/ChimeraX's sources that holds it
and a pattern that finds it there, and why the agent needs it.
chimerax_runtime/hook_table.py reads an RBVI/ChimeraX checkout at each
supported tag against these patterns and writes the table in docs/runtime.md;
the agent's start-up self-test (selftest.py) proves, on the ChimeraX it runs
in, that the policy hooks among them fire.
"""
import collections

Hook = collections.namedtuple("Hook", "name path pattern why")

CLI = "src/bundles/core/src/commands/cli.py"

HOOKS = (
    Hook("Command._process_positional_arguments", CLI, r"def _process_positional_arguments\(\s*self\s*\)",
         "a command is checked by name before its arguments are parsed"),
    Hook("Command._process_keyword_arguments", CLI, r"def _process_keyword_arguments\(\s*self,\s*final",
         "arguments, file names and bounds are checked on ChimeraX's own parse"),
    Hook("Command._ci", CLI, r"self\._ci = what\.cmd_desc",
         "the parsed command's description (a hook that finds none cannot check)"),
    Hook("Command.run(log_only)", CLI, r"def run\(\s*self,\s*text,\s*\*,\s*log=True,\s*log_only=False",
         "a whole line is parsed, nothing run, before any of it runs"),
    Hook("CmdDesc._required/_optional/_keyword", CLI,
         r"self\._required = .*\n\s*self\._optional = .*\n\s*self\._keyword = ",
         "each argument's annotation, by name"),
    Hook("OpenFileNameArg/SaveFileNameArg/*FolderNameArg", CLI,
         r"class OpenFileNameArg\((?s:.*)class SaveFileNameArg\((?s:.*)class OpenFolderNameArg\("
         r"(?s:.*)class SaveFolderNameArg\(",
         "which arguments are file names to be read or written"),
    Hook("Alias.expand, Alias.user_generated", CLI,
         r"self\.user_generated = (?s:.*)def expand\(\s*self,\s*\*args,\s*optional=",
         "what ChimeraX's own aliases run is checked; session aliases are refused"),
    Hook("create_alias/remove_alias", CLI, r"def create_alias\(\s*name,\s*text,\s*\*,\s*user=False(?s:.*)"
         r"def remove_alias\(", "the self-test's alias canary"),
    Hook("commands.run(return_json, return_list)", "src/bundles/core/src/commands/run.py",
         r"def run\(\s*session,\s*text,\s*\*,\s*log=True,\s*downgrade_errors=False,\s*return_json=False,"
         r"\s*return_list=False", "how the agent runs a line and gets JSON values"),
    Hook("StringPlainTextLog", "src/bundles/core/src/logger.py", r"class StringPlainTextLog\(",
         "a request's log messages, collected by level"),
    Hook("ui.thread_safe", "src/bundles/core/src/nogui.py",
         r"def thread_safe\(\s*self,\s*func(?s:.*)if self\._queue:(?s:.*)func\(\*args, \*\*kw\)",
         "commands run on the main thread, queued once the event loop serves, called in place before"),
    Hook("nogui._Input (stdin)", "src/bundles/core/src/nogui.py",
         r"class _Input\((?s:.*)input\(prompt\)(?s:.*)self\._cmd\.run\(text\)",
         "the text UI runs every stdin line as a command: ChimeraX's stdin is a socket nobody can open"),
    Hook("--script via runscript", "src/bundles/core/src/__main__.py",
         r"run\(sess, [\"']runscript %s[\"'] % script\)",
         "the agent starts as `runscript <path>`: the path is quoted"),
    Hook("fetch.fetch_file", "src/bundles/core/src/fetch.py",
         r"def fetch_file\(\s*session,\s*url,\s*name,\s*save_name,\s*save_dir,\s*\*",
         "every database fetcher ends in it: the agent hands the fetch to the service (cxs_fetch.py)"),
    Hook("fetch.retrieve_url", "src/bundles/core/src/fetch.py",
         r"def retrieve_url\(\s*url,\s*filename,\s*\*",
         "what `open <URL>` (web fetch) calls: handed to the service too (FETCH_ALLOW_URLS)"),
    Hook("View.render (property)", "src/bundles/graphics/src/view.py",
         r"@property\s*\n\s*def render\(self\):\s*\n\s*return self\._render",
         "what draws asks the main view for its renderer first: it starts offscreen rendering (cxs_rendering.py)"),
    Hook("View._use_opengl", "src/bundles/graphics/src/view.py",
         r"def _use_opengl\(self\):\s*\n\s*if self\._render is None:",
         "every draw and image makes the context current first: it starts offscreen rendering too"),
    Hook("View.check_for_drawing_change asks for .render", "src/bundles/graphics/src/view.py",
         r"def check_for_drawing_change\((?s:.*?)r = self\.render\n\s*if r:",
         "the view asks only whether it has a renderer: its asking starts nothing"),
    Hook("FileHistory.remember_file asks for .render", "src/bundles/core/src/filehistory.py",
         r"def remember_file\((?s:.*?)has_graphics = self\.session\.main_view\.render is not None",
         "file history asks only whether to draw thumbnails: its asking starts nothing"),
    Hook("ui.initialize_offscreen_rendering", "src/bundles/core/src/nogui.py",
         r"def initialize_offscreen_rendering\(self\):",
         "what `--offscreen` runs at start, run at the first draw instead"),
    Hook("chimerax.core.version", "src/bundles/core/src/__init__.py", r"from \.buildinfo import version",
         "the version the agent reports"),
)
