"""Real Ceph on a local node's lab disks: the disk path Rook's osd-prepare takes, made real.

One 1-node lab with two disks for the module; Debian 12's Ceph 16.2 (ceph-osd with
ceph-volume, ceph-mon, ceph-mgr) installed in the node. Checks, in order:
- each lab disk is in the node's /dev under its kernel name (lsblk's KNAME) with its size;
- `ceph-volume inventory` (the check osd-prepare makes before it uses a disk) finds a fresh
  disk available;
- a BlueStore OSD written onto the first disk by ceph-osd itself makes it unavailable and
  `ceph-volume raw list` finds it; `clusterlab reset --yes` makes it available again and
  `raw list` empty;
- a single-node Ceph (a mon for the node's lab address, an OSD on the second disk, a mgr):
  `ceph status -f json` from it goes through the verify ceph layer's parser.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from nodes import disks, ssh

from clusterlab import cephstatus

pytestmark = pytest.mark.integration

LAB, NET = "cephdisks", 60
SIZES = ["6G", "7G"]  # different sizes, so a disk swapped for another is noticed
CEPH_PACKAGES = "ceph-osd ceph-base ceph-mon ceph-mgr udev"
VOLUME = "CEPH_VOLUME_ALLOW_LOOP_DEVICES=true ceph-volume"  # Rook passes the same for loops


@pytest.fixture(scope="module")
def lab(module_labs):
    spec = module_labs.spec(LAB, NET, disks=SIZES)
    prov = module_labs.provider(spec)
    prov.create()
    ssh(
        prov,
        "node1",
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
        f"apt-get install -y -q --no-install-recommends {CEPH_PACKAGES} >/tmp/apt.log 2>&1 "
        "|| { tail -20 /tmp/apt.log; exit 1; }",
    )
    yield spec, prov, module_labs
    prov.destroy()


def inventory_of(prov, dev: str) -> dict:
    return json.loads(ssh(prov, "node1", f"{VOLUME} inventory --format json {dev}").stdout)


def raw_list(prov, dev: str) -> dict:
    return json.loads(ssh(prov, "node1", f"{VOLUME} raw list --format json {dev}").stdout)


def test_disks_are_in_the_node_under_their_kernel_names(lab):
    spec, prov, _ = lab
    out = json.loads(ssh(prov, "node1", "lsblk -J -b -o KNAME,PATH,SIZE").stdout)
    by_path = {d["path"]: d for d in out["blockdevices"]}
    sizes = [d["size_bytes"] for d in spec["nodes"][0]["disks"]]
    for dev, size in zip(disks(prov, "node1"), sizes, strict=True):
        assert dev in by_path, f"lsblk in the node does not list {dev}"
        assert "/dev/" + by_path[dev]["kname"] == dev
        assert int(by_path[dev]["size"]) == size
        assert ssh(prov, "node1", f"test -b {dev}", check=False).returncode == 0


def test_fresh_disks_are_available_to_ceph_volume(lab):
    _, prov, _ = lab
    for dev in disks(prov, "node1"):
        inv = inventory_of(prov, dev)
        assert inv["available"] is True, f"{dev}: {inv['rejected_reasons']}"
        assert inv["sys_api"]["size"] > 5 * 2**30  # read through sysfs by the kernel's name


def test_bluestore_osd_then_reset_makes_the_disk_available_again(lab):
    _, prov, labs = lab
    dev = disks(prov, "node1")[0]
    # a real BlueStore OSD, written by ceph-osd itself, without any mon
    ssh(
        prov,
        "node1",
        "set -e; d=/tmp/osd-mkfs; rm -rf $d; mkdir -p $d; "
        f"ln -s {dev} $d/block; "
        'printf "[global]\\nfsid = %s\\n" "$(cat /proc/sys/kernel/random/uuid)" > $d.conf; '
        "ceph-osd -c $d.conf --mkfs -i 0 --osd-objectstore bluestore --osd-data $d "
        "--no-mon-config >$d.log 2>&1 || { cat $d.log; exit 1; }",
    )
    inv = inventory_of(prov, dev)
    assert inv["available"] is False
    assert "Has BlueStore device label" in inv["rejected_reasons"]
    found = raw_list(prov, dev)
    assert [(o["device"], o["osd_id"], o["type"]) for o in found.values()] == [
        (dev, 0, "bluestore")
    ]

    labs.cli("reset", "--lab", LAB, "--yes", timeout=600)
    inv = inventory_of(prov, dev)
    assert inv["available"] is True, inv["rejected_reasons"]
    assert raw_list(prov, dev) == {}


CEPH_CONF = """\
[global]
fsid = {fsid}
mon initial members = node1
mon host = {ip}
public network = {cidr}
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
osd pool default size = 1
osd crush chooseleaf type = 0
# The mon's data lives on this machine's disk, whose free space is no business of the test:
# MON_DISK_LOW only below 1 % free.
mon data avail warn = 1
"""


def test_real_single_node_ceph_status_parses(lab):
    spec, prov, _ = lab
    node = spec["nodes"][0]
    dev = disks(prov, "node1")[1]
    fsid = uuid.uuid4()
    conf = CEPH_CONF.format(fsid=fsid, ip=node["address"], cidr=spec["network"]["cidr"])

    def status() -> cephstatus.Summary:
        out = ssh(prov, "node1", "ceph status -f json --connect-timeout 20").stdout
        return cephstatus.summarize(json.loads(out))

    try:
        ssh(
            prov,
            "node1",
            f"set -e; mkdir -p /etc/ceph; cat > /etc/ceph/ceph.conf <<EOF\n{conf}EOF\n"
            f"monmaptool --create --addv node1 '[v2:{node['address']}:3300,v1:{node['address']}:6789]'"
            f" --fsid {fsid} /tmp/monmap >/dev/null; "
            "ceph-authtool --create-keyring /tmp/mon.keyring --gen-key -n mon. --cap mon 'allow *' "
            ">/dev/null; mkdir -p /var/lib/ceph/mon/ceph-node1; "
            "ceph-mon --mkfs -i node1 --monmap /tmp/monmap --keyring /tmp/mon.keyring; "
            "ceph-mon -i node1 --pid-file /run/cltest-mon.pid",
        )
        only_mon = status()
        assert only_mon.quorum == ["node1"]
        assert (only_mon.osds, only_mon.mgr_active) == (0, False)
        assert cephstatus.missing(only_mon, mons=1, osds=1)[:4] == [
            "no mgr is active",
            "0 of 1 OSDs exist (osd-prepare has not created the others)",
            "0 of 1 OSDs up",
            "0 of 1 OSDs in",
        ]

        ssh(
            prov,
            "node1",
            "set -e; uuid=$(cat /proc/sys/kernel/random/uuid); id=$(ceph osd new $uuid); "
            f"d=/var/lib/ceph/osd/ceph-$id; mkdir -p $d; ln -sf {dev} $d/block; "
            "ceph-osd --mkfs -i $id --osd-uuid $uuid --osd-objectstore bluestore >/tmp/osd.log 2>&1"
            " || { cat /tmp/osd.log; exit 1; }; ceph-osd -i $id --pid-file /run/cltest-osd.pid; "
            "mkdir -p /var/lib/ceph/mgr/ceph-node1; ceph-mgr -i node1 --pid-file /run/cltest-mgr.pid",
        )
        # The mgr creates its device_health_metrics pool at size 1: POOL_NO_REDUNDANCY, the
        # warning a one-OSD-host Rook lab has too. Wait until that is the only check.
        deadline = time.monotonic() + 90
        while True:
            now = status()
            settled = (
                now.mgr_active and now.osds_up == 1 and set(now.checks) == {"POOL_NO_REDUNDANCY"}
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert now.quorum == ["node1"]
        assert now.mgr_active is True
        assert (now.osds, now.osds_up, now.osds_in) == (1, 1, 1)
        assert now.health == "HEALTH_WARN"
        assert now.checks == {"POOL_NO_REDUNDANCY": "1 pool(s) have no replicas configured"}
        assert cephstatus.missing(now, mons=1, osds=1) == [
            "HEALTH_WARN (POOL_NO_REDUNDANCY: 1 pool(s) have no replicas configured)"
        ]
        assert cephstatus.missing(now, mons=3, osds=2)[:2] == [
            "1 of 3 mons in quorum (node1)",
            "1 of 2 OSDs exist (osd-prepare has not created the others)",
        ]
        # Ceph's own view of the OSD's device is the lab disk's kernel name
        meta = json.loads(ssh(prov, "node1", "ceph osd metadata 0 -f json").stdout)
        assert meta["bluestore_bdev_dev_node"] == dev
    finally:
        ssh(
            prov,
            "node1",
            "for f in /run/cltest-*.pid; do [ -e $f ] && kill $(cat $f); done; true",  # ours only
            check=False,
        )
