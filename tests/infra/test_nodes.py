"""Verify, node layer: what the prepare stage promises, checked on every node.

Run by `inv verify` as pytest --hosts=ansible://all --ansible-inventory=<state>/hosts.yml.
Expected values come from the inventory (host.ansible.get_variables()).
"""

from __future__ import annotations

import json
import time

import pytest
from labkube import host_vars, node_command

MODULE_FEATURES = {
    "overlay": "grep -qw overlay /proc/filesystems",
    "br_netfilter": "test -e /proc/sys/net/bridge/bridge-nf-call-iptables",
    "rbd": "test -d /sys/bus/rbd",
}
SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
}
MIN_DISK = 5 * 1024**3


@pytest.fixture
def hv(host):
    return host_vars(host)


def test_swap_off(host):
    swaps = host.file("/proc/swaps").content_string.strip().splitlines()
    assert swaps[1:] == [], f"active swap: {swaps[1:]}"


@pytest.mark.parametrize("module", list(MODULE_FEATURES))
def test_kernel_module(host, hv, module):
    assert module in host.file("/etc/modules-load.d/clusterlab.conf").content_string.split()
    if host.run(MODULE_FEATURES[module]).rc == 0:
        return
    kernel = host.check_output("uname -r")
    if hv.get("clusterlab_shared_kernel"):
        pytest.skip(
            f"{module} is absent from the host kernel {kernel}, which this node shares: not loadable here"
        )
    pytest.fail(f"{module} is not available in kernel {kernel}")


@pytest.mark.parametrize(("key", "value"), list(SYSCTLS.items()))
def test_sysctl(host, key, value):
    assert host.sysctl(key) == value


def test_containerd_answers(host):
    assert host.service("containerd").is_running
    assert host.service("containerd").is_enabled
    out = host.run(f"{node_command(host, 'ctr')} version")
    assert out.rc == 0, out.stderr
    assert "Server:" in out.stdout


def test_containerd_systemd_cgroup(host):
    config = host.file("/etc/containerd/config.toml").content_string
    assert "SystemdCgroup = true" in config


def test_data_disks_present_and_clean(host, hv):
    """Each data disk: a block device, big enough, and clean by clusterlab-disk's check
    (no signature, no partition table, no PV, zeroes at the BlueStore label offsets)."""
    if host.file(hv.get("rook_data_dir_host_path", "/var/lib/rook")).exists:
        pytest.skip(
            "Rook's host data exists: Ceph owns the data disks (the ceph layer checks them)"
        )
    tool = node_command(host, "clusterlab-disk")
    for dev in hv["lab_disks"]:
        state = json.loads(host.check_output(f"{tool} check {dev}"))
        assert state["exists"], f"{dev} does not exist"
        assert state["block"], f"{dev} is not a block device"
        assert state["size"] >= MIN_DISK, f"{dev} is smaller than 5 GiB"
        assert state["clean"], f"{dev} is not clean: {state}"


def test_data_disks_under_their_kernel_names(host, hv):
    """Rook and ceph-volume read a disk by its kernel name (lsblk KNAME, sysfs): the node's
    /dev must have that name for the same device (a loop device bound in as /dev/vdb is still
    loopN to them and cannot be read), and its size is the one the inventory gives."""
    for dev in hv["lab_disks"]:
        row = host.check_output(f"lsblk -dnb -o KNAME,MAJ:MIN,SIZE {dev}").split()
        kname, majmin, size = row[0], row[1], int(row[2])
        own = host.run(f"lsblk -dn -o MAJ:MIN /dev/{kname}")
        assert own.rc == 0, f"{dev} is {kname} to the kernel, but /dev/{kname} is not in the node"
        assert own.stdout.strip() == majmin, f"/dev/{kname} is not the device {dev} ({majmin})"
        want = hv.get("lab_disk_sizes", {}).get(dev)
        if want is not None:
            # local and vagrant make disks of the spec's size; a static disk may be larger
            exact = hv.get("clusterlab_provider") in ("local", "vagrant")
            assert size == want if exact else size >= want, f"{dev}: {size} bytes, want {want}"


@pytest.mark.parametrize("tool", ["conntrack", "socat", "ethtool", "iptables", "ip", "nsenter"])
def test_tools_kubeadm_and_the_kubelet_call(host, tool):
    assert host.exists(tool), f"{tool} is not installed"


def test_lvm2(host):
    assert host.exists("pvcreate")
    assert host.exists("vgcreate")


def test_every_node_in_etc_hosts(host, hv):
    hosts = host.file("/etc/hosts").content_string
    for name in hv["groups"]["all"]:
        assert f" {name}\n" in hosts, f"{name} missing from /etc/hosts"


def test_clock_in_sync_with_controller(host, hv):
    remote = float(host.check_output("date +%s.%N"))
    assert abs(remote - time.time()) < 5
    if not hv.get("clusterlab_shared_kernel"):
        svc = (
            "chronyd"
            if hv.get("clusterlab_os_family") in ("redhat", "fedora_coreos")
            else "systemd-timesyncd"
        )
        assert host.service(svc).is_running
