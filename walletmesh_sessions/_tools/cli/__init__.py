"""The `walletmesh-sessions` command: look inside a store, remove sessions, clean expired ones.

- `arguments`: the name, exit codes, options and parser.
- `entry`: `main`, from arguments to exit status; opening the store a URL names.
- `commands`: list, show, delete, clean, clear, stats.
- `reading`: the records a command reads, page by page.
- `rendering`: a table for people, JSON for machines, the tally of `stats`.
- `progress`: a progress line on stderr when a person watches.
"""

from .entry import main as main
from .entry import main_entry as main_entry

__all__ = ("main", "main_entry")
