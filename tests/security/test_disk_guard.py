"""The disk guard (roles/common/disk_tool/files/clusterlab-disk) on real loop devices.

A disk that is mounted (also btrfs, whose st_dev is an anonymous 0:N that major:minor
comparisons miss), opened exclusively, or carries anything Ceph did not make (a filesystem,
a foreign volume group) is refused by `guard` and `zap`, and its bytes stay as they were
(sha256 before and after). `zap` removes only the target's own Ceph volume group.

Loop devices are host-wide: run this file under the machine's lab lock
(`flock /run/clusterlab-tests.lock pytest tests/security/test_disk_guard.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from clusterlab import paths

TOOL = paths.ROOT / "roles" / "common" / "disk_tool" / "files" / "clusterlab-disk"
SIZE = 160 * 2**20  # mkfs.btrfs wants ~110 MiB at least

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root"),
    pytest.mark.skipif(not shutil.which("losetup"), reason="no losetup"),
]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def tool(cmd: str, dev: str) -> tuple[int, dict]:
    res = run("bash", str(TOOL), cmd, dev, check=False)
    return res.returncode, json.loads(res.stdout)


def sha256(dev: str) -> str:
    h = hashlib.sha256()
    with open(dev, "rb") as fh:
        while chunk := fh.read(4 * 2**20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="clsec-disk-"))
    yield d
    shutil.rmtree(d)


@pytest.fixture
def loopdev(workdir):
    """A factory of loop devices over sparse files; every one detached afterwards."""
    made: list[str] = []

    def make() -> str:
        image = workdir / f"disk{len(made)}.img"
        with open(image, "wb") as fh:
            fh.truncate(SIZE)
        dev = run("losetup", "--find", "--show", str(image)).stdout.strip()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        run("losetup", "-d", dev, check=False)


@pytest.fixture
def cleanup():
    """Callbacks run at teardown, last first (umount before the loop device goes)."""
    with contextlib.ExitStack() as stack:
        yield stack


def assert_refused(dev: str, *words: str) -> str:
    before = sha256(dev)
    rc, out = tool("guard", dev)
    assert rc == 0
    assert out["ok"] is False, out
    for w in words:
        assert w in out["reason"], out
    rc, out = tool("zap", dev)
    assert rc == 3, out
    assert out["ok"] is False
    assert sha256(dev) == before, f"{dev} changed although refused"
    return out["reason"]


def need(fs: str, binary: str) -> None:
    if fs not in Path("/proc/filesystems").read_text().split() or not shutil.which(binary):
        pytest.skip(f"{fs} needs kernel support and {binary}")


def test_mounted_btrfs_with_anonymous_st_dev_is_refused(loopdev, workdir, cleanup):
    need("btrfs", "mkfs.btrfs")
    dev = loopdev()
    run("mkfs.btrfs", "-q", dev)
    mnt = workdir / "mnt"
    mnt.mkdir()
    run("mount", "-o", "ro", dev, str(mnt))
    cleanup.callback(run, "umount", str(mnt), check=False)
    assert os.major(os.stat(mnt).st_dev) == 0, "btrfs should report an anonymous device number"
    assert_refused(dev, "mounted at")


def test_unmounted_filesystems_are_refused(loopdev):
    dev = loopdev()
    run("mkfs.ext4", "-q", "-F", dev)
    assert_refused(dev, "ext4 signature", "Ceph did not make")
    if "btrfs" in Path("/proc/filesystems").read_text() and shutil.which("mkfs.btrfs"):
        dev = loopdev()
        run("mkfs.btrfs", "-q", dev)
        assert_refused(dev, "btrfs signature")


def test_exclusive_user_is_refused(loopdev, cleanup):
    """Another program holding the device with O_EXCL (as a mounted filesystem, md or dm do)."""
    dev = loopdev()
    fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    cleanup.callback(os.close, fd)
    assert_refused(dev, "in use", "exclusively")


def test_partition_table_is_refused(loopdev):
    dev = loopdev()
    # an MBR with one Linux partition (sectors 2048..+100000), as fdisk would write it
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little")
    entry += (100000).to_bytes(4, "little")
    with open(dev, "r+b") as fh:
        fh.seek(446)
        fh.write(entry)
        fh.seek(510)
        fh.write(b"\x55\xaa")
    assert tool("check", dev)[1]["signatures"] == ["dos"]
    assert_refused(dev, "signature", "Ceph did not make")


def test_path_that_is_not_a_device_is_refused_as_data(workdir):
    mark = workdir / "pwned"
    rc, out = tool("zap", f"/dev/loop0$(touch {mark})")
    assert rc == 3
    assert out == {"ok": False, "reason": "it is not a block device"}
    assert not mark.exists()


@pytest.fixture
def lvm():
    if not shutil.which("vgcreate"):
        pytest.skip("no LVM tools")
    made: list[tuple[str, str]] = []

    def vg(name: str, dev: str) -> None:
        run("pvcreate", "-q", "-y", dev)
        made.append(("", dev))
        run("vgcreate", "-q", name, dev)
        made.append((name, dev))

    yield vg
    for name, dev in reversed(made):
        if name:
            run("vgremove", "-q", "-ff", "-y", name, check=False)
        else:
            run("pvremove", "-q", "-ff", "-y", dev, check=False)


def vgs() -> list[str]:
    return run("vgs", "--noheadings", "-o", "vg_name").stdout.split()


def test_foreign_volume_group_is_refused(loopdev, lvm):
    dev = loopdev()
    name = f"data-{uuid.uuid4().hex[:8]}"
    lvm(name, dev)
    assert_refused(dev, f"volume group {name}, which Ceph did not create")
    assert name in vgs()


def test_zap_removes_only_the_targets_own_ceph_volume_group(loopdev, lvm, cleanup):
    target, bystander = loopdev(), loopdev()
    own, other = (f"ceph-{uuid.uuid4()}" for _ in range(2))
    lvm(own, target)
    lvm(other, bystander)
    before = sha256(bystander)
    # another OSD's device directory (what LVM makes for its LVs): not the target's to remove
    others_dir = Path("/dev") / other
    others_dir.mkdir(exist_ok=True)
    cleanup.callback(shutil.rmtree, others_dir, ignore_errors=True)
    rc, out = tool("zap", target)
    assert (rc, out["ok"]) == (0, True), out
    assert f"vgremove {own}" in out["steps"]
    assert own not in vgs()
    assert other in vgs(), "zap removed another disk's Ceph volume group"
    assert others_dir.is_dir(), "zap removed another Ceph volume group's /dev entry"
    assert sha256(bystander) == before
    rc, state = tool("check", target)
    assert state["clean"], state


def test_bluestore_label_is_zapped(loopdev):
    dev = loopdev()
    with open(dev, "r+b") as fh:
        fh.write(b"bluestore block device\n" + uuid.uuid4().bytes.hex().encode() + b"\n")
    assert tool("check", dev)[1]["signatures"] == ["ceph_bluestore"]
    assert tool("guard", dev)[1] == {"ok": True}
    rc, out = tool("zap", dev)
    assert (rc, out["ok"]) == (0, True), out
    assert tool("check", dev)[1]["clean"]


def test_zfs_member_is_refused(loopdev):
    """ZFS labels: uberblocks (magic 0x00bab10c) in the first label's ring at 128 KiB, as
    libblkid recognises a pool member (written here, no ZFS needed)."""
    dev = loopdev()
    with open(dev, "r+b") as fh:
        for i in range(8):
            fh.seek(128 * 1024 + i * 1024)
            fh.write((0x00BAB10C).to_bytes(8, "little") + (5000).to_bytes(8, "little"))
    assert "zfs_member" in tool("check", dev)[1]["signatures"]
    assert_refused(dev, "zfs_member signature", "Ceph did not make")


def md_superblock() -> bytes:
    """An md 1.2 superblock (RAID1 member, 2 devices) as mdadm writes it at 4 KiB, its
    checksum computed the kernel's way (drivers/md/md.c calc_sb_1_csum)."""
    sb = bytearray(256 + 2 * 2)
    struct.pack_into("<IIII", sb, 0, 0xA92B4EFC, 1, 0, 0)  # magic, major version 1
    sb[16:32] = uuid.uuid4().bytes  # set uuid
    sb[32:40] = b"lab:md0\0"
    struct.pack_into("<II", sb, 72, 1, 0)  # level 1
    struct.pack_into("<Q", sb, 80, 100000)  # size
    struct.pack_into("<II", sb, 88, 0, 2)  # chunk, raid disks
    struct.pack_into("<QQQ", sb, 128, 2048, 100000, 8)  # data offset, size, super offset
    sb[168:184] = uuid.uuid4().bytes  # device uuid
    struct.pack_into("<I", sb, 220, 2)  # max_dev
    struct.pack_into("<HH", sb, 256, 0, 1)  # dev roles
    total = sum(struct.unpack_from(f"<{len(sb) // 4}I", sb))
    struct.pack_into("<I", sb, 216, ((total & 0xFFFFFFFF) + (total >> 32)) & 0xFFFFFFFF)
    return bytes(sb)


def test_md_member_is_refused(loopdev):
    dev = loopdev()
    with open(dev, "r+b") as fh:
        fh.seek(4096)
        fh.write(md_superblock())
    assert tool("check", dev)[1]["signatures"] == ["linux_raid_member"]
    assert_refused(dev, "linux_raid_member signature", "Ceph did not make")
