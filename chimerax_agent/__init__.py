"""The service's code that runs inside ChimeraX (`ChimeraX --script agent.py`),
shipped with the service: the launcher binds this folder read-only into each
sandbox. Nothing here is imported by the service itself; `AGENT_SCRIPT` names
the script wherever the package is installed."""
import os

AGENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")
