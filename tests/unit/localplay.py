"""Run a playbook on the controller only (ansible_connection local), as the unit tests do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clusterlab import ansible


def local_inventory(tmp_path: Path, host: str = "render") -> Path:
    """A one-host inventory whose host is this machine, reached without SSH."""
    inv = tmp_path / "inv.yml"
    inv.write_text(
        f"all:\n  hosts:\n    {host}:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    return inv


def run_playbook(
    playbook: Path, inventory: Path, extra_vars: dict, *args: str
) -> subprocess.CompletedProcess:
    """ansible-playbook with the project's ansible.cfg; extra vars as JSON; never raises."""
    return subprocess.run(
        [
            ansible.bin_path("ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            *args,
            "-e",
            json.dumps(extra_vars),
        ],
        env=ansible.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
