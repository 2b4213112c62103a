"""docs/runtime.md's table of the ChimeraX internals the agent relies on is
the one hook_table.py makes from hook_points.json (read from RBVI/ChimeraX at
each supported tag), for every hook chimerax_agent/hooks.py declares."""
import json
import os
import re
import sys

from app.services.processes.locate import PROJECT_ROOT
from chimerax_agent.hooks import HOOKS

sys.path.insert(0, os.path.join(PROJECT_ROOT, "chimerax_runtime"))
import hook_table  # noqa: E402


def points():
    with open(hook_table.POINTS) as text:
        return json.load(text)


def test_the_docs_show_the_generated_table():
    docs = open(hook_table.DOCS).read()
    block = re.search(re.escape(hook_table.BEGIN) + r"\n(.*?)\n" + re.escape(hook_table.END), docs, re.S)
    assert block, "docs/runtime.md lacks the hook table"
    assert block.group(1) == hook_table.markdown({tag: points()[tag] for tag in hook_table.TAGS})


def test_every_declared_hook_was_read_at_every_supported_tag_and_found():
    read = points()
    assert set(read) == set(hook_table.TAGS)
    for tag in hook_table.TAGS:
        assert set(read[tag]["lines"]) == {hook.name for hook in HOOKS}, tag
        assert all(read[tag]["lines"].values()), (tag, read[tag]["lines"])


def test_the_patterns_find_what_they_name():
    source = ("class Command:\n    def _process_positional_arguments(self):\n        pass\n"
              "    def _process_keyword_arguments(self, final, prev_annos):\n        pass\n")
    by_name = {hook.name: hook for hook in HOOKS}
    assert hook_table.line_of(source, by_name["Command._process_keyword_arguments"].pattern) == 4
    assert hook_table.line_of(source.replace("_process_keyword", "_parse_keyword"),
                              by_name["Command._process_keyword_arguments"].pattern) is None
