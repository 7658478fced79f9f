"""Inventories rendered from every example lab, read back by ansible-inventory itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from localplay import run_playbook

from clusterlab import ansible, artifacts, inventory, paths
from clusterlab.ansible import failures
from clusterlab.providers import get_provider
from clusterlab.spec import load_spec_file, normalize
from clusterlab.yamltags import from_ansible_json, plain

LABS = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))


def ansible_inventory_list(inv_file, raw: bool = False) -> dict:
    res = subprocess.run(
        [ansible.bin_path("ansible-inventory"), "-i", str(inv_file), "--list"],
        capture_output=True,
        text=True,
        env=ansible.env(),
        check=True,
    )
    data = json.loads(res.stdout)
    return data if raw else from_ansible_json(data)


@pytest.mark.parametrize("lab", LABS)
def test_inventory_parses_with_groups_and_vars(lab, tmp_path):
    spec = load_spec_file(paths.lab_spec_file(lab))
    conns = get_provider(spec).planned_connections()
    inv_file = inventory.write(spec, conns, tmp_path)
    data = ansible_inventory_list(inv_file)
    names = [n["name"] for n in spec["nodes"]]

    def members(group):
        return sorted(data.get(group, {}).get("hosts", []))

    assert members("kube_control_plane") == sorted(
        n["name"] for n in spec["nodes"] if "control_plane" in n["roles"]
    )
    assert members("etcd") == sorted(n["name"] for n in spec["nodes"] if "etcd" in n["roles"])
    assert members("kube_node") == sorted(
        n["name"] for n in spec["nodes"] if "worker" in n["roles"]
    )
    assert sorted(data["k8s_cluster"]["children"]) == ["kube_control_plane", "kube_node"]
    assert members("ceph_osd") == sorted(n["name"] for n in spec["nodes"] if n["disks"])
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(names)
    for node in spec["nodes"]:
        hv = hostvars[node["name"]]
        assert hv["ip"] == node["address"]
        assert hv["ansible_host"] == node["address"]
        planned = [
            d["device"] or inventory.PLANNED_DISK.format(n=i + 1)
            for i, d in enumerate(node["disks"])
        ]
        assert hv["lab_disks"] == [
            p for p, d in zip(planned, node["disks"], strict=True) if d["ceph"]
        ]
        assert hv["lab_disk_sizes"] == {
            p: d["size_bytes"]
            for p, d in zip(planned, node["disks"], strict=True)
            if d["ceph"] and d.get("size_bytes")
        }
        if spec["provider"] == "local":  # loop devices are named when `up` attaches them
            assert all(p.startswith(inventory.PLANNED_DISK_PREFIX) for p in hv["lab_disks"])
        else:
            assert hv["lab_disks"] == [d["device"] for d in node["disks"] if d["ceph"]]
        assert hv["kube_version"] == spec["kubernetes"]["version"]
        assert hv["rook_mode"] == spec["rook"]["mode"]
        assert hv["clusterlab_lab"] == lab


VALIDATE = """\
- name: Validate
  hosts: all
  gather_facts: false
  roles:
    - role: validate_inventory
"""


def validate(tmp_path, inv: dict) -> subprocess.CompletedProcess:
    """The validate_inventory role against inv, every host reached locally."""
    for hv in inv["all"]["hosts"].values():
        hv.update(ansible_connection="local", ansible_python_interpreter=sys.executable)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "validate.yml").write_text(VALIDATE)
    return run_playbook(tmp_path / "validate.yml", tmp_path / "hosts.yml", {})


def test_local_disks_planned_then_attached(tmp_path):
    """A local lab's planned inventory has placeholders the stages refuse; the inventory `up`
    writes has the loop devices the provider attached, with the spec's sizes."""
    spec = load_spec_file(paths.lab_spec_file("default"))
    assert spec["provider"] == "local"
    assert all(d["device"] is None for n in spec["nodes"] for d in n["disks"])
    conns = get_provider(spec).planned_connections()
    planned = inventory.render(spec, conns)
    res = validate(tmp_path, planned)
    assert res.returncode != 0
    assert "placeholders of a planned" in res.stdout
    assert "/dev/loop-assigned-at-up-1" in res.stdout

    loops = {
        n["name"]: [f"/dev/loop{10 * i + j}" for j in range(len(n["disks"]))]
        for i, n in enumerate(spec["nodes"])
    }
    made = inventory.render(spec, conns, disks=loops)
    for node in spec["nodes"]:
        hv = made["all"]["hosts"][node["name"]]
        assert hv["lab_disks"] == loops[node["name"]]
        assert hv["lab_disk_sizes"] == {
            p: d["size_bytes"] for p, d in zip(loops[node["name"]], node["disks"], strict=True)
        }
    res = validate(tmp_path, made)
    assert res.returncode == 0, res.stdout + res.stderr


