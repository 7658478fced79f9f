"""Lab spec validation: good specs normalize, every bad spec names its field path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from clusterlab_cli import run_cli

from clusterlab import paths
from clusterlab.spec import SpecError, for_provider, load_spec_text, normalize, parse_size

LABS = sorted(p.parent.name for p in paths.INVENTORIES.glob("*/lab.yml"))

BASE = {
    "name": "t1",
    "provider": "local",
    "os": "debian12",
    "network": {"cidr": "10.213.9.0/24"},
    "nodes": {"count": 3, "disks": [{"size": "10G"}]},
}

STATIC_NODE = {
    "name": "s1",
    "roles": ["control_plane", "etcd", "worker"],
    "address": "10.213.9.5",
    "user": "admin",
    "disks": [{"device": "/dev/sdb"}],
}


def problems(raw) -> list[str]:
    with pytest.raises(SpecError) as exc:
        normalize(raw)
    return exc.value.problems


def with_(**changes):
    raw = copy.deepcopy(BASE)
    for key, value in changes.items():
        target = raw
        parts = key.split("__")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return raw


DELETE = object()


def test_example_labs_exist():
    assert {"default", "meetup-host", "meetup-pvc", "coreos", "static-sample"} <= set(LABS)


@pytest.mark.parametrize("lab", LABS)
def test_example_lab_validates(lab):
    spec = normalize(yaml.safe_load(paths.lab_spec_file(lab).read_text()))
    assert spec["name"] == lab
    assert spec["nodes"], "every example lab has nodes"


def test_default_lab_shape():
    spec = normalize(yaml.safe_load(paths.lab_spec_file("default").read_text()))
    assert spec["provider"] == "local"
    assert spec["os"] == "debian12"
    assert [n["name"] for n in spec["nodes"]] == ["node1", "node2", "node3"]
    assert all(len(n["disks"]) == 1 and n["disks"][0]["size"] == "10G" for n in spec["nodes"])
    assert spec["rook"]["mode"] == "host"


def test_defaults_filled_and_counts_expanded():
    spec = normalize(BASE)
    assert spec["kubernetes"]["pod_cidr"] == "10.233.64.0/18"
    assert spec["kubernetes"]["service_cidr"] == "10.233.0.0/18"
    assert [n["address"] for n in spec["nodes"]] == ["10.213.9.11", "10.213.9.12", "10.213.9.13"]
    assert spec["nodes"][0]["roles"] == ["control_plane", "etcd", "worker"]
    assert spec["nodes"][1]["roles"] == ["worker"]  # etcd is stacked on the one control plane
    assert spec["nodes"][0]["disks"][0]["device"] is None  # local: the loop device, at up
    assert spec["rook"]["mon_count"] == 3
    assert spec["rook"]["replica_size"] == 3
    assert spec["rook"]["allow_multiple_per_node"] is False


def test_single_node_lab_defaults():
    spec = normalize(with_(nodes={"count": 1, "disks": [{"size": "6G"}]}))
    assert spec["rook"]["mon_count"] == 1
    assert spec["rook"]["replica_size"] == 1
    assert spec["rook"]["allow_multiple_per_node"] is True


def test_virtualbox_disks_are_sata():
    raw = with_(provider="vagrant", os="rocky9", vagrant={"provider": "virtualbox"})
    raw["nodes"]["disks"] = [{"size": "20G"}, {"size": "20G"}]
    spec = normalize(raw)
    assert [d["device"] for d in spec["nodes"][0]["disks"]] == ["/dev/sdb", "/dev/sdc"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10G", 10 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1T", 1024**4),
        ("5GiB", 5 * 1024**3),
        ("10Gi", 10 * 1024**3),  # a Kubernetes quantity, as Kubernetes users write sizes
        ("512Mi", 512 * 1024**2),
        ("1Ti", 1024**4),
        ("64Ki", 64 * 1024),
        (6442450944, 6 * 1024**3),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["10GB", "10gb", "10 GB", "512MB", "1TB", "64kB"])
def test_decimal_sizes_are_refused_with_the_reason(text):
    found = problems(with_(nodes={"count": 1, "disks": [{"size": text}]}))
    (line,) = [p for p in found if p.startswith("nodes.disks[0].size: ")]
    assert "ambiguous" in line
    assert f"{text.strip()[-2].upper()}i" in line  # names the binary form to write


@pytest.mark.parametrize("text", ["10g", "10m", "ten", "10Gx", "-1G", "1e3G"])
def test_unclear_sizes_are_refused(text):
    found = problems(with_(nodes={"count": 1, "disks": [{"size": text}]}))
    assert any(p.startswith("nodes.disks[0].size: ") for p in found), found


def test_a_count_form_disk_problem_is_reported_once_not_per_node():
    found = problems(with_(nodes={"count": 3, "disks": [{"size": "2G"}, {"size": "10GB"}]}))
    assert len(found) == len(set(found))
    assert [p.split(":")[0] for p in found] == ["nodes.disks[0].size", "nodes.disks[1].size"]


def test_a_refused_value_gets_one_problem_not_follow_ups():
    static = {
        **with_(provider="static"),
        "nodes": [{**STATIC_NODE, "disks": [{"device": "sdb;id"}]}],
    }
    found = problems(static)
    assert [p for p in found if p.startswith("nodes[0].disks[0].device")] == [
        p for p in found if "device" in p
    ]
    assert len([p for p in found if p.startswith("nodes[0].disks[0].device")]) == 1


def test_spec_prints_only_the_fields_of_the_labs_provider():
    local = for_provider(normalize(with_()))
    assert "vagrant" not in local
    assert all(k not in n for n in local["nodes"] for k in ("cpus", "memory", "user", "port"))
    assert all(k not in n for n in local["nodes"] for k in ("key_file", "become_method"))
    assert local["rook"] == normalize(with_())["rook"]
    vagrant = for_provider(normalize(with_(provider="vagrant")))
    assert vagrant["vagrant"]["provider"] == "libvirt"
    assert all("cpus" in n and "memory" in n for n in vagrant["nodes"])
    assert all("user" not in n for n in vagrant["nodes"])
    static = for_provider(normalize({**with_(provider="static"), "nodes": [STATIC_NODE]}))
    assert static["nodes"][0]["user"] == "admin"
    assert "vagrant" not in static
    assert "cpus" not in static["nodes"][0]


def test_spec_command_prints_the_provider_fields_only():
    res = run_cli("spec", "--lab", "default")
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["provider"] == "local"
    assert "vagrant" not in printed
    assert "libvirt_driver" not in res.stdout
    assert "become_method" not in res.stdout


def test_yaml_syntax_error_has_line_and_column():
    with pytest.raises(SpecError) as exc:
        load_spec_text("name: x\n  nodes: [\n", "lab.yml")
    (line,) = exc.value.problems
    assert "line 2, column" in line
    assert line.startswith("(yaml):")


BAD_SPECS = [
    # (id, raw spec, field path that must lead a problem line, words in it)
    ("missing-name", with_(name=DELETE), "name", "required"),
    ("bad-name", with_(name="My_Lab"), "name", "not a valid lab name"),
    ("unknown-top-key", with_(nodez=[]), "nodez", "unknown key"),
    ("typo-top-key", with_(provder="local"), "provder", "did you mean 'provider'"),
    ("bad-provider", with_(provider="docker"), "provider", "allowed: local, vagrant, static"),
    ("bad-os", with_(os="windows"), "os", "not supported"),
    ("os-not-on-local", with_(os="rocky9"), "os", "providers for rocky9: vagrant, static"),
    ("coreos-not-on-vagrant", with_(provider="vagrant", os="fedora-coreos"), "os", "static"),
    ("cidr-not-network", with_(network__cidr="10.213.9.5/24"), "network.cidr", "not an IPv4"),
    ("cidr-public", with_(network__cidr="8.8.8.0/24"), "network.cidr", "not a private"),
    ("cidr-too-large", with_(network__cidr="10.213.0.0/16"), "network.cidr", "larger than a /24"),
    ("cidr-too-small", with_(network__cidr="10.213.9.0/29"), "network.cidr", "too small"),
    ("network-typo", with_(network={"cdir": "10.0.0.0/24"}), "network.cdir", "did you mean 'cidr'"),
    ("nodes-missing", with_(nodes=DELETE), "nodes", "required"),
    ("nodes-empty", with_(nodes=[]), "nodes", "at least one node"),
    ("nodes-wrong-type", with_(nodes="three"), "nodes", "expected a list or a mapping"),
    ("count-zero", with_(nodes={"count": 0}), "nodes.count", "1 or more"),
    ("count-not-int", with_(nodes={"count": "3"}), "nodes.count", "expected an integer"),
    (
        "count-cp-too-many",
        with_(nodes={"count": 2, "control_plane": 3}),
        "nodes.control_plane",
        "1 … 2",
    ),
    ("count-unknown", with_(nodes={"count": 2, "workers": 2}), "nodes.workers", "unknown key"),
    (
        "duplicate-node",
        with_(nodes=[{"name": "a", "roles": ["control_plane", "etcd"]}, {"name": "a"}]),
        "nodes[1].name",
        "duplicate",
    ),
    (
        "node-bad-hostname",
        with_(nodes=[{"name": "Node_1", "roles": ["control_plane", "etcd"]}]),
        "nodes[0].name",
        "hostname",
    ),
    (
        "node-missing-name",
        with_(nodes=[{"roles": ["control_plane", "etcd"]}]),
        "nodes[0].name",
        "required",
    ),
    (
        "node-bad-role",
        with_(nodes=[{"name": "a", "roles": ["master", "etcd"]}]),
        "nodes[0].roles[0]",
        "not a role",
    ),
    (
        "node-typo",
        with_(nodes=[{"name": "a", "rols": ["etcd"]}]),
        "nodes[0].rols",
        "did you mean 'roles'",
    ),
    (
        "no-control-plane",
        with_(nodes=[{"name": "a", "roles": ["etcd", "worker"]}]),
        "nodes",
        "control_plane",
    ),
    (
        "etcd-without-control-plane",
        with_(
            nodes=[
                {"name": "a", "roles": ["control_plane", "etcd"]},
                {"name": "b", "roles": ["etcd"]},
            ]
        ),
        "nodes[1].roles",
        "stacked",
    ),
    (
        "two-control-planes",
        with_(nodes={"count": 3, "control_plane": 2, "disks": [{"size": "10G"}]}),
        "nodes",
        "one control plane",
    ),
    (
        "count-etcd-not-control-planes",
        with_(nodes={"count": 3, "etcd": 3, "disks": [{"size": "10G"}]}),
        "nodes.etcd",
        "stacked",
    ),
    (
        "static-node-outside-cidr",
        {
            **with_(provider="static", os="rocky9", network={"cidr": "10.213.7.0/24"}),
            "nodes": [{**STATIC_NODE, "address": "10.99.0.5"}],
        },
        "nodes[0].address",
        "the nodes' own network",
    ),
    (
        "pods-overlap-libvirt-management",
        with_(
            provider="vagrant",
            os="rocky9",
            kubernetes={"pod_cidr": "192.168.0.0/16", "service_cidr": "10.96.0.0/12"},
        ),
        "kubernetes.pod_cidr",
        "management network",
    ),
    (
        "version-not-pinned",
        with_(kubernetes={"version": "1.35.1"}),
        "kubernetes.version",
        "not pinned",
    ),
    (
        "version-minor-unknown",
        with_(kubernetes={"version": "1.29"}),
        "kubernetes.version",
        "no pinned",
    ),
    (
        "address-outside",
        with_(
            nodes=[
                {"name": "a", "roles": ["control_plane", "etcd", "worker"], "address": "10.9.9.9"}
            ]
        ),
        "nodes[0].address",
        "not a host address",
    ),
    (
        "address-gateway",
        with_(
            nodes=[
                {"name": "a", "roles": ["control_plane", "etcd", "worker"], "address": "10.213.9.1"}
            ]
        ),
        "nodes[0].address",
        "gateway",
    ),
    (
        "address-garbage",
        with_(
            nodes=[{"name": "a", "roles": ["control_plane", "etcd", "worker"], "address": "ten"}]
        ),
        "nodes[0].address",
        "not an IPv4",
    ),
    (
        "address-duplicate",
        with_(
            nodes=[
                {
                    "name": "a",
                    "roles": ["control_plane", "etcd", "worker"],
                    "address": "10.213.9.20",
                    "disks": [{"size": "6G"}],
                },
                {"name": "b", "address": "10.213.9.20"},
            ]
        ),
        "nodes[1].address",
        "also nodes[0]",
    ),
    (
        "disk-size-garbage",
        with_(nodes={"count": 1, "disks": [{"size": "big"}]}),
        "nodes.disks[0].size",
        "not a size",
    ),
    (
        "disk-too-small",
        with_(nodes={"count": 1, "disks": [{"size": "2G"}]}),
        "nodes.disks[0].size",
        "≥ 5G",
    ),
    (
        "disk-missing-size",
        with_(nodes={"count": 1, "disks": [{}]}),
        "nodes.disks[0].size",
        "required",
    ),
    (
        "disk-device-on-local",
        with_(nodes={"count": 1, "disks": [{"size": "6G", "device": "/dev/sda"}]}),
        "nodes.disks[0].device",
        "assigned by the provider",
    ),
    (
        "disk-typo",
        with_(nodes={"count": 1, "disks": [{"size": "6G", "sise": 1}]}),
        "nodes.disks[0].sise",
        "did you mean 'size'",
    ),
    ("host-mode-no-disks", with_(nodes={"count": 3}), "rook.mode", "host mode needs"),
    (
        "pvc-mode-no-disks",
        with_(nodes={"count": 3}, rook={"mode": "pvc"}),
        "rook.storage_class",
        "pvc mode needs",
    ),
    ("rook-mode-typo", with_(rook={"mode": "hots"}), "rook.mode", "did you mean 'host'"),
    ("mon-even", with_(rook={"mon_count": 2}), "rook.mon_count", "1, 3, 5"),
    (
        "mon-more-than-nodes",
        with_(
            nodes={"count": 1, "disks": [{"size": "6G"}]},
            rook={"mon_count": 3, "allow_multiple_per_node": False},
        ),
        "rook.mon_count",
        "allow_multiple_per_node",
    ),
    ("replica-more-than-hosts", with_(rook={"replica_size": 4}), "rook.replica_size", "OSD hosts"),
    ("rook-enabled-not-bool", with_(rook={"enabled": "yes"}), "rook.enabled", "true or false"),
    (
        "device-filter-bad-regex",
        with_(rook={"device_filter": "vd[b"}),
        "rook.device_filter",
        "regular expression",
    ),
    (
        "k8s-version-garbage",
        with_(kubernetes={"version": "latest"}),
        "kubernetes.version",
        "not a version",
    ),
    (
        "k8s-version-unsupported",
        with_(kubernetes={"version": "1.29.3"}),
        "kubernetes.version",
        "1.31.14",
    ),
    ("bad-cni", with_(kubernetes={"cni": "weave"}), "kubernetes.cni", "calico, flannel"),
    (
        "pod-cidr-overlaps-lab",
        with_(network__cidr="10.233.64.0/24"),
        "kubernetes.pod_cidr",
        "overlaps network.cidr",
    ),
    (
        "service-overlaps-pods",
        with_(kubernetes={"service_cidr": "10.233.64.0/20"}),
        "kubernetes.service_cidr",
        "overlaps kubernetes.pod_cidr",
    ),
    (
        "mirror-not-url",
        with_(artifacts={"mirror_url": "mirror.local"}),
        "artifacts.mirror_url",
        "not a URL",
    ),
    ("bad-demo", with_(demos=["kafka"]), "demos[0]", "not a known demo"),
    (
        "vagrant-provider",
        with_(vagrant={"provider": "hyperv"}),
        "vagrant.provider",
        "libvirt, virtualbox",
    ),
    ("section-not-mapping", with_(rook=["host"]), "rook", "expected a mapping"),
    (
        "user-on-local",
        with_(nodes=[{"name": "a", "roles": ["control_plane", "etcd", "worker"], "user": "bob"}]),
        "nodes[0].user",
        "only for the static",
    ),
    (
        "static-no-address",
        {
            **with_(provider="static"),
            "nodes": [{k: v for k, v in STATIC_NODE.items() if k != "address"}],
        },
        "nodes[0].address",
        "required on the static",
    ),
    (
        "static-no-user",
        {
            **with_(provider="static"),
            "nodes": [{k: v for k, v in STATIC_NODE.items() if k != "user"}],
        },
        "nodes[0].user",
        "required on the static",
    ),
    (
        "static-disk-no-device",
        {**with_(provider="static"), "nodes": [{**STATIC_NODE, "disks": [{"size": "20G"}]}]},
        "nodes[0].disks[0].device",
        "required on the static",
    ),
    (
        "static-disk-not-dev",
        {**with_(provider="static"), "nodes": [{**STATIC_NODE, "disks": [{"device": "sdb"}]}]},
        "nodes[0].disks[0].device",
        "not a device path",
    ),
    (
        "static-bad-port",
        {**with_(provider="static"), "nodes": [{**STATIC_NODE, "port": 70000}]},
        "nodes[0].port",
        "not a port",
    ),
    (
        "static-bad-become",
        {**with_(provider="static"), "nodes": [{**STATIC_NODE, "become_method": "doas"}]},
        "nodes[0].become_method",
        "sudo, su, none",
    ),
]


def test_enough_distinct_bad_specs():
    assert len({case[0] for case in BAD_SPECS}) == len(BAD_SPECS) >= 30


@pytest.mark.parametrize(
    ("raw", "path", "words"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_names_field_path(raw, path, words):
    found = problems(raw)
    lines = [p for p in found if p.startswith(f"{path}: ")]
    assert lines, f"no problem for {path!r} in {found}"
    assert any(words in p for p in lines), f"{words!r} not in {lines}"


def test_all_problems_reported_at_once():
    raw = with_(provider="docker", rook={"mode": "hots"}, demos=["kafka"])
    found = problems(raw)
    assert {p.split(":")[0] for p in found} >= {"provider", "rook.mode", "demos[0]"}


def test_good_static_spec():
    spec = normalize({**with_(provider="static", os="rocky9"), "nodes": [STATIC_NODE]})
    assert spec["nodes"][0]["disks"][0]["device"] == "/dev/sdb"
    assert spec["nodes"][0]["user"] == "admin"


@pytest.mark.parametrize("lab", LABS)
def test_cli_spec_file_exits_zero(lab, tmp_path):
    res = run_cli(
        "spec",
        "--file",
        str(paths.lab_spec_file(lab)),
        env_extra={"CLUSTERLAB_STATE": str(tmp_path / "state")},
    )
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(res.stdout)["name"] == lab


@pytest.mark.parametrize(
    ("raw", "path", "words"), [c[1:] for c in BAD_SPECS[:12]], ids=[c[0] for c in BAD_SPECS[:12]]
)
def test_cli_bad_spec_exits_2_and_creates_nothing(raw, path, words, tmp_path):
    spec_file = tmp_path / "lab.yml"
    spec_file.write_text(yaml.safe_dump(raw))
    state = tmp_path / "state"
    before = sorted(Path(tmp_path).rglob("*"))
    res = run_cli("spec", "--file", str(spec_file), env_extra={"CLUSTERLAB_STATE": str(state)})
    assert res.returncode == 2
    assert any(line.startswith(f"{path}: ") for line in res.stderr.splitlines()), res.stderr
    assert not state.exists()
    assert sorted(Path(tmp_path).rglob("*")) == before


def test_cli_bad_spec_up_creates_no_state(tmp_path):
    spec_file = tmp_path / "lab.yml"
    spec_file.write_text(yaml.safe_dump(with_(provider="docker")))
    state = tmp_path / "state"
    # `up` reads specs by lab name; point a lab name at the bad spec through a copy
    res = run_cli("up", "--lab", "no-such-lab", env_extra={"CLUSTERLAB_STATE": str(state)})
    assert res.returncode == 2
    assert "no lab named 'no-such-lab'" in res.stderr
    assert not state.exists()
