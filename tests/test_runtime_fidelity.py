"""The runtime starts as the official ChimeraX does (docs/runtime.md lists each
point and where it was read), and the agent proves its policy hooks fire
before it serves. Runs the runtime and the agent directly: no service.

The hook-skipping and late-loop variants are switches of the runtime
(cxs_runtime/variants.py): a real ChimeraX cannot be made to skip a hook or
start its loop late on demand."""
import os
import re
import shutil
import subprocess

import pytest

from app.services.processes.launchers import AGENT_SCRIPT
from app.services.processes.locate import TEST_RUNTIME

from .conftest import wait_until

pytestmark = pytest.mark.slow


def chimerax(*args, cwd, env=None, stdin=subprocess.DEVNULL, timeout=120):
    return subprocess.run([TEST_RUNTIME, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=stdin, env=dict(os.environ, **(env or {})))


def test_an_unknown_flag_ends_with_usage(tmp_path):
    done = chimerax("--nogui", "--no-such-flag", cwd=tmp_path)
    assert done.returncode == os.EX_USAGE
    assert "--no-such-flag not recognized" in done.stderr and "usage:" in done.stderr


def test_a_failing_script_ends_the_start_with_its_traceback(tmp_path):
    (tmp_path / "fails.py").write_text("raise RuntimeError('the script failed')\n")
    done = chimerax("--nogui", "--offscreen", "--script", "fails.py", cwd=tmp_path)
    assert done.returncode == os.EX_SOFTWARE
    assert "Traceback" in done.stderr + done.stdout


def test_a_script_path_with_a_space_runs_when_quoted_as_runscript_expects(tmp_path):
    folder = tmp_path / "with space"
    folder.mkdir()
    (folder / "says.py").write_text("print('script ran with', type(session).__name__)\n")
    quoted = chimerax("--nogui", "--script", '"%s"' % (folder / "says.py"), "--exit", cwd=tmp_path)
    assert quoted.returncode == 0 and "script ran with Session" in quoted.stdout
    # As in the official app, `runscript` reads an unquoted path up to its first space.
    bare = chimerax("--nogui", "--script", str(folder / "says.py"), "--exit", cwd=tmp_path)
    assert bare.returncode == os.EX_SOFTWARE and "script ran" not in bare.stdout


def test_stdin_lines_run_as_commands_and_its_end_ends_chimerax(tmp_path):
    done = subprocess.run([TEST_RUNTIME, "--nogui", "--offscreen"], input="pwd\nversion\n",
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0
    assert "Current working directory is: %s" % tmp_path in done.stdout
    assert done.stdout.count("cmd> ") == 3      # two lines run, then the end of stdin


def test_thread_safe_calls_in_place_until_the_loop_serves(tmp_path):
    (tmp_path / "where.py").write_text(
        "import threading\n"
        "seen = []\n"
        "helper = threading.Thread(target=lambda: session.ui.thread_safe(\n"
        "    lambda: seen.append(threading.current_thread().name)), name='asker')\n"
        "helper.start(); helper.join()\n"
        "print('before the loop:', seen)\n")
    done = chimerax("--nogui", "--script", "where.py", "--exit", cwd=tmp_path)
    assert "before the loop: ['asker']" in done.stdout


def agent(tmp_path, env=None):
    """The agent started as the launcher starts it (its script path quoted), in a
    folder whose name has a space; (exit status or None, log text, process)."""
    folder = tmp_path / "agent dir"
    shutil.copytree(os.path.dirname(AGENT_SCRIPT), folder, ignore=shutil.ignore_patterns("__pycache__"))
    log = tmp_path / "log"
    with open(log, "wb") as out:
        reader, keep = os.pipe()        # stdin that never ends while the test holds the other end
        proc = subprocess.Popen([TEST_RUNTIME, "--nogui", "--offscreen", "--script",
                                 '"%s"' % (folder / os.path.basename(AGENT_SCRIPT))],
                                stdin=reader, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                env=dict(os.environ, CXS_AGENT_SECRET="s", **(env or {})), start_new_session=True)
        os.close(reader)

    def outcome():
        text = log.read_text()
        return ("CXS agent" in text and proc.poll() is not None) or "CXS agent ready" in text
    try:
        wait_until(outcome, 60, message="the agent's ready or failed line")
        return proc.poll(), log.read_text()
    finally:
        proc.kill()
        proc.wait()
        os.close(keep)


def test_the_agent_serves_once_its_hooks_fired_and_says_its_version(tmp_path):
    status, text = agent(tmp_path)
    assert status is None, text
    assert re.search(r"CXS agent ready: tcp 127\.0\.0\.1 \d+ chimerax 1\.7\.1", text)


@pytest.mark.parametrize("skipped, named", [
    ("_process_keyword_arguments", "Command._process_keyword_arguments"),
    ("_process_positional_arguments", "Command._process_positional_arguments"),
])
def test_the_agent_refuses_to_serve_when_a_hook_does_not_fire(tmp_path, skipped, named):
    status, text = agent(tmp_path, {"CXS_RUNTIME_SKIP_HOOK": skipped})
    assert status == os.EX_SOFTWARE, text
    failed = re.search(r"CXS agent failed: (.*)", text).group(1)
    assert failed.startswith("ChimeraX 1.7.1: the policy hook %s did not fire" % named), failed
    assert "CXS agent ready" not in text