def test_static_disk_sizes_only_where_the_spec_gives_them():
    spec = normalize(
        {
            "name": "st",
            "provider": "static",
            "os": "debian12",
            "network": {"cidr": "192.0.2.0/24"},
            "nodes": [
                {
                    "name": "a",
                    "address": "192.0.2.10",
                    "user": "root",
                    "roles": ["control_plane", "etcd", "worker"],
                    "disks": [
                        {"device": "/dev/sdb", "size": "20G"},
                        {"device": "/dev/disk/by-id/x"},
                        {"device": "/dev/sdd", "ceph": False, "size": "8G"},
                    ],
                }
            ],
        }
    )
    hv = inventory.render(spec, get_provider(spec).planned_connections())["all"]["hosts"]["a"]
    assert hv["lab_disks"] == ["/dev/sdb", "/dev/disk/by-id/x"]
    assert hv["lab_disk_sizes"] == {"/dev/sdb": 20 * 2**30}


def test_user_group_vars_win(tmp_path, monkeypatch):
    """inventories/<lab>/group_vars/ overrides what the spec derives."""
    inv_root = tmp_path / "inventories"
    lab_dir = inv_root / "default"
    (lab_dir / "group_vars").mkdir(parents=True)
    (lab_dir / "lab.yml").write_text(paths.lab_spec_file("default").read_text())
    (lab_dir / "group_vars" / "all.yml").write_text(
        "kube_network_plugin: flannel\nextra_thing: 7\n"
    )
    monkeypatch.chdir(tmp_path)  # ./inventories of the current directory comes first
    spec = load_spec_file(lab_dir / "lab.yml")
    assert spec["kubernetes"]["cni"] == "calico"
    state = tmp_path / "state"
    state.mkdir()
    inv_file = inventory.write(spec, get_provider(spec).planned_connections(), state)
    assert (state / "group_vars").is_symlink()
    hv = ansible_inventory_list(inv_file)["_meta"]["hostvars"]["node1"]
    assert hv["kube_network_plugin"] == "flannel"
    assert hv["extra_thing"] == 7


def test_ssh_common_args_and_connection_fields():
    spec = load_spec_file(paths.lab_spec_file("default"))
    conns = {
        n["name"]: inventory.Connection(
            host="127.0.0.1", port=2200 + i, user="vagrant", become=True
        )
        for i, n in enumerate(spec["nodes"])
    }
    inv = inventory.render(spec, conns, ssh_common_args="-F /x/ssh_config")
    assert inv["all"]["vars"]["ansible_ssh_common_args"] == "-F /x/ssh_config"
    hv = inv["all"]["hosts"]["node2"]
    assert hv["ansible_port"] == 2201
    assert hv["ansible_become"] is True
    assert hv["ip"] == "10.213.0.12"


def test_written_inventory_is_marked_generated(tmp_path):
    spec = load_spec_file(paths.lab_spec_file("default"))
    inv_file = inventory.write(spec, get_provider(spec).planned_connections(), tmp_path)
    text = inv_file.read_text()
    assert text.startswith("# Generated by clusterlab")
    assert yaml.safe_load(text)["all"]["hosts"]["node1"]["ip"] == "10.213.0.11"


