"""Variants of the runtime that tests switch on through the environment, to
show what the agent does with a ChimeraX that differs where it matters; a
real ChimeraX cannot be made to differ on demand. Off unless set:

- CXS_RUNTIME_SKIP_HOOK=<Command method>: the parser calls ChimeraX's own
  method, never an override of it, as a release restructured around a hooked
  method would (the agent's self-test must then refuse to serve).
- CXS_RUNTIME_LOOP_DELAY=<seconds>: the event loop starts that much later
  (textui.py).
"""
import os
import types


def apply():
    skipped = os.environ.get("CXS_RUNTIME_SKIP_HOOK")
    if skipped:
        _bypass_overrides(skipped)


def _bypass_overrides(name):
    from chimerax.core.commands import cli
    original = getattr(cli.Command, name)
    looked_up = cli.Command.__getattribute__

    def lookup(command, attribute):
        if attribute == name:
            return types.MethodType(original, command)
        return looked_up(command, attribute)
    cli.Command.__getattribute__ = lookup
