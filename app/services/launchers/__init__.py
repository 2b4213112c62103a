"""Where and how ChimeraX processes run: the launcher contract and its implementations."""
from .base import Launcher
from .local import LocalLauncher
from .sandbox import Bubblewrap, NoSandbox, SandboxUnavailable, choose_sandbox

__all__ = ["Launcher", "LocalLauncher", "Bubblewrap", "NoSandbox", "SandboxUnavailable", "choose_sandbox"]
