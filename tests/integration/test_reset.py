"""Reset on real local nodes: real signatures are wiped, the guard refuses what it must."""

from __future__ import annotations

import json

import pytest
from nodes import disks, ssh

from clusterlab import stages
from clusterlab.ansible import AnsibleError

BLUESTORE = "bluestore block device"


def disk_state(prov, node, dev) -> dict:
    return json.loads(ssh(prov, node, f"/usr/local/bin/clusterlab-disk check {dev}").stdout)


def put_signatures(prov, kind: str, node: str, dev: str) -> None:
    cmds = {
        "ext4": f"mkfs.ext4 -q -F {dev}",
        # This kernel does not re-read partition tables of loop devices: the GPT is on the
        # disk (sgdisk -p shows it) even though no partition device appears.
        "gpt": f"sgdisk -n 1:0:+100M -n 2:0:+100M {dev} >/dev/null && sgdisk -p {dev} | grep -q '^ *2 '",
        # No device-mapper in this kernel, so no LV: a PV and a ceph- VG are what can exist.
        "lvm": f"pvcreate -q {dev} && vgcreate -q ceph-{node}-{dev.rsplit('/', 1)[-1]} {dev}",
        "bluestore": (
            f"printf '{BLUESTORE} v1\\n' | dd of={dev} conv=notrunc status=none && "
            f"printf '{BLUESTORE} v1\\n' | dd of={dev} bs=1M seek=1024 conv=notrunc status=none"
        ),
    }
    ssh(prov, node, cmds[kind])
    assert not disk_state(prov, node, dev)["clean"], (
        f"{kind} on {node}:{dev} left the disk looking clean"
    )


def test_reset_wipes_signatures_and_refuses_guarded_disks(labs):
    """Reset wipes what Ceph leaves (BlueStore labels, ceph- volume groups) and refuses, with
    the disk's bytes unchanged, anything else: a filesystem, a partition table, a mounted
    disk, a volume group Ceph did not create."""
    spec = labs.spec("itreset", 113, nodes=3, disks=2)
    prov = labs.provider(spec)
    prov.create()
    ssh(prov, "node1", "true")
    stages.reset(spec)  # installs the disk tool; a lab where nothing ran resets cleanly

    d1, d2, d3 = (disks(prov, n) for n in ("node1", "node2", "node3"))
    put_signatures(prov, "lvm", "node1", d1[0])
    put_signatures(prov, "bluestore", "node1", d1[1])
    assert disk_state(prov, "node1", d1[1])["nonzero_offsets_mib"] == ["0", "1024"]
    # node2: a filesystem and a partition table nobody said Ceph made
    put_signatures(prov, "ext4", "node2", d2[0])
    put_signatures(prov, "gpt", "node2", d2[1])
    # node3: a mounted data disk and a disk in a volume group Ceph did not create
    mounted, in_vg = d3
    ssh(
        prov,
        "node3",
        # read-only, so that ext4 itself (lazy init, journal) cannot change the bytes we hash
        f"mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {mounted} && mkdir -p /mnt/data"
        f" && mount -o ro {mounted} /mnt/data && sync",
    )
    ssh(prov, "node3", f"pvcreate -q {in_vg} && vgcreate -q data {in_vg}")
    hashes = {
        (node, d): ssh(prov, node, f"sha256sum {d}").stdout.split()[0]
        for node, devs in (("node2", d2), ("node3", d3))
        for d in devs
    }

    def unchanged() -> None:
        for (node, dev), digest in hashes.items():
            now = ssh(prov, node, f"sha256sum {dev}").stdout.split()[0]
            assert now == digest, f"{node}:{dev} changed"

    with pytest.raises(AnsibleError) as exc:
        stages.reset(spec)
    msg = str(exc.value)
    assert f"refusing to reset node3: {mounted}: {mounted} is mounted at /mnt/data" in msg
    assert f"refusing to reset node2: {d2[0]}: {d2[0]} holds a ext4 signature" in msg
    for dev in d1:
        state = disk_state(prov, "node1", dev)
        assert state["clean"], f"node1:{dev} not clean after reset: {state}"
    assert ssh(prov, "node3", f"findmnt -n -o TARGET -S {mounted}").stdout.strip() == "/mnt/data"
    unchanged()

    ssh(prov, "node3", "umount /mnt/data")
    hashes["node3", mounted] = ssh(prov, "node3", f"sha256sum {mounted}").stdout.split()[0]
    with pytest.raises(AnsibleError) as exc:
        stages.reset(spec)
    assert f"{in_vg} belongs to volume group data, which Ceph did not create" in str(exc.value)
    unchanged()
    assert ssh(prov, "node3", "vgs --noheadings -o vg_name").stdout.split() == ["data"]
    prov.destroy()


def test_three_cycles_then_a_clean_reset_changes_nothing(labs):
    spec = labs.spec("itcycle", 114, nodes=2, disks=1)
    prov = labs.provider(spec)
    prov.create()

    refused = labs.cli("reset", "--lab", "itcycle", check=False)  # no terminal, no --yes
    assert refused.returncode == 1
    assert "confirm with --yes" in refused.stderr

    disk = {n: disks(prov, n)[0] for n in ("node1", "node2")}
    for kind in ("bluestore", "lvm", "bluestore"):
        for node in ("node1", "node2"):
            if (prov.state / "logs" / "reset.log").exists() or kind != "bluestore":
                put_signatures(prov, kind, node, disk[node])
            else:  # first cycle: the disk tool is not on the node before the first reset or prepare
                ssh(
                    prov,
                    node,
                    f"printf '{BLUESTORE}' | dd of={disk[node]} conv=notrunc status=none",
                )
        stages.reset(spec)
        stages.run_stage(spec, "prepare")
        stages.verify(spec, ["nodes"])
        for node in ("node1", "node2"):
            assert disk_state(prov, node, disk[node])["clean"]

    again = stages.reset(spec)
    assert {h: r["changed"] for h, r in again.items() if h != "localhost"} == {
        "node1": 0,
        "node2": 0,
    }
    prov.destroy()
