"""Host prerequisites per provider: check, and install with apt where we may."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from clusterlab import ui

# command -> Debian package that ships it
LOCAL_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "sgdisk": "gdisk",
    "ip": "iproute2",
    "losetup": "util-linux",
    "nsenter": "util-linux",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "mkfs.ext4": "e2fsprogs",
    "wipefs": "util-linux",
}
VAGRANT_TOOLS = {
    "vagrant": "vagrant",
    "virsh": "libvirt-clients",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
}
VAGRANT_EXTRA_PACKAGES = ["vagrant-libvirt", "ebtables", "dnsmasq-base", "iptables"]
PROVIDER_TOOLS = {
    "local": LOCAL_TOOLS,
    "vagrant": VAGRANT_TOOLS,
    "static": {"ssh": "openssh-client"},
}


def _which(cmd: str) -> bool:
    if shutil.which(cmd):
        return True
    return any(Path(d, cmd).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin"))


def missing_packages(provider: str) -> list[str]:
    tools = PROVIDER_TOOLS[provider]
    pkgs = sorted({pkg for cmd, pkg in tools.items() if not _which(cmd)})
    if (
        provider == "vagrant"
        and not Path("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json").exists()
    ):
        pkgs += [p for p in VAGRANT_EXTRA_PACKAGES if p not in pkgs]
    return pkgs


def apt_command(pkgs: list[str]) -> str:
    return "apt-get update && apt-get install -y " + " ".join(pkgs)


def is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return "ID=debian" in text or "ID_LIKE=debian" in text or "ID=ubuntu" in text


def ensure(provider: str, install: bool = True) -> list[str]:
    """Return packages still missing after trying to install them (empty: all present)."""
    pkgs = missing_packages(provider)
    if not pkgs:
        return []
    if install and os.geteuid() == 0 and is_debian_like() and shutil.which("apt-get"):
        ui.info(f"installing host packages for the {provider} provider: {' '.join(pkgs)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], check=False, env=env)
        pkgs = missing_packages(provider)
    return pkgs
