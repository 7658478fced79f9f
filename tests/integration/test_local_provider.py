"""The local provider on real systemd-nspawn nodes: lifecycle, healing, partial teardown, safety."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time

import pytest
import testinfra
from nodes import disks, ssh

from clusterlab import ansible, registry, sshconf
from clusterlab.providers import ProviderError, local
from clusterlab.providers.rootfs import ensure_rootfs


def test_full_lifecycle_three_nodes_two_disks(labs):
    spec = labs.spec("itlife", 101, nodes=3, disks=2)
    prov = labs.provider(spec)
    conns = prov.create()
    assert sorted(conns) == ["node1", "node2", "node3"]
    assert [s.state for s in prov.status()] == ["running"] * 3
    inv = prov.state / "hosts.yml"
    key = prov.state / "id_ed25519"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "StrictHostKeyChecking yes" in (prov.state / "ssh_config").read_text()
    assert "StrictHostKeyChecking=no" not in (prov.state / "ssh_config").read_text()

    # Ansible ad-hoc ping over the generated inventory
    res = subprocess.run(
        [ansible.bin_path("ansible"), "-i", str(inv), "all", "-m", "ansible.builtin.ping", "-o"],
        env=ansible.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == 3

    # testinfra over the inventory and SSH config
    for node in spec["nodes"]:
        host = testinfra.get_host(f"ansible://{node['name']}?ansible_inventory={inv}")
        assert host.check_output("hostname") == node["name"]
        assert host.interface("host0").addresses[0] == node["address"]
        assert host.service("ssh").is_running
        # the capabilities nodes get beyond nspawn's default set, where the host has them
        node_caps = local.capabilities_not_grantable(host.file("/proc/1/status").content_string)
        assert node_caps == local.capabilities_not_grantable()
        for dev in disks(prov, node["name"]):
            assert host.run(f"test -b {dev}").rc == 0

    # disks visible and writable inside every node, each its own device
    every = [d for node in spec["nodes"] for d in disks(prov, node["name"])]
    assert len(set(every)) == 6
    for node in spec["nodes"]:
        for i, (dev, disk) in enumerate(zip(disks(prov, node["name"]), node["disks"], strict=True)):
            mark = f"{node['name']}-{i}"
            ssh(
                prov,
                node["name"],
                f"printf {mark} | dd of={dev} bs=512 conv=sync,notrunc status=none",
            )
            out = ssh(
                prov, node["name"], f"head -c {len(mark)} {dev}; blockdev --getsize64 {dev}"
            ).stdout
            assert out.startswith(mark)
            assert int(out[len(mark) :].strip()) == disk["size_bytes"]
    first, second = disks(prov, "node1")
    ssh(
        prov,
        "node1",
        f"wipefs -a {first} && sgdisk -Z {first} && pvcreate -q {second} && pvs {second}",
    )

    # nodes reach each other on the lab network
    ssh(prov, "node1", f"ping -c1 -W2 {spec['nodes'][2]['address']}")

    # a second create changes nothing: same processes, same host keys
    pids = {n["name"]: prov.nspawn_pid(n["name"]) for n in spec["nodes"]}
    known = (prov.state / "known_hosts").read_text()
    hosts_yml = inv.read_text()
    prov.create()
    assert {n["name"]: prov.nspawn_pid(n["name"]) for n in spec["nodes"]} == pids
    assert (prov.state / "known_hosts").read_text() == known
    assert inv.read_text() == hosts_yml  # same loop devices

    prov.destroy()
    assert [s.state for s in prov.status()] == ["absent"] * 3


def test_killed_node_is_stopped_then_healed(labs):
    spec = labs.spec("itheal", 102, nodes=2, disks=1)
    prov = labs.provider(spec)
    prov.create()
    os.kill(prov.nspawn_pid("node2"), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while prov.nspawn_pid("node2") and time.monotonic() < deadline:
        time.sleep(0.05)
    states = {s.name: s.state for s in prov.status()}  # the node's processes outlive nspawn
    assert states == {"node1": "running", "node2": "orphaned"}
    res = labs.cli("status", "--lab", "itheal")
    assert "orphaned" in res.stdout
    prov.create()
    assert {s.name: s.state for s in prov.status()} == {"node1": "running", "node2": "running"}
    assert ssh(prov, "node2", "cat /etc/hostname").stdout.strip() == "node2"
    prov.destroy()


def test_down_from_half_created_lab_and_from_nothing(labs):
    spec = labs.spec("ithalf", 103, nodes=2, disks=2)
    prov = labs.provider(spec)
    prov.check_host()
    # build only part of a lab by hand: bridge, NAT, one node's overlay and a loop device
    prov.state.mkdir(parents=True)
    prov._ensure_bridge()
    prov._ensure_nat()

    key = sshconf.ensure_keypair(prov.state)
    node = spec["nodes"][0]
    prov._ensure_node_fs(node, ensure_rootfs("bookworm"), key)
    prov._loop_for(prov.disk_file("node1", 0))
    prov.destroy()
    prov.destroy()  # already gone: still fine
    res = labs.cli("down", "--lab", "ithalf")
    assert res.returncode == 0


def test_down_after_state_dir_deleted(labs):
    spec = labs.spec("itgone", 104, nodes=1, disks=1)
    prov = labs.provider(spec)
    prov.create()
    subprocess.run(["umount", "-l", str(prov.node_dir("node1") / "root")], check=True)
    prov.destroy()


def test_two_labs_side_by_side_and_overlap_refused(labs):
    a = labs.provider(labs.spec("ita", 105))
    b = labs.provider(labs.spec("itb", 106))
    a.create()
    b.create()
    assert ssh(a, "node1", "ip -4 -o addr show host0").stdout.count("10.213.105.11") == 1
    assert ssh(b, "node1", "ip -4 -o addr show host0").stdout.count("10.213.106.11") == 1
    # a third lab on a's network is refused before anything is created
    c = labs.provider(labs.spec("itc", 105))
    with pytest.raises(ProviderError, match="overlaps"):
        c.create()
    assert not c.state.exists()
    a.destroy()
    assert [s.state for s in b.status()] == ["running"]
    ssh(b, "node1", "true")
    b.destroy()


def test_refusals_create_nothing(labs):
    big = labs.provider(labs.spec("itbig", 107, nodes=1, disks=1, **{}))
    big.spec["nodes"][0]["disks"][0]["size_bytes"] = 1 << 50  # 1 PiB
    with pytest.raises(ProviderError, match="not enough disk space"):
        big.create()
    assert not big.state.exists()

    locked = labs.provider(labs.spec("itlock", 108))
    registry.locks_dir().mkdir(parents=True, exist_ok=True)
    with registry.lock_path("itlock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(ProviderError, match="lab itlock is busy"):
            locked.create()
    assert not locked.state.exists()


def test_cli_refuses_non_debian_os_on_local(labs):
    d = labs.inventories / "itrocky"
    d.mkdir()
    (d / "lab.yml").write_text(
        "name: itrocky\nprovider: local\nos: rocky9\nnodes: {count: 1, disks: [{size: 5G}]}\n"
    )
    res = labs.cli("up", "--lab", "itrocky", check=False)
    assert res.returncode == 2
    assert "os: rocky9 cannot run on the local provider" in res.stderr
    assert "vagrant, static" in res.stderr
    assert not labs.state_root.exists()


def test_cli_not_root_is_refused(labs, tmp_path):
    """The repo's default lab, as user nobody: refused before anything is created."""
    state = tmp_path / "nobody-state"
    env = {**labs.env(), "HOME": "/tmp", "CLUSTERLAB_STATE": str(state)}
    env.pop("CLUSTERLAB_INVENTORIES")
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *labs.cli_argv("up", "--lab", "default", "--until", "provision"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert res.returncode == 1, res.stderr
    assert "needs root" in res.stderr
    assert not state.exists()


def test_cli_up_status_ssh_down(labs):
    labs.spec("itcli", 110, nodes=2)
    prov = labs.provider(labs.spec("itcli", 110, nodes=2))
    res = labs.cli("up", "--lab", "itcli", "--until", "provision")
    assert "provision (local)" in res.stderr
    status = labs.cli("status", "--lab", "itcli").stdout.splitlines()
    assert status[0].split() == ["NODE", "STATE", "ADDRESS", "DISKS"]
    assert status[1].split() == ["node1", "running", "10.213.110.11", *disks(prov, "node1")]
    assert re.fullmatch(r"/dev/loop\d+", disks(prov, "node1")[0])
    out = labs.cli("ssh", "node2", "--lab", "itcli", "--", "cat /etc/hostname").stdout
    assert out.strip() == "node2"
    inv = json.loads(
        subprocess.run(
            [ansible.bin_path("ansible-inventory"), "-i", str(prov.state / "hosts.yml"), "--list"],
            env=ansible.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    # values from the spec are !unsafe: ansible-inventory shows them as {"__ansible_unsafe": …}
    assert inv["_meta"]["hostvars"]["node2"]["lab_disks"] == [
        {"__ansible_unsafe": d} for d in disks(prov, "node2")
    ]
    (dev,) = disks(prov, "node2")
    assert inv["_meta"]["hostvars"]["node2"]["lab_disk_sizes"] == {dev: 5 * 2**30}
    labs.cli("down", "--lab", "itcli")


def loops_in_node(prov, node: str) -> dict[str, tuple[str, int]]:
    """Every block device under /dev in the node whose kernel name lsblk knows:
    /dev path -> (KNAME, size in bytes)."""
    out = ssh(prov, node, "lsblk -J -b -d -o KNAME,PATH,SIZE").stdout
    # (not find -type b: a device bound over an empty file keeps the file's readdir type)
    have = set(
        ssh(prov, node, 'for f in /dev/*; do [ -b "$f" ] && echo "$f"; done; true').stdout.split()
    )
    return {
        d["path"]: (d["kname"], int(d["size"]))
        for d in json.loads(out)["blockdevices"]
        if d["path"] in have
    }


def test_disks_keep_their_loop_device(labs, tmp_path):
    """A disk is handed in as /dev/loopN (lsblk's KNAME in the node), keeps N while the lab
    exists and, re-attached (host reboot), asks for N again; only when another device took N
    does it get a new one, and the inventory says so."""
    spec = labs.spec("cephloop", 61, nodes=1, disks=2)
    prov = labs.provider(spec)
    prov.create()
    first = disks(prov, "node1")
    assert all(re.fullmatch(r"/dev/loop\d+", d) for d in first), first
    seen = loops_in_node(prov, "node1")
    assert {d: seen[d] for d in first} == {d: (d[5:], 5 * 2**30) for d in first}
    assert set(seen) == set(first)  # no other disk of the host in the node's /dev

    prov.stop_node("node1")  # node restart: same devices
    prov.create()
    assert disks(prov, "node1") == first
    assert set(loops_in_node(prov, "node1")) == set(first)

    def reboot_host() -> None:  # what a host reboot leaves: nodes gone, loops detached
        prov.stop_node("node1")
        for d in disks(prov, "node1"):
            subprocess.run(["losetup", "-d", d], check=True)

    reboot_host()
    prov.create()
    assert disks(prov, "node1") == first

    reboot_host()
    squatter = tmp_path / "squatter.img"
    squatter.write_bytes(b"")
    os.truncate(squatter, 2**20)
    subprocess.run(["losetup", first[0], str(squatter)], check=True)
    try:
        prov.create()
        now = disks(prov, "node1")
        assert now[1] == first[1]
        assert now[0] != first[0]
        assert re.fullmatch(r"/dev/loop\d+", now[0])
        assert set(loops_in_node(prov, "node1")) == set(now)
        status = labs.cli("status", "--lab", "cephloop").stdout.splitlines()
        assert status[1].split()[3:] == now
    finally:
        subprocess.run(["losetup", "-d", first[0]], check=False)
    prov.destroy()
