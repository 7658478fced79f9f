"""The name of the command the user ran, for hints: `clusterlab …` or, in a checkout, `inv …`."""

from __future__ import annotations

import sys
from pathlib import Path

INVOKE_NAMES = ("inv", "invoke")


class UsageError(Exception):
    """The command line asks for something the command cannot do: exit 2, as argparse."""


def program() -> str:
    """`inv` when the user ran invoke's own program (a checkout's tasks.py), else `clusterlab`."""
    argv0 = Path(sys.argv[0] if sys.argv else "")
    invoke = argv0.name in INVOKE_NAMES or (
        argv0.name == "__main__.py" and argv0.parent.name == "invoke"
    )
    return "inv" if invoke else "clusterlab"


def cmd(args: str) -> str:
    """A command line to show the user, with the program they ran: cmd("up --lab x")."""
    return f"{program()} {args}"
