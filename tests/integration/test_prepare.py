"""The prepare stage for real on a 3-node local lab: idempotent, verified, containers run."""

from __future__ import annotations

import pytest
from nodes import disks, ssh

from clusterlab import stages
from clusterlab.ansible import AnsibleError


def test_prepare_idempotent_verified_and_runs_a_container(labs):
    spec = labs.spec("itprep", 111, nodes=3, disks=1)
    prov = labs.provider(spec)
    prov.create()

    first = stages.run_stage(spec, "prepare")
    assert sorted(first) == ["node1", "node2", "node3"]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in first.values())
    assert all(r["changed"] > 0 for r in first.values()), "a fresh node must change"

    second = stages.run_stage(spec, "prepare")
    assert {h: r["changed"] for h, r in second.items()} == {"node1": 0, "node2": 0, "node3": 0}

    stages.verify(spec, ["nodes"])  # raises when the node layer fails
    assert (prov.state / "reports" / "verify-nodes.xml").exists()
    assert (prov.state / "logs" / "prepare.log").read_text().count("PLAY RECAP") == 2

    # a container really runs under containerd: a tiny rootfs made from the node's own dash
    script = (
        "set -e; r=/tmp/tinyroot; rm -rf $r; mkdir -p $r/bin; cp /bin/dash $r/bin/sh; "
        "for lib in $(ldd /bin/dash | grep -o '/[^ ]*'); do mkdir -p $r$(dirname $lib); cp $lib $r$lib; done; "
        "ctr run --rm --rootfs $r clusterlab-test /bin/sh -c 'echo hello-from-$((6*7))'"
    )
    res = ssh(prov, "node1", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "hello-from-42"

    prov.destroy()


def test_prepare_refuses_a_disk_with_a_filesystem(labs):
    spec = labs.spec("itdisk", 112, nodes=1, disks=1)
    prov = labs.provider(spec)
    prov.create()
    (dev,) = disks(prov, "node1")
    assert ssh(prov, "node1", f"mkfs.ext4 -q -F {dev}").returncode == 0
    with pytest.raises(AnsibleError) as exc:
        stages.run_stage(spec, "prepare")
    assert f"{dev} on node1 is not a usable Ceph data disk: it carries signatures: ext4" in str(
        exc.value
    )
    prov.destroy()
