"""Spawn->ready time and resident memory of one headless ChimeraX, median of N runs.

    .venv/bin/python chimerax_runtime/measure_startup.py [--runs 5] [--chimerax PATH]

Starts ChimeraX exactly as the service does (REST server on port 0), times
until the "REST server started" line and a first answered command, reads the
process's RSS, then ends it. Defaults to the project's test runtime.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(os.path.dirname(HERE), ".chimerax", "bin", "chimerax")
READY = re.compile(rb"REST server started on host \S+ port (\d+)")


def one_run(executable):
    with tempfile.TemporaryDirectory() as workdir:
        log_path = os.path.join(workdir, "log")
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([executable, "--nogui", "--offscreen", "--cmd",
                                     "remotecontrol rest start port 0 json true"],
                                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=workdir, start_new_session=True)
        try:
            while True:
                with open(log_path, "rb") as log:
                    match = READY.search(log.read())
                if match:
                    break
                if proc.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit("ChimeraX did not start; see its output:\n" + open(log_path).read())
                time.sleep(0.01)
            announced = time.perf_counter() - started
            port = int(match.group(1))
            urllib.request.urlopen("http://127.0.0.1:%d/run?command=version" % port, timeout=30).read()
            answered = time.perf_counter() - started
            rss = psutil.Process(proc.pid).memory_info().rss
        finally:
            proc.kill()
            proc.wait()
            proc.stdin.close()
    return announced, answered, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chimerax", default=DEFAULT)
    opts = parser.parse_args()
    results = [one_run(opts.chimerax) for _ in range(opts.runs)]
    announced, answered, rss = zip(*results)
    print("ChimeraX: %s (%d runs, medians; min-max in brackets)" % (opts.chimerax, opts.runs))
    print("| figure | median | range |")
    print("|---|---|---|")
    print("| spawn -> REST line | %.2f s | %.2f-%.2f s |" % (statistics.median(announced), min(announced), max(announced)))
    print("| spawn -> first reply | %.2f s | %.2f-%.2f s |" % (statistics.median(answered), min(answered), max(answered)))
    mib = [r / 2**20 for r in rss]
    print("| resident memory when ready | %.0f MiB | %.0f-%.0f MiB |" % (statistics.median(mib), min(mib), max(mib)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
