"""Helpers for integration tests that talk to lab nodes over the lab's own SSH config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def ssh(target, node: str, cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run cmd on node; target is a provider (its state's ssh_config) or an ssh_config path."""
    cfg = target if isinstance(target, Path) else target.state / "ssh_config"
    res = subprocess.run(
        ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", node, cmd],
        capture_output=True,
        text=True,
        check=False,
    )
    if check:
        assert res.returncode == 0, f"{node}: {cmd}: {res.stdout}{res.stderr}"
    return res


def disks(prov, node: str) -> list[str]:
    """The node's Ceph data disks as the generated inventory names them (local: /dev/loopN)."""
    inv = yaml.safe_load((prov.state / "hosts.yml").read_text())
    return inv["all"]["hosts"][node]["lab_disks"]
