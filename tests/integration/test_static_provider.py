"""The static provider on machines that "already exist": local nodes made by the test itself."""

from __future__ import annotations

import ipaddress
import time

import pytest
import yaml
from nodes import disks, ssh

from clusterlab import stages
from clusterlab.providers import ProviderError
from clusterlab.providers.static import StaticProvider
from clusterlab.spec import normalize


def static_spec(labs, name, machines, *, user="root", key=None, extra_nodes=(), group_vars=None):
    """A static lab over the local lab `machines` (a provider), its disks by their real names."""
    nodes = [
        {
            "name": f"s{i + 1}",
            "roles": ["control_plane", "etcd", "worker"] if i == 0 else ["worker"],
            "address": m["address"],
            "user": user,
            "key_file": str(key),
            "disks": [{"device": dev} for dev in disks(machines, m["name"])],
        }
        for i, m in enumerate(machines.spec["nodes"])
    ]
    nodes += list(extra_nodes)
    raw = {
        "name": name,
        "provider": "static",
        "os": "debian12",
        # the machines' own network: on static labs network.cidr is where the nodes really are
        "network": {
            "cidr": str(
                ipaddress.ip_network(f"{machines.spec['nodes'][0]['address']}/24", strict=False)
            )
        },
        "nodes": nodes,
    }
    d = labs.inventories / name
    (d / "group_vars").mkdir(parents=True, exist_ok=True)
    (d / "lab.yml").write_text(yaml.safe_dump(raw))
    # These "existing machines" are containers sharing this host's kernel: say so, the way a
    # user overrides any derived variable.
    (d / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(group_vars or {"clusterlab_shared_kernel": True})
    )
    return normalize(raw)


@pytest.fixture
def machines(labs):
    base = labs.provider(labs.spec("itmach", 115, nodes=2, disks=1))
    base.create()
    yield base
    base.destroy()


def test_static_lab_trust_prepare_verify_and_down(labs, machines):
    key = machines.state / "id_ed25519"
    spec = static_spec(labs, "itstatic", machines, key=key)
    prov = StaticProvider(spec)
    labs.made.append(prov)  # its state dir is checked for leaks too

    with pytest.raises(ProviderError, match="unknown host key") as exc:
        prov.create()
    assert "SHA256:" in str(exc.value)
    assert "--trust-new-hosts" in str(exc.value)
    assert not prov.state.exists()

    res = labs.cli("up", "--lab", "itstatic", "--until", "provision", check=False)
    assert res.returncode == 1
    assert "unknown host key" in res.stderr

    res = labs.cli(
        "up", "--lab", "itstatic", "--trust-new-hosts", "--until", "prepare"
    )  # provision + prepare + verify
    assert "trusting s1" in res.stderr
    assert "ok verify nodes" in res.stderr
    assert "StrictHostKeyChecking yes" in (prov.state / "ssh_config").read_text()
    assert (
        ssh(prov.state / "ssh_config", "s2", "hostname").stdout.strip() == "s2"
    )  # prepare renamed it

    status = labs.cli("status", "--lab", "itstatic").stdout
    assert "s1" in status
    assert status.count("reachable") == 2

    # a changed host key is refused
    ssh(
        prov.state / "ssh_config",
        "s2",
        "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"
        " && systemctl restart ssh",
    )
    time.sleep(0.5)
    with pytest.raises(ProviderError, match="s2: host key changed"):
        prov.create()

    pids = {n["name"]: machines.nspawn_pid(n["name"]) for n in machines.spec["nodes"]}
    res = labs.cli("down", "--lab", "itstatic")
    assert "the machines were not touched" in res.stderr
    assert not prov.state.exists()
    assert {n["name"]: machines.nspawn_pid(n["name"]) for n in machines.spec["nodes"]} == pids
    assert [s.state for s in machines.status()] == ["running", "running"]


def test_unreachable_node_reported_in_bounded_time(labs, machines):
    key = machines.state / "id_ed25519"
    ghost = {
        "name": "ghost",
        "roles": ["worker"],
        "address": "10.213.115.99",
        "user": "root",
        "key_file": str(key),
        "disks": [],
    }
    spec = static_spec(labs, "itghost", machines, key=key, extra_nodes=[ghost])
    prov = StaticProvider(spec)
    labs.made.append(prov)
    start = time.monotonic()
    with pytest.raises(ProviderError) as exc:
        prov.create()
    assert time.monotonic() - start < 15
    assert "ghost: unreachable" in str(exc.value)
    assert "s1" not in str(exc.value)
    assert not prov.state.exists()


def test_mounted_data_disk_refused_before_any_stage(labs, machines):
    key = machines.state / "id_ed25519"
    cfg = machines.state / "ssh_config"
    dev = disks(machines, "node2")[0]
    ssh(cfg, "node2", f"mkfs.ext4 -q -F {dev} && mkdir -p /mnt/x && mount {dev} /mnt/x")
    spec = static_spec(labs, "itmount", machines, key=key)
    # A device path that is shell code (past the spec's grammar, as a hand-edited state
    # could carry it) reaches the node's guard as one quoted word, never as code.
    evil = "/dev/sdb$(touch /tmp/pwned)"
    spec["nodes"][0]["disks"].append({"device": evil})
    prov = StaticProvider(spec)
    labs.made.append(prov)
    prov.trust_new_hosts = True
    with pytest.raises(ProviderError) as exc:
        prov.create()
    assert f"s2: data disk {dev} refused: {dev} is mounted at /mnt/x" in str(exc.value)
    assert f"s1: data disk {evil} refused: it is not a block device" in str(exc.value)
    assert ssh(cfg, "node1", "test -e /tmp/pwned; echo $?").stdout.strip() == "1"
    assert not (prov.state / "hosts.yml").exists()
    ssh(cfg, "node2", "umount /mnt/x")
    prov.destroy()


def test_non_root_user_with_sudo_password(labs, machines, monkeypatch):
    """become via sudo with a password: taken from the environment, never written to disk."""
    cfg = machines.state / "ssh_config"
    secret = "s3cret-become-pw"
    for node in ("node1", "node2"):
        ssh(
            cfg,
            node,
            f"useradd -m -s /bin/bash -G sudo labber && echo 'labber:{secret}' | chpasswd"
            " && install -d -m 700 -o labber -g labber /home/labber/.ssh"
            " && install -m 600 -o labber -g labber /root/.ssh/authorized_keys /home/labber/.ssh/",
        )
    key = machines.state / "id_ed25519"
    spec = static_spec(labs, "itsudo", machines, user="labber", key=key)
    prov = StaticProvider(spec)
    labs.made.append(prov)
    prov.trust_new_hosts = True
    monkeypatch.setenv("CLUSTERLAB_BECOME_PASSWORD", secret)
    prov.create()
    hv = yaml.safe_load((prov.state / "hosts.yml").read_text())["all"]["hosts"]["s1"]
    assert hv["ansible_user"] == "labber"
    assert hv["ansible_become"] is True
    result = stages.run_stage(spec, "prepare")
    assert all(r["failed"] == 0 for r in result.values())
    assert (
        ssh(
            prov.state / "ssh_config", "s1", "sudo -S -p '' cat /etc/hostname <<< " + secret
        ).stdout.strip()
        == "s1"
    )
    for f in prov.state.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f"password written to {f}"
    prov.destroy()
