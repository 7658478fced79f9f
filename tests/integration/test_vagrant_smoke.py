"""A real `inv up` of a 1-node vagrant lab: libvirt, qemu in software emulation, a locally built box.

Slow (minutes): the box is built once and cached outside the repo; the VM boots under TCG.
The test starts virtlogd and libvirtd itself when they are not running (PID 1 is not
systemd here) and stops what it started; it leaves no domain, volume, network or pool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from nodes import ssh
from vagrant_box import BOX_NAME, build_box

from clusterlab import paths

pytestmark = [
    pytest.mark.vagrant,
    pytest.mark.skipif(
        not all(
            shutil.which(t)
            for t in ("vagrant", "libvirtd", "virtlogd", "qemu-system-x86_64", "extlinux")
        ),
        reason="needs vagrant, vagrant-libvirt, libvirt, qemu and extlinux (inv setup --provider vagrant)",
    ),
]

LAB = "itvag"
PREFIX = f"clusterlab-{LAB}-"


def virsh(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=check
    )


def names(*args: str) -> list[str]:
    return [x for x in virsh(*args, "--name").stdout.split() if x]


def nft_tables() -> set[tuple[str, str]]:
    out = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=False
    ).stdout
    return {
        (f, t)
        for _, f, t in (line.split() for line in out.splitlines() if line.startswith("table "))
    }


def running(name: str) -> bool:
    """A live (not zombie) process with this command name."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split()
        except OSError:
            continue
        if fields[1] == f"({name})" and fields[2] != "Z":
            return True
    return False


@pytest.fixture
def libvirt():
    """libvirtd + virtlogd running (started here if needed), a 'default' pool; all undone after."""
    started = []
    for daemon in ("virtlogd", "libvirtd"):
        if (
            subprocess.run(["pgrep", "-x", daemon], capture_output=True, check=False).returncode
            != 0
        ):
            subprocess.run([daemon, "-d"], check=True)
            started.append(daemon)
    for _ in range(50):
        if virsh("version").returncode == 0:
            break
        time.sleep(0.2)
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forward_before = forward.read_text()
    tables_before = nft_tables()
    pools_before = set(names("pool-list", "--all"))
    nets_before = set(names("net-list", "--all"))
    if "default" not in pools_before:
        Path("/var/lib/libvirt/images").mkdir(parents=True, exist_ok=True)
        virsh("pool-define-as", "default", "dir", "--target", "/var/lib/libvirt/images", check=True)
        virsh("pool-start", "default", check=True)
    yield
    for dom in names("list", "--all"):
        if dom.startswith(PREFIX):
            virsh("destroy", dom)
            virsh("undefine", dom, "--remove-all-storage")
    for vol in names("vol-list", "default") if "default" in names("pool-list", "--all") else []:
        if vol.startswith(PREFIX) or "debian12-smoke" in vol:
            virsh("vol-delete", vol, "--pool", "default")
    images = Path("/var/lib/libvirt/images")  # what the pool did not list (or a pool already gone)
    for leftover in [*images.glob(f"{PREFIX}*"), *images.glob("*debian12-smoke*")]:
        leftover.unlink()
    for net in set(names("net-list", "--all")) - nets_before:
        virsh("net-destroy", net)
        virsh("net-undefine", net)
    if "default" not in pools_before:
        virsh("pool-destroy", "default")
        virsh("pool-undefine", "default")
    for daemon in reversed(started):
        subprocess.run(["pkill", "-x", daemon], check=False)
        for _ in range(100):
            if not running(daemon):
                break
            time.sleep(0.1)
    # libvirt's NAT networks made iptables tables and turned forwarding on: undo what was new
    for family, table in nft_tables() - tables_before:
        subprocess.run(["nft", "delete", "table", family, table], check=False)
    forward.write_text(forward_before)
    assert nft_tables() == tables_before, "nft tables left behind"
    assert not [d for d in ("libvirtd", "virtlogd") if d in started and running(d)], (
        "daemons left running"
    )


def test_vagrant_up_verify_down(labs, libvirt, tmp_path):
    box = build_box(paths.cache_root() / "boxes")
    vagrant_home = tmp_path / "vagrant.d"
    env = {**labs.env(), "VAGRANT_HOME": str(vagrant_home)}
    subprocess.run(
        ["vagrant", "box", "add", "--name", BOX_NAME, str(box)],
        env=env,
        check=True,
        capture_output=True,
    )

    raw = {
        "name": LAB,
        "provider": "vagrant",
        "os": "debian12",
        "network": {"cidr": "10.213.130.0/24"},
        "vagrant": {"box": BOX_NAME, "libvirt_driver": "qemu"},
        "nodes": {"count": 1, "cpus": 2, "memory": 1536, "disks": [{"size": "6G"}]},
    }
    (labs.inventories / LAB).mkdir()
    (labs.inventories / LAB / "lab.yml").write_text(yaml.safe_dump(raw))
    state = labs.state_root / LAB
    try:
        home = {"VAGRANT_HOME": str(vagrant_home)}
        res = labs.cli(
            "up", "--lab", LAB, "--until", "prepare", check=False, env_extra=home, timeout=900
        )
        assert res.returncode == 0, res.stdout + res.stderr[-4000:]
        assert "ok verify nodes" in res.stderr
        assert ssh(state / "ssh_config", "node1", "hostname").stdout.strip() == "node1"
        out = ssh(state / "ssh_config", "node1", "ip -4 -o addr").stdout
        assert "10.213.130.11/" in out  # the private address Vagrant set from the plan
        assert ssh(
            state / "ssh_config", "node1", "lsblk -dn -o NAME,SIZE /dev/vdb"
        ).stdout.split() == ["vdb", "6G"]
        status = labs.cli("status", "--lab", LAB, env_extra=home).stdout
        assert "running" in status
    finally:
        down = labs.cli(
            "down",
            "--lab",
            LAB,
            check=False,
            env_extra={"VAGRANT_HOME": str(vagrant_home)},
            timeout=600,
        )
    assert down.returncode == 0, down.stderr
    assert [d for d in names("list", "--all") if d.startswith(PREFIX)] == []
    assert [v for v in names("vol-list", "default") if v.startswith(PREFIX)] == []
    assert f"clusterlab-{LAB}" not in names("net-list", "--all")
    assert not state.exists()
    assert os.path.isdir(vagrant_home)  # box cache is the test's own temp dir
