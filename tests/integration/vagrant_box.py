"""A small Debian 12 libvirt box built locally (no box can be downloaded here), for the
vagrant smoke test. Built once and cached outside the repo (~/.cache/clusterlab/boxes/).

debootstrap with a kernel, ifupdown (Vagrant sets the private address through it), sshd,
a vagrant user with Vagrant's insecure key and passwordless sudo; one ext4 partition made
with `mkfs.ext4 -d` at a 1 MiB offset, booted by extlinux (installed through a loop mount
with an offset: this kernel does not scan partitions on loop devices).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from clusterlab.providers.rootfs import host_mirrors, node_sources

BOX_NAME = "clusterlab/debian12-smoke"
IMAGE_MIB = 3072
OFFSET = 1048576
PACKAGES = (
    "linux-image-amd64,initramfs-tools,systemd,systemd-sysv,dbus,openssh-server,sudo,ifupdown,"
    "isc-dhcp-client,python3,python3-apt,iproute2,ca-certificates,kmod,udev"
)
VAGRANT_PUB = Path("/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub")
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")


def run(*cmd: str, **kw) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kw)


def _configure(root: Path) -> None:
    (root / "etc/hostname").write_text("debian12-smoke\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/fstab").write_text("/dev/vda1 / ext4 defaults,errors=remount-ro 0 1\n")
    (root / "etc/network/interfaces").write_text(
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n"
    )
    (root / "etc/apt/sources.list").write_text("")
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(node_sources("bookworm"))
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    run("chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "vagrant")
    (root / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(VAGRANT_PUB.read_text())
    run("chroot", str(root), "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")
    (ssh / "authorized_keys").chmod(0o600)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # made at first boot, so every VM has its own
    drop = root / "etc/systemd/system/ssh.service.d"
    drop.mkdir(parents=True, exist_ok=True)
    # ssh.service checks its config (sshd -t) before starting: make the keys before that check.
    (drop / "hostkeys.conf").write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
    )
    (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)
    (root / "etc/ssh/sshd_config.d/vagrant.conf").write_text("UseDNS no\n")
    (root / "etc/machine-id").write_text("")
    # A test box: packages installed later (lvm2, …) must not rebuild the initrd, which takes
    # minutes under software emulation; the one built here boots the box.
    conf = root / "etc/initramfs-tools/update-initramfs.conf"
    conf.write_text("update_initramfs=no\nbackup_initramfs=no\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)


def _image(root: Path, work: Path) -> Path:
    raw = work / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(IMAGE_MIB * 2**20)
    run("sfdisk", "-q", str(raw), input=b"start=2048, type=83, bootable\n")
    fs_kib = (IMAGE_MIB * 2**20 - OFFSET) // 1024
    run(
        "mkfs.ext4",
        "-q",
        "-F",
        "-O",
        "^64bit,^metadata_csum",
        "-E",
        f"offset={OFFSET}",
        "-d",
        str(root),
        str(raw),
        f"{fs_kib}k",
    )
    mnt = work / "mnt"
    mnt.mkdir()
    run("mount", "-o", f"loop,offset={OFFSET}", str(raw), str(mnt))
    try:
        kernel = sorted((mnt / "boot").glob("vmlinuz-*"))[-1].name
        initrd = sorted((mnt / "boot").glob("initrd.img-*"))[-1].name
        ext = mnt / "boot/extlinux"
        ext.mkdir(parents=True, exist_ok=True)
        run("extlinux", "--install", str(ext))
        (ext / "extlinux.conf").write_text(
            "DEFAULT linux\nTIMEOUT 1\nLABEL linux\n"
            f"  KERNEL /boot/{kernel}\n"
            f"  APPEND initrd=/boot/{initrd} root=/dev/vda1 rw console=ttyS0 net.ifnames=0 biosdevname=0\n"
        )
    finally:
        run("umount", str(mnt))
    run("dd", f"if={MBR}", f"of={raw}", "bs=440", "count=1", "conv=notrunc")
    img = work / "box.img"
    run("qemu-img", "convert", "-O", "qcow2", str(raw), str(img))
    raw.unlink()
    return img


def build_box(cache: Path) -> Path:
    """The box file, built on first use (a few minutes) and cached."""
    box = cache / "debian12-smoke-libvirt.box"
    if box.exists():
        return box
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        mirror, _ = host_mirrors()
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={PACKAGES}",
            "bookworm",
            str(root),
            mirror,
        )
        _configure(root)
        img = _image(root, work)
        (work / "metadata.json").write_text(
            json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": IMAGE_MIB // 1024}
            )
        )
        (work / "Vagrantfile").write_text(
            'Vagrant.configure("2") { |c| c.ssh.insert_key = true }\n'
        )
        partial = box.with_suffix(".partial")
        run("tar", "-C", str(work), "-cf", str(partial), "metadata.json", "Vagrantfile", img.name)
        partial.rename(box)
    return box
