"""Base root filesystems for local nodes: debootstrap once, cache, share read-only.

Node identity (machine-id, SSH host keys) is never baked into the cache; nodes get theirs
in their own overlay upper dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

from clusterlab import paths, ui
from clusterlab.providers.base import ProviderError

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "kmod",
    "lvm2",
    "gdisk",
    "ca-certificates",
    "iputils-ping",
    "less",
)
APT_SOURCE_FILES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")


def host_mirrors() -> tuple[str, str | None]:
    """(debian mirror URI, security mirror URI or None) the host's apt already uses."""
    uris: list[str] = []
    for name in APT_SOURCE_FILES:
        try:
            text = Path(name).read_text()
        except OSError:
            continue
        uris += re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
    security = next((u for u in uris if u.rstrip("/").endswith("-security")), None)
    main = next((u for u in uris if not u.rstrip("/").endswith("-security")), None)
    if not main:
        raise ProviderError(
            "cannot find the host's Debian mirror in " + " or ".join(APT_SOURCE_FILES)
        )
    return main, security


def node_sources(suite: str) -> str:
    """deb822 apt sources for a node: the host's own mirrors, the node's suite."""
    main, security = host_mirrors()
    text = f"Types: deb\nURIs: {main}\nSuites: {suite} {suite}-updates\nComponents: main\n"
    text += "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    if security:
        text += f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        text += "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    return text


def cache_key(suite: str, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    return f"{suite}-{digest}"


def rootfs_dir(suite: str) -> Path:
    return paths.cache_root() / "rootfs" / cache_key(suite)


def ensure_rootfs(suite: str) -> Path:
    """The cached base rootfs for `suite`, built with debootstrap if missing."""
    target = rootfs_dir(suite)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        _build(suite, target)
    return target


def _build(suite: str, target: Path) -> None:
    main, _ = host_mirrors()
    tmp = target.with_name(target.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    log = target.with_name(target.name + ".log")
    ui.info(f"    building the {suite} base rootfs with debootstrap (once; ~1 min) -> {target}")
    start = time.monotonic()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        suite,
        str(tmp),
        main,
    ]
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(log.read_text().splitlines()[-10:])
        raise ProviderError(
            f"debootstrap {suite} failed (exit {proc.returncode}); see {log}\n{tail}"
        )
    _strip_identity(tmp)
    _configure(tmp, suite)
    (tmp / ".complete").write_text(f"built in {time.monotonic() - start:.0f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _strip_identity(root: Path) -> None:
    """Remove what makes a machine unique; each node gets its own."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _configure(root: Path, suite: str) -> None:
    """Settings every node shares: networkd for host0, sshd keys-only, apt sources."""
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    networkd = wants / "systemd-networkd.service"
    if not networkd.exists():
        networkd.symlink_to("/lib/systemd/system/systemd-networkd.service")
    # Units that cannot work in a container sharing the host kernel.
    for unit in ("getty@tty1.service", "console-getty.service"):
        mask = root / "etc/systemd/system" / unit
        if not mask.exists():
            mask.symlink_to("/dev/null")
    sshd = root / "etc/ssh/sshd_config.d"
    sshd.mkdir(parents=True, exist_ok=True)
    (sshd / "clusterlab.conf").write_text(
        "PasswordAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\n"
    )
    (root / "etc/apt/sources.list").write_text("")
    (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(node_sources(suite))
    (root / "etc/apt/apt.conf.d/99clusterlab").write_text(
        'APT::Install-Recommends "false";\nAcquire::Retries "3";\n'
    )
