"""Facts about the controller's own kernel that nodes sharing it (local provider) inherit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from clusterlab import cephclient

CGROUP_MOUNT = Path("/sys/fs/cgroup")


def cgroup_v1() -> bool:
    """True unless /sys/fs/cgroup is the unified (v2) hierarchy; hybrid hosts count as v1."""
    return not (CGROUP_MOUNT / "cgroup.controllers").exists()


def ceph_client_features() -> dict[str, bool]:
    """The Ceph kernel clients (rbd, nbd, ceph) this host's kernel has now, loaded or built
    in: what nodes sharing it get, since they cannot load modules. The same probe the Rook
    stage runs in each node (clusterlab.cephclient.probe_script)."""
    res = subprocess.run(
        ["sh", "-c", cephclient.probe_script(shared_kernel=True)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return cephclient.parse_probe(res.stdout)
