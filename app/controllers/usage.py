"""HTTP in/out for usage accounting: the validated range to the report."""
import time

from flask import g

from ..context import get_store
from ..services.usage.report import report


def usage(args):
    return report(g.principal, get_store(), args.get("user"), args["since"], args["until"], time.time())
