"""`python -m cxs_client.mcp`: the same as `cxs mcp`."""
import sys

from . import main

sys.exit(main())
