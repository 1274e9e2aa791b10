"""The `walletmesh-sessions` command: look inside a store, remove sessions, clean expired ones."""

from .entry import main as main
from .entry import main_entry as main_entry

__all__ = ("main", "main_entry")
