"""The Rook stage end to end, in host and in pvc mode: the `cluster` test.

It needs the Kubernetes release downloads and the container images of Kubernetes, Calico,
Rook and Ceph, which this machine cannot reach, so it runs only where they are reachable
(CLUSTERLAB_CLUSTER_TESTS=1). What this machine can prove of the stage runs elsewhere: the
rendered manifests (tests/unit/test_rook_manifests.py, test_ceph_storage.py) and the disk
path with Ceph's own tools in local nodes.
"""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

CLUSTER_OPT_IN = "CLUSTERLAB_CLUSTER_TESTS"


@pytest.mark.skipif(
    os.environ.get(CLUSTER_OPT_IN) != "1",
    reason="end to end: needs the Kubernetes downloads and the Kubernetes, Calico, Rook and Ceph "
    f"images, which this machine cannot reach (set {CLUSTER_OPT_IN}=1 where they are reachable)",
)
@pytest.mark.parametrize(("mode", "net"), [("host", 52), ("pvc", 53)])
def test_up_health_ok_verify_reset_up(labs, mode, net):
    name = f"rook{mode}"
    labs.provider(labs.spec(name, net, nodes=3, disks=1, rook={"mode": mode}))
    labs.cli("up", "--lab", name, timeout=5400)  # every stage, then every verify layer
    status = labs.cli("ceph", "--lab", name, "--", "health").stdout
    assert status.startswith("HEALTH_OK"), status
    labs.cli("verify", "--lab", name, "--layer", "ceph", timeout=1800)
    labs.cli("reset", "--lab", name, "--yes", timeout=1800)
    labs.cli("up", "--lab", name, timeout=5400)
    labs.cli("down", "--lab", name)
