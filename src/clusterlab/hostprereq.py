"""Host prerequisites per provider and for the test suite: check, install with apt where we may.

apt installs exactly the listed packages (--no-install-recommends), says which in one line
first, and writes its own output to a log (.clusterlab/logs/apt.log), not the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clusterlab import paths, ui

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


# What the project's own test suite needs beyond the local provider: `inv test` installs it
# (as root on Debian/Ubuntu), so no test is skipped for a package the README's commands could
# have installed. Debian package -> what needs it.
TEST_PACKAGES = {
    "redis-server": "tests/integration/test_redis_ha_logic.py (the redis-ha demo's commands)",
    "redis-sentinel": "tests/integration/test_redis_ha_logic.py (Sentinel failover)",
    "redis-tools": "tests/integration/test_redis_ha_logic.py (redis-cli, redis-check-rdb)",
    "docker-registry": "offline bundles: the registry that serves a bundle's images",
    "skopeo": "offline bundles: artifacts fetch, loading images into the registry",
    "umoci": "tests/integration/ociimage.py (a test image built here)",
    "busybox-static": "tests/integration/ociimage.py (the test image's one binary)",
    "vagrant": "the vagrant provider: vagrant validate, the smoke test",
    "vagrant-libvirt": "the vagrant provider's libvirt plugin",
    "ruby": "tests/fixtures/vagrant-describe.rb (the Vagrantfile read by Vagrant's Ruby)",
    "libvirt-daemon-system": "the vagrant smoke test (libvirt)",
    "libvirt-clients": "the vagrant smoke test (virsh)",
    "qemu-system-x86": "the vagrant smoke test (qemu, software emulation)",
    "qemu-utils": "the vagrant smoke test (qemu-img)",
    "dnsmasq-base": "the vagrant smoke test (libvirt's network)",
    "iptables": "the vagrant smoke test (libvirt's network)",
    "ebtables": "the vagrant smoke test (libvirt's network)",
    "extlinux": "tests/integration/vagrant_box.py (the locally built box's boot loader)",
    "syslinux-common": "tests/integration/vagrant_box.py (the box's boot loader modules)",
    "fdisk": "tests/integration/vagrant_box.py (the box's partition table)",
    "btrfs-progs": "tests/security/test_disk_guard.py (a btrfs disk is refused)",
    "lvm2": "tests/security/test_disk_guard.py (a foreign volume group is refused)",
}


def apt_command(pkgs: list[str]) -> str:
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(pkgs)


def apt_argv(pkgs: list[str]) -> list[str]:
    """apt-get install of exactly these packages: no recommended ones (a vagrant lab once
    pulled in 445 packages, exim4 and mdadm among them), no questions."""
    return ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs]


def is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return "ID=debian" in text or "ID_LIKE=debian" in text or "ID=ubuntu" in text


def can_install() -> bool:
    return os.geteuid() == 0 and is_debian_like() and bool(shutil.which("apt-get"))


def uninstalled(pkgs: list[str]) -> list[str]:
    """Which of these Debian packages dpkg does not have installed (none known without dpkg:
    the tests that need a tool then skip, naming it)."""
    if not shutil.which("dpkg-query"):
        return []
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *pkgs],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {line.split()[0] for line in res.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in pkgs if p not in installed]


def apt_log() -> Path:
    return paths.state_root() / "logs" / "apt.log"


def confirm(pkgs: list[str], why: str) -> bool:
    """Ask on a terminal before installing; False without one (the caller says what to run)."""
    if not sys.stdin.isatty():
        return False
    answer = input(f"Install {len(pkgs)} package(s) with apt for {why}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def install(pkgs: list[str], why: str, log: Path | None = None) -> None:
    """apt-get update + install of exactly `pkgs`: the list in one line first, apt's output
    into the log, one progress line per step on stderr."""
    log = log or apt_log()
    log.parent.mkdir(parents=True, exist_ok=True)
    ui.info(f"installing with apt for {why}: {' '.join(pkgs)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log.open("a") as out:
        for step, argv in (
            ("apt-get update", ["apt-get", "update", "-q"]),
            ("apt-get install", apt_argv(pkgs)),
        ):
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            ui.info(f"==> {step} (output: {log})")
            start = time.monotonic()
            rc = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            took = time.monotonic() - start
            if rc == 0:
                ui.info(f"ok {step} ({took:.1f} s)")
            else:
                ui.info(f"FAILED {step} ({took:.1f} s): exit {rc}, see {log}")


def ensure(provider: str, install_missing: bool = True, ask: bool = False) -> list[str]:
    """Return packages still missing after trying to install them (empty: all present).

    `up` installs its provider's short list unattended; `setup` asks first (`ask`)."""
    pkgs = missing_packages(provider)
    if not pkgs or not install_missing or not can_install():
        return pkgs
    if ask and not confirm(pkgs, f"the {provider} provider"):
        return pkgs
    install(pkgs, f"the {provider} provider")
    return missing_packages(provider)


def ensure_test_packages() -> list[str]:
    """The test suite's packages (TEST_PACKAGES and the local provider's), installed
    unattended where we may; returns what is still missing."""
    pkgs = sorted(set(uninstalled(list(TEST_PACKAGES))) | set(missing_packages("local")))
    if pkgs and can_install():
        install(pkgs, "the test suite")
        pkgs = sorted(set(uninstalled(list(TEST_PACKAGES))) | set(missing_packages("local")))
    return pkgs
