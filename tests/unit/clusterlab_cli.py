"""Run the clusterlab command line as a user would: a separate process, exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env_extra: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`python -m clusterlab ARGS` with the environment plus `env_extra`; never raises."""
    return subprocess.run(
        [sys.executable, "-m", "clusterlab", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env_extra or {})),
        cwd=cwd,
        check=False,
    )
