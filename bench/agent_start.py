"""Figure 1b: what the agent's start-up proofs cost (the policy canaries, and
saying ready only from the running event loop): spawn -> first answered
command of the runtime with today's agent vs the agent as of BASELINE (the
last commit before them, taken from git), interleaved so that both see the
same machine load; unsandboxed, TCP channel, as measure_startup.py does for
ChimeraX's own REST server."""
import os
import re
import subprocess
import tempfile
import time
import urllib.request

BASELINE = "ca47cdc"        # the agent before its self-test and loop-ready (issue 31)
READY = re.compile(rb"CXS agent ready: tcp \S+ (\d+)")
AGENT_FILES = ("agent.py", "cxs_policy.py")


def baseline_agent(root, into):
    """The agent's files as of BASELINE, written into `into`; its script path."""
    for name in AGENT_FILES:
        text = subprocess.run(["git", "-C", root, "show", "%s:chimerax_agent/%s" % (BASELINE, name)],
                              capture_output=True, check=True).stdout
        with open(os.path.join(into, name), "wb") as out:
            out.write(text)
    return os.path.join(into, "agent.py")


def first_reply(runtime, script):
    """Seconds from spawn to the first answered command over the agent's channel."""
    with tempfile.TemporaryDirectory() as workdir:
        log_path = os.path.join(workdir, "log")
        reader, keep = os.pipe()        # a stdin that stays open, as the launcher's
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([runtime, "--nogui", "--offscreen", "--script", '"%s"' % script],
                                    stdin=reader, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                    env=dict(os.environ, CXS_AGENT_SECRET="bench", CXS_AGENT_PORT="0"),
                                    start_new_session=True)
        os.close(reader)
        try:
            while True:
                with open(log_path, "rb") as log:
                    match = READY.search(log.read())
                if match:
                    break
                if proc.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit("the agent did not start:\n" + open(log_path).read())
                time.sleep(0.005)
            request = urllib.request.Request("http://127.0.0.1:%s/run?command=version" % match.group(1).decode(),
                                             headers={"Authorization": "Bearer bench"})
            urllib.request.urlopen(request, timeout=30).read()
            return time.perf_counter() - started
        finally:
            proc.kill()
            proc.wait()
            os.close(keep)


def agent_start(root, runtime, runs):
    """(today's times, baseline times), interleaved."""
    today_script = os.path.join(root, "chimerax_agent", "agent.py")
    with tempfile.TemporaryDirectory() as folder:
        before_script = baseline_agent(root, folder)
        today, before = [], []
        for _ in range(runs):
            today.append(first_reply(runtime, today_script))
            before.append(first_reply(runtime, before_script))
    return today, before
