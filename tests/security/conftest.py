"""Helpers of the adversarial corpus: lab specs as a stranger would write them, a scratch
project to run the command line in, and what the machine looks like before and after.

Labs of these tests are named td*, on 10.213.170-179.0/24; none is ever created (every spec
here must be refused before anything exists), and the checks below say so.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

NET = "10.213.170.0/24"  # this suite's lab network (never created)

LOCAL = {
    "name": "tdlocal",
    "provider": "local",
    "os": "debian12",
    "network": {"cidr": NET},
    "nodes": {"count": 1, "disks": [{"size": "6G"}]},
}
STATIC = {
    "name": "tdstatic",
    "provider": "static",
    "os": "debian12",
    "network": {"cidr": "10.213.171.0/24"},
    "nodes": [
        {
            "name": "n1",
            "roles": ["control_plane", "etcd", "worker"],
            "address": "10.213.171.11",
            "user": "admin",
            "key_file": "~/.ssh/id_ed25519",
            "disks": [{"device": "/dev/sdb"}],
        }
    ],
}
VAGRANT = {
    "name": "tdvagrant",
    "provider": "vagrant",
    "os": "debian12",
    "network": {"cidr": "10.213.172.0/24"},
    "nodes": {"count": 1, "disks": [{"size": "6G"}]},
}
BASES = {"local": LOCAL, "static": STATIC, "vagrant": VAGRANT}


def with_value(base: str, where: str, value) -> dict:
    """A copy of BASES[base] with the value at `where` (a spec field path like
    nodes[0].disks[0].device, nodes.name_prefix or rook.version) replaced."""
    raw = copy.deepcopy(BASES[base])
    node: object = raw
    parts = where.replace("]", "").replace("[", ".").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: int | str = int(part) if part.isdigit() else part
        if last:
            node[key] = value  # type: ignore[index]
        else:
            if isinstance(key, str) and key not in node:  # type: ignore[operator]
                node[key] = [None] if parts[i + 1].isdigit() else {}  # type: ignore[index]
            node = node[key]  # type: ignore[index]
    return raw


def links() -> set[str]:
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def machines() -> str:
    out = subprocess.run(
        ["machinectl", "list", "--no-legend"], capture_output=True, text=True, check=False
    )
    return out.stdout


class Project:
    """A scratch directory holding inventories/NAME/lab.yml, with its own state and cache."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.cache = root / "cache"
        self.env = dict(
            os.environ,
            CLUSTERLAB_STATE=str(self.state),
            CLUSTERLAB_CACHE=str(self.cache),
            CLUSTERLAB_INVENTORIES=str(root / "inventories"),
        )

    def write(self, raw: dict | str, name: str | None = None) -> Path:
        name = name or (raw["name"] if isinstance(raw, dict) else "tdraw")
        path = self.root / "inventories" / name / "lab.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "clusterlab", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=300,
        )

    def created(self) -> list[str]:
        """What exists under the project that the test did not write itself."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if not str(p.relative_to(self.root)).startswith("inventories")
        )


@pytest.fixture
def project(tmp_path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root)


@pytest.fixture
def untouched_host():
    """Fails the test if a link (bridge, veth) or a machine appeared while it ran."""
    before_links, before_machines = links(), machines()
    yield
    new = sorted(links() - before_links)
    assert not new, f"links created: {new}"
    assert machines() == before_machines, "machines changed"
