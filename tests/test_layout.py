"""The house rules that keep app/ readable: the layout note is generated from
the packages' own docstrings, every package says what it owns, no module grows
past ~350 lines, and the public functions of services, store and client carry
type hints (mypy checks their bodies: `make lint`)."""
import ast
import os
import re
import subprocess
import sys

import pytest

from app import layout
from app.services.processes.locate import PROJECT_ROOT

MAX_LINES = 350
ANNOTATED = ("app/services", "app/store", "cxs_client")


def _modules(*roots):
    for root in roots:
        for folder, dirs, files in os.walk(os.path.join(PROJECT_ROOT, root)):
            dirs[:] = [d for d in dirs if d not in ("migrations", "__pycache__", "node_modules")]
            yield from (os.path.join(folder, f) for f in files if f.endswith(".py"))


def test_the_layout_note_is_the_generated_one():
    text = open(os.path.join(PROJECT_ROOT, "docs", "design.md")).read()
    block = re.search(r"<!-- layout:begin.*?-->\n(.*?)\n<!-- layout:end -->", text, re.S)
    assert block, "docs/design.md lacks the generated layout"
    assert block.group(1) == layout.markdown()


def test_every_package_says_what_it_owns():
    assert len(layout.packages()) >= 10
    assert [name for name in layout.packages() if len(layout.summary(name)) < 20] == []


def test_no_module_in_app_is_over_the_limit():
    long = {os.path.relpath(path, PROJECT_ROOT): n for path in _modules("app")
            if (n := sum(1 for _ in open(path))) > MAX_LINES}
    assert long == {}


def test_public_functions_of_services_store_and_client_are_annotated():
    missing = []
    for path in _modules(*ANNOTATED):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if node.returns is None or any(a.annotation is None for a in arguments
                                               if a.arg not in ("self", "cls")):
                    missing.append("%s:%d %s" % (os.path.relpath(path, PROJECT_ROOT), node.lineno, node.name))
    assert missing == []


@pytest.mark.slow
def test_every_module_of_app_imports_on_its_own():
    """Each module first in a fresh interpreter: an import cycle between the
    capability packages shows only when the wrong module comes first."""
    names = sorted({os.path.relpath(path, PROJECT_ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                    for path in _modules("app")})
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    failed = {}
    for name in names:
        done = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True,
                              cwd=PROJECT_ROOT, timeout=120)
        if done.returncode:
            failed[name] = done.stderr.strip().splitlines()[-1]
    assert failed == {}
