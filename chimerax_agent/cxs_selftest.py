"""The agent's proof, before it serves, that the policy's hooks fire in the
ChimeraX it runs in.

A release that renames a hooked method, stops calling it, finds no command
description (`_ci`), or renames the file-name annotation classes would make
the checks silently not run. So each canary is a line the canary profile
refuses for one reason, run through the same checking path as a user's
command (cxs_policy.run_checked): each must be refused *by the policy*, with
nothing of it run. Any other outcome names the hook (hooks.py) that did not
fire, and the agent serves nothing. The canaries are harmless if they did
run: they only fail or change what a failed start throws away anyway.
"""
import os

import cxs_policy

ALIAS = "cxsselftestalias"

PROFILE = {
    "name": "self-test", "commands": ["pwd", "open", "lighting", ALIAS], "allow_fetch": False,
    "open_suffixes": [".pdb"], "save_suffixes": [".png"], "formats": ["pdb"],
    "bounds": {"lighting": {"intensity": [0, 1]}}, "texts": {}, "data_values": {}, "limits": {},
}

# (line, words the refusal must hold, the hook that refuses it)
CANARIES = (
    ("cd " + os.sep, "not allowed", "Command._process_positional_arguments"),
    ("lighting intensity 5", "between", "Command._process_keyword_arguments"),
    ("open cxs-self-test-canary.py", "files of this type", "OpenFileNameArg/SaveFileNameArg/*FolderNameArg"),
    (ALIAS, "expands to", "Alias.expand, Alias.user_generated"),
)


def version():
    try:
        from chimerax.core import version
        return str(version)
    except ImportError:
        return "unknown"


def failure(session):
    """None when every canary is refused by the policy; else why not, naming
    the ChimeraX version and the hook that did not fire."""
    from chimerax.core.commands import cli
    try:
        cli.create_alias(ALIAS, "cd " + os.sep, user=False, logger=session.logger)
    except Exception as err:
        return "ChimeraX %s: create_alias/remove_alias: %s" % (version(), err)
    try:
        for line, reason, hook in CANARIES:
            outcome = _outcome(session, line, reason)
            if outcome:
                return "ChimeraX %s: the policy hook %s did not fire (canary %r %s)" % (
                    version(), hook, line, outcome)
    finally:
        try:
            cli.remove_alias(ALIAS, user=False, logger=session.logger)
        except Exception:       # the start fails anyway if creating it did
            pass
    return None


def _outcome(session, line, reason):
    try:
        cxs_policy.run_checked(session, line, PROFILE)
    except cxs_policy.Refused as refusal:
        if reason not in refusal.reason:
            return "was refused for another reason: %s" % refusal.reason
        if getattr(refusal, "ran", None):
            return "was refused after running %s" % ", ".join(refusal.ran)
        return None
    except Exception as err:
        return "was not refused by the policy; ChimeraX said: %s" % err
    return "ran"