def test_failures_pick_the_top_level_message():

    out = (
        'failed: [node3] (item=/dev/vdb) => {"changed": false, "item": {"msg": "", "rc": 0}, '
        '"msg": "refusing to reset node3: /dev/vdb: /dev/vdb is mounted at /mnt/data"}\n'
        'fatal: [node1]: FAILED! => {"changed": false, "msg": "Path /etc/hosts does not exist !"}\n'
        'fatal: [node1]: FAILED! => {"changed": false, "msg": "Path /etc/hosts does not exist !"}\n'
    )
    assert failures(out) == [
        "node3: refusing to reset node3: /dev/vdb: /dev/vdb is mounted at /mnt/data",
        "node1: Path /etc/hosts does not exist !",
    ]


def test_ansible_reads_spec_values_as_unsafe_and_connection_vars_as_plain(tmp_path):
    """What Ansible itself makes of hosts.yml: every spec value is unsafe (never templated),
    the connection variables are plain."""
    spec = load_spec_file(paths.lab_spec_file("static-sample"))
    inv_file = inventory.write(spec, get_provider(spec).planned_connections(), tmp_path)
    raw = ansible_inventory_list(inv_file, raw=True)
    hv = raw["_meta"]["hostvars"]["ceph1"]
    assert hv["rook_version"] == {"__ansible_unsafe": spec["rook"]["version"]}
    assert hv["rook_data_dir_host_path"] == {"__ansible_unsafe": "/var/lib/rook"}
    assert hv["ip"] == {"__ansible_unsafe": "10.10.20.11"}
    assert hv["lab_disks"] == [{"__ansible_unsafe": "/dev/sdb"}]
    assert hv["ansible_host"] == "10.10.20.11"
    assert hv["ansible_user"] == "admin"


@pytest.mark.parametrize(
    ("registry", "endpoint"),
    [
        ("mirror.lab:5000", "https://mirror.lab:5000"),
        ("mirror.lab/k8s", "https://mirror.lab/v2/k8s"),
    ],
)
def test_image_registry_mirrors_every_upstream_registry_of_the_labs_images(registry, endpoint):
    """The CNI's, Rook's operator and ceph-csi's images are applied as upstream wrote them
    (quay.io/…, docker.io/…): with artifacts.image_registry, containerd gets a mirror for each
    registry the lab's images come from, or those pulls bypass the mirror (an air-gapped lab
    with image_registry had calico-node in ImagePullBackOff)."""
    spec = load_spec_file(paths.lab_spec_file("meetup-host"))
    spec["artifacts"]["image_registry"] = registry
    mirrors = plain(inventory.group_vars(spec)["artifacts_registry_mirrors"])
    hosts = {i.host for i in artifacts.lab_artifacts(spec).images}
    assert {"quay.io", "registry.k8s.io"} <= hosts
    assert mirrors == dict.fromkeys(sorted(hosts), endpoint)


def test_no_image_registry_no_mirrors():
    spec = load_spec_file(paths.lab_spec_file("meetup-host"))
    assert "artifacts_registry_mirrors" not in inventory.group_vars(spec)


def test_flatcar_stages_after_prepare_use_the_python_prepare_installed():
    """Flatcar has no Python; bootstrap_os links a PyPy as /opt/bin/python during prepare, but
    its set_fact ends with that playbook run. Later stages (kubernetes, rook, reset) are runs of
    their own and discovery settled on a /usr/bin/python3 that Flatcar does not have."""
    flatcar = inventory.group_vars(load_spec_file(paths.lab_spec_file("coreos")))
    linked = (paths.ROOT / "roles/prepare/bootstrap_os/tasks/python-flatcar.yml").read_text()
    assert f"ln -sf /opt/pypy3/bin/pypy3 {flatcar['ansible_python_interpreter']}" in linked
    for lab in ("default", "meetup-host"):  # the others keep Ansible's discovery
        spec = load_spec_file(paths.lab_spec_file(lab))
        assert "ansible_python_interpreter" not in inventory.group_vars(spec)
