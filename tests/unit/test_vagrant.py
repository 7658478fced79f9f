"""Vagrant provider: the plan Python makes, and the Vagrantfile checked by Vagrant itself."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from clusterlab import inventory, paths
from clusterlab.providers import ProviderError
from clusterlab.providers.vagrant import (
    VagrantProvider,
    parse_ssh_config,
    plan,
    vbox_allowed_ranges,
)
from clusterlab.spec import load_spec_file, normalize

VAGRANT_LABS = sorted(
    p.parent.name
    for p in paths.INVENTORIES.glob("*/lab.yml")
    if "provider: vagrant" in p.read_text()
)


def test_plan_matches_the_spec(tmp_path):
    spec = load_spec_file(paths.lab_spec_file("meetup-host"))
    p = plan(spec, tmp_path)
    assert p["box"] == "generic/rocky9"
    assert [m["name"] for m in p["machines"]] == [n["name"] for n in spec["nodes"]]
    assert [m["address"] for m in p["machines"]] == [n["address"] for n in spec["nodes"]]
    m = p["machines"][0]
    assert m["netmask"] == "255.255.255.0"
    assert [d["target"] for d in m["disks"]] == ["vdb", "vdc"]
    assert [d["size"] for d in m["disks"]] == ["20G", "20G"]
    assert m["memory"] == 4096


def test_flatcar_box_has_its_metadata_url(tmp_path):
    p = plan(load_spec_file(paths.lab_spec_file("coreos")), tmp_path)
    assert p["box"] == "flatcar-stable"
    assert p["box_url"].endswith("flatcar_production_vagrant.json")


def virtualbox_lab(name: str, cidr: str) -> dict:
    """A 1-node VirtualBox lab spec with one 20G data disk."""
    return {
        "name": name,
        "provider": "vagrant",
        "os": "rocky9",
        "network": {"cidr": cidr},
        "vagrant": {"provider": "virtualbox"},
        "nodes": {"count": 1, "disks": [{"size": "20G"}]},
    }


def test_virtualbox_disks_are_sata_files_in_the_state_dir(tmp_path):
    raw = virtualbox_lab("vb", "192.168.56.0/24")
    p = plan(normalize(raw), tmp_path)
    disk = p["machines"][0]["disks"][0]
    assert disk["device"] == "/dev/sdb"
    assert disk["size_mb"] == 20480
    assert disk["file"].startswith(str(tmp_path))


def test_virtualbox_range_outside_default_is_refused(tmp_path, monkeypatch):
    raw = virtualbox_lab("vb2", "10.20.30.0/24")
    prov = VagrantProvider(normalize(raw))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(ProviderError, match=r"192\.168\.56\.0/21"):
        prov.check_host()
    conf = tmp_path / "networks.conf"
    conf.write_text("* 10.20.0.0/16 192.168.60.0/24\n")
    ranges = vbox_allowed_ranges(conf)
    assert ipaddress.IPv4Network("10.20.30.0/24").subnet_of(ranges[1])
    assert ipaddress.IPv4Network("192.168.60.0/24") in ranges


def test_parse_ssh_config():
    text = (
        "Host node1\n  HostName 192.168.121.5\n  User vagrant\n  Port 22\n"
        '  IdentityFile "/x/.vagrant/machines/node1/libvirt/private_key"\n  IdentitiesOnly yes\n\n'
        "Host node2\n  HostName 192.168.121.6\n  User vagrant\n  Port 2222\n"
    )
    hosts = parse_ssh_config(text)
    assert hosts["node1"]["hostname"] == "192.168.121.5"
    assert hosts["node1"]["identityfile"] == "/x/.vagrant/machines/node1/libvirt/private_key"
    assert hosts["node2"]["port"] == "2222"


NEEDS_VAGRANT = pytest.mark.skipif(
    not shutil.which("vagrant"), reason="vagrant is not installed (inv setup --provider vagrant)"
)


def run_with_lab_plan(lab, tmp_path, monkeypatch, argv) -> tuple[dict, subprocess.CompletedProcess]:
    """Write the lab's plan the way `inv up` does and run argv in the provider's environment."""
    monkeypatch.setenv("CLUSTERLAB_STATE", str(tmp_path / "state"))
    spec = load_spec_file(paths.lab_spec_file(lab))
    prov = VagrantProvider(spec)
    prov.write_plan()
    env = {**prov.env(), "VAGRANT_HOME": str(tmp_path / "vagrant.d")}
    res = subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    return spec, res


@NEEDS_VAGRANT
@pytest.mark.parametrize("lab", VAGRANT_LABS)
def test_vagrant_validate_every_example_lab(lab, tmp_path, monkeypatch):
    _, res = run_with_lab_plan(lab, tmp_path, monkeypatch, ["vagrant", "validate"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Vagrantfile validated successfully" in res.stdout


@NEEDS_VAGRANT
@pytest.mark.parametrize("lab", VAGRANT_LABS)
def test_vagrant_machines_equal_the_inventory(lab, tmp_path, monkeypatch):
    """Vagrant's own library loads the Vagrantfile; what it resolved must equal the inventory."""
    describe = str(paths.ROOT / "tests" / "fixtures" / "vagrant-describe.rb")
    spec, res = run_with_lab_plan(lab, tmp_path, monkeypatch, ["ruby", describe])
    assert res.returncode == 0, res.stderr
    machines = {m["name"]: m for m in json.loads(res.stdout.strip().splitlines()[-1])}
    inv = inventory.render(spec, VagrantProvider(spec).planned_connections())
    hostvars = inv["all"]["hosts"]
    assert sorted(machines) == sorted(hostvars)
    by_name = {n["name"]: n for n in spec["nodes"]}
    for name, m in machines.items():
        assert m["hostname"] == name
        assert m["addresses"] == [hostvars[name]["ip"]]
        assert ["/dev/" + d["device"] for d in m["disks"]] == hostvars[name]["lab_disks"]
        assert [d["size"] for d in m["disks"]] == [d["size"] for d in by_name[name]["disks"]]
        assert (m["cpus"], m["memory"]) == (by_name[name]["cpus"], by_name[name]["memory"])
